"""LEVDA on one assimilation window (paper section 3.2, eq. 19), all members at once.

The background ensemble ``z_b`` (K, d_z) of augmented latent states ``z = (s, u)``
spans the affine subspace ``z(alpha) = zbar + P_z alpha`` (``alpha`` in ``R^K``).
Member ``j`` of the analysis minimizes

    J_j(alpha) = 1/2 |alpha - a_j|^2 + 1/2 sum_i |y_i + eta_ij - H_i(D(s(t_i; alpha)))|^2_{R_i^-1}

over ``alpha`` by a batched optimizer (:mod:`xlevda.core.optim`), where ``s(t_i;
alpha)`` comes from the surrogate's Euler rollout (eq. 13) and eq. 17 between
steps.  Two member modes:

- :class:`WarmStart` (the paper): ``a_j = 0``, ``eta_ij = 0``; member ``j`` starts
  at ``alpha = sqrt(K-1) e_j`` (background member ``j``).  Every member minimizes
  the *same* cost, so where that cost is convex (linear-Gaussian problems) all
  members converge to the one MAP estimate and the analysis ensemble has no
  spread.  With no observations (or weights -> 0) every member goes to the
  ensemble mean, not to its background member.
- :class:`Randomized` (randomized maximum likelihood): ``a_j = sqrt(K-1) e_j``
  (the coefficients of background member ``j``) and ``eta_ij ~ N(0, R_i)``
  drawn per member.  On a linear-Gaussian problem the members are samples of
  the ensemble-space posterior: their mean is the MAP estimate plus the average
  of the ``eta`` mapped through the gain, and their sample covariance has
  expectation ``P_z (I + G^T R^-1 G)^-1 P_z^T``, the Kalman smoother covariance
  for ``B = P_z P_z^T``.  With no observations (or weights -> 0) member ``j``
  stays at ``zbar + P_z a_j``: its background member, inflated.

Inflation (:class:`Inflation`) acts on the perturbations before ``P_z`` is
formed, so it widens the prior ``B = P_z P_z^T``; the posterior follows from the
observations as usual and is never scaled directly.

Only ``r = rank(P_z) <= min(K, d_z)`` directions of ``alpha`` reach the
observations; the others enter the cost through the prior term alone, and their
minimizer is the centre ``a_j``.  The optimizers therefore work on the ``r``
coordinates ``beta = alpha V`` (``V`` (K, r) orthonormal, ``P_z^T = V basis``),
which leaves the minimizer and the analysis unchanged while an iteration costs
``r`` instead of ``K`` unknowns per member (for ``K = 100``, ``d_z = 14``: a 14 x 14
Gauss-Newton system instead of 100 x 100).

A member whose cost or gradient is not finite at its start (e.g. the surrogate
returns NaN there) is flagged ``failed`` and keeps its background member; the
optimizers reject non-finite trial points, so no member ends at a NaN state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from xlevda.core.dynamics import VectorField, euler_rollout, interpolate_latent
from xlevda.core.optim import (
    GaussNewtonConfig,
    LBFGSConfig,
    OptimResult,
    gauss_newton,
    lbfgs,
    linearization,
)
from xlevda.errors import ConfigError, ObservationError, ShapeError, VariableError
from xlevda.surrogates.fused import weighted_misfit
from xlevda.surrogates.protocol import Surrogate

__all__ = [
    "EnsembleSubspace",
    "Excess",
    "Inflation",
    "MemberMode",
    "ObsWindow",
    "Randomized",
    "WarmStart",
    "WindowObjective",
    "WindowResult",
    "observe",
    "observed_excess",
    "propagate",
    "solve_window",
    "trajectory",
    "unexplained_variance",
]

_INFLATION_STREAM = 0
_NOISE_STREAM = 1


def _check_seed(name: str, seed: object) -> None:
    if isinstance(seed, torch.Generator):
        return
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{name}={seed!r} is invalid: use an int >= 0 or a torch.Generator")


def _generator(seed: int | torch.Generator, stream: int) -> torch.Generator:
    """The given generator, or a CPU one seeded from ``(seed, stream)``.

    Integer seeds are split into independent streams, so inflation and
    observation perturbations drawn from the same integer never coincide.
    """
    if isinstance(seed, torch.Generator):
        return seed
    state = np.random.SeedSequence(seed, spawn_key=(stream,)).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _normal(shape: tuple[int, ...], gen: torch.Generator, like: Tensor) -> Tensor:
    draw = torch.randn(shape, generator=gen, dtype=like.dtype, device=gen.device)
    return draw.to(like.device)


@dataclass(frozen=True)
class Inflation:
    """Multiplicative and additive inflation of the background perturbations.

    ``dz_k <- rho dz_k + eps_k`` with ``eps_k ~ N(0, sigma^2 I)``, applied before
    ``P_z`` is formed: it widens the prior ``B = P_z P_z^T``, never the posterior
    directly.

    Attributes
    ----------
    rho : float
        Multiplicative factor, ``>= 1``.
    sigma : float
        Standard deviation of the additive noise, ``>= 0`` (normalized latent units).
    seed : int or torch.Generator
        Source of ``eps``.  An int gives the same draws on every call; cycling code
        that wants new draws per window passes a generator (it advances) or
        per-window seeds.

    Examples
    --------
    >>> Inflation(rho=1.1, sigma=0.01).rho
    1.1
    """

    rho: float = 1.0
    sigma: float = 0.0
    seed: int | torch.Generator = 0

    def __post_init__(self) -> None:
        if isinstance(self.rho, bool) or not isinstance(self.rho, int | float):
            raise ConfigError(f"Inflation rho={self.rho!r} is invalid: must be a number >= 1")
        if not (math.isfinite(self.rho) and self.rho >= 1):
            raise ConfigError(f"Inflation rho={self.rho!r} is out of range: must be finite, >= 1")
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, int | float):
            raise ConfigError(f"Inflation sigma={self.sigma!r} is invalid: must be a number >= 0")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise ConfigError(
                f"Inflation sigma={self.sigma!r} is out of range: must be finite, >= 0"
            )
        _check_seed("Inflation seed", self.seed)


@dataclass(frozen=True)
class WarmStart:
    """The paper's member mode: one shared cost, members differ only in their start.

    Member ``j`` minimizes ``1/2 |alpha|^2 + 1/2 |y - H(alpha)|^2_{R^-1}`` from
    ``alpha = sqrt(K-1) e_j``.  Spread survives only where the cost has several
    minima; on a convex cost every member reaches the same MAP estimate, and with
    no observations every member becomes the ensemble mean.

    Examples
    --------
    >>> WarmStart()
    WarmStart()
    """


@dataclass(frozen=True)
class Randomized:
    """Randomized-maximum-likelihood members: perturbed prior centre and data.

    Member ``j`` minimizes ``1/2 |alpha - a_j|^2 + 1/2 |y + eta_j - H(alpha)|^2_{R^-1}``
    with ``a_j = sqrt(K-1) e_j`` (background member ``j``) and ``eta_j ~ N(0, R)``
    (``R`` diagonal, ``1 / weight`` where ``weight > 0``; no noise where
    ``weight == 0``).  Linear-Gaussian members are samples of the ensemble-space
    posterior; with no observations member ``j`` keeps its (inflated) background.

    Attributes
    ----------
    seed : int or torch.Generator
        Source of ``eta``; an int gives the same draws on every call.
    start : {"enkf", "background"}
        Where member ``j``'s optimization starts.  ``"enkf"`` (default): at its
        perturbed-observation ensemble Kalman analysis in the subspace, the
        minimizer of its cost with the decoded observations replaced by their
        least-squares linear fit over the K background members and the subspace
        mean (the secant linearization of 4DEnVar and the EnKF, not a tangent at
        one point), kept only where its cost is lower than at ``a_j``.  It moves
        members across a non-convex cost (a wave front far from where a member
        puts it) where a local optimizer from ``a_j`` stalls, and costs two
        evaluations of the ensemble (the fit and the check) and an ``r x r``
        solve.  ``"background"``: at ``a_j``, its background member, as the
        paper's warm start; members far from the data then stay in other local
        minima, which spreads the ensemble without representing the posterior.
        The cost, and its minimizers in the linear-Gaussian case, are the same
        either way.

    Examples
    --------
    >>> Randomized(seed=3).seed
    3
    >>> Randomized(start="background").start
    'background'
    """

    seed: int | torch.Generator = 0
    start: Literal["enkf", "background"] = "enkf"

    def __post_init__(self) -> None:
        _check_seed("Randomized seed", self.seed)
        if self.start not in ("background", "enkf"):
            raise ConfigError(
                f"Randomized start={self.start!r} is invalid: use 'enkf' or 'background'"
            )


MemberMode = WarmStart | Randomized
"""How members differ: :class:`WarmStart` (the paper) or :class:`Randomized` (RML)."""


def _float_tensor(name: str, value: object, ndim: int, layout: str) -> Tensor:
    if not isinstance(value, Tensor) or not value.is_floating_point() or value.ndim != ndim:
        got = f"{tuple(value.shape)} {value.dtype}" if isinstance(value, Tensor) else type(value)
        raise ShapeError(f"ObsWindow.{name} must be a floating tensor {layout}, got {got}")
    return value


@dataclass(frozen=True)
class ObsWindow:
    """Observations of one window, padded to a dense layout (normalized units).

    Time is counted in latent steps from the window's start state (step 0 is the
    background state itself).  Observation time ``i`` lies at
    ``step[i] + frac[i]`` steps (eq. 17).  Each time has ``P`` query points and
    ``C`` channels; ``weight`` is ``1 / sigma^2`` per observed value and 0 where a
    value is missing or padded, so varying counts per time, moving sensors,
    variables observed at different places, duplicated observations and
    per-observation errors all fit.  Padded points must still be valid query
    points (e.g. a copy of a real one): they are decoded, then weighted by 0.

    Attributes
    ----------
    step : Tensor, shape (T_o,), int64
        Latent step of each observation time, ``>= 0``.
    frac : Tensor, shape (T_o,)
        Fraction of a step past ``step``, in ``[0, 1)``.
    points : Tensor, shape (T_o, P, n_c)
        Query points per observation time (finite).
    values : Tensor, shape (T_o, P, C)
        Observed values; ignored (any value, NaN included) where ``weight == 0``.
    weight : Tensor, shape (T_o, P, C)
        Inverse error variances, finite and ``>= 0``.
    n_steps : int, optional
        Steps the window spans (the next window starts at state ``n_steps``);
        default ``max(step) + 1`` (0 without observations).

    Raises
    ------
    ShapeError
        Tensors of the wrong kind or of inconsistent shapes.
    ObservationError
        Negative steps, fractions outside ``[0, 1)``, non-finite points, negative
        or non-finite weights, non-finite values where ``weight > 0``.
    ConfigError
        ``n_steps`` smaller than ``max(step) + 1``.

    Examples
    --------
    >>> import torch
    >>> w = ObsWindow(step=torch.tensor([0, 2]), frac=torch.tensor([0.0, 0.5]),
    ...               points=torch.zeros(2, 3, 1), values=torch.ones(2, 3, 1),
    ...               weight=torch.ones(2, 3, 1))
    >>> w.length, w.n_obs
    (3, 6)
    """

    step: Tensor
    frac: Tensor
    points: Tensor
    values: Tensor
    weight: Tensor
    n_steps: int | None = None

    def __post_init__(self) -> None:
        step = self.step
        if not isinstance(step, Tensor) or step.dtype != torch.int64 or step.ndim != 1:
            got = f"{tuple(step.shape)} {step.dtype}" if isinstance(step, Tensor) else type(step)
            raise ShapeError(f"ObsWindow.step must be an int64 tensor (T_o,), got {got}")
        t_o = step.shape[0]
        frac = _float_tensor("frac", self.frac, 1, "(T_o,)")
        points = _float_tensor("points", self.points, 3, "(T_o, P, n_c)")
        values = _float_tensor("values", self.values, 3, "(T_o, P, C)")
        weight = _float_tensor("weight", self.weight, 3, "(T_o, P, C)")
        if frac.shape[0] != t_o or points.shape[0] != t_o or values.shape[:2] != points.shape[:2]:
            raise ShapeError(
                f"ObsWindow shapes disagree: step {tuple(step.shape)}, frac {tuple(frac.shape)}, "
                f"points {tuple(points.shape)}, values {tuple(values.shape)}; "
                "expected (T_o,), (T_o,), (T_o, P, n_c), (T_o, P, C)"
            )
        if weight.shape != values.shape:
            raise ShapeError(
                f"ObsWindow.weight has shape {tuple(weight.shape)} but values has "
                f"{tuple(values.shape)}; they must match (T_o, P, C)"
            )
        if (step < 0).any():
            raise ObservationError(f"ObsWindow.step must be >= 0, got {step.min().item()}")
        if not (torch.isfinite(frac) & (frac >= 0) & (frac < 1)).all():
            bad = frac[~(torch.isfinite(frac) & (frac >= 0) & (frac < 1))][0].item()
            raise ObservationError(f"ObsWindow.frac must lie in [0, 1), got {bad}")
        if not torch.isfinite(points).all():
            raise ObservationError(
                "ObsWindow.points must be finite everywhere (pad with a valid point, weight 0)"
            )
        if not (torch.isfinite(weight) & (weight >= 0)).all():
            bad = weight[~(torch.isfinite(weight) & (weight >= 0))][0].item()
            raise ObservationError(
                f"ObsWindow.weight must be finite and >= 0 (1/sigma^2; 0 marks a missing "
                f"value), got {bad}"
            )
        if not torch.isfinite(values[weight > 0]).all():
            where = (~torch.isfinite(values) & (weight > 0)).nonzero()[0].tolist()
            raise ObservationError(
                f"ObsWindow.values is not finite at (time, point, channel) = {tuple(where)} "
                "where weight > 0: give such values weight 0"
            )
        need = int(step.max().item()) + 1 if t_o else 0
        if self.n_steps is not None and (
            isinstance(self.n_steps, bool)
            or not isinstance(self.n_steps, int)
            or self.n_steps < need
        ):
            raise ConfigError(
                f"ObsWindow.n_steps={self.n_steps!r} is out of range: must be an int >= "
                f"max(step) + 1 = {need}"
            )

    @property
    def length(self) -> int:
        """Steps the window spans: ``n_steps`` or ``max(step) + 1``."""
        if self.n_steps is not None:
            return self.n_steps
        return int(self.step.max().item()) + 1 if self.step.numel() else 0

    @property
    def n_obs(self) -> int:
        """Number of observed values (``weight > 0``)."""
        return int((self.weight > 0).sum().item())

    def to(self, dtype: torch.dtype, device: torch.device | str) -> ObsWindow:
        """Copy with floating tensors in ``dtype`` and everything on ``device``."""
        return replace(
            self,
            step=self.step.to(device),
            frac=self.frac.to(device, dtype),
            points=self.points.to(device, dtype),
            values=self.values.to(device, dtype),
            weight=self.weight.to(device, dtype),
        )


@dataclass(frozen=True)
class EnsembleSubspace:
    """The affine ensemble subspace ``z(alpha) = mean + alpha @ perturbations``.

    ``perturbations`` holds ``P_z`` transposed: row ``k`` is the inflated
    perturbation of member ``k`` divided by ``sqrt(K-1)``.  Its thin SVD
    ``perturbations = coords @ basis`` (``coords`` orthonormal columns, dropped
    directions below round-off) gives the reduced coordinates ``beta = alpha @ coords``
    in which ``z = mean + beta @ basis``.

    Attributes
    ----------
    mean : Tensor, shape (d_z,)
        Background ensemble mean ``zbar``.
    perturbations : Tensor, shape (K, d_z)
        ``P_z^T``.
    coords : Tensor, shape (K, r)
        Orthonormal basis ``V`` of the row space of ``P_z`` (``r = rank``).
    basis : Tensor, shape (r, d_z)
        ``S U^T``: the directions in state space of the reduced coordinates.

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]], dtype=torch.float64)
    >>> sub = EnsembleSubspace.from_ensemble(z)
    >>> sub.rank, sub.state(2**0.5 * torch.eye(3, dtype=torch.float64)[0]).tolist()
    (1, [0.0, 1.0])
    """

    mean: Tensor
    perturbations: Tensor
    coords: Tensor
    basis: Tensor

    @classmethod
    def from_ensemble(cls, z: Tensor, inflation: Inflation | None = None) -> EnsembleSubspace:
        """Subspace of a background ensemble ``z`` (K, d_z), after inflation.

        Raises
        ------
        ConfigError
            Fewer than two members, or an ensemble without spread.
        """
        infl = inflation or Inflation()
        if z.ndim != 2:
            raise ShapeError(f"background ensemble must have shape (K, d_z), got {tuple(z.shape)}")
        K = z.shape[0]
        if K < 2:
            raise ConfigError(f"members K={K}: LEVDA needs at least 2")
        mean = z.mean(0)
        dz = infl.rho * (z - mean)
        if infl.sigma > 0:
            dz = dz + infl.sigma * _normal(
                tuple(z.shape), _generator(infl.seed, _INFLATION_STREAM), z
            )
        pert = dz / math.sqrt(K - 1)
        u, sv, vh = torch.linalg.svd(pert, full_matrices=False)
        cut = sv[0] * max(pert.shape) * torch.finfo(z.dtype).eps
        rank = int((sv > cut).sum().item())
        if rank == 0:
            raise ConfigError(
                f"background ensemble has no spread: all K={K} members are equal; "
                "use Inflation(sigma > 0) or a spread-out background"
            )
        return cls(mean, pert, u[:, :rank], sv[:rank, None] * vh[:rank])

    @property
    def size(self) -> int:
        """Number of members ``K``."""
        return self.perturbations.shape[0]

    @property
    def rank(self) -> int:
        """Number of reduced coordinates ``r``."""
        return self.basis.shape[0]

    def state(self, alpha: Tensor) -> Tensor:
        """``z(alpha)``: ``alpha`` (..., K) -> (..., d_z)."""
        return self.mean + alpha @ self.perturbations

    def state_reduced(self, beta: Tensor) -> Tensor:
        """``z`` from reduced coordinates: ``beta`` (..., r) -> (..., d_z)."""
        return self.mean + beta @ self.basis

    def lift(self, beta: Tensor, centre_scale: float) -> Tensor:
        """Full coefficients ``alpha`` (K, K) of reduced minimizers ``beta`` (K, r).

        Member ``j``'s prior centre is ``centre_scale * e_j``; its components outside
        the row space of ``P_z`` are kept, as they minimize the prior term.
        """
        centre = centre_scale * torch.eye(self.size, dtype=beta.dtype, device=beta.device)
        return centre + (beta - centre_scale * self.coords) @ self.coords.T


def trajectory(
    surrogate: Surrogate, z: Tensor, n_steps: int, param_tendency: VectorField | None = None
) -> Tensor:
    """Latent trajectories from initial augmented states (eq. 13 and 16).

    Parameters
    ----------
    surrogate : Surrogate
    z : Tensor, shape (..., d_z)
        Initial states ``(s, u)``, ``d_z = latent_dim + param_dim``.
    n_steps : int
        Euler steps.
    param_tendency : callable, optional
        ``G(u)``; ``None`` keeps parameters static.

    Returns
    -------
    Tensor, shape (..., n_steps + 1, d_z)

    Examples
    --------
    >>> import torch
    >>> class Decay:
    ...     latent_dim, param_dim, dt = 1, 1, torch.tensor(0.5)
    ...     def vector_field(self, s, u):
    ...         return -u * s
    >>> trajectory(Decay(), torch.tensor([1.0, 1.0]), 2)[..., 0].tolist()
    [1.0, 0.5, 0.25]
    """
    d_s = surrogate.latent_dim
    s, u = euler_rollout(
        surrogate.vector_field, z[..., :d_s], z[..., d_s:], surrogate.dt, n_steps, param_tendency
    )
    return torch.cat([s, u], -1)


def propagate(
    surrogate: Surrogate, z: Tensor, n_steps: int, param_tendency: VectorField | None = None
) -> Tensor:
    """States ``n_steps`` Euler steps later: ``z`` (..., d_z) -> (..., d_z).

    The next window's background is ``propagate(surrogate, z_analysis, window.length)``.

    Examples
    --------
    >>> import torch
    >>> class Grow:
    ...     latent_dim, param_dim, dt = 1, 0, torch.tensor(1.0)
    ...     def vector_field(self, s, u):
    ...         return s
    >>> propagate(Grow(), torch.tensor([[1.0]]), 3).tolist()
    [[8.0]]
    """
    return trajectory(surrogate, z, n_steps, param_tendency)[..., -1, :]


def observe(
    surrogate: Surrogate,
    z: Tensor,
    window: ObsWindow,
    prepared: Tensor,
    param_tendency: VectorField | None = None,
) -> Tensor:
    """Decoded values at a window's observations from initial states.

    Parameters
    ----------
    surrogate : Surrogate
    z : Tensor, shape (M, d_z)
        Window-initial augmented states.
    window : ObsWindow
        In the dtype and on the device of ``z``.
    prepared : Tensor, shape (T_o, P, F)
        ``surrogate.prepare_points(window.points)``.
    param_tendency : callable, optional
        ``G(u)``; ``None`` keeps parameters static.

    Returns
    -------
    Tensor, shape (M, T_o, P, C)

    Examples
    --------
    >>> import torch
    >>> class Drift:  # s' = 1, decodes s at every point
    ...     latent_dim, param_dim, dt = 1, 0, torch.tensor(1.0)
    ...     def vector_field(self, s, u): return torch.ones_like(s)
    ...     def decode_prepared(self, s, prepared):
    ...         return s[..., None, :].expand(*s.shape[:-1], prepared.shape[-2], 1)
    >>> w = ObsWindow(torch.tensor([0, 2]), torch.tensor([0.5, 0.0]), torch.zeros(2, 1, 1),
    ...               torch.zeros(2, 1, 1), torch.ones(2, 1, 1))
    >>> observe(Drift(), torch.zeros(1, 1), w, w.points).flatten().tolist()
    [0.5, 2.0]
    """
    return surrogate.decode_prepared(_latent_at(surrogate, z, window, param_tendency), prepared)


def _latent_at(
    surrogate: Surrogate, z: Tensor, window: ObsWindow, param_tendency: VectorField | None
) -> Tensor:
    """Latent states at the observation times: ``z`` (M, d_z) -> (M, T_o, d_s)."""
    d_s = surrogate.latent_dim
    last = int(window.step.max().item()) if window.step.numel() else 0
    s, u = euler_rollout(
        surrogate.vector_field, z[..., :d_s], z[..., d_s:], surrogate.dt, last, param_tendency
    )
    return interpolate_latent(surrogate.vector_field, s, u, surrogate.dt, window.step, window.frac)


@dataclass(frozen=True)
class WindowObjective:
    """Eq. 19 for every member of one window, as batch inputs of one function.

    Member ``j`` has prior centre ``centre_scale * e_j`` and data ``data[j]`` (or
    the shared ``data[0]``).  :meth:`cost` and :meth:`residual` take reduced
    coordinates (what the optimizers see); :meth:`cost_full` is the same cost in
    the paper's ``alpha`` (K-vector) parametrization.

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
    centre_scale : float
        0 (warm start) or ``sqrt(K-1)`` (randomized).
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
    centre_scale: float
    param_tendency: VectorField | None

    @classmethod
    def build(
        cls,
        surrogate: Surrogate,
        z_background: Tensor,
        window: ObsWindow,
        *,
        inflation: Inflation | None = None,
        mode: MemberMode | None = None,
        param_tendency: VectorField | None = None,
    ) -> WindowObjective:
        """Check inputs against the surrogate and set up member centres and data.

        Parameters
        ----------
        surrogate : Surrogate
        z_background : Tensor, shape (K, d_z)
            Background ensemble; sets dtype and device.
        window : ObsWindow
        inflation : Inflation, optional
        mode : WarmStart or Randomized, optional
            Default :class:`WarmStart`.
        param_tendency : callable, optional

        Raises
        ------
        ConfigError, ShapeError, VariableError
        """
        mode = WarmStart() if mode is None else mode
        if not isinstance(mode, WarmStart | Randomized):
            raise ConfigError(f"mode={mode!r} is invalid: use WarmStart() or Randomized(seed)")
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
        subspace = EnsembleSubspace.from_ensemble(z_b, inflation)
        observed = torch.where(win.weight > 0, win.values, torch.zeros_like(win.values))
        sqrt_weight = win.weight.sqrt()
        with torch.no_grad():
            prepared = surrogate.prepare_points(win.points)
        K = z_b.shape[0]
        if isinstance(mode, Randomized):
            eta = _normal((K, *observed.shape), _generator(mode.seed, _NOISE_STREAM), z_b)
            std = torch.where(win.weight > 0, 1 / sqrt_weight, torch.zeros_like(sqrt_weight))
            data, centre_scale = observed + std * eta, math.sqrt(K - 1)
        else:
            data, centre_scale = observed.unsqueeze(0), 0.0
        objective = cls(
            surrogate,
            subspace,
            win,
            prepared,
            observed,
            data,
            sqrt_weight,
            centre_scale,
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
        """Reduced starting points (K, r): ``alpha = sqrt(K-1) e_j``, background member j."""
        return math.sqrt(self.subspace.size - 1) * self.subspace.coords

    def enkf_start(self) -> Tensor:
        """Reduced starting points (K, r) at each member's linear ensemble analysis.

        With ``b_j`` the background starts (:attr:`start`) and the subspace mean
        (``b = 0``), and ``h_j`` their weighted decoded observations, the secant
        Jacobian ``Y`` is the least-squares fit ``h_j - hbar ~ Y (b_j - bbar)`` over
        these K + 1 points; member ``j`` starts at
        the minimizer of ``1/2 |beta - c_j|^2 + 1/2 |d_j - hbar - Y (beta - bbar)|^2``
        (``c_j`` its prior centre, ``d_j`` its weighted data), or at ``b_j`` where
        that point's cost is not lower.  See :class:`Randomized` (``start="enkf"``).
        """
        start = self.start
        members = torch.arange(start.shape[0], device=start.device)
        with torch.no_grad():
            # the K starts and the subspace mean (beta = 0): with additive inflation the
            # starts are not centred, and r can reach K, which K points alone cannot fit
            points = torch.cat([start, torch.zeros_like(start[:1])])
            h = (self.sqrt_weight * self.observe(self.subspace.state_reduced(points))).flatten(1)
            data = (self.sqrt_weight * self.data).flatten(1)
            b_mean, h_mean = points.mean(0), h.mean(0)
            y_t = torch.linalg.pinv(points - b_mean) @ (h - h_mean)  # Y^T: (r, m)
            centre = self.centre_scale * self.subspace.coords
            rhs = centre + (data - h_mean + b_mean @ y_t) @ y_t.T
            eye = torch.eye(y_t.shape[0], dtype=y_t.dtype, device=y_t.device)
            linear = torch.linalg.solve(eye + y_t @ y_t.T, rhs.T).T
            cost_start = 0.5 * (
                (start - centre).square().sum(-1) + (h[:-1] - data).square().sum(-1)
            )
            better = self.cost(linear, members) < cost_start
        return torch.where(better.unsqueeze(-1), linear, start)

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
        s = _latent_at(self.surrogate, z, self.window, self.param_tendency)
        return fused(s, self.prepared, data, self.sqrt_weight).sum(-1)

    def _member_data(self, members: Tensor) -> Tensor:
        return self.data if self.data.shape[0] == 1 else self.data[members]

    def _prior_residual(self, beta: Tensor, members: Tensor) -> Tensor:
        return beta - self.centre_scale * self.subspace.coords[members]

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
            return _latent_at(self.surrogate, z, self.window, self.param_tendency)

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
        """Eq. 19 as the paper writes it: ``alpha`` (M, K), ``members`` (M,) -> (M,)."""
        obs = self._obs_cost(self.subspace.state(alpha), self._member_data(members))
        centre = torch.nn.functional.one_hot(members, self.subspace.size).to(alpha.dtype)
        r_prior = alpha - self.centre_scale * centre
        return 0.5 * (r_prior.square().sum(-1) + obs)

    def misfit(self, z: Tensor) -> Tensor:
        """``1/2 sum w (y - H(z))^2`` against the unperturbed data: (M, d_z) -> (M,)."""
        return 0.5 * self._obs_cost(z, self.observed)


class Excess(NamedTuple):
    """Per channel, the terms ``(y - ybar)^2 + spread^2 - sigma^2`` at the step times.

    Attributes
    ----------
    mean : Tensor, shape (C,)
        Their level at the latent step times (see :func:`observed_excess`); NaN for
        a channel without observed values.
    count : Tensor, shape (C,), int64
        Observed values.
    noise : Tensor, shape (C,)
        Mean observation error variance ``sigma^2`` over them; NaN without values.
    leverage : Tensor, shape (C,)
        The variance of ``mean`` per unit variance of one term: ``1 / n`` for a plain
        mean, more where a slope is fitted; NaN without values.
    """

    mean: Tensor
    count: Tensor
    noise: Tensor
    leverage: Tensor


def observed_excess(decoded: Tensor, window: ObsWindow) -> Excess:
    """Per channel, the terms ``(y - ybar)^2 + spread^2 - sigma^2`` (:class:`Excess`).

    Over the observed values (``weight > 0``) of each channel, with ``ybar`` and
    ``spread^2`` the mean and variance (``K - 1`` in the denominator) of the analysis
    members' decoded values and ``sigma^2 = 1 / weight``.  Observations between
    latent steps are compared with states interpolated linearly in time (eq. 17),
    whose error grows like ``theta (1 - theta)`` with ``theta`` the fraction of the
    step; so the level returned is the intercept ``a`` of the least-squares fit
    ``a + b [theta (1 - theta)]^2`` of the terms (the plain mean where all
    observations share one fraction, or there are fewer than three): the excess at
    the step times, where the output fields are.  Unclipped, so that several
    windows pool; :func:`unexplained_variance` is its positive part.  Members that
    are not finite at every observation are left out; with fewer than two left the
    counts are 0.

    Parameters
    ----------
    decoded : Tensor, shape (K, T_o, P, C)
        Members at the observations (:func:`observe`), ``K >= 2``.
    window : ObsWindow
        In the dtype of ``decoded``.

    Returns
    -------
    Excess

    Examples
    --------
    >>> import torch
    >>> w = ObsWindow(torch.tensor([0]), torch.zeros(1, dtype=torch.float64),
    ...               torch.zeros(1, 2, 1, dtype=torch.float64),
    ...               torch.tensor([[[5.0], [1.0]]], dtype=torch.float64),
    ...               torch.full((1, 2, 1), 4.0, dtype=torch.float64))  # sigma^2 = 0.25
    >>> members = torch.tensor([[[[0.0], [0.0]]], [[[2.0], [2.0]]]], dtype=torch.float64)
    >>> ex = observed_excess(members, w)  # terms 4^2 + 2 - 0.25 and 0^2 + 2 - 0.25
    >>> ex.mean.tolist(), ex.count.tolist(), ex.noise.tolist(), ex.leverage.tolist()
    ([9.75], [2], [0.25], [0.5])
    """
    observed = window.weight > 0
    finite = torch.where(observed, decoded, 0.0).isfinite().flatten(1).all(1)
    decoded = decoded[finite]
    n_ch = decoded.shape[-1]
    if decoded.shape[0] < 2:
        nan = torch.full((n_ch,), torch.nan, dtype=decoded.dtype, device=decoded.device)
        zero = torch.zeros((n_ch,), dtype=torch.int64, device=decoded.device)
        return Excess(nan, zero, nan.clone(), nan.clone())
    mean = decoded.mean(0)
    var = (decoded - mean).square().sum(0) / (decoded.shape[0] - 1)
    sigma2 = 1 / window.weight.clamp_min(1e-300)
    on = observed.to(decoded.dtype)
    terms = torch.where(observed, (window.values - mean).square() + var - sigma2, 0.0)
    g = (window.frac * (1 - window.frac)).square()[:, None, None].expand_as(terms)
    n = observed.sum((0, 1))
    nf = n.clamp_min(1).to(terms.dtype)
    e_bar, g_bar = terms.sum((0, 1)) / nf, (on * g).sum((0, 1)) / nf
    s_gg = (on * (g - g_bar).square()).sum((0, 1))
    s_ge = (on * (g - g_bar) * (terms - e_bar)).sum((0, 1))
    sloped = (s_gg > 1e-12 * nf) & (n > 2)
    s_gg = torch.where(sloped, s_gg, 1.0)
    slope = torch.where(sloped, s_ge / s_gg, 0.0)
    leverage = 1 / nf + torch.where(sloped, g_bar.square() / s_gg, 0.0)
    noise = (on * sigma2).sum((0, 1)) / nf
    seen = n > 0
    return Excess(
        torch.where(seen, e_bar - slope * g_bar, torch.nan),
        n,
        torch.where(seen, noise, torch.nan),
        torch.where(seen, leverage, torch.nan),
    )


def unexplained_variance(decoded: Tensor, window: ObsWindow) -> Tensor:
    """Per channel, the analysis error that the ensemble spread leaves out, from the data.

    ``max(0, mean (y - ybar)^2 + mean spread^2 - mean sigma^2)`` over the observed
    values of each channel, the mean taken at the step times
    (:func:`observed_excess`).  An analysis fitted to the observations is closer to
    them than the truth is: for an ensemble whose spread is its error, and
    observation errors ``sigma``, ``E (y - ybar)^2 = sigma^2 - spread^2`` (Desroziers
    et al., 2005); an error ``Q`` that no member can represent adds to it.  So the
    estimate is ``Q``, the variance to add to the spread for ``spread^2 + Q`` to
    match the mean square error of the ensemble mean.

    Parameters
    ----------
    decoded : Tensor, shape (K, T_o, P, C)
        Members at the observations (:func:`observe`), ``K >= 2``.
    window : ObsWindow
        In the dtype of ``decoded``.

    Returns
    -------
    Tensor, shape (C,)
        NaN for a channel without observed values (or fewer than two finite members).

    Examples
    --------
    >>> import torch
    >>> f64 = {"dtype": torch.float64}
    >>> w = ObsWindow(torch.tensor([0]), torch.zeros(1, **f64), torch.zeros(1, 1, 1, **f64),
    ...               torch.full((1, 1, 1), 3.0, **f64), torch.ones(1, 1, 1, **f64))
    >>> members = torch.tensor([[[[0.0]]], [[[2.0]]]], **f64)  # ybar 1, spread^2 2, sigma^2 1
    >>> unexplained_variance(members, w).tolist()  # (3 - 1)^2 + 2 - 1
    [5.0]
    """
    return observed_excess(decoded, window).mean.clamp_min(0)


@dataclass(frozen=True)
class WindowResult:
    """Analysis ensemble and per-member diagnostics of one window.

    Attributes
    ----------
    z_analysis : Tensor, shape (K, d_z)
        Analysis members ``zbar + P_z alpha_j``; a failed member keeps its
        background member.
    alpha : Tensor, shape (K, K)
        Coefficients ``alpha_j`` (row ``j``); a failed member's row is its start.
    cost : Tensor, shape (K,)
        Final value of member ``j``'s own cost (its centre and data).
    misfit : Tensor, shape (K,)
        ``1/2 sum w (y - H)^2`` of the analysis against the unperturbed
        observations; ``2 misfit / n_obs`` near 1 means a fit at the noise level.
    misfit_background : Tensor, shape (K,)
        The same for the background members.
    n_obs : int
        Observed values in the window.
    excess : Excess
        :func:`observed_excess` of the analysis members; ``unexplained_var`` is the
        positive part of its mean (:func:`unexplained_variance`).
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
    excess: Excess
    n_iter: Tensor
    converged: Tensor
    failed: Tensor
    rank: int

    @property
    def unexplained_var(self) -> Tensor:
        """:func:`unexplained_variance` of the analysis members per channel, (C,)."""
        return self.excess.mean.clamp_min(0)


def solve_window(
    surrogate: Surrogate,
    z_background: Tensor,
    window: ObsWindow,
    *,
    inflation: Inflation | None = None,
    mode: MemberMode | None = None,
    optimizer: LBFGSConfig | GaussNewtonConfig | None = None,
    jacobian: Literal["forward", "pointwise"] = "forward",
    param_tendency: VectorField | None = None,
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
        Default: none (``rho = 1``, ``sigma = 0``).
    mode : WarmStart or Randomized, optional
        Default :class:`WarmStart` (the paper).
    optimizer : LBFGSConfig or GaussNewtonConfig, optional
        Default ``LBFGSConfig()`` (the paper's method, to round-off; the accessor's
        :class:`~xlevda.config.LEVDAConfig` stops earlier, at ``tol_cost=1e-4``).
        ``GaussNewtonConfig()``
        usually needs far fewer iterations, each costing a Jacobian; it needs a
        surrogate that works under :mod:`torch.func` transforms.
    jacobian : {"forward", "pointwise"}
        How Gauss-Newton gets its Jacobian: forward mode through the whole chain
        (``r`` tangent passes; best for separable decoders, whose per-point work
        is linear in the state), or :meth:`WindowObjective.linearize_pointwise`
        (about ``1 + C`` decoder passes; best for MLP neural-field decoders).
    param_tendency : callable, optional
        ``G(u)`` (eq. 16); ``None`` keeps parameters static over the window.

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
    if jacobian not in ("forward", "pointwise"):
        raise ConfigError(f"jacobian={jacobian!r} is invalid: use 'forward' or 'pointwise'")
    objective = WindowObjective.build(
        surrogate,
        z_background,
        window,
        inflation=inflation,
        mode=mode,
        param_tendency=param_tendency,
    )
    config = LBFGSConfig() if optimizer is None else optimizer
    result: OptimResult
    enkf = isinstance(mode, Randomized) and mode.start == "enkf"
    x0 = objective.enkf_start() if enkf else objective.start
    if isinstance(config, LBFGSConfig):
        result = lbfgs(objective.cost, x0, config)
    elif isinstance(config, GaussNewtonConfig):
        if jacobian == "forward":
            linearize = linearization(objective.residual, "forward")
        else:
            linearize = objective.linearize_pointwise
        result = gauss_newton(linearize, x0, config)
    else:
        raise ConfigError(
            f"optimizer={config!r} is invalid: use LBFGSConfig(...) or GaussNewtonConfig(...)"
        )
    sub = objective.subspace
    z_b = z_background.detach()
    fail = result.failed.unsqueeze(-1)
    z_a = torch.where(fail, z_b, sub.state_reduced(result.x))
    with torch.no_grad():
        misfit = objective.misfit(z_a)
        misfit_b = objective.misfit(z_b)
        excess = observed_excess(objective.observe(z_a), objective.window)
    start = math.sqrt(sub.size - 1) * torch.eye(sub.size, dtype=z_a.dtype, device=z_a.device)
    return WindowResult(
        z_analysis=z_a,
        alpha=torch.where(fail, start, sub.lift(result.x, objective.centre_scale)),
        cost=result.cost,
        misfit=misfit,
        misfit_background=misfit_b,
        n_obs=objective.window.n_obs,
        excess=excess,
        n_iter=result.n_iter,
        converged=result.converged,
        failed=result.failed,
        rank=sub.rank,
    )
