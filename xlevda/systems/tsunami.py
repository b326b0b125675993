"""Tsunami benchmark: shallow water on a closed beta-plane box, batched over runs in torch.

The model is the one of the LEVDA/LD-EnSF tsunami benchmark: a 1000 km square ocean of uniform
depth ``H`` with linearized momentum equations on a beta-plane,

.. math::

    \\partial_t u = -g\\,\\partial_x\\eta + f v, \\qquad
    \\partial_t v = -g\\,\\partial_y\\eta - f u, \\qquad
    \\partial_t \\eta = -\\partial_x[(H+\\eta)u] - \\partial_y[(H+\\eta)v],

with ``f = f0 + beta * y`` and closed walls (no normal flow).  The discretization is an
Arakawa C-grid (``eta`` at cell centres, ``u``/``v`` on the cell faces) with upwind thickness
in the continuity fluxes, so total volume is conserved to round-off.  Time stepping is
forward-backward: ``eta`` is updated first, then ``u`` with the new ``eta`` and the old ``v``,
then ``v`` with the new ``eta`` and the new ``u`` (Coriolis averaged onto the faces from the
four neighbours), which is stable for the small ``f * dt`` of this problem.

All runs are integrated together: every tensor carries a leading run dimension.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from xlevda.errors import ConfigError, VariableError
from xlevda.systems._cf import (
    LAT_ATTRS,
    LON_ATTRS,
    TIME_ATTRS,
    X_ATTRS,
    Y_ATTRS,
    global_attrs,
)
from xlevda.systems.simulator import (
    BatchIntegrator,
    check_dtype,
    datetime_axis,
    integrate_runs,
    resolve_batch_size,
    to_dataset,
)
from xlevda.systems.tsunami_config import (
    EARTH_RADIUS,
    PAPER_FRAME_INTERVAL,
    TsunamiConfig,
    paper_config,
)
from xlevda.systems.tsunami_stepper import Operators, schedule, step
from xlevda.validate import check_int, is_int

__all__ = [
    "EARTH_RADIUS",
    "PAPER_FRAME_INTERVAL",
    "PARAM_ATTRS",
    "VAR_ATTRS",
    "TsunamiConfig",
    "initial_state",
    "operators",
    "paper_config",
    "sample_sources",
    "simulate",
]

VAR_ATTRS = {
    "u": {
        "standard_name": "eastward_sea_water_velocity",
        "long_name": "eastward sea water velocity",
        "units": "m s-1",
    },
    "v": {
        "standard_name": "northward_sea_water_velocity",
        "long_name": "northward sea water velocity",
        "units": "m s-1",
    },
    "eta": {
        "standard_name": "sea_surface_height_above_mean_sea_level",
        "long_name": "sea surface height above mean sea level",
        "units": "m",
    },
}
"""CF attributes of the output variables, in output order."""

PARAM_ATTRS = {
    "src_lat": {"units": "degrees_north", "long_name": "latitude of the tsunami source"},
    "src_lon": {"units": "degrees_east", "long_name": "longitude of the tsunami source"},
    "src_x": {"units": "m", "long_name": "eastward source position from the domain centre"},
    "src_y": {"units": "m", "long_name": "northward source position from the domain centre"},
}
"""CF attributes of the per-run source parameters (``run`` coordinates of the output)."""


def sample_sources(
    n_runs: int, seed: int | np.random.Generator = 0, config: TsunamiConfig | None = None
) -> dict[str, np.ndarray]:
    """Draw benchmark sources ``(-L/2 + a L, -L/2 + b L)`` with ``a, b ~ U(0, 0.5)``.

    Parameters
    ----------
    n_runs : int
        Number of sources, >= 1.
    seed : int or numpy.random.Generator
        Seed or generator for the draws.
    config : TsunamiConfig, optional
        Domain and geographic placement (default ``TsunamiConfig()``).

    Returns
    -------
    dict
        ``{"src_lat": (n_runs,), "src_lon": (n_runs,)}`` in degrees, ready for
        ``simulate(**sources, config=config)``.

    Examples
    --------
    >>> s = sample_sources(3, seed=0)
    >>> sorted(s), s["src_lat"].shape
    (['src_lat', 'src_lon'], (3,))
    """
    config = TsunamiConfig() if config is None else config
    if not is_int(n_runs) or n_runs < 1:
        raise ConfigError(f"n_runs must be an integer >= 1, got {n_runs!r}")
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.0, 0.5, size=(2, n_runs))
    lat, lon = config.to_latlon(config.length * (a - 0.5), config.length * (b - 0.5))
    return {"src_lat": lat, "src_lon": lon}


def simulate(
    src_lat,
    src_lon,
    config: TsunamiConfig | None = None,
    *,
    output_times=None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    progress: bool = False,
    refine: int = 1,
) -> xr.Dataset:
    """Integrate one tsunami per source position, all runs in one batched computation.

    Parameters
    ----------
    src_lat, src_lon : float or array-like of shape (n_runs,)
        Source (bump centre) positions in degrees_north / degrees_east; must lie inside the box.
    config : TsunamiConfig, optional
        Grid, physics and frames (default ``TsunamiConfig()``).
    output_times : array-like of float, optional
        Seconds since ``config.start`` at which to output frames, strictly increasing and >= 0;
        every one is hit exactly (each gap is split into equal steps no longer than the CFL
        step).  Default: ``config.n_frames`` frames ``config.frame_interval`` apart from 0.
    dtype, device
        Torch dtype and device of the computation; the output has the same precision.
    batch_size : int, optional
        Runs integrated together, each batch one vectorized computation.  Default: all runs
        on an accelerator; on CPU as many as keep one field within about 1 MiB (5 runs at
        150x150 in float64), which keeps the state in cache and is several times faster per
        run than one large batch.  Results do not depend on it beyond round-off.
    progress : bool
        Show a progress bar over time steps.
    refine : int
        Integrate on a grid ``refine`` times finer in each direction (with its smaller
        time step) and output each frame's ``refine x refine`` cell means on the grid of
        ``config``.  The scheme is second order: at the default 48x48, ``refine=3`` differs
        from ``refine=6`` by about 0.02 relative RMSE, ``refine=1`` by about 0.2
        (``docs/results.md``, "Converged tsunami runs"), so the coarse grid's own
        discretization error is mostly gone from the output.  Costs about ``refine**3``.

    Returns
    -------
    xarray.Dataset
        Variables ``u``, ``v`` (velocity averaged to cell centres) and ``eta`` with dims
        ``(run, time, lat, lon)``; coords ``lat``, ``lon``, ``x(lon)``, ``y(lat)``, ``time``,
        ``run`` and the per-run parameters ``src_lat``, ``src_lon``, ``src_x``, ``src_y``;
        CF-1.11 global attributes with the config as JSON.

    Examples
    --------
    >>> cfg = TsunamiConfig(nx=8, ny=8, n_frames=3)
    >>> ds = simulate([43.0, 44.0], [164.0, 166.0], cfg)
    >>> dict(ds.sizes)
    {'run': 2, 'time': 3, 'lat': 8, 'lon': 8}
    """
    config = TsunamiConfig() if config is None else config
    src_lat, src_lon, src_x, src_y = _check_sources(src_lat, src_lon, config)
    times = _output_times(output_times, config)
    check_int("refine", refine, 1)
    fine = replace(config, nx=refine * config.nx, ny=refine * config.ny)
    steps = schedule(times, fine.max_time_step)
    device = torch.device(device)
    check_dtype(dtype)
    field_bytes = fine.nx * fine.ny * dtype.itemsize
    batch = resolve_batch_size(batch_size, len(src_x), device, field_bytes)
    op = operators(fine, dtype, device)
    fields = integrate_runs(
        _batch_integrator(src_x, src_y, fine, steps, op, refine),
        n_runs=len(src_x),
        batch=batch,
        shape=(len(steps), config.ny, config.nx),
        variables=tuple(VAR_ATTRS),
        dtype=dtype,
        steps_per_batch=sum(n for n, _ in steps),
        unit="step",
        progress=progress,
    )
    params = {"src_lat": src_lat, "src_lon": src_lon, "src_x": src_x, "src_y": src_y}
    ds = _to_dataset(fields, times, config, params)
    ds.attrs["integration_steps"] = sum(n for n, _ in steps)
    ds.attrs["refine"] = refine
    ds.attrs["max_time_step_seconds"] = max((dt for _, dt in steps), default=0.0)
    return ds


def _check_sources(src_lat, src_lon, config: TsunamiConfig):
    lat = np.atleast_1d(np.asarray(src_lat, dtype=float))
    lon = np.atleast_1d(np.asarray(src_lon, dtype=float))
    if lat.ndim != 1 or lat.shape != lon.shape or lat.size == 0:
        raise VariableError(
            "src_lat and src_lon must be non-empty 1-D arrays of equal length (one per run), "
            f"got shapes {lat.shape} and {lon.shape}"
        )
    x, y = config.to_xy(lat, lon)
    half = config.length / 2 * (1 + 1e-9)
    for name, deg, metres, limits in (
        ("src_lat", lat, y, config.to_latlon(0.0, np.array([-half, half]))[0]),
        ("src_lon", lon, x, config.to_latlon(np.array([-half, half]), 0.0)[1]),
    ):
        bad = np.flatnonzero(~(np.abs(metres) <= half))
        if bad.size:
            raise VariableError(
                f"{name}[{bad[0]}] = {float(deg[bad[0]])!r} is outside the domain: valid range "
                f"[{limits[0]:.4f}, {limits[1]:.4f}] degrees"
            )
    return lat, lon, x, y


def _output_times(output_times, config: TsunamiConfig) -> np.ndarray:
    if output_times is None:
        return config.frame_interval * np.arange(config.n_frames, dtype=float)
    times = np.atleast_1d(np.asarray(output_times, dtype=float))
    if (
        times.ndim != 1
        or times.size == 0
        or not np.all(np.isfinite(times))
        or times[0] < 0
        or np.any(np.diff(times) <= 0)
    ):
        raise ConfigError(
            "output_times must be a non-empty 1-D array of finite seconds since start, >= 0 and "
            f"strictly increasing, got {output_times!r}"
        )
    return times


def operators(config: TsunamiConfig, dtype: torch.dtype, device: torch.device) -> Operators:
    """The :class:`~xlevda.systems.tsunami_stepper.Operators` of ``config`` on ``device``."""
    f_u = f_v = None
    if config.coriolis:
        y = torch.as_tensor(config.y, dtype=dtype, device=device)
        f_u = 0.25 * (config.f0 + config.beta * y)[:, None]
        f_v = 0.25 * (config.f0 + config.beta * (y[:-1] + config.dy / 2))[:, None]
    return Operators(dtype, device, config.dx, config.dy, config.gravity, config.depth, f_u, f_v)


def initial_state(src_x, src_y, config: TsunamiConfig, dtype: torch.dtype, device):
    """Fields at rest with one Gaussian bump of ``eta`` per source position.

    Parameters
    ----------
    src_x, src_y : array-like or Tensor of shape (R,)
        Source positions (m) from the box centre; differentiable when tensors.
    config : TsunamiConfig
        Grid and bump (``amplitude``, ``sigma``).
    dtype, device
        Of the fields.

    Returns
    -------
    tuple of Tensor
        ``eta`` (R, ny, nx), ``u`` (R, ny, nx + 1) and ``v`` (R, ny + 1, nx), velocities zero.
    """
    kw = {"dtype": dtype, "device": device}
    x = torch.as_tensor(config.x, **kw)
    y = torch.as_tensor(config.y, **kw)
    x0 = torch.as_tensor(src_x, **kw)[:, None, None]
    y0 = torch.as_tensor(src_y, **kw)[:, None, None]
    r2 = (x[None, None, :] - x0) ** 2 + (y[None, :, None] - y0) ** 2
    eta = config.amplitude * torch.exp(-r2 / (2 * config.sigma**2))
    n = eta.shape[0]
    u = torch.zeros(n, config.ny, config.nx + 1, **kw)
    v = torch.zeros(n, config.ny + 1, config.nx, **kw)
    return eta, u, v


def _batch_integrator(
    src_x, src_y, config, steps, op: Operators, refine: int = 1
) -> BatchIntegrator:
    """The stepper of one batch of runs: each frame's ``u``, ``v`` at cell centres and ``eta``,
    averaged over blocks of ``refine x refine`` cells of ``config``'s grid."""

    def coarse(field: Tensor) -> np.ndarray:
        if refine > 1:
            b, ny, nx = field.shape
            field = field.reshape(b, ny // refine, refine, nx // refine, refine).mean((2, 4))
        return field.cpu().numpy()

    def integrate_batch(runs: slice, out: dict[str, np.ndarray], bar) -> None:
        eta, u, v = initial_state(src_x[runs], src_y[runs], config, op.dtype, op.device)
        for frame, (n_steps, dt) in enumerate(steps):
            for _ in range(n_steps):
                step(eta, u, v, dt, op)
            bar.update(n_steps)
            out["u"][:, frame] = coarse(0.5 * (u[..., :-1] + u[..., 1:]))
            out["v"][:, frame] = coarse(0.5 * (v[..., :-1, :] + v[..., 1:, :]))
            out["eta"][:, frame] = coarse(eta)

    return integrate_batch


def _to_dataset(fields: dict[str, np.ndarray], times: np.ndarray, config: TsunamiConfig, params):
    coords = {
        "time": ("time", datetime_axis(config.start, times), TIME_ATTRS),
        "lat": ("lat", config.to_latlon(0.0, config.y)[0], LAT_ATTRS),
        "lon": ("lon", config.to_latlon(config.x, 0.0)[1], LON_ATTRS),
        "y": ("lat", config.y, Y_ATTRS),
        "x": ("lon", config.x, X_ATTRS),
    }
    attrs = global_attrs(
        "Tsunami benchmark: shallow water on a closed beta-plane box",
        "xlevda.systems.tsunami.simulate",
        config,
    )
    params = {name: (value, PARAM_ATTRS[name]) for name, value in params.items()}
    return to_dataset(fields, ("run", "time", "lat", "lon"), coords, VAR_ATTRS, params, attrs)
