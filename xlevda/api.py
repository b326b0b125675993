"""LEVDA on xarray data: check inputs once, cycle windows, wrap the analysis.

Which window supplies each output time: window ``w`` is anchored at latent
index ``a_w`` (``-1``, the shifted start, for the first window; the step of its
first observation time for later ones).  Output times at or after ``a_w`` and
before ``a_{w+1}`` are taken from window ``w``'s analysis trajectory (a
smoother inside its window, a forecast past its last observation); times after
the last anchor come from the last window.  The output variable
``window_index(time)`` records this.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import UTC, datetime
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import torch
import xarray as xr
from dask.delayed import Delayed
from torch import Tensor

from xlevda._convert import find_time, times_to_steps, to_points
from xlevda._cycle import Cycle, obs_window
from xlevda._obs import ObsTable, Window, obs_table, plan_windows
from xlevda.config import FullStateConfig, LEVDAConfig, ModelError, OutputChunks
from xlevda.core.dynamics import interpolate_trajectory, propagate, trajectory
from xlevda.core.inversion import fit_latent, rollout_state
from xlevda.core.ldensf import LDEnSFConfig, ldensf_filter
from xlevda.core.levda import WindowResult, solve_window
from xlevda.core.members import Inflation, Randomized
from xlevda.errors import ConfigError, CoordinateError, VariableError
from xlevda.fullstate import check_model, fullstate_cycle, initial_ensemble
from xlevda.ldensf import observation_matrix
from xlevda.surrogates.encoder import ObservationEncoder
from xlevda.surrogates.protocol import Surrogate

__all__ = ["assimilate", "surrogate_checksum"]

_DIAGNOSTICS = ("cost", "misfit", "misfit_background", "n_iter", "converged", "failed")
_DIAGNOSTIC_NAMES = {
    "cost": "final cost of the member's objective (eq. 19)",
    "misfit": "observation misfit 1/2 sum w (y - H x)^2 of the analysis",
    "misfit_background": "observation misfit of the background member",
    "n_iter": "optimizer iterations",
    "converged": "optimizer converged",
    "failed": "optimization failed; member kept its background",
    "analysed": "an LD-EnSF analysis took place at this frame",
    "forecast_spread": "forecast ensemble spread (standardized latent units, RMS over components)",
    "analysis_spread": "analysis ensemble spread (standardized latent units, RMS over components)",
    "forecast_misfit": "RMS of (forecast mean - encoder output) / pseudo-observation error",
    "analysis_misfit": "RMS of (analysis mean - encoder output) / pseudo-observation error",
    "replaced": "members whose analysis was not finite and kept their forecast",
}


def surrogate_checksum(surrogate: Surrogate) -> str:
    """SHA-256 of a surrogate's weights and schema (provenance of an analysis)."""
    h = hashlib.sha256(repr(surrogate.schema.to_dict()).encode())
    if isinstance(surrogate, torch.nn.Module):
        for name, tensor in sorted(surrogate.state_dict().items()):
            h.update(name.encode())
            buf = io.BytesIO()
            np.save(buf, tensor.detach().cpu().numpy(), allow_pickle=False)
            h.update(buf.getvalue())
    return h.hexdigest()


def _prior(schema, members: int, seed: int) -> np.ndarray:
    """Parameters drawn uniformly over the training ranges, normalized, (K, d_u)."""
    rng = np.random.default_rng(seed)
    lo = np.array([r[0] for r in schema.param_range])
    hi = np.array([r[1] for r in schema.param_range])
    return schema.param_norm.normalize(rng.uniform(lo, hi, size=(members, len(lo))))


def _background_params(schema, background, members: int, member_dim: str) -> np.ndarray:
    arrays = []
    for p in schema.params:
        if p not in background:
            raise VariableError(
                f"background lacks parameter {p!r}: it needs {list(schema.params)} over "
                f"{member_dim!r}"
            )
        v = background[p]
        values = np.asarray(v.values if isinstance(v, xr.DataArray) else v, float)
        if values.shape != (members,):
            raise VariableError(
                f"background parameter {p!r} has shape {values.shape}, expected ({members},) "
                f"(one value per member, members={members})"
            )
        if not np.isfinite(values).all():
            raise VariableError(f"background parameter {p!r} holds NaN or infinite values")
        lo, hi = schema.param_range[schema.params.index(p)]
        outside = (values < lo - 1e-9 * abs(lo)) | (values > hi + 1e-9 * abs(hi))
        if outside.any():
            raise VariableError(
                f"background parameter {p!r} = {values[outside][0]:.6g} (and {outside.sum() - 1} "
                f"more) lies outside the surrogate's training range [{lo:.6g}, {hi:.6g}]: the "
                "surrogate would extrapolate"
            )
        arrays.append(values)
    return schema.param_norm.normalize(np.stack(arrays, -1))


def _is_field_background(background: Any, schema) -> bool:
    return isinstance(background, xr.Dataset) and any(
        v in background.data_vars for v in schema.variables
    )


def _field_background(
    background: xr.Dataset, model: Surrogate, config: _Options, dtype: torch.dtype
) -> tuple[np.ndarray, int, int]:
    """Initial ensemble from full fields: latent states fitted through the decoder.

    Returns ``z0`` (K, d_z) normalized, the latent index of the fields' time and
    the number of members whose fit failed or who have no finite value (they keep the
    surrogate's rollout).
    """
    schema, k, mdim = model.schema, config.members, config.member_dim
    time = find_time(background)
    t_b = np.atleast_1d(np.asarray(background[time].values))
    if t_b.size != 1:
        raise CoordinateError(
            f"a field background holds one time, got {t_b.size} values of {time!r}"
        )
    if time in background.dims:
        background = background.squeeze(time)
    step, frac = times_to_steps(t_b, schema, name=f"background {time}")
    frame = int(np.rint(step[0] + frac[0]))
    if abs(step[0] + frac[0] - frame) > 1e-6:
        raise CoordinateError(
            f"background time {t_b[0]} falls between the surrogate's frames (fraction "
            f"{frac[0]:.3g} of a step): give the fields at a frame"
        )
    given = [v for v in schema.variables if v in background.data_vars]
    points, layout = to_points(background, schema)
    values = np.zeros((k, len(points), schema.n_channels))
    weight = np.zeros_like(values)
    for v in given:
        da = background[v]
        dims = (mdim, *layout.dims)
        if set(da.dims) != set(dims) or da.sizes.get(mdim) != k:
            raise VariableError(
                f"background field {v!r} has dims {dict(da.sizes)}, expected {dims} with {mdim}={k}"
            )
        c = schema.variables.index(v)
        raw = da.transpose(*dims).values.reshape(k, -1).astype(float)
        ok = np.isfinite(raw)
        norm = (raw - schema.output_norm.offset[c]) / schema.output_norm.scale[c]
        values[..., c] = np.where(ok, norm, 0.0)
        weight[..., c] = ok
    u0 = (
        _background_params(schema, background, k, mdim)
        if any(p in background for p in schema.params)
        else _prior(schema, k, config.seed)
    )
    t = {"dtype": dtype, "device": config.device}
    u = torch.as_tensor(u0, **t)
    with torch.no_grad():
        start = rollout_state(model, u, frame)
    res = fit_latent(
        model,
        torch.as_tensor(values, **t),
        torch.as_tensor(points, **t),
        start,
        weight=torch.as_tensor(weight, **t),
    )
    unfit = res.failed | torch.as_tensor(weight.sum((1, 2)) == 0, device=res.failed.device)
    s = torch.where(unfit[:, None], start, res.x)
    z0 = torch.cat([s, u], -1).detach().cpu().double().numpy()
    return z0, frame, int(unfit.sum())


def _initial(
    model: Surrogate, background: Any, options: _Options, dtype: torch.dtype, full_state: bool
) -> tuple[np.ndarray, int, int]:
    """Initial ensemble ``z0`` (K, d_z), its latent index and the members not fitted.

    From fields (fitted through the decoder), or from parameters (drawn from the
    training ranges, or given): at frame 0 by ``initial_state(u)`` for a model that has
    it (a simulator whose parameters set the initial state; required of a full-state
    method's model without field background), else at the shifted start ``s_{-1} = 0``.
    """
    schema, k = model.schema, options.members
    if _is_field_background(background, schema):
        if full_state and 8 * k * model.latent_dim**2 > _FIT_BYTES:
            raise ConfigError(
                f"a field background for a model of {model.latent_dim} state elements would be "
                f"fitted through {k} x {model.latent_dim}^2 normal equations "
                f"({8 * k * model.latent_dim**2 / 1e9:.1f} GB): give the parameters instead "
                "(background={name: values per member}) so that the model's initial_state sets "
                "the fields"
            )
        return _field_background(background, model, options, dtype)
    u0 = (
        _prior(schema, k, options.seed)
        if background is None
        else _background_params(schema, background, k, options.member_dim)
    )
    if full_state or callable(getattr(model, "initial_state", None)):
        u = torch.as_tensor(u0, dtype=dtype, device=options.device)
        with torch.no_grad():
            return initial_ensemble(model, u).cpu().double().numpy(), 0, 0
    return np.concatenate([np.zeros((k, model.latent_dim)), u0], -1), -1, 0


@dataclass(frozen=True)
class _WindowOut:
    """One window's analysis (torch-free, so it travels between dask workers)."""

    anchor: int
    z: np.ndarray  # (K, d_z) analysis at the anchor, float64
    diagnostics: dict[str, np.ndarray]  # name -> (K,)
    n_obs: int
    excess: np.ndarray  # (4, C): mean, count, noise, leverage (observed_excess)


def _solve_one(
    model: Surrogate,
    previous: _WindowOut | np.ndarray,
    table: ObsTable,
    anchor: int,
    w: int,
    config: LEVDAConfig,
    case_seed: int,
) -> _WindowOut:
    """One window: background = previous analysis propagated (or the initial ensemble)."""
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    device = config.device
    if isinstance(previous, _WindowOut):
        za = torch.as_tensor(previous.z, dtype=dtype, device=device)
        zb = propagate(model, za, anchor - previous.anchor)
    else:
        zb = torch.as_tensor(previous, dtype=dtype, device=device)
    obs_w = obs_window(table, anchor, model.schema.n_channels, dtype, device)
    seed = case_seed * 1_000_003 + w
    mode = config.mode
    if isinstance(mode, Randomized) and isinstance(mode.seed, int):
        mode = replace(mode, seed=hash((mode.seed, seed)) % 2**62)
    try:
        res: WindowResult = solve_window(
            model,
            zb,
            obs_w,
            inflation=Inflation(config.inflation_rho, config.inflation_sigma, seed=seed),
            mode=mode,
            optimizer=config.optimizer,
            jacobian=config.jacobian,
        )
    except ConfigError as err:
        if w == 0 or "no spread" not in str(err):
            raise
        raise ConfigError(
            f"window {w}: the background (window {w - 1}'s analysis propagated) has "
            "collapsed: every member converged to the same minimum, as warm-start members "
            "do on a convex cost. Use mode=Randomized() or inflation_sigma > 0"
        ) from err
    return _WindowOut(
        anchor=anchor,
        z=res.z_analysis.detach().cpu().double().numpy(),
        diagnostics={k: getattr(res, k).detach().cpu().numpy() for k in _DIAGNOSTICS},
        n_obs=res.n_obs,
        excess=np.stack([t.detach().cpu().double().numpy() for t in res.excess]),
    )


def _assemble(outs: list[_WindowOut], case_seed: int) -> Cycle:
    return Cycle(
        anchors=np.asarray([o.anchor for o in outs]),
        z_analysis=np.stack([o.z for o in outs]),
        diagnostics={k: np.stack([o.diagnostics[k] for o in outs]) for k in _DIAGNOSTICS},
        n_obs=np.asarray([o.n_obs for o in outs]),
        excess=np.stack([o.excess[0] for o in outs]),
        excess_count=np.stack([o.excess[1] for o in outs]).astype(np.int64),
        excess_noise=np.stack([o.excess[2] for o in outs]),
        excess_leverage=np.stack([o.excess[3] for o in outs]),
        seed=case_seed,
    )


def _cycle_graph(
    model: Delayed,
    z0: np.ndarray,
    table: ObsTable,
    windows: list[Window],
    config: LEVDAConfig,
    case_seed: int,
) -> Delayed:
    """The windows of one case as a chain of dask tasks, each taking the previous analysis."""
    previous: Delayed | np.ndarray = z0
    outs = []
    for w, window in enumerate(windows):
        previous = dask.delayed(_solve_one, pure=False)(
            model, previous, table.select(window.rows), window.anchor, w, config, case_seed
        )
        outs.append(previous)
    return dask.delayed(_assemble, pure=False)(outs, case_seed)


def _latent_at_outputs(
    model: Surrogate, cycle: Cycle, step: np.ndarray, frac: np.ndarray, dtype, device
) -> tuple[np.ndarray, np.ndarray]:
    """Latent states and parameters at output times from the supplying windows.

    Returns ``z`` (T, K, d_z) and ``window_index`` (T,).
    """
    which = np.searchsorted(cycle.anchors, step, side="right") - 1
    n_times, members = len(step), cycle.z_analysis.shape[1]
    out = np.zeros((n_times, members, cycle.z_analysis.shape[2]))
    with torch.no_grad():
        for w in np.unique(which):
            sel = np.nonzero(which == w)[0]
            rel = step[sel] - cycle.anchors[w]
            za = torch.as_tensor(cycle.z_analysis[w], dtype=dtype, device=device)
            n = int((rel + (frac[sel] > 0)).max())
            z = interpolate_trajectory(
                trajectory(model, za, n),  # (K, n+1, d_z)
                torch.as_tensor(rel, device=device),
                torch.as_tensor(frac[sel], dtype=dtype, device=device),
            )
            out[sel] = z.transpose(0, 1).cpu().double().numpy()
    return out, which


def _model_device(model: Surrogate) -> torch.device | str:
    return next(model.parameters()).device if isinstance(model, torch.nn.Module) else "cpu"


def _prepare_output_points(model: Surrogate, points: np.ndarray, dtype) -> Tensor:
    """The output points prepared once per analysis (one dask task shared by every block)."""
    tensor = torch.as_tensor(points, dtype=dtype, device=_model_device(model))
    with torch.no_grad():
        return model.prepare_points(tensor)


def _decode_block(
    latent: np.ndarray,
    model: Surrogate,
    prepared: Tensor,
    dtype,
    channel: int,
    error_std: np.ndarray | None,
    seed: int,
    block_info: dict | None = None,
) -> np.ndarray:
    """Decode one channel of a (t, k, d_s) block at all points -> (t, k, P), denormalized.

    One task per variable and block: a block decoded once for all variables would stay in
    memory until the last variable's chunk is written, which made NetCDF writes hold most
    of the analysis at once.  ``error_std`` (all output times, normalized units) adds the
    model-error term (:class:`~xlevda.config.ModelError`), drawn per (output time, member)
    from ``(seed, channel, time, member)`` so that no chunking changes it.
    """
    norm = model.schema.output_norm
    with torch.no_grad():
        s = torch.as_tensor(latent, dtype=dtype, device=_model_device(model))
        if callable(getattr(model, "decode_channel", None)):
            out = model.decode_channel(s, prepared, channel)
        else:
            out = model.decode_prepared(s, prepared)[..., channel]
        # written in place below: a view (of all channels, of the prepared points, an
        # expanded state) is copied first, so the block owns exactly its own values
        shared = out._base is not None or out.data_ptr() in (prepared.data_ptr(), s.data_ptr())
        if shared or not out.is_contiguous():
            out = out.clone(memory_format=torch.contiguous_format)
        if error_std is not None:  # dask passes block_info to a function that takes it
            (t0, t1), (k0, k1) = block_info[0]["array-location"][:2]
            gen = torch.Generator(device=out.device)
            draw = torch.empty(out.shape[-1], dtype=out.dtype, device=out.device)
            for i, t in enumerate(range(t0, t1)):
                if error_std[t] > 0:
                    for j, k in enumerate(range(k0, k1)):
                        key = np.random.SeedSequence((seed, channel, t, k)).generate_state(1)
                        gen.manual_seed(int(key[0]))
                        torch.randn(out.shape[-1], generator=gen, out=draw)
                        out[i, j].add_(draw, alpha=float(error_std[t]))
        # denormalized in place, in the output's precision
        out.mul_(norm.scale[channel]).add_(norm.offset[channel])
    return out.cpu().numpy().astype(_numpy_dtype(dtype), copy=False)


_OUTLIER_Z = 5.0
"""Standard errors by which a window's level must exceed the pool to keep its own.

The Gaussian standard error ignores that the values of one time share the ensemble's
error, so it is too small: on the tsunami demo, windows that agree stood up to 3.3 of
them from the pool, a window whose members sat in different minima 118-131."""


def _pooled_variance(
    excess: np.ndarray, count: np.ndarray, noise: np.ndarray, leverage: np.ndarray
) -> np.ndarray:
    """Model-error variance (W, C) pooled over the windows that agree.

    Per channel: the windows' levels averaged with weights their counts, over the
    windows whose own level does not exceed that average by more than
    ``_OUTLIER_Z`` standard errors (found by iterating: leaving such a window out
    lowers the average).  A window's standard error is the one its level would have
    if every term were a Gaussian residual of variance ``sigma^2 + Q``:
    ``sqrt(2 leverage) (sigma^2 + max(Q, 0))``, ``Q`` the pool, so it does not depend on
    the window's own scatter (which is correlated with its level).  Outlying windows
    (e.g. one whose members sit in different minima) keep their own level; the
    others and windows without observations get the pool.
    """
    seen = (count > 0) & np.isfinite(excess)
    value = np.where(seen, excess, 0.0)
    keep = seen.copy()
    while True:
        n = (count * keep).sum(0)
        pool = np.where(n > 0, (value * count * keep).sum(0) / np.maximum(n, 1), np.nan)
        se = np.sqrt(2 * np.nan_to_num(leverage)) * (
            np.nan_to_num(noise) + np.maximum(np.nan_to_num(pool), 0.0)
        )
        outlier = seen & (value - pool > _OUTLIER_Z * se)
        if np.array_equal(keep, seen & ~outlier):
            return np.where(outlier, value, pool)
        keep = seen & ~outlier


def _model_error_std(
    cycle: Cycle, which: np.ndarray, model_error: ModelError | None
) -> np.ndarray | None:
    """Standard deviation (T, C) of the model-error term at each output time, normalized.

    Pooled (``ModelError(pooled=True)``, and without the option, for the diagnostic;
    :func:`_pooled_variance`), or per window, where a window without observations of a
    channel keeps the last estimate; 0 before any and for a channel never observed.
    """
    excess, count = cycle.excess, cycle.excess_count
    if excess is None or count is None:
        return None
    if model_error is None or model_error.pooled:
        assert cycle.excess_noise is not None and cycle.excess_leverage is not None
        var = _pooled_variance(excess, count, cycle.excess_noise, cycle.excess_leverage)
    else:
        var = excess.copy()
        for w in range(1, len(var)):
            var[w] = np.where(np.isnan(var[w]), var[w - 1], var[w])
    return np.sqrt(np.clip(np.nan_to_num(var, nan=0.0), 0.0, None))[which]


def _numpy_dtype(dtype: torch.dtype) -> type[np.floating]:
    """The output fields' dtype: the computation's (``config.dtype``)."""
    return np.float64 if dtype == torch.float64 else np.float32


def _prepare_model(surrogate: Surrogate, config: _Options) -> tuple[Surrogate, torch.dtype]:
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    if not isinstance(surrogate, torch.nn.Module):
        return surrogate, dtype
    first = next(surrogate.parameters(), None)
    if first is not None and (first.dtype != dtype or str(first.device) != config.device):
        surrogate = copy.deepcopy(surrogate).to(device=config.device, dtype=dtype)
    surrogate.eval()
    for p in surrogate.parameters():
        p.requires_grad_(False)
    return surrogate, dtype


_FIT_BYTES = 2e9  # largest K N^2 normal-equation system a full-state field background may need

_METHOD_NAMES = {
    "LEVDA": "LEVDA (latent ensemble variational data assimilation)",
    "LD-EnSF": "LD-EnSF (latent dynamics ensemble score filter)",
    "ETKF": "ETKF (ensemble transform Kalman filter) on the full state",
    "LETKF": "LETKF (local ensemble transform Kalman filter) on the full state",
    "EnSF": "EnSF (ensemble score filter) on the full state",
    "4DEnVar": "4DEnVar (four-dimensional ensemble variational) on the full state",
}


@dataclass(frozen=True)
class _Options:
    """What the xarray layer needs of a method's config (member labels, chunks, dtype)."""

    members: int
    member_dim: str = "member"
    chunks: OutputChunks = field(default_factory=OutputChunks)
    dtype: str = "float32"
    device: str = "cpu"
    outside: str = "error"
    seed: int = 0
    method: str = "LEVDA"
    config_json: str = "{}"
    model_error: ModelError | None = None


def _config_json(obj: Any) -> Any:
    """A frozen config tree as JSON-ready data, each dataclass tagged with its type."""
    if is_dataclass(obj):
        return {"type": type(obj).__name__} | {
            f.name: _config_json(getattr(obj, f.name)) for f in fields(obj)
        }
    if isinstance(obj, tuple | list):
        return [_config_json(v) for v in obj]
    return obj


def _options(config: LEVDAConfig | LDEnSFConfig | FullStateConfig) -> _Options:
    as_json = json.dumps(_config_json(config), sort_keys=True, default=str)
    if isinstance(config, LDEnSFConfig):
        return _Options(
            members=config.members, seed=config.seed, method="LD-EnSF", config_json=as_json
        )
    full_state = isinstance(config, FullStateConfig)
    return _Options(
        members=config.members,
        member_dim=config.member_dim,
        chunks=config.chunks,
        dtype=config.dtype,
        device=config.device,
        outside=config.outside,
        seed=config.seed,
        method=config.name if full_state else "LEVDA",
        config_json=as_json if full_state else config.to_json(),
        model_error=None if full_state else config.model_error,
    )


def _ldensf_cycle(
    model: Surrogate,
    encoder: ObservationEncoder,
    table: ObsTable,
    config: LDEnSFConfig,
    last_step: int,
    dtype: torch.dtype,
) -> Cycle:
    """LD-EnSF over one case: an analysis at every observed frame, a forecast elsewhere."""
    network = encoder.network
    observations = torch.as_tensor(observation_matrix(table, network), dtype=dtype)
    last_obs = network.first_frame + network.frame_stride * (len(observations) - 1)
    res = ldensf_filter(
        model,
        encoder,
        network,
        observations,
        config,
        n_frames=max(last_obs, last_step) + 1,
        dtype=dtype,
    )
    z = torch.cat([res.s, res.u], -1).cpu().double().numpy()  # (N, K, d_z)
    n_frames = z.shape[0]
    frames = res.obs_frames.cpu().numpy()
    diagnostics: dict[str, np.ndarray] = {"analysed": res.analysed.cpu().numpy()}
    for name in (
        "forecast_spread",
        "analysis_spread",
        "forecast_misfit",
        "analysis_misfit",
        "replaced",
    ):
        full = np.full(n_frames, np.nan if name != "replaced" else 0)
        full[frames] = getattr(res, name).cpu().numpy()
        diagnostics[name] = full
    n_obs = np.zeros(n_frames, dtype=np.int64)
    n_obs[frames] = network.n_features
    return Cycle(np.arange(n_frames), z, diagnostics, n_obs)


def _check_surrogate(surrogate: Any) -> None:
    missing = [
        a
        for a in ("latent_dim", "param_dim", "schema", "vector_field", "decode_prepared")
        if not hasattr(surrogate, a)
    ]
    if missing:
        raise ConfigError(
            f"surrogate of type {type(surrogate).__name__} lacks {missing}: expected an "
            "xlevda surrogate (e.g. xlevda.LDNet or xlevda.load_pretrained(...))"
        )


def assimilate(
    target: xr.Dataset | xr.DataArray,
    obs: xr.Dataset,
    surrogate: Surrogate,
    config: LEVDAConfig | LDEnSFConfig | FullStateConfig | None = None,
    *,
    variables: list[str] | None = None,
    errors: Mapping[str, float] | None = None,
    background: Mapping[str, Any] | xr.Dataset | None = None,
    case_dim: str = "case",
    encoder: ObservationEncoder | None = None,
) -> xr.Dataset:
    """Analysis ensemble on ``target``'s times and places (LEVDA, LD-EnSF or a full-state method).

    Parameters
    ----------
    target : Dataset or DataArray
        Where and when the analysis is wanted: a time coordinate (sorted) and
        spatial coordinates (a grid or scattered points) inside the surrogate's
        domain.  Its data variables are ignored.
    obs : Dataset
        Observations: one observation dimension with time and position per
        observation, or a gridded Dataset with NaN for "not observed"; errors as
        ``<var>_std`` or through ``errors``.
    surrogate : Surrogate
        A trained surrogate (e.g. :class:`xlevda.LDNet`), or, for a
        :class:`~xlevda.FullStateConfig`, a full-state model (the simulator,
        e.g. :class:`xlevda.systems.tsunami_model.TsunamiModel`).
    config : LEVDAConfig, LDEnSFConfig or FullStateConfig, optional
        The method: LEVDA (the default), LD-EnSF (which needs ``encoder``;
        its output uses the member dimension ``"member"`` and float32 on the CPU),
        or ETKF/LETKF, EnSF or 4DEnVar on the full state (:mod:`xlevda.fullstate`).
    variables : list of str, optional
        Observed variables to assimilate (default: all in ``obs``).
    errors : mapping, optional
        Error standard deviation per variable without ``<var>_std``.
    background : mapping or Dataset, optional
        Initial parameters per member (``{name: (K,) values}``); by default
        parameters are drawn uniformly over the ranges seen in training (a model
        with ``initial_state(u)``, such as a simulator, then starts at frame 0 from
        the fields they set).  Or full
        fields: a Dataset holding some of the surrogate's variables over
        ``(member, *space)`` at one time (a surrogate frame; a 0-d or length-1
        time coordinate) with NaN where unknown, and optionally the parameters
        over ``member``.  Each member's latent state is then fitted through the
        decoder (Gauss-Newton from the surrogate's rollout for its parameters;
        no encoder), the analysis starts at that time, and members whose fit
        fails keep the rollout (counted in ``background_members_not_fitted``).
    case_dim : str
        If ``obs`` has this dimension, each entry is an independent case
        (e.g. another event observed by the same network): the cases are
        assimilated in parallel (as independent chains of dask tasks, one task
        per window for LEVDA and one per case for the other methods, on whatever
        dask scheduler is active, e.g. a
        ``dask.distributed`` cluster) and the output gains this dimension.
    encoder : ObservationEncoder, optional
        For LD-EnSF: the observation encoder trained for ``surrogate`` and the
        sensor network of ``obs`` (:func:`xlevda.ldensf.train_encoder`); the
        observations must be exactly that network at its frames.

    Returns
    -------
    Dataset
        Fields over ``(time, member, *space)`` as lazy dask arrays, parameters over
        ``(time, member)``, the latent trajectory, per-window diagnostics, CF
        attributes and provenance.
    """
    config = LEVDAConfig() if config is None else config
    if not isinstance(config, LEVDAConfig | LDEnSFConfig | FullStateConfig):
        raise ConfigError(
            "config must be a LEVDAConfig, an LDEnSFConfig or a FullStateConfig, got "
            f"{type(config).__name__}"
        )
    if isinstance(config, LDEnSFConfig) and not isinstance(encoder, ObservationEncoder):
        raise ConfigError(
            "LDEnSFConfig needs encoder=<ObservationEncoder trained for this surrogate and "
            f"sensor network> (xlevda.ldensf.train_encoder), got {type(encoder).__name__}"
        )
    if not isinstance(config, LDEnSFConfig) and encoder is not None:
        raise ConfigError(f"encoder= is an LD-EnSF input; {type(config).__name__} takes no encoder")
    if isinstance(config, LDEnSFConfig) and background is not None:
        raise ConfigError(
            "background= is not used by LD-EnSF: its initial parameters come from "
            "LDEnSFConfig.prior_range"
        )
    if isinstance(config, FullStateConfig):
        check_model(surrogate, config)
    options = _options(config)
    full_state = isinstance(config, FullStateConfig)
    _check_surrogate(surrogate)
    schema = surrogate.schema
    time = find_time(target)
    out_times = np.atleast_1d(np.asarray(target[time].values))
    if out_times.ndim != 1 or len(out_times) < 1:
        raise CoordinateError(f"target time {time!r} must be 1-D and non-empty")
    if len(out_times) > 1 and not (out_times[1:] > out_times[:-1]).all():
        raise CoordinateError(f"target time {time!r} must be strictly increasing (sorted, unique)")
    step, frac = times_to_steps(out_times, schema, name=f"target {time}", extrapolate=True)
    points, layout = to_points(target, schema)
    obs_cases = (
        [obs.isel({case_dim: c}) for c in range(obs.sizes[case_dim])]
        if case_dim in obs.dims
        else [obs]
    )
    if isinstance(config, LDEnSFConfig):  # its likelihood uses the encoder's error, not these
        errors = {**dict.fromkeys(schema.variables, 1.0), **(errors or {})}
    tables = [
        obs_table(
            o,
            schema,
            variables=variables,
            errors=errors,
            outside=options.outside,
            time_range=(out_times[0], out_times[-1]),
        )
        for o in obs_cases
    ]
    if isinstance(config, LDEnSFConfig):
        encoder.check(surrogate)
        model, dtype = _prepare_model(surrogate, options)
        cycles = dask.compute(
            *[
                dask.delayed(_ldensf_cycle, pure=False)(
                    model, encoder, t, replace(config, seed=config.seed + c), int(step.max()), dtype
                )
                for c, t in enumerate(tables)
            ]
        )
    else:
        model, dtype = _prepare_model(surrogate, options)
        z0, anchor, n_unfit = _initial(model, background, options, dtype, full_state)
        if step.min() < anchor:
            raise CoordinateError(
                f"target time {out_times[0]} precedes the initial ensemble's time (frame "
                f"{anchor}): the analysis starts there"
            )
        if full_state:
            cycles = dask.compute(
                *[
                    dask.delayed(fullstate_cycle, pure=False)(
                        model, z0, anchor, t, config, config.seed + c
                    )
                    for c, t in enumerate(tables)
                ]
            )
        else:
            plans = [plan_windows(t, config.window, config.window_stride, anchor) for t in tables]
            model_task = dask.delayed(model, pure=False)
            cycles = dask.compute(
                *[
                    _cycle_graph(model_task, z0, t, w, config, config.seed + c)
                    for c, (t, w) in enumerate(zip(tables, plans, strict=True))
                ]
            )
    results = []
    for cycle, table in zip(cycles, tables, strict=True):
        z_out, which = _latent_at_outputs(model, cycle, step, frac, dtype, options.device)
        results.append(
            _to_dataset(
                target,
                time,
                out_times,
                layout,
                points,
                model,
                dtype,
                options,
                cycle,
                z_out,
                which,
                table,
            )
        )
    if not isinstance(config, LDEnSFConfig) and _is_field_background(background, schema):
        for r in results:
            r.attrs["background_members_not_fitted"] = n_unfit
    if case_dim not in obs.dims:
        return results[0]
    out = xr.concat(results, dim=case_dim, combine_attrs="override")
    if case_dim in obs.coords:
        out = out.assign_coords({case_dim: obs[case_dim].values})
    out.attrs["n_observations_used"] = sum(len(t) for t in tables)
    out.attrs["n_observations_dropped"] = sum(t.n_dropped for t in tables)
    return out


def _to_dataset(
    target, time, out_times, layout, points, model, dtype, config, cycle, z_out, which, table
) -> xr.Dataset:
    schema = model.schema
    norm = schema.output_norm
    mdim = config.member_dim
    k = config.members
    d_s = model.latent_dim
    space_dims = layout.dims
    space_shape = tuple(target.sizes[d] for d in space_dims)
    chunks = (min(config.chunks.time, len(out_times)), min(config.chunks.member, k))
    out_dtype = _numpy_dtype(dtype)
    s_out = z_out[..., :d_s].astype(out_dtype, copy=False)
    latent = dsa.from_array(s_out, chunks=(*chunks, d_s))
    data_vars: dict[str, Any] = {}
    prepared = dask.delayed(_prepare_output_points, pure=True)(model, points, dtype)
    error_std = _model_error_std(cycle, which, config.model_error)
    dressed = config.model_error is not None and error_std is not None
    for c, (name, attrs) in enumerate(zip(schema.variables, schema.variable_attrs, strict=True)):
        field = dsa.map_blocks(
            _decode_block,
            latent,
            model,
            prepared,
            dtype,
            c,
            error_std[:, c] if dressed else None,
            cycle.seed,
            meta=np.empty((0, 0, 0), dtype=out_dtype),
            chunks=(*latent.chunks[:2], (points.shape[0],)),
            drop_axis=2,
            new_axis=[2],
        )
        arr = field.reshape((len(out_times), k, *space_shape))
        data_vars[name] = xr.DataArray(arr, dims=(time, mdim, *space_dims), attrs=dict(attrs))
        if error_std is not None:
            data_vars[name].attrs["ancillary_variables"] = f"{name}_model_error_std"
            data_vars[f"{name}_model_error_std"] = xr.DataArray(
                error_std[:, c] * norm.scale[c],
                dims=(time,),
                attrs={
                    "long_name": f"{name}: model error not explained by the ensemble, "
                    + (
                        "estimated from the window's observations"
                        if config.model_error is not None and not config.model_error.pooled
                        else "estimated from the observations, pooled over the windows that agree"
                    )
                    + (" (added to each member)" if dressed else " (not added)"),
                    **({"units": attrs["units"]} if "units" in attrs else {}),
                },
            )
    u_out = schema.param_norm.denormalize(z_out[..., d_s:])  # float64: small, full precision
    for j, (name, attrs) in enumerate(zip(schema.params, schema.param_attrs, strict=True)):
        data_vars[name] = xr.DataArray(
            u_out[..., j],
            dims=(time, mdim),
            attrs={**attrs, "long_name": attrs.get("long_name", name) + " (analysis estimate)"},
        )
    full_state = config.method not in ("LEVDA", "LD-EnSF")
    data_vars["latent_state"] = xr.DataArray(
        s_out,
        dims=(time, mdim, "latent"),
        attrs={"long_name": "state vector of the full-state model (its own units)"}
        if full_state
        else {"long_name": "surrogate latent state", "units": "1"},
    )
    data_vars["window_index"] = xr.DataArray(
        which, dims=(time,), attrs={"long_name": "assimilation window supplying this time"}
    )
    for name, values in cycle.diagnostics.items():
        data_vars[f"window_{name}"] = xr.DataArray(
            values.astype(np.int8) if values.dtype == bool else values,
            dims=("window", mdim)[: values.ndim],
            attrs={"long_name": {**_DIAGNOSTIC_NAMES, **cycle.names}[name], "units": "1"},
        )
    data_vars["window_n_obs"] = xr.DataArray(
        cycle.n_obs, dims=("window",), attrs={"long_name": "observed values in the window"}
    )
    coords = {
        time: (time, out_times, dict(target[time].attrs)),
        mdim: (
            mdim,
            np.arange(k),
            {"standard_name": "realization", "long_name": "ensemble member"},
        ),
        "window": ("window", np.arange(len(cycle.anchors))),
        "window_anchor_step": (
            "window",
            cycle.anchors,
            {"long_name": "latent index of window start (-1: shifted start)"},
        ),
        **{
            c: v.variable
            for c, v in target.coords.items()
            if v.dims and set(v.dims) <= set(space_dims)
        },
    }
    ds = xr.Dataset(data_vars, coords=coords)
    from xlevda import __version__

    ds.attrs = {
        "Conventions": "CF-1.11",
        "title": f"{config.method} analysis ensemble",
        "institution": "xlevda",
        "source": f"xlevda {__version__} {_METHOD_NAMES[config.method]}",
        "history": f"{datetime.now(UTC).isoformat(timespec='seconds')} xlevda.assimilate",
        "xlevda_version": __version__,
        "method": config.method,
        "levda_config": config.config_json,
        "surrogate_sha256": surrogate_checksum(model),
        "n_observations_used": len(table),
        "n_observations_dropped": int(table.n_dropped),
    }
    return ds
