"""What identifies the surrogate an LD-EnSF encoder was trained for.

Torch only.  :class:`SurrogateFingerprint` records a surrogate's sizes, step and
schema and its latent rollouts at fixed probe parameters, so that an encoder
tells a retrained surrogate from the one it was trained for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from xlevda.core.dynamics import euler_rollout
from xlevda.errors import ConfigError
from xlevda.surrogates.protocol import Surrogate
from xlevda.surrogates.schema import SurrogateSchema

__all__ = ["SurrogateFingerprint", "latent_rollout"]

_PROBE_PARAMS = (-0.5, 0.0, 0.5)
"""Normalized parameter values (all components) of the surrogate fingerprint probe."""

_PROBE_FRAMES = 4
"""Frames of each probe rollout."""


def latent_rollout(surrogate: Surrogate, u: Tensor, n_frames: int) -> Tensor:
    """Frames ``0..n_frames-1`` of any surrogate's latent trajectory from ``s_{-1} = 0``.

    Frame ``k`` is the state after ``k + 1`` forward Euler steps of
    ``surrogate.vector_field`` with ``surrogate.dt``: ``u`` (..., d_u) ->
    (..., n_frames, d_s), as :meth:`~xlevda.surrogates.ldnet.LDNetModel.rollout`
    for any :class:`~xlevda.surrogates.protocol.Surrogate`.
    """
    s_start = u.new_zeros((*u.shape[:-1], surrogate.latent_dim))
    s, _ = euler_rollout(surrogate.vector_field, s_start, u, surrogate.dt, n_frames)
    return s[..., 1:, :]


def _probe(surrogate: Surrogate) -> Tensor:
    """Latent rollouts at fixed parameters, float64 (n_probe, _PROBE_FRAMES, d_s)."""
    like = torch.as_tensor(surrogate.dt)
    u = torch.tensor(_PROBE_PARAMS, dtype=like.dtype, device=like.device)[:, None]
    u = u.expand(len(_PROBE_PARAMS), surrogate.param_dim)
    with torch.no_grad():
        return latent_rollout(surrogate, u, _PROBE_FRAMES).to(device="cpu", dtype=torch.float64)


@dataclass(frozen=True)
class SurrogateFingerprint:
    """What identifies the surrogate an encoder was trained for.

    Attributes
    ----------
    latent_dim, param_dim : int
    dt : float
        Latent Euler step.
    schema : dict
        ``SurrogateSchema.to_dict()`` (compared without its free-form ``attrs``).
    probe : tuple
        Latent rollouts of :data:`_PROBE_FRAMES` frames at the normalized parameters
        :data:`_PROBE_PARAMS` (all components), nested tuples of shape
        (3, 4, latent_dim): they tell a retrained surrogate from the original even
        when the schemas agree.

    Examples
    --------
    >>> from xlevda.surrogates.decoder_configs import MLPDecoderConfig
    >>> from xlevda.surrogates.ldnet import LDNetModel
    >>> from xlevda.surrogates.config import LDNetConfig
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> schema = SurrogateSchema.minimal(5)
    >>> def model(seed):
    ...     config = LDNetConfig(latent_dim=3, seed=seed, decoder=MLPDecoderConfig())
    ...     return LDNetModel(config, schema)
    >>> a, b = SurrogateFingerprint.of(model(0)), SurrogateFingerprint.of(model(1))
    >>> a.difference(a) is None, b.difference(a).startswith("latent trajectories")
    (True, True)
    """

    latent_dim: int
    param_dim: int
    dt: float
    schema: dict[str, Any]
    probe: tuple = field(repr=False)

    @classmethod
    def of(cls, surrogate: Surrogate) -> SurrogateFingerprint:
        """Fingerprint of ``surrogate`` (its schema must be a :class:`SurrogateSchema`)."""
        if not isinstance(surrogate.schema, SurrogateSchema):
            raise ConfigError(
                f"surrogate.schema must be a SurrogateSchema, got {type(surrogate.schema).__name__}"
            )
        return cls(
            latent_dim=int(surrogate.latent_dim),
            param_dim=int(surrogate.param_dim),
            dt=float(torch.as_tensor(surrogate.dt).detach()),
            schema=surrogate.schema.to_dict(),
            probe=tuple(_probe(surrogate).tolist()),
        )

    def difference(self, other: SurrogateFingerprint) -> str | None:
        """What differs from ``other`` (in words), or ``None`` if it is the same surrogate.

        ``dt`` and the probe rollouts are compared to a relative tolerance of
        ``1e-4`` (so the same surrogate in float32 and float64 matches).
        """
        for name in ("latent_dim", "param_dim"):
            if getattr(self, name) != getattr(other, name):
                return f"{name} {getattr(self, name)} != {getattr(other, name)}"
        if not math.isclose(self.dt, other.dt, rel_tol=1e-4):
            return f"latent step dt {self.dt} != {other.dt}"
        keys = sorted((set(self.schema) | set(other.schema)) - {"attrs"})
        for key in keys:
            if self.schema.get(key) != other.schema.get(key):
                return f"schema {key!r} {self.schema.get(key)!r} != {other.schema.get(key)!r}"
        mine, theirs = torch.tensor(self.probe), torch.tensor(other.probe)
        atol = 1e-4 * max(1.0, float(mine.abs().max()))
        if not torch.allclose(mine, theirs, rtol=1e-4, atol=atol):
            gap = float((mine - theirs).abs().max())
            return (
                "latent trajectories at the probe parameters differ by up to "
                f"{gap:.3g} (another or retrained surrogate)"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (round-trips through the constructor)."""
        return asdict(self)
