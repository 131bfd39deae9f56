"""Progression-kernel throughput against the floor, measured in the same run, on one core.

The floor does the least any progression kernel must do per patient-step: one counter-based draw,
one comparison, one state update (the same work as ../shared/bench/bare_bound.py, written on
vctrial's own generator). The full kernel is vctrial's multi-state model of HFrEF: three
covariate-dependent transitions, competing background mortality by age and sex from the life table,
treatment hazard ratios per step, state occupancy recorded at every step.

    python benchmarks/bench_kernel.py [--patients 1000000] [--steps 120] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numba
import numpy as np

from vctrial import rng
from vctrial.disease import multistate as ms
from vctrial.spec.disease import load_disease

ROOT = Path(__file__).resolve().parent.parent


@numba.njit(cache=True)
def floor_kernel(state, p_progress, p_die, key, n_steps):
    """Two-transition chain 0 → 1 → 2: one draw, one comparison, one update per patient-step."""
    n = state.shape[0]
    for t in range(n_steps):
        for i in range(n):
            s = state[i]
            if s == 2:
                continue
            u = rng.uniform(key, i, t)
            if s == 0:
                if u < p_progress[i]:
                    state[i] = 1
            elif u < p_die[i]:
                state[i] = 2
    return state


def best_of(repeats: int, fn) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def floor_rate(n: int, steps: int, repeats: int) -> float:
    gen = np.random.default_rng(12345)
    p_progress, p_die = gen.uniform(0, 0.02, n), gen.uniform(0, 0.01, n)
    key = np.uint64(rng.stream_key(np.uint64(12345), np.uint64(1), 0))
    floor_kernel(np.zeros(10, np.int8), p_progress[:10], p_die[:10], key, 2)
    return n * steps / best_of(repeats, lambda: floor_kernel(np.zeros(n, np.int8), p_progress, p_die, key, steps))


def full_rate(n: int, steps: int, repeats: int) -> tuple[float, float]:
    """Patient-steps/s of the full kernel, and the fraction of patient-steps actually alive."""
    spec = load_disease(ROOT / "diseases" / "hfref.yaml")
    model = ms.compile_model(spec)
    gen = np.random.default_rng(7)
    cols = {
        "age": np.clip(gen.normal(64, 11, n), 18, 95),
        "sex_female": (gen.random(n) < 0.22).astype(float),
        "lvef_pct": np.clip(gen.normal(29.5, 6, n), 10, 40),
        "egfr_ml_min": np.clip(gen.normal(68, 20, n), 30, 150),
        "diabetes": (gen.random(n) < 0.35).astype(float),
        "nyha_class[III]": (gen.random(n) < 0.24).astype(float),
        "nyha_class[IV]": (gen.random(n) < 0.01).astype(float),
    }
    column = lambda name: cols[name][None, :]  # noqa: E731
    rate = ms.patient_rates(spec, column, (1, n))
    hr = np.ones((1, model.n_transitions, steps))
    age, female = cols["age"][None, :], cols["sex_female"][None, :]
    reps = np.zeros(1, np.int64)
    ms.simulate(model, rate[:, :100], hr, age[:, :100], female[:, :100], steps, 1, reps)
    seconds = best_of(repeats, lambda: ms.simulate(model, rate, hr, age, female, steps, 1, reps))
    paths = ms.simulate(model, rate, hr, age, female, steps, 1, reps)
    alive = paths.occupancy[0, 0, :steps, :][:, ~model.absorbing].sum() / (n * steps)
    return n * steps / seconds, alive


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    numba.set_num_threads(1)
    floor = floor_rate(args.patients, args.steps, args.repeats)
    full, alive = full_rate(args.patients, args.steps, args.repeats)
    print(f"floor kernel (1 draw + compare + update):   {floor / 1e6:8.1f} M patient-steps/s (1 core)")
    print(f"full multi-state kernel (HFrEF, 1 arm):     {full / 1e6:8.1f} M patient-steps/s (1 core)")
    print(f"full / floor:                               {full / floor:8.2f}  (target >= 0.20)")
    print(f"patient-steps alive in the full kernel:     {alive:8.1%}  (all counted above)")


if __name__ == "__main__":
    main()
