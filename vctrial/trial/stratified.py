"""Stratified log-rank test and stratified Cox model over batches of replicates.

Same batches as :mod:`vctrial.trial.analysis` ((R, n) arrays time, event, group, include) plus
an (R, n) integer ``strata`` array, e.g. the randomization strata. Each stratum keeps its own
risk sets (and, for Cox, its own baseline hazard); the strata's contributions are summed:
observed-minus-expected and hypergeometric variances for the log-rank test, Efron log partial
likelihoods for Cox. Stratifying on a prognostic factor used in randomization keeps the test's
level and gains power, which is why trials pre-specify it.
"""

from __future__ import annotations

import numba
import numpy as np

from vctrial.trial.analysis import (
    CoxFit,
    LogRank,
    _batch,
    _cox_newton,
    _logrank_sums,
    _order,
    _risk_table,
    _survival_inputs,
    check_newton,
)

__all__ = ["cox_hr_stratified", "logrank_stratified"]

# Strata labels in [0, _DIRECT_CODES) are used as they are; others are renumbered with np.unique.
_DIRECT_CODES = 4096


@numba.njit(cache=True)
def _strata_table(time, event, group, include, order, codes, n_strata):
    """Risk tables of the strata of one replicate, stacked stratum after stratum.

    Returns (at_risk0, at_risk1, events0, events1, bounds): the rows of stratum s are
    bounds[s]:bounds[s + 1]. The patients are bucketed by stratum keeping the time order
    (a counting sort), then each stratum is tabulated by :func:`_risk_table`.
    """
    n = order.shape[0]
    start = np.zeros(n_strata + 1, np.int64)
    for j in range(n):
        p = order[j]
        if include[p]:
            start[codes[p] + 1] += 1
    for s in range(n_strata):
        start[s + 1] += start[s]
    m = start[n_strata]
    fill = start[:n_strata].copy()
    by_stratum = np.empty(m, np.int64)
    for j in range(n):
        p = order[j]
        if include[p]:
            c = codes[p]
            by_stratum[fill[c]] = p
            fill[c] += 1
    n0 = np.empty(m)
    n1 = np.empty(m)
    d0 = np.empty(m, np.int64)
    d1 = np.empty(m, np.int64)
    bounds = np.empty(n_strata + 1, np.int64)
    k = 0
    for s in range(n_strata):
        bounds[s] = k
        if start[s + 1] > start[s]:
            _, a0, a1, e0, e1 = _risk_table(time, event, group, include,
                                            by_stratum[start[s]:start[s + 1]])
            for i in range(a0.shape[0]):
                n0[k + i] = a0[i]
                n1[k + i] = a1[i]
                d0[k + i] = e0[i]
                d1[k + i] = e1[i]
            k += a0.shape[0]
    bounds[n_strata] = k
    return n0[:k], n1[:k], d0[:k], d1[:k], bounds


@numba.njit(cache=True, parallel=True)
def _logrank_strat_kernel(time, event, group, include, order, codes, n_strata, rho, gamma):
    n_rep = time.shape[0]
    z = np.empty(n_rep)
    observed = np.empty((n_rep, 2))
    expected = np.empty((n_rep, 2))
    variance = np.empty(n_rep)
    for r in numba.prange(n_rep):
        if not np.any(include[r]):
            z[r] = np.nan
            observed[r, 0] = observed[r, 1] = np.nan
            expected[r, 0] = expected[r, 1] = np.nan
            variance[r] = np.nan
            continue
        n0, n1, d0, d1, bounds = _strata_table(time[r], event[r], group[r], include[r],
                                               order[r], codes[r], n_strata)
        o0 = 0.0
        o1 = 0.0
        e1 = 0.0
        num = 0.0
        var = 0.0
        for s in range(n_strata):
            a = bounds[s]
            b = bounds[s + 1]
            if b > a:
                so0, so1, se1, snum, svar = _logrank_sums(n0[a:b], n1[a:b], d0[a:b], d1[a:b],
                                                          rho, gamma)
                o0 += so0
                o1 += so1
                e1 += se1
                num += snum
                var += svar
        z[r] = num / np.sqrt(var) if var > 0.0 else np.nan
        observed[r, 0] = o0
        observed[r, 1] = o1
        expected[r, 0] = (o0 + o1) - e1
        expected[r, 1] = e1
        variance[r] = var
    return z, observed, expected, variance


@numba.njit(cache=True, parallel=True)
def _cox_strat_kernel(time, event, group, include, order, codes, n_strata, max_iter, tol):
    n_rep = time.shape[0]
    log_hr = np.empty(n_rep)
    se = np.empty(n_rep)
    converged = np.empty(n_rep, np.bool_)
    for r in numba.prange(n_rep):
        if not np.any(include[r]):
            log_hr[r] = np.nan
            se[r] = np.nan
            converged[r] = False
            continue
        # the partial likelihood of a stratified model is the sum over the strata's rows
        n0, n1, d0, d1, _ = _strata_table(time[r], event[r], group[r], include[r], order[r],
                                          codes[r], n_strata)
        b, s, c = _cox_newton(n0, n1, d0, d1, max_iter, tol, True)
        log_hr[r] = b
        se[r] = s
        converged[r] = c
    return log_hr, se, converged


def _strata_codes(strata, shape) -> tuple[np.ndarray, int]:
    """Stratum codes 0..K-1 as int64 (R, n) and K; any integer labels are accepted."""
    s = _batch("strata", strata, shape)
    if s.dtype == np.bool_:
        s = s.astype(np.int64)
    if not np.issubdtype(s.dtype, np.integer):
        raise TypeError(f"strata: must hold integer labels, got dtype {s.dtype}")
    if s.size == 0:
        return np.zeros(shape, np.int64), 1
    lo, hi = int(s.min()), int(s.max())
    if lo >= 0 and hi < _DIRECT_CODES:
        return np.ascontiguousarray(s, dtype=np.int64), hi + 1
    labels, codes = np.unique(s, return_inverse=True)
    return np.ascontiguousarray(codes.reshape(shape), dtype=np.int64), len(labels)


def logrank_stratified(time, event, group, strata, include=None, *, rho: float = 0.0,
                       gamma: float = 0.0) -> LogRank:
    """Stratified log-rank test per replicate: z = sum_s (O1 - E1)_s / sqrt(sum_s V_s).

    Args:
        time, event, group, include: as for :func:`vctrial.trial.analysis.logrank`.
        strata: (R, n) integer stratum labels (any integers; only included patients count).
        rho, gamma: Fleming-Harrington weights, computed from the Kaplan-Meier estimate within
            each stratum (as R's ``survdiff``); (0, 0) is the plain stratified log-rank test.

    Returns:
        LogRank(z, observed, expected, variance), all summed over the strata. z is NaN without
        events; all fields are NaN for a replicate with nobody included.
    """
    if not (rho >= 0.0 and gamma >= 0.0):
        raise ValueError(f"rho, gamma: must be >= 0, got {rho}, {gamma}")
    t, e, g, inc = _survival_inputs(time, event, group, include)
    codes, k = _strata_codes(strata, t.shape)
    return LogRank(*_logrank_strat_kernel(t, e, g, inc, _order(t), codes, k, float(rho),
                                          float(gamma)))


def cox_hr_stratified(time, event, group, strata, include=None, *, max_iter: int = 50,
                      tol: float = 1e-9) -> CoxFit:
    """Stratified Cox model of ``group`` per replicate: one log HR, a baseline hazard per stratum.

    Efron's method for ties within each stratum; Newton-Raphson as in
    :func:`vctrial.trial.analysis.cox_hr` (same convergence rule and degenerate cases).

    Args:
        time, event, group, include: as for :func:`vctrial.trial.analysis.logrank`.
        strata: (R, n) integer stratum labels.
        max_iter, tol: as for :func:`vctrial.trial.analysis.cox_hr`.

    Returns:
        CoxFit(log_hr, se, converged), each of shape (R,).
    """
    check_newton(max_iter, tol)
    t, e, g, inc = _survival_inputs(time, event, group, include)
    codes, k = _strata_codes(strata, t.shape)
    return CoxFit(*_cox_strat_kernel(t, e, g, inc, _order(t), codes, k, int(max_iter),
                                     float(tol)))
