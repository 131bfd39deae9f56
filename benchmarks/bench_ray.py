"""Ray execution: speed-up from 1 to 2 local workers, and the per-task overhead of the Ray path.

1. Speed-up: a replicate sweep of the default protocol (``--replicates`` trials in chunks of 50) on
   a local Ray instance with 1 worker, then with 2 workers. Each instance is started (timed on its
   own) and warmed (every worker has imported vctrial and loaded the compiled kernels) before the
   timed runs, so the figure is the scaling of the work, not of Ray's start-up.
2. Overhead: the same many small tasks (one replicate each of ``tests/data/event_driven.yaml``)
   in-process on one numba thread (what ``--workers 0`` does, pinned to one thread to match one
   Ray worker) and on 1 Ray worker; the difference divided by the number of tasks is what the Ray
   path adds per task (submission, argument and result transfer, the driver's bookkeeping).
   It is then set against the duration of a default-size task.

Every timed run is checked to give bit-identical arrays to the in-process run.

    python benchmarks/bench_ray.py [--replicates 400] [--tasks 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numba
import numpy as np
import ray

from vctrial.execute import ExecOptions, run_jobs, start_local_ray
from vctrial.spec.protocol import load_protocol
from vctrial.trial.dataset import trial_job

ROOT = Path(__file__).resolve().parent.parent


def timed(jobs, replicates: int, options: ExecOptions, repeats: int) -> tuple[float, list]:
    """Best wall time of ``repeats`` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run_jobs(jobs, replicates, 1, options)
        best = min(best, time.perf_counter() - start)
    return best, result


def same(a: list, b: list) -> bool:
    return all(x.keys() == y.keys() and all(np.array_equal(x[k], y[k], equal_nan=True) for k in x)
               for x, y in zip(a, b))


def speedup(replicates: int, repeats: int) -> None:
    protocol = load_protocol(ROOT / "protocols" / "hf_outcomes.yaml")
    jobs = [trial_job(protocol)]
    per_chunk = 50
    opts = dict(progress=False, chunk_patients=per_chunk * protocol.spec.sample_size)
    times, results = {}, {}
    for workers in (1, 2):
        start = time.perf_counter()
        start_local_ray(workers)
        startup = time.perf_counter() - start
        run_jobs(jobs, 2 * workers, 1, ExecOptions(workers=workers, progress=False, chunk_patients=1))  # warm
        times[workers], results[workers] = timed(jobs, replicates, ExecOptions(workers=workers, **opts), repeats)
        ray.shutdown()
        print(f"  {workers} worker{'s' if workers > 1 else ' '}: {times[workers]:7.2f} s "
              f"({replicates / times[workers]:.1f} trials/s; Ray start {startup:.1f} s, not included)")
    t0, r0 = timed(jobs, replicates, ExecOptions(workers=0, **opts), 1)
    print(f"  in-process, {numba.get_num_threads()} numba threads: {t0:7.2f} s")
    print(f"  speed-up 1 -> 2 workers: {times[1] / times[2]:.2f}x (target >= 1.8x); "
          f"identical to in-process: {same(results[1], r0) and same(results[2], r0)}")


def overhead(n_tasks: int, repeats: int) -> None:
    protocol = load_protocol(ROOT / "tests" / "data" / "event_driven.yaml")
    jobs = [trial_job(protocol)]
    small = dict(progress=False, chunk_patients=protocol.spec.sample_size)  # one replicate per task
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    run_jobs(jobs, 2, 1, ExecOptions(workers=0, **small))  # warm
    t_in, r_in = timed(jobs, n_tasks, ExecOptions(workers=0, **small), repeats)
    default = ExecOptions(workers=0, progress=False)
    t_big, _ = timed(jobs, 333, default, repeats)  # one default-size task (200,000 patients)
    numba.set_num_threads(threads)
    start_local_ray(1)
    run_jobs(jobs, 2, 1, ExecOptions(workers=1, **small))  # warm
    t_ray, r_ray = timed(jobs, n_tasks, ExecOptions(workers=1, **small), repeats)
    ray.shutdown()
    per_task = (t_ray - t_in) / n_tasks
    print(f"  {n_tasks} tasks of 1 replicate: in-process (1 thread) {t_in:.2f} s, Ray 1 worker {t_ray:.2f} s; "
          f"identical: {same(r_in, r_ray)}")
    print(f"  Ray overhead per task: {1e3 * per_task:.1f} ms; a default task (333 replicates, 200,000 "
          f"patients) takes {t_big:.2f} s on one thread: overhead {100 * per_task / t_big:.2f}% of it")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--replicates", type=int, default=400, help="trials of the sweep (default 400: 8 tasks)")
    p.add_argument("--tasks", type=int, default=200, help="small tasks for the overhead (default 200)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats, best kept (default 3)")
    args = p.parse_args()
    print(f"Speed-up, protocols/hf_outcomes.yaml, {args.replicates} trials in tasks of 50:")
    speedup(args.replicates, args.repeats)
    print("Per-task overhead, tests/data/event_driven.yaml:")
    overhead(args.tasks, args.repeats)


if __name__ == "__main__":
    main()
