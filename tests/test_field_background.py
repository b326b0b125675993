"""Starting LEVDA from full fields: latent states fitted through the decoder (no encoder)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import xarray as xr

import xlevda
from tests.test_api import point_obs, target
from xlevda.core.inversion import fit_latent, rollout_state
from xlevda.errors import CoordinateError, ObservationError, ShapeError, VariableError
from xlevda.methods import LEVDA, RandomizedMaximumLikelihood
from xlevda.run import RunOptions

K = 6


def fields_of(model, frame: int) -> xr.Dataset:
    """The surrogate's own fields at one frame for K parameter pairs (over ``member``)."""
    params = {
        "a": xr.DataArray(np.linspace(-0.4, 0.4, K), dims="member"),
        "b": xr.DataArray(np.linspace(0.6, 1.4, K), dims="member"),
    }
    frames = model.frame_times()
    fields = model.predict(params, times=frames[frame : frame + 1])
    return fields.isel(time=0).assign_coords(time=frames[frame]), params


def test_fit_latent_recovers_states_that_decode_to_the_fields(model):
    torch.manual_seed(0)
    u = torch.rand(K, 2, dtype=torch.float64) * 2 - 1
    m = copy.deepcopy(model).double()
    s_true = rollout_state(m, u, 3)
    pts = torch.rand(40, 2, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        values = m.decode(s_true, pts)
    start = rollout_state(m, torch.zeros_like(u), 3)  # the prior centre's rollout
    res = fit_latent(m, values, pts, start)
    with torch.no_grad():
        fitted = m.decode(res.x, pts)
    before = (m.decode(start, pts) - values).norm() / values.norm()
    after = (fitted - values).norm() / values.norm()
    assert after < 1e-6 < before
    with pytest.raises(ShapeError, match=r"needs values \(K, P, C\)"):
        fit_latent(m, values[0], pts, start)


def test_analysis_starts_from_the_fields(model, truth):
    bg, _ = fields_of(model, 2)
    obs = point_obs(truth.isel(time=slice(2, None)), std=1e6)  # no information
    # randomized members with uninformative data minimize |alpha - a_j|^2: member j itself
    cfg = LEVDA(window=2, member_mode=RandomizedMaximumLikelihood())
    run = RunOptions(members=K, dtype="float64")
    where = target(truth).isel(time=slice(2, None))
    an = where.levda.assimilate(obs, model, cfg, run=run, background=bg[["eta", "u"]])
    assert an.window_anchor_step.values[0] == 2
    assert an.attrs["background_members_not_fitted"] == 0
    first = an.isel(time=0)
    scale = float(np.abs(bg.eta).max())
    np.testing.assert_allclose(first.eta.values, bg.eta.values, atol=1e-3 * scale)
    # only eta given, with holes: the known values are still reproduced
    partial = bg[["eta"]].where(bg.lon > bg.lon[2])
    an2 = where.levda.assimilate(obs, model, cfg, run=run, background=partial)
    known = np.isfinite(partial.eta.values)
    got = an2.isel(time=0).eta.values
    np.testing.assert_allclose(got[known], partial.eta.values[known], atol=1e-3 * scale)


def test_field_background_errors(model, truth):
    bg, params = fields_of(model, 2)
    cfg, run = LEVDA(window=2), RunOptions(members=K)
    obs, where = point_obs(truth), target(truth)
    with pytest.raises(ObservationError, match="outside the analysis time range"):
        where.isel(time=slice(2, None)).levda.assimilate(obs, model, cfg, run=run, background=bg)
    later = point_obs(truth.isel(time=slice(2, None)))
    with pytest.raises(CoordinateError, match="precedes the initial ensemble's time"):
        where.levda.assimilate(later, model, cfg, run=run, background=bg)
    half = bg.assign_coords(time=bg.time + np.timedelta64(30, "m"))
    with pytest.raises(CoordinateError, match="falls between the surrogate's frames"):
        where.levda.assimilate(later, model, cfg, run=run, background=half)
    with pytest.raises(VariableError, match=r"background field 'eta' has dims .* member=6"):
        where.levda.assimilate(later, model, cfg, run=run, background=bg.isel(member=slice(3)))
    two = xr.concat([bg, bg], "time")
    with pytest.raises(CoordinateError, match="a field background holds one time, got 2"):
        where.levda.assimilate(later, model, cfg, run=run, background=two)
    assert isinstance(xlevda.LEVDA(), LEVDA)  # the public name is the same class
    del params


def test_field_background_forms(model, truth):
    bg, params = fields_of(model, 2)
    cfg, run = LEVDA(window=2), RunOptions(members=K)
    obs = point_obs(truth.isel(time=slice(2, None)))
    where = target(truth).isel(time=slice(2, None))
    one_time = bg[["eta"]].expand_dims("time")  # as from ds.sel(time=[t])
    an = where.levda.assimilate(obs, model, cfg, run=run, background=one_time)
    assert an.window_anchor_step.values[0] == 2
    with pytest.raises(VariableError, match="background lacks parameter 'b'"):
        where.levda.assimilate(
            obs, model, cfg, run=run, background=bg.drop_vars("b").assign(a=params["a"])
        )
    holes = bg[["eta"]].copy(deep=True)
    holes["eta"][0] = np.nan  # member 0 has no value at all: it keeps its rollout
    an = where.levda.assimilate(obs, model, cfg, run=run, background=holes)
    assert an.attrs["background_members_not_fitted"] == 1
