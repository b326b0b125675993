"""ETKF / LETKF of the full state, as a method (numerics: :mod:`xlevda.core.letkf`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from xlevda.core.inflation import Inflation
from xlevda.core.letkf import letkf_analysis
from xlevda.core.localization import Localization
from xlevda.errors import ConfigError
from xlevda.methods.fullstate import FrameFilter, Observed, distances, linalg_failure
from xlevda.run import RunOptions

__all__ = ["LETKF"]


@dataclass(frozen=True)
class LETKF(FrameFilter):
    """The (local) ensemble transform Kalman filter of the augmented full state.

    Analyses at every observed frame; the parameters see every observation.

    Attributes
    ----------
    inflation : Inflation
        Multiplicative inflation of the forecast perturbations (the prior covariance
        is multiplied by its square); additive inflation is not supported
        (``Inflation.additive`` must be 0).
    localization : Localization or None
        Radius (in the units of the model's ``distances``, e.g. km for
        :class:`xlevda.systems.tsunami_model.TsunamiModel`, sites for Lorenz-96) and
        state elements per batch of local analyses; ``None`` (default) is the
        global ETKF.

    Ensemble size, seed, precision and device are :class:`~xlevda.run.RunOptions`
    (default 40 members, float64).

    Examples
    --------
    >>> LETKF(Inflation(1.1), Localization(radius=200.0)).name, LETKF().name
    ('LETKF', 'ETKF')
    """

    inflation: Inflation = field(default_factory=Inflation)
    localization: Localization | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.inflation, Inflation):
            raise ConfigError(f"LETKF.inflation={self.inflation!r}: expected Inflation(...)")
        if self.inflation.additive != 0:
            raise ConfigError(
                f"LETKF.inflation={self.inflation!r}: additive inflation is not supported by "
                "the LETKF; use Inflation(multiplicative=...) alone"
            )
        if self.localization is not None and not isinstance(self.localization, Localization):
            raise ConfigError(
                f"LETKF.localization={self.localization!r}: expected Localization(radius) or None"
            )

    @property
    def name(self) -> str:
        """``"ETKF"`` without localization, else ``"LETKF"``."""
        return "ETKF" if self.localization is None else "LETKF"

    @property
    def title(self) -> str:
        """What the name stands for."""
        local = "" if self.localization is None else "local "
        return f"{self.name} ({local}ensemble transform Kalman filter) on the full state"

    @property
    def remedy(self) -> str:
        """What to try when the ensemble diverges."""
        if self.localization is None:
            return "more inflation"
        return "more inflation or a smaller localization radius"

    def update(self, z: Tensor, obs: Observed, run: RunOptions, frame: int) -> Tensor:
        """The (L)ETKF analysis.

        Elements beyond the radius of every observation get what the local analysis
        gives them without observations, ``mean + inflation * (z - mean)``, without
        solving; the others are analysed ``localization.chunk`` at a time.
        """
        rho, loc = self.inflation.multiplicative, self.localization
        with torch.no_grad(), linalg_failure(self, frame):
            hx = obs(z)
            if loc is None:
                return letkf_analysis(z, obs.y, hx, obs.std, inflation=rho)
            dist = distances(obs.model, obs.points, z)
            mean = z.mean(0)
            out = mean + rho * (z - mean)
            near = (dist < loc.radius).any(1).nonzero().squeeze(1)
            for part in near.split(loc.chunk):
                out[:, part] = letkf_analysis(
                    z[:, part],
                    obs.y,
                    hx,
                    obs.std,
                    inflation=rho,
                    radius=loc.radius,
                    distances=dist[part],
                )
            return out
