"""Optimal interpolation of observation residuals onto fields (torch only).

The model-error covariance of one variable in one window is ``Q = v rho(r; L)``: a
variance times a Gaspari-Cohn correlation (:func:`~xlevda.core.taper.gaspari_cohn`)
with support radius ``L``, a physical distance (:class:`Metric`).  Residuals ``d``
(M, K) at M observations are analysed as ``dx = Q(x, obs) (H Q H^T + R)^-1 d``:
:func:`window_gain` solves the M x M system once, reduced to the distinct observed
points (densely up to :data:`DENSE_MAX` observations, above as a sparse matrix:
:mod:`xlevda.core.sparse_oi`), and :func:`field_increment` evaluates the increments and
the variances left at any set of points (:func:`draw_terms`), chunk by chunk.
:func:`fit_length_scale` estimates ``L`` from the residuals by maximum likelihood.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from xlevda.core.sparse_oi import (
    EARTH_RADIUS_KM,
    SparseSystem,
    apply_cross,
    correlation,
    cross_matrix,
)

__all__ = [
    "DENSE_MAX",
    "EARTH_RADIUS_KM",
    "EXACT",
    "Gain",
    "Metric",
    "SparseGain",
    "correlation",
    "draw_terms",
    "field_increment",
    "fit_length_scale",
    "leave_one_out",
    "window_gain",
]

EXACT = "donot_use_mm_for_euclid_dist"
"""``torch.cdist`` mode without the matrix-product shortcut, whose round-off gives
identical points distances of about ``1e-8`` (which then bounded the length-scale search)."""

PROJECT_MAX = 2048
"""Distinct points of a sparse system up to which the draws' terms are solved once for the
points (``A^T S^-1 A`` and ``A^T S^-1 R S^-1 A`` on pairs within twice the support, a
transient M x U array) where they are at most a third of the output points (measured:
U solves and the U x U products cost about as much as 3 U output points' solves);
otherwise per output point."""

DENSE_MAX = 256
"""Observations (of one set and variable) up to which the system is solved densely and its
U x U terms are kept; above, :class:`SparseGain` (memory and time follow the pairs within
the support, not the square of the observations)."""

LOO_MAX = 64
"""Observations of a sparse system whose leave-one-out residuals are computed (evenly
strided; one solve of ``S`` each): the sums of :func:`leave_one_out` over the sets of a
case estimate one ratio per variable, which a sample of each set's observations serves."""


@dataclass(frozen=True)
class Metric:
    """Physical distances between normalized query points.

    Attributes
    ----------
    kind : {"plane", "sphere", "latlon"}
        ``"plane"``: Euclidean in the coordinates' own units (normalized points
        scaled back by ``scale``); ``"sphere"``: points are unit vectors, the
        great-circle distance in km; ``"latlon"``: the coordinates are latitude and
        longitude in degrees (a regional grid), normalized by ``offset`` and
        ``scale``, the great-circle distance in km.
    offset, scale : tuple of float
        The coordinates' normalization (``normalized = (value - offset) / scale``).
    lat_lon : tuple of int
        For ``"latlon"``: which coordinates are latitude and longitude.

    Examples
    --------
    >>> m = Metric("plane", (0.0, 0.0), (10.0, 10.0))
    >>> m.distance(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.3, 0.4]])).tolist()
    [[5.0]]
    """

    kind: str
    offset: tuple[float, ...]
    scale: tuple[float, ...]
    lat_lon: tuple[int, int] = (0, 1)

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        """Distances (Na, Nb) between normalized points ``a`` (Na, n) and ``b`` (Nb, n)."""
        if self.kind == "sphere":
            chord = torch.cdist(a, b, compute_mode=EXACT).clamp(max=2.0)
            return 2 * EARTH_RADIUS_KM * torch.asin(chord / 2)
        scale = torch.as_tensor(self.scale, dtype=a.dtype, device=a.device)
        if self.kind == "plane":
            return torch.cdist(a * scale, b * scale, compute_mode=EXACT)
        return self._haversine(a[:, None], b[None, :])

    def paired(self, a: Tensor, b: Tensor) -> Tensor:
        """Distances (N,) between the rows of ``a`` and ``b`` (N, n), as :meth:`distance`.

        Examples
        --------
        >>> m = Metric("plane", (0.0, 0.0), (10.0, 10.0))
        >>> m.paired(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.3, 0.4]])).tolist()
        [5.0]
        """
        if self.kind == "sphere":
            chord = (a - b).square().sum(-1).sqrt().clamp(max=2.0)
            return 2 * EARTH_RADIUS_KM * torch.asin(chord / 2)
        scale = torch.as_tensor(self.scale, dtype=a.dtype, device=a.device)
        if self.kind == "plane":
            return ((a - b) * scale).square().sum(-1).sqrt()
        return self._haversine(a, b)

    def _haversine(self, a: Tensor, b: Tensor) -> Tensor:
        """Great-circle km between latitude/longitude points ``a`` and ``b`` (broadcast)."""
        scale = torch.as_tensor(self.scale, dtype=a.dtype, device=a.device)
        offset = torch.as_tensor(self.offset, dtype=a.dtype, device=a.device)
        i, j = self.lat_lon
        pa, pb = torch.deg2rad(a * scale + offset), torch.deg2rad(b * scale + offset)
        lat_a, lat_b = pa[..., i], pb[..., i]
        h = (
            torch.sin((lat_b - lat_a) / 2).square()
            + torch.cos(lat_a)
            * torch.cos(lat_b)
            * torch.sin((pb[..., j] - pa[..., j]) / 2).square()
        )
        return 2 * EARTH_RADIUS_KM * torch.asin(h.clamp(0.0, 1.0).sqrt())


@dataclass(frozen=True)
class Gain:
    """One variable's optimal interpolation in one window, reduced to its distinct points
    (a dense system, at most :data:`DENSE_MAX` observations).

    With ``S = H Q H^T + R`` over the M observations and ``A`` (M, U) the indicator of
    each observation's point among the U distinct ones:

    Attributes
    ----------
    points : Tensor, shape (U, n)
        The distinct observed points (normalized).
    weights : Tensor, shape (U, K)
        ``A^T S^-1 d``: the increment at ``x`` is ``v rho(x, points) weights``.
    explained : Tensor, shape (U, U)
        ``A^T S^-1 A``: ``q^T S^-1 q`` for ``q = Q(obs, x)`` is ``r^T explained r``
        with ``r = v rho(points, x)``.
    perturbed : Tensor, shape (U, U)
        ``A^T S^-1 R S^-1 A``: the same for ``diag(K R K^T)``, the variance that the
        observation perturbations add.
    loo : Tensor, shape (3,)
        :func:`leave_one_out` of the members' mean residual.
    """

    points: Tensor
    weights: Tensor
    explained: Tensor
    perturbed: Tensor
    loo: Tensor

    def solver(self, variance: float, length: float, metric) -> Gain:
        """What :meth:`diag_terms` needs: the gain itself (its terms are stored)."""
        return self

    def diag_terms(self, cross) -> tuple[Tensor, Tensor]:
        """``r^T explained r`` and ``r^T perturbed r`` (p,) for the rows ``r`` of the sparse
        ``cross`` (p, U) (work: its nonzeros times U)."""

        def quad(m: Tensor) -> Tensor:
            full = cross @ m.detach().cpu().numpy()  # (p, U)
            return torch.as_tensor(np.asarray(cross.multiply(full).sum(1)).ravel())

        return quad(self.explained), quad(self.perturbed)


@dataclass(frozen=True)
class SparseGain:
    """As :class:`Gain`, for a system solved as a sparse matrix (:mod:`~xlevda.core.sparse_oi`).

    Keeps what refactoring ``S`` needs instead of the U x U terms: the diagonal terms of
    the draws are solved again (:meth:`solver`) for the output points, once per set.

    Attributes
    ----------
    points : Tensor, shape (U, n)
    weights : Tensor, shape (U, K)
        As :class:`Gain`.
    inverse : Tensor of int64, shape (M,)
        Each observation's point among ``points``.
    noise : Tensor, shape (M,)
        The observation error variances.
    loo : Tensor, shape (3,)
        :func:`leave_one_out` of the members' mean residual at up to :data:`LOO_MAX`
        observations.
    """

    points: Tensor
    weights: Tensor
    inverse: Tensor
    noise: Tensor
    loo: Tensor

    def solver(self, variance: float, length: float, metric) -> SparseSystem:
        """``S`` factored (:class:`~xlevda.core.sparse_oi.SparseSystem`)."""
        return SparseSystem(self.points, self.inverse, self.noise, variance, length, metric)


def _distinct(p: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct rows of ``p`` (sorted) and each row's index among them, as
    ``torch.unique(p, dim=0, return_inverse=True)`` (numpy's is several times faster)."""
    uniq, inverse = np.unique(p.detach().cpu().numpy(), axis=0, return_inverse=True)
    to = {"device": p.device}
    return torch.as_tensor(uniq, dtype=p.dtype, **to), torch.as_tensor(inverse.ravel(), **to)


def window_gain(
    points: Tensor,
    noise: Tensor,
    residual: Tensor,
    variance: float,
    length: float,
    metric,
    dense_max: int = DENSE_MAX,
    memo: dict | None = None,
) -> Gain | SparseGain:
    """:class:`Gain` of M observations of one variable (float64); :class:`SparseGain` where
    M exceeds ``dense_max``.

    Parameters
    ----------
    points : Tensor, shape (M, n)
        Normalized positions.
    noise : Tensor, shape (M,)
        Observation error variances ``R`` (diagonal), > 0.
    residual : Tensor, shape (M, K)
        Residuals ``d`` (a column per member).
    variance, length : float
        ``v >= 0`` and the support radius ``L >= 0`` (units of ``metric``).
    metric : Metric
    dense_max : int
        The most observations solved densely.
    memo : dict, optional
        Correlation matrices of dense systems by points and length, shared by calls
        (observations at the same points in many windows, times or variables).

    Examples
    --------
    >>> m = Metric("plane", (0.0,), (1.0,))
    >>> g = window_gain(torch.zeros(2, 1), torch.ones(2), torch.tensor([[2.0], [4.0]]),
    ...                 1.0, 1.0, m)  # one point observed twice: S = [[2, 1], [1, 2]]
    >>> round(g.weights.item(), 9), round(g.explained.item(), 9)  # 1^T S^-1 d, 1^T S^-1 1
    (2.0, 0.666666667)
    >>> round(window_gain(torch.zeros(2, 1), torch.ones(2), torch.tensor([[2.0], [4.0]]),
    ...                   1.0, 1.0, m, dense_max=1).weights.item(), 9)
    2.0
    """
    f64 = {"dtype": torch.float64, "device": points.device}
    p, noise = points.to(**f64), noise.to(**f64)
    uniq, inverse = _distinct(p)
    mean = residual.to(**f64).mean(1)
    if len(p) > dense_max:
        system = SparseSystem(uniq, inverse, noise, variance, length, metric)
        weights = system.weights(residual).to(points.device)
        rows = torch.linspace(0, len(p) - 1, min(len(p), LOO_MAX)).round().long().unique()
        unit = np.zeros((len(p), len(rows)))
        unit[rows.numpy(), np.arange(len(rows))] = 1.0
        block = torch.as_tensor(system.solve(unit)[rows.numpy()])  # of S^-1
        s_inv_d = torch.as_tensor(system.solve(mean.cpu().numpy()[:, None])[rows.numpy(), 0])
        loo = leave_one_out(s_inv_d, block, noise.cpu()[rows])
        return SparseGain(uniq, weights, inverse, noise, loo.to(points.device))
    indicator = torch.zeros(len(p), len(uniq), **f64)
    indicator[torch.arange(len(p)), inverse] = 1.0
    key = (p.cpu().numpy().tobytes(), p.shape, length, metric)
    corr = None if memo is None else memo.get(key)
    if corr is None:
        corr = correlation(metric.distance(p, p), length)
        if memo is not None:
            memo[key] = corr
    s = variance * corr + torch.diag(noise)
    chol = torch.linalg.cholesky(s)
    s_inv_a = torch.cholesky_solve(indicator, chol)  # (M, U)
    weights = s_inv_a.T @ residual.to(**f64)
    s_inv = torch.cholesky_inverse(chol)
    loo = leave_one_out(s_inv @ mean, s_inv, noise)
    return Gain(uniq, weights, indicator.T @ s_inv_a, s_inv_a.T @ (noise[:, None] * s_inv_a), loo)


def leave_one_out(s_inv_d: Tensor, s_inv_block: Tensor, noise: Tensor) -> Tensor:
    """Sums that compare the analysis' errors where it is not told the truth with its claim.

    For residuals ``d ~ N(0, S)``, ``S = H Q H^T + R``, the analysis of all observations
    but ``i`` misses ``y_i`` by ``e_i = (S^-1 d)_i / (S^-1)_ii``, of variance
    ``1 / (S^-1)_ii = sigma_i^2 + P_i`` (``P_i`` the error variance it claims at the
    point; cross-validation of kriging).  Over the observations given (``s_inv_d`` (n,),
    the block of ``S^-1`` (n, n) of their rows and columns, and their ``noise`` (n,)),
    returns ``(sum e_i^2 - sigma_i^2, sum P_i, Var sum e_i^2)``: the error variance
    found, the one claimed, and the variance of the first if ``S`` is right,
    ``2 ||Cov e||_F^2`` with ``Cov e = D^-1 S^-1 D^-1``, ``D = diag(S^-1)`` (the
    ``e_i`` are correlated).

    Examples
    --------
    >>> s = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)  # v = 1, rho = 1/2
    >>> s_inv, d = torch.linalg.inv(s), torch.tensor([1.0, -1.0], dtype=torch.float64)
    >>> [round(x, 6) for x in leave_one_out(s_inv @ d, s_inv, torch.ones(2)).tolist()]
    [2.5, 1.0, 11.25]
    """
    diag = s_inv_block.diagonal()
    predicted = 1 / diag
    e = s_inv_d * predicted
    cov = s_inv_block * predicted[:, None] * predicted[None, :]
    return torch.stack(
        [(e.square() - noise).sum(), (predicted - noise).sum(), 2 * cov.square().sum()]
    )


def _step(gain: Gain | SparseGain, chunk: int) -> int:
    """Output points per chunk: about ``chunk`` entries of the dense terms at once."""
    size = gain.points.shape[0] if isinstance(gain, Gain) else gain.inverse.shape[0]
    return max(1, chunk // max(size, 1))


def draw_terms(
    out_points: Tensor,
    gain: Gain | SparseGain,
    variance: float,
    length: float,
    metric,
    chunk: int = 1 << 22,
) -> tuple[Tensor, Tensor]:
    """The variances at the output points (P,) the draws need (float64), chunk by chunk.

    Returns
    -------
    posterior : Tensor, shape (P,)
        ``diag(Q - Q H^T S^-1 H Q)``: the model-error variance left after the analysis.
    perturbed : Tensor, shape (P,)
        ``diag(K R K^T)``, ``K = Q H^T S^-1``: the variance the perturbed observations
        give the members' increments.
    """
    n = out_points.shape[0]
    f64 = {"dtype": torch.float64, "device": out_points.device}
    if gain.points.shape[0] == 0 or variance <= 0:
        return torch.full((n,), max(float(variance), 0.0), **f64), torch.zeros(n, **f64)
    solver, step = gain.solver(variance, length, metric), _step(gain, chunk)
    u = gain.points.shape[0]
    if isinstance(gain, SparseGain) and 3 * u <= n and u <= PROJECT_MAX:  # U solves, not P
        solver, step = solver.projected(gain.points, length, metric), n
    parts = [
        solver.diag_terms(
            cross_matrix(out_points[i : i + step], gain.points, variance, length, metric)
        )
        for i in range(0, n, step)
    ]
    explained = torch.cat([e for e, _ in parts]).to(**f64)
    return (variance - explained).clamp_min(0), torch.cat([q for _, q in parts]).to(**f64)


def field_increment(
    out_points: Tensor,
    gain: Gain | SparseGain,
    variance: float,
    length: float,
    metric,
    chunk: int = 1 << 22,
) -> tuple[Tensor, Tensor, Tensor]:
    """Increments and variances at the output points, chunk by chunk (float64).

    Returns
    -------
    increment : Tensor, shape (K, P)
        ``Q(out, obs) S^-1 d``.
    posterior, perturbed : Tensor, shape (P,)
        As :func:`draw_terms`.

    Examples
    --------
    >>> m = Metric("plane", (0.0,), (1.0,))
    >>> g = window_gain(torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1), 2.0, 1.0, m)
    >>> inc, post, pert = field_increment(torch.tensor([[0.0], [1.0]]), g, 2.0, 1.0, m)
    >>> [[round(x, 9) for x in t.flatten().tolist()] for t in (inc, post, pert)]  # K = 2/3 at 0
    [[0.666666667, 0.0], [0.666666667, 2.0], [0.444444444, 0.0]]
    """
    cross = cross_matrix(out_points, gain.points, variance, length, metric)
    inc = apply_cross(cross, gain.weights.double()).T
    return (inc, *draw_terms(out_points, gain, variance, length, metric, chunk))


def _groups(points: Tensor, group: Tensor, max_group: int, max_groups: int) -> list[Tensor]:
    """Row indices of at most ``max_groups`` groups (evenly strided over the sorted group
    labels), each at most ``max_group`` rows (evenly strided)."""
    labels = torch.unique(group)
    if len(labels) > max_groups:
        labels = labels[torch.linspace(0, len(labels) - 1, max_groups).round().long()]
    out = []
    for g in labels.tolist():
        idx = (group == g).nonzero()[:, 0]
        if len(idx) > max_group:
            idx = idx[torch.linspace(0, len(idx) - 1, max_group).long()]
        out.append(idx)
    return out


def fit_length_scale(
    points: Tensor,
    group: Tensor,
    value: Tensor,
    noise: Tensor,
    variance: float,
    metric: Metric,
    max_group: int = 300,
    max_groups: int = 24,
) -> float:
    """The Gaspari-Cohn support that makes residuals most likely (maximum likelihood).

    Residuals ``d_g`` of independent groups (e.g. one time and variable of a window)
    modelled as ``N(0, v rho(L) + R_g)``; ``L`` minimizes ``sum_g log det S_g + d_g^T
    S_g^-1 d_g`` over a geometric grid of 16 from the smallest to the largest
    distance between points of a group, refined by 12 golden-section steps (in
    ``log L``, each reusing the previous step's interior point).  At most
    ``max_groups`` groups (evenly strided over their sorted labels) of at most
    ``max_group`` points each enter the likelihood: one scalar is estimated, and
    more groups only add cost.  A fit of the residuals' products binned by distance was tried first:
    the many distant pairs made it fit large-scale structure (a common offset of the
    residuals), and on the tsunami the support came out the domain's size.

    Returns
    -------
    float
        0 where ``variance`` is 0 or no group has two distinct points.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.linspace(0, 50, 51, dtype=torch.float64)[:, None]
    >>> s = 2.0 * correlation(torch.cdist(x, x), 8.0) + 0.1 * torch.eye(51, dtype=torch.float64)
    >>> d = torch.linalg.cholesky(s) @ torch.randn(51, 50, generator=g, dtype=torch.float64)
    >>> L = fit_length_scale(x.repeat(50, 1), torch.arange(50).repeat_interleave(51),
    ...     d.T.reshape(-1), torch.full((2550,), 0.1), 2.0, Metric("plane", (0.0,), (1.0,)))
    >>> round(L)  # true: 8
    8
    """
    f64 = {"dtype": torch.float64, "device": points.device}
    by_size: dict[int, list[Tensor]] = {}
    for idx in _groups(points, group, max_group, max_groups):
        by_size.setdefault(len(idx), []).append(idx)
    batches = []  # groups of one size stacked: distances, residuals, noise
    for rows in by_size.values():  # groups at the same points share their distances
        p = torch.stack([points[i] for i in rows]).to(**f64)
        sets, inverse = _distinct(p.reshape(len(p), -1))
        dist = torch.stack([metric.distance(x, x) for x in sets.reshape(-1, *p.shape[1:])])
        batches.append((dist, inverse, torch.stack([value[i] for i in rows]).to(**f64),
                        torch.stack([noise[i] for i in rows]).to(**f64)))  # fmt: skip
    positive = torch.cat([d[d > 0] for d, *_ in batches]) if batches else torch.zeros(0)
    if variance <= 0 or positive.numel() == 0:
        return 0.0

    def nll(log_length: float) -> float:
        total = 0.0
        for dist, inverse, d, r in batches:
            corr = correlation(dist, math.exp(log_length))[inverse]
            chol = torch.linalg.cholesky(variance * corr + torch.diag_embed(r))
            white = torch.linalg.solve_triangular(chol, d[..., None], upper=False)
            total += float(2 * chol.diagonal(dim1=-2, dim2=-1).log().sum() + white.square().sum())
        return total

    lo, hi = math.log(float(positive.min())), math.log(float(positive.max()))
    grid = [lo + (hi - lo) * k / 15 for k in range(16)]
    best = min(range(16), key=lambda k: nll(grid[k]))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, 15)]
    golden = (math.sqrt(5) - 1) / 2
    x1, x2 = b - golden * (b - a), a + golden * (b - a)
    f1, f2 = nll(x1), nll(x2)
    for _ in range(12):
        if f1 < f2:
            b, x2, f2 = x2, x1, f1
            x1 = b - golden * (b - a)
            f1 = nll(x1)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + golden * (b - a)
            f2 = nll(x2)
    return math.exp((a + b) / 2)
