"""The model-error level made non-negative (the posterior mean of a level >= 0) and the draws
scaled by leave-one-out cross-validation (issue 16)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import xarray as xr
from scipy import integrate

from xlevda.core.field_analysis import (
    Metric,
    SparseGain,
    correlation,
    draw_terms,
    leave_one_out,
    window_gain,
)
from xlevda.cycle import Cycle
from xlevda.errors import ConfigError
from xlevda.field_analysis import FieldAnalysis, draw_scale
from xlevda.field_increments import FieldIncrements
from xlevda.methods import LEVDA
from xlevda.model_error import (
    PRIOR_SCALE,
    ModelErrorTerm,
    pooled_level,
    positive_level,
    window_variance,
)
from xlevda.run import RunOptions


@pytest.mark.parametrize("prior", [0.5, 1e6])
@pytest.mark.parametrize("estimate", [-40.0, -3.0, -0.4, 0.0, 0.7, 2.5, 8.0])
def test_posterior_is_the_truncated_normal_mean(estimate, prior):
    """``E[v | estimate]`` for ``estimate ~ N(v, s^2)`` and the prior ``exp(-v / V)`` on
    ``v >= 0``, by quadrature."""
    s = 0.3
    m = estimate - s**2 / prior  # the posterior: N(m, s^2) truncated at 0
    ref = max(m, 0.0)  # the density relative to its value there: no underflow
    density = [lambda v, p=p: v**p * np.exp(-((v - m) ** 2 - (ref - m) ** 2) / (2 * s**2))
               for p in (1, 0)]  # fmt: skip
    # the posterior's mass: within ~12 s of max(m, 0), or an exponential of mean s^2 / |m|
    # for m far below 0
    top = ref + 12 * s if m > -3 * s else 40 * s**2 / abs(m)
    num, den = (integrate.quad(f, 0, top, epsabs=0, epsrel=1e-12, limit=200)[0] for f in density)
    got = positive_level(np.array([estimate]), np.array([s]), "posterior", prior)[0]
    assert got == pytest.approx(num / den, rel=1e-7)
    assert positive_level(np.array([estimate]), np.array([s]), "clipped")[0] == max(estimate, 0)


def test_posterior_without_information_is_the_prior_mean():
    got = positive_level(np.array([-1e12, 0.0, 1e12]), np.full(3, 1e12), "posterior", 0.7)
    np.testing.assert_allclose(got, 0.7, rtol=1e-6)


def test_nan_and_zero_standard_error():
    got = positive_level(np.array([np.nan, -1.0, 2.0]), np.array([1.0, 0.0, np.nan]), "posterior")
    assert np.isnan(got[0]) and got[1:].tolist() == [0.0, 2.0]


def test_posterior_mean_matches_the_level_on_average_where_clipping_does_not():
    """Levels from the prior and their noisy estimates: given any estimate, the posterior
    mean's error averages 0 (the property that makes a spread match its error), also among
    the estimates below 0, where the clipped level (0) is too small by the mean level there."""
    rng = np.random.default_rng(0)
    s, prior, n = 1.0, 3.0, 400_000
    level = rng.exponential(prior, n)
    estimate = level + s * rng.standard_normal(n)
    for sel in (estimate < 100, estimate < 0, (estimate > 0) & (estimate < 1), estimate > 6):
        got = positive_level(estimate[sel], np.full(sel.sum(), s), "posterior", prior)
        err = level[sel] - got
        assert abs(err.mean()) < 4 * err.std() / np.sqrt(sel.sum()), err.mean()
    low = estimate < 0
    clipped = level[low] - positive_level(estimate[low], np.full(low.sum(), s), "clipped")
    assert clipped.mean() > 0.4  # the clipped level misses about 0.6 s on average there


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
    expect = positive_level(np.array([-0.5, -0.5, 0.3]), se, "posterior", PRIOR_SCALE)
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
    """The field analysis' variance and ``<var>_model_error_std`` follow ``level``: a level
    many standard errors above 0 is about the clipped one (less ``s^2 / V``)."""
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
    assert (a > 0).all() and (a != b).all()
    np.testing.assert_allclose(a, b, rtol=0.05)
    assert post.eta.attrs["field_analysis_std"] == pytest.approx(float(a[0]), rel=1e-9)


def _spd(m: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points on a line, ``S = v rho + R`` (GC, support 3) and one residual drawn from it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(m, 1, generator=g, dtype=torch.float64) * 10
    noise = 0.2 + torch.rand(m, generator=g, dtype=torch.float64)
    s = 2.0 * correlation(torch.cdist(x, x), 3.0) + torch.diag(noise)
    d = torch.linalg.cholesky(s) @ torch.randn(m, generator=g, dtype=torch.float64)
    return x, noise, s, d


def test_leave_one_out_equals_solving_without_each_observation():
    """Per observation, the closed form against the analysis of the other M - 1 observations."""
    _, noise, s, d = _spd(12, 0)
    s_inv = torch.linalg.inv(s)
    found, claimed, var = leave_one_out(s_inv @ d, s_inv, noise).tolist()
    e2, p, rows = [], [], []
    for i in range(12):
        o = [j for j in range(12) if j != i]
        w = torch.linalg.solve(s[o][:, o], s[o, i])
        e2.append(float(d[i] - w @ d[o]) ** 2)
        p.append(float(s[i, i] - s[i, o] @ w - noise[i]))
        rows.append(-torch.cat([w[:i], torch.ones(1, dtype=w.dtype), w[i:]]) * -1)
        rows[-1][torch.arange(12) != i] *= -1  # e_i = d_i - w^T d_{-i}
    assert found == pytest.approx(sum(e2) - float(noise.sum()), rel=1e-10)
    assert claimed == pytest.approx(sum(p), rel=1e-10)
    cov_e = torch.stack(rows) @ s @ torch.stack(rows).T  # of the e_i, for d ~ N(0, S)
    assert var == pytest.approx(2 * float(cov_e.square().sum()), rel=1e-9)


def test_dense_and_sparse_gains_cross_validate_alike():
    x, noise, _, d = _spd(40, 1)
    metric = Metric("plane", (0.0,), (1.0,))
    members = d[:, None] + torch.zeros(40, 3, dtype=torch.float64)
    dense = window_gain(x, noise, members, 2.0, 3.0, metric)
    sparse = window_gain(x, noise, members, 2.0, 3.0, metric, dense_max=1)
    assert isinstance(sparse, SparseGain)
    torch.testing.assert_close(dense.loo, sparse.loo, rtol=1e-9, atol=0)


def test_leave_one_out_errors_average_the_claim_for_the_right_covariance():
    """Residuals from the covariance the analysis assumes: the errors found at the left-out
    observations average those claimed (an exact expectation); from one with 3x the
    model-error variance they exceed them and :func:`draw_scale` raises the draws."""
    x, noise, _, _ = _spd(60, 2)
    metric = Metric("plane", (0.0,), (1.0,))
    g = torch.Generator().manual_seed(3)
    for true_v, reps in ((2.0, 1000), (6.0, 200)):
        true = true_v * correlation(torch.cdist(x, x), 3.0) + torch.diag(noise)
        d = torch.linalg.cholesky(true) @ torch.randn(60, reps, generator=g, dtype=torch.float64)
        gains = [(window_gain(x, noise, d[:, i : i + 1], 2.0, 3.0, metric),) for i in range(reps)]
        found, claimed, var = np.array([gain[0].loo.tolist() for gain in gains]).T
        if true_v == 2.0:  # Var found = var (exact for the right S)
            assert abs(found.mean() - claimed[0]) < 4 * np.sqrt(var[0] / reps)
            assert found.std() == pytest.approx(np.sqrt(var[0]), rel=0.15)
        else:  # E e_i^2 = (S^-1 S_true S^-1)_ii / (S^-1)_ii^2
            s_inv = torch.linalg.inv(2.0 * correlation(torch.cdist(x, x), 3.0) + torch.diag(noise))
            expect = float(((s_inv @ true @ s_inv).diagonal() / s_inv.diagonal() ** 2).sum())
            assert abs(found.mean() - (expect - float(noise.sum()))) < 4 * found.std() / reps**0.5
            assert found.mean() / claimed[0] > 1.2
            assert draw_scale(gains, 1)[0] == pytest.approx(found.mean() / claimed[0])


def test_draws_take_the_factor():
    """``FieldIncrements.block``'s standard deviations: ``sqrt(max(0, f post - pert))``."""
    x, noise, _, d = _spd(30, 4)
    metric = Metric("plane", (0.0,), (1.0,))
    gain = window_gain(x, noise, d[:, None].repeat(1, 2), 2.0, 3.0, metric)
    out = torch.linspace(0, 10, 23, dtype=torch.float64)[:, None]
    post, pert = draw_terms(out, gain, 2.0, 3.0, metric)
    for factor in (None, 0.3, 2.5):
        inc = FieldIncrements(
            ((gain,),), np.zeros(1, int), np.array([[2.0]]), np.array([3.0]), metric, None,
            True, None, None if factor is None else np.array([factor]),
        )  # fmt: skip
        _, std = inc.block(0, out, slice(0, 1), slice(0, 2))
        f = 1.0 if factor is None else factor
        torch.testing.assert_close(std[0], (f * post - pert).clamp_min(0).sqrt())
