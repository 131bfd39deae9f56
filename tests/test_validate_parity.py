"""``vctrial validate`` catches what ``vctrial run`` would, short of simulating (issue 13).

Three classes: protocol sweeps (every point is loaded and checked with the file, errors name
``sweep.KEY[i]``), sizes that only memory or patience bounded (refused at load naming their key), and
population ``changes:`` that were ignored (``effect_from``, ``effects``) or crashed the run (a rename).
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from population_helpers import ILLNESS_DEATH, chronic_files, sir_file, write
from vctrial import api
from vctrial.errors import SpecError
from vctrial.execute import memory_bytes
from vctrial.population.run import simulate_replicate
from vctrial.spec.population import BYTES_PER_PERSON, load_population
from vctrial.spec.protocol import MAX_STEPS, load_protocol
from vctrial.trial.design import MAX_SWEEP_POINTS

DATA = Path(__file__).parent / "data"


def protocol(tmp_path, **changes) -> Path:
    """The event-driven test protocol (with its cohort and disease) in tmp_path, top-level keys changed."""
    for name in ("simple_cohort.yaml", "exponential.yaml"):
        shutil.copy(DATA / name, tmp_path / name)
    data = yaml.safe_load((DATA / "event_driven.yaml").read_text())
    data.update(changes)
    return write(tmp_path, "trial.yaml", data)


def refused(path, key: str, reason: str, file: str | None = None) -> SpecError:
    """load (what validate runs) raises one SpecError naming file, key path and reason."""
    with pytest.raises(SpecError) as err:
        api.validate(path)
    assert (err.value.file, err.value.path) == (file or str(path), key), str(err.value)
    assert reason in err.value.reason, str(err.value)
    return err.value


# --- 1. sweeps ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sweep, key, reason", [
    ({"sample_size": [600, -3]}, "sweep.sample_size[1]", "greater than or equal to 4, got -3"),
    ({"analysis.method": ["logrank", "ancova"]}, "sweep.analysis.method[1]", "time_to_event endpoint is analysed"),
    ({"analysis.methd": ["logrank", "rmst"]}, "sweep.analysis.methd", "unknown key"),
    ({"arms.7.allocation": [1, 2]}, "sweep.arms.7.allocation", "no list item '7'"),
    ({"name.x": [1, 2]}, "sweep.name.x", "cannot set a key inside a scalar"),
    ({"sweep.sample_size": [1, 2]}, "sweep.sweep.sample_size", "cannot vary the sweep itself"),
    ({"sample_size": [600, 600]}, "sweep.sample_size", "values must be distinct"),
    ({"sample size": [600, 700]}, "sweep.sample size", "expected a dotted key path"),
    ({"arms.active.effects.0.hazard_ratio": [0.7, 0]}, "sweep.arms.active.effects.0.hazard_ratio[1]", "greater than 0"),
    ({"disease": ["exponential.yaml", "missing.yaml"]}, "sweep.disease[1]", "referenced file not found"),
    ({"analysis.method": ["logrank", "rmst"], "follow_up.max_duration_months": [120, 6]}, "sweep",  # fine alone
     "the point analysis.method=\"rmst\", follow_up.max_duration_months=6: analysis.tau_months: must not exceed"),
    ({"sample_size": list(range(4, 4 + 40)), "analysis.alpha": [0.001 * (i + 1) for i in range(30)]}, "sweep",
     f"1,200 points (40 x 30); at most {MAX_SWEEP_POINTS:,}"),
])
def test_validate_expands_and_checks_every_sweep_point_naming_its_key_and_position(tmp_path, sweep, key, reason):
    path = protocol(tmp_path, sweep=sweep, analysis={"method": "logrank", "alpha": 0.025, "tau_months": 12})
    refused(path, key, reason)


def test_a_valid_sweep_still_validates_and_loads_every_point(tmp_path):
    path = protocol(tmp_path, sweep={"sample_size": [400, 600], "analysis.alpha": [0.025, 0.05]})
    assert api.validate(path) == "trial"
    assert load_protocol(path).spec.sweep == {"sample_size": [400, 600], "analysis.alpha": [0.025, 0.05]}
    assert api.validate(Path(__file__).parent.parent / "protocols" / "oncology_delayed_effect.yaml") == "trial"


def test_a_bad_sweep_option_names_the_option_and_its_position_before_simulating(tmp_path):
    path = protocol(tmp_path)
    with pytest.raises(SpecError) as err:
        api.run(path, 2, sweep={"sample_size": [600, -3]}, progress=False)
    assert (err.value.file, err.value.path) == (str(path), "--sweep sample_size[1]")
    with pytest.raises(SpecError) as err:
        api.run(path, 2, sweep={"analysis.nope": [1, 2]}, progress=False)
    assert (err.value.file, err.value.path) == (str(path), "--sweep analysis.nope")
    with pytest.raises(SpecError) as err:
        api.run(path, 2, sweep={"arms.active.effects.0.hazard_ratoi": [0.7, 0.8]}, progress=False)
    assert (err.value.path, err.value.reason) == ("--sweep arms.active.effects.0.hazard_ratoi", "unknown key")


def test_validate_and_run_print_the_same_one_line_error_for_a_bad_sweep(tmp_path):
    path = protocol(tmp_path, sweep={"sample_size": [600, 2]})
    out = tmp_path / "out.nc"
    lines = []
    for argv in (["validate", path], ["run", path, "-n", "2", "-w", "0", "-q", "-o", out]):
        proc = subprocess.run([sys.executable, "-m", "vctrial.cli", *map(str, argv)], capture_output=True, text=True)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        lines.append(proc.stderr.strip().splitlines())
    assert lines[0] == lines[1] == [f"vctrial: error: {path}: sweep.sample_size[1]: Input should be greater than "
                                    "or equal to 4, got 2"]
    assert not out.exists()


# --- 2. sizes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, key, reason", [
    ({"sample_size": 10**7}, "sample_size", "less than or equal to 1000000"),
    ({"sample_size": 2**63}, "sample_size", "less than or equal to 1000000"),
    ({"follow_up": {"type": "fixed", "duration_months": 1e6}}, "follow_up.duration_months", "less than or equal to 1200"),
    ({"follow_up": {"type": "event_driven", "target_events": 300, "max_duration_months": 1e9}},
     "follow_up.max_duration_months", "less than or equal to 1200"),
    ({"enrollment": {"duration_months": 1e300}}, "enrollment.duration_months", "less than or equal to 1200"),
    ({"enrollment": {"calendar_step_months": 1e-9, "max_duration_months": 120,
                     "sites": [{"name": "s", "count": 5, "screening_rate_per_month": 1}]}},
     "enrollment.calendar_step_months", "calendar steps of 1e-09 months; at most 20,000"),
    ({"enrollment": {"max_duration_months": 1e12, "sites": [{"name": "s", "count": 5, "screening_rate_per_month": 1}]}},
     "enrollment.max_duration_months", "less than or equal to 1200"),
    ({"enrollment": {"sites": [{"name": f"g{i}", "count": 10_000, "screening_rate_per_month": 1} for i in range(2)]}},
     "enrollment.sites", "20,000 sites in all; at most 10,000"),
    ({"looks": {"information_fractions": [(k + 1) / 101 for k in range(100)] + [1.0]}},
     "looks.information_fractions", "at most 100 items"),
])
def test_sizes_that_only_memory_or_time_bounded_are_refused_at_load_naming_their_key(tmp_path, changes, key, reason):
    refused(protocol(tmp_path, **changes), key, reason)


def test_a_follow_up_of_too_many_model_steps_names_the_follow_up(tmp_path):
    path = protocol(tmp_path, follow_up={"type": "fixed", "duration_months": 1000})
    disease = yaml.safe_load((tmp_path / "exponential.yaml").read_text())
    disease["time_step_months"] = 0.01  # 100,000 steps: the kernel's per-step arrays and time
    write(tmp_path, "exponential.yaml", disease)
    refused(path, "follow_up.duration_months", f"100,000 steps of the disease model's 0.01 months; at most {MAX_STEPS:,}")


def test_population_sizes_beyond_the_machine_or_a_working_day_are_refused_at_load(tmp_path):
    step = dict(ILLNESS_DEATH, time_step_months=0.01)  # 100 years: 120,000 steps
    refused(chronic_files(tmp_path, step, horizon_years=100), "horizon_years", "120,000 model steps")
    big = 10 * memory_bytes() // BYTES_PER_PERSON["chronic"] // 9
    if big <= 100_000_000:
        refused(chronic_files(tmp_path, population={"size": big, "age_min": 40, "age_max": 80}), "population.size",
                "GiB of memory here")
    refused(sir_file(tmp_path, size=30_000_000, horizon_years=100), "population.size", "person-steps per scenario")


# --- 3. population changes ------------------------------------------------------------------------

def treatment_files(tmp_path, changes: dict) -> Path:
    """A chronic population where 'drug' is borrowed from a trial arm (HR 0.3 on death_ill); scenarios: baseline,
    drug as declared, drug with ``changes``."""
    trial = {"kind": "trial", "name": "borrowed", "cohort": "cohort.yaml", "disease": "disease.yaml", "sample_size": 100,
             "arms": [{"name": "control"}, {"name": "active", "effects": [{"transition": "death_ill", "hazard_ratio": 0.3}]},
                      ], "enrollment": {"duration_months": 6}, "follow_up": {"type": "fixed", "duration_months": 12},
             "endpoint": {"type": "time_to_event", "events": ["death_ill"]}, "analysis": {"method": "logrank"}}
    shutil.copy(DATA / "simple_cohort.yaml", tmp_path / "cohort.yaml")
    write(tmp_path, "trial.yaml", trial)
    null = dict(trial, arms=[{"name": "control"}, {"name": "active",
                                                   "effects": [{"transition": "death_ill", "hazard_ratio": 1.0}]}])
    write(tmp_path, "null_trial.yaml", null)
    return chronic_files(
        tmp_path, population={"size": 2000, "age_min": 40, "age_max": 80},
        interventions=[{"name": "drug", "type": "treatment", "effect_from": "trial.yaml#active"}],
        scenarios=[{"name": "baseline"}, {"name": "drug", "interventions": ["drug"]},
                   {"name": "changed", "interventions": ["drug"], "changes": changes}])


def test_a_scenario_change_of_effect_from_takes_effect(tmp_path):
    world = load_population(treatment_files(tmp_path, {"drug.effect_from": "null_trial.yaml#active"}))
    assert world.scenario_hazard_ratios[1]["drug"] == {"death_ill": 0.3}
    assert world.scenario_hazard_ratios[2]["drug"] == {"death_ill": 1.0}
    assert tmp_path / "null_trial.yaml" in world.referenced  # hashed and protected from --out as an input
    out = simulate_replicate(world, seed=3, replicate=0)
    deaths = out["deaths"].sum(axis=tuple(range(1, out["deaths"].ndim)))
    assert deaths[2] == deaths[0] != deaths[1]  # the null arm changes nothing; the declared one does


def test_a_scenario_change_of_inline_effects_takes_effect(tmp_path):
    world = load_population(treatment_files(tmp_path, {"drug.effect_from": None,
                                                       "drug.effects": [{"transition": "onset", "hazard_ratio": 0.5}]}))
    assert world.scenario_hazard_ratios[2]["drug"] == {"onset": 0.5}
    assert world.scenario_hazard_ratios[1]["drug"] == world.hazard_ratios["drug"] == {"death_ill": 0.3}


@pytest.mark.parametrize("changes, key, reason", [
    ({"drug.effect_from": "missing.yaml#active"}, "scenarios[2].changes.drug.effect_from", "referenced file not found"),
    ({"drug.effect_from": "trial.yaml#control"}, "scenarios[2].changes.drug.effect_from", "no hazard-ratio effects"),
    ({"drug.effect_from": "trial.yaml#placebo"}, "scenarios[2].changes.drug.effect_from", "no arm 'placebo'"),
    ({"drug.name": "other"}, "scenarios[2].changes.drug.name", "name cannot be changed by a scenario"),
    ({"drug.type": "risk_factor"}, "scenarios[2].changes.drug.type", "type cannot be changed by a scenario"),
    ({"drug.start_year": 50}, "scenarios[2].changes.drug.start_year", "must be before the horizon"),
])
def test_a_scenario_change_that_cannot_take_effect_is_refused_with_its_key(tmp_path, changes, key, reason):
    refused(treatment_files(tmp_path, changes), key, reason)


def test_a_renamed_intervention_is_refused_by_validate_instead_of_crashing_the_run(tmp_path):
    path = treatment_files(tmp_path, {"drug.name": "other"})
    out = tmp_path / "out.nc"
    proc = subprocess.run([sys.executable, "-m", "vctrial.cli", "run", str(path), "-n", "2", "-w", "0", "-q",
                           "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"vctrial: error: {path}: scenarios[2].changes.drug.name: an intervention's name cannot be changed by a "
        "scenario; declare another intervention under interventions and name it in this scenario instead"]
    assert not out.exists()


def test_an_output_grid_that_is_not_whole_model_steps_is_refused_by_validate(tmp_path):
    path = chronic_files(tmp_path, outputs={"interval_days": 100, "age_groups": [0, 200]})
    refused(path, "outputs.interval_days", "whole number of model steps of 30.4375 days, got 100")
    path = sir_file(tmp_path, outputs={"calendar_days": 0.5, "age_groups": [0, 200]})
    refused(path, "outputs.calendar_days", "whole number of model steps of 1 days, got 0.5")


def test_unchanged_scenarios_keep_the_declared_ratios_and_the_run_is_unchanged(tmp_path):
    world = load_population(treatment_files(tmp_path, {"drug.coverage": 0.5}))
    assert world.scenario_hazard_ratios[2]["drug"] == world.hazard_ratios["drug"]
    out = simulate_replicate(world, seed=3, replicate=0)
    assert np.isfinite(out["qalys"]).all()
