"""LEVDA through the accessor on a full-state model: Lorenz-96 with an identity decoder.

The surrogate protocol admits a full-state model, and a field background turns an ensemble of
states into the initial members (the latent state is the state).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

import xlevda
from xlevda.systems import lorenz96


def test_levda_on_lorenz96_from_a_field_background():
    truth = lorenz96.simulate([8.0], 12, spinup=500, seed=0).isel(run=0).drop_vars("forcing")
    model = lorenz96.Lorenz96Surrogate(forcing_range=(5.0, 9.0), n_frames=13)
    rng = np.random.default_rng(1)
    noise = xr.DataArray(rng.normal(size=truth.x.shape), dims=truth.x.dims)
    obs = (truth[["x"]] + noise).assign(x_std=xr.full_like(truth.x, 1.0))  # R = I, all observed
    k = 16
    members = xr.DataArray(rng.normal(size=(k, truth.sizes["site"])), dims=("member", "site"))
    background = (truth.x.isel(time=0) + members).to_dataset(name="x")  # error std 1
    # the members' own states: the model-error term (tested in test_api) would add its noise
    method = xlevda.LEVDA(window=4, model_error=None)
    run = xlevda.RunOptions(members=k, dtype="float64")
    an = truth.drop_vars("x").levda.assimilate(obs, model, method, run=run, background=background)
    assert an.attrs["background_members_not_fitted"] == 0
    assert an.x.dims == ("time", "member", "site")
    rmse = np.sqrt(((an.x.mean("member") - truth.x) ** 2).mean("site")).values
    assert rmse.max() < 0.6  # observation and background errors are both 1
    prior_std = 4.0 / np.sqrt(12.0)  # U(5, 9)
    assert float(an.forcing.isel(time=-1).std()) < 0.5 * prior_std
