"""Figures: real PNG images of the expected size, not blank, for every kind of trial result."""

import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vctrial.execute import run_trial  # noqa: E402
from vctrial.results import write_netcdf  # noqa: E402
from vctrial.spec.protocol import load_protocol  # noqa: E402

DATA = Path(__file__).parent / "data"


def assert_real_png(path: Path, min_size=(300, 400)):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert h >= min_size[0] and w >= min_size[1], (path, img.shape)
    rgb = img[..., :3]
    # not blank: many distinct colours and a good share of non-white pixels
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 20
    assert (rgb.mean(axis=2) < 0.95).mean() > 0.02


@pytest.mark.parametrize("protocol, expected", [
    ("event_driven.yaml", {"km_by_arm", "estimate", "state_occupancy"}),
    ("biomarker_change.yaml", {"estimate", "biomarker_by_arm", "state_occupancy"}),
])
def test_plot_command_writes_the_figures_a_file_allows(tmp_path, protocol, expected):
    ds = run_trial(load_protocol(DATA / protocol), 30, seed=1, progress=False)
    nc = write_netcdf(ds, tmp_path / "r.nc")
    proc = subprocess.run([sys.executable, "-m", "vctrial.cli", "plot", str(nc), "--out", str(tmp_path / "fig")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    written = {p.stem for p in (tmp_path / "fig").glob("*.png")}
    assert written == expected
    for p in (tmp_path / "fig").glob("*.png"):
        assert_real_png(p)


def test_plot_of_a_file_that_is_not_netcdf_exits_2(tmp_path):
    bad = tmp_path / "x.nc"
    bad.write_text("not netcdf")
    proc = subprocess.run([sys.executable, "-m", "vctrial.cli", "plot", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and str(bad) in proc.stderr and "Traceback" not in proc.stderr
