"""Batched optimizers: exact minima, per-member independence, flags, configuration errors."""

from __future__ import annotations

import pytest
import torch

from xlevda.core.gauss_newton import gauss_newton, linearization
from xlevda.core.lbfgs import lbfgs, two_loop
from xlevda.core.line_search import strong_wolfe
from xlevda.core.optim import GaussNewtonConfig, LBFGSConfig, value_and_grad
from xlevda.errors import ConfigError, ShapeError

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")

F64 = torch.float64
K = 12


def _params() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = 0.5 + 2 * torch.rand(K, generator=g, dtype=F64)
    b = 50 + 50 * torch.rand(K, generator=g, dtype=F64)
    return a, b


A, B = _params()


def rosenbrock_residual(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Member k: ``(a_k - x0)^2 + b_k (x1 - x0^2)^2`` as two residuals; minimum (a_k, a_k^2)."""
    return torch.stack([A[k] - x[:, 0], B[k].sqrt() * (x[:, 1] - x[:, 0] ** 2)], -1)


def rosenbrock(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return 0.5 * rosenbrock_residual(x, k).square().sum(-1)


def start() -> torch.Tensor:
    return 2 * torch.randn(K, 2, generator=torch.Generator().manual_seed(1), dtype=F64)


MINIMUM = torch.stack([A, A**2], -1)
TIGHT_LBFGS = LBFGSConfig(max_iter=500, tol_grad=1e-10, tol_cost=0.0)
TIGHT_GN = GaussNewtonConfig(max_iter=200, tol_grad=1e-10, tol_cost=0.0)


def test_lbfgs_batched_rosenbrock():
    res = lbfgs(rosenbrock, start(), TIGHT_LBFGS)
    assert res.converged.all() and not res.failed.any()
    torch.testing.assert_close(res.x, MINIMUM, atol=1e-8, rtol=0)
    assert (res.grad_norm <= 1e-10).all()
    assert (res.n_iter > 5).all() and res.n_iter.dtype == torch.int64


def test_gauss_newton_batched_rosenbrock():
    res = gauss_newton(linearization(rosenbrock_residual), start(), TIGHT_GN)
    assert res.converged.all() and not res.failed.any()
    torch.testing.assert_close(res.x, MINIMUM, atol=1e-8, rtol=0)
    torch.testing.assert_close(res.cost, rosenbrock(res.x, torch.arange(K)))


def test_linearization_modes_agree():
    x, k = start(), torch.arange(K)
    r_f, j_f = linearization(rosenbrock_residual, "forward")(x, k)
    r_r, j_r = linearization(rosenbrock_residual, "reverse")(x, k)
    torch.testing.assert_close(r_f, r_r)
    torch.testing.assert_close(j_f, j_r)
    j_ref = torch.stack(
        [
            torch.autograd.functional.jacobian(
                lambda y, i=i: rosenbrock_residual(y[None], k[i : i + 1])[0], x[i]
            )
            for i in range(K)
        ]
    )
    torch.testing.assert_close(j_f, j_ref)
    with pytest.raises(ConfigError, match=r"linearization mode='central' is invalid"):
        linearization(rosenbrock_residual, "central")


@pytest.mark.parametrize("method", ["lbfgs", "gn"])
def test_members_are_independent(method):
    """Each member's result is what it gets when solved alone."""
    x0 = start()
    solve = (
        (lambda x: lbfgs(rosenbrock, x, TIGHT_LBFGS))
        if method == "lbfgs"
        else (lambda x: gauss_newton(linearization(rosenbrock_residual), x, TIGHT_GN))
    )
    together = solve(x0)
    for j in (0, 5):

        def shifted(fun, j=j):
            return lambda x, k: fun(x, k + j)

        alone = (
            lbfgs(shifted(rosenbrock), x0[j : j + 1], TIGHT_LBFGS)
            if method == "lbfgs"
            else gauss_newton(linearization(shifted(rosenbrock_residual)), x0[j : j + 1], TIGHT_GN)
        )
        torch.testing.assert_close(alone.x[0], together.x[j], atol=1e-12, rtol=0)
        assert alone.n_iter[0] == together.n_iter[j]


def test_converged_members_are_frozen_and_not_evaluated():
    x0 = start()
    x0[3] = MINIMUM[3]
    seen = []

    def spy(x, k):
        seen.append(k.clone())
        return rosenbrock(x, k)

    res = lbfgs(spy, x0, TIGHT_LBFGS)
    assert res.n_iter[3] == 0 and res.converged[3]
    assert torch.equal(res.x[3], x0[3])
    assert all(3 not in k.tolist() for k in seen[1:])


@pytest.mark.parametrize("method", ["lbfgs", "gn"])
def test_nonfinite_start_fails_and_stays(method):
    def residual(x, k):
        nan = torch.where(k == 2, torch.nan, 0.0).to(x.dtype)
        return rosenbrock_residual(x, k) + nan.unsqueeze(-1)

    x0 = start()
    if method == "lbfgs":
        res = lbfgs(lambda x, k: 0.5 * residual(x, k).square().sum(-1), x0, TIGHT_LBFGS)
    else:
        res = gauss_newton(linearization(residual), x0, TIGHT_GN)
    assert res.failed.tolist() == [k == 2 for k in range(K)]
    assert not res.converged[2]
    assert torch.equal(res.x[2], x0[2])
    others = torch.arange(K) != 2
    torch.testing.assert_close(res.x[others], MINIMUM[others], atol=1e-7, rtol=0)


@pytest.mark.parametrize("method", ["lbfgs", "gn"])
def test_nan_region_is_avoided(method):
    """Trial points with a NaN cost are rejected: members end at finite, lower costs."""

    def residual(x, k):
        r = rosenbrock_residual(x, k)
        return torch.where((x[:, :1] > 1.8), torch.full_like(r, torch.nan), r)

    x0 = start().clamp(max=1.5)
    f0 = 0.5 * residual(x0, torch.arange(K)).square().sum(-1)
    if method == "lbfgs":
        res = lbfgs(lambda x, k: 0.5 * residual(x, k).square().sum(-1), x0, TIGHT_LBFGS)
    else:
        res = gauss_newton(linearization(residual), x0, TIGHT_GN)
    assert not res.failed.any()
    assert torch.isfinite(res.cost).all() and (res.cost <= f0).all()
    assert (res.x[:, 0] <= 1.8).all()


def test_max_iter_leaves_members_unconverged():
    res = lbfgs(rosenbrock, start(), LBFGSConfig(max_iter=2, tol_cost=0.0))
    assert not res.converged.any() and (res.n_iter == 2).all()
    f0 = rosenbrock(start(), torch.arange(K))
    assert (res.cost < f0).all()


def test_float32_default_tolerances_converge():
    x0 = start().float()

    def cost(x, k):
        return rosenbrock(x.double(), k).float()

    res = lbfgs(cost, x0)
    assert res.converged.all() and res.x.dtype == torch.float32
    torch.testing.assert_close(res.x.double(), MINIMUM, atol=2e-3, rtol=0)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: LBFGSConfig(max_iter=0), r"LBFGSConfig.max_iter must be an integer >= 1, got 0"),
        (lambda: LBFGSConfig(history=1.5), r"LBFGSConfig.history must be an integer >= 1, got 1.5"),
        (
            lambda: LBFGSConfig(tol_grad=-1.0),
            r"LBFGSConfig.tol_grad must be a number in \[0.0, inf\], got -1.0",
        ),
        (lambda: LBFGSConfig(c1=0.5, c2=0.4), r"need 0 < c1 < c2 < 1"),
        (
            lambda: LBFGSConfig(line_search_max=True),
            r"line_search_max must be an integer >= 1, got True",
        ),
        (
            lambda: GaussNewtonConfig(damping0=0.0),
            r"damping0 must be a number in \(0.0, inf\], got 0.0",
        ),
        (
            lambda: GaussNewtonConfig(tol_cost=float("nan")),
            r"tol_cost must be a number in \[0.0, inf\], got nan",
        ),
        (
            lambda: GaussNewtonConfig(damping_max=1e-9),
            r"damping_max must be a number in \[1e-06, inf\], got 1e-09",
        ),
    ],
)
def test_config_errors(factory, match):
    with pytest.raises(ConfigError, match=match):
        factory()


def test_bad_start_shape():
    with pytest.raises(ShapeError, match=r"x0 must be a floating tensor of shape \(K, n\)"):
        lbfgs(rosenbrock, torch.zeros(3, dtype=F64))
    with pytest.raises(ShapeError, match=r"torch.int64"):
        gauss_newton(linearization(rosenbrock_residual), torch.zeros(3, 2, dtype=torch.int64))


def _two_loop_all_slots(g, s, y, rho):
    """The two-loop recursion over every slot (empty ones have rho = 0)."""
    q, alphas = g.clone(), []
    for i in reversed(range(s.shape[1])):
        a = rho[:, i] * (s[:, i] * q).sum(-1)
        q = q - a.unsqueeze(-1) * y[:, i]
        alphas.append(a)
    gamma = torch.where(
        rho[:, -1] > 0, (s[:, -1] * y[:, -1]).sum(-1) / (y[:, -1] * y[:, -1]).sum(-1), 1.0
    )
    r = gamma.unsqueeze(-1) * q
    for i in range(s.shape[1]):
        b = rho[:, i] * (y[:, i] * r).sum(-1)
        r = r + (alphas[-1 - i] - b).unsqueeze(-1) * s[:, i]
    return -r


@pytest.mark.parametrize(
    "filled",
    [[0, 0, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 0, 1]],
    ids=["empty", "last-two", "full", "interior-gap"],
)
def test_two_loop_skips_empty_slots_exactly(filled):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    y = s + 0.1 * torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    rho = 1.0 / (s * y).sum(-1) * torch.tensor(filled, dtype=torch.float64)
    rho[1] = 0.0  # a member without history: steepest descent
    grad = torch.randn(3, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(two_loop(grad, s, y, rho), _two_loop_all_slots(grad, s, y, rho))


def test_a_bracket_below_the_dtype_resolution_ends_the_line_search():
    """float32, a cost flat to round-off (1500 resolves 1e-4) with a gradient the noise term
    dominates: the bracket shrinks to round-off without a Wolfe point.  The search stops
    there (it used every trial before) and keeps its best point of sufficient decrease."""
    cfg = LBFGSConfig()
    member = torch.zeros(1, dtype=torch.int64)

    def cost(x, k):
        return 1500 + 1e-7 * torch.sin(1e3 * x).sum(-1) + 1e-3 * (x - 0.31).square().sum(-1)

    x = torch.full((1, 1), 0.3)
    f, g = value_and_grad(cost, x, member)
    d = -g / g.abs()
    ok, x_new, f_new, _, evals = strong_wolfe(cost, x, f, g, d, torch.full((1,), 0.02), member, cfg)
    assert evals < cfg.line_search_max
    assert bool(ok) and float(f_new) <= float(f) + 2 * torch.finfo(f.dtype).eps * float(f)
    assert float(x_new) != float(x)
