"""The sparse field analysis against the dense one (the reference) and brute-force pairs."""

from __future__ import annotations

from unittest import mock

import numpy as np
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import xlevda.core.field_analysis as fa
import xlevda.core.sparse_oi as sparse_oi
from xlevda.core.field_analysis import Gain, Metric, SparseGain, field_increment, window_gain
from xlevda.core.sparse_oi import correlation, cross_matrix, neighbours, pair_count

F64 = torch.float64
METRICS = {
    "plane": Metric("plane", (0.0, 0.0), (50.0, 20.0)),
    "latlon": Metric("latlon", (43.0, 165.0), (4.4, 6.0), (0, 1)),
    "sphere": Metric("sphere", (0.0, 180.0), (90.0, 180.0)),
}
SUPPORT = {"plane": 60.0, "latlon": 900.0, "sphere": 5000.0}  # about half the spread


def points(kind: str, n: int, gen: torch.Generator) -> torch.Tensor:
    if kind == "sphere":
        return torch.nn.functional.normalize(torch.randn(n, 3, generator=gen, dtype=F64), dim=1)
    return torch.rand(n, 2, generator=gen, dtype=F64) * 2 - 1


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(sorted(METRICS)),
    n=st.integers(1, 40),
    repeats=st.integers(1, 3),
    support=st.sampled_from([0.0, 0.05, 0.3, 1.0, 4.0]),
    seed=st.integers(0, 2**16),
)
def test_sparse_equals_dense(kind, n, repeats, support, seed):
    """Increments, posterior variance and ``diag(K R K^T)`` of the sparse system equal the
    dense system's, for random point sets (points observed several times included) and
    supports from none (``L = 0``) to several times their spread, with the draws' terms
    solved for the distinct points (120 output points: at least 3 U) or per output point
    (``PROJECT_MAX = 0``).  Tolerance: both solve
    ``S`` with diagonal at least ``min R`` and norm at most ``v * rows + max R``, so their
    results differ by about ``cond(S) * eps`` relative to their scale."""
    gen = torch.Generator().manual_seed(seed)
    metric, length = METRICS[kind], support * SUPPORT[kind]
    obs = points(kind, n, gen).repeat(repeats, 1)
    noise = 0.05 + torch.rand(len(obs), generator=gen, dtype=F64)
    d = torch.randn(len(obs), 4, generator=gen, dtype=F64)
    out = torch.cat([points(kind, 120, gen), obs[:3]])
    v = 0.8
    dense = window_gain(obs, noise, d, v, length, metric)
    sparse = window_gain(obs, noise, d, v, length, metric, dense_max=0)
    assert isinstance(dense, Gain) and isinstance(sparse, SparseGain)
    cond = (v * len(obs) + float(noise.max())) / float(noise.min())
    tol = 100 * cond * torch.finfo(F64).eps
    want = field_increment(out, dense, v, length, metric, chunk=64)
    for most in (fa.PROJECT_MAX, 0):
        with mock.patch.object(fa, "PROJECT_MAX", most):
            got = field_increment(out, sparse, v, length, metric, chunk=64)
        for a, b in zip(want, got, strict=True):
            scale = max(float(a.abs().max()), v)
            torch.testing.assert_close(b, a, rtol=0, atol=tol * scale)


@settings(max_examples=10, deadline=None)
@given(kind=st.sampled_from(sorted(METRICS)), support=st.floats(0.0, 2.0), seed=st.integers(0, 99))
def test_neighbours_are_the_pairs_within_the_support(kind, support, seed):
    """Exactly the pairs whose metric distance is below ``L`` (0: equal points), duplicates
    included; ``pair_count`` bounds the pairs of a set with itself."""
    gen = torch.Generator().manual_seed(seed)
    metric, length = METRICS[kind], support * SUPPORT[kind]
    a = torch.cat([points(kind, 25, gen)] * 2)
    b = points(kind, 20, gen)
    for x, y in ((a, b), (a, a)):
        dist = metric.distance(x, y)
        want = (dist < length) if length > 0 else (dist == 0)
        i, j, dd = neighbours(x, y, length, metric)
        got = torch.zeros_like(want)
        got[i, j] = True
        assert torch.equal(got, want)
        torch.testing.assert_close(dd, dist[i, j], rtol=1e-12, atol=1e-9)
    assert pair_count(a, length, metric) >= int(want.sum())


def test_large_support_sparse_is_dense_and_still_right():
    """A support past every distance fills ``S``: the sparse path then equals the dense one
    too (the switch is a matter of cost only)."""
    gen = torch.Generator().manual_seed(1)
    metric = METRICS["plane"]
    obs = points("plane", 50, gen)
    noise = torch.full((50,), 0.1, dtype=F64)
    d = torch.randn(50, 3, generator=gen, dtype=F64)
    a = field_increment(obs, window_gain(obs, noise, d, 1.0, 1e4, metric), 1.0, 1e4, metric)
    b = field_increment(
        obs, window_gain(obs, noise, d, 1.0, 1e4, metric, dense_max=0), 1.0, 1e4, metric
    )
    tol = 100 * (50 * 1.0 + 0.1) / 0.1 * torch.finfo(F64).eps  # cond(S) eps, as above
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(
            y.numpy(), x.numpy(), rtol=0, atol=tol * max(float(x.abs().max()), 1.0)
        )


def test_cross_matrices_of_repeated_point_sets_are_computed_once_and_equal():
    """A fixed network's correlations come from the cache: the same values, bit for bit,
    as computed from the pairs, and no second neighbour search for equal content."""
    m = Metric("latlon", (40.0, 160.0), (5.0, 10.0), (0, 1))
    rng = np.random.default_rng(4)
    out = torch.as_tensor(rng.uniform(-1, 1, (300, 2)))
    obs = torch.as_tensor(rng.uniform(-1, 1, (40, 2)))
    i, j, dist = neighbours(out, obs, 700.0, m)
    direct = sp.csr_matrix(
        ((2.5 * correlation(dist, 700.0)).numpy(), (i.numpy(), j.numpy())), shape=(300, 40)
    )
    first = cross_matrix(out, obs, 2.5, 700.0, m)
    calls = []
    with mock.patch.object(sparse_oi, "neighbours", lambda *a: calls.append(a)):
        again = cross_matrix(out.clone(), obs.clone(), 2.5, 700.0, m)
    assert not calls
    for got in (first, again):
        assert (got != direct).nnz == 0 and np.array_equal(got.indices, direct.indices)
