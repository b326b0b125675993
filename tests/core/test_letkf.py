"""ETKF / LETKF: exact Kalman filter equivalence, symmetries, localization, and a Lorenz-96 run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xlevda.core.letkf import letkf_analysis
from xlevda.core.taper import gaspari_cohn
from xlevda.errors import ConfigError, ObservationError, ShapeError
from xlevda.systems.lorenz96 import rk4_step, simulate

F64 = torch.float64


def exact_ensemble(mean: torch.Tensor, cov: torch.Tensor, k: int, gen: torch.Generator):
    """``k`` members whose sample mean and covariance (``k - 1`` normalization) are exact."""
    n = mean.shape[0]
    z = torch.randn(k, n, generator=gen, dtype=F64)
    z = z - z.mean(0)
    white = z @ torch.linalg.inv(torch.linalg.cholesky(z.T @ z / (k - 1))).T
    return mean + white @ torch.linalg.cholesky(cov).T


def ring_distances(n: int, positions: torch.Tensor) -> torch.Tensor:
    """Periodic distances (n, M) between sites ``0..n-1`` and observation positions."""
    d = (torch.arange(n, dtype=F64)[:, None] - positions[None, :]).abs()
    return torch.minimum(d, n - d)


def random_problem(seed: int, k: int = 6, n: int = 5, m: int = 4):
    """A nonlinear-looking random problem: forecast (k, n), obs (m,), obs_forecast (k, m)."""
    g = torch.Generator().manual_seed(seed)
    forecast = torch.randn(k, n, generator=g, dtype=F64) + torch.randn(n, generator=g, dtype=F64)
    obs_forecast = torch.tanh(forecast[:, :m] + 0.3 * forecast[:, -m:])
    obs = torch.randn(m, generator=g, dtype=F64)
    std = 0.5 + torch.rand(m, generator=g, dtype=F64)
    return forecast, obs, obs_forecast, std


def test_etkf_equals_kalman_filter_over_cycles():
    g = torch.Generator().manual_seed(0)
    n, m, k, n_cycles = 4, 3, 9, 6
    a_mat = torch.eye(n, dtype=F64) + 0.3 * torch.randn(n, n, generator=g, dtype=F64)
    h_mat = torch.randn(m, n, generator=g, dtype=F64)
    std = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    obs = torch.randn(n_cycles, m, generator=g, dtype=F64) * 3
    mean = torch.randn(n, generator=g, dtype=F64)
    root = torch.randn(n, n, generator=g, dtype=F64)
    cov = root @ root.T + 0.5 * torch.eye(n, dtype=F64)
    ensemble = exact_ensemble(mean, cov, k, g)

    r_mat = torch.diag(std**2)
    for c in range(n_cycles):
        forecast = ensemble @ a_mat.T
        ensemble = letkf_analysis(forecast, obs[c], forecast @ h_mat.T, std)
        mean, cov = a_mat @ mean, a_mat @ cov @ a_mat.T
        forecast_std, forecast_mean = torch.std_mean(forecast, dim=-2)
        torch.testing.assert_close(forecast_mean, mean, rtol=0, atol=1e-10)
        torch.testing.assert_close(forecast_std**2, cov.diagonal(), rtol=1e-10, atol=0)
        gain = cov @ h_mat.T @ torch.linalg.inv(h_mat @ cov @ h_mat.T + r_mat)
        mean = mean + gain @ (obs[c] - h_mat @ mean)
        cov = (torch.eye(n, dtype=F64) - gain @ h_mat) @ cov
        analysis_std, analysis_mean = torch.std_mean(ensemble, dim=-2)
        torch.testing.assert_close(analysis_mean, mean, rtol=0, atol=1e-10)
        torch.testing.assert_close(analysis_std**2, cov.diagonal(), rtol=1e-10, atol=0)
    torch.testing.assert_close(torch.cov(ensemble.T), cov, rtol=0, atol=1e-10)


def test_batch_of_cases_equals_one_case_at_a_time():
    problems = [random_problem(s) for s in range(3)]
    stacked = [torch.stack(p) for p in zip(*problems, strict=True)]
    dist = torch.rand(3, 5, 4, generator=torch.Generator().manual_seed(9), dtype=F64) * 4
    for radius, distances in ((None, None), (3.0, dist)):
        cfg = {"inflation": 1.1, "radius": radius}
        batched = letkf_analysis(*stacked, **cfg, distances=distances)
        for c, p in enumerate(problems):
            one = letkf_analysis(*p, **cfg, distances=None if distances is None else distances[c])
            torch.testing.assert_close(batched[c], one, rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    k=st.integers(3, 9),
    radius=st.one_of(st.none(), st.floats(0.5, 6.0)),
    data=st.data(),
)
def test_analysis_is_member_permutation_equivariant(seed, k, radius, data):
    forecast, obs, obs_forecast, std = random_problem(seed, k=k)
    perm = torch.tensor(data.draw(st.permutations(range(k))))
    cfg = {"inflation": 1.05, "radius": radius}
    dist = None if radius is None else ring_distances(5, torch.tensor([0.0, 1.5, 2.0, 4.0]))
    analysis = letkf_analysis(forecast, obs, obs_forecast, std, **cfg, distances=dist)
    permuted = letkf_analysis(forecast[perm], obs, obs_forecast[perm], std, **cfg, distances=dist)
    torch.testing.assert_close(permuted, analysis[perm], rtol=0, atol=1e-12)


@pytest.mark.parametrize("radius", [None, 2.5])
def test_inflation_scales_the_forecast_perturbations(radius):
    forecast, obs, obs_forecast, std = random_problem(3)
    dist = None if radius is None else ring_distances(5, torch.tensor([0.0, 1.0, 2.5, 3.0]))
    rho = 1.3
    inflated = letkf_analysis(
        forecast, obs, obs_forecast, std, inflation=rho, radius=radius, distances=dist
    )

    def widen(e: torch.Tensor) -> torch.Tensor:
        return e.mean(0) + rho * (e - e.mean(0))

    by_hand = letkf_analysis(
        widen(forecast), obs, widen(obs_forecast), std, radius=radius, distances=dist
    )
    torch.testing.assert_close(inflated, by_hand, rtol=0, atol=1e-12)
    assert not torch.allclose(inflated, letkf_analysis(forecast, obs, obs_forecast, std))


def test_uninformative_observations_leave_the_inflated_forecast():
    forecast, obs, obs_forecast, std = random_problem(4)
    out = letkf_analysis(forecast, obs, obs_forecast, std * 1e9, inflation=1.2)
    torch.testing.assert_close(
        out, forecast.mean(0) + 1.2 * (forecast - forecast.mean(0)), rtol=0, atol=1e-9
    )


def test_huge_radius_equals_global_etkf():
    forecast, obs, obs_forecast, std = random_problem(5)
    dist = ring_distances(5, torch.tensor([0.0, 1.0, 2.5, 3.0]))
    local = letkf_analysis(
        forecast, obs, obs_forecast, std, inflation=1.1, radius=1e9, distances=dist
    )
    torch.testing.assert_close(
        local,
        letkf_analysis(forecast, obs, obs_forecast, std, inflation=1.1),
        atol=1e-10,
        rtol=0,
    )


def test_each_local_analysis_is_an_etkf_with_tapered_errors():
    """Grid point ``n`` of the LETKF equals the ETKF that sees only the observations within the
    radius, with error variances divided by the taper (a per-point reference loop)."""
    forecast, obs, obs_forecast, std = random_problem(6, k=7, n=8, m=4)
    positions = torch.tensor([0.5, 1.0, 4.2, 6.0], dtype=F64)
    dist = ring_distances(8, positions)
    local = letkf_analysis(
        forecast, obs, obs_forecast, std, inflation=1.05, radius=2.6, distances=dist
    )
    taper = gaspari_cohn(dist, 2.6)
    for n in range(8):
        near = taper[n] > 0
        assert 0 < int(near.sum()) < 4  # every point sees some, none sees all
        reference = letkf_analysis(
            forecast,
            obs[near],
            obs_forecast[:, near],
            std[near] / taper[n, near].sqrt(),
            inflation=1.05,
        )
        torch.testing.assert_close(local[:, n], reference[:, n], rtol=0, atol=1e-12)


def test_grid_points_beyond_the_radius_are_unchanged():
    forecast, obs, obs_forecast, std = random_problem(7, k=5, n=10, m=1)
    dist = ring_distances(10, torch.tensor([2.0], dtype=F64))  # one observation at site 2
    out = letkf_analysis(forecast, obs, obs_forecast, std, radius=3.0, distances=dist)
    far = dist[:, 0] >= 3.0
    torch.testing.assert_close(out[:, far], forecast[:, far], rtol=0, atol=1e-12)
    assert (out[:, ~far] - forecast[:, ~far]).abs().min() > 1e-6


def test_gaspari_cohn_is_a_continuous_decreasing_taper():
    d = torch.linspace(0.0, 5.0, 5001, dtype=F64)
    taper = gaspari_cohn(d, 4.0)
    assert float(taper[0]) == 1.0 and bool((taper[d >= 4.0] == 0).all())
    assert bool((taper.diff() <= 1e-15).all())
    assert float(taper.diff().abs().max()) < 1e-3  # no jump at the half-width or the support
    assert float(gaspari_cohn(torch.tensor(2.0, dtype=F64), 4.0)) == pytest.approx(5 / 24)


@pytest.mark.parametrize(
    ("k", "inflation", "radius"), [(20, 1.04, None), (8, 1.05, 14.56)], ids=["ETKF", "LETKF"]
)
def test_lorenz96_filter_tracks_the_truth(k, inflation, radius):
    """All 40 variables observed with unit error every 0.05: the analysis error must stay near
    DAPPER's ~0.2, far below the observation error (1) and climatology (3.6)."""
    n, n_cycles, burn = 40, 300, 100
    truth = torch.as_tensor(simulate(8.0, n_cycles, seed=0, spinup=500).x.values[0])
    g = torch.Generator().manual_seed(1)
    obs = truth[1:] + torch.randn(n_cycles, n, generator=g, dtype=F64)
    initial = truth[0] + torch.randn(k, n, generator=g, dtype=F64)
    cfg = {"inflation": inflation, "radius": radius}
    dist = None if radius is None else ring_distances(n, torch.arange(n, dtype=F64))
    std = torch.ones(n, dtype=F64)
    ensemble, means, stds = initial, [], []
    for c in range(n_cycles):
        forecast = rk4_step(ensemble, 8.0, 0.05)
        ensemble = letkf_analysis(forecast, obs[c], forecast, std, **cfg, distances=dist)
        analysis_std, analysis_mean = torch.std_mean(ensemble, dim=-2)
        means.append(analysis_mean)
        stds.append(analysis_std)
    rmse = (torch.stack(means) - truth[1:]).square().mean(-1).sqrt()[burn:]
    spread = torch.stack(stds).square().mean(-1).sqrt()[burn:]
    assert float(rmse.mean()) < 0.3
    assert 0.7 < float(spread.mean() / rmse.mean()) < 1.5


def test_bad_input_raises():
    f, y, hf, std = random_problem(8)
    with pytest.raises(
        ConfigError, match=r"inflation must be a finite number in \[1.0, inf\), got 0.9"
    ):
        letkf_analysis(f, y, hf, std, inflation=0.9)
    with pytest.raises(ConfigError, match=r"inflation must be a finite number in .*, got nan"):
        letkf_analysis(f, y, hf, std, inflation=float("nan"))
    with pytest.raises(ConfigError, match=r"radius must be a finite number in \(0.0, inf\), got 0"):
        letkf_analysis(f, y, hf, std, radius=0, distances=torch.zeros(5, 4))
    with pytest.raises(ConfigError, match=r"radius = 2.0 needs distances"):
        letkf_analysis(f, y, hf, std, radius=2.0)
    with pytest.raises(ConfigError, match=r"distances were given but radius is None"):
        letkf_analysis(f, y, hf, std, distances=torch.zeros(5, 4))
    with pytest.raises(ShapeError, match=r"distances must have shape .* \(\.\.\., 5, 4\), got"):
        letkf_analysis(f, y, hf, std, radius=2.0, distances=torch.zeros(4, 5))
    with pytest.raises(ObservationError, match=r"distances must be finite and >= 0"):
        letkf_analysis(f, y, hf, std, radius=2.0, distances=-torch.ones(5, 4))
    with pytest.raises(ShapeError, match=r"K >= 2 members, got \(1, 5\)"):
        letkf_analysis(f[:1], y, hf[:1], std)
    with pytest.raises(ShapeError, match=r"obs_forecast must have shape .* K = 6 .* got \(5, 4\)"):
        letkf_analysis(f, y, hf[:5], std)
    with pytest.raises(ShapeError, match=r"obs must have shape \(\.\.\., M\) with M = 4 .* \(3,\)"):
        letkf_analysis(f, y[:3], hf, std)
    with pytest.raises(ObservationError, match=r"obs holds NaN"):
        letkf_analysis(f, torch.full((4,), float("nan"), dtype=F64), hf, std)
    with pytest.raises(ObservationError, match=r"obs_std must be finite and > 0"):
        letkf_analysis(f, y, hf, torch.zeros(4, dtype=F64))
    with pytest.raises(ShapeError, match=r"forecast must be a floating torch.Tensor"):
        letkf_analysis(np.zeros((3, 2)), y, hf, std)
