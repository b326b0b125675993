"""Atmosphere benchmark: forced shallow water on the rotating sphere, batched over runs.

The model is the ``planetswe`` setting of The Well as used by LD-EnSF/LEVDA: a single layer of
mean depth ``H`` on a sphere of Earth's radius, gravity and rotation, with hyperdiffusion and a
height forcing that follows the sun,

.. math::

    \\partial_t \\mathbf u = -\\mathbf u\\cdot\\nabla\\mathbf u - f\\,\\mathbf k\\times\\mathbf u
        - g\\nabla h - \\nu\\nabla^4\\mathbf u, \\qquad
    \\partial_t h = -\\nabla\\cdot[(H + h)\\mathbf u] - \\nu\\nabla^4 h + F,

.. math::

    F = h_{f0}\\cos(\\lambda - \\lambda_c(t))\\,
        \\exp\\left(-(\\varphi - \\varphi_c(t))^2 / \\sigma^2\\right), \\quad
    \\lambda_c = 2\\pi t / \\mathrm{day}, \\quad
    \\varphi_c = 0.4 \\sin(2\\pi t / \\mathrm{year}),

with ``h`` the height of the free surface above its global mean ``H`` (m), ``f = 2 Omega sin
lat``, ``lambda``/``phi`` longitude/latitude in radians, a model day of 24 h and a model year of
1008 h (42 days).  As in the reference setup (Dedalus, adapted from its spherical shallow-water
example), ``h_f0`` is in metres per hour and ``sigma`` in radians of latitude; they are the unknown
parameters of the benchmark, drawn from ``U(0.1, 30)`` and ``U(1, 4)``.  Because the longitude
factor integrates to zero on every latitude circle, the forcing adds no mass.  Unlike the
reference, the surface is flat (no ERA5 orography) and the initial state is the balanced
Galewsky et al. (2004) jet (ERA5 cannot be fetched), see :class:`GalewskyJet`.

The discretization is spectral in vorticity-divergence form (``zeta``, ``delta``, ``h``) with the
spherical harmonic transforms of ``torch-harmonics`` on a Gauss-Legendre grid of ``nlat`` x
``2 nlat`` points, triangularly truncated at ``T = (nlon - 1) // 3`` so that the quadratic terms
are free of aliasing.  The hyperdiffusion ``nu * (l (l + 1) / a^2)^2`` acts on the spherical
harmonic coefficients of ``h``, ``zeta`` and ``delta`` and is integrated exactly by an
integrating factor, the rest by the classical fourth-order Runge-Kutta scheme (Lawson's IF-RK4).
The global mean of ``h`` (the mass) is carried by the ``l = 0`` coefficient, which no term
changes, so mass is conserved to round-off.

Other differences from the reference setup: a fixed time step with explicit RK4 instead of an
adaptive IMEX scheme, scalar hyperdiffusion of ``zeta`` and ``delta`` instead of the vector
``nabla^4 u`` (they differ in how l = 1, 2 are damped: negligibly), and a resolution of T170 on
the paper's 256x512 grid, whose sizes are the reference's spectral sizes (about T255, on a grid
padded by 3/2 for the products).  Like the reference, the forcing's ``cos(lambda - lambda_c)``
factor does not vanish at the poles, so its projection on the resolved harmonics rings slightly
there.  The forcing centre circles the equator eastward at about 463 m/s, faster than gravity
waves, and drives a narrow, steep height front near the equator at high ``h_f0``.

All runs are integrated together: every tensor carries a leading run dimension, and runs differ
only in their forcing.  Requires the optional dependency ``torch-harmonics`` (extra ``sphere``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from xlevda._validate import is_int, is_positive, is_real
from xlevda.errors import ConfigError, VariableError
from xlevda.systems._cf import LAT_ATTRS, LON_ATTRS, RUN_ATTRS, TIME_ATTRS, global_attrs

__all__ = [
    "EARTH_RADIUS",
    "HOUR",
    "PAPER_HYPERVISCOSITY",
    "GalewskyJet",
    "SolidBodyFlow",
    "SphereConfig",
    "paper_config",
    "sample_forcing",
    "simulate",
]

EARTH_RADIUS = 6.37122e6
"""Radius of the sphere (m), as in the reference setup."""

HOUR = 3600.0
"""Seconds per hour: ``h_f0`` is given in metres per hour."""

PAPER_HYPERVISCOSITY = 1.0e5 * EARTH_RADIUS**2 / 32**2
"""Hyperviscosity ``nu`` (m4 s-1) of the reference setup, about 3.96e15."""

RK4_STABILITY = 2 * math.sqrt(2)
"""Largest ``|lambda dt|`` on the imaginary axis for which classical RK4 is stable."""

_VAR_ATTRS = {
    "u": {"standard_name": "eastward_wind", "long_name": "eastward wind", "units": "m s-1"},
    "v": {"standard_name": "northward_wind", "long_name": "northward wind", "units": "m s-1"},
    "height": {
        "standard_name": "geopotential_height_anomaly",
        "long_name": "height of the free surface above its global mean (mean_height)",
        "units": "m",
    },
}

_PARAM_ATTRS = {
    "h_f0": {"long_name": "amplitude of the height forcing", "units": "m h-1"},
    "sigma": {"long_name": "latitudinal width of the height forcing", "units": "radian"},
}

_LON_ATTRS = {**LON_ATTRS, "comment": "periodic: 360 degrees_east is longitude 0"}


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


def sample_forcing(
    n_runs: int, seed: int | np.random.Generator = 0, config: SphereConfig | None = None
) -> dict[str, np.ndarray]:
    """Draw forcing parameters uniformly from ``config.h_f0_range`` and ``config.sigma_range``.

    Parameters
    ----------
    n_runs : int
        Number of draws, >= 1.
    seed : int or numpy.random.Generator
        Seed or generator for the draws.
    config : SphereConfig, optional
        Holds the prior ranges (default ``SphereConfig()``: ``U(0.1, 30)`` m h-1 and
        ``U(1, 4)`` radians).

    Returns
    -------
    dict
        ``{"h_f0": (n_runs,), "sigma": (n_runs,)}``, ready for ``simulate(**params)``.

    Examples
    --------
    >>> p = sample_forcing(3, seed=0)
    >>> sorted(p), p["h_f0"].shape, bool(((p["sigma"] >= 1) & (p["sigma"] <= 4)).all())
    (['h_f0', 'sigma'], (3,), True)
    """
    config = SphereConfig() if config is None else config
    if not is_int(n_runs) or n_runs < 1:
        raise ConfigError(f"n_runs must be an integer >= 1, got {n_runs!r}")
    rng = np.random.default_rng(seed)
    h_f0 = rng.uniform(*config.h_f0_range, size=n_runs)
    sigma = rng.uniform(*config.sigma_range, size=n_runs)
    return {"h_f0": h_f0, "sigma": sigma}


def simulate(
    h_f0,
    sigma,
    config: SphereConfig | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """Integrate one forced shallow-water run per ``(h_f0, sigma)``, all in one batch.

    Parameters
    ----------
    h_f0 : float or array-like of shape (n_runs,)
        Forcing amplitudes (m h-1), finite and >= 0 (0 switches the forcing off).
    sigma : float or array-like of shape (n_runs,)
        Forcing widths (radians of latitude), finite and > 0.
    config : SphereConfig, optional
        Grid, physics, frames and initial state (default ``SphereConfig()``).
    dtype, device
        Torch dtype and device of the computation; the output has the same precision.
    batch_size : int, optional
        Runs integrated together (default all).  Results do not depend on it beyond round-off.
    progress : bool
        Show a progress bar over frame intervals.

    Returns
    -------
    xarray.Dataset
        ``u``, ``v`` (m s-1) and ``height`` (m above the global mean ``mean_height``) with dims
        ``(run, time, lat, lon)``; latitudes ascending, longitudes ``0 .. 360 - 360 / nlon``
        (periodic); coords ``run``, ``time``, ``lat``, ``lon`` and the per-run parameters
        ``h_f0`` and ``sigma``; CF-1.11 global attributes with the config as JSON.

    Raises
    ------
    VariableError
        For ``h_f0`` or ``sigma`` of unequal lengths or outside their valid ranges.
    ConfigError
        For a bad ``dtype`` or ``batch_size``, or when a run's wind exceeds
        ``config.max_wind``.
    ImportError
        When torch-harmonics is not installed.

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("torch_harmonics")  # the optional dependency
    >>> cfg = SphereConfig(nlat=8, n_frames=2, frame_interval=3600.0)
    >>> ds = simulate([1.0, 20.0], [2.0, 3.0], cfg)
    >>> dict(ds.sizes), ds.height.attrs["units"]
    ({'run': 2, 'time': 2, 'lat': 8, 'lon': 16}, 'm')
    """
    config = SphereConfig() if config is None else config
    h_f0, sigma = _check_forcing(h_f0, sigma)
    device = torch.device(device)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(
            f"dtype must be a floating torch.dtype such as torch.float64, got {dtype!r}"
        )
    if batch_size is None:
        batch_size = len(h_f0)
    elif not is_int(batch_size) or batch_size < 1:
        raise ConfigError(f"batch_size must be None or an integer >= 1, got {batch_size!r}")
    op = _Operators(config, dtype, device)
    fields = _integrate(h_f0, sigma, config, op, min(batch_size, len(h_f0)), progress)
    ds = _to_dataset(fields, config)
    params = {"h_f0": h_f0, "sigma": sigma}
    ds = ds.assign_coords(
        {name: ("run", value, _PARAM_ATTRS[name]) for name, value in params.items()}
    )
    ds.attrs["integration_steps"] = config.substeps * (config.n_frames - 1)
    ds.attrs["time_step_seconds"] = config.frame_interval / config.substeps
    return ds


def _check_forcing(h_f0, sigma) -> tuple[np.ndarray, np.ndarray]:
    amp = np.atleast_1d(np.asarray(h_f0, dtype=float))
    width = np.atleast_1d(np.asarray(sigma, dtype=float))
    if amp.ndim != 1 or amp.shape != width.shape or amp.size == 0:
        raise VariableError(
            "h_f0 and sigma must be non-empty 1-D arrays of equal length (one per run), "
            f"got shapes {amp.shape} and {width.shape}"
        )
    for name, values, ok, valid in (
        ("h_f0", amp, amp >= 0, "[0, inf) m h-1"),
        ("sigma", width, width > 0, "(0, inf) radians"),
    ):
        bad = np.flatnonzero(~(ok & np.isfinite(values)))
        if bad.size:
            raise VariableError(
                f"{name}[{bad[0]}] = {float(values[bad[0]])!r} is outside the valid range {valid}"
            )
    return amp, width


def _torch_harmonics():
    try:
        import torch_harmonics
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "xlevda.systems.sphere needs the optional dependency torch-harmonics: "
            "pip install 'xlevda[sphere]'"
        ) from err
    return torch_harmonics


class _Transforms:
    """Real scalar and vector spherical harmonic transforms, each a single batched matmul.

    Built on the Legendre tables of ``torch-harmonics`` (Gauss-Legendre grid, orthonormal,
    no Condon-Shortley phase), whose modules contract one order ``m`` at a time.  Version 0.8
    also rounds the vector normalization ``1 / (l (l + 1))`` to float32, which limits its vector
    transforms to about 1e-7 relative accuracy; the table is corrected to float64 here.

    Grid arrays are ``(..., nlat, nlon)`` with latitudes from north to south, vector fields
    ``(..., 2, nlat, nlon)`` as (eastward, northward); spectral arrays ``(..., L, L)`` (degree
    by order) and ``(..., 2, L, L)`` (spheroidal, toroidal).
    """

    def __init__(self, nlat: int, size: int, dtype: torch.dtype, device: torch.device) -> None:
        th = _torch_harmonics()
        kw = {"lmax": size, "mmax": size, "grid": "legendre-gauss", "csphase": False}
        shape = (nlat, 2 * nlat)
        degree = torch.arange(size)
        rounded = 1.0 / degree / (degree + 1)  # what torch-harmonics 0.8 multiplies by
        exact = 1.0 / (degree.double() * (degree + 1))
        fix = torch.where(degree > 0, exact / rounded.double(), 1.0)[:, None]  # (L, 1)
        forward = th.RealVectorSHT(*shape, **kw).weights.double() * fix
        inverse = th.InverseRealVectorSHT(*shape, **kw).dpct.double().transpose(-1, -2)
        tables = {
            "scalar": th.RealSHT(*shape, **kw).weights,  # (M, L, K)
            "iscalar": th.InverseRealSHT(*shape, **kw).pct.transpose(-1, -2),  # (M, K, L)
            "vector": torch.cat(tuple(forward), dim=1),  # (M, 2L, K)
            "ivector": torch.cat(tuple(inverse), dim=1),  # (M, 2K, L)
        }
        for name, table in tables.items():
            setattr(self, name, table.to(device=device, dtype=dtype).contiguous())
        self.nlon = 2 * nlat
        self.size = size

    @staticmethod
    def _legendre(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``out[..., j, m] = sum_i x[..., i, m] table[m, j, i]``; complex ``x`` (..., I, M)."""
        batch, (n_in, n_m) = x.shape[:-2], x.shape[-2:]
        x = x.reshape(-1, n_in, n_m).permute(2, 1, 0).contiguous()  # (M, I, B)
        out = torch.bmm(table, torch.view_as_real(x).reshape(n_m, n_in, -1))  # (M, J, 2B)
        out = torch.view_as_complex(out.reshape(n_m, table.shape[1], -1, 2))  # (M, J, B)
        return out.permute(2, 1, 0).reshape(*batch, table.shape[1], n_m)

    @staticmethod
    def _pair(out: torch.Tensor) -> torch.Tensor:
        """Combine ``(a, b)`` contracted with tables ``(P0; P1)`` into ``(P0 a + i P1 b,
        i P1 a - P0 b)``; ``out`` is (..., 2, 2J, M), the result (..., 2, J, M)."""
        p0, p1 = out.chunk(2, dim=-2)
        first = p0[..., 0, :, :] + 1j * p1[..., 1, :, :]
        second = 1j * p1[..., 0, :, :] - p0[..., 1, :, :]
        return torch.stack((first, second), dim=-3)

    def _fft(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * math.pi * torch.fft.rfft(x, dim=-1, norm="forward")[..., : self.size]

    def _ifft(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[..., 0].imag = 0.0
        return torch.fft.irfft(x, n=self.nlon, dim=-1, norm="forward")

    def sht(self, x: torch.Tensor) -> torch.Tensor:
        """Scalar analysis: grid (..., nlat, nlon) to coefficients (..., L, L)."""
        return self._legendre(self._fft(x), self.scalar)

    def isht(self, c: torch.Tensor) -> torch.Tensor:
        """Scalar synthesis: coefficients (..., L, L) to grid (..., nlat, nlon)."""
        return self._ifft(self._legendre(c, self.iscalar))

    def vsht(self, x: torch.Tensor) -> torch.Tensor:
        """Vector analysis: wind (..., 2, nlat, nlon) to coefficients (..., 2, L, L)."""
        return self._pair(self._legendre(self._fft(x), self.vector))

    def ivsht(self, c: torch.Tensor) -> torch.Tensor:
        """Vector synthesis: coefficients (..., 2, L, L) to wind (..., 2, nlat, nlon)."""
        return self._ifft(self._pair(self._legendre(c, self.ivector)))


class _Operators:
    """Transforms, spectral operators and grid constants of one grid, dtype and device.

    Spectral arrays have shape ``(..., L, L)`` with ``L = truncation + 1`` (degree ``l`` by
    order ``m``); grid arrays ``(..., nlat, nlon)`` with latitudes from north to south, the
    order of the transforms.
    """

    def __init__(self, config: SphereConfig, dtype: torch.dtype, device: torch.device) -> None:
        size = config.truncation + 1
        transforms = _Transforms(config.nlat, size, dtype, device)
        self.sht, self.isht = transforms.sht, transforms.isht
        self.vsht, self.ivsht = transforms.vsht, transforms.ivsht
        self.config, self.dtype, self.device = config, dtype, device
        kw = {"dtype": dtype, "device": device}
        a = config.radius
        degree = torch.arange(size, **kw)[:, None]  # (L, 1)
        eigen = degree * (degree + 1) / a**2  # minus the Laplacian's eigenvalues
        self.laplacian = -eigen
        self.inverse_laplacian = torch.where(degree > 0, -1 / eigen.clamp_min(1 / a**2), 0.0)
        self.damping = config.hyperviscosity * eigen**2  # (L, 1) decay rates (s-1)
        self.lat_np = np.radians(config.lat[::-1].copy())[:, None]  # (nlat, 1), north first
        self.lon_np = np.radians(config.lon)  # (nlon,)
        self.lat = torch.as_tensor(self.lat_np, **kw)
        self.lon = torch.as_tensor(self.lon_np, **kw)
        self.coriolis = 2 * config.omega * torch.sin(self.lat)  # (nlat, 1)

    def vrtdiv(self, uv: torch.Tensor) -> torch.Tensor:
        """Spectral vorticity and divergence (..., 2, L, L) of winds (..., 2, nlat, nlon)."""
        return self.vsht(uv) * (self.laplacian * self.config.radius)

    def wind(self, vrtdiv: torch.Tensor) -> torch.Tensor:
        """Eastward and northward wind ``(..., 2, nlat, nlon)`` from ``vrtdiv`` (..., 2, L, L)."""
        return self.ivsht(vrtdiv * (self.inverse_laplacian / self.config.radius))

    def forcing(self, t: float, amplitude: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
        """Height forcing (m s-1) at model time ``t`` (s), ``(R, nlat, nlon)``.

        ``amplitude`` (m s-1) and ``width`` (radians) have shape ``(R, 1, 1)``.
        """
        cfg = self.config
        lon_c = 2 * math.pi * t / cfg.day
        lat_c = cfg.max_declination * math.sin(2 * math.pi * t / cfg.year)
        return (
            amplitude
            * torch.exp(-(((self.lat - lat_c) / width) ** 2))
            * torch.cos(self.lon - lon_c)
        )

    def tendency(self, state, t: float, amplitude, width) -> torch.Tensor:
        """Time derivative of ``state`` = spectral ``(h, zeta, delta)``, ``(R, 3, L, L)``."""
        cfg = self.config
        h, zeta = self.isht(state[:, :2]).unbind(1)
        uv = self.wind(state[:, 1:])
        fluxes = torch.stack(
            (uv * (zeta + self.coriolis)[:, None], uv * (cfg.mean_height + h)[:, None]), dim=1
        )
        coeffs = self.vrtdiv(fluxes)  # (R, 2, 2, L, L): (curl, div) of each flux
        curl_q, div_q = coeffs[:, 0].unbind(1)
        div_m = coeffs[:, 1, 1]
        energy = cfg.gravity * h + 0.5 * (uv**2).sum(1)
        scalars = self.sht(torch.stack((energy, self.forcing(t, amplitude, width)), dim=1))
        return torch.stack(
            (scalars[:, 1] - div_m, -div_q, curl_q - self.laplacian * scalars[:, 0]), dim=1
        )

    def initial_state(self) -> torch.Tensor:
        """Spectral ``(h, zeta, delta)`` of ``config.initial``, ``(1, 3, L, L)``.

        The wind is taken nondivergent; the height solves the nonlinear balance equation
        ``laplacian(g h + |u|^2 / 2) = curl((zeta + f) u)``, then the initial condition's
        unbalanced bump is added and the global mean removed.
        """
        cfg = self.config
        kw = {"dtype": self.dtype, "device": self.device}
        u, v = cfg.initial.wind(self.lat_np, self.lon_np)
        vrtdiv = self.vrtdiv(torch.as_tensor(np.stack((u, v)), **kw))
        vrtdiv[1] = 0.0
        uv = self.wind(vrtdiv)
        flux = uv * (self.isht(vrtdiv[0]) + self.coriolis)
        energy = 0.5 * (uv**2).sum(0)
        bump = torch.as_tensor(cfg.initial.bump(self.lat_np, self.lon_np), **kw)
        h = (self.inverse_laplacian * self.vrtdiv(flux)[0] - self.sht(energy)) / cfg.gravity
        h = h + self.sht(bump)
        h[0, 0] = 0.0
        return torch.cat((h[None], vrtdiv))[None]

    def fields(self, state: torch.Tensor) -> dict[str, torch.Tensor]:
        """Grid ``u``, ``v``, ``height`` of ``state`` (R, 3, L, L), each (R, nlat, nlon)."""
        u, v = self.wind(state[:, 1:]).unbind(1)
        return {"u": u, "v": v, "height": self.isht(state[:, 0])}


def _step(state, t: float, dt: float, half, full, op: _Operators, amplitude, width):
    """One Lawson IF-RK4 step of ``dt`` from model time ``t``; ``half``/``full`` = exp(-D dt/2),
    exp(-D dt) with ``D`` the hyperdiffusion rates, shape (L, 1)."""
    k1 = op.tendency(state, t, amplitude, width)
    k2 = op.tendency(half * (state + 0.5 * dt * k1), t + 0.5 * dt, amplitude, width)
    k3 = op.tendency(half * state + 0.5 * dt * k2, t + 0.5 * dt, amplitude, width)
    k4 = op.tendency(full * state + dt * half * k3, t + dt, amplitude, width)
    return full * state + dt / 6 * (full * k1 + 2 * half * (k2 + k3) + k4)


def _integrate(h_f0, sigma, config: SphereConfig, op: _Operators, batch: int, progress: bool):
    """Run all batches: ``u``, ``v``, ``height`` at the frames, each (R, T, nlat, nlon)."""
    np_dtype = torch.empty(0, dtype=op.dtype).numpy().dtype
    shape = (len(h_f0), config.n_frames, config.nlat, config.nlon)
    out = {name: np.empty(shape, dtype=np_dtype) for name in _VAR_ATTRS}
    initial = op.initial_state()
    n_batches = -(-len(h_f0) // batch)
    with tqdm(total=n_batches * config.n_frames, disable=not progress, unit="frame") as bar:
        for lo in range(0, len(h_f0), batch):
            part = slice(lo, lo + batch)
            state = initial.expand(len(h_f0[part]), *initial.shape[1:]).clone()
            fields = {name: array[part] for name, array in out.items()}
            _integrate_batch(state, h_f0[part], sigma[part], config, op, fields, bar, lo)
    return out


def _integrate_batch(state, h_f0, sigma, config, op: _Operators, out, bar, first_run) -> None:
    """Integrate one batch of runs, writing each frame into the ``out`` arrays (views)."""
    kw = {"dtype": op.dtype, "device": op.device}
    amplitude = torch.as_tensor(h_f0 / HOUR, **kw)[:, None, None]
    width = torch.as_tensor(sigma, **kw)[:, None, None]
    legs = [(math.ceil(config.spinup / config.max_time_step - 1e-9), config.spinup)]
    legs += [(config.substeps, config.frame_interval)] * (config.n_frames - 1)
    t = 0.0
    for frame, (n_steps, span) in enumerate(legs):
        dt = span / n_steps if n_steps else 0.0
        half, full = torch.exp(-0.5 * dt * op.damping), torch.exp(-dt * op.damping)
        for i in range(n_steps):
            state = _step(state, t + i * dt, dt, half, full, op, amplitude, width)
        t += span
        fields = op.fields(state)
        _check_speed(fields, config, t, h_f0, sigma, first_run)
        for name, value in fields.items():
            out[name][:, frame] = value.flip(-2).cpu().numpy()
        bar.update(1)


def _check_speed(fields, config: SphereConfig, t: float, h_f0, sigma, first_run: int) -> None:
    """Abort when a run's wind exceeds the speed assumed in the time step (or blew up)."""
    speed = torch.sqrt(fields["u"] ** 2 + fields["v"] ** 2).amax(dim=(-2, -1)).cpu().numpy()
    bad = np.flatnonzero(~(speed <= config.max_wind))
    if bad.size:
        i = bad[0]
        raise ConfigError(
            f"run {first_run + i} (h_f0 = {float(h_f0[i])!r}, sigma = {float(sigma[i])!r}) "
            f"reached wind {float(speed[i]):.3g} m s-1 at model time {t:.6g} s, above "
            f"SphereConfig.max_wind = {config.max_wind!r} assumed by the time step: raise "
            "max_wind or lower cfl"
        )


def _to_dataset(fields: dict[str, np.ndarray], config: SphereConfig) -> xr.Dataset:
    offsets = np.round(config.frame_interval * np.arange(config.n_frames) * 1e9)
    coords = {
        "run": ("run", np.arange(fields["u"].shape[0]), RUN_ATTRS),
        "time": (
            "time",
            np.datetime64(config.start, "ns") + offsets.astype("timedelta64[ns]"),
            TIME_ATTRS,
        ),
        "lat": ("lat", config.lat, LAT_ATTRS),
        "lon": ("lon", config.lon, _LON_ATTRS),
    }
    dims = ("run", "time", "lat", "lon")
    data = {name: (dims, fields[name], attrs) for name, attrs in _VAR_ATTRS.items()}
    attrs = global_attrs(
        "Atmosphere benchmark: forced shallow water on the rotating sphere",
        "xlevda.systems.sphere.simulate",
        config,
    )
    attrs["initial_condition"] = type(config.initial).__name__
    return xr.Dataset(data, coords=coords, attrs=attrs)
