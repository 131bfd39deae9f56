"""The disease engine's time-varying hazards against independent references: a semi-Markov model by
fine-grid integration, analytic Gompertz and Weibull survival, a plain numpy simulation of a joint
biomarker–event model, recurrent-event counts; and the same event times from every code path."""

import math
from pathlib import Path

import numpy as np
import pytest

from vctrial.disease import biomarker as bm
from vctrial.disease import multistate as ms
from vctrial.errors import SpecError
from vctrial.spec.disease import DiseaseSpec
from vctrial.spec.base import validate


def spec(data: dict) -> DiseaseSpec:
    base = {"kind": "disease", "name": "test", "age_covariate": None}
    return DiseaseSpec.model_validate(base | data)


def run(model_spec, n, steps, seed=11, start_state=None, start_months=None, column=None, hr_active=1.0,
        markers=None, track=False):
    model = ms.compile_model(model_spec)
    R = 1
    rate = ms.patient_rates(model_spec, column or (lambda name: np.zeros((R, n))), (R, n))
    hr = np.ones((2, model.n_transitions, steps))
    hr[1] = hr_active
    zeros = np.zeros((R, n))
    return model, ms.simulate(model, rate, hr, zeros + 60.0, zeros, steps, seed, np.arange(R),
                              start_state=start_state, start_months_in_state=start_months, markers=markers,
                              track_time=track)


def within(simulated, exact, n, k=4.0):
    se = np.sqrt(np.maximum(exact * (1 - exact), 1e-12) / n)
    return np.all(np.abs(simulated - exact) < k * se + 1e-12)


# ------------------------------------------------------------------------------------- time in state

SEMI_MARKOV = {
    "states": [{"name": "well"}, {"name": "sick"}, {"name": "dead", "absorbing": True}],
    "initial_state": "well",
    "transitions": [
        {"name": "onset", "from": "well", "to": "sick", "rate_per_year": 0.6},
        {"name": "death_well", "from": "well", "to": "dead", "rate_per_year": 0.1},
        {"name": "death_sick", "from": "sick", "to": "dead", "rate_per_year": 0.3,
         "time_in_state": [{"until_month": 2, "multiplier": 6.0}, {"until_month": 7, "multiplier": 2.5}]},
    ],
}


def sick_cumulative_hazard(u):
    """∫0^u of the sick→dead hazard (per month), u months since falling sick."""
    lam = 0.3 / 12
    return lam * (6.0 * np.minimum(u, 2.0) + 2.5 * np.clip(u - 2.0, 0.0, 5.0) + np.maximum(u - 7.0, 0.0))


def semi_markov_occupancy(T, grid=200_000):
    """(well, sick, dead) at T months by integrating the entry density into sick on a fine grid."""
    a = (0.6 + 0.1) / 12
    s = np.linspace(0.0, T, grid)
    f = 0.6 / 12 * np.exp(-a * s)  # density of falling sick at s
    g = f * np.exp(-sick_cumulative_hazard(T - s))
    sick = np.sum((g[1:] + g[:-1]) / 2 * np.diff(s))
    well = math.exp(-a * T)
    return np.array([well, sick, 1 - well - sick])


def test_time_in_state_hazards_match_a_semi_markov_fine_grid_integration():
    n = 200_000
    model, paths = run(spec(SEMI_MARKOV), n, 36)
    for t in (3, 6, 12, 24, 36):
        exact = semi_markov_occupancy(float(t))
        assert within(paths.occupancy[0, 0, t] / n, exact, n), (t, paths.occupancy[0, 0, t] / n, exact)


def test_months_already_in_the_starting_state_set_where_its_hazard_starts():
    n = 100_000
    sick = np.ones(n, np.int64)
    for u0 in (0.0, 1.0, 4.5, 12.0):
        _, paths = run(spec(SEMI_MARKOV), n, 12, start_state=sick, start_months=np.full(n, u0))
        for t in (1, 3, 6, 12):
            exact = math.exp(-(sick_cumulative_hazard(u0 + t) - sick_cumulative_hazard(u0)))
            assert within(paths.occupancy[0, 0, t, 1] / n, exact, n), (u0, t)


def test_breakpoints_inside_a_step_are_resolved_exactly_whatever_the_step():
    """Half-month breakpoints and 3-month steps give the same law as the fine-grid reference."""
    data = dict(SEMI_MARKOV, time_step_months=3.0)
    data["transitions"] = [dict(t) for t in SEMI_MARKOV["transitions"]]
    n = 200_000
    _, paths = run(spec(data), n, 8)
    for step in (1, 2, 4, 8):
        exact = semi_markov_occupancy(3.0 * step)
        assert within(paths.occupancy[0, 0, step] / n, exact, n), step


# ----------------------------------------------------------------------------- time-varying baselines


def test_ageing_hazards_give_the_analytic_gompertz_survival():
    lam, beta = 0.05, 0.09
    data = {"age_covariate": "age", "states": [{"name": "alive"}, {"name": "dead", "absorbing": True}],
            "initial_state": "alive",
            "transitions": [{"name": "death", "from": "alive", "to": "dead", "rate_per_year": lam,
                             "effects": [{"covariate": "age", "coef": beta, "reference": 60}]}]}
    n = 200_000
    model, paths = run(spec(data), n, 240,
                       column=lambda name: np.full((1, n), 60.0))
    for t in (12, 60, 120, 240):
        years = t / 12
        exact = math.exp(-lam / beta * math.expm1(beta * years))
        assert within(paths.occupancy[0, 0, t, 0] / n, exact, n), (t, paths.occupancy[0, 0, t, 0] / n, exact)


def test_covariate_drift_acts_like_ageing_through_its_coefficient():
    data = {"covariate_drift": [{"covariate": "sbp", "per_year": 0.5}],
            "states": [{"name": "alive"}, {"name": "dead", "absorbing": True}], "initial_state": "alive",
            "transitions": [{"name": "death", "from": "alive", "to": "dead", "rate_per_year": 0.1,
                             "effects": [{"covariate": "sbp", "coef": 0.04, "reference": 130}]}]}
    model = ms.compile_model(spec(data))
    assert model.log_slope[0] == pytest.approx(0.02)
    tf = ms.time_factor(model, 24)
    months = np.arange(25.0)
    exact = np.diff(np.exp(0.02 / 12 * months)) / (0.02 / 12)  # ∫ over each step of e^(g t) dt, per month
    np.testing.assert_allclose(tf[0], exact, rtol=1e-12)


def test_weibull_time_on_study_gives_the_analytic_weibull_survival():
    lam, shape = 0.3, 0.7
    data = {"states": [{"name": "alive"}, {"name": "dead", "absorbing": True}], "initial_state": "alive",
            "transitions": [{"name": "death", "from": "alive", "to": "dead", "rate_per_year": lam,
                             "time_on_study": {"weibull_shape": shape}}]}
    n = 200_000
    _, paths = run(spec(data), n, 60)
    for t in (1, 6, 24, 60):
        exact = math.exp(-lam * (t / 12) ** shape)
        assert within(paths.occupancy[0, 0, t, 0] / n, exact, n), t


def test_piecewise_time_on_study_multiplies_the_baseline_by_period():
    data = {"states": [{"name": "alive"}, {"name": "dead", "absorbing": True}], "initial_state": "alive",
            "transitions": [{"name": "death", "from": "alive", "to": "dead", "rate_per_year": 0.2,
                             "time_on_study": {"piecewise": [{"until_month": 6, "multiplier": 3.0}]}}]}
    model = ms.compile_model(spec(data))
    tf = ms.time_factor(model, 10)
    np.testing.assert_array_equal(tf[0], [3.0] * 6 + [1.0] * 4)


# ------------------------------------------------------------------------------------- recurrent events


def test_recurrent_events_are_counted_with_the_expected_mean():
    lam, mu = 0.8, 0.25
    data = {"states": [{"name": "living"}, {"name": "dead", "absorbing": True}], "initial_state": "living",
            "transitions": [{"name": "admission", "from": "living", "to": "living", "rate_per_year": lam},
                            {"name": "death", "from": "living", "to": "dead", "rate_per_year": mu}]}
    n, T = 100_000, 48
    _, paths = run(spec(data), n, T)
    counts = paths.event_count[0, :, 0, 0]
    exact = lam / mu * (1 - math.exp(-mu * T / 12))  # E[N(T)] = λ ∫ S(t) dt
    # N(T) is mixed Poisson: its variance is below E[N] + E[N]² here; use that as a safe bound
    se = math.sqrt((exact + exact**2) / n)
    assert abs(counts.mean() - exact) < 4 * se, (counts.mean(), exact)
    assert counts.max() > 3
    np.testing.assert_array_equal(np.isfinite(paths.first_time[0, :, 0, 0]), counts > 0)


def test_more_events_in_one_step_than_the_scratch_holds_is_refused():
    data = {"states": [{"name": "living"}, {"name": "dead", "absorbing": True}], "initial_state": "living",
            "time_step_months": 12,
            "transitions": [{"name": "tick", "from": "living", "to": "living", "rate_per_year": 2000.0},
                            {"name": "death", "from": "living", "to": "dead", "rate_per_year": 0.01}]}
    with pytest.raises(ValueError, match="smaller time_step_months"):
        run(spec(data), 10, 2)


# ----------------------------------------------------------------------- joint longitudinal-event model

JOINT = {
    "states": [{"name": "alive"}, {"name": "dead", "absorbing": True}], "initial_state": "alive",
    "transitions": [{"name": "death", "from": "alive", "to": "dead", "rate_per_year": 0.2,
                     "biomarkers": [{"biomarker": "m", "coef": 0.5, "reference": 0.0, "slope_coef": 0.3}]}],
    "biomarkers": [{"name": "m", "slope_per_year": 0.4, "random_intercept_sd": 0.5, "random_slope_sd": 0.3,
                    "random_correlation": 0.2, "residual_sd": 0.3, "slope_half_life_years": 2.0,
                    "process_sd": 0.4, "process_half_life_years": 0.5,
                    "intensification": {"every_months": 6, "above": 1.0, "shift": -0.8, "max_times": 2}}],
}


def numpy_joint(n, T, shift, seed):
    """The same discrete-time joint model written plainly with numpy's generator (independent draws)."""
    g = np.random.default_rng(seed)
    s, sd0, sd1, rho, eps = 0.4, 0.5, 0.3, 0.2, 0.3
    kappa, sdw = math.log(2) / 2.0, 0.4
    phi = math.exp(-math.log(2) / 0.5 / 12)
    z0, z1 = g.standard_normal(n), g.standard_normal(n)
    b0 = sd0 * z0
    b1 = sd1 * (rho * z0 + math.sqrt(1 - rho**2) * z1)
    w = sdw * g.standard_normal(n)
    added = np.zeros(n)
    alive = np.ones(n, bool)
    tau = lambda t: -np.expm1(-kappa * t) / kappa  # noqa: E731
    surv, mean_value = [1.0], []
    for t in range(T):
        ty = t / 12
        v0 = b0 + (s + b1) * tau(ty) + w - 0.8 * added + (shift if t > 0 else 0.0)
        mean_value.append(v0[alive].mean())
        if t > 0 and t % 6 == 0:
            obs = v0 + eps * g.standard_normal(n)
            added += alive & (obs > 1.0) & (added < 2)
        tm = ty + 1 / 24
        vmid = b0 + (s + b1) * tau(tm) + w - 0.8 * added + shift
        smid = (s + b1) * math.exp(-kappa * tm)
        h = 0.2 / 12 * np.exp(0.5 * vmid + 0.3 * smid)
        alive &= g.random(n) >= -np.expm1(-h)
        w = phi * w + sdw * math.sqrt(1 - phi**2) * g.standard_normal(n)
        surv.append(alive.mean())
    return np.array(surv), np.array(mean_value), added.mean()


def test_joint_biomarker_event_model_matches_a_plain_numpy_simulation():
    n, T = 60_000, 36
    model_spec = spec(JOINT)
    model = ms.compile_model(model_spec)
    R = 1
    shift = np.array([[0.0], [-0.5]])
    markers = bm.marker_inputs(model_spec.biomarkers, lambda name: np.zeros((R, n)), (R, n), 3, np.arange(R),
                               shift, np.zeros((2, 1)), np.arange(T + 1))
    rate = ms.patient_rates(model_spec, None, (R, n))
    paths = ms.simulate(model, rate, np.ones((2, 1, T)), np.zeros((R, n)), np.zeros((R, n)), T, 3, np.arange(R),
                        markers=markers)
    for a in (0, 1):
        surv, mean_value, added = numpy_joint(n, T, shift[a, 0], seed=100 + a)
        alive = paths.occupancy[0, a, :, 0] / n
        for t in (6, 12, 24, 36):
            se = math.sqrt(2 * surv[t] * (1 - surv[t]) / n)
            assert abs(alive[t] - surv[t]) < 4 * se, (a, t, alive[t], surv[t])
        true = paths.marker_true[0, :, a, 0, :]
        living = paths.death_time[0, :, a][:, None] > np.arange(T + 1) * 1.0
        for t in (0, 7, 13, 30):
            sim = true[living[:, t], t].mean()
            sd = true[living[:, t], t].std()
            assert abs(sim - mean_value[t]) < 4 * sd * math.sqrt(2 / living[:, t].sum()), (a, t, sim, mean_value[t])
        sim_added = paths.added[0, :, a, 0].mean()
        assert abs(sim_added - added) < 4 * math.sqrt(2 * 0.6 / n), (a, sim_added, added)
    # a treatment that lowers the biomarker lowers mortality through it
    assert paths.occupancy[0, 1, T, 0] > paths.occupancy[0, 0, T, 0]


def test_biomarker_process_without_new_parts_is_the_linear_mixed_model():
    """No fading, no process, no rule: true values are mean + b0 + (slope + b1)·t + treatment."""
    data = {"states": [{"name": "alive"}, {"name": "dead", "absorbing": True}], "initial_state": "alive",
            "transitions": [{"name": "death", "from": "alive", "to": "dead", "rate_per_year": 0.01}],
            "biomarkers": [{"name": "m", "intercept": 7.0, "slope_per_year": 0.2, "random_intercept_sd": 0.4,
                            "random_slope_sd": 0.3, "residual_sd": 0.2}]}
    s = spec(data)
    R, n, T = 2, 500, 24
    markers = bm.marker_inputs(s.biomarkers, None, (R, n), 5, np.arange(R), np.array([[0.0], [-0.6]]),
                               np.array([[0.0], [0.1]]), np.array([0, 6, 24]))
    paths = ms.simulate(ms.compile_model(s), ms.patient_rates(s, None, (R, n)), np.ones((2, 1, T)),
                        np.zeros((R, n)), np.zeros((R, n)), T, 5, np.arange(R), markers=markers)
    years = np.array([0.0, 0.5, 2.0])
    lmm = 7.0 + markers.b0[..., 0, None] + (0.2 + markers.b1[..., 0, None]) * years
    np.testing.assert_allclose(paths.marker_true[:, :, 0, 0, :], lmm, rtol=1e-12)
    np.testing.assert_allclose(paths.marker_true[:, :, 1, 0, :], lmm + (years > 0) * (-0.6 + 0.1 * years), rtol=1e-12)


def test_a_model_whose_hazards_use_biomarkers_needs_their_inputs():
    s = spec(JOINT)
    with pytest.raises(ValueError, match="pass markers"):
        ms.simulate(ms.compile_model(s), ms.patient_rates(s, None, (1, 3)), np.ones((1, 1, 4)), np.zeros((1, 3)),
                    np.zeros((1, 3)), 4, 1, np.arange(1))


# ------------------------------------------------------------------------------- spec checks


@pytest.mark.parametrize("change, where", [
    ({"transitions": [dict(SEMI_MARKOV["transitions"][2], time_in_state=[{"until_month": 3, "multiplier": 2},
                                                                           {"until_month": 2, "multiplier": 1}])]},
     "until_month must increase"),
    ({"transitions": [dict(SEMI_MARKOV["transitions"][2], rate_per_year=float("nan"))]}, "finite"),
    ({"transitions": [dict(SEMI_MARKOV["transitions"][2], biomarkers=[{"biomarker": "hba1c", "coef": 0.1}])]},
     "unknown biomarker"),
    ({"transitions": [dict(SEMI_MARKOV["transitions"][2], time_on_study={
        "weibull_shape": 0.8, "piecewise": [{"until_month": 3, "multiplier": 2}]})]}, "not both"),
    ({"covariate_drift": [{"covariate": "age", "per_year": 1.0}], "age_covariate": "age"}, "advances by itself"),
])
def test_new_disease_keys_are_checked_when_the_file_is_loaded(tmp_path, change, where):
    data = {"kind": "disease", "name": "x", "age_covariate": None} | SEMI_MARKOV | change
    if "transitions" in change:
        data["transitions"] = SEMI_MARKOV["transitions"][:2] + change["transitions"]
    with pytest.raises(SpecError, match=where):
        validate(data, DiseaseSpec, "model.yaml")


def test_intensification_needs_exactly_one_threshold():
    bad = dict(JOINT["biomarkers"][0], intensification={"every_months": 6, "shift": -1.0})
    with pytest.raises(SpecError, match="exactly one of above or below"):
        validate({"kind": "disease", "name": "x", **JOINT, "biomarkers": [bad]}, DiseaseSpec, "model.yaml")


# ------------------------------------------------------------------------ one engine, every path


def test_the_twin_path_and_the_kernel_give_the_same_event_times():
    """A twin batch is the kernel with draws as replicates and one shared patient key."""
    from vctrial import twin
    from vctrial.twin import simulate
    from vctrial.spec.patient import load_batch
    from vctrial.spec.protocol import load_protocol

    prot = load_protocol("patients/hf_dapagliflozin_options.yaml")
    pats = load_batch("patients/hf_clinic.csv", prot.cohort, prot.disease)
    plan = twin.make_plan(prot, pats, 3.0, 200)
    draws = np.arange(200)
    P = pats.n
    paths, _, _ = simulate._simulate(plan, 9, draws, np.arange(P))
    model = ms.compile_model(prot.disease)
    rate = np.broadcast_to(plan.rate[None], (200, P, plan.rate.shape[1]))
    ref = ms.simulate(model, rate, simulate._hazard_ratio_steps(plan, twin.sample_parameters(plan, 9, draws)[0]),
                      np.broadcast_to(plan.age[None], (200, P)), np.broadcast_to(plan.female[None], (200, P)),
                      plan.n_steps, 9, draws, start_state=plan.start, patient_keys=np.zeros(P, np.int64),
                      start_months_in_state=pats.start_months)
    np.testing.assert_array_equal(paths.first_time, ref.first_time)
    assert np.isfinite(paths.first_time).any()


def test_the_twins_measurements_move_event_risks_through_the_joint_terms(tmp_path):
    """Same covariates (HbA1c 8.6% today), opposite HbA1c histories (rising from 6.6%, falling from
    10.6%): with HbA1c's current value in the CV hazards of the shipped T2D model, the conditioned
    random effects change the risk, not only the biomarker forecast."""
    from vctrial import twin
    from vctrial.spec.patient import load_patient
    from vctrial.spec.protocol import load_protocol

    prot = load_protocol("patients/t2d_empagliflozin_options.yaml")
    assert prot.disease.has_biomarker_terms
    base = open("patients/t2d_patient.yaml").read().split("history:")[0]
    base = base.replace("../", str(Path("patients").resolve().parent) + "/")
    dates = ("2024-03-11", "2024-09-16", "2025-03-03", "2025-09-08", "2026-02-23")
    n = 10_000
    risks, forecasts = [], []
    for start in (6.6, 10.6):
        values = np.linspace(start, 8.6, len(dates))
        text = base + "history:\n  measurements:\n" + "".join(
            f"    - {{date: {d}, biomarker: hba1c, value: {v:.2f}}}\n" for d, v in zip(dates, values))
        path = tmp_path / f"p{start}.yaml"
        path.write_text(text)
        pats = load_patient(path, prot.cohort, prot.disease)
        plan, arrays = twin.simulate_patient(prot, pats, 5.0, n, 7, parameter_draws=1)
        first = arrays["event_time"][:, 0]  # standard care, (draws, events)
        risks.append(np.isfinite(first).any(axis=1).mean())
        forecasts.append(np.nanmean(arrays["biomarker_hba1c"][:, 0, 36]))
    # the same draws under both histories (common random numbers): a paired difference, bounded by
    # the unpaired SE
    se = math.sqrt(sum(p * (1 - p) / n for p in risks))
    assert forecasts[0] - forecasts[1] > 0.5, forecasts
    assert risks[0] - risks[1] > 3 * se, (risks, se)


def test_an_intensification_rule_below_a_threshold_adds_therapy_until_its_limit():
    """A value kept below the threshold (no noise, no process) adds a therapy at each visit up to
    max_times; the additions move the true value by their shift from the visit on."""
    data = {"states": [{"name": "alive"}, {"name": "dead", "absorbing": True}], "initial_state": "alive",
            "transitions": [{"name": "death", "from": "alive", "to": "dead", "rate_per_year": 1e-6}],
            "biomarkers": [{"name": "m", "intercept": 5.0, "intensification": {
                "every_months": 6, "below": 6.5, "shift": 1.0, "max_times": 2}}]}
    s = spec(data)
    R, n, T = 1, 50, 24
    markers = bm.marker_inputs(s.biomarkers, None, (R, n), 1, np.arange(R), np.zeros((1, 1)), np.zeros((1, 1)),
                               np.arange(T + 1))
    paths = ms.simulate(ms.compile_model(s), ms.patient_rates(s, None, (R, n)), np.ones((1, 1, T)),
                        np.zeros((R, n)), np.zeros((R, n)), T, 1, np.arange(R), markers=markers)
    assert (paths.added[0, :, 0, 0] == 2).all()  # at months 6 (5 < 6.5) and 12 (6 < 6.5), not at 18 (7)
    np.testing.assert_allclose(paths.marker_true[0, 0, 0, 0, [0, 5, 6, 11, 12, 24]], [5, 5, 5, 6, 6, 7])
