"""Enrollment by trial sites: a Mesa model runs the trial calendar; sites are its agents.

Each site opens at a date drawn uniformly in its group's activation window (ramp-up), then
screens candidates as a Poisson process whose rate is drawn once per site and trial from a gamma
distribution (mean ``screening_rate_per_month``, coefficient of variation ``rate_cv``), until it
has randomized ``cap`` patients or enrollment is complete. Patients stay in arrays: the model
only decides when and where each screening happens.

Screen failures follow the cohort's eligibility. The cohort's candidates are examined in index
order and ``synthesize`` reports how many were screened (N) to find the n eligible patients; the
n-th eligible is candidate N − 1, and since candidates are exchangeable the other n − 1 eligible
positions among the first N − 1 are a uniformly random subset, drawn here by selection sampling
keyed by (seed, "screening", replicate, screening number). The k-th screening of the trial (in
calendar order, over all sites) examines candidate k, so the i-th eligible candidate is the i-th
patient randomized, at that screening's date and site.

One model runs a whole chunk of replicates: every site agent holds arrays over the chunk's
replicates, and every draw is keyed by (seed, "site:<group>:<k>", replicate, step) or
(seed, "screening", replicate, k), so results do not depend on how replicates are chunked, and
the Mesa model's own random generator is never used.
"""

from __future__ import annotations

from dataclasses import dataclass

import mesa
import numba
import numpy as np
from scipy import special

from vctrial import rng
from vctrial.spec.protocol import Enrollment


@dataclass(frozen=True)
class SiteEnrollment:
    """Where and when each patient of a chunk was randomized.

    Attributes:
        entry: (R, n) calendar month of randomization; ``inf`` when enrollment closed first.
        site: (R, n) index of the patient's site; -1 when not enrolled.
        randomized: (R, S) patients randomized per site.
        screened: (R, S) candidates screened per site.
        opened: (R, S) calendar month each site opened.
        complete: (R,) month the last patient was randomized; NaN if enrollment closed first.
        names, groups, regions: (S,) site labels, their group and region.
    """

    entry: np.ndarray
    site: np.ndarray
    randomized: np.ndarray
    screened: np.ndarray
    opened: np.ndarray
    complete: np.ndarray
    names: tuple[str, ...]
    groups: tuple[str, ...]
    regions: tuple[str, ...]


def site_labels(enrollment: Enrollment) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(names, groups, regions) of every site, in model order."""
    names, groups, regions = [], [], []
    for g in enrollment.sites:
        for k in range(g.count):
            names.append(f"{g.name}:{k + 1}")
            groups.append(g.name)
            regions.append(g.region or g.name)
    return tuple(names), tuple(groups), tuple(regions)


class Site(mesa.Agent):
    """One trial site across the replicates of a chunk (state: arrays over replicates)."""

    def __init__(self, model: EnrollmentModel, index: int, name: str, region: str, opens: np.ndarray,
                 rate: np.ndarray, cap: int | None, stream: int):
        super().__init__(model)
        self.index = index
        self.name = name
        self.region = region
        self.opens = opens  # (R,) months
        self.rate = rate  # (R,) screenings per month once open
        self.cap = cap if cap is not None else np.iinfo(np.int64).max
        self.stream = np.uint64(stream)

    @property
    def randomized(self) -> np.ndarray:
        return self.model.site_randomized[self.index]

    def draw_arrivals(self) -> None:
        """This step's screening arrivals in every replicate where the site is open and not full."""
        m: EnrollmentModel = self.model
        live = m.enrolling & (self.randomized < self.cap) & (self.opens < m.month + m.step_months)
        counts, times = _arrivals(m.seed_u64, self.stream, m.replicates, m.step_index, m.month,
                                  m.month + m.step_months, self.opens, self.rate, live)
        m.pending[self.index] = (counts, times)


class EnrollmentModel(mesa.Model):
    """The trial calendar: each step every open site screens; screenings are merged in date order."""

    def __init__(self, enrollment: Enrollment, n_patients: int, n_screened: np.ndarray, seed: int,
                 replicates: np.ndarray):
        super().__init__(seed=int(seed))
        self.replicates = np.ascontiguousarray(replicates, np.int64)
        R = self.replicates.shape[0]
        self.seed_u64 = np.uint64(seed)
        self.n_patients = int(n_patients)
        self.n_screened = np.ascontiguousarray(n_screened, np.int64)
        self.step_months = float(enrollment.calendar_step_months)
        self.max_months = float(enrollment.max_duration_months)
        self.month = 0.0
        self.step_index = 0
        names, _, regions = site_labels(enrollment)
        S = len(names)
        self.site_randomized = np.zeros((S, R), np.int64)
        self.site_screened = np.zeros((S, R), np.int64)
        self.caps = np.zeros(S, np.int64)
        self.enrolling = np.ones(R, np.bool_)
        self.screened = np.zeros(R, np.int64)
        self.selected = np.zeros(R, np.int64)
        self.complete = np.full(R, np.nan)
        self.entry = np.full((R, n_patients), np.inf)
        self.site_of = np.full((R, n_patients), -1, np.int32)
        self.opened = np.zeros((S, R))
        self.pending: list[tuple[np.ndarray, np.ndarray] | None] = [None] * S
        self.sites: list[Site] = []
        index = 0
        for group in enrollment.sites:
            for k in range(group.count):
                stream = rng.stream_id(f"site:{group.name}:{k}")
                u = rng.uniforms(self.seed_u64, np.uint64(stream), self.replicates, 1, 2)[:, 0, :]
                lo, hi = group.activation_months
                opens = lo + (hi - lo) * u[:, 0]
                if group.rate_cv > 0.0:
                    shape = 1.0 / group.rate_cv**2
                    mult = special.gammaincinv(shape, np.clip(u[:, 1], 1e-300, 1.0 - 1e-16)) / shape
                else:
                    mult = np.ones(R)
                rate = group.screening_rate_per_month * mult
                self.sites.append(Site(self, index, names[index], regions[index], opens, rate, group.cap, stream))
                self.caps[index] = group.cap if group.cap is not None else np.iinfo(np.int64).max
                self.opened[index] = opens
                index += 1
        self.screen_stream = np.uint64(rng.stream_id("screening"))
        self.running = bool(self.enrolling.any())

    def step(self) -> None:
        """One calendar step: sites draw their screenings, the model merges them in date order."""
        self.agents.do("draw_arrivals")
        counts = np.stack([c for c, _ in self.pending])  # (S, R)
        flat = np.concatenate([t for _, t in self.pending]) if counts.sum() else np.empty(0)
        offsets = np.zeros(counts.size + 1, np.int64)
        np.cumsum(counts.ravel(), out=offsets[1:])
        _merge(counts, offsets, flat, self.caps, self.site_randomized, self.site_screened, self.screened,
               self.selected, self.n_screened, self.n_patients, self.enrolling, self.complete, self.entry,
               self.site_of, self.seed_u64, self.screen_stream, self.replicates)
        self.step_index += 1
        self.month += self.step_months
        self.running = bool(self.enrolling.any()) and self.month < self.max_months - 1e-12

    def result(self) -> SiteEnrollment:
        names = tuple(a.name for a in self.sites)
        groups = tuple(n.split(":")[0] for n in names)
        regions = tuple(a.region for a in self.sites)
        return SiteEnrollment(self.entry, self.site_of, self.site_randomized.T.copy(), self.site_screened.T.copy(),
                              self.opened.T.copy(), self.complete, names, groups, regions)


def enroll(enrollment: Enrollment, n_patients: int, n_screened: np.ndarray, seed: int,
           replicates: np.ndarray) -> SiteEnrollment:
    """Run the site model over the calendar until every replicate is enrolled or enrollment closes."""
    model = EnrollmentModel(enrollment, n_patients, n_screened, seed, replicates)
    while model.running:
        model.step()
    return model.result()


@numba.njit(cache=True)
def _arrivals(seed, stream, replicates, step, t0, t1, opens, rate, live):
    """Poisson arrival times in [max(t0, opens), t1) per replicate: (counts (R,), flat times)."""
    R = replicates.shape[0]
    counts = np.zeros(R, np.int64)
    for pass_ in range(2):
        if pass_ == 1:
            times = np.empty(counts.sum())
            at = 0
        for r in range(R):
            if not live[r] or rate[r] <= 0.0:
                continue
            key = rng.stream_key(seed, stream, replicates[r])
            t = max(t0, opens[r])
            j = 0
            while True:
                t += -np.log(rng.uniform_open(key, step + 1, j)) / rate[r]
                if t >= t1:
                    break
                if pass_ == 0:
                    counts[r] += 1
                else:
                    times[at] = t
                    at += 1
                j += 1
    return counts, times


@numba.njit(cache=True)
def _merge(counts, offsets, flat, caps, site_rand, site_screen, screened, selected, n_screened, n, enrolling,
           complete, entry, site_of, seed, stream, replicates):
    """Process one step's screenings of every replicate in date order (see the module docstring)."""
    S, R = counts.shape
    for r in range(R):  # serial: a step's work is small, thread start-up would dominate
        if not enrolling[r]:
            continue
        m = 0
        for s in range(S):
            m += counts[s, r]
        if m == 0:
            continue
        tt = np.empty(m)
        ss = np.empty(m, np.int64)
        at = 0
        for s in range(S):
            lo = offsets[s * R + r]
            for j in range(counts[s, r]):
                tt[at] = flat[lo + j]
                ss[at] = s
                at += 1
        order = np.argsort(tt)
        key = rng.stream_key(seed, stream, replicates[r])
        N = n_screened[r]
        for q in range(m):
            s = ss[order[q]]
            if site_rand[s, r] >= caps[s]:
                continue  # the site is full: it no longer screens
            k = screened[r]
            if k == N - 1:
                eligible = True
            else:  # selection sampling: n - 1 eligible among the first N - 1 candidates
                eligible = (N - 1 - k) * rng.uniform(key, k, 0) < (n - 1 - selected[r])
            screened[r] += 1
            site_screen[s, r] += 1
            if eligible:
                p = selected[r]
                entry[r, p] = tt[order[q]]
                site_of[r, p] = s
                selected[r] += 1
                site_rand[s, r] += 1
                if selected[r] == n:
                    enrolling[r] = False
                    complete[r] = tt[order[q]]
                    break
