"""Sparse, noisy synthetic observations sampled from a gridded truth.

Observations are taken exactly at grid cells and frames of the truth: nothing is interpolated.
To observe between frames, simulate the truth with the wanted output times first.

The network is described by small typed objects instead of strings: a spatial layout
(:class:`GridStride`, :class:`RandomPoints`, :class:`MovingPoints`) and a time selection
(:class:`EveryFrame`, :class:`FrameStride`, :class:`RandomTimes`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import xarray as xr

from xlevda.errors import ConfigError, CoordinateError, VariableError
from xlevda.systems._cf import global_attrs

__all__ = [
    "EveryFrame",
    "FrameStride",
    "GridStride",
    "MovingPoints",
    "RandomPoints",
    "RandomTimes",
    "observe",
]


def _require_int(owner: str, name: str, value: object, minimum: int) -> None:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{owner}.{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class GridStride:
    """Every ``stride``-th grid cell in both directions.

    ``offset`` is the index of the first observed cell on each axis; by default the network
    is centred (equal margins on both sides), e.g. cells 7, 22, ..., 142 for 150 cells and
    stride 15, which gives the benchmark's 10x10 network.

    Examples
    --------
    >>> GridStride(15)
    GridStride(stride=15, offset=None)
    """

    stride: int
    offset: int | None = None

    def __post_init__(self) -> None:
        _require_int("GridStride", "stride", self.stride, 1)
        if self.offset is not None:
            _require_int("GridStride", "offset", self.offset, 0)

    def indices(self, n: int, axis: str) -> np.ndarray:
        """Observed indices along an axis of ``n`` cells."""
        if self.offset is None:
            count = -(-n // self.stride)
            return (n - 1 - (count - 1) * self.stride) // 2 + self.stride * np.arange(count)
        if self.offset >= n:
            raise ConfigError(
                f"GridStride.offset = {self.offset} is outside the {axis} axis of {n} cells: "
                f"expected an offset in [0, {n - 1}]"
            )
        return np.arange(self.offset, n, self.stride)


@dataclass(frozen=True)
class RandomPoints:
    """``n`` distinct grid cells drawn at random once and observed at every time.

    Examples
    --------
    >>> RandomPoints(20)
    RandomPoints(n=20)
    """

    n: int

    def __post_init__(self) -> None:
        _require_int("RandomPoints", "n", self.n, 1)


@dataclass(frozen=True)
class MovingPoints:
    """``n`` distinct grid cells drawn afresh at every observation time.

    Examples
    --------
    >>> MovingPoints(20)
    MovingPoints(n=20)
    """

    n: int

    def __post_init__(self) -> None:
        _require_int("MovingPoints", "n", self.n, 1)


@dataclass(frozen=True)
class EveryFrame:
    """Observe at every time of the truth.

    Examples
    --------
    >>> EveryFrame()
    EveryFrame()
    """


@dataclass(frozen=True)
class FrameStride:
    """Observe every ``stride``-th time of the truth, starting at index ``offset``.

    Examples
    --------
    >>> FrameStride(5, offset=1)
    FrameStride(stride=5, offset=1)
    """

    stride: int
    offset: int = 0

    def __post_init__(self) -> None:
        _require_int("FrameStride", "stride", self.stride, 1)
        _require_int("FrameStride", "offset", self.offset, 0)


@dataclass(frozen=True)
class RandomTimes:
    """Observe at ``n`` distinct times drawn at random from the truth's times (sorted).

    Examples
    --------
    >>> RandomTimes(10)
    RandomTimes(n=10)
    """

    n: int

    def __post_init__(self) -> None:
        _require_int("RandomTimes", "n", self.n, 1)


Layout = GridStride | RandomPoints | MovingPoints
TimeSelection = EveryFrame | FrameStride | RandomTimes


def observe(
    truth: xr.Dataset,
    layout: Layout = GridStride(15),
    times: TimeSelection | None = None,
    variables: Sequence[Hashable] | None = None,
    noise_ratio: float = 0.1,
    seed: int | np.random.Generator = 0,
) -> xr.Dataset:
    """Sample sparse observations with Gaussian noise from one gridded truth trajectory.

    Parameters
    ----------
    truth : xarray.Dataset
        One trajectory with dimension coordinates for time, latitude and longitude (found by
        ``standard_name``/``axis`` first, then the names ``time``, ``lat``/``latitude``,
        ``lon``/``longitude``).  Other dimensions (e.g. ``run``) must have size 1.
    layout : GridStride, RandomPoints or MovingPoints
        Where to observe; positions are grid cells of the truth.
    times : EveryFrame, FrameStride or RandomTimes, optional
        When to observe, as a subset of the truth's times (default every frame).
    variables : sequence of str, optional
        Variables to observe (default every data variable on time, latitude and longitude).
    noise_ratio : float
        Noise-to-signal ratio ``r >= 0``.  The observation error of variable ``v`` is
        Gaussian with standard deviation ``sigma_v = r * std_v``, where ``std_v`` is the
        standard deviation of ``v`` over all times and grid points of ``truth``; ``sigma_v``
        is the same for every observation of ``v``.
    seed : int or numpy.random.Generator
        Randomness for the times, the points and the noise, drawn in that order.

    Returns
    -------
    xarray.Dataset
        Dimension ``obs`` sorted by time; coordinates ``time(obs)``, ``lat(obs)``,
        ``lon(obs)`` (and any other coordinate of the truth on those dimensions, e.g.
        ``x(obs)``, ``y(obs)``) with the truth's attributes; one variable per observed field
        with the truth's attributes and its error standard deviation ``<var>_std(obs)``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = xr.Dataset(
    ...     {"eta": (("time", "lat", "lon"), np.zeros((4, 30, 30)), {"units": "m"})},
    ...     coords={"time": np.arange(4.0), "lat": np.arange(30.0), "lon": np.arange(30.0)},
    ... )
    >>> obs = observe(truth, GridStride(15), FrameStride(2), noise_ratio=0.0)
    >>> obs.sizes["obs"], obs.lat.values[:2].tolist(), obs.eta_std.attrs["units"]
    (8, [7.0, 7.0], 'm')
    """
    dims, truth = _truth_dims(truth)
    names = _variables(truth, variables, dims)
    _check_options(layout, times, noise_ratio, seed)
    rng = np.random.default_rng(seed)
    frames = _frames(times or EveryFrame(), truth[dims[0]].values, rng)
    t_idx, y_idx, x_idx = _positions(
        layout, frames, truth.sizes[dims[1]], truth.sizes[dims[2]], rng
    )
    where = {
        dim: xr.DataArray(idx, dims="obs")
        for dim, idx in zip(dims, (t_idx, y_idx, x_idx), strict=True)
    }
    sample = truth[names].isel(where)
    obs = xr.Dataset(coords=sample.coords)
    for name in names:
        std = noise_ratio * float(truth[name].std())
        noise = std * rng.standard_normal(t_idx.size)
        obs[name] = (sample[name] + noise).astype(truth[name].dtype).assign_attrs(truth[name].attrs)
        obs[name].attrs["ancillary_variables"] = f"{name}_std"
        obs[f"{name}_std"] = xr.DataArray(
            np.full(t_idx.size, std), dims="obs", attrs=_std_attrs(truth[name])
        )
    obs = obs.drop_vars([c for c in obs.coords if "obs" not in obs[c].dims])
    obs.attrs = _obs_attrs(layout, times, noise_ratio, seed)
    return obs


def _find_dim(truth: xr.Dataset, standard_name: str, axis: str, names: tuple[str, ...]) -> Hashable:
    dim_coords = [d for d in truth.dims if d in truth.coords]
    for match in (
        lambda d: truth[d].attrs.get("standard_name") == standard_name,
        lambda d: truth[d].attrs.get("axis") == axis,
        lambda d: d in names,
    ):
        found = [d for d in dim_coords if match(d)]
        if found:
            return found[0]
    raise CoordinateError(
        f"truth has no {standard_name} dimension coordinate: expected one with standard_name "
        f"{standard_name!r}, axis {axis!r} or a name in {list(names)}; dimension coordinates "
        f"are {[str(d) for d in dim_coords]}"
    )


def _truth_dims(truth: xr.Dataset) -> tuple[tuple[Hashable, Hashable, Hashable], xr.Dataset]:
    """The (time, lat, lon) dimension names and the truth with other size-1 dims squeezed."""
    if not isinstance(truth, xr.Dataset):
        raise VariableError(f"truth must be an xarray.Dataset, got {type(truth).__name__}")
    dims = (
        _find_dim(truth, "time", "T", ("time", "t")),
        _find_dim(truth, "latitude", "Y", ("lat", "latitude")),
        _find_dim(truth, "longitude", "X", ("lon", "longitude")),
    )
    extra = {d: n for d, n in truth.sizes.items() if d not in dims}
    too_big = {d: n for d, n in extra.items() if n != 1}
    if too_big:
        dim, size = next(iter(too_big.items()))
        raise CoordinateError(
            f"truth must hold one trajectory, but dimension {dim!r} has size {size}: select "
            f"one first, e.g. truth.isel({dim}=0)"
        )
    return dims, truth.squeeze(list(extra))


def _variables(truth: xr.Dataset, variables, dims) -> list[Hashable]:
    gridded = [v for v in truth.data_vars if set(truth[v].dims) == set(dims)]
    if variables is None:
        if not gridded:
            raise VariableError(
                f"truth has no data variable on dimensions {[str(d) for d in dims]}; data "
                f"variables are {[str(v) for v in truth.data_vars]}"
            )
        return gridded
    names = [variables] if isinstance(variables, str) else list(variables)
    for name in names:
        if name not in gridded:
            raise VariableError(
                f"cannot observe variable {name!r}: expected one of the data variables on "
                f"{[str(d) for d in dims]}: {[str(v) for v in gridded]}"
            )
    if not names:
        raise VariableError("variables must name at least one variable, got an empty list")
    return names


def _check_options(layout, times, noise_ratio, seed) -> None:
    if not isinstance(layout, GridStride | RandomPoints | MovingPoints):
        raise ConfigError(
            f"layout must be GridStride, RandomPoints or MovingPoints, got {layout!r}"
        )
    if times is not None and not isinstance(times, EveryFrame | FrameStride | RandomTimes):
        raise ConfigError(f"times must be EveryFrame, FrameStride or RandomTimes, got {times!r}")
    if not (isinstance(noise_ratio, Real) and math.isfinite(noise_ratio) and noise_ratio >= 0):
        raise ConfigError(f"noise_ratio must be finite and >= 0, got {noise_ratio!r}")
    if isinstance(seed, bool) or not isinstance(seed, Integral | np.random.Generator):
        raise ConfigError(f"seed must be an int or a numpy.random.Generator, got {seed!r}")


def _frames(times: TimeSelection, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of the observed frames, in increasing time."""
    n = values.size
    if isinstance(times, FrameStride):
        if times.offset >= n:
            raise ConfigError(
                f"FrameStride.offset = {times.offset} is beyond the truth's {n} times: expected "
                f"an offset in [0, {n - 1}]"
            )
        frames = np.arange(times.offset, n, times.stride)
    elif isinstance(times, RandomTimes):
        if times.n > n:
            raise ConfigError(f"RandomTimes.n = {times.n} exceeds the truth's {n} times")
        frames = rng.choice(n, size=times.n, replace=False)
    else:
        frames = np.arange(n)
    return frames[np.argsort(values[frames], kind="stable")]


def _positions(layout: Layout, frames: np.ndarray, ny: int, nx: int, rng: np.random.Generator):
    """Per-observation (time, lat, lon) indices, grouped by frame, cells in C order."""
    if isinstance(layout, GridStride):
        iy, ix = np.meshgrid(
            layout.indices(ny, "latitude"), layout.indices(nx, "longitude"), indexing="ij"
        )
        cells = np.tile((iy * nx + ix).ravel(), (frames.size, 1))
    else:
        if layout.n > ny * nx:
            raise ConfigError(
                f"{type(layout).__name__}.n = {layout.n} exceeds the {ny}x{nx} = {ny * nx} "
                "grid cells of the truth"
            )
        draws = 1 if isinstance(layout, RandomPoints) else frames.size
        cells = np.stack([rng.choice(ny * nx, size=layout.n, replace=False) for _ in range(draws)])
        cells = np.broadcast_to(np.sort(cells, axis=1), (frames.size, layout.n))
    t_idx = np.repeat(frames, cells.shape[1])
    y_idx, x_idx = np.divmod(cells.ravel(), nx)
    return t_idx, y_idx, x_idx


def _std_attrs(var: xr.DataArray) -> dict[str, str]:
    label = var.attrs.get("long_name", str(var.name))
    attrs = {"long_name": f"{label} observation error standard deviation"}
    if "standard_name" in var.attrs:
        attrs["standard_name"] = f"{var.attrs['standard_name']} standard_error"
    if "units" in var.attrs:
        attrs["units"] = var.attrs["units"]
    return attrs


def _obs_attrs(layout, times, noise_ratio, seed) -> dict[str, object]:
    attrs = global_attrs(
        "Synthetic observations sampled from a gridded truth", "xlevda.systems.observe.observe"
    )
    attrs |= {
        "featureType": "point",
        "observation_layout": repr(layout),
        "observation_times": repr(times or EveryFrame()),
        "noise_ratio": float(noise_ratio),
        "noise_model": (
            "Gaussian, standard deviation noise_ratio * (standard deviation of the variable "
            "over all times and grid points of the truth)"
        ),
        "seed": int(seed) if isinstance(seed, Integral) else "numpy.random.Generator",
    }
    return attrs
