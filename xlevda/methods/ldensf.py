"""LD-EnSF: the latent ensemble score filter with an observation encoder, as a method.

The filter (:func:`xlevda.core.ldensf.ldensf_filter`) draws its members and every
analysis's noise from one generator across frames, so a case is one window: one
dask task running the whole filter, an analysis at every observed frame and a
forecast elsewhere.  The encoder comes from :func:`xlevda.ldensf.train_encoder`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from xlevda._obs import ObsTable
from xlevda._obs import Window as PlannedWindow
from xlevda.core.ensf import EnSFConfig
from xlevda.core.ldensf import LDEnSFConfig, ldensf_filter
from xlevda.cycle import Analysis, Ensemble, Window
from xlevda.errors import ConfigError
from xlevda.ldensf import observation_matrix
from xlevda.methods.base import Method
from xlevda.run import RunOptions
from xlevda.surrogates.encoder import ObservationEncoder
from xlevda.surrogates.protocol import Surrogate

__all__ = ["LDEnSF"]

DIAGNOSTICS = {
    "analysed": "an LD-EnSF analysis took place at this frame",
    "forecast_spread": "forecast ensemble spread (standardized latent units, RMS over components)",
    "analysis_spread": "analysis ensemble spread (standardized latent units, RMS over components)",
    "forecast_misfit": "RMS of (forecast mean - encoder output) / pseudo-observation error",
    "analysis_misfit": "RMS of (analysis mean - encoder output) / pseudo-observation error",
    "replaced": "members whose analysis was not finite and kept their forecast",
}


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

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, ObservationEncoder):
            raise ConfigError(
                "LDEnSF needs encoder=<ObservationEncoder trained for this surrogate and "
                f"sensor network> (xlevda.ldensf.train_encoder), got {type(self.encoder).__name__}"
            )
        checked = self.filter_config(RunOptions())
        object.__setattr__(self, "prior_range", checked.prior_range)

    def filter_config(self, run: RunOptions) -> LDEnSFConfig:
        """The options of :func:`~xlevda.core.ldensf.ldensf_filter` for one case."""
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
        """One window of all the case's observations."""
        return [PlannedWindow(anchor, np.arange(len(table)))]

    def analyse(
        self, model: Surrogate, window: Window, background: Ensemble, run: RunOptions
    ) -> Analysis:
        """The filter over the case: an analysis at every observed frame."""
        network = self.encoder.network
        dtype = run.torch_dtype
        observations = torch.as_tensor(observation_matrix(window.obs, network), dtype=dtype)
        last_obs = network.first_frame + network.frame_stride * (len(observations) - 1)
        res = ldensf_filter(
            model,
            self.encoder,
            network,
            observations,
            self.filter_config(run),
            n_frames=max(last_obs, window.last_step) + 1,
            dtype=dtype,
        )
        z = torch.cat([res.s, res.u], -1).cpu().double().numpy()  # (N, K, d_z)
        n_frames = z.shape[0]
        frames = res.obs_frames.cpu().numpy()
        diagnostics: dict[str, np.ndarray] = {"analysed": res.analysed.cpu().numpy()}
        for name in list(DIAGNOSTICS)[1:]:
            full = np.full(n_frames, np.nan if name != "replaced" else 0)
            full[frames] = getattr(res, name).cpu().numpy()
            diagnostics[name] = full
        n_obs = np.zeros(n_frames, dtype=np.int64)
        n_obs[frames] = network.n_features
        return Analysis(np.arange(n_frames), z, diagnostics, n_obs)
