"""Patient twin: named effect parameters (one draw per parameter, shared by every effect naming it),
correlated parameters, their checks at protocol load, and the months already spent in the starting
state (patient files and batch CSVs)."""

import math
from pathlib import Path

import numpy as np
import pytest

from twin_helpers import options_protocol
from vctrial import rng, twin
from vctrial.errors import SpecError
from vctrial.spec.patient import load_batch, load_patient
from vctrial.spec.protocol import load_protocol

ROOT = Path(__file__).parent.parent
COHORT = Path(__file__).parent / "data" / "simple_cohort.yaml"
MONTH_DAYS = 365.25 / 12

DISEASE = """kind: disease
name: three living states
states: [{name: well}, {name: sick}, {name: worse}, {name: dead, absorbing: true, utility: 0.0}]
initial_state: well
transitions:
  - {name: sicken, from: well, to: sick, rate_per_year: 0.2}
  - {name: worsen, from: sick, to: worse, rate_per_year: 0.3}
  - {name: die, from: well, to: dead, rate_per_year: 0.05}
  - {name: die_sick, from: sick, to: dead, rate_per_year: 0.1}
  - {name: die_worse, from: worse, to: dead, rate_per_year: 0.2}
biomarkers:
  - {name: m1, intercept: 5.0, residual_sd: 0.5}
  - {name: m2, intercept: 3.0, residual_sd: 0.5}
"""
TRANSITIONS = ["sicken", "worsen", "die", "die_sick", "die_worse"]
HR = "hazard_ratio: 0.7, hazard_ratio_ci: [0.5, 0.95]"


def protocol_text(disease: Path, effects: list[str], extra: str = "") -> str:
    return options_protocol(disease, "[" + ", ".join(f"{{{e}}}" for e in effects) + "]", "die", extra)


@pytest.fixture(scope="module")
def disease(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("parameters") / "disease.yaml"
    path.write_text(DISEASE)
    return path


def write_protocol(folder: Path, disease: Path, effects: list[str], extra: str = "", name: str = "p.yaml") -> Path:
    path = folder / name
    path.write_text(protocol_text(disease, effects, extra))
    return path


def write_patient(folder: Path, history: str = "", as_of: str = "as_of: 2026-01-01\n") -> Path:
    path = folder / "patient.yaml"
    path.write_text(f"kind: patient\n{as_of}covariates: {{age: 60, sex_female: 1}}\n"
                    + (f"history:\n{history}" if history else ""))
    return path


def plan_for(protocol_path: Path, folder: Path, draws: int, parameter_draws: int) -> twin.TwinPlan:
    prot = load_protocol(protocol_path)
    patients = load_patient(write_patient(folder), prot.cohort, prot.disease)
    return twin.make_plan(prot, patients, 1.0, draws, parameter_draws)


def sampled(protocol_path: Path, folder: Path, parameter_draws: int, inner: int = 2, seed: int = 11):
    """Hazard ratios (M, A, K) and shifts (M, A, B): one draw of every parameter draw."""
    plan = plan_for(protocol_path, folder, parameter_draws * inner, parameter_draws)
    return twin.sample_parameters(plan, seed, np.arange(0, plan.draws, inner))


# ------------------------------------------------------------------------------ shared parameters


def test_effects_sharing_a_parameter_take_one_draw_and_unnamed_ones_their_own(disease, tmp_path):
    path = write_protocol(tmp_path, disease, [f"transition: sicken, {HR}, parameter: shared",
                                              f"transition: die, {HR}, parameter: shared",
                                              f"transition: die_sick, {HR}, parameter: shared",
                                              f"transition: worsen, {HR}",
                                              f"transition: die_worse, {HR}"])
    hr, _ = sampled(path, tmp_path, 200)
    k = {name: TRANSITIONS.index(name) for name in TRANSITIONS}
    active = hr[:, 1]
    assert np.unique(active[:, k["sicken"]]).size == 200  # the shared parameter does vary
    for other in ("die", "die_sick"):
        np.testing.assert_array_equal(active[:, k[other]], active[:, k["sicken"]])
    # unnamed effects with the same numbers are separate parameters: different draws in every draw
    for a, b in (("worsen", "sicken"), ("die_worse", "sicken"), ("worsen", "die_worse")):
        assert np.all(active[:, k[a]] != active[:, k[b]]), (a, b)
    np.testing.assert_array_equal(hr[:, 0], 1.0)


def test_a_parameter_is_drawn_once_whatever_the_number_of_transitions_using_it(disease, tmp_path):
    """The draw of a named parameter does not change when more transitions use it."""
    one = write_protocol(tmp_path, disease, [f"transition: sicken, {HR}, parameter: shared",
                                             f"transition: worsen, {HR}"], name="one.yaml")
    three = write_protocol(tmp_path, disease, [f"transition: sicken, {HR}, parameter: shared",
                                               f"transition: worsen, {HR}",
                                               f"transition: die, {HR}, parameter: shared",
                                               f"transition: die_sick, {HR}, parameter: shared"], name="three.yaml")
    hr1, _ = sampled(one, tmp_path, 50)
    hr3, _ = sampled(three, tmp_path, 50)
    k = TRANSITIONS.index
    np.testing.assert_array_equal(hr3[:, 1, k("sicken")], hr1[:, 1, k("sicken")])
    np.testing.assert_array_equal(hr3[:, 1, k("worsen")], hr1[:, 1, k("worsen")])
    plan = plan_for(three, tmp_path, 100, 50)
    assert plan.effect_parameter.tolist() == [0, 1, 0, 0] and plan.parameter_chol.shape == (2, 2)


def test_biomarker_effects_sharing_a_parameter_take_one_shift(disease, tmp_path):
    path = write_protocol(tmp_path, disease, ["biomarker: m1, shift: -0.5, shift_ci: [-0.8, -0.2], parameter: s",
                                              "biomarker: m2, shift: -0.5, shift_ci: [-0.8, -0.2], parameter: s",
                                              f"transition: die, {HR}"])
    _, shift = sampled(path, tmp_path, 100)
    np.testing.assert_array_equal(shift[:, 1, 0], shift[:, 1, 1])
    assert np.unique(shift[:, 1, 0]).size == 100


def test_without_names_each_effect_keeps_the_draws_keyed_by_its_own_index(disease, tmp_path):
    """Reference: effect j of parameter draw m is point + SD · normal(seed, "twin:parameters", m, j)."""
    path = write_protocol(tmp_path, disease, [f"transition: sicken, {HR}", "transition: die, hazard_ratio: 0.8",
                                              "biomarker: m1, shift: -0.5, shift_ci: [-0.8, -0.2]"])
    M, L, seed = 20, 3, 5
    plan = plan_for(path, tmp_path, M * L, M)
    draws = np.arange(M * L)
    hr, shift = twin.sample_parameters(plan, seed, draws)
    z = rng.normals(np.uint64(seed), np.uint64(rng.stream_id("twin:parameters")), draws // L, 3, 1)[:, :, 0]
    sd_hr = (math.log(0.95) - math.log(0.5)) / (2 * twin.Z95)
    np.testing.assert_allclose(hr[:, 1, 0], np.exp(math.log(0.7) + sd_hr * z[:, 0]), rtol=1e-12)
    np.testing.assert_allclose(hr[:, 1, 2], 0.8, rtol=1e-12)
    np.testing.assert_allclose(shift[:, 1, 0], -0.5 + 0.6 / (2 * twin.Z95) * z[:, 2], rtol=1e-12)


def test_parameter_draws_do_not_depend_on_chunking(disease, tmp_path):
    path = write_protocol(tmp_path, disease, [f"transition: sicken, {HR}, parameter: a",
                                              f"transition: die, {HR}, parameter: b", f"transition: worsen, {HR}"],
                          "parameter_correlations: [[a, b, 0.5]]\n")
    plan = plan_for(path, tmp_path, 60, 20)
    whole = twin.sample_parameters(plan, 3, np.arange(60))[0]
    for chunk in (np.arange(17, 41), np.array([59, 0, 33])):
        np.testing.assert_array_equal(twin.sample_parameters(plan, 3, chunk)[0], whole[chunk])


@pytest.mark.parametrize("rho", [0.6, -0.5])
def test_correlated_parameters_have_the_stated_correlation(disease, tmp_path, rho):
    """Over M parameter draws, the sample correlation of the log HRs (Fisher z, SE 1/√(M−3)) is rho,
    a third parameter is uncorrelated, and each keeps the SD its interval gives."""
    path = write_protocol(tmp_path, disease, [f"transition: sicken, {HR}, parameter: a",
                                              "transition: die, hazard_ratio: 0.8, hazard_ratio_ci: [0.6, 1.1], "
                                              "parameter: b",
                                              "biomarker: m1, shift: -0.5, shift_ci: [-0.8, -0.2], parameter: c",
                                              "transition: die_sick, hazard_ratio: 0.8, hazard_ratio_ci: [0.6, 1.1], "
                                              "parameter: b"],
                          f"parameter_correlations: [[b, a, {rho}]]\n")
    M = 4000
    hr, shift = sampled(path, tmp_path, M)
    a, b, c = np.log(hr[:, 1, 0]), np.log(hr[:, 1, 2]), shift[:, 1, 0]
    tol = 4 / math.sqrt(M - 3)
    r = np.corrcoef(np.stack([a, b, c]))
    assert abs(math.atanh(r[0, 1]) - math.atanh(rho)) < tol, r
    assert abs(math.atanh(r[0, 2])) < tol and abs(math.atanh(r[1, 2])) < tol, r
    np.testing.assert_array_equal(hr[:, 1, 2], hr[:, 1, 3])
    for values, lo, hi in ((a, math.log(0.5), math.log(0.95)), (b, math.log(0.6), math.log(1.1)), (c, -0.8, -0.2)):
        sd = (hi - lo) / (2 * twin.Z95)
        assert abs(values.std(ddof=1) / sd - 1) < 4 / math.sqrt(2 * (M - 1))


def test_the_example_options_draw_one_cv_death_hazard_ratio_for_both_cv_death_transitions():
    prot = load_protocol(ROOT / "patients" / "t2d_empagliflozin_options.yaml")
    patients = load_patient(ROOT / "patients" / "t2d_patient.yaml", prot.cohort, prot.disease)
    plan = twin.make_plan(prot, patients, 1.0, 200, 50)
    hr, _ = twin.sample_parameters(plan, 1, np.arange(200))
    k = [t.name for t in prot.disease.transitions].index
    np.testing.assert_array_equal(hr[:, 1, k("cv_death")], hr[:, 1, k("cv_death_after_mace")])
    assert np.all(hr[:, 1, k("cv_death")] != hr[:, 1, k("mace")])

    prot = load_protocol(ROOT / "patients" / "hf_dapagliflozin_options.yaml")
    patients = load_batch(ROOT / "patients" / "hf_clinic.csv", prot.cohort, prot.disease)
    plan = twin.make_plan(prot, patients, 1.0, 200, 50)
    hr, _ = twin.sample_parameters(plan, 1, np.arange(200))
    k = [t.name for t in prot.disease.transitions].index
    np.testing.assert_array_equal(hr[:, 1, k("cv_death")], hr[:, 1, k("cv_death_after_hhf")])
    assert np.all(hr[:, 1, k("cv_death")] != hr[:, 1, k("hhf")])


# -------------------------------------------------------------------------------------- checks

TWO = "transition: die, hazard_ratio: 0.8, hazard_ratio_ci: [0.6, 1.1], parameter: b"


@pytest.mark.parametrize("effects, extra, where, reason", [
    ([f"transition: sicken, {HR}, parameter: x", "biomarker: m1, shift: -0.5, shift_ci: [-0.8, -0.2], parameter: x"],
     "", "arms[1].effects[1].parameter", "must be of one kind"),
    ([f"transition: sicken, {HR}, parameter: x", "transition: die, hazard_ratio: 0.75, "
      "hazard_ratio_ci: [0.5, 0.95], parameter: x"], "", "arms[1].effects[1].parameter", "same value and interval"),
    ([f"transition: sicken, {HR}, parameter: x", "transition: die, hazard_ratio: 0.7, "
      "hazard_ratio_ci: [0.5, 0.9], parameter: x"], "", "arms[1].effects[1].parameter", "same value and interval"),
    ([f"transition: sicken, {HR}", f"transition: die, {HR}, parameter: x",
      "transition: die_sick, hazard_ratio: 0.7, parameter: x"], "", "arms[1].effects[2].parameter", "(no interval)"),
    (["biomarker: m1, shift: -0.5, shift_ci: [-0.8, -0.2], parameter: s",
      "biomarker: m2, shift: -0.4, shift_ci: [-0.8, -0.2], parameter: s"], "", "arms[1].effects[1].parameter",
     "same value and interval"),
    ([f"transition: sicken, {HR}, parameter: 'cv death'"], "", "arms[1].effects[0].parameter", "pattern"),
    ([f"transition: sicken, {HR}, parameter: a", TWO], "parameter_correlations: [[a, z, 0.3]]\n",
     "parameter_correlations[0]", "unknown parameter 'z'"),
    ([f"transition: sicken, {HR}", TWO], "parameter_correlations: [[a, b, 0.3]]\n",
     "parameter_correlations[0]", "unknown parameter 'a'"),
    ([f"transition: sicken, hazard_ratio: 0.7, parameter: a", TWO], "parameter_correlations: [[a, b, 0.3]]\n",
     "parameter_correlations[0]", "no confidence interval"),
    ([f"transition: sicken, {HR}, parameter: a", TWO], "parameter_correlations: [[b, b, 0.3]]\n",
     "parameter_correlations[0]", "itself"),
    ([f"transition: sicken, {HR}, parameter: a", TWO], "parameter_correlations: [[a, b, 1.0]]\n",
     "parameter_correlations[0]", "strictly between -1 and 1"),
    ([f"transition: sicken, {HR}, parameter: a", TWO], "parameter_correlations: [[a, b, -1.5]]\n",
     "parameter_correlations[0]", "strictly between -1 and 1"),
    ([f"transition: sicken, {HR}, parameter: a", TWO], "parameter_correlations: [[a, b, 0.3], [b, a, 0.2]]\n",
     "parameter_correlations[1]", "already given at parameter_correlations[0]"),
    ([f"transition: sicken, {HR}, parameter: a", TWO], "parameter_correlations: [[a, b]]\n",
     "parameter_correlations[0]", "must be a list [name_a, name_b, rho]"),
    ([f"transition: sicken, {HR}, parameter: a", TWO, f"transition: worsen, {HR}, parameter: c"],
     "parameter_correlations: [[a, b, 0.9], [b, c, 0.9], [a, c, -0.9]]\n",
     "parameter_correlations", "not positive definite"),
])
def test_parameter_mistakes_are_refused_at_load_with_the_key_path(disease, tmp_path, effects, extra, where, reason):
    path = write_protocol(tmp_path, disease, effects, extra)
    with pytest.raises(SpecError) as err:
        load_protocol(path)
    assert f"{path}: {where}" in str(err.value) and reason in str(err.value), str(err.value)


def test_consistent_shared_parameters_and_a_positive_definite_matrix_load(disease, tmp_path):
    path = write_protocol(tmp_path, disease, [f"transition: sicken, {HR}, parameter: a", TWO,
                                              f"transition: worsen, {HR}, parameter: c",
                                              f"transition: die_worse, {HR}, parameter: a"],
                          "parameter_correlations: [[a, b, 0.5], [b, c, 0.5], [a, c, 0.25]]\n")
    prot = load_protocol(path)
    assert [list(c) for c in prot.spec.parameter_correlations] == [["a", "b", 0.5], ["b", "c", 0.5], ["a", "c", 0.25]]
    plan = plan_for(path, tmp_path, 100, 50)
    chol = plan.parameter_chol
    np.testing.assert_allclose(chol @ chol.T, [[1, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 1]], atol=1e-12)


# ------------------------------------------------------------------------------ time in state


def test_the_months_since_the_last_past_event_are_the_time_already_spent_in_the_starting_state(disease, tmp_path):
    prot = load_protocol(write_protocol(tmp_path, disease, [f"transition: sicken, {HR}"]))
    # 2025-04-01 to 2026-01-01: 275 days, 9.03 months
    patient = write_patient(tmp_path, "  events: [{date: 2025-04-01, event: sicken}]\n")
    patients = load_patient(patient, prot.cohort, prot.disease)
    assert patients.start_months.dtype == np.float64 and patients.start_months.shape == (1,)
    assert patients.start_months[0] == pytest.approx(9.0, abs=0.05)
    assert patients.start_months[0] == pytest.approx(275 / MONTH_DAYS, rel=1e-12)
    plan = twin.make_plan(prot, patients, 1.0, 100, 50)
    np.testing.assert_array_equal(plan.start_months, patients.start_months)
    np.testing.assert_array_equal(patients.take(np.array([0, 0])).start_months, np.repeat(patients.start_months, 2))


def test_the_last_event_in_date_order_sets_the_time_in_state(disease, tmp_path):
    prot = load_protocol(write_protocol(tmp_path, disease, [f"transition: sicken, {HR}"]))
    history = "  events: [{date: 2025-10-01, event: worsen}, {date: 2025-04-01, event: sicken}]\n"
    patients = load_patient(write_patient(tmp_path, history), prot.cohort, prot.disease)
    assert [s.name for s in prot.disease.states][patients.start_state[0]] == "worse"
    assert patients.start_months[0] == pytest.approx(92 / MONTH_DAYS, rel=1e-12)
    # as_of defaults to the latest record: an event on that date leaves 0 months in the state
    patients = load_patient(write_patient(tmp_path, history, as_of=""), prot.cohort, prot.disease)
    assert patients.start_months[0] == 0.0


def test_without_past_events_the_time_in_state_is_zero(disease, tmp_path):
    prot = load_protocol(write_protocol(tmp_path, disease, [f"transition: sicken, {HR}"]))
    patients = load_patient(write_patient(tmp_path), prot.cohort, prot.disease)
    np.testing.assert_array_equal(patients.start_months, [0.0])
    history = "  measurements: [{date: 2025-01-01, biomarker: m1, value: 5.2}]\n"
    patients = load_patient(write_patient(tmp_path, history), prot.cohort, prot.disease)
    np.testing.assert_array_equal(patients.start_months, [0.0])


def batch(folder: Path, text: str) -> Path:
    path = folder / "batch.csv"
    path.write_text(text)
    return path


def test_a_batch_reads_months_in_state_and_defaults_to_zero(disease, tmp_path):
    prot = load_protocol(write_protocol(tmp_path, disease, [f"transition: sicken, {HR}"]))
    text = "id,age,sex_female,state,months_in_state (months)\nA,60,1,sick,12.5\nB,55,0,,\nC,70,1,well,0\nD,65,0,worse,3\n"
    patients = load_batch(batch(tmp_path, text), prot.cohort, prot.disease)
    np.testing.assert_array_equal(patients.start_months, [12.5, 0.0, 0.0, 3.0])
    assert patients.start_months.dtype == np.float64
    plan = twin.make_plan(prot, patients, 1.0, 100, 50)
    np.testing.assert_array_equal(plan.start_months, [12.5, 0.0, 0.0, 3.0])
    np.testing.assert_array_equal(patients.take(np.array([3, 0])).start_months, [3.0, 12.5])
    patients = load_batch(batch(tmp_path, "id,age,sex_female\nA,60,1\nB,55,0\n"), prot.cohort, prot.disease)
    np.testing.assert_array_equal(patients.start_months, [0.0, 0.0])


@pytest.mark.parametrize("value", ["-1", "abc", "inf", "nan", "-0.5"])
def test_a_bad_months_in_state_names_the_line_and_the_column(disease, tmp_path, value):
    prot = load_protocol(write_protocol(tmp_path, disease, [f"transition: sicken, {HR}"]))
    text = f"id,age,sex_female,months_in_state\nA,60,1,2\n\nB,55,0,{value}\n"
    with pytest.raises(SpecError) as err:
        load_batch(batch(tmp_path, text), prot.cohort, prot.disease)
    assert err.value.path == "line 4, months_in_state" and ">= 0" in err.value.reason, str(err.value)


def test_a_months_in_state_column_in_another_unit_or_twice_is_refused(disease, tmp_path):
    prot = load_protocol(write_protocol(tmp_path, disease, [f"transition: sicken, {HR}"]))
    with pytest.raises(SpecError, match=r"column 'months_in_state': unit 'years'"):
        load_batch(batch(tmp_path, "id,age,sex_female,months_in_state (years)\nA,60,1,2\n"), prot.cohort, prot.disease)
    with pytest.raises(SpecError, match=r"column 'months_in_state': appears twice"):
        load_batch(batch(tmp_path, "id,age,sex_female,months_in_state,months_in_state (months)\nA,60,1,2,2\n"),
                   prot.cohort, prot.disease)
