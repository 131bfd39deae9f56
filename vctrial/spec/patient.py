"""Real patients for the digital twin: one patient file (YAML) or a batch (CSV), checked against the
covariate definitions of the cohort and disease model of the protocol they are simulated under.

A patient file::

    kind: patient
    id: "MRN 0012345"              # optional; never written to outputs unless asked (--keep-ids)
    cohort: ../cohorts/t2d.yaml    # optional: the definitions this file was written for
    disease: ../diseases/t2d.yaml  # optional; both must be the protocol's own files
    as_of: 2026-03-02              # the decision date, time zero of the forecast (default: latest record)
    covariates:
      age: 67                      # a number in the cohort's unit,
      hba1c_pct: {value: 8.4, unit: "%"}   # or with its unit stated (it must be the cohort's)
      sex_female: 0                # binary: 0/1 or true/false
      nyha_class: "III"            # categorical: one of the cohort's levels
    history:
      measurements:                # dated biomarker values (condition the random effects)
        - {date: 2025-03-10, biomarker: hba1c, value: 8.1}
      events:                      # past transitions of the disease model, set the starting state
        - {date: 2025-11-20, event: mace}

A batch CSV has a column ``id`` (unique), one column per covariate (a header may state the unit,
``age (years)``), and optionally a column ``state`` with each patient's current state (default the
disease's initial state) and a column ``months_in_state`` with the months each patient has already
spent in it (a number >= 0; default 0). Columns are checked vectorized; an error names the line and
the column.

The months already spent in the starting state at ``as_of`` (``Patients.start_months``) are, for a
patient file, the time from the date of the last past event (the one that led to the starting state)
to ``as_of``, in months of 365.25 / 12 days; 0 without past events.

Checks: every covariate the disease model reads is given; names are cohort covariates (derived ones
are computed from their inputs); numbers are finite and inside the cohort's truncation bounds, or,
where the cohort sets none, within 6 SD of its distribution (on the log scale for lognormals);
binaries are 0/1; levels are the cohort's; stated units equal the cohort's; the cohort's
eligibility criteria hold (those whose covariates are all given); measurements name a biomarker of
the disease, lie inside its bounds and precede ``as_of``; past events form a path of the disease's
transitions that leaves the patient alive.
"""

from __future__ import annotations

import datetime
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pydantic
from pydantic import Field

from vctrial.errors import SpecError
from vctrial.spec.base import StrictModel, load
from vctrial.spec.cohort import BinaryCovariate, CategoricalCovariate, CohortSpec, LognormalCovariate, NormalCovariate
from vctrial.spec.disease import DiseaseSpec

PLAUSIBLE_SD = 6.0
"""Where a cohort sets no bound, values beyond this many SDs of its distribution are rejected."""

DAYS_PER_YEAR = 365.25
_INDICATOR = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[(.+)\]$")
_HEADER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$")
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


class Measurement(StrictModel):
    """One dated biomarker value."""

    date: datetime.date = Field(description="date of the measurement (YYYY-MM-DD), on or before as_of")
    biomarker: str = Field(description="name of the disease model's biomarker")
    value: float = Field(description="measured value, inside the model's bounds",
                         json_schema_extra={"unit": "the biomarker's unit"})
    unit: str | None = Field(None, description="unit, if stated: must be the disease model's unit for the biomarker")

    @pydantic.field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class PastEvent(StrictModel):
    """One dated transition of the disease model that already happened."""

    date: datetime.date = Field(description="date of the event (YYYY-MM-DD), on or before as_of")
    event: str = Field(description="name of a disease transition; in date order, past events must form a path "
                       "from the initial state that leaves the patient alive")


class History(StrictModel):
    """What is known of the patient before the decision date."""

    measurements: list[Measurement] = Field([], description="dated biomarker values: condition the patient's "
                                            "random effects")
    events: list[PastEvent] = Field([], description="dated past transitions: set the starting state, and the "
                                    "date of the last one the time already spent in it at as_of")


class PatientSpec(StrictModel):
    """A patient file (``kind: patient``); covariates are checked against the cohort later."""

    kind: Literal["patient"] = Field(description="marks a patient file")
    id: str | int | None = Field(None, description="identifier; replaced by a salted hash in outputs")
    cohort: str | None = Field(None, description="cohort file the covariates follow, relative to this file")
    disease: str | None = Field(None, description="disease model file, relative to this file")
    as_of: datetime.date | None = Field(None, description="decision date: time zero of the forecast (default: the "
                                        "latest dated measurement or event)")
    covariates: dict[str, Any] = Field(
        description="cohort covariate -> a number in the cohort's unit, {value, unit} with the unit stated, 0/1 "
        "or true/false for a binary, or a level (quoted) for a categorical; every covariate the disease reads")
    history: History = Field(History(), description="past measurements and events (default: none)")

    @pydantic.field_validator("covariates")
    @classmethod
    def _some(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("at least one covariate is needed")
        return value


@dataclass(frozen=True)
class Patients:
    """One or more real patients as arrays, ready for the twin.

    Attributes:
        ids: identifier of each patient (None when the file gives none).
        rows: (P,) where each patient came from: the CSV line, or 1 for a patient file.
        columns: name -> (P,) float64 covariate values (categoricals as level codes), derived included.
        levels: levels of the categorical covariates.
        start_state: (P,) int64 state index at time zero.
        measurements: biomarker -> (patient index (J,), years relative to as_of (J,) <= 0, value (J,)).
        start_months: (P,) float64 months each patient has already spent in its starting state at time
            zero (default: zeros).
    """

    ids: tuple[str | None, ...]
    rows: np.ndarray
    columns: dict[str, np.ndarray]
    levels: dict[str, tuple[str, ...]]
    start_state: np.ndarray
    measurements: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    source: str = ""
    start_months: np.ndarray | None = None

    def __post_init__(self) -> None:
        months = np.zeros(self.n) if self.start_months is None else np.asarray(self.start_months, np.float64)
        if months.shape != (self.n,):
            raise ValueError(f"start_months must hold one value per patient ({self.n}), got shape {months.shape}")
        object.__setattr__(self, "start_months", months)

    @property
    def n(self) -> int:
        return int(self.rows.shape[0])

    def column(self, name: str) -> np.ndarray:
        """(P,) values of a covariate, or of a categorical indicator like ``nyha_class[III]``."""
        if name in self.columns:
            return self.columns[name]
        match = _INDICATOR.match(name)
        if match and match.group(1) in self.levels:
            base, level = match.groups()
            return (self.columns[base] == self.levels[base].index(level)).astype(np.float64)
        raise KeyError(name)

    def take(self, index: np.ndarray) -> Patients:
        """The patients at ``index`` (measurements re-indexed)."""
        index = np.asarray(index, np.int64)
        where = np.full(self.n, -1, np.int64)
        where[index] = np.arange(index.shape[0])
        meas = {}
        for b, (pi, yrs, val) in self.measurements.items():
            keep = where[pi] >= 0
            meas[b] = (where[pi][keep], yrs[keep], val[keep])
        return Patients(tuple(self.ids[i] for i in index), self.rows[index],
                        {k: v[index] for k, v in self.columns.items()}, self.levels, self.start_state[index],
                        meas, self.source, self.start_months[index])


# ------------------------------------------------------------------------------------------ loading


def load_patient(path: str | Path, cohort: CohortSpec, disease: DiseaseSpec) -> Patients:
    """Read a patient file and check it against the protocol's cohort and disease model."""
    path = Path(path)
    spec = load(path, PatientSpec)
    file = str(path)
    for key, ref, expected in (("cohort", spec.cohort, cohort.path), ("disease", spec.disease, disease.path)):
        if ref is not None:
            target = (path.parent / ref).resolve()
            if expected is None or target != Path(expected).resolve():
                raise SpecError(file, key, f"{ref} is not the protocol's {key} file ({expected}); "
                                           "the patient must be described in the protocol's own covariates")
    raw: dict[str, np.ndarray] = {}
    for name, value in spec.covariates.items():
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"value", "unit"})
            if unknown or "value" not in value:
                raise SpecError(file, f"covariates.{name}", "write a value, or a mapping {value: ..., unit: ...}"
                                + (f" (unknown keys: {', '.join(unknown)})" if unknown else ""))
            _check_unit(cohort, name, value.get("unit"), file, f"covariates.{name}.unit")
            value = value["value"]
        raw[name] = np.array([value], dtype=object)
    columns = _check_columns(raw, cohort, disease, file, _Where(None))

    dates = [m.date for m in spec.history.measurements] + [e.date for e in spec.history.events]
    as_of = spec.as_of or (max(dates) if dates else None)
    for i, m in enumerate(spec.history.measurements):
        if m.date > as_of:
            raise SpecError(file, f"history.measurements[{i}].date", f"{m.date} is after as_of {as_of}")
    for i, e in enumerate(spec.history.events):
        if e.date > as_of:
            raise SpecError(file, f"history.events[{i}].date", f"{e.date} is after as_of {as_of}")
    _check_dates(spec, as_of, columns, disease, file)
    start = _start_state(spec.history.events, disease, file)
    last = max((e.date for e in spec.history.events), default=None)
    months = 0.0 if last is None else (as_of - last).days / (DAYS_PER_YEAR / 12.0)
    meas = _measurements(spec.history.measurements, as_of, disease, file)
    pid = None if spec.id is None else str(spec.id)
    return Patients((pid,), np.array([1], np.int64), columns, cohort.levels(), np.array([start], np.int64),
                    meas, file, np.array([months]))


def _check_dates(spec: PatientSpec, as_of: datetime.date | None, columns: dict[str, np.ndarray],
                 disease: DiseaseSpec, file: str) -> None:
    """The decision date is not in the future, and no record is older than the patient (by the age
    covariate at as_of, with a year's margin for a whole-year age)."""
    if as_of is None:
        return
    today = datetime.date.today()
    if as_of > today:
        raise SpecError(file, "as_of", f"{as_of} is after today ({today}): a decision date cannot be in the future")
    age_name = disease.age_covariate or (disease.background_mortality.age if disease.background_mortality else None)
    if age_name is None or age_name not in columns:
        return
    age = float(np.asarray(columns[age_name], np.float64)[0])
    born = as_of - datetime.timedelta(days=(age + 1.0) * DAYS_PER_YEAR)
    for where, items in (("measurements", spec.history.measurements), ("events", spec.history.events)):
        for i, item in enumerate(items):
            if item.date < born:
                raise SpecError(file, f"history.{where}[{i}].date", f"{item.date} is before the patient was born "
                                f"({age_name} {age:g} at as_of {as_of})")


def load_batch(path: str | Path, cohort: CohortSpec, disease: DiseaseSpec) -> Patients:
    """Read a batch CSV of patients (``id``, covariates, optional ``state``, ``months_in_state``); check every row."""
    import pandas as pd

    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(file, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(file, "", f"cannot be read ({exc})") from None
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, pd.errors.ParserError) as exc:
        raise SpecError(file, "", f"cannot be read as CSV ({exc})") from None
    if frame.shape[0] == 0:
        raise SpecError(file, "", "no patients (the file has a header but no rows)")
    # file line of each data row (blank lines are skipped by the reader)
    lines = np.array([i + 1 for i, line in enumerate(text.splitlines()) if line.strip()][1:], np.int64)
    if lines.shape[0] != frame.shape[0]:
        lines = np.arange(frame.shape[0], dtype=np.int64) + 2
    at = _Where(lines)
    raw: dict[str, np.ndarray] = {}
    ids = None
    state = None
    in_state = None
    for header in frame.columns:
        match = _HEADER.match(str(header))
        if not match:
            raise SpecError(file, f"column {header!r}", "a column is a covariate name, optionally with its unit "
                                                        "in brackets: age (years)")
        name, unit = match.group(1), match.group(2)
        if name in raw or (name == "id" and ids is not None) or (name == "state" and state is not None) \
                or (name == "months_in_state" and in_state is not None):
            raise SpecError(file, at.column(name), "appears twice")
        values = frame[header].to_numpy(dtype=object)
        values = np.array([v.strip() for v in values], dtype=object)
        if name == "id" and name not in cohort.covariates:
            ids = values
        elif name == "state" and name not in cohort.covariates:
            state = values
        elif name == "months_in_state" and name not in cohort.covariates:
            if unit is not None and unit.strip() not in ("months", "month"):
                raise SpecError(file, at.column(name), f"unit {unit.strip()!r}: months_in_state is in months")
            in_state = values
        else:
            if unit is not None:
                _check_unit(cohort, name, unit.strip(), file, at.column(name))
            raw[name] = values
    if ids is None:
        raise SpecError(file, "column 'id'", "required column is missing (one identifier per patient)")
    empty = np.flatnonzero(ids == "")
    if empty.size:
        raise SpecError(file, at.cell("id", empty[0]), "an identifier is required")
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        same = np.flatnonzero(ids == ids[first[np.argmax(counts > 1)]])
        raise SpecError(file, at.cell("id", same[1]), f"identifier repeats line {lines[same[0]]}")

    columns = _check_columns(raw, cohort, disease, file, at)
    states = [s.name for s in disease.states]
    if state is None:
        start = np.full(len(ids), states.index(disease.initial_state), np.int64)
    else:
        state = np.where(state == "", disease.initial_state, state)
        start = pd.Categorical(state, categories=states).codes.astype(np.int64)
        if (start < 0).any():
            i = int(np.argmax(start < 0))
            raise SpecError(file, at.cell("state", i), f"unknown state {state[i]!r} (states: {', '.join(states)})")
        absorbing = np.array([s.absorbing for s in disease.states])[start]
        if absorbing.any():
            i = int(np.argmax(absorbing))
            raise SpecError(file, at.cell("state", i), f"{state[i]!r} is absorbing: the twin is for living patients")
    months = np.zeros(len(ids))
    if in_state is not None:
        months = pd.to_numeric(pd.Series(np.where(in_state == "", "0", in_state)), errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(months) | (months < 0)  # NaN: not a number
        if bad.any():
            i = int(np.argmax(bad))
            raise SpecError(file, at.cell("months_in_state", i), "months already spent in the current state: must be "
                                                                 f"a finite number >= 0, got {in_state[i]!r}")
    return Patients(tuple(str(i) for i in ids), lines, columns, cohort.levels(), start, {}, file, months)


# ------------------------------------------------------------------------------------------ checks


def required_covariates(disease: DiseaseSpec, cohort: CohortSpec) -> dict[str, str]:
    """Cohort covariates the disease model needs -> the key path in the disease file that uses it."""
    needed: dict[str, str] = {}
    exprs = cohort.derived_exprs
    for key, col in disease.covariates_used():
        match = _INDICATOR.match(col)
        base = match.group(1) if match else col
        for name in sorted(exprs[base].names) if base in exprs else [base]:
            needed.setdefault(name, key)
    return needed


def _check_unit(cohort: CohortSpec, name: str, unit: str | None, file: str, where: str) -> None:
    if unit is None:
        return
    expected = cohort.units().get(name)
    if name in cohort.covariates and unit != (expected or ""):
        raise SpecError(file, where, f"unit {unit!r} is not the cohort's unit {expected!r} for {name}; "
                                     "convert the value to the cohort's unit")


@dataclass(frozen=True)
class _Where:
    """Key paths of errors: ``covariates.age`` in a patient file, ``line 4, age`` in a batch CSV."""

    lines: np.ndarray | None  # None for a patient file

    def cell(self, col: str, row: int) -> str:
        return f"covariates.{col}" if self.lines is None else f"line {self.lines[row]}, {col}"

    def column(self, col: str) -> str:
        return f"covariates.{col}" if self.lines is None else f"column {col!r}"

    def row(self, row: int) -> str:
        return "covariates" if self.lines is None else f"line {self.lines[row]}"


def _check_columns(raw: dict[str, np.ndarray], cohort: CohortSpec, disease: DiseaseSpec, file: str,
                   at: _Where) -> dict[str, np.ndarray]:
    """Convert and check covariate columns (object arrays of YAML values or CSV strings)."""
    for name in raw:
        if name in cohort.derived:
            inputs = ", ".join(sorted(cohort.derived_exprs[name].names))
            raise SpecError(file, at.column(name),
                            f"is derived by the cohort ({cohort.derived[name].expr}); give its inputs ({inputs})")
        if name not in cohort.covariates:
            raise SpecError(file, at.column(name),
                            f"not a covariate of cohort {cohort.source} (covariates: {', '.join(cohort.covariates)})")
    disease_file = str(disease.path) if disease.path else disease.name
    for name, key in required_covariates(disease, cohort).items():
        if name not in raw:
            where = "covariates" if at.lines is None else at.column(name)
            raise SpecError(file, where, f"{name!r} is missing; the disease model needs it ({disease_file}: {key})")
    columns: dict[str, np.ndarray] = {}
    for name, values in raw.items():
        columns[name] = _convert(cohort.covariates[name], name, values, file, at)
    for name, expr in cohort.derived_exprs.items():
        if expr.names <= columns.keys():
            columns[name] = expr.evaluate(columns).astype(np.float64)
    for i, expr in enumerate(cohort.eligibility_exprs):
        if expr.names <= columns.keys():
            ok = expr.evaluate(columns)
            if not ok.all():
                raise SpecError(file, at.row(int(np.argmin(ok))),
                                f"does not meet the cohort's eligibility criterion {expr.text!r} ({cohort.source}: "
                                f"eligibility[{i}]); the model does not describe such patients")
    return columns


def _convert(cov: Any, name: str, values: np.ndarray, file: str, at: _Where) -> np.ndarray:
    """One column to float64, checking type, level and range; errors name the first bad row."""
    import pandas as pd

    typed = at.lines is None  # YAML values keep their types; CSV cells are strings

    def fail(mask: np.ndarray, reason: Callable[[Any], str]) -> None:
        if mask.any():
            row = int(np.argmax(mask))
            raise SpecError(file, at.cell(name, row), reason(values[row]))

    if isinstance(cov, CategoricalCovariate):
        levels = list(cov.levels)
        if typed:
            fail(np.array([isinstance(v, bool) for v in values]),
                 lambda v: f"got the boolean {v!r}: YAML reads yes/no/on/off/true/false as booleans; quote the level")
            fail(np.array([not isinstance(v, str) for v in values]),
                 lambda v: f"must be one of the levels {', '.join(levels)} (quoted), got {v!r}")
        codes = pd.Categorical(values.astype(str), categories=levels).codes
        fail(codes < 0, lambda v: f"unknown level {v!r} (levels: {', '.join(levels)})")
        return codes.astype(np.float64)

    if isinstance(cov, BinaryCovariate):
        if typed:
            ok = np.array([isinstance(v, bool) or (isinstance(v, (int, float)) and v in (0, 1)) for v in values])
            fail(~ok, lambda v: f"must be 0 or 1 (or true/false), got {v!r}")
            return np.array([float(v) for v in values])
        low = np.char.lower(values.astype(str))
        number = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64)
        true = np.isin(low, list(_TRUE)) | (number == 1.0)
        fail(~(true | np.isin(low, list(_FALSE)) | (number == 0.0)),
             lambda v: f"must be 0 or 1 (or true/false), got {v!r}")
        return true.astype(np.float64)

    if typed:
        fail(np.array([isinstance(v, bool) or not isinstance(v, (int, float)) for v in values]),
             lambda v: f"must be a number, got {v!r}")
        x = np.array([float(v) for v in values])
    else:
        x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64)
        fail(np.isnan(x), lambda v: f"must be a number, got {v!r}" if v != "" else "a value is required")
    fail(~np.isfinite(x), lambda v: f"must be a finite number, got {v!r}")
    lo, hi, why = _plausible(cov)
    unit = f" {cov.unit}" if cov.unit else ""
    fail((x < lo) | (x > hi), lambda v: f"{v!r} is outside {why} [{lo:.6g}, {hi:.6g}]{unit}")
    return x


def _plausible(cov: NormalCovariate | LognormalCovariate) -> tuple[float, float, str]:
    """Accepted range of a continuous covariate and where it comes from."""
    if isinstance(cov, LognormalCovariate):
        lo_p = math.exp(cov.mu - PLAUSIBLE_SD * cov.sigma)
        hi_p = math.exp(cov.mu + PLAUSIBLE_SD * cov.sigma)
    else:
        lo_p = cov.mean - PLAUSIBLE_SD * cov.sd
        hi_p = cov.mean + PLAUSIBLE_SD * cov.sd
    lo = cov.min if cov.min is not None else lo_p
    hi = cov.max if cov.max is not None else hi_p
    if cov.min is not None and cov.max is not None:
        why = "the cohort's range"
    elif cov.min is None and cov.max is None:
        why = f"the plausible range (±{PLAUSIBLE_SD:g} SD of the cohort's distribution)"
    else:
        why = f"the cohort's bound and the plausible range (±{PLAUSIBLE_SD:g} SD)"
    return lo, hi, why


def _start_state(events: list[PastEvent], disease: DiseaseSpec, file: str) -> int:
    """Follow the past events from the initial state; the patient must still be alive."""
    states = {s.name: s for s in disease.states}
    by_name = {t.name: t for t in disease.transitions}
    order = sorted(range(len(events)), key=lambda i: events[i].date)
    state = disease.initial_state
    for i in order:
        e = events[i]
        where = f"history.events[{i}].event"
        if e.event not in by_name:
            bg = f"; {disease.background_mortality.event} is not a past event of a living patient" \
                if disease.background_mortality is not None and e.event == disease.background_mortality.event else ""
            raise SpecError(file, where, f"unknown event {e.event!r} (disease transitions: "
                                         f"{', '.join(by_name)}){bg}")
        t = by_name[e.event]
        if t.from_ != state:
            raise SpecError(file, where, f"{e.event!r} leaves state {t.from_!r}, but on {e.date} the patient was "
                                         f"in {state!r}")
        if states[t.to].absorbing:
            raise SpecError(file, where, f"{e.event!r} ends in {t.to!r}: the twin is for living patients")
        state = t.to
    return [s.name for s in disease.states].index(state)


def _measurements(items: list[Measurement], as_of: datetime.date | None, disease: DiseaseSpec,
                  file: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    markers = {b.name: b for b in disease.biomarkers}
    out: dict[str, list[tuple[float, float]]] = {}
    for i, m in enumerate(items):
        where = f"history.measurements[{i}]"
        b = markers.get(m.biomarker)
        if b is None:
            raise SpecError(file, where + ".biomarker", f"unknown biomarker {m.biomarker!r} (disease has: "
                                                        f"{', '.join(markers) or 'none'})")
        if m.unit is not None and m.unit != b.unit:
            raise SpecError(file, where + ".unit", f"unit {m.unit!r} is not the disease model's unit {b.unit!r} for "
                                                  f"{b.name}; convert the value")
        if (b.min is not None and m.value < b.min) or (b.max is not None and m.value > b.max):
            raise SpecError(file, where + ".value", f"{m.value:g} is outside the model's range for {b.name} "
                                                    f"[{b.min if b.min is not None else '-inf'}, "
                                                    f"{b.max if b.max is not None else 'inf'}]")
        if b.residual_sd <= 0.0:
            raise SpecError(file, where, f"the disease model gives {b.name} no measurement noise (residual_sd 0), "
                                         "so its random effects cannot be conditioned on measured values")
        years = (m.date - as_of).days / DAYS_PER_YEAR
        out.setdefault(b.name, []).append((years, m.value))
    return {name: (np.zeros(len(v), np.int64), np.array([y for y, _ in v]), np.array([x for _, x in v]))
            for name, v in out.items()}
