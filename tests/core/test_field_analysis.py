"""The field analysis' kernel against closed forms (dense float64 OI) and statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xlevda.core.field_analysis import (
    EARTH_RADIUS_KM,
    Metric,
    correlation,
    field_increment,
    fit_length_scale,
    window_gain,
)
from xlevda.core.taper import gaspari_cohn
from xlevda.core.window import ObsWindow
from xlevda.field_analysis import Residuals, innovation_variance, window_residuals

F64 = torch.float64
PLANE = Metric("plane", (0.0, 0.0), (50.0, 20.0))  # normalized box scaled back


def dense_q(a, b, v, length, metric=PLANE):
    return v * gaspari_cohn(metric.distance(a, b), length)


def small_case(seed=0, m_pts=6, repeats=2, k=5, p=40):
    g = torch.Generator().manual_seed(seed)
    obs_pts = torch.rand(m_pts, 2, generator=g, dtype=F64) * 2 - 1
    obs = obs_pts.repeat(repeats, 1)  # every point observed ``repeats`` times
    noise = 0.1 + torch.rand(len(obs), generator=g, dtype=F64)
    d = torch.randn(len(obs), k, generator=g, dtype=F64)
    out = torch.cat([torch.rand(p, 2, generator=g, dtype=F64) * 2 - 1, obs_pts[:2]])
    return obs, noise, d, out


@pytest.mark.parametrize("chunk", [1 << 22, 7, 1])
def test_increment_equals_dense_oi(chunk):
    """``Q H^T (H Q H^T + R)^-1 d``, the posterior variance and ``diag(K R K^T)`` equal the
    dense float64 formulas, for any chunking of the output points."""
    obs, noise, d, out = small_case()
    v, length = 0.7, 25.0
    s = dense_q(obs, obs, v, length) + torch.diag(noise)
    gain_dense = dense_q(out, obs, v, length) @ torch.linalg.inv(s)  # (P, M)
    q_oo = dense_q(out, out, v, length)
    gain = window_gain(obs, noise, d, v, length, PLANE)
    inc, post, pert = field_increment(out, gain, v, length, PLANE, chunk=chunk)
    torch.testing.assert_close(inc, (gain_dense @ d).T, rtol=1e-10, atol=1e-12)
    expected_post = torch.diagonal(q_oo - gain_dense @ dense_q(obs, out, v, length))
    torch.testing.assert_close(post, expected_post, rtol=1e-10, atol=1e-12)
    expected_pert = torch.diagonal(gain_dense @ torch.diag(noise) @ gain_dense.T)
    torch.testing.assert_close(pert, expected_pert, rtol=1e-10, atol=1e-12)
    assert (inc[:, :40].abs() > 0).any() and (inc == 0).any()  # compact support


def test_observation_error_to_zero():
    """As the error at an observed point goes to 0, the analysis there goes to the value."""
    obs, _, d, _ = small_case(m_pts=4, repeats=1)
    for eps in (1e-2, 1e-5, 1e-8):
        noise = torch.full((len(obs),), eps, dtype=F64)
        gain = window_gain(obs, noise, d, 1.0, 40.0, PLANE)
        inc, post, _ = field_increment(obs, gain, 1.0, 40.0, PLANE)
        err = (inc.T - d).abs().max().item()
        assert err < 50 * eps, (eps, err)
        assert post.max().item() < 50 * eps


def test_no_observations_no_change():
    obs, noise, d, out = small_case()
    gain = window_gain(obs[:0], noise[:0], d[:0], 1.0, 40.0, PLANE)
    inc, post, pert = field_increment(out, gain, 1.0, 40.0, PLANE)
    assert (inc == 0).all() and (pert == 0).all() and (post == 1.0).all()
    gain = window_gain(obs, noise, d, 0.0, 40.0, PLANE)  # no model error: no increment
    inc, post, _ = field_increment(out, gain, 0.0, 40.0, PLANE)
    assert (inc == 0).all() and (post == 0).all()


def test_distances_in_km():
    """Latitude/longitude on a plane schema and the sphere's embedding: great circles in km."""
    lat, lon = (
        torch.tensor([10.0, 11.0, 10.0], dtype=F64),
        torch.tensor([20.0, 20.0, 21.0], dtype=F64),
    )
    latlon = Metric("latlon", (10.0, 20.0), (2.0, 4.0), (0, 1))
    pts = torch.stack([(lat - 10.0) / 2.0, (lon - 20.0) / 4.0], -1).double()
    rad_lat, rad_lon = torch.deg2rad(lat).double(), torch.deg2rad(lon).double()
    unit = torch.stack(
        [rad_lat.cos() * rad_lon.cos(), rad_lat.cos() * rad_lon.sin(), rad_lat.sin()], -1
    )
    sphere = Metric("sphere", (0.0, 180.0), (90.0, 180.0))
    a, b = latlon.distance(pts, pts), sphere.distance(unit, unit)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-6)
    assert a[0, 1].item() == pytest.approx(EARTH_RADIUS_KM * math.pi / 180, rel=1e-12)
    lon_deg = EARTH_RADIUS_KM * math.pi / 180 * math.cos(math.radians(10.0))
    assert a[0, 2].item() == pytest.approx(lon_deg, rel=1e-4)  # great circle ~ parallel


def synthetic_innovations(v, length, sigma2, n_rep, seed):
    """Residuals ``N(0, v rho + sigma^2 I)`` on a 1-D line, ``n_rep`` independent groups."""
    x = torch.linspace(0.0, 60.0, 61, dtype=F64)[:, None]
    c = v * correlation(torch.cdist(x, x), length) + sigma2 * torch.eye(61, dtype=F64)
    g = torch.Generator().manual_seed(seed)
    d = torch.linalg.cholesky(c) @ torch.randn(61, n_rep, generator=g, dtype=F64)
    return x, c, d


def test_innovation_variance_recovers_v():
    """``mean d^2 - sigma^2``: within 5 of its exact Gaussian standard errors of ``v``."""
    v, sigma2, n_rep = 2.0, 0.5, 200
    x, c, d = synthetic_innovations(v, 8.0, sigma2, n_rep, seed=1)
    zeros = np.zeros(61, int)
    res = [
        Residuals(
            x.numpy(),
            zeros,
            zeros,
            zeros,
            np.full(61, sigma2),
            d[:, r, None].numpy(),
            d[:, r].numpy(),
        )
        for r in range(n_rep)
    ]
    est = innovation_variance(res, 1)[0]
    se = math.sqrt(2 * torch.trace(c @ c).item() / (61**2 * n_rep))  # var of a Gaussian mean sq.
    assert abs(est - v) < 5 * se, (est, se)


def test_fit_recovers_length_scale():
    """The maximum-likelihood support is within 4 standard errors of the true one, the standard
    error from the scatter of the estimates of independent batches."""
    v, length, sigma2, n_rep, batches = 1.5, 10.0, 0.3, 240, 8
    x, _, d = synthetic_innovations(v, length, sigma2, n_rep, seed=2)

    def fit(cols):
        pts, group = x.repeat(len(cols), 1), torch.arange(len(cols)).repeat_interleave(61)
        noise = torch.full((61 * len(cols),), sigma2, dtype=F64)
        values = d[:, cols].T.reshape(-1)
        return fit_length_scale(pts, group, values, noise, v, Metric("plane", (0.0,), (1.0,)))

    size = n_rep // batches
    per = np.array([fit(list(range(b * size, (b + 1) * size))) for b in range(batches)])
    se = per.std(ddof=1) / math.sqrt(batches)  # of the mean of the batch estimates
    assert abs(per.mean() - length) < 4 * se, (per, se)
    assert se < 0.1 * length  # the test can fail: the estimates are informative


def test_perturbed_members_posterior():
    """Linear-Gaussian: members ``x_k ~ N(m, Q)`` updated with centred perturbed observations
    have the posterior mean exactly and covariance ``Q - K H Q`` within 5 sample standard
    errors (Wishart: ``sqrt((S_ii S_jj + S_ij^2) / (K - 1))``)."""
    n_out, k = 12, 4000
    g = torch.Generator().manual_seed(3)
    pts = torch.rand(n_out, 2, generator=g, dtype=F64) * 2 - 1
    v, length = 1.0, 60.0
    q = dense_q(pts, pts, v, length) + 1e-12 * torch.eye(n_out, dtype=F64)
    obs_idx = torch.tensor([0, 3, 5, 8])
    noise = torch.tensor([0.2, 0.5, 0.1, 0.3], dtype=F64)
    m = torch.randn(n_out, generator=g, dtype=F64)
    x = m[:, None] + torch.linalg.cholesky(q) @ torch.randn(n_out, k, generator=g, dtype=F64)
    y = torch.randn(len(obs_idx), generator=g, dtype=F64)
    window = ObsWindow(torch.tensor([0]), torch.zeros(1, dtype=F64), pts[obs_idx][None],
                       y[None, :, None], (1 / noise)[None, :, None])  # fmt: skip
    decoded = x[obs_idx].T[:, None, :, None]  # (K, 1, M, 1)
    res = window_residuals(decoded, window, 0, seed=11)
    mean_x_obs = x[obs_idx].mean(1)
    np.testing.assert_allclose(res.member.mean(1), res.mean, atol=1e-12)
    np.testing.assert_allclose(res.mean, (y - mean_x_obs).numpy(), atol=1e-12)
    gain = window_gain(pts[obs_idx], noise, torch.as_tensor(res.member), v, length, PLANE)
    inc, post, _ = field_increment(pts, gain, v, length, PLANE)
    xa = x + inc.T
    s = q[obs_idx][:, obs_idx] + torch.diag(noise)
    kg = q[:, obs_idx] @ torch.linalg.inv(s)
    torch.testing.assert_close(xa.mean(1), x.mean(1) + kg @ (y - mean_x_obs), rtol=0, atol=1e-10)
    expected = q - kg @ q[obs_idx]
    torch.testing.assert_close(torch.diagonal(expected), post, rtol=1e-9, atol=1e-12)
    cov = torch.cov(xa)
    diag = torch.diagonal(expected)
    se = ((diag[:, None] * diag[None, :] + expected**2) / (k - 1)).sqrt()
    assert ((cov - expected).abs() <= 5 * se + 1e-12).all(), ((cov - expected) / se).abs().max()


@pytest.mark.parametrize("kind", ["plane", "sphere", "latlon"])
def test_identical_points_are_at_distance_zero(kind):
    """No round-off distance between a point and itself (it bounded the length-scale search)."""
    g = torch.Generator().manual_seed(0)
    p = torch.rand(100, 2, generator=g, dtype=torch.float64)
    if kind == "sphere":
        p = torch.nn.functional.normalize(torch.randn(100, 3, generator=g, dtype=torch.float64))
    d = Metric(kind, (0.0, 0.0), (3.09, 3.09)).distance(p, p)
    assert (d.diagonal() == 0).all()
