"""Full-state ensemble methods cycled over observations: ETKF/LETKF, EnSF and 4DEnVar.

The model is a :class:`~xlevda.surrogates.protocol.FullStateModel`, i.e. the
simulator on its own grid (e.g. :class:`xlevda.systems.tsunami_model.TsunamiModel`,
:class:`xlevda.systems.lorenz96.Lorenz96Surrogate`), run batched over members.  The
ensemble is ``z = (state, parameters)``: parameters are estimated by state
augmentation (the analysis updates them through their ensemble correlation with
the observed values; the model keeps them constant), and they are not localized
(every observation reaches them).

- The filters (:class:`~xlevda.core.letkf.LETKFConfig`,
  :class:`~xlevda.core.ensf.ScaledEnSFConfig`) analyse at every distinct
  observation time, which must be one of the model's frames.
- 4DEnVar (:class:`~xlevda.core.envar.FourDEnVarConfig`) analyses windows of
  ``tau`` observation times, anywhere in time (the trajectory is interpolated
  linearly between frames, which is eq. 17 for an Euler rollout).

Every analysis is one "window" of the output, anchored at its frame (a filter) or
at its first observation's step (4DEnVar); window 0 starts from the initial
ensemble.  Torch and numpy only (no xarray).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from xlevda._cycle import Cycle, group_rows, obs_window
from xlevda._obs import ObsTable, plan_windows
from xlevda.config import FullStateConfig
from xlevda.core.dynamics import interpolate_trajectory, trajectory
from xlevda.core.ensf import ScaledEnSFConfig, scaled_ensf_analysis
from xlevda.core.envar import FourDEnVarConfig, fourdenvar
from xlevda.core.letkf import LETKFConfig, letkf_analysis
from xlevda.errors import ConfigError, ObservationError, VariableError
from xlevda.surrogates.protocol import FullStateModel

__all__ = ["DIAGNOSTICS", "check_model", "fullstate_cycle", "initial_ensemble"]

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


def check_model(model: object, config: FullStateConfig) -> None:
    """A clear error unless ``model`` is a full-state model."""
    missing = [a for a in _MEMBERS if not hasattr(model, a)]
    if missing:
        raise ConfigError(
            f"{config.name} (FullStateConfig) needs a full-state model, the simulator on its own "
            f"grid (xlevda.surrogates.protocol.FullStateModel, e.g. "
            f"xlevda.systems.tsunami_model.TsunamiModel); {type(model).__name__} lacks {missing}"
        )


def _distances(model: FullStateModel, points: Tensor, like: Tensor) -> Tensor:
    """Distances of the augmented state to ``points`` (P, n_coords): parameters at 0 (global)."""
    d_u = like.shape[-1] - model.latent_dim
    return torch.cat([model.distances(points).to(like), like.new_zeros(d_u, len(points))])


def initial_ensemble(model: FullStateModel, u: Tensor) -> Tensor:
    """``z`` (K, N + d_u) at frame 0 from normalized parameters ``u`` (K, d_u)."""
    if not callable(getattr(model, "initial_state", None)):
        raise ConfigError(
            f"{type(model).__name__} has no initial_state(u): give the initial ensemble as a "
            "field background (background=<Dataset of the model's variables over member>)"
        )
    return torch.cat([model.initial_state(u), u], -1)


def _frames(table: ObsTable, anchor: int, config: FullStateConfig) -> np.ndarray:
    """Frame of every observation; an error for times between frames or before ``anchor``."""
    key = table.step + table.frac
    frame = np.rint(key).astype(np.int64)
    between = np.abs(key - frame) > _FRAME_TOLERANCE
    if between.any():
        i = int(np.argmax(between))
        raise ObservationError(
            f"{config.name} analyses at the model's frames, but {int(between.sum())} "
            f"observation(s) fall between frames, e.g. at {table.time[i]} (step {key[i]:.4g}): "
            "use FourDEnVarConfig, whose windows interpolate in time"
        )
    if len(frame) and frame.min() < anchor:
        i = int(np.argmin(frame))
        raise ObservationError(
            f"{int((frame < anchor).sum())} observation(s) precede the initial ensemble's frame "
            f"{anchor}, e.g. at {table.time[i]}"
        )
    return frame


class _Observed:
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
        out = {}
        for name, z in (("forecast", forecast), ("analysis", analysis)):
            hx = self(z)
            out[f"{name}_misfit"] = _rms((self.y - hx.mean(0)) / self.std)
            out[f"{name}_spread"] = _rms(hx.std(0) / self.std)
        return out


def _rms(x: Tensor) -> float:
    return float(x.square().mean().sqrt()) if x.numel() else math.nan


def _letkf(z: Tensor, obs: _Observed, cfg: LETKFConfig, chunk: int) -> Tensor:
    """(L)ETKF of the augmented state; parameters see every observation.

    Elements beyond the radius of every observation get what the local analysis
    gives them without observations, ``mean + inflation * (z - mean)``, without
    solving; the others are analysed ``chunk`` at a time.
    """
    hx = obs(z)
    if cfg.localization_radius is None:
        return letkf_analysis(z, obs.y, hx, obs.std, cfg)
    dist = _distances(obs.model, obs.points, z)
    mean = z.mean(0)
    out = mean + cfg.inflation * (z - mean)
    near = (dist < cfg.localization_radius).any(1).nonzero().squeeze(1)
    for part in near.split(chunk):
        out[:, part] = letkf_analysis(z[:, part], obs.y, hx, obs.std, cfg, dist[part])
    return out


def _ensf(z: Tensor, obs: _Observed, cfg: ScaledEnSFConfig, gen: torch.Generator) -> Tensor:
    """EnSF with variables (and each parameter) scaled as groups."""
    model = obs.model
    n_c, d_u = model.schema.n_channels, z.shape[1] - model.latent_dim
    channels = model.state_channels().to(z.device)
    groups = torch.cat([channels, n_c + torch.arange(d_u, device=z.device)])
    error = torch.full((n_c + d_u,), math.inf, dtype=z.dtype, device=z.device)
    for c in obs.channel.unique():
        error[c] = obs.std[obs.channel == c].median()
    return scaled_ensf_analysis(z, groups, error, obs, obs.y, obs.std, cfg, gen)


_REMEDIES = {
    "EnSF": "more EnSF steps (EnSFConfig.steps), a smaller obs_scale or inflation",
    "LETKF": "more inflation or a smaller localization radius",
    "ETKF": "more inflation",
    "4DEnVar": "more inflation or localization, or shorter windows",
}


def _check_finite(z: Tensor, config: FullStateConfig, what: str, frame: int) -> None:
    """A diverged ensemble stops the run with the frame and remedies, instead of NaN output."""
    if bool(torch.isfinite(z).all()):
        return
    bad = int((~torch.isfinite(z)).any(1).sum())
    raise VariableError(
        f"{config.name}: the {what} at frame {frame} is not finite for {bad} of "
        f"{z.shape[0]} members (the filter or the model diverged); try {_REMEDIES[config.name]}"
    )


@contextmanager
def _linalg_failure(config: FullStateConfig, frame: int) -> Iterator[None]:
    """A failed factorization in an analysis: a :class:`VariableError` naming the frame."""
    try:
        yield
    except torch.linalg.LinAlgError as err:
        raise VariableError(
            f"{config.name}: the analysis at frame {frame} failed ({err}); the ensemble has "
            f"probably diverged: try {_REMEDIES[config.name]}"
        ) from err


def _filter_cycle(
    model: FullStateModel, z: Tensor, anchor: int, table: ObsTable, config: FullStateConfig, seed
) -> tuple[list[int], list[Tensor], dict[str, list[float]], list[int]]:
    frame = _frames(table, anchor, config)
    frames, groups = group_rows(frame)
    rows_at = {int(f): rows for f, rows in zip(frames, groups, strict=True)}
    steps = [anchor, *[f for f in rows_at if f != anchor]]
    anchors, states, n_obs = [], [], []
    diag: dict[str, list[float]] = {k: [] for k in DIAGNOSTICS}
    previous = anchor
    for a in steps:
        with torch.no_grad():
            z = trajectory(model, z, a - previous)[:, -1]
        _check_finite(z, config, "forecast", a)
        previous = a
        rows = rows_at.get(a, np.zeros(0, dtype=np.int64))
        if len(rows):
            obs = _Observed(model, table.select(rows), z)
            if isinstance(config.method, LETKFConfig):
                with torch.no_grad(), _linalg_failure(config, a):
                    za = _letkf(z, obs, config.method, config.chunk)
            else:
                gen = torch.Generator().manual_seed(seed * 1_000_003 + a)
                za = _ensf(z, obs, config.method, gen)
            _check_finite(za, config, "analysis", a)
            with torch.no_grad():
                scores = obs.scores(z, za)
            z = za.detach()
        else:
            scores = dict.fromkeys(DIAGNOSTICS, math.nan)
        for k in DIAGNOSTICS:
            diag[k].append(scores[k])
        anchors.append(a)
        states.append(z)
        n_obs.append(len(rows))
    return anchors, states, diag, n_obs


def _fourdenvar_cycle(
    model: FullStateModel, z: Tensor, anchor: int, table: ObsTable, config: FullStateConfig, seed
) -> tuple[list[int], list[Tensor], dict[str, list[float]], list[int]]:
    cfg: FourDEnVarConfig = config.method
    windows = plan_windows(table, config.tau, None, anchor)
    if not windows:
        raise ObservationError("4DEnVar got no observations to assimilate")
    anchors, states, n_obs = [], [], []
    diag: dict[str, list[float]] = {k: [] for k in DIAGNOSTICS}
    d_s, n_c = model.latent_dim, model.schema.n_channels
    for w, window in enumerate(windows):
        _check_finite(z, config, "forecast", window.anchor)
        win = obs_window(table.select(window.rows), window.anchor, n_c, z.dtype, z.device)
        prepared = model.prepare_points(win.points)  # (T_o, P, F)
        n = int((win.step + (win.frac > 0).long()).max())

        def run(x: Tensor, win=win, n=n, start=window.anchor) -> Tensor:
            traj = trajectory(model, x, n)
            _check_finite(traj.flatten(1), config, "forecast of the window starting", start)
            return interpolate_trajectory(traj, win.step, win.frac)

        def observe(tr: Tensor, prepared=prepared) -> Tensor:
            return model.decode_prepared(tr[..., :d_s], prepared)

        distances = None
        if cfg.localization is not None:
            distances = _distances(model, win.points.flatten(0, 1), z)
        seeded = replace(cfg, inflation=replace(cfg.inflation, seed=seed * 1_000_003 + w))
        with torch.no_grad(), _linalg_failure(config, window.anchor):
            res = fourdenvar(z, run, observe, win, seeded, distances=distances)
            _check_finite(res.members, config, "analysis", window.anchor)
            following = windows[w + 1].anchor - window.anchor if w + 1 < len(windows) else 0
            traj = trajectory(model, res.members, max(n, following))
            hx = observe(interpolate_trajectory(traj, win.step, win.frac))
        observed = win.weight > 0
        sigma = win.weight[observed].rsqrt()
        n_values = int(observed.sum())
        hx = hx[:, observed]
        diag["forecast_misfit"].append(math.sqrt(2 * float(res.misfit[0]) / max(n_values, 1)))
        diag["analysis_misfit"].append(_rms((win.values[observed] - hx.mean(0)) / sigma))
        diag["forecast_spread"].append(_rms(res.background_spread / sigma))
        diag["analysis_spread"].append(_rms(hx.std(0) / sigma))
        anchors.append(window.anchor)
        states.append(res.members)
        n_obs.append(len(window.rows))
        z = traj[:, following]
    return anchors, states, diag, n_obs


def fullstate_cycle(
    model: FullStateModel,
    z0: np.ndarray,
    anchor: int,
    table: ObsTable,
    config: FullStateConfig,
    case_seed: int,
) -> Cycle:
    """Cycle one case's observations with a full-state method.

    Parameters
    ----------
    model : FullStateModel
    z0 : ndarray, shape (K, N + d_u)
        Initial ensemble (state, normalized parameters) at frame ``anchor``.
    anchor : int
        Frame of ``z0``.
    table : ObsTable
        The case's observations (values in the model's units).
    config : FullStateConfig
    case_seed : int
        Seed of this case's random draws (EnSF noise, 4DEnVar additive inflation).

    Returns
    -------
    Cycle
        One window per analysis (the first holds the initial ensemble, analysed if
        observations fall on its frame), with :data:`DIAGNOSTICS` per window.
    """
    check_model(model, config)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    z = torch.as_tensor(z0, dtype=dtype, device=config.device)
    if isinstance(config.method, FourDEnVarConfig):
        anchors, states, diag, n_obs = _fourdenvar_cycle(model, z, anchor, table, config, case_seed)
    else:
        anchors, states, diag, n_obs = _filter_cycle(model, z, anchor, table, config, case_seed)
    return Cycle(
        anchors=np.asarray(anchors),
        z_analysis=torch.stack(states).cpu().double().numpy(),
        diagnostics={k: np.asarray(v, dtype=float) for k, v in diag.items()},
        n_obs=np.asarray(n_obs),
        names=DIAGNOSTICS,
    )
