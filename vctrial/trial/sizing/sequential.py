"""Group-sequential looks of a design (one look: a fixed design): bounds from
:mod:`vctrial.trial.sequential` (Lan–DeMets spending, non-binding β-spending futility), the drift at which
they give the power, and crossing probabilities."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from vctrial.trial import sequential  # the bounds (vctrial/trial/sequential.py), not this module


@dataclass(frozen=True)
class Sequential:
    """Looks and bounds of a design (one look: a fixed design)."""

    fractions: np.ndarray
    efficacy: np.ndarray
    futility: np.ndarray
    alpha_spent: np.ndarray
    drift: float  # E[Z_K] under H1 at which the bounds give the power (z_a + z_b for a fixed design)
    spending: str = "obf"
    gamma: float | None = None
    futility_family: str | None = None
    futility_gamma: float | None = None

    @property
    def looks(self) -> int:
        return int(self.fractions.size)

    def inflation(self, za: float, zb: float) -> float:
        return (self.drift / (za + zb)) ** 2


def sequential_design(looks: int, fractions, alpha1: float, power: float, spending: str, gamma, futility,
                      futility_gamma) -> Sequential:
    za, zb = _z(alpha1), _z(1.0 - power)
    if looks == 1:
        return Sequential(np.array([1.0]), np.array([za]), np.array([za]), np.array([alpha1]), za + zb)
    t = np.asarray(fractions, float)
    if spending == "hsd" and gamma is None:
        gamma = -4.0
    if futility == "hsd" and futility_gamma is None:
        futility_gamma = -2.0
    b = sequential.design(t, alpha1, spending, gamma, futility=futility, beta=1.0 - power,
                          futility_gamma=futility_gamma)
    if futility is None:
        def gap(drift):
            return crossing(t, b.efficacy, None, drift)[0].sum() - power
        hi = 2.0 * (za + zb) + 1.0
        while gap(hi) < 0:
            hi *= 2.0
        drift = float(optimize.brentq(gap, 0.0, hi, xtol=1e-12, rtol=1e-13))
    else:
        drift = float(b.drift)
    return Sequential(b.fractions, b.efficacy, b.futility, b.alpha_spent, drift, spending, gamma, futility,
                      futility_gamma)


def crossing(fractions, upper, lower, drift: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(fractions, float)
    if t.size == 1:  # a single look: plain normal tail probabilities
        mean = drift * math.sqrt(t[0])
        up = float(special.ndtr(mean - upper[0]))
        low = 0.0 if lower is None or not np.isfinite(lower[0]) else float(special.ndtr(lower[0] - mean))
        return np.array([up]), np.array([min(low, 1.0 - up)])
    return sequential.crossing_probabilities(t, upper, lower, drift)


def crossing_means(info1, upper, lower, means, sd) -> tuple[np.ndarray, np.ndarray]:
    """Crossing probabilities of Z_k ~ N(means_k, sd_k²) with the correlation of H1 information
    ``info1`` (Z'_k = (Z_k − mean_k)/sd_k is the canonical null process): bounds are shifted instead."""
    u = (np.asarray(upper) - means) / sd
    lo = None if lower is None else (np.asarray(lower) - means) / sd
    return crossing(np.asarray(info1, float) / info1[-1], u, lo, 0.0)


def _z(p: float) -> float:
    return float(special.ndtri(1.0 - p))


def _stops(up: np.ndarray, low: np.ndarray) -> np.ndarray:
    """P(stop at look k): crossing either bound, the last look taking the rest."""
    p = up + low
    p[-1] = max(0.0, 1.0 - float(p[:-1].sum()))
    return p
