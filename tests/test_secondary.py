"""Key secondary endpoints tested in a fixed sequence after a time-to-event primary: each secondary's
log-rank z, Cox hazard ratio and interval against lifelines on the exported patient rows (at the final
analysis and at a group-sequential stopping look), the counterfactual truth against lifelines on the
patients under both arms, the hierarchical decision against the plain fixed-sequence rule, the
family-wise error rate at the global null within its exact binomial region of alpha (and the
unadjusted "any rejected" well above it), the Dataset layout as docs/outputs.md documents it, and
protocols that cannot have key secondaries refused at load naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test
from scipy import stats

from mc_helpers import assert_binomial, binomial_region
from vctrial import api
from vctrial.errors import SpecError
from vctrial.execute import ExecOptions, run_jobs
from vctrial.results import summarize
from vctrial.spec.protocol import load_protocol
from vctrial.trial.dataset import run_trial, trial_job
from vctrial.trial.run import simulate_patients
from vctrial.trial.secondary import fixed_sequence

ROOT = Path(__file__).resolve().parents[1]
COHORT = ROOT / "tests" / "data" / "simple_cohort.yaml"
SEED = 20261207
OPT = ExecOptions(workers=0, progress=False)

DISEASE = {
    "kind": "disease", "name": "Hospitalization and death",
    "states": [{"name": "well"}, {"name": "hospitalized"}, {"name": "dead", "absorbing": True}],
    "initial_state": "well",
    "transitions": [{"name": "hosp", "from": "well", "to": "hospitalized", "rate_per_year": 0.3},
                    {"name": "death", "from": "well", "to": "dead", "rate_per_year": 0.12},
                    {"name": "death_after", "from": "hospitalized", "to": "dead", "rate_per_year": 0.35}],
}
SECONDARIES = [{"name": "death", "label": "death from any cause", "events": ["death", "death_after"]},
               {"name": "hosp", "events": ["hosp"], "method": "cox"}]
EVENTS = {"death": ["death", "death_after"], "hosp": ["hosp"]}


def _protocol(folder: Path, *, hosp_hr=0.7, death_hr=0.8, name="secondary.yaml", disease=None, **top) -> Path:
    """A two-arm event-driven trial on the hospitalization-death model: primary the first of
    hospitalization or death from well, key secondaries death (log-rank) then hospitalization (Cox)."""
    (folder / "disease.yaml").write_text(yaml.safe_dump(disease or DISEASE, sort_keys=False))
    spec = {"kind": "trial", "name": "key secondaries", "cohort": str(COHORT), "disease": "disease.yaml",
            "sample_size": 300,
            "arms": [{"name": "control"},
                     {"name": "active", "effects": [{"transition": "hosp", "hazard_ratio": hosp_hr},
                                                    {"transition": "death", "hazard_ratio": death_hr},
                                                    {"transition": "death_after", "hazard_ratio": death_hr}]}],
            "enrollment": {"duration_months": 12},
            "follow_up": {"type": "event_driven", "target_events": 120, "max_duration_months": 60},
            "dropout": {"rate_per_year": 0.05},
            "endpoint": {"type": "time_to_event", "label": "hospitalization or death", "events": ["hosp", "death"]},
            "secondary_endpoints": SECONDARIES,
            "analysis": {"method": "logrank", "alpha": 0.025, "sided": "one"}}
    spec.update(top)
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _arrays(protocol, replicates: int, seed: int = SEED) -> dict[str, np.ndarray]:
    (arrays,) = run_jobs([trial_job(protocol)], replicates, seed, OPT)
    return arrays


def _secondary_rows(table: pd.DataFrame, events: list[str], date: float) -> pd.DataFrame:
    """One replicate's patients with the secondary's (time, event) at the calendar cut ``date``, from the
    exported first-event, death and dropout times: follow-up ends at the cut, loss at dropout or death.
    An event is seen when it comes before the loss and on a calendar date not after the cut (the event
    that sets an event-driven cut is on it)."""
    first = np.min([table[f"first_{e}_month"].fillna(np.inf).to_numpy() for e in events], axis=0)
    loss = np.minimum(table.dropout_month.fillna(np.inf), table.death_month.fillna(np.inf)).to_numpy()
    entry = table.entry_month.to_numpy()
    follow = date - entry
    seen = (first <= loss) & (entry + first <= date)
    out = pd.DataFrame({"t": np.where(seen, first, np.minimum(loss, follow)), "e": seen.astype(int),
                        "x": (table.arm == "active").to_numpy().astype(float)})
    return out[follow > 0]


def _observed_minus_expected(d: pd.DataFrame) -> float:
    """Active arm's observed minus expected events (the sign of the log-rank statistic), by its definition."""
    oe = 0.0
    for t in np.unique(d.t[d.e == 1]):
        at_risk = d.t >= t
        dead = (d.t == t) & (d.e == 1)
        oe += (dead & (d.x == 1)).sum() - dead.sum() * (at_risk & (d.x == 1)).sum() / at_risk.sum()
    return oe


def _check_against_lifelines(arrays, r: int, j: int, d: pd.DataFrame, method: str) -> None:
    z = arrays["secondary_statistic"][r, j]
    assert d.e.sum() == arrays["secondary_n_events"][r, j].sum()
    assert (d.e[d.x == 1]).sum() == arrays["secondary_n_events"][r, j, 1]
    cox = CoxPHFitter().fit(d, "t", "e", fit_options={"precision": 1e-12})
    hr, se = np.exp(cox.params_["x"]), cox.standard_errors_["x"]
    assert arrays["secondary_estimate"][r, j] == pytest.approx(hr, rel=1e-6)
    lo, hi = np.exp(cox.params_["x"] + np.array([-1, 1]) * stats.norm.ppf(0.975) * se)
    assert arrays["secondary_ci_lower"][r, j] == pytest.approx(lo, rel=1e-5)
    assert arrays["secondary_ci_upper"][r, j] == pytest.approx(hi, rel=1e-5)
    if method == "logrank":
        lr = logrank_test(d.t[d.x == 1], d.t[d.x == 0], d.e[d.x == 1], d.e[d.x == 0])
        assert z ** 2 == pytest.approx(lr.test_statistic, rel=1e-9)
        assert np.sign(z) == np.sign(_observed_minus_expected(d))
    else:  # the Wald z of the arm's Cox coefficient
        assert z == pytest.approx(cox.summary.loc["x", "z"], rel=1e-5)
    assert arrays["secondary_p_value"][r, j] == pytest.approx(stats.norm.cdf(z), rel=1e-9)


# --------------------------------------------------------------------------------------------
# The analyses against lifelines.
# --------------------------------------------------------------------------------------------


def test_secondary_logrank_z_and_cox_hr_match_lifelines_on_the_exported_patient_rows(tmp_path):
    protocol = load_protocol(_protocol(tmp_path))
    arrays = _arrays(protocol, 10)
    table = api.patients(protocol, [1, 3, 6, 9], SEED)
    for r in (1, 3, 6, 9):
        rows = table[table.replicate == r]
        date = float(rows.analysis_month.iloc[0])
        assert date == pytest.approx(arrays["duration_months"][r])  # the primary's final analysis
        for j, sec in enumerate(SECONDARIES):
            d = _secondary_rows(rows, sec["events"], date)
            _check_against_lifelines(arrays, r, j, d, sec.get("method", "logrank"))


def test_secondaries_of_a_group_sequential_trial_are_cut_at_the_stopping_look(tmp_path):
    """Stopped early for efficacy: the secondaries are analysed at that look's date, not the planned final
    analysis."""
    looks = {"information_fractions": [0.5, 1.0], "efficacy": {"spending": "obf"}}
    protocol = load_protocol(_protocol(tmp_path, hosp_hr=0.45, death_hr=0.6, looks=looks))
    arrays = _arrays(protocol, 8)
    early = np.flatnonzero(arrays["stop_look"] == 1)
    assert early.size, "no replicate stopped at the interim look"
    r = int(early[0])
    rows = api.patients(protocol, [r], SEED)
    date = arrays["duration_months"][r]
    assert date < rows.analysis_month.iloc[0]  # the planned final analysis would come later
    for j, sec in enumerate(SECONDARIES):
        _check_against_lifelines(arrays, r, j, _secondary_rows(rows, sec["events"], date), sec.get("method", "logrank"))


def test_secondary_truth_is_the_counterfactual_cox_hr_of_the_trials_own_patients(tmp_path):
    """Every enrolled patient under both arms, followed to the primary's cut and lost only to death."""
    protocol = load_protocol(_protocol(tmp_path))
    arrays = _arrays(protocol, 2)
    trial, _, _ = simulate_patients(protocol, SEED, np.arange(2))
    names = list(protocol.disease.event_names)
    for r in range(2):
        follow = arrays["duration_months"][r] - trial.entry[r]
        keep = follow > 0
        for j, sec in enumerate(SECONDARIES):
            frames = []
            for a in (0, 1):
                first = trial.paths.first_time[r, :, a][:, [names.index(e) for e in sec["events"]]].min(axis=1)
                limit = np.minimum(trial.paths.death_time[r, :, a], follow)
                frames.append(pd.DataFrame({"t": np.minimum(first, limit), "e": (first <= limit).astype(int),
                                            "x": float(a)})[keep])
            cox = CoxPHFitter().fit(pd.concat(frames), "t", "e", fit_options={"precision": 1e-12})
            assert arrays["secondary_true_effect"][r, j] == pytest.approx(np.exp(cox.params_["x"]), rel=1e-6)


# --------------------------------------------------------------------------------------------
# The fixed-sequence decision.
# --------------------------------------------------------------------------------------------


def _plain_fixed_sequence(primary: bool, raw: list[bool]) -> list[bool]:
    out, going = [], primary
    for x in raw:
        going = going and x
        out.append(going)
    return out


def test_fixed_sequence_rejects_a_secondary_only_after_the_primary_and_every_earlier_one():
    rng = np.random.default_rng(3)
    primary = rng.random(500) < 0.7
    raw = rng.random((500, 4)) < 0.6
    expected = [_plain_fixed_sequence(p, list(x)) for p, x in zip(primary, raw)]
    assert fixed_sequence(primary, raw).tolist() == expected


@pytest.mark.parametrize("sided", ["one", "two"])
def test_a_runs_decisions_are_the_unadjusted_tests_chained_in_the_listed_order(tmp_path, sided):
    protocol = load_protocol(_protocol(tmp_path, hosp_hr=0.8, death_hr=0.9,
                                       analysis={"method": "logrank", "alpha": 0.05, "sided": sided}))
    a = _arrays(protocol, 40)
    z, p = a["secondary_statistic"], a["secondary_p_value"]
    want_p = stats.norm.cdf(z) if sided == "one" else 2 * stats.norm.sf(np.abs(z))
    np.testing.assert_allclose(p, want_p, rtol=1e-9)
    raw = (p < 0.05) & (z < 0)  # favourable direction only
    np.testing.assert_array_equal(a["secondary_reject"].astype(bool), raw)
    expected = [_plain_fixed_sequence(bool(pr), list(x)) for pr, x in zip(a["reject"], raw)]
    assert a["secondary_reject_hierarchical"].astype(bool).tolist() == expected
    # the data are informative: both orders of outcome happen, so the chaining is exercised
    assert raw.any() and (~raw).any() and (raw & ~a["secondary_reject_hierarchical"].astype(bool)).any()


@pytest.mark.slow
def test_family_wise_error_rate_at_the_global_null_is_alpha_and_unadjusted_testing_exceeds_it(tmp_path):
    """At the global null the fixed sequence rejects something only when the primary is rejected: its
    family-wise error rate is the primary's type I error, within the exact 99.9% binomial region of alpha;
    testing the two secondaries unadjusted as well rejects something far more often."""
    R, alpha = 10000, 0.025
    protocol = load_protocol(_protocol(tmp_path, hosp_hr=1.0, death_hr=1.0))
    assert protocol.is_null
    a = _arrays(protocol, R, seed=11)
    hier = a["secondary_reject_hierarchical"].astype(bool)
    raw = a["secondary_reject"].astype(bool)
    primary = a["reject"].astype(bool)
    fwer = int((primary | hier.any(axis=1)).sum())
    assert_binomial(fwer, R, alpha, what="family-wise error rate, fixed sequence")
    for j in range(raw.shape[1]):  # each secondary on its own is a level-alpha test
        assert_binomial(int(raw[:, j].sum()), R, alpha, what=f"secondary {j} unadjusted type I error")
    unadjusted = int((primary | raw.any(axis=1)).sum())
    assert unadjusted > binomial_region(alpha, R)[1], (unadjusted / R, fwer / R)
    assert unadjusted > 1.5 * fwer


@pytest.mark.slow
def test_a_null_secondary_after_an_effective_primary_is_rejected_at_most_at_alpha_in_a_fixed_design(tmp_path):
    """The partial null the fixed sequence is for: the treatment halves hospitalizations (the primary is
    usually rejected) but does not change death, whose hazard is the same before and after a
    hospitalization, so the death secondary is null; its fixed-sequence rejection rate stays within the
    99.9% binomial region of alpha or below it."""
    R, alpha = 10000, 0.025
    disease = {**DISEASE, "transitions": [*DISEASE["transitions"][:2],
                                          {**DISEASE["transitions"][2], "rate_per_year": 0.12}]}
    protocol = load_protocol(_protocol(tmp_path, hosp_hr=0.45, death_hr=1.0, disease=disease,
                                       secondary_endpoints=[SECONDARIES[0]]))
    a = _arrays(protocol, R, seed=5)
    assert a["reject"].mean() > 0.7  # the primary is effective
    truth = np.exp(np.nanmean(np.log(a["secondary_true_effect"][:, 0])))
    assert truth == pytest.approx(1.0, abs=0.01)  # and the secondary is not
    errors = int(a["secondary_reject_hierarchical"][:, 0].sum())
    assert errors <= binomial_region(alpha, R)[1], errors / R


# --------------------------------------------------------------------------------------------
# Dataset, summary and documentation.
# --------------------------------------------------------------------------------------------


def test_dataset_has_the_secondary_dimension_and_the_summary_its_rows(tmp_path):
    protocol = load_protocol(_protocol(tmp_path))
    ds = run_trial(protocol, 6, SEED, options=OPT)
    assert list(ds["secondary"].values) == ["death", "hosp"]
    assert list(ds["secondary_label"].values) == ["death from any cause", "hosp"]
    assert ds["secondary_n_events"].dims == ("replicate", "secondary", "arm")
    assert ds.attrs["secondary_testing"] == "hierarchical"
    table = summarize(ds)
    names = list(table.index)
    assert names.index("death: power (hierarchical)") > names.index("CI coverage of true effect")
    assert names.index("hosp: CI coverage of true effect") < names.index("duration (months, mean)")
    hier = ds["secondary_reject_hierarchical"].sel(secondary="hosp").values
    assert table.loc["hosp: power (hierarchical)", "value"] == pytest.approx(hier.mean())
    raw = ds["secondary_reject"].sel(secondary="death").values
    assert table.loc["death: rejected, unadjusted", "value"] == pytest.approx(raw.mean())
    est = ds["secondary_estimate"].sel(secondary="death").values
    assert table.loc["death: estimate (geometric mean HR)", "value"] == pytest.approx(np.exp(np.log(est).mean()))


def test_outputs_doc_gives_every_secondary_variable_its_dimensions_and_units(tmp_path):
    from test_docs import OUTPUTS, _section, _variable_rows

    ds = run_trial(load_protocol(_protocol(tmp_path)), 2, SEED, options=OPT)
    text = OUTPUTS.read_text(encoding="utf-8")
    section = _section(text, ("Trial run",))
    rows = _variable_rows(section)
    for name, var in ds.data_vars.items():
        dims, units = rows[name]
        assert var.dims == dims, (name, var.dims, dims)
        assert var.attrs["units"] == units.removesuffix(" (boolean)") or units.startswith("*"), (name, units)
    for name in list(ds.coords) + list(ds.dims) + list(ds.attrs):
        assert f"`{name}`" in text, name


def test_adding_key_secondaries_changes_none_of_the_primarys_outputs(tmp_path):
    with_them = _arrays(load_protocol(_protocol(tmp_path)), 5)
    without = _arrays(load_protocol(_protocol(tmp_path, name="plain.yaml", secondary_endpoints=[])), 5)
    assert set(with_them) - set(without) == {f"secondary_{k}" for k in (
        "estimate", "ci_lower", "ci_upper", "p_value", "statistic", "true_effect", "reject", "reject_hierarchical",
        "n_events")}
    for key, values in without.items():
        np.testing.assert_array_equal(with_them[key], values, err_msg=key)


def test_example_protocol_loads_with_its_two_key_secondaries():
    protocol = load_protocol(ROOT / "protocols" / "hf_secondary.yaml")
    assert [s.name for s in protocol.spec.secondary_endpoints] == ["cv_death", "hf_hospitalization"]
    assert protocol.spec.analysis.secondary_testing == "hierarchical"


# --------------------------------------------------------------------------------------------
# Protocols that cannot have key secondaries.
# --------------------------------------------------------------------------------------------


def _three_arms(folder):
    arms = [{"name": "control"}, {"name": "low", "effects": [{"transition": "hosp", "hazard_ratio": 0.8}]},
            {"name": "high", "effects": [{"transition": "hosp", "hazard_ratio": 0.7}]}]
    return _protocol(folder, arms=arms, randomization={"method": "permuted_block", "block_size": 6})


def _binary_primary(folder):
    return _protocol(folder, endpoint={"type": "binary", "events": ["hosp"], "by_month": 12},
                     follow_up={"type": "fixed", "duration_months": 12},
                     analysis={"method": "chi_square", "alpha": 0.025, "sided": "one"})


@pytest.mark.parametrize("make, key, words", [
    (lambda f: _protocol(f, secondary_endpoints=[{"name": "x", "events": ["stroke"]}]),
     "secondary_endpoints[0].events[0]", "unknown event 'stroke'"),
    (lambda f: _protocol(f, secondary_endpoints=[SECONDARIES[0], {**SECONDARIES[1], "name": "death"}]),
     "secondary_endpoints[1].name", "duplicate secondary endpoint name 'death'"),
    (lambda f: _protocol(f, secondary_endpoints=[{"name": "bad name", "events": ["hosp"]}]),
     "secondary_endpoints[0].name", "should match pattern"),
    (lambda f: _protocol(f, secondary_endpoints=[{"name": "x", "events": ["hosp"], "evnts": ["hosp"]}]),
     "secondary_endpoints[0]", "unknown key"),
    (lambda f: _protocol(f, secondary_endpoints=[{"name": "x", "events": ["hosp"], "method": "rmst"}]),
     "secondary_endpoints[0].method", "logrank"),
    (lambda f: _protocol(f, analysis={"method": "logrank", "secondary_testing": "holm"}),
     "analysis.secondary_testing", "hierarchical"),
    (_three_arms, "secondary_endpoints", "two-arm trials only (this one has 3 arms)"),
    (_binary_primary, "secondary_endpoints", "need a time_to_event primary endpoint (this is a binary endpoint)"),
])
def test_protocols_that_cannot_have_these_secondaries_are_refused_naming_the_key(tmp_path, make, key, words):
    path = make(tmp_path)
    with pytest.raises(SpecError) as err:
        load_protocol(path)
    where = str(err.value).removeprefix(f"{path}: ")  # the key path and the reason
    assert where.startswith(key), str(err.value)
    assert words in where, str(err.value)


def test_the_command_line_refuses_an_unknown_secondary_event_with_exit_2(tmp_path):
    path = _protocol(tmp_path, secondary_endpoints=[{"name": "x", "events": ["hosp", "stroke"]}])
    proc = subprocess.run([sys.executable, "-m", "vctrial.cli", "run", str(path), "-n", "2", "-q", "-w", "0",
                           "-o", str(tmp_path / "out.nc")], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "secondary_endpoints[0].events[1]" in proc.stderr and "stroke" in proc.stderr
    assert not (tmp_path / "out.nc").exists()
