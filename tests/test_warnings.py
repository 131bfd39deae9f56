"""Degenerate trials on the command line: results with NaN where nothing can be estimated, and no
numpy warning in the user's terminal.

The commands run with ``-W always::RuntimeWarning`` so that the command line's last-resort routing of
RuntimeWarnings to the debug log is off: a warning seen here comes from a computation that must be
fixed at its source.
"""

import logging
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from vctrial import cli

DATA = Path(__file__).parent / "data"

BASE = {
    "kind": "trial", "name": "degenerate", "cohort": "simple_cohort.yaml", "disease": "exponential.yaml",
    "sample_size": 40,
    "arms": [{"name": "control"}, {"name": "active", "effects": [{"transition": "event", "hazard_ratio": 0.75}]}],
    "enrollment": {"duration_months": 12},
    "follow_up": {"type": "fixed", "duration_months": 24},
    "endpoint": {"type": "time_to_event", "events": ["event"]},
    "analysis": {"method": "logrank", "alpha": 0.025, "sided": "one"},
}
EMPTY_ARM = {"sample_size": 4, "randomization": {"method": "simple"},
             "arms": [{"name": "control", "allocation": 20},
                      {"name": "active", "allocation": 1, "effects": [{"transition": "event", "hazard_ratio": 0.75}]}]}
MARKER = {"disease": "stable_marker.yaml", "endpoint": {"type": "biomarker_change", "biomarker": "marker", "visit_month": 6},
          "analysis": {"method": "ancova", "alpha": 0.05, "sided": "two"},
          "arms": [{"name": "control", "allocation": 20},
                   {"name": "active", "allocation": 1, "effects": [{"biomarker": "marker", "shift": -0.3}]}]}
GS = {"follow_up": {"type": "event_driven", "target_events": 20, "max_duration_months": 24},
      "looks": {"information_fractions": [0.5, 1.0], "efficacy": {"spending": "obf"},
                "futility": {"type": "beta_spending", "beta": 0.1}}}

# name: (changes to BASE, extra arguments of `vctrial run`)
CASES = {
    # simple randomization of 4 patients 20:1: the active arm is almost always empty
    "an arm that receives nobody": ({**EMPTY_ARM, "analysis": {**BASE["analysis"], "tau_months": 12}},
                                    ["--sweep", "analysis.method=logrank,maxcombo,cox,rmst"]),
    "everybody drops out at once": ({"dropout": {"rate_per_year": 1e5}},
                                    ["--sweep", "analysis.method=logrank,fleming_harrington,cox"]),
    "follow-up too short for any event": ({"follow_up": {"type": "fixed", "duration_months": 0.01}}, []),
    "sites that never recruit": ({"enrollment": {"sites": [{"name": "s", "count": 2, "screening_rate_per_month": 0.001,
                                                            "activation_months": [50, 59]}],
                                                 "max_duration_months": 60}}, []),
    "biomarker trial with an empty arm": ({**EMPTY_ARM, **MARKER}, []),
    "group-sequential trial without events": ({**GS, "follow_up": {**GS["follow_up"], "max_duration_months": 0.01}}, []),
    "group-sequential trial where everybody drops out": ({**GS, "dropout": {"rate_per_year": 1e5}}, []),
    "one replicate": (GS, ["-n", "1"]),
}


def vctrial(*args):
    return subprocess.run([sys.executable, "-W", "always::RuntimeWarning", "-m", "vctrial.cli", *map(str, args)],
                          capture_output=True, text=True)


def degenerate_protocol(tmp_path: Path, changes: dict) -> Path:
    for name in ("simple_cohort.yaml", "exponential.yaml", "stable_marker.yaml"):
        shutil.copy(DATA / name, tmp_path / name)
    spec = {**BASE, **changes}
    path = tmp_path / "degenerate.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_degenerate_trial_runs_and_plots_without_numpy_warnings(case, tmp_path):
    changes, extra = CASES[case]
    protocol = degenerate_protocol(tmp_path, changes)
    out = tmp_path / "out.nc"
    args = ["run", protocol, "-n", "6", "-s", "3", "-o", out, "-q", "-w", "0", *extra]
    proc = vctrial(*args)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    with xr.open_dataset(out) as ds:
        estimate = ds["estimate"].values
        assert not np.isinf(estimate).any() and (np.isnan(estimate).any() or np.isfinite(estimate).all())
    figures = tmp_path / "figures"
    proc = vctrial("plot", out, "-o", figures)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    assert list(figures.glob("*.png"))


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_command_line_routes_a_leftover_runtime_warning_to_the_debug_log():
    """The last resort of ``main``: a RuntimeWarning becomes a debug line; other warnings pass through."""
    passed, lines = [], Lines()
    log = logging.getLogger("vctrial")
    level = log.level
    log.addHandler(lines)
    log.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = cli._runtime_warnings_to_debug_log(lambda *a: passed.append(a[1]))
            np.mean(np.array([]))
            warnings.warn("kept", UserWarning)
    finally:
        log.removeHandler(lines)
        log.setLevel(level)
    assert any("RuntimeWarning: Mean of empty slice" in line for line in lines.lines), lines.lines
    assert passed == [UserWarning]
