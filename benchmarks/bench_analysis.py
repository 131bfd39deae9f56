"""Benchmark: batched log-rank + Cox HR in vctrial against peers, on the same number of threads.

    python benchmarks/bench_analysis.py [--replicates 1000] [--patients 600] [--threads 1]

Data: two arms randomized 1:1, exponential event times (control median 12 months, hazard ratio
0.75 on active), independent exponential censoring tuned to 30% censored, fixed seed.

Peers, all timed in the same run:

- log-rank: a vectorised numpy implementation written here (all replicates in one call, like
  vctrial: one argsort, cumulative sums over the sorted rows, ties grouped exactly), checked to
  agree with vctrial's z to 1e-10; lifelines ``logrank_test`` and statsmodels ``survdiff``, one
  replicate at a time.
- Cox (Efron ties): statsmodels ``PHReg(...).fit()``, which fits the coefficients only, and
  lifelines ``CoxPHFitter().fit``, which also computes baseline hazard and survival (so it flatters
  vctrial), one replicate at a time.

Threads: ``--threads N`` (default 1) pins every native thread pool (numba, OpenMP, OpenBLAS, MKL,
numexpr) to N before numpy is imported, and numba to N, so vctrial's parallel kernels and the
peers' linear algebra run on the same number of threads. The peers called one replicate at a time
are Python loops and use one core whatever N is. vctrial and the numpy log-rank analyse all
replicates per call (median of ``--repeats`` calls after a warm-up call that compiles or loads the
numba cache); the one-at-a-time peers run on the first ``--peer-replicates`` replicates, timed per
replicate.
"""

from __future__ import annotations

import os
import sys

from threads import THREAD_VARS, check_pinned, pin_from_argv  # noqa: E402 - benchmarks/threads.py

if __name__ == "__main__":  # the pools read these when numpy and numba load: set before importing them
    pin_from_argv(sys.argv[1:])

import argparse  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from timing import median_seconds, per_replicate  # noqa: E402 - benchmarks/timing.py
import pandas as pd  # noqa: E402
from scipy import optimize  # noqa: E402

from vctrial.trial.analysis import cox_hr, logrank  # noqa: E402


def make_data(n_rep: int, n: int, hr: float, censored: float, seed: int):
    """(time, event, group) of shape (n_rep, n)."""
    rng = np.random.default_rng(seed)
    hazard0 = np.log(2.0) / 12.0
    hazards = (hazard0, hr * hazard0)

    def censored_share(rate_c):
        return np.mean([rate_c / (h + rate_c) for h in hazards]) - censored

    rate_c = optimize.brentq(censored_share, 1e-9, 100.0)
    group = rng.permuted(np.tile((np.arange(n) % 2).astype(np.int8), (n_rep, 1)), axis=1)
    t_event = rng.exponential(1.0 / np.where(group == 1, hazards[1], hazards[0]))
    t_censor = rng.exponential(1.0 / rate_c, size=(n_rep, n))
    return np.minimum(t_event, t_censor), t_event <= t_censor, group


def numpy_logrank(time_, event, group, include):
    """Log-rank z (active vs control, z < 0 favours active) for every row, vectorised in numpy.

    Each row is sorted by time; numbers at risk at a time are the included patients from the first
    of its tied block onwards (a reverse cumulative sum read at the block's start); events of a
    tied block are the difference of cumulative sums across it. Hypergeometric variance.
    """
    R, n = time_.shape
    order = np.argsort(time_, axis=1)
    t = np.take_along_axis(time_, order, axis=1)
    inc = np.take_along_axis(include, order, axis=1).astype(np.float64)
    act = inc * np.take_along_axis(group, order, axis=1)
    ev = inc * np.take_along_axis(event, order, axis=1)
    ev1 = ev * np.take_along_axis(group, order, axis=1)
    # at risk from position j onwards (excluded patients add nothing)
    at_risk = np.cumsum(inc[:, ::-1], axis=1)[:, ::-1]
    at_risk1 = np.cumsum(act[:, ::-1], axis=1)[:, ::-1]
    new_block = np.ones((R, n), bool)
    new_block[:, 1:] = t[:, 1:] != t[:, :-1]
    last_of_block = np.ones((R, n), bool)
    last_of_block[:, :-1] = new_block[:, 1:]
    cols = np.arange(n)
    start = np.maximum.accumulate(np.where(new_block, cols, 0), axis=1)  # first index of each block
    rows = np.arange(R)[:, None]
    cum_d = np.cumsum(ev, axis=1)
    cum_d1 = np.cumsum(ev1, axis=1)
    before = start - 1
    d = cum_d - np.where(before >= 0, cum_d[rows, np.maximum(before, 0)], 0.0)
    d1 = cum_d1 - np.where(before >= 0, cum_d1[rows, np.maximum(before, 0)], 0.0)
    nr = at_risk[rows, start]
    nr1 = at_risk1[rows, start]
    use = last_of_block & (d > 0)
    safe_n = np.where(use, nr, 1.0)
    e1 = np.where(use, d * nr1 / safe_n, 0.0)
    var = np.where(use & (nr > 1.0),
                   d * (nr1 / safe_n) * (1.0 - nr1 / safe_n) * (nr - d) / np.where(nr > 1.0, nr - 1.0, 1.0),
                   0.0)
    o_minus_e = np.where(use, d1, 0.0).sum(axis=1) - e1.sum(axis=1)
    v = var.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(v > 0, o_minus_e / np.sqrt(v), np.nan)


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--patients", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for every native pool and numba (set before import); default 1")
    parser.add_argument("--peer-replicates", type=int, default=50,
                        help="replicates analysed one at a time by lifelines and statsmodels")
    parser.add_argument("--repeats", type=int, default=5, help="timed batched calls (median)")
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args(argv)
    from lifelines import CoxPHFitter
    from lifelines.statistics import logrank_test
    from statsmodels.duration.hazard_regression import PHReg
    from statsmodels.duration.survfunc import survdiff

    threads = check_pinned(args.threads)

    n_rep, n = args.replicates, args.patients
    time_, event, group = make_data(n_rep, n, hr=0.75, censored=0.30, seed=args.seed)
    include = np.ones_like(event)
    print(f"data: {n_rep} replicates x {n} patients, HR 0.75, "
          f"{100 * (1 - event.mean()):.1f}% censored, seed {args.seed}")
    print(f"threads: {threads} for everything (numba {threads}, layer {numba.threading_layer() if threads > 1 else 'n/a'}; "
          f"{', '.join(THREAD_VARS[1:])} = {args.threads}); {os.cpu_count()} CPUs; load average {_load()}")

    # batched: vctrial and the numpy log-rank, all replicates per call
    v_lr = median_seconds(lambda: logrank(time_, event, group, include), args.repeats) / n_rep
    v_cox = median_seconds(lambda: cox_hr(time_, event, group, include), args.repeats) / n_rep
    np_lr = median_seconds(lambda: numpy_logrank(time_, event, group, include), args.repeats) / n_rep

    # one replicate at a time
    m = min(args.peer_replicates, n_rep)

    def ll_logrank(r):
        a = group[r] == 1
        return logrank_test(time_[r][a], time_[r][~a], event_observed_A=event[r][a],
                            event_observed_B=event[r][~a]).test_statistic

    def ll_cox(r):
        df = pd.DataFrame({"time": time_[r], "event": event[r], "group": group[r]})
        fit = CoxPHFitter().fit(df, duration_col="time", event_col="event")
        return fit.params_["group"], fit.standard_errors_["group"]

    def sm_logrank(r):
        return survdiff(time_[r], event[r].astype(float), group[r])[0]

    def sm_cox(r, ties="efron"):
        fit = PHReg(time_[r], group[r][:, None].astype(float), status=event[r].astype(float),
                    ties=ties).fit()
        return fit.params[0], fit.bse[0]

    ll_lr_s, ll_chi2 = per_replicate(ll_logrank, m)
    sm_lr_s, sm_chi2 = per_replicate(sm_logrank, m)
    sm_cox_s, sm_fit = per_replicate(sm_cox, m)
    # PHReg's Efron terms are a Python loop over event times; Breslow's are not, and without tied
    # times (checked below) both give the same likelihood, so its time is the fairest PHReg figure
    smb_cox_s, smb_fit = per_replicate(lambda r: sm_cox(r, "breslow"), m)
    ll_cox_s, ll_fit = per_replicate(ll_cox, m)

    best_cox = min((sm_cox_s, "PHReg Efron"), (smb_cox_s, "PHReg Breslow"), (ll_cox_s, "lifelines"))
    us = 1e6
    rows = [
        ("log-rank", "vctrial, one batched call", v_lr, None),
        ("", "numpy, vectorised (this file), one batched call", np_lr, v_lr),
        ("", "statsmodels survdiff, one replicate at a time", sm_lr_s, v_lr),
        ("", "lifelines logrank_test, one replicate at a time", ll_lr_s, v_lr),
        ("Cox (Efron)", "vctrial, one batched call", v_cox, None),
        ("", "statsmodels PHReg.fit, one replicate at a time", sm_cox_s, v_cox),
        ("", "statsmodels PHReg(ties='breslow').fit (= Efron: no ties)", smb_cox_s, v_cox),
        ("", "lifelines CoxPHFitter.fit (+ baseline hazard), one at a time", ll_cox_s, v_cox),
        ("both", "vctrial", v_lr + v_cox, None),
        ("", f"fastest peers: numpy log-rank + {best_cox[1]}", np_lr + best_cox[0], v_lr + v_cox),
        ("", "lifelines logrank_test + CoxPHFitter.fit", ll_lr_s + ll_cox_s, v_lr + v_cox),
    ]
    print(f"\nper replicate, all on {threads} thread{'s' if threads > 1 else ''} "
          f"(batched: {n_rep} replicates, median of {args.repeats}; one at a time: {m} replicates)")
    print(f"{'analysis':<12} {'implementation':<62} {'us/replicate':>13} {'peer/vctrial':>13}")
    for what, impl, sec, ref in rows:
        ratio = "" if ref is None else f"{sec / ref:.1f}x"
        print(f"{what:<12} {impl:<62} {us * sec:>13.1f} {ratio:>13}")

    # agreement
    z_v = logrank(time_, event, group, include).z
    z_np = numpy_logrank(time_, event, group, include)
    z_abs = float(np.max(np.abs(z_v - z_np)))
    sub = slice(0, m)
    lr = logrank(time_[sub], event[sub], group[sub], include[sub])
    cox = cox_hr(time_[sub], event[sub], group[sub], include[sub])
    chi2_ll = np.max(np.abs(lr.z**2 - np.array(ll_chi2)) / np.array(ll_chi2))
    chi2_sm = np.max(np.abs(lr.z**2 - np.array(sm_chi2)) / np.array(sm_chi2))
    sm_b, sm_se = np.array(sm_fit).T
    smb_b, smb_se = np.array(smb_fit).T
    ties = sum(np.unique(time_[r]).size < n for r in range(m))
    ll_b, ll_se = np.array(ll_fit).T
    print(f"\nagreement: numpy log-rank z vs vctrial, all {n_rep} replicates, max abs diff {z_abs:.1e} "
          f"(required <= 1e-10)")
    print(f"  first {m} replicates: chi2 max rel diff {chi2_sm:.1e} (statsmodels), {chi2_ll:.1e} (lifelines); "
          f"log HR max abs diff {np.max(np.abs(cox.log_hr - sm_b)):.1e} (PHReg), "
          f"{np.max(np.abs(cox.log_hr - ll_b)):.1e} (lifelines); SE max rel diff "
          f"{np.max(np.abs(cox.se - sm_se) / sm_se):.1e} (PHReg), {np.max(np.abs(cox.se - ll_se) / ll_se):.1e} (lifelines); PHReg Breslow log HR "
          f"{np.max(np.abs(cox.log_hr - smb_b)):.1e}, SE {np.max(np.abs(cox.se - smb_se) / smb_se):.1e}; "
          f"replicates with tied times: {ties}")
    print(f"load average at the end {_load()}")
    # lifelines' default stopping rule leaves its log HR within about 1e-4 of the optimum
    if not (z_abs <= 1e-10 and chi2_sm < 1e-8 and chi2_ll < 1e-6
            and np.max(np.abs(cox.log_hr - sm_b)) < 1e-6 and np.max(np.abs(cox.log_hr - ll_b)) < 1e-4
            and np.max(np.abs(cox.se - sm_se) / sm_se) < 1e-6 and cox.converged.all()
            and ties == 0 and np.max(np.abs(cox.log_hr - smb_b)) < 1e-6):
        raise SystemExit("vctrial and its peers disagree")


if __name__ == "__main__":
    main()
