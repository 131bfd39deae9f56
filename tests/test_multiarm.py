"""Trials with three or more arms: each active arm against a shared control, multiplicity adjustment,
per-comparison outputs, checked against statsmodels, scipy, lifelines and published Dunnett tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mc_helpers import assert_binomial, binomial_region
from vctrial import api
from vctrial.errors import SpecError
from vctrial.spec.protocol import load_protocol
from vctrial.trial import multiplicity

ROOT = Path(__file__).resolve().parents[1]
THREE_ARM = ROOT / "protocols" / "hf_three_arm.yaml"
T2D = ROOT / "protocols" / "t2d_hba1c.yaml"


def _t2d_three_arm(**extra) -> dict:
    """Overrides turning the two-arm T2D protocol into placebo + two doses (2:1:1)."""
    return {"arms": [{"name": "placebo", "allocation": 2},
                     {"name": "low", "allocation": 1, "effects": [{"biomarker": "hba1c", "shift": extra.pop("low", -0.3)}]},
                     {"name": "high", "allocation": 1, "effects": [{"biomarker": "hba1c", "shift": extra.pop("high", -0.5)}]}],
            "randomization.block_size": 8, **extra}


# --------------------------------------------------------------------------------------------
# The adjustment procedures against independent references.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("C", [2, 3, 5])
def test_bonferroni_holm_hochberg_match_statsmodels(C, monkeypatch):
    import gc

    from statsmodels.stats.multitest import multipletests

    # statsmodels' Holm runs gc.collect() on every call: seconds each in a test process holding big arrays
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    rng = np.random.default_rng(12 + C)
    # 40 rows: statsmodels takes ~20 ms a row
    p = rng.uniform(0, 0.2, size=(40, C)) ** rng.uniform(0.5, 2.0, size=(40, 1))  # ties and spreads
    p[::7, 0] = p[::7, -1]  # exact ties
    for ours, theirs in (("bonferroni", "bonferroni"), ("holm", "holm"), ("hochberg", "simes-hochberg")):
        adj = multiplicity.adjust(p, ours)
        ref = np.array([multipletests(row, method=theirs)[1] for row in p])
        np.testing.assert_allclose(adj, ref, rtol=0, atol=1e-12, err_msg=ours)


def test_missing_p_values_stay_missing_and_count_as_one():
    p = np.array([[0.01, np.nan, 0.02]])
    adj = multiplicity.adjust(p, "holm")
    assert np.isnan(adj[0, 1])
    np.testing.assert_allclose(adj[0, [0, 2]], [0.03, 0.04])


def test_dunnett_critical_values_match_published_tables():
    # Dunnett (1964), Biometrics 20:482-491, table of two-sided 5% critical values for infinite df and equal
    # allocation (reproduced in Bretz, Hothorn & Westfall 2010, Multiple Comparisons Using R): 2.21 for 2
    # comparisons, 2.35 for 3, 2.44 for 4; one-sided 5% (Dunnett 1955, JASA 50:1096): 1.92 for 2, 2.06 for 3.
    for C, c in ((2, 2.212), (3, 2.349), (4, 2.442)):
        assert multiplicity.dunnett_critical_value(0.05, [1] * (C + 1), "two") == pytest.approx(c, abs=1.5e-3)
    for C, c in ((2, 1.916), (3, 2.062)):
        assert multiplicity.dunnett_critical_value(0.05, [1] * (C + 1), "one") == pytest.approx(c, abs=1.5e-3)


@pytest.mark.parametrize("weights,sided", [([2, 1, 1], "one"), ([1, 1, 1, 1], "two"), ([3, 1, 2, 1, 1], "one")])
def test_dunnett_tail_matches_scipy_multivariate_normal(weights, sided):
    rho = multiplicity.many_to_one_correlation(weights)
    C = rho.shape[0]
    f = np.sqrt((np.asarray(weights[1:]) / weights[0]) / (1 + np.asarray(weights[1:]) / weights[0]))
    mvn = stats.multivariate_normal(np.zeros(C), rho, seed=3, maxpts=400_000 * C, abseps=1e-7, releps=1e-6)
    for z in (1.0, 1.96, 2.5, 3.2):
        upper = np.full(C, z)
        ref = 1.0 - mvn.cdf(upper, lower_limit=None if sided == "one" else -upper)
        assert multiplicity.max_tail(np.array([z]), f, sided)[0] == pytest.approx(ref, abs=2e-5)


def test_dunnett_adjusted_p_values_match_scipy_dunnett():
    # scipy.stats.dunnett (scipy >= 1.11): the two-sided many-to-one test with pooled variance, here with
    # large groups (df ~ 1600) so that its t distribution is the normal one used by vctrial
    rng = np.random.default_rng(7)
    sizes = (800, 400, 400, 400)
    means = (0.0, 0.12, 0.05, 0.2)
    for rep in range(4):
        control, *active = [rng.normal(m, 1.0, n) for m, n in zip(means, sizes)]
        ref = stats.dunnett(*active, control=control, alternative="two-sided", random_state=rep)
        p_raw = 2.0 * stats.norm.sf(np.abs(ref.statistic))
        ours = multiplicity.adjust(p_raw[None, :], "dunnett", list(sizes), "two")[0]
        np.testing.assert_allclose(ours, ref.pvalue, rtol=0.02, atol=5e-4)


def test_adjusted_p_values_are_ordered_between_raw_and_bonferroni():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 0.1, size=(500, 3))
    w = [2, 1, 1, 1]
    dun, holm, hoch, bonf = (multiplicity.adjust(p, m, w) for m in ("dunnett", "holm", "hochberg", "bonferroni"))
    assert (dun >= p - 1e-12).all() and (dun <= bonf + 1e-9).all()
    assert (hoch <= holm + 1e-12).all() and (holm <= bonf + 1e-12).all()


# --------------------------------------------------------------------------------------------
# Simulated trials.
# --------------------------------------------------------------------------------------------


def test_three_arm_dataset_has_a_comparison_dimension():
    protocol = load_protocol(THREE_ARM, {"sample_size": 600})
    ds = api.run(protocol, replicates=4, seed=5, progress=False)
    assert list(ds["comparison"].values) == ["low_dose", "high_dose"]
    assert list(ds["comparison_null"].values) == [0, 0]
    for name in ("statistic", "p_value", "p_adjusted", "estimate", "ci_lower", "ci_upper", "true_effect", "reject",
                 "harm"):
        assert ds[name].dims == ("replicate", "comparison"), name
    assert ds["n_randomized"].dims == ("replicate", "arm")
    assert ds.attrs["multiplicity"] == "dunnett"
    assert (ds["n_randomized"].values == [300, 150, 150]).all()  # 2:1:1
    assert (ds["p_adjusted"].values >= ds["p_value"].values - 1e-12).all()
    table = api.summarize(ds)
    assert "disjunctive power (any rejected)" in table.index and "high_dose: power" in table.index


def test_two_arm_dataset_is_unchanged():
    ds = api.run(load_protocol(ROOT / "protocols" / "hf_outcomes.yaml", {"sample_size": 400,
                                                                         "follow_up.target_events": 40}),
                 replicates=3, seed=2, progress=False)
    assert "comparison" not in ds.dims and "p_adjusted" not in ds and "multiplicity" not in ds.attrs
    assert ds["reject"].dims == ("replicate",)


def test_per_comparison_estimates_match_lifelines():
    from lifelines import CoxPHFitter
    from lifelines.statistics import logrank_test

    protocol = load_protocol(THREE_ARM, {"sample_size": 900})
    seed, r = 11, 2
    ds = api.run(protocol, replicates=3, seed=seed, progress=False).sel(replicate=r)
    pts = api.patients(protocol, [r], seed)
    pts = pts[pts["included"]]
    for name in ("low_dose", "high_dose"):
        two = pts[pts["arm"].isin(["control", name])]
        x = (two["arm"] == name).astype(float).to_numpy()
        frame = two.assign(x=x)[["time_months", "event", "x"]].astype(float)
        cox = CoxPHFitter().fit(frame, "time_months", "event")
        hr = float(np.exp(cox.params_["x"]))
        assert float(ds["estimate"].sel(comparison=name)) == pytest.approx(hr, rel=1e-4)
        lo, hi = np.exp(cox.confidence_intervals_.loc["x"].to_numpy())
        assert float(ds["ci_lower"].sel(comparison=name)) == pytest.approx(lo, rel=1e-3)
        assert float(ds["ci_upper"].sel(comparison=name)) == pytest.approx(hi, rel=1e-3)
        lr = logrank_test(two["time_months"][x == 1], two["time_months"][x == 0],
                          two["event"][x == 1], two["event"][x == 0])
        z = float(ds["statistic"].sel(comparison=name))
        assert z ** 2 == pytest.approx(lr.test_statistic, rel=1e-6)
        assert float(ds["p_value"].sel(comparison=name)) == pytest.approx(stats.norm.cdf(z), rel=1e-9)
    n_arm = pts.groupby("arm").size()
    assert (ds["n_analysed"].sel(arm=["control", "low_dose", "high_dose"]).values == n_arm[["control", "low_dose",
                                                                                            "high_dose"]].values).all()


def test_per_comparison_ancova_matches_statsmodels():
    import statsmodels.api as sm

    protocol = load_protocol(T2D, _t2d_three_arm(sample_size=240))
    seed, r = 4, 1
    ds = api.run(protocol, replicates=2, seed=seed, progress=False).sel(replicate=r)
    pts = api.patients(protocol, [r], seed)
    pts = pts[pts["included"]]
    y1, y0 = pts["hba1c_month_6"], pts["hba1c_baseline"]
    for name in ("low", "high"):
        keep = pts["arm"].isin(["placebo", name]).to_numpy()
        X = sm.add_constant(np.column_stack([(pts["arm"][keep] == name).astype(float), y0[keep]]))
        fit = sm.OLS((y1 - y0)[keep].to_numpy(), X).fit()
        assert float(ds["estimate"].sel(comparison=name)) == pytest.approx(fit.params[1], rel=1e-8)
        assert float(ds["statistic"].sel(comparison=name)) == pytest.approx(fit.tvalues[1], rel=1e-8)


def test_fwer_at_the_global_null_is_controlled_by_every_procedure():
    """All arms effect-free (ANCOVA, 2:1:1): Dunnett's FWER is alpha, Bonferroni/Holm/Hochberg at most alpha
    (their conservatism for two comparisons with correlation 0.5 is about 2%), unadjusted above alpha."""
    R, alpha = 4000, 0.025
    protocol = load_protocol(T2D, _t2d_three_arm(low=0.0, high=0.0, sample_size=400, **{
        "analysis.multiplicity": "none", "analysis.sided": "one", "analysis.alpha": alpha}))
    ds = api.run(protocol, replicates=R, seed=2024, progress=False)
    assert list(ds["comparison_null"].values) == [1, 1]
    p = ds["p_value"].transpose("replicate", "comparison").values
    w = [2, 1, 1]
    # single-step Dunnett is exact for normal statistics (ANCOVA's t with ~300 df is close to normal)
    dunnett_any = int((multiplicity.adjust(p, "dunnett", w) < alpha).any(axis=1).sum())
    assert_binomial(dunnett_any, R, alpha, what="Dunnett FWER")
    lo, hi = binomial_region(alpha, R)
    for method in ("bonferroni", "holm", "hochberg"):
        hits = int((multiplicity.adjust(p, method, w) < alpha).any(axis=1).sum())
        assert hits <= hi, f"{method} FWER {hits / R:.4f} above alpha"
    unadjusted = int((p < alpha).any(axis=1).sum())
    # two one-sided tests at 0.025 with correlation 0.5: P(any) = 1 - P(max Z < 1.96) ~ 0.0455
    assert_binomial(unadjusted, R, multiplicity.max_tail(np.array([stats.norm.isf(alpha)]),
                                                         np.sqrt([0.5, 0.5]), "one")[0], what="unadjusted")
    assert (ds["reject"].values == (p < alpha)).all()  # multiplicity none: each at alpha


def test_fwer_at_the_global_null_time_to_event_dunnett():
    R, alpha = 1500, 0.025
    protocol = load_protocol(THREE_ARM, {
        "sample_size": 400, "arms.low_dose.effects": [], "arms.high_dose.effects": []})
    ds = api.run(protocol, replicates=R, seed=77, progress=False)
    assert int(ds.attrs["null_effect"]) == 1
    hits = int(ds["reject"].values.any(axis=1).sum())
    assert_binomial(hits, R, alpha, what="log-rank Dunnett FWER")
    table = api.summarize(ds)
    assert "family-wise error rate (any rejected)" in table.index
    assert table.loc["family-wise error rate (any rejected)", "value"] == pytest.approx(hits / R)


# --------------------------------------------------------------------------------------------
# Bad input.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides,key", [
    ({"endpoint": {"type": "binary", "events": ["hhf"], "by_month": 12}, "analysis.method": "chi_square"},
     "endpoint.type"),
    ({"analysis.method": "maxcombo"}, "analysis.method"),
    ({"follow_up": {"type": "event_driven", "target_events": 100, "max_duration_months": 60},
      "looks": {"information_fractions": [0.5, 1.0]}, "analysis.multiplicity": "hochberg"}, "analysis.multiplicity"),
    ({"arms.2.name": "low_dose"}, "arms[2].name"),
    ({"analysis.multiplicity": "sidak"}, "analysis.multiplicity"),
])
def test_unsupported_multiarm_combinations_are_refused_at_load(overrides, key):
    with pytest.raises(SpecError) as err:
        load_protocol(THREE_ARM, overrides)
    assert key in str(err.value) and "hf_three_arm.yaml" in str(err.value)


def test_more_than_six_arms_are_refused(tmp_path):
    text = THREE_ARM.read_text().replace("../", str(ROOT) + "/")
    extra = "".join(f"  - name: dose{i}\n    allocation: 1\n" for i in range(5))
    text = text.replace("randomization:\n", extra + "randomization:\n", 1).replace("block_size: 8", "block_size: 9")
    path = tmp_path / "seven.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_protocol(path)
    assert "arms" in str(err.value)


def test_cli_runs_summarizes_and_plots_a_three_arm_protocol(tmp_path):
    out = tmp_path / "x.nc"
    cli = [sys.executable, "-m", "vctrial.cli"]
    run = subprocess.run(cli + ["run", str(THREE_ARM), "-n", "6", "-o", str(out)], capture_output=True, text=True,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr
    summary = subprocess.run(cli + ["summarize", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert summary.returncode == 0, summary.stderr
    assert "multiplicity: dunnett" in summary.stdout and "high_dose: power" in summary.stdout
    plots = subprocess.run(cli + ["plot", str(out), "--out", str(tmp_path / "fig")], capture_output=True, text=True,
                           cwd=ROOT)
    assert plots.returncode == 0, plots.stderr
    assert (tmp_path / "fig" / "estimate.png").is_file()


def test_cli_exits_2_on_a_bad_multiarm_protocol(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(THREE_ARM.read_text().replace("../", str(ROOT) + "/").replace("method: logrank",
                                                                                "method: maxcombo"))
    res = subprocess.run([sys.executable, "-m", "vctrial.cli", "run", str(bad), "-n", "2", "-o",
                          str(tmp_path / "x.nc")], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2
    assert "analysis.method" in res.stderr and not (tmp_path / "x.nc").exists()
