"""Step-down Dunnett, Dunnett with the t statistics of ANCOVA (finite degrees of freedom) and simultaneous
confidence intervals, checked against brute-force closed testing, scipy's multivariate normal and t CDFs,
``scipy.stats.dunnett`` and simulated coverage and family-wise error rates."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mc_helpers import assert_binomial
from vctrial import api
from vctrial.errors import SpecError
from vctrial.spec.protocol import load_protocol
from vctrial.trial import multiplicity

ROOT = Path(__file__).resolve().parents[1]
T2D = ROOT / "protocols" / "t2d_hba1c.yaml"
THREE_ARM = ROOT / "protocols" / "hf_three_arm.yaml"


def _t2d_four_arm(shift: float = 0.0, **extra) -> dict:
    """Overrides turning the two-arm T2D protocol into placebo + three doses (1:1:1:1), all with ``shift``."""
    doses = [{"name": f"dose{i}", "allocation": 1, "effects": [{"biomarker": "hba1c", "shift": shift}]}
             for i in (1, 2, 3)]
    return {"arms": [{"name": "placebo", "allocation": 1}, *doses], "randomization.block_size": 8, **extra}


def _max_tail_reference(c: float, rho: np.ndarray, sided: str, df: float | None) -> float:
    """P(max T_k >= c) (two-sided max |T_k|) by scipy's multivariate normal or t CDF (Genz's algorithms)."""
    C = rho.shape[0]
    if C == 1:
        dist = stats.norm() if df is None else stats.t(df)
        return float(dist.sf(c) if sided == "one" else 2.0 * dist.sf(c))
    upper = np.full(C, c)
    lower = None if sided == "one" else -upper
    if df is None:
        mvn = stats.multivariate_normal(np.zeros(C), rho, seed=1, maxpts=300_000 * C, abseps=1e-8, releps=1e-7)
        return 1.0 - float(mvn.cdf(upper, lower_limit=lower))
    mvt = stats.multivariate_t(np.zeros(C), rho, df=df, seed=1)
    return 1.0 - float(mvt.cdf(upper, lower_limit=lower, maxpts=2_000_000))


def _closed_test(p: np.ndarray, weights, sided: str, df: float | None) -> np.ndarray:
    """Adjusted p-values of the closed test of Dunnett max-T tests of every intersection hypothesis: the
    adjusted p of H_j is the largest p-value of the intersections containing it, the intersection over a
    set S tested by P(max_{k in S} T_k >= max_{k in S} t_k) with the correlation restricted to S."""
    rho = multiplicity.many_to_one_correlation(weights)
    C = len(p)
    q = p if sided == "one" else p / 2.0
    t = stats.norm.isf(q) if df is None else stats.t.isf(q, df)
    adj = np.zeros(C)
    for size in range(1, C + 1):
        for subset in itertools.combinations(range(C), size):
            s = list(subset)
            p_s = _max_tail_reference(float(t[s].max()), rho[np.ix_(s, s)], sided, df)
            adj[s] = np.maximum(adj[s], p_s)
    return np.minimum(adj, 1.0)


# --------------------------------------------------------------------------------------------
# Step-down Dunnett against brute-force closed testing.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights,sided,df", [
    ([1, 1, 1], "one", None),
    ([2, 1, 1, 1], "two", None),
    ([3, 1, 2, 1, 1], "one", None),
    ([2, 1, 3], "two", 12.0),
    ([1, 1, 1, 1], "one", 30.0),
])
def test_stepdown_matches_brute_force_closed_testing(weights, sided, df):
    rng = np.random.default_rng(len(weights) * 10 + int(df or 0))
    C = len(weights) - 1
    rows = 6 if C < 4 and df is None else 3  # scipy's multivariate t CDF takes ~0.3 s a call
    p = rng.uniform(0.0, 0.08, size=(rows, C)) ** rng.uniform(0.6, 1.8, size=(rows, 1))
    p[0, -1] = p[0, 0]  # a tie
    ours = multiplicity.adjust(p, "dunnett_stepdown", weights, sided, df=df)
    ref = np.array([_closed_test(row, weights, sided, df) for row in p])
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=2e-5)


def test_stepdown_lies_between_raw_single_step_and_holm():
    rng = np.random.default_rng(5)
    p = rng.uniform(0.0, 0.2, size=(2000, 4)) ** 1.5
    w = [2, 1, 1, 1, 1]
    for df in (None, 25.0):
        step = multiplicity.adjust(p, "dunnett_stepdown", w, "one", df=df)
        single = multiplicity.adjust(p, "dunnett", w, "one", df=df)
        assert (step >= p - 1e-12).all() and (step <= single + 1e-9).all()
        if df is None:  # Holm is the closed test of Bonferroni tests, which Dunnett's dominate
            assert (step <= multiplicity.adjust(p, "holm") + 1e-9).all()
        # the most significant comparison is tested exactly as by single-step Dunnett
        first = np.argmin(p, axis=1)
        rows = np.arange(len(p))
        np.testing.assert_allclose(step[rows, first], single[rows, first], rtol=0, atol=1e-12)


def test_stepdown_missing_p_values_stay_missing():
    p = np.array([[0.01, np.nan, 0.02], [0.3, 0.001, 0.5]])
    adj = multiplicity.adjust(p, "dunnett_stepdown", [1, 1, 1, 1])
    assert np.isnan(adj[0, 1]) and np.isfinite(np.delete(adj, 1, axis=1)).all()
    # the NaN counts as p = 1 for the others (it stays in every subset they are tested in)
    as_one = multiplicity.adjust(np.array([[0.01, 1.0, 0.02]]), "dunnett_stepdown", [1, 1, 1, 1])[0]
    np.testing.assert_allclose(adj[0, [0, 2]], as_one[[0, 2]], rtol=0, atol=1e-15)
    assert adj[0, 2] > 0.02 and adj[1, 1] < adj[1, 0] < adj[1, 2]


# --------------------------------------------------------------------------------------------
# Finite degrees of freedom (ANCOVA's t statistics).
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights,sided", [([2, 1, 1], "one"), ([1, 1, 1, 1], "two"), ([3, 1, 2, 1, 1, 1], "one")])
@pytest.mark.parametrize("df", [3.0, 40.0])
def test_max_tail_with_df_matches_scipy_multivariate_t(weights, sided, df):
    rho = multiplicity.many_to_one_correlation(weights)
    r = np.asarray(weights[1:], dtype=float) / weights[0]
    f = np.sqrt(r / (1.0 + r))  # rho_jk = f_j f_k
    for c in (0.8, 2.2, 3.5):
        ours = multiplicity.max_tail(np.array([c]), f, sided, df=df)[0]
        assert ours == pytest.approx(_max_tail_reference(c, rho, sided, df), abs=1e-5)


def test_critical_values_with_df_match_scipy_multivariate_t_and_dunnett_tables():
    # the defining property, checked with scipy's multivariate t CDF
    for weights, sided, df in (([1, 1, 1, 1], "two", 20.0), ([2, 1, 1], "one", 8.0), ([1, 1, 1, 1, 1, 1], "one", 40.0)):
        c = multiplicity.dunnett_critical_value(0.05, weights, sided, df=df)
        rho = multiplicity.many_to_one_correlation(weights)
        assert _max_tail_reference(c, rho, sided, df) == pytest.approx(0.05, abs=2e-5), (weights, sided, df)
    # Dunnett (1955, JASA 50:1096, one-sided) and (1964, Biometrics 20:482, two-sided) tables, 5%, equal
    # allocation, 3 comparisons, 20 df: 2.19 and 2.54 (printed to two decimals)
    assert multiplicity.dunnett_critical_value(0.05, [1] * 4, "one", df=20) == pytest.approx(2.19, abs=0.006)
    assert multiplicity.dunnett_critical_value(0.05, [1] * 4, "two", df=20) == pytest.approx(2.54, abs=0.006)
    # infinite df is the normal form, and many df tend to it
    normal = multiplicity.dunnett_critical_value(0.05, [2, 1, 1], "one")
    assert multiplicity.dunnett_critical_value(0.05, [2, 1, 1], "one", df=np.inf) == normal
    assert multiplicity.dunnett_critical_value(0.05, [2, 1, 1], "one", df=1e6) == pytest.approx(normal, abs=1e-5)


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_finite_df_single_step_matches_scipy_dunnett(alternative):
    # scipy.stats.dunnett: pooled-variance t statistics with N - A df and the multivariate t; small groups
    # so that the t distribution differs visibly from the normal one
    rng = np.random.default_rng(31)
    sizes = (10, 6, 8, 6)
    df = sum(sizes) - len(sizes)
    sided = "two" if alternative == "two-sided" else "one"
    worst, normal_worst = 0.0, 0.0
    for rep in range(6):
        control, *active = [rng.normal(m, 1.0, n) for m, n in zip((0.0, 0.6, -0.3, 0.9), sizes)]
        ref = stats.dunnett(*active, control=control, alternative=alternative, random_state=rep)
        t = ref.statistic
        p_raw = {"two-sided": 2.0 * stats.t.sf(np.abs(t), df), "greater": stats.t.sf(t, df),
                 "less": stats.t.cdf(t, df)}[alternative]
        ours = multiplicity.adjust(p_raw[None, :], "dunnett", list(sizes), sided, df=df)[0]
        np.testing.assert_allclose(ours, ref.pvalue, rtol=0, atol=2e-4)
        worst = max(worst, np.abs(ours - ref.pvalue).max())
        normal = multiplicity.adjust(p_raw[None, :], "dunnett", list(sizes), sided)[0]
        normal_worst = max(normal_worst, np.abs(normal - ref.pvalue).max())
    assert worst < 2e-4 and normal_worst > 20 * worst  # the normal form is visibly off at 26 df


def test_df_per_comparison_uses_the_smallest_in_each_replicate():
    p = np.array([[0.01, 0.03, 0.2], [0.01, 0.03, 0.2]])
    df = np.array([[40.0, 12.0, 30.0], [np.nan, np.nan, np.nan]])
    adj = multiplicity.adjust(p, "dunnett", [1, 1, 1, 1], "one", df=df)
    np.testing.assert_allclose(adj[0], multiplicity.adjust(p[:1], "dunnett", [1, 1, 1, 1], "one", df=12.0)[0])
    np.testing.assert_allclose(adj[1], multiplicity.adjust(p[:1], "dunnett", [1, 1, 1, 1], "one")[0])


# --------------------------------------------------------------------------------------------
# Simultaneous confidence intervals.
# --------------------------------------------------------------------------------------------


def test_simultaneous_interval_formulas():
    theta = np.array([[0.1, -0.2, 0.3], [0.0, 0.5, np.nan]])
    se = np.array([[0.1, 0.2, 0.1], [0.3, 0.1, 0.2]])
    w = [2, 1, 1, 1]
    lo, hi = multiplicity.simultaneous_intervals(theta, se, "dunnett", w, 0.95, "two")
    c = multiplicity.dunnett_critical_value(0.05, w, "two")
    np.testing.assert_allclose(hi - theta, np.where(np.isnan(theta), np.nan, c * se))
    np.testing.assert_allclose(theta - lo, np.where(np.isnan(theta), np.nan, c * se))
    assert np.isnan(lo[1, 2]) and np.isnan(hi[1, 2])
    lo, hi = multiplicity.simultaneous_intervals(theta, se, "bonferroni", w, 0.9, "two", df=30.0)
    np.testing.assert_allclose(hi[0] - theta[0], stats.t.isf(0.1 / 6, 30) * se[0])
    # one-sided, lower is better: an upper bound only; higher is better: a lower bound only
    lo, hi = multiplicity.simultaneous_intervals(theta, se, "dunnett", w, 0.95, "one", "lower", df=20.0)
    c1 = multiplicity.dunnett_critical_value(0.05, w, "one", df=20.0)
    np.testing.assert_allclose(hi[0], theta[0] + c1 * se[0])
    assert (lo[0] == -np.inf).all() and np.isnan(lo[1, 2])
    lo, hi = multiplicity.simultaneous_intervals(theta, se, "bonferroni", w, 0.95, "one", "higher")
    np.testing.assert_allclose(lo[0], theta[0] - stats.norm.isf(0.05 / 3) * se[0])
    assert (hi[0] == np.inf).all()
    with pytest.raises(ValueError, match="simultaneous"):
        multiplicity.simultaneous_intervals(theta, se, "holm", w, 0.95)


def test_hazard_ratio_intervals_are_on_the_ratio_scale_and_only_for_dunnett_and_bonferroni():
    protocol = load_protocol(THREE_ARM, {"sample_size": 600, "analysis.confidence_level": 0.9})
    ds = api.run(protocol, replicates=3, seed=8, progress=False)
    c = multiplicity.dunnett_critical_value(0.1, [2, 1, 1], "one")  # hf_three_arm: one-sided, dunnett
    log_hr, se = np.log(ds["estimate"].values), ds["log_hr_se"].values
    np.testing.assert_allclose(ds["sci_upper"].values, np.exp(log_hr + c * se), rtol=1e-10)
    assert (ds["sci_lower"].values == 0.0).all()  # one-sided: the bound on the benefit side only
    assert ds["sci_upper"].dims == ("replicate", "comparison")
    assert "simultaneous CI coverage (all comparisons)" in api.summarize(ds).index
    two = api.run(load_protocol(THREE_ARM, {"sample_size": 600, "analysis.multiplicity": "bonferroni",
                                            "analysis.sided": "two", "analysis.alpha": 0.05}),
                  replicates=2, seed=8, progress=False)
    z = stats.norm.isf(0.05 / 4)
    log_hr, se = np.log(two["estimate"].values), two["log_hr_se"].values
    np.testing.assert_allclose(two["sci_lower"].values, np.exp(log_hr - z * se), rtol=1e-10)
    np.testing.assert_allclose(two["sci_upper"].values, np.exp(log_hr + z * se), rtol=1e-10)
    for method in ("holm", "hochberg", "dunnett_stepdown", "none"):
        ds = api.run(load_protocol(THREE_ARM, {"sample_size": 300, "analysis.multiplicity": method}),
                     replicates=1, seed=8, progress=False)
        assert "sci_lower" not in ds and "sci_upper" not in ds, method
        assert "simultaneous CI coverage (all comparisons)" not in api.summarize(ds).index


@pytest.mark.slow
def test_simultaneous_coverage_of_dunnett_intervals_at_the_global_null():
    """Four arms, no effect, ANCOVA (t intervals), two-sided 95%: all three intervals hold at once in 95%."""
    R, level = 3000, 0.95
    protocol = load_protocol(T2D, _t2d_four_arm(sample_size=240, **{"analysis.multiplicity": "dunnett",
                                                                     "analysis.confidence_level": level}))
    ds = api.run(protocol, replicates=R, seed=20261207, progress=False)
    lo, hi, truth = (ds[k].transpose("replicate", "comparison").values for k in ("sci_lower", "sci_upper",
                                                                                  "true_effect"))
    assert np.isfinite(lo).all() and (truth == 0.0).all()
    held = int(((lo <= truth) & (truth <= hi)).all(axis=1).sum())
    assert_binomial(held, R, level, what="Dunnett simultaneous coverage")
    table = api.summarize(ds)
    assert table.loc["simultaneous CI coverage (all comparisons)", "value"] == pytest.approx(held / R)
    # the unadjusted intervals do not hold all at once as often
    plain = int(((ds["ci_lower"].values <= 0) & (0 <= ds["ci_upper"].values)).all(axis=1).sum())
    assert plain < held


@pytest.mark.slow
def test_fwer_of_stepdown_dunnett_at_the_global_null():
    """At the global null step-down Dunnett rejects something exactly when single-step Dunnett does (its
    first step is that test), so its family-wise error rate is alpha (one-sided, ANCOVA's t)."""
    R, alpha = 3000, 0.025
    protocol = load_protocol(T2D, _t2d_four_arm(sample_size=240, **{
        "analysis.multiplicity": "dunnett_stepdown", "analysis.sided": "one", "analysis.alpha": alpha}))
    ds = api.run(protocol, replicates=R, seed=4242, progress=False)
    assert list(ds["comparison_null"].values) == [1, 1, 1] and ds.attrs["multiplicity"] == "dunnett_stepdown"
    reject = ds["reject"].transpose("replicate", "comparison").values
    assert_binomial(int(reject.any(axis=1).sum()), R, alpha, what="step-down Dunnett FWER")
    p_adj = ds["p_adjusted"].transpose("replicate", "comparison").values
    assert (reject == (p_adj < alpha)).all()
    assert (p_adj >= ds["p_value"].transpose("replicate", "comparison").values - 1e-12).all()


# --------------------------------------------------------------------------------------------
# Bad input.
# --------------------------------------------------------------------------------------------


def test_stepdown_with_two_arms_is_the_unadjusted_test():
    p = np.array([[0.01], [0.4], [np.nan]])
    np.testing.assert_array_equal(multiplicity.adjust(p, "dunnett_stepdown", [1, 1]), p)
    overrides = {"analysis.multiplicity": "dunnett_stepdown", "sample_size": 120}
    ds = api.run(load_protocol(T2D, overrides), replicates=3, seed=1, progress=False)
    plain = api.run(load_protocol(T2D, {"sample_size": 120}), replicates=3, seed=1, progress=False)
    assert "p_adjusted" not in ds and "sci_lower" not in ds and "comparison" not in ds.dims
    np.testing.assert_array_equal(ds["reject"].values, plain["reject"].values)


@pytest.mark.parametrize("overrides,key", [
    ({"endpoint": {"type": "binary", "events": ["hhf"], "by_month": 12}, "analysis.method": "chi_square"},
     "endpoint.type"),
    ({"analysis.method": "maxcombo"}, "analysis.method"),
    ({"analysis.hypothesis": "noninferiority", "analysis.margin": 1.3}, "analysis.hypothesis"),
])
def test_stepdown_is_refused_exactly_where_dunnett_is(overrides, key):
    for method in ("dunnett", "dunnett_stepdown"):
        with pytest.raises(SpecError) as err:
            load_protocol(THREE_ARM, {**overrides, "analysis.multiplicity": method})
        assert key in str(err.value)
    for method in ("dunnett", "dunnett_stepdown"):  # and accepted where dunnett is
        assert load_protocol(THREE_ARM, {"analysis.multiplicity": method}).spec.analysis.multiplicity == method


def test_stepdown_needs_the_allocation_weights():
    with pytest.raises(ValueError, match="dunnett_stepdown needs the 3 arms"):
        multiplicity.adjust(np.array([[0.01, 0.02]]), "dunnett_stepdown")
    with pytest.raises(SpecError) as err:
        load_protocol(THREE_ARM, {"analysis.multiplicity": "dunnett_step_down"})
    assert "analysis.multiplicity" in str(err.value)
