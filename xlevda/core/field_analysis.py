"""Optimal interpolation of observation residuals onto fields (torch only).

The model-error covariance of one variable in one window is ``Q = v rho(r; L)``: a
variance times a Gaspari-Cohn correlation (:func:`~xlevda.core.taper.gaspari_cohn`)
with support radius ``L``, a physical distance (:class:`Metric`).  Residuals ``d``
(M, K) at M observations are analysed as ``dx = Q(x, obs) (H Q H^T + R)^-1 d``:
:func:`window_gain` solves the M x M system once, reduced to the distinct observed
points, and :func:`field_increment` evaluates the increments and the variances left
at any set of points, chunk by chunk.  :func:`fit_length_scale` estimates ``L`` from
the residuals by maximum likelihood.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from xlevda.core.taper import gaspari_cohn

__all__ = [
    "EARTH_RADIUS_KM",
    "EXACT",
    "Gain",
    "Metric",
    "correlation",
    "cross_terms",
    "field_increment",
    "fit_length_scale",
    "window_gain",
]

EXACT = "donot_use_mm_for_euclid_dist"
"""``torch.cdist`` mode without the matrix-product shortcut, whose round-off gives
identical points distances of about ``1e-8`` (which then bounded the length-scale search)."""

EARTH_RADIUS_KM = 6371.0
"""Mean Earth radius: distances on the sphere and between latitude/longitude are in km."""


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
        offset = torch.as_tensor(self.offset, dtype=a.dtype, device=a.device)
        i, j = self.lat_lon
        pa, pb = torch.deg2rad(a * scale + offset), torch.deg2rad(b * scale + offset)
        lat_a, lat_b = pa[:, i, None], pb[None, :, i]
        h = (
            torch.sin((lat_b - lat_a) / 2).square()
            + torch.cos(lat_a)
            * torch.cos(lat_b)
            * torch.sin((pb[None, :, j] - pa[:, j, None]) / 2).square()
        )
        return 2 * EARTH_RADIUS_KM * torch.asin(h.clamp(0.0, 1.0).sqrt())


def correlation(distance: Tensor, length: float) -> Tensor:
    """Gaspari-Cohn correlation with support radius ``length``; ``length = 0``: 1 at 0 only.

    Examples
    --------
    >>> [round(r, 6) for r in correlation(torch.tensor([0.0, 1.0, 2.5]), 2.0).tolist()]
    [1.0, 0.208333, 0.0]
    """
    if length > 0:
        return gaspari_cohn(distance, length)
    return (distance == 0).to(distance.dtype)


@dataclass(frozen=True)
class Gain:
    """One variable's optimal interpolation in one window, reduced to its distinct points.

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
    """

    points: Tensor
    weights: Tensor
    explained: Tensor
    perturbed: Tensor


def window_gain(
    points: Tensor, noise: Tensor, residual: Tensor, variance: float, length: float, metric
) -> Gain:
    """:class:`Gain` of M observations of one variable (float64).

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

    Examples
    --------
    >>> m = Metric("plane", (0.0,), (1.0,))
    >>> g = window_gain(torch.zeros(2, 1), torch.ones(2), torch.tensor([[2.0], [4.0]]),
    ...                 1.0, 1.0, m)  # one point observed twice: S = [[2, 1], [1, 2]]
    >>> round(g.weights.item(), 9), round(g.explained.item(), 9)  # 1^T S^-1 d, 1^T S^-1 1
    (2.0, 0.666666667)
    """
    f64 = {"dtype": torch.float64, "device": points.device}
    p, noise = points.to(**f64), noise.to(**f64)
    uniq, inverse = torch.unique(p, dim=0, return_inverse=True)
    indicator = torch.zeros(len(p), len(uniq), **f64)
    indicator[torch.arange(len(p)), inverse] = 1.0
    s = variance * correlation(metric.distance(p, p), length) + torch.diag(noise)
    chol = torch.linalg.cholesky(s)
    s_inv_a = torch.cholesky_solve(indicator, chol)  # (M, U)
    weights = s_inv_a.T @ residual.to(**f64)
    return Gain(uniq, weights, indicator.T @ s_inv_a, s_inv_a.T @ (noise[:, None] * s_inv_a))


def cross_terms(
    out_points: Tensor, gain: Gain, variance: float, length: float, metric
) -> tuple[Tensor, Tensor, Tensor]:
    """What the increments and variances at the output points need (float64).

    Returns
    -------
    cross : Tensor, shape (P, U)
        ``v rho(out, gain.points)``: the increments are ``cross @ gain.weights``.
    posterior : Tensor, shape (P,)
        ``diag(Q - Q H^T S^-1 H Q)``: the model-error variance left after the analysis.
    perturbed : Tensor, shape (P,)
        ``diag(K R K^T)``, ``K = Q H^T S^-1``: the variance the perturbed observations
        give the members' increments.
    """
    f64 = {"dtype": torch.float64, "device": out_points.device}
    p = out_points.to(**f64)
    if gain.points.shape[0] == 0 or variance <= 0:
        cross = torch.zeros(p.shape[0], gain.points.shape[0], **f64)
        post = torch.full((p.shape[0],), max(float(variance), 0.0), **f64)
        return cross, post, torch.zeros_like(post)
    cross = variance * correlation(metric.distance(p, gain.points), length)
    post = variance - ((cross @ gain.explained) * cross).sum(1)
    return cross, post.clamp_min(0), ((cross @ gain.perturbed) * cross).sum(1)


def field_increment(
    out_points: Tensor, gain: Gain, variance: float, length: float, metric, chunk: int = 1 << 22
) -> tuple[Tensor, Tensor, Tensor]:
    """Increments and variances at the output points, chunk by chunk (float64).

    At most about ``chunk`` entries of ``Q(out, obs)`` exist at once
    (:func:`cross_terms` per chunk of points).

    Returns
    -------
    increment : Tensor, shape (K, P)
        ``Q(out, obs) S^-1 d``.
    posterior, perturbed : Tensor, shape (P,)
        As :func:`cross_terms`.

    Examples
    --------
    >>> m = Metric("plane", (0.0,), (1.0,))
    >>> g = window_gain(torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1), 2.0, 1.0, m)
    >>> inc, post, pert = field_increment(torch.tensor([[0.0], [1.0]]), g, 2.0, 1.0, m)
    >>> [[round(x, 9) for x in t.flatten().tolist()] for t in (inc, post, pert)]  # K = 2/3 at 0
    [[0.666666667, 0.0], [0.666666667, 2.0], [0.444444444, 0.0]]
    """
    step = max(1, chunk // max(gain.points.shape[0], 1))
    parts = [
        cross_terms(out_points[i : i + step], gain, variance, length, metric)
        for i in range(0, out_points.shape[0], step)
    ]
    inc = torch.cat([(cross @ gain.weights.to(cross.dtype)).T for cross, _, _ in parts], 1)
    return inc, torch.cat([p for _, p, _ in parts]), torch.cat([q for _, _, q in parts])


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
    for rows in by_size.values():
        p = torch.stack([points[i] for i in rows]).to(**f64)
        dist = torch.stack([metric.distance(x, x) for x in p])
        batches.append((dist, torch.stack([value[i] for i in rows]).to(**f64),
                        torch.stack([noise[i] for i in rows]).to(**f64)))  # fmt: skip
    positive = torch.cat([d[d > 0] for d, _, _ in batches]) if batches else torch.zeros(0)
    if variance <= 0 or positive.numel() == 0:
        return 0.0

    def nll(log_length: float) -> float:
        total = 0.0
        for dist, d, r in batches:
            chol = torch.linalg.cholesky(
                variance * correlation(dist, math.exp(log_length)) + torch.diag_embed(r)
            )
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
