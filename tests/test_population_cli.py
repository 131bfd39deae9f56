"""Population files: strict loading with errors that name file, key path and reason; the
``vctrial run`` dispatch on ``kind: population``; the Dataset layout; the Mesa agents."""

import subprocess
import sys

import mesa
import numpy as np
import pytest
import xarray as xr
import yaml

from population_helpers import chronic_files, sir_file
from vctrial.cli import main
from vctrial.errors import SpecError
from vctrial.population.output import fieller, summarize_population
from vctrial.spec.population import load_population


def edited(tmp_path, path, edit):
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("edit, key, reason", [
    (lambda d: d.update(horizon=3), "horizon", "unknown key"),
    (lambda d: d["scenarios"].append({"name": "x", "interventions": ["nope"]}), "scenarios[1].interventions[0]",
     "unknown intervention 'nope'"),
    (lambda d: d["population"].update(size=-5), "population.size", "greater than or equal to 10"),
    (lambda d: d["costs"].update(per_event={"onsett": 5}), "costs.per_event.onsett", "unknown event 'onsett'"),
    (lambda d: d.update(interventions=[{"name": "t", "type": "treatment", "effect_from": "../x.yaml#a"}]),
     "interventions[0].effect_from", "referenced file not found"),
    (lambda d: d.update(interventions=[{"name": "t", "type": "treatment",
                                         "effects": [{"transition": "onset", "hazard_ratio": 0.5}],
                                         "eligibility": {"criteria": ["bmi > 30"]}}]),
     "interventions[0].eligibility.criteria[0]", "bmi"),
])
def test_a_bad_population_file_stops_with_one_error_naming_file_key_and_reason(tmp_path, edit, key, reason):
    path = edited(tmp_path, chronic_files(tmp_path), edit)
    with pytest.raises(SpecError) as err:
        load_population(path)
    assert err.value.file == str(path)
    assert err.value.path == key
    assert reason in err.value.reason


def test_effect_from_an_unknown_arm_names_the_arms(tmp_path):
    protocol = "/work/main/protocols/hf_outcomes.yaml"
    path = tmp_path / "pop.yaml"
    data = yaml.safe_load(open("protocols/pop_hf_scaleup.yaml").read())
    data["cohort"] = None
    data.pop("cohort")
    data["population"]["cohort"] = "/work/main/cohorts/hfref.yaml"
    data["disease"] = "/work/main/diseases/hfref.yaml"
    data["interventions"][0]["effect_from"] = protocol + "#placebo"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as err:
        load_population(path)
    assert err.value.path == "interventions[0].effect_from"
    assert "no arm 'placebo'" in err.value.reason and "control, active" in err.value.reason


def test_run_on_a_bad_population_file_exits_2_without_traceback_or_output(tmp_path):
    path = edited(tmp_path, chronic_files(tmp_path), lambda d: d["population"].update(sizes=3))
    out = tmp_path / "out.nc"
    proc = subprocess.run([sys.executable, "-m", "vctrial.cli", "run", str(path), "-n", "2", "-o", str(out),
                           "--workers", "0"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{path}: population.sizes: unknown key" in proc.stderr
    assert not out.exists()


def test_run_writes_the_documented_dataset_and_prints_scenarios_against_baseline(tmp_path, capsys):
    path = edited(tmp_path, chronic_files(tmp_path, population={"size": 3000, "age_min": 40, "age_max": 80}),
                  lambda d: d.update(
                      interventions=[{"name": "drug", "type": "treatment", "start_year": 1, "cost_per_year": 100,
                                      "effects": [{"transition": "death_ill", "hazard_ratio": 0.5}]}],
                      scenarios=[{"name": "base"}, {"name": "drug", "interventions": ["drug"]}]))
    out = tmp_path / "pop.nc"
    assert main(["run", str(path), "-n", "3", "-s", "5", "-o", str(out), "--workers", "0", "-q"]) == 0
    printed = capsys.readouterr().out
    for words in ("drug vs base", "events averted", "deaths averted", "QALYs gained", "incremental cost", "ICER",
                  "95% MC interval"):
        assert words in printed
    ds = xr.open_dataset(out)
    assert ds["incidence"].dims == ("scenario", "replicate", "time", "age_group", "region")
    for name in ("incidence", "prevalence", "deaths", "life_years", "qalys", "costs"):
        assert name in ds and ds[name].attrs["units"] and ds[name].attrs["long_name"]
    assert list(ds.scenario.values) == ["base", "drug"] and ds.sizes["replicate"] == 3
    assert ds.attrs["kind"] == "population" and ds.attrs["seed"] == 5 and ds.attrs["discount_rate_per_year"] == 0.0
    assert "kind: population" in ds.attrs["population_text"]
    table = summarize_population(ds)
    assert table.loc[("drug", "deaths averted"), "value"] > 0


def test_fieller_interval_matches_the_delta_method_when_the_effect_is_precise():
    gen = np.random.default_rng(4)
    de = gen.normal(10.0, 0.5, 400)
    dc = 2000 * de + gen.normal(0, 300, 400)
    ratio, lo, hi = fieller(dc, de)
    se = np.sqrt(np.var(dc, ddof=1) / 400 / de.mean() ** 2 + dc.mean() ** 2 * np.var(de, ddof=1) / 400 / de.mean() ** 4
                 - 2 * dc.mean() * np.cov(dc, de)[0, 1] / 400 / de.mean() ** 3)
    assert lo == pytest.approx(ratio - 1.96 * se, rel=0.01) and hi == pytest.approx(ratio + 1.96 * se, rel=0.01)
    assert np.isnan(fieller(dc, gen.normal(0, 1, 400))[1])  # effect indistinguishable from 0: unbounded


def test_regions_and_clinics_are_mesa_agents_whose_catchments_partition_the_population(tmp_path):
    from vctrial.population.agents import Clinic, PopulationModel, Region
    from vctrial.population.epidemic import EpidemicEngine, Structure
    from vctrial.population.interventions import Delivery
    from vctrial.population.people import build_people

    path = sir_file(tmp_path, size=3000, population={"size": 3000, "regions": [
        {"name": "a", "share": 0.3}, {"name": "b", "share": 0.7}]},
        interventions=[{"name": "v", "type": "vaccination", "efficacy_infection": 0.5}],
        scenarios=[{"name": "none"}, {"name": "v", "interventions": ["v"]}])
    world = load_population(path)
    people = build_people(world, 1, 0)
    engine = EpidemicEngine(world, people, Structure(world, people, 1, 0), 1, 0)
    deliveries = [Delivery(iv, world, engine, 1, 0, engine.n_days) for iv in world.scenario_interventions[1]]
    model = PopulationModel(engine, deliveries, 7, 1.0, seed=3)
    assert isinstance(model, mesa.Model)
    regions = list(model.agents_by_type[Region])
    clinics = list(model.agents_by_type[Clinic])
    assert len(regions) == 2 and len(clinics) == 2
    assert np.array_equal(np.sort(np.concatenate([r.catchment for r in regions])), np.arange(people.n))
    assert abs(regions[0].catchment.size / people.n - 0.3) < 0.03
    model.step()
    assert (engine.vax_day >= 0).sum() == people.n  # coverage 1, no capacity limit: everyone on day 0


def test_willingness_to_pay_gives_net_monetary_benefit(tmp_path):
    """NMB = WTP × ΔQALY − Δcost per replicate, summarized with its Monte Carlo interval."""
    path = edited(tmp_path, chronic_files(tmp_path, population={"size": 3000, "age_min": 40, "age_max": 80}),
                  lambda d: d.update(
                      costs={"discount_rate_per_year": 0.0, "willingness_to_pay_per_qaly": 50000},
                      interventions=[{"name": "drug", "type": "treatment", "start_year": 1, "cost_per_year": 100,
                                      "effects": [{"transition": "death_ill", "hazard_ratio": 0.5}]}],
                      scenarios=[{"name": "base"}, {"name": "drug", "interventions": ["drug"]}]))
    out = tmp_path / "pop.nc"
    assert main(["run", str(path), "-n", "3", "-s", "5", "-o", str(out), "--workers", "0", "-q"]) == 0
    ds = xr.open_dataset(out)
    assert ds.attrs["willingness_to_pay_per_qaly"] == 50000
    total = {k: ds[k].sum(["time", "age_group", "region"]).values for k in ("qalys", "costs")}
    nmb = 50000 * (total["qalys"][1] - total["qalys"][0]) - (total["costs"][1] - total["costs"][0])
    row = summarize_population(ds).loc[("drug", "net monetary benefit")]
    assert row["value"] == pytest.approx(nmb.mean(), rel=1e-12)
    assert row["lower"] < row["value"] < row["upper"]
