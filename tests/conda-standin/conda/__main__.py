"""STAND-IN for `python -m conda`: plugin subcommand dispatch as conda 26.7
does it (see ../README.md)."""

import sys

import pluggy

from conda.plugins import CondaSpecs


def _subcommands(argv):
    manager = pluggy.PluginManager("conda")
    manager.add_hookspecs(CondaSpecs)
    # conda reads --no-plugins anywhere before `--`.
    before = argv[: argv.index("--")] if "--" in argv else argv
    if "--no-plugins" not in before:
        manager.load_setuptools_entrypoints("conda")
    found = {}
    for batch in manager.hook.conda_subcommands():
        for subcommand in batch:
            found[subcommand.name.lower().strip()] = subcommand
    return found


def main(argv):
    subcommands = _subcommands(argv)
    words = [a for a in argv if a != "--no-plugins"]
    usage = "usage: conda [-h] [-v] [--no-plugins] [-V] COMMAND ..."
    if not words or words[0] in ("-h", "--help"):
        print(usage + "\n\nconda is a tool for managing and deploying applications.\n")
        print("commands:")
        for name, subcommand in sorted(subcommands.items()):
            print(f"    {name:<18}{subcommand.summary}")
        return 0
    command = words[0]
    if command not in subcommands:
        choices = ", ".join(sorted(subcommands))
        print(usage, file=sys.stderr)
        print(
            f"conda: error: argument COMMAND: invalid choice: '{command}' (choose from {choices})",
            file=sys.stderr,
        )
        return 2
    result = subcommands[command].action(tuple(words[1:]))
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
