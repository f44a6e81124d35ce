"""`conda docker ...`: the conda plugin that runs the conda-docker binary."""

__version__ = "0.1.0"
