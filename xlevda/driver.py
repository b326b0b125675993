"""One driver for every method: windows as a chain of dask tasks, cases as independent chains.

Each window's task takes the previous window's :class:`~xlevda.cycle.Analysis`
(the first takes the initial :class:`~xlevda.cycle.Ensemble`), predicts the window's
observations from it (the background), applies the gross-error check if asked, calls
the method's ``analyse`` and predicts the observations from the analysis
(:mod:`xlevda.departures`); the case's analyses are then concatenated into a
:class:`~xlevda.cycle.Cycle`.  The tasks run on whatever dask scheduler is active,
e.g. a ``dask.distributed`` cluster for independent cases.  Torch and numpy only.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import dask
import numpy as np
import torch
from dask.delayed import Delayed

from xlevda._obs import ObsTable
from xlevda.checkpoint import Checkpoint
from xlevda.cycle import Analysis, Cycle, Ensemble, Window
from xlevda.departures import (
    WindowDepartures,
    case_departures,
    forecast,
    predict,
    screen,
    summary,
)
from xlevda.methods.base import Method
from xlevda.run import RunOptions
from xlevda.surrogates.protocol import Surrogate

__all__ = ["assemble", "prepare_model", "run_cases"]


def prepare_model(surrogate: Surrogate, run: RunOptions) -> Surrogate:
    """The model in the run's dtype and on its device, in eval mode without gradients.

    A torch model is used as it is where it already is all that; otherwise a copy is
    prepared, so the caller's model is never changed (its dtype, device, training mode
    and ``requires_grad`` flags stay as they were).
    """
    if not isinstance(surrogate, torch.nn.Module):
        return surrogate
    params = list(surrogate.parameters())
    ready = not surrogate.training and not any(p.requires_grad for p in params)
    if params and (params[0].dtype != run.torch_dtype or str(params[0].device) != run.device):
        ready = False
    if ready:
        return surrogate
    model = copy.deepcopy(surrogate).to(device=run.device, dtype=run.torch_dtype)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _analyse(
    method: Method,
    model: Surrogate,
    window: Window,
    rows: np.ndarray,
    previous: Analysis | Ensemble,
    run: RunOptions,
    saved: tuple[Checkpoint, int] | None = None,
) -> Analysis:
    """One window, its observations predicted by its background and analysis (departures).

    ``rows``: the window's observations among the case's.  The background is run to the
    window's anchor once, for the departures and (``method.takes_forecast``) the method.
    The gross-error check (``run.quality_control``) leaves observations out of the window
    the method analyses; with ``saved`` (checkpoint, case) the analysis of that window is
    read from or written to the checkpoint.
    """
    background = previous.ensemble if isinstance(previous, Analysis) else previous
    before = after = summary(None, len(window.obs))
    if method.predicts_observations:
        ahead = forecast(model, background, window.anchor, run)
        before = summary(predict(model, ahead, window.obs, run), len(window.obs))
        background = ahead if method.takes_forecast else background
    used = screen(run.quality_control, window.obs, before, window.index)
    kept = window if used.all() else replace(window, obs=window.obs.select(np.flatnonzero(used)))
    analysis = None
    if saved is not None:
        checkpoint, case = saved
        analysis = checkpoint.load(case, kept, previous)
    if analysis is None:
        analysis = method.analyse(model, kept, background, run)
        if saved is not None:
            checkpoint.save(case, kept, previous, analysis)
    if method.predicts_observations:
        after = summary(predict(model, analysis.ensemble, window.obs, run), len(window.obs))
    return replace(analysis, departures=WindowDepartures(rows, before, after, used))


def assemble(analyses: list[Analysis], names: dict[str, str], seed: int, n_obs: int) -> Cycle:
    """A case's window analyses, concatenated in order, as one :class:`~xlevda.cycle.Cycle`,
    with the departures of its ``n_obs`` observations (:func:`~xlevda.departures.case_departures`).
    """
    excess = None
    if analyses[0].excess is not None:
        excess = np.concatenate([a.excess for a in analyses])  # (W, 4, C)
    return Cycle(
        anchors=np.concatenate([a.anchors for a in analyses]),
        z_analysis=np.concatenate([a.z for a in analyses]),
        diagnostics={
            k: np.concatenate([a.diagnostics[k] for a in analyses]) for k in analyses[0].diagnostics
        },
        n_obs=np.concatenate([a.n_obs for a in analyses]),
        names=dict(names),
        excess=None if excess is None else excess[:, 0],
        excess_count=None if excess is None else excess[:, 1].astype(np.int64),
        excess_noise=None if excess is None else excess[:, 2],
        excess_leverage=None if excess is None else excess[:, 3],
        seed=seed,
        residuals=None if analyses[0].residuals is None else tuple(a.residuals for a in analyses),
        departures=case_departures(n_obs, [a.departures for a in analyses]),
    )


def _chain(
    method: Method,
    model: Delayed,
    initial: Ensemble,
    table: ObsTable,
    run: RunOptions,
    saved: tuple[Checkpoint, int] | None,
) -> Delayed:
    """The windows of one case as a chain of dask tasks, each taking the previous analysis."""
    previous: Delayed | Ensemble = initial
    analyses = []
    for w, planned in enumerate(method.plan(table, initial.anchor)):
        window = Window(w, planned.anchor, table.select(planned.rows))
        previous = dask.delayed(_analyse, pure=False)(
            method, model, window, planned.rows, previous, run, saved
        )
        analyses.append(previous)
    return dask.delayed(assemble, pure=False)(analyses, method.diagnostics, run.seed, len(table))


def run_cases(
    method: Method,
    model: Surrogate,
    initial: Ensemble,
    tables: list[ObsTable],
    run: RunOptions,
    checkpoint: Checkpoint | None = None,
) -> tuple[Cycle, ...]:
    """Every case's cycle, computed; case ``c`` with seed ``run.seed + c``.

    Parameters
    ----------
    method : Method
    model : Surrogate
        Prepared (:func:`prepare_model`).
    initial : Ensemble
        Every case's initial ensemble.
    tables : list of ObsTable
        Each case's observations.
    run : RunOptions
        Resolved.
    checkpoint : Checkpoint, optional
        Where each window's analysis is saved, and found again by a rerun
        (:mod:`xlevda.checkpoint`).
    """
    model_task = dask.delayed(model, pure=False)
    return dask.compute(
        *[
            _chain(
                method,
                model_task,
                initial,
                t,
                replace(run, seed=run.seed + c),
                None if checkpoint is None else (checkpoint, c),
            )
            for c, t in enumerate(tables)
        ]
    )
