"""Batched Gauss-Newton (Levenberg-Marquardt) and the Jacobians it needs."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from xlevda.core.optim import (
    BatchedResidual,
    GaussNewtonConfig,
    Linearization,
    OptimResult,
    check_start,
    default_tol_cost,
    finite_rows,
    small_decrease,
)
from xlevda.errors import ConfigError

__all__ = ["gauss_newton", "linearization"]


def linearization(
    residual: BatchedResidual, mode: Literal["auto", "forward", "reverse"] = "auto"
) -> Linearization:
    """Residuals and per-member Jacobians of ``residual`` by automatic differentiation.

    Members are independent, so one tangent (cotangent) shared by all members
    yields one Jacobian column (row) of every member at once: forward mode costs
    ``n`` tangent evaluations, reverse mode ``m`` cotangent evaluations.

    Parameters
    ----------
    residual : callable
        ``residual(x, members) -> r``: (M, n), (M,) -> (M, m); must work under
        :mod:`torch.func` transforms.
    mode : {"auto", "forward", "reverse"}
        ``"auto"`` takes forward mode when ``n <= m``.

    Returns
    -------
    callable
        ``(x, members) -> (r (M, m), J (M, m, n))``.

    Raises
    ------
    ConfigError
        An unknown ``mode``.

    Examples
    --------
    >>> import torch
    >>> lin = linearization(lambda x, k: torch.stack([x[:, 0] * x[:, 1], x[:, 1]], -1))
    >>> r, jac = lin(torch.tensor([[2.0, 3.0]]), torch.tensor([0]))
    >>> jac.tolist()
    [[[3.0, 2.0], [0.0, 1.0]]]
    """
    if mode not in ("auto", "forward", "reverse"):
        raise ConfigError(
            f"linearization mode={mode!r} is invalid: use 'auto', 'forward' or 'reverse'"
        )
    forward: list[bool] = [] if mode == "auto" else [mode == "forward"]

    def linearize(x: Tensor, members: Tensor) -> tuple[Tensor, Tensor]:
        def fn(y: Tensor) -> Tensor:
            return residual(y, members)

        n = x.shape[-1]
        if not forward:  # "auto": decided once, from the residual size of one member
            forward.append(n <= residual(x[:1], members[:1]).shape[-1])
        if forward[0]:
            eye = torch.eye(n, dtype=x.dtype, device=x.device)

            def column(v: Tensor) -> tuple[Tensor, Tensor]:
                return torch.func.jvp(fn, (x,), (v.expand_as(x),))

            return torch.func.vmap(column, out_dims=(None, -1))(eye)
        r, pullback = torch.func.vjp(fn, x)
        eye = torch.eye(r.shape[-1], dtype=x.dtype, device=x.device)
        (rows,) = torch.func.vmap(pullback)(eye.unsqueeze(1).expand(-1, *r.shape))
        return r, rows.transpose(0, 1)

    return linearize


def gauss_newton(
    linearize: Linearization, x0: Tensor, config: GaussNewtonConfig | None = None
) -> OptimResult:
    """Minimize ``1/2 |r_k(x)|^2`` for ``K`` independent residuals (Levenberg-Marquardt).

    Each iteration solves ``(J^T J + lambda I) p = -J^T r`` per member by a
    batched Cholesky factorization and accepts the step when the achieved
    decrease is a positive fraction of the decrease the linear model predicts
    (gain ratio), or, where the cost is flat to round-off, when it lowers the
    gradient norm; ``lambda`` starts at ``damping0 * max diag(J^T J)``, shrinks
    after good steps and doubles, then quadruples, ... after rejected ones
    (Nielsen's rule).  Residual and Jacobian are evaluated together at each trial
    point, so an accepted step needs no further evaluation.

    Parameters
    ----------
    linearize : callable
        ``linearize(x, members) -> (r, J)``: ``x`` (M, n), ``members`` (M,) int64 ->
        residuals (M, m) and Jacobians (M, m, n).  Member ``k``'s residual must
        depend on row ``k`` of ``x`` only.  :func:`linearization` builds one from a
        residual function by automatic differentiation.
    x0 : Tensor, shape (K, n)
        Starting points (floating; sets dtype and device).
    config : GaussNewtonConfig, optional

    Returns
    -------
    OptimResult
        ``cost`` is ``1/2 |r|^2`` and ``grad_norm`` the max-norm of ``J^T r``.

    Examples
    --------
    >>> import torch
    >>> a = torch.tensor([1.0, 2.0], dtype=torch.float64)
    >>> def rosenbrock(x, k):
    ...     return torch.stack([a[k] - x[:, 0], 10 * (x[:, 1] - x[:, 0] ** 2)], -1)
    >>> res = gauss_newton(linearization(rosenbrock), torch.zeros(2, 2, dtype=torch.float64))
    >>> torch.allclose(res.x, torch.stack([a, a**2], -1)), res.converged.tolist()
    (True, [True, True])
    """
    cfg = config or GaussNewtonConfig()
    check_start(x0)
    K, n = x0.shape
    members = torch.arange(K, device=x0.device)
    x = x0.detach().clone()

    def model(xs: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        r, jac = linearize(xs, idx)
        cost = 0.5 * (r * r).sum(-1)
        grad = torch.einsum("kmn,km->kn", jac, r)
        return cost, grad, jac.transpose(1, 2) @ jac, torch.isfinite(jac).all((-1, -2))

    f, g, h, ok = model(x, members)
    n_evals = 1
    failed = ~(ok & finite_rows(f, g))
    converged = ~failed & (g.abs().amax(-1) <= cfg.tol_grad)
    active = ~failed & ~converged
    lam = cfg.damping0 * torch.diagonal(h, dim1=-2, dim2=-1).amax(-1).clamp_min(1.0)
    nu = torch.full_like(f, 2.0)
    n_iter = torch.zeros(K, dtype=torch.int64, device=x.device)
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    tol_cost = default_tol_cost(cfg.tol_cost, x.dtype)
    eps = torch.finfo(x.dtype).eps
    for _ in range(cfg.max_iter):
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        n_iter[idx] += 1
        hi, gi, fi, li = h[idx], g[idx], f[idx], lam[idx]
        chol, info = torch.linalg.cholesky_ex(hi + li[:, None, None] * eye)
        solved = info == 0
        p = -torch.cholesky_solve(gi.unsqueeze(-1), chol).squeeze(-1)
        pred = 0.5 * torch.einsum("kn,knm,km->k", p, hi, p) + li * (p * p).sum(-1)
        # negligible predicted decrease right after an accepted step: at the minimum
        tiny = solved & (nu[idx] == 2) & (pred <= tol_cost * fi.abs().clamp_min(1.0))
        converged[idx[tiny]] = True
        active[idx[tiny]] = False
        trial = solved & ~tiny
        t_idx = idx[trial]
        accept = torch.zeros_like(trial)
        if t_idx.numel() > 0:
            f_t, g_t, h_t, ok_t = model(x[t_idx] + p[trial], t_idx)
            n_evals += 1
            gain = (fi[trial] - f_t) / pred[trial]
            # where f is flat to round-off, a step that lowers |J^T r| is taken as good
            flat = ((f_t - fi[trial]).abs() <= 2 * eps * fi[trial].abs()) & (
                g_t.norm(dim=-1) < gi[trial].norm(dim=-1)
            )
            gain = torch.where(flat, torch.ones_like(gain), gain)
            good = ok_t & finite_rows(f_t, g_t) & (gain > 1e-4)
            acc = t_idx[good]
            done = small_decrease(f[acc], f_t[good], tol_cost) | (
                g_t[good].abs().amax(-1) <= cfg.tol_grad
            )
            x[acc] = x[acc] + p[trial][good]
            f[acc], g[acc], h[acc] = f_t[good], g_t[good], h_t[good]
            factor = 1 - (2 * gain[good] - 1) ** 3
            lam[acc] = lam[acc] * factor.clamp_min(1.0 / 3.0)
            nu[acc] = 2.0
            converged[acc[done]] = True
            active[acc[done]] = False
            accept[trial.nonzero().squeeze(-1)[good]] = True
        rejected = idx[~accept & ~tiny]
        lam[rejected] = lam[rejected] * nu[rejected]
        nu[rejected] = 2 * nu[rejected]
        active[rejected[lam[rejected] > cfg.damping_max]] = False
    return OptimResult(
        x=x,
        cost=f,
        grad_norm=g.abs().amax(-1),
        n_iter=n_iter,
        converged=converged,
        failed=failed,
        n_evals=n_evals,
    )
