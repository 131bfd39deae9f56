"""One chunk of population replicates: (scenario file, seed, replicate indices) → arrays.

For each replicate the people (and contact structure) are built once; each scenario then runs
its own Mesa calendar over its own copy of the state, with the same random streams, so the
scenarios of a replicate differ only where their interventions act (common random numbers).
Arrays lead with the replicate axis, then the scenario axis, as :func:`vctrial.execute.run_jobs`
expects.
"""

from __future__ import annotations

import numpy as np

from vctrial import rng
from vctrial.population.agents import PopulationModel
from vctrial.population.chronic import ChronicEngine
from vctrial.population.epidemic import DAYS_PER_YEAR, EpidemicEngine, Structure
from vctrial.population.interventions import Delivery
from vctrial.population.people import build_people
from vctrial.spec.population import PopulationScenario


def step_days(world: PopulationScenario) -> float:
    """Length of one kernel step in days."""
    return world.step_days


def grid(world: PopulationScenario) -> tuple[int, int, int]:
    """(kernel steps, steps per calendar period, steps per output interval), checked when the file is loaded
    (see :meth:`PopulationScenario.grid`)."""
    return world.grid()


def simulate_chunk(world: PopulationScenario, seed: int, replicates: np.ndarray) -> dict[str, np.ndarray]:
    """Simulate every scenario of the given replicates; arrays are (R, A, ...)."""
    parts = [simulate_replicate(world, seed, int(r)) for r in np.asarray(replicates)]
    return {k: np.stack([p[k] for p in parts]) for k in parts[0]}


def simulate_replicate(world: PopulationScenario, seed: int, replicate: int,
                       keep_engines: list | None = None) -> dict[str, np.ndarray]:
    """All scenarios of one replicate; arrays are (A, ...). ``keep_engines`` collects the engines (tests)."""
    total, calendar, interval = grid(world)
    people = build_people(world, seed, replicate)
    structure = Structure(world, people, seed, replicate) if world.kind == "infection" else None
    outs = []
    draws = getattr(world, "disease_draws", None)
    disease = draws[replicate % len(draws)] if draws else None
    for a, ivs in enumerate(world.scenario_interventions):
        if structure is None:
            engine = ChronicEngine(world, people, seed, replicate, disease)
        else:
            engine = EpidemicEngine(world, people, structure, seed, replicate)
        deliveries = [Delivery(iv, world, engine, seed, replicate, total, world.scenario_hazard_ratios[a].get(iv.name))
                      for iv in ivs]
        mesa_seed = int(rng.stream_id(f"mesa:{seed}:{replicate}:{a}") % (2**32))
        model = PopulationModel(engine, deliveries, calendar, step_days(world), seed=mesa_seed)
        model.run()
        outs.append(collect(world, engine, deliveries, interval))
        if keep_engines is not None:
            keep_engines.append(engine)
    return {k: np.stack([o[k] for o in outs]) for k in outs[0]}


def _periods(x: np.ndarray, m: int) -> np.ndarray:
    """Sum consecutive blocks of m steps along axis 0 (the last block may be shorter)."""
    return np.add.reduceat(x, np.arange(0, x.shape[0], m), axis=0)


def collect(world: PopulationScenario, engine, deliveries: list[Delivery], m: int) -> dict[str, np.ndarray]:
    """Per output period: incidence, prevalence, deaths, life-years, QALYs, costs, and more."""
    spec = world.spec
    G = len(spec.outputs.age_groups) - 1
    Rg = len(spec.population.regions)
    total = engine.occupancy.shape[0]
    ends = np.minimum(np.arange(m, total + m, m), total) - 1

    def cells(x):  # (T, GR, ...) -> (T, G, Rg, ...)
        return x.reshape(x.shape[0], G, Rg, *x.shape[2:])

    if engine.kind == "chronic":
        d = world.disease
        names = d.event_names
        states = [s.name for s in d.states]
        absorbing = np.array([s.absorbing for s in d.states])
        to = engine.model.to_state
        inc_names = spec.outputs.incidence_events
        if inc_names is None:
            inc_names = [t.name for t in d.transitions if t.from_ == d.initial_state and not absorbing[states.index(t.to)]]
        prev_names = spec.outputs.prevalence_states
        if prev_names is None:
            prev_names = [s.name for s in d.states if s.name != d.initial_state and not s.absorbing]
        ev = engine.events
        incidence = ev[..., [names.index(e) for e in inc_names]].sum(-1)
        deaths = ev[..., absorbing[to]].sum(-1)
        flows = engine.flows
        life_years, qalys = flows[..., 0], flows[..., 1]
        costs = flows[..., 2] + engine.extra_cost
        occ_end = engine.occupancy[ends]
        prevalent = occ_end[..., [states.index(s) for s in prev_names]].sum(-1)
        alive = occ_end[..., ~absorbing].sum(-1)
        events = ev.sum(1)
        state_count = occ_end.sum(1)
        for s_abs in np.flatnonzero(absorbing):  # the dead are not in the kernel's occupancy
            state_count[:, s_abs] = np.cumsum(events[:, to == s_abs].sum(1))[ends]
    else:
        inf_model = spec.infection
        util = np.array([inf_model.utility.get(s, 1.0) for s in ("susceptible", "exposed", "infectious", "recovered")])
        cost_state = np.array([spec.costs.state_per_year.get(s, 0.0)
                               for s in ("susceptible", "exposed", "infectious", "recovered")])
        occ = engine.occupancy.astype(np.float64)
        days = np.arange(total)
        disc = np.exp(-engine.delta * (days + 0.5) / DAYS_PER_YEAR)[:, None]
        incidence = engine.incidence
        deaths = engine.deaths_infection + engine.deaths_background
        life_years = occ.sum(-1) / DAYS_PER_YEAR
        qalys = (occ @ util) * disc / DAYS_PER_YEAR
        costs = ((occ @ cost_state) / DAYS_PER_YEAR + spec.costs.per_event.get("infection", 0.0) * incidence
                 + spec.costs.per_event.get("death", 0.0) * engine.deaths_infection) * disc + engine.extra_cost
        occ_end = engine.occupancy[ends]
        prevalent = occ_end[..., 1] + occ_end[..., 2]
        alive = occ_end.sum(-1)
        events = np.stack([incidence.sum(1), engine.deaths_infection.sum(1), engine.deaths_background.sum(1)], axis=1)
        dead = np.cumsum(deaths.sum(1))[ends]
        state_count = np.concatenate([occ_end.sum(1), dead[:, None]], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        prevalence = np.where(alive > 0, prevalent / np.maximum(alive, 1), np.nan)
    J = [iv.name for iv in spec.interventions]
    delivered = np.zeros((len(ends), len(J)))
    iv_cost = np.zeros((len(ends), len(J)))
    for dl in deliveries:
        j = J.index(dl.name)
        delivered[:, j] = _periods(dl.delivered, m)
        iv_cost[:, j] = _periods(dl.cost, m)
    return {
        "incidence": cells(_periods(incidence, m)).astype(np.float64),
        "prevalence": cells(prevalence),
        "deaths": cells(_periods(deaths, m)).astype(np.float64),
        "life_years": cells(_periods(life_years, m)),
        "qalys": cells(_periods(qalys, m)),
        "costs": cells(_periods(costs, m)),
        "alive": cells(alive).astype(np.float64),
        "events": _periods(events, m).astype(np.float64),
        "state_count": state_count.astype(np.float64),
        "delivered": delivered,
        "intervention_costs": iv_cost,
    }
