"""STAND-IN only (no such module in conda): the pluggy markers and the one
hook specification every mirrored conda shares, as conda.plugins.hookspec
defines them."""

import pluggy

hookimpl = pluggy.HookimplMarker("conda")
hookspec = pluggy.HookspecMarker("conda")


class CondaSpecs:
    """The one hook specification the stand-in knows."""

    @hookspec
    def conda_subcommands(self):
        """Yield CondaSubcommand objects."""
