"""Progression-kernel throughput per alive patient-step against the floor, in the same run, on one core.

The floor does the least any progression kernel must do per patient-step: one counter-based draw,
one comparison, one state update (the same work as ../shared/bench/bare_bound.py, written on
vctrial's own generator). The full kernel runs the shipped disease models on patients synthesized
from their cohorts: HFrEF (covariate-dependent transitions that age, time-in-state multipliers after
a hospitalization, recurrent hospitalizations, cause-deleted background mortality by age and sex,
treatment hazard ratios per step, occupancy recorded every step) and type 2 diabetes (the same plus
two biomarkers stepped with their mean-reverting processes and intensification rules, and hazards
that depend on a biomarker's current value). Rates are per *alive* patient-step, the work that
matters: dead patients cost nothing in either kernel.

    python benchmarks/bench_kernel.py [--patients 1000000] [--steps 120] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numba
import numpy as np

from vctrial import rng
from vctrial.cohort import start_arrays, synthesize
from vctrial.disease import biomarker as bm
from vctrial.disease import multistate as ms
from vctrial.spec.cohort import load_cohort
from vctrial.spec.disease import load_disease

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


def floor_rate(n: int, steps: int, repeats: int) -> float:
    """Alive patient-steps per second of the floor."""
    gen = np.random.default_rng(12345)
    p_progress, p_die = gen.uniform(0, 0.02, n), gen.uniform(0, 0.01, n)
    key = np.uint64(rng.stream_key(np.uint64(12345), np.uint64(1), 0))
    floor_kernel(np.zeros(10, np.int8), p_progress[:10], p_die[:10], key, 2)
    alive = floor_kernel(np.zeros(n, np.int8), p_progress, p_die, key, steps)
    return alive / best_of(repeats, lambda: floor_kernel(np.zeros(n, np.int8), p_progress, p_die, key, steps))


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    numba.set_num_threads(1)
    floor = floor_rate(args.patients, args.steps, args.repeats)
    print(f"floor kernel (1 draw + compare + update):   {floor / 1e6:8.1f} M alive patient-steps/s (1 core)")
    for label, disease, cohort in MODELS:
        full, alive = full_rate(disease, cohort, args.patients, args.steps, args.repeats)
        print(f"{label + ':':<43} {full / 1e6:8.1f} M alive patient-steps/s (1 core); "
              f"{full / floor:.2f} of the floor (target >= 0.25); {alive:.1%} of patient-steps alive")


if __name__ == "__main__":
    main()
