"""Stratified log-rank and Cox against statsmodels, lifelines and plain Python."""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test
from scipy import stats
from test_analysis import slow_logrank
from statsmodels.duration.survfunc import survdiff

from vctrial.trial.analysis import cox_hr, logrank, p_value
from vctrial.trial.stratified import cox_hr_stratified, logrank_stratified

RTOL = 1e-8
ATOL = 1e-10  # log HR near 0
# lifelines stops Newton-Raphson when the step, the Newton decrement (about step^2 x information)
# or the relative change of the log-likelihood is small; its defaults (1e-7, 1e-7, 1e-9) leave
# the log HR up to about 1e-7 short of the optimum, so they are tightened here
LIFELINES_COX_OPTIONS = {"precision": 1e-20, "r_precision": 1e-15}


def make_batch(seed, n_rep, n, n_strata=4, hr=0.75, integer_times=False, uneven=False):
    """Exponential times, control hazard doubling from one stratum to the next, ~20% censored."""
    rng = np.random.default_rng(seed)
    group = (rng.random((n_rep, n)) < 0.5).astype(np.int8)
    strata = rng.integers(0, n_strata, (n_rep, n))
    hazard = 0.05 * 2.0 ** strata * np.where(group == 1, hr, 1.0)
    t_event = rng.exponential(1.0 / hazard)
    t_censor = rng.exponential(1.0 / 0.03, size=(n_rep, n))
    time = np.minimum(t_event, t_censor)
    event = t_event <= t_censor
    if integer_times:
        time = np.ceil(time)
    if uneven:
        include = rng.random((n_rep, n)) < rng.uniform(0.3, 1.0, size=(n_rep, 1))
    else:
        include = np.ones((n_rep, n), bool)
    return time, event, group, strata, include


CASES = pytest.mark.parametrize(
    "integer_times, uneven",
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["continuous", "heavy-ties", "uneven-sizes", "ties-and-uneven"],
)


# ------------------------------------------------------------------------------ log-rank


@CASES
def test_stratified_logrank_matches_statsmodels_survdiff(integer_times, uneven):
    time, event, group, strata, include = make_batch(1 + 2 * integer_times + uneven, 4, 300,
                                                     integer_times=integer_times, uneven=uneven)
    res = logrank_stratified(time, event, group, strata, include)
    p = p_value(res.z, "two")
    for r in range(4):
        k = include[r]
        chi2, ref_p = survdiff(time[r][k], event[r][k].astype(float), group[r][k],
                               strata=strata[r][k])
        np.testing.assert_allclose(res.z[r] ** 2, chi2, rtol=RTOL)
        np.testing.assert_allclose(p[r], ref_p, rtol=RTOL)


@CASES
def test_stratified_logrank_sums_the_strata_each_matching_lifelines(integer_times, uneven):
    """Per stratum: O1 - E1 and V in plain Python, (O1 - E1)^2 / V = lifelines' chi-square;
    the stratified statistic is their sum."""
    time, event, group, strata, include = make_batch(11 + 2 * integer_times + uneven, 2, 160,
                                                     integer_times=integer_times, uneven=uneven)
    res = logrank_stratified(time, event, group, strata, include)
    for r in range(2):
        o1 = e1 = v = 0.0
        for s in np.unique(strata[r][include[r]]):
            k = include[r] & (strata[r] == s)
            so1, se1, sv = slow_logrank(list(time[r][k]), list(event[r][k]), list(group[r][k]))
            a, b = k & (group[r] == 1), k & (group[r] == 0)
            ref = logrank_test(time[r][a], time[r][b], event[r][a], event[r][b])
            np.testing.assert_allclose((so1 - se1) ** 2 / sv, ref.test_statistic, rtol=RTOL)
            o1, e1, v = o1 + so1, e1 + se1, v + sv
        n_events = event[r][include[r]].sum()
        np.testing.assert_allclose(res.observed[r], [n_events - o1, o1], rtol=RTOL)
        np.testing.assert_allclose(res.expected[r], [n_events - e1, e1], rtol=RTOL)
        np.testing.assert_allclose(res.variance[r], v, rtol=RTOL)
        np.testing.assert_allclose(res.z[r], (o1 - e1) / np.sqrt(v), rtol=RTOL)


@pytest.mark.parametrize("rho", [0.5, 1.0, 2.0])
def test_stratified_fleming_harrington_rho_matches_statsmodels(rho):
    """statsmodels' "fh" weights are S(t-)^rho with S the Kaplan-Meier estimate in the stratum."""
    time, event, group, strata, include = make_batch(21, 3, 250, integer_times=True, uneven=True)
    res = logrank_stratified(time, event, group, strata, include, rho=rho)
    for r in range(3):
        k = include[r]
        with np.errstate(divide="ignore"):  # statsmodels takes log(0) when a stratum empties
            chi2, _ = survdiff(time[r][k], event[r][k].astype(float), group[r][k],
                               strata=strata[r][k], weight_type="fh", fh_p=rho)
        np.testing.assert_allclose(res.z[r] ** 2, chi2, rtol=RTOL)


@pytest.mark.parametrize("rho, gamma", [(0.0, 1.0), (1.0, 1.0)])
def test_stratified_fleming_harrington_is_the_sum_of_the_strata_tests(rho, gamma):
    """Numerators and variances of the per-stratum weighted tests (checked against lifelines in
    test_analysis.py) add up."""
    time, event, group, strata, include = make_batch(22, 3, 250, integer_times=True, uneven=True)
    res = logrank_stratified(time, event, group, strata, include, rho=rho, gamma=gamma)
    num = np.zeros(3)
    var = np.zeros(3)
    for s in range(4):
        one = logrank(time, event, group, include & (strata == s), rho=rho, gamma=gamma)
        num += np.nan_to_num(one.z * np.sqrt(one.variance))
        var += one.variance
    np.testing.assert_allclose(res.variance, var, rtol=RTOL)
    np.testing.assert_allclose(res.z, num / np.sqrt(var), rtol=RTOL)


# ------------------------------------------------------------------------------ Cox


def lifelines_strat_cox(time, event, group, strata):
    df = pd.DataFrame({"T": time, "E": event, "g": group, "s": strata})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = CoxPHFitter().fit(df, "T", "E", strata=["s"], fit_options=LIFELINES_COX_OPTIONS)
    return fit.params_["g"], fit.standard_errors_["g"]


@CASES
def test_stratified_cox_matches_lifelines_strata(integer_times, uneven):
    time, event, group, strata, include = make_batch(31 + 2 * integer_times + uneven, 4, 300,
                                                     integer_times=integer_times, uneven=uneven)
    res = cox_hr_stratified(time, event, group, strata, include)
    assert res.converged.all()
    for r in range(4):
        k = include[r]
        beta, se = lifelines_strat_cox(time[r][k], event[r][k], group[r][k], strata[r][k])
        np.testing.assert_allclose(res.log_hr[r], beta, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(res.se[r], se, rtol=RTOL)


@CASES
def test_stratified_cox_matches_statsmodels_phreg_efron(integer_times, uneven):
    time, event, group, strata, include = make_batch(41 + 2 * integer_times + uneven, 4, 300,
                                                     integer_times=integer_times, uneven=uneven)
    res = cox_hr_stratified(time, event, group, strata, include)
    for r in range(4):
        k = include[r]
        ref = sm.PHReg(time[r][k], group[r][k, None].astype(float),
                       status=event[r][k].astype(float), strata=strata[r][k],
                       ties="efron").fit()
        np.testing.assert_allclose(res.log_hr[r], ref.params[0], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(res.se[r], ref.bse[0], rtol=RTOL)


# ------------------------------------------------------------------------------ strata handling


def test_one_stratum_gives_exactly_the_unstratified_analyses():
    time, event, group, strata, include = make_batch(51, 5, 200, integer_times=True, uneven=True)
    one = np.full_like(strata, 3)
    for a, b in zip(logrank_stratified(time, event, group, one, include, rho=1.0, gamma=0.5),
                    logrank(time, event, group, include, rho=1.0, gamma=0.5)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(cox_hr_stratified(time, event, group, one, include),
                    cox_hr(time, event, group, include)):
        np.testing.assert_array_equal(a, b)


def test_labels_are_arbitrary_integers():
    time, event, group, strata, include = make_batch(52, 3, 200, uneven=True)
    labels = np.array([-7, 10**9, 0, 12], dtype=np.int64)[strata]
    # the strata are summed in another order: equal up to rounding
    for a, b in zip(logrank_stratified(time, event, group, labels, include),
                    logrank_stratified(time, event, group, strata, include)):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    for a, b in zip(cox_hr_stratified(time, event, group, labels.astype(np.int32), include),
                    cox_hr_stratified(time, event, group, strata, include)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_strata_with_one_arm_or_without_events_change_nothing():
    time, event, group, strata, include = make_batch(53, 3, 200, integer_times=True)
    n_extra = 40
    rng = np.random.default_rng(0)
    extra_time = np.ceil(rng.exponential(10.0, (3, n_extra)))
    extra_event = np.ones((3, n_extra), bool)
    extra_event[:, n_extra // 2:] = False  # stratum 5: no events at all
    extra_group = np.zeros((3, n_extra), np.int8)  # stratum 4: control only
    extra_group[:, n_extra // 2:] = rng.integers(0, 2, (3, n_extra - n_extra // 2))
    extra_strata = np.where(np.arange(n_extra) < n_extra // 2, 4, 5)[None, :].repeat(3, 0)
    more = [np.concatenate(p, axis=1) for p in
            ((time, extra_time), (event, extra_event), (group, extra_group),
             (strata, extra_strata))]
    a = logrank_stratified(*more)
    b = logrank_stratified(time, event, group, strata)
    np.testing.assert_allclose(a.z, b.z, rtol=1e-13)
    np.testing.assert_allclose(a.variance, b.variance, rtol=1e-13)
    a = cox_hr_stratified(*more)
    b = cox_hr_stratified(time, event, group, strata)
    np.testing.assert_allclose(a.log_hr, b.log_hr, rtol=1e-12)
    np.testing.assert_allclose(a.se, b.se, rtol=1e-12)


def test_stratifying_on_a_prognostic_factor_recovers_the_conditional_hazard_ratio():
    """Unstratified, the omitted prognostic factor attenuates the log HR towards 0 (the Cox
    model is not collapsible); stratified, the estimate is the within-stratum HR."""
    time, event, group, strata, include = make_batch(54, 1, 20000, n_strata=4, hr=0.6)
    strat = cox_hr_stratified(time, event, group, strata)
    plain = cox_hr(time, event, group)
    assert abs(strat.log_hr[0] - np.log(0.6)) < 2.5 * strat.se[0]
    assert plain.log_hr[0] > strat.log_hr[0] + 2 * strat.se[0]


# ------------------------------------------------------------------------------ batches, edge cases


def both(time, event, group, strata, include):
    return (*logrank_stratified(time, event, group, strata, include, rho=0.0, gamma=1.0),
            *logrank_stratified(time, event, group, strata, include),
            *cox_hr_stratified(time, event, group, strata, include))


def test_batch_gives_the_same_results_as_each_replicate_alone():
    data = make_batch(61, 5, 150, integer_times=True, uneven=True)
    batch = both(*data)
    for r in range(5):
        alone = both(*(x[r: r + 1] for x in data))
        for b, a in zip(batch, alone):
            np.testing.assert_array_equal(b[r: r + 1], a)


def test_results_identical_with_one_and_two_threads():
    data = make_batch(62, 16, 150, uneven=True)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = both(*data)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = both(*data)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_degenerate_replicates_give_nan_without_crashing():
    time, event, group, strata, include = make_batch(63, 3, 100)
    include[1] = False
    event[2] = False
    lr = logrank_stratified(time, event, group, strata, include)
    cox = cox_hr_stratified(time, event, group, strata, include)
    assert np.isfinite(lr.z[0]) and cox.converged[0]
    for field in (lr.z, lr.observed, lr.expected, lr.variance, cox.log_hr, cox.se):
        assert np.all(np.isnan(field[1]))
    assert np.isnan(lr.z[2]) and lr.variance[2] == 0.0 and np.isnan(cox.log_hr[2])
    assert not cox.converged[1:].any()


def test_invalid_strata_name_the_argument():
    time, event, group, strata, include = make_batch(64, 2, 10)
    with pytest.raises(ValueError, match="strata: shape"):
        logrank_stratified(time, event, group, strata[:, :5])
    with pytest.raises(TypeError, match="strata: must hold integer"):
        cox_hr_stratified(time, event, group, strata.astype(float))


# ------------------------------------------------------------------------------ Monte Carlo


@pytest.mark.slow
def test_stratified_logrank_level_under_the_null_within_its_monte_carlo_interval():
    """HR 1, strong stratum effect: the stratified test rejects at its nominal 5%."""
    n_rep = 4000
    time, event, group, strata, include = make_batch(70, n_rep, 200, hr=1.0)
    res = logrank_stratified(time, event, group, strata, include)
    rejected = int(np.sum(p_value(res.z, "two") < 0.05))
    lo, hi = stats.binom.ppf([0.0005, 0.9995], n_rep, 0.05)
    assert lo <= rejected <= hi, (rejected, lo, hi)
    cox = cox_hr_stratified(time, event, group, strata, include)
    rejected = int(np.sum(p_value(cox.log_hr / cox.se, "two") < 0.05))
    assert lo <= rejected <= hi, (rejected, lo, hi)
