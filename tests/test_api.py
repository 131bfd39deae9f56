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
    from vctrial.trial.run import _last_entry

    entry = np.array([[3.0, np.inf, 7.5], [np.inf, np.inf, np.inf]])
    last = _last_entry(entry)
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
