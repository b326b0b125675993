"""ETKF / LETKF of the full state, as a method (numerics: :mod:`xlevda.core.letkf`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from xlevda._validate import is_int
from xlevda.core.letkf import LETKFConfig, letkf_analysis
from xlevda.errors import ConfigError
from xlevda.methods.fullstate import FrameFilter, Observed, distances, linalg_failure
from xlevda.run import RunOptions

__all__ = ["LETKF"]


@dataclass(frozen=True)
class LETKF(LETKFConfig, FrameFilter):
    """The (local) ensemble transform Kalman filter of the augmented full state.

    Analyses at every observed frame; the parameters see every observation.

    Attributes
    ----------
    inflation, localization_radius
        As :class:`xlevda.core.letkf.LETKFConfig`; ``localization_radius=None`` is the
        global ETKF.  The radius is in the units of the model's ``distances`` (e.g. km
        for :class:`xlevda.systems.tsunami_model.TsunamiModel`, sites for Lorenz-96).
    chunk : int
        State elements per batch of local analyses (bounds memory at about
        ``chunk * K * n_obs`` values).

    Ensemble size, seed, precision and device are :class:`~xlevda.run.RunOptions`
    (default 40 members, float64).

    Examples
    --------
    >>> LETKF(inflation=1.1, localization_radius=200.0).name, LETKF().name
    ('LETKF', 'ETKF')
    """

    chunk: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        if not is_int(self.chunk, 1):
            raise ConfigError(f"LETKF.chunk={self.chunk!r}: expected an integer >= 1")

    @property
    def name(self) -> str:
        """``"ETKF"`` without localization, else ``"LETKF"``."""
        return "ETKF" if self.localization_radius is None else "LETKF"

    @property
    def title(self) -> str:
        """What the name stands for."""
        local = "" if self.localization_radius is None else "local "
        return f"{self.name} ({local}ensemble transform Kalman filter) on the full state"

    @property
    def remedy(self) -> str:
        """What to try when the ensemble diverges."""
        if self.localization_radius is None:
            return "more inflation"
        return "more inflation or a smaller localization radius"

    def update(self, z: Tensor, obs: Observed, run: RunOptions, frame: int) -> Tensor:
        """The (L)ETKF analysis.

        Elements beyond the radius of every observation get what the local analysis
        gives them without observations, ``mean + inflation * (z - mean)``, without
        solving; the others are analysed ``chunk`` at a time.
        """
        with torch.no_grad(), linalg_failure(self, frame):
            hx = obs(z)
            if self.localization_radius is None:
                return letkf_analysis(z, obs.y, hx, obs.std, self)
            dist = distances(obs.model, obs.points, z)
            mean = z.mean(0)
            out = mean + self.inflation * (z - mean)
            near = (dist < self.localization_radius).any(1).nonzero().squeeze(1)
            for part in near.split(self.chunk):
                out[:, part] = letkf_analysis(z[:, part], obs.y, hx, obs.std, self, dist[part])
            return out
