"""EnSF of the full state in per-variable scaled coordinates, as a method.

Numerics: :func:`xlevda.core.ensf.scaled_ensf_analysis`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from xlevda.core.ensf import EnSFConfig, scaled_ensf_analysis
from xlevda.core.inflation import Inflation
from xlevda.errors import ConfigError
from xlevda.methods.fullstate import FrameFilter, Observed
from xlevda.run import RunOptions
from xlevda.validate import check_real

__all__ = ["EnSF"]


@dataclass(frozen=True)
class EnSF(FrameFilter):
    """The ensemble score filter of the augmented full state, variables scaled as groups.

    Analyses at every observed frame, each parameter a group of its own; the noise
    of the analysis at frame ``f`` of a case with seed ``s`` comes from the seed
    ``s * 1_000_003 + f``.

    Attributes
    ----------
    ensf : EnSFConfig
        The reverse-SDE settings.
    obs_scale : float
        Ensemble spread (or observation error, where smaller) in the scaled
        coordinates, > 0; the default 0.3 is LD-EnSF's.
    inflation : Inflation
        Multiplicative inflation of the forecast perturbations before the analysis
        (additive inflation is not supported: ``Inflation.additive`` must be 0).  The
        Monte-Carlo prior score of a small ensemble pulls particles onto the members,
        so cycled EnSF ensembles collapse without it.

    Ensemble size, seed, precision and device are :class:`~xlevda.run.RunOptions`
    (default 40 members, float64).

    Examples
    --------
    >>> EnSF().obs_scale
    0.3
    """

    ensf: EnSFConfig = field(default_factory=EnSFConfig)
    obs_scale: float = 0.3
    inflation: Inflation = field(default_factory=Inflation)

    name: ClassVar[str] = "EnSF"
    title: ClassVar[str] = "EnSF (ensemble score filter) on the full state"
    remedy: ClassVar[str] = "more EnSF steps (EnSFConfig.steps), a smaller obs_scale or inflation"

    def __post_init__(self) -> None:
        if not isinstance(self.ensf, EnSFConfig):
            raise ConfigError(f"EnSF.ensf={self.ensf!r} is invalid: use EnSFConfig(...)")
        check_real("EnSF.obs_scale", self.obs_scale, 0.0, low_open=True)
        if not isinstance(self.inflation, Inflation):
            raise ConfigError(f"EnSF.inflation={self.inflation!r}: expected Inflation(...)")
        if self.inflation.additive != 0:
            raise ConfigError(
                f"EnSF.inflation={self.inflation!r}: additive inflation is not supported by "
                "the EnSF; use Inflation(multiplicative=...) alone"
            )

    def update(self, z: Tensor, obs: Observed, run: RunOptions, frame: int) -> Tensor:
        """The scaled EnSF analysis; each variable's error is its observations' median."""
        gen = torch.Generator().manual_seed(run.seed * 1_000_003 + frame)
        model = obs.model
        n_c, d_u = model.schema.n_channels, z.shape[1] - model.latent_dim
        channels = model.state_channels().to(z.device)
        groups = torch.cat([channels, n_c + torch.arange(d_u, device=z.device)])
        error = torch.full((n_c + d_u,), math.inf, dtype=z.dtype, device=z.device)
        for c in obs.channel.unique():
            error[c] = obs.std[obs.channel == c].median()
        return scaled_ensf_analysis(
            z,
            groups,
            error,
            obs,
            obs.y,
            obs.std,
            gen,
            ensf=self.ensf,
            obs_scale=self.obs_scale,
            inflation=self.inflation.multiplicative,
        )
