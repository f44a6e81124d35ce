"""The `docker` subcommand: hands the command line to the conda-docker binary.

conda parses nothing after `docker`; the binary does all the work and prints
its own help and errors (as `conda docker ...`). What conda knows and the
binary cannot cheaply work out, the resolved configuration, travels in the
variables that `conda-docker --help` documents.

This module is imported by every conda command, so nothing in it may raise:
an exception while conda imports a plugin, or inside its hook, fails every
conda command, not only `conda docker` (conda 23.1 turns the first into a
PluginError; every version lets the second through). conda's names are
therefore looked up inside `try`, and a conda that lacks them costs one
warning and the `docker` subcommand, nothing else.
"""

import os
import shutil
import subprocess
import sys

try:
    from conda.plugins import hookimpl
except Exception:  # a conda this plugin does not know: register nothing
    hookimpl = None

#: The executable this plugin runs.
BINARY = "conda-docker"

#: Tells the binary it runs as `conda docker`, so its help and errors say so.
INVOKED_AS = ("CONDA_DOCKER_INVOKED_AS", "conda")

SUMMARY = "Build a container image from a conda environment, without Docker."


def _bin_dirs(prefix):
    """Where a conda package puts executables in `prefix`."""
    if os.name == "nt":
        return [os.path.join(prefix, "Library", "bin"), os.path.join(prefix, "Scripts")]
    return [os.path.join(prefix, "bin")]


def find_binary():
    """The conda-docker executable: the one installed beside this plugin
    (in the prefix conda runs from), else the first on PATH.

    Returns (path or None, the places searched).
    """
    name = BINARY + (".exe" if os.name == "nt" else "")
    searched = []
    for folder in _bin_dirs(sys.prefix):
        candidate = os.path.join(folder, name)
        searched.append(folder)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate, searched
    searched.append("PATH")
    return shutil.which(BINARY), searched


def _conda_settings():
    """conda's resolved settings as the variables the binary reads.

    Each is read defensively: a setting an older conda lacks is left out
    rather than failing the command.
    """
    try:
        from conda.base.context import context
    except ImportError:
        return {}

    def get(name):
        try:
            return getattr(context, name)
        except Exception:  # a broken .condarc is conda's to report, not ours
            return None

    settings = {}
    active = get("active_prefix")
    if active:
        settings["CONDA_PREFIX"] = str(active)
    root = get("root_prefix")
    if root:
        settings["CONDA_ROOT"] = str(root)
    pkgs_dirs = get("pkgs_dirs")
    if pkgs_dirs:
        settings["CONDA_PKGS_DIRS"] = ",".join(str(d) for d in pkgs_dirs)
    envs_dirs = get("envs_dirs")
    if envs_dirs:
        settings["CONDA_ENVS_DIRS"] = os.pathsep.join(str(d) for d in envs_dirs)
    channels = get("channels")
    if channels:
        settings["CONDA_CHANNELS"] = ",".join(str(c) for c in channels)
    alias = get("channel_alias")
    # A Channel whose base_url has lost any login or token; an alias that
    # carries one is left for the binary to read from .condarc as written.
    if alias and not (getattr(alias, "token", None) or getattr(alias, "auth", None)):
        settings["CONDA_CHANNEL_ALIAS"] = str(getattr(alias, "base_url", alias))
    return settings


def run(args):
    """The subcommand's action: exec the binary with `args`.

    conda hands over the words after `docker` (a tuple; a list before conda
    23.7). conda also reads `-v`, `--json` and `--debug` wherever they are,
    unless they follow `--`: `conda docker -- build ...` keeps them ours, so
    that leading `--` is dropped here. The binary's exit code becomes
    conda's, since the binary replaces this process.
    """
    args = [str(a) for a in (args or [])]
    if args[:1] == ["--"]:
        args = args[1:]
    binary, searched = find_binary()
    if binary is None:
        print(
            f"error: conda docker needs the {BINARY} program, which is in none of "
            f"{', '.join(searched)}; install it with "
            f"`conda install -c conda-forge {BINARY}`",
            file=sys.stderr,
        )
        return 1
    env = dict(os.environ)
    env.update(_conda_settings())
    env[INVOKED_AS[0]] = INVOKED_AS[1]
    argv = [binary, *args]
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "nt":
        return subprocess.call(argv, env=env)
    os.execve(binary, argv, env)


def _conda_version():
    try:
        import conda

        return str(conda.__version__)
    except Exception:
        return "(version unknown)"


def _subcommand_type():
    """conda's CondaSubcommand, from `conda.plugins.types`: there since
    conda 22.11 (a NamedTuple in 23.1, a keyword-only dataclass since 26.5),
    and the only home left once conda 26.9 deleted the `conda.plugins`
    re-exports (conda/conda#16561)."""
    from conda.plugins.types import CondaSubcommand

    return CondaSubcommand


#: conda may ask for subcommands more than once per command; one warning.
_warned = []


def _warn(reason):
    if _warned:
        return
    _warned.append(reason)
    from . import __version__

    print(
        f"warning: `conda docker` is unavailable: conda-docker-plugin "
        f"{__version__} cannot register it with conda {_conda_version()} "
        f"({reason}); it needs conda >= 23.1, so upgrade conda or "
        f"conda-docker-plugin, or remove the plugin; other conda commands "
        f"are not affected",
        file=sys.stderr,
    )


def conda_subcommands():
    """Registers `conda docker`, or nothing (with a warning) on a conda
    whose plugin types this plugin cannot use."""
    try:
        subcommand = _subcommand_type()
        # Keyword arguments only: conda >= 26.5 refuses positional ones,
        # and no configure_parser, since conda 23.3 crashes on it.
        return [subcommand(name="docker", summary=SUMMARY, action=run)]
    except Exception as err:
        _warn(f"{type(err).__name__}: {err}")
        return []


if hookimpl is not None:
    conda_subcommands = hookimpl(conda_subcommands)
else:
    _warn("conda.plugins.hookimpl is missing")
