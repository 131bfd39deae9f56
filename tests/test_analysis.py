"""Trial analyses against independent references: lifelines, statsmodels, scipy, plain Python."""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import logrank_test
from scipy import stats

from vctrial.trial.analysis import (
    ancova,
    cox_hr,
    kaplan_meier,
    kaplan_meier_steps,
    logrank,
    p_value,
    wald_ci,
)

RTOL = 1e-6
# Cox estimates near 0 are compared with a small absolute tolerance too. lifelines' default
# stopping rule can end Newton-Raphson early (seen: log HR off by 4e-5 with heavy ties, where
# statsmodels' PHReg and vctrial agree to 1e-15), so the reference is fitted with precision 1e-12.
COX_ATOL = 1e-8
LIFELINES_COX_OPTIONS = {"precision": 1e-12}


def make_batch(seed, n_rep, n, hr=0.75, integer_times=False, uneven=False):
    """Exponential event times (control hazard 0.1/month), exponential censoring (~30%)."""
    rng = np.random.default_rng(seed)
    group = (rng.random((n_rep, n)) < 0.5).astype(np.int8)
    hazard = np.where(group == 1, 0.1 * hr, 0.1)
    t_event = rng.exponential(1.0 / hazard)
    t_censor = rng.exponential(1.0 / 0.04, size=(n_rep, n))
    time = np.minimum(t_event, t_censor)
    event = t_event <= t_censor
    if integer_times:
        time = np.ceil(time)  # heavy ties; ceil keeps times > 0
    if uneven:  # replicates of different sizes, excluded patients scattered
        share = rng.uniform(0.3, 1.0, size=(n_rep, 1))
        include = rng.random((n_rep, n)) < share
    else:
        include = np.ones((n_rep, n), bool)
    return time, event, group, include


def lifelines_logrank(time, event, group, include, **kwargs):
    a = include & (group == 1)
    b = include & (group == 0)
    return logrank_test(time[a], time[b], event[a], event[b], **kwargs)


def lifelines_cox(time, event, group, include):
    df = pd.DataFrame({"T": time[include], "E": event[include], "g": group[include]})
    fit = CoxPHFitter().fit(df, "T", "E", fit_options=LIFELINES_COX_OPTIONS)
    return fit.params_["g"], fit.standard_errors_["g"]


def lifelines_km(time, event, grid):
    return KaplanMeierFitter().fit(time, event).survival_function_at_times(grid).to_numpy()


def slow_logrank(time, event, group):
    """Textbook log-rank for one sample, plain Python: (O1, E1, V)."""
    o1 = e1 = v = 0.0
    for t in sorted({t for t, e in zip(time, event) if e}):
        n = sum(1 for s in time if s >= t)
        n1 = sum(1 for s, g in zip(time, group) if s >= t and g == 1)
        d = sum(1 for s, e in zip(time, event) if s == t and e)
        o1 += sum(1 for s, e, g in zip(time, event, group) if s == t and e and g == 1)
        e1 += d * n1 / n
        if n > 1:
            v += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1)
    return o1, e1, v


# ------------------------------------------------------------------------------ log-rank


@pytest.mark.parametrize(
    "integer_times, uneven",
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["continuous", "heavy-ties", "uneven-sizes", "ties-and-uneven"],
)
def test_logrank_chi_square_and_p_match_lifelines(integer_times, uneven):
    data = make_batch(10 + 2 * integer_times + uneven, 4, 300, integer_times=integer_times,
                      uneven=uneven)
    res = logrank(*data)
    p = p_value(res.z, "two")
    for r in range(4):
        ref = lifelines_logrank(*(x[r] for x in data))
        np.testing.assert_allclose(res.z[r] ** 2, ref.test_statistic, rtol=RTOL)
        np.testing.assert_allclose(p[r], ref.p_value, rtol=RTOL)


@pytest.mark.parametrize("rho, gamma", [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.5, 2.0)])
def test_logrank_fleming_harrington_matches_lifelines(rho, gamma):
    data = make_batch(20, 3, 200, integer_times=True, uneven=True)
    res = logrank(*data, rho=rho, gamma=gamma)
    for r in range(3):
        ref = lifelines_logrank(*(x[r] for x in data), weightings="fleming-harrington",
                                p=rho, q=gamma)
        np.testing.assert_allclose(res.z[r] ** 2, ref.test_statistic, rtol=RTOL)


def test_logrank_observed_expected_variance_match_plain_python():
    time, event, group, include = make_batch(30, 3, 80, integer_times=True, uneven=True)
    res = logrank(time, event, group, include)
    for r in range(3):
        keep = include[r]
        t, e, g = time[r][keep], event[r][keep], group[r][keep]
        o1, e1, v = slow_logrank(list(t), list(e), list(g))
        n_events = e.sum()
        np.testing.assert_allclose(res.observed[r], [n_events - o1, o1], rtol=RTOL)
        np.testing.assert_allclose(res.expected[r], [n_events - e1, e1], rtol=RTOL)
        np.testing.assert_allclose(res.variance[r], v, rtol=RTOL)
        np.testing.assert_allclose(res.z[r], (o1 - e1) / np.sqrt(v), rtol=RTOL)


def test_logrank_z_is_negative_when_active_arm_has_fewer_events():
    res = logrank(*make_batch(40, 5, 1000, hr=0.5))
    assert np.all(res.z < -3)
    assert np.all(res.observed[:, 1] < res.expected[:, 1])


def test_logrank_z_is_standard_normal_under_the_null_by_monte_carlo():
    """4000 replicates of 200 patients at HR 1: mean 0 and SD 1 (99.9% normal and chi-square intervals),
    two-sided 5% level within its 99.9% binomial region."""
    from mc_helpers import assert_binomial

    R = 4000
    z = logrank(*make_batch(41, R, 200, hr=1.0)).z
    assert abs(z.mean()) < stats.norm.isf(0.0005) / np.sqrt(R), z.mean()
    lo, hi = np.sqrt(stats.chi2.ppf([0.0005, 0.9995], R - 1) / (R - 1))
    assert lo <= z.std(ddof=1) <= hi, (z.std(ddof=1), lo, hi)
    assert_binomial(int((np.abs(z) > stats.norm.isf(0.025)).sum()), R, 0.05, what="log-rank level")


# ------------------------------------------------------------------------------ Cox


@pytest.mark.parametrize("integer_times", [False, True], ids=["no-ties", "heavy-ties"])
def test_cox_log_hr_and_se_match_lifelines_efron(integer_times):
    data = make_batch(50 + integer_times, 4, 300, integer_times=integer_times, uneven=True)
    res = cox_hr(*data)
    assert res.converged.all()
    for r in range(4):
        ref_beta, ref_se = lifelines_cox(*(x[r] for x in data))
        np.testing.assert_allclose(res.log_hr[r], ref_beta, rtol=RTOL, atol=COX_ATOL)
        np.testing.assert_allclose(res.se[r], ref_se, rtol=RTOL)


def test_cox_matches_statsmodels_phreg_efron_with_heavy_ties():
    time, event, group, include = make_batch(52, 3, 300, integer_times=True, uneven=True)
    res = cox_hr(time, event, group, include)
    for r in range(3):
        keep = include[r]
        ref = sm.PHReg(time[r][keep], group[r][keep, None].astype(float),
                       status=event[r][keep].astype(float), ties="efron").fit()
        np.testing.assert_allclose(res.log_hr[r], ref.params[0], rtol=RTOL, atol=COX_ATOL)
        np.testing.assert_allclose(res.se[r], ref.bse[0], rtol=RTOL)


def test_cox_all_events_in_one_arm_returns_unconverged_finite_estimate():
    time, event, group, include = make_batch(60, 2, 200)
    event[0, group[0] == 1] = False  # no events on active: MLE is -infinity
    event[1, group[1] == 0] = False  # no events on control: MLE is +infinity
    res = cox_hr(time, event, group, include)
    assert not res.converged.any()
    assert np.all(np.isfinite(res.log_hr))
    assert res.log_hr[0] < -10 and res.log_hr[1] > 10


# ------------------------------------------------------------------------------ Kaplan-Meier


@pytest.mark.parametrize("integer_times", [False, True], ids=["no-ties", "heavy-ties"])
def test_kaplan_meier_matches_lifelines_at_grid_points(integer_times):
    time, event, group, include = make_batch(70, 3, 200, integer_times=integer_times,
                                             uneven=True)
    # before the first time, exactly at event times (right-continuity), between, after the last
    grid = np.concatenate([[0.0, 0.5], np.arange(1.0, 40.0, 1.0), [7.25, 1000.0]])
    grid = np.concatenate([grid, time[0, event[0]][:5]])
    surv = kaplan_meier(time, event, include, grid)
    for r in range(3):
        keep = include[r]
        np.testing.assert_allclose(surv[r], lifelines_km(time[r][keep], event[r][keep], grid),
                                   rtol=RTOL)


def test_kaplan_meier_per_arm_via_include():
    time, event, group, include = make_batch(71, 2, 200, uneven=True)
    grid = np.array([3.0, 6.0, 12.0])
    surv = kaplan_meier(time, event, include & (group == 1), grid)
    for r in range(2):
        keep = include[r] & (group[r] == 1)
        np.testing.assert_allclose(surv[r], lifelines_km(time[r][keep], event[r][keep], grid),
                                   rtol=RTOL)


def test_kaplan_meier_steps_worked_example():
    # at risk 5, 4, 2 at the event times 1, 2, 3 (the patient censored at 2 is at risk at 2)
    times, survival = kaplan_meier_steps([4.0, 2.0, 1.0, 2.0, 3.0], [0, 1, 1, 0, 1])
    np.testing.assert_array_equal(times, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(survival, [4 / 5, 4 / 5 * 3 / 4, 4 / 5 * 3 / 4 * 1 / 2])


# ------------------------------------------------------------------------------ ANCOVA


def make_continuous(seed, n_rep, n):
    rng = np.random.default_rng(seed)
    group = (rng.random((n_rep, n)) < 0.5).astype(np.int8)
    baseline = rng.normal(140.0, 15.0, (n_rep, n))
    y = 20.0 + 0.8 * baseline - 5.0 * group + rng.normal(0.0, 10.0, (n_rep, n))
    include = rng.random((n_rep, n)) < rng.uniform(0.3, 1.0, (n_rep, 1))
    return y, baseline, group, include


def test_ancova_matches_statsmodels_ols():
    y, baseline, group, include = make_continuous(80, 4, 120)
    res = ancova(y, baseline, group, include)
    for r in range(4):
        keep = include[r]
        x = sm.add_constant(np.column_stack([group[r][keep], baseline[r][keep]]).astype(float))
        fit = sm.OLS(y[r][keep], x).fit()
        np.testing.assert_allclose(res.estimate[r], fit.params[1], rtol=RTOL)
        np.testing.assert_allclose(res.se[r], fit.bse[1], rtol=RTOL)
        np.testing.assert_allclose(res.t[r], fit.tvalues[1], rtol=RTOL)
        assert res.df[r] == fit.df_resid
        np.testing.assert_allclose(p_value(res.t[r], "two", res.df[r]), fit.pvalues[1], rtol=RTOL)


# ------------------------------------------------------------------------------ batching, threads


def all_analyses(time, event, group, include, y, baseline):
    grid = np.array([1.0, 5.0, 10.0, 20.0])
    return (
        *logrank(time, event, group, include),
        *logrank(time, event, group, include, rho=0.0, gamma=1.0),
        *cox_hr(time, event, group, include),
        kaplan_meier(time, event, include, grid),
        *ancova(y, baseline, group, include),
    )


def test_batch_gives_the_same_results_as_each_replicate_alone():
    time, event, group, include = make_batch(90, 5, 150, integer_times=True, uneven=True)
    y, baseline, _, _ = make_continuous(91, 5, 150)
    batch = all_analyses(time, event, group, include, y, baseline)
    for r in range(5):
        alone = all_analyses(*(x[r : r + 1] for x in (time, event, group, include, y, baseline)))
        for b, a in zip(batch, alone):
            np.testing.assert_array_equal(b[r : r + 1], a)


def test_results_identical_with_one_and_two_threads():
    time, event, group, include = make_batch(92, 16, 150, uneven=True)
    y, baseline, _, _ = make_continuous(93, 16, 150)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = all_analyses(time, event, group, include, y, baseline)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = all_analyses(time, event, group, include, y, baseline)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ degenerate cases


def test_replicate_without_events_gives_nan_statistics_without_crashing():
    time, event, group, include = make_batch(100, 2, 100)
    event[1] = False
    lr = logrank(time, event, group, include)
    cox = cox_hr(time, event, group, include)
    km = kaplan_meier(time, event, include, np.array([1.0, 100.0]))
    assert np.isfinite(lr.z[0]) and np.isnan(lr.z[1])
    np.testing.assert_array_equal(lr.observed[1], [0.0, 0.0])
    np.testing.assert_array_equal(lr.expected[1], [0.0, 0.0])
    assert lr.variance[1] == 0.0
    assert cox.converged[0] and not cox.converged[1] and np.isnan(cox.log_hr[1])
    np.testing.assert_array_equal(km[1], [1.0, 1.0])


def test_replicate_with_nobody_included_gives_nan_results():
    time, event, group, include = make_batch(101, 3, 100)
    y, baseline, _, _ = make_continuous(102, 3, 100)
    include[1] = False
    lr = logrank(time, event, group, include)
    cox = cox_hr(time, event, group, include)
    km = kaplan_meier(time, event, include, np.array([1.0, 10.0]))
    anc = ancova(y, baseline, group, include)
    for field in (lr.z, lr.observed, lr.expected, lr.variance, cox.log_hr, cox.se, km,
                  anc.estimate, anc.se, anc.t):
        assert np.all(np.isnan(field[1]))
        assert np.all(np.isfinite(field[[0, 2]]))
    assert not cox.converged[1]


def test_invalid_inputs_name_the_argument():
    time, event, group, include = make_batch(103, 2, 10)
    with pytest.raises(ValueError, match="group: shape"):
        logrank(time, event, group[:, :5], include)
    with pytest.raises(ValueError, match="group: values must be 0 or 1"):
        cox_hr(time, event, group * 2, include)
    with pytest.raises(ValueError, match="time: must be a 2-D array"):
        logrank(time[0], event[0], group[0])
    bad = time.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="replicate 1, patient 3"):
        kaplan_meier(bad, event, include, [1.0])
    with pytest.raises(ValueError, match="sided"):
        p_value(1.0, "left")


# ------------------------------------------------------------------------------ p-values, CIs


@pytest.mark.parametrize("df", [None, 7.0, np.array([3.0, 30.0, 300.0, 5.0, 12.0])])
def test_p_value_matches_scipy_formulas(df):
    stat = np.array([-2.5, -0.3, 0.0, 1.1, 3.2])
    dist = stats.norm if df is None else stats.t
    args = () if df is None else (df,)
    np.testing.assert_allclose(p_value(stat, "two", df),
                               2.0 * (1.0 - dist.cdf(np.abs(stat), *args)), rtol=RTOL)
    np.testing.assert_allclose(p_value(stat, "one", df), dist.cdf(stat, *args), rtol=RTOL)


def test_one_sided_p_value_is_small_for_benefit():
    assert p_value(-2.0, "one") < 0.025 < p_value(2.0, "one")
    np.testing.assert_allclose(p_value(-1.959963984540054, "one"), 0.025, rtol=RTOL)


@pytest.mark.parametrize("df", [None, 9.0])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_wald_ci_matches_scipy_formula(level, df):
    est = np.array([-0.3, 0.0, 1.2])
    se = np.array([0.1, 0.5, 0.02])
    q = stats.norm.ppf(1 - (1 - level) / 2) if df is None else stats.t.ppf(1 - (1 - level) / 2, df)
    lower, upper = wald_ci(est, se, level, df)
    np.testing.assert_allclose(lower, est - q * se, rtol=RTOL)
    np.testing.assert_allclose(upper, est + q * se, rtol=RTOL)
    if df is None:
        ref = stats.norm.interval(level, loc=est, scale=se)
    else:
        ref = stats.t.interval(level, df, loc=est, scale=se)
    np.testing.assert_allclose(lower, ref[0], rtol=RTOL)
    np.testing.assert_allclose(upper, ref[1], rtol=RTOL)


def test_cox_wald_interval_covers_lifelines_interval():
    data = make_batch(110, 1, 400)
    res = cox_hr(*data)
    lower, upper = wald_ci(res.log_hr, res.se, 0.95)
    df = pd.DataFrame({"T": data[0][0], "E": data[1][0], "g": data[2][0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = CoxPHFitter().fit(df, "T", "E", fit_options=LIFELINES_COX_OPTIONS)
    ci = fit.confidence_intervals_.loc["g"].to_numpy()
    np.testing.assert_allclose([lower[0], upper[0]], ci, rtol=RTOL, atol=COX_ATOL)
