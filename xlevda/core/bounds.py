"""Parameters kept inside a box by a change of variables the optimizers do not see (torch only).

An analysis that moves a surrogate's parameters outside their training range asks the
surrogate to extrapolate.  :class:`ParameterBounds` maps a parameter ``u`` in ``(low, high)``
to ``w = logit((u - low) / (high - low))`` and back by ``u = low + (high - low) sigmoid(w)``;
:class:`BoundedSurrogate` is the surrogate seen in ``w``.  A window solved for ``(s, w)``
(every optimizer, member mode and covariance unchanged) gives parameters strictly inside
the box.  The prior is then Gaussian in ``w``: the ensemble's spread and mean in ``w``
(a logistic-like distribution in ``u`` for uniform prior draws).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from xlevda.errors import ConfigError
from xlevda.surrogates.protocol import Surrogate

__all__ = ["BoundedSurrogate", "ParameterBounds"]


@dataclass(frozen=True)
class ParameterBounds:
    """The box ``(low, high)`` of the last ``len(low)`` entries of augmented states.

    Attributes
    ----------
    low, high : Tensor, shape (d_u,)
        Finite, ``low < high`` (the working units of the parameters).
    margin : float
        States at or beyond the box are moved inside it by this fraction of its width
        (in ``(0, 0.5)``) before the transform (``logit`` is infinite on the boundary).

    Examples
    --------
    >>> b = ParameterBounds(torch.tensor([0.0]), torch.tensor([2.0]))
    >>> z = torch.tensor([[5.0, 1.0], [5.0, 1.5]])  # (s, u)
    >>> w = b.unbounded(z)
    >>> w[:, 1].tolist(), torch.allclose(b.bounded(w), z)
    ([0.0, 1.0986123085021973], True)
    >>> b.bounded(torch.tensor([[0.0, 50.0]]))[0, 1].item()  # any w: u inside the box
    2.0
    """

    low: Tensor
    high: Tensor
    margin: float = 1e-4

    def __post_init__(self) -> None:
        if self.low.shape != self.high.shape or self.low.dim() != 1:
            raise ConfigError(
                f"ParameterBounds low and high must be vectors of one shape, got "
                f"{tuple(self.low.shape)} and {tuple(self.high.shape)}"
            )
        if not (torch.isfinite(self.low).all() and torch.isfinite(self.high).all()):
            raise ConfigError("ParameterBounds low and high must be finite")
        if not bool((self.low < self.high).all()):
            raise ConfigError(
                f"ParameterBounds needs low < high, got {self.low.tolist()}, {self.high.tolist()}"
            )
        if not 0.0 < self.margin < 0.5:
            raise ConfigError(f"ParameterBounds.margin must be in (0, 0.5), got {self.margin!r}")

    def _box(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.low.to(z), (self.high - self.low).to(z)

    def outside(self, z: Tensor) -> Tensor:
        """Whether each state's parameters lie on or beyond the box: (..., d_z) -> (...)."""
        lo, width = self._box(z)
        frac = (z[..., -len(self.low) :] - lo) / width
        return ((frac <= 0) | (frac >= 1)).any(-1)

    def unbounded(self, z: Tensor) -> Tensor:
        """``(s, u) -> (s, w)``; ``u`` is first moved ``margin`` inside the box where needed."""
        lo, width = self._box(z)
        n = len(self.low)
        frac = ((z[..., -n:] - lo) / width).clamp(self.margin, 1 - self.margin)
        return torch.cat([z[..., :-n], torch.logit(frac)], -1)

    def bounded(self, w: Tensor) -> Tensor:
        """``(s, w) -> (s, u)``, ``u = low + (high - low) sigmoid(w)``."""
        lo, width = self._box(w)
        n = len(self.low)
        return torch.cat([w[..., :-n], lo + width * torch.sigmoid(w[..., -n:])], -1)


class BoundedSurrogate:
    """``surrogate`` with its parameters ``u`` replaced by ``w`` of :class:`ParameterBounds`.

    Its vector field is ``F(s, u(w))``; the decoder does not see parameters and passes
    through, as do the optional fused ``misfit_prepared`` and ``decode_channel``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> inner = SimpleNamespace(latent_dim=1, param_dim=1, dt=torch.tensor(1.0), schema=None,
    ...                         vector_field=lambda s, u: u.expand_as(s))
    >>> bounds = ParameterBounds(torch.tensor([-1.0]), torch.tensor([1.0]))
    >>> BoundedSurrogate(inner, bounds).vector_field(torch.zeros(1, 1), torch.zeros(1, 1))
    tensor([[0.]])
    """

    def __init__(self, surrogate: Surrogate, bounds: ParameterBounds) -> None:
        if len(bounds.low) != surrogate.param_dim:
            raise ConfigError(
                f"ParameterBounds has {len(bounds.low)} parameters; the surrogate has "
                f"{surrogate.param_dim}"
            )
        self.surrogate, self.bounds = surrogate, bounds
        self.latent_dim, self.param_dim = surrogate.latent_dim, surrogate.param_dim
        self.schema = surrogate.schema
        for name in ("misfit_prepared", "decode_channel"):
            if callable(getattr(surrogate, name, None)):
                setattr(self, name, getattr(surrogate, name))

    @property
    def dt(self) -> Tensor:
        return self.surrogate.dt

    def vector_field(self, s: Tensor, w: Tensor) -> Tensor:
        lo, width = self.bounds._box(w)
        return self.surrogate.vector_field(s, lo + width * torch.sigmoid(w))

    def decode(self, s: Tensor, points: Tensor) -> Tensor:
        return self.surrogate.decode(s, points)

    def prepare_points(self, points: Tensor) -> Tensor:
        return self.surrogate.prepare_points(points)

    def decode_prepared(self, s: Tensor, prepared: Tensor) -> Tensor:
        return self.surrogate.decode_prepared(s, prepared)
