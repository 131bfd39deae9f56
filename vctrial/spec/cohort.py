"""The typed cohort spec: who the patients are.

A cohort file lists covariates with their marginal distributions, optional derived covariates
(expressions of earlier ones), optional latent correlations (a Gaussian copula) and optional
eligibility criteria::

    kind: cohort
    name: Adults with HFrEF
    covariates:
      age: {distribution: normal, mean: 63.8, sd: 11.5, min: 18, max: 95, unit: years}
      nt_probnp: {distribution: lognormal, mean: 2500, sd: 3000, unit: pg/mL}
      sex_female: {distribution: binary, p: 0.218}
      nyha_class: {distribution: categorical, levels: [I, II, III, IV], p: [0.05, 0.70, 0.24, 0.01]}
    derived:
      bmi: {expr: "weight_kg / (height_cm / 100) ** 2", unit: kg/m2}
    correlations:
      - [height_cm, weight_kg, 0.45]
    eligibility:
      - "age >= 18"
      - "nyha_class in ['II', 'III', 'IV']"

An optional ``start`` block gives each patient a starting state of the disease model and the time
already spent in it, drawn jointly with the other covariates (they are covariates, so they take
part in the copula like any other)::

    covariates:
      hf_status: {distribution: categorical, levels: [stable, post_hhf], p: [0.7, 0.3]}
      months_since_hhf: {distribution: lognormal, mean: 4, sd: 3, unit: months}
    start:
      state: hf_status
      months_in_state: months_since_hhf

The levels of the ``state`` covariate are state names; when a protocol is loaded they must all be
non-absorbing states of its disease model. Without a ``start`` block every patient starts in the
disease model's ``initial_state`` with no time spent in it.

Everything is checked when the file is loaded, expressions included: a mistyped name fails before
any simulation starts, with the file, the key path and the reason.

Conventions of the copula (see :mod:`vctrial.cohort`): a binary covariate is 1 when its latent
normal is high, and a categorical one takes later levels when its latent normal is higher; so a
positive latent correlation means "tend to occur together" and "tend to be in later levels".
"""

from __future__ import annotations

import keyword
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
import pydantic
from pydantic_core import PydanticCustomError, ValidationError
from scipy import special

from vctrial.expr import FUNCTIONS, Expr, ExprError, parse
from vctrial.spec.base import StrictModel, load

__all__ = [
    "BinaryCovariate",
    "CategoricalCovariate",
    "CohortSpec",
    "Covariate",
    "CovariateModel",
    "DerivedCovariate",
    "LognormalCovariate",
    "NormalCovariate",
    "StartSpec",
    "load_cohort",
]

SUM_TOLERANCE = 1e-6
"""Categorical probabilities must sum to 1 within this tolerance."""

MIN_TRUNCATED_MASS = 1e-6
"""A truncation range must keep at least this share of the untruncated distribution."""

MIN_EIGENVALUE = 1e-10
"""The latent correlation matrix must have eigenvalues above this (positive definite)."""

# the unit column of the reference pages (vctrial.docgen) for values in the covariate's own unit
_COVARIATE_UNIT = {"unit": "the covariate's unit"}


def _fail(loc: tuple[Any, ...], message: str) -> None:
    """Raise a validation error at ``loc`` (relative to the model being validated)."""
    raise ValidationError.from_exception_data(
        "CohortSpec", [{"type": PydanticCustomError("cohort_spec", message), "loc": tuple(loc), "input": {}}]
    )


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _positive(value: float) -> float:
    if not value > 0 or not math.isfinite(value):
        raise ValueError("must be > 0")
    return value


def _probability(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def _g(x: float) -> str:
    return f"{x:.6g}"


class _Continuous(StrictModel):
    """Shared fields and checks of the normal and lognormal marginals."""

    mean: Annotated[float, pydantic.AfterValidator(_finite)] = pydantic.Field(
        description="mean of the untruncated distribution", json_schema_extra=_COVARIATE_UNIT)
    sd: Annotated[float, pydantic.AfterValidator(_positive)] = pydantic.Field(
        description="standard deviation of the untruncated distribution; > 0", json_schema_extra=_COVARIATE_UNIT)
    min: float | None = pydantic.Field(
        None, description="lower truncation bound: values are drawn from the distribution restricted to "
        "[min, max] (null: no bound)", json_schema_extra=_COVARIATE_UNIT)
    max: float | None = pydantic.Field(None, description="upper truncation bound (null: no bound)",
                                       json_schema_extra=_COVARIATE_UNIT)
    unit: str | None = pydantic.Field(
        None, description="unit of the values, e.g. years or mg/dL; patient files must state the same unit")

    @pydantic.field_validator("min", "max")
    @classmethod
    def _bound_finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number (leave it out for no bound)")
        return value

    def latent_bounds(self) -> tuple[float, float]:
        """Truncation bounds on the standard-normal scale of the untruncated marginal."""
        raise NotImplementedError

    def _check_truncation(self) -> None:
        if self.min is not None and self.max is not None and self.min >= self.max:
            _fail(("min",), f"must be < max, got min {_g(self.min)} >= max {_g(self.max)}")
        lo, hi = self.latent_bounds()
        mass = float(_normal_mass(lo, hi))
        if mass < MIN_TRUNCATED_MASS:
            low = "-inf" if self.min is None else _g(self.min)
            high = "inf" if self.max is None else _g(self.max)
            where = f"[{low}, {high}]"
            _fail(
                (),
                f"the truncation range {where} holds a negligible share ({mass:.2g}) of the "
                f"{self.distribution} distribution with mean {_g(self.mean)} and sd {_g(self.sd)}",
            )


class NormalCovariate(_Continuous):
    """Normal marginal, optionally truncated to [min, max]."""

    distribution: Literal["normal"] = pydantic.Field(description="selects the normal marginal")

    def latent_bounds(self) -> tuple[float, float]:
        lo = -math.inf if self.min is None else (self.min - self.mean) / self.sd
        hi = math.inf if self.max is None else (self.max - self.mean) / self.sd
        return lo, hi

    @pydantic.model_validator(mode="after")
    def _check(self) -> NormalCovariate:
        self._check_truncation()
        return self


class LognormalCovariate(_Continuous):
    """Lognormal marginal given by its natural-scale mean and sd, optionally truncated."""

    distribution: Literal["lognormal"] = pydantic.Field(description="selects the lognormal marginal")
    mean: Annotated[float, pydantic.AfterValidator(_positive)] = pydantic.Field(
        description="natural-scale mean of the untruncated distribution (not the mean of the log); > 0",
        json_schema_extra=_COVARIATE_UNIT)

    @pydantic.field_validator("min")
    @classmethod
    def _min_nonnegative(cls, value: float | None) -> float | None:
        if value is not None and value < 0:
            raise ValueError("must be >= 0 for a lognormal covariate")
        return value

    @property
    def mu(self) -> float:
        """Mean of the log."""
        return math.log(self.mean) - self.sigma**2 / 2.0

    @property
    def sigma(self) -> float:
        """SD of the log."""
        # log1p(ratio²) through logs: no overflow however large sd / mean is
        log_ratio = math.log(self.sd) - math.log(self.mean)
        if log_ratio > 0:
            return math.sqrt(2.0 * log_ratio + math.log1p(math.exp(-2.0 * log_ratio)))
        return math.sqrt(math.log1p(math.exp(2.0 * log_ratio)))

    def latent_bounds(self) -> tuple[float, float]:
        lo = -math.inf if not self.min else (math.log(self.min) - self.mu) / self.sigma
        hi = math.inf if self.max is None else (math.log(self.max) - self.mu) / self.sigma
        return lo, hi

    @pydantic.model_validator(mode="after")
    def _check(self) -> LognormalCovariate:
        if not math.isfinite(self.mu):
            _fail(("sd",), f"sd {_g(self.sd)} is too large for mean {_g(self.mean)}")
        if self.max is not None and self.max <= 0:
            _fail(("max",), f"must be > 0 for a lognormal covariate, got {_g(self.max)}")
        self._check_truncation()
        return self


class BinaryCovariate(StrictModel):
    """0/1 covariate, 1 with probability p (1 when its latent normal is high)."""

    distribution: Literal["binary"] = pydantic.Field(description="selects the 0/1 marginal")
    p: Annotated[float, pydantic.AfterValidator(_probability)] = pydantic.Field(
        description="probability of 1, between 0 and 1")


class CategoricalCovariate(StrictModel):
    """Categorical covariate; stored as level codes 0..K-1 in the order of ``levels``."""

    distribution: Literal["categorical"] = pydantic.Field(description="selects the categorical marginal")
    levels: list[str] = pydantic.Field(
        description="level names in order (quoted strings, at least 2); stored as codes 0..K-1, later levels "
        "going with higher latent values")
    p: list[float] = pydantic.Field(description="probability of each level, in the order of levels; they sum to 1")

    @pydantic.field_validator("levels", mode="before")
    @classmethod
    def _levels_are_strings(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        for i, level in enumerate(value):
            if not isinstance(level, str):
                hint = " (YAML reads yes/no/on/off/true/false as booleans)" if isinstance(level, bool) else ""
                _fail(
                    (i,),
                    f"levels must be quoted strings{hint}, got {level!r}: write '{_yaml_word(level)}'",
                )
        return value

    @pydantic.field_validator("levels")
    @classmethod
    def _levels_valid(cls, value: list[str]) -> list[str]:
        if len(value) < 2:
            _fail((), f"needs at least 2 levels, got {len(value)}")
        seen: set[str] = set()
        for i, level in enumerate(value):
            if not level.strip():
                _fail((i,), "a level cannot be empty")
            if "[" in level or "]" in level:
                _fail((i,), f"a level cannot contain '[' or ']', got {level!r}")
            if level in seen:
                _fail((i,), f"level {level!r} is listed twice")
            seen.add(level)
        return value

    @pydantic.field_validator("p")
    @classmethod
    def _p_valid(cls, value: list[float]) -> list[float]:
        for i, p in enumerate(value):
            if not 0.0 <= p <= 1.0:
                _fail((i,), f"must be between 0 and 1, got {p!r}")
        total = math.fsum(value)
        if abs(total - 1.0) > SUM_TOLERANCE:
            _fail((), f"must sum to 1, got {total:.6g}")
        return value

    @pydantic.model_validator(mode="after")
    def _same_length(self) -> CategoricalCovariate:
        if len(self.p) != len(self.levels):
            _fail(("p",), f"needs one probability per level ({len(self.levels)}), got {len(self.p)}")
        return self


def _yaml_word(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


_DISTRIBUTIONS: dict[str, type[StrictModel]] = {
    "normal": NormalCovariate,
    "lognormal": LognormalCovariate,
    "binary": BinaryCovariate,
    "categorical": CategoricalCovariate,
}


def _covariate(value: Any) -> StrictModel:
    """Validate one covariate with the model named by its ``distribution`` key.

    Done by hand rather than with a discriminated union so that error locations read
    ``covariates.age.sd`` and unknown keys list the keys of the right distribution.
    """
    if isinstance(value, tuple(_DISTRIBUTIONS.values())):
        return value
    if not isinstance(value, dict):
        _fail((), f"must be a mapping with a 'distribution' key, got {value!r}")
    if "distribution" not in value:
        _fail(("distribution",), f"required key is missing (one of {', '.join(_DISTRIBUTIONS)})")
    name = value["distribution"]
    model = _DISTRIBUTIONS.get(name) if isinstance(name, str) else None
    if model is None:
        _fail(("distribution",), f"must be one of {', '.join(_DISTRIBUTIONS)}, got {name!r}")
    return _validate_entry(model, value, f"a {name} covariate")


def _validate_entry(model: type[StrictModel], value: Any, what: str) -> Any:
    """Validate one entry of a name -> mapping dict; unknown keys list the valid ones.

    (The shared error formatter cannot see through the dict key to list them itself.)
    """
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] == "extra_forbidden":
            keys = ", ".join(sorted(model.model_fields))
            _fail(err["loc"], f"unknown key for {what} (valid keys: {keys})")
        raise


CovariateModel = Union[NormalCovariate, LognormalCovariate, BinaryCovariate, CategoricalCovariate]

# Typed as Any for pydantic (validation is done by ``_covariate``, serialization follows each
# value's own model); the values are always one of ``CovariateModel``.
Covariate = Annotated[Any, pydantic.PlainValidator(_covariate, json_schema_input_type=CovariateModel)]
"""One covariate's marginal distribution, chosen by its ``distribution`` key."""


class DerivedCovariate(StrictModel):
    """A covariate computed from earlier ones; a condition is stored as 1.0 / 0.0."""

    expr: str = pydantic.Field(
        description="expression of the covariates and earlier derived covariates in the expression grammar "
        "(+ - * / **, comparisons, and/or/not, in [...], log exp sqrt abs min max); a condition gives 1.0 or 0.0")
    unit: str | None = pydantic.Field(None, description="unit of the computed values")


def _derived(value: Any) -> Any:
    if isinstance(value, DerivedCovariate):
        return value
    if not isinstance(value, dict):
        _fail((), f"must be a mapping like {{expr: \"...\", unit: ...}}, got {value!r}")
    return _validate_entry(DerivedCovariate, value, "a derived covariate")


Derived = Annotated[Any, pydantic.PlainValidator(_derived, json_schema_input_type=DerivedCovariate)]
"""A derived covariate (validated as :class:`DerivedCovariate`)."""


class StartSpec(StrictModel):
    """Where patients start: a disease state and the months already spent in it, read from covariates.

    Both are covariates, so they are drawn jointly with the others through the copula; a positive
    latent correlation with ``state`` means "tends to start in a later level".
    """

    state: str = pydantic.Field(
        description="sampled categorical covariate whose level names are disease-model states: each patient "
        "starts in the state named by their level (every level must be a non-absorbing state of the "
        "protocol's disease model)")
    months_in_state: str | None = pydantic.Field(
        None, description="numeric covariate (normal with min >= 0, lognormal, or derived) holding the months "
        "each patient has already spent in their starting state at time zero; negative values count as 0 "
        "(null: 0 for everyone)")


class CohortSpec(StrictModel):
    """A cohort: covariates, derived covariates, latent correlations and eligibility."""

    kind: Literal["cohort"] = pydantic.Field(description="marks a cohort file")
    name: str = pydantic.Field(description="human-readable name of the cohort")
    description: str | None = pydantic.Field(None, description="free text: who the patients are")
    sources: list[str] = pydantic.Field([], description="references the marginals and correlations come from")
    covariates: dict[str, Covariate] = pydantic.Field(
        description="sampled covariates by name (identifiers), each a marginal distribution chosen by its "
        "distribution key; their order is the column order")
    derived: dict[str, Derived] = pydantic.Field(
        {}, description="covariates computed from the sampled ones, by name, in computation order")
    correlations: list[tuple[str, str, float]] = pydantic.Field(
        [], description="latent (Gaussian-copula) correlations [covariate, covariate, r] with -1 < r < 1; the "
        "matrix must be positive definite; unlisted pairs are independent")
    eligibility: list[str] = pydantic.Field(
        [], description="conditions in the expression grammar that every randomized patient meets; candidates "
        "failing one are screen failures")
    start: StartSpec | None = pydantic.Field(
        None, description="starting disease state and months already spent in it, read from covariates "
        "(null: every patient starts in the disease model's initial_state with 0 months)")

    _path: Path | None = pydantic.PrivateAttr(default=None)
    _derived_exprs: dict[str, Expr] = pydantic.PrivateAttr(default_factory=dict)
    _eligibility_exprs: list[Expr] = pydantic.PrivateAttr(default_factory=list)
    _correlation: Any = pydantic.PrivateAttr(default=None)

    @pydantic.field_validator("kind", mode="before")
    @classmethod
    def _kind_is_cohort(cls, value: Any) -> Any:
        if value != "cohort":
            raise ValueError("must be 'cohort'")
        return value

    @pydantic.field_validator("covariates")
    @classmethod
    def _some_covariates(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("at least one covariate is needed")
        return value

    @pydantic.model_validator(mode="after")
    def _check_whole(self) -> CohortSpec:
        for name in self.covariates:
            _check_name(("covariates", name), name)
        for name in self.derived:
            _check_name(("derived", name), name)
            if name in self.covariates:
                _fail(("derived", name), f"'{name}' is already a covariate")
        self._derived_exprs = self._parse_derived()
        self._correlation = self._check_correlations()
        self._eligibility_exprs = self._parse_eligibility()
        self._check_start()
        return self

    def _check_start(self) -> None:
        start = self.start
        if start is None:
            return
        categorical = [n for n, c in self.covariates.items() if isinstance(c, CategoricalCovariate)]
        choices = f"categorical covariates: {', '.join(categorical) or 'none'}"
        cov = self.covariates.get(start.state)
        if start.state in self.derived:
            _fail(("start", "state"), f"'{start.state}' is derived; the starting state must be a sampled "
                  f"categorical covariate ({choices})")
        if cov is None:
            _fail(("start", "state"), f"unknown covariate '{start.state}' ({choices})")
        if not isinstance(cov, CategoricalCovariate):
            _fail(("start", "state"), f"'{start.state}' is a {cov.distribution} covariate; the starting state must "
                  f"be a categorical covariate whose levels are disease states ({choices})")
        name = start.months_in_state
        if name is None or name in self.derived:
            return
        numeric = [n for n, c in self.covariates.items() if isinstance(c, (NormalCovariate, LognormalCovariate))]
        choices = f"normal or lognormal covariates: {', '.join(numeric) or 'none'}; or a derived covariate"
        cov = self.covariates.get(name)
        if cov is None:
            _fail(("start", "months_in_state"), f"unknown covariate '{name}' ({choices})")
        if not isinstance(cov, (NormalCovariate, LognormalCovariate)):
            _fail(("start", "months_in_state"), f"'{name}' is a {cov.distribution} covariate; months in the state "
                  f"must be a numeric covariate ({choices})")
        if isinstance(cov, NormalCovariate) and (cov.min is None or cov.min < 0):
            got = "no min" if cov.min is None else f"min {_g(cov.min)}"
            _fail(("start", "months_in_state"), f"'{name}' is a normal covariate that can be negative ({got}); "
                  f"give covariates.{name} a min >= 0 (e.g. min: 0) or use a lognormal")

    def _parse_derived(self) -> dict[str, Expr]:
        known: dict[str, tuple[str, ...] | None] = dict(self.levels_or_none())
        out: dict[str, Expr] = {}
        for name, item in self.derived.items():
            try:
                out[name] = parse(item.expr, known)
            except ExprError as exc:
                _fail(("derived", name, "expr"), exc.reason)
            known[name] = None
        return out

    def _parse_eligibility(self) -> list[Expr]:
        known = dict(self.levels_or_none())
        known.update({name: None for name in self.derived})
        out = []
        for i, text in enumerate(self.eligibility):
            try:
                expr = parse(text, known)
            except ExprError as exc:
                _fail(("eligibility", i), exc.reason)
            if not expr.is_condition:
                _fail(("eligibility", i), f"must be a condition (e.g. a comparison), got the number {text!r}")
            out.append(expr)
        return out

    def _check_correlations(self) -> tuple[tuple[float, ...], ...]:
        index = {name: j for j, name in enumerate(self.covariates)}
        matrix = np.eye(len(index))
        seen: dict[frozenset[str], int] = {}
        for i, (a, b, r) in enumerate(self.correlations):
            for name in (a, b):
                if name not in index:
                    if name in self.derived:
                        _fail(
                            ("correlations", i),
                            f"'{name}' is derived; correlations are between sampled covariates",
                        )
                    _fail(
                        ("correlations", i),
                        f"unknown covariate '{name}' (covariates: {', '.join(self.covariates)})",
                    )
            if a == b:
                _fail(("correlations", i), f"a covariate cannot be correlated with itself ('{a}')")
            if not (math.isfinite(r) and abs(r) < 1.0):
                _fail(("correlations", i), f"the correlation must be strictly between -1 and 1, got {r!r}")
            pair = frozenset((a, b))
            if pair in seen:
                _fail(("correlations", i), f"the pair ({a}, {b}) is already given in correlations[{seen[pair]}]")
            seen[pair] = i
            matrix[index[a], index[b]] = matrix[index[b], index[a]] = r
        if self.correlations:
            smallest = float(np.linalg.eigvalsh(matrix)[0])
            if smallest <= MIN_EIGENVALUE:
                _fail(
                    ("correlations",),
                    f"the correlation matrix is not positive definite (smallest eigenvalue {smallest:.2g})",
                )
        return tuple(tuple(float(x) for x in row) for row in matrix)

    # --- what the synthesis needs

    @property
    def path(self) -> Path | None:
        """The file this spec was loaded from (None if built in code)."""
        return self._path

    @property
    def source(self) -> str:
        """The file name for error messages, or a description when built in code."""
        return str(self._path) if self._path is not None else f"<cohort {self.name!r}>"

    @property
    def derived_exprs(self) -> dict[str, Expr]:
        """Parsed derived expressions, in computation order."""
        return dict(self._derived_exprs)

    @property
    def eligibility_exprs(self) -> list[Expr]:
        """Parsed eligibility conditions (all must hold)."""
        return list(self._eligibility_exprs)

    @property
    def correlation(self) -> np.ndarray:
        """Latent correlation matrix over the covariates, in spec order (a new array)."""
        return np.array(self._correlation, dtype=np.float64)

    @property
    def names(self) -> list[str]:
        """Covariate then derived names, in the order of the columns of a synthesized cohort."""
        return [*self.covariates, *self.derived]

    def levels(self) -> dict[str, tuple[str, ...]]:
        """Levels of the categorical covariates."""
        return {
            name: tuple(cov.levels)
            for name, cov in self.covariates.items()
            if isinstance(cov, CategoricalCovariate)
        }

    def levels_or_none(self) -> dict[str, tuple[str, ...] | None]:
        """Every covariate name mapped to its levels (categorical) or None (numeric)."""
        return {
            name: tuple(cov.levels) if isinstance(cov, CategoricalCovariate) else None
            for name, cov in self.covariates.items()
        }

    def units(self) -> dict[str, str | None]:
        """Unit of each column (None where not given or not applicable)."""
        out: dict[str, str | None] = {
            name: getattr(cov, "unit", None) for name, cov in self.covariates.items()
        }
        out.update({name: item.unit for name, item in self.derived.items()})
        return out


def _check_name(loc: tuple[Any, ...], name: str) -> None:
    if not name.isidentifier() or not name.isascii():
        _fail(
            loc,
            "names must be identifiers (ASCII letters, digits and '_', not starting with a digit), "
            f"got {name!r}",
        )
    if keyword.iskeyword(name):
        _fail(loc, f"'{name}' is a reserved word of the expression grammar; choose another name")
    if name.startswith("__"):
        _fail(loc, f"names cannot start with '__', got {name!r}")
    if name in FUNCTIONS:
        _fail(loc, f"'{name}' is the name of a function of the expression grammar; choose another name")


def _normal_mass(lo: float, hi: float) -> float:
    """P(lo < Z < hi) for a standard normal Z, accurate in both tails."""
    if lo > 0:
        return float(special.ndtr(-lo) - special.ndtr(-hi))
    return float(special.ndtr(hi) - special.ndtr(lo))


def load_cohort(path: str | Path) -> CohortSpec:
    """Read and validate a cohort file; the spec remembers ``path``.

    Raises:
        SpecError: naming the file, the key path and the reason.
    """
    spec = load(path, CohortSpec)
    spec._path = Path(path)
    return spec
