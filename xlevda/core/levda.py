"""LEVDA on one assimilation window (paper section 3.2, eq. 19), all members at once.

Member ``j`` of the analysis minimizes its cost
(:class:`~xlevda.core.objective.WindowObjective`) over the coefficients ``alpha``
of the ensemble subspace (:class:`~xlevda.core.subspace.EnsembleSubspace`) by a
batched optimizer (:func:`~xlevda.core.lbfgs.lbfgs` or
:func:`~xlevda.core.gauss_newton.gauss_newton`); the member modes are in
:mod:`xlevda.core.members`, the inflation in :mod:`xlevda.core.inflation`.

A member whose cost or gradient is not finite at its start (e.g. the surrogate
returns NaN there) is flagged ``failed`` and keeps its background member; the
optimizers reject non-finite trial points, so no member ends at a NaN state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from xlevda.core.dynamics import VectorField
from xlevda.core.excess import Excess, observed_excess
from xlevda.core.gauss_newton import gauss_newton, linearization
from xlevda.core.hybrid import HybridCovariance
from xlevda.core.inflation import Inflation
from xlevda.core.lbfgs import lbfgs
from xlevda.core.members import MemberMode, RandomizedMaximumLikelihood
from xlevda.core.misfit import weighted_misfit
from xlevda.core.objective import WindowObjective
from xlevda.core.optim import GaussNewtonConfig, LBFGSConfig, OptimResult, default_tol_cost
from xlevda.core.window import ObsWindow
from xlevda.errors import ConfigError
from xlevda.surrogates.protocol import Surrogate

__all__ = ["WindowResult", "solve_window"]


@dataclass(frozen=True)
class WindowResult:
    """Analysis ensemble and per-member diagnostics of one window.

    Attributes
    ----------
    z_analysis : Tensor, shape (K, d_z)
        Analysis members ``zbar + P_z alpha_j``; a failed member keeps its
        background member.
    alpha : Tensor, shape (K, K + r_c)
        Controls ``alpha_j`` (row ``j``), ``(alpha_j, v_j)`` with a hybrid covariance
        (``r_c = 0`` without); a failed member's row is its start.
    cost : Tensor, shape (K,)
        Final value of member ``j``'s own cost (its centre and data).
    misfit : Tensor, shape (K,)
        ``1/2 sum w (y - H)^2`` of the analysis against the unperturbed
        observations; ``2 misfit / n_obs`` near 1 means a fit at the noise level.
    misfit_background : Tensor, shape (K,)
        The same for the background members.
    n_obs : int
        Observed values in the window.
    decoded : Tensor, shape (K, T_o, P, C)
        The surrogate's values at the window's observations from :attr:`z_analysis`
        (0 where nothing is observed).
    excess : Excess
        :func:`~xlevda.core.excess.observed_excess` of the analysis members;
        ``unexplained_var`` is the positive part of its mean
        (:func:`~xlevda.core.excess.unexplained_variance`).
    n_iter : Tensor, shape (K,), int64
    converged : Tensor, shape (K,), bool
    failed : Tensor, shape (K,), bool
        Cost or gradient not finite at the member's start.
    rank : int
        Dimension ``r`` of the optimized coordinates.
    """

    z_analysis: Tensor
    alpha: Tensor
    cost: Tensor
    misfit: Tensor
    misfit_background: Tensor
    n_obs: int
    decoded: Tensor
    excess: Excess
    n_iter: Tensor
    converged: Tensor
    failed: Tensor
    rank: int

    @property
    def unexplained_var(self) -> Tensor:
        """:func:`~xlevda.core.excess.unexplained_variance` of the analysis members, (C,)."""
        return self.excess.mean.clamp_min(0)


def solve_window(
    surrogate: Surrogate,
    z_background: Tensor,
    window: ObsWindow,
    *,
    inflation: Inflation | None = None,
    member_mode: MemberMode | None = None,
    optimizer: LBFGSConfig | GaussNewtonConfig | None = None,
    inflation_seed: int | torch.Generator = 0,
    noise_seed: int | torch.Generator = 0,
    param_tendency: VectorField | None = None,
    hybrid: HybridCovariance | None = None,
    static_sqrt: Tensor | None = None,
) -> WindowResult:
    """LEVDA analysis of one window: K member problems in one batched solve.

    Parameters
    ----------
    surrogate : Surrogate
        Differentiable latent model; works in the dtype of ``z_background``.
    z_background : Tensor, shape (K, d_z)
        Background ensemble of window-initial states ``(s, u)``, ``K >= 2``.
    window : ObsWindow
        Observations, steps counted from the window start.
    inflation : Inflation, optional
        Default: none (``multiplicative = 1``, ``additive = 0``).
    member_mode : SharedCost or RandomizedMaximumLikelihood, optional
        Default :class:`~xlevda.core.members.SharedCost` (the paper).
    optimizer : LBFGSConfig or GaussNewtonConfig, optional
        Default ``LBFGSConfig()`` (the paper's method, to round-off;
        :class:`xlevda.methods.LEVDA` stops earlier, at ``tol_cost=1e-4``).
        ``GaussNewtonConfig()`` usually needs far fewer iterations, each costing a
        Jacobian (its ``jacobian`` says how it is computed); it needs a surrogate
        that works under :mod:`torch.func` transforms.
    inflation_seed, noise_seed : int or torch.Generator
        Sources of the additive inflation's noise and of the randomized members'
        observation perturbations (:meth:`WindowObjective.build
        <xlevda.core.objective.WindowObjective.build>`).
    param_tendency : callable, optional
        ``G(u)`` (eq. 16); ``None`` keeps parameters static over the window.
    hybrid : HybridCovariance, optional
        With ``static_sqrt``: the prior covariance ``beta_e^2 P_e + beta_c^2 L L^T``
        (:mod:`xlevda.core.hybrid`); default the ensemble's alone.  Every optimizer and
        both member modes (the EnKF start included) handle its control ``(alpha, v)``.
    static_sqrt : Tensor, shape (d_z, r_c), optional
        ``L`` (:func:`~xlevda.core.hybrid.static_square_root`).

    Returns
    -------
    WindowResult

    Raises
    ------
    ConfigError
        ``K < 2``, bad options, an ensemble without spread.
    ShapeError
        Background or window shapes that do not fit the surrogate.
    VariableError
        Non-finite background members.

    Examples
    --------
    >>> import torch
    >>> from types import SimpleNamespace
    >>> class Identity:  # s' = 0, decodes s itself at every point
    ...     latent_dim, param_dim, dt = 1, 0, torch.tensor(1.0)
    ...     schema = SimpleNamespace(n_coords=1, n_channels=1)
    ...     def vector_field(self, s, u): return torch.zeros_like(s)
    ...     def prepare_points(self, points): return points
    ...     def decode_prepared(self, s, prepared):
    ...         return s[..., None, :].expand(*s.shape[:-1], prepared.shape[-2], 1)
    >>> zb = torch.tensor([[-1.0], [1.0]], dtype=torch.float64)   # B = 2
    >>> w = ObsWindow(torch.tensor([0]), torch.zeros(1, dtype=torch.float64),
    ...               torch.zeros(1, 1, 1, dtype=torch.float64),
    ...               torch.full((1, 1, 1), 3.0, dtype=torch.float64),
    ...               torch.ones(1, 1, 1, dtype=torch.float64))       # y = 3, R = 1
    >>> res = solve_window(Identity(), zb, w)
    >>> [round(v, 6) for v in res.z_analysis.squeeze(-1).tolist()]   # B y / (B + R)
    [2.0, 2.0]
    """
    objective = WindowObjective.build(
        surrogate,
        z_background,
        window,
        inflation=inflation,
        member_mode=member_mode,
        inflation_seed=inflation_seed,
        noise_seed=noise_seed,
        param_tendency=param_tendency,
        hybrid=hybrid,
        static_sqrt=static_sqrt,
    )
    config = LBFGSConfig() if optimizer is None else optimizer
    if not isinstance(config, LBFGSConfig | GaussNewtonConfig):
        raise ConfigError(
            f"optimizer={config!r} is invalid: use LBFGSConfig(...) or GaussNewtonConfig(...)"
        )
    enkf = isinstance(member_mode, RandomizedMaximumLikelihood) and member_mode.start == "enkf"
    if enkf:
        tol = default_tol_cost(config.tol_cost, z_background.dtype)
        lin = objective.enkf_start(tol)
        x0, exact, cost0 = lin.x, lin.exact, lin.cost
    else:
        x0 = objective.start
        exact = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
        cost0 = torch.full_like(x0[:, 0], math.nan)
    x, cost = x0.clone(), cost0.clone()
    n_iter = torch.zeros_like(exact, dtype=torch.int64)
    converged, failed = exact.clone(), torch.zeros_like(exact)
    todo = (~exact).nonzero().squeeze(-1)
    if todo.numel():
        result = _optimize(objective, config, x0[todo], todo)
        x[todo], cost[todo], n_iter[todo] = result.x, result.cost, result.n_iter
        converged[todo], failed[todo] = result.converged, result.failed
    sub = objective.subspace
    z_b = z_background.detach()
    fail = failed.unsqueeze(-1)
    z_a = torch.where(fail, z_b, sub.state_reduced(x))
    with torch.no_grad():
        decoded = lin.decoded.clone() if enkf else objective.observe(z_a)
        if enkf and todo.numel():
            decoded[todo] = objective.observe(z_a[todo])
        misfit = 0.5 * weighted_misfit(decoded, objective.observed, objective.sqrt_weight).sum(-1)
        misfit_b = objective.misfit(z_b)
        excess = observed_excess(decoded, objective.window)
    return WindowResult(
        z_analysis=z_a,
        alpha=torch.where(fail, objective.start_control, sub.lift(x, objective.centre)),
        cost=cost,
        misfit=misfit,
        misfit_background=misfit_b,
        n_obs=objective.window.n_obs,
        decoded=decoded,
        excess=excess,
        n_iter=n_iter,
        converged=converged,
        failed=failed,
        rank=sub.rank,
    )


def _optimize(
    objective: WindowObjective,
    config: LBFGSConfig | GaussNewtonConfig,
    x0: Tensor,
    members: Tensor,
) -> OptimResult:
    """The configured batched optimizer on the problems of ``members`` (M,) from ``x0`` (M, r)."""
    if isinstance(config, LBFGSConfig):
        return lbfgs(lambda x, k: objective.cost(x, members[k]), x0, config)
    if config.jacobian == "forward":
        linearize = linearization(lambda x, k: objective.residual(x, members[k]), "forward")
    else:

        def linearize(x: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
            return objective.linearize_pointwise(x, members[k])

    return gauss_newton(linearize, x0, config)
