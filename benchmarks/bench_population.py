"""Population SIR against Starsim, side by side in the same run: wall time, peak memory, and the
matched epidemic (attack rate, day of peak prevalence).

The matched model: N people, one random contact layer rebuilt every day, 10 contacts per person
per day, transmission probability 0.05 per contact-day, lognormal infectious period, 0.1% infected
on day 0, daily steps for 365 days, no births or deaths. Starsim's `RandomNet(n_contacts=10)`
gives each person 5 edges as source and Poisson(5) as target each day (mean degree 10) and its
`SIR` lets a person infected on day t transmit on days t+1 .. ceil(t + X) - 1 for an infectious
period X; vctrial's community layer gives Poisson(10) contacts and a person transmits on days
t+1 .. t + ceil(X). Starsim's mean period 6 days (sd 2) and vctrial's 5 days (sd 2) therefore
give both models the same mean number of infectious days (about 5.5, R0 about 2.75).

Each model runs in its own fresh process, with OMP_WAIT_POLICY=PASSIVE unless set (numba's OpenMP
threads otherwise spin at every barrier, which costs seconds when other work shares the cores) (so peak memory is its own); times exclude imports and
numba compilation (vctrial warms its kernels up on 2,000 people first, and the cache on disk is
reused). Peak memory is the process's maximum resident set size; "above baseline" subtracts the
resident size after imports and warm-up, i.e. what the simulation itself added.

    python benchmarks/bench_population.py [--sizes 100000 1000000] [--vctrial-only 10000000]
        [--no-starsim]

Needs the `bench` extra (`pip install ".[bench]"`) for Starsim.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAYS = 365
CONTACTS = 10
BETA = 0.05
INIT_PREV = 0.001


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def population_file(folder: Path, n: int) -> Path:
    import yaml

    spec = {
        "kind": "population", "name": f"benchmark SIR, {n} people",
        "population": {"size": n},
        "horizon_years": DAYS / 365.25,
        "demography": {"background_mortality": False},
        "infection": {
            "model": "sir",
            "infectious": {"distribution": "lognormal", "mean_days": 5.0, "sd_days": 2.0},
            "initial_infected": max(1, round(INIT_PREV * n)),
            "layers": {"community": {"contacts_per_day": CONTACTS, "beta": BETA}},
        },
        "costs": {"discount_rate_per_year": 0.0},
        "outputs": {"interval_days": 1, "calendar_days": 7, "age_groups": [0, 200]},
        "scenarios": [{"name": "baseline"}],
    }
    path = folder / f"sir_{n}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_vctrial(n: int, seed: int) -> dict:
    import numpy as np

    from vctrial.population.run import simulate_replicate
    from vctrial.spec.population import load_population

    with tempfile.TemporaryDirectory() as tmp:
        warm = load_population(population_file(Path(tmp), 2000))
        simulate_replicate(warm, seed, 0)
        world = load_population(population_file(Path(tmp), n))
        base = _rss_mb()
        t0 = time.perf_counter()
        out = simulate_replicate(world, seed, 0)
        wall = time.perf_counter() - t0
    counts = out["state_count"][0]  # (days, S E I R dead)
    infected = counts[:, 2]
    attack = 1.0 - counts[-1, 0] / n
    return {"model": "vctrial", "n": n, "wall_s": wall, "peak_mb": _peak_mb(), "baseline_mb": base,
            "attack_rate": float(attack), "peak_day": int(np.argmax(infected)) + 1,
            "peak_prevalence": float(infected.max() / n)}


def run_starsim(n: int, seed: int) -> dict:
    import numpy as np
    import starsim as ss

    def build(size):
        return ss.Sim(n_agents=size, networks=ss.RandomNet(n_contacts=CONTACTS),
                      diseases=ss.SIR(beta=ss.probperday(BETA), init_prev=INIT_PREV,
                                      dur_inf=ss.lognorm_ex(mean=ss.days(6), std=ss.days(2)), p_death=0),
                      start=0, stop=DAYS, dt=ss.days(1), rand_seed=seed, verbose=0)

    build(2000).run()  # warm-up (Starsim's own numba functions)
    base = _rss_mb()
    t0 = time.perf_counter()
    sim = build(n)
    sim.run()
    wall = time.perf_counter() - t0
    res = sim.results.sir
    infected = np.asarray(res.n_infected)
    attack = 1.0 - float(np.asarray(res.n_susceptible)[-1]) / n
    return {"model": "starsim", "n": n, "wall_s": wall, "peak_mb": _peak_mb(), "baseline_mb": base,
            "attack_rate": attack, "peak_day": int(np.argmax(infected)),
            "peak_prevalence": float(infected.max() / n)}


def child(model: str, n: int, seed: int) -> dict:
    """Run one model in a fresh interpreter; returns its JSON line."""
    env = dict(os.environ, STARSIM_INSTALL_FONTS="0")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no busy-waiting threads on a shared machine (both models)
    proc = subprocess.run([sys.executable, __file__, "--child", model, str(n), str(seed)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} at {n} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--vctrial-only", type=int, nargs="*", default=[10_000_000])
    ap.add_argument("--no-starsim", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        model, n, seed = args.child[0], int(args.child[1]), int(args.child[2])
        result = run_vctrial(n, seed) if model == "vctrial" else run_starsim(n, seed)
        print(json.dumps(result))
        return
    print(f"SIR, random contact layer, {CONTACTS} contacts/day, beta {BETA}, {DAYS} daily steps; "
          f"{os.cpu_count()} CPUs (shared machine: timings are noisy)")
    header = (f"{'people':>10} {'model':>8} {'wall s':>8} {'peak MB':>8} {'above base MB':>14} "
              f"{'above/M':>9} {'attack':>7} {'peak day':>8} {'peak prev':>9}")
    print(header)
    rows = []
    for n in args.sizes:
        pair = [child("vctrial", n, args.seed)]
        if not args.no_starsim:
            pair.append(child("starsim", n, args.seed))
        for r in pair:
            rows.append(r)
            _print(r)
        if len(pair) == 2:
            print(f"{'':>10} speed-up {pair[1]['wall_s'] / pair[0]['wall_s']:.1f}x; attack-rate difference "
                  f"{pair[0]['attack_rate'] - pair[1]['attack_rate']:+.4f}; peak-day difference "
                  f"{pair[0]['peak_day'] - pair[1]['peak_day']:+d}")
    for n in args.vctrial_only or []:
        r = child("vctrial", n, args.seed)
        rows.append(r)
        _print(r)


def _print(r: dict) -> None:
    above = r["peak_mb"] - r["baseline_mb"]
    print(f"{r['n']:>10} {r['model']:>8} {r['wall_s']:>8.2f} {r['peak_mb']:>8.0f} {above:>14.0f} "
          f"{above / (r['n'] / 1e6):>9.0f} {r['attack_rate']:>7.4f} {r['peak_day']:>8d} "
          f"{r['peak_prevalence']:>9.4f}", flush=True)


if __name__ == "__main__":
    main()
