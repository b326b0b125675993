"""Configuration of the tsunami benchmark (:mod:`xlevda.systems.tsunami`): grid, physics,
output frames and geographic placement."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

from xlevda.errors import ConfigError
from xlevda.validate import is_int, is_positive

__all__ = ["EARTH_RADIUS", "PAPER_FRAME_INTERVAL", "TsunamiConfig", "paper_config"]

EARTH_RADIUS = 6.371e6
"""Radius (m) of the local spherical approximation mapping metres to degrees."""

PAPER_FRAME_INTERVAL = 40 * 0.1 * (1.0e6 / 150) / math.sqrt(9.81 * 100.0)
"""Seconds between output frames in the benchmark: 40 CFL steps at 150x150 (about 851.4 s)."""


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"TsunamiConfig.{name} must be {expected}, got {value!r}")


@dataclass(frozen=True)
class TsunamiConfig:
    """Grid, physics, output frames and geographic placement of the tsunami benchmark.

    Attributes
    ----------
    nx, ny : int
        Number of grid cells in x (east) and y (north), at least 4 each.
    n_frames : int
        Number of output frames, the first at the initial time.
    frame_interval : float
        Seconds between output frames.  The default is the benchmark's 40 steps at 150x150,
        so 51 frames span the paper's 2000 steps (about 42,570 s) on any grid.
    length : float
        Side of the square domain (m).
    depth : float
        Resting water depth ``H`` (m).
    gravity : float
        Gravitational acceleration (m s-2).
    f0, beta : float
        Coriolis parameter ``f = f0 + beta * y`` (s-1, m-1 s-1), ``y`` from the box centre.
    amplitude, sigma : float
        Height (m) and standard deviation (m) of the initial Gaussian bump in ``eta``.
    cfl : float
        Courant number: the time step is at most ``cfl * min(dx, dy) / sqrt(g H)``, reduced so
        that a whole number of steps fits each output interval.  In ``(0, 0.5]``.
    coriolis : bool
        Whether to include the Coriolis terms.
    center_lat, center_lon : float
        Geographic position of the box centre (degrees).  The default is in the North Pacific
        at the latitude where ``2 Omega sin(lat) = f0``.
    start : str
        ISO datetime of the first frame.

    Examples
    --------
    >>> cfg = TsunamiConfig(nx=24, ny=24, n_frames=3)
    >>> round(cfg.dx), round(cfg.max_time_step, 1)
    (41667, 133.0)
    """

    nx: int = 48
    ny: int = 48
    n_frames: int = 51
    frame_interval: float = PAPER_FRAME_INTERVAL
    length: float = 1.0e6
    depth: float = 100.0
    gravity: float = 9.81
    f0: float = 1.0e-4
    beta: float = 2.0e-11
    amplitude: float = 1.0
    sigma: float = 5.0e4
    cfl: float = 0.1
    coriolis: bool = True
    center_lat: float = 43.29
    center_lon: float = 165.0
    start: str = "2026-01-01T00:00:00"

    def __post_init__(self) -> None:
        for name in ("nx", "ny"):
            value = getattr(self, name)
            _check(is_int(value) and value >= 4, name, value, "an integer >= 4")
        _check(is_int(self.n_frames) and self.n_frames >= 1, "n_frames", self.n_frames, ">= 1")
        for name in ("frame_interval", "length", "depth", "gravity", "sigma"):
            _check(is_positive(getattr(self, name)), name, getattr(self, name), "finite and > 0")
        for name in ("f0", "beta"):
            value = getattr(self, name)
            _check(isinstance(value, Real) and math.isfinite(value), name, value, "finite")
        amp = self.amplitude
        _check(
            isinstance(amp, Real) and math.isfinite(amp) and amp > -self.depth,
            "amplitude",
            amp,
            f"finite and > -depth = {-self.depth}",
        )
        _check(is_positive(self.cfl) and self.cfl <= 0.5, "cfl", self.cfl, "in (0, 0.5]")
        _check(isinstance(self.coriolis, bool), "coriolis", self.coriolis, "a bool")
        half_lat = math.degrees(self.length / 2 / EARTH_RADIUS)
        _check(
            isinstance(self.center_lat, Real) and abs(self.center_lat) + half_lat < 89.0,
            "center_lat",
            self.center_lat,
            f"within +-{89.0 - half_lat:.2f} degrees so that the box avoids the poles",
        )
        _check(
            isinstance(self.center_lon, Real) and -180.0 <= self.center_lon <= 180.0,
            "center_lon",
            self.center_lon,
            "in [-180, 180] degrees_east",
        )
        try:
            np.datetime64(self.start, "ns")
        except (TypeError, ValueError):
            _check(False, "start", self.start, "an ISO datetime string such as '2026-01-01'")

    @property
    def dx(self) -> float:
        """Cell width in x (m)."""
        return self.length / self.nx

    @property
    def dy(self) -> float:
        """Cell width in y (m)."""
        return self.length / self.ny

    @property
    def wave_speed(self) -> float:
        """Shallow-water gravity wave speed ``sqrt(g H)`` (m s-1)."""
        return math.sqrt(self.gravity * self.depth)

    @property
    def max_time_step(self) -> float:
        """CFL time step ``cfl * min(dx, dy) / sqrt(g H)`` (s), before fitting the frames."""
        return self.cfl * min(self.dx, self.dy) / self.wave_speed

    @property
    def x(self) -> np.ndarray:
        """Cell-centre x positions (m) from the box centre, shape ``(nx,)``."""
        return -self.length / 2 + (np.arange(self.nx) + 0.5) * self.dx

    @property
    def y(self) -> np.ndarray:
        """Cell-centre y positions (m) from the box centre, shape ``(ny,)``."""
        return -self.length / 2 + (np.arange(self.ny) + 0.5) * self.dy

    def to_latlon(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Map box positions (m) to ``(lat, lon)`` in degrees (local spherical approximation).

        ``x`` and ``y`` broadcast against each other.

        Examples
        --------
        >>> lat, lon = TsunamiConfig().to_latlon([0.0, 1.0e5], 0.0)
        >>> lat.tolist(), lon.round(3).tolist()
        ([43.29, 43.29], [165.0, 166.236])
        """
        x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        lat = self.center_lat + np.degrees(y / EARTH_RADIUS)
        lon = self.center_lon + np.degrees(x / self._east_radius)
        return lat, lon

    def to_xy(self, lat, lon) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`to_latlon`: degrees to box positions ``(x, y)`` in metres.

        Examples
        --------
        >>> cfg = TsunamiConfig()
        >>> x, y = cfg.to_xy(*cfg.to_latlon(1.0e5, -2.0e5))
        >>> round(float(x)), round(float(y))
        (100000, -200000)
        """
        lat, lon = np.broadcast_arrays(np.asarray(lat, dtype=float), np.asarray(lon, dtype=float))
        x = np.radians(lon - self.center_lon) * self._east_radius
        y = np.radians(lat - self.center_lat) * EARTH_RADIUS
        return x, y

    @property
    def _east_radius(self) -> float:
        return EARTH_RADIUS * math.cos(math.radians(self.center_lat))


def paper_config() -> TsunamiConfig:
    """The benchmark setting: 150x150 cells, 51 frames over the paper's 2000 steps.

    Examples
    --------
    >>> cfg = paper_config()
    >>> cfg.nx, cfg.n_frames, round(cfg.max_time_step, 2)
    (150, 51, 21.29)
    """
    return TsunamiConfig(nx=150, ny=150)
