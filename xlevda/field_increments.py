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
import torch
from torch import Tensor

from xlevda.core.field_analysis import Gain, Metric, cross_terms

__all__ = ["CHUNK", "FieldIncrements", "TermCache"]

CHUNK = 1 << 22
"""At most about this many output point x observation correlations are made at once."""


class TermCache:
    """What :meth:`FieldIncrements.block` computes per set of observations and variable,
    kept for the blocks of other members (at most ``budget`` bytes; thread-safe).

    Blocks of one output time and different members need the same cross-correlations
    and draw variances: computed once, they are reused while they fit the budget
    (oldest dropped first); an entry larger than the budget is not kept.  A pickled
    copy starts empty.

    Examples
    --------
    >>> cache = TermCache(budget=64)
    >>> cache.get("a", lambda: (torch.zeros(2), torch.ones(2)))[1].tolist()
    [1.0, 1.0]
    >>> len(cache), cache.get("a", lambda: None)[0].tolist()  # not made again
    (1, [0.0, 0.0])
    """

    def __init__(self, budget: int = 1 << 28) -> None:
        self.budget = budget
        self._entries: OrderedDict[Any, tuple[Tensor, ...]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict[str, int]:
        return {"budget": self.budget}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["budget"])

    def get(self, key: Any, make: Callable[[], tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
        """The entry of ``key``, made by ``make()`` (outside the lock) if absent."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = make()
        size = sum(t.element_size() * t.numel() for t in value)
        with self._lock:
            if size <= self.budget and key not in self._entries:
                self._entries[key] = value
                self._bytes += size
                while self._bytes > self.budget:
                    _, old = self._entries.popitem(last=False)
                    self._bytes -= sum(t.element_size() * t.numel() for t in old)
        return value


@dataclass(frozen=True)
class FieldIncrements:
    """A case's field analysis: the :class:`Gain` of every set of observations used.

    Attributes
    ----------
    gains : tuple of tuple of (Gain or None)
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
    cache : TermCache
        Per slot and channel, the cross-correlations and draw standard deviations
        at the output points, shared by the blocks of different members.
    """

    gains: tuple[tuple[Gain | None, ...], ...]
    slot: np.ndarray
    variance: np.ndarray
    length: np.ndarray
    metric: Metric
    background: np.ndarray | None
    draws: bool
    weight: np.ndarray | None = None
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
            step = max(1, CHUNK // max(gain.points.shape[0], 1))
            for i in range(0, points.shape[0], step):
                part = slice(i, i + step)

                def terms(
                    gain: Gain = gain, v: float = v, part: slice = part, length: float = length
                ):
                    cross, post, pert = cross_terms(points[part], gain, v, length, self.metric)
                    return cross, (post - pert).clamp_min(0).sqrt()

                cross, sd = self.cache.get((int(s), channel, i, points.shape[0]), terms)
                inc[rows, :, part] += (cross @ gain.weights[:, members]).T
                if std is not None:
                    std[rows, part] = sd
        return inc, std
