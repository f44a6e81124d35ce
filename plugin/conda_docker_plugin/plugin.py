"""The `docker` subcommand: hands the command line to the conda-docker binary.

conda parses nothing after `docker`; the binary does all the work and prints
its own help and errors (as `conda docker ...`). What conda knows and the
binary cannot cheaply work out, the resolved configuration, travels in the
variables that `conda-docker --help` documents.
"""

import os
import shutil
import subprocess
import sys

from conda import plugins

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


@plugins.hookimpl
def conda_subcommands():
    """Registers `conda docker`."""
    yield plugins.CondaSubcommand(name="docker", summary=SUMMARY, action=run)
