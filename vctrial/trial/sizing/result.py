"""The sized design: :class:`Design`, its looks and its simulation check; rounding to whole arms, and
the looks and expected N of a design sized in patients (continuous, binary)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vctrial.trial.sizing.piecewise import SurvivalModel
from vctrial.trial.sizing.report import format_design
from vctrial.trial.sizing.sequential import Sequential, _stops, _z, crossing


@dataclass
class Look:
    fraction: float
    information: float  # events, or patients analysed
    time: float | None  # expected calendar month under H1 (time-to-event)
    enrolled: float | None  # expected patients enrolled by then
    efficacy: float
    futility: float
    alpha_spent: float
    power: float  # cumulative P(reject) under H1
    ahr: float | None = None


@dataclass
class Verification:
    replicates: int
    seed: int
    calculated: float
    simulated: float
    lower: float
    upper: float
    statistic: str
    protocol: str

    @property
    def covered(self) -> bool:
        return self.lower <= self.calculated <= self.upper


@dataclass
class Design:
    """A sized design: what ``vctrial design`` prints and writes."""

    endpoint: str
    method: str
    alpha: float
    sided: str
    power: float
    allocation: float
    weights: tuple[int, int] | None
    seq: Sequential
    inputs: list[tuple[str, str]]
    n: float  # patients (analysed for continuous/binary; enrolled for time-to-event)
    n_enrolled: float  # patients to enrol (dropout inflation)
    n_round: int
    arms_round: tuple[int, int]  # (control, active)
    events: float | None = None
    events_round: int | None = None
    duration: float | None = None
    schoenfeld_events: float | None = None
    looks: list[Look] = field(default_factory=list)
    expected: dict[str, dict[str, float]] = field(default_factory=dict)
    power_rounded: float = math.nan
    assurance: float | None = None  # with --hazard-ratio-ci: power averaged over the effect's interval
    notes: list[str] = field(default_factory=list)
    model: SurvivalModel | None = None
    accrual_rates: list[float] = field(default_factory=list)
    accrual_durations: list[float] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    verification: Verification | None = None
    written: list[Path] = field(default_factory=list)

    @property
    def alpha1(self) -> float:
        return self.alpha / 2.0 if self.sided == "two" else self.alpha

    @property
    def inflation(self) -> float:
        return self.seq.inflation(_z(self.alpha1), _z(1.0 - self.power))

    def text(self) -> str:
        return format_design(self)


def _round_arms(n: float, r: float, weights: tuple[int, int] | None) -> tuple[int, tuple[int, int]]:
    """Round a total sample size up to whole blocks of the allocation (or per arm)."""
    if weights is not None:
        a, c = weights
        blocks = math.ceil(n / (a + c) - 1e-9)
        blocks = max(blocks, math.ceil(4 / (a + c)))
        return blocks * (a + c), (blocks * c, blocks * a)
    nc = math.ceil(n / (1 + r) - 1e-9)
    ne = math.ceil(n * r / (1 + r) - 1e-9)
    return nc + ne, (nc, ne)


def _finish_fixed_n(design: Design, n_fix: float, dropout: float) -> None:
    """N = fixed-design N times the inflation; looks at fractions of N; expected N under H0 and H1."""
    s = design.seq
    design.n = n_fix * design.inflation
    design.n_enrolled = design.n / (1.0 - dropout)
    design.n_round, design.arms_round = _round_arms(design.n_enrolled, design.allocation, design.weights)
    up1, low1 = crossing(s.fractions, s.efficacy, s.futility, s.drift)
    cum = np.cumsum(up1)
    design.looks = [Look(float(s.fractions[k]), float(s.fractions[k] * design.n), None, None, float(s.efficacy[k]),
                         float(s.futility[k]), float(s.alpha_spent[k]), float(cum[k])) for k in range(s.looks)]
    design.expected = {}
    for name, drift in (("H1", s.drift), ("H0", 0.0)):
        up, low = crossing(s.fractions, s.efficacy, s.futility, drift)
        p = _stops(up, low)
        design.expected[name] = {"n": float(p @ (s.fractions * design.n_enrolled)), "reject": float(up.sum())}
