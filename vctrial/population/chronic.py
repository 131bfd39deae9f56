"""The chronic-disease engine: the disease kernel's step function (:func:`vctrial.disease.multistate._step`)
driven over a population with births, per-person hazard multipliers set by interventions, and
tallies by age group and region.

Person i's k-th event threshold is ``-log U(seed, "progression", replicate, i, k)`` and its choice
``U(seed, "transition", replicate, i, k)``, exactly as in trials and the twin, and the hazards are the
same function of the same disease file: baseline rate at time-0 covariates × the step average of
ageing and drifting covariates (when the scenario ages people) and of the time-on-study shape × the
time-in-state multiplier × the person's intervention multiplier; plus the (cause-deleted)
life-table hazard at the current age and sex. It is stepped in calendar periods so that Mesa agents
can act between them. Per step, for each person born by the start of the step and alive:

1. advance across the step with the shared step function (events in continuous time, the step
   split at time-in-state breakpoints);
2. tally person-time, QALYs and costs (continuously discounted), events, deaths and the state at
   the end of the step, in the person's (age group, region) cell at the start of the step.

An intervention that changes a multiplier or moves someone between steps leaves their clock and
threshold alone, so scenarios share every draw until they differ. Hazards that depend on a
biomarker are not available in population runs yet (the scenario is refused when it loads).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from vctrial import rng
from vctrial.disease import multistate
from vctrial.disease.lifetable import MAX_AGE
from vctrial.population.people import People
from vctrial.spec.population import PopulationScenario

BLOCK = 8192


@numba.njit(cache=True, parallel=True)
def _init_thresholds(seed, stream, replicate, n):
    out = np.empty(n)
    key = rng.stream_key(seed, stream, replicate)
    for i in numba.prange(n):
        out[i] = -np.log(rng.uniform_open(key, i, 0))
    return out


@numba.njit(inline="always")
def _disc(a, b, delta):
    """∫_a^b exp(-delta t) dt (years)."""
    if delta == 0.0:
        return b - a
    return (np.exp(-delta * a) - np.exp(-delta * b)) / delta


@numba.njit(inline="always")
def _group(age, edges, region, n_regions):
    g = 0
    n_g = edges.shape[0] - 1
    while g < n_g - 1 and age >= edges[g + 1]:
        g += 1
    return g * n_regions + region


@numba.njit(cache=True, parallel=True)
def advance_kernel(state, clock, threshold, n_ev, entered, jint, base_rate, mult, tf, age0, female, birth, region,
                   n_regions, edges, bg_hazard, has_bg, out_ptr, out_idx, to_state, absorbing, bp, n_bp, tis_mult,
                   utility, state_cost, event_cost, delta, t0, n_steps, dt, seed, stream_e, stream_c, replicate):
    """Advance everyone from step t0 to t0 + n_steps; returns per-step tallies (see module doc)."""
    n, K = base_rate.shape
    E = to_state.shape[0]
    S = absorbing.shape[0]
    GR = (edges.shape[0] - 1) * n_regions
    blocks = (n + BLOCK - 1) // BLOCK
    ev_part = np.zeros((blocks, n_steps, GR, E), np.int32)
    occ_part = np.zeros((blocks, n_steps, GR, S), np.int32)
    flow_part = np.zeros((blocks, n_steps, GR, 3))  # life-years, discounted QALYs, discounted costs
    overflow = np.zeros(blocks, np.int64)
    max_age = bg_hazard.shape[1] - 1
    dt_y = dt / 12.0
    key_e = rng.stream_key(seed, stream_e, replicate)
    key_c = rng.stream_key(seed, stream_c, replicate)
    cap = multistate.MAX_EVENTS_PER_STEP
    mult3 = mult.reshape(n, K, 1)  # person i's intervention multipliers as the step function's hr[i, k, 0]
    for b in numba.prange(blocks):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        lk = np.ones(0)  # no biomarker terms in population runs
        parts = 1 if tf.shape[0] > 0 else 0
        ev_time = np.empty(cap)
        ev_id = np.empty(cap, np.int64)
        for i in range(lo, hi):
            s = state[i]
            if absorbing[s]:
                continue
            sex = 1 if female[i] == 1 else 0
            for tt in range(n_steps):
                t = t0 + tt
                start = t * dt_y
                if start < birth[i]:
                    continue
                age = age0[i] + start
                gr = _group(age, edges, region[i], n_regions)
                bg = 0.0
                if has_bg:
                    bg = bg_hazard[sex, min(max(int(age), 0), max_age)]
                s0 = s
                s, clock[i], threshold[i], n_ev[i], ent, jint[i], m = multistate._step(
                    t, dt, s, clock[i], threshold[i], n_ev[i], entered[i], jint[i], base_rate[i], tf, mult3, i, 0, lk,
                    parts, bg, tis_mult, bp, n_bp, out_ptr, out_idx, to_state, absorbing, has_bg, key_e, key_c, i,
                    ev_time, ev_id)
                entered[i] = ent
                if m > cap:
                    overflow[b] += 1
                prev = s0
                a_y = start
                for q in range(min(m, cap)):
                    ev = ev_id[q]
                    b_y = ev_time[q] / 12.0
                    w = _disc(a_y, b_y, delta)
                    flow_part[b, tt, gr, 0] += b_y - a_y
                    flow_part[b, tt, gr, 1] += utility[prev] * w
                    flow_part[b, tt, gr, 2] += state_cost[prev] * w
                    ev_part[b, tt, gr, ev] += 1
                    flow_part[b, tt, gr, 2] += event_cost[ev] * np.exp(-delta * b_y)
                    prev = to_state[ev]
                    a_y = b_y
                if absorbing[s]:
                    break
                b_y = start + dt_y
                w = _disc(a_y, b_y, delta)
                flow_part[b, tt, gr, 0] += b_y - a_y
                flow_part[b, tt, gr, 1] += utility[s] * w
                flow_part[b, tt, gr, 2] += state_cost[s] * w
                occ_part[b, tt, gr, s] += 1
            state[i] = s
    return ev_part.sum(axis=0), occ_part.sum(axis=0), flow_part.sum(axis=0), overflow.sum()


class ChronicEngine:
    """State of one (replicate, scenario) of a chronic model, advanced period by period.

    Attributes used by interventions: ``state`` (n,) int8, ``mult`` (n, K) hazard multipliers,
    ``people``; tallies per kernel step in ``events`` (T, GR, E), ``occupancy`` (T, GR, S),
    ``flows`` (T, GR, 3) and ``extra_cost`` (T, GR).
    """

    kind = "chronic"

    def __init__(self, world: PopulationScenario, people: People, seed: int, replicate: int, disease=None):
        disease = disease or world.disease  # a calibration's parameter draw, or the scenario's own model
        spec = world.spec
        self.world = world
        self.people = people
        self.model = multistate.compile_model(disease)
        self.dt_months = float(disease.time_step_months)
        self.step_years = self.dt_months / 12.0
        self.n_steps = int(math.ceil(spec.horizon_years / self.step_years - 1e-9))
        n = people.n
        cols = {k: v[None, :] for k, v in people.columns.items()}
        self.base_rate = np.ascontiguousarray(multistate.patient_rates(disease, cols.__getitem__, (1, n))[0])
        K = self.base_rate.shape[1]
        self.time_factor = np.ascontiguousarray(
            multistate.time_factor(self.model, self.n_steps, ageing=spec.demography.ageing))
        self.mult = np.ones((n, K))
        self.state = np.full(n, self.model.initial_state, np.int8)
        self.clock = np.zeros(n)
        self.n_ev = np.zeros(n, np.int64)
        self.entered = np.maximum(np.asarray(people.birth_year, np.float64), 0.0) * 12.0  # months since time zero
        self.jint = np.zeros(n, np.int64)
        self.seed = np.uint64(seed)
        self.replicate = int(replicate)
        self.stream_e = np.uint64(rng.stream_id("progression"))
        self.stream_c = np.uint64(rng.stream_id("transition"))
        self.threshold = _init_thresholds(self.seed, self.stream_e, self.replicate, n)
        self.edges = np.asarray(spec.outputs.age_groups, np.float64)
        self.n_regions = len(spec.population.regions)
        self.has_bg = bool(spec.demography.background_mortality and self.model.has_background)
        self.bg = self.model.bg_hazard if self.has_bg else np.zeros((2, MAX_AGE + 1))
        states = [s.name for s in disease.states]
        self.state_names = states
        self.utility = np.array([s.utility for s in disease.states])
        self.state_cost = np.array([spec.costs.state_per_year.get(s, 0.0) for s in states])
        self.event_cost = np.array([spec.costs.per_event.get(e, 0.0) for e in disease.event_names])
        self.delta = math.log1p(spec.costs.discount_rate_per_year)
        GR = (len(self.edges) - 1) * self.n_regions
        E, S = len(disease.event_names), len(states)
        self.events = np.zeros((self.n_steps, GR, E), np.int64)
        self.occupancy = np.zeros((self.n_steps, GR, S), np.int64)
        self.flows = np.zeros((self.n_steps, GR, 3))
        self.extra_cost = np.zeros((self.n_steps, GR))
        self.t = 0

    # --- what interventions read

    def time_years(self) -> float:
        """Time at the start of the next step (years)."""
        return self.t * self.step_years

    def alive(self, idx: np.ndarray) -> np.ndarray:
        """Born and not in an absorbing state."""
        return ~self.model.absorbing[self.state[idx]] & (self.people.birth_year[idx] <= self.time_years())

    def group_of(self, idx: np.ndarray) -> np.ndarray:
        """(age group, region) cell of people at the current time."""
        age = self.people.age0[idx] + self.time_years()
        g = np.clip(np.searchsorted(self.edges, age, side="right") - 1, 0, len(self.edges) - 2)
        return g * self.n_regions + self.people.region[idx]

    def add_cost(self, idx: np.ndarray, amount: float) -> float:
        """Charge ``amount`` per person of ``idx`` now (discounted); returns the discounted total."""
        if idx.size == 0 or amount == 0.0:
            return 0.0
        t = min(self.t, self.n_steps - 1)
        w = math.exp(-self.delta * self.time_years()) * amount
        np.add.at(self.extra_cost[t], self.group_of(idx), w)
        return w * idx.size

    def advance(self, n_steps: int) -> None:
        """Step everyone ``n_steps`` disease steps forward."""
        n_steps = min(n_steps, self.n_steps - self.t)
        if n_steps <= 0:
            return
        m = self.model
        p = self.people
        ev, occ, flow, overflow = advance_kernel(
            self.state, self.clock, self.threshold, self.n_ev, self.entered, self.jint, self.base_rate, self.mult,
            self.time_factor, p.age0, p.female, p.birth_year, p.region, self.n_regions, self.edges, self.bg,
            self.has_bg, m.out_ptr, m.out_idx, m.to_state, m.absorbing, m.breakpoints, m.n_breakpoints, m.tis_mult,
            self.utility, self.state_cost, self.event_cost, self.delta, self.t, n_steps, self.dt_months, self.seed,
            self.stream_e, self.stream_c, self.replicate)
        if overflow:
            raise multistate.too_many_events(m)
        self.events[self.t:self.t + n_steps] += ev
        self.occupancy[self.t:self.t + n_steps] += occ
        self.flows[self.t:self.t + n_steps] += flow
        self.t += n_steps
