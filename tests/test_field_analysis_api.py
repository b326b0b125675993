"""The field analysis and OI through the accessor on a tiny surrogate: lazy == dense."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
import xarray as xr

import xlevda
import xlevda.io
from xlevda._convert import to_points
from xlevda.core.taper import gaspari_cohn
from xlevda.core.window import ObsWindow
from xlevda.decode import FieldTerm, decode_block, prepare_output_points
from xlevda.errors import ConfigError
from xlevda.field_analysis import FieldAnalysis, calibration, metric_of, window_residuals
from xlevda.field_increments import FieldIncrements
from xlevda.methods import LEVDA, OI
from xlevda.run import OutputChunks, RunOptions


def eta_obs(truth, std=0.05):
    obs = truth[["eta"]].isel(lat=slice(None, None, 3), lon=slice(None, None, 3))
    return obs.assign(eta_std=xr.full_like(obs.eta, std))


def target(truth):
    return truth.drop_vars(["eta", "u"])


RUN = RunOptions(members=6, dtype="float64")
FA = FieldAnalysis(length_scale=300.0, variance={"eta": 0.01}, draws=False)


def test_options_validated():
    for bad in (
        {"length_scale": -1.0},
        {"length_scale": float("nan")},
        {"variance": {"eta": -1.0}},
        {"variance": 3.0},
        {"draws": "yes"},
        {"calibrate": 1},
    ):
        with pytest.raises(ConfigError, match="FieldAnalysis"):
            FieldAnalysis(**bad)
    with pytest.raises(ConfigError, match=r"LEVDA\.model_error"):
        LEVDA(model_error="white")
    with pytest.raises(ConfigError, match=r"OI\.field"):
        OI(field=None)
    with pytest.raises(ConfigError, match=r"OI\.background"):
        OI(background={"eta": "zero"})


@pytest.mark.parametrize("dense_max", [None, 0])
@pytest.mark.parametrize("time_scale", [None, 36000.0])
def test_increments_equal_dense_oi(model, truth, monkeypatch, time_scale, dense_max):
    """Fields with the field analysis less those without equal, at every time and member,
    ``Q(out, obs) (H Q H^T + R)^-1 d`` of the observations of the supplying window at the
    nearest observation time, computed densely here from its residuals; any chunking gives the
    same fields; the unobserved variable is unchanged.  With a ``time_scale`` of 10 h (10 frames)
    every observation of the window counts.  ``dense_max=0``: every system solved sparsely."""
    import xlevda.field_analysis as fa

    if dense_max is not None:
        monkeypatch.setattr(fa, "DENSE_MAX", dense_max)
    made = []
    real = xlevda.io.case_increments
    monkeypatch.setattr(xlevda.io, "case_increments", lambda *a: made.append(a[0]) or real(*a))
    obs, tgt = eta_obs(truth), target(truth)
    plain = tgt.levda.assimilate(obs, model, LEVDA(window=2, model_error=None), run=RUN)
    run_small = dataclasses.replace(RUN, chunks=OutputChunks(time=2, member=4))
    runs = {"one": dataclasses.replace(RUN, chunks=OutputChunks(time=6, member=6)), "s": run_small}
    fa = dataclasses.replace(FA, time_scale=time_scale)
    fields = {
        k: tgt.levda.assimilate(obs, model, LEVDA(window=2, model_error=fa), run=r).compute()
        for k, r in runs.items()
    }
    np.testing.assert_allclose(fields["one"].eta.values, fields["s"].eta.values, atol=1e-12)
    np.testing.assert_array_equal(fields["one"].u.values, plain.u.values)
    residuals = made[0]
    points = torch.as_tensor(to_points(tgt, model.schema)[0])
    metric, scale = metric_of(model.schema), model.schema.output_norm.scale[0]
    assert metric.kind == "latlon"
    v = 0.01 / scale**2
    which = plain.window_index.values
    increment = (fields["one"].eta - plain.eta).values.reshape(6, 6, -1) / scale
    for t, w in enumerate(which):  # output time t is frame t
        r = residuals[w]
        times = np.unique(r.time)
        rows = r.time == times[np.argmin(np.abs(times - t))]
        if time_scale is not None:
            rows = np.ones_like(rows)
        assert rows.sum() == 9 * (len(times) if time_scale else 1)  # 3 x 3 points per time
        obs_pts = torch.as_tensor(r.points[rows])
        s = v * gaspari_cohn(metric.distance(obs_pts, obs_pts), 300.0) + torch.diag(
            torch.as_tensor(r.noise[rows])
        )
        q = v * gaspari_cohn(metric.distance(points, obs_pts), 300.0)
        dense = (q @ torch.linalg.solve(s, torch.as_tensor(r.member[rows]))).T.numpy()
        np.testing.assert_allclose(increment[t], dense, rtol=1e-8, atol=1e-10)
    assert np.abs(increment).max() > 0
    attrs = fields["one"].eta.attrs
    assert attrs["field_analysis_length_scale"] == 300.0
    assert attrs["field_analysis_std"] == pytest.approx(0.1)
    assert json.loads(fields["one"].attrs["method_config"])["model_error"]["type"] == (
        "FieldAnalysis"
    )


def test_draws_do_not_depend_on_chunks(model, truth, monkeypatch):
    """With the draws (estimated variance and length scale) any chunking gives one field, and
    the sparse systems (``DENSE_MAX = 0``) the dense ones' (round-off of well-conditioned
    solves: ``S``'s diagonal is at least the observation error variance)."""
    import xlevda.field_analysis as fa

    assert FieldAnalysis().draws
    method = LEVDA(window=2, model_error=FieldAnalysis())
    out = []
    for dense_max, c in (
        (fa.DENSE_MAX, OutputChunks(time=6, member=6)),
        (fa.DENSE_MAX, OutputChunks(time=1, member=5)),
        (0, OutputChunks(time=6, member=6)),
        (0, OutputChunks(time=1, member=5)),
    ):
        monkeypatch.setattr(fa, "DENSE_MAX", dense_max)
        run = dataclasses.replace(RUN, chunks=c)
        out.append(target(truth).levda.assimilate(eta_obs(truth), model, method, run=run).eta)
    for other in out[1:]:  # the same draws; matmul round-off
        np.testing.assert_allclose(out[0].values, other.values, rtol=0, atol=1e-12)
    assert float(out[0].std("member").min()) > 0


def test_oi_follows_precise_observations(model, truth):
    """OI of a constant background: at the observed points the fields approach the observations
    as their error vanishes, the parameters are not estimated, the unobserved variable is the
    background."""
    obs = eta_obs(truth, std=1e-6)
    method = OI(FieldAnalysis(length_scale=300.0, draws=False), background={"u": 0.25})
    an = target(truth).levda.assimilate(obs, model, method, run=RUN).compute()
    at_obs = an.eta.sel(lat=obs.lat, lon=obs.lon)
    expected = np.broadcast_to(obs.eta.values[:, None], at_obs.shape)
    np.testing.assert_allclose(at_obs.values, expected, atol=1e-4)
    assert np.isnan(an.a.values).all() and np.isnan(an.latent_state.values).all()
    np.testing.assert_allclose(an.u.values, 0.25, rtol=1e-12)
    assert an.attrs["method"] == "OI"
    assert an.window_index.values.tolist() == list(range(6))


def test_calibration_is_the_least_squares_weight_of_the_model():
    """``a`` in [0, 1] minimizes ``|y - ybar - a (h - ybar)|`` per channel; the calibrated
    residuals are the observations less ``a h + (1 - a) ybar``."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(60, generator=g, dtype=torch.float64)
    h = torch.cat([0.4 * y[:30] + 0.1 * torch.randn(30, generator=g, dtype=torch.float64),
                   torch.randn(30, generator=g, dtype=torch.float64)])  # fmt: skip
    channel = torch.tensor([0] * 30 + [1] * 30)
    weight, const = calibration(y, h, channel, 3)
    for c in (0, 1):
        m = channel == c
        ybar = y[m].mean()
        dh = (h[m] - ybar)[:, None]
        a = torch.linalg.lstsq(dh, y[m] - ybar).solution[0]
        spread = (y[m] - ybar - a * dh[:, 0]).square().sum() / (m.sum() - 1)
        near_one = 1 - a <= 2 * (spread / dh.square().sum()).sqrt()
        a = torch.ones_like(a) if near_one else a.clamp(0, 1)
        torch.testing.assert_close(weight[c], a)
        torch.testing.assert_close(const[c], (1 - a) * ybar)
    assert weight[0] > 0.9 and weight[2] == 1 and const[2] == 0  # 0.4 y: y's scale is wider

    k = 4  # members decode h + member offsets; the window: one time, 60 points, 3 channels
    decoded = torch.zeros(k, 1, 60, 3, dtype=torch.float64)
    offsets = torch.arange(k, dtype=torch.float64)[:, None] - 1.5  # centred: mean h
    decoded[:, 0, torch.arange(60), channel] = h + offsets
    values = torch.zeros(1, 60, 3, dtype=torch.float64)
    values[0, torch.arange(60), channel] = y
    weights = torch.zeros(1, 60, 3, dtype=torch.float64)
    weights[0, torch.arange(60), channel] = 4.0
    points = torch.rand(1, 60, 2, generator=g, dtype=torch.float64)
    window = ObsWindow(
        torch.tensor([0]), torch.zeros(1, dtype=torch.float64), points, values, weights
    )
    r = window_residuals(decoded, window, 0, seed=1, calibrate=True)
    fitted = weight[channel] * h + const[channel]
    np.testing.assert_allclose(r.mean, (y - fitted).numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.model_weight, weight.numpy())
    np.testing.assert_allclose(r.background, const.numpy())


def test_decoded_fields_take_the_model_weight_and_the_constant(model):
    """A block's field is ``a x + (1 - a) ybar`` (with no observations of the slot, no
    increment), denormalized."""
    grid = torch.tensor([[0.1, -0.2], [0.3, 0.5], [-0.7, 0.2]], dtype=torch.float64)
    model = copy.deepcopy(model).double()
    prepared = prepare_output_points(model, grid.numpy(), torch.float64)
    latent = np.random.default_rng(0).normal(size=(2, 3, model.latent_dim))
    increments = FieldIncrements(
        gains=((None, None),),
        slot=np.zeros(2, dtype=np.int64),
        variance=np.zeros((1, 2)),
        length=np.zeros(2),
        metric=metric_of(model.schema),
        background=np.array([[0.3, -0.2]]),
        draws=False,
        weight=np.array([[0.25, 1.0]]),
    )
    term = FieldTerm(increments, grid.numpy())
    plain = decode_block(latent, model, prepared, torch.float64, 0, None, 0)
    got = decode_block(latent, model, prepared, torch.float64, 0, None, 0, term)
    norm = model.schema.output_norm
    expect = (0.25 * (plain - norm.offset[0]) / norm.scale[0] + 0.3) * norm.scale[0]
    np.testing.assert_allclose(got, expect + norm.offset[0], rtol=1e-12, atol=1e-12)


def test_a_system_too_large_is_refused_before_it_is_made(model, truth, monkeypatch):
    import xlevda.field_analysis as fa

    monkeypatch.setattr(fa, "DENSE_MAX", 0)  # every system sparse
    monkeypatch.setattr(fa, "MAX_SYSTEM_BYTES", fa.PAIR_BYTES * 8)  # at most 8 pairs
    with pytest.raises(
        ConfigError, match=r"window 0 .* its 9 simultaneous observations of 'eta' with \d+ pairs"
    ):
        target(truth).levda.assimilate(eta_obs(truth), model, LEVDA(window=2), run=RUN)
