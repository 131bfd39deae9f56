"""Published figures computed from simulated studies, one value per replicate.

A study is an ordinary trial protocol; its patients are simulated by the trial engine
(:func:`vctrial.trial.run.simulate_patients`) and each figure is computed the way a paper computes
it: at the final analysis, from what was observed by then (with dropout and administrative
censoring), in the arm the figure names. ``life_expectancy`` alone reads the uncensored paths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vctrial.disease import biomarker
from vctrial.spec.protocol import Protocol
from vctrial.spec.study import Figure
from vctrial.trial import analysis
from vctrial.cohort import synthesize
from vctrial.trial.observation import assigned
from vctrial.trial.run import Trial, final_data, simulate_patients

MEDIAN_GRID_MONTHS = 0.05  # resolution of Kaplan-Meier medians


@dataclass(frozen=True)
class StudyJob:
    """What a task needs to compute a study's figures: the protocol and the figures read from it."""

    protocol: Protocol
    figures: tuple[Figure, ...]


_COHORTS: dict[tuple, object] = {}  # cohorts synthesized by this process, reused across calibration candidates
_COHORTS_KEPT = 4


def _cohort(protocol: Protocol, seed: int, replicates: np.ndarray):
    """The study's synthetic cohort: it does not depend on the disease parameters, so every candidate of a
    calibration meets the same one; screening it again would take most of an evaluation's time."""
    from vctrial.execute import fingerprint

    n = protocol.spec.sample_size
    key = (fingerprint(protocol.cohort), n, int(seed), replicates.tobytes())
    if key not in _COHORTS:
        if len(_COHORTS) >= _COHORTS_KEPT:
            _COHORTS.pop(next(iter(_COHORTS)))
        _COHORTS[key] = synthesize(protocol.cohort, n, seed, replicates)
    return _COHORTS[key]


def figures_chunk(job: StudyJob, seed: int, replicates: np.ndarray) -> dict[str, np.ndarray]:
    """(R,) value of every figure in each simulated study (NaN where it cannot be estimated, e.g. a
    median survival not reached)."""
    replicates = np.asarray(replicates, np.int64)
    steps = record_steps(job.protocol, job.figures)
    cohort = _cohort(job.protocol, seed, replicates)
    trial, _, _ = simulate_patients(job.protocol, seed, replicates, steps, cohort=cohort)
    observed = None
    if steps.size:
        months = steps * job.protocol.disease.time_step_months
        observed = biomarker.observe(job.protocol.disease.biomarkers, trial.paths.marker_true, months, seed, replicates)
    return {f.name: figure_values(trial, f, observed, steps, subgroup(job.protocol, f, cohort)) for f in job.figures}


def subgroup(protocol: Protocol, fig: Figure, cohort) -> np.ndarray | None:
    """(R, n) patients the figure's ``where`` selects at baseline (None: everyone)."""
    if fig.where is None:
        return None
    from vctrial.expr import parse

    condition = parse(fig.where, protocol.cohort.levels_or_none())
    return condition.evaluate({name: cohort.column(name) for name in condition.names})


def record_steps(protocol: Protocol, figures) -> np.ndarray:
    """Model steps at which biomarker figures are read (increasing, unique)."""
    dt = protocol.disease.time_step_months
    return np.unique(np.array([int(round(f.at_month / dt)) for f in figures if f.biomarker is not None], np.int64))


def figure_values(trial: Trial, fig: Figure, observed: np.ndarray | None = None,
                  steps: np.ndarray | None = None, sub: np.ndarray | None = None) -> np.ndarray:
    """(R,) the figure in each replicate of a batch of simulated studies; biomarker figures read the
    measured values ``observed`` (R, n, A, B, V) at the recorded ``steps``; ``sub`` (R, n) keeps the
    subgroup's patients only."""
    arms = [a.name for a in trial.protocol.spec.arms]
    a = arms.index(fig.arm) if fig.arm is not None else 0
    m = fig.measure
    sub = np.ones(trial.arm.shape, bool) if sub is None else sub
    if m in ("biomarker_mean", "biomarker_sd"):
        return _biomarker(trial, fig, a, observed, steps, sub)
    if m == "life_expectancy":
        horizon = trial.protocol.spec.horizon_months
        death = np.minimum(assigned(trial.paths.death_time, trial.arm), horizon)
        mask = trial.enrolled & (trial.arm == a) & sub
        return _ratio(np.where(mask, death, 0.0).sum(axis=1) / 12.0, mask.sum(axis=1))
    if m == "median_follow_up":
        return _median_follow_up(trial, a, sub)
    time, event, include, _ = final_data(trial, list(fig.events))
    include = include & sub
    mask = include & (trial.arm == a)
    if m == "proportion":
        return _ratio((event & mask).sum(axis=1), mask.sum(axis=1))
    if m == "rate_per_100py":
        return 100.0 * _ratio((event & mask).sum(axis=1), np.where(mask, time, 0.0).sum(axis=1) / 12.0)
    if m in ("cumulative_incidence", "survival"):
        s = analysis.kaplan_meier(time, event, mask, np.array([fig.at_month]))[:, 0]
        s = np.where(np.where(mask, time, 0.0).max(axis=1) >= fig.at_month, s, np.nan)  # not estimable beyond follow-up
        return 1.0 - s if m == "cumulative_incidence" else s
    if m == "median_time":
        return _km_median(time, event, mask, trial.protocol.spec.horizon_months)
    if m == "hazard_ratio":
        pair = include & ((trial.arm == 0) | (trial.arm == a))
        cox = analysis.cox_hr(time, event, (trial.arm == a).astype(np.int8), pair)
        ok = cox.converged & np.isfinite(cox.log_hr)
        return np.where(ok, np.exp(np.where(ok, cox.log_hr, 0.0)), np.nan)
    raise ValueError(f"unknown measure {m!r}")


def _biomarker(trial: Trial, fig: Figure, a: int, observed: np.ndarray, steps: np.ndarray, sub: np.ndarray
               ) -> np.ndarray:
    """Mean or SD of the measured biomarker at ``at_month`` in the arm's patients alive and followed then."""
    disease = trial.protocol.disease
    j = [b.name for b in disease.biomarkers].index(fig.biomarker)
    v = int(np.searchsorted(steps, int(round(fig.at_month / disease.time_step_months))))
    y = assigned(observed[:, :, :, j, v], trial.arm)
    death = assigned(trial.paths.death_time, trial.arm)
    seen = trial.enrolled & (trial.arm == a) & (death > fig.at_month) & (trial.dropout > fig.at_month) & sub
    x = np.where(seen, y, np.nan)
    count = seen.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(x, axis=1) / count
        if fig.measure == "biomarker_mean":
            return np.where(count > 0, mean, np.nan)
        ss = np.nansum((x - mean[:, None]) ** 2, axis=1)
        return np.where(count > 1, np.sqrt(ss / np.maximum(count - 1, 1)), np.nan)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _km_median(time, event, include, horizon: float) -> np.ndarray:
    """Kaplan-Meier median (first time S <= 0.5), NaN where it is not reached."""
    grid = np.arange(0.0, horizon + MEDIAN_GRID_MONTHS, MEDIAN_GRID_MONTHS)
    s = analysis.kaplan_meier(time, event, include, grid)
    below = s <= 0.5
    first = np.argmax(below, axis=1)
    last = np.where(include, time, 0.0).max(axis=1)
    reached = below.any(axis=1) & (grid[first] <= last)
    return np.where(reached, grid[first], np.nan)


def _median_follow_up(trial: Trial, a: int, sub: np.ndarray) -> np.ndarray:
    """Reverse Kaplan-Meier median follow-up: the end of follow-up is the 'event', death censors it."""
    time, _, include, follow = final_data(trial, list(trial.protocol.spec.endpoint.events))
    death = assigned(trial.paths.death_time, trial.arm)
    end = np.minimum(np.minimum(death, trial.dropout), follow)
    ended_alive = end < death
    mask = include & (trial.arm == a) & sub
    return _km_median(np.where(mask, end, 0.0), ended_alive & mask, mask, trial.protocol.spec.horizon_months)
