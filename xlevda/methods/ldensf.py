"""LD-EnSF: the latent ensemble score filter with an observation encoder, as a method.

The steps of :func:`xlevda.core.ldensf.ldensf_filter`, one window (one dask task)
each: window 0, at the shifted start, draws the members and encodes the case's
observation sequence into pseudo-observations; each later window is an observed
frame, where :func:`~xlevda.core.ldensf.ldensf_step` forecasts the previous
analysis to the frame and analyses it.  The members and every analysis's noise
come from one generator, whose state each window hands to the next with the
pseudo-observations (:class:`FilterCarry`), so the windows reproduce the filter's
numbers exactly.  The encoder comes from :func:`xlevda.ldensf.train_encoder`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch

from xlevda._obs import ObsTable
from xlevda._obs import Window as PlannedWindow
from xlevda.core.ensf import EnSFConfig
from xlevda.core.ldensf import (
    LDEnSFConfig,
    PseudoObservations,
    ldensf_start,
    ldensf_step,
    pseudo_observations,
)
from xlevda.cycle import Analysis, Ensemble, Window, group_rows
from xlevda.errors import ConfigError
from xlevda.ldensf import observation_frames, observation_matrix
from xlevda.methods.base import Method, single
from xlevda.run import RunOptions
from xlevda.surrogates.encoder import ObservationEncoder
from xlevda.surrogates.protocol import Surrogate

__all__ = ["FilterCarry", "LDEnSF"]

DIAGNOSTICS = {
    "analysed": "an LD-EnSF analysis took place at this window's frame (window 0: the start)",
    "forecast_spread": "forecast ensemble spread (standardized latent units, RMS over components)",
    "analysis_spread": "analysis ensemble spread (standardized latent units, RMS over components)",
    "forecast_misfit": "RMS of (forecast mean - encoder output) / pseudo-observation error",
    "analysis_misfit": "RMS of (analysis mean - encoder output) / pseudo-observation error",
    "replaced": "members whose analysis was not finite and kept their forecast",
}
_SCORES = list(DIAGNOSTICS)[1:5]  # the spreads and misfits


@dataclass(frozen=True)
class FilterCarry:
    """What an LD-EnSF window hands to the next besides the ensemble (torch-free).

    Attributes
    ----------
    generator : ndarray of uint8
        The state of the case's random generator (``torch.Generator.get_state``).
    pseudo_obs, pseudo_obs_std : ndarray, shape (T, d_z)
        The case's :class:`~xlevda.core.ldensf.PseudoObservations` ``value`` and
        ``std``, float64.
    """

    generator: np.ndarray
    pseudo_obs: np.ndarray
    pseudo_obs_std: np.ndarray


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy()


@dataclass(frozen=True)
class LDEnSF(Method):
    """LD-EnSF: an EnSF analysis of the latent state at every observed frame.

    Attributes
    ----------
    encoder : ObservationEncoder
        The observation encoder trained for the surrogate and the sensor network of
        the observations (:func:`xlevda.ldensf.train_encoder`); the observations must
        be exactly that network at its frames.
    ensf, prior_range, obs_error_factor, obs_scale
        As :class:`xlevda.core.ldensf.LDEnSFConfig`: the reverse-SDE options, the
        initial parameter range (default the training range), the factor on the
        encoder's error and the pseudo-observation error in the analysis
        coordinates.

    Ensemble size, seed, precision and device are :class:`~xlevda.run.RunOptions`
    (default 100 members, float32).  The observations need no error standard
    deviations: the likelihood uses the encoder's error.
    """

    encoder: ObservationEncoder
    ensf: EnSFConfig = field(default_factory=EnSFConfig)
    prior_range: tuple[tuple[float, float], ...] | None = None
    obs_error_factor: float = 1.0
    obs_scale: float = 0.3

    name: ClassVar[str] = "LD-EnSF"
    title: ClassVar[str] = "LD-EnSF (latent dynamics ensemble score filter)"
    diagnostics: ClassVar[dict[str, str]] = DIAGNOSTICS
    needs_obs_errors: ClassVar[bool] = False
    screens_observations: ClassVar[bool] = False
    takes_forecast: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, ObservationEncoder):
            raise ConfigError(
                "LDEnSF needs encoder=<ObservationEncoder trained for this surrogate and "
                f"sensor network> (xlevda.ldensf.train_encoder), got {type(self.encoder).__name__}"
            )
        checked = self.filter_config(RunOptions())
        object.__setattr__(self, "prior_range", checked.prior_range)

    def filter_config(self, run: RunOptions) -> LDEnSFConfig:
        """The options of :func:`~xlevda.core.ldensf.ldensf_step` (and the filter) for one case."""
        return LDEnSFConfig(
            members=self.run_defaults.members if run.members is None else run.members,
            ensf=self.ensf,
            prior_range=self.prior_range,
            obs_error_factor=self.obs_error_factor,
            obs_scale=self.obs_scale,
            seed=run.seed,
        )

    def initial(self, model: Surrogate, background: Any, run: RunOptions) -> Ensemble:
        """The shifted start; the filter draws the members' parameters in its first window."""
        if background is not None:
            raise ConfigError(
                "background= is not used by LD-EnSF: its initial parameters come from "
                "LDEnSF.prior_range"
            )
        self.encoder.check(model)
        return Ensemble(-1, None)

    def plan(self, table: ObsTable, anchor: int) -> list[PlannedWindow]:
        """Window 0 at the shifted start with every observation, then one per observed frame.

        The encoder reads the case's whole observation sequence once, in window 0
        (it is causal: the pseudo-observation at a frame sees the observations up to
        it); the later windows hold their frame's observations.
        """
        frames, rows = group_rows(observation_frames(table))
        return [
            PlannedWindow(anchor, np.arange(len(table))),
            *(PlannedWindow(int(f), r) for f, r in zip(frames, rows, strict=True)),
        ]

    def analyse(
        self, model: Surrogate, window: Window, background: Ensemble, run: RunOptions
    ) -> Analysis:
        """The forecast from the previous analysis to the window's frame, then the analysis.

        Window 0 (no carry yet) draws the members instead and encodes the observations.
        """
        if background.carry is None:
            return self._start(model, window, run)
        to = {"dtype": run.torch_dtype, "device": run.device}
        carry: FilterCarry = background.carry
        gen = torch.Generator(device=run.device)
        gen.set_state(torch.from_numpy(carry.generator))
        pseudo = PseudoObservations(
            torch.as_tensor(carry.pseudo_obs, **to),
            torch.as_tensor(carry.pseudo_obs_std, **to),
            self.encoder.out_mean.to(**to),
            self.encoder.out_std.to(**to),
        )
        network = self.encoder.network
        j = (window.anchor - network.first_frame) // network.frame_stride
        z = torch.as_tensor(background.z, **to)
        n_steps = window.anchor - background.anchor
        _, z_a, diag = ldensf_step(model, z, n_steps, pseudo, j, self.filter_config(run), gen)
        values = {
            "analysed": True,
            **dict(zip(_SCORES, diag[:4].tolist(), strict=True)),
            "replaced": int(diag[4]),
        }
        analysis = single(window.anchor, z_a, values, network.n_features)
        return replace(analysis, carry=replace(carry, generator=gen.get_state().numpy()))

    def _start(self, model: Surrogate, window: Window, run: RunOptions) -> Analysis:
        """Window 0: the members at the shifted start and the case's pseudo-observations."""
        to = {"dtype": run.torch_dtype, "device": run.device}
        observations = observation_matrix(window.obs, self.encoder.network)
        pseudo = pseudo_observations(
            self.encoder,
            torch.as_tensor(observations, dtype=run.torch_dtype),
            self.obs_error_factor,
            **to,
        )
        z, gen = ldensf_start(model, self.filter_config(run), **to)
        values = {"analysed": False, **dict.fromkeys(_SCORES, math.nan), "replaced": 0}
        carry = FilterCarry(gen.get_state().numpy(), _numpy(pseudo.value), _numpy(pseudo.std))
        return replace(single(window.anchor, z, values, 0), carry=carry)
