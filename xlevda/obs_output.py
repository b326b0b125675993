"""The observations in the output Dataset: values, departures O-B and O-A, used flags.

Per observed variable ``v`` (one CF unit each), a dimension ``{v}_obs`` of its
observations in time order, with their time and position as coordinates
(``{v}_obs_time``, ``{v}_obs_<coord>``) and the variables

- ``{v}_obs_value``, ``{v}_obs_error_std``: the observation and its error (``v``'s units);
- ``{v}_obs_minus_background``, ``{v}_obs_minus_analysis``: ``y - mean_k H(x_k)`` of
  the window's background and analysis ensembles (:mod:`xlevda.departures`);
- ``{v}_obs_minus_analysis_field``, for methods with a field analysis (LEVDA's default,
  OI): ``y`` minus the members' mean of the analysis fields as output (the ensemble's
  decoded states, calibrated, plus the field analysis' increments; no draws);
- ``{v}_background_spread_at_obs``, ``{v}_analysis_spread_at_obs``: their members'
  standard deviation of ``H(x)``;
- ``{v}_obs_flag``: 0 used, 1 rejected by the gross-error check (:mod:`xlevda.quality_control`);
- ``{v}_obs_window``: the window whose values these are.

Positions are the model's normalized positions mapped back to its coordinates (plane:
its affine normalization, to round-off; sphere: latitude and longitude in -180..180).
Eager (numpy): observations x a few values.  Several cases: :func:`pad_cases`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from xlevda._obs import ObsTable
from xlevda.departures import CaseDepartures
from xlevda.surrogates.schema import SurrogateSchema

__all__ = [
    "FLAG_FILL",
    "observation_coords",
    "observation_dims",
    "observation_variables",
    "pad_cases",
]

FLAG_FILL = np.int8(-1)
"""The flag of the padding that :func:`pad_cases` adds (no observation)."""

_FLAG = {
    "flag_values": np.array([0, 1], np.int8),
    "flag_meanings": "used rejected_by_gross_error_check",
}


def positions(schema: SurrogateSchema, points: np.ndarray) -> np.ndarray:
    """Physical coordinates (N, len(coords)) of normalized ``points`` (inverse of ``embed``).

    Examples
    --------
    >>> s = SurrogateSchema.minimal(n_frames=2, coords=("x", "y"))
    >>> pts, _ = s.embed(np.array([[0.25, 0.5]]))
    >>> positions(s, pts).round(12).tolist()
    [[0.25, 0.5]]
    """
    if schema.geometry == "sphere":
        lat = np.rad2deg(np.arcsin(np.clip(points[:, 2], -1.0, 1.0)))
        lon = np.rad2deg(np.arctan2(points[:, 1], points[:, 0]))
        return np.stack([lat, lon], -1)
    return np.asarray(schema.coord_norm.denormalize(points), float)


def _time_attrs(schema: SurrogateSchema, times: np.ndarray) -> dict[str, Any]:
    if np.issubdtype(times.dtype, np.datetime64):
        return {
            "standard_name": "time",
            "long_name": "observation time",
            "units_metadata": "leap_seconds: none",
        }
    return {"long_name": "observation time", "units": schema.time_units}


def _variables(v: str, attrs: dict, values: dict[str, np.ndarray], dim: str) -> dict:
    """The DataArrays of observed variable ``v`` from ``values`` named by their suffix."""
    units = {"units": attrs["units"]} if "units" in attrs else {}
    about = "(members' mean of the model's decoded states, before any field analysis)"
    error_name = (
        {"standard_name": f"{attrs['standard_name']} standard_error"}
        if "standard_name" in attrs
        else {}
    )
    spec = {
        "obs_value": attrs
        | {"long_name": f"observed {v}", "ancillary_variables": f"{v}_obs_error_std {v}_obs_flag"},
        "obs_error_std": error_name | {"long_name": f"error std of observed {v}"} | units,
        "obs_minus_background": {"long_name": f"observed {v} minus background {about}"} | units,
        "obs_minus_analysis": {"long_name": f"observed {v} minus analysis {about}"} | units,
        "background_spread_at_obs": {
            "long_name": f"background ensemble std of {v} at the observation"
        }
        | units,
        "analysis_spread_at_obs": {"long_name": f"analysis ensemble std of {v} at the observation"}
        | units,
        "obs_flag": {"standard_name": "status_flag", "long_name": f"observed {v} used or rejected"}
        | _FLAG,
        "obs_window": {"long_name": "assimilation window of the departures and flag", "units": "1"},
    }
    return {
        f"{v}_{suffix}": xr.DataArray(values[suffix], dims=(dim,), attrs=a)
        for suffix, a in spec.items()
    }


def observation_dims(schema: SurrogateSchema, table: ObsTable) -> list[str]:
    """The observation dimension of each variable observed in ``table``."""
    return [f"{v}_obs" for c, v in enumerate(schema.variables) if (table.channel == c).any()]


def observation_variables(
    schema: SurrogateSchema,
    table: ObsTable,
    departures: CaseDepartures,
    field: np.ndarray | None = None,
) -> tuple[dict[str, xr.DataArray], dict[str, Any]]:
    """The observation variables and coordinates of one case (physical units).

    ``field`` (M,): the members' mean of the analysis fields at the observations
    (normalized), where the method has a field analysis: ``{v}_obs_minus_analysis_field``.
    """
    out: dict[str, xr.DataArray] = {}
    coords: dict[str, Any] = {}
    where = positions(schema, table.points)
    for c, (v, attrs) in enumerate(zip(schema.variables, schema.variable_attrs, strict=True)):
        rows = np.flatnonzero(table.channel == c)
        if not len(rows):
            continue
        dim = f"{v}_obs"
        scale, offset = schema.output_norm.scale[c], schema.output_norm.offset[c]
        value = table.value[rows]
        values = {
            "obs_value": value * scale + offset,
            "obs_error_std": table.std[rows] * scale,
            "obs_minus_background": (value - departures.background[0, rows]) * scale,
            "obs_minus_analysis": (value - departures.analysis[0, rows]) * scale,
            "background_spread_at_obs": departures.background[1, rows] * scale,
            "analysis_spread_at_obs": departures.analysis[1, rows] * scale,
            "obs_flag": np.where(departures.used[rows], 0, 1).astype(np.int8),
            "obs_window": departures.window[rows],
        }
        out |= _variables(v, dict(attrs), values, dim)
        if field is not None:
            out[f"{v}_obs_minus_analysis_field"] = xr.DataArray(
                (value - field[rows]) * scale,
                dims=(dim,),
                attrs={
                    "long_name": f"observed {v} minus the analysis field (members' mean of "
                    "the output's fields: the model's decoded states, calibrated, plus the "
                    "field analysis' increments, without its draws)",
                    **({"units": attrs["units"]} if "units" in attrs else {}),
                },
            )
        times = table.time[rows]
        coords[f"{dim}_time"] = (dim, times, _time_attrs(schema, times))
        for j, (name, cattrs) in enumerate(zip(schema.coords, schema.coord_attrs, strict=True)):
            coords[f"{dim}_{name}"] = (dim, where[rows, j], dict(cattrs))
    return out, coords


def observation_coords(ds: xr.Dataset) -> list[str]:
    """The coordinates of ``ds`` on its observation dimensions (those of a ``{v}_obs_value``).

    Examples
    --------
    >>> ds = xr.Dataset({"h_obs_value": ("h_obs", [1.0])}, coords={"h_obs_x": ("h_obs", [0.5])})
    >>> observation_coords(ds)
    ['h_obs_x']
    """
    dims = {str(n)[: -len("_value")] for n in ds.data_vars if str(n).endswith("_obs_value")} & set(
        map(str, ds.dims)
    )
    return [str(n) for n, c in ds.coords.items() if n not in ds.dims and set(c.dims) & dims]


def _fill(name: str, var: xr.Variable) -> Any:
    """What :func:`pad_cases` pads a variable with."""
    if var.dtype.kind == "M":
        return np.datetime64("NaT")
    if var.dtype.kind in "iu":
        return FLAG_FILL if name.endswith("_obs_flag") else -1
    return np.nan


def pad_cases(results: list[xr.Dataset], dims: list[str]) -> list[xr.Dataset]:
    """The cases' analyses with each observation dimension of ``dims`` padded to the longest
    (NaN, NaT; flags :data:`FLAG_FILL`, windows -1), so that they concatenate."""
    longest = {d: max(r.sizes.get(d, 0) for r in results) for d in dims}
    out = []
    for r in results:
        pad = {d: (0, n - r.sizes.get(d, 0)) for d, n in longest.items() if n > r.sizes.get(d, 0)}
        if pad:
            fills = {
                str(n): _fill(str(n), v) for n, v in r.variables.items() if set(v.dims) & set(pad)
            }
            r = r.pad(pad, constant_values=fills, keep_attrs=True)
        out.append(r)
    padded = {
        n for r in out for n in r.data_vars if n.endswith("_obs_flag") and (r[n] == FLAG_FILL).any()
    }
    for r in out:
        for n in padded & set(r.data_vars):
            r[n].attrs |= {
                "flag_values": np.array([FLAG_FILL, 0, 1], np.int8),
                "flag_meanings": "no_observation " + _FLAG["flag_meanings"],
            }
    return out
