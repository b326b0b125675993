"""Initial ensembles: prior draws, given parameters, or fields fitted through the decoder.

:func:`latent_ensemble` is what LEVDA and the full-state methods start from
(their ``initial``); the helpers check and convert the ``background=`` input of
:func:`xlevda.assimilate`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from xlevda._convert import find_time, times_to_steps, to_points
from xlevda.core.inversion import fit_latent, rollout_state
from xlevda.cycle import Ensemble
from xlevda.errors import ConfigError, CoordinateError, VariableError
from xlevda.run import RunOptions
from xlevda.surrogates.protocol import FullStateModel, Surrogate
from xlevda.validate import real_array

__all__ = [
    "FIT_BYTES",
    "background_params",
    "field_background",
    "is_field_background",
    "latent_ensemble",
    "prior",
    "state_ensemble",
]

FIT_BYTES = 2e9
"""Largest ``K N^2`` normal-equation system a full-state field background may need."""


def prior(schema, members: int, seed: int) -> np.ndarray:
    """Parameters drawn uniformly over the training ranges, normalized, (K, d_u)."""
    rng = np.random.default_rng(seed)
    lo = np.array([r[0] for r in schema.param_range])
    hi = np.array([r[1] for r in schema.param_range])
    return schema.param_norm.normalize(rng.uniform(lo, hi, size=(members, len(lo))))


def background_params(schema, background, members: int, member_dim: str) -> np.ndarray:
    """Given parameters ``{name: (K,) values}`` (or a Dataset), checked, normalized, (K, d_u)."""
    arrays = []
    for p in schema.params:
        if p not in background:
            raise VariableError(
                f"background lacks parameter {p!r}: it needs {list(schema.params)} over "
                f"{member_dim!r}"
            )
        v = background[p]
        values = real_array(
            f"background parameter {p!r}",
            v.values if isinstance(v, xr.DataArray) else v,
            VariableError,
            nan=False,
        )
        if values.shape != (members,):
            raise VariableError(
                f"background parameter {p!r} has shape {values.shape}, expected ({members},) "
                f"(one value per member, members={members})"
            )
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


def is_field_background(background: Any, schema) -> bool:
    """Whether ``background`` holds fields (some of the surrogate's variables)."""
    return isinstance(background, xr.Dataset) and any(
        v in background.data_vars for v in schema.variables
    )


def _background_frame(background: xr.Dataset, schema) -> tuple[xr.Dataset, int]:
    """The fields at their one time, and that time's frame (an error between frames)."""
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
    return background, frame


def _field_values(
    background: xr.Dataset, schema, k: int, mdim: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalized values (K, P, C), their weights (1 where finite) and the points (P, n)."""
    points, layout = to_points(background, schema)
    values = np.zeros((k, len(points), schema.n_channels))
    weight = np.zeros_like(values)
    for v in (v for v in schema.variables if v in background.data_vars):
        da = background[v]
        dims = (mdim, *layout.dims)
        if set(da.dims) != set(dims) or da.sizes.get(mdim) != k:
            raise VariableError(
                f"background field {v!r} has dims {dict(da.sizes)}, expected {dims} with {mdim}={k}"
            )
        c = schema.variables.index(v)
        name = f"background field {v!r}"
        raw = real_array(name, da.transpose(*dims).values, VariableError).reshape(k, -1)
        ok = np.isfinite(raw)
        norm = (raw - schema.output_norm.offset[c]) / schema.output_norm.scale[c]
        values[..., c] = np.where(ok, norm, 0.0)
        weight[..., c] = ok
    return values, weight, points


def field_background(background: xr.Dataset, model: Surrogate, run: RunOptions) -> Ensemble:
    """Initial ensemble from full fields: latent states fitted through the decoder.

    Gauss-Newton from the surrogate's rollout for each member's parameters (given
    with the fields, or drawn from the prior); members whose fit fails or who have
    no finite value keep the rollout (counted in ``not_fitted``).
    """
    schema, k, mdim = model.schema, run.members, run.member_dim
    background, frame = _background_frame(background, schema)
    values, weight, points = _field_values(background, schema, k, mdim)
    u0 = (
        background_params(schema, background, k, mdim)
        if any(p in background for p in schema.params)
        else prior(schema, k, run.seed)
    )
    t = {"dtype": run.torch_dtype, "device": run.device}
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
    return Ensemble(frame, z0, not_fitted=int(unfit.sum()))


def state_ensemble(model: FullStateModel, u: torch.Tensor) -> torch.Tensor:
    """``z`` (K, N + d_u) at frame 0 from normalized parameters ``u`` (K, d_u).

    The model's ``initial_state(u)`` sets the fields (a simulator whose parameters
    set its initial state).
    """
    if not callable(getattr(model, "initial_state", None)):
        raise ConfigError(
            f"{type(model).__name__} has no initial_state(u): give the initial ensemble as a "
            "field background (background=<Dataset of the model's variables over member>)"
        )
    return torch.cat([model.initial_state(u), u], -1)


def latent_ensemble(
    model: Surrogate, background: Any, run: RunOptions, *, full_state: bool = False
) -> Ensemble:
    """Initial ensemble from fields, or from parameters (drawn from the training ranges, or given).

    From parameters: at frame 0 by ``initial_state(u)`` for a model that has it (a
    simulator whose parameters set the initial state; required of a full-state
    method's model, ``full_state=True``, without field background); for a surrogate
    with learned initial states (``learns_initial_states``), at frame 0 from rows of
    its table ``initial_states`` drawn uniformly with replacement, independently of
    the parameters (the training runs' initial states as the prior; seed ``(seed,
    1)``); else at the shifted start ``s_{-1} = 0``.
    """
    schema, k = model.schema, run.members
    if is_field_background(background, schema):
        if full_state and 8 * k * model.latent_dim**2 > FIT_BYTES:
            raise ConfigError(
                f"a field background for a model of {model.latent_dim} state elements would be "
                f"fitted through {k} x {model.latent_dim}^2 normal equations "
                f"({8 * k * model.latent_dim**2 / 1e9:.1f} GB): give the parameters instead "
                "(background={name: values per member}) so that the model's initial_state sets "
                "the fields"
            )
        return field_background(background, model, run)
    u0 = (
        prior(schema, k, run.seed)
        if background is None
        else background_params(schema, background, k, run.member_dim)
    )
    if full_state or callable(getattr(model, "initial_state", None)):
        u = torch.as_tensor(u0, dtype=run.torch_dtype, device=run.device)
        with torch.no_grad():
            return Ensemble(0, state_ensemble(model, u).cpu().double().numpy())
    if getattr(model, "learns_initial_states", False):
        table = model.initial_states.detach().cpu().double().numpy()
        rows = np.random.default_rng([run.seed, 1]).integers(len(table), size=k)
        return Ensemble(0, np.concatenate([table[rows], u0], -1))
    return Ensemble(-1, np.concatenate([np.zeros((k, model.latent_dim)), u0], -1))
