"""The pseudo-spectral IF-RK4 step of the Kolmogorov benchmark (:mod:`xlevda.systems.kolmogorov`).

Pure numerics on batched torch tensors, independent of the benchmark's configuration: the state
is the real FFT of the vorticity, ``(R, ny, nx // 2 + 1)``, restricted to the modes kept by the
2/3 rule; :class:`SpectralOperators` holds the spectral constants of one grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SpectralOperators", "step", "tendency", "to_grid", "velocity"]


@dataclass(frozen=True)
class SpectralOperators:
    """Spectral constants of one integration, as tensors on the target device.

    Spectral arrays have the real-FFT layout ``(ny, nx // 2 + 1)``; the derivative operators
    are zero outside the modes kept by the 2/3 rule and at ``k = 0``.

    Attributes
    ----------
    shape : tuple of int
        Grid ``(ny, nx)``.
    dtype, device
        Of the computation.
    mask : Tensor
        1 on the kept modes except ``k = 0``, else 0; real.
    k2 : Tensor
        ``|k|^2``; real.
    to_u, to_v : Tensor
        ``omega_hat -> u_hat``: ``i k_y / |k|^2``; ``omega_hat -> v_hat``: ``-i k_x / |k|^2``.
    ddx, ddy : Tensor
        ``i k_x`` and ``i k_y``, masked.
    forcing : Tensor
        FFT of the forcing's curl, masked.
    k_max : float
        Largest resolved ``|k|``.
    """

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device
    mask: torch.Tensor
    k2: torch.Tensor
    to_u: torch.Tensor
    to_v: torch.Tensor
    ddx: torch.Tensor
    ddy: torch.Tensor
    forcing: torch.Tensor
    k_max: float


def to_grid(spectral: torch.Tensor, op: SpectralOperators) -> torch.Tensor:
    """Grid values ``(..., ny, nx)`` of a spectral field ``(..., ny, nx // 2 + 1)``."""
    return torch.fft.irfft2(spectral, s=op.shape)


def velocity(omega_hat: torch.Tensor, op: SpectralOperators) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid velocity ``(u, v)``, each ``(R, ny, nx)``, of a spectral vorticity ``(R, ny, nxh)``."""
    return to_grid(omega_hat * op.to_u, op), to_grid(omega_hat * op.to_v, op)


def tendency(omega_hat: torch.Tensor, op: SpectralOperators) -> torch.Tensor:
    """Dealiased ``-(u . grad) omega`` plus forcing, spectral ``(R, ny, nxh)``."""
    u, v = velocity(omega_hat, op)
    omega = to_grid(omega_hat, op)
    # -(u . grad) omega = -div(u omega) for divergence-free u: two transforms instead of three
    advection = torch.fft.rfft2(u.mul_(omega)).mul_(op.ddx)
    advection.addcmul_(torch.fft.rfft2(v.mul_(omega)), op.ddy)
    return op.forcing - advection


def step(
    omega_hat: torch.Tensor,
    h: float,
    half: torch.Tensor,
    full: torch.Tensor,
    op: SpectralOperators,
) -> torch.Tensor:
    """One Lawson IF-RK4 step of ``h``; ``half``, ``full`` are ``exp(L h / 2)``, ``exp(L h)``.

    ``L`` is the linear (viscosity and drag) operator, per run: ``(R, ny, nxh)``.
    """
    a = tendency(omega_hat, op)
    b = tendency(half * (omega_hat + 0.5 * h * a), op)
    half_omega = half * omega_hat
    c = tendency(half_omega + 0.5 * h * b, op)
    full_omega = full * omega_hat
    d = tendency(full_omega + h * half * c, op)
    d += full * a
    d += 2 * half * (b + c)
    return full_omega.add_(d, alpha=h / 6)
