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
from vctrial.trial.stratified import _strata_codes, spd_solve

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
def _logistic_eval(alpha, beta, stratum, z, y):
    """Log-likelihood, score and observed information of a logistic model for one replicate.

    The linear predictor of patient i is alpha[stratum[i]] + z[i] . beta (one intercept per stratum).
    The information is returned in blocks: ``d`` its diagonal for the intercepts (a patient touches
    one intercept only, so that block is diagonal), ``cross`` (K, P) intercepts x beta, ``info``
    (P, P) of beta; the score as ``u`` (intercepts) and ``v`` (beta).
    """
    m, P = z.shape
    K = alpha.shape[0]
    ll = 0.0
    u = np.zeros(K)
    d = np.zeros(K)
    v = np.zeros(P)
    cross = np.zeros((K, P))
    info = np.zeros((P, P))
    # ll = sum(y eta - log(1 + exp(eta))); log(1 + exp(eta)) = max(eta, 0) + log(1 + e) with
    # e = exp(-|eta|) <= 1, and the log(1 + e) are summed as the log of their product, one log per
    # 512 patients (the product stays below 2**512; a log per patient was half the time here)
    prod = 1.0
    for i in range(m):
        k = stratum[i]
        eta = alpha[k]
        for j in range(P):
            eta += z[i, j] * beta[j]
        # the fitted probability without overflow
        if eta > 0.0:
            e = np.exp(-eta)
            p = 1.0 / (1.0 + e)
            ll += (y[i] - 1.0) * eta
        else:
            e = np.exp(eta)
            p = e / (1.0 + e)
            ll += y[i] * eta
        prod *= 1.0 + e
        if (i & 511) == 511:
            ll -= np.log(prod)
            prod = 1.0
        w = p * (1.0 - p)
        res = y[i] - p
        u[k] += res
        d[k] += w
        for j in range(P):
            zj = z[i, j]
            v[j] += res * zj
            wz = w * zj
            cross[k, j] += wz
            for l in range(j + 1):
                info[j, l] += wz * z[i, l]
    ll -= np.log(prod)
    for j in range(P):
        for l in range(j):
            info[l, j] = info[j, l]
    return ll, u, v, d, cross, info


@numba.njit(cache=True)
def _block_solve(u, v, d, cross, info):
    """Newton step of :func:`_logistic_eval`'s blocks: solve [[diag(d), cross], [cross', info]] x = (u, v)
    by the Schur complement of the diagonal block.

    Returns (ok, step of alpha, step of beta, variance of beta[0]); ok False when the information is
    not positive definite (or not finite).
    """
    K, P = cross.shape
    schur = info.copy()
    rhs = v.copy()
    for k in range(K):
        if not d[k] > 1e-300 or not np.isfinite(d[k]):
            return False, u, v, np.nan
        for j in range(P):
            c = cross[k, j] / d[k]
            rhs[j] -= c * u[k]
            for l in range(P):
                schur[j, l] -= c * cross[k, l]
    ok, b, var0 = spd_solve(schur, rhs, 0)
    if not ok:
        return False, u, v, np.nan
    a = np.empty(K)
    for k in range(K):
        s = u[k]
        for j in range(P):
            s -= cross[k, j] * b[j]
        a[k] = s / d[k]
    return True, a, b, var0


@numba.njit(cache=True)
def _largest_step(step_a, step_b, share):
    """Largest absolute step of intercept, indicators and beta given the steps of the strata's
    intercepts ``step_a`` (see :func:`_logistic_one`)."""
    big = np.max(np.abs(step_b))
    mean = 0.0
    for k in range(step_a.shape[0]):
        mean += share[k] * step_a[k]
        big = max(big, abs(step_a[k] - step_a[0]))
    return max(big, abs(mean))


@numba.njit(cache=True)
def _logistic_one(y, group, cov, include, codes, n_codes, max_iter, tol):
    """(log_or, se, converged, finite) of one replicate, the design built here from the patients.

    Patients of strata whose outcomes are all equal are left out (see :func:`logistic`); the
    covariates are centred over the patients left in, those constant among them are left out of
    the fit. ``finite`` is False when a covariate of an included patient is not finite.
    """
    nan = np.nan
    n, q = cov.shape
    size = np.zeros(n_codes, np.int64)
    ones = np.zeros(n_codes, np.int64)
    for i in range(n):
        if include[i]:
            size[codes[i]] += 1
            ones[codes[i]] += y[i]
            for c in range(q):
                if not np.isfinite(cov[i, c]):
                    return nan, nan, False, False
    index = np.full(n_codes, -1, np.int64)  # stratum code -> intercept, -1 for a stratum left out
    K = 0
    for c in range(n_codes):
        if ones[c] > 0 and ones[c] < size[c]:
            index[c] = K
            K += 1
    m = 0
    g1 = 0.0
    total = np.zeros(q)
    lo = np.full(q, np.inf)
    hi = np.full(q, -np.inf)
    for i in range(n):
        if include[i] and index[codes[i]] >= 0:
            m += 1
            g1 += group[i]
            for c in range(q):
                x = cov[i, c]
                total[c] += x
                lo[c] = min(lo[c], x)
                hi[c] = max(hi[c], x)
    if m == 0 or g1 == 0.0 or g1 == m:  # nobody left (every stratum's outcomes equal), or one arm
        return nan, nan, False, True
    # design: group, then the covariates that vary, centred (numerics only)
    P = 1
    for c in range(q):
        if hi[c] > lo[c]:
            P += 1
    z = np.empty((m, P))
    yy = np.empty(m)
    stratum = np.empty(m, np.int64)
    k = 0
    for i in range(n):
        if include[i] and index[codes[i]] >= 0:
            z[k, 0] = group[i]
            j = 1
            for c in range(q):
                if hi[c] > lo[c]:
                    z[k, j] = cov[i, c] - total[c] / m
                    j += 1
            yy[k] = y[i]
            stratum[k] = index[codes[i]]
            k += 1
    # the model as documented has an intercept and centred indicators of the strata but the first:
    # intercept = sum_k share_k alpha_k, indicator k = alpha_k - alpha_0. Its start (the overall
    # log odds, indicators 0) and its largest Newton step are used, so the iterations are those of
    # the fit with indicator columns (Newton steps do not depend on the parametrization).
    share = np.empty(K)
    y1 = 0
    for c in range(n_codes):
        if index[c] >= 0:
            share[index[c]] = size[c] / m
            y1 += ones[c]
    alpha = np.full(K, np.log(y1 / (m - y1)))
    beta = np.zeros(P)
    ll, u, v, d, cross, info = _logistic_eval(alpha, beta, stratum, z, yy)
    converged = False
    var0 = nan
    for _ in range(max_iter):
        ok, step_a, step_b, var0 = _block_solve(u, v, d, cross, info)
        if not ok:
            break
        big = _largest_step(step_a, step_b, share)
        if big < tol:
            converged = True
            break
        if big > 5.0:
            step_a *= 5.0 / big
            step_b *= 5.0 / big
        slack = 1e-12 * (1.0 + abs(ll))
        new_a, new_b = alpha + step_a, beta + step_b
        new = _logistic_eval(new_a, new_b, stratum, z, yy)
        halvings = 0
        while not new[0] >= ll - slack and halvings < 40:
            step_a *= 0.5
            step_b *= 0.5
            new_a, new_b = alpha + step_a, beta + step_b
            new = _logistic_eval(new_a, new_b, stratum, z, yy)
            halvings += 1
        alpha, beta = new_a, new_b
        ll, u, v, d, cross, info = new
    if not converged:
        return nan, nan, False, True
    return beta[0], np.sqrt(var0), True, True


@numba.njit(cache=True, parallel=True)
def _logistic_kernel(y, group, cov, include, codes, n_codes, max_iter, tol):
    n_rep = y.shape[0]
    log_or = np.empty(n_rep)
    se = np.empty(n_rep)
    converged = np.empty(n_rep, np.bool_)
    finite = np.empty(n_rep, np.bool_)
    for r in numba.prange(n_rep):
        b, s, c, f = _logistic_one(y[r], group[r], cov[r], include[r], codes[r], n_codes, max_iter, tol)
        log_or[r] = b
        se[r] = s
        converged[r] = c
        finite[r] = f
    return log_or, se, converged, finite


def logistic(y, group, covariates=None, include=None, strata=None, *, max_iter: int = 50,
             tol: float = 1e-9) -> LogisticFit:
    """Logistic regression of ``y`` on intercept, ``group``, ``covariates`` and stratum indicators.

    Maximum likelihood by Newton-Raphson with step halving (as statsmodels' ``Logit``), converged
    when the largest Newton step is below ``tol``; covariates and indicators are centred inside (the
    group coefficient does not change). The kernel fits one intercept per stratum, the same model
    (and the same iterations) without building the indicator columns. A covariate that is constant
    among the included patients is left out of the fit, and so are the patients of a stratum whose
    outcomes are all equal (its intercept is infinite; they add nothing to the maximized likelihood).

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
    if covariates is None:
        cov = np.zeros(yy.shape + (0,))
    else:
        cov = np.ascontiguousarray(covariates, dtype=np.float64)
        if cov.ndim != 3 or cov.shape[:2] != yy.shape:
            raise ValueError(f"covariates: must have shape (R, n, q) = {yy.shape + ('q',)}, got {cov.shape}")
    if strata is None:
        codes, K = np.zeros(yy.shape, np.int64), 1
    else:
        codes, K = _strata_codes(strata, yy.shape)
    log_or, se, conv, finite = _logistic_kernel(yy, g, cov, inc, codes, K, int(max_iter), float(tol))
    if not finite.all():
        raise ValueError("covariates: must be finite for included patients")
    with np.errstate(invalid="ignore", divide="ignore"):
        z = log_or / se
    return LogisticFit(log_or, se, z, conv)
