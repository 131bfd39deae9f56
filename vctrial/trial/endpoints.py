"""Binary and count (recurrent-event) endpoints of one batch of simulated trials.

Both take the per-patient arrays of :func:`vctrial.trial.run.simulate_patients` (every patient
under every arm) and return per-replicate arrays for the Dataset: the analysis of the observed
trial (each patient under their own arm, lost at dropout or death) and the counterfactual truth
in the same patients (every patient under every arm, lost only to death).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vctrial.disease import biomarker
from vctrial.errors import SpecError
from vctrial.spec.protocol import Protocol, covariate_columns
from vctrial.trial import analysis, binary, counts, observation


def recorded_events(protocol: Protocol) -> tuple[np.ndarray | None, int]:
    """(events whose every occurrence time the disease kernel keeps, slots per patient): the count
    endpoint's events; none for other endpoints."""
    ep = protocol.spec.endpoint
    if ep.type != "count":
        return None, 0
    names = list(protocol.disease.event_names)
    mask = np.zeros(len(names), np.bool_)
    mask[[names.index(e) for e in ep.events]] = True
    return mask, int(ep.max_per_patient)


def analysis_covariates(protocol: Protocol, cohort) -> np.ndarray | None:
    """(R, n, q) the analysis covariates of every patient (analysis.covariates), or None."""
    names = covariate_columns(protocol.spec, protocol.cohort)
    if not names:
        return None
    return np.stack([cohort.column(name) for name in names], axis=2)




def per_arm(mask: np.ndarray, arm: np.ndarray, A: int, values: np.ndarray | None = None) -> np.ndarray:
    """(R, A) count (or sum of ``values``) of ``mask`` patients in each arm."""
    v = mask if values is None else np.where(mask, values, 0)
    return np.stack([np.where(arm == a, v, 0).sum(axis=1) for a in range(A)], axis=1)


def _oriented_p(z: np.ndarray, a_spec) -> np.ndarray:
    """p-value of z (positive: more, or higher, on the active arm) for the protocol's benefit direction."""
    sign = 1.0 if a_spec.benefit == "lower" else -1.0
    return analysis.p_value(sign * z, a_spec.sided)


# --------------------------------------------------------------------------------------------
# Binary endpoints.
# --------------------------------------------------------------------------------------------


def binary_data(trial, seed: int, replicates) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(y, include) of each patient under their own arm: the outcome and whether it is observed (complete
    cases); and (y_all, known) under every arm, for the counterfactual truth."""
    protocol = trial.protocol
    ep = protocol.spec.endpoint
    arm, enrolled = trial.arm, trial.enrolled
    death_all = trial.paths.death_time
    death = observation.assigned(death_all, arm)
    if ep.biomarker is None:  # event by a time
        names = list(protocol.disease.event_names)
        t_all = observation.endpoint_times(trial.paths.first_time, np.array([names.index(e) for e in ep.events],
                                                                            np.int64))
        y_all = t_all <= ep.by_month
        y = observation.assigned(y_all, arm)
        lost = np.minimum(trial.dropout, death)
        include = enrolled & (y | (lost > ep.by_month))
        known = np.ones(y_all.shape, bool)  # lost only to death, which (without the event) is a 0
    else:  # response at a visit
        j = [b.name for b in protocol.disease.biomarkers].index(ep.biomarker)
        months = np.array([0.0, ep.visit_month])
        observed = biomarker.observe(protocol.disease.biomarkers, trial.paths.marker_true, months, seed,
                                     replicates)[:, :, :, j, 1]
        with np.errstate(invalid="ignore"):
            y_all = observed < ep.below if ep.below is not None else observed > ep.above
        y = observation.assigned(y_all, arm)
        include = enrolled & (trial.dropout > ep.visit_month) & (death > ep.visit_month)
        known = (death_all > ep.visit_month) & np.isfinite(observed)
    return y, include, y_all, known


def binary_outcome(trial, seed: int, replicates) -> dict[str, np.ndarray]:
    """Outcome, analysis and counterfactual truth of a binary endpoint."""
    spec = trial.protocol.spec
    ep = spec.endpoint
    A = len(spec.arms)
    arm, enrolled = trial.arm, trial.enrolled
    y, include, y_all, cf_known = binary_data(trial, seed, replicates)
    out = binary_tests(y, arm, include, trial, spec)
    # the truth: the same patients under both arms (crude measure; the logistic odds ratio is conditional)
    n = arm.shape[1]
    cf_y = np.concatenate([y_all[:, :, 0], y_all[:, :, 1]], axis=1)
    cf_g = np.broadcast_to(np.repeat(np.arange(2, dtype=np.int8), n), cf_y.shape)
    cf_inc = np.concatenate([enrolled & cf_known[:, :, 0], enrolled & cf_known[:, :, 1]], axis=1)
    out["true_effect"] = binary.risk_effect(cf_y, cf_g, spec.measure, cf_inc).estimate
    out["n_analysed"] = per_arm(include, arm, A)
    out["n_events"] = per_arm(include & y, arm, A)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["outcome_proportion"] = out["n_events"] / out["n_analysed"]
    out["n_enrolled"] = per_arm(enrolled, arm, A)
    out["duration_months"] = observation.last_entry(trial.entry) + ep.month
    return out


def binary_tests(y, arm, include, trial, spec) -> dict[str, np.ndarray]:
    """The binary analysis of the ``include`` patients: statistic (negative: fewer outcomes on the active
    arm), p-value, estimate, interval and ``_se`` (of the estimate; of its log for a ratio)."""
    a_spec = spec.analysis
    method = a_spec.method
    group = arm.astype(np.int8)
    strata = np.maximum(trial.strata, 0) if (a_spec.stratified or method == "cmh") else None
    out: dict[str, np.ndarray] = {}
    if method == "logistic":
        fit = binary.logistic(y, group, trial.covariates, include, strata)
        lo, hi = analysis.wald_ci(fit.log_or, fit.se, a_spec.confidence_level)
        out.update(statistic=fit.z, estimate=np.exp(fit.log_or), ci_lower=np.exp(lo), ci_upper=np.exp(hi),
                   _se=fit.se)
    else:
        z = binary.chi_square(y, group, include) if method == "chi_square" else binary.cmh(y, group, strata, include)
        eff = binary.risk_effect(y, group, spec.measure, include, strata, level=a_spec.confidence_level)
        out.update(statistic=z, estimate=eff.estimate, ci_lower=eff.lower, ci_upper=eff.upper, _se=eff.se)
    out["p_value"] = _oriented_p(out["statistic"], a_spec)
    return out


# --------------------------------------------------------------------------------------------
# Count (recurrent-event) endpoints.
# --------------------------------------------------------------------------------------------


def count_data(trial) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(times, follow, y, include, total): each patient's event times (R, n, J) and months of follow-up
    under their own arm, the events counted within it, whether they are analysed, and (R, n, A) the
    events over the whole horizon under every arm."""
    protocol = trial.protocol
    spec = protocol.spec
    ep = spec.endpoint
    arm, enrolled = trial.arm, trial.enrolled
    names = list(protocol.disease.event_names)
    codes = [names.index(e) for e in ep.events]
    total = trial.paths.event_count[..., codes].sum(axis=3)  # (R, n, A) over the whole horizon
    if (total > ep.max_per_patient).any():
        raise SpecError(str(protocol.path), "endpoint.max_per_patient",
                        f"a simulated patient had {int(total.max())} of these events, more than the "
                        f"{ep.max_per_patient} kept; raise max_per_patient")
    duration = spec.follow_up.duration_months
    follow = np.where(enrolled, np.minimum(np.minimum(trial.dropout, observation.assigned(trial.paths.death_time, arm)),
                                           duration), 0.0)
    times = observation.assigned(trial.paths.event_times, arm)  # (R, n, J)
    y = counts.event_counts(times, follow)
    return times, follow, y, enrolled & (follow > 0.0), total


def count_outcome(trial) -> dict[str, np.ndarray]:
    """Event counts over each patient's follow-up, their analysis and the counterfactual rate ratio."""
    spec = trial.protocol.spec
    arm, enrolled = trial.arm, trial.enrolled
    times, follow, y, include, total = count_data(trial)
    duration = spec.follow_up.duration_months
    death_all = trial.paths.death_time
    out = count_tests(times, follow, y, include, trial, spec)
    # truth: every enrolled patient under each arm, followed to the end of follow-up or death
    exposure = np.minimum(death_all, duration)
    rate = [np.where(enrolled, total[:, :, a], 0).sum(axis=1) / np.where(enrolled, exposure[:, :, a], 0.0).sum(axis=1)
            for a in range(2)]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["true_effect"] = rate[1] / rate[0]
    out["n_enrolled"] = per_arm(enrolled, arm, len(spec.arms))
    out["duration_months"] = observation.last_entry(trial.entry) + duration
    return out


def count_tests(times, follow, y, include, trial, spec) -> dict[str, np.ndarray]:
    """The count analysis (negative binomial or LWYY) of the ``include`` patients of ``trial`` followed
    ``follow`` months with counts ``y`` (event times ``times``), adjusted for the analysis covariates and
    stratified by the randomization strata when the protocol says so: statistic (negative: a lower rate
    on the active arm), p-value, rate ratio, interval, ``_se`` of the log rate ratio, and the per-arm
    counts and rates."""
    A = len(spec.arms)
    arm = trial.arm
    group = arm.astype(np.int8)
    a_spec = spec.analysis
    level = a_spec.confidence_level
    strata = np.maximum(trial.strata, 0) if a_spec.stratified else None
    out: dict[str, Any] = {}
    if a_spec.method == "negative_binomial":  # strata as indicators (fixed effects)
        fit = counts.negbin(y, follow / 12.0, group, include, covariates=trial.covariates, strata=strata,
                            level=level)
        out["dispersion"] = fit.alpha
    else:  # strata with their own baseline rate function
        fit = counts.lwyy(times, follow, group, include, covariates=trial.covariates, strata=strata,
                          level=level)
    ok = fit.converged & np.isfinite(fit.log_rr)
    nan = np.full(ok.shape, np.nan)
    out["statistic"] = np.where(ok, fit.z, nan)
    out["estimate"] = np.where(ok, fit.rate_ratio, nan)
    out["ci_lower"] = np.where(ok, fit.lower, nan)
    out["ci_upper"] = np.where(ok, fit.upper, nan)
    out["_se"] = np.where(ok, fit.se, nan)  # of the log rate ratio: the margin test's Wald statistic
    out["p_value"] = _oriented_p(out["statistic"], a_spec)
    with np.errstate(invalid="ignore", divide="ignore"):
        years = per_arm(include, arm, A, follow / 12.0)
        out["n_events"] = per_arm(include, arm, A, y)
        out["event_rate"] = out["n_events"] / years
    out["n_analysed"] = per_arm(include, arm, A)
    return out


# --------------------------------------------------------------------------------------------
# Descriptions for the Dataset.
# --------------------------------------------------------------------------------------------

_MEASURE_NAMES = {"risk_difference": "risk difference (active - control)", "risk_ratio": "risk ratio (active / control)",
                  "odds_ratio": "odds ratio (active vs control)"}


def effect_description(protocol: Protocol) -> tuple[str, str] | None:
    """(effect, unit) of a binary or count endpoint's estimate for the Dataset; None for other endpoints."""
    spec = protocol.spec
    ep = spec.endpoint
    if ep.type == "binary":
        if ep.biomarker is None:
            outcome = f"{' or '.join(ep.events)} by month {ep.by_month:g}"
        else:
            side = f"< {ep.below:g}" if ep.below is not None else f"> {ep.above:g}"
            outcome = f"{ep.biomarker} {side} at month {ep.visit_month:g}"
        how = {"cmh": "Mantel-Haenszel ", "logistic": "adjusted "}.get(spec.analysis.method, "")
        return f"{how}{_MEASURE_NAMES[spec.measure]} of {outcome}", "1"
    if ep.type == "count":
        how = "adjusted " if (spec.analysis.covariates or spec.analysis.stratified) else ""
        return f"{how}rate ratio (active vs control) of {' + '.join(ep.events)} events", "1"
    return None


def ratio_scale(protocol: Protocol) -> bool:
    """True when a binary or count endpoint's estimate is a ratio (summarized on the log scale)."""
    spec = protocol.spec
    return spec.endpoint.type == "count" or spec.measure in ("risk_ratio", "odds_ratio")
