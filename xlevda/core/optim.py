"""Batched optimizers for K independent minimization problems solved in one pass.

Member ``k`` of a batch is its own problem: it has its own curvature history,
step size, damping and convergence flag, and its iterate never depends on any
other member.  The problems are evaluated together: an objective receives the
points of the members still iterating, ``x`` of shape ``(M, n)``, together with
their indices ``members`` of shape ``(M,)`` into the batch, and returns one cost
per row.  Members that have converged (or failed) are no longer evaluated, so a
few slow members cost only their own share of the work.

Two methods:

- :func:`~xlevda.core.lbfgs.lbfgs`: limited-memory BFGS with a batched strong-Wolfe
  line search (:mod:`xlevda.core.line_search`, cubic interpolation), for any smooth
  objective ``f(x) -> (M,)``.
- :func:`~xlevda.core.gauss_newton.gauss_newton`: Levenberg-Marquardt on a residual
  ``r(x) -> (M, m)`` with cost ``1/2 |r|^2``, given its linearization ``(r, J)``; the
  damped ``(n, n)`` normal equations are solved by a batched Cholesky factorization.
  :func:`~xlevda.core.gauss_newton.linearization` provides ``J`` by forward-mode
  automatic differentiation (``n`` directions) or reverse mode (``m`` directions),
  whichever is fewer; callers that know their structure supply a cheaper one.

Both return an :class:`OptimResult`.  A member whose cost or gradient is not
finite where it starts is flagged ``failed`` and left at its starting point;
afterwards trial points whose cost, gradient or Jacobian is not finite are
rejected like any other bad step, and an accepted step never raises the cost by
more than its round-off (``2 eps |f|``, where the L-BFGS line search trusts the
slope alone), so no member moves to a worse or non-finite point.

This module holds what the methods share: their configs, the result, the batched
objective types and the evaluation and convergence helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from xlevda.errors import ConfigError, ShapeError
from xlevda.validate import check_int, check_real

__all__ = [
    "BatchedObjective",
    "BatchedResidual",
    "GaussNewtonConfig",
    "LBFGSConfig",
    "Linearization",
    "OptimResult",
    "check_start",
    "default_tol_cost",
    "finite_rows",
    "small_decrease",
    "value_and_grad",
]

BatchedObjective = Callable[[Tensor, Tensor], Tensor]
"""``f(x, members) -> cost``: ``x`` (M, n), ``members`` (M,) int64 -> (M,)."""

BatchedResidual = Callable[[Tensor, Tensor], Tensor]
"""``r(x, members) -> residual``: ``x`` (M, n), ``members`` (M,) int64 -> (M, m)."""

Linearization = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""``(x, members) -> (r, J)``: residuals (M, m) and their Jacobians (M, m, n)."""


@dataclass(frozen=True)
class LBFGSConfig:
    """Options of :func:`~xlevda.core.lbfgs.lbfgs`.

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
        check_int("LBFGSConfig.max_iter", self.max_iter, 1)
        check_int("LBFGSConfig.history", self.history, 1)
        check_int("LBFGSConfig.line_search_max", self.line_search_max, 1)
        check_real("LBFGSConfig.tol_grad", self.tol_grad, 0.0, finite=False)
        if self.tol_cost is not None:
            check_real("LBFGSConfig.tol_cost", self.tol_cost, 0.0, finite=False)
        check_real("LBFGSConfig.c1", self.c1, 0.0, 1.0, finite=False)
        check_real("LBFGSConfig.c2", self.c2, 0.0, 1.0, finite=False)
        if not 0.0 < self.c1 < self.c2 < 1.0:
            raise ConfigError(
                f"LBFGSConfig.c1={self.c1}, c2={self.c2} are out of range: need 0 < c1 < c2 < 1"
            )


@dataclass(frozen=True)
class GaussNewtonConfig:
    """Options of :func:`~xlevda.core.gauss_newton.gauss_newton` (Levenberg-Marquardt).

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
    jacobian : {"forward", "pointwise"}
        How LEVDA (:func:`~xlevda.core.levda.solve_window`) gets the Jacobian of its
        residual: forward mode through the whole chain (``r`` tangent passes; best
        for separable decoders, whose per-point work is linear in the state), or
        ``"pointwise"``
        (:meth:`~xlevda.core.objective.WindowObjective.linearize_pointwise`: about
        ``1 + C`` decoder passes; best for MLP neural-field decoders: on the tsunami
        twin with the MLP-decoder surrogate 52.9 s against 79.8 s for L-BFGS,
        docs/results.md).

    Examples
    --------
    >>> GaussNewtonConfig(max_iter=20).damping0
    1e-06
    >>> GaussNewtonConfig(jacobian="pointwise").jacobian
    'pointwise'
    """

    max_iter: int = 50
    damping0: float = 1e-6
    damping_max: float = 1e12
    tol_grad: float = 1e-6
    tol_cost: float | None = None
    jacobian: Literal["forward", "pointwise"] = "forward"

    def __post_init__(self) -> None:
        check_int("GaussNewtonConfig.max_iter", self.max_iter, 1)
        check_real("GaussNewtonConfig.damping0", self.damping0, 0.0, low_open=True, finite=False)
        check_real("GaussNewtonConfig.damping_max", self.damping_max, self.damping0, finite=False)
        check_real("GaussNewtonConfig.tol_grad", self.tol_grad, 0.0, finite=False)
        if self.tol_cost is not None:
            check_real("GaussNewtonConfig.tol_cost", self.tol_cost, 0.0, finite=False)
        if self.jacobian not in ("forward", "pointwise"):
            raise ConfigError(
                f"GaussNewtonConfig.jacobian={self.jacobian!r} is invalid: use 'forward' or "
                "'pointwise'"
            )


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


def check_start(x0: Tensor) -> None:
    """Raise ``ShapeError`` unless ``x0`` is a floating (K, n) tensor of starting points."""
    if x0.ndim != 2 or not x0.is_floating_point():
        raise ShapeError(
            f"x0 must be a floating tensor of shape (K, n), got {tuple(x0.shape)} {x0.dtype}"
        )


def value_and_grad(fun: BatchedObjective, x: Tensor, members: Tensor) -> tuple[Tensor, Tensor]:
    """Costs (M,) and their gradients (M, n) of ``fun`` at ``x`` (M, n), detached."""
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        f = fun(xr, members)
        (g,) = torch.autograd.grad(f.sum(), xr)
    return f.detach(), g


def finite_rows(f: Tensor, g: Tensor) -> Tensor:
    """Members (M,) whose cost ``f`` (M,) and gradient ``g`` (M, n) are all finite."""
    return torch.isfinite(f) & torch.isfinite(g).all(-1)


def default_tol_cost(tol: float | None, dtype: torch.dtype) -> float:
    """``tol``, or ``10 eps`` of ``dtype`` where it is ``None``."""
    return 10 * torch.finfo(dtype).eps if tol is None else tol


def small_decrease(f_old: Tensor, f_new: Tensor, tol: float) -> Tensor:
    """Relative decrease at most ``tol``; never true for ``tol = 0`` (criterion off)."""
    scale = torch.maximum(torch.maximum(f_old.abs(), f_new.abs()), torch.ones_like(f_old))
    return (f_old - f_new <= tol * scale) & (tol > 0)
