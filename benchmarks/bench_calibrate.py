"""Calibration wall time: one shipped model fitted to its published targets, in-process and on 2 Ray
workers (a local instance started and warmed before the timed run), with the speed-up.

The timed part is the whole search (every candidate's studies simulated, the Jacobian's columns as
one batch of jobs, the final Jacobian for the Laplace draws), not Ray's start-up, which is reported
on its own. Both runs must give the same estimates bit for bit (common random numbers, counter-based
draws: chunking and workers never change results).

    python benchmarks/bench_calibrate.py [--file calibration/t2d.yaml] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

from vctrial.execute import ExecOptions, start_local_ray
from vctrial.spec.study import load_study
from vctrial.study.calibrate import fit

ROOT = Path(__file__).resolve().parent.parent


def timed_fit(study, options: ExecOptions, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            opts = ExecOptions(workers=options.workers, progress=False, out=Path(tmp) / "fit.nc",
                               shared_parts=True)
            start = time.perf_counter()
            result = fit(study, options=opts, progress=False)
            best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--file", default=str(ROOT / "calibration" / "hfref.yaml"))
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    study = load_study(args.file)
    spec = study.spec
    n_targets, n_params = len(spec.targets), len(spec.parameters)
    print(f"{args.file}: {n_params} free parameters, {n_targets} targets, {spec.replicates} simulated studies per "
          f"candidate, budget {spec.method.max_evaluations} candidates; {os.cpu_count()} cores")
    t_local, local = timed_fit(study, ExecOptions(workers=0), args.repeats)
    print(f"in-process (1 process, numba threads as set): {t_local:.1f} s, {local.evaluations} candidates, "
          f"objective {local.objective_start:.2f} -> {local.objective:.2f}")
    start = time.perf_counter()
    start_local_ray(2)
    startup = time.perf_counter() - start
    try:
        t_ray, remote = timed_fit(study, ExecOptions(workers=2), args.repeats)
    finally:
        ray.shutdown()
    same = np.array_equal(local.estimate, remote.estimate) and local.evaluations == remote.evaluations
    print(f"2 Ray workers: {t_ray:.1f} s (+ {startup:.1f} s to start Ray), speed-up {t_local / t_ray:.2f}x; "
          f"same estimates: {same}")
    if not same:
        raise SystemExit("the Ray fit differs from the in-process fit")


if __name__ == "__main__":
    main()
