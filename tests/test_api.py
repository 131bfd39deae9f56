"""The Python API mirrors the command line: same Datasets, same printed text."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from vctrial import api
from vctrial.errors import SpecError

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "vctrial.cli", *map(str, args)], capture_output=True, text=True)


def test_run_returns_the_dataset_and_text_the_command_writes_and_prints(tmp_path):
    out = tmp_path / "cli.nc"
    proc = cli("run", DATA / "event_driven.yaml", "-n", 5, "-s", 3, "-o", out, "-q", "--workers", 0)
    assert proc.returncode == 0, proc.stderr
    ds = api.run(DATA / "event_driven.yaml", replicates=5, seed=3, progress=False)
    on_disk = api.open_results(out)
    for name in ("statistic", "p_value", "reject", "estimate", "true_effect", "n_events"):
        np.testing.assert_array_equal(ds[name].values, on_disk[name].values)
    assert api.report(ds) in proc.stdout
    table = api.summarize(ds)
    assert isinstance(table, pd.DataFrame) and "power" in table.index


def test_sweep_and_compare_have_their_dimensions(tmp_path):
    swept = api.sweep(DATA / "event_driven.yaml", {"arms.active.effects.0.hazard_ratio": [0.7, 1.0]},
                      replicates=4, seed=1, progress=False)
    assert swept.sizes["hazard_ratio"] == 2 and swept.sizes["replicate"] == 4
    assert len(api.summarize(swept)) == 2
    both = api.compare([DATA / "event_driven.yaml", DATA / "event_driven.yaml"], replicates=4, seed=1,
                       progress=False, out=tmp_path / "c.nc")
    assert both.sizes["protocol"] == 2 and (tmp_path / "c.nc").exists()
    # the same protocol twice on common random numbers gives identical results
    np.testing.assert_array_equal(both["statistic"].isel(protocol=0).values, both["statistic"].isel(protocol=1).values)


def test_bounds_equal_the_command_line():
    table = api.bounds(3, alpha=0.025, spending="obf")
    proc = cli("bounds", "--looks", 3, "--alpha", 0.025, "--spending", "obf")
    assert proc.returncode == 0
    for z in table["efficacy_z"]:
        assert f"{z:.4f}" in proc.stdout
    assert table["cumulative_alpha"].iloc[-1] == pytest.approx(0.025, abs=1e-9)


def test_synthesize_and_load_and_validate(tmp_path):
    frame = api.synthesize(ROOT / "cohorts" / "hfref.yaml", 500, seed=2)
    assert len(frame) == 500 and frame.attrs["n_screened"] >= 500
    assert (frame["lvef_pct"] <= 40).all()
    assert api.validate(ROOT / "protocols" / "hf_outcomes.yaml") == "trial"
    assert api.validate(ROOT / "cohorts" / "t2d.yaml") == "cohort"
    assert api.validate(ROOT / "patients" / "t2d_patient.yaml") == "patient"
    bad = tmp_path / "patient.yaml"
    bad.write_text((ROOT / "patients" / "t2d_patient.yaml").read_text().replace("../cohorts/t2d.yaml",
                                                                                 str(ROOT / "cohorts" / "t2d.yaml"))
                   .replace("../diseases/t2d.yaml", str(ROOT / "diseases" / "t2d.yaml"))
                   .replace("hba1c_pct: {value: 8.6", "hba1c_pct: {value: 86"))
    with pytest.raises(SpecError, match="covariates.hba1c_pct"):
        api.validate(bad)
    odd = tmp_path / "odd.yaml"
    odd.write_text("kind: trail\nname: x\n")
    with pytest.raises(SpecError, match="kind: must be one of"):
        api.load(odd)


def test_twin_api_matches_the_file_the_command_writes(tmp_path):
    out = tmp_path / "twin.nc"
    args = (ROOT / "patients" / "t2d_patient.yaml", ROOT / "patients" / "t2d_empagliflozin_options.yaml")
    proc = cli("twin", args[0], "--protocol", args[1], "--horizon-years", 2, "--draws", 200, "-s", 4, "-o", out,
               "-q", "--id-salt", "x")
    assert proc.returncode == 0, proc.stderr
    ds = api.twin(*args, horizon_years=2, draws=200, seed=4, id_salt="x")
    with xr.open_dataset(out) as disk:
        for name in ds.data_vars:
            if np.issubdtype(ds[name].dtype, np.floating):
                np.testing.assert_array_equal(ds[name].values, disk[name].values)


def test_a_trial_without_events_in_both_arms_reports_no_estimate_instead_of_a_runaway_one(tmp_path):
    text = (ROOT / "protocols" / "hf_outcomes.yaml").read_text()
    text = text.replace("sample_size: 4000", "sample_size: 4").replace("target_events: 800", "target_events: 2")
    text = text.replace("../cohorts/", f"{ROOT}/cohorts/").replace("../diseases/", f"{ROOT}/diseases/")
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    ds = api.run(path, replicates=40, seed=1, workers=0, progress=False)
    events = ds["n_events"].values  # (replicate, arm)
    one_sided = (events == 0).any(axis=1)
    assert one_sided.any() and (~one_sided).any()
    estimate = ds["estimate"].values
    assert np.isnan(estimate[one_sided]).all() and np.isfinite(estimate).any()
    assert np.nanmax(np.abs(np.log(estimate))) < 20  # no runaway 1e22 hazard ratios
    line = next(x for x in api.report(ds).splitlines() if "no estimate" in x)
    assert int(line.split()[-1]) == np.isnan(estimate).sum()


def test_a_replicate_where_nobody_is_randomized_has_no_duration_rather_than_minus_infinity():
    from vctrial.trial.observation import last_entry

    entry = np.array([[3.0, np.inf, 7.5], [np.inf, np.inf, np.inf]])
    last = last_entry(entry)
    assert last[0] == 7.5 and np.isnan(last[1])


def test_summarize_one_point_or_a_slice_of_a_sweep():
    """``api.summarize(ds.sel(...))`` on one point, or on a slice, gives that point's table (was TypeError)."""
    from vctrial import api

    ds = api.run(DATA / "event_driven.yaml", replicates=4, seed=1, progress=False,
                 sweep={"arms.active.effects.0.hazard_ratio": [1.0, 0.7], "sample_size": [100, 200]})
    assert {"hazard_ratio", "sample_size"} <= set(ds.dims)
    one = api.summarize(ds.sel(hazard_ratio=0.7, sample_size=200))
    whole = api.summarize(ds)
    assert one.loc["power", "value"] == whole.xs((0.7, 200), level=("hazard_ratio", "sample_size"))["rejection rate"].iloc[0]
    assert [i[0] if isinstance(i, tuple) else i for i in api.summarize(ds.sel(hazard_ratio=0.7)).index] == [100, 200]


def test_a_two_way_sweep_over_alpha_and_sample_size_writes_and_each_point_records_its_own_values(tmp_path):
    """``analysis.alpha`` gives the dimension ``alpha``, the name of a varying attribute (was a crash in
    ``results.stack``): the dimension carries it, and each point's attributes and spec hash are its own."""
    from vctrial.results import point, provenance

    out = tmp_path / "s.nc"
    proc = cli("run", DATA / "event_driven.yaml", "--sweep", "analysis.alpha=0.025,0.05", "--sweep",
               "sample_size=200,400", "-n", 4, "-o", out, "-q", "--workers", 0)
    assert proc.returncode == 0, proc.stderr
    ds = api.open_results(out)
    assert {"alpha", "sample_size"} <= set(ds.dims) and "alpha" in ds.attrs["varying_attrs"]
    assert "alpha" not in ds.data_vars  # the coordinate holds each point's alpha
    one = ds.sel(alpha=0.05, sample_size=200)
    table = api.summarize(one)
    assert table.loc["power", "value"] == one["reject"].values.mean()
    own = point(one)
    assert own.attrs["alpha"] == 0.05
    alone = api.load_protocol(DATA / "event_driven.yaml", {"analysis.alpha": 0.05, "sample_size": 200, "sweep": {}})
    assert own.attrs["spec_hash"] == provenance(alone, 1)["spec_hash"]
    assert own.attrs["protocol_text"] == provenance(alone, 1)["protocol_text"]
    hashes = {point(ds.sel(alpha=a, sample_size=n)).attrs["spec_hash"] for a in (0.025, 0.05) for n in (200, 400)}
    assert len(hashes) == 4


def test_an_attribute_named_like_a_dimension_with_other_values_is_kept_under_another_name():
    """When a dimension's coordinate does not hold a varying attribute's values (a mapping swept as JSON),
    the attribute is stored as ``attribute_<name>`` and ``point`` restores it under its own name."""
    import xarray as xr

    from vctrial.results import point, stack

    base = xr.Dataset({"reject": (("replicate",), np.array([True, False]))}, coords={"replicate": [0, 1]})
    points = [base.assign_attrs(endpoint=f"label {i}", seed=1) for i in range(2)]
    ds = stack(points, {"endpoint": ['{"type":"a"}', '{"type":"b"}']})
    assert "attribute_endpoint" in ds.data_vars and ds.attrs["seed"] == 1
    assert point(ds.sel(endpoint='{"type":"b"}')).attrs["endpoint"] == "label 1"
    with pytest.raises(ValueError, match="select one point of endpoint"):
        point(ds)


def test_provenance_comes_from_the_resolved_specs_in_memory(tmp_path):
    """Overrides are hashed and recorded; nothing is re-read from disk, so specs whose files are gone
    (or never existed) are recorded, and equal specs give equal hashes wherever they came from."""
    import shutil

    import yaml

    from vctrial.results import provenance, spec_document
    from vctrial.spec.cohort import CohortSpec
    from vctrial.spec.disease import DiseaseSpec
    from vctrial.spec.protocol import TrialProtocol

    plain = provenance(api.load_protocol(DATA / "event_driven.yaml"), 1)
    changed = provenance(api.load_protocol(DATA / "event_driven.yaml", {"sample_size": 60}), 1)
    assert changed["spec_hash"] != plain["spec_hash"]
    assert yaml.safe_load(changed["protocol_text"])["sample_size"] == 60
    for name in ("event_driven.yaml", "simple_cohort.yaml", "exponential.yaml"):
        shutil.copy(DATA / name, tmp_path / name)
    moved = api.load_protocol(tmp_path / "event_driven.yaml")
    for name in ("event_driven.yaml", "simple_cohort.yaml", "exponential.yaml"):
        (tmp_path / name).unlink()
    gone = provenance(moved, 1)
    assert gone["spec_hash"] == plain["spec_hash"] and gone["disease_text"] == plain["disease_text"]
    # the recorded texts load back to the very specs that ran
    for key, model, spec in (("protocol_text", TrialProtocol, moved.spec), ("cohort_text", CohortSpec, moved.cohort),
                             ("disease_text", DiseaseSpec, moved.disease)):
        assert spec_document(model.model_validate(yaml.safe_load(gone[key]))) == spec_document(spec)


def test_a_disease_built_in_code_is_simulated_and_saved(tmp_path):
    """A protocol whose disease was built in code and whose own file does not exist runs and writes its
    results (was a TypeError after simulating); the file records the disease it ran."""
    import yaml

    from vctrial.spec.disease import DiseaseSpec
    from vctrial.spec.protocol import Protocol

    loaded = api.load_protocol(DATA / "event_driven.yaml", {"sample_size": 60, "follow_up.target_events": 30})
    data = yaml.safe_load((DATA / "exponential.yaml").read_text())
    disease = DiseaseSpec.model_validate(data)
    assert disease.path is None
    built = Protocol(tmp_path / "never_written.yaml", loaded.spec, "", loaded.cohort, disease)
    out = tmp_path / "code.nc"
    ds = api.run(built, replicates=3, seed=2, progress=False, out=out)
    back = api.open_results(out)
    assert back.attrs["spec_hash"] == ds.attrs["spec_hash"]
    assert DiseaseSpec.model_validate(yaml.safe_load(back.attrs["disease_text"])) == disease
    again = api.run(loaded, replicates=3, seed=2, progress=False)  # the same specs from files: same results
    np.testing.assert_array_equal(again["statistic"].values, back["statistic"].values)
    assert again.attrs["spec_hash"] == back.attrs["spec_hash"]


def test_population_provenance_reads_no_file(tmp_path):
    """A population's hash and recorded texts come from the loaded specs: the same after its files are gone."""
    import shutil

    import yaml

    from vctrial.population.output import referenced_texts, spec_hash

    world = api.load_population(ROOT / "protocols" / "pop_hf_scaleup.yaml")
    before = spec_hash(world), referenced_texts(world)
    copies = tmp_path / "copy"
    for folder in ("protocols", "cohorts", "diseases"):
        shutil.copytree(ROOT / folder, copies / folder)
    moved = api.load_population(copies / "protocols" / "pop_hf_scaleup.yaml")
    shutil.rmtree(copies)
    assert spec_hash(moved) == before[0]
    texts = referenced_texts(moved)
    assert texts == before[1].replace(str(ROOT), str(copies))  # the same specs, read from the other folder
    disease = texts.split("# --- disease")[1].split("\n", 1)[1].split("# --- ")[0]
    assert yaml.safe_load(disease) == yaml.safe_load(yaml.safe_dump(moved.disease.model_dump(mode="json", by_alias=True,
                                                                                               warnings=False)))
    assert spec_hash(moved) != spec_hash(api.load_population(ROOT / "protocols" / "pop_cvd_prevention.yaml"))
