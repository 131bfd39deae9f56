"""Patient-level export: the rows are the run's own patients, and another tool's analysis of them
gives the run's own statistics (lifelines for time-to-event, statsmodels OLS for ANCOVA)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test

from vctrial import api
from vctrial.execute import ExecOptions, run_jobs
from vctrial.spec.protocol import load_protocol
from vctrial.trial.dataset import trial_job

DATA = Path(__file__).parent / "data"
SEED = 20261206


def vctrial(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vctrial.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def run_arrays(protocol, replicates: int) -> dict:
    (arrays,) = run_jobs([trial_job(protocol)], replicates, SEED, ExecOptions(workers=0, progress=False))
    return arrays


def test_time_to_event_rows_reproduce_the_runs_logrank_and_cox_by_lifelines():
    protocol = load_protocol(DATA / "event_driven.yaml")
    arrays = run_arrays(protocol, 4)
    table = api.patients(protocol, [1, 3], SEED)
    assert set(table.replicate) == {1, 3}
    active = protocol.spec.arms[1].name
    for r in (1, 3):
        d = table[(table.replicate == r) & table.included]
        act = (d.arm == active).to_numpy()
        assert d.event.sum() == arrays["n_events"][r].sum()
        lr = logrank_test(d.time_months[act], d.time_months[~act], d.event[act], d.event[~act])
        assert lr.test_statistic == pytest.approx(arrays["statistic"][r] ** 2, rel=1e-9)
        cox = CoxPHFitter().fit(pd.DataFrame({"t": d.time_months, "e": d.event, "x": act.astype(float)}), "t", "e")
        assert np.exp(cox.params_["x"]) == pytest.approx(arrays["estimate"][r], rel=1e-6)
        # the censoring is the analysis's: follow-up ends at the final analysis date
        assert (d.time_months <= d.follow_up_months + 1e-9).all()
        assert np.allclose(d.entry_month + d.follow_up_months, d.analysis_month)


def test_biomarker_rows_reproduce_the_runs_ancova_by_statsmodels():
    protocol = load_protocol(DATA / "biomarker_change.yaml")
    arrays = run_arrays(protocol, 3)
    table = api.patients(protocol, [2], SEED)
    ep = protocol.spec.endpoint
    d = table[table.included].rename(columns={f"{ep.biomarker}_baseline": "y0",
                                              f"{ep.biomarker}_month_{ep.visit_month:g}": "y1"})
    d = d.assign(change=d.y1 - d.y0, active=(d.arm == protocol.spec.arms[1].name).astype(float))
    fit = smf.ols("change ~ active + y0", data=d).fit()
    assert fit.params["active"] == pytest.approx(arrays["estimate"][2], rel=1e-9)
    assert fit.tvalues["active"] == pytest.approx(arrays["statistic"][2], rel=1e-9)


def test_run_patients_writes_the_first_k_replicates_as_csv(tmp_path):
    out = tmp_path / "res.nc"
    proc = vctrial("run", DATA / "event_driven.yaml", "-n", 3, "-s", SEED, "-w", 0, "-q", "-o", out, "--patients", 2)
    assert proc.returncode == 0, proc.stderr
    csv = tmp_path / "res.patients.csv"
    assert f"wrote {csv} (1,200 patients of replicates 0-1)" in proc.stdout
    written = pd.read_csv(csv)
    expected = api.patients(DATA / "event_driven.yaml", [0, 1], SEED)
    assert list(written.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(written, expected, check_dtype=False, rtol=1e-9)
    assert [p.name for p in tmp_path.iterdir()] and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_levels_a_spreadsheet_would_run_are_neutralised(tmp_path):
    cohort = (DATA / "simple_cohort.yaml").read_text() + \
        "  marker_status: {distribution: categorical, levels: ['=1+1', '-neg'], p: [0.5, 0.5]}\n"
    (tmp_path / "simple_cohort.yaml").write_text(cohort)
    for name in ("event_driven.yaml", "exponential.yaml"):
        (tmp_path / name).write_text((DATA / name).read_text())
    proc = vctrial("run", tmp_path / "event_driven.yaml", "-n", 1, "-w", 0, "-q", "-o", tmp_path / "r.nc",
                   "--patients", 1)
    assert proc.returncode == 0, proc.stderr
    assert set(pd.read_csv(tmp_path / "r.patients.csv").marker_status) == {"'=1+1", "'-neg"}


@pytest.mark.parametrize("args, reason", [
    (["--patients", 5], "5 replicates to export, but the run has 3"),
    (["--patients-out", "p.csv"], "--patients-out: needs --patients K"),
    (["--patients", 1, "--patients-out", "res.nc"], "is also the --out output"),
    (["--patients", 1, "--patients-out", str(DATA / "event_driven.yaml")], "an output never replaces an input"),
    (["--patients", 1, "--sweep", "sample_size=300,600"], "without a sweep"),
])
def test_bad_export_options_stop_before_simulating(tmp_path, args, reason):
    proc = vctrial("run", DATA / "event_driven.yaml", "-n", 3, "-w", 0, "-q", "-o", tmp_path / "res.nc", *args,
                   cwd=tmp_path)
    assert proc.returncode == 2 and reason in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_binary_and_count_rows_reproduce_the_runs_tests_by_statsmodels():
    import statsmodels.api as sm
    from statsmodels.stats.contingency_tables import StratifiedTable

    protocols = Path(__file__).parent.parent / "protocols"
    binary = load_protocol(protocols / "hf_event_by_12_months.yaml", {"sample_size": 800})
    arrays = run_arrays(binary, 2)
    d = api.patients(binary, [1], SEED)
    d = d[d.included]
    assert d.outcome.sum() == arrays["n_events"][1].sum()
    tables = [pd.crosstab(g.arm == binary.spec.arms[1].name, g.outcome).reindex(index=[True, False], columns=[1.0, 0.0],
                                                                                 fill_value=0).to_numpy()
              for _, g in d.groupby("stratum")]
    cmh = StratifiedTable(tables).test_null_odds(correction=False)
    assert arrays["statistic"][1] ** 2 == pytest.approx(cmh.statistic, rel=1e-9)

    count = load_protocol(protocols / "hf_total_hospitalizations.yaml",
                          {"sample_size": 600, "analysis.method": "negative_binomial"})
    arrays = run_arrays(count, 2)
    d = api.patients(count, [0], SEED)
    d = d[d.included]
    x = sm.add_constant((d.arm == count.spec.arms[1].name).astype(float).to_numpy())
    poisson = sm.GLM(d.events.to_numpy(), x, family=sm.families.Poisson(),
                     offset=np.log(d.follow_up_months.to_numpy() / 12)).fit()
    nb = sm.NegativeBinomial(d.events.to_numpy(), x, exposure=d.follow_up_months.to_numpy() / 12).fit(
        start_params=np.r_[poisson.params, 1.0], disp=0, maxiter=200)
    assert d.events.sum() == arrays["n_events"][0].sum()
    assert np.exp(nb.params[1]) == pytest.approx(arrays["estimate"][0], rel=1e-4)
