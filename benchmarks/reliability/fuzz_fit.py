"""Fuzz :meth:`xlevda.LDNet.fit` with seeded mutations of a tiny archive; count outcomes.

Each case applies one or two mutations of ``tests/fit_mutations.py`` (drawn with the
case's seed) to a valid 5-run archive of a 6 x 5 grid and fits it with the closed-form
linear configuration or one epoch of a tiny network.  Prints the count of each outcome
(``ok``, ``XlevdaError``, ``silent_drop``, ``non_finite`` or another exception's name)
and every case that was not ``ok`` or ``XlevdaError`` (every case with ``--list``).

Run from the repository root::

    PYTHONPATH=. python benchmarks/reliability/fuzz_fit.py --cases 200
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np
import torch

from tests.fit_mutations import MUTATIONS, apply, fit_outcome, mutation_name


def case(seed: int) -> tuple[list, str]:
    """The mutations and the fit of case ``seed``: every mutation once over the first
    ``len(MUTATIONS)`` cases, then one or two drawn at random."""
    rng = np.random.default_rng(10_000 + seed)
    if seed < len(MUTATIONS):
        chosen = [MUTATIONS[seed]]
    else:
        chosen = list(rng.choice(np.array(MUTATIONS, dtype=object), rng.integers(1, 3)))
    return chosen, ("linear", "gradient")[seed % 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--list", action="store_true", help="print every case's outcome")
    args = parser.parse_args()
    torch.set_num_threads(1)
    counts: collections.Counter[str] = collections.Counter()
    bad = []
    start = time.perf_counter()
    for seed in range(args.cases):
        mutations, fit = case(seed)
        torch.manual_seed(seed)
        ds, kw = apply(mutations, seed)
        outcome, detail = fit_outcome(ds, kw, fit)
        counts[outcome] += 1
        if args.list or outcome not in ("ok", "XlevdaError"):
            bad.append((seed, fit, [mutation_name(m) for m in mutations], outcome, detail))
    print(f"{args.cases} cases in {time.perf_counter() - start:.0f} s")
    for outcome, n in counts.most_common():
        print(f"  {outcome:<20} {n}")
    for row in bad:
        print("  case {} ({}): {} -> {}: {}".format(*row))


if __name__ == "__main__":
    main()
