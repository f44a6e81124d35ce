"""STAND-IN for conda in conda-docker's plugin tests; see ../README.md.

Which conda it mirrors is chosen by $CONDA_STANDIN_VERSION (`main`, `23.1`
or `future`): that version's `conda.plugins` comes from ../versions/NAME/.
"""

import os
import sys

#: What `conda.__version__` says for each mirrored conda.
VERSIONS = {
    # conda's main branch at 0f64223fb8da4328457a69fe6483959dbb783152
    # (2026-08-21), 56 commits past 26.7.1: after conda/conda#16561.
    "main": "26.7.1.dev56+g0f64223",
    "23.1": "23.1.0",
    # A conda that has moved CondaSubcommand out of conda.plugins.types.
    "future": "99.0.0",
}

_version = os.environ.get("CONDA_STANDIN_VERSION", "main")
if _version not in VERSIONS:
    raise SystemExit(f"CONDA_STANDIN_VERSION must be one of {sorted(VERSIONS)}")
__version__ = VERSIONS[_version]
__path__.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "versions", _version))

# Real conda sets this on import (conda/__init__.py).
os.environ.setdefault("CONDA_ROOT", sys.prefix)
