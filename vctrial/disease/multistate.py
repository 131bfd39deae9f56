"""Multi-state progression: covariate-dependent hazards, treatment hazard ratios, competing death.

Each patient carries a clock of cumulative hazard. An event happens when the clock reaches an
exponential threshold E = -log(U); the kernel then picks which transition fired in proportion to
the hazards at that moment and draws a fresh threshold. With hazards constant within a time step
this is exact in continuous time (no discretisation error, no ties), costs one addition per
patient-step and one logarithm per event, and couples the arms monotonically: the same patient
meets the same thresholds in every arm, so a hazard ratio below one can only delay their events.

Per step, the order is: background hazard from the life table at the patient's current age, plus
the state's outgoing transition hazards times the arm's hazard ratio at that step; advance the
clock across the step, resolving as many events as fall inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from vctrial import rng
from vctrial.disease.lifetable import MAX_AGE, hazard_per_month
from vctrial.spec.disease import DiseaseSpec

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

    @property
    def n_transitions(self) -> int:
        return self.out_idx.shape[0]


def compile_model(spec: DiseaseSpec) -> MultiStateModel:
    """Arrays of the state graph and the background hazard."""
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
        bg_hazard = hazard_per_month(bg.life_table, bg.multiplier)
    else:
        bg_hazard = np.zeros((2, MAX_AGE + 1))
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
    )


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

    Times are months since randomization; ``inf`` means not by the horizon.
    """

    first_time: np.ndarray  # (R, n, A, E) first occurrence of each event
    death_time: np.ndarray  # (R, n, A) entry into an absorbing state
    occupancy: np.ndarray  # (R, A, T + 1, S) patients in each state at the start of each step
    time_in_state: np.ndarray | None = None  # (R, n, A, S) months in each state, if tracked


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
) -> Paths:
    """Step all patients of all replicates under every arm.

    Args:
        rate: (R, n, K) hazard per month of each transition at the patient's covariates.
        hazard_ratio: (A, K, n_steps) treatment multiplier per arm, transition and step, or
            (R, A, K, n_steps) when it differs between replicates (sampled parameters).
        age: (R, n) age in years at randomization; female: (R, n) 1 for female.
        n_steps: steps of ``model.step_months`` to simulate.
        seed, replicates: the counter-based random-number coordinates.
        start_state: (n,) non-absorbing state of each patient at time 0 (default: the initial state).
        patient_keys: (n,) patient coordinate of each patient's random numbers (default 0..n-1);
            patients with equal keys meet the same draws (common random numbers across patients).
        track_time: also return ``time_in_state``, the months each patient spends in each state.
        switching: per-patient treatment switches (see :class:`Switching`); none by default.
    """
    R, n, K = rate.shape
    hr = np.asarray(hazard_ratio, np.float64)
    if hr.ndim == 3:
        hr = hr[None]
    if (K != model.n_transitions or hr.ndim != 4 or hr.shape[0] not in (1, R) or hr.shape[2] != K
            or hr.shape[3] < n_steps):
        raise ValueError("rate / hazard_ratio shapes do not match the model")
    if start_state is None:
        start = np.full(n, model.initial_state, np.int64)
    else:
        start = np.ascontiguousarray(start_state, np.int64)
        if start.shape != (n,) or start.min(initial=0) < 0 or start.max(initial=0) >= model.absorbing.shape[0]:
            raise ValueError("start_state must hold one state index per patient")
        if model.absorbing[start].any():
            raise ValueError("start_state: a patient cannot start in an absorbing state")
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
    first, death, occ, tis = _simulate_kernel(
        np.ascontiguousarray(rate, np.float64),
        np.ascontiguousarray(hr),
        np.ascontiguousarray(age, np.float64),
        np.ascontiguousarray(female, np.int64),
        model.bg_hazard,
        model.has_background,
        model.out_ptr,
        model.out_idx,
        model.to_state,
        model.absorbing,
        start,
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
    )
    return Paths(first, death, occ, tis if track_time else None)


@numba.njit(inline="always")
def _total_hazard(s, rate_i, hr, a, t, out_ptr, out_idx, bg):
    h = bg
    for j in range(out_ptr[s], out_ptr[s + 1]):
        k = out_idx[j]
        h += rate_i[k] * hr[a, k, t]
    return h


@numba.njit(cache=True, parallel=True)
def _simulate_kernel(rate, hr_all, age, female, bg_hazard, has_bg, out_ptr, out_idx, to_state, absorbing,
                     start, pkeys, track, dt, n_steps, seed, stream_e, stream_c, replicates,
                     has_sw, sw_step, sw_to, trig_ev, trig_to, trig_delay, trig_ok):
    R, n, K = rate.shape
    A = hr_all.shape[1]
    E = to_state.shape[0]
    S = absorbing.shape[0]
    first = np.full((R, n, A, E), np.inf)
    death = np.full((R, n, A), np.inf)
    blocks = (n + BLOCK - 1) // BLOCK
    # per work item partial counts; "entered" holds +1 at the step after absorption, summed later
    occ_part = np.zeros((R * blocks, A, n_steps + 1, S), np.int32)
    absorbed = np.zeros((R * blocks, A, n_steps + 2, S), np.int32)
    tis = np.zeros((R if track else 1, n if track else 1, A, S))
    max_age = bg_hazard.shape[1] - 1
    for item in numba.prange(R * blocks):
        r = item // blocks
        lo = (item % blocks) * BLOCK
        hi = min(lo + BLOCK, n)
        key_e = rng.stream_key(seed, stream_e, replicates[r])
        key_c = rng.stream_key(seed, stream_c, replicates[r])
        hr = hr_all[r % hr_all.shape[0]]
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
                s = start[i]
                entered = 0.0
                clock = 0.0
                n_ev = 0
                threshold = -np.log(rng.uniform_open(key_e, pk, n_ev))
                t = 0
                while t < n_steps:
                    if t >= sw and b == a:
                        b = tgt
                        off = sw
                    occ_part[item, a, t, s] += 1
                    bg = 0.0
                    if has_bg:
                        ia = int(age[r, i] + t * dt / 12.0)
                        bg = bg_hazard[sex, min(max(ia, 0), max_age)]
                    h = _total_hazard(s, rate_i, hr, b, t - off, out_ptr, out_idx, bg)
                    now = t * dt
                    left = dt
                    dead = False
                    while h > 0.0 and clock + h * left >= threshold:
                        tau = (threshold - clock) / h
                        now += tau
                        left -= tau
                        # which event: partition [0, h) by the hazards, in a fixed order
                        v = rng.uniform(key_c, pk, n_ev) * h
                        ev = E - 1 if has_bg else out_idx[out_ptr[s + 1] - 1]
                        acc = 0.0
                        for j in range(out_ptr[s], out_ptr[s + 1]):
                            k = out_idx[j]
                            acc += rate_i[k] * hr[b, k, t - off]
                            if v < acc:
                                ev = k
                                break
                        if first[r, i, a, ev] == np.inf:
                            first[r, i, a, ev] = now
                        if can_trig and b == a and ev == trig_ev[a]:
                            cand = max(int(np.ceil((now + trig_delay[a]) / dt - 1e-9)), t + 1)
                            if cand < sw:
                                sw = cand
                                tgt = trig_to[a]
                            can_trig = False
                        if track:
                            tis[r, i, a, s] += now - entered
                            entered = now
                        s = to_state[ev]
                        n_ev += 1
                        clock = 0.0
                        threshold = -np.log(rng.uniform_open(key_e, pk, n_ev))
                        if absorbing[s]:
                            death[r, i, a] = now
                            dead = True
                            break
                        h = _total_hazard(s, rate_i, hr, b, t - off, out_ptr, out_idx, bg)
                    if not dead:
                        clock += h * left
                    t += 1
                    if absorbing[s]:
                        break
                if absorbing[s]:
                    absorbed[item, a, t, s] += 1
                else:
                    occ_part[item, a, n_steps, s] += 1
                    if track:
                        tis[r, i, a, s] += n_steps * dt - entered
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
    return first, death, occ, tis
