"""Costs of the trial-design features, in-process, after a warm-up that compiles the kernels.

* the site model: one Mesa model for a chunk of replicates (site agents hold arrays over the
  chunk) against one model per replicate, on the group-sequential HFrEF protocol's 250 sites;
* group-sequential bounds: a planned design, and the per-look recomputation at observed fractions;
* analyses per replicate: log-rank, Cox, RMST and MaxCombo on 600-patient trials;
* whole protocols: the fixed HFrEF design against its group-sequential version with sites.

    python benchmarks/bench_design.py [--replicates 40]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vctrial.execute import ExecOptions
from vctrial.spec.protocol import load_protocol
from vctrial.trial import analysis, nph, sequential, sites
from vctrial.trial.dataset import run_trial

ROOT = Path(__file__).resolve().parent.parent


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, default=40)
    args = p.parse_args()
    R = args.replicates
    gs = load_protocol(ROOT / "protocols" / "hf_outcomes_gs.yaml")
    enr = gs.spec.enrollment
    n = gs.spec.sample_size
    n_screened = np.full(R, n)
    sites.enroll(enr, n, n_screened[:2], 1, np.arange(2))  # compile
    chunk = best_of(lambda: sites.enroll(enr, n, n_screened, 1, np.arange(R)))
    per = best_of(lambda: [sites.enroll(enr, n, n_screened[:1], 1, np.arange(r, r + 1)) for r in range(R)], 1)
    print(f"site model, {len(sites.site_labels(enr)[0])} sites, {n} patients, {R} replicates:")
    print(f"  one Mesa model per chunk     {1e3 * chunk / R:8.2f} ms per replicate")
    print(f"  one Mesa model per replicate {1e3 * per / R:8.2f} ms per replicate  ({per / chunk:.0f}x)")

    t_design = best_of(lambda: sequential.design([0.4, 0.7, 1.0], 0.025, "obf", futility="hsd", beta=0.1,
                                                 futility_gamma=-2.0))
    planned = sequential.design([0.4, 0.7, 1.0], 0.025, "obf", futility="hsd", beta=0.1, futility_gamma=-2.0)
    g = np.random.default_rng(0)

    def updates():
        for _ in range(100):
            obs = np.sort(g.uniform(0.3, 0.95, 2)).tolist() + [1.0]
            sequential.updated_bounds(obs, planned, 0.025, "obf", None, "hsd", 0.1, -2.0)

    t_upd = best_of(updates, 1) / 100
    print(f"bounds: 3-look design with beta-spending futility {1e3 * t_design:.1f} ms; "
          f"recomputed at new observed fractions {1e3 * t_upd:.2f} ms")

    m = 600
    grp = (g.random((R, m)) < 0.5).astype(np.int8)
    tt = g.exponential(12, (R, m))
    cc = g.uniform(6, 30, (R, m))
    time_, event = np.minimum(tt, cc), tt <= cc
    for name, fn in (("log-rank", lambda: analysis.logrank(time_, event, grp)),
                     ("Cox", lambda: analysis.cox_hr(time_, event, grp)),
                     ("RMST", lambda: nph.rmst(time_, event, grp, tau=12.0)),
                     ("MaxCombo (one-sided)", lambda: nph.maxcombo(time_, event, grp, sided="one"))):
        fn()
        print(f"  {name:<22s} {1e3 * best_of(fn) / R:8.3f} ms per {m}-patient replicate")

    opts = ExecOptions(workers=0, progress=False)
    fixed = load_protocol(ROOT / "protocols" / "hf_outcomes.yaml")
    for label, prot in (("hf_outcomes (fixed, uniform accrual)", fixed), ("hf_outcomes_gs (3 looks, sites)", gs)):
        run_trial(prot, 2, 1, options=opts)
        t = best_of(lambda: run_trial(prot, R, 1, options=opts), 1)
        print(f"{label:<40s} {1e3 * t / R:8.1f} ms per replicate ({R} replicates)")


if __name__ == "__main__":
    main()
