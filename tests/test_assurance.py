"""Assurance: with analysis.assurance each replicate runs at its own draw of the uncertain hazard ratios,
and the rejection rate is the power averaged over the effect's distribution (checked against that
average of Schoenfeld's power computed by quadrature)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mc_helpers import assert_binomial
from scipy import integrate, stats

from vctrial.errors import SpecError
from vctrial.execute import ExecOptions, run_jobs
from vctrial.spec.protocol import load_protocol
from vctrial.trial import assurance
from vctrial.trial.dataset import trial_job
from vctrial.trial.run import hazard_ratios, n_steps

DATA = Path(__file__).parent / "data"
SD = 0.15  # log hazard ratio
CI = [0.75 * math.exp(-1.959963984540054 * SD), 0.75 * math.exp(1.959963984540054 * SD)]
EFFECT = "arms.active.effects"


def uncertain(**overrides):
    return load_protocol(DATA / "event_driven.yaml", {
        EFFECT: [{"transition": "event", "hazard_ratio": 0.75, "hazard_ratio_ci": CI}],
        "analysis.assurance": True, **overrides})


def schoenfeld_assurance(events: int, alpha: float) -> float:
    """E over log HR ~ N(log 0.75, SD²) of Schoenfeld's power Φ(sqrt(D/4)·(−log HR) − z_α), 1:1 allocation."""
    z = stats.norm.isf(alpha)
    f = lambda x: stats.norm.cdf(math.sqrt(events / 4) * -x - z) * stats.norm.pdf(x, math.log(0.75), SD)  # noqa: E731
    value, _ = integrate.quad(f, math.log(0.75) - 10 * SD, math.log(0.75) + 10 * SD, epsabs=1e-12)
    return value


@pytest.mark.slow
def test_assurance_is_schoenfeld_power_averaged_over_the_effect():
    n = 2000
    (arrays,) = run_jobs([trial_job(uncertain())], n, 20261206, ExecOptions(workers=0, progress=False))
    expected = schoenfeld_assurance(300, 0.025)  # 0.627 (simulated 0.6295), against the power 0.70 at HR 0.75
    assert expected < stats.norm.cdf(math.sqrt(300 / 4) * -math.log(0.75) - 1.959963984540054) - 0.05
    assert_binomial(int(arrays["reject"].sum()), n, expected, what="assurance")
    # each replicate's counterfactual effect follows its own draw: log true HR spread = SD (plus the small
    # noise of a finite counterfactual cohort), not the near-constant spread of a fixed effect
    spread = np.log(arrays["true_effect"]).std(ddof=1)
    assert SD <= spread <= SD * 1.1, spread


def test_draws_are_per_replicate_the_same_in_every_chunk_and_shared_by_a_named_parameter():
    p = uncertain()
    whole = assurance.log_hazard_ratio_draws(p, 7, np.arange(10))
    assert whole[5] == assurance.log_hazard_ratio_draws(p, 7, np.array([5]))[0]
    assert len(np.unique(whole)) == 10 and assurance.log_hazard_ratio_draws(p, 8, np.arange(10))[0] != whole[0]
    hr = assurance.sampled_hazard_ratios(p, hazard_ratios(p, n_steps(p)), 7, np.arange(10))
    np.testing.assert_allclose(hr[:, 1, 0, :], np.exp(whole)[:, :1] * np.ones(hr.shape[-1]), rtol=1e-12)
    assert (hr[:, 0] == 1.0).all()  # the control arm has no effect

    drug = {"transition": "event", "hazard_ratio": 0.9, "hazard_ratio_ci": [0.8, 1.0], "parameter": "drug"}
    shared = load_protocol(DATA / "event_driven.yaml", {
        "arms": [{"name": "control"}, {"name": "low", "effects": [drug]}, {"name": "high", "effects": [drug]}],
        "analysis.assurance": True})
    both = assurance.log_hazard_ratio_draws(shared, 7, np.arange(10))
    np.testing.assert_array_equal(both[:, 0], both[:, 1])


def test_a_delayed_effect_keeps_its_delay_and_takes_the_drawn_ratio_after_it():
    p = uncertain(**{EFFECT: [{"transition": "event", "hazard_ratio": 0.75, "hazard_ratio_ci": CI,
                               "delay_months": 6.0}]})
    dt = p.disease.time_step_months
    hr = assurance.sampled_hazard_ratios(p, hazard_ratios(p, n_steps(p)), 3, np.arange(4))
    draws = np.exp(assurance.log_hazard_ratio_draws(p, 3, np.arange(4)))[:, 0]
    steps_before = int(math.floor(6.0 / dt + 1e-9))
    assert (hr[:, 1, 0, :steps_before] == 1.0).all()
    after = int(math.ceil(6.0 / dt - 1e-9))
    np.testing.assert_allclose(hr[:, 1, 0, after:], draws[:, None] * np.ones(hr.shape[-1] - after), rtol=1e-12)


@pytest.mark.parametrize("overrides, key", [
    ({EFFECT: [{"transition": "event", "hazard_ratio": 0.75}]}, "analysis.assurance"),
    ({EFFECT: [{"transition": "event", "hazard_ratio": 0.75, "hazard_ratio_ci": CI,
                "piecewise": [{"until_month": 3, "hazard_ratio": 1.0}]}]}, "arms[1].effects[0].hazard_ratio_ci"),
])
def test_assurance_without_anything_it_can_draw_is_refused_naming_the_key(overrides, key):
    with pytest.raises(SpecError) as err:
        uncertain(**overrides)
    assert key in f"{err.value.path}: {err.value.reason}"


def test_the_summary_calls_it_assurance(tmp_path):
    path = tmp_path / "p.yaml"
    text = (DATA / "event_driven.yaml").read_text().replace(
        "effects: [{transition: event, hazard_ratio: 0.75}]",
        f"effects: [{{transition: event, hazard_ratio: 0.75, hazard_ratio_ci: [{CI[0]:.6f}, {CI[1]:.6f}]}}]").replace(
        "sided: one}", "sided: one, assurance: true}")
    assert "assurance: true" in text and "hazard_ratio_ci" in text
    path.write_text(text)
    for name in ("simple_cohort.yaml", "exponential.yaml"):
        (tmp_path / name).write_text((DATA / name).read_text())
    proc = subprocess.run([sys.executable, "-m", "vctrial.cli", "run", str(path), "-n", "4", "-w", "0", "-q", "-o",
                           str(tmp_path / "r.nc")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "assurance (probability of success)" in proc.stdout


# --- the design calculator ------------------------------------------------------------------------

def test_design_assurance_of_a_fixed_design_is_the_quadrature_of_schoenfeld_power():
    from vctrial import api

    d = api.design("survival", hazard_ratio="0.75", hazard_ratio_ci=f"{CI[0]},{CI[1]}", method="schoenfeld")
    assert d.assurance == pytest.approx(schoenfeld_assurance(d.events_round, 0.025), abs=1e-6)
    assert d.assurance < d.power_rounded


def test_design_assurance_of_a_group_sequential_design_matches_simulated_z_paths():
    """Three O'Brien-Fleming looks: draw log HR from the interval, then the canonical Z process with that
    drift (independent increments, numpy), stopped at the design's bounds: the share that crosses an
    efficacy bound within the exact binomial region of the calculated assurance."""
    from vctrial import api

    d = api.design("survival", hazard_ratio="0.75", hazard_ratio_ci=f"{CI[0]},{CI[1]}", method="schoenfeld",
                   looks="3")
    s = d.seq
    n = 200_000
    g = np.random.default_rng(20261206)
    log_hr = math.log(0.75) + SD * g.standard_normal(n)
    info = d.events_round * 0.25 * np.asarray(s.fractions)  # Schoenfeld information at each look
    increments = np.diff(np.r_[0.0, info])
    score = np.cumsum(-log_hr[:, None] * increments + np.sqrt(increments) * g.standard_normal((n, len(info))), axis=1)
    z = score / np.sqrt(info)
    crossed = (z >= s.efficacy).any(axis=1)  # futility is non-binding: power counts every efficacy crossing
    assert_binomial(int(crossed.sum()), n, d.assurance, what="group-sequential assurance")


@pytest.mark.parametrize("args, reason", [
    (["--hazard-ratio-ci", "0.8,1.0"], "must be LOWER,UPPER around the hazard ratio 0.75"),
    (["--hazard-ratio-ci", "0.5"], "must be LOWER,UPPER around the hazard ratio 0.75"),
    (["--hazard-ratio", "1,0.75", "--hazard-ratio-breaks", "3", "--hazard-ratio-ci", "0.5,1"], "one hazard ratio"),
])
def test_design_assurance_bad_input_is_one_line(args, reason):
    base = ["--control-median", "12", "--accrual-duration", "12", "--study-duration", "36"]
    if "--hazard-ratio" not in args:
        base += ["--hazard-ratio", "0.75"]
    proc = subprocess.run([sys.executable, "-m", "vctrial.cli", "design", *base, *args], capture_output=True, text=True)
    assert proc.returncode == 2 and reason in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.slow
def test_design_writes_a_protocol_that_simulates_its_assurance(tmp_path):
    from vctrial import api

    d = api.design("survival", out=tmp_path / "d.yaml", verify=1000, seed=5, workers=0, progress=False,
                   hazard_ratio="0.75", hazard_ratio_ci="0.56,1.0", control_median="12", accrual_duration="12",
                   study_duration="36")
    text = (tmp_path / "d.yaml").read_text()
    assert "hazard_ratio_ci: [0.56, 1.0]" in text and "assurance: true" in text
    v = d.verification
    assert v.calculated == d.assurance
    assert_binomial(round(v.simulated * v.replicates), v.replicates, d.assurance, what="simulated assurance")
