"""STAND-IN for conda.plugins.types in conda 23.1.0: NamedTuples."""

from typing import Callable, NamedTuple


class CondaSubcommand(NamedTuple):
    """A conda subcommand, as conda 23.1 defines it."""

    name: str
    summary: str
    action: Callable
