"""STAND-IN for conda.plugins.types on conda's main branch."""

from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple


@dataclass(kw_only=True)
class CondaSubcommand:
    """conda >= 26.5's fields; keyword-only like conda's."""

    name: str
    summary: str
    action: Callable
    aliases: Tuple[str, ...] = field(default_factory=tuple)
    configure_parser: Optional[Callable] = None

    def __post_init__(self):
        self.name = self.name.lower().strip()
