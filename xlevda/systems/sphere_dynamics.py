"""Spectral dynamics of the atmosphere benchmark (:mod:`xlevda.systems.sphere`).

Vorticity-divergence form of the forced shallow-water equations on the sphere: the spectral
tendency, the balanced initial state and the Lawson IF-RK4 step, batched over runs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from xlevda.systems.sphere_config import SphereConfig
from xlevda.systems.sphere_transforms import SphericalTransforms

__all__ = ["SphereOperators", "step"]


class SphereOperators:
    """Transforms, spectral operators and grid constants of one grid, dtype and device.

    Spectral arrays have shape ``(..., L, L)`` with ``L = truncation + 1`` (degree ``l`` by
    order ``m``); grid arrays ``(..., nlat, nlon)`` with latitudes from north to south, the
    order of the transforms.
    """

    def __init__(self, config: SphereConfig, dtype: torch.dtype, device: torch.device) -> None:
        size = config.truncation + 1
        transforms = SphericalTransforms(config.nlat, size, dtype, device)
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


def step(state, t: float, dt: float, half, full, op: SphereOperators, amplitude, width):
    """One Lawson IF-RK4 step of ``dt`` from model time ``t``; ``half``/``full`` = exp(-D dt/2),
    exp(-D dt) with ``D`` the hyperdiffusion rates, shape (L, 1)."""
    k1 = op.tendency(state, t, amplitude, width)
    k2 = op.tendency(half * (state + 0.5 * dt * k1), t + 0.5 * dt, amplitude, width)
    k3 = op.tendency(half * state + 0.5 * dt * k2, t + 0.5 * dt, amplitude, width)
    k4 = op.tendency(full * state + dt * half * k3, t + dt, amplitude, width)
    return full * state + dt / 6 * (full * k1 + 2 * half * (k2 + k3) + k4)
