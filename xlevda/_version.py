"""The installed package's version (one place, so that modules need not import ``xlevda``)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["VERSION"]

try:
    VERSION = version("xlevda")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    VERSION = "0+unknown"
