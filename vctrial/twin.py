"""Patient digital twin: what may happen to this patient under each option, with honest uncertainty.

The protocol's arms are the options. A patient (or a batch) is simulated N times under every
option by the disease model's own kernels, with the draws as the replicate axis of the
counter-based generator: draw d of every option meets the same random numbers (common random
numbers across options), and so does every patient of a batch (all patients share the patient
coordinate 0), so a patient's forecast does not depend on which other patients are simulated with
them or in which order.

Two kinds of uncertainty, reported apart and together (law of total variance):

- the model's parameters: effects given with a confidence interval (``hazard_ratio_ci``,
  ``shift_ci``) are drawn once per *parameter draw* m; the N draws are M parameter draws × L
  chance draws (draw d uses parameter draw d // L). Effects naming the same ``parameter`` (e.g. one
  published CV-death hazard ratio applied to two transitions) share one draw; an effect without a
  name is its own parameter. Parameter q of draw m is ln HR (or shift) = point + SD · (C z)_q with
  z_q standard normals keyed by (seed, "twin:parameters", m, q) and C the lower Cholesky factor of
  the protocol's ``parameter_correlations`` (identity without them);
- the patient's own chance: the L draws given the parameters.

For an outcome Y (an event by the horizon, life-years...) with group means Ȳ_m, the chance variance
E[Var(Y|θ)] is the mean within-group variance, and the parameter variance Var(E[Y|θ]) is the
between-group variance less its Monte Carlo part (within / L). The 95% parameter interval takes
the quantiles of the group means after shrinking them towards the overall mean so that their
spread equals the parameter variance (removing the inner Monte Carlo noise to first order).

Conditioning: the biomarker random effects b = (b0, b1) ~ N(0, G) of the mixed model are replaced
by their posterior given the patient's measured values y_j at times t_j ≤ 0 (years relative to the
decision date): with Z_j = (1, τ(t_j)) (τ the model's slope time scale), r_j = y_j − mean − slope·τ(t_j)
and noise variance σ² = residual_sd² + process_sd², Σ = (G⁻¹ + ZᵀZ/σ²)⁻¹ = G (I + ZᵀZ G/σ²)⁻¹ (valid
for singular G) and μ = Σ Zᵀr/σ². Clipping of measured values at the biomarker's bounds is ignored
in the conditioning. Past events set the starting state, and the date of the last one the months
already spent in it at time zero (``TwinPlan.start_months``; a batch CSV gives them in a
``months_in_state`` column), where time-in-state hazards start. The disease kernel steps the
biomarkers with the events, so where a model's hazards depend on a biomarker's current value the
conditioned random effects change the event risks as well as the biomarker forecast.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

import vctrial
from vctrial import rng
from vctrial.disease import biomarker as bm
from vctrial.disease import multistate as ms
from vctrial.errors import SpecError
from vctrial.execute import ExecOptions, Job, run_jobs
from vctrial.results import file_mode, provenance, spec_hash, write_netcdf
from vctrial.spec.disease import Biomarker
from vctrial.study.draws import disease_draws, open_calibration
from vctrial.spec.patient import Patients, load_batch, load_patient
from vctrial.spec.protocol import BiomarkerEffect, HazardEffect, Protocol, parameter_correlation_matrix
from vctrial.trial.conduct import effect_profile

LEVEL = 0.95
Z95 = 1.959963984540054  # standard normal 97.5% quantile: a 95% interval spans ±Z95 SD
DEFAULT_OUTER_MAX = 40
RISK, YEARS = "risk", "years"


# ------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True)
class TwinPlan:
    """Everything the chunk functions need, as arrays (picklable; no YAML, no patient ids)."""

    model: ms.MultiStateModel
    rate: np.ndarray  # (P, K) hazard per month of each transition at each patient's covariates
    age: np.ndarray  # (P,) years at time zero
    female: np.ndarray  # (P,) 1 for female
    start: np.ndarray  # (P,) starting state
    start_months: np.ndarray  # (P,) months already spent in the starting state at time zero
    n_steps: int
    draws: int  # N
    parameter_draws: int  # M (N = M × L)
    effect_arm: np.ndarray  # (J,) arm of each treatment effect
    effect_target: np.ndarray  # (J,) transition (hazard effects) or biomarker index (biomarker effects)
    effect_is_hazard: np.ndarray  # (J,) bool
    effect_point: np.ndarray  # (J,) log hazard ratio, or biomarker shift
    effect_sd: np.ndarray  # (J,) SD of the above across parameter draws (0 when fixed)
    effect_parameter: np.ndarray  # (J,) index q of the parameter whose draw each effect takes
    parameter_chol: np.ndarray  # (Q, Q) lower Cholesky factor of the correlation of the parameters' normals
    slope_change: np.ndarray  # (A, B) biomarker slope change per year of each option
    n_arms: int
    biomarkers: tuple[Biomarker, ...]
    covariates: dict[str, np.ndarray]  # (P,) columns the biomarker means read
    re_mean: np.ndarray  # (B, P, 2) posterior mean of (b0, b1)
    re_chol: np.ndarray  # (B, P, 2, 2) lower Cholesky factor of the posterior covariance
    utility: np.ndarray  # (S,)
    endpoint: np.ndarray  # (E,) bool: events of the protocol's time-to-event endpoint (all False if none)
    hr_profile: np.ndarray | None = None  # (A, K, T) fixed multipliers of time-varying effects (delay, waning)
    variants: tuple[tuple[ms.MultiStateModel, np.ndarray], ...] | None = None  # per parameter draw: (model, rate)
                                                                              # at calibrated disease parameter draws

    @property
    def inner_draws(self) -> int:
        return self.draws // self.parameter_draws

    @property
    def step_months(self) -> float:
        return self.model.step_months

    def grid_months(self) -> np.ndarray:
        return np.arange(self.n_steps + 1) * self.model.step_months


def has_parameter_uncertainty(protocol: Protocol) -> bool:
    """True if any effect of any option carries a confidence interval."""
    return any(getattr(e, "hazard_ratio_ci", None) is not None or getattr(e, "shift_ci", None) is not None
               for arm in protocol.spec.arms for e in arm.effects)


def default_parameter_draws(protocol: Protocol, draws: int, uncertain: bool | None = None) -> int:
    """M: 1 without confidence intervals (or calibration draws), else the largest divisor of N not above
    min(√N, 40)."""
    if not (has_parameter_uncertainty(protocol) if uncertain is None else uncertain):
        return 1
    limit = int(min(math.isqrt(draws), DEFAULT_OUTER_MAX))
    return max(m for m in range(1, limit + 1) if draws % m == 0)


def make_plan(protocol: Protocol, patients: Patients, horizon_years: float, draws: int,
              parameter_draws: int | None = None, calibration: xr.Dataset | None = None) -> TwinPlan:
    """Compile protocol, disease and patients into a :class:`TwinPlan`.

    With ``calibration`` (a ``vctrial calibrate`` result whose fit the protocol's disease file holds),
    parameter draw m runs the disease model at the fit's m-th parameter draw: the disease model's
    own uncertainty joins that of the effects.

    Raises:
        SpecError: when the draws cannot be split into parameter draws × chance draws, or the
            calibration does not belong to the protocol's disease file.
    """
    disease = protocol.disease
    if not horizon_years > 0:
        raise SpecError("command line", "--horizon-years", f"must be > 0, got {horizon_years}")
    if draws < 2:
        raise SpecError("command line", "--draws", f"must be at least 2, got {draws}")
    uncertain = has_parameter_uncertainty(protocol) or calibration is not None
    M = default_parameter_draws(protocol, draws, uncertain) if parameter_draws is None else int(parameter_draws)
    if M < 1 or draws % M:
        raise SpecError("command line", "--parameter-draws",
                        f"--draws {draws} must be a multiple of the parameter draws ({M})")
    if M > 1 and draws // M < 2:
        raise SpecError("command line", "--parameter-draws",
                        f"needs at least 2 chance draws per parameter draw (--draws {draws}, --parameter-draws {M})")
    if M == 1 and uncertain and parameter_draws is None:
        raise SpecError("command line", "--draws",
                        f"the {'protocol gives confidence intervals' if calibration is None else 'calibration gives parameter draws'}"
                        f", so the draws are split into parameter draws × "
                        f"chance draws, but {draws} has no such split; use e.g. {draws - draws % 100 or 100}")
    model = ms.compile_model(disease)
    n_steps = int(math.ceil(horizon_years * 12.0 / disease.time_step_months - 1e-9))
    P = patients.n
    column = lambda name: patients.column(name)[None, :]  # noqa: E731 - (1, P) for patient_rates
    rate = ms.patient_rates(disease, column, (1, P))[0]
    bg = disease.background_mortality
    age = patients.column(bg.age) if bg else np.zeros(P)
    female = patients.column(bg.female) if bg else np.zeros(P)

    transitions = [t.name for t in disease.transitions]
    markers = [b.name for b in disease.biomarkers]
    effects = []  # (arm, target index, is hazard, point, SD across parameter draws, parameter index)
    parameters: dict[str, int] = {}  # parameter name (or a private key for an unnamed effect) -> index q
    slope_change = np.zeros((len(protocol.spec.arms), len(markers)))
    hr_profile = np.ones((len(protocol.spec.arms), len(transitions), n_steps))
    for a, arm in enumerate(protocol.spec.arms):
        for j, e in enumerate(arm.effects):
            if isinstance(e, HazardEffect) and getattr(e, "time_varying", False):
                if e.hazard_ratio_ci is not None:
                    raise SpecError(str(protocol.path), f"arms[{a}].effects[{j}].hazard_ratio_ci",
                                    "the twin draws parameter uncertainty for constant hazard ratios only; "
                                    "give a time-varying effect (delay, periods, waning) without an interval")
                hr_profile[a, transitions.index(e.transition)] *= effect_profile(e, n_steps, disease.time_step_months)
            elif isinstance(e, HazardEffect):
                ci = e.hazard_ratio_ci
                sd = 0.0 if ci is None or M == 1 else (math.log(ci[1]) - math.log(ci[0])) / (2 * Z95)
                name = getattr(e, "parameter", None) or f" arms[{a}].effects[{j}]"  # unnamed: its own parameter
                q = parameters.setdefault(name, len(parameters))
                effects.append((a, transitions.index(e.transition), True, math.log(e.hazard_ratio), sd, q))
            elif isinstance(e, BiomarkerEffect):
                ci = e.shift_ci
                sd = 0.0 if ci is None or M == 1 else (ci[1] - ci[0]) / (2 * Z95)
                q = parameters.setdefault(e.parameter or f" arms[{a}].effects[{j}]", len(parameters))
                effects.append((a, markers.index(e.biomarker), False, e.shift, sd, q))
                slope_change[a, markers.index(e.biomarker)] += e.slope_change_per_year
    arm_, target, hazard, point, sd, param = (list(c) for c in zip(*effects)) if effects else ([],) * 6
    # the protocol checked that the correlation matrix is positive definite
    correlation = parameter_correlation_matrix(list(parameters), protocol.spec.parameter_correlations)

    re_mean = np.zeros((len(markers), P, 2))
    re_chol = np.zeros((len(markers), P, 2, 2))
    needed = {e.covariate for b in disease.biomarkers for e in b.effects}
    covariates = {name: patients.column(name) for name in needed}
    for j, b in enumerate(disease.biomarkers):
        idx, years, values = patients.measurements.get(b.name, (np.zeros(0, np.int64), np.zeros(0), np.zeros(0)))
        mean, cov = posterior_random_effects(b, biomarker_mean(b, patients.column), idx, years, values, P)
        re_mean[j], re_chol[j] = mean, cholesky_2x2(cov)

    endpoint = np.zeros(len(model.event_names), bool)
    if protocol.spec.endpoint.type == "time_to_event":
        endpoint[[model.event_names.index(e) for e in protocol.spec.endpoint.events]] = True
    variants = None
    if calibration is not None:
        variants = []
        for d in disease_draws(protocol.disease, calibration, M, "--parameter-draws"):
            rate_m = ms.patient_rates(d, column, (1, P))[0]
            variants.append((ms.compile_model(d), np.ascontiguousarray(rate_m)))
        variants = tuple(variants)
    return TwinPlan(
        variants=variants,
        model=model, rate=np.ascontiguousarray(rate), age=np.asarray(age, np.float64),
        female=np.asarray(female, np.float64), start=np.asarray(patients.start_state, np.int64),
        start_months=np.asarray(patients.start_months, np.float64), n_steps=n_steps,
        draws=int(draws), parameter_draws=M, effect_arm=np.array(arm_, np.int64),
        effect_target=np.array(target, np.int64), effect_is_hazard=np.array(hazard, bool),
        effect_point=np.array(point, np.float64), effect_sd=np.array(sd, np.float64),
        effect_parameter=np.array(param, np.int64), parameter_chol=np.linalg.cholesky(correlation),
        slope_change=slope_change,
        n_arms=len(protocol.spec.arms), biomarkers=tuple(disease.biomarkers), covariates=covariates,
        re_mean=re_mean, re_chol=re_chol, utility=np.array([s.utility for s in disease.states]), endpoint=endpoint,
        hr_profile=None if np.all(hr_profile == 1.0) else hr_profile,
    )


# ------------------------------------------------------------------------------------ conditioning


def prior_covariance(b: Biomarker) -> np.ndarray:
    """G, the 2×2 covariance of the random intercept and slope."""
    c = b.random_correlation * b.random_intercept_sd * b.random_slope_sd
    return np.array([[b.random_intercept_sd**2, c], [c, b.random_slope_sd**2]])


def biomarker_mean(b: Biomarker, column) -> np.ndarray:
    """Population mean of the biomarker at time zero, intercept + Σ coef·(x − ref), per patient."""
    lp = ms.linear_predictor(b.effects, column)
    return b.intercept + (np.zeros(1) if lp is None else np.asarray(lp, np.float64))


def posterior_random_effects(b: Biomarker, mean0: np.ndarray, patient: np.ndarray, years: np.ndarray,
                             values: np.ndarray, n_patients: int) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean (P, 2) and covariance (P, 2, 2) of (b0, b1) given measured values.

    Args:
        mean0: (P,) population mean at time zero (see :func:`biomarker_mean`).
        patient, years, values: (J,) patient index, time in years (≤ 0 for history), measured value.
    The design row of a measurement at t is (1, τ(t)) with τ the model's slope time scale (t, or
    (1 − e^(−κt))/κ when slopes fade); the mean-reverting process W is treated as extra independent
    noise (variance residual_sd² + process_sd²), an approximation that ignores its autocorrelation
    and so widens the forecast a little. Patients without measurements keep the prior N(0, G).
    Vectorized over patients.
    """
    G = prior_covariance(b)
    P = n_patients
    mean0 = np.broadcast_to(np.asarray(mean0, np.float64), (P,))
    patient = np.asarray(patient, np.int64)
    years = np.asarray(years, np.float64)
    kappa = 0.0 if b.slope_half_life_years is None else math.log(2.0) / b.slope_half_life_years
    tau = years if kappa == 0.0 else -np.expm1(-kappa * years) / kappa
    resid = np.asarray(values, np.float64) - mean0[patient] - b.slope_per_year * tau
    noise_var = b.residual_sd**2 + b.process_sd**2
    if patient.size and noise_var <= 0:
        raise ValueError(f"{b.name}: conditioning needs residual_sd > 0")
    s2 = noise_var if noise_var > 0 else 1.0
    info = np.zeros((P, 2, 2))  # ZᵀZ / σ² per patient
    info[:, 0, 0] = np.bincount(patient, minlength=P) / s2
    info[:, 0, 1] = info[:, 1, 0] = np.bincount(patient, tau, minlength=P) / s2
    info[:, 1, 1] = np.bincount(patient, tau * tau, minlength=P) / s2
    score = np.stack([np.bincount(patient, resid, minlength=P),
                      np.bincount(patient, tau * resid, minlength=P)], axis=1) / s2  # Zᵀr / σ²
    cov = G @ np.linalg.inv(np.eye(2) + info @ G)
    cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
    mean = np.einsum("pij,pj->pi", cov, score)
    return mean, cov


def cholesky_2x2(cov: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of (P, 2, 2) positive semi-definite matrices (zeros allowed)."""
    l00 = np.sqrt(np.maximum(cov[:, 0, 0], 0.0))
    l10 = np.divide(cov[:, 1, 0], l00, out=np.zeros_like(l00), where=l00 > 0)
    l11 = np.sqrt(np.maximum(cov[:, 1, 1] - l10 * l10, 0.0))
    out = np.zeros_like(cov)
    out[:, 0, 0], out[:, 1, 0], out[:, 1, 1] = l00, l10, l11
    return out


# -------------------------------------------------------------------------------- parameter draws


def sample_parameters(plan: TwinPlan, seed: int, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hazard ratios (D, A, K) and biomarker shifts (D, A, B) of each draw's parameter draw.

    Parameter draw m = d // L has one standard normal per parameter q, keyed by
    (seed, "twin:parameters", m, q): the same in every chunk, for every patient, whatever N is, and
    one draw however many effects share the parameter. They are correlated by the parameters'
    Cholesky factor C (z ↦ C z), then each effect j is point_j + SD_j · (C z)_{q(j)}.
    """
    draws = np.asarray(draws, np.int64)
    D, A, K, B = draws.shape[0], plan.n_arms, plan.rate.shape[1], len(plan.biomarkers)
    J = plan.effect_point.shape[0]
    Q = plan.parameter_chol.shape[0]
    outer = draws // plan.inner_draws
    z = rng.normals(np.uint64(seed), np.uint64(rng.stream_id("twin:parameters")), outer, max(Q, 1), 1)[:, :Q, 0]
    z = z @ plan.parameter_chol.T  # (D, Q) correlated standard normals
    value = plan.effect_point[None, :] + plan.effect_sd[None, :] * z[:, plan.effect_parameter]  # (D, J)
    log_hr = np.zeros((D, A, K))
    shift = np.zeros((D, A, B))
    for j in range(J):  # a handful of effects, vectorized over draws
        target = log_hr if plan.effect_is_hazard[j] else shift
        target[:, plan.effect_arm[j], plan.effect_target[j]] += value[:, j]
    return np.exp(log_hr), shift


def _hazard_ratio_steps(plan: TwinPlan, hr: np.ndarray) -> np.ndarray:
    """(A, K, T) when every draw has the same parameters, else (D, A, K, T)."""
    profile = 1.0 if plan.hr_profile is None else plan.hr_profile
    if plan.parameter_draws == 1 or not plan.effect_sd.any():
        return np.repeat(hr[0][..., None], plan.n_steps, axis=2) * profile
    return np.repeat(hr[..., None], plan.n_steps, axis=3) * profile


def _simulate(plan: TwinPlan, seed: int, draws: np.ndarray, patients: np.ndarray, record: bool = False):
    """Run the disease kernel for the given draws (replicates) and patients; with ``record`` keep the
    biomarkers' true values at every step."""
    hr, shift = sample_parameters(plan, seed, draws)
    D, n = draws.shape[0], patients.shape[0]
    rate = np.broadcast_to(plan.rate[patients][None], (D, n, plan.rate.shape[1]))
    age = np.broadcast_to(plan.age[patients][None], (D, n))
    female = np.broadcast_to(plan.female[patients][None], (D, n))
    markers = None
    if plan.biomarkers and (record or plan.model.has_links or plan.model.has_intensification):
        column = lambda name: plan.covariates[name][None, patients]  # noqa: E731
        steps = np.arange(plan.n_steps + 1) if record else np.zeros(0, np.int64)
        slope = np.broadcast_to(plan.slope_change[None], shift.shape)
        markers = bm.marker_inputs(plan.biomarkers, column, (D, n), seed, draws, shift, slope, steps,
                                   patient_keys=np.zeros(n, np.int64),
                                   random_effects=(plan.re_mean[:, patients], plan.re_chol[:, patients]))
    hrs = _hazard_ratio_steps(plan, hr)
    kwargs = dict(start_state=plan.start[patients], patient_keys=np.zeros(n, np.int64), track_time=True,
                  start_months_in_state=plan.start_months[patients])
    if plan.variants is None:
        paths = ms.simulate(plan.model, rate, hrs, age, female, plan.n_steps, seed, draws, markers=markers, **kwargs)
        return paths, hr, shift
    # the disease model's own parameter draws: one kernel call per parameter draw in this chunk (draws of
    # one parameter draw are contiguous), each with that draw's compiled model and hazards
    outer = draws // plan.inner_draws
    parts = []
    for m in np.unique(outer):
        sel = np.flatnonzero(outer == m)
        model_m, rate_m = plan.variants[int(m)]
        sub = None if markers is None else ms.Markers(
            mean0=markers.mean0[sel], b0=markers.b0[sel], b1=markers.b1[sel],
            shift=markers.shift[sel] if markers.shift.ndim == 3 else markers.shift,
            slope_change=markers.slope_change[sel] if markers.slope_change.ndim == 3 else markers.slope_change,
            record_steps=markers.record_steps)
        parts.append(ms.simulate(model_m, np.broadcast_to(rate_m[patients][None], (sel.size, n, rate_m.shape[1])),
                                 hrs if hrs.ndim == 3 else hrs[sel], age[sel], female[sel], plan.n_steps, seed,
                                 draws[sel], markers=sub, **kwargs))
    return _concat_paths(parts), hr, shift


def _concat_paths(parts: list) -> ms.Paths:
    """Paths of consecutive groups of replicates, joined along the replicate axis."""
    import dataclasses

    fields = {}
    for f in dataclasses.fields(ms.Paths):
        values = [getattr(p, f.name) for p in parts]
        fields[f.name] = None if values[0] is None else np.concatenate(values, axis=0)
    return ms.Paths(**fields)


# ------------------------------------------------------------------------------------------ outcomes


def outcome_names(events, endpoint: np.ndarray) -> list[tuple[str, str]]:
    """(name, kind) of the summarized outcomes: each event, any event, death, endpoint, LY, QALYs."""
    names = [(e, RISK) for e in events]
    names += [("any_event", RISK), ("all_cause_death", RISK)]
    if endpoint.any():
        names.append(("endpoint", RISK))
    return names + [("life_years", YEARS), ("qalys", YEARS)]


def outcomes_from_paths(first_time: np.ndarray, death_time: np.ndarray, time_in_state: np.ndarray,
                        absorbing: np.ndarray, utility: np.ndarray, endpoint: np.ndarray) -> np.ndarray:
    """(..., O) per draw: event indicators by the horizon, life-years and QALYs (years)."""
    happened = np.isfinite(first_time)
    cols = [happened, happened.any(axis=-1)[..., None], np.isfinite(death_time)[..., None]]
    if endpoint.any():
        cols.append(happened[..., endpoint].any(axis=-1)[..., None])
    alive_months = time_in_state[..., ~absorbing].sum(axis=-1)
    cols += [(alive_months / 12.0)[..., None], ((time_in_state * utility).sum(axis=-1) / 12.0)[..., None]]
    return np.concatenate([c.astype(np.float64) for c in cols], axis=-1)


STATISTICS = ("mean", "param_lower", "param_upper", "param_resolved", "mc_se", "sd_chance", "sd_parameters",
              "sd_total", "chance_lower", "chance_upper", "total_lower", "total_upper")


def decompose(y: np.ndarray, parameter_draws: int, varies: np.ndarray | bool = True,
              level: float = LEVEL, ranges: bool = True) -> dict[str, np.ndarray]:
    """Mean and uncertainty of per-draw values ``y`` (D, ...) with D = M parameter draws × L chance draws.

    Args:
        varies: where the parameters acting on the value vary between parameter draws (broadcast
            to ``y.shape[1:]``); elsewhere the parameter part is zero by construction.
    Returns arrays of shape y.shape[1:]: ``mean``; the 95% parameter interval ``param_lower/upper``
    (NaN where nothing varies); ``param_resolved``, 1 where the between-draw spread is significant
    (ANOVA F-test at 5%), else 0 and the interval is the unshrunk, conservative one; ``mc_se``, the Monte Carlo
    standard error of the mean; the SDs of the patient's chance, of the parameters and in total
    (law of total variance); and the 95% ranges of a single outcome given the parameters
    (``chance_*``, centred per parameter draw) and overall (``total_*``, predictive); these two
    need a sort over the draws and are NaN unless ``ranges`` (they say little for a 0/1 outcome).
    """
    from scipy.stats import f as f_dist

    D = y.shape[0]
    M = int(parameter_draws)
    L = D // M
    if M * L != D:
        raise ValueError("draws must be a multiple of parameter_draws")
    varies = np.broadcast_to(np.asarray(varies, bool), y.shape[1:]) & (M > 1)
    q = [(1 - level) / 2, (1 + level) / 2]
    g = y.reshape((M, L) + y.shape[1:])
    gm = g.sum(axis=1) / L  # one pass of sums and sums of squares (0/1 and year-scale values: no cancellation)
    gsq = np.einsum("ml...,ml...->m...", g, g) / L
    mean = gm.mean(axis=0)
    total_var = np.maximum(gsq.mean(axis=0) - mean * mean, 0.0) * D / (D - 1)
    out = {"mean": mean, "param_lower": np.full_like(mean, np.nan), "param_upper": np.full_like(mean, np.nan),
           "param_resolved": np.zeros_like(mean), "mc_se": np.sqrt(total_var / D), "sd_chance": np.sqrt(total_var),
           "sd_parameters": np.zeros_like(mean), "sd_total": np.sqrt(total_var)}
    centred = y
    if varies.any():
        within = (np.maximum(gsq - gm * gm, 0.0) * L / (L - 1)).mean(axis=0)
        between = gm.var(axis=0, ddof=1)
        param_var = np.maximum(between - within / L, 0.0)
        critical = f_dist.ppf(0.95, M - 1, M * (L - 1))
        resolved = L * between > critical * within
        # resolved: shrink the group means so their spread is the parameter variance alone;
        # unresolved: keep them as they are (wider than the parameter interval: conservative)
        k = np.sqrt(np.divide(param_var, between, out=np.ones_like(between), where=between > 0))
        k = np.where(resolved, k, 1.0)
        lo, hi = np.quantile(mean + k * (gm - mean), q, axis=0)
        for key, value in (("param_lower", lo), ("param_upper", hi), ("param_resolved", resolved.astype(float)),
                           ("mc_se", np.sqrt(between / M)), ("sd_chance", np.sqrt(within)),
                           ("sd_parameters", np.sqrt(param_var)), ("sd_total", np.sqrt(within + param_var))):
            out[key] = np.where(varies, value, out[key])
        centred = np.where(varies, (g - gm[:, None] + mean).reshape(y.shape), y)
    if ranges:
        out["chance_lower"], out["chance_upper"] = np.quantile(centred, q, axis=0)
        out["total_lower"], out["total_upper"] = np.quantile(y, q, axis=0)
    else:
        for key in ("chance_lower", "chance_upper", "total_lower", "total_upper"):
            out[key] = np.full_like(mean, np.nan)
    return out


def option_varies(plan: TwinPlan) -> np.ndarray:
    """(A,) True for options with an effect drawn from a confidence interval."""
    varies = np.zeros(plan.n_arms, bool)
    varies[plan.effect_arm[plan.effect_sd > 0]] = True
    if plan.variants is not None:  # the disease model's parameters vary under every option
        varies[:] = True
    return varies & (plan.parameter_draws > 1)


# ---------------------------------------------------------------------------------- chunk functions


def draws_chunk(plan: TwinPlan, seed: int, draws: np.ndarray) -> dict[str, np.ndarray]:
    """One patient (plan with P = 1), the given draws: per-draw paths, arrays lead with the draw axis."""
    draws = np.asarray(draws, np.int64)
    paths, hr, shift = _simulate(plan, seed, draws, np.zeros(1, np.int64), record=True)
    model = plan.model
    state = paths.occupancy.argmax(axis=3).astype(np.int8)  # (D, A, T+1): one patient per replicate
    first = paths.first_time[:, 0]  # (D, A, E)
    grid = plan.grid_months()
    any_event = first.min(axis=2)
    out = {
        "health_state": state,
        "event_time": np.where(np.isfinite(first), first, np.nan),
        "event_free": (any_event[..., None] > grid).astype(np.int8),
        "life_years": paths.time_in_state[:, 0][..., ~model.absorbing].sum(axis=-1) / 12.0,
        "qalys": (paths.time_in_state[:, 0] * plan.utility).sum(axis=-1) / 12.0,
        "hazard_ratio": hr,
        "biomarker_shift": shift,
    }
    dead = model.absorbing[state]
    if paths.marker_true is not None:
        for j, b in enumerate(plan.biomarkers):  # true (noise-free) values of the patient alive
            out[f"biomarker_{b.name}"] = np.where(dead, np.nan, paths.marker_true[:, 0, :, j, :]).astype(np.float32)
    return out


def patients_chunk(plan: TwinPlan, seed: int, patients: np.ndarray) -> dict[str, np.ndarray]:
    """A batch: all draws of the given patients, summarized per patient; arrays lead with the patient axis."""
    patients = np.asarray(patients, np.int64)
    draws = np.arange(plan.draws, dtype=np.int64)
    paths, _, _ = _simulate(plan, seed, draws, patients)
    y = outcomes_from_paths(paths.first_time, paths.death_time, paths.time_in_state, plan.model.absorbing,
                            plan.utility, plan.endpoint)  # (D, n, A, O)
    varies = option_varies(plan)
    risk = np.array([kind == RISK for _, kind in outcome_names(plan.model.event_names, plan.endpoint)])
    out = {}
    for prefix, values, var in (("value", y, varies), ("difference", y - y[:, :, :1, :], varies | varies[0])):
        # the chance and predictive ranges (a sort over the draws) only for life-years and QALYs
        parts = [decompose(values[..., ~risk], plan.parameter_draws, var[:, None], ranges=True),
                 decompose(values[..., risk], plan.parameter_draws, var[:, None], ranges=False)]
        for k in STATISTICS:
            merged = np.empty(values.shape[1:])
            merged[..., ~risk], merged[..., risk] = parts[0][k], parts[1][k]
            out[f"{prefix}_{k}"] = merged
    return out


# ------------------------------------------------------------------------------------------ running


def simulate_patient(protocol: Protocol, patients: Patients, horizon_years: float, draws: int, seed: int,
                     parameter_draws: int | None = None, options: ExecOptions | None = None,
                     calibration: xr.Dataset | None = None) -> tuple[TwinPlan, dict[str, np.ndarray]]:
    """Per-draw arrays of one patient under every option (see :func:`draws_chunk`)."""
    if patients.n != 1:
        raise ValueError("simulate_patient takes one patient; use simulate_batch for several")
    plan = make_plan(protocol, patients, horizon_years, draws, parameter_draws, calibration)
    # chunk weight: the kernel's per-draw counts take (T+1)·A·S·8 bytes, so about 100 MB per chunk
    weight = max(1, math.ceil((plan.n_steps + 1) * plan.n_arms * len(plan.utility) / 40))
    job = Job(draws_chunk, plan, "twin", weight)
    (arrays,) = run_jobs([job], draws, seed, options or ExecOptions(progress=False))
    return plan, arrays


def simulate_batch(protocol: Protocol, patients: Patients, horizon_years: float, draws: int, seed: int,
                   parameter_draws: int | None = None, options: ExecOptions | None = None,
                   calibration: xr.Dataset | None = None) -> tuple[TwinPlan, dict]:
    """Per-patient summaries of a batch; the job's replicate axis is the patient axis (chunks of patients)."""
    plan = make_plan(protocol, patients, horizon_years, draws, parameter_draws, calibration)
    job = Job(patients_chunk, plan, "twin batch", draws)
    (arrays,) = run_jobs([job], patients.n, seed, options or ExecOptions(progress=False))
    return plan, arrays


def patient_label(pid: str | None, keep_ids: bool, salt: bytes) -> str:
    """The identifier itself (if asked), else the first 16 hex digits of HMAC-SHA256(salt, id)."""
    if pid is None:
        return "anonymous"
    if keep_ids:
        return pid
    return hmac.new(salt, pid.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def _id_policy(keep_ids: bool, salt_given: bool) -> str:
    if keep_ids:
        return "patient identifiers kept (--keep-ids)"
    if salt_given:
        return "patient identifiers replaced by HMAC-SHA256 with the user's salt (--id-salt), not recorded"
    return "patient identifiers replaced by HMAC-SHA256 with a random salt drawn for this run and not recorded"


def _provenance(protocol: Protocol, seed: int, plan: TwinPlan, horizon_years: float) -> dict:
    return {
        **provenance(protocol, seed),
        "horizon_years": float(horizon_years),
        "horizon_months": float(plan.n_steps * plan.step_months),
        "draws": int(plan.draws),
        "parameter_draws": int(plan.parameter_draws),
        "chance_draws_per_parameter_draw": int(plan.inner_draws),
        "endpoint_label": (protocol.spec.endpoint.label or "protocol endpoint")
        if protocol.spec.endpoint.type == "time_to_event" else "",
        "endpoint_events": json.dumps([plan.model.event_names[i] for i in np.flatnonzero(plan.endpoint)]),
        "Conventions": "CF-1.8",
    }


def build_dataset(protocol: Protocol, patients: Patients, plan: TwinPlan, arrays: dict, seed: int,
                  horizon_years: float, label: str, id_policy: str) -> xr.Dataset:
    """The single-patient Dataset: dims (option, draw, time), attrs kind="twin"."""
    model = plan.model
    opt = ("option", "draw")
    S = len(model.state_names)
    state = np.moveaxis(arrays["health_state"], 0, 1)  # (A, D, T+1)
    occ = np.stack([(state == s).mean(axis=1) for s in range(S)], axis=-1)
    data = {
        "health_state": (opt + ("time",), state,
                         {"long_name": "health state at each time (index into the state coordinate)", "units": "1",
                          "flag_values": np.arange(S, dtype=np.int8), "flag_meanings": " ".join(model.state_names)}),
        "occupancy": (("option", "time", "state"), occ,
                      {"long_name": "probability of being in each state", "units": "1"}),
        "event_free": (opt + ("time",), np.moveaxis(arrays["event_free"], 0, 1),
                       {"long_name": "no event of any kind yet (1) since time zero", "units": "1"}),
        "event_time": (opt + ("event",), np.moveaxis(arrays["event_time"], 0, 1),
                       {"long_name": "time of the first occurrence of each event (NaN: not by the horizon)",
                        "units": "months"}),
        "life_years": (opt, arrays["life_years"].T, {"long_name": "life-years lived by the horizon", "units": "years"}),
        "qalys": (opt, arrays["qalys"].T,
                  {"long_name": "quality-adjusted life-years by the horizon (state utilities, undiscounted)",
                   "units": "QALY"}),
        "hazard_ratio": (opt + ("transition",), np.moveaxis(arrays["hazard_ratio"], 0, 1),
                         {"long_name": "treatment hazard ratio of each transition in this draw's parameter draw",
                          "units": "1"}),
        "state_absorbing": (("state",), model.absorbing.astype(np.int8), {"long_name": "absorbing state", "units": "1"}),
        "state_utility": (("state",), plan.utility, {"long_name": "quality-of-life weight", "units": "1"}),
    }
    coords = {
        "option": [a.name for a in protocol.spec.arms],
        "draw": np.arange(plan.draws),
        "parameter_draw": ("draw", np.arange(plan.draws) // plan.inner_draws,
                           {"long_name": "parameter draw (outer draw) of each draw"}),
        "time": ("time", plan.grid_months(), {"units": "months", "long_name": "time since the decision date"}),
        "state": list(model.state_names),
        "event": list(model.event_names),
        "transition": [t.name for t in protocol.disease.transitions],
    }
    if plan.biomarkers:
        coords["biomarker"] = [b.name for b in plan.biomarkers]
        coords["random_effect"] = ["intercept", "slope_per_year"]
        data["biomarker_shift"] = (opt + ("biomarker",), np.moveaxis(arrays["biomarker_shift"], 0, 1),
                                   {"long_name": "treatment shift of each biomarker in this draw's parameter draw",
                                    "units": "biomarker unit"})
        cov = plan.re_chol[:, 0] @ np.swapaxes(plan.re_chol[:, 0], 1, 2)
        data["random_effect_mean"] = (("biomarker", "random_effect"), plan.re_mean[:, 0],
                                      {"long_name": "posterior mean of the patient's random effects given their history",
                                       "units": "biomarker unit; per year for the slope"})
        data["random_effect_cov"] = (("biomarker", "random_effect", "random_effect_2"), cov,
                                     {"long_name": "posterior covariance of the patient's random effects"})
        for b in plan.biomarkers:
            data[f"biomarker_{b.name}"] = (opt + ("time",), np.moveaxis(arrays[f"biomarker_{b.name}"], 0, 1),
                                           {"long_name": f"{b.name}: the patient's underlying value (no measurement "
                                                         "noise, clipped at the model's bounds); NaN after death",
                                            "units": b.unit or "1"})
    ds = xr.Dataset(data, coords=coords)
    history = [{"biomarker": name, "months_before": round(float(-y * 12.0), 3), "value": float(v)}
               for name, (_, yrs, vals) in patients.measurements.items() for y, v in zip(yrs, vals)]
    covs = {name: (patients.levels[name][int(v[0])] if name in patients.levels else float(v[0]))
            for name, v in patients.columns.items()}
    ds.attrs.update({
        "title": f"vctrial twin: {protocol.spec.name}",
        "kind": "twin",
        "twin_scope": "patient",
        "patient": label,
        "patient_id_policy": id_policy,
        "patient_covariates": json.dumps(covs),
        "patient_history": json.dumps(history),
        "start_state": model.state_names[int(patients.start_state[0])],
        "start_months_in_state": float(patients.start_months[0]),
    })
    ds.attrs.update(_provenance(protocol, seed, plan, horizon_years))
    return ds


def build_batch_dataset(protocol: Protocol, patients: Patients, plan: TwinPlan, arrays: dict, seed: int,
                        horizon_years: float, labels: list[str], id_policy: str) -> xr.Dataset:
    """The batch Dataset: per patient, option and outcome; attrs kind="twin", twin_scope="batch"."""
    names = outcome_names(plan.model.event_names, plan.endpoint)
    risk = [i for i, (_, k) in enumerate(names) if k == RISK]
    data = {}
    for prefix, what in (("value", ""), ("difference", "difference vs the first option: ")):
        stack = np.stack([arrays[f"{prefix}_{s}"] for s in STATISTICS], axis=-1)  # (P, A, O, stat)
        suffix = "" if prefix == "value" else "_difference"
        data["risk" + suffix] = (("patient", "option", "outcome", "statistic"), stack[:, :, risk],
                                 {"long_name": what + "probability of the outcome by the horizon", "units": "1"})
        for name in ("life_years", "qalys"):
            i = [n for n, _ in names].index(name)
            data[name + suffix] = (("patient", "option", "statistic"), stack[:, :, i],
                                   {"long_name": what + name.replace("_", "-") + " by the horizon",
                                    "units": "QALY" if name == "qalys" else "years"})
    coords = {
        "patient": labels,
        "row": ("patient", patients.rows, {"long_name": "line of the patient in the input file"}),
        "option": [a.name for a in protocol.spec.arms],
        "outcome": [names[i][0] for i in risk],
        "statistic": list(STATISTICS),
        "start_state": ("patient", np.array(plan.model.state_names, dtype=object)[patients.start_state].astype(str)),
        "start_months_in_state": ("patient", np.asarray(patients.start_months, np.float64),
                                  {"long_name": "months already spent in the starting state at time zero",
                                   "units": "months"}),
    }
    for name, values in patients.columns.items():
        if name in patients.levels:
            values = np.array(patients.levels[name], dtype=object)[values.astype(np.int64)].astype(str)
        coords[f"covariate_{name}"] = ("patient", values)
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update({"title": f"vctrial twin batch: {protocol.spec.name}", "kind": "twin", "twin_scope": "batch",
                     "patient_id_policy": id_policy, "patients_file_rows": int(patients.n)})
    ds.attrs.update(_provenance(protocol, seed, plan, horizon_years))
    return ds


# ----------------------------------------------------------------------------------------- summaries


def draw_outcomes(ds: xr.Dataset) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Outcome names and per-draw values (D, A, O) from a single-patient twin Dataset."""
    events = [str(e) for e in ds["event"].values]
    endpoint = np.isin(events, json.loads(ds.attrs.get("endpoint_events", "[]")))
    first = ds["event_time"].transpose("draw", "option", "event").values
    first = np.where(np.isnan(first), np.inf, first)
    absorbing = ds["state_absorbing"].values.astype(bool)
    dead = absorbing[ds["health_state"].transpose("draw", "option", "time").values[..., -1]]
    death = np.where(dead, 0.0, np.inf)
    y = outcomes_from_paths(first, death, np.zeros(first.shape[:2] + (len(absorbing),)), absorbing,
                            ds["state_utility"].values, endpoint)
    y[..., -2] = ds["life_years"].transpose("draw", "option").values
    y[..., -1] = ds["qalys"].transpose("draw", "option").values
    return outcome_names(events, endpoint), y


def dataset_varies(ds: xr.Dataset) -> np.ndarray:
    """(A,) True for options whose sampled effects differ between parameter draws."""
    varies = np.zeros(ds.sizes["option"], bool)
    if ds.attrs.get("calibration_file") and int(ds.attrs.get("parameter_draws", 1)) > 1:
        varies[:] = True  # the disease model's parameter draws act under every option
    for name in ("hazard_ratio", "biomarker_shift"):
        if name in ds:
            v = ds[name].transpose("option", "draw", ...).values
            varies |= (v != v[:, :1]).reshape(v.shape[0], -1).any(axis=1)
    return varies


def summarize(ds: xr.Dataset) -> pd.DataFrame:
    """Per option and outcome of a single-patient twin: mean, uncertainty parts, difference vs the first option, NNT.

    Columns are the :data:`STATISTICS` of the value and, prefixed ``difference_``, of the paired
    difference against the first option (the same draws under both), plus ``kind`` (risk or
    years) and ``nnt`` (text, for risks).
    """
    names, y = draw_outcomes(ds)
    M = int(ds.attrs["parameter_draws"])
    varies = dataset_varies(ds)
    stats = decompose(y, M, varies[:, None])
    diff = decompose(y - y[:, :1, :], M, (varies | varies[0])[:, None])
    rows = []
    for a, option in enumerate(ds["option"].values):
        for o, (name, kind) in enumerate(names):
            row = {"option": str(option), "outcome": name, "kind": kind}
            row.update({k: float(v[a, o]) for k, v in stats.items()})
            row.update({f"difference_{k}": float(v[a, o]) for k, v in diff.items()})
            row["nnt"] = nnt_text(row["difference_mean"], row["difference_param_lower"],
                                  row["difference_param_upper"]) if kind == RISK and a > 0 else ""
            rows.append(row)
    return pd.DataFrame(rows).set_index(["option", "outcome"])


NNT_ZERO = 1e-9
"""A risk difference smaller than this is rounding in the mean of paired differences, not a difference."""


def nnt_text(diff: float, lo: float, hi: float) -> str:
    """Number needed to treat for a risk difference and its interval (Altman, BMJ 1998;317:1309).

    A negative difference (fewer events) gives an NNT to benefit (NNTB), a positive one to harm
    (NNTH); an interval that includes 0 runs from NNTB through infinity to NNTH.
    """
    if not np.isfinite(diff) or abs(diff) < NNT_ZERO:
        return "none"
    point = f"{'NNTB' if diff < 0 else 'NNTH'} {1 / abs(diff):.0f}"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return point
    if hi < 0 or lo > 0:
        a, b = sorted((1 / abs(lo), 1 / abs(hi)))
        return f"{point} ({a:.0f} to {b:.0f})"
    ends = [f"NNTB {1 / abs(lo):.0f}" if lo < 0 else "", f"NNTH {1 / abs(hi):.0f}" if hi > 0 else ""]
    return f"{point} ({' to ∞ to '.join(e for e in ends if e) or '∞'})"


def _cell(mean: float, lo: float, hi: float, resolved: float, scale: float, digits: int) -> str:
    if not np.isfinite(lo):
        return f"{mean * scale:.{digits}f}"
    mark = "" if resolved else "*"
    return f"{mean * scale:.{digits}f} ({lo * scale:.{digits}f} to {hi * scale:.{digits}f}){mark}"


def format_twin(ds: xr.Dataset) -> str:
    """The printed what-if table of a single-patient twin."""
    table = summarize(ds)
    M = int(ds.attrs["parameter_draws"])
    options = [str(o) for o in ds["option"].values]
    years = ds.attrs["horizon_months"] / 12.0
    names = list(dict.fromkeys(table.index.get_level_values("outcome")))
    label = {"any_event": "any event", "all_cause_death": "death (any cause)", "life_years": "life-years",
             "qalys": "QALYs", "endpoint": f"endpoint: {ds.attrs.get('endpoint_label', '')}"}
    possible = [n for n in names if (table.xs(n, level="outcome")["mean"] != 0).any()
                or table.xs(n, level="outcome")["kind"].iloc[0] != RISK]
    marker_labels = [f"{b} at {years:g} y ({ds[f'biomarker_{b}'].attrs.get('units', '')})"
                     for b in ds.coords.get("biomarker", xr.DataArray([])).values]
    width = max([len(label.get(n, n)) for n in possible] + [len(s) for s in marker_labels]) + 2
    heads = options + [f"{o} - {options[0]}" for o in options[1:]]
    cols = [max(len(h), 22) + 3 for h in heads]
    lines = [
        f"patient {ds.attrs['patient']} ({ds.attrs['patient_id_policy']})",
        f"options: {', '.join(options)} ({ds.attrs['protocol_name']}); horizon {years:g} years; "
        f"starting state {ds.attrs['start_state']}"
        + (f" (entered {ds.attrs['start_months_in_state']:.1f} months ago)"
           if ds.attrs.get("start_months_in_state", 0.0) > 0 else ""),
        f"draws: {ds.attrs['draws']} per option = {M} parameter draws x {ds.attrs['chance_draws_per_parameter_draw']} "
        f"chance draws, common random numbers across options; seed {ds.attrs['seed']}",
    ]
    for kind, title, scale, digits in ((RISK, f"risk by {years:g} years (%)", 100.0, 1),
                                       (YEARS, f"by {years:g} years (years)", 1.0, 2)):
        lines += ["", f"  {title:<{width}}" + "".join(f"{h:>{w}}" for h, w in zip(heads, cols))
                  + ("   NNT" if kind == RISK else "")]
        for name in possible:
            rows = table.xs(name, level="outcome")
            if rows["kind"].iloc[0] != kind:
                continue
            text = f"  {label.get(name, name):<{width}}"
            for a in range(len(options)):
                r = rows.iloc[a]
                cell = _cell(r["mean"], r["param_lower"], r["param_upper"], r["param_resolved"], scale, digits)
                text += f"{cell:>{cols[a]}}"
            for a in range(1, len(options)):
                r = rows.iloc[a]
                cell = _cell(r["difference_mean"], r["difference_param_lower"], r["difference_param_upper"],
                             r["difference_param_resolved"], scale, digits)
                text += f"{cell:>{cols[len(options) + a - 1]}}" + (f"   {r['nnt']}" if kind == RISK else "")
            lines.append(text)
    worst = {kind: table.loc[table["kind"] == kind, ["mc_se", "difference_mc_se"]].to_numpy().max()
             for kind in (RISK, YEARS)}
    if "biomarker" in ds.coords:
        months = ds["time"].values
        at = sorted({float(months[np.argmin(np.abs(months - 12.0))]), float(months[-1])})
        lines += ["", "  biomarker, patients alive: mean (95% range)",
                  f"  {'':<{width}}" + "".join(f"{o:>{c}}" for o, c in zip(options, cols))]
        for b in ds["biomarker"].values:
            var = ds[f"biomarker_{b}"]
            for t in at:
                values = var.sel(time=t).transpose("option", "draw").values.astype(np.float64)
                name = f"{b} at {t / 12:g} y ({var.attrs.get('units', '')})"
                text = f"  {name:<{width}}"
                for a in range(len(options)):
                    v = values[a][np.isfinite(values[a])]
                    cell = f"{v.mean():.2f} ({np.quantile(v, 0.025):.2f} to {np.quantile(v, 0.975):.2f})" if v.size else "-"
                    text += f"{cell:>{cols[a]}}"
                lines.append(text)
    mc = f"Monte Carlo SE at most {worst[RISK] * 100:.2f} percentage points and {worst[YEARS]:.3f} years."
    if M > 1:
        notes = ["Intervals: 95% parameter uncertainty (effects drawn from their confidence intervals); a number",
                 "without one has no uncertain parameter. * marks a spread that Monte Carlo noise alone could give",
                 "(ANOVA F-test at 5%), shown unshrunk (conservative); more --draws resolve it.", mc]
    else:
        notes = [f"No effect of the protocol has a confidence interval: numbers carry Monte Carlo error only. {mc}"]
    impossible = [label.get(n, n) for n in names if n not in possible]
    if impossible:
        notes.append(f"Not possible from the starting state (risk 0 under every option): {', '.join(impossible)}.")
    lines += [""] + notes + ["", f"  {'SD of one outcome':<{width}}" + "".join(f"{o:>34}" for o in options),
                             f"  {'(chance / parameters / total)':<{width}}"]
    for name in possible:
        rows = table.xs(name, level="outcome")
        scale, unit = (100.0, " %") if rows["kind"].iloc[0] == RISK else (1.0, " y")
        lines.append(f"  {label.get(name, name):<{width}}" + "".join(
            f"{rows['sd_chance'].iloc[a] * scale:>12.2f} /{rows['sd_parameters'].iloc[a] * scale:>7.2f} /"
            f"{rows['sd_total'].iloc[a] * scale:>7.2f}{unit}" for a in range(len(options))))
    return "\n".join(lines)


def risk_table(ds: xr.Dataset, rank_by: str | None = None) -> pd.DataFrame:
    """A batch twin's per-patient table, ranked by expected benefit of the last option over the first.

    Benefit is the risk reduction of ``rank_by`` (an outcome: an event, ``any_event`` (the
    default: the first event of any kind, which every starting state can have), ``all_cause_death``,
    ``endpoint``) or the gain in ``life_years`` / ``qalys``. Ties are broken by the patient label,
    so the ranking does not depend on the order of the input rows. ``interval_resolved`` is False
    where the parameter interval of the difference could be Monte Carlo noise (it is then unshrunk).
    """
    outcomes = [str(o) for o in ds["outcome"].values]
    rank_by = rank_by or "any_event"
    options = [str(o) for o in ds["option"].values]
    if rank_by in ("life_years", "qalys"):
        value, diff, sign = ds[rank_by], ds[rank_by + "_difference"], 1.0
    elif rank_by in outcomes:
        value, diff, sign = ds["risk"].sel(outcome=rank_by), ds["risk_difference"].sel(outcome=rank_by), -1.0
    else:
        raise SpecError("command line", "--rank-by", f"unknown outcome {rank_by!r} (one of "
                                                     f"{', '.join(outcomes + ['life_years', 'qalys'])})")
    frame = pd.DataFrame({"patient": ds["patient"].values.astype(str), "row": ds["row"].values,
                          "start_state": ds["start_state"].values.astype(str)})
    for o in options:
        frame[f"{rank_by} {o}"] = value.sel(option=o, statistic="mean").values
    d = diff.sel(option=options[-1])
    frame["difference"] = d.sel(statistic="mean").values
    frame["lower"] = d.sel(statistic="param_lower").values
    frame["upper"] = d.sel(statistic="param_upper").values
    frame["mc_se"] = d.sel(statistic="mc_se").values
    frame["interval_resolved"] = d.sel(statistic="param_resolved").values.astype(bool)
    if sign < 0:
        frame["NNT"] = [nnt_text(x, lo, hi) for x, lo, hi in zip(frame["difference"], frame["lower"], frame["upper"])]
    for name in ("life_years", "qalys"):
        frame[f"{name} gain"] = ds[name + "_difference"].sel(option=options[-1], statistic="mean").values
    frame["benefit"] = sign * frame["difference"]
    frame = frame.sort_values(["benefit", "patient"], ascending=[False, True], kind="mergesort")
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame.set_index("rank")


# ------------------------------------------------------------------------------------------ command


DEFAULT_DRAWS = {"patient": 10_000, "batch": 1_000}


def run_dataset(patient_file: str, protocol_file: str, horizon_years: float = 10.0, draws: int | None = None,
                seed: int = 1, parameter_draws: int | None = None, keep_ids: bool = False,
                id_salt: str | None = None, options: ExecOptions | None = None,
                calibration: str | None = None) -> xr.Dataset:
    """Validate the patient file(s) against the protocol's models and simulate every option.

    A ``.csv`` file is a batch (dims patient, option, outcome, statistic); a YAML file one patient
    (dims option, draw, time). ``calibration`` (a ``vctrial calibrate`` result for the protocol's
    disease file) adds the disease model's parameter uncertainty to that of the effects.
    """
    from vctrial.spec.protocol import load_protocol

    protocol = load_protocol(protocol_file)
    batch = Path(patient_file).suffix.lower() == ".csv"
    draws = draws or DEFAULT_DRAWS["batch" if batch else "patient"]
    loader = load_batch if batch else load_patient
    patients = loader(patient_file, protocol.cohort, protocol.disease)
    salt = id_salt.encode("utf-8") if id_salt is not None else os.urandom(16)
    labels = [patient_label(pid, keep_ids, salt) for pid in patients.ids]
    policy = _id_policy(keep_ids, id_salt is not None)
    options = options or ExecOptions(progress=False)
    fit = open_calibration(calibration) if calibration is not None else None
    if batch:
        plan, arrays = simulate_batch(protocol, patients, horizon_years, draws, seed, parameter_draws, options, fit)
        ds = build_batch_dataset(protocol, patients, plan, arrays, seed, horizon_years, labels, policy)
    else:
        plan, arrays = simulate_patient(protocol, patients, horizon_years, draws, seed, parameter_draws, options, fit)
        ds = build_dataset(protocol, patients, plan, arrays, seed, horizon_years, labels[0], policy)
    if fit is not None:
        ds.attrs["calibration_file"] = str(calibration)
        ds.attrs["calibration_parameters"] = json.dumps([str(p) for p in fit.parameter.values])
    return ds


def run_command(patient_file: str, protocol_file: str, horizon_years: float, draws: int | None, seed: int, out: str,
                parameter_draws: int | None = None, keep_ids: bool = False, id_salt: str | None = None,
                table: str | None = None, rank_by: str | None = None,
                options: ExecOptions | None = None, calibration: str | None = None) -> str:
    """``vctrial twin``: validate everything, simulate, write atomically; returns the text to print."""
    from vctrial.results import check_outputs

    check_outputs({"--out": out, "--table": table}, [patient_file, protocol_file] + ([calibration] if calibration else []))
    batch = Path(patient_file).suffix.lower() == ".csv"
    out_path = Path(out)
    for path in (out_path, Path(table) if table else None):
        if path is not None and path.is_dir():
            raise SpecError(str(path), "", "an output must be a file name, not a folder")
    if table and not batch:
        raise SpecError("command line", "--table", "a ranked table is made for a batch CSV of patients")
    if rank_by is not None and not batch:
        raise SpecError("command line", "--rank-by", "ranks the patients of a batch CSV; one patient has no ranking")
    if batch and rank_by is not None:
        from vctrial.spec.protocol import load_protocol

        protocol = load_protocol(protocol_file)
        tte = np.array([protocol.spec.endpoint.type == "time_to_event"])
        names = [n for n, _ in outcome_names(protocol.disease.event_names, tte)]
        if rank_by not in names:
            raise SpecError("command line", "--rank-by", f"unknown outcome {rank_by!r} (one of {', '.join(names)})")
    ds = run_dataset(patient_file, protocol_file, horizon_years, draws, seed, parameter_draws, keep_ids, id_salt,
                     options, calibration)
    if not batch:
        text = format_twin(ds)
        write_netcdf(ds, out_path)
        return text + f"\nwrote {out_path}"
    ranked = risk_table(ds, rank_by)
    write_netcdf(ds, out_path)
    if table:
        _write_csv(ranked, Path(table))
    shown = ranked.head(20)
    draws_each = ds.attrs.get("draws", draws)
    text = [f"{ds.sizes['patient']} patients, {draws_each} draws each ({ds.attrs.get('parameter_draws')} parameter "
            f"draws), horizon {horizon_years:g} years, seed {seed}; ranked by expected benefit of "
            f"{ds['option'].values[-1]} ({'gain' if rank_by in ('life_years', 'qalys') else 'risk reduction'} "
            f"of {rank_by or 'any_event'})",
            shown.drop(columns=["benefit"]).to_string(float_format=lambda v: f"{v:.4f}")]
    if len(ranked) > len(shown):
        text.append(f"... {len(ranked) - len(shown)} more in {table or out_path}")
    text.append(f"wrote {out_path}" + (f" and {table}" if table else ""))
    return "\n".join(text)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula (starting with =, +, -, @, tab or carriage
    return; e.g. a patient identifier kept with --keep-ids) get a leading apostrophe, shown as text."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype == object:
            out[name] = [f"'{v}" if isinstance(v, str) and v.startswith(FORMULA_START) else v for v in out[name]]
    return out


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Atomic CSV: a temporary file in the same folder, renamed when complete."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        spreadsheet_safe(frame.drop(columns=["benefit"])).to_csv(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
