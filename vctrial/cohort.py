"""Cohort synthesis: a Gaussian copula over the marginals, derived covariates, eligibility.

Candidate patient ``k`` of replicate ``r`` has latent standard normals ``z[k, j]`` (one per
covariate ``j``) drawn by the counter-based generator at (seed, stream, r, k, j). They are
correlated with the Cholesky factor of the latent correlation matrix and mapped to each marginal
by its inverse CDF:

- normal / lognormal: ``x = F⁻¹(Φ(z))``; with truncation, Φ(z) is mapped into [F(min), F(max)]
  first, so the truncated marginal is exact;
- binary: 1 when ``z > Φ⁻¹(1 − p)`` (a high latent value means "present");
- categorical: the level code is the number of thresholds ``Φ⁻¹(p₁ + … + p_i)`` below ``z``
  (a higher latent value means a later level).

So a positive latent correlation means "tend to be high together", "tend to co-occur" and "tend
to be in later levels". Derived covariates are then computed in spec order, and candidates are
screened in index order: the first ``n_patients`` eligible candidates of each replicate are kept.
A candidate's covariates depend only on (seed, stream, replicate, k), so a cohort does not depend
on batch sizes, on which replicates are synthesized together, or on the machine.

A derived value that is not a finite number (the log of a negative number, a division by zero)
makes every comparison with it false, so such candidates fail any criterion that uses it; a kept
patient with a non-finite derived value is an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
from scipy import special

from vctrial import rng
from vctrial.errors import SpecError
from vctrial.spec.cohort import (
    BinaryCovariate,
    CategoricalCovariate,
    CohortSpec,
    LognormalCovariate,
    NormalCovariate,
)

__all__ = ["Cohort", "marginal", "start_arrays", "synthesize", "to_marginal"]

MIN_ELIGIBLE_FRACTION = 0.001
"""Synthesis stops with an error when fewer candidates than this are eligible..."""

MIN_EXAMINED_FOR_FAILURE = 20_000
"""...once at least this many candidates have been examined."""

BATCH_BYTES = 128 * 2**20
"""Rough ceiling on the memory used by one batch of candidates."""

_NORMAL, _LOGNORMAL, _BINARY, _CATEGORICAL = 0, 1, 2, 3
_INDICATOR = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[(.+)\]$")


@dataclass(frozen=True)
class Cohort:
    """Synthesized patients of several replicates.

    Attributes:
        columns: name -> array of shape (R, n), float64, read-only: covariates then derived
            columns in spec order; categoricals hold level codes 0..K-1, binaries 0/1.
        levels: name -> levels of each categorical covariate (code i is ``levels[name][i]``).
        n_screened: (R,) int64, candidates examined per replicate to find n eligible ones.
        replicates: (R,) int64 replicate indices.
        units: name -> unit (None where not given).
    """

    columns: dict[str, np.ndarray]
    levels: dict[str, tuple[str, ...]]
    n_screened: np.ndarray
    replicates: np.ndarray
    units: dict[str, str | None] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return list(self.columns)

    @property
    def n_replicates(self) -> int:
        return int(self.replicates.shape[0])

    @property
    def n_patients(self) -> int:
        """Patients per replicate."""
        first = next(iter(self.columns.values()))
        return int(first.shape[1])

    def column(self, name: str) -> np.ndarray:
        """One column, shape (R, n).

        ``name`` is a column name, or an indicator ``covariate[level]`` of a categorical
        covariate (e.g. ``nyha_class[III]``): 1.0 where the patient has that level, else 0.0.
        """
        if name in self.columns:
            return self.columns[name]
        match = _INDICATOR.match(name)
        if match:
            base, level = match.groups()
            if base not in self.levels:
                kind = "not categorical" if base in self.columns else "not a column"
                raise KeyError(f"{name!r}: '{base}' is {kind}; indicators need a categorical covariate")
            levels = self.levels[base]
            if level not in levels:
                raise KeyError(f"{name!r}: {level!r} is not a level of '{base}' (levels: {', '.join(levels)})")
            return (self.columns[base] == levels.index(level)).astype(np.float64)
        raise KeyError(
            f"no column {name!r} (columns: {', '.join(self.columns)}; "
            "categorical indicators are written like nyha_class[III])"
        )

    def to_dataframe(self, replicate_index: int = 0) -> Any:
        """One replicate as a pandas DataFrame (categoricals as pandas Categoricals).

        Args:
            replicate_index: position in ``replicates`` (not the replicate number itself).
        """
        import pandas as pd

        data: dict[str, Any] = {}
        for name, values in self.columns.items():
            row = values[replicate_index]
            if name in self.levels:
                data[name] = pd.Categorical.from_codes(row.astype(np.int64), categories=list(self.levels[name]))
            else:
                data[name] = row
        frame = pd.DataFrame(data)
        frame.index.name = "patient"
        return frame


def synthesize(
    spec: CohortSpec,
    n_patients: int,
    seed: int,
    replicates: np.ndarray | Sequence[int],
    stream: str = "cohort",
) -> Cohort:
    """Synthesize ``n_patients`` eligible patients for each replicate.

    Args:
        spec: the validated cohort spec.
        n_patients: eligible patients per replicate.
        seed: root seed (non-negative integer).
        replicates: replicate indices (1-D, non-negative integers).
        stream: name of the random stream; change it to draw an independent cohort.

    Returns:
        The :class:`Cohort`.

    Raises:
        SpecError: if too few candidates are eligible, or a derived covariate is not finite
            for a kept patient.
    """
    n_patients = _non_negative_int(n_patients, "n_patients")
    seed = _non_negative_int(seed, "seed")
    if seed >= 2**64:
        raise ValueError(f"seed must be < 2**64, got {seed}")
    reps = np.asarray(replicates)
    if reps.ndim != 1 or (reps.size and not np.issubdtype(reps.dtype, np.integer)):
        raise ValueError("replicates must be a 1-D array of integers")
    reps = reps.astype(np.int64)
    if reps.size and reps.min() < 0:
        raise ValueError("replicate indices must be >= 0")

    plan = _Plan(spec)
    names = spec.names
    n_rep = reps.shape[0]
    out = np.empty((len(names), n_rep, n_patients))
    n_screened = np.zeros(n_rep, dtype=np.int64)
    if n_patients > 0 and n_rep > 0:
        per_replicate = int(n_patients * 1.1) + 64
        group = max(1, plan.batch_candidates // per_replicate)
        sid = rng.stream_id(stream)
        for g0 in range(0, n_rep, group):
            g1 = min(n_rep, g0 + group)
            _screen(plan, seed, sid, reps[g0:g1], n_patients, out[:, g0:g1], n_screened[g0:g1])

    columns = {}
    for c, name in enumerate(names):
        values = out[c]
        values.flags.writeable = False
        columns[name] = values
    _check_finite(spec, columns)
    reps.flags.writeable = False
    n_screened.flags.writeable = False
    return Cohort(columns=columns, levels=spec.levels(), n_screened=n_screened, replicates=reps, units=spec.units())


def start_arrays(
    spec: CohortSpec, cohort: Cohort, state_names: list[str], initial_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each patient's starting state and the months already spent in it at time zero.

    Read from the covariates named by the spec's ``start`` block
    (:class:`vctrial.spec.cohort.StartSpec`); without one, every patient starts in
    ``initial_state`` with 0 months.

    Args:
        spec: the cohort spec ``cohort`` was synthesized from.
        cohort: the synthesized cohort, columns of shape (R, n).
        state_names: the disease model's state names; returned states index this list.
        initial_state: index into ``state_names`` of the state used when there is no ``start`` block.

    Returns:
        ``(state, months)``: (R, n) int64 indices into ``state_names``, and (R, n) float64 months
        already spent in that state (0 where not given; negative values clipped to 0).

    Raises:
        SpecError: a level of the start-state covariate is not one of ``state_names``.
        ValueError: ``initial_state`` is not a valid index.
    """
    if not 0 <= int(initial_state) < len(state_names):
        raise ValueError(f"initial_state must index state_names (0..{len(state_names) - 1}), got {initial_state}")
    shape = (cohort.n_replicates, cohort.n_patients)
    start = spec.start
    if start is None:
        return np.full(shape, int(initial_state), dtype=np.int64), np.zeros(shape, dtype=np.float64)
    levels = cohort.levels[start.state]
    lookup = np.empty(len(levels), dtype=np.int64)
    for code, level in enumerate(levels):
        if level not in state_names:
            raise SpecError(
                spec.source,
                "start.state",
                f"level {level!r} of '{start.state}' is not a state of the disease model "
                f"(states: {', '.join(state_names)})",
            )
        lookup[code] = state_names.index(level)
    state = lookup[cohort.column(start.state).astype(np.int64)]
    if start.months_in_state is None:
        months = np.zeros(shape, dtype=np.float64)
    else:
        months = np.maximum(cohort.column(start.months_in_state), 0.0).astype(np.float64, copy=False)
    return state, months


# ------------------------------------------------------------------------------ the compiled plan


class _Plan:
    """Arrays and parsed expressions compiled once from a spec."""

    def __init__(self, spec: CohortSpec):
        self.spec = spec
        self.covariates = list(spec.covariates)
        self.derived = spec.derived_exprs
        self.eligibility = spec.eligibility_exprs
        self.chol = np.ascontiguousarray(np.linalg.cholesky(spec.correlation))
        self.marginals = [marginal(cov) for cov in spec.covariates.values()]
        width = 2 * len(self.covariates) + len(self.derived) + 4
        self.batch_candidates = max(1024, BATCH_BYTES // (8 * width))


def marginal(cov: Any) -> tuple:
    """(kind, parameters...) of one covariate's inverse-CDF map (shared with population synthesis)."""
    if isinstance(cov, (NormalCovariate, LognormalCovariate)):
        lo, hi = cov.latent_bounds()
        if isinstance(cov, NormalCovariate):
            return (_NORMAL, cov.mean, cov.sd, lo, hi, cov.min, cov.max)
        return (_LOGNORMAL, cov.mu, cov.sigma, lo, hi, cov.min, cov.max)
    if isinstance(cov, BinaryCovariate):
        return (_BINARY, -float(special.ndtri(cov.p)))
    if isinstance(cov, CategoricalCovariate):
        p = np.asarray(cov.p, dtype=np.float64)
        cum = np.clip(np.cumsum(p)[:-1] / p.sum(), 0.0, 1.0)
        return (_CATEGORICAL, special.ndtri(cum))
    raise TypeError(f"unknown covariate type {type(cov).__name__}")  # pragma: no cover


def to_marginal(y: np.ndarray, inverse_cdf: tuple) -> np.ndarray:
    """Map latent standard normals ``y`` to one covariate's values (float64, same shape)."""
    kind = inverse_cdf[0]
    if kind == _BINARY:
        return (y > inverse_cdf[1]).astype(np.float64)
    if kind == _CATEGORICAL:
        return np.searchsorted(inverse_cdf[1], y, side="right").astype(np.float64)
    _, loc, scale, lo, hi, xmin, xmax = inverse_cdf
    z = _truncate(y, lo, hi)
    x = loc + scale * z
    if kind == _LOGNORMAL:
        np.exp(x, out=x)
    if xmin is not None or xmax is not None:
        np.clip(x, xmin, xmax, out=x)
    return x


def _truncate(y: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Standard normals -> standard normals truncated to [lo, hi], by the probability transform.

    Works in the lower tail when the range lies above 0 (by symmetry), so that ranges far in
    either tail keep their precision.
    """
    if lo == -math.inf and hi == math.inf:
        return y.copy()
    if lo > 0:
        a, b = special.ndtr(-hi), special.ndtr(-lo)
        u = special.ndtr(-y)
        z = -special.ndtri(a + u * (b - a))
    else:
        a, b = special.ndtr(lo), special.ndtr(hi)
        u = special.ndtr(y)
        z = special.ndtri(a + u * (b - a))
    return np.clip(z, lo, hi, out=z)


@numba.njit(cache=True)
def _latent(seed, stream, replicates, starts, m, chol):
    """Correlated latent normals of candidates starts[r] .. starts[r]+m-1; shape (J, R, m)."""
    n_rep = replicates.shape[0]
    n_col = chol.shape[0]
    out = np.empty((n_col, n_rep, m))
    z = np.empty(n_col)
    for r in range(n_rep):
        key = rng.stream_key(seed, stream, replicates[r])
        for i in range(m):
            k = starts[r] + i
            for j in range(n_col):
                z[j] = rng.normal(key, k, j)
            for j in range(n_col):
                s = 0.0
                for l in range(j + 1):
                    s += chol[j, l] * z[l]
                out[j, r, i] = s
    return out


def _candidates(
    plan: _Plan, seed: int, sid: int, reps: np.ndarray, starts: np.ndarray, m: int
) -> tuple[dict[str, np.ndarray], np.ndarray, list[np.ndarray]]:
    """Columns (R, m) of a batch of candidates, their eligibility, and each criterion's mask."""
    latent = _latent(np.uint64(seed), np.uint64(sid), reps, starts, m, plan.chol)
    cols: dict[str, np.ndarray] = {}
    for j, name in enumerate(plan.covariates):
        cols[name] = to_marginal(latent[j], plan.marginals[j])
    del latent
    for name, expr in plan.derived.items():
        cols[name] = expr.evaluate(cols).astype(np.float64, copy=False)
    eligible = np.ones((reps.shape[0], m), dtype=bool)
    masks = []
    for expr in plan.eligibility:
        mask = expr.evaluate(cols)
        masks.append(mask)
        eligible &= mask
    return cols, eligible, masks


def _screen(
    plan: _Plan,
    seed: int,
    sid: int,
    reps: np.ndarray,
    n: int,
    out: np.ndarray,
    n_screened: np.ndarray,
) -> None:
    """Fill ``out`` (columns, R, n) with the first n eligible candidates of each replicate."""
    names = plan.spec.names
    n_rep = reps.shape[0]
    got = np.zeros(n_rep, dtype=np.int64)
    start = np.zeros(n_rep, dtype=np.int64)
    examined = 0
    eligible_total = 0
    fraction = 1.0
    while True:
        active = np.flatnonzero(got < n)
        if active.size == 0:
            return
        need = n - got[active]
        wanted = int(math.ceil(need.max() / max(fraction, MIN_ELIGIBLE_FRACTION) * 1.1)) + 64
        m = max(1, min(wanted, plan.batch_candidates // active.size))
        cols, eligible, masks = _candidates(plan, seed, sid, reps[active], start[active], m)

        rank = np.cumsum(eligible, axis=1)
        keep = eligible & (rank <= need[:, None])
        src = np.flatnonzero(keep)
        ri = src // m
        dest = active[ri] * n + got[active][ri] + rank.ravel()[src] - 1
        for c, name in enumerate(names):
            target = out[c]  # (R, n), C-contiguous: a flat view is safe
            target.reshape(-1)[dest] = cols[name].reshape(-1)[src]
        found = rank[:, -1]
        done = found >= need
        last = np.argmax(rank >= need[:, None], axis=1)
        n_screened[active[done]] = start[active[done]] + last[done] + 1
        got[active] += np.minimum(found, need)
        start[active] += m

        examined += active.size * m
        eligible_total += int(found.sum())
        fraction = eligible_total / examined
        if examined >= MIN_EXAMINED_FOR_FAILURE and fraction < MIN_ELIGIBLE_FRACTION:
            raise SpecError(plan.spec.source, "eligibility", _too_few_message(plan, examined, eligible_total, masks))


def _too_few_message(plan: _Plan, examined: int, eligible: int, masks: list[np.ndarray]) -> str:
    rates = ", ".join(
        f"{expr.text!r} {100.0 * float(np.mean(mask)):.3g}%" for expr, mask in zip(plan.eligibility, masks)
    )
    return (
        f"only {100.0 * eligible / examined:.3g}% of candidates are eligible ({eligible} of {examined} "
        f"screened; at least {100.0 * MIN_ELIGIBLE_FRACTION:g}% are needed). Share of candidates meeting "
        f"each criterion: {rates}. Check the criteria against the covariate distributions."
    )


def _check_finite(spec: CohortSpec, columns: dict[str, np.ndarray]) -> None:
    """Derived covariates of kept patients must be finite numbers."""
    for name, expr in spec.derived_exprs.items():
        values = columns[name]
        bad = ~np.isfinite(values)
        if bad.any():
            r, i = (int(v[0]) for v in np.nonzero(bad))
            inputs = ", ".join(f"{n}={columns[n][r, i]:.6g}" for n in sorted(expr.names))
            raise SpecError(
                spec.source,
                f"derived.{name}.expr",
                f"gives {values[r, i]} for an eligible patient ({inputs}); "
                "restrict the inputs with truncation or eligibility",
            )


def _non_negative_int(value: Any, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return int(value)
