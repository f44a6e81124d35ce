"""STAND-IN for conda in conda-docker's plugin tests; see ../README.md."""

import os
import sys

__version__ = "0.0.0+standin"

# Real conda sets this on import (conda/__init__.py).
os.environ.setdefault("CONDA_ROOT", sys.prefix)
