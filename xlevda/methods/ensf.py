"""EnSF of the full state in per-variable scaled coordinates, as a method.

Numerics: :func:`xlevda.core.ensf.scaled_ensf_analysis`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from xlevda.core.ensf import ScaledEnSFConfig, scaled_ensf_analysis
from xlevda.methods.fullstate import FrameFilter, Observed
from xlevda.run import RunOptions

__all__ = ["EnSF"]


@dataclass(frozen=True)
class EnSF(ScaledEnSFConfig, FrameFilter):
    """The ensemble score filter of the augmented full state, variables scaled as groups.

    Analyses at every observed frame, each parameter a group of its own; the noise
    of the analysis at frame ``f`` of a case with seed ``s`` comes from the seed
    ``s * 1_000_003 + f``.

    Attributes
    ----------
    ensf, obs_scale, inflation
        As :class:`xlevda.core.ensf.ScaledEnSFConfig`.

    Ensemble size, seed, precision and device are :class:`~xlevda.run.RunOptions`
    (default 40 members, float64).

    Examples
    --------
    >>> EnSF().obs_scale
    0.3
    """

    name: ClassVar[str] = "EnSF"
    title: ClassVar[str] = "EnSF (ensemble score filter) on the full state"
    remedy: ClassVar[str] = "more EnSF steps (EnSFConfig.steps), a smaller obs_scale or inflation"

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
        return scaled_ensf_analysis(z, groups, error, obs, obs.y, obs.std, self, gen)
