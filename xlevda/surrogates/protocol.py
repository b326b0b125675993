"""The surrogate protocol: what assimilation needs from a differentiable model.

Torch only.  Anything satisfying :class:`Surrogate` can be assimilated into,
including a full-state model with an identity decoder.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from xlevda.surrogates.schema import SurrogateSchema

__all__ = ["FullStateModel", "Surrogate"]


@runtime_checkable
class Surrogate(Protocol):
    """A latent dynamical model with a coordinate-based decoder.

    All tensors are in normalized units (see :class:`SurrogateSchema`).  A model may
    also provide ``decode_channel(s, prepared, c) -> (..., P)``, channel ``c`` of
    :meth:`decode_prepared`, where one channel costs less than all (the output
    fields are decoded one variable at a time), and ``misfit_prepared(s, prepared,
    data, sqrt_weight) -> (...,)``, the sum over points and channels of
    ``(sqrt_weight * (decode_prepared(s, prepared) - data))**2`` with data and
    weights (..., P, C), where a fused pass costs less (the assimilation cost then
    calls it instead of :meth:`decode_prepared`).

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


@runtime_checkable
class FullStateModel(Surrogate, Protocol):
    """A model whose latent state is the discretized physical state itself.

    What full-state ensemble methods (ETKF/LETKF, EnSF, 4DEnVar) need beyond
    :class:`Surrogate`: the ``latent_dim = N`` components of ``s`` are the state
    elements on the model's own grid, the Euler rollout ``s_{k+1} = s_k + dt F(s_k, u)``
    with ``dt`` one frame is the simulator's step from frame to frame, and the decoder
    interpolates the state linearly to query points.  Localization needs where every
    element sits; scaled analyses need which variable it holds.

    A model may also provide ``initial_state(u) -> s`` (``u`` (K, d_u) normalized,
    ``s`` (K, N)): the state at frame 0 given the parameters, used when no field
    background is given.
    """

    def state_channels(self) -> Tensor:
        """Variable (index into ``schema.variables``) of every state element: (N,) int64."""
        ...

    def distances(self, points: Tensor) -> Tensor:
        """Localization distance from every state element to query points.

        ``points`` (P, n_coords) normalized decoder inputs -> (N, P), in the model's
        documented units (those of a localization radius).
        """
        ...
