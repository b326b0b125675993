"""Optimal interpolation with a compactly supported covariance, as sparse matrices.

``Q = v rho(r; L)`` is zero from the support ``L`` on, so the observation system
``S = H Q H^T + R`` and the correlations between output points and observations have
nonzeros only between points closer than ``L``.  :func:`neighbours` finds those pairs with
a k-d tree (:class:`scipy.spatial.cKDTree`) in a Euclidean embedding whose distance is
monotone in the metric's (the coordinates scaled back for ``"plane"``, unit vectors for
``"sphere"`` and ``"latlon"``, whose chord is ``2 R sin(d / 2R)``), then keeps those
whose distance in the metric itself is below ``L``; :class:`SparseSystem` factors ``S``
(SuperLU, a symmetric minimum-degree ordering, no pivoting: ``S`` is symmetric positive
definite) and gives the gain's weights and the diagonal terms of the draws.  Memory and
time follow the number of such pairs and the factor's fill, not the square of the
number of observations.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from xlevda.core.pair_cache import ContentCache, content_key
from xlevda.core.taper import gaspari_cohn

__all__ = [
    "CORRELATIONS",
    "EARTH_RADIUS_KM",
    "SparseSystem",
    "apply_cross",
    "correlation",
    "correlations",
    "cross_matrix",
    "neighbours",
    "pair_count",
]

EARTH_RADIUS_KM = 6371.0
"""Mean Earth radius: distances on the sphere and between latitude/longitude are in km."""

SLACK = 1e-9
"""Relative widening of the k-d tree's search radius: pairs at the support's edge that the
embedding's round-off would put just outside are found, then judged by the metric."""


def correlation(distance: Tensor, length: float) -> Tensor:
    """Gaspari-Cohn correlation with support radius ``length``; ``length = 0``: 1 at 0 only.

    Examples
    --------
    >>> [round(r, 6) for r in correlation(torch.tensor([0.0, 1.0, 2.5]), 2.0).tolist()]
    [1.0, 0.208333, 0.0]
    """
    if length <= 0:
        return (distance == 0).to(distance.dtype)
    inside = 2.0 * distance / length < 2.0  # the taper's own test: evaluated there only
    if 4 * int(inside.sum()) > distance.numel():  # mostly inside: gathering costs more
        return gaspari_cohn(distance, length)
    out = torch.zeros_like(distance)
    out[inside] = gaspari_cohn(distance[inside], length)
    return out


def _embed(metric, x: np.ndarray) -> np.ndarray:
    """Points in a Euclidean space whose distance grows with ``metric``'s (float64)."""
    if metric.kind == "sphere":
        return x
    if metric.kind == "plane":
        return x * np.asarray(metric.scale)
    i, j = metric.lat_lon
    deg = x * np.asarray(metric.scale) + np.asarray(metric.offset)
    lat, lon = np.deg2rad(deg[:, i]), np.deg2rad(deg[:, j])
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)


def _radius(metric, length: float) -> float:
    """The embedding's distance of two points ``length`` apart in ``metric``, widened."""
    if metric.kind == "plane":
        r = length
    else:
        r = 2 * math.sin(min(length / (2 * EARTH_RADIUS_KM), math.pi / 2))
    return r * (1 + SLACK) + SLACK


def neighbours(a: Tensor, b: Tensor, length: float, metric) -> tuple[Tensor, Tensor, Tensor]:
    """Pairs ``(i, j)`` of rows of ``a`` (Na, n) and ``b`` (Nb, n) whose distance in
    ``metric`` is below ``length`` (``length = 0``: equal to 0), with that distance.

    Returns
    -------
    i, j : Tensor of int64, shape (N,)
        Sorted by ``i`` then ``j``.
    distance : Tensor of float64, shape (N,)
        ``metric.paired(a[i], b[j])``.

    Examples
    --------
    >>> from xlevda.core.field_analysis import Metric
    >>> m = Metric("plane", (0.0,), (10.0,))
    >>> x = torch.tensor([[0.0], [0.25], [1.0]], dtype=torch.float64)
    >>> i, j, d = neighbours(x, x, 3.0, m)  # 2.5 apart: one pair besides each point itself
    >>> i.tolist(), j.tolist(), d.tolist()
    ([0, 0, 1, 1, 2], [0, 1, 0, 1, 2], [0.0, 2.5, 2.5, 0.0, 0.0])
    """
    ea = _embed(metric, a.detach().cpu().double().numpy())
    eb = _embed(metric, b.detach().cpu().double().numpy())
    pairs = cKDTree(ea).sparse_distance_matrix(
        cKDTree(eb), _radius(metric, length), output_type="ndarray"
    )
    order = np.lexsort((pairs["j"], pairs["i"]))
    i = torch.as_tensor(pairs["i"][order], dtype=torch.int64)
    j = torch.as_tensor(pairs["j"][order], dtype=torch.int64)
    f64 = {"dtype": torch.float64, "device": a.device}
    dist = metric.paired(a.to(**f64)[i.to(a.device)], b.to(**f64)[j.to(a.device)]).cpu()
    keep = dist < length if length > 0 else dist == 0
    return i[keep], j[keep], dist[keep]


def pair_count(a: Tensor, length: float, metric) -> int:
    """How many ordered pairs of rows of ``a`` (self-pairs included) the k-d tree finds
    within ``length``: an upper bound of the nonzeros of ``S``, counted without making them.

    Examples
    --------
    >>> from xlevda.core.field_analysis import Metric
    >>> pair_count(torch.tensor([[0.0], [0.25], [1.0]]), 3.0, Metric("plane", (0.0,), (10.0,)))
    5
    """
    tree = cKDTree(_embed(metric, a.detach().cpu().double().numpy()))
    return int(tree.count_neighbors(tree, _radius(metric, length)))


def cross_matrix(
    out_points: Tensor, points: Tensor, variance: float, length: float, metric
) -> sp.csr_matrix:
    """``v rho(out_points, points)`` (P, U) as a sparse matrix (float64).

    Examples
    --------
    >>> from xlevda.core.field_analysis import Metric
    >>> m = Metric("plane", (0.0,), (1.0,))
    >>> c = cross_matrix(torch.tensor([[0.0], [5.0]]), torch.tensor([[1.0]]), 2.0, 2.0, m)
    >>> c.shape, c.nnz, round(float(c[0, 0]), 6)  # gaspari_cohn(1, 2) = 0.208333
    ((2, 1), 1, 0.416667)
    """
    shape = (out_points.shape[0], points.shape[0])
    if variance <= 0 or 0 in shape:
        return sp.csr_matrix(shape, dtype=np.float64)
    return variance * correlations(out_points, points, length, metric)


CORRELATIONS = ContentCache(budget=1 << 28)
"""The correlation matrices of :func:`correlations`, by content of their point sets (a
fixed network's correlations recur for every output time and window), at most 256 MB."""


def correlations(a: Tensor, b: Tensor, length: float, metric) -> sp.csr_matrix:
    """``rho(a, b)`` (Na, Nb) as a sparse matrix (float64), kept in :data:`CORRELATIONS`.

    Examples
    --------
    >>> from xlevda.core.field_analysis import Metric
    >>> m = Metric("plane", (0.0,), (1.0,))
    >>> x = torch.tensor([[0.0], [1.0]])
    >>> correlations(x, x, 2.0, m) is correlations(x.clone(), x.clone(), 2.0, m)
    True
    """
    arrays = (a.detach().cpu().numpy(), b.detach().cpu().numpy())
    key = (content_key(*arrays), float(length), metric)

    def make() -> sp.csr_matrix:
        i, j, dist = neighbours(a, b, length, metric)
        values = correlation(dist, length).numpy()
        return sp.csr_matrix((values, (i.numpy(), j.numpy())), shape=(a.shape[0], b.shape[0]))

    return CORRELATIONS.get(key, make)


def apply_cross(cross: sp.csr_matrix, weights: Tensor) -> Tensor:
    """``cross @ weights`` as a tensor on ``weights``' device and dtype."""
    out = cross @ weights.detach().cpu().numpy()
    return torch.as_tensor(out, dtype=weights.dtype, device=weights.device)


class SparseSystem:
    """``S = A (v rho(points, points)) A^T + diag(noise)`` factored.

    Parameters
    ----------
    points : Tensor, shape (U, n)
        The distinct observed points (normalized).
    inverse : Tensor of int64, shape (M,)
        Each observation's point: ``A[m, inverse[m]] = 1``.
    noise : Tensor, shape (M,)
        Observation error variances, > 0.
    variance, length : float
    metric : Metric

    Examples
    --------
    >>> from xlevda.core.field_analysis import Metric
    >>> m = Metric("plane", (0.0,), (1.0,))
    >>> s = SparseSystem(torch.zeros(1, 1), torch.tensor([0, 0]), torch.ones(2), 1.0, 1.0, m)
    >>> s.solve(np.array([[3.0], [3.0]])).ravel().tolist()  # S = [[2, 1], [1, 2]]
    [1.0, 1.0]
    """

    def __init__(self, points: Tensor, inverse: Tensor, noise: Tensor, variance, length, metric):
        m, u = len(inverse), points.shape[0]
        inv = inverse.cpu().numpy()
        self.assign = sp.csr_matrix((np.ones(m), (np.arange(m), inv)), shape=(m, u))
        self.noise = noise.detach().cpu().double().numpy()
        corr = cross_matrix(points, points, variance, length, metric)
        system = (self.assign @ corr @ self.assign.T + sp.diags(self.noise)).tocsc()
        self.lu = spla.splu(
            system,
            permc_spec="MMD_AT_PLUS_A",
            diag_pivot_thresh=0.0,
            options={"SymmetricMode": True},
        )

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``S^-1 rhs`` (M, k)."""
        return self.lu.solve(np.ascontiguousarray(rhs, dtype=np.float64))

    def weights(self, residual: Tensor) -> Tensor:
        """``A^T S^-1 d`` (U, K) of residuals ``d`` (M, K)."""
        d = residual.detach().cpu().double().numpy()
        return torch.as_tensor(self.assign.T @ self.solve(d), dtype=torch.float64)

    def diag_terms(self, cross: sp.csr_matrix) -> tuple[Tensor, Tensor]:
        """For the rows ``r`` of ``cross`` (p, U), ``q^T S^-1 q`` and ``q^T S^-1 R S^-1 q``
        with ``q = A r``: the variance the analysis explains and the one the perturbed
        observations give (p,).  Solves ``S`` for the p rows (:meth:`projected` solves it
        once for the U points instead)."""
        q = (self.assign @ cross.T).toarray()  # (M, p)
        z = self.solve(q)
        explained = np.einsum("mp,mp->p", q, z)
        perturbed = np.einsum("m,mp,mp->p", self.noise, z, z)
        return torch.as_tensor(explained), torch.as_tensor(perturbed)

    def projected(self, points: Tensor, length: float, metric) -> Projected:
        """``A^T S^-1 A`` and ``A^T S^-1 R S^-1 A`` on the pairs of ``points`` closer than
        ``2 length`` (U solves of ``S``; transient memory M x U): the only entries that
        rows of ``v rho(x, points)`` meet, the points of a row being within ``length`` of
        ``x``."""
        z = self.solve(self.assign.toarray())  # S^-1 A (M, U)
        explained = self.assign.T @ z
        perturbed = z.T @ (self.noise[:, None] * z)
        i, j, _ = neighbours(points, points, 2 * length, metric)
        i, j, shape = i.numpy(), j.numpy(), explained.shape
        return Projected(
            sp.csr_matrix((explained[i, j], (i, j)), shape=shape),
            sp.csr_matrix((perturbed[i, j], (i, j)), shape=shape),
        )


class Projected:
    """The U x U terms of a system on the pairs that output rows meet (sparse).

    ``diag_terms(cross)``: ``r^T E r`` and ``r^T P r`` (p,) for the rows ``r`` of ``cross``.
    """

    def __init__(self, explained: sp.csr_matrix, perturbed: sp.csr_matrix) -> None:
        self.explained, self.perturbed = explained, perturbed

    def diag_terms(self, cross: sp.csr_matrix) -> tuple[Tensor, Tensor]:
        """As :meth:`SparseSystem.diag_terms`."""

        def quad(m: sp.csr_matrix) -> Tensor:
            return torch.as_tensor(np.asarray((cross @ m).multiply(cross).sum(1)).ravel())

        return quad(self.explained), quad(self.perturbed)
