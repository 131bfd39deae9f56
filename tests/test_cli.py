"""The command line: a run end to end, and bad input stopping with one clear line."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data"


def vctrial(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vctrial.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


@pytest.mark.parametrize("protocol", ["hf_outcomes.yaml", "t2d_hba1c.yaml"])
def test_run_shipped_protocol_writes_labeled_netcdf(tmp_path, protocol):
    out = tmp_path / "res.nc"
    proc = vctrial("run", ROOT / "protocols" / protocol, "--replicates", 6, "--seed", 5, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "MC interval" in proc.stdout and ("power" in proc.stdout)
    ds = xr.open_dataset(out)
    assert ds.sizes["replicate"] == 6 and list(ds["arm"].values) == [
        "control" if protocol.startswith("hf") else "placebo", "active"]
    for name in ("statistic", "p_value", "reject", "estimate", "ci_lower", "ci_upper", "true_effect",
                 "duration_months", "n_randomized", "n_analysed"):
        assert name in ds and ds[name].attrs["units"] and ds[name].attrs["long_name"]
    assert ds.attrs["seed"] == 5 and ds.attrs["vctrial_version"]
    assert "kind: trial" in ds.attrs["protocol_text"]
    size = 4000 if protocol.startswith("hf") else 300
    assert np.all(ds["n_randomized"].sum("arm").values == size)
    assert not list(tmp_path.glob("*.tmp"))
    # a results file gets the usual permissions (the umask's), not the 0600 of a temporary file
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_same_seed_same_file_and_different_seed_differs(tmp_path):
    runs = []
    for i, seed in enumerate((1, 1, 2)):
        out = tmp_path / f"r{i}.nc"
        assert vctrial("run", DATA / "event_driven.yaml", "-n", 4, "-s", seed, "-o", out, "-q").returncode == 0
        runs.append(xr.open_dataset(out))
    assert runs[0].identical(runs[1])
    assert not np.array_equal(runs[0]["statistic"].values, runs[2]["statistic"].values)


def test_validate_accepts_shipped_files():
    files = sorted((ROOT / "cohorts").glob("*.yaml")) + sorted((ROOT / "diseases").glob("*.yaml")) + sorted(
        (ROOT / "protocols").glob("*.yaml"))
    proc = vctrial("validate", *files)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("valid") == len(files)


def write_protocol(tmp_path, replace: tuple[str, str] | None = None, append: str = "") -> Path:
    text = (DATA / "event_driven.yaml").read_text()
    text = text.replace("cohort: simple_cohort.yaml", f"cohort: {DATA / 'simple_cohort.yaml'}")
    text = text.replace("disease: exponential.yaml", f"disease: {DATA / 'exponential.yaml'}")
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    path = tmp_path / "bad.yaml"
    path.write_text(text + append)
    return path


BAD = [
    ("unknown key", None, "sample_sise: 10\n", "sample_sise", "unknown key"),
    ("wrong type", ("sample_size: 600", "sample_size: many"), "", "sample_size", "integer"),
    ("out of range", ("hazard_ratio: 0.75", "hazard_ratio: -0.7"), "", "arms[1].effects[0]", "-0.7"),
    ("missing file", ("disease: /", "disease: /nonexistent/"), "", "disease", "not found"),
    ("inconsistent", ("method: logrank", "method: ancova"), "", "analysis.method", "logrank"),
    ("unknown transition", ("transition: event", "transition: evnt"), "", "arms[1].effects[0].transition", "evnt"),
    ("unknown endpoint event", ("events: [event]", "events: [death]"), "", "endpoint.events[0]", "death"),
    ("yaml syntax", ("sample_size: 600", "sample_size: [600"), "", "invalid YAML", "line"),
]


@pytest.mark.parametrize("case, replace, append, where, why", BAD, ids=[b[0] for b in BAD])
def test_bad_protocol_exits_2_with_one_line_and_no_output(tmp_path, case, replace, append, where, why):
    path = write_protocol(tmp_path, replace, append)
    out = tmp_path / "never.nc"
    proc = vctrial("run", path, "-n", 2, "-o", out)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and where in lines[0] and why in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob("*.nc*"))


def test_bad_cohort_is_named_by_its_own_file(tmp_path):
    cohort = tmp_path / "c.yaml"
    cohort.write_text((DATA / "simple_cohort.yaml").read_text().replace("sd: 8", "sd: -8"))
    path = write_protocol(tmp_path, (f"cohort: {DATA / 'simple_cohort.yaml'}", f"cohort: {cohort}"))
    proc = vctrial("validate", path)
    assert proc.returncode == 2
    assert str(cohort) in proc.stderr and "covariates.age.sd" in proc.stderr


def test_an_address_where_no_cluster_answers_fails_fast_with_one_line(tmp_path):
    import socket
    import time

    with socket.socket() as s:  # a port on this machine that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    proc = vctrial("run", ROOT / "protocols" / "t2d_hba1c.yaml", "--replicates", 2, "--address", f"127.0.0.1:{port}",
                   "--out", tmp_path / "r.nc")
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("vctrial: error:")]
    assert len(errors) == 1 and f"no Ray cluster answers at 127.0.0.1:{port}" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r.nc").exists()
