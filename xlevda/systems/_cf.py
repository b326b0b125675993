"""CF attribute dictionaries and global attributes shared by the benchmark systems."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = [
    "CONVENTIONS",
    "LAT_ATTRS",
    "LON_ATTRS",
    "RUN_ATTRS",
    "TIME_ATTRS",
    "X_ATTRS",
    "Y_ATTRS",
    "global_attrs",
    "xlevda_version",
]

CONVENTIONS = "CF-1.11"

LAT_ATTRS = {
    "standard_name": "latitude",
    "long_name": "latitude",
    "units": "degrees_north",
    "axis": "Y",
}
LON_ATTRS = {
    "standard_name": "longitude",
    "long_name": "longitude",
    "units": "degrees_east",
    "axis": "X",
}
X_ATTRS = {
    "standard_name": "projection_x_coordinate",
    "long_name": "eastward distance from the domain centre",
    "units": "m",
}
Y_ATTRS = {
    "standard_name": "projection_y_coordinate",
    "long_name": "northward distance from the domain centre",
    "units": "m",
}
TIME_ATTRS = {"standard_name": "time", "long_name": "time", "axis": "T"}
RUN_ATTRS = {"long_name": "simulation run index"}


@cache
def xlevda_version() -> str:
    """Installed version of xlevda, or ``"0+unknown"`` when running from a bare checkout."""
    try:
        return version("xlevda")
    except PackageNotFoundError:
        return "0+unknown"


def global_attrs(title: str, source: str, config: Any = None) -> dict[str, str]:
    """CF global attributes with provenance, and the config dataclass as JSON when given."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    release = xlevda_version()
    attrs = {
        "Conventions": CONVENTIONS,
        "title": title,
        "source": source,
        "history": f"{stamp} created by {source} (xlevda {release})",
        "xlevda_version": release,
    }
    if config is not None:
        attrs["config"] = json.dumps(asdict(config), sort_keys=True)
    return attrs
