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

Threads: both models run on the same number of threads, 1 by default (`--threads 1 2` measures
each count in turn). Each model runs in its own fresh interpreter whose environment pins every
thread pool before anything is imported: NUMBA_NUM_THREADS (vctrial's parallel kernels; Starsim
3.7's numba functions are compiled with parallel=False and have no thread setting), OMP, OpenBLAS,
MKL, numexpr and vecLib threads, plus OMP_WAIT_POLICY=PASSIVE unless set (numba's OpenMP threads
otherwise spin at every barrier, which costs seconds when other work shares the cores). The child
reports the thread count numba actually uses, the OS threads of the process, and the CPU seconds
of the timed section, so "CPU s / wall s" shows how many cores each model really kept busy.

Times exclude imports and numba compilation (vctrial warms its kernels up on 2,000 people first,
and the cache on disk is reused; Starsim runs a 2,000-person sim first). Peak memory is the
process's maximum resident set size (its own, since each run has its own process); "above base"
subtracts the resident size after imports and warm-up, i.e. what the simulation itself added.
With `--repeats R` each size runs R vctrial/Starsim pairs, alternating which goes first, and the
speed-up is the median of the R within-pair ratios (wall time and CPU time).

    python benchmarks/bench_population.py [--sizes 100000 1000000] [--vctrial-only 10000000]
        [--threads 1] [--repeats 1] [--no-starsim]

Starsim is optional (the `bench` extra: `pip install ".[bench]"`); without it the script says so
and runs vctrial alone.
"""

from __future__ import annotations

import argparse
import importlib.util
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


def _cpu_s() -> float:
    """User + system CPU seconds of this process, all its threads."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _os_threads() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def _threads_seen() -> dict:
    """The thread settings this process actually runs with (after the timed section)."""
    import numba

    return {"numba_threads": numba.get_num_threads(), "numba_layer": numba.threading_layer(),
            "os_threads": _os_threads(), "env": {k: os.environ.get(k) for k in THREAD_VARS}}


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
        c0, t0 = _cpu_s(), time.perf_counter()
        out = simulate_replicate(world, seed, 0)
        wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    counts = out["state_count"][0]  # (days, S E I R dead)
    infected = counts[:, 2]
    attack = 1.0 - counts[-1, 0] / n
    return {"model": "vctrial", "n": n, "wall_s": wall, "cpu_s": cpu, "peak_mb": _peak_mb(),
            "baseline_mb": base, "attack_rate": float(attack), "peak_day": int(np.argmax(infected)) + 1,
            "peak_prevalence": float(infected.max() / n), **_threads_seen()}


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
    c0, t0 = _cpu_s(), time.perf_counter()
    sim = build(n)
    sim.run()
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    res = sim.results.sir
    infected = np.asarray(res.n_infected)
    attack = 1.0 - float(np.asarray(res.n_susceptible)[-1]) / n
    return {"model": "starsim", "n": n, "wall_s": wall, "cpu_s": cpu, "peak_mb": _peak_mb(),
            "baseline_mb": base, "attack_rate": attack, "peak_day": int(np.argmax(infected)),
            "peak_prevalence": float(infected.max() / n), "version": ss.__version__, **_threads_seen()}


def child(model: str, n: int, seed: int, threads: int) -> dict:
    """Run one model in a fresh interpreter with every thread pool pinned to ``threads``."""
    env = dict(os.environ, STARSIM_INSTALL_FONTS="0")
    env.update({k: str(threads) for k in THREAD_VARS})  # read when the libraries load: set before import
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no busy-waiting threads on a shared machine (both models)
    proc = subprocess.run([sys.executable, __file__, "--child", model, str(n), str(seed)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} at {n} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["numba_threads"] != threads:
        raise RuntimeError(f"{model} ran on {result['numba_threads']} numba threads, not {threads}")
    return result


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--vctrial-only", type=int, nargs="*", default=[10_000_000])
    ap.add_argument("--threads", type=int, nargs="+", default=[1],
                    help="threads for both models (each count in turn); default 1")
    ap.add_argument("--repeats", type=int, default=1, help="vctrial/Starsim pairs per size (median ratio)")
    ap.add_argument("--no-starsim", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        model, n, seed = args.child[0], int(args.child[1]), int(args.child[2])
        result = run_vctrial(n, seed) if model == "vctrial" else run_starsim(n, seed)
        print(json.dumps(result))
        return
    starsim = not args.no_starsim
    if starsim and importlib.util.find_spec("starsim") is None:
        print("starsim is not installed (pip install \".[bench]\"): vctrial alone")
        starsim = False
    print(f"SIR, random contact layer, {CONTACTS} contacts/day, beta {BETA}, {DAYS} daily steps; "
          f"{os.cpu_count()} CPUs; load average {_load()} (shared machine: timings are noisy)")
    for threads in args.threads:
        print(f"\n--- both models on {threads} thread{'s' if threads > 1 else ''} "
              f"({'='.join(THREAD_VARS[:3])}=... = {threads}; OMP_WAIT_POLICY="
              f"{os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')})")
        print(f"{'people':>10} {'model':>8} {'wall s':>8} {'CPU s':>8} {'CPU/wall':>8} {'threads':>7} "
              f"{'peak MB':>8} {'above base MB':>14} {'above/M':>9} {'attack':>7} {'peak day':>8} "
              f"{'peak prev':>9}")
        for n in args.sizes:
            wall_ratio, cpu_ratio = [], []
            for rep in range(args.repeats if starsim else 1):
                order = ["vctrial", "starsim"] if starsim else ["vctrial"]
                if rep % 2:
                    order.reverse()
                pair = {m: child(m, n, args.seed, threads) for m in order}
                for m in order:
                    _print(pair[m])
                if starsim:
                    v, s_ = pair["vctrial"], pair["starsim"]
                    wall_ratio.append(s_["wall_s"] / v["wall_s"])
                    cpu_ratio.append(s_["cpu_s"] / v["cpu_s"])
                    print(f"{'':>10} pair {rep + 1}: speed-up {wall_ratio[-1]:.1f}x wall, {cpu_ratio[-1]:.1f}x CPU; "
                          f"attack-rate difference {v['attack_rate'] - s_['attack_rate']:+.4f}; peak-day "
                          f"difference {v['peak_day'] - s_['peak_day']:+d}; load average {_load()}", flush=True)
            if starsim:
                print(f"{'':>10} speed-up at {n:,} people, both on {threads} thread{'s' if threads > 1 else ''}: "
                      f"{_median(wall_ratio):.1f}x wall (pairs: {', '.join(f'{r:.1f}' for r in wall_ratio)}), "
                      f"{_median(cpu_ratio):.1f}x CPU time", flush=True)
        for n in args.vctrial_only or []:
            _print(child("vctrial", n, args.seed, threads))
    print(f"\nload average at the end {_load()}")


def _median(xs: list[float]) -> float:
    ys = sorted(xs)
    k = len(ys) // 2
    return ys[k] if len(ys) % 2 else 0.5 * (ys[k - 1] + ys[k])


def _print(r: dict) -> None:
    above = r["peak_mb"] - r["baseline_mb"]
    print(f"{r['n']:>10} {r['model']:>8} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} {r['cpu_s'] / r['wall_s']:>8.2f} "
          f"{r['numba_threads']:>7d} {r['peak_mb']:>8.0f} {above:>14.0f} {above / (r['n'] / 1e6):>9.0f} "
          f"{r['attack_rate']:>7.4f} {r['peak_day']:>8d} {r['peak_prevalence']:>9.4f}", flush=True)


if __name__ == "__main__":
    main()
