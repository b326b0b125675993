"""Strong-constraint 4DEnVar of the full state (paper eq. 8-11), as a method.

Numerics: :func:`xlevda.core.envar.fourdenvar`.  Windows of ``window`` observation
times, anywhere in time (the trajectory is interpolated linearly between frames,
which is eq. 17 for an Euler rollout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from xlevda._obs import ObsTable, plan_windows
from xlevda._obs import Window as PlannedWindow
from xlevda._window_length import WindowLength, check_window
from xlevda.core.dynamics import interpolate_trajectory, trajectory
from xlevda.core.envar import check_outer_loops, fourdenvar
from xlevda.core.inflation import Inflation
from xlevda.core.localization import Localization
from xlevda.cycle import Analysis, Ensemble, Window, obs_window
from xlevda.errors import ConfigError, ObservationError
from xlevda.methods.base import MisfitPair, background_state, single
from xlevda.methods.fullstate import FullStateMethod, check_finite, distances, linalg_failure, rms
from xlevda.run import RunOptions
from xlevda.surrogates.protocol import FullStateModel

__all__ = ["FourDEnVar"]


@dataclass(frozen=True)
class FourDEnVar(FullStateMethod):
    """4DEnVar of the augmented full state: one ensemble-space analysis per window.

    Attributes
    ----------
    inflation : Inflation
        Of the background perturbations; ``Inflation.additive`` is in the state's own
        units, the same for every variable, and its noise in window ``w`` of a case
        with seed ``s`` comes from the seed ``s * 1_000_003 + w``.
    localization : Localization or None
        Local analyses, the radius in the units of the model's ``distances``;
        ``None`` (default): one global ensemble-space analysis per window.
    outer_loops : int
        Re-linearizations with the nonlinear model (>= 1); only 1 with localization.
    window : int or duration
        Distinct observation times per window (>= 1), or a duration (a
        ``numpy.timedelta64``, ``datetime.timedelta``, ``pandas.Timedelta`` or a
        string such as ``"6h"``; datetime observation times only): consecutive
        windows ``[t0 + k window, t0 + (k + 1) window)`` from the first observation
        time ``t0``, those without observations skipped.

    Ensemble size, seed, precision and device are :class:`~xlevda.run.RunOptions`
    (default 40 members, float64).

    Examples
    --------
    >>> FourDEnVar(localization=Localization(radius=2.0)).window
    5
    """

    inflation: Inflation = field(default_factory=Inflation)
    localization: Localization | None = None
    outer_loops: int = 1
    window: WindowLength = 5

    name: ClassVar[str] = "4DEnVar"
    title: ClassVar[str] = "4DEnVar (four-dimensional ensemble variational) on the full state"
    remedy: ClassVar[str] = "more inflation or localization, or shorter windows"
    misfit_pair: ClassVar[MisfitPair] = MisfitPair(
        "analysis_misfit", "forecast_misfit", half_sum=False
    )

    def __post_init__(self) -> None:
        if not isinstance(self.inflation, Inflation):
            raise ConfigError(f"FourDEnVar.inflation={self.inflation!r}: expected Inflation(...)")
        if self.localization is not None and not isinstance(self.localization, Localization):
            raise ConfigError(
                f"FourDEnVar.localization={self.localization!r}: expected Localization(radius) "
                "or None"
            )
        check_outer_loops(self.outer_loops, self.localization, "FourDEnVar.outer_loops")
        check_window(self.window, None, "FourDEnVar")

    def plan(self, table: ObsTable, anchor: int) -> list[PlannedWindow]:
        """Windows of ``window`` distinct observation times, or of a duration."""
        windows = plan_windows(table, self.window, None, anchor)
        if not windows:
            raise ObservationError("4DEnVar got no observations to assimilate")
        return windows

    def analyse(
        self, model: FullStateModel, window: Window, background: Ensemble, run: RunOptions
    ) -> Analysis:
        """The window's analysis at its anchor, from the previous one run forward."""
        z = background_state(model, background, window.anchor, run)
        check_finite(z, self, "forecast", window.anchor)
        d_s, n_c = model.latent_dim, model.schema.n_channels
        win = obs_window(window.obs, window.anchor, n_c, z.dtype, z.device)
        prepared = model.prepare_points(win.points)  # (T_o, P, F)
        n = int((win.step + (win.frac > 0).long()).max())

        def run_model(x: Tensor) -> Tensor:
            traj = trajectory(model, x, n)
            check_finite(traj.flatten(1), self, "forecast of the window starting", window.anchor)
            return interpolate_trajectory(traj, win.step, win.frac)

        def observe(tr: Tensor) -> Tensor:
            return model.decode_prepared(tr[..., :d_s], prepared)

        dist = None
        if self.localization is not None:
            dist = distances(model, win.points.flatten(0, 1), z)
        with torch.no_grad(), linalg_failure(self, window.anchor):
            res = fourdenvar(
                z,
                run_model,
                observe,
                win,
                inflation=self.inflation,
                localization=self.localization,
                outer_loops=self.outer_loops,
                seed=run.seed * 1_000_003 + window.index,
                distances=dist,
            )
            check_finite(res.members, self, "analysis", window.anchor)
            hx = observe(
                interpolate_trajectory(trajectory(model, res.members, n), win.step, win.frac)
            )
        observed = win.weight > 0
        sigma = win.weight[observed].rsqrt()
        hx = hx[:, observed]
        scores = {
            "forecast_misfit": math.sqrt(2 * float(res.misfit[0]) / max(int(observed.sum()), 1)),
            "analysis_misfit": rms((win.values[observed] - hx.mean(0)) / sigma),
            "forecast_spread": rms(res.background_spread / sigma),
            "analysis_spread": rms(hx.std(0) / sigma),
        }
        return single(window.anchor, res.members, scores, len(window.obs))
