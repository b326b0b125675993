"""A case's field analysis as the decoded blocks apply it: gains per observation set.

:class:`FieldIncrements` (made by :func:`xlevda.field_analysis.case_increments`) holds, per
set of observations and variable, the :class:`~xlevda.core.field_analysis.Gain` of the
window's optimal interpolation; :meth:`FieldIncrements.block` evaluates its increments and
draw deviations at the output points of one block, through a bounded :class:`TermCache`
shared by the blocks of different members.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from xlevda.core.field_analysis import Gain, Metric, SparseGain, draw_terms
from xlevda.core.sparse_oi import apply_cross, cross_matrix

__all__ = ["CHUNK", "FieldIncrements", "TermCache", "draw_scale"]

CHUNK = 1 << 22
"""At most about this many output point x observation correlations are made at once."""


def _nbytes(value) -> int:
    """Bytes of a tensor, array or sparse matrix, or of a tuple of them."""
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, Tensor):
        return value.element_size() * value.numel()
    if sp.issparse(value):
        return value.data.nbytes + value.indices.nbytes + value.indptr.nbytes
    return int(np.asarray(value).nbytes)


def draw_scale(gains, n_channels: int) -> np.ndarray:
    """Per channel the factor (C,) of the draws' variance from the gains' leave-one-out sums.

    ``gains``: per set of observations, per channel a gain or ``None``.  Over all sets of
    a channel, the error variance found at observations left out (``sum e_i^2 -
    sigma_i^2``, :func:`~xlevda.core.field_analysis.leave_one_out`) divided by the one
    claimed (``sum P_i``): 1 where that ratio is within two standard errors of 1
    (``sqrt(Var sum e_i^2) / sum P_i``: where the observation error dominates
    it is noise) or nothing is claimed, else the ratio (at least 0).  The standard error
    is the one the ratio has if ``S`` is right (the leave-one-out errors are correlated).

    Examples
    --------
    >>> from types import SimpleNamespace as G
    >>> t = torch.tensor
    >>> gains = [(G(loo=t([3.0, 1.0, 0.01])), G(loo=t([1.1, 1.0, 0.01])), None)]
    >>> draw_scale(gains, 3).tolist()  # 3 +- 0.1: 3; 1.1 +- 0.1: 1; no gain: 1
    [3.0, 1.0, 1.0]
    """
    out = np.ones(n_channels)
    for c in range(n_channels):
        sums = [g[c].loo.detach().cpu().double() for g in gains if g[c] is not None]
        if not sums:
            continue
        found, claimed, var = (float(x) for x in torch.stack(sums).sum(0))
        if claimed <= 0:
            continue
        ratio, se = found / claimed, np.sqrt(var) / claimed
        if abs(ratio - 1) > 2 * se:
            out[c] = max(ratio, 0.0)
    return out


class TermCache:
    """What :meth:`FieldIncrements.block` computes per set of observations and variable,
    kept for the blocks of other members (thread-safe; each entry made once at a time).

    Blocks of one output time and different members need the same cross-correlations
    and draw variances.  ``pinned`` entries (the draws' standard deviations: a value per
    output point, and a solve of the observation system to remake) are kept for the
    cache's life: the output's size bounds them.  Others (the sparse cross-correlations,
    as cheap to remake as to use) are kept while they fit ``budget`` bytes (oldest dropped
    first).  Threads asking for an entry that another is making wait for it.  A pickled
    copy starts empty.

    Examples
    --------
    >>> cache = TermCache(budget=64)
    >>> cache.get("a", lambda: (torch.zeros(2), torch.ones(2)))[1].tolist()
    [1.0, 1.0]
    >>> len(cache), cache.get("a", lambda: None)[0].tolist()  # not made again
    (1, [0.0, 0.0])
    >>> _ = cache.get("b", lambda: torch.zeros(100), pinned=True)  # over the budget, kept
    >>> len(cache)
    2
    """

    def __init__(self, budget: int = 1 << 28) -> None:
        self.budget = budget
        self._entries: OrderedDict[Any, Any] = OrderedDict()
        self._pinned: dict[Any, Any] = {}
        self._making: dict[Any, threading.Lock] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries) + len(self._pinned)

    def __getstate__(self) -> dict[str, int]:
        return {"budget": self.budget}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["budget"])

    def _lookup(self, key: Any) -> tuple[bool, Any]:
        with self._lock:
            if key in self._pinned:
                return True, self._pinned[key]
            if key in self._entries:
                self._entries.move_to_end(key)
                return True, self._entries[key]
            return False, self._making.setdefault(key, threading.Lock())

    def get(self, key: Any, make: Callable[[], Any], pinned: bool = False) -> Any:
        """The entry of ``key``, made by ``make()`` (by one thread at a time) if absent."""
        found, value = self._lookup(key)
        if found:
            return value
        with value:  # the key's lock: one maker, the others wait and then find it
            found, again = self._lookup(key)
            if found:
                return again
            made = make()
            self._store(key, made, pinned)
        return made

    def _store(self, key: Any, value: Any, pinned: bool) -> None:
        with self._lock:
            self._making.pop(key, None)
            if pinned:
                self._pinned[key] = value
                return
            size = _nbytes(value)
            if size <= self.budget:
                self._entries[key] = value
                self._bytes += size
                while self._bytes > self.budget:
                    _, old = self._entries.popitem(last=False)
                    self._bytes -= _nbytes(old)


@dataclass(frozen=True)
class FieldIncrements:
    """A case's field analysis: the :class:`Gain` of every set of observations used.

    Attributes
    ----------
    gains : tuple of tuple of (Gain, SparseGain or None)
        Per set of observations (a slot), per channel (``None``: none of the channel).
    slot : ndarray (T,)
        The slot of each output time.
    variance : ndarray (S, C)
        ``v`` per slot and channel (normalized units).
    length : ndarray (C,)
        Support radius per channel (physical units of ``metric``).
    metric : Metric
    background : ndarray (S, C), optional
        A constant background per slot and channel (OI).
    draws : bool
        Whether :meth:`block` returns the standard deviations of the draws.
    weight : ndarray (S, C), optional
        The weight of the model's values per slot and channel (calibrated
        backgrounds, :func:`calibration`); ``None``: 1.
    draw_scale : ndarray (C,), optional
        The factor of ``diag(Q - K H Q)`` whose excess over the perturbed observations'
        variance the draws add (:func:`draw_scale`); ``None``: 1.
    cache : TermCache
        Per slot and channel, the cross-correlations and draw standard deviations
        at the output points, shared by the blocks of different members.
    """

    gains: tuple[tuple[Gain | SparseGain | None, ...], ...]
    slot: np.ndarray
    variance: np.ndarray
    length: np.ndarray
    metric: Metric
    background: np.ndarray | None
    draws: bool
    weight: np.ndarray | None = None
    draw_scale: np.ndarray | None = None
    cache: TermCache = field(default_factory=TermCache, compare=False, repr=False)

    def model_weight(self, channel: int, times: slice) -> np.ndarray | None:
        """The weight of the model's values at the output ``times`` (t,), or ``None`` (1)."""
        if self.weight is None:
            return None
        return self.weight[self.slot[times], channel]

    def block(
        self, channel: int, points: Tensor, times: slice, members: slice
    ) -> tuple[Tensor, Tensor | None]:
        """Increments (t, k, P) at the output ``times`` for ``members``.

        With the draws, also their standard deviations (t, P), else ``None``.
        """
        slots = self.slot[times]
        n_k = members.stop - members.start
        f64 = {"dtype": torch.float64, "device": points.device}
        inc = torch.zeros(len(slots), n_k, points.shape[0], **f64)
        std = torch.zeros(len(slots), points.shape[0], **f64) if self.draws else None
        for s in np.unique(slots):
            rows = torch.as_tensor(np.nonzero(slots == s)[0], device=points.device)
            gain, v = self.gains[s][channel], float(self.variance[s, channel])
            if self.background is not None:
                inc[rows] += float(self.background[s, channel])
            if gain is None:
                if std is not None:
                    std[rows] = v**0.5
                continue

            length = float(self.length[channel])
            if std is not None:
                factor = 1.0 if self.draw_scale is None else float(self.draw_scale[channel])
                std[rows] = self.cache.get(
                    ("std", int(s), channel, points.shape[0]),
                    lambda gain=gain, v=v, length=length, factor=factor: _draw_std(
                        points, gain, v, length, self.metric, factor
                    ),
                    pinned=True,
                )
            step = max(1, CHUNK // max(gain.points.shape[0], 1))
            for i in range(0, points.shape[0], step):
                part = slice(i, i + step)
                cross = self.cache.get(
                    (int(s), channel, i, points.shape[0]),
                    lambda gain=gain, v=v, part=part, length=length: cross_matrix(
                        points[part], gain.points, v, length, self.metric
                    ),
                )
                inc[rows, :, part] += apply_cross(cross, gain.weights[:, members]).T
        return inc, std


def _draw_std(
    points: Tensor, gain: Gain | SparseGain, v: float, length: float, metric, factor: float = 1.0
) -> Tensor:
    """``sqrt(max(0, factor diag(Q - KHQ) - diag(KRK^T)))`` at ``points`` (P,)."""
    post, pert = draw_terms(points, gain, v, length, metric, CHUNK)
    return (factor * post - pert).clamp_min(0).sqrt()
