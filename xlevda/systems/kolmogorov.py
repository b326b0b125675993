"""Kolmogorov-flow benchmark: forced 2-D Navier-Stokes on a periodic box, batched over runs.

The model is the one of the LEVDA/LD-EnSF Kolmogorov benchmark (after Kochkov et al. 2021):
incompressible flow of unit density on ``[0, 2 pi)^2``, periodic in both directions, with a
steady Kolmogorov body force ``f = (A sin(k_f y), 0)``, linear drag ``mu`` and viscosity
``nu = 1 / Re``.  In vorticity-streamfunction form, with ``omega = dv/dx - du/dy`` and
``u = dpsi/dy``, ``v = -dpsi/dx``, ``laplacian(psi) = -omega``,

.. math::

    \\partial_t \\omega + u\\,\\partial_x\\omega + v\\,\\partial_y\\omega
        = \\nu \\nabla^2 \\omega - \\mu\\,\\omega - A k_f \\cos(k_f y).

The discretization is pseudo-spectral: the state is the real FFT of ``omega`` restricted to the
modes that survive the 2/3 rule (``|k_x| <= (n_x - 1) // 3``, same in y), so products are
evaluated without aliasing and the nonlinear term conserves energy and enstrophy exactly.
Viscosity and drag are integrated exactly by an integrating factor; the advection and the
forcing by the classical fourth-order Runge-Kutta scheme (Lawson's IF-RK4).  Each output step
is split into equal internal steps no longer than :attr:`KolmogorovConfig.max_time_step`, a
fraction of the RK4 stability limit for the largest resolved advection frequency.

All runs are integrated together: every tensor carries a leading run dimension, and the only
difference between runs is their viscosity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from xlevda.errors import ConfigError, VariableError
from xlevda.systems._cf import global_attrs
from xlevda.systems.kolmogorov_initial import (
    check_initial,
    check_seeds,
    initial_spectrum,
    sample_reynolds,
)
from xlevda.systems.kolmogorov_spectral import SpectralOperators, step, to_grid, velocity
from xlevda.systems.simulator import (
    BatchIntegrator,
    check_dtype,
    integrate_runs,
    resolve_batch_size,
    to_dataset,
)
from xlevda.validate import is_int, is_real

__all__ = [
    "PERIOD",
    "RK4_STABILITY",
    "KolmogorovConfig",
    "paper_config",
    "sample_reynolds",
    "simulate",
]

PERIOD = 2 * math.pi
"""Side of the periodic square domain."""

RK4_STABILITY = 2 * math.sqrt(2)
"""Largest ``|lambda h|`` on the imaginary axis for which classical RK4 is stable."""

_VAR_ATTRS = {
    "u": {"long_name": "x component of velocity", "units": "1"},
    "v": {"long_name": "y component of velocity", "units": "1"},
    "vorticity": {"long_name": "relative vorticity (dv/dx - du/dy)", "units": "1"},
}

_PARAM_ATTRS = {
    "Re": {"long_name": "Reynolds number (1 / viscosity)", "units": "1"},
    "nu": {"long_name": "kinematic viscosity", "units": "1"},
    "initial_seed": {"long_name": "seed of the run's random initial condition", "units": "1"},
}

_TIME_ATTRS = {
    "long_name": "nondimensional time since the initial condition",
    "units": "1",
    "axis": "T",
}


def _coord_attrs(axis: str) -> dict[str, object]:
    return {
        "long_name": f"{axis.lower()} position in the periodic box",
        "units": "1",
        "axis": axis,
        "periodic": "true",
        "period": PERIOD,
        "valid_min": 0.0,
        "valid_max": PERIOD,
    }


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"KolmogorovConfig.{name} must be {expected}, got {value!r}")


def _kept(n: int) -> int:
    """Largest wavenumber kept by the 2/3 rule on ``n`` points: ``3 k < n``."""
    return (n - 1) // 3


@dataclass(frozen=True)
class KolmogorovConfig:
    """Grid, forcing, initial condition, output frames and time stepping of the benchmark.

    Attributes
    ----------
    nx, ny : int
        Grid points in x and y on ``[0, 2 pi)``.  Any size works (even or odd); the forcing
        wavenumber must survive the 2/3 rule, so at least ``3 * forcing_wavenumber + 1``.
    n_frames : int
        Number of output frames.
    frame_stride : int
        Output steps between kept frames (5 in the benchmark: 200 steps, 40 frames).
    burn_in : int
        Output steps integrated before the first frame (100 in the benchmark).
    output_step : float
        Time of one output step (0.04 in the benchmark).
    forcing_amplitude : float
        ``A`` in the body force ``(A sin(k_f y), 0)``; 0 turns the forcing off.
    forcing_wavenumber : int
        ``k_f``, >= 1.
    drag : float
        Linear drag coefficient ``mu`` >= 0.
    initial_peak_wavenumber : float
        Wavenumber at which the energy spectrum of the random initial velocity peaks.
    initial_max_velocity : float
        Maximum speed of the initial velocity on the grid.
    seed : int
        Seed of the random initial condition, shared by all runs (unless
        :func:`simulate` gets ``initial_seed``, one per run).
    max_velocity : float
        Speed bound that sets the internal time step (the benchmark flow stays below about 5
        at Re <= 1500).  The speed is checked after every output step: a run faster than
        the stability limit of the step in use (twice ``max_velocity`` with the default
        step) stops with a :class:`~xlevda.errors.ConfigError`.
    time_step : float, optional
        Largest internal time step, at most :attr:`stable_time_step`.  Default: half of it,
        a Courant number of about 0.49 at ``max_velocity``.

    Examples
    --------
    >>> cfg = KolmogorovConfig(nx=32, ny=32)
    >>> cfg.kept_wavenumbers, round(cfg.stable_time_step, 4), cfg.max_time_step, cfg.substeps
    ((10, 10), 0.04, 0.02, 2)
    """

    nx: int = 64
    ny: int = 64
    n_frames: int = 40
    frame_stride: int = 5
    burn_in: int = 100
    output_step: float = 0.04
    forcing_amplitude: float = 1.0
    forcing_wavenumber: int = 4
    drag: float = 0.1
    initial_peak_wavenumber: float = 4.0
    initial_max_velocity: float = 3.0
    seed: int = 0
    max_velocity: float = 5.0
    time_step: float | None = None

    def __post_init__(self) -> None:
        kf = self.forcing_wavenumber
        _check(is_int(kf) and kf >= 1, "forcing_wavenumber", kf, "an integer >= 1")
        for name in ("nx", "ny"):
            value = getattr(self, name)
            _check(
                is_int(value) and value >= 3 * kf + 1,
                name,
                value,
                f"an integer >= {3 * kf + 1} (3 * forcing_wavenumber + 1, so that the forcing "
                "survives 2/3 dealiasing)",
            )
        for name in ("n_frames", "frame_stride"):
            value = getattr(self, name)
            _check(is_int(value) and value >= 1, name, value, "an integer >= 1")
        _check(is_int(self.burn_in) and self.burn_in >= 0, "burn_in", self.burn_in, ">= 0")
        _check(is_int(self.seed), "seed", self.seed, "an integer")
        for name in ("output_step", "initial_peak_wavenumber", "initial_max_velocity"):
            value = getattr(self, name)
            _check(is_real(value) and value > 0, name, value, "finite and > 0")
        amp = self.forcing_amplitude
        _check(is_real(amp), "forcing_amplitude", amp, "finite")
        _check(is_real(self.drag) and self.drag >= 0, "drag", self.drag, "finite and >= 0")
        vmax = self.max_velocity
        _check(
            is_real(vmax) and vmax >= self.initial_max_velocity,
            "max_velocity",
            vmax,
            f"finite and >= initial_max_velocity = {self.initial_max_velocity!r}",
        )
        if self.time_step is not None:
            limit = self.stable_time_step
            _check(
                is_real(self.time_step) and 0 < self.time_step <= limit,
                "time_step",
                self.time_step,
                f"None or in (0, {limit:.6g}], the RK4 stability limit for "
                f"max_velocity = {vmax!r} on a {self.nx}x{self.ny} grid",
            )

    @property
    def kept_wavenumbers(self) -> tuple[int, int]:
        """Largest ``|k_x|`` and ``|k_y|`` kept by the 2/3 rule."""
        return _kept(self.nx), _kept(self.ny)

    @property
    def stable_time_step(self) -> float:
        """RK4 stability limit ``2 sqrt(2) / (max_velocity |k|_max)`` of the advection."""
        return RK4_STABILITY / (self.max_velocity * math.hypot(*self.kept_wavenumbers))

    @property
    def max_time_step(self) -> float:
        """Largest internal step: ``time_step``, or half the stability limit by default."""
        return self.stable_time_step / 2 if self.time_step is None else self.time_step

    @property
    def substeps(self) -> int:
        """Equal internal steps per output step."""
        return math.ceil(self.output_step / self.max_time_step - 1e-9)

    @property
    def x(self) -> np.ndarray:
        """Grid positions in x, ``2 pi i / nx``, shape ``(nx,)``."""
        return PERIOD * np.arange(self.nx) / self.nx

    @property
    def y(self) -> np.ndarray:
        """Grid positions in y, ``2 pi j / ny``, shape ``(ny,)``."""
        return PERIOD * np.arange(self.ny) / self.ny

    @property
    def frame_times(self) -> np.ndarray:
        """Model times of the output frames, shape ``(n_frames,)``."""
        steps = self.burn_in + self.frame_stride * np.arange(self.n_frames)
        return steps * self.output_step


def paper_config() -> KolmogorovConfig:
    """The benchmark setting: 150x150 points, 100 burn-in steps, every 5th of 200 steps kept.

    Examples
    --------
    >>> cfg = paper_config()
    >>> cfg.nx, cfg.n_frames, cfg.substeps, cfg.frame_times[[0, -1]].round(2).tolist()
    (150, 40, 10, [4.0, 11.8])
    """
    return KolmogorovConfig(nx=150, ny=150)


def simulate(
    Re,
    config: KolmogorovConfig | None = None,
    *,
    initial_vorticity=None,
    initial_seed=None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """Integrate one Kolmogorov flow per Reynolds number, all runs in one batched computation.

    Parameters
    ----------
    Re : float or array-like of shape (n_runs,)
        Reynolds numbers, > 0; ``inf`` gives inviscid runs.  Viscosity ``nu = 1 / Re``.
    config : KolmogorovConfig, optional
        Grid, forcing, frames and time stepping (default ``KolmogorovConfig()``).
    initial_vorticity : array-like of shape (ny, nx) or (n_runs, ny, nx), optional
        Initial vorticity on the grid, shared by all runs or one per run.  Its mean and the
        modes beyond the 2/3 cutoff are removed.  Default: the seeded random field of
        ``config`` (see Notes), the same for every run.
    initial_seed : array-like of int, shape (n_runs,), optional
        One seed per run (integers >= 0): run ``i`` starts from the random field of
        ``replace(config, seed=initial_seed[i])``, so runs differ in initial condition.
        Stored as the run coordinate ``initial_seed``.  Not with ``initial_vorticity``.
    dtype, device
        Torch dtype and device of the computation; the output has the same precision.
    batch_size : int, optional
        Runs integrated together.  Default: all runs on an accelerator; on CPU as many as keep
        one vorticity field within about 1 MiB.  Results do not depend on it beyond round-off.
    progress : bool
        Show a progress bar over output steps.

    Returns
    -------
    xarray.Dataset
        Variables ``u``, ``v`` and ``vorticity`` with dims ``(run, time, y, x)``; periodic
        coords ``x``, ``y`` (axis, period), numeric ``time``, ``run`` and the per-run
        parameters ``Re`` and ``nu`` (and ``initial_seed`` when given); CF-1.11 global
        attributes with the config as JSON.

    Notes
    -----
    The default initial condition has the energy spectrum
    ``E(k) ~ k^4 exp(-2 k^2 / k_p^2)``, which peaks at ``k_p = initial_peak_wavenumber``, with
    random phases: Gaussian Fourier coefficients of the vorticity drawn from ``seed`` for every
    wavevector with ``|k_x|, |k_y| <= 4 k_p`` in a fixed order, so grids of any size sample the
    same continuous field (truncated to their resolved modes).  The velocity derives from a
    streamfunction, so it is divergence-free by construction; it is scaled so that the largest
    speed on the grid is ``initial_max_velocity``.

    Examples
    --------
    >>> cfg = KolmogorovConfig(nx=16, ny=16, n_frames=2, burn_in=1, frame_stride=1)
    >>> ds = simulate([500.0, 1500.0], cfg)
    >>> dict(ds.sizes), ds.time.values.round(2).tolist()
    ({'run': 2, 'time': 2, 'y': 16, 'x': 16}, [0.04, 0.08])
    """
    config = KolmogorovConfig() if config is None else config
    reynolds = _check_reynolds(Re)
    check_dtype(dtype)
    device = torch.device(device)
    omega0 = check_initial(initial_vorticity, len(reynolds), config.ny, config.nx)
    seeds = check_seeds(initial_seed, len(reynolds), omega0 is not None)
    field_bytes = config.nx * config.ny * dtype.itemsize
    batch = resolve_batch_size(batch_size, len(reynolds), device, field_bytes)
    op = _operators(config, dtype, device)
    fields = integrate_runs(
        _batch_integrator(reynolds, omega0, seeds, config, op),
        n_runs=len(reynolds),
        batch=batch,
        shape=(config.n_frames, config.ny, config.nx),
        variables=tuple(_VAR_ATTRS),
        dtype=dtype,
        steps_per_batch=_total_output_steps(config),
        unit="step",
        progress=progress,
    )
    params = {"Re": reynolds, "nu": 1.0 / reynolds}
    if seeds is not None:
        params["initial_seed"] = seeds
    ds = _to_dataset(fields, config, params)
    ds.attrs["integration_steps"] = config.substeps * _total_output_steps(config)
    ds.attrs["time_step"] = config.output_step / config.substeps
    return ds


def _check_reynolds(reynolds) -> np.ndarray:
    values = np.atleast_1d(np.asarray(reynolds, dtype=float))
    if values.ndim != 1 or values.size == 0:
        raise VariableError(
            f"Re must be a number or a non-empty 1-D array (one per run), got shape {values.shape}"
        )
    bad = np.flatnonzero(~(values > 0))
    if bad.size:
        raise VariableError(
            f"Re[{bad[0]}] = {float(values[bad[0]])!r} is invalid: Reynolds numbers must be > 0 "
            "(viscosity nu = 1 / Re >= 0; inf for inviscid runs)"
        )
    return values


def _total_output_steps(config: KolmogorovConfig) -> int:
    return config.burn_in + config.frame_stride * (config.n_frames - 1)


def _operators(
    config: KolmogorovConfig, dtype: torch.dtype, device: torch.device
) -> SpectralOperators:
    kw = {"dtype": dtype, "device": device}
    kx = torch.fft.rfftfreq(config.nx, 1.0 / config.nx, **kw)[None, :]
    ky = torch.fft.fftfreq(config.ny, 1.0 / config.ny, **kw)[:, None]
    k2 = kx**2 + ky**2
    keep_x, keep_y = config.kept_wavenumbers
    mask = ((kx.abs() <= keep_x) & (ky.abs() <= keep_y) & (k2 > 0)).to(dtype)
    inv_k2 = mask / torch.where(k2 > 0, k2, 1.0)
    y = torch.as_tensor(config.y, **kw)[:, None]
    kf = config.forcing_wavenumber
    curl = (-config.forcing_amplitude * kf * torch.cos(kf * y)).expand(config.ny, config.nx)
    return SpectralOperators(
        shape=(config.ny, config.nx),
        dtype=dtype,
        device=device,
        mask=mask,
        k2=k2,
        to_u=1j * ky * inv_k2,
        to_v=-1j * kx * inv_k2,
        ddx=1j * kx * mask,
        ddy=1j * ky * mask,
        forcing=torch.fft.rfft2(curl) * mask,
        k_max=math.hypot(keep_x, keep_y),
    )


def _default_initial(config: KolmogorovConfig, dtype, device, seed: int | None = None):
    """The random initial vorticity spectrum of ``seed`` (default ``config.seed``)."""
    op64 = _operators(config, torch.float64, torch.device("cpu"))
    seed = config.seed if seed is None else int(seed)
    return initial_spectrum(config, seed, op64).to(
        device=device, dtype=torch.promote_types(dtype, torch.complex64)
    )


def _batch_integrator(reynolds, omega0, seeds, config, op: SpectralOperators) -> BatchIntegrator:
    """The stepper of one batch of runs: ``u``, ``v``, ``vorticity`` at the frames."""
    shared = (
        _default_initial(config, op.dtype, op.device) if omega0 is None and seeds is None else None
    )
    h = config.output_step / config.substeps
    speed_limit = RK4_STABILITY / (h * op.k_max)
    frames = {config.burn_in + config.frame_stride * i: i for i in range(config.n_frames)}

    def integrate_batch(runs: slice, out: dict[str, np.ndarray], bar) -> None:
        n = len(reynolds[runs])
        if shared is not None:
            omega_hat = shared.expand(n, *shared.shape).clone()
        elif seeds is not None:
            omega_hat = torch.stack(
                [_default_initial(config, op.dtype, op.device, sd) for sd in seeds[runs]]
            )
        else:
            start = np.broadcast_to(omega0, (len(reynolds), config.ny, config.nx))[runs]
            grid = torch.tensor(start, dtype=op.dtype)
            omega_hat = torch.fft.rfft2(grid.to(op.device)) * op.mask
        nu = torch.as_tensor(1.0 / reynolds[runs], dtype=op.dtype, device=op.device)
        rate = -(nu[:, None, None] * op.k2 + config.drag)  # linear operator L, (R, ny, nxh)
        half, full = torch.exp(0.5 * h * rate), torch.exp(h * rate)
        for n_step in range(_total_output_steps(config) + 1):
            if n_step > 0:
                for _ in range(config.substeps):
                    omega_hat = step(omega_hat, h, half, full, op)
                bar.update(1)
            u, v = velocity(omega_hat, op)
            _check_speed(u, v, speed_limit, n_step, reynolds[runs], config, runs.start)
            if n_step in frames:
                out["u"][:, frames[n_step]] = u.cpu().numpy()
                out["v"][:, frames[n_step]] = v.cpu().numpy()
                out["vorticity"][:, frames[n_step]] = to_grid(omega_hat, op).cpu().numpy()

    return integrate_batch


def _check_speed(u, v, limit: float, n_step: int, reynolds, config, first_run: int) -> None:
    """Abort when the flow is too fast for the internal step (or has blown up)."""
    speed = torch.sqrt(u**2 + v**2).amax(dim=(-2, -1)).cpu().numpy()
    bad = np.flatnonzero(~(speed <= limit))
    if bad.size:
        i = bad[0]
        raise ConfigError(
            f"run {first_run + i} (Re = {float(reynolds[i])!r}) reached speed "
            f"{float(speed[i])!r} at t = {n_step * config.output_step:.6g}, beyond the RK4 "
            f"stability limit {limit:.6g} of the internal step: raise "
            f"KolmogorovConfig.max_velocity (now {config.max_velocity!r}) or lower time_step"
        )


def _to_dataset(fields: dict[str, np.ndarray], config: KolmogorovConfig, params) -> xr.Dataset:
    coords = {
        "time": ("time", config.frame_times, _TIME_ATTRS),
        "y": ("y", config.y, _coord_attrs("Y")),
        "x": ("x", config.x, _coord_attrs("X")),
    }
    attrs = global_attrs(
        "Kolmogorov flow benchmark: forced 2-D Navier-Stokes on a periodic box",
        "xlevda.systems.kolmogorov.simulate",
        config,
    )
    params = {name: (value, _PARAM_ATTRS[name]) for name, value in params.items()}
    return to_dataset(fields, ("run", "time", "y", "x"), coords, _VAR_ATTRS, params, attrs)
