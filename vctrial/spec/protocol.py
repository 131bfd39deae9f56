"""Typed trial-protocol spec: arms and effects, enrollment, follow-up, dropout, endpoint, analysis."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import pydantic
from pydantic import Field

from vctrial.errors import SpecError
from vctrial.spec.base import StrictModel, read_yaml, validate
from vctrial.spec.disease import DiseaseSpec, load_disease

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class EffectPiece(StrictModel):
    """A hazard ratio on a period of treatment time, up to ``until_month``."""

    until_month: float = Field(gt=0.0, description="end of the period, months since the start of treatment")
    hazard_ratio: float = Field(gt=0.0, description="hazard ratio during the period")


class Waning(StrictModel):
    """A fading effect: after ``start_month`` of treatment the log hazard ratio halves every half-life."""

    start_month: float = Field(ge=0.0, description="treatment time at which the effect starts to fade")
    half_life_months: float = Field(gt=0.0, description="time over which the log hazard ratio halves")


class HazardEffect(StrictModel):
    """Multiplies the hazard of one named transition of the disease model.

    ``hazard_ratio_ci`` (optional, e.g. a published 95% interval) makes the hazard ratio uncertain:
    the patient twin draws it per parameter draw, and a trial with ``analysis.assurance`` per
    replicate, from a lognormal centred on ``hazard_ratio`` whose central 95% spans the interval.
    """

    transition: str = Field(description="name of the disease transition whose hazard is multiplied")
    hazard_ratio: float = Field(gt=0.0, description="multiplier of the transition's hazard (< 1: fewer events)")
    hazard_ratio_ci: tuple[float, float] | None = Field(
        None, description="95% confidence interval [lower, upper] around hazard_ratio; used by the patient twin "
        "(parameter uncertainty) and by trials with analysis.assurance (drawn per replicate), else ignored")

    @pydantic.field_validator("hazard_ratio_ci", mode="before")
    @classmethod
    def _pair(cls, value):
        return _interval_pair(value)


    @pydantic.field_validator("hazard_ratio_ci")
    @classmethod
    def _ci_around_estimate(cls, ci, info: pydantic.ValidationInfo):
        if ci is not None:
            if not 0.0 < ci[0] < ci[1]:
                raise ValueError(f"must be [lower, upper] with 0 < lower < upper, got {list(ci)}")
            hr = info.data.get("hazard_ratio")
            if hr is not None and not ci[0] <= hr <= ci[1]:
                raise ValueError(f"{list(ci)} does not contain hazard_ratio {hr}")
        return ci

class TrialHazardEffect(HazardEffect):
    """A hazard effect of a trial arm, which may change with the time since the start of treatment
    (randomization, or the switch for a crossing-over patient): a delay with hazard ratio 1,
    piecewise periods, waning. Effects naming the same ``parameter`` share one draw of the patient
    twin's parameter uncertainty."""

    parameter: str | None = Field(
        None, pattern=_NAME, description="name of the uncertain parameter this hazard ratio is (an identifier): "
        "effects with the same name, in any arm, take one shared draw per parameter draw of the patient twin "
        "and must give the same hazard_ratio and hazard_ratio_ci (default: the effect is its own parameter)")
    delay_months: float = Field(0.0, ge=0.0, description="delayed effect: hazard ratio 1 for this long after "
                                "the start of treatment, hazard_ratio after")
    piecewise: list[EffectPiece] = Field([], description="hazard ratios on successive periods of treatment time "
                                         "before hazard_ratio applies (instead of delay_months)")
    waning: Waning | None = Field(None, description="after start_month of treatment the log hazard ratio halves "
                                  "every half_life_months")

    @pydantic.model_validator(mode="after")
    def _time_profile(self) -> TrialHazardEffect:
        if self.piecewise and self.delay_months:
            raise ValueError("piecewise: give either delay_months or piecewise, not both")
        ends = [p.until_month for p in self.piecewise]
        if any(b <= a for a, b in zip(ends, ends[1:])):
            raise ValueError(f"piecewise: until_month must increase, got {ends}")
        if self.waning is not None and self.waning.start_month < self.onset_months:
            raise ValueError(f"waning.start_month: must be at or after the end of the delay/pieces "
                             f"({self.onset_months:g} months), got {self.waning.start_month:g}")
        return self

    @property
    def onset_months(self) -> float:
        """Treatment time from which ``hazard_ratio`` applies."""
        return self.piecewise[-1].until_month if self.piecewise else self.delay_months

    @property
    def time_varying(self) -> bool:
        return bool(self.piecewise or self.delay_months or self.waning)

    def hazard_ratio_at(self, months) -> Any:
        """Hazard ratio at each time since the start of treatment (months, array-like)."""
        import numpy as np

        t = np.asarray(months, dtype=np.float64)
        hr = np.full(t.shape, self.hazard_ratio)
        if self.delay_months:
            hr = np.where(t < self.delay_months, 1.0, hr)
        for piece in reversed(self.piecewise):
            hr = np.where(t < piece.until_month, piece.hazard_ratio, hr)
        if self.waning is not None:
            w = self.waning
            fade = np.exp2(-np.maximum(t - w.start_month, 0.0) / w.half_life_months)
            hr = np.where(t > w.start_month, np.exp(math.log(self.hazard_ratio) * fade), hr)
        return hr


class BiomarkerEffect(StrictModel):
    """Shifts a biomarker (after baseline) and changes its slope.

    ``shift_ci`` makes the shift uncertain for the patient twin; effects naming the same
    ``parameter`` share one draw.
    """

    biomarker: str = Field(description="name of the disease model's biomarker")
    shift: float = Field(0.0, description="additive change after baseline, in the biomarker's unit",
                         json_schema_extra={"unit": "the biomarker's unit"})
    slope_change_per_year: float = Field(0.0, description="change of slope, unit per year",
                                         json_schema_extra={"unit": "biomarker unit/year"})
    shift_ci: tuple[float, float] | None = Field(
        None, description="95% confidence interval of shift; the twin draws it from a normal centred on shift",
        json_schema_extra={"unit": "the biomarker's unit"})
    parameter: str | None = Field(
        None, pattern=_NAME, description="name of the uncertain parameter this shift is (an identifier): effects "
        "with the same name, in any arm, take one shared draw per parameter draw of the patient twin and must "
        "give the same shift and shift_ci (default: the effect is its own parameter)")

    @pydantic.field_validator("shift_ci", mode="before")
    @classmethod
    def _pair(cls, value):
        return _interval_pair(value)

    @pydantic.field_validator("shift_ci")
    @classmethod
    def _ci_around_shift(cls, ci, info: pydantic.ValidationInfo):
        shift = info.data.get("shift", 0.0)
        if ci is not None and not (ci[0] < ci[1] and ci[0] <= shift <= ci[1]):
            raise ValueError(f"must be [lower, upper] with lower < upper around shift {shift}, got {list(ci)}")
        return ci


def _correlation_entry(value):
    """A parameter correlation is written as [name_a, name_b, rho]."""
    if not (isinstance(value, (list, tuple)) and len(value) == 3):
        raise ValueError(f"must be a list [name_a, name_b, rho], got {value!r}")
    return value


ParameterCorrelation = Annotated[tuple[str, str, float], pydantic.BeforeValidator(_correlation_entry)]


def _parameter_value(effect) -> tuple[float, tuple[float, float] | None]:
    """(point, interval) of an effect's parameter: the hazard ratio or the biomarker shift."""
    if isinstance(effect, HazardEffect):
        return effect.hazard_ratio, effect.hazard_ratio_ci
    return effect.shift, effect.shift_ci


def _show(value: tuple[float, tuple[float, float] | None]) -> str:
    point, ci = value
    return f"{point:g}" + (f" [{ci[0]:g}, {ci[1]:g}]" if ci is not None else " (no interval)")


def parameter_correlation_matrix(names: list[str], correlations) -> Any:
    """(Q, Q) correlation matrix of the parameters ``names`` from [name_a, name_b, rho] entries (others 0)."""
    import numpy as np

    index = {n: q for q, n in enumerate(names)}
    out = np.eye(len(names))
    for a, b, rho in correlations:
        if a in index and b in index:
            out[index[a], index[b]] = out[index[b], index[a]] = rho
    return out


def _interval_pair(value):
    """A confidence interval is written as a list of two numbers."""
    if value is not None and not (isinstance(value, (list, tuple)) and len(value) == 2):
        got = f", got {list(value)!r}" if isinstance(value, (list, tuple)) else ""
        raise ValueError("must be a list of two numbers [lower, upper]" + got)
    return value


def _effect_kind(value) -> str:
    """An effect naming a biomarker is a BiomarkerEffect, any other a HazardEffect (errors then name its keys)."""
    if isinstance(value, dict):
        return "BiomarkerEffect" if "biomarker" in value else "HazardEffect"
    return "BiomarkerEffect" if isinstance(value, BiomarkerEffect) else "HazardEffect"


Effect = Annotated[Union[Annotated[TrialHazardEffect, pydantic.Tag("HazardEffect")],
                         Annotated[BiomarkerEffect, pydantic.Tag("BiomarkerEffect")]],
                   pydantic.Discriminator(_effect_kind)]


class Arm(StrictModel):
    """A trial arm (a treatment option of the patient twin) and its effects on the disease model."""

    name: str = Field(pattern=_NAME, description="arm name (an identifier); the arm coordinate of the results")
    allocation: int = Field(1, ge=1, le=20, description="allocation weight (e.g. 2 and 1 for 2:1)")
    effects: list[Effect] = Field(
        [], description="treatment effects: a hazard effect ({transition, hazard_ratio, ...}) or a biomarker "
        "effect (an entry with a biomarker key); the control arm takes none")


class CutStratum(StrictModel):
    """A numeric covariate cut into strata at the given points (e.g. age cuts [65, 75])."""

    covariate: str = Field(description="numeric cohort covariate")
    cuts: list[float] = Field(min_length=1, description="increasing cut points; k cuts make k + 1 strata "
                              "(a value equal to a cut goes to the upper stratum)",
                              json_schema_extra={"unit": "the covariate's unit"})

    @pydantic.field_validator("cuts")
    @classmethod
    def _increasing(cls, cuts: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(cuts, cuts[1:])):
            raise ValueError(f"must increase, got {cuts}")
        return cuts


class Randomization(StrictModel):
    """Simple or permuted-block randomization, optionally stratified."""

    method: Literal["permuted_block", "simple"] = Field(
        "permuted_block", description="permuted_block: blocks holding each arm in proportion to its allocation; "
        "simple: independent draws with the allocation probabilities")
    block_size: int | None = Field(None, ge=1, description="multiple of the allocation total; default 2× it",
                                   json_schema_extra={"unit": "patients"})
    block_sizes: list[int] | None = Field(None, min_length=1, description="sizes drawn at random, one per block "
                                          "(e.g. [4, 6]); each a multiple of the allocation total",
                                          json_schema_extra={"unit": "patients"})
    strata: list[Union[str, CutStratum]] = Field(
        [], description="permuted blocks within each stratum: binary or categorical covariates by name, "
        "'site', 'region', or {covariate, cuts} for a numeric covariate")


class SiteGroup(StrictModel):
    """Trial sites sharing a region and a recruitment profile (each site is a Mesa agent)."""

    name: str = Field(pattern=_NAME, description="group name; sites are labelled group:number")
    region: str = Field("", description="region label (default: the group's name)")
    count: int = Field(ge=1, le=10_000, description="number of sites in the group", json_schema_extra={"unit": "sites"})
    activation_months: tuple[float, float] = Field(
        (0.0, 0.0), description="each site opens at a uniform date in [first, last] (ramp-up)")
    screening_rate_per_month: float = Field(gt=0.0, description="mean candidates screened per month by an open site")
    rate_cv: float = Field(0.0, ge=0.0, le=5.0, description="between-site coefficient of variation of the rate "
                           "(gamma-distributed; 0 = identical sites)")
    cap: int | None = Field(None, ge=1, description="most patients one site randomizes (null: no cap)",
                            json_schema_extra={"unit": "patients"})

    @pydantic.field_validator("activation_months", mode="before")
    @classmethod
    def _pair(cls, value):
        return _interval_pair(value)

    @pydantic.field_validator("activation_months")
    @classmethod
    def _ordered(cls, window):
        if not 0.0 <= window[0] <= window[1]:
            raise ValueError(f"must be [first, last] with 0 <= first <= last, got {list(window)}")
        return window


MAX_CALENDAR_STEPS = 20_000
"""Most steps of the sites' enrollment calendar (max_duration_months / calendar_step_months): every open
site draws its screenings at each step, so a tiny step would make the run never end."""

MAX_SITES = 10_000
"""Most trial sites of a protocol, all groups together (each is a Mesa agent stepped on the calendar)."""


class Enrollment(StrictModel):
    """Uniform accrual over ``duration_months``, or recruitment by ``sites`` on a calendar.

    Uniform accrual: patients enter at the order statistics of uniforms over the period. Sites:
    each open site screens candidates as a Poisson process; candidates meeting the cohort's
    eligibility are randomized; the trial calendar advances in ``calendar_step_months`` steps.
    """

    duration_months: float | None = Field(None, gt=0.0, le=1200.0, description="uniform accrual over this period "
                                          "(instead of sites; at most 1200 months)")
    sites: list[SiteGroup] = Field([], description="site groups (instead of duration_months)")
    calendar_step_months: float = Field(0.25, gt=0.0, le=3.0, description="step of the sites' calendar; "
                                        f"max_duration_months is at most {MAX_CALENDAR_STEPS:,} steps")
    max_duration_months: float = Field(120.0, gt=0.0, le=1200.0, description="with sites: enrollment closes by this "
                                       "date (at most 1200 months)")

    @pydantic.model_validator(mode="after")
    def _one_mode(self) -> Enrollment:
        if (self.duration_months is None) == (not self.sites):
            raise ValueError("give either duration_months (uniform accrual) or sites, not both")
        names = [g.name for g in self.sites]
        if len(set(names)) != len(names):
            raise ValueError("sites: duplicate site group name")
        return self


class FixedFollowUp(StrictModel):
    """Every patient is followed for the same time from randomization."""

    type: Literal["fixed"] = Field(description="selects fixed follow-up")
    duration_months: float = Field(gt=0.0, le=1200.0, description="follow-up of every patient from their "
                                   "randomization (at most 1200 months, 100 years)")


class EventDrivenFollowUp(StrictModel):
    """The analysis happens on the calendar date of the target-th endpoint event."""

    type: Literal["event_driven"] = Field(description="selects event-driven follow-up")
    target_events: int = Field(ge=2, description="endpoint events, both arms together, that trigger the analysis",
                               json_schema_extra={"unit": "events"})
    max_duration_months: float = Field(gt=0.0, le=1200.0, description="analysis by this date (months from the start "
                                       "of enrollment) at the latest (at most 1200 months, 100 years)")


FollowUp = Annotated[Union[FixedFollowUp, EventDrivenFollowUp], Field(discriminator="type")]


class RatePiece(StrictModel):
    """A constant rate on a period of follow-up, up to ``until_month``."""

    until_month: float = Field(gt=0.0, description="end of the period, months since randomization")
    rate_per_year: float = Field(ge=0.0, description="dropout hazard during the period")


class Dropout(StrictModel):
    """Loss to follow-up (exponential, or piecewise exponential); dropped-out patients are censored."""

    rate_per_year: float = Field(0.0, ge=0.0, description="the hazard (after the last piece, if any)")
    piecewise: list[RatePiece] = Field([], description="hazards on successive periods before rate_per_year applies")

    @pydantic.field_validator("piecewise")
    @classmethod
    def _increasing(cls, pieces: list[RatePiece]) -> list[RatePiece]:
        ends = [p.until_month for p in pieces]
        if any(b <= a for a, b in zip(ends, ends[1:])):
            raise ValueError(f"until_month must increase, got {ends}")
        return pieces

    def rates(self) -> tuple[list[float], list[float]]:
        """(period ends in months, rates per month); the last period is open-ended."""
        return ([p.until_month for p in self.piecewise],
                [p.rate_per_year / 12.0 for p in self.piecewise] + [self.rate_per_year / 12.0])


class Discontinuation(StrictModel):
    """Patients on an active arm stop treatment at this hazard; their hazards revert to the control's."""

    rate_per_year: float = Field(gt=0.0, description="hazard of stopping treatment")


class NonAdherence(StrictModel):
    """A share of the patients randomized to an active arm never take the treatment."""

    fraction: float = Field(gt=0.0, lt=1.0, description="share of active-arm patients who never start")


class Crossover(StrictModel):
    """Patients of ``from_arm`` switch to ``to_arm``'s treatment after a disease event."""

    after_event: str = Field(description="the disease event (transition) that triggers the switch")
    from_arm: str | None = Field(None, description="default: the first (control) arm")
    to_arm: str | None = Field(None, description="default: the second (active) arm")
    fraction: float = Field(1.0, gt=0.0, le=1.0, description="share of eligible patients who switch")
    delay_months: float = Field(0.0, ge=0.0, description="time from the event to the switch")


class Conduct(StrictModel):
    """How treatment is actually taken. Switches act from the start of the next model time step."""

    discontinuation: Discontinuation | None = Field(None, description="treatment stops at a constant hazard (null: never)")
    non_adherence: NonAdherence | None = Field(None, description="a share never starts treatment (null: everyone starts)")
    crossover: Crossover | None = Field(None, description="switch to another arm's treatment after an event (null: none)")


class TimeToEventEndpoint(StrictModel):
    """Time from randomization to the first of the named events."""

    type: Literal["time_to_event"] = Field(description="selects a time-to-event endpoint")
    label: str = Field("", description="name shown in outputs (default: the type)")
    events: list[str] = Field(min_length=1, description="disease events (transition names, or the background "
                              "death event) whose first occurrence is the endpoint")


class BiomarkerChangeEndpoint(StrictModel):
    """Change of a biomarker from baseline (month 0) to a visit."""

    type: Literal["biomarker_change"] = Field(description="selects a biomarker-change endpoint")
    label: str = Field("", description="name shown in outputs (default: the type)")
    biomarker: str = Field(description="name of the disease model's biomarker")
    visit_month: float = Field(gt=0.0, description="visit of the primary measurement, months after randomization")


class BinaryEndpoint(StrictModel):
    """A yes/no outcome per patient: an event by a time, or a response at a visit.

    Event by a time (``events`` and ``by_month``): 1 if any of the events happens by ``by_month``
    after randomization, 0 if the patient is followed to ``by_month`` without it; a patient lost
    (dropout, or death that is not one of the events) before ``by_month`` without the event is
    left out (complete-case analysis). Response at a visit (``biomarker``, ``visit_month`` and
    ``below`` or ``above``): 1 if the biomarker measured at the visit is below (above) the
    threshold; a patient who dies or drops out before the visit is left out.
    """

    type: Literal["binary"] = Field(description="selects a binary endpoint")
    label: str = Field("", description="name shown in outputs (default: the type)")
    events: list[str] = Field([], description="event by a time: disease events (transition names, or the "
                              "background death event); any of them counts")
    by_month: float | None = Field(None, gt=0.0, description="event by a time: the event counts if it happens "
                                   "by this many months after randomization")
    biomarker: str | None = Field(None, description="response at a visit: name of the disease model's biomarker")
    visit_month: float | None = Field(None, gt=0.0, description="response at a visit: months after randomization")
    below: float | None = Field(None, description="response at a visit: a responder's measured value is below "
                                "this (give below or above)", json_schema_extra={"unit": "the biomarker's unit"})
    above: float | None = Field(None, description="response at a visit: a responder's measured value is above "
                                "this (give below or above)", json_schema_extra={"unit": "the biomarker's unit"})

    @pydantic.model_validator(mode="after")
    def _one_kind(self) -> BinaryEndpoint:
        by_event = bool(self.events) or self.by_month is not None
        by_visit = any(x is not None for x in (self.biomarker, self.visit_month, self.below, self.above))
        if by_event == by_visit:
            raise ValueError("give either events and by_month (event by a time) or biomarker, visit_month and "
                             "below or above (response at a visit)")
        if by_event and (not self.events or self.by_month is None):
            raise ValueError("an event by a time needs both events and by_month")
        if by_visit:
            if self.biomarker is None or self.visit_month is None:
                raise ValueError("a response at a visit needs biomarker and visit_month")
            if (self.below is None) == (self.above is None):
                raise ValueError("a response at a visit needs a threshold: give below or above (one of them)")
        return self

    @property
    def month(self) -> float:
        """The time at which the outcome is known: by_month or visit_month."""
        return self.by_month if self.by_month is not None else self.visit_month


class CountEndpoint(StrictModel):
    """The number of occurrences of recurrent events per patient over their follow-up (e.g. total
    heart-failure hospitalizations, first and repeat), compared between arms as a rate ratio."""

    type: Literal["count"] = Field(description="selects a count (recurrent-events) endpoint")
    label: str = Field("", description="name shown in outputs (default: the type)")
    events: list[str] = Field(min_length=1, description="disease events (transition names) counted at every "
                              "occurrence; at least one must be able to recur (lead to a non-absorbing state)")
    max_per_patient: int = Field(24, ge=1, le=1000, description="most events kept per patient (their times are "
                                 "needed for lwyy); a run in which a patient has more stops with an error",
                                 json_schema_extra={"unit": "events"})


Endpoint = Annotated[Union[TimeToEventEndpoint, BiomarkerChangeEndpoint, BinaryEndpoint, CountEndpoint],
                     Field(discriminator="type")]


class SecondaryEndpoint(StrictModel):
    """A key secondary endpoint: time from randomization to the first of the named events, analysed at the
    primary analysis's data cut (its final analysis, or the look at which a group-sequential trial stopped)
    with the primary analysis's sidedness, alpha, strata and covariates, and tested in the order listed
    (analysis.secondary_testing)."""

    type: Literal["time_to_event"] = Field("time_to_event", description="the kind of endpoint (time_to_event, "
                                           "the only one for now)")
    name: str = Field(pattern=_NAME, description="identifier; the secondary coordinate of the results")
    label: str = Field("", description="name shown in outputs (default: the name)")
    events: list[str] = Field(min_length=1, description="disease events (transition names, or the background "
                              "death event) whose first occurrence is the endpoint")
    method: Literal["logrank", "cox"] = Field(
        "logrank", description="logrank: log-rank test (stratified with analysis.stratified), Cox hazard ratio; "
        "cox: Wald test of the arm in a Cox model (with analysis.covariates and analysis.stratified)")


TTE_METHODS = ("logrank", "fleming_harrington", "maxcombo", "rmst", "cox")
MARGIN_METHODS = ("logrank", "cox", "rmst", "ancova", "chi_square", "cmh", "logistic", "negative_binomial",
                  "lwyy")  # analyses with a margin test (non-inferiority, equivalence)
MARGIN_RATIO_METHODS = ("logrank", "cox", "logistic", "negative_binomial", "lwyy")
"""Analyses whose estimate is always a ratio (hazard, odds or rate ratio); chi_square and cmh estimate the
measure analysis.measure names."""
METHODS = {"time_to_event": TTE_METHODS, "biomarker_change": ("ancova",),
           "binary": ("chi_square", "cmh", "logistic"), "count": ("negative_binomial", "lwyy")}


class Graph(StrictModel):
    """The graph of the graphical multiple-testing procedure (Bretz, Maurer, Brannath & Posch 2009): one
    hypothesis per active arm (its comparison with the control), in arm order."""

    weights: list[float] = Field(
        description="initial weight of each comparison's hypothesis (its share of alpha), >= 0, summing to at "
        "most 1")
    transitions: list[list[float]] = Field(
        description="transition matrix: row j gives the shares of hypothesis j's weight passed to the others once "
        "it is rejected; entries in [0, 1], zero diagonal, each row summing to at most 1")


class Analysis(StrictModel):
    """The primary analysis.

    Time-to-event: logrank: log-rank test, Cox hazard ratio; fleming_harrington: weighted log-rank
    G(rho, gamma), Cox hazard ratio; maxcombo: the most extreme of several G(rho, gamma), Cox hazard
    ratio; rmst: difference of restricted mean survival time up to tau_months; cox: Wald test of the
    arm's coefficient in a Cox model with the ``covariates`` (stratified with ``stratified``).
    Biomarker change: ancova: change ~ arm + baseline. Binary: chi_square: Pearson chi-square test,
    crude ``measure``; cmh: Cochran-Mantel-Haenszel test over the randomization strata, Mantel-Haenszel
    ``measure``; logistic: Wald test of the arm in a logistic regression on the ``covariates`` (and
    the strata with ``stratified``), odds ratio. Count: negative_binomial: NB2 regression with log
    follow-up offset (on the ``covariates`` and, with ``stratified``, stratum indicators);
    lwyy: Lin-Wei-Yang-Ying proportional rates with a robust variance (on the ``covariates``;
    with ``stratified``, a baseline rate function per stratum); both give the rate ratio, adjusted
    (conditional on the covariates and strata) when they are used.
    """

    method: Literal["logrank", "fleming_harrington", "maxcombo", "rmst", "cox", "ancova", "chi_square", "cmh",
                    "logistic", "negative_binomial", "lwyy"] = Field(
        description="the test and estimate (see above); time-to-event endpoints take logrank, fleming_harrington, "
        "maxcombo, rmst or cox; biomarker_change ancova; binary chi_square, cmh or logistic; count "
        "negative_binomial or lwyy")
    stratified: bool = Field(False, description="analyse within the randomization strata (randomization.strata): "
                             "stratified log-rank and stratified Cox (logrank, fleming_harrington, cox), "
                             "strata indicators (logistic, negative_binomial), a baseline rate function per "
                             "stratum (lwyy); cmh always uses them")
    covariates: list[str] = Field([], description="cohort covariates to adjust for (cox, logistic, "
                                  "negative_binomial, lwyy): numeric or "
                                  "binary names, a categorical's name (its possible levels but the first) or "
                                  "name[level] for one level's indicator")
    measure: Literal["risk_difference", "risk_ratio", "odds_ratio"] | None = Field(
        None, description="binary endpoints: the effect estimated, active vs control (default risk_difference; "
        "logistic estimates the odds_ratio only)")
    rho: float = Field(0.0, ge=0.0, description="fleming_harrington: weight S(t-)^rho (1 - S(t-))^gamma")
    gamma: float = Field(0.0, ge=0.0, description="fleming_harrington: see rho")
    combos: list[tuple[float, float]] = Field(
        [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)], min_length=1,
        description="maxcombo: the (rho, gamma) pairs")
    tau_months: float | None = Field(None, gt=0.0, description="rmst: restriction time")
    alpha: float = Field(0.025, gt=0.0, lt=0.5, description="significance level: reject when the p-value "
                         "(of the given sidedness) is below it")
    sided: Literal["one", "two"] = Field("one", description="one: test for benefit only; two: either direction")
    confidence_level: float = Field(0.95, gt=0.5, lt=1.0, description="level of the confidence interval of the estimate")
    benefit: Literal["lower", "higher"] = Field(
        "lower", description="direction of benefit of the estimate (time-to-event: lower hazard)")
    hypothesis: Literal["superiority", "noninferiority", "equivalence"] = Field(
        "superiority", description="superiority: reject no effect in the favourable direction (a two-sided test "
        "counts only favourable rejections as power and reports harm apart); noninferiority: reject that the "
        "effect is as bad as the margin or worse (shifted test; the confidence interval at 1 - 2 x the level of "
        "one side excludes the margin); equivalence: two one-sided tests (TOST), one at each margin. The level of "
        "one side is alpha (sided: one) or alpha/2 (sided: two). Methods logrank and cox (margin on the hazard "
        "ratio, Cox Wald test), rmst and ancova (margin on the difference), chi_square and cmh (on the measure: "
        "Wald test of the risk difference, or of the log risk or odds ratio), logistic (log odds ratio), "
        "negative_binomial and lwyy (log rate ratio)")
    assurance: bool = Field(
        False, description="draw every hazard ratio given with hazard_ratio_ci once per replicate (a lognormal whose "
        "central 95% spans the interval; effects naming one parameter share the draw, correlated by "
        "parameter_correlations), so that the rejection rate is the assurance, the probability of success averaged "
        "over the uncertain effect, instead of the power at hazard_ratio")
    multiplicity: Literal["none", "bonferroni", "holm", "hochberg", "dunnett", "dunnett_stepdown", "graphical"] = Field(
        "none", description="with three or more arms, how the comparisons of the active arms with the control are "
        "adjusted to keep the family-wise error rate at alpha: none (each at alpha), bonferroni, holm (step-down), "
        "hochberg (step-up), dunnett (single-step, exact multivariate normal with the correlation of the allocation "
        "ratios; multivariate t with the residual degrees of freedom for ancova), dunnett_stepdown (step-down "
        "Dunnett, Dunnett & Tamhane 1991: the closed test of Dunnett tests, more powerful than dunnett), graphical "
        "(the sequentially rejective graph of Bretz et al. 2009, given by graph); with two arms every choice is the "
        "unadjusted test. dunnett and bonferroni also give simultaneous confidence intervals (sci_lower, sci_upper)")
    graph: Graph | None = Field(
        None, description="multiplicity graphical: the hypothesis weights and transition matrix, one hypothesis "
        "per active arm in arm order (required with graphical, refused otherwise)")
    secondary_testing: Literal["hierarchical"] = Field(
        "hierarchical", description="how the key secondary endpoints (secondary_endpoints) are tested: hierarchical "
        "(fixed sequence): the first at the full alpha only if the primary null hypothesis is rejected, each next "
        "one only if all before it are rejected, which keeps the family-wise error rate over the primary and the "
        "secondaries at alpha (with interim looks the secondaries are tested once, at full alpha, at the stopping "
        "look: a common simplification that can exceed alpha, Hung, Wang & O'Neill 2007)")
    margin: float | tuple[float, float] | None = Field(
        None, description="noninferiority: the worst acceptable effect, on the estimate's scale (a hazard, odds, "
        "risk or rate ratio > 1 when benefit is lower, e.g. 1.3; a difference > 0 when benefit is lower, < 0 when "
        "higher, and < 0 for an RMST difference); "
        "equivalence: [lower, upper] around no effect, or one number m for [1/m, m] (ratio) or [-m, m] "
        "(difference)", json_schema_extra={"unit": "the estimate's unit"})

    @pydantic.field_validator("margin", mode="before")
    @classmethod
    def _margin_pair(cls, value):
        return _interval_pair(value) if isinstance(value, (list, tuple)) else value

    @property
    def ratio_scale(self) -> bool:
        """The estimate is a ratio (hazard, odds, risk or rate ratio): margins and estimates on the log scale."""
        return self.method in MARGIN_RATIO_METHODS or self.measure in ("risk_ratio", "odds_ratio")

    @property
    def estimate_benefit(self) -> str:
        """Direction of benefit of the estimate itself: ``benefit``, except an RMST difference (higher is better
        while the hazard's benefit is lower)."""
        return "higher" if self.method == "rmst" else self.benefit

    def benefit_margins(self) -> tuple[float, float]:
        """(low, high) margins on the benefit scale θ (log for a ratio, positive favouring the active arm);
        non-inferiority uses low (< 0), equivalence both. Call only with hypothesis not superiority."""
        from vctrial.trial.estimation import to_benefit

        m = self.margin
        if self.hypothesis == "noninferiority":
            low = float(to_benefit(m, self.ratio_scale, self.estimate_benefit))
            return (low, math.inf)
        pair = tuple(m) if isinstance(m, tuple) else ((1.0 / m, m) if self.ratio_scale else (-m, m))
        a, b = (float(to_benefit(x, self.ratio_scale, self.estimate_benefit)) for x in pair)
        return (min(a, b), max(a, b))


class EfficacyBound(StrictModel):
    """Efficacy bounds by Lan–DeMets alpha spending (obf, pocock, hsd with gamma, power with gamma)."""

    spending: Literal["obf", "pocock", "hsd", "power"] = Field(
        "obf", description="alpha-spending family: obf (O'Brien-Fleming type), pocock (Pocock type), hsd "
        "(Hwang-Shih-DeCani), power (Kim-DeMets t^gamma)")
    gamma: float | None = Field(None, description="hsd (default -4) or power (default 1) parameter")


class BetaSpendingFutility(StrictModel):
    """Non-binding futility bounds by beta spending under the drift at which the design has power 1 - beta."""

    type: Literal["beta_spending"] = Field(description="selects beta-spending futility bounds")
    spending: Literal["obf", "pocock", "hsd", "power"] = Field("hsd", description="beta-spending family (as for efficacy)")
    gamma: float | None = Field(None, description="hsd (default -2) or power (default 1) parameter")
    beta: float = Field(0.1, gt=0.0, lt=0.5, description="type II error spent: the design's power is 1 - beta")


class ConditionalPowerFutility(StrictModel):
    """Non-binding futility: stop when conditional power under the current trend is below threshold."""

    type: Literal["conditional_power"] = Field(description="selects conditional-power futility")
    threshold: float = Field(0.1, gt=0.0, lt=1.0, description="stop for futility when conditional power under the "
                             "current trend is below this")


Futility = Annotated[Union[BetaSpendingFutility, ConditionalPowerFutility], Field(discriminator="type")]


class Looks(StrictModel):
    """Group-sequential analyses at information fractions (events, or patients with the visit)."""

    information_fractions: list[float] = Field(min_length=2, max_length=100, description="increasing, the last 1.0 "
                                               "(the final analysis); at most 100 looks")
    efficacy: EfficacyBound = Field(EfficacyBound(), description="efficacy bounds")
    futility: Futility | None = Field(None, description="non-binding futility bounds (null: none)")
    stopping: Literal["separate", "simultaneous"] = Field("separate", description=(
        "with three or more arms (multi-arm multi-stage): separate, each comparison stops at its own efficacy or "
        "futility crossing and the others go on; simultaneous, the first efficacy crossing of any comparison ends "
        "the trial. Arms are dropped for futility one by one in both"))

    @pydantic.field_validator("information_fractions")
    @classmethod
    def _fractions(cls, f: list[float]) -> list[float]:
        if not (all(0.0 < x <= 1.0 for x in f) and all(b > a for a, b in zip(f, f[1:])) and f[-1] == 1.0):
            raise ValueError(f"must increase within (0, 1] and end with 1.0, got {f}")
        return f


MAX_ARMS = 6
"""Most arms of a trial protocol: the control and up to five active arms, each compared with it."""

MULTIARM_METHODS = ("logrank", "fleming_harrington", "rmst", "cox", "ancova")
"""Analyses available with three or more arms (each active arm against the control, on the two arms' patients)."""


class TrialProtocol(StrictModel):
    """A trial protocol file (``kind: trial``)."""

    kind: Literal["trial"] = Field(description="marks a trial protocol file")
    name: str = Field(description="human-readable name of the protocol")
    description: str = Field("", description="free text")
    cohort: str = Field(description="cohort file, relative to this protocol")
    disease: str = Field(description="disease model file, relative to this protocol")
    sample_size: int = Field(ge=4, le=1_000_000, description="patients to randomize, all arms together (at most "
                             "1,000,000: one replicate's patients are simulated together)",
                             json_schema_extra={"unit": "patients"})
    arms: list[Arm] = Field(min_length=2, max_length=MAX_ARMS, description="control first, then the active arms "
                            f"(at most {MAX_ARMS}); with three or more, each active arm is compared with the control "
                            "(analysis.multiplicity adjusts for the several comparisons)")
    randomization: Randomization = Field(Randomization(), description="how patients are allocated to arms")
    enrollment: Enrollment = Field(description="when patients enter: uniform accrual or sites")
    follow_up: FollowUp = Field(description="when the analysis happens: fixed or event-driven follow-up")
    dropout: Dropout = Field(Dropout(), description="loss to follow-up (default: none)")
    conduct: Conduct = Field(Conduct(), description="how treatment is actually taken (default: as randomized)")
    endpoint: Endpoint = Field(description="the primary endpoint")
    analysis: Analysis = Field(description="the primary analysis")
    secondary_endpoints: list[SecondaryEndpoint] = Field(
        [], description="key secondary endpoints, in their testing order (analysis.secondary_testing); two-arm "
        "trials with a time_to_event primary endpoint only")
    looks: Looks | None = Field(None, description="interim analyses (group-sequential design)")
    sweep: dict[str, list[Any]] = Field(
        {}, description="design parameters to vary, {dotted.key.path: [values]}; each becomes a result dimension. "
        "Every point (at most 1,000) is loaded and checked with the file, as vctrial run loads it")
    parameter_correlations: list[ParameterCorrelation] = Field(
        [], description="correlations [name_a, name_b, rho] between the draws of named effect parameters (the "
        "effects' parameter key; each with a confidence interval), on the log hazard ratio or shift scale; "
        "|rho| < 1, pairs not listed are uncorrelated, and the correlation matrix must be positive definite; used "
        "by the patient twin and by trials with analysis.assurance")

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> TrialProtocol:
        names = [a.name for a in self.arms]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"arms[{i}].name: duplicate arm name {name!r}")
        self._check_multiarm()
        if self.arms[0].effects:
            raise ValueError("arms[0].effects: the first arm is the control and takes no effects")
        tte = self.endpoint.type == "time_to_event"
        method = self.analysis.method
        if method not in METHODS[self.endpoint.type]:
            want = ", ".join(METHODS[self.endpoint.type])
            raise ValueError(f"analysis.method: a {self.endpoint.type} endpoint is analysed by {want}, not {method}")
        self._check_endpoint_options()
        if tte and self.analysis.benefit != "lower":
            raise ValueError("analysis.benefit: for a time-to-event endpoint benefit is a lower hazard ('lower')")
        if method == "rmst" and self.analysis.tau_months is None:
            raise ValueError("analysis.tau_months: rmst needs a restriction time")
        if method == "rmst" and self.analysis.tau_months > self.horizon_months:
            raise ValueError(f"analysis.tau_months: must not exceed the follow-up ({self.horizon_months:g} months)")
        if any(r < 0 or g < 0 for r, g in self.analysis.combos):
            raise ValueError("analysis.combos: rho and gamma must be >= 0")
        if not tte and self.follow_up.type == "event_driven":
            raise ValueError("follow_up.type: event_driven needs a time_to_event endpoint")
        total = sum(a.allocation for a in self.arms)
        rnd = self.randomization
        if rnd.block_size is not None and rnd.block_sizes is not None:
            raise ValueError("randomization.block_sizes: give block_size or block_sizes, not both")
        for i, bs in enumerate(rnd.block_sizes or [rnd.block_size or total]):
            if bs < 1 or bs % total:
                where = f"block_sizes[{i}]" if rnd.block_sizes else "block_size"
                raise ValueError(f"randomization.{where}: must be a multiple of the allocation total {total}, got {bs}")
        if rnd.strata and rnd.method != "permuted_block":
            raise ValueError("randomization.strata: stratification needs method permuted_block")
        for i, st in enumerate(rnd.strata):
            if st in ("site", "region") and not self.enrollment.sites:
                raise ValueError(f"randomization.strata[{i}]: stratifying by {st} needs enrollment.sites")
        if self.looks is not None:
            if self.analysis.sided != "one":
                raise ValueError("analysis.sided: group-sequential bounds are one-sided; use sided: one "
                                 "with alpha the one-sided level")
            if method not in ("logrank", "cox", "ancova", "chi_square", "cmh", "logistic", "negative_binomial", "lwyy"):
                raise ValueError(f"looks: interim analyses use the canonical joint distribution of log-rank, Cox, "
                                 f"ANCOVA, binary (chi_square, cmh, logistic) or count (negative_binomial, lwyy) "
                                 f"statistics; analysis.method {method} is not supported with looks")
            if tte and self.follow_up.type != "event_driven":
                raise ValueError("looks: time-to-event looks are at event counts; use follow_up type event_driven")
        co = self.conduct.crossover
        if co is not None:
            names = [a.name for a in self.arms]
            src, dst = co.from_arm or names[0], co.to_arm or names[1]
            for key, arm in (("from_arm", src), ("to_arm", dst)):
                if arm not in names:
                    raise ValueError(f"conduct.crossover.{key}: unknown arm {arm!r} (arms: {', '.join(names)})")
            if src == dst:
                raise ValueError("conduct.crossover.to_arm: must differ from from_arm")
        for key, values in self.sweep.items():
            if not key or not values:
                raise ValueError(f"sweep: {key!r} needs a non-empty list of values")
        return self

    @pydantic.model_validator(mode="after")
    def _secondaries(self) -> TrialProtocol:
        """Key secondary endpoints: two arms, a time-to-event primary endpoint, distinct names."""
        if not self.secondary_endpoints:
            return self
        if self.endpoint.type != "time_to_event":
            raise ValueError(f"secondary_endpoints: key secondary endpoints need a time_to_event primary endpoint "
                             f"(this is a {self.endpoint.type} endpoint)")
        if len(self.arms) != 2:
            raise ValueError(f"secondary_endpoints: key secondary endpoints are available for two-arm trials only "
                             f"(this one has {len(self.arms)} arms)")
        names = [s.name for s in self.secondary_endpoints]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"secondary_endpoints[{i}].name: duplicate secondary endpoint name {name!r}")
        return self

    def _check_multiarm(self) -> None:
        """Three or more arms: fixed superiority designs of the analyses that compare each active arm with
        the control (others are not available yet)."""
        a = self.analysis
        self._check_graph()
        if len(self.arms) == 2:
            return
        many = f"with {len(self.arms)} arms"
        if self.endpoint.type not in ("time_to_event", "biomarker_change"):
            raise ValueError(f"endpoint.type: {many} the endpoint must be time_to_event or biomarker_change, not "
                             f"{self.endpoint.type} (several arms are not available yet for it)")
        if a.method not in MULTIARM_METHODS:
            raise ValueError(f"analysis.method: {many} the analysis is one of {', '.join(MULTIARM_METHODS)}, not "
                             f"{a.method}")
        if self.looks is not None:
            from vctrial.trial import mams

            if a.multiplicity not in mams.PROCEDURES:
                raise ValueError(f"analysis.multiplicity: {many} and looks (multi-arm multi-stage) the bounds are "
                                 f"adjusted by one of {', '.join(mams.PROCEDURES)}, not {a.multiplicity}")
            cells = (len(self.arms) - 1) * len(self.looks.information_fractions)
            if a.multiplicity == "dunnett" and cells > mams.MAX_DIMENSION:
                raise ValueError(f"looks.information_fractions: {many} Dunnett bounds are computed for at most "
                                 f"{mams.MAX_DIMENSION} comparisons x looks, got {cells} (use bonferroni, or fewer "
                                 "looks)")
        if a.hypothesis != "superiority":
            raise ValueError(f"analysis.hypothesis: {many} only superiority is available, not {a.hypothesis}")

    def _check_graph(self) -> None:
        """analysis.graph: given exactly with multiplicity graphical, one hypothesis per active arm, weights and
        transitions as Bretz et al. (2009) require."""
        a, key = self.analysis, "analysis.graph"
        if a.graph is None:
            if a.multiplicity == "graphical":
                raise ValueError(f"{key}: multiplicity graphical needs the graph (weights and transitions)")
            return
        if a.multiplicity != "graphical":
            raise ValueError(f"{key}: only multiplicity graphical takes a graph (multiplicity is {a.multiplicity})")
        C = len(self.arms) - 1
        w, g = a.graph.weights, a.graph.transitions
        if len(w) != C:
            raise ValueError(f"{key}.weights: one weight per active arm ({C}), got {len(w)}")
        for j, x in enumerate(w):
            if x < 0:
                raise ValueError(f"{key}.weights[{j}]: must be >= 0, got {x!r}")
        if sum(w) > 1 + 1e-9:
            raise ValueError(f"{key}.weights: must sum to at most 1, got {sum(w):g}")
        if len(g) != C:
            raise ValueError(f"{key}.transitions: a {C}x{C} matrix (one row per active arm), got {len(g)} rows")
        for j, row in enumerate(g):
            if len(row) != C:
                raise ValueError(f"{key}.transitions[{j}]: {C} entries (one per active arm), got {len(row)}")
            for k, x in enumerate(row):
                if not 0 <= x <= 1:
                    raise ValueError(f"{key}.transitions[{j}][{k}]: must be in [0, 1], got {x!r}")
            if row[j] != 0:
                raise ValueError(f"{key}.transitions[{j}][{j}]: the diagonal must be 0, got {row[j]!r}")
            if sum(row) > 1 + 1e-9:
                raise ValueError(f"{key}.transitions[{j}]: a row must sum to at most 1, got {sum(row):g}")

    def _check_endpoint_options(self) -> None:
        """Stratification, covariates and the binary measure fit the endpoint and method."""
        a, kind = self.analysis, self.endpoint.type
        method = a.method
        if (a.stratified or method == "cmh") and not self.randomization.strata:
            key = "stratified" if a.stratified else "method"
            raise ValueError(f"analysis.{key}: the analysis strata are the randomization strata; "
                             "randomization.strata names none")
        if a.stratified and method not in ("logrank", "fleming_harrington", "cox", "cmh", "logistic",
                                           "negative_binomial", "lwyy"):
            raise ValueError(f"analysis.stratified: method {method} has no stratified form (time-to-event: logrank, "
                             "fleming_harrington, cox; binary: cmh, logistic; count: negative_binomial, lwyy)")
        if a.covariates and method not in ("cox", "logistic", "negative_binomial", "lwyy"):
            raise ValueError(f"analysis.covariates: method {method} does not adjust for covariates (time-to-event: "
                             "cox; binary: logistic; count: negative_binomial, lwyy)")
        if len(set(a.covariates)) != len(a.covariates):
            raise ValueError("analysis.covariates: a covariate is named twice")
        if kind != "binary" and a.measure is not None:
            raise ValueError(f"analysis.measure: only binary endpoints take a measure (this is a {kind} endpoint)")
        if method == "logistic" and a.measure not in (None, "odds_ratio"):
            raise ValueError(f"analysis.measure: logistic regression estimates the odds_ratio, not {a.measure}")
        ep = self.endpoint
        if kind == "binary" and ep.month > self.horizon_months:
            key = "by_month" if ep.by_month is not None else "visit_month"
            raise ValueError(f"endpoint.{key}: {ep.month:g} is after the end of follow-up "
                             f"({self.horizon_months:g} months)")

    @property
    def measure(self) -> str | None:
        """The binary endpoint's effect measure (None for other endpoints)."""
        if self.endpoint.type != "binary":
            return None
        return self.analysis.measure or ("odds_ratio" if self.analysis.method == "logistic" else "risk_difference")

    @pydantic.model_validator(mode="after")
    def _assurance(self) -> TrialProtocol:
        """Assurance draws constant or delayed/waning hazard ratios with an interval; nothing else."""
        if not self.analysis.assurance:
            return self
        uncertain = False
        for a, arm in enumerate(self.arms):
            for j, e in enumerate(arm.effects):
                if isinstance(e, BiomarkerEffect) and e.shift_ci is not None:
                    raise ValueError(f"arms[{a}].effects[{j}].shift_ci: analysis.assurance draws hazard ratios only; "
                                     "give the biomarker shift without an interval")
                if isinstance(e, HazardEffect) and e.hazard_ratio_ci is not None:
                    if getattr(e, "piecewise", None):
                        raise ValueError(f"arms[{a}].effects[{j}].hazard_ratio_ci: analysis.assurance cannot draw a "
                                         "piecewise effect; give it without an interval")
                    uncertain = True
        if not uncertain:
            raise ValueError("analysis.assurance: no effect gives hazard_ratio_ci, so there is nothing to draw")
        return self

    @pydantic.model_validator(mode="after")
    def _margins(self) -> TrialProtocol:
        """A margin goes with a non-inferiority or equivalence hypothesis, on the side of the null it must."""
        a = self.analysis
        if a.hypothesis == "superiority":
            if a.margin is not None:
                raise ValueError("analysis.margin: a margin needs hypothesis noninferiority or equivalence")
            return self
        if a.margin is None:
            raise ValueError(f"analysis.margin: hypothesis {a.hypothesis} needs a margin")
        if a.method not in MARGIN_METHODS:
            raise ValueError(f"analysis.hypothesis: {a.hypothesis} is tested with methods {', '.join(MARGIN_METHODS)}"
                             f", not {a.method}")
        null, scale = (1.0, "ratio") if a.ratio_scale else (0.0, "difference")
        m = a.margin
        if a.hypothesis == "noninferiority":
            if isinstance(m, tuple):
                raise ValueError("analysis.margin: non-inferiority takes one margin (the worst acceptable effect), "
                                 f"got {list(m)}")
            if a.ratio_scale and m <= 0.0:
                raise ValueError(f"analysis.margin: a {scale} margin must be > 0, got {m:g}")
            worse = m > null if a.estimate_benefit == "lower" else m < null
            if not worse:
                side = ">" if a.estimate_benefit == "lower" else "<"
                raise ValueError(f"analysis.margin: with benefit {a.estimate_benefit} a non-inferiority {scale} margin is the "
                                 f"worst acceptable effect, on the harmful side of {null:g}: must be {side} {null:g}, "
                                 f"got {m:g}")
        else:
            if isinstance(m, tuple):
                if not (m[0] < null < m[1]) or (a.ratio_scale and m[0] <= 0.0):
                    low = "0 < " if a.ratio_scale else ""
                    raise ValueError(f"analysis.margin: equivalence margins [lower, upper] must satisfy {low}lower < "
                                     f"{null:g} < upper ({scale}), got {list(m)}")
            elif not m > null:
                form = "[1/m, m]" if a.ratio_scale else "[-m, m]"
                raise ValueError(f"analysis.margin: one equivalence margin m gives {form} and must be > {null:g}, "
                                 f"got {m:g}")
            if self.looks is not None:
                raise ValueError("analysis.hypothesis: equivalence is tested in fixed designs only; remove looks")
        return self

    @pydantic.model_validator(mode="after")
    def _bounds_exist(self) -> TrialProtocol:
        """The group-sequential bounds can be computed (as the run computes them), so that a spending
        setting the solver cannot meet (beta 1e-300) is refused here, not by every replicate."""
        if self.looks is None:
            return self
        from vctrial.trial.sequential import design

        eff, fut = self.looks.efficacy, self.looks.futility
        gamma = eff.gamma if eff.gamma is not None else (-4.0 if eff.spending == "hsd" else None)
        kw: dict[str, Any] = {}
        if fut is not None and fut.type == "beta_spending":
            kw = {"futility": fut.spending, "beta": fut.beta,
                  "futility_gamma": fut.gamma if fut.gamma is not None else (-2.0 if fut.spending == "hsd" else None)}
        try:
            design(self.looks.information_fractions, self.comparison_alpha, eff.spending, gamma, **kw)
        except (ValueError, ArithmeticError) as exc:
            raise ValueError(f"looks: the bounds cannot be computed: {exc}") from None
        return self

    @pydantic.model_validator(mode="after")
    def _shared_parameters(self) -> TrialProtocol:
        """Effects sharing a parameter agree; correlations name uncertain parameters and are positive definite."""
        import numpy as np

        first: dict[str, tuple[str, Any]] = {}  # parameter -> (key path of its first effect, the effect)
        for i, arm in enumerate(self.arms):
            for j, e in enumerate(arm.effects):
                if getattr(e, "parameter", None) is None:
                    continue
                where = f"arms[{i}].effects[{j}]"
                if e.parameter not in first:
                    first[e.parameter] = (where, e)
                    continue
                other_where, other = first[e.parameter]
                if isinstance(e, HazardEffect) != isinstance(other, HazardEffect):
                    kinds = ["a hazard effect" if isinstance(x, HazardEffect) else "a biomarker effect"
                             for x in (e, other)]
                    raise ValueError(f"{where}.parameter: {e.parameter!r} is {kinds[1]} at {other_where} but "
                                     f"{kinds[0]} here; effects sharing a parameter must be of one kind")
                mine, theirs = _parameter_value(e), _parameter_value(other)
                if mine != theirs:
                    raise ValueError(f"{where}.parameter: effects sharing parameter {e.parameter!r} must give the "
                                     f"same value and interval; {other_where} gives {_show(theirs)}, this one "
                                     f"{_show(mine)}")
        uncertain = [name for name, (_, e) in first.items() if _parameter_value(e)[1] is not None]
        pairs: dict[frozenset, int] = {}
        for k, (a, b, rho) in enumerate(self.parameter_correlations):
            where = f"parameter_correlations[{k}]"
            for name in (a, b):
                if name not in first:
                    raise ValueError(f"{where}: unknown parameter {name!r} (named by the effects' parameter key: "
                                     f"{', '.join(first) or 'none'})")
                if name not in uncertain:
                    raise ValueError(f"{where}: parameter {name!r} has no confidence interval (hazard_ratio_ci or "
                                     "shift_ci), so it is not drawn and cannot be correlated")
            if a == b:
                raise ValueError(f"{where}: correlates {a!r} with itself")
            if not (math.isfinite(rho) and abs(rho) < 1.0):
                raise ValueError(f"{where}: rho must be strictly between -1 and 1, got {rho}")
            pair = frozenset((a, b))
            if pair in pairs:
                raise ValueError(f"{where}: the pair {a!r}, {b!r} is already given at "
                                 f"parameter_correlations[{pairs[pair]}]")
            pairs[pair] = k
        if self.parameter_correlations:
            names = sorted({n for a, b, _ in self.parameter_correlations for n in (a, b)})
            if np.linalg.eigvalsh(parameter_correlation_matrix(names, self.parameter_correlations)).min() <= 1e-10:
                raise ValueError(f"parameter_correlations: the correlation matrix of {', '.join(names)} is not "
                                 "positive definite (the correlations contradict each other)")
        return self

    @property
    def block_size(self) -> int:
        return self.randomization.block_size or 2 * sum(a.allocation for a in self.arms)

    @property
    def block_sizes(self) -> list[int]:
        """The block sizes permuted blocks are drawn from."""
        return list(self.randomization.block_sizes or [self.block_size])

    @property
    def comparison_alpha(self) -> float:
        """The one-sided level each comparison's group-sequential bounds spend: alpha with two arms; with
        several arms and looks, the multi-arm multi-stage level of analysis.multiplicity
        (:func:`vctrial.trial.mams.comparison_alpha`)."""
        a = self.analysis
        if len(self.arms) == 2 or self.looks is None:
            return a.alpha
        from vctrial.trial import mams

        eff = self.looks.efficacy
        gamma = eff.gamma if eff.gamma is not None else (-4.0 if eff.spending == "hsd" else None)
        return mams.comparison_alpha(self.looks.information_fractions, a.alpha, eff.spending, gamma,
                                     [arm.allocation for arm in self.arms], a.multiplicity)

    @property
    def horizon_months(self) -> float:
        """The longest time any patient can be followed from randomization."""
        fu = self.follow_up
        return fu.duration_months if fu.type == "fixed" else fu.max_duration_months


class Protocol:
    """A loaded protocol with its cohort and disease model resolved and cross-checked."""

    def __init__(self, path: Path, spec: TrialProtocol, text: str, cohort, disease: DiseaseSpec):
        self.path = path
        self.spec = spec
        self.text = text
        self.cohort = cohort
        self.disease = disease

    @property
    def is_null(self) -> bool:
        """True when no active arm has any effect (the global null: then rejections are type I errors)."""
        return all(self.arm_is_null(a) for a in range(1, len(self.spec.arms)))

    def arm_is_null(self, index: int) -> bool:
        """True when arm ``index`` has no effect at all (its comparison with the control is under the null)."""
        for e in self.spec.arms[index].effects:
            if isinstance(e, HazardEffect) and (e.hazard_ratio != 1.0
                                                or any(p.hazard_ratio != 1.0 for p in getattr(e, "piecewise", []))):
                return False
            if isinstance(e, BiomarkerEffect) and (e.shift != 0.0 or e.slope_change_per_year != 0.0):
                return False
        return True


def load_protocol(path: str | Path, overrides: dict | None = None) -> Protocol:
    """Read a protocol, its cohort and disease files, and check that they fit together."""
    from vctrial.spec.cohort import load_cohort

    path = Path(path)
    data = read_yaml(path)
    if overrides:
        data = _apply(data, overrides, path)
    spec = validate(data, TrialProtocol, path)
    cohort = _resolve(path, "cohort", spec.cohort, load_cohort)
    disease = _resolve(path, "disease", spec.disease, load_disease)
    _cross_check(path, spec, cohort, disease)
    _check_sizes(path, spec, disease)
    protocol = Protocol(path, spec, path.read_text(encoding="utf-8"), cohort, disease)
    if spec.sweep and "sweep" not in (overrides or {}):
        from vctrial.trial.design import sweep_axes, sweep_protocols

        sweep_protocols(path, sweep_axes(path), overrides)  # every point, as vctrial run loads them
    return protocol


MAX_STEPS = 20_000
"""Most disease-model steps one simulated patient may take (follow-up / time_step_months): the kernel's
per-step arrays and the run time grow with it (daily steps over 50 years are 18,263)."""


def _check_sizes(path: Path, spec: TrialProtocol, disease: DiseaseSpec) -> None:
    """The follow-up is a bounded number of the disease model's steps, the sites' calendar of its own steps."""
    enr = spec.enrollment
    if enr.sites:
        calendar = enr.max_duration_months / enr.calendar_step_months
        if calendar > MAX_CALENDAR_STEPS:
            raise SpecError(str(path), "enrollment.calendar_step_months", f"{enr.max_duration_months:g} months of "
                            f"enrollment are {calendar:,.0f} calendar steps of {enr.calendar_step_months:g} months; at "
                            f"most {MAX_CALENDAR_STEPS:,}")
        sites = sum(g.count for g in enr.sites)
        if sites > MAX_SITES:
            raise SpecError(str(path), "enrollment.sites", f"{sites:,} sites in all; at most {MAX_SITES:,}")
    steps = spec.horizon_months / disease.time_step_months
    if steps > MAX_STEPS:
        key = "follow_up.duration_months" if spec.follow_up.type == "fixed" else "follow_up.max_duration_months"
        raise SpecError(str(path), key, f"{spec.horizon_months:g} months are {steps:,.0f} steps of the disease "
                        f"model's {disease.time_step_months:g} months; at most {MAX_STEPS:,} (a shorter follow-up, "
                        f"or a longer time_step_months in {spec.disease})")


def _apply(data, overrides: dict, path: Path):
    """Return a copy of the parsed YAML with dotted-path overrides applied (for sweeps)."""
    import copy

    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = _child(node, part, dotted, path)
        last = parts[-1]
        value = copy.deepcopy(value)  # later overrides below this key must not edit the caller's object
        if isinstance(node, list):
            node[_index(node, last, dotted, path)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise SpecError(str(path), dotted, "cannot set a key inside a scalar")
    return data


def _child(node, part: str, dotted: str, path: Path):
    if isinstance(node, dict) and part in node and node[part] is not None:
        return node[part]
    if isinstance(node, dict):  # a block left to its defaults: create it (strict validation catches typos)
        node[part] = {}
        return node[part]
    if isinstance(node, list):
        return node[_index(node, part, dotted, path)]
    raise SpecError(str(path), dotted, f"no key {part!r} to override")


def _index(node: list, part: str, dotted: str, path: Path) -> int:
    """List items are addressed by number or by their ``name``."""
    if part.isdigit() and int(part) < len(node):
        return int(part)
    for i, item in enumerate(node):
        if isinstance(item, dict) and item.get("name") == part:
            return i
    raise SpecError(str(path), dotted, f"no list item {part!r}")


def _resolve(protocol_path: Path, key: str, ref: str, loader):
    target = (protocol_path.parent / ref).resolve()
    if not target.is_file():
        raise SpecError(str(protocol_path), key, f"referenced file not found: {ref} (looked for {target})")
    return loader(target)


def _cross_check(path: Path, spec: TrialProtocol, cohort, disease: DiseaseSpec) -> None:
    file = str(path)
    events = disease.event_names
    transitions = {t.name for t in disease.transitions}
    biomarkers = {b.name for b in disease.biomarkers}
    for i, arm in enumerate(spec.arms):
        for j, e in enumerate(arm.effects):
            where = f"arms[{i}].effects[{j}]"
            if isinstance(e, HazardEffect) and e.transition not in transitions:
                raise SpecError(file, where + ".transition",
                                f"unknown transition {e.transition!r} (disease has: {', '.join(sorted(transitions))})")
            if isinstance(e, BiomarkerEffect) and e.biomarker not in biomarkers:
                raise SpecError(file, where + ".biomarker",
                                f"unknown biomarker {e.biomarker!r} (disease has: {', '.join(sorted(biomarkers)) or 'none'})")
    ep = spec.endpoint
    if ep.type in ("binary", "count"):
        _check_new_endpoint(file, spec, cohort, disease)
    elif ep.type == "time_to_event":
        for j, ev in enumerate(ep.events):
            if ev not in events:
                raise SpecError(file, f"endpoint.events[{j}]", f"unknown event {ev!r} (disease has: {', '.join(events)})")
    elif ep.biomarker not in biomarkers:
        raise SpecError(file, "endpoint.biomarker",
                        f"unknown biomarker {ep.biomarker!r} (disease has: {', '.join(sorted(biomarkers)) or 'none'})")
    elif ep.visit_month > spec.horizon_months:
        raise SpecError(file, "endpoint.visit_month", "is after the end of follow-up")
    elif abs(ep.visit_month / disease.time_step_months - round(ep.visit_month / disease.time_step_months)) > 1e-9:
        raise SpecError(file, "endpoint.visit_month", f"must be a whole number of the disease model's steps "
                        f"({disease.time_step_months:g} months), got {ep.visit_month:g}")
    co = spec.conduct.crossover
    if co is not None and co.after_event not in events:
        raise SpecError(file, "conduct.crossover.after_event",
                        f"unknown event {co.after_event!r} (disease has: {', '.join(events)})")
    for i, sec in enumerate(spec.secondary_endpoints):
        for j, ev in enumerate(sec.events):
            if ev not in events:
                raise SpecError(file, f"secondary_endpoints[{i}].events[{j}]",
                                f"unknown event {ev!r} (disease has: {', '.join(events)})")
    _check_strata(file, spec, cohort)
    if ep.type == "time_to_event":
        _check_covariates(file, spec, cohort)
    known = set(cohort.names) | {f"{name}[{level}]" for name, levels in cohort.levels().items() for level in levels}
    for key, col in disease.covariates_used():
        if col not in known:
            raise SpecError(str(disease.path), key,
                            f"cohort {spec.cohort} has no covariate {col!r} (has: {', '.join(sorted(known))})")
    _check_start_states(spec, cohort, disease)


def _check_new_endpoint(file: str, spec: TrialProtocol, cohort, disease: DiseaseSpec) -> None:
    """A binary or count endpoint names what the disease model produces; covariates exist in the cohort."""
    ep = spec.endpoint
    events = list(disease.event_names)
    for j, ev in enumerate(ep.events):
        if ev not in events:
            raise SpecError(file, f"endpoint.events[{j}]", f"unknown event {ev!r} (disease has: {', '.join(events)})")
    if ep.type == "count":
        absorbing = {s.name for s in disease.states if s.absorbing}
        targets = {t.name: t.to for t in disease.transitions}
        if all(targets.get(ev) in absorbing or ev not in targets for ev in ep.events):
            recur = [t.name for t in disease.transitions if t.to not in absorbing]
            raise SpecError(file, "endpoint.events", "none of these events can happen more than once (each ends in "
                            f"an absorbing state): count at least one of {', '.join(recur) or 'none'}, or use a "
                            "time_to_event endpoint")
    elif ep.biomarker is not None:
        biomarkers = {b.name for b in disease.biomarkers}
        if ep.biomarker not in biomarkers:
            raise SpecError(file, "endpoint.biomarker", f"unknown biomarker {ep.biomarker!r} (disease has: "
                            f"{', '.join(sorted(biomarkers)) or 'none'})")
        steps = ep.visit_month / disease.time_step_months
        if abs(steps - round(steps)) > 1e-9:
            raise SpecError(file, "endpoint.visit_month", f"must be a whole number of the disease model's steps "
                            f"({disease.time_step_months:g} months), got {ep.visit_month:g}")
    _check_covariates(file, spec, cohort)


def _check_covariates(file: str, spec: TrialProtocol, cohort) -> None:
    """Analysis covariates are cohort columns or level indicators name[level]."""
    known = set(cohort.names) | {f"{name}[{level}]" for name, levels in cohort.levels().items() for level in levels}
    for j, name in enumerate(spec.analysis.covariates):
        if name not in known:
            raise SpecError(file, f"analysis.covariates[{j}]", f"cohort {spec.cohort} has no covariate {name!r} "
                            f"(has: {', '.join(sorted(cohort.names))}; a categorical level as name[level])")


def covariate_columns(spec: TrialProtocol, cohort) -> list[str]:
    """The analysis covariates as model columns: a categorical's name becomes the indicators of its
    possible levels (probability > 0) but the first of them, the reference."""
    out = []
    for name in spec.analysis.covariates:
        cov = cohort.covariates.get(name)
        if cov is not None and hasattr(cov, "levels"):
            possible = [lv for lv, p in zip(cov.levels, cov.p) if p > 0.0]
            out.extend(f"{name}[{lv}]" for lv in possible[1:])
        else:
            out.append(name)
    return out


def _check_start_states(spec: TrialProtocol, cohort, disease: DiseaseSpec) -> None:
    """The levels of the cohort's start-state covariate are non-absorbing states of the disease model."""
    if cohort.start is None:
        return
    states = [s.name for s in disease.states]
    live = [s.name for s in disease.states if not s.absorbing]
    name = cohort.start.state
    for level in cohort.levels()[name]:
        if level not in live:
            why = "an absorbing state" if level in states else "not a state"
            raise SpecError(cohort.source, "start.state",
                            f"level {level!r} of {name!r} is {why} of disease {spec.disease} "
                            f"(non-absorbing states: {', '.join(live)})")


def _check_strata(file: str, spec: TrialProtocol, cohort) -> None:
    """Strata name binary or categorical covariates, or cut numeric ones."""
    from vctrial.spec.cohort import BinaryCovariate, CategoricalCovariate

    for i, st in enumerate(spec.randomization.strata):
        where = f"randomization.strata[{i}]"
        if isinstance(st, CutStratum):
            if st.covariate not in cohort.names:
                raise SpecError(file, where + ".covariate",
                                f"cohort has no covariate {st.covariate!r} (has: {', '.join(cohort.names)})")
            if isinstance(cohort.covariates.get(st.covariate), (BinaryCovariate, CategoricalCovariate)):
                raise SpecError(file, where + ".cuts", f"{st.covariate!r} is not numeric; name it without cuts")
        elif st not in ("site", "region"):
            cov = cohort.covariates.get(st)
            if not isinstance(cov, (BinaryCovariate, CategoricalCovariate)):
                kinds = [n for n, c in cohort.covariates.items() if isinstance(c, (BinaryCovariate, CategoricalCovariate))]
                why = (f"{st!r} is numeric; stratify it with {{covariate: {st}, cuts: [...]}}" if st in cohort.names
                       else f"unknown covariate {st!r}")
                raise SpecError(file, where, f"{why} (binary or categorical covariates: {', '.join(kinds) or 'none'}; "
                                "or 'site', 'region')")
