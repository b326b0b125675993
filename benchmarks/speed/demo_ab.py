"""The demo's assimilation time for two source trees of xlevda, side by side.

Runs ``xlevda demo`` alternately with each tree first on ``PYTHONPATH`` (so the same virtual
environment serves both), ``--repeats`` times each, and reads the time the demo prints for its
assimilation ("LEVDA assimilation of 51 frames, K=100: 3.8 s") and its total ("total 20.1 s",
from its start to the figure written; the interpreter's start and imports are not in it).
Prints each tree's times, their medians and the ratios B / A; the tables the two print must be
identical, else it says so.

    python benchmarks/speed/demo_ab.py --a /path/to/old/tree --b . --repeats 5
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TIME = re.compile(r"assimilation of .*: ([0-9.]+) s")
TOTAL = re.compile(r"^total ([0-9.]+) s", re.M)
TABLE = re.compile(r"^\s*\d+\s+\d+-\d+ \|.*$", re.M)


def run_demo(tree: Path) -> tuple[float, float, str]:
    """One ``xlevda demo`` with ``tree`` first on the path: (assimilation and total seconds,
    table)."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    with tempfile.TemporaryDirectory() as work:
        out = subprocess.run(
            [sys.executable, "-m", "xlevda.cli", "demo"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    found, total = TIME.search(out), TOTAL.search(out)
    if found is None or total is None:
        raise SystemExit(f"no assimilation or total time in the demo's output of {tree}:\n{out}")
    return float(found.group(1)), float(total.group(1)), "\n".join(TABLE.findall(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="source tree A (the baseline)")
    parser.add_argument("--b", type=Path, required=True, help="source tree B")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"A": [], "B": []}
    totals: dict[str, list[float]] = {"A": [], "B": []}
    tables: dict[str, set[str]] = {"A": set(), "B": set()}
    for _ in range(args.repeats):
        for key, tree in (("A", args.a), ("B", args.b)):
            seconds, total, table = run_demo(tree)
            times[key].append(seconds)
            totals[key].append(total)
            tables[key].add(table)
    for what, found in (("assimilation", times), ("total", totals)):
        for key, tree in (("A", args.a), ("B", args.b)):
            med = statistics.median(found[key])
            print(f"{what} {key} {tree}: {found[key]} s, median {med:.2f} s")
        ratio = statistics.median(found["B"]) / statistics.median(found["A"])
        print(f"{what}: median B / A = {ratio:.3f}")
    same = len(tables["A"] | tables["B"]) == 1
    print("tables identical" if same else "TABLES DIFFER")


if __name__ == "__main__":
    main()
