"""Full-state strong-constraint 4DEnVar (LEVDA paper eq. 8-11), optionally localized.

The background ensemble ``x_k`` (K, N) gives the mean ``xbar`` and the (inflated)
perturbations ``P`` (K, N), ``B = P^T P`` (rows ``(x_k - xbar) / sqrt(K-1)``).
The analysis at the window start is ``x(alpha) = xbar + alpha P``; every member
and the current estimate are run through the full (possibly nonlinear) model
over the window, and the observation-space perturbations ``Y`` (K, n) (eq. 9-10,
deviations from the members' mean, over ``sqrt(K-1)``) turn eq. 11 into the
quadratic cost

    J(alpha) = 1/2 |alpha|^2 + 1/2 |d - alpha Y|^2_W,     W = diag(1 / sigma^2),

whose minimizer solves the ``K x K`` system ``A alpha = Y W d``,
``A = I + Y W Y^T`` (symmetric, ``A >= I``, so always well conditioned).

Outer loops (incremental Gauss-Newton in ensemble space): loop ``i`` re-runs the
model from the current estimate ``x_i`` and from the members ``x_i + sqrt(K-1) P_k``
(the background perturbations re-centred on ``x_i``), takes their ``Y_i`` and the
innovation ``d_i = y - H(M(x_i))``, and solves
``A_i alpha_{i+1} = Y_i W (d_i + Y_i^T alpha_i)``.  For a linear model the first
loop already gives the minimizer and later loops leave it unchanged.

Analysis ensemble: the ensemble-space square-root transform (as in the ETKF /
4D-LETKF), member ``j = x_a + sqrt(K-1) sum_k (A^-1/2)_{kj} P_k`` with the
symmetric square root of the last loop's ``A``: the members have mean ``x_a``
and covariance ``P^T A^-1 P``, the Kalman smoother covariance of the window
start for ``B = P^T P`` (exact for a linear model).

Localization (:class:`~xlevda.core.localization.Localization`): local analyses.  The system above is
solved once per state element ``g``, with each observation's weight multiplied
by the Gaspari-Cohn taper of its distance to ``g`` (R-localization; the taper is
zero beyond ``radius``).  Element ``g`` of the analysis uses only its own
``alpha_g`` and transform, so no ``N x N`` matrix is formed: the work is
``N L K^2`` (``L`` observations within ``radius`` of an element) plus one
``K x K`` symmetric eigendecomposition per element, done in chunks of elements.
Observations and state elements are placed by ``window.points`` and
``state_coords`` in the same units (grid cells for the paper's ``r = 2``),
with Euclidean distance; or the caller gives the distances themselves
(periodic, great-circle, or 0 for a parameter that sees every observation).
The distance is taken between a state element at the window start and an
observation where it was made, so where the flow carries signals further than
``radius`` over the window, the local analyses cannot use the observations
they explain; choose ``radius`` (or shorter windows) accordingly.

Localized analyses take one outer loop only.  Iterating them as above (each
element re-linearized about the assembled field ``x_i`` with its own
``alpha_i``, ``d_i + Y_i^T alpha_i``) is inconsistent, because ``H(M(x_i))``
carries the increments of every other element while ``Y_i^T alpha_i`` assumes
the element's own: on a linear model with coupling beyond the radius the
iterates moved away from the one-loop answer and the misfit grew with every
loop (measured: 5.2, 8.5, 10.0, ... 38.9 after 11 loops).  A consistent
localized iteration needs a modulated ensemble (a localized control variable
run through the model), which this module does not provide.

Inflation (:class:`~xlevda.core.inflation.Inflation`) acts on the perturbations
before ``P`` is formed (``multiplicative dx_k + eps_k``); the additive draws are
re-centred so that the perturbations keep a zero mean.

The user-facing options are :class:`xlevda.methods.FourDEnVar`'s; :func:`fourdenvar`
takes them as arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from xlevda.core.inflation import Inflation
from xlevda.core.localization import Localization
from xlevda.core.rng import check_seed
from xlevda.core.subspace import EnsembleSubspace
from xlevda.core.taper import gaspari_cohn
from xlevda.core.window import ObsWindow
from xlevda.errors import ConfigError, ShapeError, VariableError
from xlevda.validate import check_int

__all__ = ["FourDEnVarResult", "check_outer_loops", "fourdenvar"]

Model = Callable[[Tensor], Tensor]
"""``x (M, N) -> states at the window's observation times (M, T_o, N)``."""

ObservationOperator = Callable[[Tensor], Tensor]
"""``trajectory (M, T_o, N) -> values at the observations (M, T_o, P, C)``."""


def check_outer_loops(
    outer_loops: object, localization: Localization | None, name: str = "outer_loops"
) -> None:
    """Raise ``ConfigError`` unless ``outer_loops`` is an integer >= 1, and 1 with localization.

    Examples
    --------
    >>> check_outer_loops(2, None)
    >>> check_outer_loops(0, None)
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: outer_loops must be an integer >= 1, got 0
    """
    check_int(name, outer_loops, 1)
    if localization is not None and outer_loops > 1:
        raise ConfigError(
            f"{name}={outer_loops} with localization is not supported: local analyses have no "
            "common ensemble-space iterate to re-linearize about (see xlevda.core.envar); "
            f"use {name}=1 with localization"
        )


@dataclass(frozen=True)
class FourDEnVarResult:
    """Analysis of one window.

    Attributes
    ----------
    mean : Tensor, shape (N,)
        Analysis estimate of the window-initial state.
    members : Tensor, shape (K, N)
        Square-root analysis ensemble (mean ``mean``).
    misfit : Tensor, shape (outer_loops + 1,)
        ``1/2 sum w (y - H(M(x)))^2`` of the background mean, then of the estimate
        after each outer loop.
    background_spread : Tensor, shape (n,)
        Standard deviation over the (inflated) background members of ``H(M(x))``
        at each observed value.
    """

    mean: Tensor
    members: Tensor
    misfit: Tensor
    background_spread: Tensor


def _inv_sqrt(a: Tensor) -> Tensor:
    """Symmetric ``A^-1/2`` of symmetric ``A >= I``: (..., K, K)."""
    vals, vecs = torch.linalg.eigh(a)
    return (vecs * vals.rsqrt().unsqueeze(-2)) @ vecs.transpose(-1, -2)


def _neighbours(
    n_elements: int, distance: Callable[[slice], tuple[Tensor, Tensor]], loc: Localization
) -> list[tuple[slice, Tensor, Tensor]]:
    """Per chunk of state elements: the observations within ``radius`` and their tapers.

    ``distance(chunk)`` returns candidate observations ``(n_c,)`` and the chunk's
    distances to them ``(G, n_c)``; the taper is evaluated on the nearest ``L``
    alone.  Returns a list of ``(elements, index (G, L), taper (G, L))``; ``L`` is the
    largest count within ``radius`` in the chunk, padded entries have taper 0.
    """
    out = []
    for start in range(0, n_elements, loc.chunk):
        sl = slice(start, min(start + loc.chunk, n_elements))
        candidates, dist = distance(sl)
        width = int((dist < loc.radius).sum(1).max().item()) if candidates.numel() else 0
        near, pos = torch.topk(dist, width, dim=1, largest=False)
        out.append((sl, candidates[pos], gaspari_cohn(near, loc.radius)))
    return out


def _euclidean(state_coords: Tensor, obs_coords: Tensor, radius: float):
    """Distances of a chunk to the observations inside its bounding box widened by ``radius``.

    Chunks of a row-major grid are compact, so this cuts the distance work by about
    ``n_obs / (observations near the chunk)``.
    """

    def distance(sl: slice) -> tuple[Tensor, Tensor]:
        here = state_coords[sl]
        box = ((obs_coords >= here.amin(0) - radius) & (obs_coords <= here.amax(0) + radius)).all(1)
        candidates = box.nonzero().squeeze(1)
        return candidates, torch.cdist(here, obs_coords[candidates])

    return distance


def _local_analyses(
    mean: Tensor,
    pert: Tensor,
    Y: Tensor,
    w: Tensor,
    innov: Tensor,
    blocks: list[tuple[slice, Tensor, Tensor]],
) -> tuple[Tensor, Tensor]:
    """One ``K x K`` analysis per state element with tapered observation weights.

    ``mean`` (N,), ``pert`` (K, N), ``Y`` (K, n), ``w`` and ``innov`` (n,) ->
    analysis mean (N,) and square-root members (K, N).
    """
    K = pert.shape[0]
    eye = torch.eye(K, dtype=pert.dtype, device=pert.device)
    estimate, members = mean.clone(), torch.empty_like(pert)
    for sl, index, taper in blocks:
        Yl = Y[:, index].permute(1, 2, 0)  # (G, L, K)
        wl = w[index] * taper  # (G, L)
        A = eye + torch.einsum("glk,gl,glm->gkm", Yl, wl, Yl)
        alpha = torch.linalg.solve(A, torch.einsum("glk,gl->gk", Yl, wl * innov[index]))
        p = pert[:, sl].T  # (G, K)
        estimate[sl] += (alpha * p).sum(-1)
        step = torch.einsum("gk,gkj->jg", p, _inv_sqrt(A))
        members[:, sl] = estimate[sl] + math.sqrt(K - 1) * step
    return estimate, members


def _check_output(name: str, value: object, shape: tuple[int, ...], layout: str) -> Tensor:
    if not isinstance(value, Tensor) or tuple(value.shape) != shape:
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value)
        raise ShapeError(f"{name} returned {got}; expected {layout} = {shape}")
    if not torch.isfinite(value).all():
        raise VariableError(f"{name} returned non-finite values")
    return value


def _local_blocks(
    loc: Localization,
    win: ObsWindow,
    observed: Tensor,
    xb: Tensor,
    state_coords: Tensor | None,
    distances: Tensor | None,
) -> list[tuple[slice, Tensor, Tensor]]:
    """Check the localization inputs of :func:`fourdenvar`, then :func:`_neighbours`.

    ``observed`` (T_o P C,) marks the observed values of ``win``; ``xb`` (K, N) is
    the background, whose dtype and device the distances take.
    """
    N = xb.shape[1]
    T_o, P, C = win.values.shape
    if (state_coords is None) == (distances is None):
        given = [
            n
            for n, v in (("state_coords", state_coords), ("distances", distances))
            if v is not None
        ]
        raise ConfigError(
            f"localization needs exactly one of state_coords (N, n_dim) = ({N}, "
            f"{win.points.shape[-1]}) and distances (N, T_o * P) = ({N}, {T_o * P}); got "
            f"{given or 'neither'}"
        )
    if state_coords is not None:
        n_dim = win.points.shape[-1]
        if (
            not isinstance(state_coords, Tensor)
            or not state_coords.is_floating_point()
            or tuple(state_coords.shape) != (N, n_dim)
        ):
            got = tuple(state_coords.shape) if isinstance(state_coords, Tensor) else state_coords
            raise ConfigError(
                f"state_coords={got} is invalid with localization: expected a floating tensor "
                f"(N, n_dim) = ({N}, {n_dim}) in the units of window.points"
            )
    if distances is not None:
        if (
            not isinstance(distances, Tensor)
            or tuple(distances.shape) != (N, T_o * P)
            or not torch.isfinite(distances).all()
            or (distances < 0).any()
        ):
            got = tuple(distances.shape) if isinstance(distances, Tensor) else distances
            raise ConfigError(
                f"distances={got} is invalid with localization: expected finite values >= 0 "
                f"of shape (N, T_o * P) = ({N}, {T_o * P})"
            )
    if state_coords is not None:
        obs_coords = win.points.unsqueeze(2).expand(T_o, P, C, -1).flatten(0, 2)[observed]
        coords = state_coords.detach().to(xb.device, xb.dtype)
        return _neighbours(N, _euclidean(coords, obs_coords, loc.radius), loc)
    per_obs = distances.detach().to(xb.device, xb.dtype).repeat_interleave(C, 1)[:, observed]
    every = torch.arange(per_obs.shape[1], device=xb.device)
    return _neighbours(N, lambda sl: (every, per_obs[sl]), loc)


def fourdenvar(
    background: Tensor,
    model: Model,
    observe: ObservationOperator,
    window: ObsWindow,
    *,
    inflation: Inflation | None = None,
    localization: Localization | None = None,
    outer_loops: int = 1,
    seed: int | torch.Generator = 0,
    state_coords: Tensor | None = None,
    distances: Tensor | None = None,
) -> FourDEnVarResult:
    """Strong-constraint 4DEnVar analysis of the window-initial state.

    Parameters
    ----------
    background : Tensor, shape (K, N)
        Background ensemble at the window start, ``K >= 2``; sets dtype and device.
    model : callable
        Batched model ``x (M, N) -> (M, T_o, N)``: the states at the window's
        observation times (``window.step``, ``window.frac``; the model decides how
        it reaches them).
    observe : callable
        Batched observation operator ``(M, T_o, N) -> (M, T_o, P, C)``, e.g. a
        selection or interpolation onto the observation points.
    window : ObsWindow
        Values and weights ``1 / sigma^2`` (0 = missing) in the layout
        (T_o, P, C); ``window.points`` (T_o, P, n_dim) locates the observations
        for localization (ignored without it).
    inflation : Inflation, optional
        Of the background perturbations; default none.
    localization : Localization, optional
        ``None`` (default): one global ensemble-space analysis.
    outer_loops : int
        Re-linearizations with the nonlinear model (>= 1); only 1 with localization.
    seed : int or torch.Generator
        Source of the additive inflation's noise
        (:meth:`~xlevda.core.subspace.EnsembleSubspace.from_ensemble`).
    state_coords : Tensor, shape (N, n_dim), optional
        Location of every state element (repeated per variable); localization
        then uses Euclidean distances to ``window.points``.
    distances : Tensor, shape (N, T_o * P), optional
        Instead of ``state_coords``: the distance from every state element to
        every observation point (``window.points`` flattened over time and
        point), in the units of the radius, e.g. periodic or great-circle
        distances; ``0`` makes an element (a parameter) see every observation.

    Returns
    -------
    FourDEnVarResult

    Raises
    ------
    ShapeError
        Inputs, model or operator outputs of the wrong shape.
    ConfigError
        ``K < 2``, a background without spread, a bad config, localization
        without ``state_coords``.
    VariableError
        Non-finite background, model or operator values.

    Examples
    --------
    >>> import torch
    >>> xb = torch.tensor([[-1.0], [1.0]], dtype=torch.float64)          # B = 2
    >>> w = ObsWindow(torch.tensor([0]), torch.zeros(1, dtype=torch.float64),
    ...               torch.zeros(1, 1, 1, dtype=torch.float64),
    ...               torch.full((1, 1, 1), 3.0, dtype=torch.float64),
    ...               torch.ones(1, 1, 1, dtype=torch.float64))       # y = 3, R = 1
    >>> res = fourdenvar(xb, lambda x: x[:, None], lambda tr: tr[..., None, :], w)
    >>> round(res.mean.item(), 6), round(res.members.var(0).item(), 6)   # B y/(B+R), BR/(B+R)
    (2.0, 0.666667)
    """
    inflation = Inflation() if inflation is None else inflation
    if not isinstance(inflation, Inflation):
        raise ConfigError(f"inflation={inflation!r} is invalid: use Inflation(...)")
    if localization is not None and not isinstance(localization, Localization):
        raise ConfigError(
            f"localization={localization!r} is invalid: use Localization(radius) or None"
        )
    check_outer_loops(outer_loops, localization)
    check_seed("seed", seed)
    if not isinstance(window, ObsWindow):
        raise ConfigError(f"window={window!r} is invalid: use an ObsWindow")
    if (
        not isinstance(background, Tensor)
        or not background.is_floating_point()
        or background.ndim != 2
    ):
        got = (
            f"{tuple(background.shape)} {background.dtype}"
            if isinstance(background, Tensor)
            else type(background)
        )
        raise ShapeError(f"background must be a floating tensor of shape (K, N), got {got}")
    K, N = background.shape
    if K < 2:
        raise ConfigError(f"background has K={K} members: 4DEnVar needs at least 2")
    if not torch.isfinite(background).all():
        bad = (~torch.isfinite(background)).any(1).nonzero()[0].item()
        raise VariableError(f"background is not finite for member {bad}")
    xb = background.detach()
    win = window.to(xb.dtype, xb.device)
    T_o, P, C = win.values.shape
    loc = localization
    observed = (win.weight > 0).flatten()
    blocks = None
    if loc is not None:
        blocks = _local_blocks(loc, win, observed, xb, state_coords, distances)
    sub = EnsembleSubspace.from_ensemble(xb, inflation, seed)
    pert = sub.perturbations - sub.perturbations.mean(0)  # (K, N), re-centred
    spread = math.sqrt(K - 1) * pert
    y = win.values.flatten()[observed]
    w = win.weight.flatten()[observed]

    def obs_space(x: Tensor) -> Tensor:
        """``H(M(x))`` at the observed values: (M, N) -> (M, n)."""
        traj = _check_output("model", model(x), (x.shape[0], T_o, N), "(M, T_o, N)")
        hx = _check_output("observe", observe(traj), (x.shape[0], T_o, P, C), "(M, T_o, P, C)")
        return hx.flatten(1)[:, observed]

    estimate = sub.mean
    misfits = []
    with torch.no_grad():
        if blocks is None:
            alpha = xb.new_zeros(K)
            for loop in range(outer_loops):
                hx = obs_space(torch.cat([estimate.unsqueeze(0), estimate + spread]))
                innov, Y = y - hx[0], (hx[1:] - hx[1:].mean(0)) / math.sqrt(K - 1)
                if loop == 0:
                    background_spread = Y.square().sum(0).sqrt()
                misfits.append(0.5 * (w * innov.square()).sum())
                A = torch.eye(K, dtype=xb.dtype, device=xb.device) + (Y * w) @ Y.T
                alpha = torch.linalg.solve(A, (Y * w) @ (innov + alpha @ Y))
                estimate = sub.mean + alpha @ pert
            members = estimate + math.sqrt(K - 1) * _inv_sqrt(A) @ pert
        else:
            hx = obs_space(torch.cat([estimate.unsqueeze(0), estimate + spread]))
            innov, Y = y - hx[0], (hx[1:] - hx[1:].mean(0)) / math.sqrt(K - 1)
            background_spread = Y.square().sum(0).sqrt()
            misfits.append(0.5 * (w * innov.square()).sum())
            estimate, members = _local_analyses(sub.mean, pert, Y, w, innov, blocks)
        innov = y - obs_space(estimate.unsqueeze(0))[0]
        misfits.append(0.5 * (w * innov.square()).sum())
    return FourDEnVarResult(
        mean=estimate,
        members=members,
        misfit=torch.stack(misfits),
        background_spread=background_spread,
    )
