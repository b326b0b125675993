"""Mutations of a valid :func:`xlevda.assimilate` call, and how a mutated call ends.

Shared by ``tests/test_fuzz_assimilate.py`` (hypothesis draws the mutations) and
``benchmarks/reliability/fuzz_assimilate.py`` (seeded draws, counts by outcome).  A
:class:`Call` holds the arguments of one call, configs as keyword dicts so that
their construction is part of the call; each mutation changes one thing of a valid
call (observations, target, background, run options, method options, keyword
arguments) to something a user might pass: another type, NaN/inf, empty, other
dimensions, times of other kinds, huge or negative numbers, strings.

:func:`outcome` runs a call and names its end: ``"XlevdaError"``, ``"TypeError
(unknown keyword)"``, ``"success"``, ``"silent"`` (accepted, but not every
observation value given was used or reported dropped) or another exception's type.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

import xlevda
from xlevda.errors import XlevdaError
from xlevda.methods import LEVDA, Inflation
from xlevda.run import OutputChunks, RunOptions

__all__ = ["MUTATIONS", "Call", "base_call", "expected_count", "mutate", "outcome", "run_call"]


@dataclass
class Call:
    """The arguments of one ``assimilate`` call; configs as keyword dicts."""

    target: Any
    obs: Any
    run: dict = field(default_factory=lambda: {"members": 4, "dtype": "float64"})
    method: dict = field(default_factory=lambda: {"window": 2})
    inflation: dict = field(default_factory=dict)
    kwargs: dict = field(default_factory=dict)
    accessor: bool = True
    replace: dict = field(default_factory=dict)
    """Objects passed as ``surrogate``, ``method`` or ``run`` instead of the model and
    the configs built from the dicts."""


def base_call(truth: xr.Dataset) -> Call:
    """A valid call: ``eta`` and ``u`` observed at every third grid point, 4 members."""
    grid = truth[["eta", "u"]].isel(lat=slice(None, None, 3), lon=slice(None, None, 3))
    grid = grid.assign(eta_std=xr.full_like(grid.eta, 0.05))
    obs = grid.stack(obs=("time", "lat", "lon")).reset_index("obs")
    obs = obs.drop_vars([c for c in ("a", "b", "run") if c in obs.coords])
    return Call(
        target=truth.drop_vars(["eta", "u"]).drop_vars(["a", "b", "run"], errors="ignore"),
        obs=obs,
        kwargs={"errors": {"u": 0.1}},
    )


def _assign(obs: xr.Dataset, name: str, values: Any, dims: tuple | None = None) -> xr.Dataset:
    """``obs`` with variable or coordinate ``name`` replaced by ``values`` on ``dims``."""
    dims = obs[name].dims if dims is None else dims
    if name in obs.coords:
        return obs.assign_coords({name: (dims, values, obs[name].attrs)})
    return obs.assign({name: (dims, values, obs[name].attrs)})


def _with_values(name: str, make: Callable[[np.ndarray, np.random.Generator], Any]):
    """A mutation setting observation variable/coordinate ``name`` to ``make(values, rng)``."""

    def mutation(call: Call, rng: np.random.Generator) -> None:
        call.obs = _assign(call.obs, name, make(np.asarray(call.obs[name].values), rng))

    return mutation


def _some(value: Any) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """A copy of the values with a random few entries set to ``value`` (as object if needed)."""

    def make(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        kind = np.asarray([value]).dtype
        out = values.astype(object if kind.kind not in "fcM" else np.result_type(values, kind))
        idx = rng.choice(len(out), size=rng.integers(1, 4), replace=False)
        out[idx] = value
        return out

    return make


def _set(key: str, where: str, value: Any):
    """A mutation setting ``call.<where>[key] = value`` (run, method, inflation, kwargs)."""

    def mutation(call: Call, rng: np.random.Generator) -> None:
        getattr(call, where)[key] = value

    return mutation


def _obs(transform: Callable[[xr.Dataset], Any]):
    def mutation(call: Call, rng: np.random.Generator) -> None:
        call.obs = transform(call.obs)

    return mutation


def _target(transform: Callable[[xr.Dataset], Any]):
    def mutation(call: Call, rng: np.random.Generator) -> None:
        call.target = transform(call.target)

    return mutation


def _times(convert: Callable[[np.ndarray], Any], where: str = "obs"):
    """A mutation converting the observation (or target) times with ``convert``."""

    def mutation(call: Call, rng: np.random.Generator) -> None:
        obj = getattr(call, where)
        setattr(call, where, obj.assign_coords(time=(obj.time.dims, convert(obj.time.values))))

    return mutation


def _cftime(t: np.ndarray) -> np.ndarray:
    import cftime

    stamps = pd.to_datetime(t)
    return np.array(
        [cftime.DatetimeNoLeap(s.year, s.month, s.day, s.hour, s.minute) for s in stamps]
    )


def _on_other_dim(name: str):
    """A mutation putting observation variable ``name`` on a dimension of its own."""

    def mutation(call: Call, rng: np.random.Generator) -> None:
        values = np.asarray(call.obs[name].values)[: rng.integers(1, 5)]
        call.obs = call.obs.drop_vars(name).assign({name: ("sensor", values)})

    return mutation


def _replace(name: str, value: Any):
    """A mutation passing ``value`` as the surrogate, the method or the run options."""

    def mutation(call: Call, rng: np.random.Generator) -> None:
        call.replace[name] = value

    return mutation


def _field_background_of(kind: str):
    """A field background whose values are of another ``kind`` (complex, strings, inf)."""

    def mutation(call: Call, rng: np.random.Generator) -> None:
        _field_background(call, rng)
        bg = call.kwargs["background"]
        values = {"complex": bg.eta.values + 1j, "strings": bg.eta.values.astype(str)}
        values["inf"] = np.where(np.isnan(bg.eta.values), np.inf, bg.eta.values)
        call.kwargs["background"] = bg.assign(eta=(bg.eta.dims, values[kind]))

    return mutation


def _background(value: Any):
    return _set("background", "kwargs", value)


def _bg_params(a: Any, b: Any):
    return _background({"a": a, "b": b})


def _scattered_target(ds: xr.Dataset) -> xr.Dataset:
    pts = ds.stack(point=("lat", "lon")).reset_index("point")
    return pts.isel(point=slice(0, 5))


def _float32_grid(ds: xr.Dataset) -> xr.Dataset:
    return ds.assign_coords(lat=ds.lat.astype("float32"), lon=ds.lon.astype("float32"))


def _gridded_obs(obs: xr.Dataset) -> xr.Dataset:
    return obs.set_index(obs=("time", "lat", "lon")).unstack("obs")


def _scalar_eta(obs: xr.Dataset) -> xr.Dataset:
    return obs.assign(eta=xr.DataArray(1.0))


def _shuffled(obs: xr.Dataset) -> xr.Dataset:
    return obs.isel(obs=np.random.default_rng(1).permutation(obs.sizes["obs"]))


def _field_background(call: Call, rng: np.random.Generator) -> None:
    k = call.run.get("members", 4)
    frame = call.target.isel(time=0)
    shape = (k, frame.sizes["lat"], frame.sizes["lon"])
    values = rng.normal(size=shape)
    values[rng.random(shape) < 0.5] = np.nan
    call.kwargs["background"] = frame.assign(eta=(("member", "lat", "lon"), values))


def _two_cases(obs: xr.Dataset) -> xr.Dataset:
    return xr.concat([obs, obs.isel(obs=slice(None, None, -1))], "case")


def _uneven_cases(obs: xr.Dataset) -> xr.Dataset:
    """Two cases, the second with 30 observations padded (NaN, NaT) to the first's 54."""
    return xr.concat([obs, obs.isel(obs=slice(0, 30)).pad(obs=(0, 24))], "case")


def _u_std(call: Call, rng: np.random.Generator) -> None:
    call.obs = call.obs.assign(u_std=xr.full_like(call.obs.u, 0.1))
    call.kwargs.pop("errors", None)


_HOUR = np.timedelta64(3600, "s")
MUTATIONS: dict[str, Callable[[Call, np.random.Generator], None]] = {
    # observations: types, emptiness
    "obs None": _obs(lambda o: None),
    "obs DataArray": _obs(lambda o: o.eta),
    "obs ndarray": _obs(lambda o: o.eta.values),
    "obs dict": _obs(lambda o: {"eta": o.eta.values}),
    "obs empty Dataset": _obs(lambda o: xr.Dataset()),
    "obs zero length": _obs(lambda o: o.isel(obs=slice(0, 0))),
    "obs one value": _obs(lambda o: o.isel(obs=[3])),
    "obs gridded": _obs(_gridded_obs),
    "obs shuffled": _obs(_shuffled),
    "obs only std": _obs(lambda o: o[["eta_std"]]),
    "obs two cases": _obs(_two_cases),
    "obs uneven cases": _obs(_uneven_cases),
    "obs dask": _obs(lambda o: o.chunk({"obs": 7})),
    "obs station names": _obs(
        lambda o: o.assign_coords(station=("obs", [f"s{i}" for i in range(o.sizes["obs"])]))
    ),
    "obs float32 values": _obs(lambda o: o.astype("float32")),
    "u_std variable": _u_std,
    # observation values
    "eta some NaN": _with_values("eta", _some(np.nan)),
    "eta all NaN": _with_values("eta", lambda v, r: np.full(v.shape, np.nan)),
    "eta +inf": _with_values("eta", _some(np.inf)),
    "eta -inf": _with_values("eta", _some(-np.inf)),
    "eta None": _with_values("eta", _some(None)),
    "eta complex": _with_values("eta", lambda v, r: v + 1j),
    "eta strings": _with_values("eta", lambda v, r: v.astype(str)),
    "eta ints": _with_values("eta", lambda v, r: (v * 10).astype(int)),
    "eta bools": _with_values("eta", lambda v, r: v > 0.1),
    "eta 1e300": _with_values("eta", _some(1e300)),
    "eta on other dim": _on_other_dim("eta"),
    "eta scalar": _obs(_scalar_eta),
    "unknown variable": _obs(lambda o: o.assign(zeta=o.eta)),
    "eta_std NaN": _with_values("eta_std", _some(np.nan)),
    "eta_std zero": _with_values("eta_std", _some(0.0)),
    "eta_std negative": _with_values("eta_std", lambda v, r: -v),
    "eta_std inf": _with_values("eta_std", _some(np.inf)),
    "eta_std strings": _with_values("eta_std", lambda v, r: v.astype(str)),
    "eta_std on other dim": _on_other_dim("eta_std"),
    "eta_std scalar": _obs(lambda o: o.assign(eta_std=xr.DataArray(0.05))),
    "eta_std complex": _with_values("eta_std", lambda v, r: v + 0j),
    # observation positions
    "lat NaN": _with_values("lat", _some(np.nan)),
    "lon inf": _with_values("lon", _some(np.inf)),
    "lat None": _with_values("lat", _some(None)),
    "lat strings": _with_values("lat", lambda v, r: v.astype(str)),
    "lat outside": _with_values("lat", _some(80.0)),
    "lon 0..360": _with_values("lon", lambda v, r: v + 360.0),
    "lat float32": _with_values("lat", lambda v, r: v.astype(np.float32)),
    "lat complex": _with_values("lat", lambda v, r: v + 0j),
    "no lat": _obs(lambda o: o.drop_vars("lat")),
    # observation times
    "no time": _obs(lambda o: o.drop_vars("time")),
    "time NaT": _with_values("time", _some(np.datetime64("NaT", "ns"))),
    "time cftime": _times(_cftime),
    "time Period": _times(lambda t: pd.PeriodIndex(pd.to_datetime(t), freq="h").astype(object)),
    "time ISO strings": _times(lambda t: np.datetime_as_string(t, "s")),
    "time tz-aware": _times(lambda t: pd.to_datetime(t).tz_localize("UTC").astype(object)),
    "time numbers": _times(lambda t: (t - t[0]) / _HOUR),
    "time seconds resolution": _times(lambda t: t.astype("datetime64[s]")),
    "time before origin": _times(lambda t: t - 10 * _HOUR),
    "time past target": _times(lambda t: t + 100 * _HOUR),
    "time past horizon": _times(lambda t: t + 7 * _HOUR),
    "time between frames": _times(lambda t: t + np.timedelta64(20, "m")),
    # target
    "target None": _target(lambda t: None),
    "target ndarray": _target(lambda t: np.zeros((3, 3))),
    "target DataArray": _target(lambda t: xr.DataArray(np.zeros(t.lat.shape), coords=t.coords)),
    "target empty time": _target(lambda t: t.isel(time=slice(0, 0))),
    "target empty lon": _target(lambda t: t.isel(lon=slice(0, 0))),
    "target one time": _target(lambda t: t.isel(time=[2])),
    "target reversed time": _target(lambda t: t.isel(time=slice(None, None, -1))),
    "target duplicate time": _target(lambda t: t.isel(time=[0, 0, 1])),
    "target NaT": _target(
        lambda t: _assign(
            t, "time", _some(np.datetime64("NaT"))(t.time.values, np.random.default_rng(0))
        )
    ),
    "target lon NaN": _target(
        lambda t: _assign(t, "lon", _some(np.nan)(t.lon.values, np.random.default_rng(0)))
    ),
    "target lat outside": _target(lambda t: t.assign_coords(lat=t.lat + 10)),
    "target float32 grid": _target(_float32_grid),
    "target scattered": _target(_scattered_target),
    "target with data variables": lambda call, rng: setattr(
        call,
        "target",
        call.obs.isel(obs=0, drop=True).expand_dims(
            time=call.target.time, lat=call.target.lat, lon=call.target.lon
        ),
    ),
    "target DataArray on grid": _target(
        lambda t: xr.DataArray(
            np.zeros((t.sizes["time"], t.sizes["lat"], t.sizes["lon"])),
            coords=t.coords,
            dims=("time", "lat", "lon"),
        )
    ),
    "target past horizon": _times(lambda t: t + 3 * _HOUR, "target"),
    "target cftime": _times(_cftime, "target"),
    "target tz-aware": _times(
        lambda t: pd.to_datetime(t).tz_localize("UTC").astype(object), "target"
    ),
    "target ISO strings": _times(lambda t: np.datetime_as_string(t, "s"), "target"),
    "target numbers": _times(lambda t: (t - t[0]) / _HOUR, "target"),
    "target no time": _target(lambda t: t.drop_vars("time")),
    "target before origin": _times(lambda t: t - 2 * _HOUR, "target"),
    # background
    "background strings": _bg_params(["x"] * 4, ["y"] * 4),
    "background wrong length": _bg_params([0.0] * 3, [1.0] * 3),
    "background NaN": _bg_params([np.nan] * 4, [1.0] * 4),
    "background outside": _bg_params([9.0] * 4, [1.0] * 4),
    "background number": _background(3.0),
    "background string": _background("prior"),
    "background 2-D": _bg_params(np.zeros((4, 1)), np.ones((4, 1))),
    "background complex": _bg_params([0j] * 4, [1.0 + 0j] * 4),
    "background fields": _field_background,
    "background missing param": _background({"a": [0.0] * 4}),
    "background fields complex": _field_background_of("complex"),
    "background fields strings": _field_background_of("strings"),
    "background fields inf": _field_background_of("inf"),
    "background fields on other dims": lambda call, rng: call.kwargs.update(
        background=call.target.isel(time=0).assign(eta=(("sensor",), np.zeros(3)))
    ),
    # surrogate and method objects
    "surrogate None": _replace("surrogate", None),
    "surrogate string": _replace("surrogate", "ldnet.pt"),
    "surrogate dict": _replace("surrogate", {"latent_dim": 4}),
    "method string": _replace("method", "LEVDA"),
    "method class": _replace("method", LEVDA),
    "method None": _replace("method", None),
    "run dict": _replace("run", {"members": 4}),
    "run None": _replace("run", None),
    # run options
    "members 1": _set("members", "run", 1),
    "members 10**6": _set("members", "run", 10**6),
    "members 10**9": _set("members", "run", 10**9),
    "members 2.5": _set("members", "run", 2.5),
    "members '4'": _set("members", "run", "4"),
    "members True": _set("members", "run", True),
    "members numpy": _set("members", "run", np.int64(3)),
    "seed -1": _set("seed", "run", -1),
    "seed 1.5": _set("seed", "run", 1.5),
    "seed 2**70": _set("seed", "run", 2**70),
    "seed '0'": _set("seed", "run", "0"),
    "seed numpy": _set("seed", "run", np.int64(7)),
    "dtype float16": _set("dtype", "run", "float16"),
    "dtype numpy": _set("dtype", "run", np.float32),
    "device cuda": _set("device", "run", "cuda"),
    "device tpu": _set("device", "run", "tpu"),
    "device meta": _set("device", "run", "meta"),
    "device cpu:0": _set("device", "run", "cpu:0"),
    "device mps": _set("device", "run", "mps"),
    "device int": _set("device", "run", 0),
    "member_dim lat": _set("member_dim", "run", "lat"),
    "member_dim time": _set("member_dim", "run", "time"),
    "member_dim empty": _set("member_dim", "run", ""),
    "member_dim None": _set("member_dim", "run", None),
    "member_dim window": _set("member_dim", "run", "window"),
    "member_dim parameter": _set("member_dim", "run", "a"),
    "member_dim case": _set("member_dim", "run", "case"),
    "member_dim ensemble": _set("member_dim", "run", "ensemble"),
    "chunks auto": _set("chunks", "run", "auto"),
    "chunks tuple": _set("chunks", "run", (1, 1)),
    "chunks small": _set("chunks", "run", OutputChunks(time=1, member=1)),
    "outside drop": _set("outside", "run", "drop"),
    "outside ignore": _set("outside", "run", "ignore"),
    # method options
    "window '1'": _set("window", "method", "1"),
    "window 2.5": _set("window", "method", 2.5),
    "window 0": _set("window", "method", 0),
    "window 10**6": _set("window", "method", 10**6),
    "window '2h'": _set("window", "method", "2h"),
    "window_stride '1'": _set("window_stride", "method", "1"),
    "window_stride 2.5": _set("window_stride", "method", 2.5),
    "window_stride 1": _set("window_stride", "method", 1),
    "window '1h' stride '30min'": lambda call, rng: call.method.update(
        window="1h", window_stride="30min"
    ),
    "window 'P1D'": _set("window", "method", "P1D"),
    "window_stride -1": _set("window_stride", "method", -1),
    "inflation 1e300": _set("multiplicative", "inflation", 1e300),
    "inflation 1e10": _set("multiplicative", "inflation", 1e10),
    "inflation additive 1e300": _set("additive", "inflation", 1e300),
    "inflation NaN": _set("multiplicative", "inflation", np.nan),
    "inflation string": _set("multiplicative", "inflation", "1.1"),
    "inflation 0.5": _set("multiplicative", "inflation", 0.5),
    # keyword arguments
    "errors 'u'": _set("errors", "kwargs", "u"),
    "errors string value": _set("errors", "kwargs", {"u": "0.1"}),
    "errors negative": _set("errors", "kwargs", {"u": -0.1}),
    "errors NaN": _set("errors", "kwargs", {"u": np.nan}),
    "errors inf": _set("errors", "kwargs", {"u": np.inf}),
    "errors list": _set("errors", "kwargs", {"u": [0.1, 0.2]}),
    "errors None": _set("errors", "kwargs", None),
    "errors unknown variable": _set("errors", "kwargs", {"u": 0.1, "zeta": 1.0}),
    "errors numpy": _set("errors", "kwargs", {"u": np.float32(0.1)}),
    "errors and eta_std": _set("errors", "kwargs", {"u": 0.1, "eta": 0.2}),
    "variables unknown": _set("variables", "kwargs", ["zeta"]),
    "variables empty": _set("variables", "kwargs", []),
    "variables string": _set("variables", "kwargs", "eta"),
    "variables std": _set("variables", "kwargs", ["eta_std"]),
    "variables duplicate": _set("variables", "kwargs", ["eta", "eta"]),
    "variables eta": _set("variables", "kwargs", ["eta"]),
    "case_dim None": _set("case_dim", "kwargs", None),
    "case_dim obs": _set("case_dim", "kwargs", "obs"),
    "case_dim int": _set("case_dim", "kwargs", 3),
    "case_dim list": _set("case_dim", "kwargs", ["case"]),
    "variables ndarray": _set("variables", "kwargs", np.array(["eta"])),
    "variables non-string": _set("variables", "kwargs", [1]),
    "unknown keyword": _set("members", "kwargs", 4),
    "function not accessor": lambda call, rng: setattr(call, "accessor", False),
}


def mutate(call: Call, names: list[str], rng: np.random.Generator) -> Call:
    """A copy of ``call`` with the mutations ``names`` applied in order."""
    call = dataclasses.replace(
        call,
        run=dict(call.run),
        method=dict(call.method),
        inflation=dict(call.inflation),
        kwargs=dict(call.kwargs),
        replace=dict(call.replace),
    )
    for name in names:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                MUTATIONS[name](call, rng)
        except Exception:  # not applicable after an earlier mutation
            continue
    return call


def run_call(call: Call, model: Any) -> xr.Dataset:
    """Run ``call`` on ``model`` and compute its output (decoding errors surface here)."""
    run = call.replace["run"] if "run" in call.replace else RunOptions(**call.run)
    model = call.replace.get("surrogate", model)
    if "method" in call.replace:
        method = call.replace["method"]
    else:
        method = LEVDA(inflation=Inflation(**call.inflation), **call.method)
    if call.accessor and isinstance(call.target, xr.Dataset | xr.DataArray):
        out = call.target.levda.assimilate(call.obs, model, method, run=run, **call.kwargs)
    else:
        out = xlevda.assimilate(call.target, call.obs, model, method, run=run, **call.kwargs)
    return out.compute()


def expected_count(call: Call) -> int | None:
    """Observation values given: not NaN, of the observed variables in ``call.obs``.

    ``None`` where the call gives nothing countable (no Dataset, values that are not
    real numbers): such a call must not be accepted.  Infinite values count as given.
    """
    obs, names = call.obs, call.kwargs.get("variables")
    if not isinstance(obs, xr.Dataset) or isinstance(names, str):
        return None
    if names is None:
        names = [v for v in map(str, obs.data_vars) if not v.endswith("_std")]
    arrays = [np.asarray(obs[v].values) for v in names if v in obs.data_vars]
    if len(arrays) != len(names) or any(a.dtype.kind not in "iuf" for a in arrays):
        return None
    return int(sum((~np.isnan(a.astype(float))).sum() for a in arrays))


_UNKNOWN_KEYWORD = re.compile(r"unexpected keyword argument")


def outcome(call: Call, model: Any) -> tuple[str, str]:
    """How ``call`` ends on ``model``: ``(kind, detail)``.

    ``kind`` is ``"XlevdaError"``, ``"TypeError (unknown keyword)"``, ``"success"``,
    ``"silent"`` (accepted while ``n_observations_used + n_observations_dropped``
    differs from the finite observation values given) or the name of another
    exception's type; ``detail`` is the message.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = run_call(call, model)
    except XlevdaError as err:
        return "XlevdaError", str(err)
    except TypeError as err:
        if _UNKNOWN_KEYWORD.search(str(err)):
            return "TypeError (unknown keyword)", str(err)
        return "TypeError", str(err)
    except Exception as err:  # the fuzzer counts every kind
        return type(err).__name__, str(err)[:300]
    expected = expected_count(call)
    used, in_windows = int(out.attrs["n_observations_used"]), int(out.window_n_obs.sum())
    overlapping = call.method.get("window_stride") not in (None, call.method.get("window"))
    if in_windows < used or (in_windows != used and not overlapping):
        return "silent", f"{used} observation values used, {in_windows} in windows"
    used += int(out.attrs["n_observations_dropped"])
    if expected != used:
        return "silent", f"{used} observation values used or dropped of {expected} given"
    return "success", ""
