"""Nothing is lost: an output never replaces an input (links followed, referenced files included),
two outputs of one command never share a file, and vctrial deletes only the part files it wrote."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parent.parent


def vctrial(*args, cwd):
    return subprocess.run([sys.executable, "-m", "vctrial.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


@pytest.fixture()
def tree(tmp_path):
    """A copy of the shipped files to work in."""
    for folder in ("cohorts", "diseases", "protocols", "patients"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


TWIN_BATCH = ["twin", "patients/hf_clinic.csv", "--protocol", "patients/hf_dapagliflozin_options.yaml",
              "--draws", 100, "--horizon-years", 1]


@pytest.mark.parametrize("args, option, clash", [
    (["run", "protocols/t2d_hba1c.yaml", "--replicates", 2, "--out", "protocols/t2d_hba1c.yaml"], "--out", "input"),
    (["run", "protocols/t2d_hba1c.yaml", "--replicates", 2, "--out", "diseases/t2d.yaml"], "--out", "input"),
    (["run", "protocols/t2d_hba1c.yaml", "--replicates", 2, "--out", "link.nc"], "--out", "input"),
    (["run", "protocols/pop_hf_scaleup.yaml", "--replicates", 1, "--out", "protocols/hf_outcomes.yaml"], "--out",
     "input"),
    (["compare", "protocols/hf_outcomes.yaml", "protocols/hf_outcomes_gs.yaml", "--replicates", 2, "--out",
      "protocols/hf_outcomes_gs.yaml"], "--out", "input"),
    (TWIN_BATCH + ["--out", "patients/hf_clinic.csv"], "--out", "input"),
    (TWIN_BATCH + ["--out", "x.nc", "--table", "patients/hf_clinic.csv"], "--table", "input"),
    (TWIN_BATCH + ["--out", "x.nc", "--table", "x.nc"], "--table", "also the --out output"),
    (["run", "protocols/t2d_hba1c.yaml", "--replicates", 2, "--out", "protocols/t2d_hba1c.yaml/r.nc"], "--out",
     "which is a file, not a folder"),
    (["twin", "patients/t2d_patient.yaml", "--protocol", "patients/t2d_empagliflozin_options.yaml", "--draws", 100,
      "--out", "cohorts/t2d.yaml"], "--out", "input"),
])
def test_an_output_that_would_replace_an_input_stops_before_simulating(tree, args, option, clash):
    (tree / "link.nc").symlink_to(tree / "protocols" / "t2d_hba1c.yaml")
    before = digest(tree)
    proc = vctrial(*args, cwd=tree)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"command line: {option}:" in lines[0] and clash in lines[0], lines[0]
    assert digest(tree) == before  # every file byte-identical, nothing written


def test_a_users_folder_named_like_the_parts_folder_keeps_its_files(tree):
    parts = tree / "r.nc.parts"
    parts.mkdir()
    (parts / "notes.txt").write_text("mine")
    proc = vctrial("run", "protocols/t2d_hba1c.yaml", "--replicates", 4, "--workers", 0, "--out", "r.nc", cwd=tree)
    assert proc.returncode == 0, proc.stderr
    assert (tree / "r.nc").is_file()
    assert sorted(p.name for p in parts.iterdir()) == ["notes.txt"]


def test_part_files_of_another_seed_survive_a_finished_run(tree):
    """Two runs on one --out with different seeds: the one that finishes removes only its own parts."""
    from vctrial.results import remove_parts

    parts = tree / "r.nc.parts"
    parts.mkdir()
    names = ["0123456789abcdef01234567.000000000-000000099.npz", "0123456789abcdef01234567.000000100-000000199.npz"]
    for name, seed in zip(names, (1, 2)):
        np.savez(parts / name, header=np.array(json.dumps({"seed": seed})))
    remove_parts(tree / "r.nc", seed=1)
    assert sorted(p.name for p in parts.iterdir()) == names[1:]
    remove_parts(tree / "r.nc", seed=2)
    assert not parts.exists()


def test_table_cells_a_spreadsheet_would_run_are_written_as_text(tree):
    csv = tree / "patients" / "hf_clinic.csv"
    lines = csv.read_text().splitlines()
    lines[1] = "=HYPERLINK(\"x\")" + lines[1][lines[1].index(","):]
    lines[2] = "@SUM(A1)" + lines[2][lines[2].index(","):]
    csv.write_text("\n".join(lines) + "\n")
    proc = vctrial(*TWIN_BATCH, "--keep-ids", "--out", "t.nc", "--table", "t.csv", cwd=tree)
    assert proc.returncode == 0, proc.stderr
    import pandas as pd

    table = pd.read_csv(tree / "t.csv")
    assert {"'=HYPERLINK(\"x\")", "'@SUM(A1)"} <= set(table["patient"])
    assert not any(str(v).startswith(("=", "+", "@")) for col in table.columns for v in table[col]
                   if isinstance(v, str))


def test_rank_by_for_one_patient_is_refused_rather_than_ignored(tree):
    proc = vctrial("twin", "patients/t2d_patient.yaml", "--protocol", "patients/t2d_empagliflozin_options.yaml",
                   "--draws", 100, "--rank-by", "qalys", "--out", "t.nc", cwd=tree)
    assert proc.returncode == 2 and "command line: --rank-by:" in proc.stderr and not (tree / "t.nc").exists()
