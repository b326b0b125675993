"""Mutations of a tiny valid training archive, for fuzzing :meth:`xlevda.LDNet.fit`.

Shared by ``tests/test_fuzz_fit.py`` (hypothesis, CI-sized) and
``benchmarks/reliability/fuzz_fit.py`` (seeded, counts by outcome).  Each mutation takes
the archive, the keyword arguments of ``fit`` and a numpy generator, and returns both
changed.  :func:`fit_outcome` runs one fit and names what happened.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import xarray as xr

import xlevda
from xlevda.errors import XlevdaError

Kwargs = dict
Mutation = Callable[[xr.Dataset, Kwargs, np.random.Generator], tuple[xr.Dataset, Kwargs]]

FITS = {
    "linear": xlevda.LDNetConfig(
        latent_dim=3,
        learnable_dt=False,
        dynamics=xlevda.LinearDynamicsConfig(),
        decoder=xlevda.CosineDecoderConfig(n_terms=4),
        train=xlevda.TrainConfig(validation_fraction=0.25),
    ),
    "gradient": xlevda.LDNetConfig(
        latent_dim=2,
        dynamics_width=4,
        dynamics_depth=1,
        decoder=xlevda.SeparableDecoderConfig(n_basis=3, basis_width=4, coef_width=4),
        train=xlevda.TrainConfig(epochs=1, points_per_frame=None, validation_fraction=0.25),
    ),
}
"""Two fast configurations: the closed-form linear fit and one epoch of a tiny network."""


def base_archive(n_runs: int = 5, n_frames: int = 4, seed: int = 0) -> xr.Dataset:
    """A valid archive: ``n_runs`` runs of a 6 x 5 latitude-longitude grid, variables
    ``eta`` and ``u`` over ``(run, time, lat, lon)``, parameters ``a`` and ``b``."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-0.5, 0.5, n_runs)
    b = rng.uniform(0.5, 1.5, n_runs)
    lat = np.linspace(40.0, 44.0, 6)
    lon = np.linspace(-160.0, -155.0, 5)
    t = np.arange(n_frames)
    la, lo = np.meshgrid((lat - 42.0) / 2.0, (lon + 157.5) / 2.5, indexing="ij")
    centre = a[:, None] + 0.1 * b[:, None] * t[None, :]
    eta = np.exp(-((lo - centre[..., None, None]) ** 2 + la**2) / 0.5)
    time = np.datetime64("2026-01-01T00:00", "ns") + t * np.timedelta64(3600, "s")
    dims = ("run", "time", "lat", "lon")
    return xr.Dataset(
        {"eta": (dims, eta, {"units": "m"}), "u": (dims, b[:, None, None, None] * eta)},
        coords={
            "run": np.arange(n_runs),
            "time": ("time", time, {"standard_name": "time"}),
            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
            "a": ("run", a),
            "b": ("run", b),
        },
    )


def _cell(ds: xr.Dataset, rng: np.random.Generator) -> dict[str, int]:
    return {d: int(rng.integers(ds.sizes[d])) for d in ("run", "time", "lat", "lon")}


def _set(ds: xr.Dataset, name: str, where: dict[str, int], value) -> xr.Dataset:
    ds = ds.copy(deep=True)
    arr = ds[name].values.astype(np.result_type(ds[name].dtype, np.asarray(value).dtype))
    idx = tuple(where.get(d, slice(None)) for d in ds[name].dims)
    arr[idx] = value
    ds[name] = (ds[name].dims, arr, ds[name].attrs)
    return ds


def _value(value) -> Mutation:
    def mutate(ds, kw, rng):
        return _set(ds, str(rng.choice(["eta", "u"])), _cell(ds, rng), value), kw

    mutate.__name__ = f"value_{value!r}"
    return mutate


def _call(name: str, changes: dict) -> Mutation:
    """A mutation of the call's keyword arguments alone."""

    def mutate(ds, kw, rng):
        return ds, {**kw, **changes}

    mutate.__name__ = name
    return mutate


def _isel(name: str, **indexers) -> Mutation:
    """A selection along dimensions (fewer runs, frames or points; reversed)."""

    def mutate(ds, kw, rng):
        return ds.isel(indexers), kw

    mutate.__name__ = name
    return mutate


def nan_land(ds, kw, rng):
    """A cell NaN in every run and frame; sometimes with ``missing="mask"``."""
    cell = {"lat": int(rng.integers(1, 5)), "lon": int(rng.integers(1, 4))}
    for v in ("eta", "u"):
        ds = _set(ds, v, cell, np.nan)
    return ds, {**kw, "missing": "mask"} if rng.random() < 0.5 else kw


def nan_gaps(ds, kw, rng):
    """Scattered NaN (gaps); sometimes with ``missing="mask"``."""
    ds = ds.copy(deep=True)
    for v in ("eta", "u"):
        ds[v] = ds[v].where(rng.random(ds[v].shape) > 0.1)
    return ds, {**kw, "missing": "mask"} if rng.random() < 0.5 else kw


def all_nan_variable(ds, kw, rng):
    return ds.assign(eta=ds.eta * np.nan), {**kw, "missing": "mask"}


def all_nan_run(ds, kw, rng):
    ds = ds.copy(deep=True)
    for v in ("eta", "u"):
        ds[v][{"run": 0}] = np.nan
    return ds, {**kw, "missing": "mask"}


def complex_variable(ds, kw, rng):
    return ds.assign(eta=ds.eta + 1j * ds.u), kw


def string_variable(ds, kw, rng):
    return ds.assign(eta=ds.eta.astype(str)), kw


def bool_variable(ds, kw, rng):
    return ds.assign(eta=ds.eta > 0.5), kw


def int_variable(ds, kw, rng):
    return ds.assign(eta=(ds.eta * 100).astype(int)), kw


def datetime_variable(ds, kw, rng):
    # from a fixed date: another mutation may have renamed or replaced the time coordinate
    start = np.datetime64("2026-01-01T00:00:00", "ns")
    return ds.assign(eta=start + (ds.eta * 1e9).astype("timedelta64[ns]")), kw


def float32_data(ds, kw, rng):
    return ds.astype({"eta": np.float32, "u": np.float32}), kw


def float32_overflow(ds, kw, rng):
    """1e38 is a float32, but its square overflows float32 statistics."""
    ds = ds.assign(eta=ds.eta.astype(np.float32))
    return _set(ds, "eta", _cell(ds, rng), np.float32(1e38)), kw


def tiny_variation(ds, kw, rng):
    return ds.assign(eta=1.0 + 1e-300 * ds.eta), kw


def constant_variable(ds, kw, rng):
    return ds.assign(eta=ds.eta * 0 + 2.0), kw


def _extra(dims: tuple[str, ...]) -> Mutation:
    def mutate(ds, kw, rng):
        shape = tuple(ds.sizes[d] for d in dims)
        return ds.assign(extra=(dims, rng.normal(size=shape))), kw

    mutate.__name__ = "extra_" + "_".join(dims or ("scalar",))
    return mutate


def extra_dim_variable(ds, kw, rng):
    return ds.assign(w=ds.eta.expand_dims(level=2)), kw


def transposed_variable(ds, kw, rng):
    return ds.assign(u=ds.u.transpose("lon", "time", "run", "lat")), kw


def explicit_variables(ds, kw, rng):
    ds = ds.assign(extra=(("run",), rng.normal(size=ds.sizes["run"])))
    return ds, {**kw, "variables": ["eta"]}


def constant_parameter(ds, kw, rng):
    return ds.assign_coords(a=ds.a * 0 + 0.3), kw


def repeated_runs(ds, kw, rng):
    return ds.isel(run=[0, 1, 2, 0, 1]).assign_coords(run=np.arange(5)), kw


def _param(value) -> Mutation:
    def mutate(ds, kw, rng):
        vals = ds.a.values.astype(np.result_type(ds.a.dtype, np.asarray(value).dtype))
        vals[int(rng.integers(len(vals)))] = value
        return ds.assign_coords(a=("run", vals)), kw

    mutate.__name__ = f"param_{value!r}"
    return mutate


def string_parameter(ds, kw, rng):
    return ds.assign_coords(a=ds.a.astype(str)), kw


def datetime_parameter(ds, kw, rng):
    return ds.assign_coords(a=ds.time[0].values + (ds.a * 1e9).astype("timedelta64[ns]")), kw


def parameter_on_time(ds, kw, rng):
    return ds.assign_coords(c=("time", np.arange(ds.sizes["time"], dtype=float))), {
        **kw,
        "params": ["a", "c"],
    }


def parameter_as_variable(ds, kw, rng):
    return ds.reset_coords("b"), kw


def cftime_times(ds, kw, rng):
    times = xr.date_range("2000-01-01", periods=ds.sizes["time"], freq="h", use_cftime=True)
    return ds.assign_coords(time=times), kw


def timedelta_times(ds, kw, rng):
    return ds.assign_coords(time=ds.time - ds.time[0]), kw


def string_times(ds, kw, rng):
    return ds.assign_coords(time=[str(t)[:19] for t in ds.time.values]), kw


def period_times(ds, kw, rng):
    periods = pd.period_range("2000-01-01", periods=ds.sizes["time"], freq="h")
    return ds.assign_coords(time=np.asarray(periods, dtype=object)), kw


def tz_times(ds, kw, rng):
    stamps = pd.date_range("2000-01-01", periods=ds.sizes["time"], freq="h", tz="UTC")
    return ds.assign_coords(time=np.asarray(stamps, dtype=object)), kw


def float_times(ds, kw, rng):
    return ds.assign_coords(time=("time", np.arange(ds.sizes["time"]) * 0.5, {"units": "h"})), kw


def complex_times(ds, kw, rng):
    return ds.assign_coords(time=np.arange(ds.sizes["time"]) + 0j), kw


def nat_time(ds, kw, rng):
    t = ds.time.values.copy()
    t[-1] = np.datetime64("NaT")
    return ds.assign_coords(time=t), kw


def nan_time(ds, kw, rng):
    t = np.arange(ds.sizes["time"], dtype=float)
    t[1] = np.nan
    return ds.assign_coords(time=t), kw


def duplicate_time(ds, kw, rng):
    t = ds.time.values.copy()
    t[1] = t[0]
    return ds.assign_coords(time=t), kw


def shuffled_time(ds, kw, rng):
    return ds.isel(time=rng.permutation(ds.sizes["time"])), kw


def uneven_time(ds, kw, rng):
    t = ds.time.values.copy()
    t[-1] = t[-1] + np.timedelta64(600, "s")
    return ds.assign_coords(time=t), kw


def no_time_coordinate(ds, kw, rng):
    return ds.drop_vars("time"), kw


def renamed_time(ds, kw, rng):
    return ds.rename(time="step"), kw


def duplicate_lat(ds, kw, rng):
    lat = ds.lat.values.copy()
    lat[1] = lat[0]
    return ds.assign_coords(lat=("lat", lat, ds.lat.attrs)), kw


def nan_lat(ds, kw, rng):
    lat = ds.lat.values.copy()
    lat[2] = np.nan
    return ds.assign_coords(lat=("lat", lat, ds.lat.attrs)), kw


def inf_lon(ds, kw, rng):
    lon = ds.lon.values.copy()
    lon[0] = -np.inf
    return ds.assign_coords(lon=("lon", lon, ds.lon.attrs)), kw


def string_lat(ds, kw, rng):
    return ds.assign_coords(lat=("lat", [f"{v:.1f}" for v in ds.lat.values])), kw


def shuffled_lon(ds, kw, rng):
    return ds.isel(lon=rng.permutation(ds.sizes["lon"])), kw


def no_spatial_coordinates(ds, kw, rng):
    return ds.drop_vars(["lat", "lon"]), kw


def scattered_points(ds, kw, rng):
    return ds.stack(point=("lat", "lon")).reset_index("point"), kw


def duplicate_points(ds, kw, rng):
    pts = ds.stack(point=("lat", "lon")).reset_index("point")
    return xr.concat([pts, pts.isel(point=[0])], "point"), kw


def chunked(ds, kw, rng):
    return ds.chunk({"run": 2}), {**kw, "chunk_runs": 2, "memory_budget": 0}


def data_array(ds, kw, rng):
    return ds.eta, kw


MUTATIONS: tuple[Mutation, ...] = (
    _value(np.nan),
    _value(np.inf),
    _value(-np.inf),
    _value(1e300),
    _value(-1e300),
    _value(1e38),
    nan_land,
    nan_gaps,
    all_nan_variable,
    all_nan_run,
    complex_variable,
    string_variable,
    bool_variable,
    int_variable,
    datetime_variable,
    float32_data,
    float32_overflow,
    tiny_variation,
    constant_variable,
    _extra(("run", "lat", "lon")),
    _extra(("run", "time")),
    _extra(("time", "lat", "lon")),
    _extra(("run",)),
    _extra(("lat", "lon")),
    _extra(()),
    extra_dim_variable,
    transposed_variable,
    explicit_variables,
    _call("variables_unknown", {"variables": ["eta", "nope"]}),
    _call("variables_empty", {"variables": []}),
    _call("variables_repeated", {"variables": ["eta", "eta"]}),
    _call("variables_string", {"variables": "eta"}),
    _isel("single_run", run=[0]),
    _isel("two_runs", run=[0, 1]),
    _isel("no_runs", run=[]),
    _isel("single_frame", time=[0]),
    _isel("no_frames", time=[]),
    _isel("no_points", lat=[]),
    _isel("one_latitude", lat=[2]),
    constant_parameter,
    repeated_runs,
    _param(np.nan),
    _param(np.inf),
    _param(1e308),
    _param(1j),
    string_parameter,
    datetime_parameter,
    parameter_on_time,
    parameter_as_variable,
    _call("params_string", {"params": "a"}),
    _call("params_repeated", {"params": ["a", "a"]}),
    _call("params_unknown", {"params": ["a", "zz"]}),
    _call("params_variable", {"params": ["a", "eta"]}),
    cftime_times,
    timedelta_times,
    string_times,
    period_times,
    tz_times,
    float_times,
    complex_times,
    nat_time,
    nan_time,
    duplicate_time,
    _isel("reversed_time", time=slice(None, None, -1)),
    shuffled_time,
    uneven_time,
    no_time_coordinate,
    renamed_time,
    duplicate_lat,
    nan_lat,
    inf_lon,
    string_lat,
    _isel("descending_lat", lat=slice(None, None, -1)),
    shuffled_lon,
    no_spatial_coordinates,
    scattered_points,
    duplicate_points,
    chunked,
    _call("run_dim_wrong", {"run_dim": "member"}),
    _call("run_dim_time", {"run_dim": "time"}),
    _call("chunk_runs_zero", {"chunk_runs": 0}),
    _call("memory_budget_string", {"memory_budget": "1GB"}),
    _call("missing_unknown", {"missing": "drop"}),
    data_array,
)
"""Every mutation; most make the archive or the call invalid, some keep it valid."""


def mutation_name(mutation: Mutation) -> str:
    return mutation.__name__


def apply(mutations, seed: int) -> tuple[xr.Dataset, Kwargs]:
    """The base archive and the default call, changed by each of ``mutations`` in turn."""
    rng = np.random.default_rng(seed)
    ds, kw = base_archive(seed=seed), {"params": ["a", "b"]}
    for mutate in mutations:
        if not isinstance(ds, xr.Dataset):
            break
        try:
            ds, kw = mutate(ds, kw, rng)
        except (TypeError, ValueError, KeyError, IndexError):
            continue  # this mutation does not apply to what the earlier ones made
    return ds, kw


def fit_outcome(ds, kw: Kwargs, fit: str) -> tuple[str, str]:
    """Fit ``ds`` with ``FITS[fit]`` and the keywords ``kw``: the outcome and its detail.

    Outcomes: ``"ok"`` (every data variable of ``ds`` is in the model, or the call chose
    ``variables=`` explicitly, and the forecast on the training parameters is finite),
    ``"XlevdaError"``, ``"silent_drop"`` (a data variable left out of the model without
    ``variables=``), ``"non_finite"`` (a forecast holds NaN or infinity), or the name
    of any other exception.
    """
    kw = dict(kw)
    params = kw.pop("params")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an unstable linear step, reported
            warnings.simplefilter("error", RuntimeWarning)  # overflow, a cast that loses
            warnings.simplefilter("error", np.exceptions.ComplexWarning)
            model = xlevda.LDNet.fit(ds, params, FITS[fit], progress=False, **kw)
    except XlevdaError as err:
        return "XlevdaError", str(err).splitlines()[0][:160]
    except Exception as err:  # the fuzzer's point: count every other exception
        return type(err).__name__, str(err).splitlines()[0][:160] if str(err) else ""
    wanted = set(map(str, ds.data_vars)) - set(model.schema.params)
    left_out = sorted(wanted - set(model.schema.variables))
    if left_out and "variables" not in kw:
        return "silent_drop", f"data variables {left_out} not in the model"
    first = {p: ds[p].values[0] for p in model.schema.params}
    where = None if model.schema.grid else ds.isel(run=0, time=0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = model.predict(first, where=where).to_array().values
    except Exception as err:
        return f"predict:{type(err).__name__}", str(err).splitlines()[0][:160]
    if not np.isfinite(values).all():
        return "non_finite", "forecast on run 0's parameters is not finite"
    return "ok", ""
