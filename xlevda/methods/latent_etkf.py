"""The ETKF of a surrogate's latent state and parameters, as a method.

The ensemble transform Kalman filter (:func:`xlevda.core.letkf.letkf_analysis`) applied
to LEVDA's ensemble ``z = (s, u)`` at every observed frame, with the surrogate's decoder
as the observation operator: a sequential, derivative-free baseline for LEVDA on the
same surrogate, exact for a linear decoder with Gaussian errors.  It is also the
smallest complete method: ``docs/design.md`` shows it as the example of adding one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from xlevda.core.inflation import Inflation
from xlevda.core.letkf import letkf_analysis
from xlevda.cycle import Ensemble
from xlevda.errors import ConfigError
from xlevda.initial import latent_ensemble
from xlevda.methods.fullstate import FrameFilter, Observed, linalg_failure
from xlevda.run import RunDefaults, RunOptions
from xlevda.surrogates.protocol import Surrogate

__all__ = ["LatentETKF"]


@dataclass(frozen=True)
class LatentETKF(FrameFilter):
    """The ensemble transform Kalman filter in a surrogate's latent space.

    At every observed frame (observation times must be surrogate frames), the
    forecast ensemble of latent states and parameters is updated by the global
    ETKF, with ``H(z)`` the surrogate's decoder at the observation points.  The
    ensemble starts as LEVDA's (:func:`xlevda.initial.latent_ensemble`).

    Attributes
    ----------
    inflation : Inflation
        Multiplicative inflation of the forecast perturbations; additive inflation
        is not supported (``Inflation.additive`` must be 0).

    Ensemble size, seed, precision and device are :class:`~xlevda.run.RunOptions`
    (default 100 members, float32, as LEVDA).

    Examples
    --------
    >>> LatentETKF(Inflation(1.05)).inflation.multiplicative
    1.05
    """

    inflation: Inflation = field(default_factory=Inflation)

    name: ClassVar[str] = "latent ETKF"
    title: ClassVar[str] = "ETKF (ensemble transform Kalman filter) in a surrogate's latent space"
    remedy: ClassVar[str] = "more inflation"
    run_defaults: ClassVar[RunDefaults] = RunDefaults()
    full_state: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not isinstance(self.inflation, Inflation) or self.inflation.additive != 0:
            raise ConfigError(
                f"LatentETKF.inflation={self.inflation!r}: expected Inflation(multiplicative=...) "
                "without additive inflation"
            )

    def initial(self, model: Surrogate, background: Any, run: RunOptions) -> Ensemble:
        """From fields, given parameters or prior draws, as LEVDA starts."""
        return latent_ensemble(model, background, run)

    def update(self, z: Tensor, obs: Observed, run: RunOptions, frame: int) -> Tensor:
        """The global ETKF analysis of the forecast ``z`` (K, d_z)."""
        with torch.no_grad(), linalg_failure(self, frame):
            return letkf_analysis(
                z, obs.y, obs(z), obs.std, inflation=self.inflation.multiplicative
            )
