"""The surrogate protocols: what assimilation needs from a differentiable model.

Torch only.  Anything satisfying :class:`Surrogate` can be assimilated into,
including a full-state model with an identity decoder.  The numerics in
:mod:`xlevda.core` see surrogates, observation encoders and their networks
through these protocols alone.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from xlevda.surrogates.schema import Affine, SurrogateSchema

__all__ = ["FullStateModel", "LatentEncoder", "ParameterSpace", "SensorNetwork", "Surrogate"]


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


class ParameterSpace(Protocol):
    """What drawing parameters from a prior needs of a schema.

    :class:`SurrogateSchema` provides it.

    Attributes
    ----------
    param_norm : Affine
        Maps physical parameter values to normalized ones (``normalize``).
    param_range : tuple of (float, float)
        The default range of each parameter, in physical units.
    """

    param_norm: Affine
    param_range: tuple[tuple[float, float], ...]


@runtime_checkable
class SensorNetwork(Protocol):
    """Fixed observation points observed at regular frames: what LD-EnSF needs of a network.

    :class:`~xlevda.surrogates.encoder.ObservationNetwork` provides it.
    """

    @property
    def n_features(self) -> int:
        """``P * C``: the length of one flattened observation vector."""
        ...

    def frames(self, n_obs: int) -> Tensor:
        """Surrogate frames of the first ``n_obs`` observations, int64 (n_obs,)."""
        ...


@runtime_checkable
class LatentEncoder(Protocol):
    """Observation histories to latent states: what LD-EnSF needs of an encoder.

    :class:`~xlevda.surrogates.encoder.ObservationEncoder` provides it.

    Attributes
    ----------
    in_mean : Tensor, shape (P * C,)
        Training mean of the inputs; sets the dtype and device the encoder reads.
    out_mean, out_std : Tensor, shape (d_s + d_u,)
        Training mean and standard deviation of the latent targets.
    error_std : Tensor, shape (T_val, d_s + d_u)
        Validation error per observation index and component.
    """

    in_mean: Tensor
    out_mean: Tensor
    out_std: Tensor
    error_std: Tensor

    def __call__(self, histories: Tensor) -> Tensor:
        """Histories (..., T, P * C) -> latent states ``(s_t, u_t)`` (..., T, d_s + d_u)."""
        ...

    def observation_std(self, n_obs: int) -> Tensor:
        """Pseudo-observation error per observation and component, (n_obs, d_s + d_u)."""
        ...

    def check(self, surrogate: Surrogate, network: SensorNetwork | None = None) -> None:
        """Raise if ``surrogate`` or ``network`` is not the one the encoder was trained for."""
        ...
