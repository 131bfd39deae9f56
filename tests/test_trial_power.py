"""Operating characteristics of simulated trials against independent formulas.

Each simulated proportion must lie in the central 99.9% of its exact binomial distribution under the
formula's value (``mc_helpers``); means and SDs in their 99.9% normal and chi-square intervals.
"""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from vctrial.trial.dataset import run_trial
from vctrial.spec.protocol import load_protocol

from mc_helpers import assert_binomial

DATA = Path(__file__).parent / "data"
Z999 = stats.norm.isf(0.0005)  # two-sided 99.9% normal quantile, 3.29


def assert_sd_ratio(sample: np.ndarray, sd: float, what: str) -> None:
    """The sample SD of normal values agrees with ``sd``: exact chi-square 99.9% interval of the ratio."""
    k = sample.size - 1
    lo, hi = np.sqrt(stats.chi2.ppf([0.0005, 0.9995], k) / k)
    ratio = sample.std(ddof=1) / sd
    assert lo <= ratio <= hi, (what, ratio, lo, hi)


@pytest.mark.slow
def test_event_driven_power_matches_schoenfeld():
    protocol = load_protocol(DATA / "event_driven.yaml")
    n = 2000
    ds = run_trial(protocol, n, seed=20261126, progress=False)
    events = ds["n_events"].sum("arm").values
    assert np.all(events == 300)
    z = stats.norm.ppf(1 - 0.025)
    schoenfeld = stats.norm.cdf(math.sqrt(300 / 4) * abs(math.log(0.75)) - z)
    assert_binomial(int(ds["reject"].values.sum()), n, schoenfeld, what="power")  # 66.8% to 73.5%
    # the log-rank Z itself: mean -sqrt(d/4)·|log HR| (Schoenfeld's drift; benefit is negative here)
    zs = ds["statistic"].values
    drift = math.sqrt(300 / 4) * abs(math.log(0.75))
    assert abs(zs.mean() + drift) < Z999 * zs.std(ddof=1) / math.sqrt(n), (zs.mean(), -drift)


@pytest.mark.slow
def test_null_effect_rejection_rate_is_alpha():
    protocol = load_protocol(DATA / "event_driven.yaml", {"arms.active.effects.0.hazard_ratio": 1.0})
    assert protocol.is_null
    n = 2000
    ds = run_trial(protocol, n, seed=7, progress=False)
    assert_binomial(int(ds["reject"].values.sum()), n, 0.025, what="type I error")  # 1.5% to 3.7%
    # under the null the p-value is uniform
    assert stats.kstest(ds["p_value"].values, "uniform").pvalue > 1e-3


@pytest.mark.slow
def test_hazard_ratio_estimate_is_unbiased_and_covers_the_true_effect():
    protocol = load_protocol(DATA / "event_driven.yaml")
    n = 2000
    ds = run_trial(protocol, n, seed=3, progress=False)
    true = np.log(ds["true_effect"].values)
    # constant hazards, no covariates: the counterfactual HR is close to the model's 0.75
    assert abs(np.exp(true.mean()) - 0.75) < 0.01
    err = np.log(ds["estimate"].values) - true
    assert abs(err.mean()) < Z999 * err.std(ddof=1) / math.sqrt(n), err.mean()
    cover = ((ds["ci_lower"] <= ds["true_effect"]) & (ds["true_effect"] <= ds["ci_upper"])).values
    assert_binomial(int(cover.sum()), n, 0.95, what="CI coverage")  # 93.4% to 96.5%


def ancova_residual_sd(s0, s1, rho, se, years):
    """SD of change given baseline for y0 = b0 + e0, y1 = b0 + b1*t + e1 (independent formula)."""
    var_y0 = s0**2 + se**2
    var_c = (years * s1) ** 2 + 2 * se**2
    cov = years * rho * s0 * s1 - se**2
    return math.sqrt(var_c - cov**2 / var_y0)


@pytest.mark.slow
def test_ancova_power_matches_normal_theory():
    protocol = load_protocol(DATA / "biomarker_change.yaml")
    n = 2000
    ds = run_trial(protocol, n, seed=11, progress=False)
    assert np.all(ds["n_analysed"].values == 100)
    sigma = ancova_residual_sd(1.0, 0.6, 0.3, 0.5, 0.5)
    se = sigma * math.sqrt(1 / 100 + 1 / 100)
    df = 200 - 3
    crit = stats.t.ppf(0.975, df)
    ncp = 0.3 / se
    power = stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp)
    assert_binomial(int(ds["reject"].values.sum()), n, power, what="power")
    # the estimate's spread matches its model-based SE
    assert_sd_ratio(ds["estimate"].values, se, "SD of the estimate")
    assert abs(ds["true_effect"].values.mean() + 0.3) < 1e-12
