"""Typed population-scenario spec (``kind: population``): who lives there, what disease, what is
done to them, and which scenarios to compare.

A population file names its population (size, an age–sex structure from a shipped pyramid, other
covariates from a cohort file, regions), the horizon, demography, the disease (a chronic
multi-state model file, or an inline infection model), the interventions, costs, outputs and the
scenarios. The first scenario is the baseline; every other one is compared with it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import pydantic
from pydantic import Field
from pydantic_core import PydanticCustomError

from vctrial.errors import SpecError
from vctrial.spec.base import StrictModel, read_yaml, validate
from vctrial.spec.disease import DiseaseSpec, load_disease
from vctrial.spec.protocol import HazardEffect

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
INFECTION_STATES = ("susceptible", "exposed", "infectious", "recovered", "dead")
DAYS_PER_YEAR = 365.25

MAX_STEPS = 40_000
"""Most kernel steps of a population run (horizon / model step): chronic models step by the disease's
time_step_months, infection models by the day (100 years are 36,525 days)."""

BYTES_PER_PERSON = {"chronic": 400, "infection": 150}
"""Memory one simulated person takes at least, measured here (chronic: about 520 bytes, infection: 200 with
households): a replicate whose people need more than the machine's memory is refused when the file is loaded."""

MAX_PERSON_STEPS = 10**12
"""Most person-steps (population size x kernel steps) of one scenario of one replicate, about half an
hour of one core at the kernels' speed here: a larger run does not finish in a working day."""


def _fail(loc: tuple[Any, ...], message: str) -> None:
    """Raise a validation error at ``loc`` (keys relative to the model being validated)."""
    raise pydantic.ValidationError.from_exception_data(
        "PopulationSpec", [{"type": PydanticCustomError("population_spec", message), "loc": tuple(loc), "input": {}}])


def _increasing(values: list[float], what: str) -> list[float]:
    if len(values) < 2:
        raise ValueError(f"{what}: needs at least two edges")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{what}: edges must increase")
    return values


# ----------------------------------------------------------------------------------- population


class Region(StrictModel):
    """A region: its share of the population; its clinics deliver the interventions there."""

    name: str = Field(pattern=_NAME, description="region name (an identifier); the region coordinate of the results")
    share: float = Field(gt=0.0, le=1.0, description="share of the population living there; shares sum to 1")


class Population(StrictModel):
    """Who lives there: size, age–sex structure, covariates, regions."""

    size: int = Field(ge=10, le=100_000_000, description="people simulated per replicate (at most 100,000,000, "
                      "within the machine's memory: one replicate takes at least 400 bytes a person with a chronic "
                      "model, 150 with an infection model; and at most 1e12 person-steps over the horizon)",
                      json_schema_extra={"unit": "people"})
    age_sex: Literal["pyramid", "cohort"] = Field(
        "pyramid", description="pyramid: ages and sexes from the shipped population pyramid; cohort: from the cohort file")
    pyramid: Literal["us_2022"] = Field(
        "us_2022", description="shipped pyramid: us_2022, US resident population by age and sex, July 2022 (Census Bureau)")
    age_min: int = Field(0, ge=0, le=99, description="youngest age included", json_schema_extra={"unit": "years"})
    age_max: int = Field(100, ge=1, le=100, description="ages below this are included",
                         json_schema_extra={"unit": "years"})
    cohort: str | None = Field(None, description="cohort file (relative to this file) for the other covariates")
    age_covariate: str = Field("age", description="covariate that holds age (years)")
    female_covariate: str = Field("sex_female", description="covariate that is 1 for women")
    regions: list[Region] = Field(default_factory=lambda: [Region(name="all", share=1.0)], min_length=1,
                                  description="regions people are assigned to at random by their shares")

    @pydantic.model_validator(mode="after")
    def _check(self) -> Population:
        if self.age_min >= self.age_max:
            raise ValueError(f"age_min: must be < age_max ({self.age_max}), got {self.age_min}")
        names = [r.name for r in self.regions]
        if len(set(names)) != len(names):
            raise ValueError("regions: duplicate region name")
        total = math.fsum(r.share for r in self.regions)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"regions: shares must sum to 1, got {total:.6g}")
        if self.age_sex == "cohort" and self.cohort is None:
            raise ValueError("age_sex: 'cohort' needs a cohort file (population.cohort)")
        return self


class Demography(StrictModel):
    """Ageing, background mortality from the life table, births."""

    ageing: bool = Field(True, description="chronic models: the disease's age coefficients act on current age "
                         "(false: on age at time 0); the life table and output age groups always use current age")
    background_mortality: bool = Field(True, description="death from other causes by the US life table (chronic "
                                       "models: needs the disease's background_mortality block)")
    mortality_multiplier: float = Field(1.0, gt=0.0, description="infection models: scales the life-table hazard")
    births_per_1000_per_year: float = Field(0.0, ge=0.0, le=100.0,
                                            description="newborns per 1000 initial residents per year (age 0)")


# ------------------------------------------------------------------------------------ infection


class Duration(StrictModel):
    """A duration in days, drawn per person and episode and rounded up to whole days."""

    distribution: Literal["exponential", "fixed", "lognormal"] = Field(
        "exponential", description="law of the duration before rounding up to whole days (at least one)")
    mean_days: float = Field(gt=0.0, le=3650.0, description="mean of the duration before rounding")
    sd_days: float | None = Field(None, gt=0.0, description="lognormal only")

    @pydantic.model_validator(mode="after")
    def _check(self) -> Duration:
        if (self.distribution == "lognormal") != (self.sd_days is not None):
            raise ValueError("sd_days: given for (and only for) a lognormal duration")
        return self


class HouseholdLayer(StrictModel):
    """Households of size 1 + Poisson(mean_size - 1), capped at max_size; everyone meets daily."""

    mean_size: float = Field(ge=1.0, le=8.0, description="mean household size before the cap",
                             json_schema_extra={"unit": "people"})
    max_size: int = Field(10, ge=1, le=30, description="largest household", json_schema_extra={"unit": "people"})
    beta: float = Field(ge=0.0, le=1.0, description="transmission probability per infectious household contact per day")


class CommunityLayer(StrictModel):
    """Random mixing: each infectious person meets people drawn uniformly from the whole population."""

    contacts_per_day: float = Field(gt=0.0, le=200.0, description="mean contacts per infectious person per day",
                                    json_schema_extra={"unit": "1/day"})
    distribution: Literal["poisson", "fixed"] = Field("poisson", description="number of contacts per day")
    beta: float = Field(ge=0.0, le=1.0, description="transmission probability per contact")


class AgeMixingLayer(StrictModel):
    """Age-structured mixing: contacts[a][b] is the mean daily number of contacts that a person of
    age group a has with people of age group b (drawn uniformly within b)."""

    age_groups: list[float] = Field(description="increasing edges of the age groups (G + 1 edges for G groups)",
                                    json_schema_extra={"unit": "years"})
    contacts_per_day: list[list[float]] = Field(
        description="G x G matrix: row a, column b is the mean daily contacts of a person of group a with group b",
        json_schema_extra={"unit": "1/day"})
    beta: float = Field(ge=0.0, le=1.0, description="transmission probability per contact")

    @pydantic.model_validator(mode="after")
    def _check(self) -> AgeMixingLayer:
        _increasing(self.age_groups, "age_groups")
        g = len(self.age_groups) - 1
        if len(self.contacts_per_day) != g or any(len(row) != g for row in self.contacts_per_day):
            raise ValueError(f"contacts_per_day: must be a {g} x {g} matrix (one row and column per age group)")
        if any(c < 0 or not math.isfinite(c) for row in self.contacts_per_day for c in row):
            raise ValueError("contacts_per_day: entries must be finite and >= 0")
        return self


class Layers(StrictModel):
    """The contact layers over which infection spreads (at least one)."""

    household: HouseholdLayer | None = Field(None, description="household contacts (null: none)")
    community: CommunityLayer | None = Field(None, description="random mixing over the whole population (null: none)")
    age_mixing: AgeMixingLayer | None = Field(None, description="age-structured contacts (null: none)")


class Fatality(StrictModel):
    """Probability that an infection ends in death, by age group (age_groups are edges)."""

    age_groups: list[float] = Field(description="increasing edges of the age groups (age at death)",
                                    json_schema_extra={"unit": "years"})
    probability: list[float] = Field(description="probability that an infection ends in death, one per age group")

    @pydantic.model_validator(mode="after")
    def _check(self) -> Fatality:
        _increasing(self.age_groups, "age_groups")
        if len(self.probability) != len(self.age_groups) - 1:
            raise ValueError("probability: needs one value per age group")
        if any(not 0.0 <= p <= 1.0 for p in self.probability):
            raise ValueError("probability: values must be between 0 and 1")
        return self


class Infection(StrictModel):
    """SIR / SEIR transmission over contact layers, stepped daily."""

    model: Literal["sir", "seir"] = Field(description="sir, or seir with a latent (exposed, not yet infectious) period")
    latent: Duration | None = Field(None, description="SEIR only: time from infection to infectiousness")
    infectious: Duration = Field(description="duration of infectiousness")
    immunity_days: float | None = Field(None, gt=0.0, description="mean duration of immunity after recovery (exponential); none = lifelong")
    fatality: Fatality | None = Field(None, description="death at the end of the infectious period (null: no "
                                      "infection deaths)")
    initial_infected: int = Field(ge=1, description="people infected on day 0 (the lowest-numbered, whose ages are random)",
                                  json_schema_extra={"unit": "people"})
    layers: Layers = Field(description="contact layers")
    utility: dict[str, float] = Field(default_factory=dict, description="QALY weight per infection state (default 1)")

    @pydantic.model_validator(mode="after")
    def _check(self) -> Infection:
        if (self.model == "seir") != (self.latent is not None):
            raise ValueError("latent: required for (and only for) model seir")
        if not any((self.layers.household, self.layers.community, self.layers.age_mixing)):
            raise ValueError("layers: at least one contact layer is needed")
        for key, value in self.utility.items():
            if key not in INFECTION_STATES:
                raise ValueError(f"utility.{key}: unknown infection state (states: {', '.join(INFECTION_STATES)})")
            if not -1.0 <= value <= 1.0:
                raise ValueError(f"utility.{key}: must be between -1 and 1")
        return self


# -------------------------------------------------------------------------------- interventions


class Eligibility(StrictModel):
    """Who may receive an intervention: age band, regions, disease states, covariate criteria."""

    age_min: float = Field(0.0, ge=0.0, description="youngest eligible age, inclusive (age at delivery)",
                           json_schema_extra={"unit": "years"})
    age_max: float = Field(200.0, gt=0.0, description="oldest eligible age, exclusive",
                           json_schema_extra={"unit": "years"})
    regions: list[str] | None = Field(None, description="regions where it is offered (default: all)")
    states: list[str] | None = Field(None, description="current disease / infection states (default: any alive)")
    criteria: list[str] = Field(default_factory=list, description="conditions on baseline covariates (expression grammar)")


class RiskFactorChange(StrictModel):
    """Add ``change`` (in the covariate's unit) to a covariate of the disease's hazards."""

    covariate: str = Field(description="covariate used by the disease's transition hazards")
    change: float = Field(description="added to the covariate", json_schema_extra={"unit": "the covariate's unit"})


class _Intervention(StrictModel):
    """Fields shared by every intervention: when, to whom, how many accept, how fast."""

    name: str = Field(pattern=_NAME, description="intervention name (an identifier), used by scenarios")
    start_year: float = Field(0.0, ge=0.0, description="delivery starts (years from the start)")
    end_year: float | None = Field(None, gt=0.0, description="delivery stops; people already reached keep the effect")
    eligibility: Eligibility = Field(Eligibility(), description="who may receive it (default: everyone alive)")
    coverage: float = Field(1.0, ge=0.0, le=1.0, description="share of eligible people who accept when offered")
    capacity_per_week_per_100k: float | None = Field(
        None, gt=0.0, description="deliveries per week per 100 000 residents of a region (none = unlimited)")

    @pydantic.model_validator(mode="after")
    def _times(self):
        if self.end_year is not None and self.end_year <= self.start_year:
            raise ValueError(f"end_year: must be after start_year ({self.start_year:g})")
        return self


class Detection(StrictModel):
    """What happens to a true positive: a move to another state and/or a treatment."""

    move_to: str | None = Field(None, description="state true positives move to, e.g. diagnosed (null: stay)")
    effects: list[HazardEffect] = Field([], description="hazard ratios applied to true positives from detection on")
    risk_factor: RiskFactorChange | None = Field(None, description="risk-factor change of true positives (null: none)")
    cost_per_year: float = Field(0.0, ge=0.0, description="ongoing cost per detected person per year alive",
                                 json_schema_extra={"unit": "currency/person-year"})


class Target(StrictModel):
    """The condition a screening test looks for: being in one of ``states`` or meeting ``criteria``."""

    states: list[str] = Field([], description="disease states that count as the condition")
    criteria: list[str] = Field([], description="conditions on baseline covariates that count as the condition "
                                "(expression grammar)")

    @pydantic.model_validator(mode="after")
    def _some(self) -> Target:
        if not self.states and not self.criteria:
            raise ValueError("give states or criteria")
        return self


class Screening(_Intervention):
    """Periodic tests in an age band; true positives are treated or moved (e.g. to 'diagnosed')."""

    type: Literal["screening"] = Field(description="selects a screening programme")
    interval_years: float = Field(gt=0.0, description="time between two tests of the same person")
    sensitivity: float = Field(ge=0.0, le=1.0, description="probability that a test of a person with the condition is positive")
    specificity: float = Field(ge=0.0, le=1.0, description="probability that a test of a person without it is negative")
    target: Target = Field(description="the condition the test looks for")
    on_detection: Detection = Field(Detection(), description="what happens to true positives (who are not tested again)")
    cost_per_test: float = Field(0.0, ge=0.0, description="cost of one test",
                                 json_schema_extra={"unit": "currency/test"})
    cost_per_positive: float = Field(0.0, ge=0.0, description="work-up of every positive test, true or false",
                                     json_schema_extra={"unit": "currency/positive test"})


class Vaccination(_Intervention):
    """One dose: efficacy against infection and against death, both waning exponentially."""

    type: Literal["vaccination"] = Field(description="selects a vaccination campaign")
    efficacy_infection: float = Field(ge=0.0, le=1.0, description="relative reduction of the per-contact "
                                      "transmission probability to a vaccinated person")
    efficacy_severe: float = Field(0.0, ge=0.0, le=1.0, description="against death given infection")
    waning_days: float | None = Field(None, gt=0.0, description="efficacies decay as exp(-days since the dose / "
                                      "waning_days); none = no waning")
    cost_per_dose: float = Field(0.0, ge=0.0, description="cost of one dose",
                                 json_schema_extra={"unit": "currency/dose"})


class Treatment(_Intervention):
    """Start treatment: hazard ratios inline or from a trial protocol's arm."""

    type: Literal["treatment"] = Field(description="selects a treatment programme")
    effects: list[HazardEffect] = Field([], description="hazard ratios of the treated (instead of effect_from)")
    effect_from: str | None = Field(None, description="'path/to/protocol.yaml#arm' (relative to this file): the "
                                    "hazard ratios of that trial arm")
    cost_per_year: float = Field(0.0, ge=0.0, description="cost per treated person per year alive",
                                 json_schema_extra={"unit": "currency/person-year"})

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> Treatment:
        if bool(self.effects) == (self.effect_from is not None):
            raise ValueError("give either effects or effect_from")
        if self.effect_from is not None and "#" not in self.effect_from:
            raise ValueError("effect_from: must read 'protocol.yaml#arm'")
        return self


class RiskFactor(_Intervention):
    """Change a covariate (e.g. systolic pressure -10 mmHg) in the covered people."""

    type: Literal["risk_factor"] = Field(description="selects a risk-factor programme")
    covariate: str = Field(description="covariate used by the disease's transition hazards")
    change: float = Field(description="added to the covariate of the people reached",
                          json_schema_extra={"unit": "the covariate's unit"})
    cost_per_year: float = Field(0.0, ge=0.0, description="cost per person reached per year alive",
                                 json_schema_extra={"unit": "currency/person-year"})


Intervention = Annotated[Union[Screening, Vaccination, Treatment, RiskFactor], Field(discriminator="type")]


class Scenario(StrictModel):
    """A named set of interventions; ``changes`` overrides fields of them (``name.field: value``)."""

    name: str = Field(pattern=_NAME, description="scenario name (an identifier); the scenario coordinate")
    description: str = Field("", description="free text")
    interventions: list[str] = Field([], description="names of the interventions delivered in this scenario")
    changes: dict[str, Any] = Field({}, description="overrides 'intervention.field: value' of this scenario's "
                                    "interventions (dotted fields reach nested keys), re-validated")


# ------------------------------------------------------------------------------- costs, outputs


class Costs(StrictModel):
    """Unit costs; all costs and QALYs are discounted continuously at ``discount_rate_per_year``."""

    currency: str = Field("USD", description="currency label of every cost")
    discount_rate_per_year: float = Field(0.03, ge=0.0, le=0.2, description="annual rate r: amounts at time t "
                                          "(years) are weighted by (1 + r)^-t, continuously")
    state_per_year: dict[str, float] = Field({}, description="cost per person-year spent in each state (by name)",
                                             json_schema_extra={"unit": "currency/person-year"})
    per_event: dict[str, float] = Field(default_factory=dict, description="cost of each event by name (chronic: "
                                        "event names; infection: infection, death)",
                                        json_schema_extra={"unit": "currency/event"})
    willingness_to_pay_per_qaly: float | None = Field(
        None, gt=0.0, description="cost-effectiveness threshold: drawn on the cost-effectiveness plane and used for "
        "the net monetary benefit in the summary", json_schema_extra={"unit": "currency/QALY"})


class Outputs(StrictModel):
    """The output grid: period length, calendar step, age groups, what counts as incidence and prevalence."""

    interval_days: float | None = Field(None, gt=0.0, description="default: a year (chronic), a week (infection)")
    calendar_days: float | None = Field(None, gt=0.0, description="period of the Mesa calendar (deliveries); default: one disease step (chronic), a week (infection)")
    age_groups: list[float] = Field(default_factory=lambda: [0.0, 18.0, 40.0, 65.0, 80.0, 200.0],
                                    description="increasing edges of the output age groups (age at the time)",
                                    json_schema_extra={"unit": "years"})
    incidence_events: list[str] | None = Field(None, description="chronic: events counted as incidence (default: non-fatal transitions out of the initial state)")
    prevalence_states: list[str] | None = Field(None, description="chronic: states counted as prevalent (default: non-initial, non-absorbing)")

    @pydantic.field_validator("age_groups")
    @classmethod
    def _edges(cls, v: list[float]) -> list[float]:
        return _increasing(v, "age_groups")


class PopulationSpec(StrictModel):
    """A population scenario file (``kind: population``)."""

    kind: Literal["population"] = Field(description="marks a population scenario file")
    name: str = Field(description="human-readable name of the scenario file")
    description: str = Field("", description="free text")
    sources: list[str] = Field([], description="references the inputs come from")
    population: Population = Field(description="who lives there")
    horizon_years: float = Field(gt=0.0, le=100.0, description="simulated time from the start (at most 100 years, "
                                 "and 40,000 model steps)")
    demography: Demography = Field(Demography(), description="ageing, background mortality, births")
    disease: str | None = Field(None, description="chronic multi-state disease file (relative to this file)")
    infection: Infection | None = Field(None, description="inline infection model (instead of disease)")
    costs: Costs = Field(Costs(), description="unit costs and discounting")
    outputs: Outputs = Field(Outputs(), description="the output grid")
    interventions: list[Intervention] = Field([], description="interventions by type: screening, vaccination, "
                                              "treatment, risk_factor")
    scenarios: list[Scenario] = Field(min_length=1, description="the first is the baseline")

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> PopulationSpec:
        if (self.disease is None) == (self.infection is None):
            _fail(("disease",), "give either disease (a chronic model file) or infection (an inline model)")
        names = [i.name for i in self.interventions]
        for i, name in enumerate(names):
            if name in names[:i]:
                _fail(("interventions", i, "name"), f"duplicate intervention name {name!r}")
        snames = [s.name for s in self.scenarios]
        for i, name in enumerate(snames):
            if name in snames[:i]:
                _fail(("scenarios", i, "name"), f"duplicate scenario name {name!r}")
        for i, s in enumerate(self.scenarios):
            for j, ref in enumerate(s.interventions):
                if ref not in names:
                    _fail(("scenarios", i, "interventions", j),
                          f"unknown intervention {ref!r} (interventions: {', '.join(names) or 'none'})")
        infection = self.infection is not None
        for i, iv in enumerate(self.interventions):
            if infection and iv.type != "vaccination":
                _fail(("interventions", i, "type"), f"an infection model takes vaccination only, got {iv.type!r}")
            if not infection and iv.type == "vaccination":
                _fail(("interventions", i, "type"), "vaccination needs an infection model")
            if iv.start_year >= self.horizon_years:
                _fail(("interventions", i, "start_year"), f"must be before the horizon ({self.horizon_years:g} years)")
        if infection and self.population.age_sex == "cohort":
            _fail(("population", "age_sex"), "infection models take ages and sexes from the pyramid")
        return self


# ------------------------------------------------------------------------------------ loading


class PopulationScenario:
    """A loaded population file with its cohort, disease and borrowed trial effects resolved.

    ``scenario_interventions[a]`` is the list of (validated, changed) interventions of scenario a;
    ``hazard_ratios[name]`` maps each treatment's transitions to its hazard ratio as declared, and
    ``scenario_hazard_ratios[a][name]`` as scenario a delivers it (its ``changes`` applied).
    """

    def __init__(self, path: Path, spec: PopulationSpec, text: str, cohort, disease: DiseaseSpec | None,
                 scenario_interventions: list[list[Any]], hazard_ratios: dict[str, dict[str, float]],
                 referenced: list[Path], scenario_hazard_ratios: list[dict[str, dict[str, float]]] | None = None):
        self.path = path
        self.spec = spec
        self.text = text
        self.cohort = cohort
        self.disease = disease
        self.scenario_interventions = scenario_interventions
        self.hazard_ratios = hazard_ratios
        self.scenario_hazard_ratios = scenario_hazard_ratios or [dict(hazard_ratios) for _ in spec.scenarios]
        self.referenced = referenced
        self.disease_draws: list[DiseaseSpec] | None = None  # a calibration's parameter draws, one per replicate

    @property
    def kind(self) -> str:
        """'chronic' or 'infection'."""
        return "infection" if self.spec.infection is not None else "chronic"

    @property
    def scenario_names(self) -> list[str]:
        return [s.name for s in self.spec.scenarios]

    @property
    def step_days(self) -> float:
        """Length of one kernel step in days: the disease's time step (chronic), a day (infection)."""
        if self.kind == "chronic":
            return self.disease.time_step_months * DAYS_PER_YEAR / 12.0
        return 1.0

    def grid(self) -> tuple[int, int, int]:
        """(kernel steps, steps per calendar period, steps per output interval), checked: periods are whole
        model steps, and the run is a bounded number of steps. A period longer than the horizon is the whole
        horizon (and stays a small integer however large the number written)."""
        spec, file = self.spec, str(self.path)
        sd = self.step_days
        exact = spec.horizon_years * DAYS_PER_YEAR / sd
        if exact > MAX_STEPS:
            where = f" (the disease's time_step_months is {self.disease.time_step_months:g})" if self.disease else ""
            raise SpecError(file, "horizon_years", f"{spec.horizon_years:g} years are {exact:,.0f} model steps{where}; "
                            f"at most {MAX_STEPS:,}")
        total = int(math.ceil(exact - 1e-9))
        from vctrial.execute import memory_bytes

        need, have = spec.population.size * BYTES_PER_PERSON[self.kind], memory_bytes()
        if need > have:
            raise SpecError(file, "population.size", f"{spec.population.size:,} people need at least "
                            f"{need / 2**30:,.1f} GiB for one replicate, more than the {have / 2**30:,.1f} GiB of memory "
                            "here")
        if spec.population.size * total > MAX_PERSON_STEPS:
            raise SpecError(file, "population.size", f"{spec.population.size:,} people over {total:,} model steps are "
                            f"{spec.population.size * total:.3g} person-steps per scenario; at most "
                            f"{MAX_PERSON_STEPS:.0e} (fewer people, a shorter horizon or a longer model step)")
        out = spec.outputs
        chronic = self.kind == "chronic"
        interval = out.interval_days or (DAYS_PER_YEAR if chronic else 7.0)
        calendar = out.calendar_days or (sd if chronic else 7.0)
        steps = []
        for key, days in (("outputs.calendar_days", calendar), ("outputs.interval_days", interval)):
            m = days / sd
            if abs(m - round(m)) > 1e-6 or round(m) < 1:
                raise SpecError(file, key, f"must be a whole number of model steps of {sd:.6g} days, got {days:g}")
            steps.append(min(int(round(m)), max(total, 1)))
        return total, steps[0], steps[1]


def load_population(path: str | Path) -> PopulationScenario:
    """Read a population file, its cohort and disease files and any trial protocols it borrows from.

    Raises:
        SpecError: naming the file, the key path and the reason.
    """
    from vctrial.spec.cohort import load_cohort

    path = Path(path)
    data = read_yaml(path)
    spec = validate(data, PopulationSpec, path)
    file = str(path)
    referenced: list[Path] = []
    cohort = None
    if spec.population.cohort is not None:
        target = _resolve(path, "population.cohort", spec.population.cohort)
        cohort = load_cohort(target)
        referenced.append(target)
        if spec.population.age_sex == "pyramid" and cohort.eligibility:
            raise SpecError(file, "population.cohort",
                            f"cohort {spec.population.cohort} has eligibility criteria; a population cohort describes "
                            "everyone (put criteria on interventions instead), or set population.age_sex: cohort")
    disease = None
    if spec.disease is not None:
        target = _resolve(path, "disease", spec.disease)
        disease = load_disease(target)
        if disease.has_biomarker_terms or any(b.intensification for b in disease.biomarkers):
            raise SpecError(str(path), "disease", f"{spec.disease}: hazards that depend on biomarkers and "
                            "intensification rules are not available in population runs yet")
        referenced.append(target)
    scenario_interventions = [_scenario_interventions(file, spec, i, s) for i, s in enumerate(spec.scenarios)]
    hazard_ratios: dict[str, dict[str, float]] = {}
    for i, iv in enumerate(spec.interventions):
        if isinstance(iv, Treatment):
            hazard_ratios[iv.name] = _treatment_effects(path, f"interventions[{i}]", iv, referenced)
    scenario_ratios: list[dict[str, dict[str, float]]] = []
    for a, ivs in enumerate(scenario_interventions):
        ratios = {}
        for iv in ivs:
            if isinstance(iv, Treatment):  # a changed treatment takes its own effects or effect_from
                declared = next(x for x in spec.interventions if x.name == iv.name)
                same = (iv.effects, iv.effect_from) == (declared.effects, declared.effect_from)
                ratios[iv.name] = hazard_ratios[iv.name] if same else _treatment_effects(
                    path, f"scenarios[{a}].changes.{iv.name}", iv, referenced)
        scenario_ratios.append(ratios)
    _cross_check(path, spec, cohort, disease, hazard_ratios, scenario_interventions, scenario_ratios)
    world = PopulationScenario(path, spec, path.read_text(encoding="utf-8"), cohort, disease,
                               scenario_interventions, hazard_ratios, list(dict.fromkeys(referenced)), scenario_ratios)
    world.grid()  # the output grid and the run's size, as vctrial run checks them
    return world


def _resolve(path: Path, key: str, ref: str) -> Path:
    target = (path.parent / ref).resolve()
    if not target.is_file():
        raise SpecError(str(path), key, f"referenced file not found: {ref} (looked for {target})")
    return target


def _scenario_interventions(file: str, spec: PopulationSpec, i: int, scenario: Scenario) -> list[Any]:
    """The scenario's interventions with its ``changes`` applied and re-validated."""
    by_name = {iv.name: iv for iv in spec.interventions}
    changed: dict[str, dict[str, Any]] = {}
    for key, value in scenario.changes.items():
        where = f"scenarios[{i}].changes.{key}"
        name, _, field = key.partition(".")
        if not field or name not in scenario.interventions:
            raise SpecError(file, where, "must read 'intervention.field' for an intervention of this scenario "
                                         f"({', '.join(scenario.interventions) or 'none'})")
        if field in ("name", "type"):  # the name keys the intervention's draws and results
            raise SpecError(file, where, f"an intervention's {field} cannot be changed by a scenario; declare "
                            "another intervention under interventions and name it in this scenario instead")
        changed.setdefault(name, {})[field] = value
    out = []
    for name in scenario.interventions:
        iv = by_name[name]
        if name in changed:
            data = iv.model_dump(by_alias=True, exclude_none=True)
            for field, value in changed[name].items():
                node = data
                parts = field.split(".")
                for part in parts[:-1]:
                    if not isinstance(node.get(part), dict):
                        raise SpecError(file, f"scenarios[{i}].changes.{name}.{field}", f"no key {part!r} to change")
                    node = node[part]
                node[parts[-1]] = value
            try:
                iv = type(iv).model_validate(data)
            except pydantic.ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(p) for p in err["loc"])
                raise SpecError(file, f"scenarios[{i}].changes.{name}.{loc}", err["msg"].removeprefix("Value error, ")) from None
        out.append(iv)
    return out


def _treatment_effects(path: Path, base: str, iv: Treatment, referenced: list[Path]) -> dict[str, float]:
    """Hazard ratio per transition: inline, or the hazard effects of a trial protocol's arm (errors name
    ``base.effect_from``: the intervention, or a scenario's change of it)."""
    if iv.effect_from is None:
        return _merge(iv.effects)
    from vctrial.spec.protocol import load_protocol

    ref, _, arm_name = iv.effect_from.partition("#")
    where = f"{base}.effect_from"
    target = _resolve(path, where, ref)
    protocol = load_protocol(target)
    referenced.append(target)
    arms = {a.name: a for a in protocol.spec.arms}
    if arm_name not in arms:
        raise SpecError(str(path), where, f"protocol {ref} has no arm {arm_name!r} (arms: {', '.join(arms)})")
    effects = [e for e in arms[arm_name].effects if isinstance(e, HazardEffect)]
    if not effects:
        raise SpecError(str(path), where, f"arm {arm_name!r} of {ref} has no hazard-ratio effects to carry over")
    return _merge(effects)


def _merge(effects: list[HazardEffect]) -> dict[str, float]:
    """Hazard ratio per transition; repeated transitions multiply."""
    out: dict[str, float] = {}
    for e in effects:
        out[e.transition] = out.get(e.transition, 1.0) * e.hazard_ratio
    return out


def _cross_check(path: Path, spec: PopulationSpec, cohort, disease: DiseaseSpec | None,
                 hazard_ratios: dict[str, dict[str, float]], scenario_interventions: list[list[Any]],
                 scenario_ratios: list[dict[str, dict[str, float]]]) -> None:
    """Names used by the population file must exist in its disease and cohort."""
    file = str(path)
    pop = spec.population
    regions = [r.name for r in pop.regions]
    columns: set[str] = {pop.age_covariate, pop.female_covariate}
    levels: dict[str, tuple[str, ...] | None] = {pop.age_covariate: None, pop.female_covariate: None}
    if cohort is not None:
        columns |= set(cohort.names)
        columns |= {f"{n}[{lv}]" for n, lvs in cohort.levels().items() for lv in lvs}
        levels.update(cohort.levels_or_none())
        levels.update({n: None for n in cohort.derived})
    if disease is not None:
        states = [s.name for s in disease.states]
        events = disease.event_names
        transitions = [t.name for t in disease.transitions]
        for key, col in disease.covariates_used():
            if col not in columns:
                raise SpecError(str(disease.path), key, f"the population has no covariate {col!r} "
                                f"(has: {', '.join(sorted(columns))}); add a cohort with it (population.cohort)")
        if spec.demography.background_mortality and disease.background_mortality is None:
            raise SpecError(file, "demography.background_mortality",
                            f"disease {spec.disease} has no background_mortality block to take it from")
        bg = disease.background_mortality
        if bg is not None and (bg.age != pop.age_covariate or bg.female != pop.female_covariate):
            raise SpecError(file, "population.age_covariate",
                            f"the disease's background mortality reads {bg.age!r} and {bg.female!r}; "
                            "population.age_covariate and female_covariate must name the same columns")
    else:
        states = list(INFECTION_STATES)
        events = ["infection", "death"]
        transitions = []
    _names_in(file, "costs.state_per_year", spec.costs.state_per_year, states, "state")
    _names_in(file, "costs.per_event", spec.costs.per_event, events, "event")
    out = spec.outputs
    if out.incidence_events is not None:
        _names_in(file, "outputs.incidence_events", out.incidence_events, events, "event")
    if out.prevalence_states is not None:
        _names_in(file, "outputs.prevalence_states", out.prevalence_states, states, "state")
    from vctrial.expr import ExprError, parse

    def check_criteria(where: str, criteria: list[str]) -> None:
        for j, text in enumerate(criteria):
            try:
                expr = parse(text, levels)
            except ExprError as exc:
                raise SpecError(file, f"{where}[{j}]", exc.reason) from None
            if not expr.is_condition:
                raise SpecError(file, f"{where}[{j}]", "must be a condition")

    checks = [(f"interventions[{i}]", iv, hazard_ratios) for i, iv in enumerate(spec.interventions)]
    for a, (scenario, ivs) in enumerate(zip(spec.scenarios, scenario_interventions)):
        checks += [(f"scenarios[{a}].changes.{iv.name}", iv, scenario_ratios[a]) for iv in ivs if iv.name in
                   {k.partition(".")[0] for k in scenario.changes}]
    for base, iv, ratios in checks:
        if iv.start_year >= spec.horizon_years:
            raise SpecError(file, f"{base}.start_year", f"must be before the horizon ({spec.horizon_years:g} years)")
        el = iv.eligibility
        if el.regions is not None:
            _names_in(file, f"{base}.eligibility.regions", el.regions, regions, "region")
        if el.states is not None:
            _names_in(file, f"{base}.eligibility.states", el.states, states, "state")
        check_criteria(f"{base}.eligibility.criteria", el.criteria)
        if isinstance(iv, Screening):
            _names_in(file, f"{base}.target.states", iv.target.states, states, "state")
            check_criteria(f"{base}.target.criteria", iv.target.criteria)
            det = iv.on_detection
            if det.move_to is not None:
                _name_in(file, f"{base}.on_detection.move_to", det.move_to, states, "state")
                if disease is not None and any(s.absorbing and s.name == det.move_to for s in disease.states):
                    raise SpecError(file, f"{base}.on_detection.move_to", "cannot move people to an absorbing state")
            _names_in(file, f"{base}.on_detection.effects", [e.transition for e in det.effects], transitions, "transition")
            if det.risk_factor is not None:
                _risk_covariate(file, f"{base}.on_detection.risk_factor.covariate", det.risk_factor.covariate, disease)
        if isinstance(iv, Treatment):
            if iv.effect_from:
                for name in ratios[iv.name]:
                    _name_in(file, f"{base}.effect_from", name, transitions, "transition")
            else:
                _names_in(file, f"{base}.effects", [e.transition for e in iv.effects], transitions, "transition")
        if isinstance(iv, RiskFactor):
            _risk_covariate(file, f"{base}.covariate", iv.covariate, disease)


def _risk_covariate(file: str, where: str, covariate: str, disease: DiseaseSpec | None) -> None:
    used = {c for _, c in disease.covariates_used()} if disease is not None else set()
    in_hazards = any(e.covariate == covariate for t in disease.transitions for e in t.effects) if disease else False
    if not in_hazards:
        raise SpecError(file, where, f"covariate {covariate!r} has no effect on any transition hazard of the disease "
                                     f"(covariates used: {', '.join(sorted(used)) or 'none'})")


def _name_in(file: str, where: str, name: str, known: list[str], what: str) -> None:
    if name not in known:
        raise SpecError(file, where, f"unknown {what} {name!r} ({what}s: {', '.join(known) or 'none'})")


def _names_in(file: str, where: str, names, known: list[str], what: str) -> None:
    for j, name in enumerate(names):
        if name not in known:
            key = f"{where}.{name}" if isinstance(names, dict) else f"{where}[{j}]"
            raise SpecError(file, key, f"unknown {what} {name!r} ({what}s: {', '.join(known) or 'none'})")
