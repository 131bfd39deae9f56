"""Binary-endpoint analyses over batches of replicates: 2x2 tables, chi-square, Cochran-Mantel-Haenszel,
Mantel-Haenszel risk difference / risk ratio / odds ratio, logistic regression.

Batches are as in :mod:`vctrial.trial.analysis`: (R, n) arrays for R replicates of n patients,
``y`` the outcome (bool or 0/1), ``group`` 0 = control / 1 = active, ``include`` the patients
entering the analysis, ``strata`` integer stratum labels. Tables are counted for all replicates at
once with numpy; logistic regression is fitted by Newton-Raphson, one replicate per thread of a
numba kernel (results do not depend on the number of threads).

Signs: every statistic is positive when the outcome is more frequent on the active arm.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from scipy import stats

from vctrial.trial.analysis import _include, _zero_one
from vctrial.trial.stratified import _drop_inactive, _strata_codes, centre_columns, spd_solve

__all__ = ["BinaryEffect", "LogisticFit", "chi_square", "cmh", "logistic", "risk_effect", "tables"]

MEASURES = ("risk_difference", "risk_ratio", "odds_ratio")


class BinaryEffect(NamedTuple):
    """An effect of a binary outcome per replicate (arrays of shape (R,)).

    Attributes:
        estimate: risk difference (p1 - p0), or the risk ratio or odds ratio, active vs control.
        se: standard error of the estimate, of its logarithm for the ratios.
        lower, upper: Wald confidence interval (on the log scale, transformed back, for ratios).
    """

    estimate: np.ndarray
    se: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


class LogisticFit(NamedTuple):
    """Logistic regression per replicate (arrays of shape (R,)).

    Attributes:
        log_or: coefficient of ``group`` (log odds ratio, active vs control, adjusted).
        se: its standard error (inverse observed information).
        z: log_or / se (Wald).
        converged: False when Newton-Raphson did not converge (e.g. separation) or an arm is empty;
            the other fields are then NaN.
    """

    log_or: np.ndarray
    se: np.ndarray
    z: np.ndarray
    converged: np.ndarray


def _inputs(y, group, include):
    yy = _zero_one("y", y, None, np.int8)
    g = _zero_one("group", group, yy.shape, np.int8)
    inc = _include(include, yy.shape)
    return yy, g, inc


def tables(y, group, include=None, strata=None) -> np.ndarray:
    """(R, K, 2, 2) counts per stratum: [r, k, arm, outcome] (arm 0 control, 1 active; outcome 0 / 1).

    Without ``strata`` K is 1. Stratum labels are any integers (as :mod:`vctrial.trial.stratified`).
    """
    yy, g, inc = _inputs(y, group, include)
    R, n = yy.shape
    if strata is None:
        codes, K = np.zeros((R, n), np.int64), 1
    else:
        codes, K = _strata_codes(strata, yy.shape)
    cell = ((np.arange(R)[:, None] * K + codes) * 2 + g) * 2 + yy
    counts = np.bincount(cell[inc], minlength=R * K * 4)
    return counts.reshape(R, K, 2, 2).astype(np.float64)


def chi_square(y, group, include=None) -> np.ndarray:
    """Pearson chi-square test of a 2x2 table (no continuity correction) as a signed z per replicate.

    z = (p1 - p0) / sqrt(p (1 - p) (1/n1 + 1/n0)), p the pooled proportion; z**2 is the chi-square
    statistic. NaN when an arm is empty or nobody (or everybody) has the outcome.
    """
    t = tables(y, group, include)[:, 0]
    n0, n1 = t[:, 0].sum(axis=1), t[:, 1].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p0, p1 = t[:, 0, 1] / n0, t[:, 1, 1] / n1
        p = (t[:, 0, 1] + t[:, 1, 1]) / (n0 + n1)
        z = (p1 - p0) / np.sqrt(p * (1.0 - p) * (1.0 / n1 + 1.0 / n0))
    return np.where(np.isfinite(z), z, np.nan)


def cmh(y, group, strata, include=None) -> np.ndarray:
    """Cochran-Mantel-Haenszel test over strata (no continuity correction) as a signed z per replicate.

    z = sum_k (a_k - E a_k) / sqrt(sum_k V_k), a_k the active arm's outcomes in stratum k, E and V
    their hypergeometric mean and variance given the stratum's margins; z**2 is the CMH chi-square.
    Strata with one patient, or one arm only, contribute nothing.
    """
    t = tables(y, group, include, strata)
    n0, n1 = t[:, :, 0].sum(axis=2), t[:, :, 1].sum(axis=2)
    m1 = t[:, :, 0, 1] + t[:, :, 1, 1]
    N = n0 + n1
    m0 = N - m1
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(N > 0, n1 * m1 / N, 0.0)
        var = np.where(N > 1, n1 * n0 * m1 * m0 / (N * N * (N - 1.0)), 0.0)
        z = (t[:, :, 1, 1] - expected).sum(axis=1) / np.sqrt(var.sum(axis=1))
    return np.where(np.isfinite(z), z, np.nan)


def risk_effect(y, group, measure: str, include=None, strata=None, *, level: float = 0.95) -> BinaryEffect:
    """Risk difference, risk ratio or odds ratio per replicate with a Wald confidence interval.

    Without ``strata``: the crude estimate with the usual variances (risk difference: p1(1-p1)/n1 +
    p0(1-p0)/n0; log risk ratio: 1/a - 1/n1 + 1/c - 1/n0; log odds ratio: 1/a + 1/b + 1/c + 1/d).
    With ``strata``: the Mantel-Haenszel estimate, with the Greenland-Robins (1985) variances for the
    risk difference and the log risk ratio and the Robins-Breslow-Greenland (1986) variance for the
    log odds ratio. NaN where the estimate does not exist (an empty arm, a zero cell for ratios).
    """
    if measure not in MEASURES:
        raise ValueError(f"measure: must be one of {', '.join(MEASURES)}, got {measure!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be in (0, 1), got {level}")
    t = tables(y, group, include, strata)
    a, b = t[:, :, 1, 1], t[:, :, 1, 0]  # active: events, non-events
    c, d = t[:, :, 0, 1], t[:, :, 0, 0]  # control
    n1, n0 = a + b, c + d
    N = n1 + n0
    q = stats.norm.ppf(0.5 + 0.5 * level)
    with np.errstate(invalid="ignore", divide="ignore"):
        keep = (n1 > 0) & (n0 > 0)  # strata with both arms (MH weights of the others are 0 anyway)
        Ns = np.where(keep, N, np.inf)
        if measure == "risk_difference":
            w = n1 * n0 / Ns
            p1, p0 = np.where(keep, a / np.maximum(n1, 1), 0.0), np.where(keep, c / np.maximum(n0, 1), 0.0)
            W = w.sum(axis=1)
            est = (w * (p1 - p0)).sum(axis=1) / W
            var = (w * w * (p1 * (1 - p1) / np.maximum(n1, 1) + p0 * (1 - p0) / np.maximum(n0, 1))).sum(axis=1) / (W * W)
            se = np.sqrt(var)
            lo, hi = est - q * se, est + q * se
        elif measure == "risk_ratio":
            r = (a * n0 / Ns).sum(axis=1)
            s = (c * n1 / Ns).sum(axis=1)
            est = r / s
            v = ((n1 * n0 * (a + c) - a * c * N) / (Ns * Ns)).sum(axis=1)
            se = np.sqrt(v / (r * s))
            lo, hi = est * np.exp(-q * se), est * np.exp(q * se)
        else:
            r_k, s_k = a * d / Ns, b * c / Ns
            p_k, q_k = (a + d) / Ns, (b + c) / Ns
            R_, S_ = r_k.sum(axis=1), s_k.sum(axis=1)
            est = R_ / S_
            var = ((p_k * r_k).sum(axis=1) / (2 * R_ * R_) + ((p_k * s_k + q_k * r_k).sum(axis=1)) / (2 * R_ * S_)
                   + (q_k * s_k).sum(axis=1) / (2 * S_ * S_))
            se = np.sqrt(var)
            lo, hi = est * np.exp(-q * se), est * np.exp(q * se)
    ok = np.isfinite(est) & np.isfinite(se) & (se > 0) & ((est > 0) | (measure == "risk_difference"))
    nan = np.full(est.shape, np.nan)
    return BinaryEffect(np.where(ok, est, nan), np.where(ok, se, nan), np.where(ok, lo, nan), np.where(ok, hi, nan))


@numba.njit(cache=True)
def _logistic_eval(beta, x, y, include):
    """Log-likelihood, score and observed information of a logistic model for one replicate."""
    n, P = x.shape
    ll = 0.0
    score = np.zeros(P)
    info = np.zeros((P, P))
    for i in range(n):
        if not include[i]:
            continue
        eta = 0.0
        for j in range(P):
            eta += x[i, j] * beta[j]
        # log(1 + exp(eta)) and the fitted probability without overflow
        if eta > 0.0:
            e = np.exp(-eta)
            log1p = eta + np.log1p(e)
            p = 1.0 / (1.0 + e)
        else:
            e = np.exp(eta)
            log1p = np.log1p(e)
            p = e / (1.0 + e)
        ll += y[i] * eta - log1p
        w = p * (1.0 - p)
        res = y[i] - p
        for j in range(P):
            score[j] += res * x[i, j]
            for k in range(j + 1):
                info[j, k] += w * x[i, j] * x[i, k]
    for j in range(P):
        for k in range(j):
            info[k, j] = info[j, k]
    return ll, score, info


@numba.njit(cache=True)
def _logistic_one(x, y, include, max_iter, tol):
    """(log_or, se, converged) of one replicate; column 0 of x is the intercept, 1 the group."""
    nan = np.nan
    n, P = x.shape
    y1 = 0.0
    m = 0.0
    g1 = 0.0
    for i in range(n):
        if include[i]:
            m += 1.0
            y1 += y[i]
            g1 += x[i, 1]
    if m == 0.0 or y1 == 0.0 or y1 == m or g1 == 0.0 or g1 == m:
        return nan, nan, False
    # columns that are constant zero among the included (e.g. an empty stratum) are held at 0
    active = np.zeros(P, np.bool_)
    for i in range(n):
        if include[i]:
            for j in range(P):
                if x[i, j] != 0.0:
                    active[j] = True
    beta = np.zeros(P)
    beta[0] = np.log(y1 / (m - y1))
    ll, score, info = _logistic_eval(beta, x, y, include)
    converged = False
    for _ in range(max_iter):
        _drop_inactive(score, info, active)
        ok, step, _ = spd_solve(info, score)
        if not ok:
            break
        big = np.max(np.abs(step))
        if big < tol:
            converged = True
            break
        if big > 5.0:
            step *= 5.0 / big
        slack = 1e-12 * (1.0 + abs(ll))
        new = beta + step
        new_ll, new_score, new_info = _logistic_eval(new, x, y, include)
        halvings = 0
        while not new_ll >= ll - slack and halvings < 40:
            step *= 0.5
            new = beta + step
            new_ll, new_score, new_info = _logistic_eval(new, x, y, include)
            halvings += 1
        beta, ll, score, info = new, new_ll, new_score, new_info
    if not converged:
        return nan, nan, False
    _drop_inactive(score, info, active)  # (the score is not used again)
    ok, _, var11 = spd_solve(info, np.zeros(P), 1)
    if not ok:
        return nan, nan, False
    return beta[1], np.sqrt(var11), True


@numba.njit(cache=True, parallel=True)
def _logistic_kernel(x, y, include, max_iter, tol):
    n_rep = x.shape[0]
    log_or = np.empty(n_rep)
    se = np.empty(n_rep)
    converged = np.empty(n_rep, np.bool_)
    for r in numba.prange(n_rep):
        b, s, c = _logistic_one(x[r], y[r], include[r], max_iter, tol)
        log_or[r] = b
        se[r] = s
        converged[r] = c
    return log_or, se, converged


def design_matrix(group, covariates=None, strata=None, include=None) -> np.ndarray:
    """(R, n, P) columns intercept, group, the covariates (R, n, q), and an indicator of each stratum
    but the first present (among ``include``) in the replicate, whose column stays zero."""
    g = np.asarray(group, np.float64)
    cols = [np.ones_like(g), g]
    if covariates is not None:
        cov = np.asarray(covariates, np.float64)
        if cov.ndim != 3 or cov.shape[:2] != g.shape:
            raise ValueError(f"covariates: must have shape (R, n, q) = {g.shape + ('q',)}, got {cov.shape}")
        cols.extend(np.moveaxis(cov, 2, 0))
    if strata is not None:
        codes, K = _strata_codes(strata, g.shape)
        inc = np.ones(g.shape, bool) if include is None else include
        first = np.where(inc, codes, K).min(axis=1, keepdims=True)
        cols.extend(((codes == k) & (first != k)).astype(np.float64) for k in range(K))
    return np.ascontiguousarray(np.stack(cols, axis=2))


def _without_uniform_strata(y: np.ndarray, include: np.ndarray, strata) -> np.ndarray:
    """Leave out the patients of strata whose outcomes are all equal: their stratum's intercept runs off
    to -+infinity, and in that limit (the supremum of the likelihood) they contribute nothing."""
    R, n = y.shape
    codes, K = _strata_codes(strata, y.shape)
    cell = np.arange(R)[:, None] * K + codes
    size = np.bincount(cell[include], minlength=R * K)
    ones = np.bincount(cell[include], weights=y[include], minlength=R * K)
    uniform = (ones == 0) | (ones == size)
    return include & ~uniform[cell]


def logistic(y, group, covariates=None, include=None, strata=None, *, max_iter: int = 50,
             tol: float = 1e-9) -> LogisticFit:
    """Logistic regression of ``y`` on intercept, ``group``, ``covariates`` and stratum indicators.

    Maximum likelihood by Newton-Raphson with step halving (as statsmodels' ``Logit``), converged
    when the largest Newton step is below ``tol``; covariates are centred inside (the group
    coefficient does not change). A column that is constant among the included patients (a stratum
    with nobody in it) is left out of the fit, and so are the patients of a stratum whose outcomes
    are all equal (its intercept is infinite; they add nothing to the maximized likelihood).

    Args:
        y: (R, n) outcome, bool or 0/1.
        group: (R, n) 0 = control, 1 = active.
        covariates: (R, n, q) real covariates, or None.
        include: (R, n) bool, patients entering the analysis; all by default.
        strata: (R, n) integer stratum labels, entered as indicators, or None.
        max_iter, tol: Newton-Raphson limits.

    Returns:
        LogisticFit(log_or, se, z, converged).
    """
    if max_iter < 1 or not tol > 0.0:
        raise ValueError(f"max_iter, tol: must be >= 1 and > 0, got {max_iter}, {tol}")
    yy, g, inc = _inputs(y, group, include)
    if strata is not None:
        inc = _without_uniform_strata(yy, inc, strata)
    x = design_matrix(g, covariates, strata, inc)
    if not np.isfinite(x[inc]).all():
        raise ValueError("covariates: must be finite for included patients")
    x = centre_columns(x, inc, skip=2)  # numerics only; constant columns are left out of the fit
    log_or, se, conv = _logistic_kernel(x, yy.astype(np.float64), inc, int(max_iter), float(tol))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = log_or / se
    return LogisticFit(log_or, se, z, conv)
