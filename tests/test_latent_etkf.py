"""The latent ETKF (:class:`xlevda.methods.LatentETKF`): exact on a linear model, checked input.

On a linear model with an identity decoder, the analysis at an observed frame equals the
Kalman analysis of its forecast's sample moments (inflated), as for the full-state ETKF.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_fullstate_api import (
    N_SITES,
    LinearRing,
    augmented,
    background,
    kalman,
    observations,
    ring,
    target,
    truth_run,
)
from xlevda import RunOptions
from xlevda.core.dynamics import trajectory
from xlevda.errors import ConfigError, ObservationError
from xlevda.methods import Inflation, LatentETKF


@pytest.mark.parametrize("rho", [1.0, 1.2])
def test_latent_etkf_equals_the_kalman_analysis_of_its_forecast(rho):
    truth, model = truth_run(), ring(LinearRing)
    bg = background(truth, k=12, seed=3)
    obs = observations(truth, frames=[2], std=0.5)
    run = RunOptions(members=12, dtype="float64")
    an = target(truth).levda.assimilate(
        obs, model, LatentETKF(Inflation(rho)), run=run, background=bg
    )
    assert an.attrs["method"] == "latent ETKF"
    assert an.window_n_obs.values.tolist() == [0, N_SITES]
    z1 = torch.as_tensor(augmented(an, model, 1))  # the forecast before the observed frame
    zf = trajectory(model, z1, 1)[:, -1].numpy()
    zf = zf.mean(0) + rho * (zf - zf.mean(0))
    mean, cov = kalman(zf, np.eye(N_SITES, N_SITES + 1), obs.x.values[0], 0.25)
    za = augmented(an, model, 2)
    np.testing.assert_allclose(za.mean(0), mean, atol=1e-10)
    np.testing.assert_allclose(np.cov(za.T), cov, atol=1e-10)


def test_bad_input():
    with pytest.raises(ConfigError, match=r"LatentETKF.inflation=.*without additive"):
        LatentETKF(Inflation(1.0, 0.1))
    with pytest.raises(ConfigError, match=r"LatentETKF.inflation=1.1"):
        LatentETKF(1.1)
    truth, model = truth_run(), ring(LinearRing)
    obs = observations(truth, frames=[2], std=0.5)
    obs = obs.assign_coords(time=obs.time + (truth.time[1] - truth.time[0]) / 2)
    with pytest.raises(ObservationError, match="between frames"):
        target(truth).levda.assimilate(
            obs, model, LatentETKF(), run=RunOptions(members=4), background=background(truth, 4, 0)
        )
