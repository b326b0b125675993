"""Configuration of the atmosphere benchmark (:mod:`xlevda.systems.sphere`).

Grid, physics, forcing, frames and the initial state: :class:`SphereConfig`, the initial
conditions :class:`GalewskyJet` and :class:`SolidBodyFlow`, and :func:`paper_config`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xlevda.errors import ConfigError
from xlevda.validate import is_int, is_positive, is_real

__all__ = [
    "EARTH_RADIUS",
    "HOUR",
    "PAPER_HYPERVISCOSITY",
    "RK4_STABILITY",
    "GalewskyJet",
    "SolidBodyFlow",
    "SphereConfig",
    "paper_config",
]

EARTH_RADIUS = 6.37122e6
"""Radius of the sphere (m), as in the reference setup."""

HOUR = 3600.0
"""Seconds per hour: ``h_f0`` is given in metres per hour."""

PAPER_HYPERVISCOSITY = 1.0e5 * EARTH_RADIUS**2 / 32**2
"""Hyperviscosity ``nu`` (m4 s-1) of the reference setup, about 3.96e15."""

RK4_STABILITY = 2 * math.sqrt(2)
"""Largest ``|lambda dt|`` on the imaginary axis for which classical RK4 is stable."""


def _check(ok: bool, name: str, value: object, expected: str, owner: str = "SphereConfig") -> None:
    if not ok:
        raise ConfigError(f"{owner}.{name} must be {expected}, got {value!r}")


@dataclass(frozen=True)
class GalewskyJet:
    """Balanced mid-latitude jet of Galewsky et al. (2004), optionally with its height bump.

    The zonal wind is ``u_max / e_n * exp(1 / ((lat - lat0) (lat - lat1)))`` between
    ``lat0 = pi / 7`` and ``lat1 = pi / 2 - lat0`` (zero elsewhere), with ``e_n`` making its peak
    ``max_wind``; the height is in nonlinear balance with it (zero divergence and zero divergence
    tendency).  The bump ``perturbation * cos(lat) exp(-(lon / (1/3))^2 - ((pi/4 - lat) /
    (1/15))^2)``, centred on longitude 0, then triggers barotropic instability.

    Attributes
    ----------
    max_wind : float
        Peak jet speed (m s-1), > 0.
    perturbation : float
        Amplitude of the height bump (m), finite; 0 gives the steady (but unstable) jet.

    Examples
    --------
    >>> GalewskyJet().max_wind, GalewskyJet(perturbation=0.0).perturbation
    (80.0, 0.0)
    """

    max_wind: float = 80.0
    perturbation: float = 120.0

    def __post_init__(self) -> None:
        owner = "GalewskyJet"
        _check(is_positive(self.max_wind), "max_wind", self.max_wind, "finite and > 0", owner)
        _check(is_real(self.perturbation), "perturbation", self.perturbation, "finite", owner)

    def wind(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eastward and northward wind (m s-1) at ``lat`` (nlat, 1) and ``lon`` (nlon,) radians."""
        lat0 = math.pi / 7
        lat1 = math.pi / 2 - lat0
        product = (lat - lat0) * (lat - lat1) + 0.0 * lon  # negative inside the jet only
        arg = np.divide(1.0, product, out=np.full_like(product, -np.inf), where=product < 0)
        u = self.max_wind * math.exp(4.0 / (lat1 - lat0) ** 2) * np.exp(arg)
        return u, np.zeros_like(u)

    def bump(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Unbalanced height perturbation (m) at ``lat`` (nlat, 1) and ``lon`` (nlon,) radians."""
        wrapped = np.angle(np.exp(1j * lon))  # longitude in (-pi, pi]
        shape = np.exp(-((wrapped * 3.0) ** 2) - ((math.pi / 4 - lat) * 15.0) ** 2)
        return self.perturbation * np.cos(lat) * shape


@dataclass(frozen=True)
class SolidBodyFlow:
    """Steady solid-body rotation in geostrophic balance (Williamson et al. 1992, case 2).

    ``u = u0 (cos lat cos alpha + cos lon sin lat sin alpha)``, ``v = -u0 sin lon sin alpha``;
    the balanced height is ``-(a Omega u0 + u0^2 / 2) / g * (sin lat cos alpha - cos lon cos lat
    sin alpha)^2`` up to a constant.  Without forcing and hyperdiffusion it is an exact steady
    state of the equations when ``alpha = 0`` or without rotation (``omega = 0``); the test
    case's tilted Coriolis parameter for ``alpha > 0`` is not modelled.

    Attributes
    ----------
    speed : float
        ``u0`` (m s-1), > 0; the default, one revolution in 12 days, is the test case's.
    alpha : float
        Angle (degrees) between the flow's rotation axis and the Earth's, in [0, 90].

    Examples
    --------
    >>> round(SolidBodyFlow().speed, 3)
    38.611
    """

    speed: float = 2 * math.pi * EARTH_RADIUS / (12 * 86400.0)
    alpha: float = 0.0

    def __post_init__(self) -> None:
        owner = "SolidBodyFlow"
        _check(is_positive(self.speed), "speed", self.speed, "finite and > 0", owner)
        _check(
            is_real(self.alpha) and 0 <= self.alpha <= 90, "alpha", self.alpha, "in [0, 90]", owner
        )

    def wind(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eastward and northward wind (m s-1) at ``lat`` (nlat, 1) and ``lon`` (nlon,) radians."""
        a = math.radians(self.alpha)
        u = self.speed * (np.cos(lat) * math.cos(a) + np.cos(lon) * np.sin(lat) * math.sin(a))
        v = -self.speed * math.sin(a) * np.sin(lon) + 0.0 * lat
        return u, v

    def bump(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """No unbalanced perturbation: zeros of shape (nlat, nlon)."""
        return np.zeros(np.broadcast_shapes(lat.shape, lon.shape))


@dataclass(frozen=True)
class SphereConfig:
    """Grid, physics, forcing, frames and initial state of the atmosphere benchmark.

    Attributes
    ----------
    nlat : int
        Gauss-Legendre latitudes, an even integer >= 8; there are ``nlon = 2 nlat`` longitudes.
        64 (T42) is the CPU-scale default, 32 (T21) the test grid, 256 (T170) the paper's.
    n_frames : int
        Number of output frames, the first at the initial time (after ``spinup``).
    frame_interval : float
        Seconds between output frames; the default 8 h is the paper's observation interval
        (480 steps of 60 s), so 64 frames span its 21 days.
    spinup : float
        Seconds integrated (with forcing) before the first frame, >= 0.
    mean_height : float
        Global mean depth ``H`` of the layer (m).  10 km is the Galewsky jet's.
    radius, gravity, omega : float
        Sphere radius (m), gravitational acceleration (m s-2), rotation rate (s-1).
    hyperviscosity : float
        ``nu`` (m4 s-1) of the ``nu * laplacian^2`` damping, >= 0; the default is the reference
        setup's, whose e-folding time is about 1.5 days at l = 42 and 8 minutes at l = 170.
    day, year : float
        Periods (s) of the forcing's longitude and latitude cycles: 24 h and 1008 h.
    max_declination : float
        Amplitude (radians) of the yearly latitude excursion of the forcing centre.
    h_f0_range, sigma_range : tuple of float
        Prior ranges ``(low, high)`` of the unknown forcing amplitude (m h-1) and width
        (radians) that :func:`sample_forcing` draws from.
    cfl : float
        Fraction in (0, 1] of ``2 sqrt(2) / (T (sqrt(g H) + max_wind) / a)``, the RK4 stability
        limit for gravity waves and advection at the truncation ``T``.
    time_step : float, optional
        Largest internal step (s), overriding ``cfl``.  Each frame interval (and the spin-up) is
        split into equal steps no longer than :attr:`max_time_step`.
    max_wind : float
        Wind speed (m s-1) assumed in the time-step limit; integration stops with an error when
        a run exceeds it.
    initial : GalewskyJet or SolidBodyFlow
        Initial state, the same for every run.
    start : str
        ISO datetime of the first frame.

    Examples
    --------
    >>> cfg = SphereConfig(nlat=32)
    >>> cfg.nlon, cfg.truncation, round(cfg.max_time_step)
    (64, 21, 926)
    """

    nlat: int = 64
    n_frames: int = 64
    frame_interval: float = 8 * HOUR
    spinup: float = 0.0
    mean_height: float = 10_000.0
    radius: float = EARTH_RADIUS
    gravity: float = 9.80616
    omega: float = 7.292e-5
    hyperviscosity: float = PAPER_HYPERVISCOSITY
    day: float = 24 * HOUR
    year: float = 1008 * HOUR
    max_declination: float = 0.4
    h_f0_range: tuple[float, float] = (0.1, 30.0)
    sigma_range: tuple[float, float] = (1.0, 4.0)
    cfl: float = 0.5
    time_step: float | None = None
    max_wind: float = 150.0
    initial: GalewskyJet | SolidBodyFlow = GalewskyJet()
    start: str = "2026-01-01T00:00:00"

    def __post_init__(self) -> None:
        _check(
            is_int(self.nlat) and self.nlat >= 8 and self.nlat % 2 == 0,
            "nlat",
            self.nlat,
            "an even integer >= 8",
        )
        _check(is_int(self.n_frames) and self.n_frames >= 1, "n_frames", self.n_frames, ">= 1")
        for name in ("frame_interval", "mean_height", "radius", "gravity", "day", "year"):
            _check(is_positive(getattr(self, name)), name, getattr(self, name), "finite and > 0")
        for name in ("spinup", "hyperviscosity", "max_declination"):
            value = getattr(self, name)
            _check(is_real(value) and value >= 0, name, value, "finite and >= 0")
        _check(is_real(self.omega), "omega", self.omega, "finite")
        for name in ("h_f0_range", "sigma_range"):
            value = getattr(self, name)
            _check(
                isinstance(value, tuple)
                and len(value) == 2
                and all(is_positive(v) for v in value)
                and value[0] <= value[1],
                name,
                value,
                "a tuple (low, high) of finite numbers with 0 < low <= high",
            )
        _check(is_positive(self.cfl) and self.cfl <= 1, "cfl", self.cfl, "in (0, 1]")
        _check(
            self.time_step is None or is_positive(self.time_step),
            "time_step",
            self.time_step,
            "None or finite and > 0",
        )
        _check(is_positive(self.max_wind), "max_wind", self.max_wind, "finite and > 0")
        _check(
            isinstance(self.initial, GalewskyJet | SolidBodyFlow),
            "initial",
            self.initial,
            "a GalewskyJet or SolidBodyFlow",
        )
        try:
            np.datetime64(self.start, "ns")
        except (TypeError, ValueError):
            _check(False, "start", self.start, "an ISO datetime string such as '2026-01-01'")

    @property
    def nlon(self) -> int:
        """Number of longitudes, ``2 nlat``."""
        return 2 * self.nlat

    @property
    def truncation(self) -> int:
        """Largest spherical harmonic degree kept, ``(nlon - 1) // 3`` (alias-free products)."""
        return (self.nlon - 1) // 3

    @property
    def max_time_step(self) -> float:
        """Largest internal step (s): ``time_step``, or ``cfl`` times the RK4 limit."""
        if self.time_step is not None:
            return self.time_step
        speed = math.sqrt(self.gravity * self.mean_height) + self.max_wind
        return self.cfl * RK4_STABILITY * self.radius / (self.truncation * speed)

    @property
    def substeps(self) -> int:
        """Equal internal steps per frame interval."""
        return math.ceil(self.frame_interval / self.max_time_step - 1e-9)

    @property
    def lat(self) -> np.ndarray:
        """Gauss-Legendre latitudes (degrees_north), ascending, shape ``(nlat,)``."""
        return np.degrees(np.arcsin(np.polynomial.legendre.leggauss(self.nlat)[0]))

    @property
    def lon(self) -> np.ndarray:
        """Longitudes ``360 k / nlon`` (degrees_east), shape ``(nlon,)``."""
        return 360.0 * np.arange(self.nlon) / self.nlon


def paper_config() -> SphereConfig:
    """The benchmark setting: 256x512 (T170), 64 frames 8 h apart, steps of 60 s.

    Examples
    --------
    >>> cfg = paper_config()
    >>> (cfg.nlat, cfg.nlon, cfg.truncation, cfg.substeps, cfg.frame_interval / cfg.substeps)
    (256, 512, 170, 480, 60.0)
    """
    return SphereConfig(nlat=256, time_step=60.0)
