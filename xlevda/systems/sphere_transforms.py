"""Spherical harmonic transforms of the atmosphere benchmark, as batched matmuls.

Built on the Legendre tables of the optional dependency ``torch-harmonics`` (extra ``sphere``).
"""

from __future__ import annotations

import math

import torch

__all__ = ["SphericalTransforms", "torch_harmonics"]


def torch_harmonics():
    """The ``torch_harmonics`` module, or an ImportError that says how to install it."""
    try:
        import torch_harmonics
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "xlevda.systems.sphere needs the optional dependency torch-harmonics: "
            "pip install 'xlevda[sphere]'"
        ) from err
    return torch_harmonics


class SphericalTransforms:
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
        th = torch_harmonics()
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
