"""The xarray <-> torch boundary.

Finds time and spatial coordinates (CF metadata through cf-xarray first, common
names second), builds a :class:`~xlevda.surrogates.schema.SurrogateSchema` from a
training Dataset and maps coordinates to normalized query points and times to
``(step, fraction)`` pairs (:mod:`xlevda._times`, re-exported here).
:mod:`xlevda._frames` streams training frames from a Dataset.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import xarray as xr

from xlevda._coords import (
    SpatialLayout,
    coord_points,
    grid_coords,
    match_coords,
    spatial_layout,
    unwrap_longitudes,
)
from xlevda._times import frame_times, time_numbers, times_to_steps
from xlevda.errors import CoordinateError, ShapeError, VariableError
from xlevda.surrogates.schema import (
    LATITUDE_UNITS,
    LONGITUDE_UNITS,
    Affine,
    SurrogateSchema,
    is_longitude,
)

__all__ = [
    "SpatialLayout",
    "build_schema",
    "check_params",
    "coord_points",
    "domain_tolerance",
    "find_time",
    "frame_times",
    "grid_coords",
    "spatial_layout",
    "times_to_steps",
    "to_points",
]

_TIME_NAMES = ("time", "t", "times")
_ATTR_KEYS = ("units", "standard_name", "long_name", "axis")


def _attrs(obj) -> dict:
    return {k: v for k, v in obj.attrs.items() if k in _ATTR_KEYS and isinstance(v, str)}


def find_time(obj: xr.Dataset | xr.DataArray) -> str:
    """Name of the time coordinate of ``obj``.

    CF metadata first (``standard_name: time``, ``axis: T``), then the names
    ``time``, ``t``, ``times``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> find_time(xr.Dataset(coords={"time": np.arange(3)}))
    'time'
    """
    cf_names = obj.cf.coordinates.get("time", []) + obj.cf.axes.get("T", [])
    for name in [*cf_names, *_TIME_NAMES]:
        if name in obj.coords:
            return str(name)
    raise CoordinateError(
        f"no time coordinate found among coordinates {sorted(map(str, obj.coords))}: expected "
        "a coordinate with standard_name 'time' or axis 'T', or one named 'time'"
    )


def domain_tolerance(dtypes: Sequence[np.dtype], schema: SurrogateSchema) -> float:
    """Slack of the domain test (normalized units) for coordinates stored in ``dtypes``.

    A grid stored in float32 rounds its values by up to ``eps * |value|``: the
    tolerance is twice that at the domain's largest magnitude, per coordinate, in
    normalized units (at least ``1e-9``), so the training grid cast to float32 lies
    inside its own domain.

    Examples
    --------
    >>> s = SurrogateSchema.minimal(n_frames=3)  # coordinates in [-1, 1]
    >>> domain_tolerance([np.dtype("float64")], s), domain_tolerance([np.dtype("float32")], s)
    (1e-09, 2.384185791015625e-07)
    """
    tolerance = 1e-9
    offset, scale = schema.coord_norm.offset, schema.coord_norm.scale
    for j, dtype in enumerate(dtypes):
        if np.dtype(dtype).kind == "f" and j < len(scale) and scale[j] > 0:
            eps = float(np.finfo(dtype).eps)
            tolerance = max(tolerance, 2 * eps * (abs(offset[j]) + scale[j]) / scale[j])
    return tolerance


def to_points(
    obj: xr.Dataset | xr.DataArray, schema: SurrogateSchema
) -> tuple[np.ndarray, SpatialLayout]:
    """Normalized query points of ``obj``'s spatial locations.

    The surrogate's coordinates are found in ``obj`` by name, CF identity or common
    name (:func:`xlevda._coords.match_coords`); ``layout.coords`` holds ``obj``'s names.
    Longitudes are taken modulo 360 degrees (:meth:`SurrogateSchema.embed`).  The domain
    test allows the rounding of the coordinates' dtype (:func:`domain_tolerance`): the
    training grid stored in float32 is inside.

    Returns
    -------
    points : ndarray, shape (N_pts, n_coords)
        Normalized coordinates (``[-1, 1]`` on the training domain).
    layout : SpatialLayout

    Raises
    ------
    CoordinateError
        If a coordinate is missing, empty, holds NaN, infinite or non-numeric values, or
        a location lies outside the training domain: decoding there would be
        extrapolation.
    """
    exclude = [t for t in ("time",) if t in obj.coords and t not in schema.coords]
    layout = spatial_layout(obj, match_coords(obj, schema, what="locations", exclude=exclude))
    for c in layout.coords:
        if obj[c].size == 0:
            raise CoordinateError(
                f"spatial coordinate {c!r} is empty: expected at least one location"
            )
    xyz = coord_points(obj, layout)
    tolerance = domain_tolerance([obj[c].dtype for c in layout.coords], schema)
    pts, inside = schema.embed(xyz, tolerance)
    if not inside.all():
        i = int(np.argmin(inside))
        names = enumerate(schema.coords)
        bounds = ", ".join(f"{c} in {_coord_bounds(schema, j)}" for j, c in names)
        raise CoordinateError(
            f"{int((~inside).sum())} location(s) lie outside the surrogate's domain: e.g. "
            + ", ".join(f"{c}={xyz[i, j]:.6g}" for j, c in enumerate(layout.coords))
            + f"; expected {bounds}"
        )
    return pts, layout


def _coord_bounds(schema: SurrogateSchema, j: int) -> str:
    """The valid interval of coordinate ``j`` as text, for error messages."""
    if schema.geometry == "sphere":
        return "[-90, 90]" if j == 0 else "any longitude"
    lo = schema.coord_norm.offset[j] - schema.coord_norm.scale[j]
    hi = schema.coord_norm.offset[j] + schema.coord_norm.scale[j]
    return f"[{lo:.6g}, {hi:.6g}]"


def _time_axis(ds: xr.Dataset, time: str) -> tuple[str, float, str, bool]:
    values = np.asarray(ds[time].values)
    if values.ndim != 1 or values.size < 2:
        raise CoordinateError(
            f"time coordinate {time!r} must be 1-D with at least 2 frames, got shape {values.shape}"
        )
    is_dt = np.issubdtype(values.dtype, np.datetime64)
    t = time_numbers(values, is_dt, time)
    d = np.diff(t)
    if (d <= 0).any() or not np.allclose(d, d[0], rtol=1e-6, atol=0):
        raise CoordinateError(
            f"time coordinate {time!r} must be sorted and uniformly spaced for training "
            f"(one latent step per frame), got spacings from {d.min():.6g} to {d.max():.6g}"
        )
    origin = str(values[0].astype("datetime64[ns]")) if is_dt else repr(float(values[0]))
    units = "s" if is_dt else str(ds[time].attrs.get("units", "1"))
    return origin, float(d.mean()), units, is_dt


def _is_global_lat_lon(ds: xr.Dataset, layout: SpatialLayout) -> bool:
    """Whether a grid is latitude x longitude covering every longitude (evenly spaced)."""
    if not layout.gridded or len(layout.coords) != 2:
        return False
    lat, lon = (_attrs(ds[c]) for c in layout.coords)
    is_lat = (
        lat.get("standard_name") == "latitude" or lat.get("units", "").lower() in LATITUDE_UNITS
    )
    is_lon = (
        lon.get("standard_name") == "longitude" or lon.get("units", "").lower() in LONGITUDE_UNITS
    )
    if not (is_lat and is_lon):
        return False
    lons = np.sort(np.mod(np.asarray(ds[layout.coords[1]].values, float), 360.0))
    if lons.size < 3:
        return False
    spacing = 360.0 / lons.size
    steps = np.diff(np.append(lons, lons[0] + 360.0))
    return bool(np.allclose(steps, spacing, rtol=0.0, atol=1e-3 * spacing))  # float32-safe


def check_params(ds: xr.Dataset, params: list[str], run_dim: str) -> None:
    """Each parameter: on ``run_dim`` alone, real and finite.

    Raises
    ------
    VariableError
        Naming the parameter, what it holds and what is expected.
    """
    for p in params:
        if p not in ds.variables:
            on_run = sorted(str(k) for k, v in ds.variables.items() if v.dims == (run_dim,))
            raise VariableError(
                f"parameter {p!r} is not a coordinate or variable of the dataset; available on "
                f"{run_dim!r}: {on_run}"
            )
        if ds[p].dims != (run_dim,):
            raise VariableError(
                f"parameter {p!r} must be 1-D over {run_dim!r}, got dims {ds[p].dims}"
            )
        values = np.asarray(ds[p].values)
        if values.dtype.kind not in "iuf":
            raise VariableError(
                f"parameter {p!r} must hold real numbers (int or float), got dtype {values.dtype}"
            )
        if not np.isfinite(values.astype(float)).all():
            raise VariableError(f"parameter {p!r} holds NaN or infinite values")


def build_schema(
    ds: xr.Dataset,
    params: Sequence[str],
    variables: Sequence[str] | None = None,
    *,
    run_dim: str = "run",
    allow_nan: bool = False,
    coords: Sequence[str] | None = None,
) -> SurrogateSchema:
    """Schema of a training Dataset: names, normalizations, time axis, parameter ranges.

    Statistics (per-variable mean and standard deviation, parameter and
    coordinate ranges) are computed in one pass, lazily for dask-backed data.  A
    global latitude-longitude grid (CF latitude and longitude, evenly spaced
    longitudes covering 360 degrees) gets the ``"sphere"`` geometry: points are
    embedded on the unit sphere; any other layout is a ``"plane"``.  On the plane a
    longitude range across the dateline (e.g. 170..180, -180..-170) is unwrapped into
    one interval (170..190) for ``coord_norm``; ``grid`` keeps the values as given.

    Parameters
    ----------
    ds : Dataset
        Training runs with dims ``(run_dim, time, *spatial)``.
    params : sequence of str
        Names of coordinates (or variables) on ``run_dim`` holding each run's parameters.
    variables : sequence of str, optional
        Fields to learn; all data variables with the time dimension by default.
    run_dim : str
        Dimension enumerating runs.
    allow_nan : bool
        Accept NaN in the variables (missing values); the statistics then skip them.
    coords : sequence of str, optional
        The spatial coordinates, in decoder order: 1-D dimension coordinates (a grid),
        coordinates over the same dimensions (a curvilinear grid, e.g. 2-D latitude and
        longitude) or over one dimension (points).  Detected when omitted (parameters
        and coordinates on ``run_dim`` or time are never space).
    """
    time = find_time(ds)
    layout = spatial_layout(ds, coords, exclude=params, exclude_dims=(run_dim, *ds[time].dims))
    if run_dim not in ds.dims:
        raise CoordinateError(
            f"run dimension {run_dim!r} not found; dimensions are {sorted(map(str, ds.dims))}"
        )
    variables = _check_variables(ds, variables, (run_dim, time, *layout.dims))
    param_vals = []
    check_params(ds, params, run_dim)
    for p in params:
        param_vals.append(np.asarray(ds[p].values, float))
    pv = np.stack(param_vals, -1) if param_vals else np.zeros((ds.sizes[run_dim], 0))

    import dask

    stats = dask.compute(*[(ds[v].mean(), ds[v].std(), ds[v].isnull().sum()) for v in variables])
    means, stds = [], []
    for v, (m, s, n_nan) in zip(variables, stats, strict=True):
        if int(n_nan) > 0 and not allow_nan:
            raise VariableError(
                f"variable {v!r} holds {int(n_nan)} NaN value(s): training data must be complete"
            )
        means.append(float(m))
        stds.append(float(s))

    origin, step, units, is_dt = _time_axis(ds, time)
    return SurrogateSchema(
        variables=tuple(variables),
        variable_attrs=tuple(_attrs(ds[v]) for v in variables),
        output_norm=Affine.from_moments(means, stds),
        **_space(ds, layout),
        params=tuple(params),
        param_attrs=tuple(_attrs(ds[p]) for p in params),
        param_norm=Affine.from_range(pv.min(0), pv.max(0)),
        param_range=tuple(
            (float(lo), float(hi)) for lo, hi in zip(pv.min(0), pv.max(0), strict=True)
        ),
        time_origin=origin,
        time_step=step,
        time_units=units,
        time_is_datetime=is_dt,
        n_frames=int(ds.sizes[time]),
        frame_times=tuple(str(v) for v in np.asarray(ds[time].values).astype("datetime64[ns]"))
        if is_dt
        else tuple(float(v) for v in np.asarray(ds[time].values)),
        attrs={
            k: v.item() if isinstance(v, np.generic) else v
            for k, v in ds.attrs.items()
            if isinstance(v, str | int | float | np.integer | np.floating)
        },
    )


def _space(ds: xr.Dataset, layout: SpatialLayout) -> dict:
    """The schema's spatial fields: coordinate names, attributes and normalization (plane
    longitudes unwrapped), the grid (with its shape when curvilinear) and the geometry."""
    xyz = coord_points(ds, layout)
    attrs = tuple(_attrs(ds[c]) for c in layout.coords)
    sphere = _is_global_lat_lon(ds, layout)
    if not sphere:
        for j, (c, a) in enumerate(zip(layout.coords, attrs, strict=True)):
            if is_longitude(c, a):
                xyz[:, j] = unwrap_longitudes(xyz[:, j])
    grid, shape = {}, {}
    if layout.gridded:
        grid = {c: tuple(np.asarray(ds[c].values, float).tolist()) for c in layout.coords}
    elif layout.curvilinear:
        shape = {d: int(ds.sizes[d]) for d in layout.dims}
        raw = coord_points(ds, layout)
        grid = {c: tuple(raw[:, j].tolist()) for j, c in enumerate(layout.coords)}
    return {
        "coords": layout.coords,
        "coord_attrs": attrs,
        "coord_norm": Affine.from_range(xyz.min(0), xyz.max(0)),
        "grid": grid,
        "grid_shape": shape,
        "geometry": "sphere" if sphere else "plane",
    }


def _check_variables(
    ds: xr.Dataset, variables: Sequence[str] | None, dims: tuple[Hashable, ...]
) -> list[str]:
    if variables is None:
        variables = [str(v) for v, da in ds.data_vars.items() if set(da.dims) == set(dims)]
        if not variables:
            raise VariableError(f"no data variable has the dimensions {dims}")
    for v in variables:
        if v not in ds.data_vars:
            raise VariableError(
                f"variable {v!r} not found; data variables are {sorted(map(str, ds.data_vars))}"
            )
        if set(ds[v].dims) != set(dims):
            raise ShapeError(f"variable {v!r} has dimensions {ds[v].dims}, expected {dims}")
    return list(variables)
