"""``vctrial summarize``: a results file's report, as the run printed it, without rerunning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vctrial import api

DATA = Path(__file__).parent / "data"


def vctrial(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vctrial.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A plain run, a 2-point sweep and a comparison, with what each run printed."""
    folder = tmp_path_factory.mktemp("summarize")
    printed = {}
    for name, args in {"plain": ["run", DATA / "event_driven.yaml"],
                       "sweep": ["run", DATA / "event_driven.yaml", "--sweep", "sample_size=300,600"],
                       "compare": ["compare", DATA / "event_driven.yaml", DATA / "group_sequential.yaml"]}.items():
        proc = vctrial(*args, "-n", 6, "-s", 3, "-w", 0, "-q", "-o", folder / f"{name}.nc")
        assert proc.returncode == 0, proc.stderr
        printed[name] = proc.stdout.rsplit("wrote ", 1)[0]
    return folder, printed


@pytest.mark.parametrize("name", ["plain", "sweep", "compare"])
def test_summarize_prints_what_the_run_printed(files, name):
    folder, printed = files
    proc = vctrial("summarize", folder / f"{name}.nc")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == printed[name]


def test_sel_prints_one_sweep_point_and_csv_holds_its_table(files, tmp_path):
    folder, _ = files
    csv = tmp_path / "point.csv"
    proc = vctrial("summarize", folder / "sweep.nc", "--sel", "sample_size=300", "--csv", csv)
    assert proc.returncode == 0, proc.stderr
    ds = api.open_results(folder / "sweep.nc").sel(sample_size=300)
    assert proc.stdout == api.report(ds) + f"\nwrote {csv}\n"
    assert "6 replicates" in proc.stdout
    table = pd.read_csv(csv, index_col=0)
    pd.testing.assert_frame_equal(table, api.summarize(ds), check_names=False, check_index_type=False)


def test_sel_of_a_comparison_names_the_protocol(files):
    folder, _ = files
    proc = vctrial("summarize", folder / "compare.nc", "--sel", "protocol=group_sequential")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == api.report(api.open_results(folder / "compare.nc").sel(protocol="group_sequential")) + "\n"
    assert proc.stdout != vctrial("summarize", folder / "compare.nc", "--sel", "protocol=event_driven").stdout


@pytest.mark.parametrize("make, args, reason", [
    (None, ["sweep.nc", "--sel", "sample_size=301"], "'301' is not one of its values (300, 600)"),
    (None, ["sweep.nc", "--sel", "replicate=1"], "not a sweep or comparison dimension of this file (sample_size)"),
    (None, ["plain.nc", "--sel", "sample_size=300"], "not a sweep or comparison dimension of this file (it has none)"),
    (None, ["plain.nc", "--csv", "plain.nc"], "an output never replaces an input"),
    (None, ["plain.nc", "sweep.nc", "--csv", "both.csv"], "summarizes one results file"),
    ("text.nc", ["text.nc"], "not a readable netCDF results file"),
    (None, ["missing.nc"], "missing.nc"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(files, make, args, reason):
    folder, _ = files
    if make:
        (folder / make).write_text("not netCDF\n")
    before = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    proc = vctrial("summarize", *args, cwd=folder)
    assert proc.returncode == 2
    assert reason in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_summarize_a_validation_file_prints_what_check_printed(tmp_path):
    out = tmp_path / "check.nc"
    checked = vctrial("check", DATA / "validation" / "check.yaml", "-n", 20, "-w", 0, "-q", "-o", out)
    assert checked.returncode in (0, 1), checked.stderr
    proc = vctrial("summarize", out, "--csv", tmp_path / "figures.csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\nwrote")[0] == checked.stdout.split("\n\nwrote")[0]
    table = pd.read_csv(tmp_path / "figures.csv", index_col="figure")
    ds = api.open_results(out)
    assert list(table.index) == list(ds.figure.values)
    assert table["simulated_mean"].to_numpy() == pytest.approx(ds.simulated_mean.values, rel=1e-12)
