"""Trial analyses over batches of replicates: log-rank, Cox hazard ratio, Kaplan-Meier, ANCOVA.

A batch holds R replicates of n patients each as 2-D arrays of shape (R, n):

* ``time``: float64, months from randomization to event or censoring;
* ``event``: bool, True if the event was observed, False if censored;
* ``group``: int8, 0 = control, 1 = active;
* ``include``: bool, True if the patient enters this analysis (False = not yet enrolled at an
  interim look, or excluded), so replicates of different sizes share one array.

Each analysis is a private numba kernel that takes arrays and scalars only and loops over
replicates with ``prange``; a replicate is analysed by one thread from start to end, so results do
not depend on the number of threads. The public functions check their inputs, sort the times
with numpy (much faster than a sort compiled by numba) and return named results. Degenerate replicates (nobody included, no events, all events in one arm) give NaN or
``converged=False`` rather than an error.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from scipy import stats

__all__ = [
    "Ancova",
    "CoxFit",
    "LogRank",
    "ancova",
    "cox_hr",
    "kaplan_meier",
    "kaplan_meier_steps",
    "logrank",
    "p_value",
    "wald_ci",
]


class LogRank(NamedTuple):
    """Log-rank test per replicate (arrays with leading dimension R).

    Attributes:
        z: (O1 - E1) / sqrt(V) for the active group; negative = fewer events than expected on
            active. With Fleming-Harrington weights, both O1 - E1 and V are weighted.
        observed: (R, 2) events in control (column 0) and active (column 1).
        expected: (R, 2) events expected under the null hypothesis (unweighted).
        variance: V, the hypergeometric variance of O1 - E1 (weighted if weights are used).
    """

    z: np.ndarray
    observed: np.ndarray
    expected: np.ndarray
    variance: np.ndarray


class CoxFit(NamedTuple):
    """Cox model with the single covariate ``group`` per replicate (arrays of shape (R,)).

    Attributes:
        log_hr: log hazard ratio, active vs control.
        se: its standard error, from the observed information at ``log_hr``.
        converged: False when Newton-Raphson did not converge (e.g. all events in one arm, where
            the maximum-likelihood estimate is infinite) or there is no information at all.
    """

    log_hr: np.ndarray
    se: np.ndarray
    converged: np.ndarray


class Ancova(NamedTuple):
    """OLS of y on (1, group, baseline) per replicate (arrays of shape (R,)).

    Attributes:
        estimate: coefficient of ``group`` (active minus control, adjusted for baseline).
        se: its standard error.
        df: residual degrees of freedom, n_included - 3.
        t: estimate / se.
    """

    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    t: np.ndarray


# --------------------------------------------------------------------------------------------
# Kernels: arrays and scalars only.
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _risk_table(time, event, group, include, order):
    """Distinct event times of one replicate with numbers at risk and events per group.

    ``order`` lists the patients to tabulate in increasing time: all of them, or a subset such
    as one stratum (excluded patients may sit anywhere in it; they are skipped).
    Patients censored at an event time count as at risk at that time. Returns arrays
    (event_time, at_risk0, at_risk1, events0, events1), one entry per distinct event time in
    increasing order.
    """
    n = order.shape[0]
    r0 = 0
    r1 = 0
    for j in range(n):
        p = order[j]
        if include[p]:
            if group[p] == 1:
                r1 += 1
            else:
                r0 += 1
    m = r0 + r1
    event_time = np.empty(m)
    at_risk0 = np.empty(m)
    at_risk1 = np.empty(m)
    events0 = np.empty(m, np.int64)
    events1 = np.empty(m, np.int64)
    k = 0
    j = 0
    while j < n:
        if not include[order[j]]:
            j += 1
            continue
        tj = time[order[j]]
        d0 = 0
        d1 = 0
        c0 = 0
        c1 = 0
        while j < n:  # every included patient with time tj
            p = order[j]
            if include[p]:
                if time[p] != tj:
                    break
                if group[p] == 1:
                    c1 += 1
                    if event[p]:
                        d1 += 1
                else:
                    c0 += 1
                    if event[p]:
                        d0 += 1
            j += 1
        if d0 + d1 > 0:
            event_time[k] = tj
            at_risk0[k] = r0
            at_risk1[k] = r1
            events0[k] = d0
            events1[k] = d1
            k += 1
        r0 -= c0
        r1 -= c1
    return event_time[:k], at_risk0[:k], at_risk1[:k], events0[:k], events1[:k]


@numba.njit(cache=True)
def _logrank_one(time, event, group, include, order, rho, gamma):
    """Log-rank (optionally Fleming-Harrington weighted) for one replicate.

    Returns (z, observed0, observed1, expected0, expected1, variance).
    """
    nan = np.nan
    if not np.any(include):
        return nan, nan, nan, nan, nan, nan
    _, n0, n1, d0, d1 = _risk_table(time, event, group, include, order)
    o0, o1, e1, num, var = _logrank_sums(n0, n1, d0, d1, rho, gamma)
    z = num / np.sqrt(var) if var > 0.0 else nan
    return z, o0, o1, (o0 + o1) - e1, e1, var


@numba.njit(cache=True)
def _logrank_sums(n0, n1, d0, d1, rho, gamma):
    """Sums of one risk table: (observed0, observed1, expected1, weighted O1 - E1, variance).

    The Fleming-Harrington weights use the Kaplan-Meier estimate of the table's own patients.
    """
    weighted = rho != 0.0 or gamma != 0.0
    s_before = 1.0  # pooled Kaplan-Meier just before the current event time, S(t-)
    o0 = 0.0
    o1 = 0.0
    e1 = 0.0
    num = 0.0
    var = 0.0
    for k in range(n0.shape[0]):
        n = n0[k] + n1[k]
        d = d0[k] + d1[k]
        w = 1.0
        if weighted:
            w = s_before**rho * (1.0 - s_before) ** gamma
        e1k = d * n1[k] / n
        o0 += d0[k]
        o1 += d1[k]
        e1 += e1k
        num += w * (d1[k] - e1k)
        if n > 1.0:
            var += w * w * d * (n1[k] / n) * (n0[k] / n) * (n - d) / (n - 1.0)
        s_before *= 1.0 - d / n
    return o0, o1, e1, num, var


@numba.njit(cache=True, parallel=True)
def _logrank_kernel(time, event, group, include, order, rho, gamma):
    n_rep = time.shape[0]
    z = np.empty(n_rep)
    observed = np.empty((n_rep, 2))
    expected = np.empty((n_rep, 2))
    variance = np.empty(n_rep)
    for r in numba.prange(n_rep):
        zr, o0, o1, e0, e1, v = _logrank_one(
            time[r], event[r], group[r], include[r], order[r], rho, gamma
        )
        z[r] = zr
        observed[r, 0] = o0
        observed[r, 1] = o1
        expected[r, 0] = e0
        expected[r, 1] = e1
        variance[r] = v
    return z, observed, expected, variance


@numba.njit(cache=True)
def _efron(beta, n0, n1, d0, d1):
    """Efron log partial likelihood, score and information for a 0/1 covariate.

    At an event time with d tied events, Efron's ell-th term (ell = 0..d-1) removes the fraction
    f = ell/d of the tied events from the risk set: a_g = n_g - f d_g patients of group g remain,
    with weights 1 (control) and exp(beta) (active). The probabilities p1, p0 = 1 - p1 of the
    active and control groups are computed separately so that the score and information stay
    accurate when beta runs off towards +-infinity.
    """
    eb = np.exp(beta)
    emb = np.exp(-beta)
    loglik = 0.0
    score = 0.0
    info = 0.0
    for k in range(n0.shape[0]):
        d = d0[k] + d1[k]
        share1 = d1[k] / d
        share0 = d0[k] / d
        loglik += beta * d1[k]
        for ell in range(d):
            f = ell / d
            a0 = n0[k] - f * d0[k]
            a1 = n1[k] - f * d1[k]
            if beta > 0.0:
                den = a0 * emb + a1  # risk-set weight divided by exp(beta)
                log_den = beta + np.log(den)
                p1 = a1 / den
                p0 = a0 * emb / den
            else:
                den = a0 + a1 * eb
                log_den = np.log(den)
                p1 = a1 * eb / den
                p0 = a0 / den
            loglik -= log_den
            # x_event - E[x] averaged over the tied events: share1 - p1 = share1 p0 - share0 p1
            score += share1 * p0 - share0 * p1
            info += p1 * p0
    return loglik, score, info


@numba.njit(cache=True)
def _breslow(beta, n0, n1, d0, d1):
    """Breslow log partial likelihood, score and information for a 0/1 covariate.

    Tied events share one risk set; p1, p0 are computed as in :func:`_efron`.
    """
    eb = np.exp(beta)
    emb = np.exp(-beta)
    loglik = 0.0
    score = 0.0
    info = 0.0
    for k in range(n0.shape[0]):
        d = d0[k] + d1[k]
        if beta > 0.0:
            den = n0[k] * emb + n1[k]
            log_den = beta + np.log(den)
            p1 = n1[k] / den
            p0 = n0[k] * emb / den
        else:
            den = n0[k] + n1[k] * eb
            log_den = np.log(den)
            p1 = n1[k] * eb / den
            p0 = n0[k] / den
        loglik += beta * d1[k] - d * log_den
        score += d1[k] * p0 - d0[k] * p1
        info += d * p1 * p0
    return loglik, score, info


@numba.njit(cache=True)
def _partial(beta, n0, n1, d0, d1, efron):
    if efron:
        return _efron(beta, n0, n1, d0, d1)
    return _breslow(beta, n0, n1, d0, d1)


@numba.njit(cache=True)
def _cox_one(time, event, group, include, order, max_iter, tol):
    """Cox fit of one replicate: (log_hr, se, converged)."""
    nan = np.nan
    if not np.any(include):
        return nan, nan, False
    _, n0, n1, d0, d1 = _risk_table(time, event, group, include, order)
    return _cox_newton(n0, n1, d0, d1, max_iter, tol, True)


@numba.njit(cache=True)
def _cox_newton(n0, n1, d0, d1, max_iter, tol, efron):
    """Newton-Raphson with step halving from beta = 0 on a risk table (Efron or Breslow ties).

    Converged when the full Newton step is below ``tol``. When the estimate is infinite the
    Newton step stays near +-1 however far beta goes, so the loop ends at ``max_iter``.
    The rows of the table may come from several strata. Returns (log_hr, se, converged).
    """
    nan = np.nan
    beta = 0.0
    loglik, score, info = _partial(beta, n0, n1, d0, d1, efron)
    if not info > 0.0:  # no events, or every risk set holds one group only: no information
        return nan, nan, False
    max_step = 5.0  # keeps exp(beta) finite on the way; does not change the converged value
    converged = False
    for _ in range(max_iter):
        newton = score / info
        step = min(max(newton, -max_step), max_step)
        new_beta = beta + step
        new_loglik, new_score, new_info = _partial(new_beta, n0, n1, d0, d1, efron)
        # halve only on a real decrease, not on rounding noise of a flat likelihood
        slack = 1e-12 * (1.0 + abs(loglik))
        halvings = 0
        while not new_loglik >= loglik - slack and halvings < 40:
            step *= 0.5
            new_beta = beta + step
            new_loglik, new_score, new_info = _partial(new_beta, n0, n1, d0, d1, efron)
            halvings += 1
        beta, loglik, score, info = new_beta, new_loglik, new_score, new_info
        if not info > 0.0:
            break
        if abs(newton) < tol:
            converged = True
            break
    se = 1.0 / np.sqrt(info) if info > 0.0 else np.inf
    return beta, se, converged


@numba.njit(cache=True, parallel=True)
def _cox_kernel(time, event, group, include, order, max_iter, tol):
    n_rep = time.shape[0]
    log_hr = np.empty(n_rep)
    se = np.empty(n_rep)
    converged = np.empty(n_rep, np.bool_)
    for r in numba.prange(n_rep):
        b, s, c = _cox_one(time[r], event[r], group[r], include[r], order[r], max_iter, tol)
        log_hr[r] = b
        se[r] = s
        converged[r] = c
    return log_hr, se, converged


@numba.njit(cache=True)
def _km_steps_one(time, event, include, order):
    """Event times of one replicate and the Kaplan-Meier survival just after each."""
    no_group = np.zeros(time.shape[0], np.int8)
    event_time, n0, _, d0, _ = _risk_table(time, event, no_group, include, order)
    surv = np.empty(event_time.shape[0])
    s = 1.0
    for k in range(event_time.shape[0]):
        s *= 1.0 - d0[k] / n0[k]
        surv[k] = s
    return event_time, surv


@numba.njit(cache=True, parallel=True)
def _km_kernel(time, event, include, order, grid):
    n_rep = time.shape[0]
    n_grid = grid.shape[0]
    out = np.empty((n_rep, n_grid))
    for r in numba.prange(n_rep):
        if not np.any(include[r]):
            for g in range(n_grid):
                out[r, g] = np.nan
            continue
        event_time, surv = _km_steps_one(time[r], event[r], include[r], order[r])
        for g in range(n_grid):
            # count the event times <= grid[g] (right-continuous: S(t) includes events at t)
            lo = 0
            hi = event_time.shape[0]
            while lo < hi:
                mid = (lo + hi) // 2
                if event_time[mid] <= grid[g]:
                    lo = mid + 1
                else:
                    hi = mid
            out[r, g] = 1.0 if lo == 0 else surv[lo - 1]
    return out


@numba.njit(cache=True)
def _ancova_one(y, baseline, group, include):
    """OLS of y on (1, group, baseline) for one replicate: (estimate, se, n_included)."""
    nan = np.nan
    m = 0
    my = 0.0
    mg = 0.0
    mb = 0.0
    for i in range(y.shape[0]):
        if include[i]:
            m += 1
            my += y[i]
            mg += group[i]
            mb += baseline[i]
    if m < 4:
        return nan, nan, m
    my /= m
    mg /= m
    mb /= m
    sgg = 0.0
    sbb = 0.0
    sgb = 0.0
    sgy = 0.0
    sby = 0.0
    for i in range(y.shape[0]):
        if include[i]:
            g = group[i] - mg
            b = baseline[i] - mb
            v = y[i] - my
            sgg += g * g
            sbb += b * b
            sgb += g * b
            sgy += g * v
            sby += b * v
    det = sgg * sbb - sgb * sgb
    if not det > 1e-12 * sgg * sbb or sgg == 0.0 or sbb == 0.0:  # one arm only, or collinear
        return nan, nan, m
    beta_g = (sbb * sgy - sgb * sby) / det
    beta_b = (sgg * sby - sgb * sgy) / det
    rss = 0.0
    for i in range(y.shape[0]):
        if include[i]:
            res = (y[i] - my) - beta_g * (group[i] - mg) - beta_b * (baseline[i] - mb)
            rss += res * res
    sigma2 = rss / (m - 3)
    return beta_g, np.sqrt(sigma2 * sbb / det), m


@numba.njit(cache=True, parallel=True)
def _ancova_kernel(y, baseline, group, include):
    n_rep = y.shape[0]
    estimate = np.empty(n_rep)
    se = np.empty(n_rep)
    df = np.empty(n_rep, np.int64)
    for r in numba.prange(n_rep):
        e, s, m = _ancova_one(y[r], baseline[r], group[r], include[r])
        estimate[r] = e
        se[r] = s
        df[r] = m - 3
    return estimate, se, df


# --------------------------------------------------------------------------------------------
# Input checks.
# --------------------------------------------------------------------------------------------


def _batch(name: str, x, shape: tuple[int, ...] | None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(
            f"{name}: must be a 2-D array (replicates, patients), got shape {a.shape}; "
            f"for a single replicate pass {name}[None, :]"
        )
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name}: shape {a.shape} differs from time's shape {shape}")
    return a


def _real(name: str, x, shape=None) -> np.ndarray:
    a = _batch(name, x, shape)
    if a.dtype == np.bool_ or not (
        np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
    ):
        raise TypeError(f"{name}: must hold real numbers, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float64)


def _zero_one(name: str, x, shape, dtype) -> np.ndarray:
    a = _batch(name, x, shape)
    if a.dtype == np.bool_:
        return np.ascontiguousarray(a, dtype=dtype)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name}: must be bool or 0/1 integers, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 1):
        raise ValueError(f"{name}: values must be 0 or 1, got values in [{a.min()}, {a.max()}]")
    return np.ascontiguousarray(a, dtype=dtype)


def _include(x, shape) -> np.ndarray:
    if x is None:
        return np.ones(shape, np.bool_)
    return _zero_one("include", x, shape, np.bool_)


def _order(time: np.ndarray) -> np.ndarray:
    """Per-replicate sort order of the times.

    Sorting is done here by numpy (SIMD sorts, several times faster than a sort compiled by
    numba) rather than in the kernels; the order within tied times does not matter.
    """
    return np.argsort(time, axis=1)


def _survival_inputs(time, event, group, include):
    t = _real("time", time)
    e = _zero_one("event", event, t.shape, np.bool_)
    g = None if group is None else _zero_one("group", group, t.shape, np.int8)
    inc = _include(include, t.shape)
    bad = inc & ~(np.isfinite(t) & (t >= 0.0))
    if bad.any():
        r, i = np.argwhere(bad)[0]
        raise ValueError(
            f"time: must be finite and >= 0 for included patients, got {t[r, i]} at "
            f"replicate {r}, patient {i}"
        )
    return t, e, g, inc


# --------------------------------------------------------------------------------------------
# Public functions.
# --------------------------------------------------------------------------------------------


def logrank(time, event, group, include=None, *, rho: float = 0.0, gamma: float = 0.0) -> LogRank:
    """Two-sample log-rank test for each replicate, ties handled exactly (hypergeometric variance).

    Args:
        time: (R, n) months from randomization to event or censoring.
        event: (R, n) bool, True if the event was observed.
        group: (R, n) 0 = control, 1 = active.
        include: (R, n) bool, patients entering the analysis; all by default.
        rho, gamma: Fleming-Harrington weight S(t-)^rho (1 - S(t-))^gamma, S the pooled
            Kaplan-Meier estimate; (0, 0) is the plain log-rank test.

    Returns:
        LogRank(z, observed, expected, variance). z < 0 means fewer events than expected on
        active; z**2 is the chi-square statistic. z is NaN when there are no events (or no
        patients); all fields are NaN for a replicate with nobody included.
    """
    if not (rho >= 0.0 and gamma >= 0.0):
        raise ValueError(f"rho, gamma: must be >= 0, got {rho}, {gamma}")
    t, e, g, inc = _survival_inputs(time, event, group, include)
    return LogRank(*_logrank_kernel(t, e, g, inc, _order(t), float(rho), float(gamma)))


def cox_hr(time, event, group, include=None, *, max_iter: int = 50, tol: float = 1e-9) -> CoxFit:
    """Cox proportional-hazards fit of the single covariate ``group``, Efron's method for ties.

    Newton-Raphson with step halving from log HR = 0, converged when the Newton step is below
    ``tol``.
    When the estimate is infinite (e.g. all events in one arm) the iterations stop at
    ``max_iter`` with ``converged=False`` and the finite value reached; with no information
    at all (no events, or nobody included) log_hr and se are NaN.

    Args:
        time, event, group, include: as for :func:`logrank`.
        max_iter: maximum number of Newton-Raphson iterations.
        tol: convergence threshold on the absolute Newton step (log-HR scale).

    Returns:
        CoxFit(log_hr, se, converged), each of shape (R,).
    """
    check_newton(max_iter, tol)
    t, e, g, inc = _survival_inputs(time, event, group, include)
    return CoxFit(*_cox_kernel(t, e, g, inc, _order(t), int(max_iter), float(tol)))


def check_newton(max_iter: int, tol: float) -> None:
    """The Newton-Raphson settings of the Cox fits."""
    if max_iter < 1:
        raise ValueError(f"max_iter: must be >= 1, got {max_iter}")
    if not tol > 0.0:
        raise ValueError(f"tol: must be > 0, got {tol}")


def kaplan_meier(time, event, include, grid) -> np.ndarray:
    """Kaplan-Meier survival of each replicate (both arms pooled) at the time points ``grid``.

    Right-continuous: S(t) includes the events at time t. Beyond the last observed time the
    last value is carried forward. To get one arm, pass ``include & (group == arm)``.

    Args:
        time, event: as for :func:`logrank`.
        include: (R, n) bool, patients entering the estimate, or None for all.
        grid: 1-D time points (months), in any order.

    Returns:
        (R, G) survival probabilities; rows of replicates with nobody included are NaN.
    """
    t, e, _, inc = _survival_inputs(time, event, None, include)
    gr = np.asarray(grid, dtype=np.float64)
    if gr.ndim != 1:
        raise ValueError(f"grid: must be 1-D, got shape {gr.shape}")
    if not np.all(np.isfinite(gr)):
        raise ValueError("grid: must be finite")
    return _km_kernel(t, e, inc, _order(t), np.ascontiguousarray(gr))


def kaplan_meier_steps(time, event) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier steps of a single sample (1-D arrays), for plots and tests.

    Returns:
        (times, survival): the distinct event times in increasing order and the survival just
        after each (S at that time, right-continuous). S is 1 before the first time.
    """
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event)
    if t.ndim != 1 or e.shape != t.shape:
        raise ValueError(f"time, event: must be 1-D of equal length, got {t.shape}, {e.shape}")
    _, ev, _, inc = _survival_inputs(t[None, :], e[None, :], None, None)
    tt = np.ascontiguousarray(t)
    return _km_steps_one(tt, ev[0], inc[0], np.argsort(tt))


def ancova(y, baseline, group, include=None) -> Ancova:
    """ANCOVA: ordinary least squares of y on (1, group, baseline) for each replicate.

    Args:
        y: (R, n) outcome (e.g. the biomarker at the end of treatment).
        baseline: (R, n) the same measurement at baseline.
        group: (R, n) 0 = control, 1 = active.
        include: (R, n) bool, patients entering the analysis; all by default.

    Returns:
        Ancova(estimate, se, df, t): the group coefficient (active minus control), its standard
        error, residual degrees of freedom n_included - 3 and t = estimate / se. estimate, se
        and t are NaN with fewer than 4 patients, one arm only, or a constant/collinear baseline.
    """
    yy = _real("y", y)
    bb = _real("baseline", baseline, yy.shape)
    g = _zero_one("group", group, yy.shape, np.int8)
    inc = _include(include, yy.shape)
    bad = inc & ~(np.isfinite(yy) & np.isfinite(bb))
    if bad.any():
        r, i = np.argwhere(bad)[0]
        raise ValueError(
            f"y, baseline: must be finite for included patients, got {yy[r, i]}, {bb[r, i]} at "
            f"replicate {r}, patient {i}"
        )
    estimate, se, df = _ancova_kernel(yy, bb, g, inc)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = estimate / se
    return Ancova(estimate, se, df, t)


def p_value(stat, sided: str, df=None) -> np.ndarray:
    """P-values of test statistics, standard normal or Student t with ``df`` degrees of freedom.

    Args:
        stat: statistics, any shape.
        sided: ``"two"`` gives 2 (1 - F(|stat|)); ``"one"`` tests that the active arm is better
            and expects ``stat`` oriented so that benefit is NEGATIVE (log-rank z < 0, log HR < 0,
            a lowering of a biomarker): p = F(stat).
        df: None for the normal distribution, else degrees of freedom (broadcast with stat).

    Returns:
        p-values with the broadcast shape of stat and df (NaN where stat is NaN).
    """
    x = np.asarray(stat, dtype=np.float64)
    dist = stats.norm() if df is None else stats.t(np.asarray(df, dtype=np.float64))
    if sided == "two":
        return 2.0 * dist.sf(np.abs(x))
    if sided == "one":
        return dist.cdf(x)
    raise ValueError(f"sided: must be 'one' or 'two', got {sided!r}")


def wald_ci(estimate, se, level: float, df=None) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Wald confidence interval estimate -/+ q se, q the (1 + level)/2 quantile.

    Args:
        estimate, se: arrays of the same (broadcastable) shape.
        level: confidence level in (0, 1), e.g. 0.95.
        df: None for the normal distribution, else Student t degrees of freedom.

    Returns:
        (lower, upper).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be in (0, 1), got {level}")
    est = np.asarray(estimate, dtype=np.float64)
    s = np.asarray(se, dtype=np.float64)
    p = 0.5 + 0.5 * level
    q = stats.norm.ppf(p) if df is None else stats.t.ppf(p, np.asarray(df, dtype=np.float64))
    return est - q * s, est + q * s
