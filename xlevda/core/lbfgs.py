"""Batched L-BFGS: K independent minimizations in one pass (see :mod:`xlevda.core.optim`)."""

from __future__ import annotations

import torch
from torch import Tensor

from xlevda.core.line_search import strong_wolfe
from xlevda.core.optim import (
    BatchedObjective,
    LBFGSConfig,
    OptimResult,
    check_start,
    default_tol_cost,
    finite_rows,
    small_decrease,
    value_and_grad,
)

__all__ = ["lbfgs", "two_loop"]


def two_loop(g: Tensor, s: Tensor, y: Tensor, rho: Tensor) -> Tensor:
    """L-BFGS direction ``-H g`` from histories ``s, y`` (M, m, n), oldest first.

    ``rho`` (M, m) is ``1 / (s . y)`` for stored pairs and 0 for empty slots, which
    then contribute nothing; the newest pair sits in the last slot.
    """
    # empty slots (rho = 0) contribute nothing: loop from the oldest filled one on
    filled = rho > 0
    if not bool(filled.any()):
        return -g
    m = rho.shape[1] - int(filled.int().argmax(-1)[filled.any(-1)].min())
    s, y, rho = s[:, -m:], y[:, -m:], rho[:, -m:]
    q = g.clone()
    alphas = []
    for i in reversed(range(m)):
        a = rho[:, i] * (s[:, i] * q).sum(-1)
        q = q - a.unsqueeze(-1) * y[:, i]
        alphas.append(a)
    ys, yy = (s[:, -1] * y[:, -1]).sum(-1), (y[:, -1] * y[:, -1]).sum(-1)
    gamma = torch.where(rho[:, -1] > 0, ys / yy.clamp_min(torch.finfo(g.dtype).tiny), 1.0)
    r = gamma.unsqueeze(-1) * q
    for i in range(m):
        b = rho[:, i] * (y[:, i] * r).sum(-1)
        r = r + (alphas[m - 1 - i] - b).unsqueeze(-1) * s[:, i]
    return -r


def lbfgs(fun: BatchedObjective, x0: Tensor, config: LBFGSConfig | None = None) -> OptimResult:
    """Minimize ``K`` independent objectives with L-BFGS in one batched pass.

    Each member keeps its own ``history`` curvature pairs and takes its own
    strong-Wolfe step; gradients come from autograd of ``fun(x, members).sum()``,
    which separates by member because the members' costs do not depend on each
    other's points.  The first step of a member (and any step after its history
    is reset) starts at length ``min(1, 1 / |g|_2)`` along ``-g``.

    Parameters
    ----------
    fun : callable
        ``fun(x, members) -> cost``: ``x`` (M, n) the points of members
        ``members`` (M,) int64 -> (M,).  Member ``k``'s cost must depend on row
        ``k`` of ``x`` only.
    x0 : Tensor, shape (K, n)
        Starting points (floating; sets dtype and device).
    config : LBFGSConfig, optional

    Returns
    -------
    OptimResult

    Examples
    --------
    >>> import torch
    >>> centre = torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=torch.float64)
    >>> def cost(x, k):
    ...     return ((x - centre[k]) ** 2).sum(-1)
    >>> res = lbfgs(cost, torch.zeros(2, 2, dtype=torch.float64))
    >>> torch.allclose(res.x, centre), res.converged.tolist()
    (True, [True, True])
    """
    cfg = config or LBFGSConfig()
    check_start(x0)
    K, n = x0.shape
    members = torch.arange(K, device=x0.device)
    x = x0.detach().clone()
    f, g = value_and_grad(fun, x, members)
    n_evals = 1
    failed = ~finite_rows(f, g)
    converged = ~failed & (g.abs().amax(-1) <= cfg.tol_grad)
    active = ~failed & ~converged
    s_hist = x.new_zeros(K, cfg.history, n)
    y_hist = x.new_zeros(K, cfg.history, n)
    rho = x.new_zeros(K, cfg.history)
    steepest = torch.ones(K, dtype=torch.bool, device=x.device)
    n_iter = torch.zeros(K, dtype=torch.int64, device=x.device)
    eps = torch.finfo(x.dtype).eps
    tol_cost = default_tol_cost(cfg.tol_cost, x.dtype)
    for _ in range(cfg.max_iter):
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        gi = g[idx]
        d = two_loop(gi, s_hist[idx], y_hist[idx], rho[idx])
        descent = (gi * d).sum(-1) < 0
        d = torch.where(descent.unsqueeze(-1), d, -gi)
        sd = steepest[idx] | ~descent
        t0 = torch.where(sd, (1.0 / gi.norm(dim=-1)).clamp(max=1.0), torch.ones_like(f[idx]))
        ok, x_new, f_new, g_new, evals = strong_wolfe(fun, x[idx], f[idx], gi, d, t0, idx, cfg)
        n_evals += evals
        n_iter[idx] += 1

        s_new, y_new = x_new - x[idx], g_new - gi
        ys = (s_new * y_new).sum(-1)
        store = ok & (ys > eps * (y_new * y_new).sum(-1))
        shifted = idx[store]
        s_hist[shifted] = torch.cat([s_hist[shifted, 1:], s_new[store].unsqueeze(1)], 1)
        y_hist[shifted] = torch.cat([y_hist[shifted, 1:], y_new[store].unsqueeze(1)], 1)
        rho[shifted] = torch.cat([rho[shifted, 1:], 1.0 / ys[store].unsqueeze(1)], 1)

        moved = idx[ok]
        done = small_decrease(f[moved], f_new[ok], tol_cost) | (
            g_new[ok].abs().amax(-1) <= cfg.tol_grad
        )
        x[moved], f[moved], g[moved] = x_new[ok], f_new[ok], g_new[ok]
        converged[moved] = done
        active[moved[done]] = False
        # a failed line search: drop the history and retry along -g; twice in a row, stop
        stuck = idx[~ok]
        active[stuck[steepest[stuck]]] = False
        rho[stuck] = 0.0
        steepest[stuck] = True
        steepest[moved] = False
    return OptimResult(
        x=x,
        cost=f,
        grad_norm=g.abs().amax(-1),
        n_iter=n_iter,
        converged=converged,
        failed=failed,
        n_evals=n_evals,
    )
