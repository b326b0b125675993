"""Batched optimizers for K independent minimization problems solved in one pass.

Member ``k`` of a batch is its own problem: it has its own curvature history,
step size, damping and convergence flag, and its iterate never depends on any
other member.  The problems are evaluated together: an objective receives the
points of the members still iterating, ``x`` of shape ``(M, n)``, together with
their indices ``members`` of shape ``(M,)`` into the batch, and returns one cost
per row.  Members that have converged (or failed) are no longer evaluated, so a
few slow members cost only their own share of the work.

Two methods:

- :func:`lbfgs`: limited-memory BFGS with a batched strong-Wolfe line search
  (cubic interpolation), for any smooth objective ``f(x) -> (M,)``.
- :func:`gauss_newton`: Levenberg-Marquardt on a residual ``r(x) -> (M, m)`` with
  cost ``1/2 |r|^2``, given its linearization ``(r, J)``; the damped ``(n, n)``
  normal equations are solved by a batched Cholesky factorization.
  :func:`linearization` provides ``J`` by forward-mode automatic differentiation
  (``n`` directions) or reverse mode (``m`` directions), whichever is fewer;
  callers that know their structure supply a cheaper one.

Both return an :class:`OptimResult`.  A member whose cost or gradient is not
finite where it starts is flagged ``failed`` and left at its starting point;
afterwards trial points whose cost, gradient or Jacobian is not finite are
rejected like any other bad step, and an accepted step never raises the cost by
more than its round-off (``2 eps |f|``, where the L-BFGS line search trusts the
slope alone), so no member moves to a worse or non-finite point.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from xlevda.errors import ConfigError, ShapeError

__all__ = [
    "BatchedObjective",
    "BatchedResidual",
    "GaussNewtonConfig",
    "LBFGSConfig",
    "Linearization",
    "OptimResult",
    "gauss_newton",
    "lbfgs",
    "linearization",
]

BatchedObjective = Callable[[Tensor, Tensor], Tensor]
"""``f(x, members) -> cost``: ``x`` (M, n), ``members`` (M,) int64 -> (M,)."""

BatchedResidual = Callable[[Tensor, Tensor], Tensor]
"""``r(x, members) -> residual``: ``x`` (M, n), ``members`` (M,) int64 -> (M, m)."""

Linearization = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""``(x, members) -> (r, J)``: residuals (M, m) and their Jacobians (M, m, n)."""


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}={value!r} is out of range: must be an integer >= {low}")


def _check_real(name: str, value: object, low: float, high: float = math.inf) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (low <= value <= high)
        or math.isnan(value)
    ):
        raise ConfigError(f"{name}={value!r} is out of range: must be a number in [{low}, {high}]")


@dataclass(frozen=True)
class LBFGSConfig:
    """Options of :func:`lbfgs`.

    Attributes
    ----------
    max_iter : int
        Iterations per member (>= 1).
    history : int
        Curvature pairs kept per member (>= 1).  The default 40 makes it full-memory
        BFGS where the search space has at most 40 dimensions (LEVDA's reduced
        coordinates for small latent states): on ``benchmarks/bench_optim.py`` it needed
        34 iterations on average against 51 with 10 pairs.
    tol_grad : float
        A member converges when the max-norm of its gradient is at most this (>= 0).
    tol_cost : float, optional
        A member converges when a step lowers its cost by at most
        ``tol_cost * max(|f_old|, |f_new|, 1)`` (>= 0; 0 turns the test off, so that
        only ``tol_grad`` ends a member, as needed for accuracy beyond ``sqrt(eps)``).
        Default ``10 eps`` of the working dtype (about 1e-6 in float32).
    line_search_max : int
        Objective evaluations per line search (>= 1).
    c1, c2 : float
        Strong-Wolfe constants, ``0 < c1 < c2 < 1``.

    Examples
    --------
    >>> LBFGSConfig(max_iter=50).history
    40
    """

    max_iter: int = 100
    history: int = 40
    tol_grad: float = 1e-6
    tol_cost: float | None = None
    line_search_max: int = 20
    c1: float = 1e-4
    c2: float = 0.9

    def __post_init__(self) -> None:
        _check_int("LBFGSConfig.max_iter", self.max_iter, 1)
        _check_int("LBFGSConfig.history", self.history, 1)
        _check_int("LBFGSConfig.line_search_max", self.line_search_max, 1)
        _check_real("LBFGSConfig.tol_grad", self.tol_grad, 0.0)
        if self.tol_cost is not None:
            _check_real("LBFGSConfig.tol_cost", self.tol_cost, 0.0)
        _check_real("LBFGSConfig.c1", self.c1, 0.0, 1.0)
        _check_real("LBFGSConfig.c2", self.c2, 0.0, 1.0)
        if not 0.0 < self.c1 < self.c2 < 1.0:
            raise ConfigError(
                f"LBFGSConfig.c1={self.c1}, c2={self.c2} are out of range: need 0 < c1 < c2 < 1"
            )


@dataclass(frozen=True)
class GaussNewtonConfig:
    """Options of :func:`gauss_newton` (Levenberg-Marquardt).

    Attributes
    ----------
    max_iter : int
        Trial steps per member, accepted or not (>= 1).
    damping0 : float
        Initial damping relative to the largest diagonal entry of ``J^T J`` (> 0).  The
        default trusts the first Gauss-Newton step (right for LEVDA, whose prior
        term keeps ``J^T J >= I``); rejected steps raise the damping quickly.
    damping_max : float
        A member whose damping grows beyond this stops unconverged (> damping0).
    tol_grad : float
        Convergence when the max-norm of ``J^T r`` is at most this (>= 0).
    tol_cost : float, optional
        Convergence when the predicted or the achieved decrease of the cost is at
        most ``tol_cost * max(|f|, 1)`` (>= 0; 0 turns the test off).  Default
        ``10 eps`` of the working dtype (about 1e-6 in float32).

    Examples
    --------
    >>> GaussNewtonConfig(max_iter=20).damping0
    1e-06
    """

    max_iter: int = 50
    damping0: float = 1e-6
    damping_max: float = 1e12
    tol_grad: float = 1e-6
    tol_cost: float | None = None

    def __post_init__(self) -> None:
        _check_int("GaussNewtonConfig.max_iter", self.max_iter, 1)
        _check_real("GaussNewtonConfig.damping0", self.damping0, 0.0)
        if self.damping0 <= 0:
            raise ConfigError(
                f"GaussNewtonConfig.damping0={self.damping0!r} is out of range: must be > 0"
            )
        _check_real("GaussNewtonConfig.damping_max", self.damping_max, self.damping0)
        _check_real("GaussNewtonConfig.tol_grad", self.tol_grad, 0.0)
        if self.tol_cost is not None:
            _check_real("GaussNewtonConfig.tol_cost", self.tol_cost, 0.0)


@dataclass(frozen=True)
class OptimResult:
    """Per-member outcome of a batched minimization.

    Attributes
    ----------
    x : Tensor, shape (K, n)
        Final points; a failed member keeps its starting point.
    cost : Tensor, shape (K,)
        Cost at ``x`` (not finite only for failed members).
    grad_norm : Tensor, shape (K,)
        Max-norm of the gradient at ``x``.
    n_iter : Tensor, shape (K,), int64
        Iterations each member took.
    converged : Tensor, shape (K,), bool
        Met ``tol_grad`` or ``tol_cost``.  A member neither converged nor failed ran
        out of iterations, of line-search trials or of damping range.
    failed : Tensor, shape (K,), bool
        Cost, gradient or Jacobian not finite at the starting point, where the
        member is left.  Later trial points that are not finite are rejected.
    n_evals : int
        Batched calls of the objective, residual or Jacobian.
    """

    x: Tensor
    cost: Tensor
    grad_norm: Tensor
    n_iter: Tensor
    converged: Tensor
    failed: Tensor
    n_evals: int


def _check_start(x0: Tensor) -> None:
    if x0.ndim != 2 or not x0.is_floating_point():
        raise ShapeError(
            f"x0 must be a floating tensor of shape (K, n), got {tuple(x0.shape)} {x0.dtype}"
        )


def _value_and_grad(fun: BatchedObjective, x: Tensor, members: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        f = fun(xr, members)
        (g,) = torch.autograd.grad(f.sum(), xr)
    return f.detach(), g


def _finite(f: Tensor, g: Tensor) -> Tensor:
    return torch.isfinite(f) & torch.isfinite(g).all(-1)


def _tol_cost(tol: float | None, dtype: torch.dtype) -> float:
    return 10 * torch.finfo(dtype).eps if tol is None else tol


def _small_decrease(f_old: Tensor, f_new: Tensor, tol: float) -> Tensor:
    """Relative decrease at most ``tol``; never true for ``tol = 0`` (criterion off)."""
    scale = torch.maximum(torch.maximum(f_old.abs(), f_new.abs()), torch.ones_like(f_old))
    return (f_old - f_new <= tol * scale) & (tol > 0)


def _cubic_min(t1: Tensor, f1: Tensor, d1: Tensor, t2: Tensor, f2: Tensor, d2: Tensor) -> Tensor:
    """Minimizer of the cubic through two points with slopes; NaN where none exists."""
    e1 = d1 + d2 - 3 * (f1 - f2) / (t1 - t2)
    disc = e1 * e1 - d1 * d2
    e2 = torch.sign(t2 - t1) * disc.clamp_min(0).sqrt()
    t = t2 - (t2 - t1) * (d2 + e2 - e1) / (d2 - d1 + 2 * e2)
    return torch.where(disc >= 0, t, torch.full_like(t, math.nan))


def _line_search(
    fun: BatchedObjective,
    x: Tensor,
    f: Tensor,
    g: Tensor,
    d: Tensor,
    t0: Tensor,
    members: Tensor,
    cfg: LBFGSConfig,
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Strong-Wolfe line search for ``M`` members at once (bracketing, then cubic zoom).

    Returns the accepted mask (M,), new points (M, n), costs (M,), gradients (M, n)
    and the number of batched evaluations.  A member that finds no Wolfe point
    takes its best point satisfying sufficient decrease, if it has one.
    """
    slope0 = (g * d).sum(-1)
    t = t0.clone()
    lo_t, lo_f, lo_d = torch.zeros_like(f), f.clone(), slope0.clone()
    lo_g = g.clone()
    hi_t, hi_f, hi_d = torch.full_like(f, math.inf), torch.full_like(f, math.nan), slope0.clone()
    done = torch.zeros_like(f, dtype=torch.bool)
    eps = torch.finfo(f.dtype).eps
    x_new, f_new, g_new = x.clone(), f.clone(), g.clone()
    evals = 0
    for _ in range(cfg.line_search_max):
        live = (~done).nonzero().squeeze(-1)
        if live.numel() == 0:
            break
        tl = t[live]
        xt = x[live] + tl.unsqueeze(-1) * d[live]
        ft, gt = _value_and_grad(fun, xt, members[live])
        evals += 1
        dt = (gt * d[live]).sum(-1)
        f0, s0 = f[live], slope0[live]
        # sufficient decrease up to the round-off of f (approximate Wolfe, Hager-Zhang):
        # where f is flat to round-off the slope conditions alone decide
        armijo = ft <= f0 + cfg.c1 * tl * s0 + 2 * eps * f0.abs()
        high = ~_finite(ft, gt) | ~armijo | ((ft >= lo_f[live]) & (lo_t[live] > 0))
        wolfe = ~high & (dt.abs() <= -cfg.c2 * s0)
        flip = ~high & ~wolfe & (dt * (hi_t[live] - lo_t[live]) >= 0)
        up = ~high & ~wolfe

        acc = live[wolfe]
        x_new[acc], f_new[acc], g_new[acc] = xt[wolfe], ft[wolfe], gt[wolfe]
        done[acc] = True

        # high: t becomes the upper end of the bracket
        hl = live[high]
        hi_t[hl], hi_f[hl], hi_d[hl] = tl[high], ft[high], dt[high]
        # a low point whose slope points back at lo: old lo becomes the upper end
        fl = live[flip]
        hi_t[fl], hi_f[fl], hi_d[fl] = lo_t[fl], lo_f[fl], lo_d[fl]
        # remember the previous low point for extrapolation, then move lo to t
        ul = live[up]
        prev_t, prev_f, prev_d = lo_t[ul], lo_f[ul], lo_d[ul]
        lo_t[ul], lo_f[ul], lo_d[ul], lo_g[ul] = tl[up], ft[up], dt[up], gt[up]

        # next trial step for the members still searching
        bracketed = torch.isfinite(hi_t[live])
        a, b = torch.minimum(lo_t[live], hi_t[live]), torch.maximum(lo_t[live], hi_t[live])
        width = b - a
        interp = _cubic_min(lo_t[live], lo_f[live], lo_d[live], hi_t[live], hi_f[live], hi_d[live])
        interp = torch.where(torch.isfinite(interp), interp, (a + b) / 2)
        zoom = torch.minimum(torch.maximum(interp, a + 0.1 * width), b - 0.1 * width)
        extra = torch.full_like(tl, math.nan)
        extra[up] = _cubic_min(prev_t, prev_f, prev_d, tl[up], ft[up], dt[up])
        extra = torch.where(torch.isfinite(extra), extra, 4 * tl)
        extra = torch.minimum(torch.maximum(extra, 2 * tl), 10 * tl)
        t[live] = torch.where(bracketed, zoom, extra)
    fallback = ~done & (lo_t > 0)
    x_new[fallback] = x[fallback] + lo_t[fallback].unsqueeze(-1) * d[fallback]
    f_new[fallback], g_new[fallback] = lo_f[fallback], lo_g[fallback]
    return done | fallback, x_new, f_new, g_new, evals


def _two_loop(g: Tensor, s: Tensor, y: Tensor, rho: Tensor) -> Tensor:
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
    _check_start(x0)
    K, n = x0.shape
    members = torch.arange(K, device=x0.device)
    x = x0.detach().clone()
    f, g = _value_and_grad(fun, x, members)
    n_evals = 1
    failed = ~_finite(f, g)
    converged = ~failed & (g.abs().amax(-1) <= cfg.tol_grad)
    active = ~failed & ~converged
    s_hist = x.new_zeros(K, cfg.history, n)
    y_hist = x.new_zeros(K, cfg.history, n)
    rho = x.new_zeros(K, cfg.history)
    steepest = torch.ones(K, dtype=torch.bool, device=x.device)
    n_iter = torch.zeros(K, dtype=torch.int64, device=x.device)
    eps = torch.finfo(x.dtype).eps
    tol_cost = _tol_cost(cfg.tol_cost, x.dtype)
    for _ in range(cfg.max_iter):
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        gi = g[idx]
        d = _two_loop(gi, s_hist[idx], y_hist[idx], rho[idx])
        descent = (gi * d).sum(-1) < 0
        d = torch.where(descent.unsqueeze(-1), d, -gi)
        sd = steepest[idx] | ~descent
        t0 = torch.where(sd, (1.0 / gi.norm(dim=-1)).clamp(max=1.0), torch.ones_like(f[idx]))
        ok, x_new, f_new, g_new, evals = _line_search(fun, x[idx], f[idx], gi, d, t0, idx, cfg)
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
        done = _small_decrease(f[moved], f_new[ok], tol_cost) | (
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
    _check_start(x0)
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
    failed = ~(ok & _finite(f, g))
    converged = ~failed & (g.abs().amax(-1) <= cfg.tol_grad)
    active = ~failed & ~converged
    lam = cfg.damping0 * torch.diagonal(h, dim1=-2, dim2=-1).amax(-1).clamp_min(1.0)
    nu = torch.full_like(f, 2.0)
    n_iter = torch.zeros(K, dtype=torch.int64, device=x.device)
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    tol_cost = _tol_cost(cfg.tol_cost, x.dtype)
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
            good = ok_t & _finite(f_t, g_t) & (gain > 1e-4)
            acc = t_idx[good]
            done = _small_decrease(f[acc], f_t[good], tol_cost) | (
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
