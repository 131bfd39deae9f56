"""Superiority with harm reported apart, non-inferiority and equivalence margins: spec checks, the
decision rules against independent computations (lifelines, scipy), and type I error at the margin
within an exact binomial Monte Carlo interval."""

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from vctrial.errors import SpecError
from vctrial.spec.protocol import load_protocol
from vctrial.trial import estimation
from vctrial.trial.dataset import run_trial
from vctrial.trial.run import final_data, simulate_chunk, simulate_patients

DATA = Path(__file__).parent / "data"


def exact_interval(n: int, p: float, level: float = 0.999) -> tuple[int, int]:
    """Counts of rejections among n replicates that a true rate p produces with probability ``level``."""
    lo, hi = stats.binom.interval(level, n, p)
    return int(lo), int(hi)


# --------------------------------------------------------------------------------------------
# Spec: a margin on the wrong side, or without its hypothesis, names analysis.margin.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("file, overrides, words", [
    ("event_driven.yaml", {"analysis.hypothesis": "noninferiority", "analysis.margin": 0.8}, "must be > 1"),
    ("event_driven.yaml", {"analysis.hypothesis": "noninferiority", "analysis.margin": 1.0}, "must be > 1"),
    ("event_driven.yaml", {"analysis.hypothesis": "noninferiority"}, "needs a margin"),
    ("event_driven.yaml", {"analysis.margin": 1.3}, "needs hypothesis"),
    ("event_driven.yaml", {"analysis.hypothesis": "noninferiority", "analysis.margin": [0.8, 1.25]},
     "takes one margin"),
    ("event_driven.yaml", {"analysis.hypothesis": "equivalence", "analysis.margin": [1.1, 1.25]}, "lower < 1"),
    ("event_driven.yaml", {"analysis.hypothesis": "equivalence", "analysis.margin": 0.8}, "must be > 1"),
    ("event_driven.yaml", {"analysis.hypothesis": "noninferiority", "analysis.margin": 1.3,
                           "analysis.method": "maxcombo"}, "not maxcombo"),
    ("event_driven.yaml", {"analysis.hypothesis": "noninferiority", "analysis.margin": 1.0,
                           "analysis.method": "rmst", "analysis.tau_months": 24}, "must be < 0"),
    ("biomarker_change.yaml", {"analysis.hypothesis": "noninferiority", "analysis.margin": -0.2}, "must be > 0"),
    ("biomarker_change.yaml", {"analysis.hypothesis": "noninferiority", "analysis.margin": 0.2,
                               "analysis.benefit": "higher"}, "must be < 0"),
    ("group_sequential.yaml", {"analysis.hypothesis": "equivalence", "analysis.margin": 1.25}, "fixed designs"),
])
def test_a_margin_on_the_wrong_side_is_a_spec_error_naming_the_key(file, overrides, words):
    with pytest.raises(SpecError) as info:
        load_protocol(DATA / file, overrides)
    text = str(info.value)
    assert "analysis.margin" in text or "analysis.hypothesis" in text, text
    assert words in text, text


def test_margins_on_the_benefit_scale():
    p = load_protocol(DATA / "event_driven.yaml", {"analysis.hypothesis": "noninferiority", "analysis.margin": 1.3})
    assert p.spec.analysis.benefit_margins()[0] == pytest.approx(-np.log(1.3))
    p = load_protocol(DATA / "event_driven.yaml", {"analysis.hypothesis": "equivalence", "analysis.margin": 1.25})
    assert p.spec.analysis.benefit_margins() == pytest.approx((-np.log(1.25), np.log(1.25)))
    p = load_protocol(DATA / "biomarker_change.yaml", {"analysis.hypothesis": "equivalence",
                                                      "analysis.margin": [-0.2, 0.5]})
    # benefit lower: a difference of -0.2 is θ = 0.2, of 0.5 is θ = -0.5
    assert p.spec.analysis.benefit_margins() == pytest.approx((-0.5, 0.2))
    p = load_protocol(DATA / "event_driven.yaml", {"analysis.hypothesis": "noninferiority", "analysis.margin": -2.0,
                                                  "analysis.method": "rmst", "analysis.tau_months": 24})
    assert p.spec.analysis.benefit_margins()[0] == pytest.approx(-2.0)  # RMST: higher is better


# --------------------------------------------------------------------------------------------
# Decision rules on hand-made statistics.
# --------------------------------------------------------------------------------------------


def test_two_sided_superiority_counts_only_favourable_rejections_as_power():
    z = np.array([2.5, -2.5, 1.0, -1.0, np.nan])
    p = 2 * stats.norm.sf(np.abs(z))
    reject, harm = estimation.superiority(z, p, 0.05, "two")
    assert reject.tolist() == [True, False, False, False, False]
    assert harm.tolist() == [False, True, False, False, False]
    # one-sided: harm is the mirror one-sided test at the same level
    reject, harm = estimation.superiority(z, stats.norm.sf(z), 0.025, "one")
    assert reject.tolist() == [True, False, False, False, False]
    assert harm.tolist() == [False, True, False, False, False]


def test_noninferiority_and_tost_match_the_confidence_interval_rule():
    rng = np.random.default_rng(5)
    theta = rng.normal(0.0, 0.2, 2000)
    se = rng.uniform(0.05, 0.2, 2000)
    low, high = -0.2, 0.25
    for sided, alpha in (("one", 0.025), ("two", 0.05), ("one", 0.05)):
        q = stats.norm.isf(estimation.per_side_level(alpha, sided))
        ni = estimation.margin_test(theta, se, (low, np.inf), "noninferiority", alpha, sided)
        np.testing.assert_array_equal(ni["reject"], theta - q * se > low)
        eq = estimation.margin_test(theta, se, (low, high), "equivalence", alpha, sided)
        np.testing.assert_array_equal(eq["reject"], (theta - q * se > low) & (theta + q * se < high))
        assert np.all((ni["p_value"] < alpha) == ni["reject"])
        assert np.all((eq["p_value"] < alpha) == eq["reject"])
    df = 30.0
    ni = estimation.margin_test(theta, se, (low, np.inf), "noninferiority", 0.025, "one", df=df)
    np.testing.assert_array_equal(ni["reject"], theta - stats.t.isf(0.025, df) * se > low)


# --------------------------------------------------------------------------------------------
# Simulated trials.
# --------------------------------------------------------------------------------------------


def test_a_harmful_effect_is_harm_not_power_in_a_two_sided_test():
    protocol = load_protocol(DATA / "event_driven.yaml", {"arms.active.effects.0.hazard_ratio": 1.4,
                                                          "analysis.sided": "two", "analysis.alpha": 0.05})
    ds = run_trial(protocol, 60, seed=3, progress=False)
    sig = ds["p_value"].values < 0.05
    assert sig.mean() > 0.5  # the harm is large: most trials find it
    assert not ds["reject"].values.any()
    np.testing.assert_array_equal(ds["harm"].values, sig & (ds["statistic"].values > 0))


def test_noninferiority_decision_agrees_with_a_lifelines_cox_interval():
    from lifelines import CoxPHFitter

    margin, alpha = 1.3, 0.025
    protocol = load_protocol(DATA / "event_driven.yaml", {"analysis.hypothesis": "noninferiority",
                                                          "analysis.margin": margin,
                                                          "arms.active.effects.0.hazard_ratio": 0.9,
                                                          "sample_size": 300, "follow_up.target_events": 150})
    seed, reps = 17, np.arange(12)
    out = simulate_chunk(protocol, seed, reps)
    trial, _, _ = simulate_patients(protocol, seed, reps)
    time, event, include, _ = final_data(trial, ["event"])
    q = stats.norm.isf(alpha)
    decisions = []
    for r in range(len(reps)):
        m = include[r]
        import pandas as pd

        df = pd.DataFrame({"T": time[r, m], "E": event[r, m].astype(int), "arm": trial.arm[r, m].astype(float)})
        fit = CoxPHFitter().fit(df, "T", "E", fit_options={"precision": 1e-12})
        b, se = fit.params_["arm"], fit.standard_errors_["arm"]
        decisions.append(np.exp(b + q * se) < margin)
        assert out["estimate"][r] == pytest.approx(np.exp(b), rel=1e-5)
        assert out["statistic"][r] == pytest.approx((np.log(margin) - b) / se, rel=1e-4)
    assert out["reject"].tolist() == decisions
    assert 0 < sum(decisions) < len(reps)  # both outcomes are exercised


def test_ancova_noninferiority_decision_agrees_with_a_t_interval():
    protocol = load_protocol(DATA / "biomarker_change.yaml", {"analysis.hypothesis": "noninferiority",
                                                              "analysis.margin": 0.1, "analysis.sided": "one",
                                                              "analysis.alpha": 0.025,
                                                              "arms.active.effects.0.shift": 0.0})
    ds = run_trial(protocol, 40, seed=8, progress=False)
    df = ds["n_analysed"].sum("arm").values - 3
    est, lo, hi = (ds[k].values for k in ("estimate", "ci_lower", "ci_upper"))
    se = (hi - lo) / (2 * stats.t.ppf(0.975, df))  # the 95% interval's half-width over its quantile
    upper = est + stats.t.isf(0.025, df) * se
    np.testing.assert_array_equal(ds["reject"].values, upper < 0.1)
    assert 0 < ds["reject"].values.sum() < 40


@pytest.mark.slow
def test_noninferiority_type_one_error_at_the_hazard_ratio_margin():
    protocol = load_protocol(DATA / "event_driven.yaml", {"analysis.hypothesis": "noninferiority",
                                                          "analysis.margin": 1.2,
                                                          "arms.active.effects.0.hazard_ratio": 1.2})
    n = 2000
    ds = run_trial(protocol, n, seed=20261201, progress=False)
    lo, hi = exact_interval(n, 0.025)
    hits = int(ds["reject"].values.sum())
    assert lo <= hits <= hi, (hits, lo, hi)


@pytest.mark.slow
def test_ancova_noninferiority_and_equivalence_type_one_error_at_the_margin():
    n = 2000
    # benefit lower: an active arm 0.2 higher is at the non-inferiority margin
    ni = load_protocol(DATA / "biomarker_change.yaml", {"analysis.hypothesis": "noninferiority",
                                                        "analysis.margin": 0.2, "analysis.sided": "one",
                                                        "analysis.alpha": 0.025,
                                                        "arms.active.effects.0.shift": 0.2})
    hits = int(run_trial(ni, n, seed=41, progress=False)["reject"].values.sum())
    lo, hi = exact_interval(n, 0.025)
    assert lo <= hits <= hi, (hits, lo, hi)
    # equivalence within ±0.3, two-sided alpha 0.05 (each one-sided test at 0.025), true shift at -0.3:
    # the far margin is out of reach, so the rate is the near test's 0.025
    eq = load_protocol(DATA / "biomarker_change.yaml", {"analysis.hypothesis": "equivalence",
                                                        "analysis.margin": 0.3})
    hits = int(run_trial(eq, n, seed=43, progress=False)["reject"].values.sum())
    assert lo <= hits <= hi, (hits, lo, hi)


@pytest.mark.slow
def test_group_sequential_noninferiority_type_one_error_at_the_margin():
    protocol = load_protocol(DATA / "group_sequential.yaml", {"analysis.hypothesis": "noninferiority",
                                                              "analysis.margin": 1.2,
                                                              "arms.active.effects.0.hazard_ratio": 1.2})
    n = 2000
    ds = run_trial(protocol, n, seed=20261202, progress=False)
    lo, hi = exact_interval(n, 0.025)
    hits = int(ds["reject"].values.sum())
    assert lo <= hits <= hi, (hits, lo, hi)


# --------------------------------------------------------------------------------------------
# Binary and count endpoints: margins on the risk difference, risk ratio, odds ratio, rate ratio.
# --------------------------------------------------------------------------------------------

RATE = 0.2  # tests/data/exponential.yaml: one event at 0.2 per year, nobody else lost


def _binary(measure: str, method: str, margin, hr: float, **extra):
    """The exponential test trial with a binary endpoint (the event by month 12): control risk
    1 - exp(-0.2), active risk 1 - exp(-0.2 hr), exactly, in every patient."""
    analysis = {"method": method, "alpha": 0.025, "sided": "one", "hypothesis": "noninferiority", "margin": margin}
    if method != "logistic":
        analysis["measure"] = measure
    return load_protocol(DATA / "event_driven.yaml", {
        "follow_up": {"type": "fixed", "duration_months": 12},
        "endpoint": {"type": "binary", "events": ["event"], "by_month": 12},
        "analysis": analysis, "arms.active.effects.0.hazard_ratio": hr, **extra})


def _hr_at(measure: str, margin: float) -> float:
    """The hazard ratio whose 12-month risks are exactly at the margin on the measure's scale."""
    p0 = 1.0 - np.exp(-RATE)
    if measure == "risk_difference":
        p1 = p0 + margin
    elif measure == "risk_ratio":
        p1 = p0 * margin
    else:
        odds = margin * p0 / (1.0 - p0)
        p1 = odds / (1.0 + odds)
    return float(-np.log(1.0 - p1) / RATE)


@pytest.mark.parametrize("measure, method, margin, words", [
    ("risk_difference", "chi_square", -0.05, "must be > 0"),
    ("risk_ratio", "cmh", 0.8, "must be > 1"),
    ("odds_ratio", "logistic", 0.8, "must be > 1"),
])
def test_a_binary_margin_on_the_wrong_side_names_the_key(measure, method, margin, words):
    extra = {"randomization": {"method": "permuted_block", "block_size": 4, "strata": ["x"]}} if method == "cmh" else {}
    with pytest.raises(SpecError) as info:
        _binary(measure, method, margin, 1.0, **extra) if not extra else load_protocol(DATA / "event_driven.yaml", {
            "follow_up": {"type": "fixed", "duration_months": 12},
            "endpoint": {"type": "binary", "events": ["event"], "by_month": 12},
            "analysis": {"method": "chi_square", "measure": measure, "hypothesis": "noninferiority",
                         "margin": margin}})
    assert "analysis.margin" in str(info.value) and words in str(info.value)


def test_risk_difference_noninferiority_is_the_wald_test_on_the_patients_counts():
    margin = 0.05
    protocol = _binary("risk_difference", "chi_square", margin, 1.0, sample_size=400)
    seed, reps = 23, np.arange(30)
    out = simulate_chunk(protocol, seed, reps)
    trial, _, _ = simulate_patients(protocol, seed, reps)
    event = trial.paths.first_time[..., 0] <= 12.0  # (R, n, arms): the event by month 12 under each arm
    y = np.take_along_axis(event, trial.arm[..., None].astype(np.int64), axis=2)[..., 0]
    a = trial.arm == 1
    p1 = (y & a).sum(1) / a.sum(1)
    p0 = (y & ~a).sum(1) / (~a).sum(1)
    se = np.sqrt(p1 * (1 - p1) / a.sum(1) + p0 * (1 - p0) / (~a).sum(1))
    z = (margin - (p1 - p0)) / se  # benefit lower: non-inferior when the difference is below the margin
    np.testing.assert_allclose(out["estimate"], p1 - p0, atol=1e-12)
    np.testing.assert_allclose(out["statistic"], z, rtol=1e-9)
    np.testing.assert_array_equal(out["reject"], z > stats.norm.isf(0.025))
    assert 0 < out["reject"].sum() < len(reps)


@pytest.mark.slow
@pytest.mark.parametrize("measure, method, margin", [
    ("risk_difference", "chi_square", 0.06),
    ("risk_ratio", "chi_square", 1.3),
    ("odds_ratio", "logistic", 1.4),
])
def test_binary_noninferiority_type_one_error_at_the_margin(measure, method, margin):
    n = 2000
    protocol = _binary(measure, method, margin, _hr_at(measure, margin), sample_size=1200)
    ds = run_trial(protocol, n, seed=20261207, progress=False)
    truth = ds["true_effect"].values
    centre = np.exp(np.log(truth).mean()) if measure != "risk_difference" else truth.mean()
    assert centre == pytest.approx(margin, rel=0.02)  # the counterfactual measure is at the margin
    lo, hi = exact_interval(n, 0.025)
    hits = int(ds["reject"].values.sum())
    assert lo <= hits <= hi, (measure, hits, lo, hi)


def _recurrent(tmp_path, method: str, rr: float, margin: float):
    """A recurrent event at 0.5 per year and nothing else: counts are Poisson, the rate ratio is the
    hazard ratio exactly."""
    (tmp_path / "recurrent.yaml").write_text(
        "kind: disease\nname: one recurrent event\nstates:\n  - {name: well}\n  - {name: gone, absorbing: true}\n"
        "initial_state: well\n"
        "transitions:\n  - {name: attack, from: well, to: well, rate_per_year: 0.5}\n")
    (tmp_path / "cohort.yaml").write_text((DATA / "simple_cohort.yaml").read_text())
    (tmp_path / "trial.yaml").write_text(
        "kind: trial\nname: recurrent\ncohort: cohort.yaml\ndisease: recurrent.yaml\nsample_size: 600\n"
        f"arms:\n  - {{name: control}}\n  - {{name: active, effects: [{{transition: attack, hazard_ratio: {rr}}}]}}\n"
        "enrollment: {duration_months: 12}\nfollow_up: {type: fixed, duration_months: 24}\n"
        "endpoint: {type: count, events: [attack], max_per_patient: 30}\n"
        f"analysis: {{method: {method}, alpha: 0.025, sided: one, hypothesis: noninferiority, margin: {margin}}}\n")
    return load_protocol(tmp_path / "trial.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["negative_binomial", "lwyy"])
def test_rate_ratio_noninferiority_type_one_error_at_the_margin(tmp_path, method):
    n = 2000
    ds = run_trial(_recurrent(tmp_path, method, 1.15, 1.15), n, seed=77, progress=False)
    lo, hi = exact_interval(n, 0.025)
    hits = int(ds["reject"].values.sum())
    assert lo <= hits <= hi, (method, hits, lo, hi)
    assert ds.attrs["hypothesis"] == "noninferiority"


def test_rate_ratio_noninferiority_shown_when_the_effect_is_better(tmp_path):
    ds = run_trial(_recurrent(tmp_path, "lwyy", 0.9, 1.15), 40, seed=5, progress=False)
    assert ds["reject"].values.mean() > 0.5
    est, lo, hi = (ds[k].values for k in ("estimate", "ci_lower", "ci_upper"))
    np.testing.assert_array_equal(ds["reject"].values, hi < 1.15)  # the 95% interval excludes the margin
