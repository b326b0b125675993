"""Seeded mutations of a valid ``xlevda.assimilate`` call, counted by how they end.

Run from the repository root::

    PYTHONPATH=. python benchmarks/reliability/fuzz_assimilate.py --n 2000 --seed 0

Each draw applies one or two mutations of :data:`tests.fuzzing.MUTATIONS` (bad
observations, targets, backgrounds, run options, method options, keyword arguments)
to the valid call of :func:`tests.fuzzing.base_call` on the tiny LDNet of the test
suite, runs it and computes its output.  Printed: the counts by outcome
(``XlevdaError``, ``success``, ``TypeError (unknown keyword)``, ``silent`` = accepted
without using or reporting every finite observation value, and every other exception
type) and, for every outcome but the first three, the mutations that led there with a
message.  The target of issue 18: no outcome other than those three.

Measured (``--n 2000 --seed 0``, 176 mutations, 2-core shared machine): on the code
before issue 18's input checks (commit 3b482e2) 56.5 % XlevdaError, 20.3 % success,
0.7 % unknown keyword, 4.3 % silent (87 calls) and 18.1 % other exceptions (362
calls) of 8 types (TypeError 103, AttributeError 83, ValueError 70, RuntimeError 45,
AlignmentError 30, AssertionError 11, LinAlgError 11, MemoryError 9); after: 85.1 %
XlevdaError, 14.3 % success, 0.6 % unknown keyword, nothing else (123 s).  Seeds 1
and 2 (175 mutations): nothing else either.

Memory: the process' address space is limited (``--max-gib``) so that a mutation
asking for a huge ensemble fails instead of exhausting a shared machine.
"""

from __future__ import annotations

import argparse
import collections
import resource
import time

import numpy as np

from tests.conftest import make_runs, tiny_ldnet
from tests.fuzzing import MUTATIONS, base_call, mutate, outcome

ACCEPTED = ("XlevdaError", "success", "TypeError (unknown keyword)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="mutated calls")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds, then stop")
    parser.add_argument("--max-gib", type=float, default=8.0, help="address-space limit")
    args = parser.parse_args()
    limit = int(args.max_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    model = tiny_ldnet()
    base = base_call(make_runs(n_runs=8, n_frames=6).isel(run=0))
    names = sorted(MUTATIONS)
    rng = np.random.default_rng(args.seed)
    counts: collections.Counter[str] = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    start = time.perf_counter()
    done = 0
    for _ in range(args.n):
        if time.perf_counter() - start > args.time_limit:
            break
        chosen = list(rng.choice(names, size=rng.integers(1, 3), replace=False))
        kind, detail = outcome(mutate(base, chosen, rng), model)
        counts[kind] += 1
        done += 1
        if kind not in ACCEPTED:
            examples[kind].append(f"{' + '.join(chosen)}: {detail[:160]}")
    elapsed = time.perf_counter() - start
    print(f"{done} mutated calls (seed {args.seed}) in {elapsed:.0f} s, {len(names)} mutations")
    for kind, n in counts.most_common():
        print(f"{kind:30s} {n:6d}  {100 * n / done:5.1f} %")
    for kind, lines in sorted(examples.items()):
        print(f"\n{kind}: {len(lines)} calls, distinct mutation sets:")
        seen = {}
        for line in lines:
            seen.setdefault(line.split(":")[0], line)
        for line in seen.values():
            print("  " + line)


if __name__ == "__main__":
    main()
