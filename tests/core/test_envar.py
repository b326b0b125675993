"""4DEnVar: exact linear-Gaussian answers, outer loops, localization, inputs (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from xlevda.core.envar import (
    check_outer_loops,
    fourdenvar,
)
from xlevda.core.inflation import Inflation
from xlevda.core.localization import Localization
from xlevda.core.taper import gaspari_cohn
from xlevda.core.window import ObsWindow
from xlevda.errors import ConfigError, ShapeError, VariableError

F64 = torch.float64
N = 6
STEPS = (0, 2, 3)  # model steps of the observation times
OBS_AT = ((0, 3), (1, 4), (2, 5))  # observed state elements per time


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear_model(seed: int = 0):
    M = torch.eye(N, dtype=F64) + 0.3 * torch.randn(N, N, generator=_gen(seed), dtype=F64)

    def model(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x @ torch.linalg.matrix_power(M, s).T for s in STEPS], 1)

    G = torch.cat(
        [torch.linalg.matrix_power(M, s)[list(idx)] for s, idx in zip(STEPS, OBS_AT, strict=True)]
    )
    return model, G


def _nonlinear_model(x: torch.Tensor) -> torch.Tensor:
    out, states = x, []
    for s in range(max(STEPS) + 1):
        if s in STEPS:
            states.append(out)
        out = out + 0.3 * torch.sin(out.roll(1, -1)) - 0.1 * out**2
    return torch.stack(states, 1)


def observe(traj: torch.Tensor) -> torch.Tensor:
    """Selection of OBS_AT per time: (M, T_o, N) -> (M, T_o, 2, 1)."""
    return torch.stack([traj[:, t, list(idx)] for t, idx in enumerate(OBS_AT)], 1).unsqueeze(-1)


def _window(y: torch.Tensor, sigma: torch.Tensor) -> ObsWindow:
    points = torch.tensor(OBS_AT, dtype=F64).unsqueeze(-1)  # element index = grid position
    return ObsWindow(
        step=torch.tensor(STEPS),
        frac=torch.zeros(len(STEPS), dtype=F64),
        points=points,
        values=y.reshape(len(STEPS), 2, 1),
        weight=sigma.reshape(len(STEPS), 2, 1) ** -2,
    )


COORDS = torch.arange(N, dtype=F64).unsqueeze(-1)


def _ensemble(mean: torch.Tensor, B: torch.Tensor, K: int, seed: int) -> torch.Tensor:
    """K draws from N(mean, B) (rank-deficient where K <= N)."""
    raw = torch.randn(K, N, generator=_gen(seed), dtype=F64)
    return mean + raw @ torch.linalg.cholesky(B).T


def _exact_ensemble(mean: torch.Tensor, B: torch.Tensor, K: int, seed: int) -> torch.Tensor:
    """K > N members whose sample mean and covariance are exactly ``mean`` and ``B``."""
    raw = torch.randn(K, N, generator=_gen(seed), dtype=F64)
    raw = raw - raw.mean(0)
    white = raw @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(raw.T))).T
    return mean + white @ torch.linalg.cholesky(B).T


def _problem(seed: int = 0):
    g = _gen(seed + 100)
    L = torch.randn(N, N, generator=g, dtype=F64)
    B = L @ L.T / N + 0.5 * torch.eye(N, dtype=F64)
    xb = torch.randn(N, generator=g, dtype=F64)
    y = torch.randn(6, generator=g, dtype=F64)
    sigma = torch.linspace(0.3, 1.0, 6, dtype=F64)
    return B, xb, y, sigma


def test_linear_equals_kalman_smoother_and_4dvar():
    model, G = _linear_model()
    B, xb, y, sigma = _problem()
    R = torch.diag(sigma**2)
    ens = _exact_ensemble(xb, B, K=N + 3, seed=1)
    res = fourdenvar(ens, model, observe, _window(y, sigma))
    gain = B @ G.T @ torch.linalg.inv(G @ B @ G.T + R)
    smoother_mean, smoother_cov = xb + gain @ (y - G @ xb), B - gain @ G @ B
    hess = torch.linalg.inv(B) + G.T @ torch.linalg.inv(R) @ G
    fourdvar = torch.linalg.solve(hess, torch.linalg.solve(B, xb) + G.T @ torch.linalg.solve(R, y))
    torch.testing.assert_close(res.mean, smoother_mean, rtol=0, atol=1e-8)
    torch.testing.assert_close(res.mean, fourdvar, rtol=0, atol=1e-8)
    torch.testing.assert_close(res.members.mean(0), res.mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.cov(res.members.T), smoother_cov, rtol=0, atol=1e-8)
    assert res.misfit.shape == (2,) and res.misfit[1] < res.misfit[0]


def test_multiplicative_inflation_scales_b():
    model, G = _linear_model()
    B, xb, y, sigma = _problem(1)
    ens = _exact_ensemble(xb, B, K=N + 1, seed=2)
    res = fourdenvar(ens, model, observe, _window(y, sigma), inflation=Inflation(1.5))
    Bi = 2.25 * B
    expected = xb + Bi @ G.T @ torch.linalg.solve(G @ Bi @ G.T + torch.diag(sigma**2), y - G @ xb)
    torch.testing.assert_close(res.mean, expected, rtol=0, atol=1e-8)


def test_linear_one_outer_loop_equals_several():
    model, _ = _linear_model(3)
    B, xb, y, sigma = _problem(2)
    ens = _ensemble(xb, B, K=5, seed=3)  # rank-deficient: K - 1 < N
    one = fourdenvar(ens, model, observe, _window(y, sigma))
    four = fourdenvar(ens, model, observe, _window(y, sigma), outer_loops=4)
    torch.testing.assert_close(four.mean, one.mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(four.members, one.members, rtol=0, atol=1e-10)
    torch.testing.assert_close(four.misfit[1:], one.misfit[1].expand(4), rtol=1e-10, atol=0)


def test_huge_radius_equals_no_localization():
    B, xb, y, sigma = _problem(3)
    ens = _exact_ensemble(xb, B, K=8, seed=4)
    win = _window(y, sigma)
    glob = fourdenvar(ens, _nonlinear_model, observe, win)
    local = Localization(1e6, chunk=4)
    loc = fourdenvar(ens, _nonlinear_model, observe, win, localization=local, state_coords=COORDS)
    torch.testing.assert_close(loc.mean, glob.mean, rtol=0, atol=1e-8)
    torch.testing.assert_close(loc.members, glob.members, rtol=0, atol=1e-8)
    torch.testing.assert_close(loc.misfit, glob.misfit, rtol=1e-8, atol=0)


def test_far_element_keeps_its_background():
    B, xb, y, sigma = _problem(4)
    ens = _exact_ensemble(xb, B, K=7, seed=5)
    coords = COORDS.clone()
    coords[2] = 50.0  # element 2 is far from every observation point
    local = Localization(3.0)
    res = fourdenvar(
        ens, _nonlinear_model, observe, _window(y, sigma), localization=local, state_coords=coords
    )
    torch.testing.assert_close(res.members[:, 2], ens[:, 2], rtol=0, atol=1e-12)
    torch.testing.assert_close(res.mean[2], ens[:, 2].mean(), rtol=0, atol=1e-12)
    assert (res.mean - ens.mean(0)).abs()[[0, 1, 3, 4, 5]].min() > 1e-6


@pytest.mark.parametrize("loc", [None, Localization(2.0)])
def test_no_observations_keep_the_background(loc):
    B, xb, y, sigma = _problem(7)
    ens = _ensemble(xb, B, K=5, seed=8)
    win = _window(y, sigma)
    win = ObsWindow(win.step, win.frac, win.points, win.values, torch.zeros_like(win.weight))
    res = fourdenvar(
        ens,
        _nonlinear_model,
        observe,
        win,
        localization=loc,
        state_coords=COORDS,
    )
    torch.testing.assert_close(res.members, ens, rtol=0, atol=1e-12)
    assert (res.misfit == 0).all()


def test_given_distances_equal_state_coords():
    """Distances passed in give the analysis of the coordinates they come from."""
    B, xb, y, sigma = _problem(5)
    ens = _ensemble(xb, B, K=6, seed=6)
    win = _window(y, sigma)
    local = Localization(2.5, chunk=4)
    by_coords = fourdenvar(
        ens, _nonlinear_model, observe, win, localization=local, state_coords=COORDS
    )
    dist = torch.cdist(COORDS, win.points.flatten(0, 1))
    by_dist = fourdenvar(ens, _nonlinear_model, observe, win, localization=local, distances=dist)
    torch.testing.assert_close(by_dist.members, by_coords.members, rtol=0, atol=1e-12)
    glob = fourdenvar(ens, _nonlinear_model, observe, win)
    everywhere = fourdenvar(
        ens, _nonlinear_model, observe, win, localization=local, distances=dist * 0
    )
    torch.testing.assert_close(everywhere.members, glob.members, rtol=0, atol=1e-10)
    with pytest.raises(ConfigError, match=r"distances=\(6, 5\) is invalid"):
        fourdenvar(ens, _nonlinear_model, observe, win, localization=local, distances=dist[:, :5])


def test_local_analyses_equal_per_element_loop():
    """Batched local analyses against a plain loop over state elements."""
    B, xb, y, sigma = _problem(5)
    ens = _ensemble(xb, B, K=6, seed=6)
    radius, K = 2.5, ens.shape[0]
    local = Localization(radius, chunk=4)
    res = fourdenvar(
        ens, _nonlinear_model, observe, _window(y, sigma), localization=local, state_coords=COORDS
    )
    pert = (ens - ens.mean(0)) / math.sqrt(K - 1)
    hx = observe(_nonlinear_model(ens)).flatten(1)
    Y = (hx - hx.mean(0)) / math.sqrt(K - 1)
    d = y - observe(_nonlinear_model(ens.mean(0, keepdim=True))).flatten()
    obs_pos = torch.tensor(OBS_AT, dtype=F64).flatten()
    for g in range(N):
        w = sigma**-2 * gaspari_cohn((obs_pos - g).abs(), radius)
        A = torch.eye(K, dtype=F64) + Y @ torch.diag(w) @ Y.T
        alpha = torch.linalg.solve(A, Y @ (w * d))
        mean_g = ens[:, g].mean() + alpha @ pert[:, g]
        var_g = pert[:, g] @ torch.linalg.solve(A, pert[:, g])
        torch.testing.assert_close(res.mean[g], mean_g, rtol=0, atol=1e-10)
        torch.testing.assert_close(res.members[:, g].mean(), mean_g, rtol=0, atol=1e-10)
        torch.testing.assert_close(res.members[:, g].var(), var_g, rtol=1e-10, atol=0)


def test_outer_loops_reduce_misfit_of_nonlinear_model():
    B, xb, y, sigma = _problem(6)
    truth = xb + torch.linalg.cholesky(B) @ torch.randn(N, generator=_gen(9), dtype=F64)
    y = observe(_nonlinear_model(truth[None])).flatten() + 0.05 * y
    sigma = torch.full((6,), 0.05, dtype=F64)
    ens = _exact_ensemble(xb, B, K=N + 1, seed=7)
    res = fourdenvar(ens, _nonlinear_model, observe, _window(y, sigma), outer_loops=6)
    assert res.misfit[-1] < 0.5 * res.misfit[1] < 0.5 * res.misfit[0]


def test_gaspari_cohn_shape():
    r = torch.linspace(0, 3, 301, dtype=F64)
    rho = gaspari_cohn(r, 2.0)
    assert rho[0] == 1 and (rho[r >= 2] == 0).all() and (rho.diff() <= 1e-15).all()
    torch.testing.assert_close(gaspari_cohn(torch.tensor([1.0], dtype=F64), 2.0).item(), 5 / 24)
    near = gaspari_cohn(torch.tensor([1 - 1e-9, 1 + 1e-9], dtype=F64), 2.0)  # continuous
    assert abs(near[0] - near[1]) < 1e-8


def test_config_errors():
    with pytest.raises(ConfigError, match="outer_loops must be an integer >= 1, got 0"):
        check_outer_loops(0, None)
    with pytest.raises(ConfigError, match="outer_loops=2 with localization is not supported"):
        check_outer_loops(2, Localization(2.0))
    with pytest.raises(ConfigError, match=r"Localization.radius=0 is out of range: must be a fin"):
        Localization(radius=0)
    with pytest.raises(ConfigError, match=r"Localization.radius=inf is out of range"):
        Localization(radius=math.inf)
    with pytest.raises(ConfigError, match=r"Localization.radius='2' is invalid"):
        Localization(radius="2")
    with pytest.raises(ConfigError, match=r"Localization.chunk=0 is out of range: must be an int"):
        Localization(radius=1.0, chunk=0)


def test_input_errors():
    model, _ = _linear_model()
    B, xb, y, sigma = _problem()
    ens, win = _exact_ensemble(xb, B, K=7, seed=1), _window(y, sigma)
    with pytest.raises(ShapeError, match=r"background must be .* \(K, N\), got \(6,\)"):
        fourdenvar(ens[0], model, observe, win)
    with pytest.raises(ConfigError, match="K=1"):
        fourdenvar(ens[:1], model, observe, win)
    bad = ens.clone()
    bad[4, 0] = math.inf
    with pytest.raises(VariableError, match="member 4"):
        fourdenvar(bad, model, observe, win)
    with pytest.raises(ShapeError, match=r"model returned \(8, 6\)"):
        fourdenvar(ens, lambda x: x, observe, win)
    with pytest.raises(ShapeError, match=r"observe returned \(8, 3, 2\)"):
        fourdenvar(ens, model, lambda tr: observe(tr)[..., 0], win)
    with pytest.raises(VariableError, match="model returned non-finite"):
        fourdenvar(ens, lambda x: model(x) / 0, observe, win)
    with pytest.raises(
        ConfigError, match=r"exactly one of state_coords \(N, n_dim\) = \(6, 1\).* neither"
    ):
        fourdenvar(ens, model, observe, win, localization=Localization(2.0))
    with pytest.raises(ConfigError, match="window=3"):
        fourdenvar(ens, model, observe, 3)
    with pytest.raises(ConfigError, match=r"localization=2\.0 is invalid"):
        fourdenvar(ens, model, observe, win, localization=2.0)
    with pytest.raises(ConfigError, match=r"inflation=1\.1 is invalid"):
        fourdenvar(ens, model, observe, win, inflation=1.1)
    with pytest.raises(ConfigError, match="outer_loops must be an integer >= 1, got 0"):
        fourdenvar(ens, model, observe, win, outer_loops=0)
    with pytest.raises(ConfigError, match="outer_loops=2 with localization is not supported"):
        fourdenvar(ens, model, observe, win, localization=Localization(2.0), outer_loops=2)
    with pytest.raises(
        ConfigError, match=r"seed must be an int >= 0 or a torch\.Generator, got -1"
    ):
        fourdenvar(ens, model, observe, win, seed=-1)
