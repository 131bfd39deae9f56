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


def simulate(
    model: MultiStateModel,
    rate: np.ndarray,
    hazard_ratio: np.ndarray,
    age: np.ndarray,
    female: np.ndarray,
    n_steps: int,
    seed: int,
    replicates: np.ndarray,
) -> Paths:
    """Step all patients of all replicates under every arm.

    Args:
        rate: (R, n, K) hazard per month of each transition at the patient's covariates.
        hazard_ratio: (A, K, n_steps) treatment multiplier per arm, transition and step.
        age: (R, n) age in years at randomization; female: (R, n) 1 for female.
        n_steps: steps of ``model.step_months`` to simulate.
        seed, replicates: the counter-based random-number coordinates.
    """
    R, n, K = rate.shape
    if K != model.n_transitions or hazard_ratio.shape[1] != K or hazard_ratio.shape[2] < n_steps:
        raise ValueError("rate / hazard_ratio shapes do not match the model")
    first, death, occ = _simulate_kernel(
        np.ascontiguousarray(rate, np.float64),
        np.ascontiguousarray(hazard_ratio, np.float64),
        np.ascontiguousarray(age, np.float64),
        np.ascontiguousarray(female, np.int64),
        model.bg_hazard,
        model.has_background,
        model.out_ptr,
        model.out_idx,
        model.to_state,
        model.absorbing,
        model.initial_state,
        float(model.step_months),
        int(n_steps),
        np.uint64(seed),
        np.uint64(rng.stream_id("progression")),
        np.uint64(rng.stream_id("transition")),
        np.ascontiguousarray(replicates, np.int64),
    )
    return Paths(first, death, occ)


@numba.njit(inline="always")
def _total_hazard(s, rate_i, hr, a, t, out_ptr, out_idx, bg):
    h = bg
    for j in range(out_ptr[s], out_ptr[s + 1]):
        k = out_idx[j]
        h += rate_i[k] * hr[a, k, t]
    return h


@numba.njit(cache=True, parallel=True)
def _simulate_kernel(rate, hr, age, female, bg_hazard, has_bg, out_ptr, out_idx, to_state, absorbing,
                     s0, dt, n_steps, seed, stream_e, stream_c, replicates):
    R, n, K = rate.shape
    A = hr.shape[0]
    E = to_state.shape[0]
    S = absorbing.shape[0]
    first = np.full((R, n, A, E), np.inf)
    death = np.full((R, n, A), np.inf)
    blocks = (n + BLOCK - 1) // BLOCK
    # per work item partial counts; "entered" holds +1 at the step after absorption, summed later
    occ_part = np.zeros((R * blocks, A, n_steps + 1, S), np.int32)
    absorbed = np.zeros((R * blocks, A, n_steps + 2, S), np.int32)
    max_age = bg_hazard.shape[1] - 1
    for item in numba.prange(R * blocks):
        r = item // blocks
        lo = (item % blocks) * BLOCK
        hi = min(lo + BLOCK, n)
        key_e = rng.stream_key(seed, stream_e, replicates[r])
        key_c = rng.stream_key(seed, stream_c, replicates[r])
        for i in range(lo, hi):
            rate_i = rate[r, i]
            sex = 1 if female[r, i] == 1 else 0
            for a in range(A):
                s = s0
                clock = 0.0
                n_ev = 0
                threshold = -np.log(rng.uniform_open(key_e, i, n_ev))
                t = 0
                while t < n_steps:
                    occ_part[item, a, t, s] += 1
                    bg = 0.0
                    if has_bg:
                        ia = int(age[r, i] + t * dt / 12.0)
                        bg = bg_hazard[sex, min(max(ia, 0), max_age)]
                    h = _total_hazard(s, rate_i, hr, a, t, out_ptr, out_idx, bg)
                    now = t * dt
                    left = dt
                    dead = False
                    while h > 0.0 and clock + h * left >= threshold:
                        tau = (threshold - clock) / h
                        now += tau
                        left -= tau
                        # which event: partition [0, h) by the hazards, in a fixed order
                        v = rng.uniform(key_c, i, n_ev) * h
                        ev = E - 1 if has_bg else out_idx[out_ptr[s + 1] - 1]
                        acc = 0.0
                        for j in range(out_ptr[s], out_ptr[s + 1]):
                            k = out_idx[j]
                            acc += rate_i[k] * hr[a, k, t]
                            if v < acc:
                                ev = k
                                break
                        if first[r, i, a, ev] == np.inf:
                            first[r, i, a, ev] = now
                        s = to_state[ev]
                        n_ev += 1
                        clock = 0.0
                        threshold = -np.log(rng.uniform_open(key_e, i, n_ev))
                        if absorbing[s]:
                            death[r, i, a] = now
                            dead = True
                            break
                        h = _total_hazard(s, rate_i, hr, a, t, out_ptr, out_idx, bg)
                    if not dead:
                        clock += h * left
                    t += 1
                    if absorbing[s]:
                        break
                if absorbing[s]:
                    absorbed[item, a, t, s] += 1
                else:
                    occ_part[item, a, n_steps, s] += 1
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
    return first, death, occ
