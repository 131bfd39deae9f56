"""End-to-end replicates per second and peak memory for a shipped protocol, in-process.

Measures the whole path a user runs (cohort synthesis with screening, enrollment, randomization,
the multi-state kernel under both arms, event-driven analysis date, log-rank, Cox, the
counterfactual Cox, Kaplan–Meier, Dataset assembly) after one warm-up run that compiles the
kernels, on the numba threads available (both cores by default).

    python benchmarks/bench_trial.py [--protocol protocols/hf_outcomes.yaml] [--replicates 500]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numba

from vctrial.trial.dataset import run_trial
from vctrial.spec.protocol import load_protocol

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", default=str(ROOT / "protocols" / "hf_outcomes.yaml"))
    p.add_argument("--replicates", type=int, default=500)
    p.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    args = p.parse_args()
    numba.set_num_threads(args.threads)
    protocol = load_protocol(args.protocol)
    run_trial(protocol, 2, seed=0, progress=False)  # compile / load the kernel cache
    t0 = time.perf_counter()
    ds = run_trial(protocol, args.replicates, seed=1, progress=False)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = protocol.spec.sample_size
    print(f"protocol: {protocol.spec.name} ({n} patients, both arms simulated per patient)")
    print(f"replicates: {args.replicates} in {seconds:.2f} s on {args.threads} numba thread(s)")
    print(f"replicates per second: {args.replicates / seconds:.1f}")
    print(f"patients per second (x arms simulated): {args.replicates * n / seconds / 1e6:.2f} M")
    print(f"peak resident memory of the process: {peak_mb:.0f} MB")
    print(f"power in this run: {float(ds['reject'].mean()):.3f}")


if __name__ == "__main__":
    main()
