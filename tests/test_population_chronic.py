"""Chronic population model: analytic occupancy, agreement with the trial kernel, common random
numbers across scenarios, reproducibility, and demography against the life table."""

import math

import numba
import numpy as np
import pytest
import scipy.linalg
import yaml

from population_helpers import ILLNESS_DEATH, chronic_files, write
from vctrial.disease import multistate
from vctrial.disease.lifetable import life_table
from vctrial.population.chronic import ChronicEngine
from vctrial.population.people import build_people
from vctrial.population.run import simulate_chunk, simulate_replicate
from vctrial.spec.disease import DiseaseSpec
from vctrial.spec.population import load_population


def generator(spec: dict) -> np.ndarray:
    names = [s["name"] for s in spec["states"]]
    q = np.zeros((len(names), len(names)))
    for t in spec["transitions"]:
        q[names.index(t["from"]), names.index(t["to"])] += t["rate_per_year"]
    np.fill_diagonal(q, -q.sum(axis=1))
    return q


def test_state_occupancy_and_prevalence_match_the_matrix_exponential(tmp_path):
    world = load_population(chronic_files(tmp_path, population={"size": 40_000, "age_min": 40, "age_max": 80}))
    out = simulate_replicate(world, seed=11, replicate=0)
    counts = out["state_count"][0]  # (years, states)
    q = generator(ILLNESS_DEATH)
    n = 40_000
    for year in range(5):
        exact = scipy.linalg.expm(q * (year + 1))[0]
        se = np.sqrt(exact * (1 - exact) / n)
        assert np.all(np.abs(counts[year] / n - exact) < 4.5 * se), (year, counts[year] / n, exact)
        alive = out["alive"][0, year].sum()
        ill = counts[year, 1]
        p_exact = exact[1] / (exact[0] + exact[1])
        se_p = math.sqrt(p_exact * (1 - p_exact) / alive)
        assert abs(ill / alive - p_exact) < 4.5 * se_p


def test_life_years_and_qalys_match_integrated_occupancy(tmp_path):
    world = load_population(chronic_files(tmp_path, population={"size": 40_000, "age_min": 40, "age_max": 80}))
    out = simulate_replicate(world, seed=12, replicate=0)
    q = generator(ILLNESS_DEATH)
    # expected time in each state over 5 years: ∫ expm(Q t) dt, by quadrature on a fine grid
    grid = np.linspace(0.0, 5.0, 2001)
    occ = np.array([scipy.linalg.expm(q * t)[0] for t in grid])
    expected = np.trapezoid(occ, grid, axis=0)
    n = 40_000
    ly = out["life_years"][0].sum() / n
    qaly = out["qalys"][0].sum() / n  # discount rate 0 in this file
    assert ly == pytest.approx(expected[0] + expected[1], rel=0.01)
    assert qaly == pytest.approx(0.9 * expected[0] + 0.6 * expected[1], rel=0.01)


def population_and_kernel(tmp_path, disease: dict):
    """The population engine over 3000 people of ``disease`` without interventions, and the trial
    kernel on the same people, seed and replicate (an independent driver of the same step)."""
    path = chronic_files(tmp_path, disease=disease, population={"size": 3000, "age_min": 40, "age_max": 90},
                         demography={"ageing": True, "background_mortality": True})
    world = load_population(path)
    people = build_people(world, 5, 3)
    engine = ChronicEngine(world, people, 5, 3)
    engine.advance(engine.n_steps)
    spec = DiseaseSpec.model_validate(disease)
    model = multistate.compile_model(spec)
    rate = multistate.patient_rates(spec, lambda name: people.columns[name][None], (1, people.n))
    hr = np.ones((1, model.n_transitions, engine.n_steps))
    paths = multistate.simulate(model, rate, hr, people.age0[None], people.female[None], engine.n_steps, 5,
                                np.array([3]))
    return engine, paths


def test_population_kernel_reproduces_the_trial_kernel_draw_for_draw(tmp_path):
    """Same streams, same scheme: with no intervention the population engine steps each person
    exactly as vctrial.disease.multistate.simulate does."""
    engine, paths = population_and_kernel(tmp_path, dict(ILLNESS_DEATH, background_mortality={"to": "dead"}))
    assert np.array_equal(np.bincount(engine.state, minlength=3), paths.occupancy[0, 0, -1])


def test_population_and_trial_paths_agree_with_every_time_varying_part(tmp_path):
    """Ageing, time in state, a recurrent event, a Weibull time-on-study shape and the cause-deleted
    life table: the population engine and the trial kernel give every person the same life."""
    disease = {
        "kind": "disease", "name": "time-varying", "time_step_months": 1, "initial_state": "well",
        "states": [{"name": "well"}, {"name": "ill"}, {"name": "dead", "absorbing": True}],
        "transitions": [
            {"name": "onset", "from": "well", "to": "ill", "rate_per_year": 0.3,
             "effects": [{"covariate": "age", "coef": 0.04, "reference": 60}],
             "time_on_study": {"weibull_shape": 1.3}},
            {"name": "relapse", "from": "ill", "to": "ill", "rate_per_year": 0.8,
             "time_in_state": [{"until_month": 1.5, "multiplier": 4.0}]},
            {"name": "recovery", "from": "ill", "to": "well", "rate_per_year": 0.5},
            {"name": "death_ill", "from": "ill", "to": "dead", "rate_per_year": 0.4,
             "time_in_state": [{"until_month": 0.5, "multiplier": 8.0}, {"until_month": 6, "multiplier": 2.0}]},
        ],
        "background_mortality": {"to": "dead", "remove_causes": ["cardiovascular"], "multiplier": 0.7},
    }
    engine, paths = population_and_kernel(tmp_path, disease)
    assert np.array_equal(np.bincount(engine.state, minlength=3), paths.occupancy[0, 0, -1])
    assert np.array_equal(engine.n_ev, paths.event_count[0, :, 0].sum(axis=1))
    assert np.array_equal(engine.events.sum(axis=(0, 1)), paths.event_count[0, :, 0].sum(axis=0))
    assert paths.event_count[0, :, 0, 1].max() > 1  # relapses recur


def test_same_seed_gives_bit_identical_results_however_replicates_are_chunked(tmp_path):
    world = load_population(chronic_files(tmp_path, population={"size": 2000, "age_min": 40, "age_max": 80}))
    together = simulate_chunk(world, 3, np.array([0, 1]))
    apart = [simulate_chunk(world, 3, np.array([r])) for r in (0, 1)]
    for key, value in together.items():
        assert np.array_equal(value, np.concatenate([a[key] for a in apart]), equal_nan=True), key
    other = simulate_chunk(world, 4, np.array([0]))
    assert not np.array_equal(other["events"], together["events"][:1])


def test_results_do_not_depend_on_the_number_of_threads(tmp_path):
    world = load_population(chronic_files(tmp_path, population={"size": 20_000, "age_min": 40, "age_max": 80}))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = simulate_chunk(world, 9, np.array([0]))
    finally:
        numba.set_num_threads(before)
    many = simulate_chunk(world, 9, np.array([0]))
    for key in one:
        assert np.array_equal(one[key], many[key], equal_nan=True), key


def cvd_like(tmp_path, start_year=2.0):
    disease = {
        "kind": "disease", "name": "cvd", "time_step_months": 1, "initial_state": "healthy",
        "states": [{"name": "healthy"}, {"name": "post_event", "utility": 0.7},
                   {"name": "dead", "absorbing": True, "utility": 0.0}],
        "transitions": [
            {"name": "event", "from": "healthy", "to": "post_event", "rate_per_year": 0.05,
             "effects": [{"covariate": "age", "coef": 0.05, "reference": 60},
                         {"covariate": "sbp_mmhg", "coef": 0.02, "reference": 130}]},
            {"name": "fatal", "from": "post_event", "to": "dead", "rate_per_year": 0.1},
        ],
        "background_mortality": {"to": "dead"},
    }
    cohort = {"kind": "cohort", "name": "adults", "covariates": {
        "age": {"distribution": "normal", "mean": 60, "sd": 10},
        "sex_female": {"distribution": "binary", "p": 0.5},
        "sbp_mmhg": {"distribution": "normal", "mean": 130, "sd": 15, "min": 90, "max": 220}},
        "correlations": [["age", "sbp_mmhg", 0.4]]}
    write(tmp_path, "cohort.yaml", cohort)
    return chronic_files(
        tmp_path, disease=disease,
        population={"size": 20_000, "age_min": 40, "age_max": 80, "cohort": "cohort.yaml",
                    "regions": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]},
        horizon_years=6, demography={"ageing": True, "background_mortality": True},
        costs={"discount_rate_per_year": 0.03, "per_event": {"event": 1000}},
        outputs={"interval_days": 365.25 / 12, "age_groups": [40, 60, 200]},
        interventions=[
            {"name": "bp", "type": "risk_factor", "start_year": start_year, "covariate": "sbp_mmhg", "change": -15,
             "coverage": 0.7, "capacity_per_week_per_100k": 300, "cost_per_year": 100,
             "eligibility": {"criteria": ["sbp_mmhg >= 140"]}},
            {"name": "drug", "type": "treatment", "start_year": start_year,
             "effects": [{"transition": "event", "hazard_ratio": 0.6}], "cost_per_year": 500,
             "eligibility": {"age_min": 60, "states": ["healthy"]}}],
        scenarios=[{"name": "none"}, {"name": "bp", "interventions": ["bp"]},
                   {"name": "both", "interventions": ["bp", "drug"]},
                   {"name": "bp_more", "interventions": ["bp"], "changes": {"bp.coverage": 0.9}}])


def test_scenarios_are_identical_before_the_first_intervention_starts(tmp_path):
    world = load_population(cvd_like(tmp_path, start_year=2.0))
    out = simulate_replicate(world, seed=21, replicate=0)
    months_before = 24
    for key in ("incidence", "deaths", "life_years", "qalys", "costs", "events", "state_count", "prevalence"):
        first = out[key][0, :months_before]
        for a in range(1, out[key].shape[0]):
            assert np.array_equal(out[key][a, :months_before], first, equal_nan=True), (key, a)
            assert not np.array_equal(out[key][a], out[key][0], equal_nan=True) or key == "prevalence", (key, a)


def test_interventions_avert_events_with_low_variance_paired_differences(tmp_path):
    world = load_population(cvd_like(tmp_path, start_year=1.0))
    outs = [simulate_replicate(world, seed=22, replicate=r) for r in range(3)]
    events = np.array([o["incidence"].sum(axis=(1, 2, 3)) for o in outs])  # (R, A)
    averted_bp = events[:, 0] - events[:, 1]
    averted_both = events[:, 0] - events[:, 2]
    assert np.all(averted_bp > 0) and np.all(averted_both > averted_bp)
    # common random numbers: the paired difference varies far less than the difference of two
    # independent runs would (whose SD is at least that of two Poisson counts, sqrt(2 x events))
    assert averted_bp.std(ddof=1) < 0.4 * math.sqrt(2 * events[:, 0].mean())
    # more coverage reaches a superset of the same acceptors
    delivered = np.array([o["delivered"].sum(axis=1) for o in outs])  # (R, A, J)
    assert np.all(delivered[:, 3, 0] >= delivered[:, 1, 0])


def test_clinics_never_exceed_their_weekly_capacity(tmp_path):
    world = load_population(cvd_like(tmp_path, start_year=1.0))
    out = simulate_replicate(world, seed=23, replicate=0)
    per_month = out["delivered"][1, :, 0]  # scenario bp, monthly outputs
    residents = 20_000
    capacity_month = 300 * residents / 1e5 * (365.25 / 12) / 7
    assert per_month.max() <= capacity_month + 2  # two regions, each rounds down its own credit
    assert per_month[12:].sum() > 0 and per_month[:12].sum() == 0


def test_treatment_effect_can_come_from_a_trial_protocols_arm():
    world = load_population("protocols/pop_hf_scaleup.yaml")
    arm = next(a for a in yaml.safe_load(open("protocols/hf_outcomes.yaml"))["arms"] if a["name"] == "active")
    assert world.hazard_ratios["new_treatment"] == {e["transition"]: e["hazard_ratio"] for e in arm["effects"]}


def test_screening_moves_true_positives_and_charges_tests_and_positives(tmp_path):
    disease = {
        "kind": "disease", "name": "cancer", "time_step_months": 1, "initial_state": "healthy",
        "states": [{"name": "healthy"}, {"name": "preclinical"}, {"name": "clinical", "utility": 0.6},
                   {"name": "detected_early", "utility": 0.8}, {"name": "dead", "absorbing": True, "utility": 0}],
        "transitions": [
            {"name": "onset", "from": "healthy", "to": "preclinical", "rate_per_year": 0.02},
            {"name": "symptoms", "from": "preclinical", "to": "clinical", "rate_per_year": 0.3},
            {"name": "death_clinical", "from": "clinical", "to": "dead", "rate_per_year": 0.2},
            {"name": "death_early", "from": "detected_early", "to": "dead", "rate_per_year": 0.02},
        ],
    }
    path = chronic_files(
        tmp_path, disease=disease, horizon_years=10, population={"size": 20_000, "age_min": 50, "age_max": 75},
        outputs={"interval_days": 365.25, "age_groups": [0, 200], "incidence_events": ["symptoms"]},
        interventions=[{"name": "screen", "type": "screening", "start_year": 1, "interval_years": 2,
                        "sensitivity": 1.0, "specificity": 1.0, "target": {"states": ["preclinical"]},
                        "on_detection": {"move_to": "detected_early"}, "cost_per_test": 10,
                        "cost_per_positive": 100}],
        scenarios=[{"name": "none"}, {"name": "screen", "interventions": ["screen"]}])
    world = load_population(path)
    out = simulate_replicate(world, seed=31, replicate=0)
    clinical = out["incidence"].sum(axis=(1, 2, 3))
    assert clinical[1] < 0.8 * clinical[0]
    detected = out["state_count"][1, -1, 3] + 0  # alive in detected_early at the end (few die)
    tests = out["delivered"][1, :, 0].sum()
    positives = (out["intervention_costs"][1, :, 0].sum() - 10 * tests) / 100
    assert positives == pytest.approx(round(positives), abs=1e-6)
    assert detected <= positives and positives > 0
    assert out["state_count"][0, -1, 3] == 0


def test_period_life_expectancy_from_simulated_deaths_matches_the_life_table(tmp_path):
    """Death rates by single year of age, estimated from simulated deaths and person-years, give
    the period life expectancy at 40 of the shipped US male life table."""
    disease = {"kind": "disease", "name": "no disease", "time_step_months": 1, "initial_state": "alive",
               "states": [{"name": "alive"}, {"name": "dead", "absorbing": True}],
               "transitions": [{"name": "nothing", "from": "alive", "to": "dead", "rate_per_year": 1e-12}],
               "background_mortality": {"to": "dead"}}
    cohort = {"kind": "cohort", "name": "men 40+", "covariates": {
        "age": {"distribution": "normal", "mean": 75, "sd": 18, "min": 40, "max": 110},
        "sex_female": {"distribution": "binary", "p": 0.0}}}
    write(tmp_path, "men.yaml", cohort)
    edges = list(range(40, 121))
    path = chronic_files(tmp_path, disease=disease, horizon_years=3,
                         population={"size": 150_000, "age_sex": "cohort", "cohort": "men.yaml"},
                         demography={"ageing": True, "background_mortality": True},
                         outputs={"interval_days": 365.25 * 3, "age_groups": edges})
    world = load_population(path)
    out = simulate_chunk(world, 41, np.arange(4))
    deaths = out["deaths"][:, 0].sum(axis=(1, 3))  # (R, ages)
    years = out["life_years"][:, 0].sum(axis=(1, 3))

    def e40(m):
        m = np.maximum(m, 1e-12)
        surv = np.exp(-m)
        l = np.concatenate([[1.0], np.cumprod(surv)[:-1]])
        return float((l * (1 - surv) / m).sum())

    table = life_table("us_ssa")
    m_table = -np.log1p(-np.clip(table["q_male"][40:120], 0, 1 - 1e-9))
    reference = e40(m_table)
    est = np.array([e40(np.where(years[r] > 0, deaths[r] / np.maximum(years[r], 1e-12), m_table)) for r in range(4)])
    se = est.std(ddof=1) / 2
    assert abs(est.mean() - reference) < 4 * se + 0.05, (est, reference)
    assert abs(reference - table["e_male"][40]) < 0.6  # same table, different within-year conventions


def test_births_join_the_population_at_age_zero_at_the_stated_rate(tmp_path):
    disease = {"kind": "disease", "name": "no disease", "time_step_months": 1, "initial_state": "alive",
               "states": [{"name": "alive"}, {"name": "dead", "absorbing": True}],
               "transitions": [{"name": "nothing", "from": "alive", "to": "dead", "rate_per_year": 1e-12}]}
    path = chronic_files(tmp_path, disease=disease, horizon_years=5,
                         population={"size": 50_000, "age_min": 0, "age_max": 100},
                         demography={"ageing": True, "background_mortality": False, "births_per_1000_per_year": 12},
                         outputs={"interval_days": 365.25, "age_groups": [0, 1, 200]})
    world = load_population(path)
    out = simulate_replicate(world, seed=51, replicate=0)
    alive = out["alive"][0].sum(axis=(1, 2))  # (years,)
    births = alive - 50_000
    expected = 50_000 * 0.012 * np.arange(1, 6)
    assert np.all(np.abs(births - expected) < 4 * np.sqrt(expected))
    # newborns of the last year are under one at its end; the initial under-ones have all turned one
    under_one = out["alive"][0, -1, 0].sum()
    assert abs(under_one - 600) < 4 * math.sqrt(600)
