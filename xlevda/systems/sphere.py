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

import numpy as np
import torch
import xarray as xr

from xlevda.errors import ConfigError, VariableError
from xlevda.systems._cf import LAT_ATTRS, LON_ATTRS, TIME_ATTRS, global_attrs
from xlevda.systems.simulator import (
    BatchIntegrator,
    check_dtype,
    datetime_axis,
    integrate_runs,
    resolve_batch_size,
    to_dataset,
)
from xlevda.systems.sphere_config import HOUR, SphereConfig
from xlevda.systems.sphere_dynamics import SphereOperators, step
from xlevda.validate import is_int

__all__ = ["sample_forcing", "simulate"]

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
    check_dtype(dtype)
    batch = resolve_batch_size(batch_size, len(h_f0), device)
    op = SphereOperators(config, dtype, device)
    fields = integrate_runs(
        _batch_integrator(h_f0, sigma, config, op),
        n_runs=len(h_f0),
        batch=batch,
        shape=(config.n_frames, config.nlat, config.nlon),
        variables=tuple(_VAR_ATTRS),
        dtype=dtype,
        steps_per_batch=config.n_frames,
        unit="frame",
        progress=progress,
    )
    ds = _to_dataset(fields, config, {"h_f0": h_f0, "sigma": sigma})
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


def _batch_integrator(h_f0, sigma, config: SphereConfig, op: SphereOperators) -> BatchIntegrator:
    """The stepper of one batch of runs: ``u``, ``v``, ``height`` at the frames."""
    initial = op.initial_state()
    kw = {"dtype": op.dtype, "device": op.device}
    legs = [(math.ceil(config.spinup / config.max_time_step - 1e-9), config.spinup)]
    legs += [(config.substeps, config.frame_interval)] * (config.n_frames - 1)

    def integrate_batch(runs: slice, out: dict[str, np.ndarray], bar) -> None:
        state = initial.expand(len(h_f0[runs]), *initial.shape[1:]).clone()
        amplitude = torch.as_tensor(h_f0[runs] / HOUR, **kw)[:, None, None]
        width = torch.as_tensor(sigma[runs], **kw)[:, None, None]
        t = 0.0
        for frame, (n_steps, span) in enumerate(legs):
            dt = span / n_steps if n_steps else 0.0
            half, full = torch.exp(-0.5 * dt * op.damping), torch.exp(-dt * op.damping)
            for i in range(n_steps):
                state = step(state, t + i * dt, dt, half, full, op, amplitude, width)
            t += span
            fields = op.fields(state)
            _check_speed(fields, config, t, h_f0[runs], sigma[runs], runs.start)
            for name, value in fields.items():
                out[name][:, frame] = value.flip(-2).cpu().numpy()
            bar.update(1)

    return integrate_batch


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


def _to_dataset(fields: dict[str, np.ndarray], config: SphereConfig, params) -> xr.Dataset:
    coords = {
        "time": (
            "time",
            datetime_axis(config.start, config.frame_interval * np.arange(config.n_frames)),
            TIME_ATTRS,
        ),
        "lat": ("lat", config.lat, LAT_ATTRS),
        "lon": ("lon", config.lon, _LON_ATTRS),
    }
    attrs = global_attrs(
        "Atmosphere benchmark: forced shallow water on the rotating sphere",
        "xlevda.systems.sphere.simulate",
        config,
    )
    attrs["initial_condition"] = type(config.initial).__name__
    params = {name: (value, _PARAM_ATTRS[name]) for name, value in params.items()}
    return to_dataset(fields, ("run", "time", "lat", "lon"), coords, _VAR_ATTRS, params, attrs)
