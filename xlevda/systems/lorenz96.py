"""Lorenz-96: a periodic ring of ``N`` variables with forcing ``F``, and its full-state surrogate.

.. math::

    \\frac{dx_i}{dt} = (x_{i+1} - x_{i-2})\\,x_{i-1} - x_i + F, \\qquad x_{i+N} = x_i,

integrated by the classical fourth-order Runge-Kutta scheme with the step ``dt = 0.05`` of the
data-assimilation literature (Lorenz 1996; DAPPER).  At ``F = 8`` (N = 40) the system is chaotic
with a climatological mean of about 2.3 and standard deviation of about 3.6 per variable; for
``F < 8/9`` the uniform state ``x_i = F`` is a stable fixed point (the growth rate of a wave
``e^{i k j}`` about it is ``F (cos k - cos 2k) - 1 <= 9 F / 8 - 1``).

All runs are integrated together: states are tensors ``(R, N)``.

:class:`Lorenz96Surrogate` exposes the same model through the surrogate protocol
(:class:`xlevda.surrogates.protocol.Surrogate`), with the full state as latent state and ``F`` as
its one parameter, so that the full-state baselines and the latent methods share one interface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from xlevda.errors import ConfigError, ShapeError, VariableError
from xlevda.surrogates.schema import Affine, SurrogateSchema
from xlevda.systems._cf import TIME_ATTRS, global_attrs
from xlevda.systems.simulator import check_dtype, to_dataset
from xlevda.validate import is_int, is_positive

__all__ = [
    "Lorenz96Config",
    "Lorenz96Surrogate",
    "rk4_step",
    "simulate",
    "tendency",
]

_X_ATTRS = {"long_name": "Lorenz-96 state variable", "units": "1"}
_SITE_ATTRS = {
    "long_name": "Lorenz-96 site index on the periodic ring",
    "units": "1",
    "axis": "X",
}
_TIME_ATTRS = {
    **TIME_ATTRS,
    "long_name": "model time",
    "units": "1",
    "comment": "nondimensional Lorenz-96 time; 0.05 corresponds to about 6 hours (Lorenz 1996)",
}
_FORCING_ATTRS = {"long_name": "Lorenz-96 forcing F", "units": "1"}


@dataclass(frozen=True)
class Lorenz96Config:
    """Size and time step of the Lorenz-96 ring.

    Attributes
    ----------
    n : int
        Number of variables ``N`` on the ring, >= 4.
    dt : float
        Runge-Kutta step, also the time between output frames; > 0.

    Examples
    --------
    >>> Lorenz96Config()
    Lorenz96Config(n=40, dt=0.05)
    """

    n: int = 40
    dt: float = 0.05

    def __post_init__(self) -> None:
        if not is_int(self.n) or self.n < 4:
            raise ConfigError(f"Lorenz96Config.n must be an integer >= 4, got {self.n!r}")
        if not is_positive(self.dt):
            raise ConfigError(f"Lorenz96Config.dt must be finite and > 0, got {self.dt!r}")


def tendency(x: Tensor, forcing: Tensor | float) -> Tensor:
    """Right-hand side ``dx/dt`` of Lorenz-96 on the last axis.

    Parameters
    ----------
    x : Tensor, shape (..., N)
        States; the last axis is the periodic ring.
    forcing : float or Tensor broadcasting against ``x``, e.g. shape (..., 1)
        ``F`` per state.

    Returns
    -------
    Tensor, shape (..., N)

    Examples
    --------
    >>> import torch
    >>> tendency(torch.full((5,), 8.0), 8.0).tolist()  # x = F is a fixed point
    [0.0, 0.0, 0.0, 0.0, 0.0]
    """
    ahead = torch.roll(x, -1, -1)
    behind = torch.roll(x, 1, -1)
    behind2 = torch.roll(x, 2, -1)
    return (ahead - behind2) * behind - x + forcing


def rk4_step(x: Tensor, forcing: Tensor | float, dt: float) -> Tensor:
    """One classical Runge-Kutta step of Lorenz-96.

    Parameters
    ----------
    x : Tensor, shape (..., N)
        States at time ``t``.
    forcing : float or Tensor broadcasting against ``x``, e.g. shape (..., 1)
        ``F`` per state.
    dt : float
        Step size.

    Returns
    -------
    Tensor, shape (..., N)
        States at ``t + dt``.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    >>> rk4_step(x, 8.0, 0.0).tolist()  # a zero step changes nothing
    [[1.0, 2.0, 3.0, 4.0]]
    """
    k1 = tendency(x, forcing)
    k2 = tendency(x + 0.5 * dt * k1, forcing)
    k3 = tendency(x + 0.5 * dt * k2, forcing)
    k4 = tendency(x + dt * k3, forcing)
    return x + (dt / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)


def simulate(
    forcing,
    n_steps: int,
    config: Lorenz96Config | None = None,
    *,
    x0=None,
    seed: int | torch.Generator = 0,
    spinup: int = 0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> xr.Dataset:
    """Integrate Lorenz-96 for every forcing value, all runs in one batched computation.

    Parameters
    ----------
    forcing : float or array-like of shape (R,)
        ``F`` of each run (finite).
    n_steps : int
        Runge-Kutta steps after the spin-up; the output holds ``n_steps + 1`` frames, the first
        at time 0.
    config : Lorenz96Config, optional
        Ring size and step (default ``Lorenz96Config()``).
    x0 : array-like of shape (N,) or (R, N), optional
        Initial states (before the spin-up).  Default: ``F`` plus independent standard normal
        perturbations drawn from ``seed``.
    seed : int or torch.Generator
        Source of the default initial perturbations.
    spinup : int
        Steps integrated and discarded before frame 0 (e.g. 1000 to reach the attractor).
    dtype, device
        Torch dtype and device of the computation; the output has the same precision.

    Returns
    -------
    xarray.Dataset
        Variable ``x`` with dims ``(run, time, site)``; coordinates ``run``, ``time`` (model time,
        ``k * dt``), ``site`` (``0 .. N-1``, axis X) and ``forcing(run)``; CF-1.11 global
        attributes with the config as JSON.

    Raises
    ------
    ConfigError
        For a negative ``n_steps`` or ``spinup``, a bad seed or dtype.
    VariableError
        For non-finite forcing or initial states.
    ShapeError
        For initial states of the wrong shape.

    Examples
    --------
    >>> ds = simulate([8.0, 10.0], n_steps=4, config=Lorenz96Config(n=8))
    >>> dict(ds.sizes), ds.forcing.values.tolist()
    ({'run': 2, 'time': 5, 'site': 8}, [8.0, 10.0])
    """
    config = Lorenz96Config() if config is None else config
    for name, value in (("n_steps", n_steps), ("spinup", spinup)):
        if not is_int(value) or value < 0:
            raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
    check_dtype(dtype)
    device = torch.device(device)
    f = np.atleast_1d(np.asarray(forcing, dtype=float))
    if f.ndim != 1 or f.size == 0 or not np.isfinite(f).all():
        raise VariableError(
            "forcing must be a finite number or a non-empty 1-D array (one per run), "
            f"got {forcing!r}"
        )
    f_t = torch.as_tensor(f, dtype=dtype, device=device)[:, None]
    x = _initial_state(x0, f_t, config.n, seed)
    for _ in range(spinup):
        x = rk4_step(x, f_t, config.dt)
    out = np.empty((f.size, n_steps + 1, config.n), dtype=torch.empty(0, dtype=dtype).numpy().dtype)
    out[:, 0] = x.cpu().numpy()
    for k in range(1, n_steps + 1):
        x = rk4_step(x, f_t, config.dt)
        out[:, k] = x.cpu().numpy()
    coords = {
        "time": ("time", config.dt * np.arange(n_steps + 1), _TIME_ATTRS),
        "site": ("site", np.arange(config.n, dtype=float), _SITE_ATTRS),
    }
    attrs = global_attrs("Lorenz-96 model", "xlevda.systems.lorenz96.simulate", config) | {
        "spinup_steps": spinup
    }
    params = {"forcing": (f, _FORCING_ATTRS)}
    return to_dataset({"x": out}, ("run", "time", "site"), coords, {"x": _X_ATTRS}, params, attrs)


def _initial_state(x0, forcing: Tensor, n: int, seed: int | torch.Generator) -> Tensor:
    """``(R, N)`` starting states: ``x0`` broadcast over runs, or ``F`` plus N(0, 1) noise."""
    n_runs = forcing.shape[0]
    if x0 is None:
        if isinstance(seed, torch.Generator):
            gen = seed
        elif is_int(seed) and seed >= 0:
            gen = torch.Generator().manual_seed(int(seed))
        else:
            raise ConfigError(f"seed must be an int >= 0 or a torch.Generator, got {seed!r}")
        noise = torch.randn((n_runs, n), generator=gen, dtype=forcing.dtype, device=gen.device)
        return forcing + noise.to(forcing.device)
    x = torch.as_tensor(np.asarray(x0, dtype=float), dtype=forcing.dtype, device=forcing.device)
    if x.shape not in ((n,), (n_runs, n)):
        raise ShapeError(
            f"x0 must have shape (N,) = ({n},) or (R, N) = ({n_runs}, {n}), got {tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise VariableError("x0 holds NaN or infinite values")
    return x.expand(n_runs, n).clone()


class Lorenz96Surrogate:
    """Lorenz-96 as a full-state model (:class:`~xlevda.surrogates.protocol.FullStateModel`).

    The full state is the latent state and the decoder is the identity at the sites, so
    LEVDA and the full-state methods (``FullStateConfig``) both run on it; localization
    distances are in sites along the ring.

    - Latent state ``s`` = the ``N`` variables (``latent_dim = N``); parameter ``u`` = the
      forcing normalized by ``schema.param_norm`` (``param_dim = 1``).
    - The vector field is the Runge-Kutta increment divided by the step,
      ``F(s, u) = (RK4(s, F_u, dt) - s) / dt``, so that the forward Euler rollout used by
      assimilation, ``s_{k+1} = s_k + dt F(s_k, u)``, reproduces :func:`simulate` step for step
      (up to round-off); it is not the Lorenz-96 tendency itself.
    - Decoder: a query point is the site coordinate normalized by ``schema.coord_norm``, which
      maps the ring ``[0, N)`` onto ``[-1, 1)`` (site ``i`` at ``2 i / N - 1``; ``1`` is site
      ``N``, i.e. site 0 again).  At a site the decoder returns that variable exactly; between
      sites it interpolates linearly on the periodic ring (between ``N - 1`` and 0 too), and
      points outside ``[-1, 1)`` wrap around.  Outputs are not normalized
      (``schema.output_norm`` is the identity).

    Parameters
    ----------
    config : Lorenz96Config, optional
        Ring size and step (default ``Lorenz96Config()``).
    forcing_range : (float, float)
        Prior range of ``F`` written to the schema; ``[lo, hi]`` maps onto normalized ``[-1, 1]``.
    n_frames : int
        Frames of the schema's time axis (``0, dt, ...``).  The model is valid at any time; this
        is only the horizon that time checks treat as trained.
    dtype, device
        Of :attr:`dt`; the other methods compute in the dtype and on the device of their inputs.

    Examples
    --------
    >>> import torch
    >>> model = Lorenz96Surrogate(Lorenz96Config(n=8), dtype=torch.float64)
    >>> s = torch.arange(8.0, dtype=torch.float64)
    >>> points = model.site_points(dtype=torch.float64)[[2, 5]]
    >>> model.decode(s, points).squeeze(-1).tolist()
    [2.0, 5.0]
    """

    def __init__(
        self,
        config: Lorenz96Config | None = None,
        *,
        forcing_range: tuple[float, float] = (6.0, 10.0),
        n_frames: int = 201,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config = Lorenz96Config() if config is None else config
        lo_hi = tuple(forcing_range) if isinstance(forcing_range, tuple | list) else ()
        if (
            len(lo_hi) != 2
            or not all(isinstance(v, Real) and math.isfinite(v) for v in lo_hi)
            or not lo_hi[0] < lo_hi[1]
        ):
            raise ConfigError(
                f"forcing_range must be (lo, hi) with finite lo < hi, got {forcing_range!r}"
            )
        if not is_int(n_frames) or n_frames < 2:
            raise ConfigError(f"n_frames must be an integer >= 2, got {n_frames!r}")
        check_dtype(dtype)
        n, dt = self.config.n, self.config.dt
        self.latent_dim = n
        self.param_dim = 1
        self._dt = torch.tensor(dt, dtype=dtype, device=device)
        self.schema = SurrogateSchema(
            variables=("x",),
            variable_attrs=(dict(_X_ATTRS),),
            output_norm=Affine((0.0,), (1.0,)),
            coords=("site",),
            coord_attrs=(dict(_SITE_ATTRS),),
            coord_norm=Affine((n / 2,), (n / 2,)),
            params=("forcing",),
            param_attrs=(dict(_FORCING_ATTRS),),
            param_norm=Affine.from_range(lo_hi[0], lo_hi[1]),
            param_range=((float(lo_hi[0]), float(lo_hi[1])),),
            time_origin="0.0",
            time_step=dt,
            time_units="1",
            time_is_datetime=False,
            n_frames=n_frames,
            grid={"site": tuple(float(i) for i in range(n))},
            frame_times=tuple(k * dt for k in range(n_frames)),
            attrs={
                "source": "xlevda.systems.lorenz96.Lorenz96Surrogate",
                "vector_field": "Runge-Kutta 4 increment divided by dt",
                "decoder": "identity at sites, linear interpolation on the periodic ring",
            },
        )

    @property
    def dt(self) -> Tensor:
        """The Runge-Kutta step as a 0-d tensor."""
        return self._dt

    def forcing(self, u: Tensor) -> Tensor:
        """Physical ``F`` from normalized parameters: ``u`` (..., 1) -> (..., 1)."""
        norm = self.schema.param_norm
        return norm.offset[0] + norm.scale[0] * u

    def vector_field(self, s: Tensor, u: Tensor) -> Tensor:
        """``(RK4(s, F_u, dt) - s) / dt``: ``s`` (..., N), ``u`` (..., 1) -> (..., N)."""
        if s.shape[-1] != self.latent_dim or u.shape[-1] != 1:
            raise ShapeError(
                f"vector_field expects s (..., {self.latent_dim}) and u (..., 1), got "
                f"{tuple(s.shape)} and {tuple(u.shape)}"
            )
        # divide by the step the Euler rollout multiplies by (``self.dt`` in its own dtype), so
        # that ``s + dt F`` is the Runge-Kutta step to round-off in any dtype
        return (rk4_step(s, self.forcing(u), self.config.dt) - s) / self._dt.to(s)

    def site_points(
        self, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
    ) -> Tensor:
        """Normalized query points of the ``N`` sites, shape (N, 1)."""
        sites = np.arange(self.latent_dim, dtype=float)[:, None]
        return torch.as_tensor(self.schema.coord_norm.normalize(sites), dtype=dtype, device=device)

    def prepare_points(self, points: Tensor) -> Tensor:
        """Interpolation weights: ``points`` (..., P, 1) -> (..., P, N), two nonzeros per row.

        A position within a few rounding errors of a site snaps to it, so that decoding at a
        site is exact.
        """
        if points.shape[-1] != 1 or points.dim() < 2:
            raise ShapeError(f"points must have shape (..., P, 1), got {tuple(points.shape)}")
        n = self.latent_dim
        pos = (points[..., 0] + 1.0) * (n / 2)
        nearest = torch.round(pos)
        tol = 16 * n * torch.finfo(points.dtype).eps
        pos = torch.where((pos - nearest).abs() <= tol, nearest, pos)
        left = torch.floor(pos)
        frac = (pos - left).unsqueeze(-1)
        i0 = torch.remainder(left.long(), n)
        one_hot = torch.nn.functional.one_hot
        return (1 - frac) * one_hot(i0, n).to(points.dtype) + frac * one_hot(
            torch.remainder(i0 + 1, n), n
        ).to(points.dtype)

    def decode_prepared(self, s: Tensor, prepared: Tensor) -> Tensor:
        """``s`` (..., N), ``prepared`` (..., P, N) -> (..., P, 1); leading dims broadcast."""
        return prepared @ s.unsqueeze(-1)

    def decode(self, s: Tensor, points: Tensor) -> Tensor:
        """``s`` (..., N), ``points`` (..., P, 1) -> (..., P, 1); leading dims broadcast."""
        return self.decode_prepared(s, self.prepare_points(points))

    def state_channels(self) -> Tensor:
        """Every state element holds ``x``: (N,) zeros."""
        return torch.zeros(self.latent_dim, dtype=torch.int64, device=self._dt.device)

    def distances(self, points: Tensor) -> Tensor:
        """Distance in sites along the ring from every site to query points: (P, 1) -> (N, P).

        The localization distance of full-state methods (a radius in sites).
        """
        if points.ndim != 2 or points.shape[-1] != 1:
            raise ShapeError(f"points must have shape (P, 1), got {tuple(points.shape)}")
        n = self.latent_dim
        pos = (points[:, 0] + 1.0) * (n / 2)
        sites = torch.arange(n, dtype=points.dtype, device=points.device)
        gap = torch.remainder(sites[:, None] - pos[None, :], n)
        return torch.minimum(gap, n - gap)
