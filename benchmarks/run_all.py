"""Run every benchmark in turn with its default sizes, printing each one's figures.

    pip install ".[bench]"                 # Starsim, the peer of the population benchmark
    python benchmarks/run_all.py [--only kernel analysis ...]

Each benchmark reports ratios measured within its own run (against a floor kernel, lifelines,
statsmodels, scipy, one Ray worker or Starsim); docs/performance.md records the figures and the
machine's state.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["kernel", "analysis", "counts", "endpoints", "trial", "design", "ray", "twin",
              "population", "calibrate"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=BENCHMARKS)
    args = p.parse_args()
    failed = []
    for name in args.only:
        print(f"=== {name} ({HERE / f'bench_{name}.py'})", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / f"bench_{name}.py")])
        print(f"=== {name}: exit {code}, {time.perf_counter() - start:.0f} s\n", flush=True)
        if code:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
