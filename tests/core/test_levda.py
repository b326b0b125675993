"""LEVDA window solve: exact linear-Gaussian answers, RML statistics, properties, bad input."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.models import (
    F64,
    Bump,
    LinearSurrogate,
    MLPSurrogate,
    NaNAbove,
    nonlinear_problem,
    random_ensemble,
    random_window,
    torch_lbfgs_member,
)
from xlevda.core.dynamics import observe, propagate, trajectory
from xlevda.core.excess import observed_excess, unexplained_variance
from xlevda.core.gauss_newton import linearization
from xlevda.core.inflation import Inflation
from xlevda.core.lbfgs import lbfgs
from xlevda.core.levda import solve_window
from xlevda.core.members import RandomizedMaximumLikelihood as RML
from xlevda.core.members import SharedCost
from xlevda.core.objective import WindowObjective
from xlevda.core.optim import GaussNewtonConfig, LBFGSConfig
from xlevda.core.subspace import EnsembleSubspace
from xlevda.core.window import ObsWindow
from xlevda.errors import ConfigError, ObservationError, ShapeError, VariableError

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")

TIGHT_LBFGS = LBFGSConfig(max_iter=400, tol_grad=1e-9, tol_cost=0.0)
TIGHT_GN = GaussNewtonConfig(max_iter=100, tol_grad=1e-8, tol_cost=0.0)
TIGHT = {
    "lbfgs": {"optimizer": TIGHT_LBFGS},
    "gn": {"optimizer": TIGHT_GN},
    "gn-pointwise": {"optimizer": dataclasses.replace(TIGHT_GN, jacobian="pointwise")},
}
PROPERTY = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def closed_form(sur: LinearSurrogate, z_b, window: ObsWindow, tendency: bool, rho: float = 1.0):
    """Eq. 19's minimizer in ensemble space and the Kalman smoother in state space.

    Built from the model matrices (``obs_matrix``), not from the rollout code.
    """
    g_z, h0 = sur.obs_matrix(window, tendency)
    keep = window.weight.flatten() > 0
    g_z, h0 = g_z[keep], h0[keep]
    y, w = window.values.flatten()[keep], window.weight.flatten()[keep]
    K = z_b.shape[0]
    zbar = z_b.mean(0)
    p_z = rho * (z_b - zbar).T / math.sqrt(K - 1)  # (d_z, K)
    d = y - g_z @ zbar - h0
    g = g_z @ p_z
    a_mat = torch.eye(K, dtype=F64) + g.T @ (w[:, None] * g)
    alpha = torch.linalg.solve(a_mat, g.T @ (w * d))
    b = p_z @ p_z.T
    gain = b @ g_z.T @ torch.linalg.inv(g_z @ b @ g_z.T + torch.diag(1 / w))
    return SimpleNamespace(
        alpha=alpha,
        z_map=zbar + p_z @ alpha,
        z_post=zbar + gain @ d,
        cov_post=(torch.eye(len(zbar), dtype=F64) - gain @ g_z) @ b,
        p_z=p_z,
        a_inv=torch.linalg.inv(a_mat),
        g=g,
        w=w,
    )


# --- 1. linear-Gaussian exactness ------------------------------------------------------------


@pytest.mark.parametrize("method", ["lbfgs", "gn", "gn-pointwise"])
@pytest.mark.parametrize("K", [4, 8])
def test_linear_gaussian_equals_closed_form(method, K):
    """Every member equals the minimizer of eq. 19; for a full-rank ensemble (K > d_z) the
    analysis also equals the Kalman smoother / 4D-Var posterior mean with B = P_z P_z^T."""
    sur = LinearSurrogate(d_s=3, d_u=2, n_ch=2)
    window = random_window(2, steps=(0, 1, 3), fracs=(0.0, 0.4, 0.7))
    z_b = random_ensemble(K, 5)
    res = solve_window(sur, z_b, window, **TIGHT[method], param_tendency=sur.tendency)
    ref = closed_form(sur, z_b, window, tendency=True)
    assert res.converged.all() and not res.failed.any()
    assert res.rank == min(K - 1, 5)
    torch.testing.assert_close(res.alpha, ref.alpha.expand(K, K), atol=1e-6, rtol=0)
    torch.testing.assert_close(res.z_analysis, ref.z_map.expand(K, 5), atol=1e-6, rtol=0)
    if K > 5:
        torch.testing.assert_close(res.z_analysis[0], ref.z_post, atol=1e-6, rtol=0)
    assert res.n_obs == int((window.weight > 0).sum())
    assert (res.misfit < res.misfit_background).all()


def test_static_parameters_differ_from_tendency():
    """``param_tendency=None`` is G = 0, and matches the closed form built with G = 0."""
    sur = LinearSurrogate(d_s=3, d_u=2, n_ch=2)
    window, z_b = random_window(2), random_ensemble(8, 5)
    res = solve_window(sur, z_b, window, **TIGHT["gn"])
    ref = closed_form(sur, z_b, window, tendency=False)
    torch.testing.assert_close(res.z_analysis[0], ref.z_post, atol=1e-6, rtol=0)
    moving = closed_form(sur, z_b, window, tendency=True)
    assert (ref.z_post - moving.z_post).abs().max() > 1e-3


# --- 2. randomized maximum likelihood on a linear-Gaussian problem ---------------------------


def _rml_problem(K: int):
    sur = LinearSurrogate(d_s=3, d_u=1, n_ch=2, seed=4)
    window = random_window(2, steps=(0, 2), fracs=(0.0, 0.5), n_points=4, missing=0.0, seed=5)
    return sur, window, random_ensemble(K, 4, seed=6)


@pytest.mark.parametrize("rho", [1.0, 1.5])
def test_randomized_members_sample_the_kalman_posterior(rho):
    """Given the background ensemble (a_j = sqrt(K-1) e_j fixed, sum_j P_z e_j = 0), member j is
    zbar + P_z A^-1 (a_j + G^T R^-1 (d + eta_j)) with A = I + G^T R^-1 G, so exactly:

    - E[mean] = MAP = Kalman mean, and Cov[mean] = P_z A^-1 G^T R^-1 G A^-1 P_z^T / K <= P_a / K;
    - E[sample cov] = P_z A^-2 P_z^T + P_z A^-1 G^T R^-1 G A^-1 P_z^T = P_z A^-1 P_z^T = P_a.

    Tolerances, 4 times the root-mean-square error: E|mean - mean_a|^2 <= tr(P_a) / K, so
    |mean - mean_a| <= 4 sqrt(tr(P_a) / K); writing cov - P_a = X + X^T + (N - Q) (prior x noise
    cross terms and the sample-covariance error of the noise part Q), E|X|_F^2 =
    tr(Pi) tr(Q) / (K-1) and E|N - Q|_F^2 <= 2 tr(Q)^2 / K give E|cov - P_a|_F^2 <=
    2 tr(P_a)^2 / (K-1), so |cov - P_a|_F <= 4 tr(P_a) / sqrt(K) (about 2.8 times the rms).
    With inflation rho the posterior is the Kalman posterior of B = rho^2 P_z P_z^T, not rho^2
    times the uninflated posterior: inflation widens the prior, never the posterior directly."""
    K = 2000
    sur, window, z_b = _rml_problem(K)
    res = solve_window(
        sur,
        z_b,
        window,
        inflation=Inflation(multiplicative=rho),
        member_mode=RML(),
        noise_seed=11,
        optimizer=GaussNewtonConfig(tol_grad=1e-8, tol_cost=0.0),
    )
    assert res.converged.all()
    ref = closed_form(sur, z_b, window, tendency=False, rho=rho)
    mean = res.z_analysis.mean(0)
    cov = torch.cov(res.z_analysis.T)
    tr = torch.trace(ref.cov_post)
    assert (mean - ref.z_post).norm() <= 4 * (tr / K).sqrt()
    assert (cov - ref.cov_post).norm() <= 4 * tr / math.sqrt(K)
    # the deterministic part is exact: P_z A^-1 G^T R^-1 G A^-1 P_z^T + P_z A^-2 P_z^T = P_a
    prior_part = ref.p_z @ ref.a_inv @ ref.a_inv @ ref.p_z.T
    noise_part = ref.p_z @ ref.a_inv @ ref.g.T @ (ref.w[:, None] * ref.g) @ ref.a_inv @ ref.p_z.T
    torch.testing.assert_close(prior_part + noise_part, ref.cov_post, atol=1e-10, rtol=1e-8)
    if rho != 1.0:
        plain = closed_form(sur, z_b, window, tendency=False)
        assert (rho**2 * plain.cov_post - ref.cov_post).norm() > 0.1 * ref.cov_post.norm()


def test_warm_start_collapses_to_the_map():
    """The paper's mode on a convex problem: every member converges to the same MAP."""
    sur, window, z_b = _rml_problem(200)
    res = solve_window(sur, z_b, window, **TIGHT["gn"])
    ref = closed_form(sur, z_b, window, tendency=False)
    torch.testing.assert_close(res.z_analysis, ref.z_post.expand(200, 4), atol=1e-6, rtol=0)
    assert res.z_analysis.std(0).max() < 1e-6


def test_randomized_is_reproducible_and_seeded():
    sur, window, z_b = _rml_problem(8)

    def run(seed):
        return solve_window(sur, z_b, window, member_mode=RML(), noise_seed=seed, **TIGHT["gn"])

    torch.testing.assert_close(run(3).z_analysis, run(3).z_analysis, atol=0, rtol=0)
    assert (run(3).z_analysis - run(4).z_analysis).abs().max() > 1e-3
    gen = torch.Generator().manual_seed(3)
    first, second = run(gen).z_analysis, run(gen).z_analysis  # a generator advances
    assert (first - second).abs().max() > 1e-3


# --- 2b. the EnKF start ------------------------------------------------------------------------


@pytest.mark.parametrize(("K", "sigma"), [(4, 0.0), (8, 0.3), (4, 0.3)])
def test_enkf_start_is_each_members_minimizer_on_a_linear_model(K, sigma):
    """An affine decoder makes the secant fit exact, so the EnKF start is the minimizer of each
    randomized member's cost, and the solve from it stays there; also with additive inflation,
    whose perturbations are not centred (with K = 4 <= d_z = 5 the rank is then K)."""
    sur = LinearSurrogate(d_s=3, d_u=2, n_ch=2)
    window, z_b = random_window(2), random_ensemble(K, 5)
    kw = {
        "inflation": Inflation(multiplicative=1.2, additive=sigma),
        "inflation_seed": 5,
        "noise_seed": 2,
        "param_tendency": sur.tendency,
    }
    rank = WindowObjective.build(sur, z_b, window, **kw).subspace.rank
    assert rank == (K if sigma > 0 and K <= 5 else min(K - 1, 5))
    ref = solve_window(
        sur, z_b, window, member_mode=RML(start="background"), **kw, **TIGHT["lbfgs"]
    )
    objective = WindowObjective.build(sur, z_b, window, member_mode=RML(), **kw)
    start = objective.subspace.state_reduced(objective.enkf_start().x)
    torch.testing.assert_close(start, ref.z_analysis, atol=1e-7, rtol=0)
    enkf = RML(start="enkf")
    res = solve_window(sur, z_b, window, member_mode=enkf, **kw, **TIGHT["lbfgs"])
    torch.testing.assert_close(res.z_analysis, ref.z_analysis, atol=1e-7, rtol=0)
    # verified as each member's minimum, so no optimizer iteration runs
    assert res.n_iter.max() == 0 < ref.n_iter.max()
    assert res.converged.all() and not res.failed.any()
    torch.testing.assert_close(res.cost, ref.cost, atol=1e-9, rtol=1e-9)
    assert objective.enkf_start(1e-12).exact.all()  # the match is at float64 round-off


def _bump_problem(K: int):
    """A bump at x = 0.5 observed at 21 points in [-2, 2] (noise 0.05); background members
    spread evenly over [-2, 2]."""
    sur = Bump()
    x = torch.linspace(-2, 2, 21, dtype=F64)
    points = torch.stack([x, torch.zeros_like(x)], -1).unsqueeze(0)
    clean = sur.decode_prepared(torch.tensor([[0.5]], dtype=F64), sur.prepare_points(points))
    noise = 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    weight = torch.full_like(clean, 1 / 0.05**2)
    window = ObsWindow(torch.tensor([0]), torch.zeros(1, dtype=F64), points, clean + noise, weight)
    return sur, window, torch.linspace(-2, 2, K, dtype=F64).unsqueeze(-1)


@pytest.mark.parametrize("K", [20, 50])
def test_enkf_start_crosses_a_non_convex_cost(K):
    """Members whose bump does not overlap the observed one see no gradient towards it: from
    their background members a third of them stall, from the EnKF start all find it."""
    sur, window, z_b = _bump_problem(K)
    found = {}
    for start in ("background", "enkf"):
        res = solve_window(sur, z_b, window, member_mode=RML(start=start), noise_seed=1)
        found[start] = int(((res.z_analysis - 0.5).abs() < 0.1).sum())
    assert found["background"] <= 0.8 * K
    assert found["enkf"] == K


@PROPERTY
@given(seed=st.integers(0, 10_000))
def test_enkf_start_never_raises_a_members_starting_cost(seed):
    """Each member starts where its own cost is lower: the linear analysis, or its background."""
    sur, window, z_b = nonlinear_problem(K=6, seed=seed)
    objective = WindowObjective.build(sur, z_b, window, member_mode=RML(), noise_seed=seed)
    members = torch.arange(6)
    background, enkf = objective.start, objective.enkf_start().x
    cost_b, cost_e = objective.cost(background, members), objective.cost(enkf, members)
    moved = (enkf != background).any(-1)
    assert (cost_e[moved] < cost_b[moved]).all()
    torch.testing.assert_close(enkf[~moved], background[~moved], atol=0, rtol=0)


def test_enkf_start_moves_members_of_a_nonlinear_problem():
    sur, window, z_b = nonlinear_problem(K=6)
    objective = WindowObjective.build(sur, z_b, window, member_mode=RML(), noise_seed=2)
    start = objective.enkf_start(1e-4)
    assert (start.x != objective.start).any(-1).sum() >= 3
    # the secant model does not predict the observations there: no member is taken as exact
    assert not start.exact.any()
    torch.testing.assert_close(start.cost, objective.cost(start.x, torch.arange(6)))
    at_x = objective.observe(objective.subspace.state_reduced(start.x))
    torch.testing.assert_close(start.decoded, at_x, atol=0, rtol=0)


@pytest.mark.parametrize("tol", [1e-4, 1e-2])
def test_members_left_to_the_optimizer_are_solved_as_in_one_batch(tol):
    """Members not verified at their linear start are optimized as a subset: each ends where
    a batch of all members from the same starts ends (members are independent)."""
    sur, window, z_b = nonlinear_problem(K=6)
    kw = {"member_mode": RML(), "noise_seed": 2}
    objective = WindowObjective.build(sur, z_b, window, **kw)
    start = objective.enkf_start(tol)
    cfg = LBFGSConfig(tol_cost=tol)
    res = solve_window(sur, z_b, window, optimizer=cfg, **kw)
    full = lbfgs(objective.cost, start.x, cfg)
    todo = ~start.exact
    expect = torch.where(todo.unsqueeze(-1), full.x, start.x)
    z_ref = objective.subspace.state_reduced(expect)
    torch.testing.assert_close(res.z_analysis, z_ref, atol=1e-10, rtol=1e-8)
    assert (res.n_iter[~todo] == 0).all() and (res.n_iter[todo] == full.n_iter[todo]).all()


# --- 2c. the unexplained variance --------------------------------------------------------------


@PROPERTY
@given(seed=st.integers(0, 10_000))
def test_unexplained_variance_equals_a_loop(seed):
    """Against a plain per-channel loop over the observed values and numpy's least squares:
    the level at the step times of the terms fitted on [theta (1 - theta)]^2 (the plain mean
    where the fractions do not vary or there are fewer than three values), the intercept's
    variance per unit term variance and the mean sigma^2; a member that is not finite at an
    observation is left out; a channel without observations gives NaN."""
    g = torch.Generator().manual_seed(seed)
    window = random_window(3, missing=0.4, seed=seed)
    weight = window.weight.clone()
    weight[..., 2] = 0.0
    window = ObsWindow(window.step, window.frac, window.points, window.values, weight)
    decoded = torch.randn(6, *window.values.shape, generator=g, dtype=F64)
    t, p, c = (int(i[0]) for i in torch.nonzero(weight > 0, as_tuple=True))
    decoded[5, t, p, c] = torch.nan
    got = unexplained_variance(decoded, window)
    excess = observed_excess(decoded, window)
    for c in range(3):
        terms, shape, sigma2 = [], [], []
        for t, p in zip(*torch.nonzero(weight[..., c] > 0, as_tuple=True), strict=True):
            members = decoded[:5, t, p, c]
            r2 = (window.values[t, p, c] - members.mean()) ** 2
            terms.append(float(r2 + members.var() - 1 / weight[t, p, c]))
            shape.append(float(window.frac[t] * (1 - window.frac[t])) ** 2)
            sigma2.append(float(1 / weight[t, p, c]))
        assert int(excess.count[c]) == len(terms)
        if not terms:
            assert math.isnan(got[c]) and math.isnan(excess.mean[c])
            continue
        e, x = np.array(terms), np.array(shape)
        design = np.stack([np.ones_like(x), x], 1)
        if not (len(e) > 2 and np.ptp(x) > 1e-9):
            design = design[:, :1]
        coef, *_ = np.linalg.lstsq(design, e, rcond=None)
        leverage = np.linalg.inv(design.T @ design)[0, 0]
        level = coef[0]
        assert abs(excess.mean[c].item() - level) <= 1e-9 * max(1.0, abs(level))
        assert abs(excess.leverage[c].item() - leverage) <= 1e-9 * leverage
        assert abs(excess.noise[c].item() - np.mean(sigma2)) <= 1e-12 * np.mean(sigma2)
        assert abs(got[c].item() - max(level, 0.0)) <= 1e-9 * max(1.0, abs(level))


def test_excess_level_removes_the_time_interpolation_error():
    """Terms that grow like [theta (1 - theta)]^2 between steps (eq. 17's interpolation
    error) give back their level at the steps, not their mean."""
    frac = torch.linspace(0, 0.95, 20, dtype=F64)
    n_pts = 50
    window = ObsWindow(
        torch.zeros(20, dtype=torch.int64),
        frac,
        torch.zeros(20, n_pts, 1, dtype=F64),
        torch.zeros(20, n_pts, 1, dtype=F64),
        torch.ones(20, n_pts, 1, dtype=F64),  # sigma^2 = 1
    )
    # two members at +-d: spread^2 = 2 d^2, ybar = 0, y = 0 -> term = 2 d^2 - 1
    target = 0.3 + 40.0 * (frac * (1 - frac)) ** 2  # level 0.3 at the steps
    d = ((target + 1) / 2).sqrt()[:, None, None].expand(20, n_pts, 1)
    decoded = torch.stack([d, -d])
    excess = observed_excess(decoded, window)
    assert abs(excess.mean.item() - 0.3) < 1e-10
    assert abs(float(target.mean()) - excess.mean.item()) > 0.7  # not the plain mean


def test_unexplained_variance_is_the_error_the_spread_leaves_out():
    """A perturbed-observation analysis of a static scalar state per site (prior variance 1),
    observed 4 times with noise 1, while the truth at each observation also holds an error of
    variance 0.5 that the state cannot represent: the estimate matches the mean square error of
    the analysis mean at the observations less its spread (about 0.39 here), which the same
    formula with the spread subtracted would miss by twice the spread (0.4)."""
    g = torch.Generator().manual_seed(0)
    K, M, P = 20, 4, 20_000

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=F64)

    x_t, e = randn(P), 0.5**0.5 * randn(M, P)
    y = x_t + e + randn(M, P)
    x_b, y_k = randn(K, P), y + randn(K, M, P)
    x_a = (x_b + y_k.sum(1)) / (1 + M)  # posterior of prior N(0, 1) and M obs of variance 1
    decoded = x_a[:, None, :, None].expand(K, M, P, 1)
    window = ObsWindow(
        torch.arange(M),
        torch.zeros(M, dtype=F64),
        torch.zeros(M, P, 2, dtype=F64),
        y.unsqueeze(-1),
        torch.ones(M, P, 1, dtype=F64),
    )
    spread2 = x_a.var(0).mean()
    target = ((x_t + e - x_a.mean(0)) ** 2).mean() - spread2
    got = unexplained_variance(decoded, window).item()
    assert spread2 > 0.18 and target > 0.3
    assert abs(got - target) < 0.02, (got, float(target))


# --- 3. batched L-BFGS == per-member torch.optim.LBFGS on a nonlinear surrogate -------------


def test_batched_lbfgs_equals_torch_lbfgs_loop():
    sur, window, z_b = nonlinear_problem()
    objective = WindowObjective.build(sur, z_b, window)
    res = solve_window(sur, z_b, window, **TIGHT["lbfgs"])
    assert res.converged.all()
    for j in range(z_b.shape[0]):
        cost, z = torch_lbfgs_member(objective, j)
        assert abs(res.cost[j].item() - cost) <= 1e-6 * abs(cost)
        torch.testing.assert_close(res.z_analysis[j], z, atol=1e-5, rtol=0)


# --- 6. Gauss-Newton reaches the L-BFGS minimum ----------------------------------------------


@pytest.mark.parametrize("method", ["gn", "gn-pointwise"])
@pytest.mark.parametrize("mode", [SharedCost(), RML()])
def test_gauss_newton_equals_lbfgs_on_nonlinear_problem(mode, method):
    sur, window, z_b = nonlinear_problem()
    kw = {"member_mode": mode, "noise_seed": 1}
    lb = solve_window(sur, z_b, window, **kw, **TIGHT["lbfgs"])
    gn = solve_window(sur, z_b, window, **kw, **TIGHT[method])
    assert lb.converged.all() and gn.converged.all()
    torch.testing.assert_close(gn.cost, lb.cost, atol=0, rtol=1e-8)
    torch.testing.assert_close(gn.z_analysis, lb.z_analysis, atol=1e-6, rtol=0)


def test_structured_jacobian_equals_autodiff():
    sur, window, z_b = nonlinear_problem()
    for mode in (SharedCost(), RML()):
        objective = WindowObjective.build(sur, z_b, window, member_mode=mode, noise_seed=2)
        members = torch.tensor([0, 3, 7])
        beta = objective.start[members] + 0.1
        r, jac = objective.linearize_pointwise(beta, members)
        r_ref, jac_ref = linearization(objective.residual)(beta, members)
        torch.testing.assert_close(r, r_ref)
        torch.testing.assert_close(jac, jac_ref)


def test_objective_gradcheck_and_exact_reduction():
    sur, window, z_b = nonlinear_problem()
    for mode in (SharedCost(), RML()):
        objective = WindowObjective.build(
            sur, z_b, window, inflation=Inflation(1.2), member_mode=mode, noise_seed=2
        )
        members = torch.tensor([1, 4])
        beta = (objective.start[members] + 0.05).requires_grad_(True)
        assert torch.autograd.gradcheck(objective.cost, (beta, members))
        # the cost in reduced coordinates is eq. 19 at the lifted alpha
        beta_all = objective.start + 0.3
        alpha = objective.subspace.lift(beta_all, objective.centre)
        every = torch.arange(8)
        torch.testing.assert_close(
            objective.cost_full(alpha, every), objective.cost(beta_all, every)
        )
        torch.testing.assert_close(
            objective.subspace.state(alpha), objective.subspace.state_reduced(beta_all)
        )


# --- 4. properties -----------------------------------------------------------------------------


@PROPERTY
@given(seed=st.integers(0, 10_000), K=st.integers(3, 7))
def test_permuting_members_permutes_the_analysis(seed, K):
    sur, window, z_b = nonlinear_problem(K=K, seed=seed % 50)
    perm = torch.randperm(K, generator=torch.Generator().manual_seed(seed))
    a = solve_window(sur, z_b, window, **TIGHT["gn"])
    b = solve_window(sur, z_b[perm], window, **TIGHT["gn"])
    torch.testing.assert_close(b.z_analysis, a.z_analysis[perm], atol=1e-7, rtol=0)
    torch.testing.assert_close(b.cost, a.cost[perm], atol=1e-9, rtol=1e-9)


@PROPERTY
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([0.0, 1e-14]))
def test_infinite_observation_error(seed, scale):
    """Weights -> 0 (errors -> infinity): randomized members stay at their background members
    (exactly at weight 0); warm-start members all go to the ensemble mean (the prior's MAP)."""
    sur, window, z_b = nonlinear_problem(seed=seed % 50)
    weak = ObsWindow(window.step, window.frac, window.points, window.values, scale * window.weight)
    rml = solve_window(sur, z_b, weak, member_mode=RML(), noise_seed=seed, **TIGHT["gn"])
    warm = solve_window(sur, z_b, weak, **TIGHT["gn"])
    torch.testing.assert_close(rml.z_analysis, z_b, atol=1e-6, rtol=0)
    torch.testing.assert_close(warm.z_analysis, z_b.mean(0).expand_as(z_b), atol=1e-6, rtol=0)


@PROPERTY
@given(seed=st.integers(0, 10_000))
def test_duplicated_observation_equals_half_the_variance(seed):
    sur, window, z_b = nonlinear_problem(seed=seed % 50)
    twice = ObsWindow(
        window.step,
        window.frac,
        window.points.repeat(1, 2, 1),
        window.values.repeat(1, 2, 1),
        window.weight.repeat(1, 2, 1),
    )
    doubled = ObsWindow(window.step, window.frac, window.points, window.values, 2 * window.weight)
    a = solve_window(sur, z_b, twice, **TIGHT["gn"])
    b = solve_window(sur, z_b, doubled, **TIGHT["gn"])
    torch.testing.assert_close(a.z_analysis, b.z_analysis, atol=1e-8, rtol=0)
    torch.testing.assert_close(a.cost, b.cost, atol=1e-9, rtol=1e-9)


@PROPERTY
@given(k=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_on_step_observations_equal_decoded_trajectory(k, seed):
    """frac = 0 at step k decodes state k of the rollout; frac -> 1 from step k - 1 tends to it
    (eq. 17 at a = 1 is exactly one Euler step)."""
    sur, window, z_b = nonlinear_problem(seed=seed % 50)
    points = window.points[:1]
    traj = trajectory(sur, z_b, 5)  # (K, 6, d_z)
    zeros, ones = torch.zeros(1, 6, 2, dtype=F64), torch.ones(1, 6, 2, dtype=F64)
    frac0, frac1 = torch.zeros(1, dtype=F64), torch.tensor([1 - 1e-12], dtype=F64)
    on_step = ObsWindow(torch.tensor([k]), frac0, points, zeros, ones)
    almost = ObsWindow(torch.tensor([k - 1]), frac1, points, zeros, ones)
    prepared = sur.prepare_points(points)
    direct = sur.decode(traj[:, k, : sur.latent_dim], points[0])
    torch.testing.assert_close(observe(sur, z_b, on_step, prepared)[:, 0], direct)
    torch.testing.assert_close(
        observe(sur, z_b, almost, prepared)[:, 0], direct, atol=1e-10, rtol=0
    )


# --- 5. NaN members ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lbfgs", "gn", "gn-pointwise"])
def test_nan_member_fails_and_keeps_background(method):
    sur, window, z_b = nonlinear_problem()
    z_b = z_b.clone()
    z_b[:, 0] = 0.1 * z_b[:, 0]
    z_b[2, 0] = 3.0
    nan_sur = NaNAbove(sur, threshold=2.0)
    res = solve_window(nan_sur, z_b, window, **TIGHT[method])
    clean = solve_window(sur, z_b, window, **TIGHT[method])
    assert res.failed.tolist() == [j == 2 for j in range(8)]
    assert not res.converged[2] and torch.isnan(res.misfit[2])
    assert torch.equal(res.z_analysis[2], z_b[2])
    torch.testing.assert_close(res.alpha[2], math.sqrt(7) * torch.eye(8, dtype=F64)[2])
    others = torch.arange(8) != 2
    assert res.converged[others].all()
    torch.testing.assert_close(res.z_analysis[others], clean.z_analysis[others], atol=1e-7, rtol=0)


# --- subspace, inflation, propagation ----------------------------------------------------------


def test_start_recovers_background_members_and_rank():
    z_b = random_ensemble(6, 5)
    sub = EnsembleSubspace.from_ensemble(z_b)
    assert sub.rank == 5 and sub.size == 6
    torch.testing.assert_close(sub.state(math.sqrt(5) * torch.eye(6, dtype=F64)), z_b)
    torch.testing.assert_close(sub.coords.T @ sub.coords, torch.eye(5, dtype=F64))
    torch.testing.assert_close(sub.coords @ sub.basis, sub.perturbations)
    few = EnsembleSubspace.from_ensemble(z_b[:3])
    assert few.rank == 2  # K - 1 directions: perturbations sum to zero


def test_inflation():
    z_b = random_ensemble(6, 5)
    plain = EnsembleSubspace.from_ensemble(z_b)
    wide = EnsembleSubspace.from_ensemble(z_b, Inflation(multiplicative=2.0))
    torch.testing.assert_close(wide.perturbations, 2 * plain.perturbations)
    torch.testing.assert_close(wide.mean, plain.mean)
    a = EnsembleSubspace.from_ensemble(z_b, Inflation(additive=0.1), seed=5)
    b = EnsembleSubspace.from_ensemble(z_b, Inflation(additive=0.1), seed=5)
    c = EnsembleSubspace.from_ensemble(z_b, Inflation(additive=0.1), seed=6)
    torch.testing.assert_close(a.perturbations, b.perturbations, atol=0, rtol=0)
    assert (a.perturbations - c.perturbations).abs().max() > 1e-3
    eps = (a.perturbations - plain.perturbations) * math.sqrt(5)
    assert 0.05 < eps.std().item() < 0.2
    assert a.rank == 5


def test_inflation_widens_the_prior_not_the_posterior():
    """With no observations randomized members are the inflated background members."""
    sur, _, z_b = nonlinear_problem()
    empty = ObsWindow(
        torch.zeros(0, dtype=torch.int64),
        torch.zeros(0, dtype=F64),
        torch.zeros(0, 1, 2, dtype=F64),
        torch.zeros(0, 1, 2, dtype=F64),
        torch.zeros(0, 1, 2, dtype=F64),
        n_steps=3,
    )
    mean = z_b.mean(0)
    for method in ("lbfgs", "gn"):
        rml = solve_window(
            sur,
            z_b,
            empty,
            inflation=Inflation(multiplicative=2.0),
            member_mode=RML(),
            **TIGHT[method],
        )
        torch.testing.assert_close(rml.z_analysis, mean + 2 * (z_b - mean))
        warm = solve_window(sur, z_b, empty, **TIGHT[method])
        torch.testing.assert_close(warm.z_analysis, mean.expand_as(z_b))
        assert rml.n_obs == 0 and (rml.misfit == 0).all()


def test_trajectory_and_propagate():
    sur, _, z_b = nonlinear_problem()
    traj = trajectory(sur, z_b, 5, param_tendency=lambda u: -u)
    assert traj.shape == (8, 6, 5)
    torch.testing.assert_close(traj[:, 0], z_b)
    torch.testing.assert_close(traj[:, 1, 4:], z_b[:, 4:] * (1 - 0.2))  # u' = -u, dt = 0.2
    torch.testing.assert_close(propagate(sur, z_b, 5, lambda u: -u), traj[:, -1])
    torch.testing.assert_close(propagate(sur, propagate(sur, z_b, 2), 3), propagate(sur, z_b, 5))


def test_float32_default_solve():
    sur32 = MLPSurrogate(d_s=4, d_u=1, n_ch=2, seed=3)
    for name in ("f1", "f2", "d1", "d1s", "d2", "_dt"):
        setattr(sur32, name, getattr(sur32, name).float())
    _, window, z_b = nonlinear_problem()
    res = solve_window(sur32, z_b.float(), window)
    ref = solve_window(nonlinear_problem()[0], z_b, window, **TIGHT["gn"])
    assert res.z_analysis.dtype == torch.float32 and res.converged.all()
    torch.testing.assert_close(res.z_analysis.double(), ref.z_analysis, atol=2e-3, rtol=0)


# --- bad input ---------------------------------------------------------------------------------


def _window(**change):
    fields = {
        "step": torch.tensor([0, 2]),
        "frac": torch.tensor([0.0, 0.5], dtype=F64),
        "points": torch.zeros(2, 3, 2, dtype=F64),
        "values": torch.zeros(2, 3, 2, dtype=F64),
        "weight": torch.ones(2, 3, 2, dtype=F64),
    }
    fields.update(change)
    return ObsWindow(**fields)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"step": torch.tensor([0.0, 2.0])}, ShapeError, r"step must be an int64 tensor"),
        ({"step": torch.tensor([0, -1])}, ObservationError, r"step must be >= 0, got -1"),
        ({"frac": torch.tensor([0.0, 1.0], dtype=F64)}, ObservationError, r"\[0, 1\), got 1.0"),
        ({"frac": torch.tensor([0.0, -0.1], dtype=F64)}, ObservationError, r"got -0.1"),
        ({"frac": torch.zeros(3, dtype=F64)}, ShapeError, r"shapes disagree"),
        ({"points": torch.zeros(2, 3, dtype=F64)}, ShapeError, r"points must be a floating"),
        ({"values": torch.zeros(2, 4, 2, dtype=F64)}, ShapeError, r"shapes disagree"),
        ({"weight": torch.ones(2, 3, 1, dtype=F64)}, ShapeError, r"weight has shape \(2, 3, 1\)"),
        (
            {"weight": -torch.ones(2, 3, 2, dtype=F64)},
            ObservationError,
            r"weight must be finite and >= 0.*got -1.0",
        ),
        (
            {"weight": torch.full((2, 3, 2), math.inf, dtype=F64)},
            ObservationError,
            r"weight must be finite",
        ),
        (
            {"values": torch.full((2, 3, 2), math.nan, dtype=F64)},
            ObservationError,
            r"values is not finite at \(time, point, channel\) = \(0, 0, 0\)",
        ),
        (
            {"points": torch.full((2, 3, 2), math.nan, dtype=F64)},
            ObservationError,
            r"points must be finite",
        ),
        ({"n_steps": 2}, ConfigError, r"n_steps=2 is out of range: .* >= max\(step\) \+ 1 = 3"),
    ],
)
def test_bad_window(change, error, match):
    with pytest.raises(error, match=match):
        _window(**change)


def test_nan_values_without_weight_are_missing():
    values = torch.zeros(2, 3, 2, dtype=F64)
    values[0, 1] = math.nan
    weight = torch.ones(2, 3, 2, dtype=F64)
    weight[0, 1] = 0.0
    window = _window(values=values, weight=weight)
    assert window.n_obs == 10 and window.length == 3
    sur, _, z_b = nonlinear_problem()
    res = solve_window(sur, z_b, window, **TIGHT["gn"])
    assert torch.isfinite(res.z_analysis).all()


V1 = torch.zeros(2, 3, 1, dtype=F64)


def _broken_decoder(sur):
    """A surrogate whose decoder forgets the point dimension."""
    broken = MLPSurrogate(sur.latent_dim, sur.param_dim, sur.schema.n_channels, seed=3)
    broken.decode_prepared = lambda s, prepared: s
    return broken


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda s, w, z: solve_window(s, z[:1], w),
            ConfigError,
            r"members K=1: LEVDA needs at least 2",
        ),
        (
            lambda s, w, z: solve_window(s, z[:, :4], w),
            ShapeError,
            r"z_background has shape \(8, 4\); expected \(K, d_z\) .* = 4 \+ 1 = 5",
        ),
        (
            lambda s, w, z: solve_window(s, z.int(), w),
            ShapeError,
            r"z_background must be a floating tensor",
        ),
        (
            lambda s, w, z: solve_window(s, torch.where(z > 10, z, z / 0.0 * 0.0), w),
            VariableError,
            r"z_background is not finite for member 0",
        ),
        (
            lambda s, w, z: solve_window(s, z[:1].expand(3, 5), w),
            ConfigError,
            r"background ensemble has no spread: all K=3 members are equal",
        ),
        (
            lambda s, w, z: solve_window(s, z, _window(points=torch.zeros(2, 3, 3, dtype=F64))),
            ShapeError,
            r"do not fit the surrogate: expected \(T_o, P, 2\) and \(T_o, P, 2\)",
        ),
        (
            lambda s, w, z: solve_window(s, z, _window(values=V1, weight=V1 + 1)),
            ShapeError,
            r"values \(2, 3, 1\) do not fit",
        ),
        (
            lambda s, w, z: solve_window(s, z, w, optimizer="lbfgs"),
            ConfigError,
            r"optimizer='lbfgs' is invalid",
        ),
        (
            lambda s, w, z: solve_window(s, z, w, member_mode="rml"),
            ConfigError,
            r"member_mode='rml' is invalid: use SharedCost\(\) or RandomizedMaximumLikelihood\(\)",
        ),
        (
            lambda s, w, z: solve_window(s, z, w, noise_seed="abc"),
            ConfigError,
            r"noise_seed must be an int >= 0 or a torch\.Generator, got 'abc'",
        ),
        (
            lambda s, w, z: solve_window(s, z, w, noise_seed=True),
            ConfigError,
            r"noise_seed must be an int >= 0 or a torch\.Generator, got True",
        ),
        (
            lambda s, w, z: solve_window(s, z, w, noise_seed=-3),
            ConfigError,
            r"noise_seed must be an int >= 0 or a torch\.Generator, got -3",
        ),
        (
            lambda s, w, z: solve_window(s, z, w, inflation_seed=1.5),
            ConfigError,
            r"seed must be an int >= 0 or a torch\.Generator, got 1.5",
        ),
        (
            lambda s, w, z: solve_window(_broken_decoder(s), z, w),
            ShapeError,
            r"decode_prepared returned \(1, 3, 4\) for one member; expected \(1, T_o, P, C\)",
        ),
    ],
)
def test_bad_solve_input(call, error, match):
    sur, window, z_b = nonlinear_problem()
    with pytest.raises(error, match=match):
        call(sur, window, z_b)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (
            lambda: Inflation(multiplicative=0.9),
            r"Inflation.multiplicative=0.9 is out of range: must be a finite number >= 1",
        ),
        (lambda: Inflation(multiplicative=math.nan), r"Inflation.multiplicative=nan is out of"),
        (lambda: Inflation(multiplicative=math.inf), r"Inflation.multiplicative=inf is out of"),
        (lambda: Inflation(multiplicative="2"), r"Inflation.multiplicative='2' is invalid"),
        (lambda: Inflation(multiplicative=True), r"Inflation.multiplicative=True is invalid"),
        (
            lambda: Inflation(additive=-0.1),
            r"Inflation.additive=-0.1 is out of range: must be a finite number >= 0",
        ),
        (lambda: Inflation(additive=math.inf), r"Inflation.additive=inf is out of range"),
        (lambda: Inflation(additive=None), r"Inflation.additive=None is invalid"),
        (
            lambda: EnsembleSubspace.from_ensemble(random_ensemble(3, 2), seed=1.5),
            r"seed must be an int >= 0 or a torch\.Generator, got 1.5",
        ),
        (lambda: RML(start="kalman"), r"RandomizedMaximumLikelihood.start='kalman' is invalid"),
        (
            lambda: GaussNewtonConfig(jacobian="reverse"),
            r"GaussNewtonConfig.jacobian='reverse' is invalid: use 'forward' or 'pointwise'",
        ),
    ],
)
def test_bad_options(factory, match):
    with pytest.raises(ConfigError, match=match):
        factory()


def test_randomized_needs_two_members():
    sur, window, z_b = nonlinear_problem()
    with pytest.raises(ConfigError, match=r"members K=1: LEVDA needs at least 2"):
        solve_window(sur, z_b[:1], window, member_mode=RML(), noise_seed=0)
