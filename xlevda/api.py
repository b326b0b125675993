"""``assimilate``: check the inputs once, then run any method through the one driver.

Which window supplies each output time: window ``w`` is anchored at latent index
``a_w`` (for LEVDA ``-1``, the shifted start, for the first window; the step of its
first observation time for later ones).  Output times at or after ``a_w`` and
before ``a_{w+1}`` are taken from window ``w``'s analysis trajectory (a smoother
inside its window, a forecast past its last observation); times after the last
anchor come from the last window.  The output variable ``window_index(time)``
records this.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from xlevda._convert import find_time, times_to_steps, to_points
from xlevda._obs import ObsTable, obs_table
from xlevda._obs_checks import check_dataset, check_errors
from xlevda._times import time_values
from xlevda.checkpoint import Checkpoint
from xlevda.checks import check_cycle, horizon_attrs, is_learned, warn_cycles
from xlevda.decode import latent_at_outputs
from xlevda.departures import check_quality_control, warn_rejected
from xlevda.driver import prepare_model, run_cases
from xlevda.errors import ConfigError, CoordinateError, ObservationError
from xlevda.io import OutputGrid, config_json, surrogate_checksum, to_dataset
from xlevda.methods import LEVDA
from xlevda.methods.base import Method
from xlevda.obs_output import observation_dims, pad_cases
from xlevda.progress import progress
from xlevda.run import RunOptions
from xlevda.surrogates.protocol import Surrogate

__all__ = ["assimilate"]


def _check(method: Any, run: Any, surrogate: Any, target: Any, background: Any) -> None:
    if not isinstance(target, xr.Dataset | xr.DataArray):
        raise CoordinateError(
            "target must be an xarray Dataset or DataArray whose time and spatial coordinates "
            f"say where and when the analysis is wanted, got {type(target).__name__}"
        )
    if background is not None and not isinstance(background, Mapping | xr.Dataset):
        raise ConfigError(
            "background must be None, a mapping {parameter: values per member} or a Dataset, "
            f"got {type(background).__name__}"
        )
    if isinstance(method, type):
        raise ConfigError(
            f"method must be a method config, e.g. {method.__name__}(), got the class "
            f"{method.__name__}"
        )
    if not isinstance(method, Method):
        raise ConfigError(
            "method must be an xlevda method (xlevda.LEVDA, LDEnSF, LETKF, EnSF or FourDEnVar; "
            f"see xlevda.methods), got {type(method).__name__}"
        )
    if not isinstance(run, RunOptions):
        raise ConfigError(f"run must be an xlevda.RunOptions, got {type(run).__name__}")
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


def _output_grid(
    target: xr.Dataset | xr.DataArray, schema
) -> tuple[OutputGrid, np.ndarray, np.ndarray]:
    """The output times and places, and the times' latent steps and fractions."""
    time = find_time(target)
    times = np.atleast_1d(np.asarray(target[time].values))
    if times.ndim != 1 or len(times) < 1:
        raise CoordinateError(
            f"target time {time!r} must be 1-D and non-empty, got shape {times.shape}"
        )
    times = time_values(times, f"target {time}")
    if len(times) > 1 and not (times[1:] > times[:-1]).all():
        i = int(np.argmin(times[1:] > times[:-1]))
        raise CoordinateError(
            f"target time {time!r} must be strictly increasing (sorted, unique), got "
            f"{times[i]} followed by {times[i + 1]}"
        )
    step, frac = times_to_steps(times, schema, name=f"target {time}", extrapolate=True)
    points, layout = to_points(target, schema)
    return OutputGrid(target, time, times, layout, points, step + frac), step, frac


def _tables(
    obs: xr.Dataset, schema, method: Method, run: RunOptions, grid: OutputGrid, **kw: Any
) -> list[ObsTable]:
    """Each case's observations as a table (one case unless ``obs`` has ``case_dim``)."""
    case_dim = kw.pop("case_dim")
    check_dataset(obs)
    if not isinstance(case_dim, Hashable):
        raise ConfigError(f"case_dim must be a dimension name, got {case_dim!r}")
    obs_dims = obs[find_time(obs)].dims
    if obs_dims == (case_dim,):
        raise ConfigError(
            f"case_dim={case_dim!r} is the dimension of the observation times: expected a "
            "dimension enumerating independent cases, each with its observations"
        )
    kw["errors"] = check_errors(kw["errors"], schema)
    cases = (
        [obs.isel({case_dim: c}) for c in range(obs.sizes[case_dim])]
        if case_dim in obs.dims
        else [obs]
    )
    if not method.needs_obs_errors:  # errors are required of each variable, but unused
        unset = [v for v in schema.variables if f"{v}_std" not in obs.variables]
        kw["errors"] = {**dict.fromkeys(unset, 1.0), **kw["errors"]}
    span = (grid.times[0], grid.times[-1])
    return [obs_table(o, schema, outside=run.outside, time_range=span, **kw) for o in cases]


def _check_member_dim(run: RunOptions, grid: OutputGrid, schema, case_dim: Any) -> None:
    """Raise if ``run.member_dim`` names a dimension, coordinate or variable of the output."""
    taken = {
        "a dimension or coordinate of the target": {*map(str, grid.target.dims)}
        | {*map(str, grid.target.coords)},
        "a dimension of the output": {"window", "latent", str(case_dim)}
        | {f"{v}_obs" for v in schema.variables},
        "a variable or parameter of the surrogate": {*schema.variables, *schema.params},
    }
    for what, names in taken.items():
        if run.member_dim in names:
            raise ConfigError(
                f"RunOptions.member_dim={run.member_dim!r} is already {what} "
                f"({sorted(names)}): expected a new name, e.g. 'member'"
            )


def _device_memory(device: str) -> int:
    """Bytes of memory of a torch ``device`` (the machine's physical memory for the CPU).

    Examples
    --------
    >>> _device_memory("cpu") > 0
    True
    """
    kind = torch.device(device)
    if kind.type == "cuda":
        return int(torch.cuda.get_device_properties(kind).total_memory)
    return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _check_memory(run: RunOptions, tables: list[ObsTable], surrogate: Surrogate) -> None:
    """Raise before allocating if the ensemble cannot fit the device's memory.

    A lower bound of what any ensemble method holds at once: two ``K x K``
    ensemble-space matrices and ``K`` members' predictions of a case's observations
    and states, in the run's dtype.
    """
    k, m = run.members, max(len(t) for t in tables)
    width = 2 * k + m + surrogate.latent_dim + surrogate.param_dim
    need = torch.finfo(run.torch_dtype).bits // 8 * k * width
    have = _device_memory(run.device)
    if need > have:
        raise ConfigError(
            f"RunOptions.members={k} needs at least {need / 2**30:.3g} GiB ({k} x {k} "
            f"ensemble-space matrices and {k} members' {m} predicted observations in "
            f"{run.dtype}), more than the {have / 2**30:.3g} GiB of {run.device!r} memory: "
            "lower members (memory grows as members squared) or assimilate fewer observations"
        )


def _check_precision(tables: list[ObsTable], schema, run: RunOptions) -> None:
    """Raise if normalized observations or their weights ``1/std^2`` overflow the run's dtype.

    Values up to the square root of the dtype's largest number keep the squared
    misfits finite.
    """
    limit = float(np.finfo(run.dtype).max) ** 0.5
    offset, scale = schema.output_norm.offset, schema.output_norm.scale
    for table in tables:
        for bad, what, raw in (
            (np.abs(table.value) > limit, "values", table.value),
            (table.std < 1 / limit, "error standard deviations", table.std),
        ):
            if bad.any():
                i = int(np.argmax(bad))
                c = int(table.channel[i])
                example = raw[i] * scale[c] + (offset[c] if what == "values" else 0.0)
                raise ObservationError(
                    f"observed variable {schema.variables[c]!r} has {int(bad.sum())} {what} out "
                    f"of the range of a {run.dtype} run, e.g. {example:.6g} (normalized values "
                    f"must stay below {limit:.3g} and stds above {1 / limit:.3g}): check their "
                    "units, or use RunOptions(dtype='float64')"
                )


def _combine(results: list[xr.Dataset], obs: xr.Dataset, case_dim: str, dims) -> xr.Dataset:
    if case_dim not in obs.dims:
        return results[0]
    out = xr.concat(pad_cases(results, dims), dim=case_dim, combine_attrs="override")
    if case_dim in obs.coords:
        out = out.assign_coords({case_dim: obs[case_dim].values})
    for count in ("used", "dropped", "rejected"):
        name = f"n_observations_{count}"
        out.attrs[name] = sum(int(r.attrs[name]) for r in results)
    return out


def _checkpoint(run: RunOptions, method: Method, model: Surrogate) -> Checkpoint | None:
    """The run's :class:`~xlevda.checkpoint.Checkpoint`: its key covers the method's
    configuration, the surrogate's weights and the run's ensemble size, seed, precision and
    device (the windows, observations and backgrounds are fingerprinted per window)."""
    if run.checkpoint is None:
        return None
    parts = [
        json.dumps(config_json(method), sort_keys=True),
        type(method).__name__,
        surrogate_checksum(model),
        repr((run.members, run.seed, run.dtype, run.device)),
    ]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return Checkpoint(Path(run.checkpoint), key)


def assimilate(
    target: xr.Dataset | xr.DataArray,
    obs: xr.Dataset,
    surrogate: Surrogate,
    method: Method | None = None,
    *,
    run: RunOptions | None = None,
    variables: list[str] | None = None,
    errors: Mapping[str, float] | None = None,
    background: Mapping[str, Any] | xr.Dataset | None = None,
    case_dim: str = "case",
    obs_coords: Mapping[str, str] | Sequence[str] | None = None,
) -> xr.Dataset:
    """Analysis ensemble on ``target``'s times and places, by any method.

    Parameters
    ----------
    target : Dataset or DataArray
        Where and when the analysis is wanted: a time coordinate (sorted) and
        spatial coordinates (a grid or scattered points) inside the surrogate's
        domain.  Its data variables are ignored.
    obs : Dataset
        Observations: one observation dimension with time and position per
        observation, or a gridded Dataset with NaN for "not observed"; errors as
        ``<var>_std`` (on some of the variable's dims) or through ``errors``.  Values
        are real numbers, NaN where not observed; infinite values, other kinds
        (complex, strings, objects) and observed values without a finite time and
        position are errors.
    surrogate : Surrogate
        A trained surrogate (e.g. :class:`xlevda.LDNet`), or, for a full-state
        method, a full-state model (the simulator, e.g.
        :class:`xlevda.systems.tsunami_model.TsunamiModel`).
    method : Method, optional
        The method and its options (:mod:`xlevda.methods`): :class:`~xlevda.LEVDA`
        (the default), :class:`~xlevda.LDEnSF` (with its observation encoder), or
        on the full state :class:`~xlevda.LETKF` (ETKF without a radius),
        :class:`~xlevda.EnSF` or :class:`~xlevda.FourDEnVar`.
    run : RunOptions, optional
        Ensemble size, seed, precision, device and output layout; fields left at
        ``None`` take the method's defaults.
    variables : list of str, optional
        Observed variables to assimilate (default: all in ``obs``).
    errors : mapping, optional
        Error standard deviation per variable without ``<var>_std``.
    background : mapping or Dataset, optional
        Initial parameters per member (``{name: (K,) values}``); by default
        parameters are drawn uniformly over the ranges seen in training (a model
        with ``initial_state(u)``, such as a simulator, then starts at frame 0 from
        the fields they set).  Or full fields: a Dataset holding some of the
        surrogate's variables over ``(member, *space)`` at one time (a surrogate
        frame; a 0-d or length-1 time coordinate) with NaN where unknown, and
        optionally the parameters over ``member``.  Each member's latent state is
        then fitted through the decoder (Gauss-Newton from the surrogate's rollout
        for its parameters; no encoder), the analysis starts at that time, and
        members whose fit fails keep the rollout (counted in
        ``background_members_not_fitted``).  Not used by LD-EnSF.
    case_dim : str
        If ``obs`` has this dimension, each entry is an independent case
        (e.g. another event observed by the same network): the cases are
        assimilated in parallel as independent chains of dask tasks (one task per
        window) on whatever dask scheduler is active, e.g. a ``dask.distributed``
        cluster, and the output gains this dimension.
    obs_coords : mapping or sequence of str, optional
        The observations' position coordinates, ``{surrogate coordinate: name in obs}``
        or one name per surrogate coordinate.  By default each is found by name, then
        by CF identity (standard name, units, axis), then by a common name
        (lat/latitude, lon/longitude, x, y); none or several is an error.  Longitudes
        may be in -180..180 or 0..360 (:func:`xlevda._coords.match_coords`).

    Returns
    -------
    Dataset
        Fields over ``(time, member, *space)`` as lazy dask arrays, parameters over
        ``(time, member)``, the latent trajectory, per-window diagnostics, CF
        attributes and provenance; per observed variable ``v``, its observations on
        ``{v}_obs`` with their departures from the background and the analysis
        (``{v}_obs_minus_background``, ``{v}_obs_minus_analysis``, spreads) and
        used/rejected flags (:mod:`xlevda.departures`, :mod:`xlevda.obs_output`).

    Raises
    ------
    XlevdaError
        For bad input, a subclass naming the variable, dimension or coordinate, the
        value received and what is expected: :class:`~xlevda.errors.ObservationError`
        (observations, ``errors``, ``variables``), :class:`~xlevda.errors.CoordinateError`
        (times of other kinds or with NaT, positions outside the surrogate's domain or
        not finite, an empty target), :class:`~xlevda.errors.VariableError`
        (``background``) and :class:`~xlevda.errors.ConfigError` (configs, an unavailable
        device, a ``member_dim`` already in the output, an ensemble whose estimated
        memory exceeds the device's).

    Warns
    -----
    UserWarning
        Once per call for each of :mod:`xlevda.checks`: parameters estimated outside
        the surrogate's training range, target times past its trained horizon, and
        windows whose analysis fits the observations no better than its background.
        Each is also recorded in the output (``window_<param>_outside_training_range``,
        the attributes ``surrogate_trained_horizon`` and
        ``n_target_times_past_horizon``, ``window_misfit_not_reduced``).
        Also once for the observations the gross-error check rejected
        (``RunOptions.quality_control``), counted in ``n_observations_rejected``.
    """
    method = LEVDA() if method is None else method
    run = RunOptions() if run is None else run
    _check(method, run, surrogate, target, background)
    check_quality_control(method, run.quality_control)
    run = run.resolve(method.run_defaults)
    grid, step, frac = _output_grid(target, surrogate.schema)
    _check_member_dim(run, grid, surrogate.schema, case_dim)
    tables = _tables(
        obs,
        surrogate.schema,
        method,
        run,
        grid,
        variables=variables,
        errors=errors,
        case_dim=case_dim,
        coords=obs_coords,
    )
    _check_memory(run, tables, surrogate)
    _check_precision(tables, surrogate.schema, run)
    model = prepare_model(surrogate, run)
    initial = method.initial(model, background, run)
    if step.min() < initial.anchor:
        raise CoordinateError(
            f"target time {grid.times[0]} precedes the initial ensemble's time (frame "
            f"{initial.anchor}): the analysis starts there"
        )
    horizon = {}
    if is_learned(model, method):
        horizon = horizon_attrs(
            grid.times, step + frac, model.schema, grid.time, run.past_horizon == "forecast"
        )
    with progress(run.progress, desc=f"{method.name} windows"):
        cycles = run_cases(method, model, initial, tables, run, _checkpoint(run, method, model))
    warn_rejected(cycles, run.quality_control)
    checks = [check_cycle(cycle, model, method) for cycle in cycles]
    warn_cycles(checks, model.schema, method)
    results = []
    for cycle, table, checked in zip(cycles, tables, checks, strict=True):
        z_out, which = latent_at_outputs(model, cycle, step, frac, run.torch_dtype, run.device)
        results.append(to_dataset(grid, model, run, method, cycle, z_out, which, table, checked))
        results[-1].attrs.update(horizon)
        if initial.not_fitted is not None:
            results[-1].attrs["background_members_not_fitted"] = initial.not_fitted
    dims = sorted({d for t in tables for d in observation_dims(surrogate.schema, t)})
    return _combine(results, obs, case_dim, dims)
