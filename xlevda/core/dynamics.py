"""Latent time stepping shared by surrogate training and assimilation.

Forward Euler on latent steps (paper eq. 13) with the shifted start
``s_{-1} = 0`` (the first decoded frame is ``s_0 = dt F(0, u)``), the off-step
interpolation of eq. 17, and on top of them a surrogate's trajectories of
augmented states ``z = (s, u)``, their propagation from window to window and
their decoded values at a window's observations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from xlevda.core.window import ObsWindow
from xlevda.errors import ShapeError
from xlevda.surrogates.protocol import Surrogate

__all__ = [
    "VectorField",
    "euler_rollout",
    "interpolate_latent",
    "interpolate_trajectory",
    "latent_at_observations",
    "observe",
    "propagate",
    "trajectory",
]

VectorField = Callable[[Tensor, Tensor], Tensor]
"""``F(s, u) -> ds/dt`` with ``s`` of shape ``(..., d_s)`` and ``u`` of shape ``(..., d_u)``."""


def euler_rollout(
    field: VectorField,
    s0: Tensor,
    u: Tensor,
    dt: Tensor | float,
    n_steps: int,
    param_tendency: VectorField | None = None,
) -> tuple[Tensor, Tensor]:
    """Integrate ``ds/dt = F(s, u)``, ``du/dt = G(u)`` by forward Euler.

    Parameters
    ----------
    field : callable
        Latent vector field ``F(s, u)``.
    s0 : Tensor, shape (..., d_s)
        State at step 0 (use zeros and ``n_steps + 1`` for the shifted start).
    u : Tensor, shape (..., d_u)
        Parameters at step 0.
    dt : float or 0-d Tensor
        Latent step size.
    n_steps : int
        Number of Euler steps; the result holds ``n_steps + 1`` states.
    param_tendency : callable, optional
        ``G(u)``; ``None`` means static parameters (``G = 0``).

    Returns
    -------
    s : Tensor, shape (..., n_steps + 1, d_s)
    u : Tensor, shape (..., n_steps + 1, d_u)

    Examples
    --------
    >>> import torch
    >>> s, u = euler_rollout(lambda s, u: -s, torch.ones(1), torch.zeros(1), 0.5, 2)
    >>> s.squeeze(-1).tolist()
    [1.0, 0.5, 0.25]
    """
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    states = [s0]
    params = [u]
    s, p = s0, u
    for _ in range(n_steps):
        s = s + dt * field(s, p)
        if param_tendency is not None:
            p = p + dt * param_tendency(p)
        states.append(s)
        params.append(p)
    return torch.stack(states, dim=-2), torch.stack(params, dim=-2)


def interpolate_latent(
    field: VectorField,
    s: Tensor,
    u: Tensor,
    dt: Tensor | float,
    step: Tensor,
    frac: Tensor,
) -> Tensor:
    """Latent state at off-step times by paper eq. 17.

    ``s(t_k + a dt) = s_k + a dt F(s_k, u_k)`` for ``a`` in ``[0, 1)``; where every
    ``a`` is 0 the states ``s_k`` are returned without evaluating ``F``.

    Parameters
    ----------
    field : callable
        Latent vector field ``F(s, u)``.
    s : Tensor, shape (..., T, d_s)
        Latent trajectory on steps ``0..T-1``.
    u : Tensor, shape (..., T, d_u)
        Parameters on the same steps.
    dt : float or 0-d Tensor
        Latent step size.
    step : LongTensor, shape (M,)
        Step index ``k`` of each query time.
    frac : Tensor, shape (M,)
        Fraction ``a`` of each query time within its step.

    Returns
    -------
    Tensor, shape (..., M, d_s)

    Examples
    --------
    >>> import torch
    >>> s = torch.tensor([[0.0], [1.0]])
    >>> u = torch.zeros(2, 1)
    >>> interpolate_latent(lambda s, u: torch.ones_like(s), s, u, 1.0,
    ...                    torch.tensor([0, 1]), torch.tensor([0.5, 0.0])).squeeze(-1).tolist()
    [0.5, 1.0]
    """
    sk = s.index_select(-2, step)
    if not bool((frac != 0).any()):  # every time on a step: no field evaluation needed
        return sk
    uk = u.index_select(-2, step)
    a = frac.to(sk.dtype).unsqueeze(-1)
    return sk + a * dt * field(sk, uk)


def interpolate_trajectory(traj: Tensor, step: Tensor, frac: Tensor) -> Tensor:
    """States at off-step times, linear between the steps of an Euler trajectory.

    ``x(t_k + a dt) = x_k + a (x_{k+1} - x_k)``, which for a forward-Euler
    trajectory is paper eq. 17 (``x_{k+1} - x_k = dt F(x_k, u)``) without
    evaluating ``F`` again; at ``a = 0`` it is ``x_k`` exactly.

    Parameters
    ----------
    traj : Tensor, shape (..., n + 1, d)
        States on steps ``0..n``.
    step : LongTensor, shape (M,)
        Step ``k`` of each query time; ``k + 1 <= n`` wherever ``frac > 0``.
    frac : Tensor, shape (M,)
        Fraction ``a`` in ``[0, 1)``.

    Returns
    -------
    Tensor, shape (..., M, d)

    Examples
    --------
    >>> import torch
    >>> traj = torch.tensor([[0.0], [2.0], [3.0]])
    >>> interpolate_trajectory(traj, torch.tensor([0, 1, 2]),
    ...                        torch.tensor([0.25, 0.5, 0.0])).squeeze(-1).tolist()
    [0.5, 2.5, 3.0]
    """
    n = traj.shape[-2] - 1
    a = frac.to(traj.dtype).unsqueeze(-1)
    here = traj.index_select(-2, step)
    if not bool((frac > 0).any()):
        return here
    if int(step[frac > 0].max()) >= n:
        raise ShapeError(
            f"a fraction > 0 at the last step {n} of the trajectory needs step {n + 1}"
        )
    after = traj.index_select(-2, torch.clamp(step + 1, max=n))
    return here + a * (after - here)


def trajectory(
    surrogate: Surrogate, z: Tensor, n_steps: int, param_tendency: VectorField | None = None
) -> Tensor:
    """Latent trajectories from initial augmented states (eq. 13 and 16).

    Parameters
    ----------
    surrogate : Surrogate
    z : Tensor, shape (..., d_z)
        Initial states ``(s, u)``, ``d_z = latent_dim + param_dim``.
    n_steps : int
        Euler steps.
    param_tendency : callable, optional
        ``G(u)``; ``None`` keeps parameters static.

    Returns
    -------
    Tensor, shape (..., n_steps + 1, d_z)

    Examples
    --------
    >>> import torch
    >>> class Decay:
    ...     latent_dim, param_dim, dt = 1, 1, torch.tensor(0.5)
    ...     def vector_field(self, s, u):
    ...         return -u * s
    >>> trajectory(Decay(), torch.tensor([1.0, 1.0]), 2)[..., 0].tolist()
    [1.0, 0.5, 0.25]
    """
    d_s = surrogate.latent_dim
    s, u = euler_rollout(
        surrogate.vector_field, z[..., :d_s], z[..., d_s:], surrogate.dt, n_steps, param_tendency
    )
    return torch.cat([s, u], -1)


def propagate(
    surrogate: Surrogate, z: Tensor, n_steps: int, param_tendency: VectorField | None = None
) -> Tensor:
    """States ``n_steps`` Euler steps later: ``z`` (..., d_z) -> (..., d_z).

    The next window's background is ``propagate(surrogate, z_analysis, window.length)``.

    Examples
    --------
    >>> import torch
    >>> class Grow:
    ...     latent_dim, param_dim, dt = 1, 0, torch.tensor(1.0)
    ...     def vector_field(self, s, u):
    ...         return s
    >>> propagate(Grow(), torch.tensor([[1.0]]), 3).tolist()
    [[8.0]]
    """
    return trajectory(surrogate, z, n_steps, param_tendency)[..., -1, :]


def observe(
    surrogate: Surrogate,
    z: Tensor,
    window: ObsWindow,
    prepared: Tensor,
    param_tendency: VectorField | None = None,
) -> Tensor:
    """Decoded values at a window's observations from initial states.

    Parameters
    ----------
    surrogate : Surrogate
    z : Tensor, shape (M, d_z)
        Window-initial augmented states.
    window : ObsWindow
        In the dtype and on the device of ``z``.
    prepared : Tensor, shape (T_o, P, F)
        ``surrogate.prepare_points(window.points)``.
    param_tendency : callable, optional
        ``G(u)``; ``None`` keeps parameters static.

    Returns
    -------
    Tensor, shape (M, T_o, P, C)

    Examples
    --------
    >>> import torch
    >>> class Drift:  # s' = 1, decodes s at every point
    ...     latent_dim, param_dim, dt = 1, 0, torch.tensor(1.0)
    ...     def vector_field(self, s, u): return torch.ones_like(s)
    ...     def decode_prepared(self, s, prepared):
    ...         return s[..., None, :].expand(*s.shape[:-1], prepared.shape[-2], 1)
    >>> w = ObsWindow(torch.tensor([0, 2]), torch.tensor([0.5, 0.0]), torch.zeros(2, 1, 1),
    ...               torch.zeros(2, 1, 1), torch.ones(2, 1, 1))
    >>> observe(Drift(), torch.zeros(1, 1), w, w.points).flatten().tolist()
    [0.5, 2.0]
    """
    return surrogate.decode_prepared(
        latent_at_observations(surrogate, z, window, param_tendency), prepared
    )


def latent_at_observations(
    surrogate: Surrogate, z: Tensor, window: ObsWindow, param_tendency: VectorField | None
) -> Tensor:
    """Latent states at a window's observation times from initial states.

    The Euler rollout to the last observed step, then eq. 17 between steps.

    Parameters
    ----------
    surrogate : Surrogate
    z : Tensor, shape (M, d_z)
        Window-initial augmented states.
    window : ObsWindow
        In the dtype and on the device of ``z``.
    param_tendency : callable or None
        ``G(u)``; ``None`` keeps parameters static.

    Returns
    -------
    Tensor, shape (M, T_o, d_s)
    """
    d_s = surrogate.latent_dim
    last = int(window.step.max().item()) if window.step.numel() else 0
    s, u = euler_rollout(
        surrogate.vector_field, z[..., :d_s], z[..., d_s:], surrogate.dt, last, param_tendency
    )
    return interpolate_latent(surrogate.vector_field, s, u, surrogate.dt, window.step, window.frac)
