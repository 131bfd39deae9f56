"""One batch of simulated trials: (protocol, seed, replicate indices) → per-replicate arrays.

Every patient is simulated under every arm (common random numbers), then the trial observes only
the arm they were randomized to; the unobserved arm gives the counterfactual (true) effect in the
very patients of that trial.

The order within a batch: cohort synthesis (screening by eligibility) → enrollment (uniform
accrual, or the site model's calendar) → randomization (in enrollment order, optionally within
strata) → dropout and conduct (discontinuation, non-adherence, crossover switches) → the disease
kernel under every arm → the analysis at each look (one look without a group-sequential design)
→ stopping at the first bound crossed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import stats

from vctrial.cohort import start_arrays, synthesize
from vctrial.disease import biomarker, multistate
from vctrial.spec.protocol import BiomarkerEffect, CutStratum, HazardEffect, Protocol
from vctrial.trial import (analysis, assurance, conduct, counts, endpoints, enrollment, estimation, mams,
                           multiplicity, nph, observation, randomization, sequential, sites)
from vctrial.trial.stratified import cox_adjusted, cox_hr_stratified, logrank_stratified

KM_STEP_MONTHS = 1.0
STOP_FINAL, STOP_EFFICACY, STOP_FUTILITY = 0, 1, 2


def n_steps(protocol: Protocol) -> int:
    return int(math.ceil(protocol.spec.horizon_months / protocol.disease.time_step_months - 1e-9))


def hazard_ratios(protocol: Protocol, n_steps: int) -> np.ndarray:
    """(A, K, n_steps) multiplier of each transition's hazard under each arm at each step of treatment."""
    names = [t.name for t in protocol.disease.transitions]
    dt = protocol.disease.time_step_months
    hr = np.ones((len(protocol.spec.arms), len(names), n_steps))
    for a, arm in enumerate(protocol.spec.arms):
        for e in arm.effects:
            if isinstance(e, HazardEffect):
                if e.time_varying:
                    hr[a, names.index(e.transition), :] *= conduct.effect_profile(e, n_steps, dt)
                else:
                    hr[a, names.index(e.transition), :] *= e.hazard_ratio
    return hr


def simulate_chunk(protocol: Protocol, seed: int, replicates: np.ndarray) -> dict[str, np.ndarray]:
    """Simulate the trials with the given replicate indices; arrays lead with the replicate axis."""
    trial, cohort, out = simulate_patients(protocol, seed, replicates)
    spec = protocol.spec
    if spec.endpoint.type == "time_to_event":
        out.update(_time_to_event(trial))
    elif spec.endpoint.type == "binary" and spec.looks is not None:
        out.update(_sequential_binary(trial, seed, replicates))
    elif spec.endpoint.type == "binary":
        out.update(endpoints.binary_outcome(trial, seed, replicates))
    elif spec.endpoint.type == "count" and spec.looks is not None:
        out.update(_sequential_count(trial))
    elif spec.endpoint.type == "count":
        out.update(endpoints.count_outcome(trial))
    else:
        out.update(_biomarker_change(trial, cohort, seed, replicates))
    if "reject" not in out:  # a fixed design (group-sequential paths decide at their looks)
        out.update(_decide(spec, out))
        if len(spec.arms) > 2:  # several comparisons with the control: adjusted for multiplicity
            out.update(multiplicity.decide(spec.analysis, [a.allocation for a in spec.arms], out))
    if spec.secondary_endpoints:  # key secondaries at the primary's cut, tested in sequence after it
        from vctrial.trial import secondary  # imports this module

        out.update(secondary.analyse(trial, out))
    for key in [k for k in out if k.startswith("_")]:  # working values of the decision, not outputs
        del out[key]
    if spec.looks is not None:  # a trial stopped at an interim look randomizes no one after it
        out["n_randomized"] = out["n_enrolled"]
    return out


def simulate_patients(protocol: Protocol, seed: int, replicates: np.ndarray, record_steps: np.ndarray | None = None,
                      cohort=None) -> tuple[Trial, Any, dict[str, np.ndarray]]:
    """Every patient of the trials up to the analysis: (per-patient arrays, the cohort, per-replicate
    counts of screening, randomization and occupancy). ``record_steps`` replaces the steps at which
    true biomarker values are kept (default: the biomarker endpoint's baseline and visit); ``cohort``
    is the synthetic cohort of these replicates when the caller already has it."""
    spec = protocol.spec
    replicates = np.asarray(replicates, np.int64)
    R, n = len(replicates), spec.sample_size
    A = len(spec.arms)
    if cohort is None:
        cohort = synthesize(protocol.cohort, n, seed, replicates)
    out: dict[str, np.ndarray] = {}
    site_of = None
    if spec.enrollment.sites:
        enr = sites.enroll(spec.enrollment, n, cohort.n_screened, seed, replicates)
        entry, site_of = enr.entry, enr.site
        out.update({"n_screened": enr.screened.sum(axis=1), "site_randomized": enr.randomized,
                    "site_screened": enr.screened, "site_opened_month": enr.opened,
                    "enrollment_months": enr.complete})
    else:
        entry = enrollment.uniform_accrual(n, spec.enrollment.duration_months, seed, replicates)
        out["n_screened"] = cohort.n_screened
    enrolled = np.isfinite(entry)
    weights = [a.allocation for a in spec.arms]
    strata = _strata(protocol, cohort, site_of, enrolled)
    arm = randomization.allocate(n, weights, spec.randomization.method, spec.block_size, seed, replicates,
                                 block_sizes=spec.randomization.block_sizes, strata=strata)
    arm = np.where(enrolled, arm, 0).astype(np.int8)
    ends, rates = spec.dropout.rates()
    dropout = enrollment.piecewise_exponential_times(ends, rates, (R, n), "dropout", seed, replicates)

    model = multistate.compile_model(protocol.disease)
    steps = n_steps(protocol)
    rate = multistate.patient_rates(protocol.disease, cohort.column, (R, n))
    bg = protocol.disease.background_mortality
    age = cohort.column(bg.age) if bg else np.zeros((R, n))
    female = cohort.column(bg.female) if bg else np.zeros((R, n))
    switches = conduct.switching(protocol, (R, n), steps, seed, replicates)
    markers = _markers(protocol, cohort, (R, n), seed, replicates, record_steps)
    start, months_in_state = start_arrays(protocol.cohort, cohort, list(model.state_names), model.initial_state)
    record_events, max_records = endpoints.recorded_events(protocol)
    hr = hazard_ratios(protocol, steps)
    if spec.analysis.assurance:  # each replicate at its own draw of the uncertain effects
        hr = assurance.sampled_hazard_ratios(protocol, hr, seed, replicates)
    paths = multistate.simulate(model, rate, hr, age, female, steps, seed, replicates,
                                switching=switches, markers=markers, start_state=start,
                                start_months_in_state=months_in_state, record_events=record_events,
                                max_records=max_records)

    counts = np.stack([((arm == a) & enrolled).sum(axis=1) for a in range(A)], axis=1)
    out["n_randomized"] = counts
    out["occupancy"] = paths.occupancy / n
    share = weights[1] / sum(weights)
    out["imbalance"] = counts[:, 1] - share * counts.sum(axis=1)
    if strata is not None:
        out["max_stratum_imbalance"] = randomization.strata_balance(arm, strata, weights)
    trial = Trial(protocol, entry, enrolled, arm, dropout, paths, strata, endpoints.analysis_covariates(protocol, cohort),
                  site_of)
    return trial, cohort, out


def biomarker_effects(protocol: Protocol) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) shift and slope change per year of each arm on each biomarker of the disease model."""
    names = [b.name for b in protocol.disease.biomarkers]
    A = len(protocol.spec.arms)
    shift, slope = np.zeros((A, len(names))), np.zeros((A, len(names)))
    for a, arm_spec in enumerate(protocol.spec.arms):
        for e in arm_spec.effects:
            if isinstance(e, BiomarkerEffect):
                shift[a, names.index(e.biomarker)] += e.shift
                slope[a, names.index(e.biomarker)] += e.slope_change_per_year
    return shift, slope


def _record_steps(protocol: Protocol) -> np.ndarray:
    """Steps at which biomarker values are kept: baseline and the endpoint's visit."""
    ep = protocol.spec.endpoint
    if ep.type in ("time_to_event", "count") or (ep.type == "binary" and ep.biomarker is None):
        return np.zeros(0, np.int64)
    return np.array([0, int(round(ep.visit_month / protocol.disease.time_step_months))], np.int64)


def _markers(protocol: Protocol, cohort, shape, seed, replicates, record=None) -> multistate.Markers | None:
    """Biomarker inputs when the disease has biomarkers that hazards, rules or the endpoint use."""
    disease = protocol.disease
    record = _record_steps(protocol) if record is None else np.asarray(record, np.int64)
    if not disease.biomarkers or not (disease.has_biomarker_terms or record.size
                                      or any(b.intensification for b in disease.biomarkers)):
        return None
    shift, slope = biomarker_effects(protocol)
    return biomarker.marker_inputs(disease.biomarkers, cohort.column, shape, seed, replicates, shift, slope, record)


@dataclass(frozen=True)
class Trial:
    """Per-patient arrays of a batch: calendar entry (inf = never enrolled), arm, losses, paths."""

    protocol: Protocol
    entry: np.ndarray
    enrolled: np.ndarray
    arm: np.ndarray
    dropout: np.ndarray
    paths: multistate.Paths
    strata: np.ndarray | None = None  # (R, n) randomization stratum code, -1 if not enrolled
    covariates: np.ndarray | None = None  # (R, n, q) the analysis covariates (analysis.covariates)
    site: np.ndarray | None = None  # (R, n) site index of each patient (trials with sites), -1 if not enrolled


def _strata(protocol: Protocol, cohort, site_of, enrolled) -> np.ndarray | None:
    """(R, n) stratum code of each patient (mixed radix over the factors), -1 if not enrolled."""
    factors = protocol.spec.randomization.strata
    if not factors:
        return None
    code = np.zeros(enrolled.shape, np.int64)
    names, _, regions = sites.site_labels(protocol.spec.enrollment) if protocol.spec.enrollment.sites else ((), (), ())
    for f in factors:
        if f == "site":
            values, levels = np.maximum(site_of, 0).astype(np.int64), max(len(names), 1)
        elif f == "region":
            uniq = sorted(set(regions))
            lut = np.array([uniq.index(x) for x in regions], np.int64)
            values, levels = lut[np.maximum(site_of, 0)], len(uniq)
        elif isinstance(f, CutStratum):
            values = np.searchsorted(np.asarray(f.cuts), cohort.column(f.covariate), side="right").astype(np.int64)
            levels = len(f.cuts) + 1
        else:
            values = np.rint(cohort.column(f)).astype(np.int64)
            levels = len(cohort.levels.get(f, ())) or 2
        code = code * levels + values
    return np.where(enrolled, code, -1)




# --------------------------------------------------------------------------------------------
# Time-to-event endpoints.
# --------------------------------------------------------------------------------------------


def _time_to_event(trial: Trial) -> dict[str, np.ndarray]:
    protocol = trial.protocol
    spec = protocol.spec
    t_ep_all, t_ep, t_loss = endpoint_data(trial, list(spec.endpoint.events))
    entry = trial.entry
    targets = _event_targets(spec) if spec.follow_up.type == "event_driven" else []
    dates = look_dates(trial, t_ep, t_loss)
    looks = [_tte_cut(trial, t_ep_all, t_ep, t_loss, dates[:, k]) for k in range(dates.shape[1])]
    if _is_multistage(spec):
        out, stop_dates = _multistage_tte(protocol, looks, dates)
    elif spec.looks is None:
        res = looks[0]
        stop = np.zeros(entry.shape[0], np.int64)
        out = {key: res[key] for key in ("statistic", "p_value", "estimate", "ci_lower", "ci_upper", "true_effect",
                                         "n_analysed", "n_events", "n_enrolled", "_p_harm") if key in res}
        if "log_hr_se" in res:
            out["log_hr_se"] = res["log_hr_se"]
    else:
        out, stop = _sequential_tte(protocol, looks, dates, targets)
    if not _is_multistage(spec):
        stop_dates = np.take_along_axis(dates, stop[:, None], axis=1)[:, 0]
        out["duration_months"] = stop_dates
    else:  # each arm followed to its own last look
        stop_dates = np.take_along_axis(stop_dates, trial.arm.astype(np.int64), axis=1)
    time, event, include = _cut_data(trial, t_ep, t_loss, stop_dates)
    grid = np.arange(0.0, spec.horizon_months + 1e-9, KM_STEP_MONTHS)
    km = np.stack([analysis.kaplan_meier(time, event, include & (trial.arm == a), grid)
                   for a in range(len(spec.arms))], axis=1)
    last = np.where(include, time, 0.0).max(axis=1)
    km = np.where(grid[None, None, :] > last[:, None, None], np.nan, km)  # not estimable beyond the last follow-up
    out["km_survival"] = km
    return out


def endpoint_data(trial: Trial, events: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R, n, A) first time of any of ``events`` under every arm; (R, n) the same under the patient's own
    arm, and the time they are lost (dropout or death)."""
    codes = np.array([trial.protocol.disease.event_names.index(e) for e in events], np.int64)
    t_all = observation.endpoint_times(trial.paths.first_time, codes)
    t_loss = np.minimum(trial.dropout, observation.assigned(trial.paths.death_time, trial.arm))
    return t_all, observation.assigned(t_all, trial.arm), t_loss


def look_dates(trial: Trial, t_ep: np.ndarray, t_loss: np.ndarray) -> np.ndarray:
    """(R, looks) calendar date of each analysis: by the endpoint's event counts (event-driven
    follow-up), or the last randomization plus the fixed follow-up."""
    spec = trial.protocol.spec
    fu = spec.follow_up
    if fu.type == "event_driven" and _is_multistage(spec):  # looks timed by the control arm's events
        t_control = np.where(trial.arm == 0, t_ep, np.inf)
        return np.stack([observation.event_driven_dates(trial.entry, t_control, t_loss, d, fu.max_duration_months)
                         for d in _control_targets(spec)], axis=1)
    if fu.type == "event_driven":
        return np.stack([observation.event_driven_dates(trial.entry, t_ep, t_loss, d, fu.max_duration_months)
                         for d in _event_targets(spec)], axis=1)
    return (observation.last_entry(trial.entry) + fu.duration_months)[:, None]


def final_data(trial: Trial, events: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(time, event, include, follow) for the first of ``events`` at the trial's final analysis, as the
    published report of a study analyses them; ``follow`` is each patient's potential follow-up."""
    _, t_primary, t_loss = endpoint_data(trial, list(trial.protocol.spec.endpoint.events))
    date = look_dates(trial, t_primary, t_loss)[:, -1]
    _, t_ep, _ = endpoint_data(trial, events)
    time, event, include = _cut_data(trial, t_ep, t_loss, date)
    fu = trial.protocol.spec.follow_up
    follow = (date[:, None] - trial.entry) if fu.type == "event_driven" else np.full(trial.entry.shape, fu.duration_months)
    return time, event, include, np.where(include, follow, 0.0)


def _event_targets(spec) -> list[int]:
    """Event counts at the looks: ceil(fraction × target) (just the target without looks)."""
    D = spec.follow_up.target_events
    if spec.looks is None:
        return [D]
    return [max(1, int(math.ceil(f * D - 1e-9))) for f in spec.looks.information_fractions]


def _is_multistage(spec) -> bool:
    """A multi-arm multi-stage design: three or more arms with looks."""
    return spec.looks is not None and len(spec.arms) > 2


def _control_targets(spec) -> list[int]:
    """Control-arm event counts at the looks of a multi-arm multi-stage design: the looks' fractions of the
    control arm's allocation share of target_events."""
    w = [a.allocation for a in spec.arms]
    share = spec.follow_up.target_events * w[0] / sum(w)
    return [max(1, int(math.ceil(f * share - 1e-9))) for f in spec.looks.information_fractions]


def _cut_data(trial: Trial, t_ep, t_loss, date):
    """(time, event, include) at the calendar cut ``date`` ((R,), or (R, n) per patient), or per-patient
    fixed follow-up."""
    fu = trial.protocol.spec.follow_up
    entry = trial.entry
    date = date[:, None] if np.ndim(date) == 1 else date
    if fu.type == "event_driven":
        follow = date - entry
    else:
        follow = np.where(trial.enrolled, fu.duration_months, -np.inf)
    include = follow > 0.0
    time, event = observation.censor(t_ep, t_loss, follow)
    if fu.type == "event_driven":  # decide on the calendar, where the target-th event defines the date
        event = (t_ep <= t_loss) & (entry + t_ep <= date)
    time = np.where(include, time, 0.0)
    return time, event & include, include


def _tte_cut(trial: Trial, t_ep_all, t_ep, t_loss, date) -> dict[str, np.ndarray]:
    """The primary analysis, the counterfactual truth and the counts at one cut."""
    spec = trial.protocol.spec
    A = len(spec.arms)
    time, event, include = _cut_data(trial, t_ep, t_loss, date)
    # the same patients under every arm, followed to the same cut, lost only to competing death
    fu = spec.follow_up
    follow = (date[:, None] - trial.entry) if fu.type == "event_driven" else np.where(include, fu.duration_months, 0.0)
    cf_time, cf_event = [], []
    for a in range(t_ep_all.shape[2]):
        t, e = observation.censor(t_ep_all[..., a], trial.paths.death_time[..., a], follow)
        cf_time.append(np.where(include, t, 0.0))
        cf_event.append(e & include)
    n = trial.entry.shape[1]
    cf_group = np.broadcast_to(np.concatenate([np.zeros(n, np.int8), np.ones(n, np.int8)]), (trial.entry.shape[0], 2 * n)).copy()
    cfi = np.concatenate([include, include], axis=1)

    def compare(group, sub, j):  # arm j against the control (every arm at once with two arms)
        res = _tte_tests(time, event, group, sub, spec.analysis, trial.strata, trial.covariates)
        cft, cfe = np.concatenate([cf_time[0], cf_time[j]], axis=1), np.concatenate([cf_event[0], cf_event[j]], axis=1)
        if spec.analysis.method == "rmst":
            res["true_effect"] = nph.rmst(cft, cfe, cf_group, cfi, tau=spec.analysis.tau_months).difference
        else:
            res["true_effect"] = np.exp(_finite_cox(analysis.cox_hr(cft, cfe, cf_group, cfi))[0])
        return res

    res = multiplicity.by_comparison(trial.arm, include, A, compare)
    res["n_analysed"] = np.stack([(include & (trial.arm == a)).sum(axis=1) for a in range(A)], axis=1)
    res["n_events"] = np.stack([(event & (trial.arm == a)).sum(axis=1) for a in range(A)], axis=1)
    on_date = trial.entry <= date[:, None] if fu.type == "event_driven" else trial.enrolled
    res["n_enrolled"] = np.stack([(on_date & (trial.arm == a)).sum(axis=1) for a in range(A)], axis=1)
    return res


def _finite_cox(cox) -> tuple[np.ndarray, np.ndarray]:
    """Log HR and SE where the Cox estimate exists; NaN where it does not (no events, every event in one
    arm, or risk sets that separate the arms: the likelihood has no finite maximum and Newton-Raphson
    only wanders off towards ±infinity)."""
    ok = cox.converged & np.isfinite(cox.log_hr)
    return np.where(ok, cox.log_hr, np.nan), np.where(ok, cox.se, np.nan)


def _tte_tests(time, event, group, include, a_spec, strata=None, covariates=None) -> dict[str, np.ndarray]:
    """Statistic (negative favours active), p-value, estimate and confidence interval; ``strata`` and
    ``covariates`` are used when the analysis is stratified or adjusted."""
    z_ci = _critical(a_spec.confidence_level)
    method = a_spec.method
    out: dict[str, np.ndarray] = {}
    if method == "rmst":
        rm = nph.rmst(time, event, group, include, tau=a_spec.tau_months)
        out["statistic"] = rm.z
        out["p_value"] = analysis.p_value(rm.z, a_spec.sided)
        out["estimate"] = rm.difference
        out["ci_lower"] = rm.difference - z_ci * rm.se
        out["ci_upper"] = rm.difference + z_ci * rm.se
        return out
    if method == "maxcombo":
        mc = nph.maxcombo(time, event, group, include, combos=a_spec.combos, sided=a_spec.sided)
        if a_spec.sided == "one":
            out["statistic"], out["p_value"] = mc.statistic, mc.p_one
            # harm: the same one-sided MaxCombo test in the other direction (arms swapped)
            out["_p_harm"] = nph.maxcombo(time, event, (1 - group).astype(np.int8), include, combos=a_spec.combos,
                                          sided="one").p_one
        else:
            pick = np.nanargmax(np.where(np.isnan(mc.z), -np.inf, np.abs(mc.z)), axis=1)
            out["statistic"] = np.take_along_axis(mc.z, pick[:, None], axis=1)[:, 0]
            out["p_value"] = mc.p_two
    elif method != "cox":
        rho, gamma = (a_spec.rho, a_spec.gamma) if method == "fleming_harrington" else (0.0, 0.0)
        if a_spec.stratified:
            lr = logrank_stratified(time, event, group, np.maximum(strata, 0), include, rho=rho, gamma=gamma)
        else:
            lr = analysis.logrank(time, event, group, include, rho=rho, gamma=gamma)
        out["statistic"] = lr.z
        out["p_value"] = analysis.p_value(lr.z, a_spec.sided)
    if covariates is not None:
        cox = cox_adjusted(time, event, group, covariates, include,
                           np.maximum(strata, 0) if a_spec.stratified else None)
    elif a_spec.stratified:
        cox = cox_hr_stratified(time, event, group, np.maximum(strata, 0), include)
    else:
        cox = analysis.cox_hr(time, event, group, include)
    log_hr, se = _finite_cox(cox)
    if method == "cox":  # the Wald test of the arm's coefficient
        with np.errstate(invalid="ignore", divide="ignore"):
            out["statistic"] = log_hr / se
        out["p_value"] = analysis.p_value(out["statistic"], a_spec.sided)
    out["estimate"] = np.exp(log_hr)
    out["ci_lower"] = np.exp(log_hr - z_ci * se)
    out["ci_upper"] = np.exp(log_hr + z_ci * se)
    out["log_hr_se"] = se
    return out


# --------------------------------------------------------------------------------------------
# Group-sequential designs.
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _planned(fractions: tuple[float, ...], alpha: float, spending: str, gamma, futility, beta: float, fgamma):
    return sequential.design(np.asarray(fractions), alpha, spending, gamma, futility=futility, beta=beta,
                             futility_gamma=fgamma)


def _design_args(spec) -> dict:
    lk = spec.looks
    eff = lk.efficacy
    fut = lk.futility
    args = {"alpha": spec.comparison_alpha, "spending": eff.spending,
            "gamma": eff.gamma if eff.gamma is not None else (-4.0 if eff.spending == "hsd" else None),
            "futility": None, "beta": 0.1, "futility_gamma": None}
    if fut is not None and fut.type == "beta_spending":
        args.update(futility=fut.spending, beta=fut.beta,
                    futility_gamma=fut.gamma if fut.gamma is not None else (-2.0 if fut.spending == "hsd" else None))
    return args


def _stop(spec, z: np.ndarray, fractions: np.ndarray, performed: np.ndarray):
    """Bounds at the observed fractions, the stopping look and reason, per replicate.

    Returns (efficacy (R, K), futility (R, K), stop look (R,) 0-based, reason (R,), p-value (R,)).
    """
    R, K = z.shape
    eff_b, fut_b = _bounds(spec, fractions, performed)
    stop = np.zeros(R, np.int64)
    reason = np.zeros(R, np.int8)
    pval = np.full(R, np.nan)
    for r in range(R):
        m = int(performed[r].sum())
        t = _increasing(fractions[r, :m])
        b, a = eff_b[r, :m], fut_b[r, :m]
        k_stop, why = m - 1, STOP_FINAL
        for k in range(m):
            if z[r, k] >= b[k]:
                k_stop, why = k, (STOP_EFFICACY if k < m - 1 else STOP_FINAL)
                break
            if k < m - 1 and z[r, k] < a[k]:
                k_stop, why = k, STOP_FUTILITY
                break
        stop[r], reason[r] = k_stop, why
        if np.isfinite(z[r, k_stop]):
            pval[r] = sequential.stagewise_p_value(t, b, k_stop, float(z[r, k_stop]))
    return eff_b, fut_b, stop, reason, pval


def _increasing(fractions: np.ndarray) -> np.ndarray:
    """Observed fractions made strictly increasing (a capped look may add no information)."""
    return np.maximum.accumulate(np.maximum(fractions, 1e-6)) + np.arange(fractions.size) * 1e-9


def _bounds(spec, fractions: np.ndarray, performed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, K) efficacy and futility bounds recomputed at each replicate's observed fractions (NaN after
    the looks performed), spending the comparison's level (:attr:`TrialProtocol.comparison_alpha`)."""
    R, K = fractions.shape
    args = _design_args(spec)
    planned = _planned(tuple(spec.looks.information_fractions), args["alpha"], args["spending"], args["gamma"],
                       args["futility"], args["beta"], args["futility_gamma"])
    fut = spec.looks.futility
    eff_b = np.full((R, K), np.nan)
    fut_b = np.full((R, K), np.nan)
    for r in range(R):
        m = int(performed[r].sum())
        t = _increasing(fractions[r, :m])
        b, a = sequential.updated_bounds(t, planned, **args)
        if fut is not None and fut.type == "conditional_power":
            a = np.array([sequential.conditional_power_bound(t[k], planned.efficacy[-1], fut.threshold)
                          for k in range(m - 1)] + [b[-1]])
        eff_b[r, :m], fut_b[r, :m] = b, a
    return eff_b, fut_b


def _gather(values: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Values (R, K, ...) at each replicate's stopping look."""
    idx = stop.reshape((-1, 1) + (1,) * (values.ndim - 2))
    return np.take_along_axis(values, idx, axis=1)[:, 0]


def _look_outputs(looks: list[dict], keys) -> dict[str, np.ndarray]:
    return {k: np.stack([lk[k] for lk in looks], axis=1) for k in keys if k in looks[0]}


def _sequential_tte(protocol: Protocol, looks: list[dict], dates: np.ndarray, targets: list[int]):
    spec = protocol.spec
    fu = spec.follow_up
    D = fu.target_events
    performed = _performed(dates, fu.max_duration_months)
    per = _look_outputs(looks, ("statistic", "estimate", "ci_lower", "ci_upper", "log_hr_se", "true_effect",
                                "n_analysed", "n_events", "n_enrolled"))
    info = per["n_events"].sum(axis=2).astype(np.float64)
    theta = estimation.to_benefit(per["estimate"], True, "lower")
    return _decide_looks(spec, per, dates, performed, info, info / D, -per["statistic"], theta, per["log_hr_se"], None)


def _decide_looks(spec, per, dates, performed, info, fractions, z_sup, theta, se, df):
    """Bounds, stopping look, decision and estimates of a two-arm group-sequential trial from its looks'
    (R, K) outputs ``per``, information and fractions, benefit-positive statistic ``z_sup``, estimate
    ``theta`` on the benefit scale with its ``se`` (and t ``df``, or None)."""
    z, shift = _tested_z(spec, theta, se, z_sup, df)
    eff_b, fut_b, stop, reason, pval = _stop(spec, z, fractions, performed)
    out = {key: _gather(per[key], stop) for key in per}
    out["p_value"] = pval
    z_stop = np.take_along_axis(z, stop[:, None], 1)[:, 0]
    out["reject"] = (reason == STOP_EFFICACY) | ((reason == STOP_FINAL) & (z_stop >= _gather(eff_b, stop)))
    out.update(_sequential_estimates(spec, theta, se, z, z_sup, shift, fractions, eff_b, stop))
    out.update(_per_look(dates, performed, info, fractions, z, per, eff_b, fut_b, stop, reason))
    return out, stop


def _performed(dates: np.ndarray, max_duration: float) -> np.ndarray:
    """(R, K) the look took place: not after a look already held at the maximum duration."""
    performed = np.ones(dates.shape, bool)
    performed[:, 1:] = ~np.logical_or.accumulate(dates >= max_duration, axis=1)[:, :-1]
    return performed


_MULTISTAGE_LOOK = ("statistic", "estimate", "ci_lower", "ci_upper", "log_hr_se", "true_effect", "n_analysed",
                    "n_events", "n_enrolled", "_se", "_df", "z_benefit")


def _multistage_tte(protocol: Protocol, looks: list[dict], dates: np.ndarray):
    """A multi-arm multi-stage time-to-event trial: each comparison's information is the events of its two
    arms, as a fraction of their allocation share of target_events."""
    spec = protocol.spec
    per = _look_outputs(looks, _MULTISTAGE_LOOK)
    w = np.array([a.allocation for a in spec.arms], np.float64)
    planned = spec.follow_up.target_events * (w[0] + w[1:]) / w.sum()
    events = per["n_events"].astype(np.float64)
    info = events[:, :, :1] + events[:, :, 1:]  # (R, K, C)
    theta = estimation.to_benefit(per["estimate"], True, "lower")
    performed = _performed(dates, spec.follow_up.max_duration_months)
    return _multistage(spec, per, dates, performed, info, info / planned, -per["statistic"], theta,
                       per["log_hr_se"])


def _multistage(spec, per, dates, performed, info, fractions, z, theta, se):
    """Bounds, stops, decisions and estimates of every comparison of a multi-arm multi-stage design
    (:mod:`vctrial.trial.mams`). ``per`` holds each look's outputs, (R, K, C) per comparison and (R, K, A)
    per arm; ``info``, ``fractions``, ``z`` (benefit positive), ``theta`` and ``se`` are (R, K, C).

    Returns the outputs and the (R, A) calendar date up to which each arm is followed (its comparison's
    stopping look; the control's, the trial's last)."""
    R, K, C = z.shape
    eff_b = np.empty((R, K, C))
    fut_b = np.empty((R, K, C))
    for j in range(C):  # each comparison spends its level at its own observed fractions
        eff_b[:, :, j], fut_b[:, :, j] = _bounds(spec, fractions[:, :, j], performed)
    per_c = lambda x: np.moveaxis(x, 2, 1)  # noqa: E731 (R, K, C) -> (R, C, K)
    stop, reason, reject = mams.stop_rule(per_c(z), per_c(eff_b), per_c(fut_b), performed, spec.looks.stopping)
    end = stop.max(axis=1)  # the trial's last look
    out: dict[str, np.ndarray] = {}
    for key in ("statistic", "estimate", "ci_lower", "ci_upper", "log_hr_se", "true_effect"):
        if key in per:
            out[key] = np.take_along_axis(per[key], stop[:, None, :], axis=1)[:, 0]
    arm_stop = np.concatenate([end[:, None], stop], axis=1)  # (R, A)
    for key in ("n_analysed", "n_events", "n_enrolled"):
        if key in per:
            out[key] = np.take_along_axis(per[key], arm_stop[:, None, :], axis=1)[:, 0]
    pval = np.full((R, C), np.nan)
    pieces = []
    for j in range(C):
        for r in range(R):
            k = int(stop[r, j])
            if np.isfinite(z[r, k, j]):
                t = _increasing(fractions[r, : k + 1, j])
                pval[r, j] = sequential.stagewise_p_value(t, eff_b[r, : k + 1, j], k, float(z[r, k, j]))
        pieces.append(_sequential_estimates(spec, theta[:, :, j], se[:, :, j], z[:, :, j], z[:, :, j], 0.0,
                                            fractions[:, :, j], eff_b[:, :, j], stop[:, j]))
    out.update({key: np.stack([p[key] for p in pieces], axis=1) for key in pieces[0]})
    out["p_value"] = pval
    out["reject"] = reject
    out["duration_months"] = np.take_along_axis(dates, end[:, None], axis=1)[:, 0]
    open_arm = np.arange(K)[None, :, None] <= arm_stop[:, None, :]  # (R, K, A)
    nan = np.nan
    look_performed = performed[:, :, None]
    out.update({
        "stop_look": stop + 1,
        "stop_reason": reason,
        "look_performed": performed,
        "look_date_months": np.where(performed, dates, nan),
        "look_n_enrolled": np.where(performed, (per["n_enrolled"] * open_arm).sum(axis=2), -1),
        **{name: per_c(np.where(look_performed, values, nan)) for name, values in (
            ("look_information", info), ("look_fraction", fractions), ("look_z", z),
            ("look_estimate", per["estimate"]), ("look_true_effect", per["true_effect"]),
            ("efficacy_bound", eff_b), ("futility_bound", fut_b))},
    })
    return out, np.take_along_axis(dates, arm_stop, axis=1)


def _tested_z(spec, theta, se, z_sup, df) -> tuple[np.ndarray, float]:
    """(R, K) statistic compared with the bounds, benefit positive, and the θ it tests: the superiority
    statistic and 0, or for non-inferiority the shifted Wald statistic (θ̂ − θ_M)/se (a t statistic
    mapped to z through its p-value) and the margin θ_M."""
    a = spec.analysis
    if a.hypothesis != "noninferiority":
        return z_sup, 0.0
    shift = a.benefit_margins()[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        shifted = (theta - shift) / se
    if df is not None:
        shifted = stats.norm.isf(stats.t.sf(shifted, df))
    return np.where(np.isfinite(shifted), shifted, np.nan), shift


def _sequential_estimates(spec, theta, se, z, z_sup, shift, fractions, eff_b, stop) -> dict[str, np.ndarray]:
    """Harm (the superiority statistic at the stopping look at or below the mirror image of its efficacy
    bound), the repeated confidence interval and the stagewise median-unbiased estimate with its interval
    at the stopping look, on the estimate's scale."""
    a = spec.analysis
    z_stop = np.take_along_axis(z_sup, stop[:, None], 1)[:, 0]
    est = estimation.group_sequential_estimates(theta, se, z, fractions, eff_b, stop, a.confidence_level, shift)
    ratio, benefit = a.ratio_scale, a.estimate_benefit
    out = {"harm": z_stop <= -_gather(eff_b, stop)}
    for name, (lo, hi) in (("rci", ("rci_lower", "rci_upper")), ("mue_ci", ("mue_lower", "mue_upper"))):
        x, y = (estimation.from_benefit(est[k], ratio, benefit) for k in (lo, hi))
        out[f"{name}_lower"], out[f"{name}_upper"] = np.fmin(x, y), np.fmax(x, y)
    out["mue_estimate"] = estimation.from_benefit(est["mue"], ratio, benefit)
    if a.hypothesis == "noninferiority":  # as in a fixed design, the statistic is the margin test's
        out["statistic"] = np.take_along_axis(z, stop[:, None], 1)[:, 0]
    return out


def _decide(spec, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``reject`` (in the favourable direction only) and ``harm`` of a fixed design; with a margin, the
    margin test's statistic, p-value and decision (see :mod:`vctrial.trial.estimation`)."""
    a = spec.analysis
    z_benefit = -out["statistic"] if a.benefit == "lower" else out["statistic"]
    reject, harm = estimation.superiority(z_benefit, out["p_value"], a.alpha, a.sided, p_harm=out.get("_p_harm"))
    res = {"reject": reject, "harm": harm}
    if a.hypothesis != "superiority":
        est = out["estimate"]
        theta = estimation.to_benefit(est, a.ratio_scale, a.estimate_benefit)
        df = out.get("_df")
        if "_se" in out:
            se = out["_se"]
        elif "log_hr_se" in out:
            se = out["log_hr_se"]
        else:  # a symmetric normal interval (RMST): its half-width over the quantile
            se = (out["ci_upper"] - out["ci_lower"]) / (2.0 * _critical(a.confidence_level))
        m = estimation.margin_test(theta, se, a.benefit_margins(), a.hypothesis, a.alpha, a.sided, df)
        res.update(statistic=m["shifted"], p_value=m["p_value"], reject=m["reject"])
    return res


def _per_look(dates, performed, info, fractions, z, per, eff_b, fut_b, stop, reason) -> dict[str, np.ndarray]:
    nan = np.nan
    return {
        "stop_look": stop + 1,
        "stop_reason": reason,
        "look_performed": performed,
        "look_date_months": np.where(performed, dates, nan),
        "look_information": np.where(performed, info, nan),
        "look_fraction": np.where(performed, fractions, nan),
        "look_z": np.where(performed, z, nan),
        "look_estimate": np.where(performed, per["estimate"], nan),
        "look_true_effect": np.where(performed, per["true_effect"], nan),
        "look_n_enrolled": np.where(performed, per["n_enrolled"].sum(axis=2), -1),
        "efficacy_bound": eff_b,
        "futility_bound": fut_b,
    }


# --------------------------------------------------------------------------------------------
# Biomarker endpoints.
# --------------------------------------------------------------------------------------------


def _biomarker_change(trial: Trial, cohort, seed, replicates):
    protocol = trial.protocol
    spec = protocol.spec
    ep = spec.endpoint
    arm, entry = trial.arm, trial.entry
    j = [b.name for b in protocol.disease.biomarkers].index(ep.biomarker)
    A = len(spec.arms)
    months = _record_steps(protocol) * protocol.disease.time_step_months
    true_all = trial.paths.marker_true
    observed = biomarker.observe(protocol.disease.biomarkers, true_all, months, seed, replicates)[:, :, :, j, :]
    true = true_all[:, :, :, j, :]
    death = observation.assigned(trial.paths.death_time, arm)
    include = (trial.dropout > ep.visit_month) & (death > ep.visit_month) & trial.enrolled
    y0 = observed[:, :, 0, 0]  # baseline is measured before treatment: the same in every arm
    y1 = observation.assigned(observed[:, :, :, 1], arm)
    change_true = true[:, :, :, 1] - true[:, :, :, 0]
    truth = (change_true[:, :, 1] - change_true[:, :, 0]).mean(axis=1)
    visit_date = entry + ep.visit_month
    final_date = observation.last_entry(entry) + ep.visit_month
    if spec.looks is None and A > 2:  # each active arm against the control, on those two arms' patients
        res = multiplicity.by_comparison(arm, include, A, lambda g, sub, j: {
            **_ancova_cut(spec, y1 - y0, y0, g, sub, trial.enrolled),
            "true_effect": (change_true[:, :, j] - change_true[:, :, 0]).mean(axis=1)})
        res.pop("z_benefit")
        res["n_analysed"] = np.stack([(include & (arm == a)).sum(axis=1) for a in range(A)], axis=1)
        res["n_enrolled"] = np.stack([(trial.enrolled & (arm == a)).sum(axis=1) for a in range(A)], axis=1)
        res["duration_months"] = final_date
        stop = None
    elif spec.looks is None:
        res = _ancova_cut(spec, y1 - y0, y0, arm, include, trial.enrolled)
        res.pop("z_benefit")
        res["true_effect"] = truth
        res["duration_months"] = final_date
        stop = None
    elif A > 2:
        res, arm_dates = _multistage_biomarker(spec, y1 - y0, y0, arm, include, trial.enrolled, visit_date,
                                               change_true)
        stop = np.take_along_axis(arm_dates, arm.astype(np.int64), axis=1)  # each arm's patients to its last look
    else:
        res, stop = _sequential_biomarker(spec, y1 - y0, y0, arm, include, trial.enrolled, visit_date, truth)
        stop = res["duration_months"][:, None]
    cut = include if stop is None else include & (visit_date <= stop)
    res["biomarker_mean"] = np.stack([_mean_over_patients(np.where((cut & (arm == a))[..., None],
                                                                   observation.assigned(observed, arm), np.nan))
                                      for a in range(A)], axis=1)
    return res


def _ancova_cut(spec, y, y0, arm, include, on_date) -> dict[str, np.ndarray]:
    A = len(spec.arms)
    fit = analysis.ancova(y, y0, arm.astype(np.int8), include)
    sign = 1.0 if spec.analysis.benefit == "lower" else -1.0
    a_level = spec.analysis
    lo, hi = analysis.wald_ci(fit.estimate, fit.se, a_level.confidence_level, df=fit.df)
    return {
        "statistic": fit.t,
        "p_value": analysis.p_value(sign * fit.t, a_level.sided, df=fit.df),
        "estimate": fit.estimate,
        "ci_lower": lo,
        "ci_upper": hi,
        "n_analysed": np.stack([(include & (arm == a)).sum(axis=1) for a in range(A)], axis=1),
        "n_enrolled": np.stack([(on_date & (arm == a)).sum(axis=1) for a in range(A)], axis=1),
        "z_benefit": stats.norm.isf(analysis.p_value(sign * fit.t, "one", df=fit.df)),
        "_se": fit.se,
        "_df": np.broadcast_to(np.asarray(fit.df, dtype=np.float64), fit.se.shape),
    }


def _sequential_biomarker(spec, y, y0, arm, include, enrolled, visit_date, truth):
    """Looks when a fraction of the enrolled patients have reached the visit (see :func:`_by_patients`)."""
    dates = _visit_look_dates(spec, enrolled, visit_date, spec.endpoint.visit_month)
    looks = []
    for k in range(dates.shape[1]):
        seen = visit_date <= dates[:, k][:, None]
        entered = (visit_date - spec.endpoint.visit_month) <= dates[:, k][:, None]
        res = _ancova_cut(spec, y, y0, arm, include & seen, entered & enrolled)
        res["true_effect"] = truth
        looks.append(res)
    return _by_patients(spec, looks, dates, ratio=False)


def _sequential_binary(trial: Trial, seed, replicates) -> dict[str, np.ndarray]:
    """A binary endpoint with looks: each look analyses the patients whose outcome is assessed by its date
    (their response visit, or the end of the by_month window), when a fraction of the enrolled patients
    have reached that assessment (see :func:`_by_patients`)."""
    spec = trial.protocol.spec
    month = spec.endpoint.month
    fixed = endpoints.binary_outcome(trial, seed, replicates)  # the counterfactual truth and the final counts
    y, include, _, _ = endpoints.binary_data(trial, seed, replicates)
    assessed = trial.entry + month
    dates = _visit_look_dates(spec, trial.enrolled, assessed, month)
    A = len(spec.arms)
    looks = []
    for k in range(dates.shape[1]):
        cut = dates[:, k][:, None]
        seen = include & (assessed <= cut)
        res = endpoints.binary_tests(y, trial.arm, seen, trial, spec)
        sign = -1.0 if spec.analysis.benefit == "lower" else 1.0
        res["z_benefit"] = sign * res["statistic"]
        res["true_effect"] = fixed["true_effect"]
        res["n_analysed"] = endpoints.per_arm(seen, trial.arm, A)
        res["n_events"] = endpoints.per_arm(seen & y, trial.arm, A)
        res["n_enrolled"] = endpoints.per_arm(trial.enrolled & (trial.entry <= cut), trial.arm, A)
        looks.append(res)
    out, _ = _by_patients(spec, looks, dates, ratio=spec.analysis.ratio_scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["outcome_proportion"] = out["n_events"] / out["n_analysed"]
    return out


def _sequential_count(trial: Trial) -> dict[str, np.ndarray]:
    """A count endpoint with looks: interim look k on the calendar date when the follow-up accrued reaches
    its fraction of the planned follow-up (sample_size x duration), the final one when the last patient
    has completed follow-up. Each look analyses every enrolled patient's events up to the look's date
    (partial follow-up included); the information is the follow-up accrued, as a fraction of the planned."""
    spec = trial.protocol.spec
    fixed = endpoints.count_outcome(trial)  # the counterfactual truth
    times, follow, _, _, _ = endpoints.count_data(trial)
    duration = spec.follow_up.duration_months
    planned = spec.sample_size * duration
    end = observation.last_entry(trial.entry) + duration
    fr = spec.looks.information_fractions
    dates = np.stack([_accrual_date(trial.entry, follow, f * planned, end) for f in fr[:-1]] + [end], axis=1)
    dates = np.minimum(dates, end[:, None])
    A = len(spec.arms)
    looks, accrued = [], []
    for k in range(len(fr)):
        cut = dates[:, k][:, None]
        f_k = np.clip(np.where(trial.enrolled, cut - trial.entry, 0.0), 0.0, follow)
        seen = trial.enrolled & (f_k > 0.0)
        res = endpoints.count_tests(times, f_k, counts.event_counts(times, f_k), seen, trial, spec)
        sign = -1.0 if spec.analysis.benefit == "lower" else 1.0
        res["z_benefit"] = sign * res["statistic"]
        res["true_effect"] = fixed["true_effect"]
        res["n_enrolled"] = endpoints.per_arm(trial.enrolled & (trial.entry <= cut), trial.arm, A)
        looks.append(res)
        accrued.append(f_k.sum(axis=1) / 12.0)
    info = np.stack(accrued, axis=1)
    out, _ = _by_patients(spec, looks, dates, ratio=True, info=info, planned=planned / 12.0)
    return out


def _accrual_date(entry, follow, target: float, end) -> np.ndarray:
    """(R,) calendar date at which the follow-up accrued by all patients, sum of clip(t - entry, 0,
    follow), reaches ``target`` months (``end`` when it never does): bisection, vectorised over replicates."""
    lo = np.zeros(entry.shape[0])
    hi = end.copy()
    start = np.where(np.isfinite(entry), entry, 0.0)
    for _ in range(60):  # the date to within 1e-18 of the horizon: far below a day
        mid = 0.5 * (lo + hi)
        accrued = np.clip(mid[:, None] - start, 0.0, follow).sum(axis=1)
        below = accrued < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return hi


def _by_patients(spec, looks: list[dict], dates: np.ndarray, ratio: bool, info=None, planned=None):
    """Group-sequential decision of looks whose information is known at the look: by default the number of
    patients analysed as a fraction of the planned sample size (``info`` and ``planned`` replace both).
    Patients lost before their assessment leave the final fraction below 1; the final look spends what is
    left of alpha whatever its information. ``looks`` hold each look's analysis with ``z_benefit``,
    ``_se`` (of the estimate, or of its log when ``ratio``) and optionally ``_df``."""
    R, K = dates.shape
    per = _look_outputs(looks, ("statistic", "estimate", "ci_lower", "ci_upper", "true_effect", "n_analysed",
                                "n_events", "n_enrolled", "event_rate", "dispersion", "z_benefit", "_se", "_df"))
    if info is None:
        info, planned = per["n_analysed"].sum(axis=2).astype(np.float64), spec.sample_size
    fractions = info / planned
    performed = np.ones((R, K), bool)
    z_sup = per.pop("z_benefit")
    se, df = per.pop("_se"), per.pop("_df", None)
    theta = estimation.to_benefit(per["estimate"], ratio, spec.analysis.estimate_benefit)
    out, stop = _decide_looks(spec, per, dates, performed, info, fractions, z_sup, theta, se, df)
    out["duration_months"] = _gather(dates, stop)
    return out, stop


def _visit_look_dates(spec, enrolled, visit_date, month: float) -> np.ndarray:
    """(R, K) calendar date of each look: when its fraction of the enrolled patients have reached the visit
    (``visit_date``, ``month`` months after their entry)."""
    R = enrolled.shape[0]
    order = np.sort(np.where(enrolled, visit_date, np.inf), axis=1)
    n_enr = enrolled.sum(axis=1)
    fr = spec.looks.information_fractions
    dates = np.empty((R, len(fr)))
    for k, f in enumerate(fr):
        m = np.maximum(np.ceil(f * n_enr - 1e-9).astype(np.int64), 1)
        dates[:, k] = order[np.arange(R), m - 1]
    return dates


def _multistage_biomarker(spec, y, y0, arm, include, enrolled, visit_date, change_true):
    """A multi-arm multi-stage biomarker trial: ANCOVA of each active arm against the control at each look;
    a comparison's information is its two arms' patients with the visit, as a fraction of their
    allocation share of sample_size (what is known at the look)."""
    A = len(spec.arms)
    dates = _visit_look_dates(spec, enrolled, visit_date, spec.endpoint.visit_month)
    truth = [(change_true[:, :, j] - change_true[:, :, 0]).mean(axis=1) for j in range(A)]
    looks = []
    for k in range(dates.shape[1]):
        seen = include & (visit_date <= dates[:, k][:, None])
        entered = enrolled & ((visit_date - spec.endpoint.visit_month) <= dates[:, k][:, None])
        res = multiplicity.by_comparison(arm, seen, A, lambda g, sub, j: {
            **_ancova_cut(spec, y, y0, g, sub, entered), "true_effect": truth[j]})
        res["n_analysed"] = np.stack([(seen & (arm == a)).sum(axis=1) for a in range(A)], axis=1)
        res["n_enrolled"] = np.stack([(entered & (arm == a)).sum(axis=1) for a in range(A)], axis=1)
        looks.append(res)
    per = _look_outputs(looks, _MULTISTAGE_LOOK)
    w = np.array([a.allocation for a in spec.arms], np.float64)
    planned = spec.sample_size * (w[0] + w[1:]) / w.sum()
    analysed = per["n_analysed"].astype(np.float64)
    info = analysed[:, :, :1] + analysed[:, :, 1:]
    theta = estimation.to_benefit(per["estimate"], False, spec.analysis.benefit)
    performed = np.ones(dates.shape, bool)
    return _multistage(spec, per, dates, performed, info, info / planned, per["z_benefit"], theta, per["_se"])


def _mean_over_patients(values: np.ndarray) -> np.ndarray:
    """Mean over axis 1 of the finite values; NaN (without a numpy warning) where there is none, as for
    an arm nobody was randomized to."""
    seen = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(seen, values, 0.0).sum(axis=1) / seen.sum(axis=1)



def _critical(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2.0))
