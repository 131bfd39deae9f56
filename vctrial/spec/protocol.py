"""Typed trial-protocol spec: arms and effects, enrollment, follow-up, dropout, endpoint, analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import pydantic
from pydantic import Field

from vctrial.errors import SpecError
from vctrial.spec.base import StrictModel, read_yaml, validate
from vctrial.spec.disease import DiseaseSpec, load_disease

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class HazardEffect(StrictModel):
    """Multiplies the hazard of one named transition of the disease model."""

    transition: str
    hazard_ratio: float = Field(gt=0.0)


class BiomarkerEffect(StrictModel):
    """Shifts a biomarker (after baseline) and changes its slope."""

    biomarker: str
    shift: float = Field(0.0, description="additive change after baseline, in the biomarker's unit")
    slope_change_per_year: float = Field(0.0, description="change of slope, unit per year")


Effect = Annotated[Union[HazardEffect, BiomarkerEffect], Field(union_mode="left_to_right")]


class Arm(StrictModel):
    name: str = Field(pattern=_NAME)
    allocation: int = Field(1, ge=1, le=20, description="allocation weight (e.g. 2 and 1 for 2:1)")
    effects: list[Effect] = []


class Randomization(StrictModel):
    method: Literal["permuted_block", "simple"] = "permuted_block"
    block_size: int | None = Field(None, ge=1, description="multiple of the allocation total; default 2× it")


class Enrollment(StrictModel):
    """Uniform accrual: patients enter at the order statistics of uniforms over the period."""

    duration_months: float = Field(gt=0.0)


class FixedFollowUp(StrictModel):
    """Every patient is followed for the same time from randomization."""

    type: Literal["fixed"]
    duration_months: float = Field(gt=0.0)


class EventDrivenFollowUp(StrictModel):
    """The analysis happens on the calendar date of the target-th endpoint event."""

    type: Literal["event_driven"]
    target_events: int = Field(ge=2)
    max_duration_months: float = Field(gt=0.0, description="analysis by this date (from first randomization) at the latest")


FollowUp = Annotated[Union[FixedFollowUp, EventDrivenFollowUp], Field(discriminator="type")]


class Dropout(StrictModel):
    """Loss to follow-up at a constant hazard; dropped-out patients are censored."""

    rate_per_year: float = Field(0.0, ge=0.0)


class TimeToEventEndpoint(StrictModel):
    """Time from randomization to the first of the named events."""

    type: Literal["time_to_event"]
    label: str = ""
    events: list[str] = Field(min_length=1)


class BiomarkerChangeEndpoint(StrictModel):
    """Change of a biomarker from baseline (month 0) to a visit."""

    type: Literal["biomarker_change"]
    label: str = ""
    biomarker: str
    visit_month: float = Field(gt=0.0)


Endpoint = Annotated[Union[TimeToEventEndpoint, BiomarkerChangeEndpoint], Field(discriminator="type")]


class Analysis(StrictModel):
    """logrank: log-rank test, Cox hazard ratio; ancova: change ~ arm + baseline."""

    method: Literal["logrank", "ancova"]
    alpha: float = Field(0.025, gt=0.0, lt=0.5)
    sided: Literal["one", "two"] = "one"
    confidence_level: float = Field(0.95, gt=0.5, lt=1.0)
    benefit: Literal["lower", "higher"] = Field(
        "lower", description="direction of benefit of the estimate (time-to-event: lower hazard)")


class TrialProtocol(StrictModel):
    """A trial protocol file (``kind: trial``)."""

    kind: Literal["trial"]
    name: str
    description: str = ""
    cohort: str = Field(description="cohort file, relative to this protocol")
    disease: str = Field(description="disease model file, relative to this protocol")
    sample_size: int = Field(ge=4)
    arms: list[Arm] = Field(min_length=2, max_length=2, description="control first, then active")
    randomization: Randomization = Randomization()
    enrollment: Enrollment
    follow_up: FollowUp
    dropout: Dropout = Dropout()
    endpoint: Endpoint
    analysis: Analysis

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> TrialProtocol:
        if self.arms[0].name == self.arms[1].name:
            raise ValueError("arms: duplicate arm name")
        if self.arms[0].effects:
            raise ValueError("arms[0].effects: the first arm is the control and takes no effects")
        tte = self.endpoint.type == "time_to_event"
        if tte != (self.analysis.method == "logrank"):
            want = "logrank" if tte else "ancova"
            raise ValueError(f"analysis.method: a {self.endpoint.type} endpoint is analysed by {want}")
        if tte and self.analysis.benefit != "lower":
            raise ValueError("analysis.benefit: for a time-to-event endpoint benefit is a lower hazard ('lower')")
        if not tte and self.follow_up.type == "event_driven":
            raise ValueError("follow_up.type: event_driven needs a time_to_event endpoint")
        bs = self.randomization.block_size
        total = sum(a.allocation for a in self.arms)
        if bs is not None and bs % total:
            raise ValueError(f"randomization.block_size: must be a multiple of the allocation total {total}, got {bs}")
        return self

    @property
    def block_size(self) -> int:
        return self.randomization.block_size or 2 * sum(a.allocation for a in self.arms)

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
            if isinstance(e, HazardEffect) and e.hazard_ratio != 1.0:
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
        if isinstance(node, list):
            node[_index(node, last, dotted, path)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise SpecError(str(path), dotted, "cannot set a key inside a scalar")
    return data


def _child(node, part: str, dotted: str, path: Path):
    if isinstance(node, dict) and part in node:
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
    known = set(cohort.names) | {f"{name}[{level}]" for name, levels in cohort.levels().items() for level in levels}
    for key, col in disease.covariates_used():
        if col not in known:
            raise SpecError(str(disease.path), key,
                            f"cohort {spec.cohort} has no covariate {col!r} (has: {', '.join(sorted(known))})")
