"""STAND-IN for `python -m conda`: plugin subcommand dispatch as the
mirrored conda does it (see ../README.md)."""

import sys

import pluggy

import conda
from conda._standin import CondaSpecs


def _load_plugins(manager):
    """Entry-point loading. conda 23.1 turns any exception raised while a
    plugin module is imported into a PluginError that fails every command;
    later condas log a warning and skip the plugin."""
    if conda.__version__ == "23.1.0":
        try:
            manager.load_setuptools_entrypoints("conda")
        except Exception as err:
            print(
                f"PluginError: Error while loading conda plugins from entrypoints: {err}",
                file=sys.stderr,
            )
            sys.exit(1)
        return
    from importlib.metadata import entry_points

    for entry_point in entry_points(group="conda"):
        try:
            plugin = entry_point.load()
        except Exception as err:
            print(
                f"WARNING conda.plugins.manager: Error while loading conda entry point: "
                f"{entry_point.name} ({err})",
                file=sys.stderr,
            )
            continue
        manager.register(plugin)


def _subcommands(argv):
    """Every version lets an exception from a hook through: it fails the
    command, whichever it is."""
    manager = pluggy.PluginManager("conda")
    manager.add_hookspecs(CondaSpecs)
    # conda reads --no-plugins anywhere before `--`.
    before = argv[: argv.index("--")] if "--" in argv else argv
    if "--no-plugins" not in before:
        _load_plugins(manager)
    found = {}
    for batch in manager.hook.conda_subcommands():
        for subcommand in batch:
            found[subcommand.name.lower().strip()] = subcommand
    return found


def _list():
    """A built-in command, to show that conda still works."""
    print(f"# packages in environment at {sys.prefix}:")
    return 0


def main(argv):
    subcommands = _subcommands(argv)
    words = [a for a in argv if a != "--no-plugins"]
    usage = "usage: conda [-h] [-v] [--no-plugins] [-V] COMMAND ..."
    if not words or words[0] in ("-h", "--help"):
        print(usage + "\n\nconda is a tool for managing and deploying applications.\n")
        print("commands:")
        for name, summary in sorted(
            [("list", "List installed conda packages in a conda environment.")]
            + [(name, s.summary) for name, s in subcommands.items()]
        ):
            print(f"    {name:<18}{summary}")
        return 0
    command = words[0]
    if command == "--version":
        print(f"conda {conda.__version__}")
        return 0
    if command == "list":
        return _list()
    if command not in subcommands:
        choices = ", ".join(sorted(["list", *subcommands]))
        print(usage, file=sys.stderr)
        print(
            f"conda: error: argument COMMAND: invalid choice: '{command}' (choose from {choices})",
            file=sys.stderr,
        )
        return 2
    # conda hands over the remaining words as a list before 23.7, a tuple since.
    rest = words[1:]
    args = list(rest) if conda.__version__ == "23.1.0" else tuple(rest)
    result = subcommands[command].action(args)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except SystemExit:
        raise
    except Exception as err:
        # conda's exception handler, in short.
        print(f"An unexpected error has occurred.\n{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
