"""Interventions compiled against one engine: who is eligible, who accepts, and what delivery does.

Draws that decide who accepts (``uptake:<name>``), who is served first when capacity is short
(``priority:<name>``) and test results (``screening:<name>``) are keyed by the intervention's
name and the person, never by the scenario: the same person accepts the same offer in every
scenario, and a scenario with higher coverage reaches a superset of the people of a lower one.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from vctrial import rng
from vctrial.expr import parse
from vctrial.spec.population import RiskFactor, Screening, Treatment, Vaccination


def _uniform(seed: int, stream: str, replicate: int, n: int, col: int = 0) -> np.ndarray:
    return rng.uniforms(np.uint64(seed), np.uint64(rng.stream_id(stream)), np.array([replicate], np.int64),
                        n, col + 1)[0, :, col]


def _criteria(texts: list[str], people, levels) -> np.ndarray:
    mask = np.ones(people.n, bool)
    for text in texts:
        mask &= np.asarray(parse(text, levels).evaluate(people.columns), bool)
    return mask


class Delivery:
    """One intervention of one scenario, bound to an engine; clinics call :meth:`deliver`."""

    def __init__(self, iv, world, engine, seed: int, replicate: int, n_steps: int,
                 hazard_ratios: dict[str, float] | None = None):
        """``hazard_ratios``: a treatment's hazard ratio per transition as its scenario delivers it (default:
        as the intervention is declared)."""
        self.iv = iv
        self.engine = engine
        people = engine.people
        n = people.n
        spec = world.spec
        levels = {spec.population.age_covariate: None, spec.population.female_covariate: None}
        if world.cohort is not None:
            levels.update(world.cohort.levels_or_none())
            levels.update({k: None for k in world.cohort.derived})
        el = iv.eligibility
        accept = _uniform(seed, f"uptake:{iv.name}", replicate, n) < iv.coverage
        static = accept & _criteria(el.criteria, people, levels)
        if el.regions is not None:
            codes = [r.name for r in spec.population.regions]
            static &= np.isin(people.region, [codes.index(r) for r in el.regions])
        self.static = static
        self.priority = _uniform(seed, f"priority:{iv.name}", replicate, n).astype(np.float32)
        self.covered = np.zeros(n, bool)
        self.end = iv.end_year if iv.end_year is not None else math.inf
        names = engine.state_names
        self.state_codes = None if el.states is None else np.array([list(names).index(s) for s in el.states])
        self.delivered = np.zeros(n_steps, np.int64)
        self.cost = np.zeros(n_steps)
        self.seed, self.replicate = seed, replicate
        self.key_test = np.uint64(rng.stream_id(f"screening:{iv.name}"))
        if isinstance(iv, Screening):
            self.last_test = np.full(n, -np.inf)
            self.n_tests = np.zeros(n, np.int64)
            target = np.zeros(n, bool)
            if iv.target.criteria:
                target = _criteria(iv.target.criteria, people, levels)
            self.target_criteria = target
            self.target_states = np.array([list(names).index(s) for s in iv.target.states], np.int64)
            det = iv.on_detection
            self.move_to = None if det.move_to is None else list(names).index(det.move_to)
            self.factor = _hazard_factor(world, {e.transition: e.hazard_ratio for e in det.effects}, det.risk_factor)
            self.cost_per_year = det.cost_per_year
        elif isinstance(iv, Treatment):
            ratios = world.hazard_ratios[iv.name] if hazard_ratios is None else hazard_ratios
            self.factor = _hazard_factor(world, ratios, None)
            self.cost_per_year = iv.cost_per_year
        elif isinstance(iv, RiskFactor):
            self.factor = _hazard_factor(world, {}, iv)
            self.cost_per_year = iv.cost_per_year
        else:
            self.cost_per_year = 0.0

    @property
    def name(self) -> str:
        return self.iv.name

    def active(self) -> bool:
        t = self.engine.time_years()
        return self.iv.start_year <= t + 1e-9 < self.end

    def candidates(self, pool: np.ndarray) -> np.ndarray:
        """People of ``pool`` (a region's accepting, criteria-meeting residents) eligible now."""
        e = self.engine
        t = e.time_years()
        idx = pool[e.alive(pool)]
        age = e.people.age0[idx] + t
        el = self.iv.eligibility
        idx = idx[(age >= el.age_min) & (age < el.age_max)]
        if self.state_codes is not None:
            idx = idx[np.isin(e.state[idx], self.state_codes)]
        if isinstance(self.iv, Screening):
            idx = idx[~self.covered[idx] & (self.last_test[idx] <= t - self.iv.interval_years + 1e-9)]
        else:
            idx = idx[~self.covered[idx]]
        return idx

    def deliver(self, idx: np.ndarray) -> None:
        """Deliver to ``idx`` now: test, vaccinate or start treatment; charge unit costs."""
        if idx.size == 0:
            return
        e = self.engine
        t_step = min(e.t, self.delivered.shape[0] - 1)
        self.delivered[t_step] += idx.size
        iv = self.iv
        if isinstance(iv, Screening):
            u = _draws(self.seed, self.key_test, self.replicate, idx, self.n_tests[idx])
            self.n_tests[idx] += 1
            self.last_test[idx] = e.time_years()
            present = self.target_criteria[idx] | np.isin(e.state[idx], self.target_states)
            positive = np.where(present, u < iv.sensitivity, u >= iv.specificity)
            cost = e.add_cost(idx, iv.cost_per_test) + e.add_cost(idx[positive], iv.cost_per_positive)
            found = idx[present & positive]
            if found.size:
                self.covered[found] = True
                if self.move_to is not None:
                    e.state[found] = self.move_to
                if self.factor is not None:
                    e.mult[found] *= self.factor
            self.cost[t_step] += cost
        elif isinstance(iv, Vaccination):
            self.covered[idx] = True
            e.vax_day[idx] = e.t
            e.ve_inf[idx] = iv.efficacy_infection
            e.ve_sev[idx] = iv.efficacy_severe
            e.wane[idx] = 0.0 if iv.waning_days is None else 1.0 / iv.waning_days
            self.cost[t_step] += e.add_cost(idx, iv.cost_per_dose)
        else:
            self.covered[idx] = True
            e.mult[idx] *= self.factor

    def charge_ongoing(self, pool: np.ndarray, years: float) -> None:
        """Ongoing treatment cost of the covered, living people of ``pool`` for the next ``years``."""
        if self.cost_per_year <= 0.0:
            return
        idx = pool[self.covered[pool]]
        idx = idx[self.engine.alive(idx)]
        t_step = min(self.engine.t, self.cost.shape[0] - 1)
        self.cost[t_step] += self.engine.add_cost(idx, self.cost_per_year * years)


def _draws(seed: int, stream: np.uint64, replicate: int, idx: np.ndarray, count: np.ndarray) -> np.ndarray:
    return _keyed_uniforms(np.uint64(seed), stream, np.int64(replicate), idx.astype(np.int64), count.astype(np.int64))


def _hazard_factor(world, ratios: dict[str, float], risk) -> np.ndarray | None:
    """(K,) multiplier of each transition's hazard: hazard ratios × exp(coef · change)."""
    disease = world.disease
    if disease is None:
        return None
    names = [t.name for t in disease.transitions]
    f = np.ones(len(names))
    for name, hr in ratios.items():
        f[names.index(name)] *= hr
    if risk is not None:
        for k, t in enumerate(disease.transitions):
            coef = sum(e.coef for e in t.effects if e.covariate == risk.covariate)
            f[k] *= math.exp(coef * risk.change)
    return f


@numba.njit(cache=True)
def _keyed_uniforms(seed, stream, replicate, idx, count):
    key = rng.stream_key(seed, stream, replicate)
    out = np.empty(idx.shape[0])
    for j in range(idx.shape[0]):
        out[j] = rng.uniform(key, idx[j], count[j])
    return out
