"""What the full-state methods (ETKF/LETKF, EnSF, 4DEnVar) share.

The model is a :class:`~xlevda.surrogates.protocol.FullStateModel`, i.e. the
simulator on its own grid (e.g. :class:`xlevda.systems.tsunami_model.TsunamiModel`,
:class:`xlevda.systems.lorenz96.Lorenz96Surrogate`), run batched over members.  The
ensemble is ``z = (state, parameters)``: parameters are estimated by state
augmentation (the analysis updates them through their ensemble correlation with
the observed values; the model keeps them constant), and they are not localized
(every observation reaches them).

- The filters (:class:`FrameFilter`: :class:`~xlevda.methods.letkf.LETKF`,
  :class:`~xlevda.methods.ensf.EnSF`) analyse at every distinct observation time,
  which must be one of the model's frames: each such frame is a window.
- 4DEnVar (:class:`~xlevda.methods.fourdenvar.FourDEnVar`) analyses windows of
  ``window`` observation times, anywhere in time.

Every analysis is one window of the output, anchored at its frame (a filter) or at
its first observation's step (4DEnVar); window 0 starts from the initial ensemble.
Torch and numpy only (no xarray).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from xlevda._obs import ObsTable
from xlevda._obs import Window as PlannedWindow
from xlevda.cycle import Analysis, Ensemble, Window, group_rows
from xlevda.errors import ConfigError, ObservationError, VariableError
from xlevda.initial import latent_ensemble
from xlevda.methods.base import Method, background_state, single
from xlevda.run import RunDefaults, RunOptions
from xlevda.surrogates.protocol import FullStateModel

__all__ = [
    "DIAGNOSTICS",
    "FrameFilter",
    "FullStateMethod",
    "Observed",
    "check_finite",
    "distances",
    "linalg_failure",
    "rms",
]

DIAGNOSTICS = {
    "forecast_misfit": "RMS over the observed values of (y - ensemble mean of H(forecast)) / "
    "sigma (4DEnVar: of H(M(background mean)))",
    "analysis_misfit": "RMS over the observed values of (y - ensemble mean of H(analysis)) / "
    "sigma (4DEnVar: of H(M(analysis members)) over the window)",
    "forecast_spread": "RMS over the observed values of the forecast ensemble's standard "
    "deviation of H(x) / sigma (filters: before inflation; 4DEnVar: of the inflated background)",
    "analysis_spread": "RMS over the observed values of the analysis ensemble's standard "
    "deviation of H(x) / sigma",
}
_FRAME_TOLERANCE = 1e-6  # of a step: an observation time this close to a frame is at it

_MEMBERS = (
    "latent_dim",
    "param_dim",
    "schema",
    "dt",
    "vector_field",
    "decode",
    "prepare_points",
    "decode_prepared",
    "state_channels",
    "distances",
)


def distances(model: FullStateModel, points: Tensor, like: Tensor) -> Tensor:
    """Distances of the augmented state to ``points`` (P, n_coords): parameters at 0 (global)."""
    d_u = like.shape[-1] - model.latent_dim
    return torch.cat([model.distances(points).to(like), like.new_zeros(d_u, len(points))])


def rms(x: Tensor) -> float:
    """Root mean square of ``x``; NaN if empty."""
    return float(x.square().mean().sqrt()) if x.numel() else math.nan


class Observed:
    """Observations of one analysis time as tensors, and ``H`` on ``z``."""

    def __init__(self, model: FullStateModel, table: ObsTable, like: Tensor) -> None:
        def t(x):
            return torch.as_tensor(x, dtype=like.dtype, device=like.device)

        self.model = model
        self.points = t(table.points)
        self.y, self.std = t(table.value), t(table.std)
        self.channel = torch.as_tensor(table.channel, device=like.device)
        self.prepared = model.prepare_points(self.points)
        self.rows = torch.arange(len(table), device=like.device)

    def __call__(self, z: Tensor) -> Tensor:
        """``H(z)``: (K, d_z) -> (K, M)."""
        fields = self.model.decode_prepared(z[..., : self.model.latent_dim], self.prepared)
        return fields[..., self.rows, self.channel]

    def scores(self, forecast: Tensor, analysis: Tensor) -> dict[str, float]:
        """Misfit and spread (:data:`DIAGNOSTICS`) of the forecast and the analysis."""
        out = {}
        for name, z in (("forecast", forecast), ("analysis", analysis)):
            hx = self(z)
            out[f"{name}_misfit"] = rms((self.y - hx.mean(0)) / self.std)
            out[f"{name}_spread"] = rms(hx.std(0) / self.std)
        return out


def check_finite(z: Tensor, method: FullStateMethod, what: str, frame: int) -> None:
    """A diverged ensemble stops the run with the frame and remedies, instead of NaN output."""
    if bool(torch.isfinite(z).all()):
        return
    bad = int((~torch.isfinite(z)).any(1).sum())
    raise VariableError(
        f"{method.name}: the {what} at frame {frame} is not finite for {bad} of "
        f"{z.shape[0]} members (the filter or the model diverged); try {method.remedy}"
    )


@contextmanager
def linalg_failure(method: FullStateMethod, frame: int) -> Iterator[None]:
    """A failed factorization in an analysis: a :class:`VariableError` naming the frame."""
    try:
        yield
    except torch.linalg.LinAlgError as err:
        raise VariableError(
            f"{method.name}: the analysis at frame {frame} failed ({err}); the ensemble has "
            f"probably diverged: try {method.remedy}"
        ) from err


class FullStateMethod(Method):
    """A method on a full-state model: 40 members in float64 by default, as simulators run.

    Subclasses define ``name``, ``title``, ``remedy`` (what to try when the ensemble
    diverges), ``plan`` and ``analyse``.
    """

    remedy: str
    run_defaults: ClassVar[RunDefaults] = RunDefaults(members=40, dtype="float64")
    full_state: ClassVar[bool] = True
    diagnostics: ClassVar[dict[str, str]] = DIAGNOSTICS

    def initial(self, model: FullStateModel, background: Any, run: RunOptions) -> Ensemble:
        """From fields, given parameters or prior draws, at frame 0 by ``initial_state(u)``."""
        missing = [a for a in _MEMBERS if not hasattr(model, a)]
        if missing:
            raise ConfigError(
                f"{self.name} needs a full-state model, the simulator on its own grid "
                "(xlevda.surrogates.protocol.FullStateModel, e.g. "
                f"xlevda.systems.tsunami_model.TsunamiModel); {type(model).__name__} lacks "
                f"{missing}"
            )
        return latent_ensemble(model, background, run, full_state=True)


class FrameFilter(FullStateMethod):
    """A filter analysing at every observed frame (one window each); subclasses define
    :meth:`update`, the analysis of a forecast ``z`` (K, d_z) given the frame's observations.
    """

    def update(self, z: Tensor, obs: Observed, run: RunOptions, frame: int) -> Tensor:
        """The analysis ensemble (K, d_z) of the forecast ``z``."""
        raise NotImplementedError

    def plan(self, table: ObsTable, anchor: int) -> list[PlannedWindow]:
        """A window at ``anchor`` and at every later observed frame.

        Raises
        ------
        ObservationError
            For observation times between frames or before ``anchor``.
        """
        key = table.step + table.frac
        frame = np.rint(key).astype(np.int64)
        between = np.abs(key - frame) > _FRAME_TOLERANCE
        if between.any():
            i = int(np.argmax(between))
            raise ObservationError(
                f"{self.name} analyses at the model's frames, but {int(between.sum())} "
                f"observation(s) fall between frames, e.g. at {table.time[i]} (step "
                f"{key[i]:.4g}): use FourDEnVar, whose windows interpolate in time"
            )
        if len(frame) and frame.min() < anchor:
            i = int(np.argmin(frame))
            raise ObservationError(
                f"{int((frame < anchor).sum())} observation(s) precede the initial ensemble's "
                f"frame {anchor}, e.g. at {table.time[i]}"
            )
        frames, groups = group_rows(frame)
        rows_at = {int(f): rows for f, rows in zip(frames, groups, strict=True)}
        empty = np.zeros(0, dtype=np.int64)
        first = PlannedWindow(anchor, rows_at.pop(anchor, empty))
        return [first, *(PlannedWindow(f, rows) for f, rows in rows_at.items())]

    def analyse(
        self, model: FullStateModel, window: Window, background: Ensemble, run: RunOptions
    ) -> Analysis:
        """The forecast to the window's frame, analysed if it has observations."""
        frame = window.anchor
        z = background_state(model, background, frame, run)
        check_finite(z, self, "forecast", frame)
        if len(window.obs):
            obs = Observed(model, window.obs, z)
            za = self.update(z, obs, run, frame)
            check_finite(za, self, "analysis", frame)
            with torch.no_grad():
                scores = obs.scores(z, za)
            z = za.detach()
        else:
            scores = dict.fromkeys(DIAGNOSTICS, math.nan)
        return single(frame, z, {k: scores[k] for k in DIAGNOSTICS}, len(window.obs))
