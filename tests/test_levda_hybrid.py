"""LEVDA with a hybrid latent covariance, end to end on a tiny surrogate."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.test_api import point_obs, target
from xlevda.core.hybrid import rollout_square_root
from xlevda.errors import ConfigError
from xlevda.methods import LEVDA, HybridCovariance
from xlevda.run import RunOptions

LEV = LEVDA(window=2, model_error=None)
RUN = RunOptions(members=6, dtype="float64")


def test_static_weight_zero_is_the_ensemble_only_analysis(model, truth):
    plain = target(truth).levda.assimilate(point_obs(truth), model, LEV, run=RUN)
    zero = dataclasses.replace(LEV, static_covariance=HybridCovariance(static_weight=0.0))
    hyb = target(truth).levda.assimilate(point_obs(truth), model, zero, run=RUN)
    np.testing.assert_allclose(hyb.latent_state.values, plain.latent_state.values, atol=1e-7)
    np.testing.assert_allclose(hyb.a.values, plain.a.values, atol=1e-7)


def test_hybrid_is_computed_once_and_moves_the_analysis(model, truth, monkeypatch):
    """The static square root is computed once per analysis (not per window) and changes it."""
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[1].shape)
        return rollout_square_root(*args, **kwargs)

    monkeypatch.setattr("xlevda.methods.levda.rollout_square_root", counting)
    method = dataclasses.replace(
        LEV, static_covariance=HybridCovariance(static_weight=0.5, rank=3, samples=16)
    )
    plain = target(truth).levda.assimilate(point_obs(truth), model, LEV, run=RUN)
    hyb = target(truth).levda.assimilate(point_obs(truth), model, method, run=RUN)
    assert hyb.window_index.max() >= 2 and calls == [(16, 6)]  # 3 windows, one rollout
    assert not hyb.window_failed.any() and np.isfinite(hyb.latent_state.values).all()
    assert np.abs(hyb.latent_state.values - plain.latent_state.values).max() > 1e-3


def test_bad_static_covariance():
    with pytest.raises(ConfigError, match=r"LEVDA.static_covariance='big': expected Hybrid"):
        LEVDA(static_covariance="big")
