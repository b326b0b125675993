"""The analysis as a CF Dataset: lazily decoded fields, diagnostics, attributes, provenance.

:func:`to_dataset` turns one case's :class:`~xlevda.cycle.Cycle` into the output of
:func:`xlevda.assimilate`: fields over ``(time, member, *space)`` as dask arrays
decoded chunk by chunk (:func:`xlevda.decode.decode_block`), parameters over
``(time, member)``, the latent trajectory, per-window diagnostics, CF-1.11
attributes, and the method, run options and surrogate checksum as provenance.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, datetime
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import torch
import xarray as xr

from xlevda._convert import SpatialLayout
from xlevda._obs import ObsTable
from xlevda._version import VERSION
from xlevda.checks import CycleChecks
from xlevda.cycle import Cycle
from xlevda.decode import FieldTerm, decode_block, numpy_dtype, prepare_output_points
from xlevda.departures import field_at_observations, observation_times
from xlevda.field_analysis import FieldAnalysis, case_increments
from xlevda.methods.base import Method
from xlevda.model_error import ModelErrorTerm, model_error_std, window_variance
from xlevda.obs_output import observation_variables
from xlevda.run import RunOptions
from xlevda.surrogates.protocol import Surrogate
from xlevda.write import cf_encoding

__all__ = ["OutputGrid", "config_json", "module_checksum", "surrogate_checksum", "to_dataset"]


@dataclass(frozen=True)
class OutputGrid:
    """Where and when the analysis is wanted (from :func:`xlevda.assimilate`'s ``target``).

    Attributes
    ----------
    target : Dataset or DataArray
        The object whose coordinates the output takes.
    time : str
        Its time coordinate; ``times`` its values.
    layout : SpatialLayout
        Its spatial dimensions; ``points`` (P, n_coords) their normalized positions.
    steps : ndarray (T,)
        The times in latent steps (step + fraction).
    """

    target: xr.Dataset | xr.DataArray
    time: str
    times: np.ndarray
    layout: SpatialLayout
    points: np.ndarray
    steps: np.ndarray


def module_checksum(module: torch.nn.Module, h: Any = None) -> str:
    """SHA-256 of a torch module's weights (``h``: a hash to continue)."""
    h = hashlib.sha256() if h is None else h
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        buf = io.BytesIO()
        np.save(buf, tensor.detach().cpu().numpy(), allow_pickle=False)
        h.update(buf.getvalue())
    return h.hexdigest()


def surrogate_checksum(surrogate: Surrogate) -> str:
    """SHA-256 of a surrogate's weights and schema (provenance of an analysis)."""
    h = hashlib.sha256(repr(surrogate.schema.to_dict()).encode())
    if isinstance(surrogate, torch.nn.Module):
        return module_checksum(surrogate, h)
    return h.hexdigest()


def config_json(obj: Any) -> Any:
    """A frozen config tree as JSON-ready data, each dataclass tagged with its type.

    A torch module inside (LD-EnSF's encoder) is recorded by type and checksum.

    Examples
    --------
    >>> from xlevda.run import OutputChunks
    >>> config_json(OutputChunks())
    {'type': 'OutputChunks', 'time': 8, 'member': 25}
    """
    if isinstance(obj, torch.nn.Module):
        return {"type": type(obj).__name__, "sha256": module_checksum(obj)}
    if is_dataclass(obj):
        return {"type": type(obj).__name__} | {
            f.name: config_json(getattr(obj, f.name)) for f in fields(obj)
        }
    if isinstance(obj, tuple | list):
        return [config_json(v) for v in obj]
    return obj


def _field_term(
    grid: OutputGrid, model, method: Method, cycle: Cycle, which, table: ObsTable, members: int
) -> tuple[FieldTerm | None, np.ndarray | None]:
    """The case's field analysis (weights solved here, eagerly: observations x members), and
    the members' mean of the analysis fields at the observations (normalized), or ``None``s.

    One :func:`~xlevda.field_analysis.case_increments` serves the output times and, after
    them, the observations' times (:func:`~xlevda.departures.observation_times`).
    """
    config = method.model_error
    if not isinstance(config, FieldAnalysis) or cycle.residuals is None:
        return None, None
    obs_times, obs_windows, _ = observation_times(table, cycle.departures)
    increments = case_increments(
        cycle.residuals,
        window_variance(cycle, level=config.level),
        config,
        model.schema,
        np.concatenate([grid.steps, obs_times]),
        np.concatenate([which, obs_windows]),
    )
    first = cycle.residuals[0]
    model_free = first.background is not None and first.model_weight is None
    at_obs = field_at_observations(
        increments, len(grid.steps), table, cycle.departures, model_free, members
    )
    return FieldTerm(increments, grid.points, model_free), at_obs


def _field_attrs(term: FieldTerm | None, c: int, scale: float) -> dict[str, Any]:
    if term is None:
        return {}
    inc = term.increments
    return {
        "field_analysis_length_scale": float(inc.length[c]),
        "field_analysis_std": float(np.sqrt(inc.variance[:, c].mean()) * scale),
    }


def _fields(
    grid: OutputGrid,
    model,
    run: RunOptions,
    method: Method,
    cycle: Cycle,
    z_out,
    which,
    term: FieldTerm | None,
) -> dict[str, xr.DataArray]:
    """The decoded fields (lazy) and their model-error standard deviations; ``term``: the
    field analysis (:func:`_field_term`)."""
    schema, dtype, k = model.schema, run.torch_dtype, run.members
    d_s, space_dims = model.latent_dim, grid.layout.dims
    space_shape = tuple(grid.target.sizes[d] for d in space_dims)
    chunks = (min(run.chunks.time, len(grid.times)), min(run.chunks.member, k))
    s_out = z_out[..., :d_s].astype(numpy_dtype(dtype), copy=False)
    latent = dsa.from_array(s_out, chunks=(*chunks, d_s))
    # explicit keys: tokenizing the model and the field analysis for dask's default keys
    # pickles every tensor they hold, per variable (seconds per call)
    key = uuid.uuid4().hex
    prepared = dask.delayed(prepare_output_points, pure=False)(model, grid.points, dtype)
    error_std = model_error_std(cycle, which, method.model_error)
    dressed = isinstance(method.model_error, ModelErrorTerm) and error_std is not None
    pooled = not (isinstance(method.model_error, ModelErrorTerm) and not method.model_error.pooled)
    out: dict[str, xr.DataArray] = {}
    for c, (name, attrs) in enumerate(zip(schema.variables, schema.variable_attrs, strict=True)):
        field = dsa.map_blocks(
            decode_block,
            latent,
            model,
            prepared,
            dtype,
            c,
            error_std[:, c] if dressed else None,
            cycle.seed,
            term,
            meta=np.empty((0, 0, 0), dtype=numpy_dtype(dtype)),
            name=f"decode-{name}-{key}",
            chunks=(*latent.chunks[:2], (grid.points.shape[0],)),
            drop_axis=2,
            new_axis=[2],
        )
        arr = field.reshape((len(grid.times), k, *space_shape))
        out[name] = xr.DataArray(
            arr,
            dims=(grid.time, run.member_dim, *space_dims),
            attrs={"long_name": name}
            | dict(attrs)
            | _field_attrs(term, c, schema.output_norm.scale[c]),
        )
        if error_std is None:
            continue
        out[name].attrs["ancillary_variables"] = f"{name}_model_error_std"
        how = (
            "estimated from the observations, pooled over the windows that agree"
            if pooled
            else "estimated from the window's observations"
        )
        added = " (added to each member)" if dressed else " (not added)"
        out[f"{name}_model_error_std"] = xr.DataArray(
            error_std[:, c] * schema.output_norm.scale[c],
            dims=(grid.time,),
            attrs={
                "long_name": f"{name}: model error not explained by the ensemble, {how}{added}",
                **({"units": attrs["units"]} if "units" in attrs else {}),
            },
        )
    return out


def _states(
    grid: OutputGrid, model, run: RunOptions, method: Method, cycle: Cycle, z_out, which
) -> dict[str, xr.DataArray]:
    """Parameters and latent states at the output times, and the per-window diagnostics."""
    schema, mdim, d_s = model.schema, run.member_dim, model.latent_dim
    out = {}
    u_out = schema.param_norm.denormalize(z_out[..., d_s:])  # float64: small, full precision
    for j, (name, attrs) in enumerate(zip(schema.params, schema.param_attrs, strict=True)):
        out[name] = xr.DataArray(
            u_out[..., j],
            dims=(grid.time, mdim),
            attrs={**attrs, "long_name": attrs.get("long_name", name) + " (analysis estimate)"},
        )
    out["latent_state"] = xr.DataArray(
        z_out[..., :d_s].astype(numpy_dtype(run.torch_dtype), copy=False),
        dims=(grid.time, mdim, "latent"),
        attrs={"long_name": "state vector of the full-state model (its own units)"}
        if method.full_state
        else {"long_name": "surrogate latent state", "units": "1"},
    )
    out["window_index"] = xr.DataArray(
        which,
        dims=(grid.time,),
        attrs={"long_name": "assimilation window supplying this time", "units": "1"},
    )
    out["window_anchor_step"] = xr.DataArray(
        cycle.anchors,
        dims=("window",),
        attrs={"long_name": "latent index of window start (-1: shifted start)", "units": "1"},
    )
    for name, values in cycle.diagnostics.items():
        out[f"window_{name}"] = xr.DataArray(
            values.astype(np.int8) if values.dtype == bool else values,
            dims=("window", mdim)[: values.ndim],
            attrs={"long_name": cycle.names[name], "units": "1"},
        )
    out["window_n_obs"] = xr.DataArray(
        cycle.n_obs,
        dims=("window",),
        attrs={"long_name": "observed values in the window", "units": "1"},
    )
    out["window_n_obs_rejected"] = xr.DataArray(
        cycle.departures.rejected,
        dims=("window",),
        attrs={"long_name": "observed values the gross-error check rejected", "units": "1"},
    )
    return out


def _checked(checks: CycleChecks, schema, mdim: str) -> dict[str, xr.DataArray]:
    """The per-window records of :mod:`xlevda.checks` (0/1 flags)."""
    out = {}
    if checks.param_outside is not None:
        for j, (name, (lo, hi)) in enumerate(zip(schema.params, schema.param_range, strict=True)):
            out[f"window_{name}_outside_training_range"] = xr.DataArray(
                checks.param_outside[..., j].astype(np.int8),
                dims=("window", mdim),
                attrs={
                    "long_name": f"{name} of the member's analysis outside the surrogate's "
                    f"training range [{lo:.6g}, {hi:.6g}]",
                    "flag_values": np.array([0, 1], np.int8),
                    "flag_meanings": "inside outside",
                },
            )
    if checks.misfit_not_reduced is not None:
        out["window_misfit_not_reduced"] = xr.DataArray(
            checks.misfit_not_reduced.astype(np.int8),
            dims=("window",),
            attrs={
                "long_name": "the analysis' observation misfit (median over members) is not "
                "below its background's",
                "flag_values": np.array([0, 1], np.int8),
                "flag_meanings": "reduced not_reduced",
            },
        )
    return out


def _time_attrs(grid: OutputGrid) -> dict[str, Any]:
    """The target's time attributes; datetimes (numpy's have no leap seconds) say so (CF-1.11)."""
    attrs = dict(grid.target[grid.time].attrs)
    if np.issubdtype(np.asarray(grid.times).dtype, np.datetime64):
        attrs.setdefault("units_metadata", "leap_seconds: none")
    return attrs


def _coords(grid: OutputGrid, run: RunOptions, cycle: Cycle) -> dict[str, Any]:
    space_dims = set(grid.layout.dims)
    return {
        grid.time: (grid.time, grid.times, _time_attrs(grid)),
        run.member_dim: (
            run.member_dim,
            np.arange(run.members),
            {"standard_name": "realization", "long_name": "ensemble member", "units": "1"},
        ),
        "window": (
            "window",
            np.arange(len(cycle.anchors)),
            {"long_name": "assimilation window", "units": "1"},
        ),
        **{
            c: v.variable
            for c, v in grid.target.coords.items()
            if v.dims and set(v.dims) <= space_dims
        },
    }


def _attrs(
    model, run: RunOptions, method: Method, n_used: int, n_dropped: int, n_rejected: int
) -> dict[str, Any]:
    return {
        "Conventions": "CF-1.11",
        "title": f"{method.name} analysis ensemble",
        "institution": "xlevda",
        "source": f"xlevda {VERSION} {method.title}",
        "history": f"{datetime.now(UTC).isoformat(timespec='seconds')} xlevda.assimilate",
        "xlevda_version": VERSION,
        "method": method.name,
        "method_config": json.dumps(config_json(method), sort_keys=True, default=str),
        "run_options": json.dumps(config_json(run), sort_keys=True, default=str),
        "surrogate_sha256": surrogate_checksum(model),
        "n_observations_used": n_used,
        "n_observations_dropped": n_dropped,
        "n_observations_rejected": n_rejected,
    }


def to_dataset(
    grid: OutputGrid,
    model: Surrogate,
    run: RunOptions,
    method: Method,
    cycle: Cycle,
    z_out: np.ndarray,
    which: np.ndarray,
    table: ObsTable,
    checks: CycleChecks,
) -> xr.Dataset:
    """One case's analysis as a CF Dataset.

    Its variables carry CF encodings (:func:`xlevda.write.cf_encoding`: time in
    CDO-readable units, no ``_FillValue`` on coordinates, zlib compression in the dask
    chunks), so that ``to_netcdf`` writes a CF-clean, compressed file;
    :func:`xlevda.write.write` writes it all or nothing, in either format.

    Parameters
    ----------
    grid : OutputGrid
    model : Surrogate
        The (prepared) surrogate or full-state model.
    run : RunOptions
        Resolved (no field left at ``None``).
    method : Method
    cycle : Cycle
    z_out : ndarray, shape (T, K, d_z)
        States at the output times; ``which`` (T,) the window supplying each.
    table : ObsTable
        The case's observations: the observation variables (:mod:`xlevda.obs_output`)
        and the counts of those used, dropped and rejected.
    checks : CycleChecks
        The cycle's :mod:`xlevda.checks`, recorded per window.
    """
    args = (grid, model, run, method, cycle, z_out, which)
    checked = _checked(checks, model.schema, run.member_dim)
    term, at_obs = _field_term(grid, model, method, cycle, which, table, run.members)
    observed, obs_coords = observation_variables(model.schema, table, cycle.departures, at_obs)
    ds = xr.Dataset(
        {**_fields(*args, term), **_states(*args), **checked, **observed},
        coords=_coords(grid, run, cycle) | obs_coords,
    )
    rejected = int((~cycle.departures.used).sum())
    ds.attrs = _attrs(model, run, method, len(table) - rejected, int(table.n_dropped), rejected)
    for name, encoding in cf_encoding(ds).items():
        ds.variables[name].encoding = encoding
    return ds
