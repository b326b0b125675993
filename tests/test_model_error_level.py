"""The model-error level made non-negative (issue 16): the posterior mean of a level >= 0."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr
from scipy import integrate

from xlevda.cycle import Cycle
from xlevda.errors import ConfigError
from xlevda.field_analysis import FieldAnalysis
from xlevda.methods import LEVDA
from xlevda.model_error import ModelErrorTerm, pooled_level, positive_level, window_variance
from xlevda.run import RunOptions


@pytest.mark.parametrize("estimate", [-40.0, -3.0, -0.4, 0.0, 0.7, 2.5, 8.0])
def test_posterior_is_the_truncated_normal_mean(estimate):
    """``E[v | estimate]`` for ``estimate ~ N(v, s^2)``, flat prior on ``v >= 0``, by quadrature."""
    s = 0.3
    ref = max(estimate, 0.0)  # the density relative to its value there: no underflow
    density = [lambda v, p=p: v**p * np.exp(-((v - estimate) ** 2 - (ref - estimate) ** 2)
                                            / (2 * s**2)) for p in (1, 0)]  # fmt: skip
    # the posterior's mass: within ~12 s of max(estimate, 0), or an exponential of mean
    # s^2 / |estimate| for estimates far below 0
    top = ref + 12 * s if estimate > -3 * s else 40 * s**2 / abs(estimate)
    num, den = (integrate.quad(f, 0, top, epsabs=0, epsrel=1e-12, limit=200)[0] for f in density)
    got = positive_level(np.array([estimate]), np.array([s]), "posterior")[0]
    assert got == pytest.approx(num / den, rel=1e-7)
    assert positive_level(np.array([estimate]), np.array([s]), "clipped")[0] == max(estimate, 0)


def test_nan_and_zero_standard_error():
    got = positive_level(np.array([np.nan, -1.0, 2.0]), np.array([1.0, 0.0, np.nan]), "posterior")
    assert np.isnan(got[0]) and got[1:].tolist() == [0.0, 2.0]


def test_posterior_mean_matches_the_level_on_average_where_clipping_does_not():
    """Levels from a flat prior and their noisy estimates: given any estimate, the posterior
    mean's error averages 0 (the property that makes a spread match its error), also among
    the estimates below 0, where the clipped level (0) is too small by the mean level there."""
    rng = np.random.default_rng(0)
    s, n = 1.0, 400_000
    level = rng.uniform(0.0, 12.0, n)  # a prior flat far beyond s
    estimate = level + s * rng.standard_normal(n)
    inside = estimate < 8.0  # away from the prior's upper end, which the formula ignores
    for sel in (inside, estimate < 0, (estimate > 0) & (estimate < 1)):
        err = level[sel] - positive_level(estimate[sel], np.full(sel.sum(), s), "posterior")
        assert abs(err.mean()) < 4 * err.std() / np.sqrt(sel.sum()), err.mean()
    low = estimate < 0
    clipped = level[low] - positive_level(estimate[low], np.full(low.sum(), s), "clipped")
    assert clipped.mean() > 0.5  # the clipped level misses about 0.6 s on average there


def test_pooled_standard_error_is_the_pools_scatter():
    """Windows' levels as means of ``r^2 - sigma^2`` for Gaussian residuals ``r`` of variance
    ``sigma^2 + Q`` (leverage 1 / n): over many draws the pooled level scatters by the standard
    error returned, and averages ``Q``; a window far above the others keeps its own level."""
    rng = np.random.default_rng(1)
    count = np.array([[40], [25], [60], [0]])
    sigma2, q, reps = 1.0, 0.2, 4000
    noise = np.where(count > 0, sigma2, np.nan).astype(float)
    leverage = np.where(count > 0, 1 / np.maximum(count, 1), np.nan)
    pools, errors = [], []
    for _ in range(reps):
        excess = np.array(
            [[(rng.normal(0, np.sqrt(sigma2 + q), n) ** 2 - sigma2).mean() if n else np.nan]
             for n in count[:, 0]]
        )  # fmt: skip
        level, se = pooled_level(excess, count, noise, leverage)
        assert np.all(level == level[0])  # no window stands out: one pool for all
        pools.append(level[0, 0])
        errors.append(se[0, 0])
    pools = np.array(pools)
    expected_se = np.sqrt(2 / count.sum()) * (sigma2 + q)  # a mean of all 125 terms
    assert np.mean(errors) == pytest.approx(expected_se, rel=0.05)  # Q estimated in each
    assert pools.std() == pytest.approx(expected_se, rel=0.05)  # ~1.1 % sampling error
    assert abs(pools.mean() - q) < 4 * expected_se / np.sqrt(reps)
    outlier = np.array([[0.1], [0.0], [30.0], [np.nan]])
    level, se = pooled_level(outlier, count, noise, leverage)
    assert level[2, 0] == 30.0 and se[2, 0] == pytest.approx(np.sqrt(2 / 60) * 31.0)
    pool = (0.1 * 40) / 65
    assert level[[0, 1, 3], 0] == pytest.approx([pool] * 3)
    # the kept windows' share of the count: 40 / 65 and 25 / 65
    pool_se = np.sqrt(((40 / 65) ** 2 / 40 + (25 / 65) ** 2 / 25) * 2) * (1 + pool)
    assert se[0, 0] == pytest.approx(pool_se)


def test_window_variance_per_window_and_pooled():
    """``pooled=False``: each window's own level and standard error, forward-filled over
    windows without observations; the posterior level of each is at least the clipped one."""
    excess = np.array([[-0.5], [np.nan], [0.3]])
    count = np.array([[50], [0], [50]])
    cycle = Cycle(
        anchors=np.arange(3),
        z_analysis=np.zeros((3, 2, 3)),
        diagnostics={},
        n_obs=count.sum(1),
        excess=excess,
        excess_count=count,
        excess_noise=np.where(count > 0, 1.0, np.nan),
        excess_leverage=np.where(count > 0, 1 / 50, np.nan),
    )
    own = window_variance(cycle, pooled=False, level="posterior")[:, 0]
    se = np.sqrt(2 / 50) * np.array([1.0, 1.0, 1.3])
    expect = positive_level(np.array([-0.5, -0.5, 0.3]), se, "posterior")
    np.testing.assert_allclose(own, expect, rtol=1e-12)
    assert window_variance(cycle, pooled=False)[:, 0].tolist() == [0.0, 0.0, 0.3]
    pooled = window_variance(cycle, level="posterior")[:, 0]
    assert np.all(pooled == pooled[0]) and pooled[0] > 0  # pool -0.1, 0.2 standard errors


def test_options_validated():
    with pytest.raises(ConfigError, match=r"FieldAnalysis\.level='mean': expected"):
        FieldAnalysis(level="mean")
    with pytest.raises(ConfigError, match=r"ModelErrorTerm\.level=1: expected"):
        ModelErrorTerm(level=1)
    assert FieldAnalysis().level == "posterior" and ModelErrorTerm().level == "clipped"


def test_through_the_accessor(model, truth):
    """The field analysis' variance and ``<var>_model_error_std`` follow ``level``: the
    posterior level is the clipped one's or above."""
    obs = truth[["eta"]].isel(lat=slice(None, None, 3), lon=slice(None, None, 3))
    obs = obs.assign(eta_std=xr.full_like(obs.eta, 0.05))
    tgt = truth.drop_vars(["eta", "u"])
    run = RunOptions(members=6, dtype="float64")
    method = LEVDA(window=2, model_error=FieldAnalysis(length_scale=300.0))
    post = tgt.levda.assimilate(obs, model, method, run=run)
    clip = tgt.levda.assimilate(
        obs, model, dataclasses.replace(method, model_error=FieldAnalysis(level="clipped")), run=run
    )
    a, b = post.eta_model_error_std.values, clip.eta_model_error_std.values
    assert (a >= b).all() and (a > 0).all()
    assert post.eta.attrs["field_analysis_std"] == pytest.approx(float(a[0]), rel=1e-9)
