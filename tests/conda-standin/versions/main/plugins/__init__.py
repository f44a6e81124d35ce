"""STAND-IN for conda.plugins on conda's main branch (0f64223, after
conda/conda#16561 deleted the deprecated re-exports): `hookimpl` only."""

from conda._standin import hookimpl

__all__ = ["hookimpl"]
