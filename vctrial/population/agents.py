"""Mesa agents that deliver interventions: regions and their clinics, inside a model that runs the
calendar.

People stay in the engine's arrays. Each :class:`Region` holds the indices of its residents
(its catchment); each :class:`Clinic` delivers one intervention in one region, within its weekly
capacity, choosing eligible residents with numpy and handing them to the intervention, which
changes the arrays the kernel reads. One model step is one calendar period:

1. every region charges the ongoing costs of the treatments its residents receive;
2. every region's clinics deliver (regions in creation order; their catchments are disjoint, so
   the order does not change results);
3. the engine advances all people through the period with its numba kernel.
"""

from __future__ import annotations

import mesa
import numpy as np

from vctrial.population.interventions import Delivery


class Region(mesa.Agent):
    """A region: its residents (catchment) and its clinics."""

    def __init__(self, model: PopulationModel, code: int, name: str, catchment: np.ndarray):
        super().__init__(model)
        self.code = code
        self.name = name
        self.catchment = catchment
        self.clinics: list[Clinic] = []

    def step(self) -> None:
        years = self.model.period_years
        for clinic in self.clinics:
            clinic.delivery.charge_ongoing(clinic.pool, years)
        for clinic in self.clinics:
            clinic.deliver()


class Clinic(mesa.Agent):
    """Delivers one intervention to the residents of one region, at most ``capacity`` per week."""

    def __init__(self, model: PopulationModel, region: Region, delivery: Delivery):
        super().__init__(model)
        self.region = region
        self.delivery = delivery
        self.pool = region.catchment[delivery.static[region.catchment]]
        per_week = delivery.iv.capacity_per_week_per_100k
        residents = int((region.catchment < model.engine.people.n_initial).sum())
        self.capacity = None if per_week is None else per_week * residents / 1e5 * model.period_days / 7.0
        self.credit = 0.0
        region.clinics.append(self)

    def deliver(self) -> None:
        if not self.delivery.active():
            return
        idx = self.delivery.candidates(self.pool)
        if self.capacity is not None:
            self.credit += self.capacity
            k = int(self.credit)
            if idx.size > k:
                # serve the eligible with the lowest fixed priority draws first
                idx = idx[np.argpartition(self.delivery.priority[idx], k)[:k]] if k > 0 else idx[:0]
            self.credit -= idx.size
            self.credit = min(self.credit, self.capacity)  # unused slots do not pile up beyond one period
        self.delivery.deliver(np.sort(idx))


class PopulationModel(mesa.Model):
    """Runs the calendar of one (replicate, scenario): regions, clinics and the engine."""

    def __init__(self, engine, deliveries: list[Delivery], period_steps: int, step_days: float, seed: int):
        super().__init__(seed=seed)
        self.engine = engine
        self.deliveries = deliveries
        self.period_steps = int(period_steps)
        self.period_days = period_steps * step_days
        self.period_years = self.period_days / 365.25
        people = engine.people
        regions = engine.world.spec.population.regions
        order = np.argsort(people.region, kind="stable")
        bounds = np.searchsorted(people.region[order], np.arange(len(regions) + 1))
        self.regions = [Region(self, r, reg.name, order[bounds[r]:bounds[r + 1]]) for r, reg in enumerate(regions)]
        for region in self.regions:
            for d in deliveries:
                Clinic(self, region, d)

    def step(self) -> None:
        self.agents_by_type[Region].do("step")
        self.engine.advance(self.period_steps)

    def run(self) -> None:
        """Step until the engine reaches the horizon."""
        total = self.engine.n_steps if self.engine.kind == "chronic" else self.engine.n_days
        while self.engine.t < total:
            self.step()
