"""Stratified and recurrent-event analyses: vctrial's batched kernels against Python references.

    .venv/bin/python benchmarks/bench_counts.py [--replicates 1000] [--patients 600]

Four analyses, each timed per replicate against the reference a Python user would call, in the
same run on the same data:

* stratified log-rank (4 strata): statsmodels ``survdiff(strata=...)`` (lifelines has none);
* stratified Cox, Efron ties: lifelines ``CoxPHFitter().fit(strata=[...])``;
* negative binomial (NB2, log follow-up offset): statsmodels ``NegativeBinomial(...).fit()``;
* LWYY rate ratio with robust SE: statsmodels ``PHReg(..., entry=, ties="breslow")
  .fit(groups=id)`` on counting-process rows (building the rows is not timed).

vctrial analyses the whole batch in one call per analysis (1 and 2 numba threads, median of
``--repeats`` calls); the references run one replicate at a time on the first replicates.
"""

from __future__ import annotations

import argparse

import numba
import numpy as np
from timing import median_seconds, per_replicate  # noqa: E402 - benchmarks/timing.py
import pandas as pd

from vctrial.trial.counts import event_counts, lwyy, negbin
from vctrial.trial.stratified import cox_hr_stratified, logrank_stratified


def survival_data(n_rep: int, n: int, seed: int):
    """Exponential times, control hazard doubling over 4 strata, HR 0.75, ~30% censored."""
    rng = np.random.default_rng(seed)
    group = (rng.random((n_rep, n)) < 0.5).astype(np.int8)
    strata = rng.integers(0, 4, (n_rep, n))
    hazard = 0.02 * 2.0 ** strata * np.where(group == 1, 0.75, 1.0)
    t_event = rng.exponential(1.0 / hazard)
    t_censor = rng.exponential(1.0 / 0.02, (n_rep, n))
    return np.minimum(t_event, t_censor), t_event <= t_censor, group, strata


def recurrent_data(n_rep: int, n: int, seed: int):
    """Poisson processes with gamma frailty (variance 0.8), 0.05 events/month on control, rate
    ratio 0.75, follow-up 12-36 months with dropout; event times padded with NaN."""
    rng = np.random.default_rng(seed)
    group = (rng.random((n_rep, n)) < 0.5).astype(np.int8)
    frailty = rng.gamma(1.0 / 0.8, 0.8, (n_rep, n))
    count = rng.poisson(frailty * 0.05 * np.where(group == 1, 0.75, 1.0) * 36.0)
    slots = max(int(count.max()), 1)
    times = rng.uniform(0.0, 36.0, (n_rep, n, slots))
    event_times = np.where(np.arange(slots) < count[:, :, None], times, np.nan)
    follow_up = np.minimum(rng.uniform(12.0, 36.0, (n_rep, n)), rng.exponential(60.0, (n_rep, n)))
    return event_times, follow_up, group


def counting_process(event_times, follow_up, group):
    """statsmodels' input for LWYY: one (entry, stop] row per gap between a patient's events
    (times are continuous here: no patient has two events at one time).

    PHReg counts a row at risk at its entry time, so entries sit just after the previous event;
    rows holding no event time add nothing and would get NaN score residuals, so are dropped.
    """
    rows = []
    for i in range(len(follow_up)):
        times = np.sort(event_times[i][event_times[i] <= follow_up[i]])
        starts = np.concatenate([[0.0], times])
        stops = np.concatenate([times, [follow_up[i]]])
        events = np.r_[np.ones(len(times)), 0.0]
        keep = stops > starts
        for a, b, e in zip(starts[keep], stops[keep], events[keep]):
            rows.append((a, b, e, group[i], i))
    df = pd.DataFrame(rows, columns=["start", "stop", "event", "group", "id"])
    u = np.unique(df.stop[df.event == 1])
    df = df[np.searchsorted(u, df.stop, "right") > np.searchsorted(u, df.start, "right")]
    entry = np.where(df.start > 0, np.nextafter(df.start.to_numpy(), np.inf), 0.0)
    return df, entry


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--patients", type=int, default=600)
    parser.add_argument("--reference-replicates", type=int, default=40,
                        help="replicates analysed by each reference (timing per replicate)")
    parser.add_argument("--repeats", type=int, default=5, help="timed vctrial calls (median)")
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args(argv)

    import statsmodels.api as sm
    from lifelines import CoxPHFitter
    from statsmodels.duration.survfunc import survdiff

    n_rep, n = args.replicates, args.patients
    n_ref = min(args.reference_replicates, n_rep)
    time_, event, group, strata = survival_data(n_rep, n, args.seed)
    event_times, follow_up, rgroup = recurrent_data(n_rep, n, args.seed + 1)
    counts = event_counts(event_times, follow_up)
    print(f"data: {n_rep} replicates x {n} patients; survival: 4 strata, HR 0.75, "
          f"{100 * (1 - event.mean()):.0f}% censored; recurrent: rate ratio 0.75, "
          f"{counts.mean():.2f} events per patient (max {counts.max()}), seed {args.seed}")

    analyses = {
        "stratified log-rank": lambda: logrank_stratified(time_, event, group, strata),
        "stratified Cox": lambda: cox_hr_stratified(time_, event, group, strata),
        "negative binomial": lambda: negbin(counts, follow_up, rgroup),
        "LWYY": lambda: lwyy(event_times, follow_up, rgroup),
    }
    threads_before = numba.get_num_threads()
    vc = {name: {} for name in analyses}
    for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        numba.set_num_threads(threads)
        for name, fn in analyses.items():
            vc[name][threads] = median_seconds(fn, args.repeats) / n_rep
    numba.set_num_threads(threads_before)

    def ref_survdiff(r):
        return survdiff(time_[r], event[r].astype(float), group[r], strata=strata[r])[0]

    def ref_cox(r):
        df = pd.DataFrame({"T": time_[r], "E": event[r], "g": group[r], "s": strata[r]})
        fit = CoxPHFitter().fit(df, "T", "E", strata=["s"])
        return fit.params_["g"], fit.standard_errors_["g"]

    def ref_nb(r, polish=False):
        x = sm.add_constant(rgroup[r].astype(float), has_constant="add")
        model = sm.NegativeBinomial(counts[r], x, loglike_method="nb2", exposure=follow_up[r])
        fit = model.fit(disp=0, maxiter=500)
        if polish:  # Newton-Raphson from BFGS's end (from its own start it can reach alpha < 0)
            fit = model.fit(start_params=fit.params, method="newton", tol=1e-12, disp=0)
        return fit.params[1], fit.bse[1], fit.params[2]

    rows = [counting_process(event_times[r], follow_up[r], rgroup[r]) for r in range(n_ref)]

    def ref_lwyy(r):
        df, entry = rows[r]
        fit = sm.PHReg(df.stop.to_numpy(), df[["group"]].to_numpy(float),
                       status=df.event.to_numpy(float), entry=entry,
                       ties="breslow").fit(groups=df.id.to_numpy())
        return fit.params[0], fit.bse[0]

    sub = slice(0, n_ref)
    lr = logrank_stratified(time_[sub], event[sub], group[sub], strata[sub])
    cox = cox_hr_stratified(time_[sub], event[sub], group[sub], strata[sub])
    nb = negbin(counts[sub], follow_up[sub], rgroup[sub])
    lw = lwyy(event_times[sub], follow_up[sub], rgroup[sub])

    def rel(a, b):
        return float(np.max(np.abs(a - b) / np.abs(b)))

    refs = {}
    s, chi2 = per_replicate(ref_survdiff, n_ref)
    refs["stratified log-rank"] = (s, "statsmodels survdiff(strata=)",
                                   f"chi2 max rel diff {rel(lr.z**2, chi2):.1e}")
    ok = rel(lr.z**2, chi2) < 1e-8
    s, out = per_replicate(ref_cox, n_ref)
    refs["stratified Cox"] = (s, "lifelines CoxPHFitter(strata=)",
                              f"log HR max abs diff {np.max(np.abs(cox.log_hr - out[:, 0])):.1e}, "
                              f"SE max rel diff {rel(cox.se, out[:, 1]):.1e}")
    # lifelines' default stopping rule leaves its log HR within about 1e-4 of the optimum
    ok &= bool(np.max(np.abs(cox.log_hr - out[:, 0])) < 1e-4 and cox.converged.all())
    s, out = per_replicate(ref_nb, n_ref)
    _, tight = per_replicate(lambda r: ref_nb(r, polish=True), n_ref)
    # statsmodels' default BFGS stops at a gradient norm of 1e-5; its fit polished by Newton-
    # Raphson (not timed) is the one to agree with
    refs["negative binomial"] = (
        s, "statsmodels NegativeBinomial(nb2, exposure).fit()",
        f"log RR max abs diff {np.max(np.abs(nb.log_rr - out[:, 0])):.1e} (default fit), "
        f"{np.max(np.abs(nb.log_rr - tight[:, 0])):.1e} (polished); polished SE max rel diff "
        f"{rel(nb.se, tight[:, 1]):.1e}, alpha {rel(nb.alpha, tight[:, 2]):.1e}")
    ok &= bool(rel(nb.log_rr, tight[:, 0]) < 1e-7 and rel(nb.se, tight[:, 1]) < 1e-7
               and nb.converged.all())
    s, out = per_replicate(ref_lwyy, n_ref)
    refs["LWYY"] = (s, "statsmodels PHReg(entry, breslow).fit(groups=id)",
                    f"log RR max abs diff {np.max(np.abs(lw.log_rr - out[:, 0])):.1e}, "
                    f"robust SE max rel diff {rel(lw.se, out[:, 1]):.1e}")
    ok &= bool(np.max(np.abs(lw.log_rr - out[:, 0])) < 1e-6 and rel(lw.se, out[:, 1]) < 1e-6)

    print(f"{'analysis':<22}{'vctrial 1 thr':>15}{'2 thr':>11}{'reference':>13}{'speed-up':>10}"
          "  (per replicate; reference one replicate at a time)")
    for name in analyses:
        ref_s, ref_name, agree = refs[name]
        one, two = vc[name][1], vc[name][max(vc[name])]
        print(f"{name:<22}{1e6 * one:>12.1f} us{1e6 * two:>8.1f} us{1e3 * ref_s:>10.2f} ms"
              f"{ref_s / one:>9.0f}x  {ref_name}")
        print(f"{'':<22}agreement on {n_ref} replicates: {agree}")
    if not ok:
        raise SystemExit("vctrial and the references disagree")


if __name__ == "__main__":
    main()
