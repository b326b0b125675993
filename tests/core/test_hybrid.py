"""Hybrid latent covariance: exact linear-Gaussian answers, reductions, per-member references."""

from __future__ import annotations

import math

import pytest
import torch

from tests.core.models import (
    F64,
    LinearSurrogate,
    random_ensemble,
    random_window,
    torch_lbfgs_member,
)
from tests.core.test_levda import TIGHT, TIGHT_GN, TIGHT_LBFGS, nonlinear_problem
from xlevda.core.dynamics import trajectory
from xlevda.core.gauss_newton import linearization
from xlevda.core.hybrid import HybridCovariance, rollout_square_root, static_square_root
from xlevda.core.inflation import Inflation
from xlevda.core.levda import solve_window
from xlevda.core.members import RandomizedMaximumLikelihood as RML
from xlevda.core.members import SharedCost
from xlevda.core.objective import WindowObjective
from xlevda.core.subspace import EnsembleSubspace
from xlevda.core.window import ObsWindow
from xlevda.errors import ConfigError, ShapeError, VariableError

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")

HYBRID = HybridCovariance(ensemble_weight=0.8, static_weight=0.6, rank=3)
RHO = 1.2
MODES = {
    "shared": SharedCost(),
    "rml-enkf": RML(),
    "rml-background": RML(start="background"),
}


def _static_sqrt(d_z: int, r_c: int, seed: int = 9) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.7 * torch.randn(d_z, r_c, generator=g, dtype=F64)


def _linear_problem():
    """K = 4 members in d_z = 5: the ensemble spans 3 directions, the static part 3 more."""
    sur = LinearSurrogate(d_s=3, d_u=2, n_ch=2)
    window = random_window(2, steps=(0, 1, 3), fracs=(0.0, 0.4, 0.7))
    return sur, window, random_ensemble(4, 5), _static_sqrt(5, 3)


def _closed_form_members(sur, z_b, window, static_sqrt, objective):
    """``z_j = zbar + W^T c_j + B G^T (G B G^T + R)^-1 (y + eta_j - h0 - G (zbar + W^T c_j))``.

    ``B = beta_e^2 rho^2 P_z P_z^T + beta_c^2 L L^T`` and ``W^T c_j = beta_e rho (z_j - zbar) +
    beta_c L v_j`` are built from the model matrices and the background alone; only the drawn
    perturbations (``eta_j``, ``v_j``) are read from the objective.  Returns the members, the
    tolerance the conditioning allows and ``B``.
    """
    g_z, h0 = sur.obs_matrix(window, tendency=True)
    keep = window.weight.flatten() > 0
    g_z, h0 = g_z[keep], h0[keep]
    w = window.weight.flatten()[keep]
    data = objective.data.flatten(1)[:, keep]  # (1 or K, m): y or y + eta_j
    K, be, bc = z_b.shape[0], HYBRID.ensemble_weight, HYBRID.static_weight
    zbar = z_b.mean(0)
    p_z = RHO * (z_b - zbar).T / math.sqrt(K - 1)
    b = be**2 * p_z @ p_z.T + bc**2 * static_sqrt @ static_sqrt.T
    s = g_z @ b @ g_z.T + torch.diag(1 / w)
    gain = b @ g_z.T @ torch.linalg.inv(s)
    centre = objective.centre  # (1 or K, K + r_c): 0, or (sqrt(K-1) e_j, v_j)
    z_c = zbar + bc * centre[:, K:] @ static_sqrt.T  # the prior centres in z
    if centre.shape[0] == K:
        z_c = z_c + be * RHO * (z_b - zbar)
    z_post = z_c + (data - h0 - z_c @ g_z.T) @ gain.T
    eps = torch.finfo(F64).eps
    w_rows = torch.cat([be * p_z.T, bc * static_sqrt.T])
    scale = torch.linalg.matrix_norm(w_rows, ord=2)
    increment = (z_post - z_c).abs().max()
    atol = 10 * (scale * math.sqrt(5) * 1e-8 + torch.linalg.cond(s) * eps * (1 + increment))
    return z_post.expand_as(z_b), float(atol), b


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("method", ["lbfgs", "gn", "gn-pointwise"])
def test_hybrid_equals_closed_form(method, mode):
    """Shared cost: every member is the hybrid Kalman mean; randomized members are each the
    closed-form analysis of their own prior centre and data (the samples given the draws)."""
    sur, window, z_b, ell = _linear_problem()
    kw = {
        "inflation": Inflation(multiplicative=RHO),
        "member_mode": MODES[mode],
        "noise_seed": 5,
        "param_tendency": sur.tendency,
        "hybrid": HYBRID,
        "static_sqrt": ell,
    }
    res = solve_window(sur, z_b, window, **TIGHT[method], **kw)
    objective = WindowObjective.build(sur, z_b, window, **kw)
    z_ref, atol, b = _closed_form_members(sur, z_b, window, ell, objective)
    assert res.converged.all() and not res.failed.any()
    assert res.rank == 5 and res.alpha.shape == (4, 7)
    torch.testing.assert_close(res.z_analysis, z_ref, atol=atol, rtol=0)
    torch.testing.assert_close(res.z_analysis.mean(0), z_ref.mean(0), atol=atol, rtol=0)
    # the increment leaves the span of the ensemble: B is full rank, P_e is not
    assert torch.linalg.matrix_rank(b) == 5
    p = (z_b - z_b.mean(0)).T
    inc = res.z_analysis[0] - z_b.mean(0)
    outside = inc - p @ torch.linalg.lstsq(p, inc.unsqueeze(-1)).solution.squeeze(-1)
    assert outside.norm() > 1e-2 * inc.norm()


@pytest.mark.parametrize("mode", [SharedCost(), RML()])
@pytest.mark.parametrize("method", ["lbfgs", "gn"])
def test_static_weight_zero_is_ensemble_only(method, mode):
    """``beta_c = 0`` (``beta_e = 1``) gives the ensemble-only analysis and cost."""
    sur, window, z_b = nonlinear_problem()
    kw = {"member_mode": mode, "noise_seed": 3, **TIGHT[method]}
    plain = solve_window(sur, z_b, window, **kw)
    zero = HybridCovariance(static_weight=0.0, rank=2)
    hyb = solve_window(sur, z_b, window, hybrid=zero, static_sqrt=_static_sqrt(5, 2), **kw)
    assert hyb.rank == plain.rank
    torch.testing.assert_close(hyb.z_analysis, plain.z_analysis, atol=1e-7, rtol=0)
    torch.testing.assert_close(hyb.cost, plain.cost, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(hyb.alpha[:, :8], plain.alpha, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", [SharedCost(), RML(start="background")])
def test_batched_equals_per_member_loop(mode):
    """The batched reduced solve equals torch.optim.LBFGS per member on eq. 19 in (alpha, v)."""
    sur, window, z_b = nonlinear_problem()
    kw = {"member_mode": mode, "noise_seed": 4, "hybrid": HYBRID, "static_sqrt": _static_sqrt(5, 3)}
    objective = WindowObjective.build(sur, z_b, window, **kw)
    res = solve_window(sur, z_b, window, optimizer=TIGHT_LBFGS, **kw)
    assert res.converged.all()
    for j in range(z_b.shape[0]):
        cost, z = torch_lbfgs_member(objective, j)
        assert abs(res.cost[j].item() - cost) <= 1e-6 * abs(cost)
        torch.testing.assert_close(res.z_analysis[j], z, atol=1e-5, rtol=0)
    gn = solve_window(sur, z_b, window, optimizer=TIGHT_GN, **kw)
    torch.testing.assert_close(gn.z_analysis, res.z_analysis, atol=1e-6, rtol=0)


def test_hybrid_reduction_and_jacobian():
    """Reduced cost == cost of the lifted control; pointwise Jacobian == autodiff."""
    sur, window, z_b = nonlinear_problem()
    for mode in (SharedCost(), RML()):
        objective = WindowObjective.build(
            sur, z_b, window, member_mode=mode, noise_seed=2, hybrid=HYBRID,
            static_sqrt=_static_sqrt(5, 3),
        )  # fmt: skip
        every = torch.arange(8)
        beta = objective.start + 0.3
        control = objective.subspace.lift(beta, objective.centre)
        assert control.shape == (8, 11)
        torch.testing.assert_close(objective.cost_full(control, every), objective.cost(beta, every))
        torch.testing.assert_close(
            objective.subspace.state(control), objective.subspace.state_reduced(beta)
        )
        members = torch.tensor([0, 3, 7])
        r, jac = objective.linearize_pointwise(beta[members], members)
        r_ref, jac_ref = linearization(objective.residual)(beta[members], members)
        torch.testing.assert_close(r, r_ref)
        torch.testing.assert_close(jac, jac_ref)


def test_without_observations_members_are_prior_samples():
    """No data: randomized member j is its prior centre zbar + beta_e (z_j - zbar) + beta_c L v_j;
    shared-cost members all go to the mean."""
    sur, _, z_b = nonlinear_problem()
    empty = ObsWindow(
        torch.zeros(0, dtype=torch.int64),
        torch.zeros(0, dtype=F64),
        torch.zeros(0, 1, 2, dtype=F64),
        torch.zeros(0, 1, 2, dtype=F64),
        torch.zeros(0, 1, 2, dtype=F64),
        n_steps=3,
    )
    ell = _static_sqrt(5, 3)
    kw = {"hybrid": HYBRID, "static_sqrt": ell, "noise_seed": 6, **TIGHT["gn"]}
    rml = solve_window(sur, z_b, empty, member_mode=RML(), **kw)
    v = rml.alpha[:, 8:]
    mean = z_b.mean(0)
    expect = mean + HYBRID.ensemble_weight * (z_b - mean) + HYBRID.static_weight * v @ ell.T
    torch.testing.assert_close(rml.z_analysis, expect)
    assert 0.5 < v.std().item() < 1.5  # v_j ~ N(0, I)
    warm = solve_window(sur, z_b, empty, **kw)
    torch.testing.assert_close(warm.z_analysis, mean.expand_as(z_b))


def test_static_square_root():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 40, 4, generator=g, dtype=F64) @ torch.randn(4, 4, generator=g, dtype=F64)
    cov = torch.cov(x.reshape(-1, 4).T)
    full = static_square_root(x, 10)
    assert full.shape == (4, 4)
    torch.testing.assert_close(full @ full.T, cov)
    two = static_square_root(x, 2)
    evals, evecs = torch.linalg.eigh(cov)
    top = evecs[:, -2:] * evals[-2:]
    torch.testing.assert_close(two @ two.T, top @ evecs[:, -2:].T)


def test_rollout_square_root_is_the_spread_about_each_frame_mean():
    """Rollouts from frame -1 over frames 0..n-1, centred per frame; parameters=False spans the
    latent states alone, with zero rows for the parameters."""
    sur = LinearSurrogate(d_s=3, d_u=2, n_ch=2)
    sur.schema.n_frames = 4
    z0 = torch.cat([torch.zeros(30, 3, dtype=F64), random_ensemble(30, 2)], -1)
    traj = trajectory(sur, z0, 4)[:, 1:]  # frames 0..3
    dev = (traj - traj.mean(0)).reshape(-1, 5)
    cov = dev.T @ dev / (dev.shape[0] - 1)
    full = rollout_square_root(sur, z0, -1, 5)
    torch.testing.assert_close(full @ full.T, cov)
    latent = rollout_square_root(sur, z0, -1, 5, parameters=False)
    assert latent.shape == (5, 3) and (latent[3:] == 0).all()
    torch.testing.assert_close(latent[:3] @ latent[:3].T, cov[:3, :3])
    with pytest.raises(ConfigError, match=r"anchor=1 is out of range"):
        rollout_square_root(sur, z0, 1, 5)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: HybridCovariance(ensemble_weight=-1.0),
            ConfigError,
            r"ensemble_weight must be a finite number in \[0.0, inf\), got -1.0",
        ),
        (
            lambda: HybridCovariance(static_weight=math.inf),
            ConfigError,
            r"static_weight must be a finite number in \[0.0, inf\), got inf",
        ),
        (
            lambda: HybridCovariance(static_weight="1"),
            ConfigError,
            r"static_weight must be a finite number in \[0.0, inf\), got '1'",
        ),
        (
            lambda: HybridCovariance(ensemble_weight=0, static_weight=0),
            ConfigError,
            r"leaves no prior covariance",
        ),
        (
            lambda: HybridCovariance(rank=0),
            ConfigError,
            r"HybridCovariance.rank must be an integer >= 1, got 0",
        ),
        (
            lambda: HybridCovariance(samples=1),
            ConfigError,
            r"HybridCovariance.samples must be an integer >= 2, got 1",
        ),
        (lambda: HybridCovariance(parameters=1), ConfigError, r"parameters=1 is invalid"),
        (lambda: static_square_root(torch.zeros(1, 3), 2), ShapeError, r"at least 2 samples"),
        (
            lambda: static_square_root(torch.full((3, 2), math.nan), 2),
            VariableError,
            r"not finite",
        ),
        (
            lambda: EnsembleSubspace.from_ensemble(random_ensemble(3, 2), hybrid=HYBRID),
            ConfigError,
            r"give both or neither",
        ),
        (
            lambda: EnsembleSubspace.from_ensemble(
                random_ensemble(3, 2), hybrid=HYBRID, static_sqrt=torch.ones(3, 2, dtype=F64)
            ),
            ShapeError,
            r"static_sqrt has shape \(3, 2\); expected \(d_z, r_c\) = \(2, r_c >= 1\)",
        ),
        (
            lambda: EnsembleSubspace.from_ensemble(
                random_ensemble(3, 2), hybrid="big", static_sqrt=torch.ones(2, 2, dtype=F64)
            ),
            ConfigError,
            r"hybrid='big' is invalid",
        ),
    ],
)
def test_bad_hybrid_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_collapsed_ensemble_with_static_part_still_moves():
    """Equal members have no spread; the static part alone still gives an analysis."""
    sur, window, z_b, ell = _linear_problem()
    same = z_b[:1].expand(4, 5).clone()
    res = solve_window(
        sur, same, window, hybrid=HYBRID, static_sqrt=ell, param_tendency=sur.tendency,
        optimizer=TIGHT_GN,
    )  # fmt: skip
    assert res.rank == 3 and res.converged.all()
    assert (res.misfit < res.misfit_background).all()
