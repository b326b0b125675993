"""The term cache of the field analysis' decoded blocks."""

from __future__ import annotations

import threading
import time

import torch

from xlevda.field_increments import TermCache


def test_an_entry_is_made_once_while_threads_wait_for_it():
    cache, calls = TermCache(budget=1 << 20), []

    def make():
        calls.append(1)
        time.sleep(0.05)  # the other threads ask meanwhile
        return torch.ones(3)

    out = []
    threads = [
        threading.Thread(target=lambda: out.append(cache.get("k", make, pinned=True)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(out) == 4 and all(torch.equal(x, out[0]) for x in out)


def test_budget_drops_the_oldest_but_not_pinned_entries():
    cache = TermCache(budget=2 * 8 * 4)  # two entries of 4 float64
    cache.get("pinned", lambda: torch.zeros(100, dtype=torch.float64), pinned=True)
    for key in "abc":
        cache.get(key, lambda: torch.zeros(4, dtype=torch.float64))
    made = []
    cache.get("a", lambda: made.append("a") or torch.zeros(4, dtype=torch.float64))
    cache.get("c", lambda: made.append("c") or torch.zeros(4, dtype=torch.float64))
    cache.get("pinned", lambda: made.append("pinned"))
    assert made == ["a"]  # "a" was dropped for "c"; "c" and the pinned entry were kept
