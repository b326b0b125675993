"""The surrogate protocol: what assimilation needs from a differentiable model.

Torch only.  Anything satisfying :class:`Surrogate` can be assimilated into,
including a full-state model with an identity decoder.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from xlevda.surrogates.schema import SurrogateSchema

__all__ = ["Surrogate"]


@runtime_checkable
class Surrogate(Protocol):
    """A latent dynamical model with a coordinate-based decoder.

    All tensors are in normalized units (see :class:`SurrogateSchema`).

    Attributes
    ----------
    latent_dim : int
        ``d_s``.
    param_dim : int
        ``d_u``.
    schema : SurrogateSchema
        Names, normalizations and time axis.
    """

    latent_dim: int
    param_dim: int
    schema: SurrogateSchema

    @property
    def dt(self) -> Tensor:
        """Latent Euler step (0-d tensor; learnable in LDNet)."""
        ...

    def vector_field(self, s: Tensor, u: Tensor) -> Tensor:
        """``ds/dt = F(s, u)``: ``s`` (..., d_s), ``u`` (..., d_u) -> (..., d_s)."""
        ...

    def decode(self, s: Tensor, points: Tensor) -> Tensor:
        """Fields at query points: ``s`` (..., d_s), ``points`` (..., P, n_coords) -> (..., P, C).

        Leading dimensions of ``s`` and ``points`` broadcast.  Equals
        ``decode_prepared(s, prepare_points(points))``.
        """
        ...

    def prepare_points(self, points: Tensor) -> Tensor:
        """State-independent part of decoding, computed once per point set.

        ``points`` (..., P, n_coords) -> (..., P, F): e.g. Fourier features, or the
        spatial basis of a separable decoder.  An optimizer that decodes the same
        points many times calls this once.
        """
        ...

    def decode_prepared(self, s: Tensor, prepared: Tensor) -> Tensor:
        """``s`` (..., d_s), ``prepared`` (..., P, F) -> (..., P, C); leading dims broadcast."""
        ...
