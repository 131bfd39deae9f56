"""Multi-arm multi-stage designs: the generalized Dunnett level against paths simulated from their own
construction, the stopping rules on hand-made cases, and whole trials at the global null (family-wise
error within its binomial region) and under effects (arms dropped, their patients no longer randomized)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mc_helpers import assert_binomial, binomial_region
from test_multiarm import T2D, _t2d_three_arm
from vctrial import api
from vctrial.spec.protocol import load_protocol
from vctrial.trial import mams, multiplicity, sequential

ROOT = Path(__file__).resolve().parents[1]
MAMS = ROOT / "protocols" / "hf_mams.yaml"


def _score_paths(weights, fractions, paths: int, seed: int) -> np.ndarray:
    """(paths, C, K) z statistics of C arms against a control at the looks, built from independent normal
    observations (unit variance, no effect): per arm, the running sum of its patients' outcomes with
    n_a(t) proportional to its allocation weight; Z = (mean_j - mean_0) / sqrt(1/n_j + 1/n_0). Nothing of
    the correlation formula the design uses goes into it."""
    rng = np.random.default_rng(seed)
    w = np.asarray(weights, np.float64)
    t = np.asarray(fractions, np.float64)
    n = 1000.0 * w[:, None] * t[None, :]  # (A, K) patients per arm at each look
    steps = np.diff(np.concatenate([np.zeros((len(w), 1)), n], axis=1), axis=1)
    sums = np.cumsum(rng.standard_normal((paths, len(w), len(t))) * np.sqrt(steps), axis=2)
    means = sums / n
    return (means[:, 1:] - means[:, :1]) / np.sqrt(1.0 / n[1:] + 1.0 / n[:1])


@pytest.mark.parametrize("weights,fractions,spending", [
    ([1, 1, 1], [1 / 3, 2 / 3, 1.0], "obf"),
    ([2, 1, 1], [0.5, 1.0], "pocock"),
    ([1, 1, 1, 1], [0.4, 0.7, 1.0], "obf"),
])
def test_dunnett_level_gives_the_family_wise_error_on_simulated_paths(weights, fractions, spending):
    alpha, paths = 0.025, 400_000
    a_star = mams.comparison_alpha(fractions, alpha, spending, None, weights, "dunnett")
    C = len(weights) - 1
    assert alpha / C < a_star < alpha
    b, _ = sequential.efficacy_bounds(np.array(fractions), sequential.SpendingSpec(spending, a_star))
    z = _score_paths(weights, fractions, paths, seed=11)
    hits = int((z >= b).any(axis=(1, 2)).sum())
    assert_binomial(hits, paths, alpha, what="generalized Dunnett FWER")
    bonf, _ = sequential.efficacy_bounds(np.array(fractions), sequential.SpendingSpec(spending, alpha / C))
    assert (bonf > b).all()  # Bonferroni's bounds are higher, its FWER lower
    assert int((z >= bonf).any(axis=(1, 2)).sum()) < hits


def test_fwer_of_given_bounds_matches_simulated_paths():
    weights, fractions = [2, 1, 1], [0.3, 0.6, 1.0]
    bounds = np.array([2.9, 2.4, 2.1])
    z = _score_paths(weights, fractions, 400_000, seed=5)
    hits = int((z >= bounds).any(axis=(1, 2)).sum())
    assert_binomial(hits, z.shape[0], mams.fwer(bounds, fractions, weights), what="fwer()")


def test_one_look_is_the_single_step_dunnett_test():
    a_star = mams.comparison_alpha([1.0], 0.025, "obf", None, [1, 1, 1], "dunnett")
    assert stats.norm.isf(a_star) == pytest.approx(multiplicity.dunnett_critical_value(0.025, [1, 1, 1]), abs=1e-6)
    assert stats.norm.isf(a_star) == pytest.approx(2.212, abs=5e-4)  # Dunnett (1955): 2 comparisons, df = inf


def test_bonferroni_and_none_levels():
    f = [0.5, 1.0]
    assert mams.comparison_alpha(f, 0.025, "obf", None, [1, 1, 1, 1], "bonferroni") == pytest.approx(0.025 / 3)
    assert mams.comparison_alpha(f, 0.025, "obf", None, [1, 1, 1, 1], "none") == 0.025


# --------------------------------------------------------------------------------------------
# The stopping rules on hand-made statistics.
# --------------------------------------------------------------------------------------------


def _rule(z, stopping, futility=0.0, performed=None):
    z = np.asarray(z, np.float64)[None]  # (1, C, K)
    C, K = z.shape[1:]
    eff = np.broadcast_to(np.array([3.0, 2.5, 2.0])[:K], (1, C, K))
    fut = np.broadcast_to(np.array([futility] * (K - 1) + [2.0]), (1, C, K))
    perf = np.ones((1, K), bool) if performed is None else np.asarray(performed)[None]
    stop, reason, reject = mams.stop_rule(z, eff, fut, perf, stopping)
    return stop[0].tolist(), reason[0].tolist(), reject[0].tolist()


def test_separate_stopping_lets_the_other_arms_go_on():
    z = [[3.5, 9.0, 9.0],  # efficacy at look 1
         [0.5, -0.2, 9.0],  # futility at look 2
         [0.5, 1.0, 2.1]]  # final analysis, rejected
    assert _rule(z, "separate") == ([0, 1, 2], [1, 2, 0], [True, False, True])


def test_simultaneous_stopping_ends_the_trial_at_the_first_efficacy():
    z = [[0.5, 2.6, 9.0],  # efficacy at look 2: the trial ends there
         [-0.5, 9.0, 9.0],  # futility at look 1, before the end
         [0.5, 1.0, 9.0],  # still going at look 2: stopped with the trial, not rejected
         [0.5, 2.7, 9.0]]  # also crosses at look 2: rejected
    assert _rule(z, "simultaneous") == ([1, 0, 1, 1], [1, 2, mams.STOP_WITH_TRIAL, 1], [True, False, False, True])


def test_no_futility_at_the_final_look_and_looks_not_performed_are_skipped():
    z = [[0.5, 1.0, -5.0]]
    assert _rule(z, "separate") == ([2], [0], [False])
    # the third look was not held (maximum duration reached at look 2): look 2 is the final analysis
    assert _rule([[0.5, 2.2, 9.0]], "separate", performed=[True, True, False]) == ([1], [0], [False])
    assert _rule([[0.5, 2.6, 9.0]], "separate", performed=[True, True, False]) == ([1], [0], [True])


def test_a_missing_statistic_crosses_nothing():
    assert _rule([[np.nan, 2.6, 9.0]], "separate") == ([1], [1], [True])


# --------------------------------------------------------------------------------------------
# Whole trials.
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_biomarker_mams_fwer_at_the_global_null_with_dunnett_bounds():
    """ANCOVA, placebo + two doses 2:1:1, three looks, no futility: FWER = alpha within its binomial region;
    Bonferroni's at most alpha; each comparison's own level alpha*."""
    R, alpha = 2000, 0.025
    looks = {"information_fractions": [0.4, 0.7, 1.0]}
    protocol = load_protocol(T2D, _t2d_three_arm(low=0.0, high=0.0, sample_size=200, looks=looks, **{
        "analysis.multiplicity": "dunnett", "analysis.sided": "one", "analysis.alpha": alpha}))
    ds = api.run(protocol, replicates=R, seed=314, progress=False)
    assert ds.attrs["comparison_alpha"] == pytest.approx(protocol.spec.comparison_alpha)
    hits = int(ds["reject"].values.any(axis=1).sum())
    assert_binomial(hits, R, alpha, what="MAMS Dunnett FWER (ANCOVA)")
    table = api.summarize(ds)
    assert table.loc["family-wise error rate (any rejected)", "value"] == pytest.approx(hits / R)


@pytest.mark.slow
def test_time_to_event_mams_fwer_at_the_global_null_with_futility():
    """Log-rank, three arms 1:1:1 with non-binding futility and simultaneous stopping: the FWER stays at or
    below alpha (its binomial region's upper end), and arms are dropped."""
    R, alpha = 1500, 0.025
    protocol = load_protocol(MAMS, {"sample_size": 600, "follow_up.target_events": 240,
                                    "arms.low_dose.effects": [], "arms.high_dose.effects": [],
                                    "looks.stopping": "simultaneous"})
    ds = api.run(protocol, replicates=R, seed=99, progress=False)
    hits = int(ds["reject"].values.any(axis=1).sum())
    _, hi = binomial_region(alpha, R)
    assert hits <= hi, f"FWER {hits / R:.4f} above alpha"
    assert (ds["stop_reason"].values == 2).mean() > 0.3  # under the null most arms stop for futility


def test_a_dropped_arm_randomizes_no_one_after_its_look():
    protocol = load_protocol(MAMS, {"sample_size": 1200, "follow_up.target_events": 450,
                                    "enrollment.duration_months": 36,
                                    "arms.low_dose.effects": [], "looks.futility.beta": 0.3})
    ds = api.run(protocol, replicates=40, seed=7, progress=False)
    assert ds["look_z"].dims == ("replicate", "comparison", "look")
    assert ds["stop_look"].dims == ("replicate", "comparison")
    low = ds.sel(comparison="low_dose")
    dropped = (low["stop_reason"] == 2).values
    assert dropped.any()
    n = ds["n_randomized"]
    early = low["stop_look"].values
    dates = ds["look_date_months"].values[np.arange(40), early - 1]
    # dropped before the end of enrollment while the trial went on: fewer patients on the dropped arm than on
    # the control (when every arm stops at one look, the control's enrollment ends there too)
    went_on = ds["stop_look"].max("comparison").values > early
    during = dropped & (dates < 36 - 2) & went_on
    assert during.any()
    assert (n.sel(arm="low_dose").values[during] < n.sel(arm="control").values[during] - 20).all()
    # its statistic and estimate are those of its stopping look
    z_stop = np.take_along_axis(low["look_z"].values, early[:, None] - 1, axis=1)[:, 0]
    np.testing.assert_allclose(-low["statistic"].values, z_stop)


def _variant(tmp_path, old: str, new: str) -> Path:
    """The MAMS example protocol with one piece of its text replaced, written beside the test."""
    text = MAMS.read_text().replace("../", str(ROOT) + "/")
    assert old in text
    path = tmp_path / "variant.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_mams_protocol_runs_summarizes_and_plots(tmp_path):
    out = tmp_path / "mams.nc"
    small = _variant(tmp_path, "sample_size: 5400", "sample_size: 1200").read_text()
    path = tmp_path / "small.yaml"
    path.write_text(small.replace("target_events: 1500", "target_events: 400"))
    cli = [sys.executable, "-m", "vctrial.cli"]
    res = subprocess.run(cli + ["run", str(path), "-n", "20", "-s", "3", "-o", str(out), "-q"], capture_output=True,
                         text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "high_dose: stop at look 1" in res.stdout and "low_dose: stopped early for futility" in res.stdout
    summary = subprocess.run(cli + ["summarize", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert summary.returncode == 0, summary.stderr
    assert summary.stdout.strip() in res.stdout
    plots = subprocess.run(cli + ["plot", str(out), "--out", str(tmp_path / "figs")], capture_output=True, text=True,
                           cwd=ROOT)
    assert plots.returncode == 0, plots.stderr
    assert list((tmp_path / "figs").glob("*.png"))


@pytest.mark.parametrize("old,new,key", [
    ("multiplicity: dunnett", "multiplicity: holm", "analysis.multiplicity"),
    ("[0.333, 0.667, 1.0]", str([round(i / 16, 4) for i in range(1, 17)]), "looks.information_fractions"),
    ("stopping: separate", "stopping: first", "looks.stopping"),
])
def test_bad_mams_settings_exit_2_naming_the_key(tmp_path, old, new, key):
    path = _variant(tmp_path, old, new)
    for command in ("validate", "run"):
        res = subprocess.run([sys.executable, "-m", "vctrial.cli", command, str(path)], capture_output=True,
                             text=True, cwd=tmp_path)
        assert res.returncode == 2, res.stdout + res.stderr
        assert key in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "results.nc").exists()


def test_compare_puts_a_mams_design_beside_the_fixed_one_and_refuses_other_arms(tmp_path):
    cli = [sys.executable, "-m", "vctrial.cli", "compare"]
    three = ROOT / "protocols" / "hf_three_arm.yaml"
    res = subprocess.run(cli + [str(three), str(MAMS), "-n", "4", "-q", "-o", str(tmp_path / "c.nc")],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    ds = api.open_results(tmp_path / "c.nc")
    assert list(ds["protocol"].values) == ["hf_three_arm", "hf_mams"]
    assert ds["reject"].dims == ("protocol", "replicate", "comparison")
    two = ROOT / "protocols" / "hf_outcomes.yaml"
    res = subprocess.run(cli + [str(two), str(MAMS), "-n", "4", "-q", "-o", str(tmp_path / "d.nc")],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "arms" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "d.nc").exists()
