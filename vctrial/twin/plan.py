"""The twin's plan: protocol, disease and patients compiled into arrays the chunk functions take."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

from vctrial.disease import multistate as ms
from vctrial.errors import SpecError
from vctrial.spec.disease import Biomarker
from vctrial.spec.patient import Patients
from vctrial.spec.protocol import BiomarkerEffect, HazardEffect, Protocol, parameter_correlation_matrix
from vctrial.study.draws import disease_draws
from vctrial.trial.conduct import effect_profile
from vctrial.twin.posterior import biomarker_mean, cholesky_2x2, posterior_random_effects
from vctrial.twin.uncertainty import Z95

DEFAULT_OUTER_MAX = 40


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
