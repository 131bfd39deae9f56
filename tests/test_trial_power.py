"""Operating characteristics of simulated trials against independent formulas (Monte Carlo bounds)."""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from vctrial.execute import run_trial
from vctrial.spec.protocol import load_protocol

DATA = Path(__file__).parent / "data"


def mc_bound(p: float, n: int, k: float = 4.0) -> float:
    """k Monte Carlo standard errors of a proportion estimated from n replicates."""
    return k * math.sqrt(p * (1 - p) / n)


@pytest.mark.slow
def test_event_driven_power_matches_schoenfeld():
    protocol = load_protocol(DATA / "event_driven.yaml")
    n = 2000
    ds = run_trial(protocol, n, seed=20261126, progress=False)
    events = ds["n_events"].sum("arm").values
    assert np.all(events == 300)
    z = stats.norm.ppf(1 - 0.025)
    schoenfeld = stats.norm.cdf(math.sqrt(300 / 4) * abs(math.log(0.75)) - z)
    power = ds["reject"].values.mean()
    assert abs(power - schoenfeld) < mc_bound(schoenfeld, n), (power, schoenfeld)


@pytest.mark.slow
def test_null_effect_rejection_rate_is_alpha():
    protocol = load_protocol(DATA / "event_driven.yaml", {"arms.active.effects.0.hazard_ratio": 1.0})
    assert protocol.is_null
    n = 2000
    ds = run_trial(protocol, n, seed=7, progress=False)
    rate = ds["reject"].values.mean()
    assert abs(rate - 0.025) < mc_bound(0.025, n), rate
    # under the null the p-value is uniform
    assert stats.kstest(ds["p_value"].values, "uniform").pvalue > 1e-3


@pytest.mark.slow
def test_hazard_ratio_estimate_is_unbiased_and_covers_the_true_effect():
    protocol = load_protocol(DATA / "event_driven.yaml")
    n = 1000
    ds = run_trial(protocol, n, seed=3, progress=False)
    true = np.log(ds["true_effect"].values)
    # constant hazards, no covariates: the counterfactual HR is close to the model's 0.75
    assert abs(np.exp(true.mean()) - 0.75) < 0.01
    err = np.log(ds["estimate"].values) - true
    assert abs(err.mean()) < 4 * err.std() / math.sqrt(n)
    cover = ((ds["ci_lower"] <= ds["true_effect"]) & (ds["true_effect"] <= ds["ci_upper"])).values.mean()
    assert abs(cover - 0.95) < mc_bound(0.95, n)


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
    sim = ds["reject"].values.mean()
    assert abs(sim - power) < mc_bound(power, n), (sim, power)
    # the estimate's spread matches its model-based SE
    assert abs(ds["estimate"].values.std() / se - 1) < 0.05
    assert abs(ds["true_effect"].values.mean() + 0.3) < 1e-12
