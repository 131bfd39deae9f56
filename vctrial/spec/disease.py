"""Typed disease-model spec: a multi-state model with log-linear hazards, competing background
mortality, and continuous biomarkers following a linear mixed model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

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


class Transition(StrictModel):
    """A transition with hazard rate_per_year × exp(Σ coef·(x − reference)), constant in time."""

    name: str = Field(pattern=_NAME, description="event name used by endpoints and treatment effects")
    from_: str = Field(alias="from", description="state the transition leaves (not absorbing)")
    to: str = Field(description="state the transition enters")
    rate_per_year: float = Field(gt=0.0, description="hazard at the reference covariate values (1/year)")
    effects: list[CovariateEffect] = Field([], description="covariate terms of the log hazard")


class BackgroundMortality(StrictModel):
    """Death from other causes by age and sex from the shipped period life table."""

    to: str = Field(description="absorbing state entered on background death")
    event: str = Field("background_death", pattern=_NAME, description="event name of this transition")
    age: str = Field("age", description="cohort covariate holding age at randomization (years)")
    female: str = Field("sex_female", description="cohort covariate, 1 for female, 0 for male")
    life_table: Literal["us_ssa"] = Field(
        "us_ssa", description="the shipped period life table: us_ssa, US Social Security Area 2023 (q_x by sex)")
    multiplier: float = Field(1.0, gt=0.0, description="scales the life-table hazard (e.g. excess comorbidity)")


class Biomarker(StrictModel):
    """Linear mixed model: y(t) = intercept + Σ coef·(x − ref) + b0 + (slope + b1)·t + ε.

    t in years since randomization; (b0, b1) patient random effects (bivariate normal);
    ε the residual (measurement) noise at each visit, independent across visits.
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


class DiseaseSpec(StrictModel):
    """A disease model file (``kind: disease``)."""

    kind: Literal["disease"] = Field(description="marks a disease model file")
    name: str = Field(description="human-readable name of the model")
    description: str = Field("", description="free text")
    sources: list[str] = Field([], description="references the rates and coefficients come from")
    time_step_months: float = Field(1.0, gt=0.0, le=12.0, description="step within which hazards are constant "
                                    "(ages, life-table rates and time-varying effects are updated per step)")
    states: list[State] = Field(min_length=2, description="the health states")
    initial_state: str = Field(description="state every patient starts in (not absorbing)")
    transitions: list[Transition] = Field(min_length=1, description="transitions between states, each with its hazard")
    background_mortality: BackgroundMortality | None = Field(
        None, description="competing death from other causes by age and sex (null: none)")
    biomarkers: list[Biomarker] = Field([], description="continuous measurements following linear mixed models")
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
            if t.from_ == t.to:
                raise ValueError(f"transitions[{i}]: from and to are the same state")
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
        return used


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
