"""LEVDA on a surrogate with learned initial states starts from its table, not from s_-1 = 0."""

from __future__ import annotations

import numpy as np
import pytest

import xlevda
from tests.conftest import make_runs
from xlevda.initial import latent_ensemble, prior
from xlevda.methods import LEVDA
from xlevda.run import RunOptions
from xlevda.surrogates.config import LearnedInitialState
from xlevda.systems import observe


@pytest.fixture(scope="module")
def runs():
    return make_runs(n_runs=8, n_frames=4)


@pytest.fixture(scope="module")
def model(runs):
    config = xlevda.LDNetConfig(
        latent_dim=4,
        decoder=xlevda.SeparableDecoderConfig(n_basis=8, basis_width=16, coef_width=16),
        initial_state=LearnedInitialState(),
        train=xlevda.TrainConfig(epochs=3, validation_fraction=0.25, points_per_frame=None),
    )
    return xlevda.LDNet.fit(runs, ["b"], config, progress=False)


def test_members_start_at_frame_0_from_rows_of_the_table(model):
    run = RunOptions(members=12, seed=3)
    ens = latent_ensemble(model, None, run)
    table = model.initial_states.detach().double().numpy()
    assert ens.anchor == 0 and ens.z.shape == (12, model.latent_dim + 1)
    rows = [np.flatnonzero((table == s).all(1)) for s in ens.z[:, : model.latent_dim]]
    assert all(len(r) >= 1 for r in rows)  # every member's state is a row of the table
    assert len({int(r[0]) for r in rows}) > 1  # drawn, not one row repeated
    again = latent_ensemble(model, None, run)
    np.testing.assert_array_equal(ens.z, again.z)  # seeded
    other = latent_ensemble(model, None, RunOptions(members=12, seed=4))
    assert not np.array_equal(ens.z, other.z)
    # the parameters are the prior draws, as for a surrogate without a table
    np.testing.assert_array_equal(ens.z[:, model.latent_dim :], prior(model.schema, 12, 3))


def test_levda_analysis_fits_the_observations_better_than_its_background(model, runs):
    truth = runs.isel(run=0).drop_vars(["a", "b", "run"], errors="ignore")
    obs = observe.observe(truth[["eta"]], observe.GridStride(2), noise_ratio=0.1, seed=1)
    target = truth.drop_vars(list(truth.data_vars))
    an = target.levda.assimilate(obs, model, LEVDA(window=2), run=RunOptions(members=8, seed=0))
    assert an.latent_state.isel(time=0).notnull().all()
    misfit, background = (
        an.window_misfit.median("member"),
        an.window_misfit_background.median("member"),
    )
    assert bool((misfit < background).all())
