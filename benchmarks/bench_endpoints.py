"""Benchmark: the binary, stratified and multiplicity kernels against their Python references.

    .venv/bin/python benchmarks/bench_endpoints.py [--threads 1] [--replicates 1000] [--patients 1000]

Data (fixed seed): two arms randomized 1:1 within 4 strata, two covariates (a standardized
continuous one, e.g. age, and a binary one, e.g. prior therapy), 1000 patients per replicate.
Binary outcome: logistic in arm (odds ratio 0.7), stratum and covariates, about 30% events.
Survival: exponential, hazard ratio 0.75, the control hazard doubling from one stratum to the
next and depending on both covariates, about 30% censored. Recurrent events: Poisson processes
with gamma frailty (variance 0.8), 0.02 events/month on control in the first stratum, x1.3 per
stratum, rate ratio 0.75, depending on both covariates, 12-36 months of follow-up. Multiplicity: three active arms against
one shared control (equal allocation), the comparisons' one-sided p-values of correlated z's.

Each vctrial kernel analyses all replicates in one call (median of ``--repeats`` calls after a
warm-up call that compiles or loads the numba cache); each reference is called one replicate at a
time on the first replicates (fewer for the slow ones), in the same run:

* chi-square: ``scipy.stats.chi2_contingency(correction=False)``;
* CMH: statsmodels ``StratifiedTable(...).test_null_odds()``;
* logistic, arm + 2 covariates + stratum indicators: statsmodels ``Logit(...).fit(method="newton")``;
* stratified log-rank: statsmodels ``survdiff(strata=)`` (lifelines has no stratified log-rank);
* stratified Cox with the 2 covariates: statsmodels ``PHReg(strata=, ties="breslow").fit()`` and
  lifelines ``CoxPHFitter().fit(strata=[...])`` (Efron; the times are continuous, so no ties and the
  same likelihood);
* negative binomial (NB2, log follow-up offset), arm + 2 covariates + stratum indicators: statsmodels
  ``NegativeBinomial(loglike_method="nb2", exposure=).fit()`` polished by ``fit(method="newton")``
  from there (both timed: the default BFGS fit alone stops about 1e-5 short);
* stratified LWYY with the 2 covariates, robust SE: statsmodels ``PHReg(entry=, strata=,
  ties="breslow").fit(groups=id)`` on counting-process rows (building the rows is not timed);
* Bonferroni, Holm, Hochberg: statsmodels ``multipletests`` (``simes-hochberg`` for Hochberg; its
  Holm branch runs ``gc.collect()`` on every call, so Holm is also timed with that stubbed out);
* Dunnett adjusted p (a note): ``1 - scipy.stats.multivariate_normal.cdf`` at (z_j, ..., z_j),
  quasi-Monte Carlo with its default error bound; ``scipy.stats.dunnett`` needs the raw samples and
  uses the t distribution, so it is not the same quantity as vctrial's normal-theory adjustment.

The references building a 2x2 (or stratified) table count it from the patients inside the timed
loop, as vctrial does. Every pair is checked to agree (tolerances printed) before the figures are
printed; the run fails if one does not.

Threads: ``--threads N`` (default 1) pins numba, OpenMP, OpenBLAS, MKL and numexpr to N before
numpy is imported, so vctrial's kernels and the references' linear algebra run on the same number
of threads (the references are Python loops, one core whatever N is). ``uptime`` is printed
before and after.
"""

from __future__ import annotations

import os
import sys

from threads import THREAD_VARS, check_pinned, pin_from_argv  # noqa: E402 - benchmarks/threads.py

if __name__ == "__main__":  # the pools read these when numpy and numba load: set before importing them
    pin_from_argv(sys.argv[1:])

import argparse  # noqa: E402
import gc  # noqa: E402
import subprocess  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from timing import median_seconds, per_replicate  # noqa: E402 - benchmarks/timing.py
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from vctrial.trial.binary import chi_square, cmh, logistic  # noqa: E402
from vctrial.trial.counts import event_counts, lwyy, negbin  # noqa: E402
from vctrial.trial.multiplicity import adjust, many_to_one_correlation  # noqa: E402
from vctrial.trial.stratified import cox_adjusted, logrank_stratified  # noqa: E402

N_STRATA = 4
ARMS_WEIGHTS = [1.0, 1.0, 1.0, 1.0]  # control + 3 active arms, equal allocation


def make_data(n_rep: int, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    strata = rng.integers(0, N_STRATA, (n_rep, n))
    group = (rng.random((n_rep, n)) < 0.5).astype(np.int8)
    age = rng.standard_normal((n_rep, n))
    prior = (rng.random((n_rep, n)) < 0.4).astype(np.float64)
    covariates = np.stack([age, prior], axis=2)
    # binary outcome, ~30% events
    eta = -1.1 + np.log(0.7) * group + 0.25 * strata - 0.4 + 0.3 * age + 0.5 * prior
    y = rng.random((n_rep, n)) < 1.0 / (1.0 + np.exp(-eta))
    # survival, HR 0.75, ~30% censored
    hazard = 0.02 * 2.0 ** strata * np.exp(np.log(0.75) * group + 0.3 * age + 0.4 * prior)
    t_event = rng.exponential(1.0 / hazard)
    t_censor = rng.exponential(1.0 / 0.02, (n_rep, n))
    # multiplicity: 3 comparisons with a shared control, true effects 0, 1.5, 2.5 on the z scale
    corr = many_to_one_correlation(ARMS_WEIGHTS)
    z = np.array([0.0, 1.5, 2.5]) + rng.multivariate_normal(np.zeros(3), corr, n_rep)
    # recurrent events (drawn last, so the data above do not change)
    frailty = rng.gamma(1.0 / 0.8, 0.8, (n_rep, n))
    rate = 0.02 * 1.3 ** strata * np.exp(np.log(0.75) * group + 0.3 * age + 0.4 * prior)
    count = rng.poisson(frailty * rate * 36.0)
    slots = max(int(count.max()), 1)
    event_times = np.where(np.arange(slots) < count[:, :, None], rng.uniform(0.0, 36.0, (n_rep, n, slots)),
                           np.nan)
    follow_up = np.minimum(rng.uniform(12.0, 36.0, (n_rep, n)), rng.exponential(60.0, (n_rep, n)))
    return {"strata": strata, "group": group, "covariates": covariates, "y": y,
            "time": np.minimum(t_event, t_censor), "event": t_event <= t_censor,
            "p": stats.norm.sf(z), "corr": corr, "event_times": event_times, "follow_up": follow_up,
            "counts": event_counts(event_times, follow_up)}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        with open("/proc/loadavg") as fh:
            return "load average: " + ", ".join(fh.read().split()[:3])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for numba and every native pool (set before import); default 1")
    parser.add_argument("--fast-reference-replicates", type=int, default=200,
                        help="replicates for the fast references (chi-square, CMH, Bonferroni, Hochberg)")
    parser.add_argument("--reference-replicates", type=int, default=60,
                        help="replicates for Logit, survdiff, PHReg and Holm")
    parser.add_argument("--slow-reference-replicates", type=int, default=20,
                        help="replicates for lifelines and the multivariate-normal Dunnett")
    parser.add_argument("--repeats", type=int, default=5, help="timed vctrial calls (median)")
    parser.add_argument("--seed", type=int, default=20261206)
    args = parser.parse_args(argv)

    import statsmodels.api as sm
    from lifelines import CoxPHFitter
    from statsmodels.duration.hazard_regression import PHReg
    from statsmodels.duration.survfunc import survdiff
    from statsmodels.stats.contingency_tables import StratifiedTable
    from statsmodels.stats.multitest import multipletests

    threads = check_pinned(args.threads)

    print(f"uptime before: {uptime()}")
    n_rep, n = args.replicates, args.patients
    d = make_data(n_rep, n, args.seed)
    y, group, strata, cov = d["y"], d["group"], d["strata"], d["covariates"]
    time_, event, p = d["time"], d["event"], d["p"]
    ev, follow, counts = d["event_times"], d["follow_up"], d["counts"]
    print(f"data: {n_rep} replicates x {n} patients, {N_STRATA} strata, 2 covariates; binary "
          f"{100 * y.mean():.0f}% events; survival {100 * (1 - event.mean()):.0f}% censored; "
          f"recurrent {counts.mean():.2f} events per patient; multiplicity {p.shape[1]} comparisons; "
          f"seed {args.seed}")
    print(f"threads: {threads} for everything (numba {threads}"
          f"{', layer ' + numba.threading_layer() if threads > 1 else ''}; "
          f"{', '.join(THREAD_VARS[1:])} = {args.threads}); {os.cpu_count()} CPUs")

    n_fast = min(args.fast_reference_replicates, n_rep)
    n_mid = min(args.reference_replicates, n_rep)
    n_slow = min(args.slow_reference_replicates, n_rep)
    weights = ARMS_WEIGHTS

    # ---- vctrial, batched -------------------------------------------------------------------
    kernels = {
        "chi-square": lambda s=slice(None): chi_square(y[s], group[s]),
        "CMH (4 strata)": lambda s=slice(None): cmh(y[s], group[s], strata[s]),
        "logistic (arm + 2 cov + strata)": lambda s=slice(None): logistic(y[s], group[s], cov[s],
                                                                           strata=strata[s]),
        "stratified log-rank": lambda s=slice(None): logrank_stratified(time_[s], event[s], group[s],
                                                                        strata[s]),
        "stratified Cox + 2 cov": lambda s=slice(None): cox_adjusted(time_[s], event[s], group[s], cov[s],
                                                                     strata=strata[s]),
        "NB2 (arm + 2 cov + strata)": lambda s=slice(None): negbin(counts[s], follow[s], group[s],
                                                                   covariates=cov[s], strata=strata[s]),
        "stratified LWYY + 2 cov": lambda s=slice(None): lwyy(ev[s], follow[s], group[s], covariates=cov[s],
                                                              strata=strata[s]),
        "Bonferroni": lambda s=slice(None): adjust(p[s], "bonferroni"),
        "Holm": lambda s=slice(None): adjust(p[s], "holm"),
        "Hochberg": lambda s=slice(None): adjust(p[s], "hochberg"),
        "Dunnett (note)": lambda s=slice(None): adjust(p[s], "dunnett", weights),
    }

    # ---- references, one replicate at a time ------------------------------------------------
    def table(r):
        t = np.bincount(2 * group[r] + y[r], minlength=4).reshape(2, 2)
        return t

    def ref_chi2(r):
        return stats.chi2_contingency(table(r), correction=False)[0]

    def ref_cmh(r):
        cell = 4 * strata[r] + 2 * y[r] + group[r]  # tables[k] rows: outcome, columns: arm
        t = np.bincount(cell, minlength=4 * N_STRATA).reshape(N_STRATA, 2, 2)
        return StratifiedTable(np.moveaxis(t, 0, 2)).test_null_odds(correction=False).statistic

    dummies = [(strata == k).astype(np.float64) for k in range(1, N_STRATA)]

    def ref_logit(r):
        x = np.column_stack([np.ones(n), group[r], cov[r], *(dk[r] for dk in dummies)])
        fit = sm.Logit(y[r].astype(np.float64), x).fit(method="newton", disp=0)
        return fit.params[1], fit.bse[1]

    def ref_survdiff(r):
        return survdiff(time_[r], event[r].astype(np.float64), group[r], strata=strata[r])[0]

    def ref_phreg(r):
        x = np.column_stack([group[r], cov[r]]).astype(np.float64)
        fit = PHReg(time_[r], x, status=event[r].astype(np.float64), strata=strata[r],
                    ties="breslow").fit()
        return fit.params[0], fit.bse[0]

    def ref_lifelines(r):
        df = pd.DataFrame({"T": time_[r], "E": event[r], "g": group[r], "age": cov[r, :, 0],
                           "prior": cov[r, :, 1], "s": strata[r]})
        fit = CoxPHFitter().fit(df, "T", "E", strata=["s"])
        return fit.params_["g"], fit.standard_errors_["g"]

    def ref_nb2(r):
        x = np.column_stack([np.ones(n), group[r], cov[r], *(dk[r] for dk in dummies)])
        model = sm.NegativeBinomial(counts[r], x, loglike_method="nb2", exposure=follow[r])
        fit = model.fit(disp=0, maxiter=500)
        fit = model.fit(start_params=fit.params, method="newton", tol=1e-12, disp=0)
        return fit.params[1], fit.bse[1]

    def counting_process(r):
        """PHReg's rows for LWYY: one (entry, stop] per gap between a patient's events, entries just
        after the previous event (PHReg counts a row at risk at its entry); rows holding no event time
        of their stratum add nothing and would get NaN score residuals, so are dropped."""
        start, stop, status, pid = [], [], [], []
        for i in range(n):
            t = np.sort(ev[r, i][ev[r, i] <= follow[r, i]])
            a, b = np.r_[0.0, t], np.r_[t, follow[r, i]]
            keep = b > a
            start.append(a[keep])
            stop.append(b[keep])
            status.append(np.r_[np.ones(len(t)), 0.0][keep])
            pid.append(np.full(keep.sum(), i))
        start, stop, status, pid = map(np.concatenate, (start, stop, status, pid))
        st = strata[r][pid]
        keep = np.zeros(len(stop), bool)
        for k in range(N_STRATA):
            here = st == k
            u = np.unique(stop[here & (status == 1.0)])
            keep[here] = np.searchsorted(u, stop[here], "right") > np.searchsorted(u, start[here], "right")
        start, stop, status, pid = start[keep], stop[keep], status[keep], pid[keep]
        entry = np.where(start > 0, np.nextafter(start, np.inf), 0.0)
        x = np.column_stack([group[r], cov[r]]).astype(np.float64)[pid]
        return stop, x, status, entry, strata[r][pid], pid

    lwyy_rows = [counting_process(r) for r in range(n_slow)]

    def ref_lwyy(r):
        stop, x, status, entry, st, pid = lwyy_rows[r]
        fit = PHReg(stop, x, status=status, entry=entry, strata=st, ties="breslow").fit(groups=pid)
        return fit.params[0], fit.bse[0]

    def ref_multipletests(method):
        return lambda r: multipletests(p[r], method=method)[1]

    def holm_without_gc(r):
        # statsmodels' Holm branch calls gc.collect() on every call (its cost grows with the number
        # of live Python objects); this row times the same call with that collection stubbed out
        collect = gc.collect
        gc.collect = lambda *a, **k: 0
        try:
            return multipletests(p[r], method="holm")[1]
        finally:
            gc.collect = collect

    corr = d["corr"]

    def ref_dunnett(r):
        mvn = stats.multivariate_normal(mean=np.zeros(len(corr)), cov=corr)
        z = stats.norm.isf(p[r])
        return np.maximum([1.0 - mvn.cdf(np.full(len(corr), zj)) for zj in z], p[r])

    # name -> list of (reference label, function, replicates, compare(vctrial on those, ref) -> (text, ok))
    def rel(a, b):
        return float(np.max(np.abs(a - b) / np.abs(b)))

    def absd(a, b):
        return float(np.max(np.abs(a - b)))

    def stat_check(tol):
        def check(v, ref):
            e = rel(getattr(v, "z", v) ** 2, ref)
            return f"chi2 max rel diff {e:.1e} (tol {tol:g})", e < tol
        return check

    def fit_check(tol_b, tol_se):
        def check(v, ref):
            est = next(getattr(v, f) for f in ("log_or", "log_hr", "log_rr") if hasattr(v, f))
            eb, es = absd(est, ref[:, 0]), rel(v.se, ref[:, 1])
            ok = eb < tol_b and es < tol_se and bool(v.converged.all())
            return (f"estimate max abs diff {eb:.1e} (tol {tol_b:g}), SE max rel diff {es:.1e} "
                    f"(tol {tol_se:g})"), ok
        return check

    def p_check(tol):
        def check(v, ref):
            e = absd(v, ref)
            return f"adjusted p max abs diff {e:.1e} (tol {tol:g})", e < tol
        return check

    references = {
        "chi-square": [("scipy chi2_contingency", ref_chi2, n_fast, stat_check(1e-10))],
        "CMH (4 strata)": [("statsmodels StratifiedTable.test_null_odds", ref_cmh, n_fast,
                            stat_check(1e-10))],
        "logistic (arm + 2 cov + strata)": [("statsmodels Logit.fit(newton)", ref_logit, n_mid,
                                             fit_check(1e-6, 1e-6))],
        "stratified log-rank": [("statsmodels survdiff(strata=)", ref_survdiff, n_mid, stat_check(1e-8))],
        "stratified Cox + 2 cov": [
            ("statsmodels PHReg(strata=, breslow).fit", ref_phreg, n_mid, fit_check(1e-6, 1e-6)),
            # lifelines' default stopping rule leaves its estimate within about 1e-4 of the optimum
            ("lifelines CoxPHFitter(strata=).fit", ref_lifelines, n_slow, fit_check(1e-4, 1e-3)),
        ],
        "NB2 (arm + 2 cov + strata)": [("statsmodels NegativeBinomial(nb2) + newton", ref_nb2, n_mid,
                                        fit_check(1e-6, 1e-6))],
        "stratified LWYY + 2 cov": [("statsmodels PHReg(strata, entry, groups)", ref_lwyy, n_slow,
                                     fit_check(1e-6, 1e-6))],
        "Bonferroni": [("statsmodels multipletests(bonferroni)", ref_multipletests("bonferroni"), n_fast,
                        p_check(1e-12))],
        "Holm": [("statsmodels multipletests(holm)", ref_multipletests("holm"), n_mid, p_check(1e-12)),
                 ("  the same, its gc.collect() stubbed out", holm_without_gc, n_fast, p_check(1e-12))],
        "Hochberg": [("statsmodels multipletests(simes-hochberg)", ref_multipletests("simes-hochberg"),
                      n_fast, p_check(1e-12))],
        # scipy's multivariate normal CDF is quasi-Monte Carlo with abseps 1e-5
        "Dunnett (note)": [("1 - scipy multivariate_normal.cdf", ref_dunnett, n_slow, p_check(2e-4))],
    }

    # agreement first (on the replicates each reference analyses), then timing
    results, ok_all = {}, True
    for name, refs in references.items():
        for label, fn, m, check in refs:
            ref_s, out = per_replicate(fn, m)
            text, ok = check(kernels[name](slice(0, m)), out)
            ok_all &= ok
            results[(name, label)] = (ref_s, m, text, ok)
    if not ok_all:
        for (name, label), (_, m, text, ok) in results.items():
            print(f"{'ok  ' if ok else 'FAIL'} {name} vs {label} on {m}: {text}")
        raise SystemExit("vctrial and the references disagree")

    vc = {name: median_seconds(fn, args.repeats) / n_rep for name, fn in kernels.items()}

    print(f"\nper replicate, all on {threads} thread{'s' if threads > 1 else ''} (vctrial: {n_rep} "
          f"replicates per call, median of {args.repeats}; references one replicate at a time)")
    print(f"{'analysis':<32}{'vctrial us':>11}  {'reference':<44}{'ref us':>11}{'ratio':>9}{'reps':>6}")
    for name, refs in references.items():
        for i, (label, *_rest) in enumerate(refs):
            ref_s, m, text, _ = results[(name, label)]
            us = 1e6 * vc[name]
            left = f"{name:<32}{us:>11.{3 if us < 1 else 2}f}" if i == 0 else " " * 43
            print(f"{left}  {label:<44}{1e6 * ref_s:>11.1f}{ref_s / vc[name]:>8.0f}x{m:>6}")
    print("\nagreement (checked before timing):")
    for (name, label), (_, m, text, _) in results.items():
        print(f"  {name} vs {label.strip()}, {m} replicates: {text}")
    print(f"\nuptime after: {uptime()}")


if __name__ == "__main__":
    main()
