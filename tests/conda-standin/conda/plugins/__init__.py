"""STAND-IN for conda.plugins: the hook marker and CondaSubcommand."""

from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

import pluggy

hookimpl = pluggy.HookimplMarker("conda")
hookspec = pluggy.HookspecMarker("conda")


@dataclass(kw_only=True)
class CondaSubcommand:
    """conda >= 26.5's fields; keyword-only like conda's."""

    name: str
    summary: str
    action: Callable
    configure_parser: Optional[Callable] = None
    aliases: Tuple[str, ...] = field(default_factory=tuple)


class CondaSpecs:
    """The one hook specification the stand-in knows."""

    @hookspec
    def conda_subcommands(self):
        """Yield CondaSubcommand objects."""
