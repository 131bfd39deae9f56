"""Benchmark: replicates per second of a 3-arm, 3-look multi-arm multi-stage (MAMS) protocol.

    .venv/bin/python benchmarks/bench_mams.py [--threads 1] [--replicates 200]

The protocol is ``protocols/hf_mams.yaml`` (HFrEF, control + two doses 1:1:1, 5,400 patients, looks at
1/3, 2/3 and all of the control arm's share of 1,500 events, generalized Dunnett O'Brien-Fleming-type
efficacy bounds, beta-spending futility, separate stopping). In the same run, on the same replicates
and the same thread count, it times:

* the MAMS protocol, whole path (cohort, enrollment, randomization, the disease kernel under all three
  arms, the three looks' log-rank and Cox fits per comparison, bounds recomputed at each comparison's
  observed fractions, stopping, stagewise p-values and median-unbiased estimates, Kaplan-Meier);
* the same trial as a fixed design (no looks, single-step Dunnett): what the looks cost;
* the floor: the same patients simulated without any analysis (``simulate_patients``), below which no
  analysis can go; the MAMS/floor ratio is the price of the analysis.

Each figure is the median of ``--repeats`` timed calls after a warm-up call (kernel compilation,
bound caches warmed for the planned design only: every replicate's observed fractions are new).
``uptime`` is printed before and after.
"""

from __future__ import annotations

import sys

from threads import check_pinned, pin_from_argv  # noqa: E402 - benchmarks/threads.py

if __name__ == "__main__":  # the pools read these when numpy and numba load: set before importing them
    pin_from_argv(sys.argv[1:])

import argparse  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from timing import median_seconds  # noqa: E402 - benchmarks/timing.py

from vctrial.spec.protocol import load_protocol  # noqa: E402
from vctrial.trial.run import simulate_chunk, simulate_patients  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--replicates", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    threads = check_pinned(args.threads)
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    mams = load_protocol(ROOT / "protocols" / "hf_mams.yaml")
    fixed = load_protocol(ROOT / "protocols" / "hf_mams.yaml", {"looks": None})
    reps = np.arange(args.replicates)
    cases = {
        "MAMS, 3 arms x 3 looks": lambda: simulate_chunk(mams, 1, reps),
        "fixed design, 3 arms": lambda: simulate_chunk(fixed, 1, reps),
        "floor: patients simulated, no analysis": lambda: simulate_patients(mams, 1, reps),
    }
    seconds = {name: median_seconds(fn, args.repeats) for name, fn in cases.items()}
    out = simulate_chunk(mams, 1, reps)
    print(f"protocol: {mams.spec.name}; {mams.spec.sample_size} patients, {args.replicates} replicates, "
          f"{threads} thread(s), median of {args.repeats}")
    base = seconds["MAMS, 3 arms x 3 looks"]
    print(f"{'case':<42s} {'seconds':>9s} {'replicates/s':>13s} {'MAMS / case':>12s}")
    for name, s in seconds.items():
        print(f"{name:<42s} {s:9.2f} {args.replicates / s:13.1f} {base / s:12.2f}")
    stop = out["stop_look"]
    print(f"in this run: comparisons stopped at looks 1/2/3: "
          f"{', '.join(f'{(stop == k).mean():.2f}' for k in (1, 2, 3))}; "
          f"disjunctive power {out['reject'].any(axis=1).mean():.3f}")
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
