"""Multi-arm multi-stage (MAMS) designs: group-sequential looks at C active arms against one control.

Each comparison (active arm j against the shared control) is its own one-sided group-sequential test
with Lan–DeMets efficacy bounds spending a per-comparison level α* at its own observed information
fractions (and, with beta spending, non-binding futility bounds under its design drift). The family-wise
error rate over the C comparisons is held at the protocol's α by the choice of α*:

- ``none``: α* = α (no adjustment: the FWER exceeds α);
- ``bonferroni``: α* = α / C (conservative whatever the correlation);
- ``dunnett``: the generalized Dunnett design of Magirr, Jaki & Whitehead (2012, Biometrika 99:494-501):
  α* solves FWER(α*) = α under the global null, where the FWER is one minus the probability that no
  statistic Z_jk ever reaches its bound b_k(α*). At the planned information fractions t_k the statistics
  are jointly normal with Corr(Z_jk, Z_lm) = ρ_jl √(min(t_k, t_m) / max(t_k, t_m)), ρ_jl the many-to-one
  correlation of the allocation ratios (:func:`vctrial.trial.multiplicity.many_to_one_correlation`), so
  the FWER is one C·K-dimensional multivariate normal probability (Genz's algorithm in scipy, absolute
  error about 1e-5, with a fixed generator so that the bounds are the same in every process). Futility
  bounds are ignored in this computation (non-binding), so dropping arms can only lower the FWER.

Stopping (``looks.stopping``): ``separate`` — each comparison stops at its own first efficacy crossing
(its arm is declared effective and closes) or futility crossing (its arm is dropped), the others go on,
and the trial ends when every comparison has stopped or at the final look; ``simultaneous`` — the whole
trial stops at the first look where any comparison crosses its efficacy bound (the comparisons crossing
there are rejected, the others stop unrejected); arms are still dropped for futility one by one.
Rejections in either rule are a subset of "some Z_jk reaches b_k", so both keep the FWER bound.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import optimize, stats

from vctrial.trial import sequential
from vctrial.trial.multiplicity import many_to_one_correlation

PROCEDURES = ("none", "bonferroni", "dunnett")
MAX_DIMENSION = 30
"""Most statistics (comparisons × looks) of a Dunnett MAMS design: one multivariate normal probability."""

_ABSEPS = 1e-5


def joint_correlation(fractions, weights) -> np.ndarray:
    """(C·K, C·K) correlation of the statistics Z_jk (comparison-major) at the planned fractions."""
    t = np.asarray(fractions, dtype=np.float64)
    looks = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    return np.kron(many_to_one_correlation(weights), looks)


def fwer(bounds, fractions, weights) -> float:
    """P(some Z_jk ≥ bounds[k]) under the global null: the family-wise error of efficacy bounds
    ``bounds`` (K,) shared by the C = len(weights) - 1 comparisons, futility ignored."""
    b = np.asarray(bounds, dtype=np.float64)
    C = len(weights) - 1
    cov = joint_correlation(fractions, weights)
    upper = np.tile(np.minimum(b, 40.0), C)
    inside = stats.multivariate_normal.cdf(upper, cov=cov, abseps=_ABSEPS, releps=0.0,
                                           maxpts=2_000_000, rng=np.random.default_rng(20120601))
    return float(np.clip(1.0 - inside, 0.0, 1.0))


def comparison_alpha(fractions, alpha: float, spending: str, gamma: float | None, weights,
                     procedure: str) -> float:
    """The per-comparison level α* whose spending bounds give a family-wise error rate α (see the module)."""
    return _comparison_alpha(tuple(float(x) for x in fractions), float(alpha), spending, gamma,
                             tuple(float(w) for w in weights), procedure)


@lru_cache(maxsize=64)
def _comparison_alpha(fractions: tuple, alpha: float, spending: str, gamma, weights: tuple, procedure: str) -> float:
    C = len(weights) - 1
    if procedure == "none" or C == 1:
        return alpha
    if procedure == "bonferroni":
        return alpha / C
    if procedure != "dunnett":
        raise ValueError(f"multiplicity: one of {', '.join(PROCEDURES)} with looks, got {procedure!r}")
    t = np.asarray(fractions)
    if C * t.size > MAX_DIMENSION:
        raise ValueError(f"{C} comparisons x {t.size} looks = {C * t.size} statistics; the Dunnett MAMS bounds are "
                         f"computed for at most {MAX_DIMENSION} (use bonferroni, or fewer looks)")

    def excess(a_star: float) -> float:
        b, _ = sequential.efficacy_bounds(t, sequential.SpendingSpec(spending, a_star, gamma))
        return fwer(b, t, weights) - alpha

    lo, hi = alpha / C, alpha
    if excess(lo) >= 0.0:  # Monte Carlo grain of the probability at a level where Bonferroni is already exact
        return lo
    return float(optimize.brentq(excess, lo, hi, xtol=1e-9, rtol=1e-7))


STOP_WITH_TRIAL = 3
"""Stop reason of a comparison ended by another's efficacy under simultaneous stopping."""


def stop_rule(z: np.ndarray, efficacy: np.ndarray, futility: np.ndarray, performed: np.ndarray, stopping: str
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stopping look, reason and rejection of every comparison.

    Args:
        z: (R, C, K) statistics, benefit positive (NaN: no estimate, crosses nothing).
        efficacy, futility: (R, C, K) bounds (futility -inf: none; the final look has none).
        performed: (R, K) the look took place (the looks performed come first).
        stopping: ``separate`` or ``simultaneous`` (see the module).

    Returns:
        stop (R, C) 0-based look; reason (R, C): 0 final analysis, 1 efficacy at an interim, 2 futility
        at an interim, 3 stopped with the trial (simultaneous stopping); reject (R, C).
    """
    R, C, K = z.shape
    last = (performed.sum(axis=1) - 1)[:, None]  # (R, 1) the final look performed
    k_idx = np.arange(K)[None, None, :]
    valid = performed[:, None, :] & np.isfinite(z)
    cross = valid & (z >= efficacy)
    drop = valid & (z < futility) & (k_idx < last[..., None]) & ~cross
    first_cross = np.where(cross, k_idx, K).min(axis=2)
    first_drop = np.where(drop, k_idx, K).min(axis=2)
    effective = first_cross < first_drop
    stop = np.minimum(np.minimum(first_cross, first_drop), last)
    if stopping == "simultaneous":  # the first efficacy crossing of any comparison ends the trial
        trial_end = np.where(effective, first_cross, K).min(axis=1, keepdims=True)
        stop = np.minimum(stop, trial_end)
        effective &= first_cross == stop
    early = stop < last
    reason = np.zeros((R, C), np.int8)
    reason[early & (first_drop == stop)] = 2
    reason[early & effective] = 1
    if stopping == "simultaneous":
        reason[early & ~effective & (first_drop > stop)] = STOP_WITH_TRIAL
    return stop.astype(np.int64), reason, effective
