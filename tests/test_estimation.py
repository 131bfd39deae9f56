"""Estimation after a group-sequential stop: repeated confidence intervals and the stagewise-ordered
median-unbiased estimate against a published worked example, and their coverage by simulation."""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, stats

from vctrial.results import interval_coverage, summarize
from vctrial.spec.protocol import load_protocol
from vctrial.trial import estimation, sequential
from vctrial.trial.dataset import run_trial

DATA = Path(__file__).parent / "data"


def wang_tsiatis(fractions, alpha: float, delta: float) -> np.ndarray:
    """One-sided Wang-Tsiatis bounds c·t^(delta - 1/2) with overall level alpha (no futility)."""
    t = np.asarray(fractions, dtype=np.float64)

    def excess(c):
        return sequential.crossing_probabilities(t, c * t ** (delta - 0.5))[0].sum() - alpha

    return optimize.brentq(excess, 1.0, 6.0, xtol=1e-12) * t ** (delta - 0.5)


# rpact's unit tests (rpact-com/rpact, tests/testthat/test-f_analysis_base_survival.R, "'getAnalysisResults'
# for a three-stage group sequential design and survival data"): getDesignGroupSequential(kMax = 3,
# alpha = 0.025, informationRates = c(0.2, 0.4, 1), typeOfDesign = "WT", deltaWT = 0.25, non-binding
# futility bounds 0, 0); getDataset(overallEvents = c(8, 15, 38), overallLogRanks = c(1.52, 1.38, 2.9));
# getAnalysisResults(..., directionUpper = TRUE) gives, at the final stage 3, the hazard ratios below.
# rpact's log-rank estimate of the log HR at stage k is 2 z_k / sqrt(d_k) (1:1), its information d_k / 4,
# and its stagewise ordering uses the design's information rates for the correlations.
RPACT_FRACTIONS = np.array([0.2, 0.4, 1.0])
RPACT_EVENTS = np.array([8.0, 15.0, 38.0])
RPACT_Z = np.array([1.52, 1.38, 2.9])


def test_wang_tsiatis_bounds_match_rpact_design():
    b = wang_tsiatis(RPACT_FRACTIONS, 0.025, 0.25)
    # the stage-3 bound implied by rpact's repeated CI (2.9 - c3) * 2 / sqrt(38) = log(1.325822)
    assert b[2] == pytest.approx(2.9 - math.log(1.325822) * math.sqrt(38) / 2, abs=2e-6)


def test_median_unbiased_estimate_and_final_interval_match_rpact():
    b = wang_tsiatis(RPACT_FRACTIONS, 0.025, 0.25)
    info = RPACT_FRACTIONS / RPACT_FRACTIONS[2] * RPACT_EVENTS[2] / 4.0
    mue, lo, hi = estimation.stagewise_estimate(info, b, 2, 2.9, level=0.95)
    # θ here is the log HR in the direction rpact tests (directionUpper = TRUE: HR > 1 is the alternative)
    assert math.exp(mue) == pytest.approx(2.4764002, rel=1e-6)
    assert math.exp(lo) == pytest.approx(1.222663, rel=1e-6)
    assert math.exp(hi) == pytest.approx(4.752454, rel=2e-6)
    # the stagewise p-value (rpact finalPValues) is the probability at θ = 0
    assert estimation.stagewise_probability(0.0, info, b, 2, 2.9) == pytest.approx(0.0074535505, rel=1e-6)
    assert sequential.stagewise_p_value(RPACT_FRACTIONS, b, 2, 2.9) == pytest.approx(0.0074535505, rel=1e-6)


def test_repeated_confidence_intervals_match_rpact():
    b = wang_tsiatis(RPACT_FRACTIONS, 0.025, 0.25)
    theta = 2 * RPACT_Z / np.sqrt(RPACT_EVENTS)
    lo, hi = estimation.repeated_ci(theta, 2 / np.sqrt(RPACT_EVENTS), b)
    np.testing.assert_allclose(np.exp(lo), [0.34217973, 0.54553509, 1.325822], rtol=1e-6)
    np.testing.assert_allclose(np.exp(hi), [25.078822, 7.6235796, 4.9517237], rtol=1e-6)


def test_a_stop_at_the_first_look_gives_the_naive_estimate_and_interval():
    mue, lo, hi = estimation.stagewise_estimate([50.0, 100.0], [2.8, 1.98], 0, 3.1, 0.95, shift=0.1)
    root = math.sqrt(50.0)
    assert mue == pytest.approx(0.1 + 3.1 / root)
    assert (lo, hi) == pytest.approx((0.1 + (3.1 - 1.959964) / root, 0.1 + (3.1 + 1.959964) / root), rel=1e-6)


def test_stagewise_estimate_is_median_unbiased_and_covers_on_the_canonical_distribution():
    """Z_k from the canonical joint distribution (independent increments), bounds O'Brien-Fleming type."""
    rng = np.random.default_rng(2026)
    t = np.array([0.3, 0.6, 1.0])
    info = t * 100.0
    b = sequential.design(t, 0.025, "obf").efficacy
    theta = 0.25
    n = 600
    increments = rng.normal(theta * np.diff(info, prepend=0.0), np.sqrt(np.diff(info, prepend=0.0)), (n, 3))
    z = np.cumsum(increments, axis=1) / np.sqrt(info)
    crossed = z >= b
    stop = np.where(crossed.any(axis=1), crossed.argmax(axis=1), 2)
    fr = np.broadcast_to(t, (n, 3))
    se = np.broadcast_to(1.0 / np.sqrt(info), (n, 3))
    est = estimation.group_sequential_estimates(z * se, se, z, fr, np.broadcast_to(b, (n, 3)), stop, 0.9)
    below = int((est["mue"] < theta).sum())
    lo, hi = stats.binom.interval(0.999, n, 0.5)
    assert lo <= below <= hi, below
    cover = int(((est["mue_lower"] <= theta) & (theta <= est["mue_upper"])).sum())
    lo, hi = stats.binom.interval(0.999, n, 0.9)
    assert lo <= cover <= hi, cover
    # the naive estimate at the stop is biased upwards here; the median-unbiased one is not
    naive = (z * se)[np.arange(n), stop]
    assert np.median(naive) > theta


@pytest.mark.slow
def test_repeated_and_stagewise_intervals_cover_the_true_effect_in_simulated_trials():
    protocol = load_protocol(DATA / "group_sequential.yaml")
    n = 1000
    ds = run_trial(protocol, n, seed=20261203, progress=False)
    # the repeated CI is simultaneous over the looks at 1 - 2 alpha = 0.95: at the stop it covers at least that
    share, _, _, judged = interval_coverage(ds, "rci_lower", "rci_upper")
    assert judged == n
    assert round(share * n) >= stats.binom.ppf(0.001, n, 0.95), share
    # the stagewise interval is exact at its 0.95 level (up to the counterfactual truth being per trial)
    share, _, _, _ = interval_coverage(ds, "mue_ci_lower", "mue_ci_upper")
    lo, hi = stats.binom.interval(0.999, n, 0.95)
    assert lo <= round(share * n) <= hi, share
    table = summarize(ds)
    for row in ("RCI coverage of true effect", "stagewise CI coverage of true effect", "median-unbiased bias (log HR)",
                "harm (significant, unfavourable)"):
        assert row in table.index
    # the estimates and intervals sit on the hazard-ratio scale, ordered
    assert np.all(ds["rci_lower"].values < ds["rci_upper"].values)
    assert np.all((ds["mue_ci_lower"].values <= ds["mue_estimate"].values)
                  & (ds["mue_estimate"].values <= ds["mue_ci_upper"].values))
