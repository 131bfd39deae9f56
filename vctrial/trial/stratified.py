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

__all__ = ["cox_adjusted", "cox_hr_stratified", "logrank_stratified"]

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


# --------------------------------------------------------------------------------------------
# Cox model with covariates (optionally stratified).
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def spd_solve(a, b, want=-1):
    """Solve a x = b for a symmetric positive definite ``a`` by Cholesky.

    Returns (ok, x, v): ok False when ``a`` is not positive definite (or not finite); v is the
    diagonal element ``want`` of the inverse of ``a`` (NaN when want < 0).
    """
    p = a.shape[0]
    low = np.zeros((p, p))
    x = np.zeros(p)
    for j in range(p):
        s = a[j, j]
        for k in range(j):
            s -= low[j, k] * low[j, k]
        if not s > 1e-300 or not np.isfinite(s):
            return False, x, np.nan
        low[j, j] = np.sqrt(s)
        for i in range(j + 1, p):
            s = a[i, j]
            for k in range(j):
                s -= low[i, k] * low[j, k]
            low[i, j] = s / low[j, j]
    # forward then back substitution
    y = np.zeros(p)
    for i in range(p):
        s = b[i]
        for k in range(i):
            s -= low[i, k] * y[k]
        y[i] = s / low[i, i]
    for i in range(p - 1, -1, -1):
        s = y[i]
        for k in range(i + 1, p):
            s -= low[k, i] * x[k]
        x[i] = s / low[i, i]
    v = np.nan
    if want >= 0:
        e = np.zeros(p)
        e[want] = 1.0
        # inverse diagonal: solve with the unit vector, take component ``want``
        for i in range(p):
            s = e[i]
            for k in range(i):
                s -= low[i, k] * y[k]
            y[i] = s / low[i, i]
        z = np.zeros(p)
        for i in range(p - 1, -1, -1):
            s = y[i]
            for k in range(i + 1, p):
                s -= low[k, i] * z[k]
            z[i] = s / low[i, i]
        v = z[want]
    return True, x, v


@numba.njit(cache=True)
def _coxreg_eval(beta, x, first, new_stratum, deaths, event_sum):
    """Breslow log partial likelihood, score and information of a Cox model for one replicate.

    The rows of ``x`` (m, P) are the included patients by stratum, then by decreasing time, so each
    stratum's risk set grows as the walk goes back in time. They come in blocks of equal stratum and
    time: block b is rows first[b]:first[b + 1], ``new_stratum[b]`` tells whether it opens its
    stratum, ``deaths[b]`` counts its events. ``event_sum`` is the sum of the events' rows.
    """
    P = x.shape[1]
    ll = 0.0
    score = event_sum.copy()
    for c in range(P):
        ll += event_sum[c] * beta[c]
    info = np.zeros((P, P))
    # risk-set sums scaled by exp(-top), top the largest linear predictor in the risk set so far:
    # no overflow, and the largest term is 1, so 1 <= s0 <= m. The log(s0) of the events are summed as
    # the log of their product, taken whenever it passes 1e280 (a log per event costs more).
    top = -np.inf
    s0 = 0.0
    s1 = np.zeros(P)
    s2 = np.zeros((P, P))
    mean = np.empty(P)
    prod = 1.0
    for b in range(first.shape[0] - 1):
        if new_stratum[b]:
            top = -np.inf
            s0 = 0.0
            s1[:] = 0.0
            s2[:, :] = 0.0
        for j in range(first[b], first[b + 1]):
            eta = 0.0
            for c in range(P):
                eta += x[j, c] * beta[c]
            if eta > top:
                scale = np.exp(top - eta)
                s0 *= scale
                for c in range(P):
                    s1[c] *= scale
                    for c2 in range(c + 1):
                        s2[c, c2] *= scale
                top = eta
            w = np.exp(eta - top)
            s0 += w
            for c in range(P):
                wx = w * x[j, c]
                s1[c] += wx
                for c2 in range(c + 1):
                    s2[c, c2] += wx * x[j, c2]
        d = deaths[b]
        if d > 0:
            ll -= d * top
            for _ in range(d):
                prod *= s0
                if prod > 1e280:
                    ll -= np.log(prod)
                    prod = 1.0
            inv = 1.0 / s0
            for c in range(P):
                mean[c] = s1[c] * inv
                score[c] -= d * mean[c]
                for c2 in range(c + 1):
                    info[c, c2] += d * (s2[c, c2] * inv - mean[c] * mean[c2])
    ll -= np.log(prod)
    for c in range(P):
        for c2 in range(c):
            info[c2, c] = info[c, c2]
    return ll, score, info


@numba.njit(cache=True)
def _coxreg_one(time, event, group, cov, include, order, codes, n_codes, max_iter, tol):
    """(beta[0], se[0], converged, finite) of one replicate by Newton-Raphson with step halving from 0.

    The design (group, then the covariates, centred over the included patients; those constant among
    them left out) is built here, in the order :func:`_coxreg_eval` walks: ``order`` sorts the
    patients by time, a counting sort then groups them by stratum keeping that order. ``finite``
    is False when a covariate of an included patient is not finite.
    """
    nan = np.nan
    n, q = cov.shape
    start = np.zeros(n_codes + 1, np.int64)
    total = np.zeros(q + 1)
    lo = np.full(q + 1, np.inf)
    hi = np.full(q + 1, -np.inf)
    for i in range(n):
        if include[i]:
            start[codes[i] + 1] += 1
            for c in range(q + 1):
                v = group[i] if c == 0 else cov[i, c - 1]
                if not np.isfinite(v):
                    return nan, nan, False, False
                total[c] += v
                lo[c] = min(lo[c], v)
                hi[c] = max(hi[c], v)
    m = 0
    for s in range(n_codes):
        m += start[s + 1]
        start[s + 1] = m
    if m == 0 or not hi[0] > lo[0]:  # nobody, or one arm only
        return nan, nan, False, True
    keep = np.empty(q + 1, np.int64)  # columns that vary among the included
    P = 0
    for c in range(q + 1):
        if hi[c] > lo[c]:
            keep[P] = c
            P += 1
    # by stratum, then by decreasing time (walk the increasing order backwards)
    rows = np.empty(m, np.int64)
    fill = start[:n_codes].copy()
    for j in range(n - 1, -1, -1):
        i = order[j]
        if include[i]:
            rows[fill[codes[i]]] = i
            fill[codes[i]] += 1
    x = np.empty((m, P))
    event_sum = np.zeros(P)
    first = np.empty(m + 1, np.int64)
    new_stratum = np.empty(m, np.bool_)
    deaths = np.zeros(m, np.int64)
    n_blocks = 0
    for j in range(m):
        i = rows[j]
        for k in range(P):
            c = keep[k]
            x[j, k] = (group[i] if c == 0 else cov[i, c - 1]) - total[c] / m
        if j == 0 or codes[i] != codes[rows[j - 1]] or time[i] != time[rows[j - 1]]:
            first[n_blocks] = j
            new_stratum[n_blocks] = j == 0 or codes[i] != codes[rows[j - 1]]
            n_blocks += 1
        if event[i]:
            deaths[n_blocks - 1] += 1
            for k in range(P):
                event_sum[k] += x[j, k]
    first[n_blocks] = m
    first = first[:n_blocks + 1]
    new_stratum = new_stratum[:n_blocks]
    deaths = deaths[:n_blocks]
    beta = np.zeros(P)
    ll, score, info = _coxreg_eval(beta, x, first, new_stratum, deaths, event_sum)
    converged = False
    var0 = nan
    for _ in range(max_iter):
        ok, step, var0 = spd_solve(info, score, 0)
        if not ok:
            break
        big = np.max(np.abs(step))
        if big < tol:
            converged = True
            break
        if big > 5.0:  # keeps exp() finite on the way; does not change the converged value
            step *= 5.0 / big
        slack = 1e-12 * (1.0 + abs(ll))
        new = beta + step
        new_ll, new_score, new_info = _coxreg_eval(new, x, first, new_stratum, deaths, event_sum)
        halvings = 0
        while not new_ll >= ll - slack and halvings < 40:
            step *= 0.5
            new = beta + step
            new_ll, new_score, new_info = _coxreg_eval(new, x, first, new_stratum, deaths, event_sum)
            halvings += 1
        beta, ll, score, info = new, new_ll, new_score, new_info
    if not converged:
        return nan, nan, False, True
    return beta[0], np.sqrt(var0), True, True


@numba.njit(cache=True, parallel=True)
def _coxreg_kernel(time, event, group, cov, include, order, codes, n_codes, max_iter, tol):
    n_rep = time.shape[0]
    log_hr = np.empty(n_rep)
    se = np.empty(n_rep)
    converged = np.empty(n_rep, np.bool_)
    finite = np.empty(n_rep, np.bool_)
    for r in numba.prange(n_rep):
        b, s, c, f = _coxreg_one(time[r], event[r], group[r], cov[r], include[r], order[r], codes[r],
                                 n_codes, max_iter, tol)
        log_hr[r] = b
        se[r] = s
        converged[r] = c
        finite[r] = f
    return log_hr, se, converged, finite


def cox_adjusted(time, event, group, covariates=None, include=None, strata=None, *, max_iter: int = 50,
                 tol: float = 1e-9) -> CoxFit:
    """Cox model of ``group`` adjusted for ``covariates``, optionally stratified, per replicate.

    Breslow's method for tied event times (the simulated event times are continuous, so events
    tie only by construction); Newton-Raphson with step halving from 0, converged when the largest
    Newton step is below ``tol``. Covariates are centred inside (the coefficients do not change);
    one constant among the included patients is left out of the fit.
    A non-converged fit (e.g. every event in one arm) gives NaN and ``converged=False``.

    Args:
        time, event, group, include: as for :func:`vctrial.trial.analysis.logrank`.
        covariates: (R, n, q) real covariates, or None (then the model of group alone).
        strata: (R, n) integer stratum labels (a baseline hazard per stratum), or None.
        max_iter, tol: Newton-Raphson limits.

    Returns:
        CoxFit(log_hr, se, converged) of the group coefficient, each of shape (R,).
    """
    check_newton(max_iter, tol)
    t, e, g, inc = _survival_inputs(time, event, group, include)
    if covariates is None:
        cov = np.zeros(t.shape + (0,))
    else:
        cov = np.ascontiguousarray(covariates, dtype=np.float64)
        if cov.ndim != 3 or cov.shape[:2] != t.shape:
            raise ValueError(f"covariates: must have shape (R, n, q) with (R, n) = {t.shape}, got {cov.shape}")
    if strata is None:
        codes, k = np.zeros(t.shape, np.int64), 1
    else:
        codes, k = _strata_codes(strata, t.shape)
    log_hr, se, conv, finite = _coxreg_kernel(t, e, g, cov, inc, _order(t), codes, k, int(max_iter),
                                              float(tol))
    if not finite.all():
        raise ValueError("covariates: must be finite for included patients")
    return CoxFit(log_hr, se, conv)
