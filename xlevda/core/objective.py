"""The LEVDA cost of one window, eq. 19, for every member as batch inputs of one function.

Member ``j`` of the analysis minimizes

    J_j(alpha) = 1/2 |alpha - a_j|^2 + 1/2 sum_i |y_i + eta_ij - H_i(D(s(t_i; alpha)))|^2_{R_i^-1}

over ``alpha`` (with a hybrid covariance, :mod:`xlevda.core.hybrid`, over
``(alpha, v)`` with the prior term ``1/2 |alpha - a_j|^2 + 1/2 |v - v_j|^2``), where
``s(t_i; alpha)`` comes from the surrogate's Euler rollout (eq. 13) and eq. 17 between
steps (:func:`~xlevda.core.dynamics.observe`); the member centres ``a_j`` and
perturbations ``eta_ij`` depend on the member mode (:mod:`xlevda.core.members`).  The
optimizers see it in the reduced coordinates of
:class:`~xlevda.core.subspace.EnsembleSubspace`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from xlevda.core.dynamics import VectorField, latent_at_observations, observe
from xlevda.core.hybrid import STATIC_STREAM, HybridCovariance
from xlevda.core.inflation import Inflation
from xlevda.core.members import (
    NOISE_STREAM,
    MemberMode,
    RandomizedMaximumLikelihood,
    SharedCost,
)
from xlevda.core.misfit import weighted_misfit
from xlevda.core.rng import check_seed, generator, normal
from xlevda.core.subspace import EnsembleSubspace
from xlevda.core.window import ObsWindow
from xlevda.errors import ConfigError, ShapeError, VariableError
from xlevda.surrogates.protocol import Surrogate

__all__ = ["LinearStart", "WindowObjective"]


@dataclass(frozen=True)
class LinearStart:
    """Starting points at the members' linear ensemble analyses
    (:meth:`WindowObjective.enkf_start`).

    Attributes
    ----------
    x : Tensor, shape (K, r)
        Reduced starting points.
    exact : Tensor, shape (K,), bool
        The point is the member's minimum: the secant model of the observations
        was verified there.
    cost : Tensor, shape (K,)
        The member's cost at ``x``.
    decoded : Tensor, shape (K, T_o, P, C)
        The surrogate's values at the observations from ``x``.
    """

    x: Tensor
    exact: Tensor
    cost: Tensor
    decoded: Tensor


@dataclass(frozen=True)
class WindowObjective:
    """Eq. 19 for every member of one window, as batch inputs of one function.

    Member ``j`` has prior centre ``centre[j]`` (or the shared ``centre[0]``) and
    data ``data[j]`` (or the shared ``data[0]``).  :meth:`cost` and :meth:`residual`
    take reduced coordinates (what the optimizers see); :meth:`cost_full` is the same
    cost in the paper's ``alpha`` (K-vector; ``(alpha, v)`` with a hybrid covariance)
    parametrization.

    Attributes
    ----------
    surrogate : Surrogate
    subspace : EnsembleSubspace
    window : ObsWindow
        In the working dtype and device.
    prepared : Tensor, shape (T_o, P, F)
        Prepared query points (computed once per window).
    observed : Tensor, shape (T_o, P, C)
        Observations, 0 where ``weight == 0``.
    data : Tensor, shape (1 or K, T_o, P, C)
        What each member fits: ``observed``, or ``observed + eta_j``.
    sqrt_weight : Tensor, shape (T_o, P, C)
        ``1 / sigma`` per value, 0 where missing.
    centre : Tensor, shape (1 or K, K + r_c)
        Prior centres of the control ``(alpha, v)``: 0 (shared cost) or
        ``(sqrt(K-1) e_j, v_j)`` with ``v_j ~ N(0, I)`` (randomized maximum likelihood).
    start_control : Tensor, shape (K, K + r_c)
        Where member ``j`` starts: ``(sqrt(K-1) e_j, v_j)`` (``v_j = 0`` for the shared cost).
    param_tendency : callable or None
        ``G(u)``.
    """

    surrogate: Surrogate
    subspace: EnsembleSubspace
    window: ObsWindow
    prepared: Tensor
    observed: Tensor
    data: Tensor
    sqrt_weight: Tensor
    centre: Tensor
    start_control: Tensor
    param_tendency: VectorField | None

    @classmethod
    def build(
        cls,
        surrogate: Surrogate,
        z_background: Tensor,
        window: ObsWindow,
        *,
        inflation: Inflation | None = None,
        member_mode: MemberMode | None = None,
        inflation_seed: int | torch.Generator = 0,
        noise_seed: int | torch.Generator = 0,
        param_tendency: VectorField | None = None,
        hybrid: HybridCovariance | None = None,
        static_sqrt: Tensor | None = None,
    ) -> WindowObjective:
        """Check inputs against the surrogate and set up member centres and data.

        Parameters
        ----------
        surrogate : Surrogate
        z_background : Tensor, shape (K, d_z)
            Background ensemble; sets dtype and device.
        window : ObsWindow
        inflation : Inflation, optional
        member_mode : SharedCost or RandomizedMaximumLikelihood, optional
            Default :class:`~xlevda.core.members.SharedCost`.
        inflation_seed, noise_seed : int or torch.Generator
            Sources of the additive inflation's noise and of the randomized members'
            observation perturbations (streams of an int seed, see
            :func:`xlevda.core.rng.generator`).
        param_tendency : callable, optional
        hybrid : HybridCovariance, optional
            With ``static_sqrt`` (``L``, (d_z, r_c)): the hybrid covariance; the
            randomized members' static centres ``v_j`` come from ``noise_seed``'s stream
            :data:`~xlevda.core.hybrid.STATIC_STREAM` (drawn after the observation
            perturbations).
        static_sqrt : Tensor, optional

        Raises
        ------
        ConfigError, ShapeError, VariableError
        """
        mode = SharedCost() if member_mode is None else member_mode
        if not isinstance(mode, SharedCost | RandomizedMaximumLikelihood):
            raise ConfigError(
                f"member_mode={mode!r} is invalid: use SharedCost() or "
                "RandomizedMaximumLikelihood()"
            )
        check_seed("noise_seed", noise_seed)
        d_z = surrogate.latent_dim + surrogate.param_dim
        if not isinstance(z_background, Tensor) or not z_background.is_floating_point():
            raise ShapeError(f"z_background must be a floating tensor, got {type(z_background)}")
        if z_background.ndim != 2 or z_background.shape[1] != d_z:
            raise ShapeError(
                f"z_background has shape {tuple(z_background.shape)}; expected (K, d_z) with "
                f"d_z = latent_dim + param_dim = {surrogate.latent_dim} + "
                f"{surrogate.param_dim} = {d_z}"
            )
        if z_background.shape[0] < 2:
            raise ConfigError(f"members K={z_background.shape[0]}: LEVDA needs at least 2")
        if not torch.isfinite(z_background).all():
            bad = (~torch.isfinite(z_background)).any(1).nonzero()[0].item()
            raise VariableError(f"z_background is not finite for member {bad}")
        n_c, n_ch = surrogate.schema.n_coords, surrogate.schema.n_channels
        if window.points.shape[-1] != n_c or window.values.shape[-1] != n_ch:
            raise ShapeError(
                f"window points {tuple(window.points.shape)} and values "
                f"{tuple(window.values.shape)} do not fit the surrogate: expected "
                f"(T_o, P, {n_c}) and (T_o, P, {n_ch})"
            )
        z_b = z_background.detach()
        win = window.to(z_b.dtype, z_b.device)
        subspace = EnsembleSubspace.from_ensemble(
            z_b, inflation, inflation_seed, hybrid, static_sqrt
        )
        observed = torch.where(win.weight > 0, win.values, torch.zeros_like(win.values))
        sqrt_weight = win.weight.sqrt()
        with torch.no_grad():
            prepared = surrogate.prepare_points(win.points)
        K, r_c = z_b.shape[0], subspace.n_control - z_b.shape[0]
        members = math.sqrt(K - 1) * torch.eye(K, dtype=z_b.dtype, device=z_b.device)
        if isinstance(mode, RandomizedMaximumLikelihood):
            eta = normal((K, *observed.shape), generator(noise_seed, NOISE_STREAM), z_b)
            std = torch.where(win.weight > 0, 1 / sqrt_weight, torch.zeros_like(sqrt_weight))
            data = observed + std * eta
            v = normal((K, r_c), generator(noise_seed, STATIC_STREAM), z_b)
            centre = start = torch.cat([members, v], -1)
        else:
            data = observed.unsqueeze(0)
            start = torch.cat([members, z_b.new_zeros(K, r_c)], -1)
            centre = torch.zeros_like(start[:1])
        objective = cls(
            surrogate,
            subspace,
            win,
            prepared,
            observed,
            data,
            sqrt_weight,
            centre,
            start,
            param_tendency,
        )
        with torch.no_grad():
            out = objective.observe(subspace.mean.unsqueeze(0))
        if out.shape[1:] != observed.shape:
            raise ShapeError(
                f"surrogate.decode_prepared returned {tuple(out.shape)} for one member; "
                f"expected (1, T_o, P, C) = (1, {', '.join(map(str, observed.shape))})"
            )
        return objective

    @property
    def start(self) -> Tensor:
        """Reduced starting points (K, r) of :attr:`start_control` (background member j)."""
        return self.start_control @ self.subspace.coords

    def enkf_start(self, tol: float = 0.0) -> LinearStart:
        """Reduced starting points (K, r) at each member's linear ensemble analysis.

        With ``b_j`` the background starts (:attr:`start`) and the subspace mean
        (``b = 0``), and ``h_j`` their weighted decoded observations, the secant
        Jacobian ``Y`` is the least-squares fit ``h_j - hbar ~ Y (b_j - bbar)`` over
        these K + 1 points; member ``j`` starts at
        the minimizer of ``1/2 |beta - c_j|^2 + 1/2 |d_j - hbar - Y (beta - bbar)|^2``
        (``c_j`` its prior centre, ``d_j`` its weighted data), or at ``b_j`` where
        that point's cost is not lower.  See
        :class:`~xlevda.core.members.RandomizedMaximumLikelihood` (``start="enkf"``).

        Where the observation map is affine on the subspace (linear latent dynamics
        and decoder, parameters without effect over the window), that minimizer is
        member ``j``'s exact minimum.  It is accepted as such (``exact``) when the
        weighted observations decoded there differ from the secant model's
        prediction ``delta_j`` by ``1/2 |delta_j|^2 <= tol * max(cost_j, 1)``: the
        decrease an exact Gauss-Newton step could still give is then of that order.

        Parameters
        ----------
        tol : float
            Relative tolerance of the check (``>= 0``; 0 accepts only an exact match).
        """
        start = self.start
        with torch.no_grad():
            # the K starts and the subspace mean (beta = 0): with additive inflation the
            # starts are not centred, and r can reach K, which K points alone cannot fit
            points = torch.cat([start, torch.zeros_like(start[:1])])
            decoded = self.observe(self.subspace.state_reduced(points))
            h = (self.sqrt_weight * decoded).flatten(1)
            data = (self.sqrt_weight * self.data).flatten(1)
            b_mean, h_mean = points.mean(0), h.mean(0)
            y_t = torch.linalg.pinv(points - b_mean) @ (h - h_mean)  # Y^T: (r, m)
            centre = self.centre @ self.subspace.coords
            rhs = centre + (data - h_mean + b_mean @ y_t) @ y_t.T
            eye = torch.eye(y_t.shape[0], dtype=y_t.dtype, device=y_t.device)
            linear = torch.linalg.solve(eye + y_t @ y_t.T, rhs.T).T
            cost_start = 0.5 * (
                (start - centre).square().sum(-1) + (h[:-1] - data).square().sum(-1)
            )
            decoded_linear = self.observe(self.subspace.state_reduced(linear))
            h_linear = (self.sqrt_weight * decoded_linear).flatten(1)
            cost = 0.5 * ((linear - centre).square().sum(-1) + (h_linear - data).square().sum(-1))
            better = cost < cost_start
            predicted = h_mean + (linear - b_mean) @ y_t
            mismatch = 0.5 * (h_linear - predicted).square().sum(-1)
            exact = better & (mismatch <= tol * cost.abs().clamp_min(1.0))
        moved = better.view(-1, *[1] * (decoded.ndim - 1))
        return LinearStart(
            torch.where(better.unsqueeze(-1), linear, start),
            exact,
            torch.where(better, cost, cost_start),
            torch.where(moved, decoded_linear, decoded[:-1]),
        )

    def observe(self, z: Tensor) -> Tensor:
        """Decoded values at the observations: ``z`` (M, d_z) -> (M, T_o, P, C)."""
        if self.window.step.numel() == 0:
            return z.new_zeros(z.shape[0], *self.observed.shape)
        return observe(self.surrogate, z, self.window, self.prepared, self.param_tendency)

    def _obs_residual(self, z: Tensor, members: Tensor) -> Tensor:
        return self.sqrt_weight * (self.observe(z) - self._member_data(members))

    def _obs_cost(self, z: Tensor, data: Tensor) -> Tensor:
        """``|sqrt_weight (observe(z) - data)|^2`` per member: (M, d_z) -> (M,).

        Through the surrogate's ``misfit_prepared`` where it has one (the MLP
        decoder's fused pass), else from :meth:`observe`.
        """
        if self.window.step.numel() == 0:
            return z.new_zeros(z.shape[0])
        fused = getattr(self.surrogate, "misfit_prepared", None)
        if fused is None:
            return weighted_misfit(self.observe(z), data, self.sqrt_weight).sum(-1)
        s = latent_at_observations(self.surrogate, z, self.window, self.param_tendency)
        return fused(s, self.prepared, data, self.sqrt_weight).sum(-1)

    def _member_data(self, members: Tensor) -> Tensor:
        return self.data if self.data.shape[0] == 1 else self.data[members]

    def _member_centre(self, members: Tensor) -> Tensor:
        return self.centre if self.centre.shape[0] == 1 else self.centre[members]

    def _prior_residual(self, beta: Tensor, members: Tensor) -> Tensor:
        return beta - self._member_centre(members) @ self.subspace.coords

    def cost(self, beta: Tensor, members: Tensor) -> Tensor:
        """Eq. 19 in reduced coordinates: ``beta`` (M, r), ``members`` (M,) -> (M,)."""
        obs = self._obs_cost(self.subspace.state_reduced(beta), self._member_data(members))
        return 0.5 * (self._prior_residual(beta, members).square().sum(-1) + obs)

    def residual(self, beta: Tensor, members: Tensor) -> Tensor:
        """Stacked prior and weighted data residuals: (M, r) -> (M, r + T_o P C)."""
        r_obs = self._obs_residual(self.subspace.state_reduced(beta), members)
        return torch.cat([self._prior_residual(beta, members), r_obs.flatten(1)], -1)

    def linearize_pointwise(self, beta: Tensor, members: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`residual` and its Jacobian: (M, r) -> (M, r + T_o P C), (M, r + T_o P C, r).

        The chain ``beta -> s(t_i) -> D(s(t_i), xi)`` is differentiated in two
        parts: forward mode through the small latent rollout (``r`` tangents of
        size ``d_s``), then reverse mode through the decoder, one pass per channel,
        with ``s`` copied to every point so that one pass gives every point's
        gradient.  This costs about ``1 + C`` decoder passes instead of the ``r``
        of forward mode through the whole chain, which pays where the whole
        decoder runs per point anyway (an MLP on ``[features(xi), s]``), but not
        for a separable decoder, whose state-dependent part would then run per
        point.  It relies on the decoder being pointwise (eq. 14: the value at a
        point depends on that point alone).
        """
        n = beta.shape[-1]
        r_prior = self._prior_residual(beta, members)
        eye = torch.eye(n, dtype=beta.dtype, device=beta.device)
        jac_prior = eye.expand(beta.shape[0], n, n)
        if self.window.step.numel() == 0:
            return r_prior, jac_prior

        def latent(b: Tensor) -> Tensor:
            z = self.subspace.state_reduced(b)
            return latent_at_observations(self.surrogate, z, self.window, self.param_tendency)

        def column(v: Tensor) -> tuple[Tensor, Tensor]:
            return torch.func.jvp(latent, (beta,), (v.expand_as(beta),))

        s_obs, ds = torch.func.vmap(column, out_dims=(None, -1))(eye)  # (M, T_o, d_s, n)
        n_pts, n_ch = self.observed.shape[1:]
        with torch.enable_grad():
            s_pt = s_obs.detach().unsqueeze(-2).expand(-1, -1, n_pts, -1).clone()
            s_pt.requires_grad_(True)
            out = self.surrogate.decode_prepared(s_pt, self.prepared.unsqueeze(-2)).squeeze(-2)
            grads = [
                torch.autograd.grad(out[..., c].sum(), s_pt, retain_graph=c < n_ch - 1)[0]
                for c in range(n_ch)
            ]
        d_dec = torch.stack(grads, -2).flatten(2, 3)  # (M, T_o, P C, d_s)
        jac_obs = (d_dec @ ds).unflatten(2, (n_pts, n_ch)) * self.sqrt_weight.unsqueeze(-1)
        data = self._member_data(members)
        r_obs = self.sqrt_weight * (out.detach() - data)
        return (
            torch.cat([r_prior, r_obs.flatten(1)], -1),
            torch.cat([jac_prior, jac_obs.flatten(1, 3)], 1),
        )

    def cost_full(self, alpha: Tensor, members: Tensor) -> Tensor:
        """Eq. 19 as the paper writes it: ``alpha`` (M, K + r_c), ``members`` (M,) -> (M,)."""
        obs = self._obs_cost(self.subspace.state(alpha), self._member_data(members))
        r_prior = alpha - self._member_centre(members)
        return 0.5 * (r_prior.square().sum(-1) + obs)

    def misfit(self, z: Tensor) -> Tensor:
        """``1/2 sum w (y - H(z))^2`` against the unperturbed data: (M, d_z) -> (M,)."""
        return 0.5 * self._obs_cost(z, self.observed)
