"""What a surrogate knows about the data it was trained on (torch- and xarray-free).

The schema travels inside every saved surrogate.  It tells the xarray layer how
to turn coordinates, times, parameters and variables into the normalized tensors
the networks see, and back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["Affine", "SurrogateSchema"]


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
        1-D coordinate values of the training grid (empty for point data).
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
        points = self.coord_norm.normalize(positions)
        return points, (np.abs(points) <= 1 + tolerance).all(-1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (round-trips through :meth:`from_dict`)."""
        return json.loads(json.dumps(asdict(self)))

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
        return cls(**d)
