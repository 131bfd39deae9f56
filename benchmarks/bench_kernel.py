"""Progression-kernel throughput per alive patient-step against the floor, in the same run, on one core.

The floor does the least any progression kernel must do per patient-step: one counter-based draw,
one comparison, one state update (the same work as ../shared/bench/bare_bound.py, written on
vctrial's own generator). The full kernel runs the shipped disease models on patients synthesized
from their cohorts: HFrEF (covariate-dependent transitions that age, time-in-state multipliers after
a hospitalization, recurrent hospitalizations, cause-deleted background mortality by age and sex,
treatment hazard ratios per step, occupancy recorded every step) and type 2 diabetes (the same plus
two biomarkers stepped with their mean-reverting processes and intensification rules, and hazards
that depend on a biomarker's current value). Both kernels are reported both ways, with the ratio
of the model to the floor in each: per *alive* patient-step (the main figure: dead patients cost
next to nothing in either kernel, and the two kernels keep different shares of their patients
alive) and per patient-step of the whole grid (patients x steps, dead ones included, the unit of
../shared/bench/bare_bound.py). Numba runs on 1 thread; OpenMP, OpenBLAS and MKL pools are pinned to
1 before numpy loads when the file runs as a script.

    python benchmarks/bench_kernel.py [--patients 1000000] [--steps 120] [--repeats 3]
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # the pools read these when numpy and numba load: set before importing them
    os.environ.update({k: "1" for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                         "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")})

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from vctrial import rng  # noqa: E402
from vctrial.cohort import start_arrays, synthesize  # noqa: E402
from vctrial.disease import biomarker as bm  # noqa: E402
from vctrial.disease import multistate as ms  # noqa: E402
from vctrial.spec.cohort import load_cohort  # noqa: E402
from vctrial.spec.disease import load_disease  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@numba.njit(cache=True)
def floor_kernel(state, p_progress, p_die, key, n_steps):
    """Two-transition chain 0 → 1 → 2: one draw, one comparison, one update per patient-step.
    Returns the number of alive patient-steps."""
    n = state.shape[0]
    alive = 0
    for t in range(n_steps):
        for i in range(n):
            s = state[i]
            if s == 2:
                continue
            alive += 1
            u = rng.uniform(key, i, t)
            if s == 0:
                if u < p_progress[i]:
                    state[i] = 1
            elif u < p_die[i]:
                state[i] = 2
    return alive


def best_of(repeats: int, fn) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def floor_rate(n: int, steps: int, repeats: int) -> tuple[float, float]:
    """Alive patient-steps per second of the floor, and the fraction of patient-steps alive."""
    gen = np.random.default_rng(12345)
    p_progress, p_die = gen.uniform(0, 0.02, n), gen.uniform(0, 0.01, n)
    key = np.uint64(rng.stream_key(np.uint64(12345), np.uint64(1), 0))
    floor_kernel(np.zeros(10, np.int8), p_progress[:10], p_die[:10], key, 2)
    alive = floor_kernel(np.zeros(n, np.int8), p_progress, p_die, key, steps)
    seconds = best_of(repeats, lambda: floor_kernel(np.zeros(n, np.int8), p_progress, p_die, key, steps))
    return alive / seconds, alive / (n * steps)


def full_rate(disease_file: str, cohort_file: str, n: int, steps: int, repeats: int) -> tuple[float, float]:
    """Alive patient-steps/s of the full kernel on one arm, and the fraction of patient-steps alive."""
    spec = load_disease(ROOT / disease_file)
    cohort_spec = load_cohort(ROOT / cohort_file)
    model = ms.compile_model(spec)
    reps = np.zeros(1, np.int64)
    cohort = synthesize(cohort_spec, n, 7, reps)
    rate = ms.patient_rates(spec, cohort.column, (1, n))
    hr = np.ones((1, model.n_transitions, steps))
    bg = spec.background_mortality
    age, female = cohort.column(bg.age), cohort.column(bg.female)
    start, months = start_arrays(cohort_spec, cohort, list(model.state_names), model.initial_state)
    markers = None
    if spec.biomarkers:
        B = len(spec.biomarkers)
        markers = bm.marker_inputs(spec.biomarkers, cohort.column, (1, n), 7, reps, np.zeros((1, B)),
                                   np.zeros((1, B)), np.zeros(0, np.int64))

    def go(m=n):
        sub = None if markers is None else ms.Markers(markers.mean0[:, :m], markers.b0[:, :m], markers.b1[:, :m],
                                                      markers.shift, markers.slope_change, markers.record_steps)
        return ms.simulate(model, rate[:, :m], hr, age[:, :m], female[:, :m], steps, 1, reps,
                           start_state=start[:, :m], start_months_in_state=months[:, :m], markers=sub)

    go(100)
    seconds = best_of(repeats, go)
    paths = go()
    alive = paths.occupancy[0, 0, :steps, :][:, ~model.absorbing].sum() / (n * steps)
    return n * steps * alive / seconds, alive


MODELS = (("HFrEF (diseases/hfref.yaml)", "diseases/hfref.yaml", "cohorts/hfref.yaml"),
          ("T2D with biomarkers (diseases/t2d.yaml)", "diseases/t2d.yaml", "cohorts/t2d.yaml"))


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    numba.set_num_threads(1)
    print(f"{args.patients:,} patients x {args.steps} steps, best of {args.repeats}; numba threads "
          f"{numba.get_num_threads()}; load average {_load()}")
    # the floor runs before and after the models; the faster of the two is the yardstick (load on a
    # shared machine drifts, and a slow floor would flatter the models)
    floor_first, floor_alive = floor_rate(args.patients, args.steps, args.repeats)
    models = [(label, *full_rate(disease, cohort, args.patients, args.steps, args.repeats))
              for label, disease, cohort in MODELS]
    floor_last, _ = floor_rate(args.patients, args.steps, args.repeats)
    floor = max(floor_first, floor_last)
    print(f"{'kernel':<43} {'M alive steps/s':>15} {'ratio':>6} {'M all steps/s':>14} {'ratio':>6} "
          f"{'alive':>6}")
    print(f"{'floor (1 draw + compare + update)':<43} {floor / 1e6:>15.1f} {1:>6.2f} "
          f"{floor / floor_alive / 1e6:>14.1f} {1:>6.2f} {floor_alive:>6.1%}   "
          f"(before the models {floor_first / 1e6:.1f}, after {floor_last / 1e6:.1f})")
    for label, full, alive in models:
        print(f"{label:<43} {full / 1e6:>15.1f} {full / floor:>6.2f} {full / alive / 1e6:>14.1f} "
              f"{(full / alive) / (floor / floor_alive):>6.2f} {alive:>6.1%}")
    print("ratio: the kernel's rate over the floor's in the same unit (alive patient-steps, or all patient-steps "
          "of the grid); 'alive': share of the grid's patient-steps alive. Target >= 0.25 per alive patient-step "
          f"(HFrEF). Load average at the end {_load()}")


if __name__ == "__main__":
    main()
