"""The assimilation accessor end to end on a tiny surrogate."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import xarray as xr

from xlevda._convert import to_points
from xlevda.core.levda import solve_window
from xlevda.core.optim import GaussNewtonConfig
from xlevda.cycle import Cycle
from xlevda.decode import decode_block
from xlevda.errors import ConfigError, CoordinateError, ObservationError, VariableError
from xlevda.methods import LEVDA, Inflation, ModelErrorTerm
from xlevda.model_error import model_error_std
from xlevda.run import OutputChunks, RunOptions
from xlevda.surrogates.schema import Affine


def grid_obs(truth, std=0.05):
    obs = truth[["eta"]].isel(lat=slice(None, None, 3), lon=slice(None, None, 3))
    return obs.assign(eta_std=xr.full_like(obs.eta, std))


def point_obs(truth, std=0.05):
    obs = grid_obs(truth, std).stack(obs=("time", "lat", "lon")).reset_index("obs")
    return obs.drop_vars([c for c in ("a", "b", "run") if c in obs.coords])


def target(truth):
    return truth.drop_vars(["eta", "u"])


LEV = LEVDA(window=2, model_error=ModelErrorTerm())  # the white draws these tests check
RUN = RunOptions(members=6, dtype="float64")


def test_output_layout(model, truth):
    an = target(truth).levda.assimilate(point_obs(truth), model, LEV, run=RUN)
    assert an.eta.dims == ("time", "member", "lat", "lon")
    assert an.eta.chunks is not None  # decoded lazily
    assert an.member.attrs["standard_name"] == "realization"
    assert an.a.dims == ("time", "member") and an.b.dims == ("time", "member")
    assert an.latent_state.shape == (6, 6, 4)
    assert an.window_index.values.tolist() == [0, 0, 1, 1, 2, 2]
    assert an.window_anchor_step.values.tolist() == [-1, 2, 4]
    assert an.attrs["Conventions"] == "CF-1.11"
    assert json.loads(an.attrs["run_options"])["members"] == 6
    assert len(an.attrs["surrogate_sha256"]) == 64
    assert an.attrs["n_observations_used"] == an.window_n_obs.sum()
    assert not an.window_failed.any()
    assert an.eta.dtype == an.latent_state.dtype == np.float64  # config.dtype


def test_gauss_newton_jacobians_agree(model, truth, monkeypatch):
    """Pointwise and forward-mode Jacobians are the same derivative: the same analysis."""
    gn = dataclasses.replace(LEV, optimizer=GaussNewtonConfig(tol_cost=0.0, tol_grad=1e-10))
    fwd = target(truth).levda.assimilate(point_obs(truth), model, gn, run=RUN)
    used = []

    def recording(*args, optimizer, **kwargs):
        used.append(optimizer.jacobian)
        return solve_window(*args, optimizer=optimizer, **kwargs)

    monkeypatch.setattr("xlevda.methods.levda.solve_window", recording)
    pointwise = dataclasses.replace(gn.optimizer, jacobian="pointwise")
    pw = target(truth).levda.assimilate(
        point_obs(truth), model, dataclasses.replace(gn, optimizer=pointwise), run=RUN
    )
    assert used and set(used) == {"pointwise"}
    np.testing.assert_allclose(pw.latent_state.values, fwd.latent_state.values, atol=1e-6)
    np.testing.assert_allclose(pw.a.values, fwd.a.values, atol=1e-6)
    assert json.loads(pw.attrs["method_config"])["optimizer"]["jacobian"] == "pointwise"


def test_output_points_prepared_once(model, truth, monkeypatch):
    """Every (time, member) block and variable decodes with one shared preparation of the
    output points, and the blocks equal the surrogate decoded directly."""
    run = dataclasses.replace(RUN, chunks=OutputChunks(time=2, member=4))
    method = dataclasses.replace(LEV, model_error=None)
    an = target(truth).levda.assimilate(point_obs(truth), model, method, run=run)
    calls = []
    prepare = type(model).prepare_points
    monkeypatch.setattr(
        type(model), "prepare_points", lambda self, p: calls.append(p.shape) or prepare(self, p)
    )
    fields = an[["eta", "u"]].compute()
    assert len(an.eta.data.chunks[0]) * len(an.eta.data.chunks[1]) == 6 and calls == [(72, 2)]
    points, _ = to_points(target(truth), model.schema)
    s = torch.as_tensor(an.latent_state.values)
    direct = copy.deepcopy(model).double().decode(s, torch.as_tensor(points))
    norm = model.schema.output_norm
    for c, name in enumerate(model.schema.variables):
        expected = direct[..., c].detach().numpy() * norm.scale[c] + norm.offset[c]
        np.testing.assert_allclose(fields[name].values.reshape(6, 6, -1), expected, rtol=1e-12)


def test_model_error_term(model, truth):
    """Members' fields are the decoded states plus independent N(0, v) draws per point, v the
    window's unexplained variance, the same for any chunking; u, never observed, gets none."""
    obs, tgt = point_obs(truth), target(truth)
    plain = tgt.levda.assimilate(obs, model, dataclasses.replace(LEV, model_error=None), run=RUN)
    dressed = tgt.levda.assimilate(obs, model, LEV, run=RUN)
    chunks = OutputChunks(time=4, member=1)
    rechunked = tgt.levda.assimilate(obs, model, LEV, run=dataclasses.replace(RUN, chunks=chunks))
    # equal up to round-off: two runs of one analysis may differ in the last bits
    xr.testing.assert_allclose(dressed.eta.compute(), rechunked.eta.compute(), rtol=0, atol=1e-9)
    xr.testing.assert_allclose(plain.latent_state, dressed.latent_state, rtol=0, atol=1e-9)
    std = dressed.eta_model_error_std
    assert std.dims == ("time",) and (std > 0).all() and std.attrs["units"] == "m"
    assert "(added to each member)" in std.attrs["long_name"]
    assert "(not added)" in plain.eta_model_error_std.attrs["long_name"]
    np.testing.assert_allclose(plain.eta_model_error_std, std, rtol=1e-9)
    noise = (dressed.eta - plain.eta).compute()
    ratio = noise.std(["member", "lat", "lon"]) / std  # 6 members x 72 points per time
    assert (abs(ratio - 1) < 0.25).all(), ratio.values
    assert abs(float(noise.mean())) < 4 * float(std.max()) / (6 * 6 * 72) ** 0.5
    xr.testing.assert_allclose(plain.u.compute(), dressed.u.compute(), rtol=0, atol=1e-9)
    assert (dressed.u_model_error_std == 0).all()
    assert dressed.eta.attrs["ancillary_variables"] == "eta_model_error_std"
    assert json.loads(dressed.attrs["method_config"])["model_error"] == {
        "type": "ModelErrorTerm",
        "pooled": True,
        "level": "clipped",
    }
    assert json.loads(plain.attrs["method_config"])["model_error"] is None


def test_model_error_pooled_over_windows(model, truth):
    """By default one variance per variable from the windows that agree (levels weighted by
    their counts; a window more than 5 Gaussian standard errors, sqrt(2 leverage) (sigma^2 +
    pool), above the pool keeps its own, and the pool is recomputed without it), the same at
    every other output time; with ``ModelErrorTerm(pooled=False)`` one per window, forward-filled
    over unobserved windows."""
    excess = np.array([[0.5, np.nan], [-0.2, np.nan], [np.nan, np.nan], [0.1, 2.0], [9.0, 1.0]])
    count = np.array([[10, 0], [30, 0], [0, 0], [20, 5], [10, 5]])
    noise = np.ones((5, 2))
    leverage = np.where(count > 0, 1 / np.maximum(count, 1), np.nan)
    cycle = Cycle(
        anchors=np.arange(5),
        z_analysis=np.zeros((5, 2, 3)),
        diagnostics={},
        n_obs=count.sum(1),
        excess=excess,
        excess_count=count,
        excess_noise=noise,
        excess_leverage=leverage,
    )
    which = np.array([0, 0, 1, 2, 3, 4])
    pooled = model_error_std(cycle, which, ModelErrorTerm())
    # channel 0: the pool of all, 1.3, is exceeded by window 4 (9.0) by more than
    # 5 sqrt(2 / 10) (1 + 1.3) = 5.1; without it the pool is 0.0167 and no other window stands out
    pool0 = (0.5 * 10 - 0.2 * 30 + 0.1 * 20) / 60
    np.testing.assert_allclose(pooled[:, 0], np.sqrt([pool0] * 5 + [9.0]), rtol=1e-12)
    # channel 1: 2.0 and 1.0 (5 values each) agree within their errors: the pool is 1.5
    np.testing.assert_allclose(pooled[:, 1], np.sqrt(1.5), rtol=1e-12)
    per_window = model_error_std(cycle, which, ModelErrorTerm(pooled=False))
    np.testing.assert_allclose(
        per_window[:, 0], np.sqrt([0.5, 0.5, 0.0, 0.0, 0.1, 9.0]), rtol=1e-12
    )
    np.testing.assert_allclose(per_window[:, 1], np.sqrt([0, 0, 0, 0, 2.0, 1.0]), rtol=1e-12)
    # a window barely above the pool stays in it: 0.9 with 10 values and noise 1 is within
    # 5 sqrt(2 / 10) (1 + pool) of a pool near 0.14
    close = dataclasses.replace(cycle, excess=np.where(np.arange(5)[:, None] == 4, 0.9, excess))
    got = model_error_std(close, which, ModelErrorTerm())[:, 0]
    pool_close = (0.5 * 10 - 0.2 * 30 + 0.1 * 20 + 0.9 * 10) / 70
    np.testing.assert_allclose(got, np.sqrt(pool_close), rtol=1e-12)
    # through the accessor: constant over time when pooled, and not when not
    obs, tgt = point_obs(truth), target(truth)
    a = tgt.levda.assimilate(obs, model, LEV, run=RUN).eta_model_error_std
    b = tgt.levda.assimilate(
        obs, model, dataclasses.replace(LEV, model_error=ModelErrorTerm(pooled=False)), run=RUN
    ).eta_model_error_std
    # pooled: one value broadcast to every time (bit-identical); per window: values differ
    # by far more than round-off
    assert (a.values == a.values[0]).all()
    assert float(b.std()) > 1e-6 * float(b.mean())
    assert (
        "pooled over the windows" in a.attrs["long_name"] and "the window's" in b.attrs["long_name"]
    )
    with pytest.raises(ConfigError, match=r"ModelErrorTerm\.pooled=1: expected a bool"):
        ModelErrorTerm(pooled=1)


def test_decode_block_leaves_shared_tensors_alone():
    """A surrogate whose decoded channel is a view (here: of the prepared points, expanded
    over the block) is copied before the block is denormalized and dressed in place."""

    class Alias:
        schema = SimpleNamespace(output_norm=Affine((1.0,), (10.0,)))

        def decode_prepared(self, s, prepared):
            return prepared.expand(*s.shape[:-1], *prepared.shape)

    prepared = torch.arange(5.0).unsqueeze(-1)  # (P, C = 1)
    before = prepared.clone()
    info = {0: {"array-location": [(0, 2), (0, 3), (0, 4)]}}
    args = (np.zeros((2, 3, 4)), Alias(), prepared, torch.float32, 0, np.full(2, 0.5), 7)
    first = decode_block(*args, block_info=info)
    second = decode_block(*args, block_info=info)
    assert torch.equal(prepared, before)
    np.testing.assert_array_equal(first, second)
    plain = decode_block(*args[:5], None, 7)
    np.testing.assert_allclose(plain, np.broadcast_to(1.0 + 10.0 * np.arange(5.0), (2, 3, 5)))
    assert 0 < np.std(first - plain) < 10


def test_output_dtype_follows_config(model, truth):
    run = dataclasses.replace(RUN, dtype="float32")
    an = target(truth).levda.assimilate(point_obs(truth), model, LEV, run=run)
    assert an.eta.dtype == an.eta.compute().dtype == an.latent_state.dtype == np.float32


def test_netcdf_round_trip(model, truth, tmp_path):
    an = target(truth).levda.assimilate(point_obs(truth), model, LEV, run=RUN)
    an.to_netcdf(tmp_path / "a.nc")
    back = xr.open_dataset(tmp_path / "a.nc")
    xr.testing.assert_allclose(back.eta.load(), an.eta.compute(), rtol=1e-6)
    np.testing.assert_array_equal(back.a.values, an.a.values)
    assert back.attrs["method_config"] == an.attrs["method_config"]
    assert back.attrs["run_options"] == an.attrs["run_options"]


def test_zarr_streams(model, truth, tmp_path):
    an = target(truth).levda.assimilate(point_obs(truth), model, LEV, run=RUN)
    an.to_zarr(tmp_path / "a.zarr")
    back = xr.open_zarr(tmp_path / "a.zarr")
    xr.testing.assert_allclose(back.u.load(), an.u.compute(), rtol=1e-6)


def test_gridded_obs_equal_point_obs(model, truth):
    a = target(truth).levda.assimilate(grid_obs(truth), model, LEV, run=RUN)
    b = target(truth).levda.assimilate(point_obs(truth), model, LEV, run=RUN)
    np.testing.assert_allclose(a.latent_state, b.latent_state, rtol=1e-10, atol=1e-12)


def test_duplicate_observation_equals_half_variance(model, truth):
    obs = point_obs(truth)
    doubled = xr.concat([obs, obs], "obs")
    a = target(truth).levda.assimilate(doubled, model, LEV, run=RUN)
    b = target(truth).levda.assimilate(point_obs(truth, std=0.05 / np.sqrt(2)), model, LEV, run=RUN)
    np.testing.assert_allclose(a.latent_state, b.latent_state, rtol=1e-8, atol=1e-10)


def test_analysis_on_scattered_points(model, truth):
    pts = xr.Dataset(
        coords={
            "time": truth.time,
            "lat": ("site", [41.0, 42.5]),
            "lon": ("site", [-158.0, -156.0]),
        }
    )
    an = pts.levda.assimilate(point_obs(truth), model, LEV, run=RUN)
    assert an.eta.dims == ("time", "member", "site")
    grid = target(truth).levda.assimilate(point_obs(truth), model, LEV, run=RUN)
    np.testing.assert_allclose(an.latent_state, grid.latent_state)


def test_outside_drop_reports_count(model, truth):
    obs = point_obs(truth)
    lat = obs.lat.values.copy()
    lat[:3] = 60.0
    far = obs.assign_coords(lat=("obs", lat))
    with pytest.raises(ObservationError, match="outside the surrogate's domain"):
        target(truth).levda.assimilate(far, model, LEV, run=RUN)
    run = RunOptions(members=6, outside="drop")
    an = target(truth).levda.assimilate(far, model, LEVDA(window=2), run=run)
    assert an.attrs["n_observations_dropped"] == 3


def test_background_parameters(model, truth):
    bg = {"a": np.linspace(-0.4, 0.4, 6), "b": np.full(6, 1.0)}
    an = target(truth).levda.assimilate(point_obs(truth), model, LEV, run=RUN, background=bg)
    assert an.a.shape == (6, 6)
    with pytest.raises(ValueError, match=r"background parameter 'a' has shape \(3,\)"):
        target(truth).levda.assimilate(
            point_obs(truth), model, LEV, run=RUN, background={**bg, "a": [1, 2, 3]}
        )
    with pytest.raises(VariableError, match=r"'b' = 9 .and 0 more. lies outside the surrogate's"):
        target(truth).levda.assimilate(
            point_obs(truth), model, LEV, run=RUN, background={**bg, "b": [1.0] * 5 + [9.0]}
        )


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (RunOptions, {"members": 1}, r"members=1: expected an integer >= 2"),
        (RunOptions, {"seed": -1}, r"seed=-1: expected an integer >= 0"),
        (RunOptions, {"dtype": "float16"}, "dtype='float16'"),
        (RunOptions, {"outside": "ignore"}, "outside='ignore'"),
        (RunOptions, {"chunks": (8, 25)}, r"chunks=\(8, 25\): expected OutputChunks"),
        (OutputChunks, {"time": 0}, r"OutputChunks.time=0: expected an integer >= 1"),
        (LEVDA, {"window": 0}, r"LEVDA.window=0: expected an integer >= 1 \(distinct"),
        (LEVDA, {"window": 2.5}, r"LEVDA.window=2\.5: expected an integer >= 1 .* or a positive"),
        (LEVDA, {"window": "0h"}, r"LEVDA.window='0h': .* a positive, finite duration"),
        (LEVDA, {"window": "-1h"}, r"LEVDA.window='-1h': .* a positive, finite duration"),
        (LEVDA, {"window": "NaT"}, r"LEVDA.window='NaT': .* a positive, finite duration"),
        (LEVDA, {"window": "6"}, r"LEVDA.window='6': .* a string such as '6h'"),
        (LEVDA, {"window": "six hours"}, r"LEVDA.window='six hours': expected"),
        (LEVDA, {"window": np.timedelta64(6)}, r"LEVDA.window=np.timedelta64\(6\): expected"),
        (LEVDA, {"window": 3, "window_stride": 4}, r"LEVDA.window_stride=4: expected an integer"),
        (LEVDA, {"window": 3, "window_stride": "1h"}, r"LEVDA.window_stride='1h': expected an in"),
        (LEVDA, {"window": "6h", "window_stride": 2}, r"LEVDA.window_stride=2: expected a posit"),
        (LEVDA, {"window": "6h", "window_stride": "7h"}, r"window_stride='7h': .* at most window"),
        (
            LEVDA,
            {"window": "6h", "window_stride": "0s"},
            r"window_stride='0s': expected a positive",
        ),
        (LEVDA, {"inflation": 1.5}, r"LEVDA.inflation=1\.5: expected Inflation\(\.\.\.\)"),
        (LEVDA, {"member_mode": "rml"}, r"LEVDA.member_mode='rml': expected SharedCost\(\) or"),
        (LEVDA, {"optimizer": "gn"}, r"LEVDA.optimizer='gn': expected LBFGSConfig or"),
        (
            LEVDA,
            {"model_error": True},
            r"LEVDA.model_error=True: expected ModelErrorTerm\(\), FieldAnalysis\(\) or None",
        ),
        (Inflation, {"multiplicative": 0.5}, r"Inflation.multiplicative=0\.5 is out of range"),
        (Inflation, {"additive": math.nan}, r"Inflation.additive=nan is out of range"),
        (GaussNewtonConfig, {"jacobian": "reverse"}, "jacobian='reverse' is invalid: use 'forw"),
    ],
)
def test_bad_config(cls, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("count", "length"),
    [
        (LEVDA(window=2), LEVDA(window="2h")),
        (
            LEVDA(window=3, window_stride=1),
            LEVDA(window=np.timedelta64(3, "h"), window_stride="60min"),
        ),
        (LEVDA(window=4), LEVDA(window=datetime.timedelta(hours=4))),
    ],
)
def test_windows_by_duration_equal_windows_by_count(model, truth, count, length):
    # observations on every hourly frame: n hours hold n observation times
    where, obs = target(truth), point_obs(truth)
    by_count = where.levda.assimilate(obs, model, count, run=RUN)
    by_length = where.levda.assimilate(obs, model, length, run=RUN)
    assert by_count.window.size > 1
    np.testing.assert_array_equal(by_length.window_anchor_step, by_count.window_anchor_step)
    np.testing.assert_array_equal(by_length.window_index, by_count.window_index)
    for name in ("latent_state", "a", "b", "window_misfit", "eta"):
        np.testing.assert_array_equal(by_length[name].values, by_count[name].values)


def test_windows_by_duration_on_irregular_times(model, truth):
    obs = point_obs(truth.isel(time=[0, 1, 2, 5]))  # a gap of 3 h
    where = target(truth)
    # [0, 2h): frames 0 and 1; [2h, 4h): frame 2; [4h, 6h): frame 5
    by_length = where.levda.assimilate(obs, model, LEVDA(window="2h"), run=RUN)
    assert by_length.window_anchor_step.values.tolist() == [-1, 2, 5]
    assert by_length.window_n_obs.values.tolist() == [18, 9, 9]
    # two observation times per window instead: frames 2 and 5 share one
    by_count = where.levda.assimilate(obs, model, LEVDA(window=2), run=RUN)
    assert by_count.window_anchor_step.values.tolist() == [-1, 2]


def test_bad_method_or_run(model, truth):
    where, obs = target(truth), point_obs(truth)
    with pytest.raises(ConfigError, match=r"method must be an xlevda method .* got dict"):
        where.levda.assimilate(obs, model, {"members": 4})
    with pytest.raises(ConfigError, match=r"run must be an xlevda.RunOptions, got dict"):
        where.levda.assimilate(obs, model, LEV, run={"members": 4})


def test_run_options_take_the_method_defaults(model, truth):
    """Members and dtype left at None: LEVDA's 100 members in float32."""
    an = target(truth).levda.assimilate(point_obs(truth), model, LEVDA(window=3))
    assert an.sizes["member"] == 100 and an.latent_state.dtype == np.float32
    assert json.loads(an.attrs["run_options"])["members"] == 100


def test_unsorted_target_times(model, truth):
    bad = target(truth).isel(time=[1, 0, 2])
    with pytest.raises(CoordinateError, match="strictly increasing"):
        bad.levda.assimilate(point_obs(truth), model, LEV, run=RUN)


def test_obs_outside_target_time_range(model, truth):
    short = target(truth).isel(time=slice(0, 3))
    with pytest.raises(ObservationError, match="outside the analysis time range"):
        short.levda.assimilate(point_obs(truth), model, LEV, run=RUN)


def test_not_a_surrogate(truth):
    with pytest.raises(ConfigError, match="lacks"):
        target(truth).levda.assimilate(point_obs(truth), object(), LEV, run=RUN)


def test_cases_run_as_independent_chains(model, truth):
    one = point_obs(truth)
    two = point_obs(truth, std=0.1)
    both = xr.concat([one, two], dim="case").assign_coords(case=["a", "b"])
    an = target(truth).levda.assimilate(both, model, LEV, run=RUN)
    assert an.eta.dims[0] == "case" and an.case.values.tolist() == ["a", "b"]
    first = target(truth).levda.assimilate(one, model, LEV, run=RUN)
    np.testing.assert_allclose(an.latent_state.sel(case="a"), first.latent_state)
    assert not np.allclose(an.latent_state.sel(case="b"), first.latent_state)


def test_distributed_cluster_equals_synchronous(model, truth):
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    obs = xr.concat([point_obs(truth), point_obs(truth, std=0.1)], dim="case")
    with dask.config.set(scheduler="synchronous"):
        sync = target(truth).levda.assimilate(obs, model, LEV, run=RUN).compute()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        dist = target(truth).levda.assimilate(obs, model, LEV, run=RUN).compute()
    xr.testing.assert_allclose(sync, dist, rtol=1e-6, atol=1e-8)


def test_the_callers_surrogate_is_left_as_it_was(model, truth):
    # float32 as the model: the run needs no copy for its dtype, yet must not change the model
    was_training, grads = model.training, [p.requires_grad for p in model.parameters()]
    model.train()
    model.requires_grad_(True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        run = RunOptions(members=6)
        target(truth).levda.assimilate(point_obs(truth), model, LEV, run=run).compute()
        assert model.training
        assert all(p.requires_grad for p in model.parameters())
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    finally:
        model.train(was_training)
        for p, g in zip(model.parameters(), grads, strict=True):
            p.requires_grad_(g)
