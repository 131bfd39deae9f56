"""Typed disease-model spec: a multi-state model with log-linear hazards that may change with age,
drifting covariates, time in state, time on study and the current value of a biomarker; competing
background mortality from a (cause-deleted) life table; continuous biomarkers following a mixed model
with a mean-reverting within-patient process and treatment intensification."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import Field

from vctrial.spec.base import StrictModel, load

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# a covariate column, or an indicator of one categorical level: nyha_class[III]
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^\[\]]+\])?$")
# the unit column of the reference pages (vctrial.docgen) for values in the biomarker's own unit
_BIOMARKER_UNIT = {"unit": "the biomarker's unit"}


class State(StrictModel):
    """A health state; absorbing states (deaths) end a patient's path."""

    name: str = Field(pattern=_NAME, description="state name (an identifier)")
    absorbing: bool = Field(False, description="true for a state that is never left (death); entering one is death")
    utility: float = Field(1.0, ge=-1.0, le=1.0, description="quality-of-life weight: QALYs per year lived in the state",
                           json_schema_extra={"unit": "QALY/year"})


class CovariateEffect(StrictModel):
    """One term of a log-linear predictor: coefficient × (covariate − reference)."""

    covariate: str = Field(description="cohort covariate, or categorical indicator like nyha_class[III]")
    coef: float = Field(description="coefficient per unit of the covariate: a log hazard ratio in a transition, "
                        "biomarker units in a biomarker", json_schema_extra={"unit": "per unit of the covariate"})
    reference: float = Field(0.0, description="value of the covariate at which the term is zero",
                             json_schema_extra={"unit": "the covariate's unit"})

    @pydantic.field_validator("covariate")
    @classmethod
    def _column_name(cls, v: str) -> str:
        if not _COLUMN.match(v):
            raise ValueError("must be a covariate name or name[level]")
        return v


class TimePiece(StrictModel):
    """A hazard multiplier that holds until a time (months), from the end of the previous piece."""

    until_month: float = Field(gt=0.0, allow_inf_nan=False, description="end of the period (exclusive)",
                               json_schema_extra={"unit": "months"})
    multiplier: float = Field(gt=0.0, allow_inf_nan=False, description="multiplier of the hazard in the period")


def _increasing_pieces(pieces: list[TimePiece]) -> list[TimePiece]:
    ends = [p.until_month for p in pieces]
    if any(b <= a for a, b in zip(ends, ends[1:])):
        raise ValueError(f"until_month must increase, got {ends}")
    return pieces


class TimeOnStudy(StrictModel):
    """The baseline hazard's shape in time since time zero (randomization, or a twin's decision date)."""

    piecewise: list[TimePiece] = Field([], description="multipliers on successive periods since time zero; "
                                       "1 after the last")
    weibull_shape: float | None = Field(None, gt=0.0, allow_inf_nan=False, description=(
        "Weibull baseline: hazard rate_per_year × shape × (t / 1 year)^(shape − 1), so that the cumulative hazard "
        "by t years is rate_per_year × t^shape (null: constant)"))

    _pieces = pydantic.field_validator("piecewise")(_increasing_pieces)

    @pydantic.model_validator(mode="after")
    def _one(self) -> TimeOnStudy:
        if self.piecewise and self.weibull_shape is not None:
            raise ValueError("give either piecewise or weibull_shape, not both")
        return self


class BiomarkerTerm(StrictModel):
    """A term of a joint longitudinal–event model: the log hazard moves with a biomarker's current
    true (noise-free) value and its current slope, so a treatment that shifts the biomarker acts on
    the event through it."""

    biomarker: str = Field(description="name of one of the model's biomarkers")
    coef: float = Field(0.0, allow_inf_nan=False, description="log hazard ratio per unit of the current true value",
                        json_schema_extra={"unit": "per biomarker unit"})
    reference: float = Field(0.0, allow_inf_nan=False, description="value at which the value term is zero",
                             json_schema_extra=_BIOMARKER_UNIT)
    slope_coef: float = Field(0.0, allow_inf_nan=False, description=(
        "log hazard ratio per unit/year of the current slope of the patient's trajectory"),
        json_schema_extra={"unit": "per biomarker unit/year"})


class Transition(StrictModel):
    """A transition with hazard

    rate_per_year × exp(Σ coef·(x(t) − reference)) × time_on_study(t) × time_in_state(u)
    × exp(Σ biomarker terms at t)

    where x(t) are the covariates at time t (age advances, drifting covariates drift), u the months
    since entering the ``from`` state. A transition whose ``to`` is its ``from`` is a recurrent event
    (it restarts the time in state).
    """

    name: str = Field(pattern=_NAME, description="event name used by endpoints and treatment effects")
    from_: str = Field(alias="from", description="state the transition leaves (not absorbing)")
    to: str = Field(description="state the transition enters (the same state for a recurrent event)")
    rate_per_year: float = Field(gt=0.0, allow_inf_nan=False,
                                 description="hazard at the reference covariate values (1/year)")
    effects: list[CovariateEffect] = Field([], description="covariate terms of the log hazard")
    time_in_state: list[TimePiece] = Field([], description=(
        "multipliers by months since entering the from state (e.g. high early risk after a hospitalization); "
        "1 after the last piece"))
    time_on_study: TimeOnStudy | None = Field(None, description="shape of the baseline hazard in time since time "
                                              "zero (null: constant)")
    biomarkers: list[BiomarkerTerm] = Field([], description="terms in the current value and slope of biomarkers")

    _pieces = pydantic.field_validator("time_in_state")(_increasing_pieces)


class Drift(StrictModel):
    """A covariate that changes linearly with time in every hazard (e.g. blood pressure with age)."""

    covariate: str = Field(pattern=_NAME, description="cohort covariate (a number, not a categorical level)")
    per_year: float = Field(allow_inf_nan=False, description="change per year",
                            json_schema_extra={"unit": "the covariate's unit/year"})
    source: str = Field("", description="where the rate of change comes from (or that it is an assumption)")


class BackgroundMortality(StrictModel):
    """Death from other causes by age and sex from the shipped period life table."""

    to: str = Field(description="absorbing state entered on background death")
    event: str = Field("background_death", pattern=_NAME, description="event name of this transition")
    age: str = Field("age", description="cohort covariate holding age at randomization (years)")
    female: str = Field("sex_female", description="cohort covariate, 1 for female, 0 for male")
    life_table: Literal["us_ssa"] = Field(
        "us_ssa", description="the shipped period life table: us_ssa, US Social Security Area 2023 (q_x by sex)")
    remove_causes: list[Literal["cardiovascular"]] = Field([], description=(
        "causes of death the model simulates explicitly, removed from the life table (a cause-deleted table: "
        "the all-cause hazard × (1 − share of deaths from these causes by age and sex), shipped data)"))
    multiplier: float = Field(1.0, gt=0.0, allow_inf_nan=False, description=(
        "scales the (cause-deleted) life-table hazard, e.g. the non-cardiovascular mortality of trial participants "
        "relative to the general population"))
    multiplier_source: str = Field("", description="where the multiplier comes from (or that it is an assumption)")


class Intensification(StrictModel):
    """Treatment added when a visit value crosses a threshold: from that visit on, the true value moves by
    ``shift``; at most ``max_times`` additions."""

    every_months: float = Field(gt=0.0, allow_inf_nan=False, description=(
        "interval between the visits at which the rule is checked (a whole number of model steps)"),
        json_schema_extra={"unit": "months"})
    above: float | None = Field(None, allow_inf_nan=False, description=(
        "add treatment when the observed value is above this (null: not used)"), json_schema_extra=_BIOMARKER_UNIT)
    below: float | None = Field(None, allow_inf_nan=False, description=(
        "add treatment when the observed value is below this (null: not used)"), json_schema_extra=_BIOMARKER_UNIT)
    shift: float = Field(allow_inf_nan=False, description="effect of each addition on the true value",
                         json_schema_extra=_BIOMARKER_UNIT)
    max_times: int = Field(1, ge=1, le=20, description="most additions per patient")
    source: str = Field("", description="where the rule and its effect come from (or that they are assumptions)")

    @pydantic.model_validator(mode="after")
    def _threshold(self) -> Intensification:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above or below")
        return self


class Biomarker(StrictModel):
    """Mixed model with a mean-reverting within-patient process:

    y(t) = intercept + Σ coef·(x − ref) + b0 + (slope + b1)·τ(t) + W(t) + treatment(t) + added(t) + ε

    t in years since time zero; (b0, b1) patient random effects (bivariate normal); τ(t) = t, or
    (1 − e^(−κt))/κ with κ = ln 2 / slope_half_life_years, so that a patient's own slope fades and the
    trajectory levels off; W an Ornstein–Uhlenbeck process (stationary SD process_sd, reverting with
    half-life process_half_life_years); added(t) the effect of therapy added by the intensification
    rule; ε the measurement noise at each visit, independent across visits. The true value is y
    without ε; a transition's hazard may depend on it (``transitions[].biomarkers``).
    """

    name: str = Field(pattern=_NAME, description="biomarker name, used by endpoints and treatment effects")
    unit: str = Field("", description="unit of the values, e.g. % or mmol/L")
    intercept: float = Field(0.0, description="mean at randomization with every covariate at its reference",
                             json_schema_extra=_BIOMARKER_UNIT)
    effects: list[CovariateEffect] = Field([], description="covariate terms of the mean")
    slope_per_year: float = Field(0.0, description="mean change per year",
                                  json_schema_extra={"unit": "biomarker unit/year"})
    random_intercept_sd: float = Field(0.0, ge=0.0, description="between-patient SD of the level (b0)",
                                       json_schema_extra=_BIOMARKER_UNIT)
    random_slope_sd: float = Field(0.0, ge=0.0, description="between-patient SD of the slope (b1)",
                                   json_schema_extra={"unit": "biomarker unit/year"})
    random_correlation: float = Field(0.0, gt=-1.0, lt=1.0, description="correlation of b0 and b1")
    residual_sd: float = Field(0.0, ge=0.0, description="SD of the measurement noise at each visit; > 0 for a "
                               "patient twin conditioned on measured values", json_schema_extra=_BIOMARKER_UNIT)
    min: float | None = Field(None, description="observed values are clipped at this bound (null: none)",
                              json_schema_extra=_BIOMARKER_UNIT)
    max: float | None = Field(None, description="observed values are clipped at this bound (null: none)",
                              json_schema_extra=_BIOMARKER_UNIT)
    slope_half_life_years: float | None = Field(None, gt=0.0, allow_inf_nan=False, description=(
        "the mean and patient slopes fade with this half-life, so trajectories level off (null: linear for ever)"),
        json_schema_extra={"unit": "years"})
    process_sd: float = Field(0.0, ge=0.0, allow_inf_nan=False, description=(
        "stationary SD of the mean-reverting within-patient process W"), json_schema_extra=_BIOMARKER_UNIT)
    process_half_life_years: float = Field(1.0, gt=0.0, allow_inf_nan=False, description=(
        "half-life of a deviation of W from zero"), json_schema_extra={"unit": "years"})
    intensification: Intensification | None = Field(None, description="treatment added at visits when the "
                                                     "observed value crosses a threshold (null: none)")
    sources: list[str] = Field([], description="where the parameters come from (or that they are assumptions)")

    @pydantic.model_validator(mode="after")
    def _bounds(self) -> Biomarker:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min must be < max, got {self.min} >= {self.max}")
        return self


class DiseaseSpec(StrictModel):
    """A disease model file (``kind: disease``)."""

    kind: Literal["disease"] = Field(description="marks a disease model file")
    name: str = Field(description="human-readable name of the model")
    description: str = Field("", description="free text")
    sources: list[str] = Field([], description="references the rates and coefficients come from")
    time_step_months: float = Field(1.0, gt=0.0, le=12.0, allow_inf_nan=False, description=(
        "step within which covariates, biomarkers and time-varying effects are held constant (life-table "
        "ages, drifts, biomarker values and treatment effects are updated per step; time-in-state pieces "
        "are resolved exactly)"))
    age_covariate: str | None = Field("age", pattern=_NAME, description=(
        "the covariate that advances one year per year in every hazard (null: covariates stay at baseline)"))
    covariate_drift: list[Drift] = Field([], description="other covariates that change linearly with time in "
                                         "every hazard")
    states: list[State] = Field(min_length=2, description="the health states")
    initial_state: str = Field(description="state every patient starts in (not absorbing)")
    transitions: list[Transition] = Field(min_length=1, description="transitions between states, each with its hazard")
    background_mortality: BackgroundMortality | None = Field(
        None, description="competing death from other causes by age and sex (null: none)")
    biomarkers: list[Biomarker] = Field([], description="continuous measurements following linear mixed models")
    calibration: dict[str, Any] | None = Field(None, description=(
        "provenance written by vctrial calibrate: calibration file, targets, method, seed and fit (not read by "
        "the simulation)"))
    _path: Path | None = pydantic.PrivateAttr(default=None)

    @property
    def path(self) -> Path | None:
        """The file this spec was loaded from (None if built in code)."""
        return self._path

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> DiseaseSpec:
        names = [s.name for s in self.states]
        _unique(names, "states")
        absorbing = {s.name for s in self.states if s.absorbing}
        if self.initial_state not in names:
            raise ValueError(f"initial_state: unknown state {self.initial_state!r} (states: {', '.join(names)})")
        if self.initial_state in absorbing:
            raise ValueError("initial_state: must not be absorbing")
        events = [t.name for t in self.transitions]
        if self.background_mortality is not None:
            events.append(self.background_mortality.event)
        _unique(events, "transitions (event names)")
        for i, t in enumerate(self.transitions):
            for key, state in (("from", t.from_), ("to", t.to)):
                if state not in names:
                    raise ValueError(f"transitions[{i}].{key}: unknown state {state!r} (states: {', '.join(names)})")
            if t.from_ in absorbing:
                raise ValueError(f"transitions[{i}].from: state {t.from_!r} is absorbing")
            for j, term in enumerate(t.biomarkers):
                if term.biomarker not in {b.name for b in self.biomarkers}:
                    raise ValueError(f"transitions[{i}].biomarkers[{j}].biomarker: unknown biomarker "
                                     f"{term.biomarker!r} (biomarkers: {', '.join(b.name for b in self.biomarkers) or 'none'})")
        for i, b in enumerate(self.biomarkers):
            rule = b.intensification
            if rule is not None:
                steps = rule.every_months / self.time_step_months
                if abs(steps - round(steps)) > 1e-9:
                    raise ValueError(f"biomarkers[{i}].intensification.every_months: must be a whole number of "
                                     f"steps ({self.time_step_months:g} months), got {rule.every_months:g}")
        drifting = [d.covariate for d in self.covariate_drift]
        _unique(drifting, "covariate_drift")
        if self.age_covariate is not None and self.age_covariate in drifting:
            raise ValueError(f"covariate_drift: {self.age_covariate!r} is the age covariate, which advances by itself")
        bg = self.background_mortality
        if bg is not None and bg.to not in absorbing:
            raise ValueError(f"background_mortality.to: must be an absorbing state, got {bg.to!r}")
        _unique([b.name for b in self.biomarkers], "biomarkers")
        return self

    @property
    def event_names(self) -> list[str]:
        """Transition names, then the background death event if any: the kernel's event columns."""
        names = [t.name for t in self.transitions]
        if self.background_mortality is not None:
            names.append(self.background_mortality.event)
        return names

    def covariates_used(self) -> list[tuple[str, str]]:
        """(key path, column) of every covariate the model reads, for checking against a cohort."""
        used: list[tuple[str, str]] = []
        for i, t in enumerate(self.transitions):
            used += [(f"transitions[{i}].effects[{j}].covariate", e.covariate) for j, e in enumerate(t.effects)]
        for i, b in enumerate(self.biomarkers):
            used += [(f"biomarkers[{i}].effects[{j}].covariate", e.covariate) for j, e in enumerate(b.effects)]
        if self.background_mortality is not None:
            used += [("background_mortality.age", self.background_mortality.age),
                     ("background_mortality.female", self.background_mortality.female)]
        used += [(f"covariate_drift[{i}].covariate", d.covariate) for i, d in enumerate(self.covariate_drift)]
        return used

    def log_hazard_slopes(self) -> list[float]:
        """Per transition, the change of the log hazard per year of time from ageing and drifts."""
        rates = {d.covariate: d.per_year for d in self.covariate_drift}
        if self.age_covariate is not None:
            rates[self.age_covariate] = 1.0
        return [sum(e.coef * rates.get(e.covariate, 0.0) for e in t.effects) for t in self.transitions]

    @property
    def has_biomarker_terms(self) -> bool:
        """True when some hazard depends on a biomarker."""
        return any(t.biomarkers for t in self.transitions)


def _unique(names: list[str], where: str) -> None:
    seen = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{where}: duplicate name {n!r}")
        seen.add(n)


def load_disease(path: str | Path) -> DiseaseSpec:
    """Read and validate a disease model file."""
    spec = load(path, DiseaseSpec)
    spec._path = Path(path)
    return spec
