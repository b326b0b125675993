"""The field analysis and OI through the accessor on a tiny surrogate: lazy == dense."""

from __future__ import annotations

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
from xlevda.errors import ConfigError
from xlevda.field_analysis import FieldAnalysis, metric_of
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
    ):
        with pytest.raises(ConfigError, match="FieldAnalysis"):
            FieldAnalysis(**bad)
    with pytest.raises(ConfigError, match=r"LEVDA\.model_error"):
        LEVDA(model_error="white")
    with pytest.raises(ConfigError, match=r"OI\.field"):
        OI(field=None)
    with pytest.raises(ConfigError, match=r"OI\.background"):
        OI(background={"eta": "zero"})


@pytest.mark.parametrize("time_scale", [None, 36000.0])
def test_increments_equal_dense_oi(model, truth, monkeypatch, time_scale):
    """Fields with the field analysis less those without equal, at every time and member,
    ``Q(out, obs) (H Q H^T + R)^-1 d`` of the observations of the supplying window at the
    nearest observation time, computed densely here from its residuals; any chunking gives the
    same fields; the unobserved variable is unchanged.  With a ``time_scale`` of 10 h (10 frames)
    every observation of the window counts."""
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


def test_draws_do_not_depend_on_chunks(model, truth):
    """With the draws (estimated variance and length scale) any chunking gives one field."""
    assert FieldAnalysis().draws
    method = LEVDA(window=2, model_error=FieldAnalysis())
    out = [
        target(truth)
        .levda.assimilate(eta_obs(truth), model, method, run=dataclasses.replace(RUN, chunks=c))
        .eta.values
        for c in (OutputChunks(time=6, member=6), OutputChunks(time=1, member=5))
    ]
    np.testing.assert_allclose(*out, rtol=0, atol=1e-12)  # the same draws; matmul round-off


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
