"""One batch of simulated trials: (protocol, seed, replicate indices) → per-replicate arrays.

Every patient is simulated under every arm (common random numbers), then the trial observes only
the arm they were randomized to; the unobserved arm gives the counterfactual (true) effect in the
very patients of that trial.
"""

from __future__ import annotations

import math

import numpy as np

from vctrial.cohort import synthesize
from vctrial.disease import biomarker, multistate
from vctrial.spec.protocol import BiomarkerEffect, HazardEffect, Protocol
from vctrial.trial import analysis, enrollment, observation, randomization

KM_STEP_MONTHS = 1.0


def n_steps(protocol: Protocol) -> int:
    return int(math.ceil(protocol.spec.horizon_months / protocol.disease.time_step_months - 1e-9))


def hazard_ratios(protocol: Protocol, n_steps: int) -> np.ndarray:
    """(A, K, n_steps) multiplier of each transition's hazard under each arm at each step."""
    names = [t.name for t in protocol.disease.transitions]
    hr = np.ones((len(protocol.spec.arms), len(names), n_steps))
    for a, arm in enumerate(protocol.spec.arms):
        for e in arm.effects:
            if isinstance(e, HazardEffect):
                hr[a, names.index(e.transition), :] *= e.hazard_ratio
    return hr


def simulate_chunk(protocol: Protocol, seed: int, replicates: np.ndarray) -> dict[str, np.ndarray]:
    """Simulate the trials with the given replicate indices; arrays lead with the replicate axis."""
    spec = protocol.spec
    replicates = np.asarray(replicates, np.int64)
    R, n = len(replicates), spec.sample_size
    cohort = synthesize(protocol.cohort, n, seed, replicates)
    entry = enrollment.uniform_accrual(n, spec.enrollment.duration_months, seed, replicates)
    arm = randomization.allocate(n, [a.allocation for a in spec.arms], spec.randomization.method,
                                 spec.block_size, seed, replicates)
    dropout = enrollment.exponential_times(spec.dropout.rate_per_year / 12.0, (R, n), "dropout", seed, replicates)

    model = multistate.compile_model(protocol.disease)
    steps = n_steps(protocol)
    rate = multistate.patient_rates(protocol.disease, cohort.column, (R, n))
    bg = protocol.disease.background_mortality
    age = cohort.column(bg.age) if bg else np.zeros((R, n))
    female = cohort.column(bg.female) if bg else np.zeros((R, n))
    paths = multistate.simulate(model, rate, hazard_ratios(protocol, steps), age, female, steps, seed, replicates)

    out: dict[str, np.ndarray] = {
        "n_screened": cohort.n_screened,
        "n_randomized": np.stack([(arm == a).sum(axis=1) for a in range(len(spec.arms))], axis=1),
        "occupancy": paths.occupancy / n,
    }
    if spec.endpoint.type == "time_to_event":
        out.update(_time_to_event(protocol, entry, arm, dropout, paths))
    else:
        out.update(_biomarker_change(protocol, cohort, entry, arm, dropout, paths, seed, replicates))
    out["reject"] = out["p_value"] < spec.analysis.alpha
    return out


def _assigned(x: np.ndarray, arm: np.ndarray) -> np.ndarray:
    """(R, n) values under each patient's own arm from (R, n, A)."""
    return np.take_along_axis(x, arm[..., None].astype(np.int64), axis=2)[..., 0]


def _time_to_event(protocol: Protocol, entry, arm, dropout, paths) -> dict[str, np.ndarray]:
    spec = protocol.spec
    events = [protocol.disease.event_names.index(e) for e in spec.endpoint.events]
    t_ep_all = observation.endpoint_times(paths.first_time, np.array(events, np.int64))
    t_ep = _assigned(t_ep_all, arm)
    death = _assigned(paths.death_time, arm)
    t_loss = np.minimum(dropout, death)
    fu = spec.follow_up
    if fu.type == "event_driven":
        date = observation.event_driven_dates(entry, t_ep, t_loss, fu.target_events, fu.max_duration_months)
        follow = date[:, None] - entry
    else:
        date = entry.max(axis=1) + fu.duration_months
        follow = np.full_like(entry, fu.duration_months)
    include = follow > 0.0
    time, event = observation.censor(t_ep, t_loss, follow)
    if fu.type == "event_driven":  # decide on the calendar, where the target-th event defines the date
        event = (t_ep <= t_loss) & (entry + t_ep <= date[:, None])
    time = np.where(include, time, 0.0)
    group = arm.astype(np.int8)
    lr = analysis.logrank(time, event, group, include)
    cox = analysis.cox_hr(time, event, group, include)

    # the same patients under both arms, followed to the same cut, lost only to competing death
    cf_time, cf_event = [], []
    for a in range(t_ep_all.shape[2]):
        t, e = observation.censor(t_ep_all[..., a], paths.death_time[..., a], follow)
        cf_time.append(np.where(include, t, 0.0))
        cf_event.append(e)
    n = entry.shape[1]
    cf_group = np.concatenate([np.zeros(n, np.int8), np.ones(n, np.int8)])
    truth = analysis.cox_hr(np.concatenate(cf_time, axis=1), np.concatenate(cf_event, axis=1),
                            np.broadcast_to(cf_group, (entry.shape[0], 2 * n)).copy(),
                            np.concatenate([include, include], axis=1))

    a_level = spec.analysis
    z_ci = _critical(a_level.confidence_level)
    grid = np.arange(0.0, spec.horizon_months + 1e-9, KM_STEP_MONTHS)
    km = np.stack([analysis.kaplan_meier(time, event, include & (arm == a), grid)
                   for a in range(len(spec.arms))], axis=1)
    last = np.where(include, time, 0.0).max(axis=1)
    km = np.where(grid[None, None, :] > last[:, None, None], np.nan, km)  # not estimable beyond the last follow-up
    return {
        "statistic": lr.z,
        "p_value": analysis.p_value(lr.z, a_level.sided),
        "estimate": np.exp(cox.log_hr),
        "ci_lower": np.exp(cox.log_hr - z_ci * cox.se),
        "ci_upper": np.exp(cox.log_hr + z_ci * cox.se),
        "log_hr_se": cox.se,
        "true_effect": np.exp(truth.log_hr),
        "duration_months": date,
        "n_analysed": np.stack([(include & (arm == a)).sum(axis=1) for a in range(len(spec.arms))], axis=1),
        "n_events": np.stack([(event & include & (arm == a)).sum(axis=1) for a in range(len(spec.arms))], axis=1),
        "km_survival": km,
    }


def _biomarker_change(protocol: Protocol, cohort, entry, arm, dropout, paths, seed, replicates):
    spec = protocol.spec
    ep = spec.endpoint
    marker = next(b for b in protocol.disease.biomarkers if b.name == ep.biomarker)
    A = len(spec.arms)
    shift, slope = np.zeros(A), np.zeros(A)
    for a, arm_spec in enumerate(spec.arms):
        for e in arm_spec.effects:
            if isinstance(e, BiomarkerEffect) and e.biomarker == marker.name:
                shift[a] += e.shift
                slope[a] += e.slope_change_per_year
    visits = np.array([0.0, ep.visit_month])
    observed, true = biomarker.simulate_visits(marker, cohort.column, entry.shape, visits, shift, slope,
                                               seed, replicates)
    death = _assigned(paths.death_time, arm)
    include = (dropout > ep.visit_month) & (death > ep.visit_month)
    y0 = observed[:, :, 0, 0]  # baseline is measured before treatment: the same in every arm
    y1 = _assigned(observed[:, :, :, 1], arm)
    fit = analysis.ancova(y1 - y0, y0, arm.astype(np.int8), include)
    sign = 1.0 if spec.analysis.benefit == "lower" else -1.0
    a_level = spec.analysis
    lo, hi = analysis.wald_ci(fit.estimate, fit.se, a_level.confidence_level, df=fit.df)
    change_true = true[:, :, :, 1] - true[:, :, :, 0]
    return {
        "statistic": fit.t,
        "p_value": analysis.p_value(sign * fit.t, a_level.sided, df=fit.df),
        "estimate": fit.estimate,
        "ci_lower": lo,
        "ci_upper": hi,
        "true_effect": (change_true[:, :, 1] - change_true[:, :, 0]).mean(axis=1),
        "duration_months": entry.max(axis=1) + ep.visit_month,
        "n_analysed": np.stack([(include & (arm == a)).sum(axis=1) for a in range(A)], axis=1),
        "biomarker_mean": np.stack([np.nanmean(np.where((include & (arm == a))[..., None],
                                                        _assigned_visits(observed, arm), np.nan), axis=1)
                                    for a in range(A)], axis=1),
    }


def _assigned_visits(values: np.ndarray, arm: np.ndarray) -> np.ndarray:
    """(R, n, V) from (R, n, A, V) under each patient's own arm."""
    idx = arm[..., None, None].astype(np.int64)
    return np.take_along_axis(values, idx, axis=2)[:, :, 0, :]


def _critical(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2.0))
