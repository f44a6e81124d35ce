"""STAND-IN for a conda this plugin cannot know: conda.plugins has the
marker, but no conda.plugins.types module."""

from conda._standin import hookimpl

__all__ = ["hookimpl"]
