"""The infectious-disease engine: one (replicate, scenario) of an SIR/SEIR model, advanced in
calendar periods by :func:`vctrial.disease.infection.step_days`, with per-person vaccination
state that Mesa clinics set between periods."""

from __future__ import annotations

import math

import numpy as np

from vctrial import rng
from vctrial.disease import infection as inf
from vctrial.disease.lifetable import hazard_per_month
from vctrial.population import contacts
from vctrial.population.people import People
from vctrial.spec.population import DAYS_PER_YEAR, INFECTION_STATES, PopulationScenario
STREAMS = ("infection:household", "infection:community_target", "infection:community_count",
           "infection:community_transmission", "infection:age_mixing", "infection:duration",
           "infection:fatality", "infection:waning")


class Structure:
    """Contact structure of one replicate, shared by its scenarios (read-only)."""

    def __init__(self, world: PopulationScenario, people: People, seed: int, replicate: int):
        layers = world.spec.infection.layers
        n = people.n
        if layers.household is not None:
            hh = layers.household
            self.hh_ptr, self.hh_of = contacts.households(n, hh.mean_size, hh.max_size, seed, replicate)
        else:
            self.hh_ptr, self.hh_of = np.zeros(2, np.int64), np.zeros(1, np.int32)
        if layers.age_mixing is not None:
            mx = layers.age_mixing
            edges = np.asarray(mx.age_groups)
            g = np.clip(np.searchsorted(edges, np.maximum(people.age0, 0.0), side="right") - 1, 0, len(edges) - 2)
            self.mix_group = g.astype(np.int8)
            self.mix_order, self.mix_ptr = contacts.groups_index(self.mix_group, len(edges) - 1)
            self.mix_c = np.asarray(mx.contacts_per_day, np.float64)
        else:
            self.mix_group = np.zeros(n, np.int8)
            self.mix_order, self.mix_ptr = np.zeros(1, np.int32), np.zeros(2, np.int64)
            self.mix_c = np.zeros((1, 1))
        self.birth_day = np.ceil(people.birth_year * DAYS_PER_YEAR).astype(np.int32)


class EpidemicEngine:
    """State and tallies of one (replicate, scenario); ``state`` and the vaccination arrays are
    what interventions read and set."""

    kind = "infection"

    def __init__(self, world: PopulationScenario, people: People, structure: Structure, seed: int, replicate: int,
                 n_blocks: int | None = None):
        spec = world.spec
        model = spec.infection
        self.world = world
        self.people = people
        self.structure = structure
        n = people.n
        self.n_days = int(math.ceil(spec.horizon_years * DAYS_PER_YEAR - 1e-9))
        self.state = np.zeros(n, np.int8)
        self.t_next = np.full(n, np.iinfo(np.int32).max, np.int32)
        self.n_inf = np.zeros(n, np.int16)
        self.newinf = np.zeros(n, np.uint8)
        self.vax_day = np.full(n, -1.0, np.float32)  # day of vaccination, -1: never
        self.ve_inf = np.zeros(n, np.float32)
        self.ve_sev = np.zeros(n, np.float32)
        self.wane = np.zeros(n, np.float32)
        self.seed = np.uint64(seed)
        self.replicate = int(replicate)
        self.streams = np.array([rng.stream_id(s) for s in STREAMS], np.uint64)
        self.seir = model.model == "seir"
        self.lat = inf.duration_params(**model.latent.model_dump()) if model.latent else (0, 1.0, 0.0)
        self.dur = inf.duration_params(**model.infectious.model_dump())
        self.imm_mean = float(model.immunity_days or 0.0)
        if model.fatality is not None:
            self.ifr_edges = np.asarray(model.fatality.age_groups, np.float64)
            self.ifr_p = np.asarray(model.fatality.probability, np.float64)
        else:
            self.ifr_edges, self.ifr_p = np.zeros(1), np.zeros(0)
        layers = model.layers
        self.beta_h = layers.household.beta if layers.household else 0.0
        self.comm = layers.community
        self.beta_m = layers.age_mixing.beta if layers.age_mixing else 0.0
        self.has_bg = spec.demography.background_mortality
        if self.has_bg:
            self.bg_day = hazard_per_month("us_ssa", spec.demography.mortality_multiplier) * 12.0 / DAYS_PER_YEAR
            self.bg_clock = np.zeros(n)
            self.bg_thr = inf.init_thresholds(self.seed, np.uint64(rng.stream_id("death")), self.replicate, n)
        else:
            self.bg_day = np.zeros((2, 1))
            self.bg_clock, self.bg_thr = np.zeros(1), np.zeros(1)
        self.edges = np.asarray(spec.outputs.age_groups, np.float64)
        self.n_regions = len(spec.population.regions)
        GR = (len(self.edges) - 1) * self.n_regions
        self.incidence = np.zeros((self.n_days, GR), np.int64)
        self.deaths_infection = np.zeros((self.n_days, GR), np.int64)
        self.deaths_background = np.zeros((self.n_days, GR), np.int64)
        self.occupancy = np.zeros((self.n_days, GR, 4), np.int64)
        self.extra_cost = np.zeros((self.n_days, GR))
        self.delta = math.log1p(spec.costs.discount_rate_per_year)
        self.n_blocks = n_blocks or max(1, min(64, n // 4096))
        self.state_names = list(INFECTION_STATES)
        self.t = 0
        count = min(model.initial_infected, people.n_initial)
        inf.seed_infections(self.state, self.t_next, self.n_inf, 0, count, self.seir, *self.lat, *self.dur,
                            self.seed, self.streams[5], self.replicate)
        self.seeded = count

    def time_years(self) -> float:
        return self.t / DAYS_PER_YEAR

    def alive(self, idx: np.ndarray) -> np.ndarray:
        return (self.state[idx] != inf.D) & (self.structure.birth_day[idx] <= self.t)

    def group_of(self, idx: np.ndarray) -> np.ndarray:
        age = self.people.age0[idx] + self.time_years()
        g = np.clip(np.searchsorted(self.edges, age, side="right") - 1, 0, len(self.edges) - 2)
        return (g * self.n_regions + self.people.region[idx]).astype(np.int32)

    def add_cost(self, idx: np.ndarray, amount: float) -> float:
        if idx.size == 0 or amount == 0.0:
            return 0.0
        t = min(self.t, self.n_days - 1)
        w = math.exp(-self.delta * self.time_years()) * amount
        np.add.at(self.extra_cost[t], self.group_of(idx), w)
        return w * idx.size

    def advance(self, n_days: int) -> None:
        """Step everyone ``n_days`` days forward."""
        n_days = min(n_days, self.n_days - self.t)
        if n_days <= 0:
            return
        st = self.structure
        p = self.people
        group = self.group_of(np.arange(p.n))
        G = (len(self.edges) - 1) * self.n_regions
        d0, d1 = self.t, self.t + n_days
        living = (self.state != inf.D) & (st.birth_day <= d0 - 1)
        start = np.bincount(group[living] * 4 + self.state[living], minlength=4 * G).reshape(G, 4)
        born = (st.birth_day >= d0) & (st.birth_day < d1) & (st.birth_day > 0)
        births = np.bincount((st.birth_day[born] - d0) * G + group[born], minlength=n_days * G).reshape(n_days, G)
        if d0 == 0:  # people alive from the start count from day 0
            first = (st.birth_day == 0) & (self.state != inf.D)
            start = start + np.bincount(group[first] * 4 + self.state[first], minlength=4 * G).reshape(G, 4)
        comm = self.comm
        out = inf.step_days(
            self.state, self.t_next, self.n_inf, self.newinf, self.vax_day, self.ve_inf, self.ve_sev, self.wane,
            group, st.mix_group, st.birth_day, p.age0, p.female, self.bg_clock, self.bg_thr, self.bg_day, self.has_bg,
            st.hh_ptr, st.hh_of, self.beta_h, self.world.spec.infection.layers.household is not None,
            comm.contacts_per_day if comm else 0.0, bool(comm and comm.distribution == "poisson"),
            comm.beta if comm else 0.0, comm is not None,
            st.mix_order, st.mix_ptr, st.mix_c, self.beta_m, self.world.spec.infection.layers.age_mixing is not None,
            self.seir, *self.lat, *self.dur, self.imm_mean, self.ifr_edges, self.ifr_p,
            (len(self.edges) - 1) * self.n_regions, self.t, n_days, self.n_blocks, self.seed, self.replicate,
            self.streams)
        sl = slice(self.t, self.t + n_days)
        self.incidence[sl] += out[0]
        self.deaths_infection[sl] += out[1]
        self.deaths_background[sl] += out[2].sum(-1)
        self.occupancy[sl] = inf.occupancy_from_flows(start, births, out[0], out[1], out[2], out[3], self.seir)
        self.t += n_days
