"""Negative binomial and LWYY recurrent-event analyses against statsmodels, lifelines and plain
Python transcriptions of the estimating equations."""

from __future__ import annotations

import warnings
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter, CoxTimeVaryingFitter
from scipy import optimize, special, stats

from vctrial.trial.analysis import p_value
from vctrial.trial.counts import _digamma, _trigamma, event_counts, lwyy, negbin

NB_RTOL = 1e-7  # statsmodels, Newton-Raphson to 1e-12: agreement is about 1e-15
LWYY_RTOL = 1e-10  # plain transcription
RTOL_SM = 1e-8  # statsmodels PHReg, lifelines


def make_recurrent(seed, n_rep, n, rr=0.75, alpha=0.8, rate=0.05, horizon=36.0, ties=False,
                   uneven=False):
    """Poisson processes with gamma frailty (variance alpha), so counts are NB2; follow-up ends
    between 12 months and the horizon (or earlier, dropout), events after it are kept in the
    array (the analyses must ignore them)."""
    rng = np.random.default_rng(seed)
    group = (rng.random((n_rep, n)) < 0.5).astype(np.int8)
    frailty = rng.gamma(1.0 / alpha, alpha, (n_rep, n)) if alpha > 0 else np.ones((n_rep, n))
    count = rng.poisson(frailty * rate * np.where(group == 1, rr, 1.0) * horizon)
    slots = max(int(count.max()), 1)
    times = rng.uniform(0.0, horizon, (n_rep, n, slots))
    if ties:
        times = np.ceil(times)
    event_times = np.where(np.arange(slots) < count[:, :, None], times, np.nan)
    follow_up = np.minimum(rng.uniform(12.0, horizon, (n_rep, n)),
                           rng.exponential(60.0, (n_rep, n)))
    if ties:
        follow_up = np.ceil(follow_up)
    if uneven:
        include = rng.random((n_rep, n)) < rng.uniform(0.4, 1.0, (n_rep, 1))
    else:
        include = np.ones((n_rep, n), bool)
    return event_times, follow_up, group, include


# ------------------------------------------------------------------------------ negative binomial


def statsmodels_nb(y, follow_up, group):
    """statsmodels' default fit (BFGS), polished by its Newton-Raphson (which, started from its
    own default start, can step to a negative alpha and end in NaN)."""
    x = sm.add_constant(group.astype(float), has_constant="add")
    model = sm.NegativeBinomial(y, x, loglike_method="nb2", exposure=follow_up)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = model.fit(disp=0, maxiter=500).params
        return model.fit(start_params=start, method="newton", maxiter=200, tol=1e-12, disp=0)


@pytest.mark.parametrize("alpha, rate, uneven", [(0.8, 0.05, False), (0.3, 0.1, True),
                                                 (2.0, 0.02, True)],
                         ids=["typical", "mild-dispersion-uneven", "strong-dispersion-uneven"])
def test_negbin_matches_statsmodels_nb2_with_exposure(alpha, rate, uneven):
    ev, fu, group, include = make_recurrent(1, 4, 300, alpha=alpha, rate=rate, uneven=uneven)
    y = event_counts(ev, fu)
    res = negbin(y, fu, group, include)
    assert res.converged.all()
    for r in range(4):
        k = include[r]
        ref = statsmodels_nb(y[r][k], fu[r][k], group[r][k])
        np.testing.assert_allclose(res.log_rr[r], ref.params[1], rtol=NB_RTOL)
        np.testing.assert_allclose(res.log_rate0[r], ref.params[0], rtol=NB_RTOL)
        np.testing.assert_allclose(res.alpha[r], ref.params[2], rtol=NB_RTOL)
        np.testing.assert_allclose(res.se[r], ref.bse[1], rtol=NB_RTOL)
        np.testing.assert_allclose(res.z[r], ref.tvalues[1], rtol=NB_RTOL)
        np.testing.assert_allclose(p_value(res.z[r], "two"), ref.pvalues[1], rtol=NB_RTOL)
        ci = np.exp(ref.conf_int(0.05)[1])
        np.testing.assert_allclose([res.lower[r], res.upper[r]], ci, rtol=NB_RTOL)
        np.testing.assert_allclose(res.rate_ratio[r], np.exp(ref.params[1]), rtol=NB_RTOL)


def test_negbin_large_counts_use_the_special_functions_and_still_match_statsmodels():
    ev, fu, group, include = make_recurrent(2, 3, 200, alpha=0.5, rate=3.0)
    y = event_counts(ev, fu)
    assert y.max() > 200  # beyond the exact sums (counts below 64)
    res = negbin(y, fu, group, level=0.9)
    for r in range(3):
        ref = statsmodels_nb(y[r], fu[r], group[r])
        np.testing.assert_allclose(res.log_rr[r], ref.params[1], rtol=NB_RTOL)
        np.testing.assert_allclose(res.alpha[r], ref.params[2], rtol=NB_RTOL)
        np.testing.assert_allclose(res.se[r], ref.bse[1], rtol=NB_RTOL)
        np.testing.assert_allclose([res.lower[r], res.upper[r]],
                                   np.exp(ref.conf_int(0.1)[1]), rtol=NB_RTOL)


def test_digamma_and_trigamma_match_scipy():
    x = np.array([1e-6, 1e-3, 0.1, 0.5, 1.0, 3.7, 9.999, 10.0, 10.5, 64.0, 1e3, 1e6, 1e12])
    for v in x:
        assert _digamma(v) == pytest.approx(special.digamma(v), rel=1e-14, abs=1e-14)
        assert _trigamma(v) == pytest.approx(special.polygamma(1, v), rel=1e-14)


def test_negbin_zero_follow_up_patients_contribute_nothing():
    ev, fu, group, include = make_recurrent(3, 2, 200)
    y = event_counts(ev, fu)
    fu0, y0 = fu.copy(), y.copy()
    fu0[:, :30] = 0.0
    y0[:, :30] = 0
    dropped = include.copy()
    dropped[:, :30] = False
    a = negbin(y0, fu0, group)
    b = negbin(y0, fu0, group, dropped)
    for x, z in zip(a, b):
        np.testing.assert_array_equal(x, z)


def test_negbin_without_overdispersion_is_the_poisson_fit_on_the_boundary():
    """Counts less variable than Poisson: the likelihood is largest at alpha = 0."""
    rng = np.random.default_rng(4)
    group = np.tile(np.array([0, 1], np.int8), (2, 100))
    fu = rng.uniform(1.0, 2.0, (2, 200))
    y = rng.binomial(3, 0.4, (2, 200))  # variance 0.72 < mean 1.2
    res = negbin(y, fu, group)
    assert res.converged.all()
    np.testing.assert_array_equal(res.alpha, 0.0)
    for r in range(2):
        x = sm.add_constant(group[r].astype(float))
        ref = sm.GLM(y[r], x, family=sm.families.Poisson(), offset=np.log(fu[r])).fit(tol=1e-12)
        np.testing.assert_allclose(res.log_rr[r], ref.params[1], rtol=1e-10)
        np.testing.assert_allclose(res.log_rate0[r], ref.params[0], rtol=1e-10)
        np.testing.assert_allclose(res.se[r], ref.bse[1], rtol=1e-10)


def test_negbin_degenerate_replicates_give_nan_not_converged():
    ev, fu, group, include = make_recurrent(5, 4, 100)
    y = event_counts(ev, fu)
    y[1, group[1] == 1] = 0  # no events on active
    y[2] = 0  # no events at all
    include[3] = False
    res = negbin(y, fu, group, include)
    assert res.converged[0] and not res.converged[1:].any()
    for field in (res.log_rr, res.se, res.z, res.rate_ratio, res.lower, res.alpha):
        assert np.isfinite(field[0]) and np.all(np.isnan(field[1:]))


def test_negbin_invalid_inputs_name_the_argument():
    ev, fu, group, include = make_recurrent(6, 2, 20)
    y = event_counts(ev, fu)
    with pytest.raises(TypeError, match="counts: must hold integers"):
        negbin(y.astype(float), fu, group)
    bad = y.copy()
    bad[1, 4] = -1
    with pytest.raises(ValueError, match="replicate 1, patient 4"):
        negbin(bad, fu, group)
    bad_fu = fu.copy()
    bad_fu[0, 2] = np.nan
    with pytest.raises(ValueError, match="follow_up: must be finite"):
        negbin(y, bad_fu, group)
    bad_fu[0, 2] = 0.0
    bad = y.copy()
    bad[0, 2] = 1
    with pytest.raises(ValueError, match="0 with zero follow-up"):
        negbin(bad, bad_fu, group)
    with pytest.raises(ValueError, match="level"):
        negbin(y, fu, group, level=95)


# ------------------------------------------------------------------------------ LWYY references


def plain_lwyy(event_times, follow_up, z):
    """LWYY for one replicate, transcribed from Lin, Wei, Yang and Ying (2000), any covariate.

    U(beta) = sum_i sum_{events t of i} [Z_i - S1(beta, t) / S0(beta, t)], S_k(beta, t) =
    sum_j Y_j(t) Z_j^k exp(beta Z_j), Y_j(t) = 1{follow_up_j >= t}, solved by bisection;
    A = -dU/dbeta; W_i = int (Z_i - Zbar) dM_i with dM_i = dN_i - Y_i exp(beta Z_i) dmu0,
    dmu0(t) = dN.(t) / S0(t); variance A^-1 (sum W_i^2) A^-1. Returns (beta, se, se_model).
    """
    n = len(follow_up)
    events = [(t, i) for i in range(n) for t in event_times[i]
              if np.isfinite(t) and t <= follow_up[i]]

    def sums(beta, t):
        at_risk = [j for j in range(n) if follow_up[j] >= t]
        return tuple(sum(z[j] ** k * np.exp(beta * z[j]) for j in at_risk) for k in range(3))

    def score(beta):
        total = 0.0
        for t, i in events:
            s0, s1, _ = sums(beta, t)
            total += z[i] - s1 / s0
        return total

    beta = optimize.brentq(score, -5.0, 5.0, xtol=1e-15, rtol=1e-15)
    s = {t: sums(beta, t) for t, _ in events}
    a = sum(s[t][2] / s[t][0] - (s[t][1] / s[t][0]) ** 2 for t, _ in events)
    w = np.zeros(n)
    for i in range(n):
        for t, j in events:
            s0, s1, _ = s[t]
            if j == i:
                w[i] += z[i] - s1 / s0
            if follow_up[i] >= t:
                w[i] -= np.exp(beta * z[i]) * (z[i] - s1 / s0) / s0
    return beta, np.sqrt(np.sum(w**2)) / a, 1.0 / np.sqrt(a)


def counting_process(event_times, follow_up, group):
    """(start, stop] rows of one replicate, one per gap between a patient's events."""
    rows = []
    for i in range(len(follow_up)):
        times = sorted(t for t in event_times[i] if np.isfinite(t) and t <= follow_up[i])
        start = 0.0
        for t in times:
            rows.append((start, t, 1, group[i], i))
            start = t
        if follow_up[i] > start:
            rows.append((start, follow_up[i], 0, group[i], i))
    return pd.DataFrame(rows, columns=["start", "stop", "event", "group", "id"])


def statsmodels_lwyy(event_times, follow_up, group):
    """PHReg, Breslow ties, on counting-process rows with the cluster-robust covariance.

    PHReg counts a row at risk at its entry time (entry <= t), so the entries are moved just
    after the previous event; rows whose interval holds no event time add nothing to the fit
    but get NaN score residuals in PHReg, so they are dropped.
    """
    df = counting_process(event_times, follow_up, group)
    u = np.unique(df.stop[df.event == 1])
    df = df[np.searchsorted(u, df.stop, "right") > np.searchsorted(u, df.start, "right")]
    entry = np.where(df.start > 0, np.nextafter(df.start.to_numpy(), np.inf), 0.0)
    model = sm.PHReg(df.stop.to_numpy(), df[["group"]].to_numpy(float),
                     status=df.event.to_numpy(float), entry=entry, ties="breslow")
    fit = model.fit(groups=df.id.to_numpy())
    return fit.params[0], fit.bse[0]


# ------------------------------------------------------------------------------ LWYY


@pytest.mark.parametrize("ties, uneven", [(False, False), (True, True)],
                         ids=["continuous", "ties-and-uneven"])
def test_lwyy_matches_a_plain_transcription_of_the_estimating_equation(ties, uneven):
    ev, fu, group, include = make_recurrent(10 + ties, 3, 120, ties=ties, uneven=uneven)
    if ties:  # also two events of one patient at the same time
        ev[:, :, -1] = np.where(np.isfinite(ev[:, :, 0]), ev[:, :, 0], ev[:, :, -1])
    res = lwyy(ev, fu, group, include)
    assert res.converged.all()
    for r in range(3):
        k = include[r]
        beta, se, se_model = plain_lwyy(ev[r][k], fu[r][k], group[r][k].astype(float))
        np.testing.assert_allclose(res.log_rr[r], beta, rtol=LWYY_RTOL)
        np.testing.assert_allclose(res.se[r], se, rtol=LWYY_RTOL)
        np.testing.assert_allclose(res.se_model[r], se_model, rtol=LWYY_RTOL)


@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "ties-between-patients"])
def test_lwyy_matches_statsmodels_phreg_breslow_cluster_robust(ties):
    ev, fu, group, include = make_recurrent(20 + ties, 3, 300, ties=ties, uneven=True)
    if ties:  # no repeated time within a patient: a (t, t] row is not a counting-process row
        for idx in np.ndindex(ev.shape[:2]):
            u = np.unique(ev[idx][np.isfinite(ev[idx])])
            ev[idx] = np.nan
            ev[idx][: len(u)] = u
    res = lwyy(ev, fu, group, include)
    for r in range(3):
        k = include[r]
        beta, se = statsmodels_lwyy(ev[r][k], fu[r][k], group[r][k])
        np.testing.assert_allclose(res.log_rr[r], beta, rtol=RTOL_SM)
        np.testing.assert_allclose(res.se[r], se, rtol=RTOL_SM)



def test_lwyy_estimate_and_model_se_match_lifelines_counting_process():
    """lifelines fits the same partial likelihood on (start, stop] rows (Efron = Breslow without
    ties). Its cluster-robust SE is not compared: with an entry column, lifelines 0.30's score
    residuals ignore the entry times (the compensator runs from time 0 on every row), which
    overstates the LWYY SE (seen: by 30-65%); statsmodels' PHReg above gets it right."""
    ev, fu, group, include = make_recurrent(30, 3, 200)
    res = lwyy(ev, fu, group, include)
    tight = {"precision": 1e-20, "r_precision": 1e-15}  # lifelines' defaults stop ~1e-7 short
    for r in range(3):
        df = counting_process(ev[r], fu[r], group[r])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cph = CoxPHFitter().fit(df.drop(columns="id"), "stop", "event", entry_col="start",
                                    fit_options=tight)
            ctv = CoxTimeVaryingFitter().fit(df, id_col="id", event_col="event",
                                             start_col="start", stop_col="stop",
                                             fit_options=tight)
        np.testing.assert_allclose(res.log_rr[r], cph.params_["group"], rtol=1e-8)
        np.testing.assert_allclose(res.log_rr[r], ctv.params_["group"], rtol=1e-8)
        np.testing.assert_allclose(res.se_model[r], ctv.standard_errors_["group"], rtol=1e-8)


def test_lwyy_input_layout_does_not_matter():
    """Order of a patient's times, NaN or inf padding, extra padding, events after follow-up."""
    ev, fu, group, include = make_recurrent(40, 3, 150, uneven=True)
    base = lwyy(ev, fu, group, include)
    rng = np.random.default_rng(0)
    shuffled = rng.permuted(ev, axis=2)
    padded = np.concatenate([np.where(np.isnan(shuffled), np.inf, shuffled),
                             np.full(ev.shape[:2] + (3,), np.nan)], axis=2)
    inside = np.where(ev <= fu[:, :, None], ev, np.nan)
    for other in (shuffled, padded, inside):
        res = lwyy(other, fu, group, include)
        for a, b in zip(base, res):
            np.testing.assert_array_equal(a, b)
    assert np.any(ev > fu[:, :, None])  # the data do hold events after follow-up


def test_event_counts():
    ev = np.array([[[1.0, 5.0, np.nan], [np.nan, np.nan, np.nan], [2.0, 2.0, np.inf]]])
    np.testing.assert_array_equal(event_counts(ev, [[4.0, 9.0, 2.0]]), [[1, 0, 2]])


def test_lwyy_and_negbin_estimate_the_same_rate_ratio():
    """Constant rates with gamma frailty: both target the marginal rate ratio (0.75)."""
    ev, fu, group, include = make_recurrent(41, 1, 20000, rr=0.75)
    lw = lwyy(ev, fu, group)
    nb = negbin(event_counts(ev, fu), fu, group)
    for fit in (lw, nb):
        assert abs(fit.log_rr[0] - np.log(0.75)) < 3 * fit.se[0]
    assert lw.se[0] > 1.3 * lw.se_model[0]  # the frailty makes the model SE too small


def test_lwyy_degenerate_replicates():
    ev, fu, group, include = make_recurrent(42, 4, 100)
    ev[1, group[1] == 1] = np.nan  # no events on active: the estimate is -infinity
    ev[2] = np.nan  # no events
    include[3] = False
    res = lwyy(ev, fu, group, include)
    assert res.converged[0] and not res.converged[1:].any()
    assert res.log_rr[1] < -10
    for field in (res.log_rr, res.se, res.se_model):
        assert np.all(np.isnan(field[2:]))


def test_lwyy_invalid_inputs_name_the_argument():
    ev, fu, group, include = make_recurrent(43, 2, 20)
    with pytest.raises(ValueError, match="event_times: must be a 3-D array"):
        lwyy(ev[:, :, 0], fu, group)
    bad = ev.copy()
    bad[1, 3, 0] = 0.0
    with pytest.raises(ValueError, match="replicate 1, patient 3, slot 0"):
        lwyy(bad, fu, group)
    include[1, 3] = False
    lwyy(bad, fu, group, include)  # excluded patients are not checked
    with pytest.raises(ValueError, match="group: shape"):
        lwyy(ev, fu, group[:, :5])


# ------------------------------------------------------------------------------ batching, threads


def count_analyses(ev, fu, group, include):
    return (*negbin(event_counts(ev, fu), fu, group, include), *lwyy(ev, fu, group, include))


def test_batch_gives_the_same_results_as_each_replicate_alone():
    data = make_recurrent(50, 5, 150, ties=True, uneven=True)
    batch = count_analyses(*data)
    for r in range(5):
        alone = count_analyses(*(x[r: r + 1] for x in data))
        for b, a in zip(batch, alone):
            np.testing.assert_array_equal(b[r: r + 1], a)


def test_results_identical_with_one_and_two_threads():
    data = make_recurrent(51, 16, 150, uneven=True)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = count_analyses(*data)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = count_analyses(*data)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ Monte Carlo


def within_mc_interval(rejected, n_rep, level):
    lo, hi = stats.binom.ppf([0.0005, 0.9995], n_rep, level)
    return lo <= rejected <= hi, (rejected, lo, hi)


@pytest.mark.slow
def test_negbin_wald_test_level_under_the_null_within_its_monte_carlo_interval():
    n_rep = 4000
    ev, fu, group, include = make_recurrent(60, n_rep, 300, rr=1.0, alpha=0.8)
    res = negbin(event_counts(ev, fu), fu, group)
    assert res.converged.all()
    ok, info = within_mc_interval(int(np.sum(p_value(res.z, "two") < 0.05)), n_rep, 0.05)
    assert ok, info


@pytest.mark.slow
def test_negbin_interval_covers_the_true_rate_ratio_at_its_level():
    n_rep = 4000
    ev, fu, group, include = make_recurrent(61, n_rep, 300, rr=0.7, alpha=1.5)
    res = negbin(event_counts(ev, fu), fu, group, level=0.9)
    missed = int(np.sum((res.lower > 0.7) | (res.upper < 0.7)))
    ok, info = within_mc_interval(missed, n_rep, 0.1)
    assert ok, info


@pytest.mark.slow
def test_lwyy_robust_test_level_under_the_null_with_frailty():
    """Robust SE: nominal level; the model-based SE would reject far too often."""
    n_rep = 4000
    ev, fu, group, include = make_recurrent(62, n_rep, 300, rr=1.0, alpha=0.8)
    res = lwyy(ev, fu, group)
    assert res.converged.all()
    ok, info = within_mc_interval(int(np.sum(p_value(res.z, "two") < 0.05)), n_rep, 0.05)
    assert ok, info
    naive = np.mean(p_value(res.log_rr / res.se_model, "two") < 0.05)
    assert naive > 0.10  # 0.157 here


# ------------------------------------------------------------------------------ covariates, strata


def make_adjusted(seed, n_rep, n, rr=0.75, alpha=0.6, rate=0.06, horizon=36.0, n_strata=3,
                  ties=False, uneven=True):
    """Recurrent events whose rate depends on two covariates (a standardized continuous one and a
    binary one) and on the stratum, with gamma frailty: (event_times, follow_up, group, include,
    covariates (R, n, 2), strata)."""
    rng = np.random.default_rng(seed)
    group = (rng.random((n_rep, n)) < 0.5).astype(np.int8)
    cov = np.stack([rng.standard_normal((n_rep, n)), (rng.random((n_rep, n)) < 0.4).astype(float)],
                   axis=2)
    strata = rng.integers(0, n_strata, (n_rep, n))
    frailty = rng.gamma(1.0 / alpha, alpha, (n_rep, n))
    mult = np.exp(0.4 * cov[:, :, 0] + 0.6 * cov[:, :, 1] + 0.5 * strata) * np.where(group == 1, rr, 1.0)
    count = rng.poisson(frailty * mult * rate * horizon)
    slots = max(int(count.max()), 1)
    times = rng.uniform(0.0, horizon, (n_rep, n, slots))
    if ties:
        times = np.ceil(times)
    event_times = np.where(np.arange(slots) < count[:, :, None], times, np.nan)
    follow_up = np.minimum(rng.uniform(12.0, horizon, (n_rep, n)), rng.exponential(60.0, (n_rep, n)))
    if ties:
        follow_up = np.ceil(follow_up)
    include = (rng.random((n_rep, n)) < 0.85) if uneven else np.ones((n_rep, n), bool)
    return event_times, follow_up, group, include, cov, strata


def statsmodels_nb_design(y, exposure, x):
    """statsmodels NB2 on the design x (intercept first): its default fit (BFGS), then its
    Newton-Raphson to 1e-12 from there."""
    model = sm.NegativeBinomial(y, x, loglike_method="nb2", exposure=exposure)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = model.fit(disp=0, maxiter=1000).params
        return model.fit(start_params=start, method="newton", maxiter=200, tol=1e-12, disp=0)


def stratum_dummies(strata):
    """Indicators of each stratum present but the first."""
    return np.column_stack([strata == k for k in np.unique(strata)[1:]]).astype(float)


@pytest.mark.parametrize("use_cov, use_strata", [(True, True), (True, False), (False, True)],
                         ids=["covariates-and-strata", "covariates", "strata"])
def test_negbin_with_covariates_and_strata_matches_statsmodels_nb2(use_cov, use_strata):
    ev, fu, group, include, cov, strata = make_adjusted(70, 3, 400)
    y = event_counts(ev, fu)
    res = negbin(y, fu, group, include, covariates=cov if use_cov else None,
                 strata=strata if use_strata else None, level=0.9)
    assert res.converged.all()
    for r in range(3):
        k = include[r]
        cols = [np.ones(k.sum()), group[r][k].astype(float)]
        cols += [cov[r][k]] if use_cov else []
        cols += [stratum_dummies(strata[r][k])] if use_strata else []
        ref = statsmodels_nb_design(y[r][k], fu[r][k], np.column_stack(cols))
        np.testing.assert_allclose(res.log_rr[r], ref.params[1], rtol=NB_RTOL)
        np.testing.assert_allclose(res.se[r], ref.bse[1], rtol=NB_RTOL)
        np.testing.assert_allclose(res.alpha[r], ref.params[-1], rtol=NB_RTOL)
        np.testing.assert_allclose(res.z[r], ref.tvalues[1], rtol=NB_RTOL)
        np.testing.assert_allclose([res.lower[r], res.upper[r]], np.exp(ref.conf_int(0.1)[1]),
                                   rtol=NB_RTOL)
    # the adjustment matters on these data (rates depend on the covariates and strata)
    crude = negbin(y, fu, group, include)
    assert np.max(np.abs(crude.log_rr - res.log_rr)) > 1e-3


def test_negbin_stratum_without_events_is_left_out_like_its_limit():
    """A stratum with no events: its coefficient is -infinity; the fit is that of the others."""
    ev, fu, group, include, cov, strata = make_adjusted(71, 2, 400)
    y = event_counts(ev, fu)
    y[strata == 1] = 0
    res = negbin(y, fu, group, include, covariates=cov, strata=strata)
    assert res.converged.all()
    for r in range(2):
        k = include[r] & (strata[r] != 1)
        x = np.column_stack([np.ones(k.sum()), group[r][k], cov[r][k], stratum_dummies(strata[r][k])])
        ref = statsmodels_nb_design(y[r][k], fu[r][k], x)
        np.testing.assert_allclose(res.log_rr[r], ref.params[1], rtol=NB_RTOL)
        np.testing.assert_allclose(res.se[r], ref.bse[1], rtol=NB_RTOL)
        np.testing.assert_allclose(res.alpha[r], ref.params[-1], rtol=NB_RTOL)


def test_negbin_adjusted_without_overdispersion_is_the_poisson_fit():
    rng = np.random.default_rng(72)
    group = np.tile(np.array([0, 1], np.int8), (2, 150))
    fu = rng.uniform(1.0, 2.0, (2, 300))
    cov = rng.standard_normal((2, 300, 1))
    y = rng.binomial(3, 0.4, (2, 300))  # variance 0.72 < mean 1.2
    res = negbin(y, fu, group, covariates=cov)
    assert res.converged.all()
    np.testing.assert_array_equal(res.alpha, 0.0)
    for r in range(2):
        x = np.column_stack([np.ones(300), group[r], cov[r]])
        ref = sm.GLM(y[r], x, family=sm.families.Poisson(), offset=np.log(fu[r])).fit(tol=1e-12)
        np.testing.assert_allclose(res.log_rr[r], ref.params[1], rtol=1e-9)
        np.testing.assert_allclose(res.se[r], ref.bse[1], rtol=1e-9)


def statsmodels_lwyy_adjusted(event_times, follow_up, x, strata=None):
    """PHReg (Breslow ties, cluster-robust covariance by patient) on counting-process rows with
    the columns of x, stratified by ``strata``: as :func:`statsmodels_lwyy`, the entries moved
    just after the previous event and the rows holding no event time of their stratum dropped."""
    s = np.zeros(len(follow_up), np.int64) if strata is None else np.asarray(strata)
    rows = []
    for i in range(len(follow_up)):
        times = sorted(t for t in event_times[i] if np.isfinite(t) and t <= follow_up[i])
        start = 0.0
        for t in times:
            rows.append((start, t, 1.0, s[i], i))
            start = t
        if follow_up[i] > start:
            rows.append((start, follow_up[i], 0.0, s[i], i))
    start, stop, event, stratum, pid = (np.array(c) for c in zip(*rows))
    keep = np.zeros(len(stop), bool)
    for k in np.unique(stratum):
        here = stratum == k
        u = np.unique(stop[here & (event == 1.0)])
        keep[here] = np.searchsorted(u, stop[here], "right") > np.searchsorted(u, start[here], "right")
    start, stop, event, stratum, pid = (c[keep] for c in (start, stop, event, stratum, pid))
    entry = np.where(start > 0, np.nextafter(start, np.inf), 0.0)
    model = sm.PHReg(stop, np.asarray(x, float)[pid], status=event, entry=entry, ties="breslow",
                     strata=None if strata is None else stratum)
    fit = model.fit(groups=pid)
    return fit.params[0], fit.bse[0]


@pytest.mark.parametrize("use_cov, use_strata, ties", [(True, False, False), (True, False, True),
                                                       (False, True, False), (True, True, False),
                                                       (True, True, True)],
                         ids=["covariates", "covariates-ties", "stratified", "stratified-covariates",
                              "stratified-covariates-ties"])
def test_lwyy_with_covariates_and_strata_matches_statsmodels_phreg_cluster_robust(use_cov, use_strata,
                                                                                  ties):
    ev, fu, group, include, cov, strata = make_adjusted(80 + ties, 3, 300, ties=ties)
    if ties:  # no repeated time within a patient: a (t, t] row is not a counting-process row
        for idx in np.ndindex(ev.shape[:2]):
            u = np.unique(ev[idx][np.isfinite(ev[idx])])
            ev[idx] = np.nan
            ev[idx][: len(u)] = u
    res = lwyy(ev, fu, group, include, covariates=cov if use_cov else None,
               strata=strata if use_strata else None)
    assert res.converged.all()
    for r in range(3):
        k = include[r]
        x = np.column_stack([group[r][k]] + ([cov[r][k]] if use_cov else []))
        beta, se = statsmodels_lwyy_adjusted(ev[r][k], fu[r][k], x, strata[r][k] if use_strata else None)
        np.testing.assert_allclose(res.log_rr[r], beta, rtol=RTOL_SM)
        np.testing.assert_allclose(res.se[r], se, rtol=RTOL_SM)
    crude = lwyy(ev, fu, group, include)
    assert np.max(np.abs(crude.log_rr - res.log_rr)) > 1e-3


def test_lwyy_adjusted_model_se_matches_lifelines_counting_process():
    """The model-based (Andersen-Gill) SE: lifelines' information on the same (start, stop] rows."""
    ev, fu, group, include, cov, strata = make_adjusted(82, 2, 200, uneven=False)
    res = lwyy(ev, fu, group, covariates=cov)
    tight = {"precision": 1e-20, "r_precision": 1e-15}
    for r in range(2):
        df = counting_process(ev[r], fu[r], group[r])
        df["x0"] = cov[r][df.id, 0]
        df["x1"] = cov[r][df.id, 1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctv = CoxTimeVaryingFitter().fit(df, id_col="id", event_col="event", start_col="start",
                                             stop_col="stop", fit_options=tight)
        np.testing.assert_allclose(res.log_rr[r], ctv.params_["group"], rtol=1e-8)
        np.testing.assert_allclose(res.se_model[r], ctv.standard_errors_["group"], rtol=1e-8)


def test_one_stratum_and_no_covariates_give_the_unadjusted_fits():
    ev, fu, group, include, cov, strata = make_adjusted(83, 3, 300)
    y = event_counts(ev, fu)
    one = np.full(fu.shape, 7)
    for a, b in [(negbin(y, fu, group, include), negbin(y, fu, group, include, strata=one)),
                 (lwyy(ev, fu, group, include), lwyy(ev, fu, group, include, strata=one))]:
        for x, z in zip(a, b):
            np.testing.assert_allclose(x, z, rtol=1e-9)


def test_a_constant_covariate_is_left_out_of_the_adjusted_fits():
    ev, fu, group, include, cov, strata = make_adjusted(84, 2, 300)
    y = event_counts(ev, fu)
    extra = np.concatenate([cov, np.full(cov.shape[:2] + (1,), 3.0)], axis=2)
    for fit in (negbin, lwyy):
        data = (y if fit is negbin else ev, fu, group, include)
        a = fit(*data, covariates=cov, strata=strata)
        b = fit(*data, covariates=extra, strata=strata)
        assert a.converged.all()
        for x, z in zip(a, b):
            np.testing.assert_allclose(x, z, rtol=1e-9)


def test_adjusted_degenerate_replicates_give_nan_not_converged():
    ev, fu, group, include, cov, strata = make_adjusted(85, 4, 150)
    ev[1, group[1] == 1] = np.nan  # no events on active
    ev[2] = np.nan  # no events
    include[3] = False
    y = event_counts(ev, fu)
    for res in (negbin(y, fu, group, include, covariates=cov, strata=strata),
                lwyy(ev, fu, group, include, covariates=cov, strata=strata)):
        assert res.converged[0] and not res.converged[1:].any()
        assert np.isfinite(res.log_rr[0]) and np.all(np.isnan(res.log_rr[1:]))
        assert np.all(np.isnan(res.se[1:]))


def test_adjusted_fits_batch_and_threads_do_not_change_results():
    ev, fu, group, include, cov, strata = make_adjusted(86, 8, 150, ties=True)
    y = event_counts(ev, fu)

    def both(s=slice(None)):
        return (*negbin(y[s], fu[s], group[s], include[s], covariates=cov[s], strata=strata[s]),
                *lwyy(ev[s], fu[s], group[s], include[s], covariates=cov[s], strata=strata[s]))

    batch = both()
    for r in (0, 5):
        for b, a in zip(batch, both(slice(r, r + 1))):
            np.testing.assert_array_equal(b[r: r + 1], a)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = both()
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, batch):
        np.testing.assert_array_equal(a, b)


def test_adjusted_invalid_inputs_name_the_argument():
    ev, fu, group, include, cov, strata = make_adjusted(87, 2, 30)
    y = event_counts(ev, fu)
    with pytest.raises(ValueError, match="covariates: must have shape"):
        negbin(y, fu, group, covariates=cov[:, :, 0])
    with pytest.raises(ValueError, match="covariates: must have shape"):
        lwyy(ev, fu, group, covariates=cov[:, :10])
    bad = cov.copy()
    bad[1, 4, 0] = np.nan
    with pytest.raises(ValueError, match="covariates: must be finite .* replicate 1, patient 4"):
        lwyy(ev, fu, group, covariates=bad)
    include[1, 4] = False
    lwyy(ev, fu, group, include, covariates=bad)  # excluded patients are not checked
    with pytest.raises(TypeError, match="strata: must hold integer labels"):
        negbin(y, fu, group, strata=strata.astype(float))


def test_a_covariate_constant_within_every_stratum_is_absorbed_by_the_strata():
    """E.g. the stratification factor also named as a covariate: the fits are those without it."""
    ev, fu, group, include, cov, strata = make_adjusted(88, 2, 300)
    y = event_counts(ev, fu)
    extra = np.concatenate([cov, (strata == 1)[:, :, None].astype(float)], axis=2)
    for fit in (negbin, lwyy):
        data = (y if fit is negbin else ev, fu, group, include)
        a = fit(*data, covariates=cov, strata=strata)
        b = fit(*data, covariates=extra, strata=strata)
        assert b.converged.all()
        for x, z in zip(a, b):
            np.testing.assert_allclose(x, z, rtol=1e-9)


# ------------------------------------------------------------------------------ simulated trials


def _simulated_count_trial(method, **overrides):
    from vctrial.spec.protocol import load_protocol
    from vctrial.trial.run import simulate_chunk, simulate_patients

    path = Path(__file__).resolve().parents[1] / "protocols" / "hf_total_hospitalizations.yaml"
    p = load_protocol(path, overrides={"sample_size": 600, "analysis.method": method, **overrides})
    out = simulate_chunk(p, 17, np.arange(2))
    trial, cohort, _ = simulate_patients(p, 17, np.arange(2))
    lost = np.minimum(trial.dropout, np.take_along_axis(trial.paths.death_time, trial.arm[..., None].astype(int),
                                                        axis=2)[:, :, 0])
    follow = np.where(trial.enrolled, np.minimum(lost, 24.0), 0.0)
    times = np.take_along_axis(trial.paths.event_times, trial.arm[..., None, None].astype(int), axis=2)[:, :, 0]
    return out, trial, cohort, follow, times


@pytest.mark.parametrize("method", ["negative_binomial", "lwyy"])
@pytest.mark.parametrize("stratified", [False, True], ids=["adjusted", "adjusted-stratified"])
def test_count_endpoint_with_covariates_reproduces_statsmodels_on_a_simulated_trial(method, stratified):
    names = ["age", "lvef_pct", "egfr_ml_min"]
    extra = {"randomization.strata": ["sex_female"], "analysis.stratified": True} if stratified else {}
    out, trial, cohort, follow, times = _simulated_count_trial(method, **{"analysis.covariates": names},
                                                               **extra)
    x_cov = np.stack([cohort.column(c) for c in names], axis=2)
    strata = cohort.column("sex_female").astype(int)
    y = event_counts(times, follow)
    assert out["n_events"].sum() == y.sum() > 0
    for r in range(2):
        k = trial.enrolled[r] & (follow[r] > 0)
        g = trial.arm[r][k].astype(float)
        if method == "negative_binomial":
            cols = [np.ones(k.sum()), g, x_cov[r][k]] + ([strata[r][k][:, None] == 1] if stratified else [])
            ref = statsmodels_nb_design(y[r][k], follow[r][k] / 12.0, np.column_stack(cols).astype(float))
            b, se = ref.params[1], ref.bse[1]
            assert out["dispersion"][r] == pytest.approx(ref.params[-1], rel=1e-6)
        else:
            b, se = statsmodels_lwyy_adjusted(times[r][k], follow[r][k], np.column_stack([g, x_cov[r][k]]),
                                              strata[r][k] if stratified else None)
        assert np.log(out["estimate"][r]) == pytest.approx(b, rel=1e-6)
        assert out["statistic"][r] == pytest.approx(b / se, rel=1e-6)
        assert out["p_value"][r] == pytest.approx(stats.norm.cdf(b / se), rel=1e-6)


@pytest.mark.parametrize("edit, key", [
    ("  covariates: [age, hba1c_pct]\n", "analysis.covariates[1]"),
    ("  stratified: true\n", "analysis.stratified"),
], ids=["unknown-covariate", "stratified-without-strata"])
def test_bad_count_analysis_options_exit_2_naming_the_key(tmp_path, edit, key):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    text = (root / "protocols" / "hf_total_hospitalizations.yaml").read_text()
    text = text.replace("../cohorts/", f"{root}/cohorts/").replace("../diseases/", f"{root}/diseases/")
    path = tmp_path / "counts.yaml"
    path.write_text(text + edit)
    proc = subprocess.run([sys.executable, "-m", "vctrial.cli", "validate", str(path)], capture_output=True,
                          text=True)
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr and key in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
