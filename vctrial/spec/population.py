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

    name: str = Field(pattern=_NAME)
    share: float = Field(gt=0.0, le=1.0)


class Population(StrictModel):
    """Who lives there: size, age–sex structure, covariates, regions."""

    size: int = Field(ge=10, le=100_000_000, description="people simulated per replicate")
    age_sex: Literal["pyramid", "cohort"] = Field(
        "pyramid", description="pyramid: ages and sexes from the shipped population pyramid; cohort: from the cohort file")
    pyramid: Literal["us_2022"] = "us_2022"
    age_min: int = Field(0, ge=0, le=99, description="youngest age included (years)")
    age_max: int = Field(100, ge=1, le=100, description="ages below this are included (years)")
    cohort: str | None = Field(None, description="cohort file (relative to this file) for the other covariates")
    age_covariate: str = Field("age", description="covariate that holds age (years)")
    female_covariate: str = Field("sex_female", description="covariate that is 1 for women")
    regions: list[Region] = Field(default_factory=lambda: [Region(name="all", share=1.0)], min_length=1)

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

    ageing: bool = Field(True, description="covariate age effects and the life table follow current age")
    background_mortality: bool = True
    mortality_multiplier: float = Field(1.0, gt=0.0, description="infection models: scales the life-table hazard")
    births_per_1000_per_year: float = Field(0.0, ge=0.0, le=100.0,
                                            description="newborns per 1000 initial residents per year (age 0)")


# ------------------------------------------------------------------------------------ infection


class Duration(StrictModel):
    """A duration in days, drawn per person and episode and rounded up to whole days."""

    distribution: Literal["exponential", "fixed", "lognormal"] = "exponential"
    mean_days: float = Field(gt=0.0, le=3650.0)
    sd_days: float | None = Field(None, gt=0.0, description="lognormal only")

    @pydantic.model_validator(mode="after")
    def _check(self) -> Duration:
        if (self.distribution == "lognormal") != (self.sd_days is not None):
            raise ValueError("sd_days: given for (and only for) a lognormal duration")
        return self


class HouseholdLayer(StrictModel):
    """Households of size 1 + Poisson(mean_size - 1), capped at max_size; everyone meets daily."""

    mean_size: float = Field(ge=1.0, le=8.0)
    max_size: int = Field(10, ge=1, le=30)
    beta: float = Field(ge=0.0, le=1.0, description="transmission probability per infectious household contact per day")


class CommunityLayer(StrictModel):
    """Random mixing: each infectious person meets people drawn uniformly from the whole population."""

    contacts_per_day: float = Field(gt=0.0, le=200.0)
    distribution: Literal["poisson", "fixed"] = Field("poisson", description="number of contacts per day")
    beta: float = Field(ge=0.0, le=1.0, description="transmission probability per contact")


class AgeMixingLayer(StrictModel):
    """Age-structured mixing: contacts[a][b] is the mean daily number of contacts that a person of
    age group a has with people of age group b (drawn uniformly within b)."""

    age_groups: list[float]
    contacts_per_day: list[list[float]]
    beta: float = Field(ge=0.0, le=1.0)

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
    household: HouseholdLayer | None = None
    community: CommunityLayer | None = None
    age_mixing: AgeMixingLayer | None = None


class Fatality(StrictModel):
    """Probability that an infection ends in death, by age group (age_groups are edges)."""

    age_groups: list[float]
    probability: list[float]

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

    model: Literal["sir", "seir"]
    latent: Duration | None = Field(None, description="SEIR only: time from infection to infectiousness")
    infectious: Duration
    immunity_days: float | None = Field(None, gt=0.0, description="mean duration of immunity after recovery (exponential); none = lifelong")
    fatality: Fatality | None = None
    initial_infected: int = Field(ge=1, description="people infected on day 0 (the lowest-numbered, whose ages are random)")
    layers: Layers
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

    age_min: float = Field(0.0, ge=0.0)
    age_max: float = Field(200.0, gt=0.0, description="exclusive")
    regions: list[str] | None = None
    states: list[str] | None = Field(None, description="current disease / infection states (default: any alive)")
    criteria: list[str] = Field(default_factory=list, description="conditions on baseline covariates (expression grammar)")


class RiskFactorChange(StrictModel):
    """Add ``change`` (in the covariate's unit) to a covariate of the disease's hazards."""

    covariate: str
    change: float


class _Intervention(StrictModel):
    name: str = Field(pattern=_NAME)
    start_year: float = Field(0.0, ge=0.0, description="delivery starts (years from the start)")
    end_year: float | None = Field(None, gt=0.0, description="delivery stops; people already reached keep the effect")
    eligibility: Eligibility = Eligibility()
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

    move_to: str | None = None
    effects: list[HazardEffect] = []
    risk_factor: RiskFactorChange | None = None
    cost_per_year: float = Field(0.0, ge=0.0, description="ongoing cost of treatment after detection")


class Target(StrictModel):
    """The condition a screening test looks for: being in one of ``states`` or meeting ``criteria``."""

    states: list[str] = []
    criteria: list[str] = []

    @pydantic.model_validator(mode="after")
    def _some(self) -> Target:
        if not self.states and not self.criteria:
            raise ValueError("give states or criteria")
        return self


class Screening(_Intervention):
    """Periodic tests in an age band; true positives are treated or moved (e.g. to 'diagnosed')."""

    type: Literal["screening"]
    interval_years: float = Field(gt=0.0)
    sensitivity: float = Field(ge=0.0, le=1.0)
    specificity: float = Field(ge=0.0, le=1.0)
    target: Target
    on_detection: Detection = Detection()
    cost_per_test: float = Field(0.0, ge=0.0)
    cost_per_positive: float = Field(0.0, ge=0.0, description="work-up of every positive test, true or false")


class Vaccination(_Intervention):
    """One dose: efficacy against infection and against death, both waning exponentially."""

    type: Literal["vaccination"]
    efficacy_infection: float = Field(ge=0.0, le=1.0)
    efficacy_severe: float = Field(0.0, ge=0.0, le=1.0, description="against death given infection")
    waning_days: float | None = Field(None, gt=0.0, description="mean duration of protection; none = no waning")
    cost_per_dose: float = Field(0.0, ge=0.0)


class Treatment(_Intervention):
    """Start treatment: hazard ratios inline or from a trial protocol's arm."""

    type: Literal["treatment"]
    effects: list[HazardEffect] = []
    effect_from: str | None = Field(None, description="'path/to/protocol.yaml#arm' (relative to this file)")
    cost_per_year: float = Field(0.0, ge=0.0)

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> Treatment:
        if bool(self.effects) == (self.effect_from is not None):
            raise ValueError("give either effects or effect_from")
        if self.effect_from is not None and "#" not in self.effect_from:
            raise ValueError("effect_from: must read 'protocol.yaml#arm'")
        return self


class RiskFactor(_Intervention):
    """Change a covariate (e.g. systolic pressure -10 mmHg) in the covered people."""

    type: Literal["risk_factor"]
    covariate: str
    change: float
    cost_per_year: float = Field(0.0, ge=0.0)


Intervention = Annotated[Union[Screening, Vaccination, Treatment, RiskFactor], Field(discriminator="type")]


class Scenario(StrictModel):
    """A named set of interventions; ``changes`` overrides fields of them (``name.field: value``)."""

    name: str = Field(pattern=_NAME)
    description: str = ""
    interventions: list[str] = []
    changes: dict[str, Any] = {}


# ------------------------------------------------------------------------------- costs, outputs


class Costs(StrictModel):
    """Unit costs; all costs and QALYs are discounted continuously at ``discount_rate_per_year``."""

    currency: str = "USD"
    discount_rate_per_year: float = Field(0.03, ge=0.0, le=0.2)
    state_per_year: dict[str, float] = {}
    per_event: dict[str, float] = Field(default_factory=dict, description="chronic: event names; infection: infection, death")


class Outputs(StrictModel):
    interval_days: float | None = Field(None, gt=0.0, description="default: a year (chronic), a week (infection)")
    calendar_days: float | None = Field(None, gt=0.0, description="period of the Mesa calendar (deliveries); default: one disease step (chronic), a week (infection)")
    age_groups: list[float] = Field(default_factory=lambda: [0.0, 18.0, 40.0, 65.0, 80.0, 200.0])
    incidence_events: list[str] | None = Field(None, description="chronic: events counted as incidence (default: non-fatal transitions out of the initial state)")
    prevalence_states: list[str] | None = Field(None, description="chronic: states counted as prevalent (default: non-initial, non-absorbing)")

    @pydantic.field_validator("age_groups")
    @classmethod
    def _edges(cls, v: list[float]) -> list[float]:
        return _increasing(v, "age_groups")


class PopulationSpec(StrictModel):
    """A population scenario file (``kind: population``)."""

    kind: Literal["population"]
    name: str
    description: str = ""
    sources: list[str] = []
    population: Population
    horizon_years: float = Field(gt=0.0, le=100.0)
    demography: Demography = Demography()
    disease: str | None = Field(None, description="chronic multi-state disease file (relative to this file)")
    infection: Infection | None = None
    costs: Costs = Costs()
    outputs: Outputs = Outputs()
    interventions: list[Intervention] = []
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
    ``hazard_ratios[name]`` maps each treatment's transitions to its hazard ratio.
    """

    def __init__(self, path: Path, spec: PopulationSpec, text: str, cohort, disease: DiseaseSpec | None,
                 scenario_interventions: list[list[Any]], hazard_ratios: dict[str, dict[str, float]],
                 referenced: list[Path]):
        self.path = path
        self.spec = spec
        self.text = text
        self.cohort = cohort
        self.disease = disease
        self.scenario_interventions = scenario_interventions
        self.hazard_ratios = hazard_ratios
        self.referenced = referenced

    @property
    def kind(self) -> str:
        """'chronic' or 'infection'."""
        return "infection" if self.spec.infection is not None else "chronic"

    @property
    def scenario_names(self) -> list[str]:
        return [s.name for s in self.spec.scenarios]


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
        referenced.append(target)
    scenario_interventions = [_scenario_interventions(file, spec, i, s) for i, s in enumerate(spec.scenarios)]
    hazard_ratios: dict[str, dict[str, float]] = {}
    for i, iv in enumerate(spec.interventions):
        if isinstance(iv, Treatment):
            hazard_ratios[iv.name] = _treatment_effects(path, i, iv, referenced)
    _cross_check(path, spec, cohort, disease, hazard_ratios, scenario_interventions)
    return PopulationScenario(path, spec, path.read_text(encoding="utf-8"), cohort, disease,
                              scenario_interventions, hazard_ratios, referenced)


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


def _treatment_effects(path: Path, i: int, iv: Treatment, referenced: list[Path]) -> dict[str, float]:
    """Hazard ratio per transition: inline, or the hazard effects of a trial protocol's arm."""
    if iv.effect_from is None:
        return _merge(iv.effects)
    from vctrial.spec.protocol import load_protocol

    ref, _, arm_name = iv.effect_from.partition("#")
    where = f"interventions[{i}].effect_from"
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
                 hazard_ratios: dict[str, dict[str, float]], scenario_interventions: list[list[Any]]) -> None:
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

    checks = [(f"interventions[{i}]", iv) for i, iv in enumerate(spec.interventions)]
    for a, (scenario, ivs) in enumerate(zip(spec.scenarios, scenario_interventions)):
        checks += [(f"scenarios[{a}].changes.{iv.name}", iv) for iv in ivs if iv.name in
                   {k.partition(".")[0] for k in scenario.changes}]
    for base, iv in checks:
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
                for name in hazard_ratios[iv.name]:
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
