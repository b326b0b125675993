"""The protocol every assimilation method follows, and what the methods share.

A method is a frozen, self-validating config that knows how to start and how to
analyse one window; :mod:`xlevda.driver` chains its windows into dask tasks and
:mod:`xlevda.io` turns the result into the output Dataset::

    ensemble = method.initial(model, background, run)          # Ensemble at its anchor
    for window in windows(method.plan(table, ensemble.anchor)):
        analysis = method.analyse(model, window, ensemble, run)  # one dask task
        ensemble = analysis.ensemble                              # the next background

Adding a method: a module in :mod:`xlevda.methods` with a frozen dataclass that
subclasses :class:`Method` (for its defaults) and defines ``name``, ``title``,
``diagnostics``, ``initial``, ``plan`` and ``analyse``; then one import line in
``xlevda/methods/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from xlevda._obs import ObsTable
from xlevda._obs import Window as PlannedWindow
from xlevda.core.dynamics import propagate
from xlevda.cycle import Analysis, Ensemble, Window
from xlevda.field_analysis import FieldAnalysis, Residuals
from xlevda.model_error import ModelErrorTerm
from xlevda.run import RunDefaults, RunOptions
from xlevda.surrogates.protocol import Surrogate

__all__ = ["Method", "MisfitPair", "background_state", "single"]


@dataclass(frozen=True)
class MisfitPair:
    """Which diagnostics hold a window's observation misfit of the analysis and its background.

    Attributes
    ----------
    analysis, background : str
        Names among the method's ``diagnostics``: values per member ``(K,)`` or
        one per window.
    half_sum : bool
        ``True`` if the values are ``1/2 sum ((y - H x) / sigma)^2`` over the window's
        observed values (at the noise level: half their number), ``False`` for the
        RMS of ``(y - H x) / sigma`` (at the noise level: 1).
    """

    analysis: str
    background: str
    half_sum: bool


@runtime_checkable
class Method(Protocol):
    """An assimilation method (LEVDA, LD-EnSF, ETKF/LETKF, EnSF, 4DEnVar, ...).

    Attributes
    ----------
    name : str
        Short name (the output's ``method`` attribute), e.g. ``"LEVDA"``.
    title : str
        What the name stands for (in the output's ``source``).
    diagnostics : mapping of str to str
        Long name of each per-window diagnostic the method's analyses return.
    run_defaults : RunDefaults
        Ensemble size and precision where :class:`~xlevda.run.RunOptions` leaves them.
    full_state : bool
        Whether the ensemble holds a full-state model's own state (the output then
        labels ``latent_state`` so), rather than a surrogate's latent state.
    model_error : ModelErrorTerm, FieldAnalysis or None
        The model-error term added to the decoded fields (LEVDA), from the
        ``excess`` its analyses return, or the field analysis of the ``residuals``
        they return (LEVDA, OI).
    needs_obs_errors : bool
        Whether the observations need error standard deviations (LD-EnSF uses its
        encoder's instead).
    misfit_pair : MisfitPair or None
        The diagnostics holding each window's observation misfit of the analysis and
        of its background, or ``None``: :mod:`xlevda.checks` warns where the
        analysis' is not below.
    predicts_observations : bool
        Whether the ensemble's states predict the observations through the model, for
        the output's departures ``O - B`` and ``O - A`` (:mod:`xlevda.departures`);
        ``False`` (OI, which has no states): they are NaN.
    screens_observations : bool
        Whether the method analyses whichever observations a window is given, so that
        the gross-error check (``RunOptions.quality_control``) can leave some out
        (``False``: LD-EnSF, whose encoder reads its fixed sensor network, and OI).
    takes_forecast : bool
        Whether ``analyse`` needs its background only as run to the window's anchor
        (:func:`background_state`): the driver then hands it the background it has
        already run there for the departures, so that the model runs once.  ``False``
        (LD-EnSF, which forecasts frame by frame itself): the previous ensemble as it is.
    """

    name: str
    title: str
    diagnostics: Mapping[str, str]
    run_defaults: ClassVar[RunDefaults] = RunDefaults()
    full_state: ClassVar[bool] = False
    model_error: ModelErrorTerm | FieldAnalysis | None = None
    needs_obs_errors: ClassVar[bool] = True
    misfit_pair: ClassVar[MisfitPair | None] = None
    predicts_observations: ClassVar[bool] = True
    screens_observations: ClassVar[bool] = True
    takes_forecast: ClassVar[bool] = True

    def initial(self, model: Surrogate, background: Any, run: RunOptions) -> Ensemble:
        """The initial ensemble, from ``background=`` of :func:`xlevda.assimilate` or a prior.

        Also where a method checks that ``model`` and ``background`` suit it.
        """
        ...

    def plan(self, table: ObsTable, anchor: int) -> list[PlannedWindow]:
        """One case's observations in windows; the first anchored at ``anchor``."""
        ...

    def analyse(
        self, model: Surrogate, window: Window, background: Ensemble, run: RunOptions
    ) -> Analysis:
        """The analysis of one window given the previous window's (or the initial) ensemble.

        ``run.seed`` is the case's seed.
        """
        ...


def background_state(
    model: Surrogate, background: Ensemble, anchor: int, run: RunOptions
) -> Tensor:
    """``background`` as a tensor, run forward to ``anchor`` (K, d_z)."""
    z = torch.as_tensor(background.z, dtype=run.torch_dtype, device=run.device)
    if anchor == background.anchor:
        return z
    with torch.no_grad():
        return propagate(model, z, anchor - background.anchor)


def single(
    anchor: int,
    z: Tensor,
    diagnostics: Mapping[str, Any],
    n_obs: int,
    excess: np.ndarray | None = None,
    residuals: Residuals | None = None,
) -> Analysis:
    """A window's one analysis ``z`` (K, d_z) as an :class:`~xlevda.cycle.Analysis`."""
    return Analysis(
        anchors=np.asarray([anchor]),
        z=z.detach().cpu().double().numpy()[None],
        diagnostics={k: np.asarray(v)[None] for k, v in diagnostics.items()},
        n_obs=np.asarray([n_obs]),
        excess=None if excess is None else excess[None],
        residuals=residuals,
    )
