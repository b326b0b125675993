"""The demo's assimilation time for two source trees of xlevda, side by side.

Runs ``xlevda demo`` alternately with each tree first on ``PYTHONPATH`` (so the same virtual
environment serves both), ``--repeats`` times each, and reads the time the demo prints for its
assimilation ("LEVDA assimilation of 51 frames, K=100: 3.8 s"). Prints each tree's times, their
medians and the ratio B / A; the tables the two print must be identical, else it says so.

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
TABLE = re.compile(r"^\s*\d+\s+\d+-\d+ \|.*$", re.M)


def run_demo(tree: Path) -> tuple[float, str]:
    """One ``xlevda demo`` with ``tree`` first on the path: (assimilation seconds, table)."""
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
    found = TIME.search(out)
    if found is None:
        raise SystemExit(f"no assimilation time in the demo's output of {tree}:\n{out}")
    return float(found.group(1)), "\n".join(TABLE.findall(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="source tree A (the baseline)")
    parser.add_argument("--b", type=Path, required=True, help="source tree B")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"A": [], "B": []}
    tables: dict[str, set[str]] = {"A": set(), "B": set()}
    for _ in range(args.repeats):
        for key, tree in (("A", args.a), ("B", args.b)):
            seconds, table = run_demo(tree)
            times[key].append(seconds)
            tables[key].add(table)
    for key, tree in (("A", args.a), ("B", args.b)):
        print(f"{key} {tree}: {times[key]} s, median {statistics.median(times[key]):.2f} s")
    ratio = statistics.median(times["B"]) / statistics.median(times["A"])
    print(f"median B / A = {ratio:.3f}")
    same = len(tables["A"] | tables["B"]) == 1
    print("tables identical" if same else "TABLES DIFFER")


if __name__ == "__main__":
    main()
