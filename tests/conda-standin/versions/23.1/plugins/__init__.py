"""STAND-IN for conda.plugins in conda 23.1.0: the marker and the types,
re-exported."""

from conda._standin import hookimpl  # noqa: F401

from .types import CondaSubcommand  # noqa: F401
