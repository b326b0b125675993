"""Optimal interpolation of each analysis time's observations, without a model.

A baseline behind the same accessor: the field analysis of
:mod:`xlevda.field_analysis` (the same kernel code as ``LEVDA(model_error=
FieldAnalysis())``) applied to a constant background per variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from xlevda._obs import ObsTable, plan_windows
from xlevda._obs import Window as PlannedWindow
from xlevda.cycle import Analysis, Ensemble, Window, obs_window
from xlevda.errors import ConfigError
from xlevda.field_analysis import FieldAnalysis, window_residuals
from xlevda.methods.base import Method, single
from xlevda.run import RunOptions
from xlevda.surrogates.protocol import Surrogate

__all__ = ["OI"]


@dataclass(frozen=True)
class OI(Method):
    """Optimal interpolation (OI) per analysis time: no model, no dynamics.

    Each distinct observation time is a window; its background is, per variable, a
    constant: ``background[name]`` if given, else the mean of the variable's
    observations at that time (the surrogate's normalization offset where the
    variable is not observed then).  The residuals from it are analysed onto the
    output fields as ``LEVDA(model_error=FieldAnalysis())`` analyses its own
    (:class:`~xlevda.field_analysis.FieldAnalysis`: the covariance, its estimate
    from the residuals, the perturbed observations of the members and the draws of
    the variance left; the observations of the time nearest each output time);
    ``v`` is the residuals' mean square less the observation error variance
    (:func:`~xlevda.field_analysis.innovation_variance`) unless ``field.variance``
    gives it.  An output time takes the window of the latest observation time at or
    before it, and within it the observations nearest in time.

    The surrogate passed to :func:`xlevda.assimilate` only defines the variables,
    the domain, the time axis and the normalization (its schema): OI runs no
    dynamics and decodes nothing, so any surrogate of the system will do, trained
    well or not.  The output has the usual layout; the parameters and ``latent_state`` are
    NaN (OI has neither).

    Attributes
    ----------
    field : FieldAnalysis
        The covariance and its estimation.
    background : mapping of str to float, optional
        A constant background per variable (its units); default the observations'
        mean at each time.

    Examples
    --------
    >>> OI(FieldAnalysis(length_scale=60.0)).model_error.length_scale
    60.0
    """

    field: FieldAnalysis = field(default_factory=FieldAnalysis)
    background: Mapping[str, float] | None = None

    name: ClassVar[str] = "OI"
    title: ClassVar[str] = "optimal interpolation of each observation time, no model"
    diagnostics: ClassVar[dict[str, str]] = {}
    predicts_observations: ClassVar[bool] = False
    screens_observations: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not isinstance(self.field, FieldAnalysis):
            raise ConfigError(f"OI.field={self.field!r}: expected FieldAnalysis(...)")
        if self.background is not None and (
            not isinstance(self.background, Mapping)
            or not all(
                isinstance(k, str) and isinstance(v, int | float) and np.isfinite(v)
                for k, v in self.background.items()
            )
        ):
            raise ConfigError(
                f"OI.background={self.background!r}: expected a mapping of variable names "
                "to finite numbers, or None"
            )

    @property
    def model_error(self) -> FieldAnalysis:  # type: ignore[override]
        """The field analysis the output decoding applies (:attr:`field`)."""
        return self.field

    def initial(self, model: Surrogate, background: Any, run: RunOptions) -> Ensemble:
        """NaN latent states and parameters at the shifted start (never decoded)."""
        if background is not None:
            raise ConfigError(
                "OI takes no background= of assimilate: give OI(background={variable: value})"
            )
        unknown = sorted(set(self.background or {}) - set(model.schema.variables))
        if unknown:
            raise ConfigError(
                f"OI.background names {unknown}, which the surrogate does not predict: "
                f"expected some of {list(model.schema.variables)}"
            )
        return Ensemble(-1, np.full((run.members, model.latent_dim + model.param_dim), np.nan))

    def plan(self, table: ObsTable, anchor: int) -> list[PlannedWindow]:
        """One window per distinct observation time."""
        return plan_windows(table, 1, None, anchor)

    def analyse(
        self, model: Surrogate, window: Window, background: Ensemble, run: RunOptions
    ) -> Analysis:
        """The residuals of the window's observations from the constant background."""
        schema = model.schema
        obs_w = obs_window(window.obs, window.anchor, schema.n_channels, torch.float64, "cpu")
        observed = obs_w.weight > 0
        count = observed.sum((0, 1))
        mean = torch.where(observed, obs_w.values, 0.0).sum((0, 1)) / count.clamp_min(1)
        given = schema.output_norm.normalize(
            np.array([(self.background or {}).get(v, np.nan) for v in schema.variables])
        )
        bg = np.where(np.isfinite(given), given, np.where(count.numpy() > 0, mean.numpy(), 0.0))
        decoded = torch.as_tensor(bg).expand(run.members, *obs_w.values.shape)
        seed = run.seed * 1_000_003 + window.index
        residuals = window_residuals(decoded, obs_w, window.anchor, seed, background=bg)
        assert background.z is not None
        z = torch.as_tensor(background.z)
        return single(window.anchor, z, {}, obs_w.n_obs, None, residuals)
