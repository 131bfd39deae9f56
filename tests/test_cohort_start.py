"""A cohort's starting state and months in it: the ``start`` block, its checks, and start_arrays.

Statistical checks compare with closed forms of the Gaussian copula within a stated number of
Monte Carlo standard errors computed from the sample size; every seed is fixed.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from vctrial.cohort import start_arrays, synthesize
from vctrial.errors import SpecError
from vctrial.spec.cohort import CohortSpec, StartSpec, load_cohort
from vctrial.spec.disease import load_disease
from vctrial.spec.protocol import load_protocol

ROOT = Path(__file__).resolve().parent.parent
HF_DISEASE = ROOT / "diseases" / "hfref.yaml"
HF_COHORT = ROOT / "cohorts" / "hfref.yaml"
HF_PROTOCOL = ROOT / "protocols" / "hf_outcomes.yaml"
K = 4.0  # tolerance in standard errors

P_POST = 0.3  # share starting in post_hhf
RHO = 0.4  # latent correlation of age and hf_status
AGE_SD = 10.0

# hf_status and months_since_hhf are ordinary covariates; start says what they mean
BASE = {
    "kind": "cohort",
    "name": "recently decompensated HF",
    "covariates": {
        "age": {"distribution": "normal", "mean": 70.0, "sd": AGE_SD, "unit": "years"},
        "sex_female": {"distribution": "binary", "p": 0.3},
        "hf_status": {"distribution": "categorical", "levels": ["stable", "post_hhf"], "p": [1 - P_POST, P_POST]},
        "months_since_hhf": {"distribution": "lognormal", "mean": 4.0, "sd": 3.0, "max": 60, "unit": "months"},
        "lvef_pct": {"distribution": "normal", "mean": 30.0, "sd": 7.0},
    },
    "derived": {"years_since_hhf": {"expr": "months_since_hhf / 12", "unit": "years"}},
    "correlations": [["age", "hf_status", RHO]],
    "start": {"state": "hf_status", "months_in_state": "months_since_hhf"},
}


def write(tmp_path: Path, data: dict, name: str = "cohort.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def hf_cohort_with_start(levels: list[str]) -> dict:
    """The shipped HFrEF cohort (so the disease's covariates are there) plus a start block."""
    data = yaml.safe_load(HF_COHORT.read_text(encoding="utf-8"))
    data["covariates"]["hf_status"] = {"distribution": "categorical", "levels": levels, "p": [0.7, 0.3]}
    data["covariates"]["months_since_hhf"] = {"distribution": "lognormal", "mean": 4.0, "sd": 3.0}
    data["correlations"].append(["age", "hf_status", 0.2])
    data["start"] = {"state": "hf_status", "months_in_state": "months_since_hhf"}
    return data


def write_protocol(tmp_path: Path, cohort: Path) -> Path:
    data = yaml.safe_load(HF_PROTOCOL.read_text(encoding="utf-8"))
    data["cohort"] = str(cohort)
    data["disease"] = str(HF_DISEASE)
    return write(tmp_path, data, "protocol.yaml")


# ----------------------------------------------------------------------------- the spec


def test_start_block_loads_into_a_typed_model(tmp_path):
    spec = load_cohort(write(tmp_path, BASE))
    assert spec.start == StartSpec(state="hf_status", months_in_state="months_since_hhf")
    assert CohortSpec.model_validate({k: v for k, v in BASE.items() if k != "start"}).start is None
    only_state = copy.deepcopy(BASE)
    del only_state["start"]["months_in_state"]
    assert load_cohort(write(tmp_path, only_state)).start.months_in_state is None


def test_months_in_state_may_be_derived_or_a_normal_bounded_at_zero(tmp_path):
    data = copy.deepcopy(BASE)
    data["start"]["months_in_state"] = "years_since_hhf"
    assert load_cohort(write(tmp_path, data)).start.months_in_state == "years_since_hhf"
    data = copy.deepcopy(BASE)
    data["covariates"]["months_since_hhf"] = {"distribution": "normal", "mean": 6, "sd": 3, "min": 0}
    assert load_cohort(write(tmp_path, data)).start.months_in_state == "months_since_hhf"


CATEGORICALS = "(categorical covariates: hf_status)"
NUMERICS = "(normal or lognormal covariates: age, months_since_hhf, lvef_pct; or a derived covariate)"


@pytest.mark.parametrize(
    ("start", "where", "reason"),
    [
        ({"state": "age"}, "start.state",
         f"'age' is a normal covariate; the starting state must be a categorical covariate whose levels are "
         f"disease states {CATEGORICALS}"),
        ({"state": "sex_female"}, "start.state", "'sex_female' is a binary covariate"),
        ({"state": "hf_stat"}, "start.state", f"unknown covariate 'hf_stat' {CATEGORICALS}"),
        ({"state": "years_since_hhf"}, "start.state", "'years_since_hhf' is derived"),
        ({"months_in_state": "months_since_hhf"}, "start.state", "required key is missing"),
        ({"state": "hf_status", "months_in_state": "hf_status"}, "start.months_in_state",
         f"'hf_status' is a categorical covariate; months in the state must be a numeric covariate {NUMERICS}"),
        ({"state": "hf_status", "months_in_state": "sex_female"}, "start.months_in_state",
         "'sex_female' is a binary covariate"),
        ({"state": "hf_status", "months_in_state": "months_since"}, "start.months_in_state",
         f"unknown covariate 'months_since' {NUMERICS}"),
        ({"state": "hf_status", "months_in_state": "lvef_pct"}, "start.months_in_state",
         "'lvef_pct' is a normal covariate that can be negative (no min); give covariates.lvef_pct a min >= 0"),
        ({"state": "hf_status", "months": "months_since_hhf"}, "start.months",
         "unknown key (valid keys: months_in_state, state)"),
        ("hf_status", "start", "valid dictionary"),
    ],
)
def test_bad_start_block_names_file_key_path_and_reason(tmp_path, start, where, reason):
    data = copy.deepcopy(BASE)
    data["start"] = start
    path = write(tmp_path, data)
    with pytest.raises(SpecError) as info:
        load_cohort(path)
    err = info.value
    assert err.file == str(path)
    assert err.path == where
    assert reason in err.reason
    assert str(err).startswith(f"{path}: {where}: ")


def test_normal_months_with_a_negative_min_is_rejected(tmp_path):
    data = copy.deepcopy(BASE)
    data["covariates"]["months_since_hhf"] = {"distribution": "normal", "mean": 6, "sd": 3, "min": -1}
    with pytest.raises(SpecError) as info:
        load_cohort(write(tmp_path, data))
    assert info.value.path == "start.months_in_state" and "(min -1)" in info.value.reason


# ------------------------------------------------------------------- the protocol cross-check


def test_protocol_with_start_states_of_its_disease_loads(tmp_path):
    cohort = write(tmp_path, hf_cohort_with_start(["stable", "post_hhf"]))
    protocol = load_protocol(write_protocol(tmp_path, cohort))
    assert protocol.cohort.start.state == "hf_status"


@pytest.mark.parametrize(
    ("levels", "why"),
    [(["stable", "decompensated"], "level 'decompensated' of 'hf_status' is not a state of disease"),
     (["stable", "cv_death"], "level 'cv_death' of 'hf_status' is an absorbing state of disease")],
)
def test_start_level_that_is_not_a_live_disease_state_is_an_error_of_the_cohort(tmp_path, levels, why):
    cohort = write(tmp_path, hf_cohort_with_start(levels))
    with pytest.raises(SpecError) as info:
        load_protocol(write_protocol(tmp_path, cohort))
    err = info.value
    assert err.file == str(cohort.resolve())
    assert err.path == "start.state"
    assert why in err.reason
    assert err.reason.endswith("(non-absorbing states: stable, post_hhf)")


def test_validate_command_reports_a_bad_start_level_in_one_line(tmp_path):
    cohort = write(tmp_path, hf_cohort_with_start(["stable", "decompensated"]))
    proc = subprocess.run([sys.executable, "-m", "vctrial.cli", "validate", write_protocol(tmp_path, cohort)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert f"{cohort.resolve()}: start.state: level 'decompensated'" in lines[0], lines[0]


# ------------------------------------------------------------------------------- synthesis


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    spec = load_cohort(write(tmp_path_factory.mktemp("start"), BASE))
    return spec, synthesize(spec, 40_000, seed=31, replicates=np.arange(3))


def test_starting_state_shares_match_the_level_probabilities(synthesized):
    spec, cohort = synthesized
    names = ["stable", "post_hhf", "cv_death", "non_cv_death"]
    state, _ = start_arrays(spec, cohort, names, initial_state=0)
    n = state.size
    assert set(np.unique(state)) == {0, 1}
    for index, p in ((0, 1 - P_POST), (1, P_POST)):
        assert abs(np.mean(state == index) - p) < K * math.sqrt(p * (1 - p) / n)


def test_latent_correlation_with_age_carries_into_the_starting_state(synthesized):
    spec, cohort = synthesized
    state, _ = start_arrays(spec, cohort, ["stable", "post_hhf"], initial_state=0)
    age = cohort.column("age")
    old, young = age[state == 1], age[state == 0]
    # closed form: E[Z | latent of hf_status above t] - E[Z | below t] = rho phi(t) (1/(1-p0) + 1/p0)
    t = stats.norm.ppf(1 - P_POST)
    expected = AGE_SD * RHO * stats.norm.pdf(t) * (1 / P_POST + 1 / (1 - P_POST))
    se = AGE_SD * math.sqrt(1 / old.size + 1 / young.size)  # conditional sds are below AGE_SD
    assert expected > 5 * se  # the test can tell the correlation from none
    assert abs((old.mean() - young.mean()) - expected) < K * se


def test_start_arrays_map_levels_to_state_indices_and_read_months(synthesized):
    spec, cohort = synthesized
    names = ["cv_death", "post_hhf", "non_cv_death", "stable"]  # not the order of the levels
    state, months = start_arrays(spec, cohort, names, initial_state=3)
    shape = (cohort.n_replicates, cohort.n_patients)
    assert state.shape == months.shape == shape
    assert state.dtype == np.int64 and months.dtype == np.float64
    codes = cohort.column("hf_status")
    np.testing.assert_array_equal(state, np.where(codes == 1, 1, 3))
    np.testing.assert_array_equal(months, cohort.column("months_since_hhf"))
    assert np.all(months >= 0)
    months[0, 0] = -1.0  # a fresh array: the cohort is untouched
    assert cohort.column("months_since_hhf")[0, 0] >= 0


def test_without_start_block_everyone_starts_in_the_initial_state_with_zero_months(tmp_path):
    data = {k: v for k, v in BASE.items() if k != "start"}
    spec = load_cohort(write(tmp_path, data))
    cohort = synthesize(spec, 50, seed=1, replicates=np.arange(2))
    state, months = start_arrays(spec, cohort, ["a", "b", "c"], initial_state=1)
    assert state.shape == months.shape == (2, 50)
    assert state.dtype == np.int64 and months.dtype == np.float64
    assert np.all(state == 1) and np.all(months == 0.0)
    with pytest.raises(ValueError, match="initial_state"):
        start_arrays(spec, cohort, ["a", "b", "c"], initial_state=3)


def test_no_months_in_state_gives_zero_months(tmp_path):
    data = copy.deepcopy(BASE)
    del data["start"]["months_in_state"]
    spec = load_cohort(write(tmp_path, data))
    cohort = synthesize(spec, 100, seed=2, replicates=np.arange(1))
    state, months = start_arrays(spec, cohort, ["stable", "post_hhf"], initial_state=0)
    np.testing.assert_array_equal(state, cohort.column("hf_status").astype(np.int64))
    assert np.all(months == 0.0)


def test_negative_derived_months_are_clipped_to_zero(tmp_path):
    data = copy.deepcopy(BASE)
    data["derived"]["months_shifted"] = {"expr": "months_since_hhf - 3"}
    data["start"]["months_in_state"] = "months_shifted"
    spec = load_cohort(write(tmp_path, data))
    cohort = synthesize(spec, 2000, seed=3, replicates=np.arange(1))
    _, months = start_arrays(spec, cohort, ["stable", "post_hhf"], initial_state=0)
    raw = cohort.column("months_shifted")
    assert np.any(raw < 0) and np.any(raw > 0)
    np.testing.assert_array_equal(months, np.maximum(raw, 0.0))


def test_level_missing_from_the_state_names_is_a_spec_error(synthesized):
    spec, cohort = synthesized
    with pytest.raises(SpecError) as info:
        start_arrays(spec, cohort, ["stable", "cv_death"], initial_state=0)
    assert info.value.path == "start.state" and "'post_hhf'" in info.value.reason


def test_start_arrays_with_the_shipped_disease_states(tmp_path):
    disease = load_disease(HF_DISEASE)
    names = [s.name for s in disease.states]
    spec = load_cohort(write(tmp_path, hf_cohort_with_start(["stable", "post_hhf"])))
    cohort = synthesize(spec, 500, seed=4, replicates=np.arange(2))
    state, months = start_arrays(spec, cohort, names, names.index(disease.initial_state))
    absorbing = [i for i, s in enumerate(disease.states) if s.absorbing]
    assert not np.isin(state, absorbing).any()
    assert set(np.unique(state)) == {names.index("stable"), names.index("post_hhf")}
    assert np.all(months > 0)
