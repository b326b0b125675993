"""Spatial coordinates of a Dataset: which they are, how they are laid out, and which of
them are a surrogate's.

*Detection* (training archives): CF metadata through cf-xarray (latitude and longitude,
then axes Y and X), then the names lat/lon, latitude/longitude, y/x.  Coordinates on the
run or time dimension, and parameters, are never taken as space.

*Layouts*: a grid of 1-D dimension coordinates, a curvilinear grid (coordinates sharing
several dimensions, such as 2-D ``lat(y, x)`` and ``lon(y, x)``), or scattered points
(coordinates sharing one dimension).

*Matching* (observations, targets, ``where=``): each spatial coordinate of a surrogate
is found in a Dataset by an explicit ``coords=`` entry, else by its name, else by its CF
identity (latitude or longitude, else standard name, else axis), else by a common name
(lat/latitude, lon/longitude, x, y); several candidates or none raise an error naming
the coordinate, what was found and what is expected.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import xarray as xr

from xlevda.errors import CoordinateError, XlevdaError
from xlevda.surrogates.schema import SurrogateSchema
from xlevda.validate import real_array

__all__ = [
    "SpatialLayout",
    "coord_points",
    "grid_coords",
    "match_coords",
    "renamed",
    "spatial_layout",
    "spatial_names",
    "unwrap_longitudes",
]

_SPATIAL_NAME_PAIRS = (("lat", "lon"), ("latitude", "longitude"), ("y", "x"))
_COMMON_NAMES = (
    ("lat", "latitude", "nav_lat"),
    ("lon", "longitude", "long", "nav_lon"),
    ("y", "yc", "northing"),
    ("x", "xc", "easting"),
)
"""Names that mean the same coordinate, for matching when neither name nor CF metadata do."""


def spatial_names(
    obj: xr.Dataset | xr.DataArray,
    exclude: Collection[str] = (),
    exclude_dims: Collection[str] = (),
) -> tuple[str, str]:
    """The two spatial coordinates of ``obj``, in decoder order (latitude or y first).

    Parameters
    ----------
    obj : Dataset or DataArray
    exclude : collection of str
        Names never taken as space (the parameters of a training archive).
    exclude_dims : collection of str
        Coordinates over any of these dimensions (run, time) are never space.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset(coords={"y": [0.0, 1.0], "x": [0.0, 1.0, 2.0],
    ...     "src_lat": ("run", [1.0, 2.0], {"units": "degrees_north"}),
    ...     "src_lon": ("run", [1.0, 2.0], {"units": "degrees_east"})})
    >>> spatial_names(ds, exclude_dims=["run"])
    ('y', 'x')
    """
    skip, skip_dims = set(exclude), set(exclude_dims)

    def usable(name) -> bool:
        return name in obj.coords and name not in skip and not set(obj[name].dims) & skip_dims

    def best(names: list) -> str | None:
        # dimension coordinates first, scalars last
        names = sorted(filter(usable, names), key=lambda n: (n not in obj.dims, obj[n].ndim == 0))
        return str(names[0]) if names else None

    cf_coords, cf_axes = obj.cf.coordinates, obj.cf.axes
    candidates = [
        (best(cf_coords.get("latitude", [])), best(cf_coords.get("longitude", []))),
        (best(cf_axes.get("Y", [])), best(cf_axes.get("X", []))),
        *_SPATIAL_NAME_PAIRS,
    ]
    for ycoord, xcoord in candidates:
        if ycoord is not None and xcoord is not None and usable(ycoord) and usable(xcoord):
            return str(ycoord), str(xcoord)
    ignored = sorted(str(c) for c in obj.coords if not usable(c))
    raise CoordinateError(
        f"no spatial coordinates found among coordinates "
        f"{sorted(str(c) for c in obj.coords if usable(c))} (parameters and coordinates on "
        f"the run or time dimension are not space: {ignored}): expected latitude/longitude "
        "(standard_name or names lat/lon) or projection coordinates y/x (axis Y/X); or name "
        "them with coords=[...]"
    )


@dataclass(frozen=True)
class SpatialLayout:
    """Where the spatial values of a Dataset live.

    Attributes
    ----------
    coords : tuple of str
        Coordinate names in decoder order, e.g. ``("lat", "lon")``.
    dims : tuple of str
        Spatial dimensions of the data variables: ``("lat", "lon")`` for a grid,
        ``("y", "x")`` for a curvilinear grid with coordinates ``lat(y, x)``,
        ``lon(y, x)``, ``("point",)`` for scattered points.
    gridded : bool
        Whether each coordinate is its own 1-D dimension.
    """

    coords: tuple[str, ...]
    dims: tuple[str, ...]
    gridded: bool

    @property
    def curvilinear(self) -> bool:
        """Whether the coordinates share several dimensions (one location per cell)."""
        return not self.gridded and len(self.dims) > 1


def spatial_layout(
    obj: xr.Dataset | xr.DataArray,
    coords: Sequence[str] | None = None,
    *,
    exclude: Collection[str] = (),
    exclude_dims: Collection[str] = (),
) -> SpatialLayout:
    """Detect the spatial coordinates and whether the data are gridded or scattered.

    Parameters
    ----------
    obj : Dataset or DataArray
        Data with either 1-D dimension coordinates (a grid), coordinates sharing
        several dimensions (a curvilinear grid) or coordinates that share one
        dimension (points).
    coords : sequence of str, optional
        The coordinate names to use, in decoder order; detected when omitted
        (:func:`spatial_names`).
    exclude, exclude_dims : collection of str
        For detection: names never taken as space, and dimensions whose coordinates
        are never space (:func:`spatial_names`).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset(coords={"lat": np.arange(3.0), "lon": np.arange(4.0)})
    >>> spatial_layout(ds)
    SpatialLayout(coords=('lat', 'lon'), dims=('lat', 'lon'), gridded=True)
    >>> mesh = ds.lat * ds.lon
    >>> spatial_layout(xr.Dataset(coords={"la": mesh, "lo": mesh}), ["la", "lo"]).curvilinear
    True
    """
    names = tuple(coords) if coords is not None else spatial_names(obj, exclude, exclude_dims)
    for name in names:
        if name not in obj.coords:
            raise CoordinateError(
                f"spatial coordinate {name!r} not found; coordinates are "
                f"{sorted(map(str, obj.coords))}"
            )
    dims = [tuple(map(str, obj[name].dims)) for name in names]
    if all(d == (name,) for d, name in zip(dims, names, strict=True)):
        return SpatialLayout(names, names, gridded=True)
    if dims[0] and all(len(d) == len(dims[0]) and set(d) == set(dims[0]) for d in dims):
        return SpatialLayout(names, dims[0], gridded=False)
    raise CoordinateError(
        f"spatial coordinates {names} have dimensions {dims}: expected either 1-D dimension "
        "coordinates (a grid), coordinates over the same dimensions (a curvilinear grid) or "
        "coordinates sharing one point dimension"
    )


def coord_points(obj: xr.Dataset | xr.DataArray, layout: SpatialLayout) -> np.ndarray:
    """Physical coordinates of every spatial location, ``(N_pts, n_coords)``, C order.

    Grid coordinates are expanded to their mesh (the first coordinate varying slowest);
    curvilinear and point coordinates are flattened in C order over ``layout.dims``.
    """
    values = [
        real_array(
            f"spatial coordinate {c!r}",
            obj[c].transpose(*layout.dims).values if not layout.gridded else obj[c].values,
            CoordinateError,
            nan=False,
        )
        for c in layout.coords
    ]
    if layout.gridded:
        mesh = np.meshgrid(*values, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=-1)
    return np.stack([v.ravel() for v in values], axis=-1)


def grid_coords(schema: SurrogateSchema) -> dict[str, tuple]:
    """The training grid's coordinates as ``{name: (dims, values, attrs)}`` for xarray:
    1-D on their own dimensions, or 2-D (curvilinear) over ``schema.grid_shape``; empty
    for a surrogate trained on points.

    Examples
    --------
    >>> import dataclasses
    >>> s = SurrogateSchema.minimal(2, coords=("lat", "lon"))
    >>> c = grid_coords(dataclasses.replace(s, grid={"lat": (0.0, 1.0), "lon": (2.0, 3.0)},
    ...     grid_shape={"y": 1, "x": 2}))
    >>> c["lon"][0], c["lon"][1].tolist()
    (('y', 'x'), [[2.0, 3.0]])
    """
    if not schema.grid:
        return {}
    shape = tuple(schema.grid_shape.values())
    out = {}
    for c, attrs in zip(schema.coords, schema.coord_attrs, strict=True):
        values = np.asarray(schema.grid[c], dtype=float)
        if schema.grid_shape:
            out[c] = (tuple(schema.grid_shape), values.reshape(shape), dict(attrs))
        else:
            out[c] = ((c,), values, dict(attrs))
    return out


def unwrap_longitudes(values: np.ndarray) -> np.ndarray:
    """Longitudes (degrees) as one interval: across the dateline or Greenwich, whole turns
    added after the widest gap; returned as given when they already are one interval.

    Examples
    --------
    >>> unwrap_longitudes(np.array([170.0, 175.0, 180.0, -175.0])).tolist()
    [170.0, 175.0, 180.0, 185.0]
    >>> unwrap_longitudes(np.array([-10.0, 0.0, 10.0])).tolist()
    [-10.0, 0.0, 10.0]
    """
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return values
    turn = np.sort(np.mod(values, 360.0))
    gaps = np.diff(np.append(turn, turn[0] + 360.0))
    start = turn[(int(np.argmax(gaps)) + 1) % turn.size]
    unwrapped = start + np.mod(values - start, 360.0)
    span = np.ptp(values)
    return values if span <= np.ptp(unwrapped) * (1 + 1e-12) else unwrapped


def _cf_tags(obj: xr.Dataset) -> dict[str, list[str]]:
    """CF identities of the coordinates of ``obj``: ``coordinate:<latitude|longitude|..>``,
    ``standard_name:<name>`` and ``axis:<X|Y|Z>``, per coordinate name (cf-xarray)."""
    tags: dict[str, list[str]] = {str(c): [] for c in obj.coords}
    kinds = (
        ("coordinate", obj.cf.coordinates),
        ("standard_name", obj.cf.standard_names),
        ("axis", obj.cf.axes),
    )
    for kind, found in kinds:
        for key, names in found.items():
            for n in names:
                if str(n) in tags and not (kind == "axis" and key == "T"):
                    tags[str(n)].append(f"{kind}:{key}")
    return tags


def _schema_tags(schema: SurrogateSchema) -> list[list[str]]:
    """CF identities of the surrogate's coordinates, from the attributes it stores."""
    pairs = zip(schema.coords, schema.coord_attrs, strict=True)
    ds = xr.Dataset(coords={c: ((), 0.0, dict(a)) for c, a in pairs})
    tags = _cf_tags(ds)
    return [tags[c] for c in schema.coords]


def _override(
    coords: Mapping[str, str] | Sequence[str], schema: SurrogateSchema, error, what: str
) -> dict[str, str]:
    """``coords=`` as ``{surrogate coordinate: name in the data}``, checked."""
    if isinstance(coords, Mapping):
        given = {str(k): v for k, v in coords.items()}
    elif isinstance(coords, Sequence) and not isinstance(coords, str | bytes):
        if len(coords) != len(schema.coords):
            raise error(
                f"coords={list(coords)!r} names {len(coords)} coordinate(s): expected one per "
                f"spatial coordinate of the surrogate {list(schema.coords)}, or a mapping "
                "{surrogate coordinate: name}"
            )
        given = dict(zip(schema.coords, coords, strict=True))
    else:
        raise error(
            f"coords must be a mapping {{surrogate coordinate: name in the {what}}} or a list "
            f"of names, got {coords!r}"
        )
    unknown = sorted(set(given) - set(schema.coords))
    if unknown:
        raise error(
            f"coords names {unknown}, not spatial coordinates of the surrogate: expected some "
            f"of {list(schema.coords)}"
        )
    if any(not isinstance(v, str) for v in given.values()):
        raise error(f"coords must map to coordinate names (strings), got {given!r}")
    if len(set(given.values())) < len(given):
        raise error(f"coords must name a different coordinate for each, got {given!r}")
    return given


def match_coords(
    obj: xr.Dataset | xr.DataArray,
    schema: SurrogateSchema,
    coords: Mapping[str, str] | Sequence[str] | None = None,
    *,
    error: type[XlevdaError] = CoordinateError,
    what: str = "data",
    exclude: Collection[str] = (),
) -> tuple[str, ...]:
    """The coordinates of ``obj`` that are the surrogate's spatial coordinates, in its order.

    Each surrogate coordinate is the ``coords`` entry when given, else the coordinate of
    the same name, else the one coordinate with its CF identity (latitude or longitude
    by standard name or units; else its standard name; else its axis), else the one
    coordinate with a common name of it (lat/latitude/nav_lat, lon/longitude/long/nav_lon,
    y/yc/northing, x/xc/easting).

    Parameters
    ----------
    obj : Dataset or DataArray
    schema : SurrogateSchema
    coords : mapping or sequence of str, optional
        ``{surrogate coordinate: name in obj}`` (some or all), or one name per surrogate
        coordinate in its order.
    error : XlevdaError subclass
        Raised for a coordinate that matches none or several.
    what : str
        What ``obj`` is, for messages ("observations", "target").
    exclude : collection of str
        Coordinates of ``obj`` that are not positions (its time coordinate).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> s = SurrogateSchema.minimal(2, coords=("lat", "lon"))
    >>> obs = xr.Dataset(coords={"latitude": ("obs", [1.0]), "longitude": ("obs", [2.0])})
    >>> match_coords(obs, s)
    ('latitude', 'longitude')
    >>> match_coords(obs.rename(latitude="yy"), s, error=ValueError)
    Traceback (most recent call last):
    ...
    ValueError: data: no coordinate matches the surrogate's spatial coordinate 'lat': \
found coordinates ['longitude', 'yy'] (none named 'lat', none with its CF identity [], \
none named one of ['lat', 'latitude', 'nav_lat']); expected one of these, or name it with \
coords={'lat': name}
    """
    given = {} if coords is None else _override(coords, schema, error, what)
    taken: dict[str, str] = {}
    pool = [str(c) for c in obj.coords if str(c) not in set(exclude)]
    tags = _cf_tags(obj if isinstance(obj, xr.Dataset) else obj.coords.to_dataset())
    for c, own in zip(schema.coords, _schema_tags(schema), strict=True):
        if c in given:
            if given[c] not in obj.coords:
                raise error(
                    f"coords={{{c!r}: {given[c]!r}}}: {given[c]!r} is not a coordinate of the "
                    f"{what}, which has {sorted(pool)}"
                )
            taken[c] = given[c]
            continue
        free = [n for n in pool if n not in taken.values() and n not in given.values()]
        taken[c] = _match_one(c, own, free, tags, error, what)
    return tuple(taken[c] for c in schema.coords)


def _match_one(
    c: str, own: list[str], free: list[str], tags: dict[str, list[str]], error, what: str
) -> str:
    """The one coordinate among ``free`` that is surrogate coordinate ``c`` (see
    :func:`match_coords`)."""
    if c in free:
        return c
    for kind in ("coordinate", "standard_name", "axis"):
        mine = [t for t in own if t.startswith(kind + ":")]
        if not mine:
            continue
        found = [n for n in free if set(mine) & set(tags.get(n, []))]
        if found:
            return _single(found, c, f"by {mine[0].replace(':', ' ')}", error, what)
    group = next((g for g in _COMMON_NAMES if c.lower() in g), (c.lower(),))
    found = [n for n in free if n.lower() in group]
    if found:
        return _single(found, c, f"common names {list(group)}", error, what)
    raise error(
        f"{what}: no coordinate matches the surrogate's spatial coordinate {c!r}: found "
        f"coordinates {sorted(free)} (none named {c!r}, none with its CF identity "
        f"[{', '.join(t.replace(':', ' ') for t in own)}], none named one of {list(group)}); "
        "expected one of these, or name it with "
        f"coords={{{c!r}: name}}"
    )


def _single(found: list[str], c: str, how: str, error, what: str) -> str:
    """The one name in ``found`` (non-empty), else an error: several match ``c``."""
    if len(found) > 1:
        raise error(
            f"{what}: coordinates {found} all match the surrogate's spatial coordinate {c!r} "
            f"({how}): expected one; name it with coords={{{c!r}: name}}"
        )
    return found[0]


def renamed(
    obj: xr.Dataset,
    schema: SurrogateSchema,
    coords: Mapping[str, str] | Sequence[str] | None = None,
    *,
    error: type[XlevdaError] = CoordinateError,
    what: str = "data",
    exclude: Collection[str] = (),
) -> xr.Dataset:
    """``obj`` with the coordinates :func:`match_coords` finds renamed to the surrogate's.

    Examples
    --------
    >>> import xarray as xr
    >>> s = SurrogateSchema.minimal(2, coords=("lat", "lon"))
    >>> obs = xr.Dataset(coords={"latitude": ("obs", [1.0]), "lon": ("obs", [2.0])})
    >>> sorted(renamed(obs, s).coords)
    ['lat', 'lon']
    """
    names = match_coords(obj, schema, coords, error=error, what=what, exclude=exclude)
    mapping = {n: c for n, c in zip(names, schema.coords, strict=True) if n != c}
    for n, c in mapping.items():
        if c in obj.variables or c in obj.dims:
            raise error(
                f"{what}: coordinate {n!r} is the surrogate's spatial coordinate {c!r}, but the "
                f"{what} also hold {c!r} as another variable or dimension: rename or drop it"
            )
    return obj.rename(mapping) if mapping else obj
