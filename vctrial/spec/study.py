"""Published figures a model is held against: validation suites and calibration files.

A **validation** file (``kind: validation``) describes one published study that a model was NOT
fitted to: its design as an ordinary trial protocol (whose cohort comes from the study's own
Table 1) and the figures it reported. A **calibration** file (``kind: calibration``) names the
published figures a disease model is fitted to (targets), the free parameters (key paths into the
disease file, with bounds and optional priors) and the method. Both describe a figure the same
way (:class:`Figure`), so a figure is computed identically whether it is fitted or checked.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import Field

from vctrial.errors import SpecError
from vctrial.spec.base import StrictModel, read_yaml, validate
from vctrial.spec.disease import DiseaseSpec
from vctrial.spec.protocol import Protocol, load_protocol

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

MEASURES = ("proportion", "rate_per_100py", "cumulative_incidence", "survival", "median_time", "hazard_ratio",
            "median_follow_up", "life_expectancy", "biomarker_mean", "biomarker_sd")
NEEDS_EVENTS = {"proportion", "rate_per_100py", "cumulative_incidence", "survival", "median_time", "hazard_ratio"}
NEEDS_MONTH = {"cumulative_incidence", "survival", "biomarker_mean", "biomarker_sd"}
BIOMARKER = {"biomarker_mean", "biomarker_sd"}
PROBABILITIES = {"proportion", "cumulative_incidence", "survival"}
LOG_SCALE = {"rate_per_100py", "median_time", "hazard_ratio", "median_follow_up", "life_expectancy", "biomarker_sd"}
UNITS = {"proportion": "1", "rate_per_100py": "events per 100 patient-years", "cumulative_incidence": "1",
         "survival": "1", "median_time": "months", "hazard_ratio": "1", "median_follow_up": "months",
         "life_expectancy": "years", "biomarker_mean": "the biomarker's unit", "biomarker_sd": "the biomarker's unit"}
Z95 = 1.959963984540054


class Uncertainty(StrictModel):
    """How sure the published figure is: give exactly one of count + denominator, events, se or ci.

    A 95% ``ci`` of a hazard ratio, rate, median or life expectancy is read on the log scale.
    """

    count: int | None = Field(None, ge=0, description="patients with the event (with denominator): binomial SE")
    denominator: int | None = Field(None, ge=1, description="patients at risk (with count)")
    events: int | None = Field(None, ge=1, description="events behind a rate: Poisson SE rate / sqrt(events)")
    se: float | None = Field(None, gt=0.0, description="standard error, in the figure's unit")
    ci: tuple[float, float] | None = Field(None, description="95% confidence interval (lower, upper)")

    @pydantic.model_validator(mode="after")
    def _one(self) -> Uncertainty:
        given = [k for k in ("count", "events", "se", "ci") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of count (with denominator), events, se or ci"
                             + (f" (got {', '.join(given)})" if given else ""))
        if (self.count is None) != (self.denominator is None):
            raise ValueError("count and denominator go together")
        if self.count is not None and self.count > self.denominator:
            raise ValueError(f"count {self.count} exceeds denominator {self.denominator}")
        if self.ci is not None and not self.ci[0] < self.ci[1]:
            raise ValueError(f"ci: lower must be below upper, got {list(self.ci)}")
        return self


class Figure(StrictModel):
    """One published figure and how to compute it from a simulated study."""

    name: str = Field(pattern=_NAME, description="identifier of the figure (unique in the file)")
    study: str | None = Field(None, description="which study (a key of `studies`); may be left out when there is one")
    measure: Literal[MEASURES] = Field(description=(
        "proportion: share of the arm's randomized patients with an observed first event ('n (%)'); "
        "rate_per_100py: first events per 100 patient-years at risk; cumulative_incidence: 1 - Kaplan-Meier "
        "at at_month; survival: Kaplan-Meier at at_month; median_time: Kaplan-Meier median, months; "
        "hazard_ratio: Cox hazard ratio of arm against the first arm; median_follow_up: reverse Kaplan-Meier "
        "median follow-up, months; life_expectancy: mean years to death from the uncensored paths, restricted "
        "to the protocol's follow-up; biomarker_mean, biomarker_sd: of the measured biomarker (measurement noise "
        "included) at at_month (0: baseline) in the arm's patients alive and followed then. All at the study's final "
        "analysis, with its censoring."))
    events: list[str] = Field([], description="disease events (transition names, the background death event) "
                              "whose first occurrence counts")
    arm: str | None = Field(None, description="arm of the study's protocol (default: the first); "
                            "hazard_ratio: the arm compared with the first")
    biomarker: str | None = Field(None, description="the disease model's biomarker (biomarker_mean, biomarker_sd)")
    where: str | None = Field(None, description=(
        "a subgroup: a condition on the cohort's covariates at baseline, e.g. \"sex_female == 1 and age < 65\" "
        "(the expression grammar of cohort files; null: every patient)"))
    at_month: float | None = Field(None, ge=0.0, description="months since randomization (cumulative_incidence, "
                                   "survival: > 0; biomarker figures: a whole number of model steps, 0 = baseline)")
    observed: float = Field(description="the published value, in the measure's unit")
    uncertainty: Uncertainty = Field(description="its uncertainty as published")
    source: str = Field(min_length=1, description="where exactly the value is printed (table, figure, page)")
    known_failure: str | None = Field(None, description=(
        "validation: why the model is known to miss this figure (a failure reported, not tuned away; the check "
        "still fails on it, and the test suite notices when its verdict changes)"))

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> Figure:
        if self.measure in NEEDS_EVENTS and not self.events:
            raise ValueError(f"events: {self.measure} needs the events that count")
        if self.measure in NEEDS_MONTH and self.at_month is None:
            raise ValueError(f"at_month: {self.measure} needs the month it is read at")
        if self.measure not in NEEDS_MONTH and self.at_month is not None:
            raise ValueError(f"at_month: not used by {self.measure}")
        if self.measure in ("cumulative_incidence", "survival") and self.at_month == 0:
            raise ValueError(f"at_month: a {self.measure} is read after time zero")
        if (self.measure in BIOMARKER) != (self.biomarker is not None):
            raise ValueError("biomarker: " + (f"{self.measure} needs the biomarker it reads" if self.biomarker is None
                                              else f"not used by {self.measure}"))
        if self.measure in BIOMARKER and self.events:
            raise ValueError(f"events: not used by {self.measure}")
        if self.measure in PROBABILITIES and not 0.0 <= self.observed <= 1.0:
            raise ValueError(f"observed: a {self.measure} lies in [0, 1], got {self.observed:g}")
        if self.measure in LOG_SCALE and self.observed <= 0.0:
            raise ValueError(f"observed: a {self.measure} is positive, got {self.observed:g}")
        u = self.uncertainty
        if u.count is not None and self.measure not in PROBABILITIES:
            raise ValueError(f"uncertainty.count: binomial counts describe proportions, not a {self.measure}")
        if u.events is not None and self.measure != "rate_per_100py":
            raise ValueError(f"uncertainty.events: Poisson counts describe rates, not a {self.measure}")
        if u.ci is not None and not u.ci[0] <= self.observed <= u.ci[1]:
            raise ValueError(f"uncertainty.ci: {list(u.ci)} does not contain the observed value {self.observed:g}")
        if u.ci is not None and self.measure in LOG_SCALE and u.ci[0] <= 0.0:
            raise ValueError(f"uncertainty.ci: the interval of a {self.measure} is read on the log scale and "
                             "must be positive")
        return self

    @property
    def se(self) -> float:
        """Standard error of the observed value, in its unit (log-scale intervals mapped back by the delta method)."""
        u, x = self.uncertainty, self.observed
        if u.se is not None:
            return u.se
        if u.count is not None:
            p = u.count / u.denominator
            p = min(max(p, 0.5 / u.denominator), 1 - 0.5 / u.denominator)
            return math.sqrt(p * (1 - p) / u.denominator)
        if u.events is not None:
            return x / math.sqrt(u.events)
        lo, hi = u.ci
        if self.measure in LOG_SCALE:
            return x * (math.log(hi) - math.log(lo)) / (2 * Z95)
        return (hi - lo) / (2 * Z95)


class Tolerance(StrictModel):
    """When a simulated figure agrees with the published one.

    It passes when the published value lies in the central ``level`` interval of the simulated studies'
    values (studies of the published one's size, so the interval holds its sampling variation), widened
    by ``relative`` for model error: [lower / (1 + relative), upper x (1 + relative)]; a probability is
    widened relative to the smaller of p and 1 - p, so that 99% against 88% is not within 15%.
    """

    level: float = Field(0.95, gt=0.5, lt=1.0, description="central interval of the simulated studies' values")
    relative: float = Field(0.15, ge=0.0, le=1.0, description=(
        "widening of that interval for model error: lower / (1 + relative), upper x (1 + relative); "
        "probabilities relative to the smaller of p and 1 - p"))


class StudySet(StrictModel):
    """What validation and calibration files share: studies and figures."""

    name: str = Field(description="human-readable name")
    description: str = Field("", description="free text: the study, and how its population differs")
    sources: list[str] = Field(min_length=1, description="full citations of the published figures")
    studies: dict[str, str] = Field(min_length=1, description="study name -> trial protocol file (relative to "
                                    "this file) describing its design and population")
    replicates: int = Field(40, ge=2, le=100_000, description="simulated studies per evaluation")
    seed: int = Field(1, ge=0, description="root seed (common random numbers across evaluations)")

    @pydantic.field_validator("studies")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        import re

        for k in v:
            if not re.fullmatch(_NAME[1:-1], k):
                raise ValueError(f"study name {k!r} must be an identifier")
        return v


class ValidationSpec(StudySet):
    """A published study NOT used in calibration, and what it reported (``kind: validation``)."""

    kind: Literal["validation"] = Field(description="marks a validation file")
    tolerance: Tolerance = Field(Tolerance(), description="when a figure passes")
    figures: list[Figure] = Field(min_length=1, description="every reported figure to compare")


class Prior(StrictModel):
    """A normal prior on the parameter's scale (log scale for a log-scaled parameter)."""

    mean: float = Field(description="prior mean, in the parameter's own unit")
    sd: float = Field(gt=0.0, description="prior SD on the parameter's scale (log scale: a relative SD)")


class FreeParameter(StrictModel):
    """One number of the disease file left free."""

    path: str = Field(pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$", description=(
        "dotted key path into the disease file; list items by name or index, "
        "e.g. transitions.hhf.rate_per_year or transitions.hhf.effects.0.coef"))
    lower: float = Field(description="lower bound")
    upper: float = Field(description="upper bound")
    scale: Literal["log", "linear"] | None = Field(None, description="search scale (default: log when lower > 0)")
    prior: Prior | None = Field(None, description="normal prior (null: flat within the bounds)")
    scales_with: list[str] = Field([], description=(
        "other key paths (positive numbers) multiplied by the same factor as this parameter, keeping their "
        "ratios to it (e.g. a hazard after an event set as a multiple of the hazard before it)"))

    @pydantic.model_validator(mode="after")
    def _bounds(self) -> FreeParameter:
        if not self.lower < self.upper:
            raise ValueError(f"lower ({self.lower:g}) must be below upper ({self.upper:g})")
        if self.scale == "log" and self.lower <= 0.0:
            raise ValueError("scale: log needs a positive lower bound")
        if self.scales_with and self.lower <= 0.0:
            raise ValueError("scales_with: needs a positive lower bound (the others move by a ratio)")
        if self.prior is not None and self.log_scale and self.prior.mean <= 0.0:
            raise ValueError("prior.mean: must be positive on a log scale")
        return self

    @property
    def log_scale(self) -> bool:
        return self.scale == "log" or (self.scale is None and self.lower > 0.0)


class Method(StrictModel):
    """How to search: scipy's bounded least squares on the standardized residuals."""

    name: Literal["least_squares"] = Field("least_squares", description=(
        "scipy.optimize.least_squares (trust-region reflective, bounds) on (simulated - observed) / SE per "
        "target, plus (value - prior mean) / prior SD per prior; common random numbers make it deterministic"))
    max_evaluations: int = Field(200, ge=2, le=100_000, description=(
        "most candidates evaluated, the k + 1 of the final Jacobian (for the Laplace draws) included"))
    step: float = Field(0.05, gt=0.0, le=1.0, description="finite-difference step on the search scale "
                        "(relative for log-scaled parameters); large enough to see through Monte Carlo grain")
    tolerance: float = Field(1e-3, gt=0.0, lt=1.0, description=(
        "stop when the objective, the step or the gradient changes by less than this (relative; scipy's "
        "ftol, xtol, gtol): Monte Carlo grain makes finer changes meaningless"))
    draws: int = Field(200, ge=0, le=100_000, description="parameter draws from the Laplace approximation "
                       "of the posterior, for parameter uncertainty in twin and population runs")


class CalibrationSpec(StudySet):
    """Published targets, free parameters and a method (``kind: calibration``)."""

    kind: Literal["calibration"] = Field(description="marks a calibration file")
    disease: str = Field(description="the disease file to calibrate (relative to this file); never overwritten")
    targets: list[Figure] = Field(min_length=1, description="published figures to fit")
    parameters: list[FreeParameter] = Field(min_length=1, description="free parameters")
    method: Method = Field(Method(), description="the search")

    @pydantic.model_validator(mode="after")
    def _budget(self) -> CalibrationSpec:
        k = len(self.parameters)
        if self.method.max_evaluations < 2 * (k + 1):
            raise ValueError(f"method.max_evaluations: at least 2 (k + 1) = {2 * (k + 1)} with {k} free parameters "
                             f"(a Jacobian needs k + 1 candidates; the last k + 1 are kept for the one at the fit), "
                             f"got {self.method.max_evaluations}")
        return self


class Study:
    """A loaded validation or calibration file with its protocols resolved and every figure checked."""

    def __init__(self, path: Path, spec: ValidationSpec | CalibrationSpec, protocols: dict[str, Protocol],
                 disease_data: dict | None = None):
        self.path = path
        self.spec = spec
        self.protocols = protocols
        self.disease_data = disease_data

    @property
    def figures(self) -> list[Figure]:
        return self.spec.targets if isinstance(self.spec, CalibrationSpec) else self.spec.figures

    def study_of(self, figure: Figure) -> str:
        return figure.study or next(iter(self.spec.studies))


def load_study(path: str | Path) -> Study:
    """Read a validation or calibration file; check its protocols, figures and parameters."""
    path = Path(path)
    data = read_yaml(path)
    kind = data.get("kind") if isinstance(data, dict) else None
    model = {"validation": ValidationSpec, "calibration": CalibrationSpec}.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise SpecError(str(path), "kind", f"must be validation or calibration, got {kind!r}")
    spec = validate(data, model, path)
    file = str(path)
    protocols = {}
    for name, ref in spec.studies.items():
        target = (path.parent / ref).resolve()
        if not target.is_file():
            raise SpecError(file, f"studies.{name}", f"referenced file not found: {ref} (looked for {target})")
        protocols[name] = load_protocol(target)
        if protocols[name].spec.endpoint.type != "time_to_event":
            raise SpecError(file, f"studies.{name}", "the study's protocol must have a time_to_event endpoint "
                            "(its follow-up and censoring define the figures)")
    disease_data = None
    if isinstance(spec, CalibrationSpec):
        disease_path = (path.parent / spec.disease).resolve()
        if not disease_path.is_file():
            raise SpecError(file, "disease", f"referenced file not found: {spec.disease} (looked for {disease_path})")
        for name, p in protocols.items():
            if Path(p.disease.path).resolve() != disease_path:
                raise SpecError(file, f"studies.{name}", f"its protocol uses disease {p.disease.path}, not the "
                                f"calibrated {spec.disease}; every study must use the disease file being calibrated")
        disease_data = read_yaml(disease_path)
        _check_parameters(file, spec, disease_data, disease_path)
    study = Study(path, spec, protocols, disease_data)
    key = "targets" if isinstance(spec, CalibrationSpec) else "figures"
    seen: set[str] = set()
    for i, fig in enumerate(study.figures):
        _check_figure(file, f"{key}[{i}]", fig, study)
        if fig.name in seen:
            raise SpecError(file, f"{key}[{i}].name", f"duplicate figure name {fig.name!r}")
        seen.add(fig.name)
    return study


def _check_figure(file: str, where: str, fig: Figure, study: Study) -> None:
    studies = study.spec.studies
    if fig.study is None and len(studies) > 1:
        raise SpecError(file, where + ".study", f"name the study ({', '.join(studies)})")
    if fig.study is not None and fig.study not in studies:
        raise SpecError(file, where + ".study", f"unknown study {fig.study!r} (studies: {', '.join(studies)})")
    protocol = study.protocols[study.study_of(fig)]
    events = protocol.disease.event_names
    for j, ev in enumerate(fig.events):
        if ev not in events:
            raise SpecError(file, f"{where}.events[{j}]", f"unknown event {ev!r} (disease has: {', '.join(events)})")
    arms = [a.name for a in protocol.spec.arms]
    if fig.arm is not None and fig.arm not in arms:
        raise SpecError(file, where + ".arm", f"unknown arm {fig.arm!r} (arms: {', '.join(arms)})")
    if fig.measure == "hazard_ratio" and (fig.arm is None or fig.arm == arms[0]):
        raise SpecError(file, where + ".arm", f"a hazard ratio compares an arm with the first arm ({arms[0]}): "
                        f"name another arm ({', '.join(arms[1:])})")
    if fig.where is not None:
        from vctrial.expr import ExprError, parse

        try:
            condition = parse(fig.where, protocol.cohort.levels_or_none())
        except ExprError as exc:
            raise SpecError(file, where + ".where", str(exc)) from None
        if not condition.is_condition:
            raise SpecError(file, where + ".where", f"must be a condition (true or false), got the number {fig.where!r}")
    markers = [b.name for b in protocol.disease.biomarkers]
    if fig.biomarker is not None:
        if fig.biomarker not in markers:
            raise SpecError(file, where + ".biomarker", f"unknown biomarker {fig.biomarker!r} (disease has: "
                            f"{', '.join(markers) or 'none'})")
        dt = protocol.disease.time_step_months
        if abs(fig.at_month / dt - round(fig.at_month / dt)) > 1e-9:
            raise SpecError(file, where + ".at_month", f"must be a whole number of the disease model's steps "
                            f"({dt:g} months), got {fig.at_month:g}")
    horizon = protocol.spec.horizon_months
    if fig.at_month is not None and fig.at_month > horizon:
        raise SpecError(file, where + ".at_month", f"is after the end of the study's follow-up ({horizon:g} months)")


def parameter_value(data: Any, dotted: str) -> Any:
    """The value at a dotted key path of parsed YAML (list items by name or index); KeyError if absent."""
    node = data
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list):
            hit = [i for i, item in enumerate(node) if isinstance(item, dict) and item.get("name") == part]
            if hit:
                node = node[hit[0]]
            elif part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise KeyError(part)
        else:
            raise KeyError(part)
    return node


def with_parameters(data: Any, values: dict[str, float]) -> Any:
    """A copy of parsed disease YAML with each dotted path set; YAML aliases are unshared first, so a path
    changes exactly the one number it names."""
    import json

    data = json.loads(json.dumps(data))
    for dotted, value in values.items():
        parts = dotted.split(".")
        parent = parameter_value(data, ".".join(parts[:-1])) if len(parts) > 1 else data
        last = parts[-1]
        if isinstance(parent, list):
            hit = [i for i, item in enumerate(parent) if isinstance(item, dict) and item.get("name") == last]
            parent[hit[0] if hit else int(last)] = float(value)
        else:
            parent[last] = float(value)
    return data


def _check_parameters(file: str, spec: CalibrationSpec, data: Any, disease_path: Path) -> None:
    seen = set()
    for i, p in enumerate(spec.parameters):
        where = f"parameters[{i}].path"
        if p.path in seen:
            raise SpecError(file, where, f"{p.path} is listed twice")
        seen.add(p.path)
        try:
            value = parameter_value(data, p.path)
        except KeyError as exc:
            raise SpecError(file, where, f"{p.path} is not in the disease file {disease_path.name} "
                            f"(no key {exc.args[0]!r})") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(file, where, f"{p.path} is not a number in {disease_path.name} (got {value!r})")
        if value <= 0.0 and p.scales_with:
            raise SpecError(file, where, f"{p.path} is {value:g}: scales_with needs a positive starting value")
        for j, other in enumerate(p.scales_with):
            try:
                v = parameter_value(data, other)
            except KeyError as exc:
                raise SpecError(file, f"parameters[{i}].scales_with[{j}]", f"{other} is not in the disease file "
                                f"{disease_path.name} (no key {exc.args[0]!r})") from None
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise SpecError(file, f"parameters[{i}].scales_with[{j}]", f"{other} must be a positive number, got {v!r}")
            if other in seen or other in {q.path for q in spec.parameters}:
                raise SpecError(file, f"parameters[{i}].scales_with[{j}]", f"{other} is set by another parameter")
            seen.add(other)
        if not p.lower <= value <= p.upper:
            raise SpecError(file, f"parameters[{i}]", f"bounds [{p.lower:g}, {p.upper:g}] exclude the starting value "
                            f"{value:g} of {p.path}")
    try:  # the file with every parameter at a bound must still be a valid disease model
        for bound in ("lower", "upper"):
            at = {p.path: getattr(p, bound) for p in spec.parameters}
            for p in spec.parameters:
                start = float(parameter_value(data, p.path))
                at.update({o: float(parameter_value(data, o)) * at[p.path] / start for o in p.scales_with})
            candidate = with_parameters(data, at)
            validate(candidate, DiseaseSpec, disease_path)
    except SpecError as exc:
        raise SpecError(file, "parameters", f"with every parameter at its {bound} bound the disease file is "
                        f"invalid: {exc}") from None


def disease_from(data: Any, path: Path) -> DiseaseSpec:
    """A disease spec built from parsed (possibly modified) YAML, remembering the file it came from."""
    spec = validate(copy.deepcopy(data), DiseaseSpec, path)
    spec._path = path
    return spec
