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
    the patient twin draws it per parameter draw from a lognormal centred on ``hazard_ratio``
    whose central 95% spans the interval.
    """

    transition: str = Field(description="name of the disease transition whose hazard is multiplied")
    hazard_ratio: float = Field(gt=0.0, description="multiplier of the transition's hazard (< 1: fewer events)")
    hazard_ratio_ci: tuple[float, float] | None = Field(
        None, description="95% confidence interval [lower, upper] around hazard_ratio; used by the patient twin "
        "(parameter uncertainty), ignored by trial simulation")

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
    return type(value).__name__


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


class Enrollment(StrictModel):
    """Uniform accrual over ``duration_months``, or recruitment by ``sites`` on a calendar.

    Uniform accrual: patients enter at the order statistics of uniforms over the period. Sites:
    each open site screens candidates as a Poisson process; candidates meeting the cohort's
    eligibility are randomized; the trial calendar advances in ``calendar_step_months`` steps.
    """

    duration_months: float | None = Field(None, gt=0.0, description="uniform accrual over this period "
                                          "(instead of sites)")
    sites: list[SiteGroup] = Field([], description="site groups (instead of duration_months)")
    calendar_step_months: float = Field(0.25, gt=0.0, le=3.0, description="step of the sites' calendar")
    max_duration_months: float = Field(120.0, gt=0.0, description="with sites: enrollment closes by this date")

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
    duration_months: float = Field(gt=0.0, description="follow-up of every patient from their randomization")


class EventDrivenFollowUp(StrictModel):
    """The analysis happens on the calendar date of the target-th endpoint event."""

    type: Literal["event_driven"] = Field(description="selects event-driven follow-up")
    target_events: int = Field(ge=2, description="endpoint events, both arms together, that trigger the analysis",
                               json_schema_extra={"unit": "events"})
    max_duration_months: float = Field(gt=0.0, description="analysis by this date (months from the start of enrollment) at the latest")


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


Endpoint = Annotated[Union[TimeToEventEndpoint, BiomarkerChangeEndpoint], Field(discriminator="type")]


TTE_METHODS = ("logrank", "fleming_harrington", "maxcombo", "rmst")


class Analysis(StrictModel):
    """The primary analysis.

    logrank: log-rank test, Cox hazard ratio; fleming_harrington: weighted log-rank G(rho, gamma),
    Cox hazard ratio; maxcombo: the most extreme of several G(rho, gamma), Cox hazard ratio; rmst:
    difference of restricted mean survival time up to tau_months; ancova: change ~ arm + baseline.
    """

    method: Literal["logrank", "fleming_harrington", "maxcombo", "rmst", "ancova"] = Field(
        description="the test and estimate (see above); time-to-event endpoints take the first four, biomarker "
        "endpoints ancova")
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

    information_fractions: list[float] = Field(min_length=2, description="increasing, the last 1.0 (the final analysis)")
    efficacy: EfficacyBound = Field(EfficacyBound(), description="efficacy bounds")
    futility: Futility | None = Field(None, description="non-binding futility bounds (null: none)")

    @pydantic.field_validator("information_fractions")
    @classmethod
    def _fractions(cls, f: list[float]) -> list[float]:
        if not (all(0.0 < x <= 1.0 for x in f) and all(b > a for a, b in zip(f, f[1:])) and f[-1] == 1.0):
            raise ValueError(f"must increase within (0, 1] and end with 1.0, got {f}")
        return f


class TrialProtocol(StrictModel):
    """A trial protocol file (``kind: trial``)."""

    kind: Literal["trial"] = Field(description="marks a trial protocol file")
    name: str = Field(description="human-readable name of the protocol")
    description: str = Field("", description="free text")
    cohort: str = Field(description="cohort file, relative to this protocol")
    disease: str = Field(description="disease model file, relative to this protocol")
    sample_size: int = Field(ge=4, description="patients to randomize, all arms together",
                             json_schema_extra={"unit": "patients"})
    arms: list[Arm] = Field(min_length=2, max_length=2, description="control first, then active")
    randomization: Randomization = Field(Randomization(), description="how patients are allocated to arms")
    enrollment: Enrollment = Field(description="when patients enter: uniform accrual or sites")
    follow_up: FollowUp = Field(description="when the analysis happens: fixed or event-driven follow-up")
    dropout: Dropout = Field(Dropout(), description="loss to follow-up (default: none)")
    conduct: Conduct = Field(Conduct(), description="how treatment is actually taken (default: as randomized)")
    endpoint: Endpoint = Field(description="the primary endpoint")
    analysis: Analysis = Field(description="the primary analysis")
    looks: Looks | None = Field(None, description="interim analyses (group-sequential design)")
    sweep: dict[str, list[Any]] = Field(
        {}, description="design parameters to vary, {dotted.key.path: [values]}; each becomes a result dimension")
    parameter_correlations: list[ParameterCorrelation] = Field(
        [], description="correlations [name_a, name_b, rho] between the draws of named effect parameters (the "
        "effects' parameter key; each with a confidence interval), on the log hazard ratio or shift scale; "
        "|rho| < 1, pairs not listed are uncorrelated, and the correlation matrix must be positive definite; used "
        "by the patient twin, ignored by trial simulation")

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> TrialProtocol:
        if self.arms[0].name == self.arms[1].name:
            raise ValueError("arms: duplicate arm name")
        if self.arms[0].effects:
            raise ValueError("arms[0].effects: the first arm is the control and takes no effects")
        tte = self.endpoint.type == "time_to_event"
        method = self.analysis.method
        if tte != (method in TTE_METHODS):
            want = ", ".join(TTE_METHODS) if tte else "ancova"
            raise ValueError(f"analysis.method: a {self.endpoint.type} endpoint is analysed by {want}")
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
            if method not in ("logrank", "ancova"):
                raise ValueError(f"looks: interim analyses use the canonical joint distribution of log-rank or "
                                 f"ANCOVA statistics; analysis.method {method} is not supported with looks")
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
            design(self.looks.information_fractions, self.analysis.alpha, eff.spending, gamma, **kw)
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
        """True when the active arm has no effect at all (then rejections are type I errors)."""
        for e in self.spec.arms[1].effects:
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
    return Protocol(path, spec, path.read_text(encoding="utf-8"), cohort, disease)


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
    if ep.type == "time_to_event":
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
    _check_strata(file, spec, cohort)
    known = set(cohort.names) | {f"{name}[{level}]" for name, levels in cohort.levels().items() for level in levels}
    for key, col in disease.covariates_used():
        if col not in known:
            raise SpecError(str(disease.path), key,
                            f"cohort {spec.cohort} has no covariate {col!r} (has: {', '.join(sorted(known))})")
    _check_start_states(spec, cohort, disease)


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
