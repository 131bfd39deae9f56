"""Multi-state progression: hazards that follow the patient in time, treatment hazard ratios,
competing background death, and biomarkers that move risk.

The hazard of transition k for patient i in step t of arm a is

    rate_ik × time_factor_k(t) × hr_a,k(t) × tis_k(u) × exp(Σ_b α_kb (m_ib(t) − ref) + γ_kb m'_ib(t))

with rate_ik the hazard at the patient's baseline covariates, time_factor the exact step average of
ageing and drifting covariates (exp(g_k t)) and of the baseline's shape in time on study, tis_k a
piecewise-constant multiplier by u, the months since entering the current state, and m, m' the
current true value and slope of each biomarker (a joint longitudinal–event model).

Each patient carries a clock of cumulative hazard. An event happens when the clock reaches an
exponential threshold E = -log(U); the kernel then picks which transition fired in proportion to
the hazards at that moment and draws a fresh threshold. Hazards are constant within a step except
at time-in-state breakpoints, where the step is split, so events are resolved exactly in continuous
time (no ties) at one addition per patient-segment and one logarithm per event. The same patient
meets the same thresholds in every arm (common random numbers). A hazard ratio below one on every
transition delays the patient's *first* event; after it, a multistate path can differ between
arms in either direction (an event that comes later can enter a state with a higher hazard at a
different threshold), so later events are not ordered between arms.

Per step, the order is: biomarker values at the start of the step are recorded; the intensification
rule is checked at its visits (the observed value is the true value plus the visit's measurement
noise); background hazard from the life table at the patient's current age; transition hazards
with biomarker values at the middle of the step; the clock advances across the step, segment by
segment, resolving as many events as fall inside it; the biomarkers' mean-reverting process moves
to the next step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from vctrial import rng
from vctrial.disease.lifetable import MAX_AGE, hazard_per_month
from vctrial.spec.disease import DiseaseSpec, TimeOnStudy

BLOCK = 512  # patients per parallel work item


@dataclass(frozen=True)
class MultiStateModel:
    """A disease spec compiled to arrays (no Python objects reach the kernel)."""

    state_names: tuple[str, ...]
    event_names: tuple[str, ...]  # transitions, then background death if any
    out_ptr: np.ndarray  # (S + 1,) int64: transitions leaving state s are out_idx[out_ptr[s]:out_ptr[s+1]]
    out_idx: np.ndarray  # (K,) int64
    to_state: np.ndarray  # (E,) int64, target state of each event
    absorbing: np.ndarray  # (S,) bool
    initial_state: int
    step_months: float
    bg_hazard: np.ndarray  # (2, MAX_AGE + 1) per month; zeros if no background mortality
    has_background: bool
    log_slope: np.ndarray = None  # (K,) change of the log hazard per year from ageing and drifts
    time_on_study: tuple = ()  # (K,) TimeOnStudy or None
    breakpoints: np.ndarray = None  # (S, J) months in state where some hazard out of s changes (inf padded)
    n_breakpoints: np.ndarray = None  # (S,) int64
    tis_mult: np.ndarray = None  # (K, J + 1) multiplier in each time-in-state interval of the from state
    link_value: np.ndarray = None  # (K, B) log HR per unit of a biomarker's true value
    link_reference: np.ndarray = None  # (K, B)
    link_slope: np.ndarray = None  # (K, B) log HR per unit/year of its slope
    process: np.ndarray = None  # (B, 12) biomarker process parameters, see PROCESS_COLUMNS
    marker_names: tuple[str, ...] = ()
    source: str = ""  # the disease file, for errors

    @property
    def n_transitions(self) -> int:
        return self.out_idx.shape[0]

    @property
    def has_links(self) -> bool:
        return bool(self.link_value.any() or self.link_slope.any())

    @property
    def has_intensification(self) -> bool:
        return bool((self.process[:, PROCESS_COLUMNS.index("every_steps")] > 0).any())


PROCESS_COLUMNS = ("slope", "kappa", "phi", "sd_w", "every_steps", "direction", "threshold", "added_shift",
                   "max_times", "residual_sd", "lo", "hi")
"""Columns of ``MultiStateModel.process``: mean slope/year, slope fading rate κ/year, OU step
autocorrelation φ, OU stationary SD, intensification visit interval (steps, 0: none), direction (+1
above, −1 below), threshold, shift per addition, most additions, measurement SD, clipping bounds."""


def compile_model(spec: DiseaseSpec) -> MultiStateModel:
    """Arrays of the state graph, the time-varying parts of the hazards and the background hazard."""
    states = [s.name for s in spec.states]
    index = {name: i for i, name in enumerate(states)}
    by_source: list[list[int]] = [[] for _ in states]
    for k, t in enumerate(spec.transitions):
        by_source[index[t.from_]].append(k)
    out_ptr = np.zeros(len(states) + 1, np.int64)
    out_ptr[1:] = np.cumsum([len(b) for b in by_source])
    out_idx = np.array([k for b in by_source for k in b], np.int64)
    to_state = [index[t.to] for t in spec.transitions]
    bg = spec.background_mortality
    if bg is not None:
        to_state.append(index[bg.to])
        if bg.remove_causes:
            bg_hazard = hazard_per_month(bg.life_table, bg.multiplier, remove=tuple(bg.remove_causes))
        else:
            bg_hazard = hazard_per_month(bg.life_table, bg.multiplier)
    else:
        bg_hazard = np.zeros((2, MAX_AGE + 1))
    # time in state: the union of the breakpoints of the transitions leaving each state
    K, S = len(spec.transitions), len(states)
    cuts = [sorted({p.until_month for k in by_source[s] for p in spec.transitions[k].time_in_state})
            for s in range(S)]
    J = max([len(c) for c in cuts] + [1])
    breakpoints = np.full((S, J), np.inf)
    n_bp = np.zeros(S, np.int64)
    for s, c in enumerate(cuts):
        breakpoints[s, :len(c)] = c
        n_bp[s] = len(c)
    tis = np.ones((K, J + 1))
    for k, t in enumerate(spec.transitions):
        c = cuts[index[t.from_]]
        for j in range(len(c)):  # interval j is [c[j-1], c[j]); a piece covers the intervals ending by its until
            piece = next((p for p in t.time_in_state if c[j] <= p.until_month), None)
            tis[k, j] = piece.multiplier if piece is not None else 1.0
    markers = [b.name for b in spec.biomarkers]
    B = len(markers)
    link_value, link_ref, link_slope = np.zeros((K, max(B, 1))), np.zeros((K, max(B, 1))), np.zeros((K, max(B, 1)))
    for k, t in enumerate(spec.transitions):
        for term in t.biomarkers:
            b = markers.index(term.biomarker)
            link_value[k, b] += term.coef
            link_ref[k, b] = term.reference
            link_slope[k, b] += term.slope_coef
    return MultiStateModel(
        state_names=tuple(states),
        event_names=tuple(spec.event_names),
        out_ptr=out_ptr,
        out_idx=out_idx,
        to_state=np.array(to_state, np.int64),
        absorbing=np.array([s.absorbing for s in spec.states]),
        initial_state=index[spec.initial_state],
        step_months=spec.time_step_months,
        bg_hazard=bg_hazard,
        has_background=bg is not None,
        log_slope=np.array(spec.log_hazard_slopes(), np.float64),
        time_on_study=tuple(t.time_on_study for t in spec.transitions),
        breakpoints=breakpoints,
        n_breakpoints=n_bp,
        tis_mult=tis,
        link_value=link_value,
        link_reference=link_ref,
        link_slope=link_slope,
        process=process_table(spec),
        marker_names=tuple(markers),
        source=str(spec.path) if getattr(spec, "path", None) is not None else "",
    )


def process_table(spec: DiseaseSpec) -> np.ndarray:
    """(B, len(PROCESS_COLUMNS)) parameters of each biomarker's process for the kernel."""
    dt = spec.time_step_months
    rows = []
    for b in spec.biomarkers:
        kappa = 0.0 if b.slope_half_life_years is None else math.log(2.0) / b.slope_half_life_years
        phi = math.exp(-math.log(2.0) / b.process_half_life_years * dt / 12.0)
        rule = b.intensification
        every = 0 if rule is None else int(round(rule.every_months / dt))
        direction = 0.0 if rule is None else (1.0 if rule.above is not None else -1.0)
        threshold = 0.0 if rule is None else (rule.above if rule.above is not None else rule.below)
        rows.append([b.slope_per_year, kappa, phi, b.process_sd, every, direction, threshold,
                     0.0 if rule is None else rule.shift, 0 if rule is None else rule.max_times, b.residual_sd,
                     -np.inf if b.min is None else b.min, np.inf if b.max is None else b.max])
    return np.array(rows, np.float64).reshape(len(rows), len(PROCESS_COLUMNS))


def time_factor(model: MultiStateModel, n_steps: int, ageing: bool = True) -> np.ndarray:
    """(K, n_steps) multiplier of each transition's baseline hazard in each step: the exact step
    average of exp(g_k t) (ageing, drifts; left out with ``ageing=False``) times the exact step
    average of the time-on-study shape."""
    dt = model.step_months
    t0 = np.arange(n_steps) * dt
    t1 = t0 + dt
    out = np.ones((model.n_transitions, n_steps))
    for k in range(model.n_transitions):
        g = model.log_slope[k] / 12.0 if ageing else 0.0  # per month
        if g != 0.0:
            out[k] *= np.expm1(g * dt) / (g * dt) * np.exp(g * t0)
        shape = model.time_on_study[k]
        if shape is not None:
            out[k] *= _shape_average(shape, t0, t1)
    return out


def _shape_average(shape: TimeOnStudy, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """Average over [t0, t1) months of the time-on-study multiplier."""
    if shape.weibull_shape is not None:
        k = shape.weibull_shape
        return ((t1 / 12.0) ** k - (t0 / 12.0) ** k) / ((t1 - t0) / 12.0)
    ends = np.array([0.0] + [p.until_month for p in shape.piecewise] + [np.inf])
    mult = np.array([p.multiplier for p in shape.piecewise] + [1.0])
    total = np.zeros_like(t0)
    for j in range(len(mult)):
        total += mult[j] * np.clip(np.minimum(t1, ends[j + 1]) - np.maximum(t0, ends[j]), 0.0, None)
    return total / (t1 - t0)


def linear_predictor(effects, column) -> np.ndarray:
    """Σ coef·(x − reference) over a list of CovariateEffect; ``column(name)`` gives (R, n) arrays."""
    lp = None
    for e in effects:
        term = e.coef * (column(e.covariate) - e.reference)
        lp = term if lp is None else lp + term
    return lp


def patient_rates(spec: DiseaseSpec, column, shape: tuple[int, int]) -> np.ndarray:
    """(R, n, K) hazard per month of each transition at each patient's covariates."""
    rate = np.empty(shape + (len(spec.transitions),))
    for k, t in enumerate(spec.transitions):
        lp = linear_predictor(t.effects, column)
        rate[..., k] = t.rate_per_year / 12.0 * (np.exp(lp) if lp is not None else 1.0)
    return rate


@dataclass(frozen=True)
class Paths:
    """What happened to every patient of a batch under every arm (counterfactually).

    Times are months since time zero; ``inf`` means not by the horizon.
    """

    first_time: np.ndarray  # (R, n, A, E) first occurrence of each event
    death_time: np.ndarray  # (R, n, A) entry into an absorbing state
    occupancy: np.ndarray  # (R, A, T + 1, S) patients in each state at the start of each step
    time_in_state: np.ndarray | None = None  # (R, n, A, S) months in each state, if tracked
    event_count: np.ndarray | None = None  # (R, n, A, E) occurrences of each event (recurrent events)
    marker_true: np.ndarray | None = None  # (R, n, A, B, V) true biomarker values at the recorded steps
    added: np.ndarray | None = None  # (R, n, A, B) therapy additions by the intensification rule
    event_times: np.ndarray | None = None  # (R, n, A, J) times of the recorded events in order, NaN padded


@dataclass(frozen=True)
class Switching:
    """Per-patient treatment switches: discontinuation, non-adherence, crossover.

    A patient randomized to arm a takes arm ``to_arm[a]``'s treatment from step ``step[r, i, a]``
    on (``n_steps`` or more: never); the new treatment's effect is timed from the switch. A
    patient with ``trigger_ok[r, i, a]`` also switches to ``trigger_to[a]`` once event
    ``trigger_event[a]`` (-1: none) has happened, ``trigger_delay_months[a]`` later, whichever
    switch comes first. Switches act from the start of the next step (hazards are constant
    within a step). Only the first switch is taken.
    """

    step: np.ndarray  # (R, n, A) int32
    to_arm: np.ndarray  # (A,) int64
    trigger_event: np.ndarray  # (A,) int64
    trigger_to: np.ndarray  # (A,) int64
    trigger_delay_months: np.ndarray  # (A,) float64
    trigger_ok: np.ndarray  # (R, n, A) bool


@dataclass(frozen=True)
class Markers:
    """Per-patient biomarker inputs of the kernel (see :func:`vctrial.disease.biomarker.marker_inputs`).

    The true value of biomarker b at t years is mean0 + b0 + (slope + b1)·τ(t) + W(t) + added(t), plus
    under treatment (t > 0) shift + slope_change·t of the arm the patient is taking.
    """

    mean0: np.ndarray  # (R, n, B) population mean at time zero at the patient's covariates
    b0: np.ndarray  # (R, n, B) random intercept
    b1: np.ndarray  # (R, n, B) random slope (per year)
    shift: np.ndarray  # (A, B) or (R, A, B) treatment shift of each arm
    slope_change: np.ndarray  # (A, B) or (R, A, B) treatment slope change per year
    record_steps: np.ndarray  # (V,) int64 steps (0..n_steps) at which true values are returned


def simulate(
    model: MultiStateModel,
    rate: np.ndarray,
    hazard_ratio: np.ndarray,
    age: np.ndarray,
    female: np.ndarray,
    n_steps: int,
    seed: int,
    replicates: np.ndarray,
    start_state: np.ndarray | None = None,
    patient_keys: np.ndarray | None = None,
    track_time: bool = False,
    *,
    switching: Switching | None = None,
    start_months_in_state: np.ndarray | None = None,
    markers: Markers | None = None,
    record_events: np.ndarray | None = None,
    max_records: int = 0,
) -> Paths:
    """Step all patients of all replicates under every arm.

    Args:
        rate: (R, n, K) hazard per month of each transition at the patient's baseline covariates.
        hazard_ratio: (A, K, n_steps) treatment multiplier per arm, transition and step, or
            (R, A, K, n_steps) when it differs between replicates (sampled parameters).
        age: (R, n) age in years at time zero; female: (R, n) 1 for female.
        n_steps: steps of ``model.step_months`` to simulate.
        seed, replicates: the counter-based random-number coordinates.
        start_state: (n,) or (R, n) non-absorbing state of each patient at time 0 (default: the initial state).
        patient_keys: (n,) patient coordinate of each patient's random numbers (default 0..n-1);
            patients with equal keys meet the same draws (common random numbers across patients).
        track_time: also return ``time_in_state``, the months each patient spends in each state.
        switching: per-patient treatment switches (see :class:`Switching`); none by default.
        start_months_in_state: (n,) or (R, n) months already spent in the starting state at time 0.
        markers: biomarker inputs; required when a hazard depends on a biomarker or the model has an
            intensification rule, and to record biomarker values.
        record_events: (E,) bool, events whose every occurrence time is kept in ``Paths.event_times``
            (recurrent events), up to ``max_records`` per patient and arm; a patient with more keeps
            the first ``max_records`` (compare ``event_count`` to detect it).
    """
    R, n, K = rate.shape
    hr = np.asarray(hazard_ratio, np.float64)
    if hr.ndim == 3:
        hr = hr[None]
    if (K != model.n_transitions or hr.ndim != 4 or hr.shape[0] not in (1, R) or hr.shape[2] != K
            or hr.shape[3] < n_steps):
        raise ValueError("rate / hazard_ratio shapes do not match the model")
    S = model.absorbing.shape[0]
    if start_state is None:
        start = np.full((R, n), model.initial_state, np.int64)
    else:
        start = np.ascontiguousarray(np.broadcast_to(np.asarray(start_state, np.int64), (R, n)))
        if start.min(initial=0) < 0 or start.max(initial=0) >= S:
            raise ValueError("start_state must hold one state index per patient")
        if model.absorbing[start].any():
            raise ValueError("start_state: a patient cannot start in an absorbing state")
    if start_months_in_state is None:
        start_u = np.zeros((R, n))
    else:
        start_u = np.ascontiguousarray(np.broadcast_to(np.asarray(start_months_in_state, np.float64), (R, n)))
        if not (np.isfinite(start_u).all() and (start_u >= 0).all()):
            raise ValueError("start_months_in_state must be finite and >= 0")
    keys = np.arange(n, dtype=np.int64) if patient_keys is None else np.ascontiguousarray(patient_keys, np.int64)
    if keys.shape != (n,):
        raise ValueError("patient_keys must hold one key per patient")
    A = hr.shape[1]
    if switching is None:
        sw = (np.zeros((1, 1, 1), np.int32), np.arange(A, dtype=np.int64), np.full(A, -1, np.int64),
              np.arange(A, dtype=np.int64), np.zeros(A), np.zeros((1, 1, 1), np.bool_))
    else:
        sw = (np.ascontiguousarray(switching.step, np.int32), np.ascontiguousarray(switching.to_arm, np.int64),
              np.ascontiguousarray(switching.trigger_event, np.int64),
              np.ascontiguousarray(switching.trigger_to, np.int64),
              np.ascontiguousarray(switching.trigger_delay_months, np.float64),
              np.ascontiguousarray(switching.trigger_ok, np.bool_))
        if sw[0].shape != (R, n, A) or sw[5].shape != (R, n, A):
            raise ValueError("switching: step and trigger_ok must have shape (R, n, A)")
    B = len(model.marker_names)
    use_markers = markers is not None and B > 0
    if markers is None and (model.has_links or model.has_intensification):
        raise ValueError("this disease model's hazards or rules use biomarkers: pass markers")
    mk = None
    record = np.full(n_steps + 1, -1, np.int64)
    V = 0
    if use_markers:
        shift, slope = (np.asarray(x, np.float64) for x in (markers.shift, markers.slope_change))
        shift, slope = (x[None] if x.ndim == 2 else x for x in (shift, slope))
        mk = tuple(np.ascontiguousarray(x, np.float64) for x in (markers.mean0, markers.b0, markers.b1, shift, slope))
        steps = np.ascontiguousarray(markers.record_steps, np.int64)
        if any(x.shape != (R, n, B) for x in mk[:3]) or mk[3].shape[1:] != (A, B) or mk[4].shape[1:] != (A, B):
            raise ValueError("markers: arrays do not match (R, n, B) and (A, B)")
        if steps.size and (steps.min() < 0 or steps.max() > n_steps or np.any(np.diff(steps) <= 0)):
            raise ValueError("markers.record_steps must be increasing steps within 0..n_steps")
        V = steps.shape[0]
        record[steps] = np.arange(V)
        streams = np.array([[rng.stream_id(f"biomarker:{name}:process"), rng.stream_id(f"biomarker:{name}:residual")]
                            for name in model.marker_names], np.uint64)
        mk += (record, model.process, streams, marker_time_table(model, n_steps), model.link_value,
               model.link_reference, model.link_slope, link_groups(model))
    tf = time_factor(model, n_steps)
    if not (tf != 1.0).any():
        tf = np.zeros((0, 0))  # no ageing or time shape: the kernel skips the factor
    elif switching is None:  # time on treatment is time on study: fold the factor into the treatment's
        hr = hr[..., :n_steps] * tf
        tf = np.zeros((0, 0))
    E = model.to_state.shape[0]
    rec_ev = np.zeros(E, np.bool_) if record_events is None else np.ascontiguousarray(record_events, np.bool_)
    J = int(max_records) if rec_ev.any() else 0
    if rec_ev.shape != (E,) or J < 0:
        raise ValueError("record_events must hold one flag per event and max_records must be >= 0")
    first, death, occ, tis, count, true, added, overflow, ev_rec = _simulate_kernel(
        np.ascontiguousarray(rate, np.float64),
        np.ascontiguousarray(hr),
        np.ascontiguousarray(tf),
        np.ascontiguousarray(age, np.float64),
        np.ascontiguousarray(female, np.int64),
        model.bg_hazard,
        model.has_background,
        model.out_ptr,
        model.out_idx,
        model.to_state,
        model.absorbing,
        model.breakpoints,
        model.n_breakpoints,
        model.tis_mult,
        start,
        start_u,
        keys,
        bool(track_time),
        float(model.step_months),
        int(n_steps),
        np.uint64(seed),
        np.uint64(rng.stream_id("progression")),
        np.uint64(rng.stream_id("transition")),
        np.ascontiguousarray(replicates, np.int64),
        switching is not None,
        *sw,
        V,
        mk,
        rec_ev,
        J,
    )
    if overflow:
        raise too_many_events(model)
    return Paths(first, death, occ, tis if track_time else None, count,
                 true if use_markers and V else None, added if use_markers else None, ev_rec if J else None)


MAX_EVENTS_PER_STEP = 32
"""Events one patient may have within one step (recurrent events at very high rates need smaller steps)."""


def too_many_events(model: MultiStateModel) -> Exception:
    """The error for a patient with more than MAX_EVENTS_PER_STEP events in one step: a SpecError naming the
    disease file (its hazards are too high for its step), or a ValueError for a model built in code."""
    from vctrial.errors import SpecError

    reason = (f"more than {MAX_EVENTS_PER_STEP} events of one patient fell in one step of "
              f"{model.step_months:g} months: hazards this high (recurrent or back-and-forth transitions, with "
              f"their effects) need a smaller time_step_months, or lower rates")
    return SpecError(model.source, "time_step_months", reason) if model.source else ValueError(reason)


@numba.njit(inline="always")
def _hazard(k, rate_i, tf, t, hr, b, ts, tis_mult, jint, lk, parts):
    """Hazard of transition k (per month) in step t, treatment row b at treatment step ts. The
    optional factors are skipped when absent (``parts``: 1 ageing/shape factors tf, 2 biomarker
    factors lk; jint < 0 when the state has no time-in-state pieces)."""
    # hr·tf first: the same product as hr folded with tf outside the kernel, so both give equal bits
    v = rate_i[k] * (hr[b, k, ts] * tf[k, t]) if parts & 1 else rate_i[k] * hr[b, k, ts]
    if jint >= 0:
        v *= tis_mult[k, jint]
    if parts & 2:
        v *= lk[k]
    return v


@numba.njit(inline="always")
def _total(s, rate_i, tf, t, hr, b, ts, tis_mult, jint, n_bp, lk, parts, out_ptr, out_idx, bg):
    """Sum of the hazards leaving state s plus the background hazard."""
    h = bg
    jj = jint if n_bp[s] > 0 else -1
    for j in range(out_ptr[s], out_ptr[s + 1]):
        h += _hazard(out_idx[j], rate_i, tf, t, hr, b, ts, tis_mult, jj, lk, parts)
    return h


@numba.njit(inline="always")
def _choose(v, s, rate_i, tf, t, hr, b, ts, tis_mult, jint, n_bp, lk, parts, out_ptr, out_idx, fallback):
    """The event whose share of [0, h) holds v, in a fixed order (background last); the hazards are
    recomputed by the same expression as in _total, so the partition is exactly the sum's."""
    acc = 0.0
    jj = jint if n_bp[s] > 0 else -1
    for j in range(out_ptr[s], out_ptr[s + 1]):
        k = out_idx[j]
        acc += _hazard(k, rate_i, tf, t, hr, b, ts, tis_mult, jj, lk, parts)
        if v < acc:
            return k
    return fallback


@numba.njit(inline="always")
def _interval(u, bp, n_bp, s):
    """Index of the time-in-state interval holding u months."""
    j = 0
    while j < n_bp[s] and bp[s, j] <= u:
        j += 1
    return j


@numba.njit(inline="always")
def _step(t, dt, s, clock, threshold, n_ev, entered, jint, rate_i, tf, hr, b, ts, lk, parts, bg, tis_mult, bp, n_bp,
          out_ptr, out_idx, to_state, absorbing, has_bg, key_e, key_c, pk, ev_time, ev_id):
    """Advance one patient across step t (months [t·dt, (t+1)·dt)), the one place where events happen.

    ``hr[b, k, ts]`` is the treatment (or intervention) multiplier of transition k. The step is split
    at the time-in-state breakpoints of the current state; within a segment the hazards are constant
    and the clock of cumulative hazard advances until it meets the threshold. Events are written to
    ev_time / ev_id (months since time zero, event index), at most MAX_EVENTS_PER_STEP of them; the
    returned count may exceed that, which the caller reports. Returns (state, clock, threshold,
    events so far, entry time of the state, interval, events in the step).
    """
    now = t * dt
    step_end = now + dt
    if jint >= n_bp[s] or entered + bp[s, jint] >= step_end:  # one segment: the common, quiet step first
        h = _total(s, rate_i, tf, t, hr, b, ts, tis_mult, jint, n_bp, lk, parts, out_ptr, out_idx, bg)
        if clock + h * dt < threshold:
            return s, clock + h * dt, threshold, n_ev, entered, jint, 0
    m = 0
    fallback_bg = to_state.shape[0] - 1
    while True:  # segments between time-in-state breakpoints
        nb = entered + bp[s, jint] if jint < n_bp[s] else np.inf
        seg_end = min(step_end, nb)
        h = _total(s, rate_i, tf, t, hr, b, ts, tis_mult, jint, n_bp, lk, parts, out_ptr, out_idx, bg)
        dead = False
        while h > 0.0 and clock + h * (seg_end - now) >= threshold:
            now += (threshold - clock) / h
            v = rng.uniform(key_c, pk, n_ev) * h
            ev = _choose(v, s, rate_i, tf, t, hr, b, ts, tis_mult, jint, n_bp, lk, parts, out_ptr, out_idx,
                         fallback_bg if has_bg else out_idx[out_ptr[s + 1] - 1])
            if m < ev_time.shape[0]:
                ev_time[m] = now
                ev_id[m] = ev
            m += 1
            if m > ev_time.shape[0]:  # more events than recorded: the caller reports it; stop counting them
                return s, clock, threshold, n_ev, entered, jint, m
            s = to_state[ev]
            entered = now
            jint = 0
            n_ev += 1
            clock = 0.0
            threshold = -np.log(rng.uniform_open(key_e, pk, n_ev))
            if absorbing[s]:
                dead = True
                break
            nb = entered + bp[s, 0] if n_bp[s] > 0 else np.inf
            seg_end = min(step_end, nb)
            h = _total(s, rate_i, tf, t, hr, b, ts, tis_mult, jint, n_bp, lk, parts, out_ptr, out_idx, bg)
        if dead:
            return s, 0.0, threshold, n_ev, entered, jint, m
        clock += h * (seg_end - now)
        now = seg_end
        if seg_end >= step_end:
            return s, clock, threshold, n_ev, entered, jint, m
        jint += 1


def link_groups(model: MultiStateModel) -> np.ndarray:
    """(K,) for each transition with biomarker terms, the first transition with the same terms (so the
    kernel takes one exponential per distinct set of terms); -1 for transitions without any."""
    rows = np.concatenate([model.link_value, model.link_reference, model.link_slope], axis=1)
    has = (model.link_value != 0).any(axis=1) | (model.link_slope != 0).any(axis=1)
    out = np.full(model.n_transitions, -1, np.int64)
    for k in np.flatnonzero(has):
        out[k] = next(j for j in range(k + 1) if has[j] and np.array_equal(rows[j], rows[k]))
    return out


def marker_time_table(model: MultiStateModel, n_steps: int) -> np.ndarray:
    """(B, n_steps + 1, 4) per biomarker and step: τ at the start of the step, τ at its middle, the
    fading factor e^(−κ t) of the slope at its middle, and 1 at the intensification rule's visits
    (patient-independent, so computed once)."""
    B = len(model.marker_names)
    t = np.arange(n_steps + 1) * model.step_months / 12.0
    mid = t + model.step_months / 24.0
    out = np.empty((max(B, 1), n_steps + 1, 4))
    out[:] = np.stack([t, mid, np.ones_like(t), np.zeros_like(t)], axis=-1)
    for m in range(B):
        every = int(model.process[m, PROCESS_COLUMNS.index("every_steps")])
        if every > 0:
            out[m, every::every, 3] = 1.0
        kappa = model.process[m, 1]
        if kappa > 0.0:
            out[m, :, 0] = -np.expm1(-kappa * t) / kappa
            out[m, :, 1] = -np.expm1(-kappa * mid) / kappa
            out[m, :, 2] = np.exp(-kappa * mid)
    return out


@numba.njit(inline="always")
def _marker_value(m, tau, treated, mean0, b0, b1, w, n_add, shift, slope_ch, t_treat_y, process):
    v = mean0 + b0 + (process[m, 0] + b1) * tau + w + n_add * process[m, 7]
    if treated:
        v += shift + slope_ch * t_treat_y
    return v


@numba.njit(inline="always")
def _markers_step(t, dt, off, alive, B, r, i, ra, b, mean0, b0_all, b1_all, shift_all, slope_all, w, n_add, vmid,
                  smid, key_w, key_eps, pk, process, mtab, lk, link_value, link_ref, link_slope, linked):
    """Biomarkers at step t: the intensification rule at its visits, the mid-step values (vmid[:B])
    and slopes (smid) that the hazards see through lk, the values at the start of the step
    (vmid[B:2B], what a recorded visit shows) and the mean-reverting process's move to the next step."""
    tt_y = (t - off) * dt / 12.0
    half = dt / 24.0
    days_per_month = 365.25 / 12.0
    for m in range(B):
        mean0_i, b0_i, b1_i = mean0[r, i, m], b0_all[r, i, m], b1_all[r, i, m]
        shift_b, slope_b = shift_all[ra, b, m], slope_all[ra, b, m]
        v0 = _marker_value(m, mtab[m, t, 0], t > 0, mean0_i, b0_i, b1_i, w[m], n_add[m], shift_b, slope_b, tt_y,
                           process)
        if alive and mtab[m, t, 3] > 0.0 and n_add[m] < process[m, 8]:
            day = np.int64(np.rint(t * dt * days_per_month))
            obs = v0 + process[m, 9] * rng.normal(key_eps[m], pk, day)
            obs = min(max(obs, process[m, 10]), process[m, 11])
            if process[m, 5] * (obs - process[m, 6]) > 0.0:
                n_add[m] += 1
        smid[m] = (process[m, 0] + b1_i) * mtab[m, t, 2] + slope_b
        vmid[m] = _marker_value(m, mtab[m, t, 1], True, mean0_i, b0_i, b1_i, w[m], n_add[m], shift_b, slope_b,
                                tt_y + half, process)
        vmid[B + m] = v0
        if process[m, 3] > 0.0:  # the mean-reverting process moves on to the next step
            phi = process[m, 2]
            w[m] = phi * w[m] + process[m, 3] * np.sqrt(1.0 - phi * phi) * rng.normal_fast(key_w[m], pk, t + 1)
    for k in range(lk.shape[0]):  # linked[k]: the first transition with the same terms (-1: none)
        g = linked[k]
        if g == k:
            x = 0.0
            for m in range(B):
                x += link_value[k, m] * (vmid[m] - link_ref[k, m]) + link_slope[k, m] * smid[m]
            lk[k] = np.exp(x)
        elif g >= 0:
            lk[k] = lk[g]


@numba.njit(inline="always")
def _markers_at(mk, r, i, a, b, t, dt, off, alive, B, w, n_add, vmid, smid, key_w, key_eps, pk, lk, true):
    """Biomarkers of patient i in arm a at step t (see _markers_step); records the start-of-step values."""
    mean0, b0_all, b1_all, shift_all, slope_all, record, process, streams, mtab, lv, lr, ls, linked = mk
    ra = r % shift_all.shape[0]
    _markers_step(t, dt, off, alive, B, r, i, ra, b, mean0, b0_all, b1_all, shift_all, slope_all, w, n_add, vmid,
                  smid, key_w, key_eps, pk, process, mtab, lk, lv, lr, ls, linked)
    if record.shape[0] > 0 and record[t] >= 0:
        for m in range(B):
            true[r, i, a, m, record[t]] = vmid[B + m]


@numba.njit(cache=True, parallel=True)
def _simulate_kernel(rate, hr_all, tf, age, female, bg_hazard, has_bg, out_ptr, out_idx, to_state, absorbing,
                     bp, n_bp, tis_mult, start, start_u, pkeys, track, dt, n_steps, seed, stream_e, stream_c,
                     replicates, has_sw, sw_step, sw_to, trig_ev, trig_to, trig_delay, trig_ok, V, mk, rec_ev, J):
    """The driver over replicates, patients and arms. ``mk`` is None without biomarkers (the marker code
    is then compiled out of the hot loop: numba prunes branches on a None argument), else the tuple
    (mean0, b0, b1, shift, slope, record, process, streams, time table, link value, reference, slope,
    linked) described in :func:`simulate`."""
    R, n, K = rate.shape
    A = hr_all.shape[1]
    E = to_state.shape[0]
    S = absorbing.shape[0]
    B = 0
    if mk is not None:
        B = mk[0].shape[2]
    first = np.full((R, n, A, E), np.inf)
    death = np.full((R, n, A), np.inf)
    count = np.zeros((R, n, A, E), np.int32)
    ev_rec = np.full((R if J else 1, n if J else 1, A, max(J, 1)), np.nan)
    true = np.full((R if V else 1, n if V else 1, A, max(B, 1), max(V, 1)), np.nan)
    added = np.zeros((R if B else 1, n if B else 1, A, max(B, 1)), np.int32)
    blocks = (n + BLOCK - 1) // BLOCK
    # per work item partial counts; "entered" holds +1 at the step after absorption, summed later
    occ_part = np.zeros((R * blocks, A, n_steps + 1, S), np.int32)
    absorbed = np.zeros((R * blocks, A, n_steps + 2, S), np.int32)
    overflow = np.zeros(R * blocks, np.int64)
    tis = np.zeros((R if track else 1, n if track else 1, A, S))
    max_age = bg_hazard.shape[1] - 1
    for item in numba.prange(R * blocks):
        r = item // blocks
        lo = (item % blocks) * BLOCK
        hi = min(lo + BLOCK, n)
        key_e = rng.stream_key(seed, stream_e, replicates[r])
        key_c = rng.stream_key(seed, stream_c, replicates[r])
        hr = hr_all[r % hr_all.shape[0]]
        any_link = False
        w = np.zeros(max(B, 1))
        n_add = np.zeros(max(B, 1), np.int64)
        vmid = np.zeros(2 * max(B, 1))
        smid = np.zeros(max(B, 1))
        key_w = np.zeros(max(B, 1), np.uint64)
        key_eps = np.zeros(max(B, 1), np.uint64)
        if mk is not None:
            for k in range(K):
                any_link = any_link or mk[12][k] >= 0
            for m in range(B):
                key_w[m] = rng.stream_key(seed, mk[7][m, 0], replicates[r])
                key_eps[m] = rng.stream_key(seed, mk[7][m, 1], replicates[r])
        lk = np.ones(K if any_link else 0)
        parts = (1 if tf.shape[0] > 0 else 0) | (2 if any_link else 0)
        ev_time = np.empty(MAX_EVENTS_PER_STEP)
        ev_id = np.empty(MAX_EVENTS_PER_STEP, np.int64)
        for i in range(lo, hi):
            rate_i = rate[r, i]
            sex = 1 if female[r, i] == 1 else 0
            pk = pkeys[i]
            for a in range(A):
                # b: the arm whose treatment the patient takes now; off: the step it started
                b = a
                off = 0
                sw = n_steps + 1
                tgt = a
                can_trig = False
                if has_sw:
                    sw = sw_step[r, i, a]
                    tgt = sw_to[a]
                    can_trig = trig_ev[a] >= 0 and trig_ok[r, i, a]
                s = start[r, i]
                entered = -start_u[r, i]
                jint = _interval(start_u[r, i], bp, n_bp, s)
                clock = 0.0
                n_ev = 0
                n_rec = 0
                threshold = -np.log(rng.uniform_open(key_e, pk, n_ev))
                if mk is not None:
                    for m in range(B):
                        sd_w = mk[6][m, 3]
                        w[m] = sd_w * rng.normal_fast(key_w[m], pk, 0) if sd_w > 0.0 else 0.0
                        n_add[m] = 0
                alive = True
                t = 0
                while t < n_steps:
                    if t >= sw and b == a:
                        b = tgt
                        off = sw
                    if mk is not None:
                        _markers_at(mk, r, i, a, b, t, dt, off, alive, B, w, n_add, vmid, smid, key_w, key_eps, pk,
                                    lk, true)
                        if not alive:
                            t += 1
                            continue
                    occ_part[item, a, t, s] += 1
                    bg = 0.0
                    if has_bg:
                        ia = int(age[r, i] + t * dt / 12.0)
                        bg = bg_hazard[sex, min(max(ia, 0), max_age)]
                    if jint >= n_bp[s] or entered + bp[s, jint] >= (t + 1) * dt:  # quiet steps: no event
                        h = _total(s, rate_i, tf, t, hr, b, t - off, tis_mult, jint, n_bp, lk, parts, out_ptr, out_idx,
                                   bg)
                        if clock + h * dt < threshold:
                            clock += h * dt
                            t += 1
                            continue
                    s0 = s
                    s, clock, threshold, n_ev, entered_new, jint, m_ev = _step(
                        t, dt, s, clock, threshold, n_ev, entered, jint, rate_i, tf, hr, b, t - off, lk, parts, bg,
                        tis_mult, bp, n_bp, out_ptr, out_idx, to_state, absorbing, has_bg, key_e, key_c, pk,
                        ev_time, ev_id)
                    if m_ev > MAX_EVENTS_PER_STEP:
                        overflow[item] += 1
                    prev = s0
                    for q in range(min(m_ev, MAX_EVENTS_PER_STEP)):
                        ev = ev_id[q]
                        now = ev_time[q]
                        if first[r, i, a, ev] == np.inf:
                            first[r, i, a, ev] = now
                        count[r, i, a, ev] += 1
                        if J > 0 and rec_ev[ev]:
                            if n_rec < J:
                                ev_rec[r, i, a, n_rec] = now
                            n_rec += 1
                        if can_trig and b == a and ev == trig_ev[a]:
                            cand = max(int(np.ceil((now + trig_delay[a]) / dt - 1e-9)), t + 1)
                            if cand < sw:
                                sw = cand
                                tgt = trig_to[a]
                            can_trig = False
                        if track:
                            tis[r, i, a, prev] += now - max(entered, 0.0)
                        entered = now
                        prev = to_state[ev]
                    entered = entered_new
                    t += 1
                    if absorbing[s]:
                        death[r, i, a] = entered
                        alive = False
                        absorbed[item, a, t, s] += 1
                        if V == 0:  # nothing left to record after death
                            break
                if alive:
                    occ_part[item, a, n_steps, s] += 1
                    if track:
                        tis[r, i, a, s] += n_steps * dt - max(entered, 0.0)
                if mk is not None:
                    mean0, b0_all, b1_all, shift_all, slope_all, record, process = mk[:7]
                    ra = r % shift_all.shape[0]
                    for m in range(B):
                        added[r, i, a, m] = n_add[m]
                        if V > 0 and record[n_steps] >= 0:
                            true[r, i, a, m, record[n_steps]] = _marker_value(
                                m, mk[8][m, n_steps, 0], n_steps > 0, mean0[r, i, m], b0_all[r, i, m],
                                b1_all[r, i, m], w[m], n_add[m], shift_all[ra, b, m], slope_all[ra, b, m],
                                (n_steps - off) * dt / 12.0, process)
    occ = np.zeros((R, A, n_steps + 1, S), np.int32)
    for r in range(R):
        for b in range(blocks):
            item = r * blocks + b
            for a in range(A):
                for s in range(S):
                    run = 0
                    for t in range(n_steps + 1):
                        run += absorbed[item, a, t, s]
                        occ[r, a, t, s] += occ_part[item, a, t, s] + run
    return first, death, occ, tis, count, true, added, overflow.sum(), ev_rec
