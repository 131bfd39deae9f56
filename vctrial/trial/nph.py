"""Analyses for non-proportional hazards: restricted mean survival time and the MaxCombo test.

Batches are (R, n) arrays as in :mod:`vctrial.trial.analysis` (time, event, group 0/1, include);
each replicate is analysed by one thread of a ``prange`` loop, so results do not depend on the
number of threads.

* RMST up to ``tau``: the area under each arm's Kaplan–Meier curve on [0, tau], with the usual
  variance Σ_{t_j ≤ tau} A_j² d_j / (n_j (n_j − d_j)), A_j = ∫_{t_j}^{tau} S(u) du (Klein &
  Moeschberger 2003, §4.5). The difference is active − control; ``z`` is oriented like the
  log-rank z (negative favours the active arm, i.e. a longer RMST on active).
* MaxCombo: the Fleming–Harrington weighted log-rank statistics G(rho, gamma) for several
  (rho, gamma), weights S(t−)^rho (1 − S(t−))^gamma from the pooled Kaplan–Meier estimate. Under H0
  they are jointly normal with the correlation of their weighted hypergeometric variances; the
  p-value of the most extreme statistic is a multivariate normal probability, computed by Genz's
  separation of variables on a fixed shifted rank-1 lattice (deterministic). The correlation is
  singular for the default combinations (weights 1 = S + (1 − S), so G(0,0) is a combination of
  G(1,0) and G(0,1)); a pivoted Cholesky factor handles that exactly.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from vctrial.trial.analysis import _order, _risk_table, _survival_inputs

DEFAULT_COMBOS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))
LATTICE_POINTS = 2048
LATTICE_SHIFTS = 4


class Rmst(NamedTuple):
    """RMST per replicate.

    Attributes:
        difference: (R,) RMST(active) − RMST(control), months; NaN if either arm's follow-up
            ends before tau.
        se: (R,) its standard error.
        rmst: (R, 2) RMST of control (column 0) and active (column 1).
        variance: (R, 2) variance of each arm's RMST.
        z: (R,) −difference / se (negative favours the active arm).
    """

    difference: np.ndarray
    se: np.ndarray
    rmst: np.ndarray
    variance: np.ndarray
    z: np.ndarray


class MaxCombo(NamedTuple):
    """MaxCombo test per replicate.

    Attributes:
        z: (R, J) weighted log-rank z per (rho, gamma) combination (negative favours active).
        correlation: (R, J, J) their correlation under H0.
        statistic: (R,) the smallest z (the most favourable to the active arm).
        p_one: (R,) one-sided p-value P(min_j Z_j ≤ statistic) under H0.
        p_two: (R,) two-sided p-value P(max_j |Z_j| ≥ max_j |z_j|) under H0.
    """

    z: np.ndarray
    correlation: np.ndarray
    statistic: np.ndarray
    p_one: np.ndarray
    p_two: np.ndarray


# --------------------------------------------------------------------------------------------
# RMST.
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _rmst_arm(time, event, include, order, tau):
    """(rmst, variance) of one arm of one replicate; NaN when follow-up ends before tau."""
    last = -1.0
    for i in range(time.shape[0]):
        if include[i] and time[i] > last:
            last = time[i]
    if last < tau:
        return np.nan, np.nan
    no_group = np.zeros(time.shape[0], np.int8)
    t, n, _, d, _ = _risk_table(time, event, no_group, include, order)
    m = 0
    while m < t.shape[0] and t[m] <= tau:
        m += 1
    # survival just after each event time, and the area from each event time to tau
    surv = np.empty(m)
    s = 1.0
    for k in range(m):
        s *= 1.0 - d[k] / n[k]
        surv[k] = s
    area = 0.0
    prev_t = 0.0
    prev_s = 1.0
    for k in range(m):
        area += prev_s * (t[k] - prev_t)
        prev_t = t[k]
        prev_s = surv[k]
    area += prev_s * (tau - prev_t)
    var = 0.0
    tail = 0.0  # ∫_{t_k}^{tau} S(u) du, built from the right
    for k in range(m - 1, -1, -1):
        nxt = t[k + 1] if k + 1 < m else tau
        tail += surv[k] * (nxt - t[k])
        if n[k] > d[k]:
            var += tail * tail * d[k] / (n[k] * (n[k] - d[k]))
    return area, var


@numba.njit(cache=True, parallel=True)
def _rmst_kernel(time, event, group, include, order, tau):
    R = time.shape[0]
    out = np.empty((R, 2))
    var = np.empty((R, 2))
    for r in numba.prange(R):
        for g in range(2):
            inc = include[r] & (group[r] == g)
            out[r, g], var[r, g] = _rmst_arm(time[r], event[r], inc, order[r], tau)
    return out, var


def rmst(time, event, group, include=None, *, tau: float) -> Rmst:
    """Restricted mean survival time of each arm up to ``tau`` (months) and their difference."""
    if not tau > 0.0:
        raise ValueError(f"tau: must be > 0, got {tau}")
    t, e, g, inc = _survival_inputs(time, event, group, include)
    area, var = _rmst_kernel(t, e, g, inc, _order(t), float(tau))
    diff = area[:, 1] - area[:, 0]
    se = np.sqrt(var[:, 0] + var[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        z = -diff / se
    return Rmst(diff, se, area, var, z)


# --------------------------------------------------------------------------------------------
# MaxCombo.
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _phi(x):
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@numba.njit(cache=True)
def _phi_inv(p):
    """Inverse standard normal CDF: a rational start (Abramowitz & Stegun 26.2.23) and Halley steps."""
    if p <= 0.0:
        return -np.inf
    if p >= 1.0:
        return np.inf
    q = p if p < 0.5 else 1.0 - p
    t = math.sqrt(-2.0 * math.log(q))
    x = t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t)
    x = -x if p < 0.5 else x
    for _ in range(2):  # the start is within 5e-4; Halley's cubic convergence does the rest
        err = _phi(x) - p
        dens = math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        if dens == 0.0:
            break
        u = err / dens
        x = x - u / (1.0 + 0.5 * x * u)
    return x


@numba.njit(cache=True)
def _pivoted_cholesky(c, tol):
    """Rank-revealing Cholesky: c[perm][:, perm] = L Lᵀ with L (J, rank) lower-trapezoidal."""
    J = c.shape[0]
    a = c.copy()
    perm = np.arange(J)
    L = np.zeros((J, J))
    rank = 0
    for i in range(J):
        best = i
        for j in range(i + 1, J):  # largest remaining diagonal first
            if a[perm[j], perm[j]] - np.sum(L[j, :i] ** 2) > a[perm[best], perm[best]] - np.sum(L[best, :i] ** 2):
                best = j
        if best != i:
            perm[i], perm[best] = perm[best], perm[i]
            for k in range(i):
                L[i, k], L[best, k] = L[best, k], L[i, k]
        diag = a[perm[i], perm[i]] - np.sum(L[i, :i] ** 2)
        if diag <= tol:
            break
        L[i, i] = math.sqrt(diag)
        for j in range(i + 1, J):
            L[j, i] = (a[perm[j], perm[i]] - np.sum(L[j, :i] * L[i, :i])) / L[i, i]
        rank += 1
    return perm, L[:, :rank], rank


@numba.njit(cache=True)
def _mvn_box(corr, lo, hi, alphas, shifts, n_points):
    """P(lo < X < hi) for X ~ N(0, corr), corr possibly singular.

    Genz's separation of variables on the pivoted Cholesky factor X = L U, U ~ N(0, I_rank):
    every constraint row is an interval for the last U it depends on, so rows that are linear
    combinations of earlier ones (a singular corr) are intersected exactly rather than becoming
    discontinuities. The first rank − 1 variables are integrated on a shifted rank-1 lattice.
    """
    J = corr.shape[0]
    perm, L, rank = _pivoted_cholesky(corr, 1e-10)
    last = np.empty(J, np.int64)  # the last column each (pivoted) row depends on
    for p in range(J):
        last[p] = 0
        for c in range(rank):
            if abs(L[p, c]) > 1e-12:
                last[p] = c
    u = np.zeros(rank)
    total = 0.0
    for sft in range(shifts.shape[0]):
        acc = 0.0
        for k in range(n_points):
            f = 1.0
            for i in range(rank):
                lower = -np.inf
                upper = np.inf
                for p in range(J):
                    if last[p] != i:
                        continue
                    s = 0.0
                    for c in range(i):
                        s += L[p, c] * u[c]
                    x1 = (lo[perm[p]] - s) / L[p, i]
                    x2 = (hi[perm[p]] - s) / L[p, i]
                    if L[p, i] < 0.0:
                        x1, x2 = x2, x1
                    lower = max(lower, x1)
                    upper = min(upper, x2)
                if upper <= lower:
                    f = 0.0
                    break
                d = _phi(lower)
                e = _phi(upper)
                f *= e - d
                if i + 1 < rank:
                    w = (k * alphas[i] + shifts[sft, i]) % 1.0
                    w = 1.0 - abs(2.0 * w - 1.0)  # baker's transform (periodization)
                    u[i] = _phi_inv(d + w * (e - d))
            acc += f
        total += acc / n_points
    return total / shifts.shape[0]


@numba.njit(cache=True)
def _weighted_stats(time, event, group, include, order, rhos, gammas):
    """Numerators and covariance of the weighted log-rank statistics of one replicate."""
    J = rhos.shape[0]
    num = np.zeros(J)
    cov = np.zeros((J, J))
    if not np.any(include):
        return num, cov
    _, n0, n1, d0, d1 = _risk_table(time, event, group, include, order)
    s_before = 1.0
    w = np.empty(J)
    for k in range(n0.shape[0]):
        n = n0[k] + n1[k]
        d = d0[k] + d1[k]
        for j in range(J):
            w[j] = s_before ** rhos[j] * (1.0 - s_before) ** gammas[j]
        e1 = d * n1[k] / n
        v = d * (n1[k] / n) * (n0[k] / n) * (n - d) / (n - 1.0) if n > 1.0 else 0.0
        for j in range(J):
            num[j] += w[j] * (d1[k] - e1)
            for l in range(J):
                cov[j, l] += w[j] * w[l] * v
        s_before *= 1.0 - d / n
    return num, cov


@numba.njit(cache=True, parallel=True)
def _maxcombo_kernel(time, event, group, include, order, rhos, gammas, alphas, shifts, n_points, one, two):
    R = time.shape[0]
    J = rhos.shape[0]
    z = np.full((R, J), np.nan)
    corr = np.full((R, J, J), np.nan)
    stat = np.full(R, np.nan)
    p_one = np.full(R, np.nan)
    p_two = np.full(R, np.nan)
    for r in numba.prange(R):
        num, cov = _weighted_stats(time[r], event[r], group[r], include[r], order[r], rhos, gammas)
        ok = True
        for j in range(J):
            if not cov[j, j] > 0.0:
                ok = False
        if not ok:
            continue
        sd = np.sqrt(np.diag(cov))
        c = np.empty((J, J))
        for j in range(J):
            z[r, j] = num[j] / sd[j]
            for l in range(J):
                c[j, l] = cov[j, l] / (sd[j] * sd[l])
            c[j, j] = 1.0
        corr[r] = c
        zmin = np.min(z[r])
        zabs = np.max(np.abs(z[r]))
        stat[r] = zmin
        if one:  # P(Z_j > zmin ∀j) = P(-Z_j < -zmin ∀j), and -Z has the same law
            p_one[r] = 1.0 - _mvn_box(c, np.full(J, -np.inf), np.full(J, -zmin), alphas, shifts, n_points)
        if two:
            p_two[r] = 1.0 - _mvn_box(c, np.full(J, -zabs), np.full(J, zabs), alphas, shifts, n_points)
    return z, corr, stat, p_one, p_two


def _lattice(dims: int, shifts: int) -> tuple[np.ndarray, np.ndarray]:
    """Richtmyer generators √p (p prime) and fixed shifts (a constant stream: deterministic)."""
    primes = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37]
    if dims > len(primes):
        raise ValueError(f"at most {len(primes) + 1} combinations")
    alphas = np.sqrt(np.array(primes[:max(dims, 1)], dtype=np.float64)) % 1.0
    shift = np.random.Generator(np.random.Philox(20240611)).random((shifts, max(dims, 1)))
    return alphas, shift


def maxcombo(time, event, group, include=None, *, combos=DEFAULT_COMBOS, sided: str = "both",
             n_points: int = LATTICE_POINTS) -> MaxCombo:
    """MaxCombo test: the most extreme of several Fleming–Harrington weighted log-rank statistics.

    Args:
        time, event, group, include: (R, n) as for :func:`vctrial.trial.analysis.logrank`.
        combos: (rho, gamma) pairs; the default is G(0,0), G(0,1), G(1,0), G(1,1).
        sided: which p-values to compute: ``"one"``, ``"two"`` or ``"both"`` (the other is NaN).
        n_points: lattice points per shift of the multivariate normal integration.
    """
    if sided not in ("one", "two", "both"):
        raise ValueError(f"sided: must be 'one', 'two' or 'both', got {sided!r}")
    pairs = np.asarray(combos, dtype=np.float64)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] < 1 or np.any(pairs < 0):
        raise ValueError(f"combos: must be a list of (rho >= 0, gamma >= 0) pairs, got {combos!r}")
    t, e, g, inc = _survival_inputs(time, event, group, include)
    alphas, shifts = _lattice(pairs.shape[0] - 1, LATTICE_SHIFTS)
    z, corr, stat, p1, p2 = _maxcombo_kernel(t, e, g, inc, _order(t), np.ascontiguousarray(pairs[:, 0]),
                                             np.ascontiguousarray(pairs[:, 1]), alphas, shifts, int(n_points),
                                             sided != "two", sided != "one")
    return MaxCombo(z, corr, stat, np.clip(p1, 0.0, 1.0), np.clip(p2, 0.0, 1.0))
