"""The forward-backward C-grid step of the tsunami benchmark (:mod:`xlevda.systems.tsunami`).

Pure numerics on batched torch tensors, independent of the benchmark's configuration: ``eta``
at cell centres ``(R, ny, nx)``, ``u`` on the east faces ``(R, ny, nx + 1)`` and ``v`` on the
north faces ``(R, ny + 1, nx)``, wall faces zero.  :func:`xlevda.systems.tsunami.operators`
builds the :class:`Operators` of a configuration and
:func:`xlevda.systems.tsunami.initial_state` its initial fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Operators", "schedule", "step"]


@dataclass(frozen=True)
class Operators:
    """Grid constants of one integration, as tensors on the target device.

    Attributes
    ----------
    dtype, device
        Of the computation.
    dx, dy : float
        Cell widths (m).
    gravity : float
        Gravitational acceleration (m s-2).
    depth : float
        Resting water depth (m).
    f_u : Tensor or None
        ``f / 4`` at the ``u`` faces, ``(ny, 1)``; None without Coriolis.
    f_v : Tensor or None
        ``f / 4`` at the interior ``v`` faces, ``(ny - 1, 1)``; None without Coriolis.
    """

    dtype: torch.dtype
    device: torch.device
    dx: float
    dy: float
    gravity: float
    depth: float
    f_u: torch.Tensor | None
    f_v: torch.Tensor | None


def schedule(times: np.ndarray, max_dt: float) -> list[tuple[int, float]]:
    """``(n_steps, dt)`` reaching each output time from the previous one (the first from 0).

    Each gap is split into the fewest equal steps no longer than ``max_dt``.

    Examples
    --------
    >>> schedule(np.array([0.0, 10.0, 15.0]), 4.0)
    [(0, 0.0), (3, 3.3333333333333335), (2, 2.5)]
    """
    gaps = np.diff(times, prepend=0.0)
    steps = np.maximum(np.ceil(gaps / max_dt - 1e-9), gaps > 0).astype(int)
    return [(int(n), float(gap / n) if n else 0.0) for n, gap in zip(steps, gaps, strict=True)]


def _face_sum(w: torch.Tensor) -> torch.Tensor:
    """Sum of the four ``u`` (``v``) faces around each interior ``v`` (``u``) face."""
    total = w[..., :-1, :-1] + w[..., :-1, 1:]
    total += w[..., 1:, :-1]
    total += w[..., 1:, 1:]
    return total


def step(eta: torch.Tensor, u: torch.Tensor, v: torch.Tensor, dt: float, op: Operators) -> None:
    """Advance ``(eta, u, v)`` in place by one forward-backward step of ``dt`` seconds.

    ``eta`` first (upwind thickness fluxes), then ``u`` with the new ``eta`` and the old
    ``v``, then ``v`` with the new ``eta`` and the new ``u``; wall faces stay zero.
    """
    h = eta + op.depth
    ui, vi = u[..., 1:-1], v[..., 1:-1, :]
    flux = ui * torch.where(ui > 0, h[..., :-1], h[..., 1:])
    flux *= dt / op.dx
    eta[..., :-1] -= flux
    eta[..., 1:] += flux
    flux = vi * torch.where(vi > 0, h[..., :-1, :], h[..., 1:, :])
    flux *= dt / op.dy
    eta[..., :-1, :] -= flux
    eta[..., 1:, :] += flux
    ui.add_(eta.diff(dim=-1), alpha=-op.gravity * dt / op.dx)
    if op.f_u is not None:
        ui.addcmul_(op.f_u, _face_sum(v), value=dt)
    vi.add_(eta.diff(dim=-2), alpha=-op.gravity * dt / op.dy)
    if op.f_v is not None:
        vi.addcmul_(op.f_v, _face_sum(u), value=-dt)
