"""What a surrogate knows about the data it was trained on (torch- and xarray-free).

The schema travels inside every saved surrogate.  It tells the xarray layer how
to turn coordinates, times, parameters and variables into the normalized tensors
the networks see, and back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["Affine", "SurrogateSchema", "is_latitude", "is_longitude"]

LATITUDE_UNITS = frozenset(
    {"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"}
)
"""CF spellings of latitude units (lower case)."""
LONGITUDE_UNITS = frozenset(
    {"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"}
)
"""CF spellings of longitude units (lower case)."""


def is_latitude(name: str, attrs: Mapping[str, Any]) -> bool:
    """Whether a coordinate is latitude: by standard name, units or the name lat/latitude.

    Examples
    --------
    >>> is_latitude("y", {"units": "degrees_north"}), is_latitude("y", {"units": "m"})
    (True, False)
    """
    units = str(attrs.get("units", "")).lower()
    return (
        attrs.get("standard_name") == "latitude"
        or units in LATITUDE_UNITS
        or str(name).lower() in ("lat", "latitude")
    )


def is_longitude(name: str, attrs: Mapping[str, Any]) -> bool:
    """Whether a coordinate is longitude: by standard name, units or the name lon/longitude.

    Examples
    --------
    >>> is_longitude("lon", {}), is_longitude("x", {"standard_name": "longitude"})
    (True, True)
    """
    units = str(attrs.get("units", "")).lower()
    return (
        attrs.get("standard_name") == "longitude"
        or units in LONGITUDE_UNITS
        or str(name).lower() in ("lon", "longitude")
    )


@dataclass(frozen=True)
class Affine:
    """Per-channel affine normalization ``normalized = (value - offset) / scale``.

    Examples
    --------
    >>> import numpy as np
    >>> a = Affine(offset=(1.0, 0.0), scale=(2.0, 4.0))
    >>> a.normalize(np.array([3.0, 4.0])).tolist()
    [1.0, 1.0]
    >>> a.denormalize(np.array([1.0, 1.0])).tolist()
    [3.0, 4.0]
    """

    offset: tuple[float, ...]
    scale: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.offset) != len(self.scale):
            raise ValueError(
                f"Affine offset has {len(self.offset)} entries but scale has {len(self.scale)}"
            )
        if any(not np.isfinite(s) or s <= 0 for s in self.scale):
            raise ValueError(f"Affine scale must be finite and > 0, got {self.scale}")

    def normalize(self, values):
        """Map values with channels on the last axis to normalized units."""
        return (values - np.asarray(self.offset)) / np.asarray(self.scale)

    def denormalize(self, values):
        """Inverse of :meth:`normalize`."""
        return values * np.asarray(self.scale) + np.asarray(self.offset)

    @classmethod
    def from_range(cls, lo, hi) -> Affine:
        """Map ``[lo, hi]`` per channel onto ``[-1, 1]`` (a zero-width range gets scale 1)."""
        lo, hi = np.atleast_1d(lo).astype(float), np.atleast_1d(hi).astype(float)
        half = (hi - lo) / 2
        half = np.where(half > 0, half, 1.0)
        return cls(tuple(((lo + hi) / 2).tolist()), tuple(half.tolist()))

    @classmethod
    def from_moments(cls, mean, std) -> Affine:
        """Standardize per channel (a zero std gets scale 1)."""
        mean, std = np.atleast_1d(mean).astype(float), np.atleast_1d(std).astype(float)
        std = np.where(std > 0, std, 1.0)
        return cls(tuple(mean.tolist()), tuple(std.tolist()))


@dataclass(frozen=True)
class SurrogateSchema:
    """Variables, coordinates, time axis and parameters a surrogate was trained on.

    Attributes
    ----------
    variables : tuple of str
        Output channels in decoder order.
    variable_attrs : tuple of dict
        CF attributes (units, standard_name, long_name) per variable.
    output_norm : Affine
        Per-variable normalization of decoder outputs.
    coords : tuple of str
        Spatial coordinate names in decoder-input order, e.g. ``("lat", "lon")``.
    coord_attrs : tuple of dict
        CF attributes per spatial coordinate.
    coord_norm : Affine
        Maps coordinates onto ``[-1, 1]`` (the training domain's bounding box).
    params : tuple of str
        Parameter names in vector-field-input order.
    param_attrs : tuple of dict
        Attributes per parameter.
    param_norm : Affine
        Parameter normalization (training range onto ``[-1, 1]``).
    param_range : tuple of (float, float)
        Range of each parameter seen in training: the default prior.
    time_origin : str
        Time of frame 0: ISO 8601 for datetime axes, or a number as text.
    time_step : float
        Time between frames in ``time_units`` (one latent step per frame).
    time_units : str
        ``"s"`` for datetime axes (seconds), else the numeric axis' units.
    time_is_datetime : bool
        Whether training times were ``datetime64``.
    n_frames : int
        Number of frames per training run.
    grid : dict of str to tuple of float
        Coordinate values of the training grid (empty for point data): 1-D values
        per coordinate, or on a curvilinear grid (see ``grid_shape``) each
        coordinate's values flattened in C order.  Longitudes as in the training data.
    frame_times : tuple of str or float
        Exact times of the training frames (ISO 8601 with nanoseconds for datetime
        axes), so that forecasts on the training frames carry the very same time
        labels as the training data; empty in files that predate it.
    geometry : str
        How coordinates become decoder inputs: ``"plane"`` (each coordinate mapped onto
        ``[-1, 1]`` by ``coord_norm``) or ``"sphere"`` (``coords`` are latitude and
        longitude in degrees, embedded as a point on the unit sphere, so the decoder
        has no seam at the dateline and no singularity at the poles).
    attrs : dict
        Free-form provenance (source dataset attributes, training notes).
    grid_shape : dict of str to int
        Curvilinear grid (2-D auxiliary coordinates such as ``lat(y, x)``,
        ``lon(y, x)``): the dimensions the coordinates share and their sizes, in
        order; empty for a grid of 1-D coordinates, for points and in files that
        predate it.

    Notes
    -----
    On the plane, a longitude (:func:`is_longitude`) is taken modulo 360 degrees:
    :meth:`embed` maps every longitude to the value nearest the training domain's
    centre, so a domain across the dateline is one interval (``coord_norm`` holds
    the unwrapped range, e.g. 170..190) and longitudes in -180..180 and 0..360 give
    the same query points.
    """

    variables: tuple[str, ...]
    variable_attrs: tuple[dict[str, Any], ...]
    output_norm: Affine
    coords: tuple[str, ...]
    coord_attrs: tuple[dict[str, Any], ...]
    coord_norm: Affine
    params: tuple[str, ...]
    param_attrs: tuple[dict[str, Any], ...]
    param_norm: Affine
    param_range: tuple[tuple[float, float], ...]
    time_origin: str
    time_step: float
    time_units: str
    time_is_datetime: bool
    n_frames: int
    grid: dict[str, tuple[float, ...]] = field(default_factory=dict)
    frame_times: tuple[str, ...] | tuple[float, ...] = ()
    geometry: str = "plane"
    attrs: dict[str, Any] = field(default_factory=dict)
    grid_shape: dict[str, int] = field(default_factory=dict)

    @classmethod
    def minimal(cls, n_frames: int, coords: tuple[str, ...] = ("x",)) -> SurrogateSchema:
        """A small schema for examples and tests: one variable ``h``, one parameter ``a``.

        Normalizations are the identity, ``a`` ranges over ``[-1, 1]`` and frames are one
        second apart from time 0.

        Examples
        --------
        >>> s = SurrogateSchema.minimal(5, coords=("x", "y"))
        >>> s.n_frames, s.n_coords, s.params
        (5, 2, ('a',))
        """
        n = len(coords)
        return cls(
            variables=("h",),
            variable_attrs=({},),
            output_norm=Affine((0.0,), (1.0,)),
            coords=tuple(coords),
            coord_attrs=tuple({} for _ in coords),
            coord_norm=Affine((0.0,) * n, (1.0,) * n),
            params=("a",),
            param_attrs=({},),
            param_norm=Affine((0.0,), (1.0,)),
            param_range=((-1.0, 1.0),),
            time_origin="0",
            time_step=1.0,
            time_units="s",
            time_is_datetime=False,
            n_frames=n_frames,
        )

    @property
    def n_channels(self) -> int:
        """Number of decoded variables."""
        return len(self.variables)

    def __post_init__(self) -> None:
        if self.geometry not in ("plane", "sphere"):
            raise ValueError(f"geometry must be 'plane' or 'sphere', got {self.geometry!r}")
        if self.geometry == "sphere" and len(self.coords) != 2:
            raise ValueError(
                f"geometry 'sphere' needs coords (latitude, longitude), got {self.coords}"
            )

    @property
    def n_coords(self) -> int:
        """Number of decoder inputs per query point (3 on the sphere, else one per coord)."""
        return 3 if self.geometry == "sphere" else len(self.coords)

    def embed(
        self, positions: np.ndarray, tolerance: float = 1e-9
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decoder inputs of physical positions, and which positions lie in the domain.

        Parameters
        ----------
        positions : ndarray, shape (N, len(coords))
            Physical coordinates in the order of :attr:`coords`.
        tolerance : float
            Slack of the domain test, in normalized units.

        Returns
        -------
        points : ndarray, shape (N, n_coords)
        inside : ndarray of bool, shape (N,)
            Plane: within the training bounding box.  Sphere: latitude within
            [-90, 90] (every longitude is inside; 0..360 and -180..180 agree).

        Examples
        --------
        >>> one = Affine((0.0,), (1.0,))
        >>> s = SurrogateSchema(("h",), ({},), one, ("lat", "lon"), ({}, {}),
        ...     Affine((0.0, 180.0), (90.0, 180.0)), ("a",), ({},), one, ((0.0, 1.0),),
        ...     "0", 1.0, "1", False, 1, geometry="sphere")
        >>> pts, inside = s.embed(np.array([[10.0, -179.9], [10.0, 180.1], [90.0, 0.0]]))
        >>> bool(np.allclose(pts[0], pts[1])), pts[2].round(12).tolist(), inside.tolist()
        (True, [0.0, 0.0, 1.0], [True, True, True])
        """
        positions = np.asarray(positions, dtype=float)
        if self.geometry == "sphere":
            lat, lon = np.deg2rad(positions[..., 0]), np.deg2rad(positions[..., 1])
            points = np.stack(
                [np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1
            )
            return points, np.abs(positions[..., 0]) <= 90.0 * (1 + tolerance)
        points = self.coord_norm.normalize(self.wrap_longitudes(positions))
        return points, (np.abs(points) <= 1 + tolerance).all(-1)

    def wrap_longitudes(self, positions: np.ndarray) -> np.ndarray:
        """Positions with each plane longitude moved by whole turns nearest the domain's centre.

        Other coordinates, and every coordinate on the sphere, are returned as given.

        Examples
        --------
        >>> one = Affine((0.0,), (1.0,))
        >>> s = SurrogateSchema(("h",), ({},), one, ("lat", "lon"), ({}, {}),
        ...     Affine((0.0, 180.0), (10.0, 10.0)), ("a",), ({},), one, ((0.0, 1.0),),
        ...     "0", 1.0, "1", False, 1)
        >>> s.wrap_longitudes(np.array([[5.0, -175.0], [5.0, 185.0], [5.0, 175.0]])).tolist()
        [[5.0, 185.0], [5.0, 185.0], [5.0, 175.0]]
        """
        positions = np.asarray(positions, dtype=float)
        if self.geometry == "sphere":
            return positions
        wrapped = positions
        for j, (name, attrs) in enumerate(zip(self.coords, self.coord_attrs, strict=True)):
            if is_longitude(name, attrs):
                if wrapped is positions:
                    wrapped = positions.copy()
                turns = np.round((positions[..., j] - self.coord_norm.offset[j]) / 360.0)
                wrapped[..., j] = positions[..., j] - 360.0 * turns
        return wrapped

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (round-trips through :meth:`from_dict`).

        An empty ``grid_shape`` is left out, so that the form of a schema without a
        curvilinear grid (and the fingerprints encoders store) is as before it existed.
        """
        data = json.loads(json.dumps(asdict(self)))
        if not data["grid_shape"]:
            del data["grid_shape"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SurrogateSchema:
        """Rebuild a schema from :meth:`to_dict` output."""
        d = dict(data)
        for key in ("output_norm", "coord_norm", "param_norm"):
            d[key] = Affine(tuple(d[key]["offset"]), tuple(d[key]["scale"]))
        for key in ("variables", "coords", "params"):
            d[key] = tuple(d[key])
        for key in ("variable_attrs", "coord_attrs", "param_attrs"):
            d[key] = tuple(dict(a) for a in d[key])
        d["param_range"] = tuple((float(lo), float(hi)) for lo, hi in d["param_range"])
        d["grid"] = {k: tuple(v) for k, v in d.get("grid", {}).items()}
        d["frame_times"] = tuple(d.get("frame_times", ()))
        d["grid_shape"] = {str(k): int(v) for k, v in d.get("grid_shape", {}).items()}
        return cls(**d)
