"""Count and recurrent-event analyses over batches of replicates: negative binomial, LWYY.

Recurrent events (e.g. heart-failure hospitalizations) are compared between arms by a rate
ratio, active vs control, in two standard ways:

* :func:`negbin`: negative binomial (NB2) regression of each patient's event count with
  log follow-up as offset, fitted by maximum likelihood of the coefficients and the dispersion
  (the usual primary analysis of exacerbation or hospitalization rates);
* :func:`lwyy`: the Lin-Wei-Yang-Ying (2000) proportional-rates model for the event times, with
  a robust sandwich variance, so that it stays valid whatever the dependence between a
  patient's events (the usual analysis of total events in outcome trials).

Both take baseline ``covariates`` (R, n, q) and randomization ``strata`` (R, n): the negative
binomial regression as stratum indicators (fixed effects), LWYY as a baseline rate function per
stratum (a stratified model, as a stratified Cox model). The ``group`` coefficient is then the log
rate ratio conditional on the covariates and strata. Without either, the two-parameter kernels
below are used (closed-form Poisson start, 3x3 solves); with them, general ones on a design matrix.

Batches are as in :mod:`vctrial.trial.analysis`: (R, n) arrays for R replicates of n patients,
``group`` 0 = control / 1 = active, ``include`` the patients entering the analysis. Event times
come as an (R, n, J) array, each patient's times padded with NaN (or +inf) up to J. Each
replicate is fitted by one thread in a numba kernel, so results do not depend on the number of
threads.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
from scipy import stats

from vctrial.trial.analysis import _batch, _cox_newton, _include, _real, _zero_one
from vctrial.trial.stratified import _strata_codes, spd_solve

__all__ = ["LwyyFit", "NegBinFit", "event_counts", "lwyy", "negbin"]


class NegBinFit(NamedTuple):
    """Negative binomial (NB2) regression per replicate (arrays of shape (R,)).

    Attributes:
        log_rr: log rate ratio, active vs control (the ``group`` coefficient; conditional on the
            covariates and strata, if any).
        se: its standard error, from the observed information of (coefficients, dispersion).
        z: log_rr / se (Wald).
        rate_ratio: exp(log_rr).
        lower, upper: Wald confidence interval of the rate ratio at ``level``.
        log_rate0: the intercept, log of the control event rate per unit of follow-up (with
            covariates or strata: at the included patients' mean covariates and stratum indicators,
            the design being centred).
        alpha: dispersion, Var(Y) = mu + alpha mu^2; 0 when the data are not over-dispersed
            (the maximum is then the Poisson fit, on the boundary).
        converged: False when Newton-Raphson did not converge, or the estimate does not exist
            (no events in an arm, no patients in an arm); estimates are then NaN.
    """

    log_rr: np.ndarray
    se: np.ndarray
    z: np.ndarray
    rate_ratio: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    log_rate0: np.ndarray
    alpha: np.ndarray
    converged: np.ndarray


class LwyyFit(NamedTuple):
    """LWYY proportional-rates model per replicate (arrays of shape (R,)).

    Attributes:
        log_rr: log rate ratio, active vs control (conditional on the covariates, if any).
        se: robust (sandwich) standard error, the one to use.
        z: log_rr / se.
        rate_ratio: exp(log_rr).
        lower, upper: Wald confidence interval of the rate ratio at ``level``, robust SE.
        se_model: model-based SE (Andersen-Gill, valid only for Poisson-process events).
        converged: as for :class:`vctrial.trial.analysis.CoxFit`.
    """

    log_rr: np.ndarray
    se: np.ndarray
    z: np.ndarray
    rate_ratio: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    se_model: np.ndarray
    converged: np.ndarray


# --------------------------------------------------------------------------------------------
# Negative binomial.
# --------------------------------------------------------------------------------------------

# Counts below this use exact sums over k < y; larger counts use digamma/trigamma/lgamma.
_EXACT_SUMS_BELOW = 64


@numba.njit(cache=True)
def _digamma(x):
    """psi(x) for x > 0: recurrence up to x >= 10, then the asymptotic series (error < 1e-15)."""
    r = 0.0
    while x < 10.0:
        r -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    t = f * (-1.0 / 12 + f * (1.0 / 120 + f * (-1.0 / 252 + f * (1.0 / 240 + f * (
        -1.0 / 132 + f * (691.0 / 32760 + f * (-1.0 / 12)))))))
    return r + np.log(x) - 0.5 / x + t


@numba.njit(cache=True)
def _trigamma(x):
    """psi'(x) for x > 0, as :func:`_digamma`."""
    r = 0.0
    while x < 10.0:
        r += 1.0 / (x * x)
        x += 1.0
    f = 1.0 / (x * x)
    t = 1.0 / 6 + f * (-1.0 / 30 + f * (1.0 / 42 + f * (-1.0 / 30 + f * (
        5.0 / 66 + f * (-691.0 / 2730 + f * (7.0 / 6))))))
    return r + 1.0 / x + 0.5 * f + f * t / x


@numba.njit(cache=True)
def _gamma_sums(y, theta):
    """(sum log(k + theta), sum 1/(k + theta), sum 1/(k + theta)^2) over k = 0..y-1.

    That is lgamma(y + theta) - lgamma(theta) and the differences of digamma and trigamma,
    summed exactly for small counts (no cancellation when theta is large).
    """
    if y < _EXACT_SUMS_BELOW:
        a = 0.0
        b = 0.0
        c = 0.0
        for k in range(y):
            u = k + theta
            a += np.log(u)
            b += 1.0 / u
            c += 1.0 / (u * u)
        return a, b, c
    return (math.lgamma(y + theta) - math.lgamma(theta), _digamma(y + theta) - _digamma(theta),
            _trigamma(theta) - _trigamma(y + theta))


@numba.njit(cache=True, inline="always")
def _nb_terms(yi, mu, theta, alpha):
    """One patient's NB2 log-likelihood term and its derivatives in eta = log mu and phi = log alpha:
    (l, dl/deta, d2l/deta2, dl/dphi, d2l/dphi2, d2l/deta dphi)."""
    inv = 1.0 / (theta + mu)
    r = mu * inv
    q = theta * inv
    l1p = np.log1p(mu * alpha)
    # derivatives in eta and theta, then theta -> phi (dtheta/dphi = -theta)
    if yi == 0:  # most patients: no log-gamma sums, no log(mu)
        l_i = -theta * l1p
        l_e = -mu * q
        l_ee = l_e * q
        l_t = r - l1p
        l_tt = r * r * alpha
        l_et = -r * r
    else:
        sa, sb, sc = _gamma_sums(yi, theta)
        l_i = sa - theta * l1p - yi * np.log1p(theta / mu)
        l_e = (yi - mu) * q
        l_ee = -(theta + yi) * q * r
        l_t = sb - l1p + (mu - yi) * inv
        l_tt = r * r * alpha + yi * inv * inv - sc
        l_et = r * (yi - mu) * inv
    return l_i, l_e, l_ee, -theta * l_t, theta * theta * l_tt + theta * l_t, -theta * l_et


@numba.njit(cache=True)
def _nb_eval(b0, b1, phi, y, expo, group, include):
    """NB2 log-likelihood (without the constant -lgamma(y + 1)), gradient and Hessian.

    Parameters (b0, b1, phi = log alpha), mean mu = exposure exp(b0 + b1 group). Returns
    (loglik, g0, g1, g2, h00, h01, h02, h11, h12, h22).
    """
    alpha = np.exp(phi)
    theta = 1.0 / alpha
    rate0 = np.exp(b0)
    rate1 = np.exp(b0 + b1)
    ll = 0.0
    g0 = g1 = g2 = 0.0
    h00 = h01 = h02 = h11 = h12 = h22 = 0.0
    for i in range(y.shape[0]):
        if not include[i] or expo[i] <= 0.0:
            continue
        mu = expo[i] * (rate1 if group[i] == 1 else rate0)
        l_i, l_e, l_ee, l_p, l_pp, l_ep = _nb_terms(y[i], mu, theta, alpha)
        ll += l_i
        g0 += l_e
        g2 += l_p
        h00 += l_ee
        h02 += l_ep
        h22 += l_pp
        if group[i] == 1:
            g1 += l_e
            h01 += l_ee
            h12 += l_ep
    h11 = h01
    return ll, g0, g1, g2, h00, h01, h02, h11, h12, h22


@numba.njit(cache=True)
def _solve3(a00, a01, a02, a11, a12, a22, g0, g1, g2):
    """Solve the symmetric 3x3 system A x = g if A is positive definite.

    Returns (ok, x0, x1, x2, inverse[1, 1]).
    """
    m1 = a00
    m2 = a00 * a11 - a01 * a01
    c00 = a11 * a22 - a12 * a12
    c01 = a02 * a12 - a01 * a22
    c02 = a01 * a12 - a02 * a11
    c11 = a00 * a22 - a02 * a02
    c12 = a01 * a02 - a00 * a12
    c22 = m2
    det = a00 * c00 + a01 * c01 + a02 * c02
    if not (m1 > 0.0 and m2 > 0.0 and det > 0.0):
        return False, 0.0, 0.0, 0.0, 0.0
    x0 = (c00 * g0 + c01 * g1 + c02 * g2) / det
    x1 = (c01 * g0 + c11 * g1 + c12 * g2) / det
    x2 = (c02 * g0 + c12 * g1 + c22 * g2) / det
    return True, x0, x1, x2, c11 / det


@numba.njit(cache=True)
def _negbin_one(y, expo, group, include, max_iter, tol):
    """NB2 fit of one replicate: (log_rr, se, log_rate0, alpha, converged).

    Starts from the Poisson fit (closed form with a 0/1 covariate). If the score for the
    dispersion at alpha = 0, sum((y - mu)^2 - y) / 2, is not positive the maximum is the Poisson
    fit itself (alpha = 0); otherwise Newton-Raphson in (b0, b1, log alpha) from the moment
    estimate of alpha, with step halving and, where the Hessian is not negative definite, a
    Levenberg-Marquardt shift of its diagonal.
    """
    nan = np.nan
    y0 = y1 = 0.0
    t0 = t1 = 0.0
    for i in range(y.shape[0]):
        if include[i] and expo[i] > 0.0:
            if group[i] == 1:
                y1 += y[i]
                t1 += expo[i]
            else:
                y0 += y[i]
                t0 += expo[i]
    if not (y0 > 0.0 and y1 > 0.0):  # no patients or no events in an arm: no finite estimate
        return nan, nan, nan, nan, False
    b0 = np.log(y0 / t0)
    b1 = np.log(y1 / t1) - b0
    score = 0.0
    mu2 = 0.0
    for i in range(y.shape[0]):
        if include[i] and expo[i] > 0.0:
            mu = expo[i] * np.exp(b0 + (b1 if group[i] == 1 else 0.0))
            score += (y[i] - mu) ** 2 - y[i]
            mu2 += mu * mu
    poisson_se = np.sqrt(1.0 / y0 + 1.0 / y1)
    if not score > 0.0:  # not over-dispersed: the maximum is on the boundary alpha = 0
        return b1, poisson_se, b0, 0.0, True
    b0_poisson = b0
    b1_poisson = b1
    phi = np.log(score / mu2)
    res = _nb_eval(b0, b1, phi, y, expo, group, include)
    converged = False
    for _ in range(max_iter):
        ll = res[0]
        g0, g1, g2 = res[1], res[2], res[3]
        a00, a01, a02, a11, a12, a22 = -res[4], -res[5], -res[6], -res[7], -res[8], -res[9]
        ok, s0, s1, s2, _ = _solve3(a00, a01, a02, a11, a12, a22, g0, g1, g2)
        newton_ok = ok
        shift = 1e-8 * (abs(a00) + abs(a11) + abs(a22))
        tries = 0
        while not ok and tries < 40:
            ok, s0, s1, s2, _ = _solve3(a00 + shift, a01, a02, a11 + shift, a12, a22 + shift,
                                        g0, g1, g2)
            shift *= 10.0
            tries += 1
        if not ok:  # non-finite values
            break
        big = max(abs(s0), abs(s1), abs(s2))
        if newton_ok and big < tol:  # take the last (tiny) step and stop
            b0 += s0
            b1 += s1
            phi += s2
            res = _nb_eval(b0, b1, phi, y, expo, group, include)
            converged = True
            break
        if big > 5.0:  # keeps exp() finite on the way; does not change the converged value
            s0 *= 5.0 / big
            s1 *= 5.0 / big
            s2 *= 5.0 / big
        slack = 1e-12 * (1.0 + abs(ll))
        new = _nb_eval(b0 + s0, b1 + s1, phi + s2, y, expo, group, include)
        halvings = 0
        while not new[0] >= ll - slack and halvings < 40:
            s0 *= 0.5
            s1 *= 0.5
            s2 *= 0.5
            new = _nb_eval(b0 + s0, b1 + s1, phi + s2, y, expo, group, include)
            halvings += 1
        b0 += s0
        b1 += s1
        phi += s2
        res = new
        if phi < -30.0:  # alpha -> 0: the maximum is the Poisson fit
            return b1_poisson, poisson_se, b0_poisson, 0.0, True
    if not converged:
        return nan, nan, nan, nan, False
    # observed information at the estimate
    a00, a01, a02, a11, a12, a22 = -res[4], -res[5], -res[6], -res[7], -res[8], -res[9]
    ok, _, _, _, var11 = _solve3(a00, a01, a02, a11, a12, a22, 0.0, 0.0, 0.0)
    se = np.sqrt(var11) if ok else nan
    return b1, se, b0, np.exp(phi), ok


@numba.njit(cache=True, parallel=True)
def _negbin_kernel(y, expo, group, include, max_iter, tol):
    n_rep = y.shape[0]
    log_rr = np.empty(n_rep)
    se = np.empty(n_rep)
    log_rate0 = np.empty(n_rep)
    alpha = np.empty(n_rep)
    converged = np.empty(n_rep, np.bool_)
    for r in numba.prange(n_rep):
        b1, s, b0, a, c = _negbin_one(y[r], expo[r], group[r], include[r], max_iter, tol)
        log_rr[r] = b1
        se[r] = s
        log_rate0[r] = b0
        alpha[r] = a
        converged[r] = c
    return log_rr, se, log_rate0, alpha, converged


# Negative binomial with covariates and strata: the same likelihood, a design matrix x (n, P) of
# intercept, group, covariates and stratum indicators, parameters (beta, phi = log alpha).


@numba.njit(cache=True)
def _drop_inactive(score, info, active):
    """Hold the parameters of inactive (all-zero) columns at 0: zero score, unit information."""
    P = score.shape[0]
    for j in range(P):
        if not active[j]:
            score[j] = 0.0
            for k in range(P):
                info[j, k] = 0.0
                info[k, j] = 0.0
            info[j, j] = 1.0


@numba.njit(cache=True)
def _poisson_eval(beta, x, y, expo, include):
    """Poisson log-likelihood (up to a constant), score and information in beta, mean
    mu = exposure exp(x beta), for one replicate."""
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
        mu = expo[i] * np.exp(eta)
        ll += y[i] * eta - mu
        res = y[i] - mu
        for j in range(P):
            score[j] += res * x[i, j]
            for k in range(j + 1):
                info[j, k] += mu * x[i, j] * x[i, k]
    for j in range(P):
        for k in range(j):
            info[k, j] = info[j, k]
    return ll, score, info


@numba.njit(cache=True)
def _nbx_eval(par, x, y, expo, include):
    """NB2 log-likelihood (without -lgamma(y + 1)), score and information (minus the Hessian) in
    par = (beta, log alpha) for one replicate; the per-patient derivatives are those of
    :func:`_nb_eval`, chained through eta = x beta."""
    n, P = x.shape
    phi = par[P]
    alpha = np.exp(phi)
    theta = 1.0 / alpha
    ll = 0.0
    score = np.zeros(P + 1)
    info = np.zeros((P + 1, P + 1))
    for i in range(n):
        if not include[i]:
            continue
        eta = 0.0
        for j in range(P):
            eta += x[i, j] * par[j]
        l_i, l_e, l_ee, l_p, l_pp, l_ep = _nb_terms(y[i], expo[i] * np.exp(eta), theta, alpha)
        ll += l_i
        score[P] += l_p
        info[P, P] -= l_pp
        for j in range(P):
            xj = x[i, j]
            score[j] += l_e * xj
            info[P, j] -= l_ep * xj
            for k in range(j + 1):
                info[j, k] -= l_ee * xj * x[i, k]
    for j in range(P + 1):
        for k in range(j):
            info[k, j] = info[j, k]
    return ll, score, info


@numba.njit(cache=True)
def _shifted_solve(info, score):
    """Newton step info^-1 score; where info is not positive definite, a Levenberg-Marquardt
    shift of its diagonal (growing tenfold) until it is. Returns (ok, step, unshifted)."""
    ok, step, _ = spd_solve(info, score)
    if ok:
        return True, step, True
    P = info.shape[0]
    shift = 0.0
    for j in range(P):
        shift += abs(info[j, j])
    shift *= 1e-8
    a = info.copy()
    for _ in range(40):
        for j in range(P):
            a[j, j] = info[j, j] + shift
        ok, step, _ = spd_solve(a, score)
        if ok:
            return True, step, False
        shift *= 10.0
    return False, step, False


@numba.njit(cache=True)
def _nbreg_one(x, y, expo, include, max_iter, tol):
    """NB2 regression of one replicate: (log_rr, se, intercept, alpha, converged).

    Column 0 of x is the intercept, column 1 the group (0/1). As :func:`_negbin_one`: the Poisson
    fit first (Newton-Raphson with step halving), kept with alpha = 0 when the dispersion score at
    alpha = 0 is not positive; otherwise Newton-Raphson in (beta, log alpha) from the moment
    estimate of alpha. Columns that are zero for every included patient are held at 0.
    """
    nan = np.nan
    n, P = x.shape
    y0 = y1 = 0.0
    total_expo = 0.0
    active = np.zeros(P + 1, np.bool_)
    active[P] = True
    for i in range(n):
        if include[i]:
            if x[i, 1] == 1.0:
                y1 += y[i]
            else:
                y0 += y[i]
            total_expo += expo[i]
            for j in range(P):
                if x[i, j] != 0.0:
                    active[j] = True
    if not (y0 > 0.0 and y1 > 0.0):
        return nan, nan, nan, nan, False
    # Poisson fit
    beta = np.zeros(P)
    beta[0] = np.log((y0 + y1) / total_expo)
    ll, score, info = _poisson_eval(beta, x, y, expo, include)
    _drop_inactive(score, info, active[:P])
    poisson_ok = False
    for _ in range(max_iter):
        ok, step, _ = spd_solve(info, score)
        if not ok:
            break
        big = np.max(np.abs(step))
        if big < tol:
            beta = beta + step
            ll, score, info = _poisson_eval(beta, x, y, expo, include)
            _drop_inactive(score, info, active[:P])
            poisson_ok = True
            break
        if big > 5.0:
            step *= 5.0 / big
        slack = 1e-12 * (1.0 + abs(ll))
        new = beta + step
        new_ll, new_score, new_info = _poisson_eval(new, x, y, expo, include)
        halvings = 0
        while not new_ll >= ll - slack and halvings < 40:
            step *= 0.5
            new = beta + step
            new_ll, new_score, new_info = _poisson_eval(new, x, y, expo, include)
            halvings += 1
        beta, ll, score, info = new, new_ll, new_score, new_info
        _drop_inactive(score, info, active[:P])
    if not poisson_ok:
        return nan, nan, nan, nan, False
    ok, _, var11 = spd_solve(info, np.zeros(P), 1)
    poisson_se = np.sqrt(var11) if ok else nan
    dscore = 0.0
    mu2 = 0.0
    for i in range(n):
        if include[i]:
            eta = 0.0
            for j in range(P):
                eta += x[i, j] * beta[j]
            mu = expo[i] * np.exp(eta)
            dscore += (y[i] - mu) ** 2 - y[i]
            mu2 += mu * mu
    if not dscore > 0.0:  # not over-dispersed: the maximum is on the boundary alpha = 0
        return beta[1], poisson_se, beta[0], 0.0, ok
    par = np.empty(P + 1)
    par[:P] = beta
    par[P] = np.log(dscore / mu2)
    ll, score, info = _nbx_eval(par, x, y, expo, include)
    _drop_inactive(score, info, active)
    converged = False
    for _ in range(max_iter):
        ok, step, newton_ok = _shifted_solve(info, score)
        if not ok:  # non-finite values
            break
        big = np.max(np.abs(step))
        if newton_ok and big < tol:  # take the last (tiny) step and stop
            par = par + step
            ll, score, info = _nbx_eval(par, x, y, expo, include)
            _drop_inactive(score, info, active)
            converged = True
            break
        if big > 5.0:  # keeps exp() finite on the way; does not change the converged value
            step *= 5.0 / big
        slack = 1e-12 * (1.0 + abs(ll))
        new = par + step
        new_ll, new_score, new_info = _nbx_eval(new, x, y, expo, include)
        halvings = 0
        while not new_ll >= ll - slack and halvings < 40:
            step *= 0.5
            new = par + step
            new_ll, new_score, new_info = _nbx_eval(new, x, y, expo, include)
            halvings += 1
        par, ll, score, info = new, new_ll, new_score, new_info
        _drop_inactive(score, info, active)
        if par[P] < -30.0:  # alpha -> 0: the maximum is the Poisson fit
            return beta[1], poisson_se, beta[0], 0.0, np.isfinite(poisson_se)
    if not converged:
        return nan, nan, nan, nan, False
    ok, _, var11 = spd_solve(info, np.zeros(P + 1), 1)
    se = np.sqrt(var11) if ok else nan
    return par[1], se, par[0], np.exp(par[P]), ok


@numba.njit(cache=True, parallel=True)
def _nbreg_kernel(x, y, expo, include, max_iter, tol):
    n_rep = y.shape[0]
    log_rr = np.empty(n_rep)
    se = np.empty(n_rep)
    log_rate0 = np.empty(n_rep)
    alpha = np.empty(n_rep)
    converged = np.empty(n_rep, np.bool_)
    for r in numba.prange(n_rep):
        b1, s, b0, a, c = _nbreg_one(x[r], y[r], expo[r], include[r], max_iter, tol)
        log_rr[r] = b1
        se[r] = s
        log_rate0[r] = b0
        alpha[r] = a
        converged[r] = c
    return log_rr, se, log_rate0, alpha, converged


# --------------------------------------------------------------------------------------------
# LWYY.
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _lwyy_one(ev, fu, fu_order, group, include, max_iter, tol):
    """LWYY fit of one replicate: (log_rr, se_robust, se_model, converged).

    ``ev`` is (n, J) event times (NaN or inf for none), ``fu_order`` sorts the follow-up times.
    Patient i is at risk at t while t <= fu[i]; events after fu[i] are not counted. The
    estimating equation is the Breslow partial-likelihood score over all events; the sandwich
    uses each patient's score residual W_i = sum over own events (Z_i - Zbar(t)) -
    exp(beta Z_i) sum over event times t <= fu[i] of (Z_i - Zbar(t)) dN(t) / S0(t).
    """
    nan = np.nan
    n, n_slots = ev.shape
    r0 = 0
    r1 = 0
    m = 0
    for i in range(n):
        if include[i]:
            if group[i] == 1:
                r1 += 1
            else:
                r0 += 1
            for j in range(n_slots):
                if ev[i, j] <= fu[i]:  # False for NaN
                    m += 1
    if r0 + r1 == 0:
        return nan, nan, nan, False
    # the counted events, sorted (only they: the padding is often most of ev)
    ev_time = np.empty(m)
    ev_patient = np.empty(m, np.int64)
    e = 0
    for i in range(n):
        if include[i]:
            for j in range(n_slots):
                if ev[i, j] <= fu[i]:
                    ev_time[e] = ev[i, j]
                    ev_patient[e] = i
                    e += 1
    order = np.argsort(ev_time)
    times = np.empty(m)
    d0 = np.empty(m, np.int64)
    d1 = np.empty(m, np.int64)
    ev_index = np.empty(m, np.int64)  # distinct-time index of each event
    n_times = 0
    for j in range(m):
        q = order[j]
        t = ev_time[q]
        if n_times == 0 or t != times[n_times - 1]:
            times[n_times] = t
            d0[n_times] = 0
            d1[n_times] = 0
            n_times += 1
        if group[ev_patient[q]] == 1:
            d1[n_times - 1] += 1
        else:
            d0[n_times - 1] += 1
        ev_index[q] = n_times - 1
    if n_times == 0:
        return nan, nan, nan, False
    # numbers at risk at each event time; seen[i] = number of event times <= fu[i]
    n0 = np.empty(n_times)
    n1 = np.empty(n_times)
    seen = np.full(n, n_times, np.int64)
    i = 0
    for k in range(n_times):
        while i < n and fu[fu_order[i]] < times[k]:
            p = fu_order[i]
            if include[p]:
                seen[p] = k
                if group[p] == 1:
                    r1 -= 1
                else:
                    r0 -= 1
            i += 1
        n0[k] = r0
        n1[k] = r1
    d0 = d0[:n_times]
    d1 = d1[:n_times]
    beta, se_model, converged = _cox_newton(n0, n1, d0, d1, max_iter, tol, False)
    if not np.isfinite(beta):
        return nan, nan, nan, False
    # compensator sums per arm: cum0 of (0 - p1) dN / S0, cum1 of (1 - p1) exp(beta) dN / S0
    eb = np.exp(beta)
    emb = np.exp(-beta)
    p1 = np.empty(n_times)
    cum0 = np.zeros(n_times + 1)
    cum1 = np.zeros(n_times + 1)
    for k in range(n_times):
        d = d0[k] + d1[k]
        if beta > 0.0:
            den = n0[k] * emb + n1[k]
            w1 = d / den
            w0 = d * emb / den
        else:
            den = n0[k] + n1[k] * eb
            w0 = d / den
            w1 = d * eb / den
        p1[k] = n1[k] * w1 / d
        cum0[k + 1] = cum0[k] - p1[k] * w0
        cum1[k + 1] = cum1[k] + (n0[k] * w0 / d) * w1
    resid = np.zeros(n)
    for p in range(n):
        if include[p]:
            resid[p] = -(cum1[seen[p]] if group[p] == 1 else cum0[seen[p]])
    for j in range(m):  # in time order, so the order of a patient's slots does not matter
        q = order[j]
        p = ev_patient[q]
        resid[p] += (1.0 if group[p] == 1 else 0.0) - p1[ev_index[q]]
    meat = 0.0
    for p in range(n):
        meat += resid[p] * resid[p]
    info = 1.0 / (se_model * se_model)
    return beta, np.sqrt(meat) / info, se_model, converged


@numba.njit(cache=True, parallel=True)
def _lwyy_kernel(ev, fu, fu_order, group, include, max_iter, tol):
    n_rep = fu.shape[0]
    log_rr = np.empty(n_rep)
    se = np.empty(n_rep)
    se_model = np.empty(n_rep)
    converged = np.empty(n_rep, np.bool_)
    for r in numba.prange(n_rep):
        b, s, sm, c = _lwyy_one(ev[r], fu[r], fu_order[r], group[r], include[r], max_iter, tol)
        log_rr[r] = b
        se[r] = s
        se_model[r] = sm
        converged[r] = c
    return log_rr, se, se_model, converged


# LWYY with covariates and strata: x (n, P), column 0 the group; each stratum has its own
# baseline rate function, so its risk sets hold its own patients only.


@numba.njit(cache=True)
def _lwyyx_events(ev, fu, codes, include, n_strata):
    """The counted events of one replicate (times <= follow-up of included patients) sorted by
    stratum, then by decreasing time: (times, patients)."""
    n, n_slots = ev.shape
    m = 0
    for i in range(n):
        if include[i]:
            for j in range(n_slots):
                if ev[i, j] <= fu[i]:  # False for NaN
                    m += 1
    t = np.empty(m)
    who = np.empty(m, np.int64)
    e = 0
    for i in range(n):
        if include[i]:
            for j in range(n_slots):
                if ev[i, j] <= fu[i]:
                    t[e] = -ev[i, j]
                    who[e] = i
                    e += 1
    order = np.argsort(t)
    start = np.zeros(n_strata + 1, np.int64)
    for e in range(m):
        start[codes[who[e]] + 1] += 1
    for s in range(n_strata):
        start[s + 1] += start[s]
    times = np.empty(m)
    patients = np.empty(m, np.int64)
    for e in range(m):  # stable bucketing by stratum keeps the time order within each
        q = order[e]
        s = codes[who[q]]
        times[start[s]] = -t[q]
        patients[start[s]] = who[q]
        start[s] += 1
    return times, patients


@numba.njit(cache=True)
def _lwyyx_walk(beta, x, fu, codes, pord, m_pat, times, patients, resid):
    """Breslow log partial likelihood, score and information of the LWYY model of one replicate.

    Walks each stratum back in time: ``pord`` lists the ``m_pat`` included patients by stratum,
    then by decreasing follow-up, ``times``/``patients`` the events likewise, so a risk set
    grows as the walk goes. With ``resid`` (n, P) not empty, also fills it with the patients'
    score residuals W_i = sum over own events (x_i - xbar(t)) - exp(eta_i) sum over the
    stratum's event times t <= fu[i] of (x_i - xbar(t)) dN(t) / S0(t).
    """
    n, P = x.shape
    m = times.shape[0]
    want = resid.shape[0] > 0
    eta = np.zeros(n)
    top = -np.inf
    for j in range(m_pat):
        p = pord[j]
        e = 0.0
        for c in range(P):
            e += x[p, c] * beta[c]
        eta[p] = e
        top = max(top, e)
    ll = 0.0
    score = np.zeros(P)
    info = np.zeros((P, P))
    s1 = np.zeros(P)
    s2 = np.zeros((P, P))
    xsum = np.zeros(P)
    # for the residuals, per distinct time (in walk order): dN/S0, xbar and their cumulative
    # sums over the stratum's earlier times; and the distinct time at which each patient joined
    dn = np.zeros(m)
    xbar = np.zeros((m, P))
    c0 = np.zeros(m)
    c1 = np.zeros((m, P))
    joined = np.full(n, -1, np.int64)
    n_dist = 0
    j = 0
    e = 0
    while e < m:
        stratum = codes[patients[e]]
        while j < m_pat and codes[pord[j]] < stratum:  # patients of strata without events
            j += 1
        first = n_dist
        s0 = 0.0
        s1[:] = 0.0
        s2[:, :] = 0.0
        while e < m and codes[patients[e]] == stratum:
            t = times[e]
            while j < m_pat and codes[pord[j]] == stratum and fu[pord[j]] >= t:
                p = pord[j]
                w = np.exp(eta[p] - top)
                s0 += w
                for c in range(P):
                    s1[c] += w * x[p, c]
                    for c2 in range(c + 1):
                        s2[c, c2] += w * x[p, c] * x[p, c2]
                joined[p] = n_dist
                j += 1
            d = 0
            xsum[:] = 0.0
            k = e
            while k < m and codes[patients[k]] == stratum and times[k] == t:
                p = patients[k]
                d += 1
                ll += eta[p]
                for c in range(P):
                    xsum[c] += x[p, c]
                k += 1
            ll -= d * (np.log(s0) + top)
            for c in range(P):
                mc = s1[c] / s0
                score[c] += xsum[c] - d * mc
                for c2 in range(c + 1):
                    info[c, c2] += d * (s2[c, c2] / s0 - mc * s1[c2] / s0)
            if want:
                dn[n_dist] = d / s0
                for c in range(P):
                    xbar[n_dist, c] = s1[c] / s0
                for q in range(e, k):  # own events
                    p = patients[q]
                    for c in range(P):
                        resid[p, c] += x[p, c] - xbar[n_dist, c]
            n_dist += 1
            e = k
        if want:  # the walk goes back in time: earlier times come later in it
            for q in range(n_dist - 1, first - 1, -1):
                c0[q] = dn[q] + (c0[q + 1] if q + 1 < n_dist else 0.0)
                for c in range(P):
                    c1[q, c] = xbar[q, c] * dn[q] + (c1[q + 1, c] if q + 1 < n_dist else 0.0)
    if want:
        for jj in range(m_pat):
            p = pord[jj]
            k = joined[p]
            if k >= 0:
                w = np.exp(eta[p] - top)
                for c in range(P):
                    resid[p, c] -= w * (x[p, c] * c0[k] - c1[k, c])
    for c in range(P):
        for c2 in range(c):
            info[c2, c] = info[c, c2]
    return ll, score, info


@numba.njit(cache=True)
def _lwyyx_one(ev, fu, x, codes, n_strata, pord, m_pat, include, max_iter, tol):
    """LWYY fit of one replicate with covariates and strata: (log_rr, se_robust, se_model,
    converged). Newton-Raphson with step halving from 0, as the adjusted Cox model; the robust
    variance of the group coefficient is a' (sum W_i W_i') a, a = A^-1 e_0."""
    nan = np.nan
    n, P = x.shape
    active = np.zeros(P, np.bool_)
    for jj in range(m_pat):
        for c in range(P):
            if x[pord[jj], c] != 0.0:
                active[c] = True
    times, patients = _lwyyx_events(ev, fu, codes, include, n_strata)
    if not active[0] or times.shape[0] == 0:  # one arm only, or no events
        return nan, nan, nan, False
    none = np.zeros((0, P))
    beta = np.zeros(P)
    ll, score, info = _lwyyx_walk(beta, x, fu, codes, pord, m_pat, times, patients, none)
    _drop_inactive(score, info, active)
    converged = False
    for _ in range(max_iter):
        ok, step, _ = spd_solve(info, score)
        if not ok:
            break
        big = np.max(np.abs(step))
        if big < tol:
            beta = beta + step
            converged = True
            break
        if big > 5.0:  # keeps exp() finite on the way; does not change the converged value
            step *= 5.0 / big
        slack = 1e-12 * (1.0 + abs(ll))
        new = beta + step
        new_ll, new_score, new_info = _lwyyx_walk(new, x, fu, codes, pord, m_pat, times, patients, none)
        halvings = 0
        while not new_ll >= ll - slack and halvings < 40:
            step *= 0.5
            new = beta + step
            new_ll, new_score, new_info = _lwyyx_walk(new, x, fu, codes, pord, m_pat, times, patients,
                                                      none)
            halvings += 1
        beta, ll, score, info = new, new_ll, new_score, new_info
        _drop_inactive(score, info, active)
    if not converged:  # e.g. every event in one arm: the estimate is infinite
        return nan, nan, nan, False
    resid = np.zeros((n, P))
    ll, score, info = _lwyyx_walk(beta, x, fu, codes, pord, m_pat, times, patients, resid)
    _drop_inactive(score, info, active)
    e0 = np.zeros(P)
    e0[0] = 1.0
    ok, a, _ = spd_solve(info, e0)
    if not ok:
        return nan, nan, nan, False
    meat = 0.0
    for jj in range(m_pat):
        p = pord[jj]
        u = 0.0
        for c in range(P):
            u += a[c] * resid[p, c]
        meat += u * u
    return beta[0], np.sqrt(meat), np.sqrt(a[0]), True


@numba.njit(cache=True, parallel=True)
def _lwyyx_kernel(ev, fu, x, codes, n_strata, pord, m_pat, include, max_iter, tol):
    n_rep = fu.shape[0]
    log_rr = np.empty(n_rep)
    se = np.empty(n_rep)
    se_model = np.empty(n_rep)
    converged = np.empty(n_rep, np.bool_)
    for r in numba.prange(n_rep):
        b, s, sm, c = _lwyyx_one(ev[r], fu[r], x[r], codes[r], n_strata, pord[r], m_pat[r],
                                 include[r], max_iter, tol)
        log_rr[r] = b
        se[r] = s
        se_model[r] = sm
        converged[r] = c
    return log_rr, se, se_model, converged


# --------------------------------------------------------------------------------------------
# Public functions.
# --------------------------------------------------------------------------------------------


def _follow_up(x, shape, inc) -> np.ndarray:
    fu = _real("follow_up", x, shape)
    bad = inc & ~(np.isfinite(fu) & (fu >= 0.0))
    if bad.any():
        r, i = np.argwhere(bad)[0]
        raise ValueError(
            f"follow_up: must be finite and >= 0 for included patients, got {fu[r, i]} at "
            f"replicate {r}, patient {i}"
        )
    return np.where(inc, fu, 0.0)


def _event_times(x) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 3:
        raise ValueError(
            f"event_times: must be a 3-D array (replicates, patients, events), got shape "
            f"{a.shape}; pad each patient's times with NaN"
        )
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"event_times: must hold floats (NaN for no event), got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float64)


def _rate_ratio_ci(log_rr, se, level):
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be in (0, 1), got {level}")
    q = stats.norm.ppf(0.5 + 0.5 * level)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return log_rr / se, np.exp(log_rr), np.exp(log_rr - q * se), np.exp(log_rr + q * se)


def _newton_options(max_iter, tol):
    if max_iter < 1:
        raise ValueError(f"max_iter: must be >= 1, got {max_iter}")
    if not tol > 0.0:
        raise ValueError(f"tol: must be > 0, got {tol}")
    return int(max_iter), float(tol)


def _covariates(covariates, shape, inc) -> np.ndarray:
    cov = np.asarray(covariates)
    if cov.ndim != 3 or cov.shape[:2] != shape:
        raise ValueError(f"covariates: must have shape (R, n, q) with (R, n) = {shape}, got {cov.shape}")
    if cov.dtype == np.bool_ or not (np.issubdtype(cov.dtype, np.floating)
                                     or np.issubdtype(cov.dtype, np.integer)):
        raise TypeError(f"covariates: must hold real numbers, got dtype {cov.dtype}")
    cov = np.asarray(cov, np.float64)
    bad = inc & ~np.isfinite(cov).all(axis=2)
    if bad.any():
        r, i = np.argwhere(bad)[0]
        raise ValueError(f"covariates: must be finite for included patients, got {cov[r, i]} at "
                         f"replicate {r}, patient {i}")
    return cov


@numba.njit(cache=True, parallel=True)
def _centre_kernel(x, include, codes, n_codes, skip):
    R, n, P = x.shape
    out = np.empty_like(x)
    for r in numba.prange(R):
        total = np.zeros((n_codes, P))
        size = np.zeros(n_codes)
        first = np.zeros((n_codes, P))
        varies = np.zeros((n_codes, P), np.bool_)
        for i in range(n):
            if include[r, i]:
                c = codes[r, i]
                size[c] += 1.0
                for j in range(skip, P):
                    v = x[r, i, j]
                    total[c, j] += v
                    if size[c] == 1.0:
                        first[c, j] = v
                    elif v != first[c, j]:
                        varies[c, j] = True
        for i in range(n):
            c = codes[r, i]
            for j in range(P):
                if j < skip:
                    out[r, i, j] = x[r, i, j]
                elif varies[c, j]:
                    out[r, i, j] = x[r, i, j] - total[c, j] / size[c]
                else:
                    out[r, i, j] = 0.0
    return out


def _centred(x: np.ndarray, include: np.ndarray, codes=None, k: int = 1, skip: int = 0) -> np.ndarray:
    """(R, n, P) columns minus their mean over the included patients of the replicate's stratum
    (``codes`` 0..k-1; the whole replicate without them), from column ``skip`` on. A column constant
    among a stratum's included patients becomes exactly zero there, so one constant in every stratum
    is all zero, which the kernels leave out of the fit."""
    if codes is None:
        codes, k = np.zeros(x.shape[:2], np.int64), 1
    return _centre_kernel(np.ascontiguousarray(x, dtype=np.float64), include, np.ascontiguousarray(codes), k,
                          skip)


@numba.njit(cache=True, parallel=True)
def _nb_design_kernel(group, cov, codes, n_codes, with_strata, include):
    """(R, n, P) centred design of the NB2 regression: see :func:`_nb_design`."""
    R, n, q = cov.shape
    n_ind = n_codes if with_strata else 0
    P = 2 + q + n_ind
    out = np.zeros((R, n, P))
    for r in numba.prange(R):
        m = 0.0
        mean = np.zeros(q)
        lo = np.full(q, np.inf)
        hi = np.full(q, -np.inf)
        size = np.zeros(n_codes)
        first = np.zeros((n_codes, q))
        within = np.zeros(q, np.bool_)  # varies within some stratum
        fp = n_codes
        for i in range(n):
            if include[r, i]:
                c = codes[r, i]
                m += 1.0
                size[c] += 1.0
                fp = min(fp, c)
                for j in range(q):
                    v = cov[r, i, j]
                    mean[j] += v
                    lo[j] = min(lo[j], v)
                    hi[j] = max(hi[j], v)
                    if size[c] == 1.0:
                        first[c, j] = v
                    elif v != first[c, j]:
                        within[j] = True
        for j in range(q):
            mean[j] /= max(m, 1.0)
        for i in range(n):
            out[r, i, 0] = 1.0
            out[r, i, 1] = group[r, i]
            for j in range(q):
                # constant among the included, or (stratified) within every stratum: left out
                if hi[j] > lo[j] and (within[j] or not with_strata):
                    out[r, i, 2 + j] = cov[r, i, j] - mean[j]
            for c in range(n_ind):
                if c != fp and 0.0 < size[c] < m:
                    out[r, i, 2 + q + c] = (1.0 if codes[r, i] == c else 0.0) - size[c] / m
    return out


def _nb_design(group, covariates, codes, k, include) -> np.ndarray:
    """(R, n, P) columns intercept, group, the covariates, and an indicator of each stratum (``codes``
    0..k-1, or None) but the first present among ``include`` in the replicate; all but the first two
    centred over the included patients. Columns constant among them are zero (left out of the fit),
    and so are covariates constant within every stratum (the stratum indicators absorb them)."""
    R, n = group.shape
    cov = np.zeros((R, n, 0)) if covariates is None else np.ascontiguousarray(covariates, dtype=np.float64)
    with_strata = codes is not None
    if codes is None:
        codes, k = np.zeros((R, n), np.int64), 1
    return _nb_design_kernel(group, cov, np.ascontiguousarray(codes), k, with_strata, include)


def _without_eventless_strata(y: np.ndarray, include: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Leave out the patients of strata without events: their stratum's coefficient runs off to
    -infinity, and in that limit (the supremum of the likelihood) they contribute nothing."""
    R = y.shape[0]
    cell = np.arange(R)[:, None] * k + codes
    events = np.bincount(cell[include], weights=y[include], minlength=R * k)
    return include & (events[cell] > 0)


def event_counts(event_times, follow_up) -> np.ndarray:
    """Per-patient number of events within follow-up, (R, n) int64, from (R, n, J) event times."""
    ev = _event_times(event_times)
    fu = _real("follow_up", follow_up, ev.shape[:2])
    return np.sum(ev <= fu[:, :, None], axis=2)


def negbin(counts, follow_up, group, include=None, *, covariates=None, strata=None,
           level: float = 0.95, max_iter: int = 100, tol: float = 1e-9) -> NegBinFit:
    """Negative binomial (NB2) regression of event counts on ``group`` with log follow-up offset.

    Maximum likelihood of (log rate control, log rate ratio, dispersion alpha), as statsmodels'
    ``NegativeBinomial(loglike_method="nb2", exposure=follow_up)``; the SE comes from the
    observed information of all the parameters. Converged when the Newton step is below ``tol``.
    Patients with zero follow-up contribute nothing.

    With ``covariates`` and/or ``strata`` the regression is on intercept, ``group``, the
    covariates and an indicator of each stratum but the first (stratum fixed effects), as
    statsmodels with those columns; the ``group`` coefficient is then the log rate ratio
    conditional on the covariates and the stratum. Covariates are centred inside (the ``group``
    coefficient and its SE do not change; ``log_rate0`` is then the log control rate at the
    included patients' mean covariates and stratum indicators). A column constant among the
    included patients is left out of the fit, as is a covariate constant within every stratum
    (the stratum indicators absorb it, e.g. the stratification factor named as a covariate), and
    so are the patients of a stratum without events (its coefficient is -infinity; they add
    nothing to the maximized likelihood).

    Args:
        counts: (R, n) non-negative integer event counts.
        follow_up: (R, n) follow-up (months or years: the rate's unit), >= 0.
        group: (R, n) 0 = control, 1 = active.
        include: (R, n) bool, patients entering the analysis; all by default.
        covariates: (R, n, q) real baseline covariates, or None.
        strata: (R, n) integer stratum labels (any integers), entered as indicators, or None.
        level: confidence level of the rate-ratio interval.
        max_iter, tol: Newton-Raphson limits (tol on the largest step of the parameters).

    Returns:
        NegBinFit; NaN and ``converged=False`` where an arm has no events or no patients (or,
        adjusted, where the maximum does not exist, e.g. a covariate level without events).
    """
    max_iter, tol = _newton_options(max_iter, tol)
    c = _batch("counts", counts, None)
    if not np.issubdtype(c.dtype, np.integer) or c.dtype == np.bool_:
        raise TypeError(f"counts: must hold integers, got dtype {c.dtype}")
    g = _zero_one("group", group, c.shape, np.int8)
    inc = _include(include, c.shape)
    fu = _follow_up(follow_up, c.shape, inc)
    y = np.ascontiguousarray(c, dtype=np.int64)
    bad = inc & ((y < 0) | ((fu == 0.0) & (y > 0)))
    if bad.any():
        r, i = np.argwhere(bad)[0]
        raise ValueError(
            f"counts: must be >= 0, and 0 with zero follow-up, for included patients, got "
            f"{y[r, i]} (follow-up {fu[r, i]}) at replicate {r}, patient {i}"
        )
    if covariates is None and strata is None:
        log_rr, se, log_rate0, alpha, conv = _negbin_kernel(y, fu, g, inc, max_iter, tol)
    else:
        cov = None if covariates is None else _covariates(covariates, c.shape, inc)
        fit_inc = inc & (fu > 0.0)
        codes, k = None, 1
        if strata is not None:
            codes, k = _strata_codes(strata, c.shape)
            fit_inc = _without_eventless_strata(y, fit_inc, codes, k)
        x = _nb_design(g, cov, codes, k, fit_inc)  # centred: numerics only; constant columns left out
        log_rr, se, log_rate0, alpha, conv = _nbreg_kernel(x, y, fu, fit_inc, max_iter, tol)
    z, rr, lower, upper = _rate_ratio_ci(log_rr, se, level)
    return NegBinFit(log_rr, se, z, rr, lower, upper, log_rate0, alpha, conv)


def lwyy(event_times, follow_up, group, include=None, *, covariates=None, strata=None,
         level: float = 0.95, max_iter: int = 50, tol: float = 1e-9) -> LwyyFit:
    """Lin-Wei-Yang-Ying proportional-rates model of recurrent events on ``group``.

    The rate of events of patient i at time t is Y_i(t) exp(beta Z_i) dmu0(t), Y_i(t) = 1 while
    t <= follow_up[i]. beta solves the Breslow-type estimating equation (the Cox partial
    likelihood score over all events, Breslow ties; Newton-Raphson as in
    :func:`vctrial.trial.analysis.cox_hr`); its SE is the robust sandwich A^-1 sqrt(sum W_i^2),
    W_i the patients' score residuals, as R's ``coxph(Surv(start, stop, event) ~ group +
    cluster(id), ties = "breslow")`` on counting-process data.

    With ``covariates`` the rate is Y_i(t) exp(beta Z_i + gamma' X_i) dmu0(t), the ``group``
    coefficient beta then the log rate ratio conditional on the covariates; with ``strata`` each
    stratum has its own baseline rate function dmu0_s(t) (a stratified model, as a stratified Cox
    model: risk sets within the stratum; ``coxph(... + strata(s) + cluster(id))``). The robust
    variance is the [0, 0] element of A^-1 (sum W_i W_i') A^-1 with the patients' score-residual
    vectors W_i. Covariates are centred within each stratum inside (the coefficients do not
    change); a covariate constant among the included patients of every stratum is left out of the
    fit (the baseline rate functions absorb it).

    Args:
        event_times: (R, n, J) each patient's event times (months), > 0, in any order, padded
            with NaN (or +inf); events after the patient's follow-up are not counted.
        follow_up: (R, n) end of each patient's follow-up (death, withdrawal, data cut-off).
        group: (R, n) 0 = control, 1 = active.
        include: (R, n) bool, patients entering the analysis; all by default.
        covariates: (R, n, q) real baseline covariates, or None.
        strata: (R, n) integer stratum labels (a baseline rate function per stratum), or None.
        level: confidence level of the rate-ratio interval.
        max_iter, tol: as for :func:`vctrial.trial.analysis.cox_hr`.

    Returns:
        LwyyFit; NaN where there are no events or nobody is included; an infinite estimate (all
        events in one arm) gives ``converged=False`` with the finite value reached (adjusted or
        stratified: NaN, as :func:`vctrial.trial.stratified.cox_adjusted`).
    """
    max_iter, tol = _newton_options(max_iter, tol)
    ev = _event_times(event_times)
    shape = ev.shape[:2]
    g = _zero_one("group", group, shape, np.int8)
    inc = _include(include, shape)
    fu = _follow_up(follow_up, shape, inc)
    if ev.size and not np.nanmin(ev, initial=np.inf) > 0.0:  # slow path only to find it
        bad = inc[:, :, None] & ~(np.isnan(ev) | (ev > 0.0))
        if bad.any():
            r, i, j = np.argwhere(bad)[0]
            raise ValueError(
                f"event_times: must be > 0 or NaN (no event) for included patients, got "
                f"{ev[r, i, j]} at replicate {r}, patient {i}, slot {j}"
            )
    if covariates is None and strata is None:
        log_rr, se, se_model, conv = _lwyy_kernel(ev, fu, np.argsort(fu, axis=1), g, inc,
                                                  max_iter, tol)
    else:
        cols = [g.astype(np.float64)]
        if covariates is not None:
            cols.extend(np.moveaxis(_covariates(covariates, shape, inc), 2, 0))
        if strata is None:
            codes, k = np.zeros(shape, np.int64), 1
        else:
            codes, k = _strata_codes(strata, shape)
        # centred within the strata (the stratified model does not change); a column constant
        # within every stratum becomes zero and is left out (its effect is in the baselines)
        x = _centred(np.stack(cols, axis=2), inc, codes, k)
        last = np.where(inc, codes, np.iinfo(np.int64).max)  # excluded patients sort to the end
        pord = np.lexsort((-fu, last), axis=1)
        log_rr, se, se_model, conv = _lwyyx_kernel(
            ev, fu, x, np.ascontiguousarray(codes), k, pord, inc.sum(axis=1).astype(np.int64), inc,
            max_iter, tol)
    z, rr, lower, upper = _rate_ratio_ci(log_rr, se, level)
    return LwyyFit(log_rr, se, z, rr, lower, upper, se_model, conv)
