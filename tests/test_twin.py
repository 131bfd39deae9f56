"""Patient digital twin: exact references (exponential survival, Kolmogorov forward equations, joint
Gaussian conditioning, lognormal parameter bounds), batch invariance, patient-file checks, the
command line and the figures."""

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image
import numpy as np
import yaml
import pytest
import scipy.linalg
import xarray as xr
from scipy import integrate, stats

from twin_helpers import options_protocol
from vctrial import twin
from vctrial.disease import biomarker as bm
from vctrial.disease import multistate as ms
from vctrial.errors import SpecError
from vctrial.spec.disease import Biomarker
from vctrial.spec.patient import load_batch, load_patient
from vctrial.spec.protocol import load_protocol

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data"
COHORT = DATA / "simple_cohort.yaml"

EXPONENTIAL = """kind: disease
name: one exponential event
states: [{name: event_free}, {name: event, absorbing: true, utility: 0.0}]
initial_state: event_free
transitions:
  - {name: event, from: event_free, to: event, rate_per_year: 0.2%s}
"""
MARKER = """biomarkers:
  - {name: marker, unit: mmol/L, intercept: 10.0, slope_per_year: 0.4, random_intercept_sd: 1.0,
     random_slope_sd: 0.6, random_correlation: 0.3, residual_sd: 0.5,
     effects: [{covariate: age, coef: 0.05, reference: 60}]}
"""


def protocol_text(disease: Path, effects: str) -> str:
    return options_protocol(disease, effects, "event")


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    d = tmp_path_factory.mktemp("twin_specs")
    (d / "exp.yaml").write_text(EXPONENTIAL % "" + MARKER)
    (d / "exp_age.yaml").write_text(EXPONENTIAL % ", effects: [{covariate: age, coef: 0.05, reference: 60}]")
    (d / "fixed.yaml").write_text(protocol_text(d / "exp.yaml", "[{transition: event, hazard_ratio: 0.6}]"))
    (d / "ci.yaml").write_text(protocol_text(d / "exp.yaml",
                                             "[{transition: event, hazard_ratio: 0.6, hazard_ratio_ci: [0.4, 0.9]}]"))
    (d / "age.yaml").write_text(protocol_text(d / "exp_age.yaml", "[{transition: event, hazard_ratio: 0.7}]"))
    return d


def write_patient(folder: Path, covariates: str = "{age: 60, sex_female: 1}", history: str = "",
                  extra: str = "", name: str = "p.yaml") -> Path:
    path = folder / name
    path.write_text(f"kind: patient\nid: 'MRN-778899'\nas_of: 2026-01-01\n{extra}covariates: {covariates}\n"
                    + (f"history:\n{history}" if history else ""))
    return path


def single(protocol: Path, patient: Path, draws: int, horizon: float = 10.0, seed: int = 3,
           parameter_draws: int | None = None) -> xr.Dataset:
    prot = load_protocol(protocol)
    pats = load_patient(patient, prot.cohort, prot.disease)
    plan, arrays = twin.simulate_patient(prot, pats, horizon, draws, seed, parameter_draws)
    return twin.build_dataset(prot, pats, plan, arrays, seed, horizon, "label", "test")


# ----------------------------------------------------------------------------- exact references


def test_constant_hazard_survival_is_exponential_and_a_hazard_ratio_powers_it(specs, tmp_path):
    n = 20_000
    ds = single(specs / "fixed.yaml", write_patient(tmp_path), n)
    lam = 0.2
    for months in (12, 24, 60, 120):
        s0 = math.exp(-lam * months / 12)
        for option, expected in (("control", s0), ("active", s0**0.6)):
            sim = ds["event_free"].sel(option=option, time=months).values.mean()
            se = math.sqrt(expected * (1 - expected) / n)
            assert abs(sim - expected) < 4 * se, (option, months, sim, expected)
    # expected life-years by the horizon: ∫0^H exp(−λ h t) dt
    for option, h in (("control", 1.0), ("active", 0.6)):
        ly = ds["life_years"].sel(option=option).values
        exact = (1 - math.exp(-lam * h * 10)) / (lam * h)
        assert abs(ly.mean() - exact) < 4 * ly.std() / math.sqrt(n)


def test_a_delayed_effect_applies_only_after_its_delay(specs, tmp_path):
    """Piecewise-constant hazard: exp(−λt) until the delay, then exp(−λd − hλ(t − d))."""
    protocol = tmp_path / "delayed.yaml"
    protocol.write_text(protocol_text(specs / "exp.yaml", "[{transition: event, hazard_ratio: 0.5, delay_months: 6}]"))
    n = 20_000
    ds = single(protocol, write_patient(tmp_path), n, horizon=3.0)
    lam = 0.2 / 12
    for months in (3, 6, 18, 36):
        expected = math.exp(-lam * min(months, 6) - 0.5 * lam * max(months - 6, 0))
        sim = ds["event_free"].sel(option="active", time=months).values.mean()
        assert abs(sim - expected) < 4 * math.sqrt(expected * (1 - expected) / n), (months, sim, expected)
    # before the delay both options are the same draw for draw (common random numbers)
    early = ds["event_free"].sel(time=6)
    np.testing.assert_array_equal(early.sel(option="control").values, early.sel(option="active").values)


def test_an_interval_on_a_time_varying_effect_is_refused(specs, tmp_path):
    protocol = tmp_path / "delayed_ci.yaml"
    protocol.write_text(protocol_text(specs / "exp.yaml", "[{transition: event, hazard_ratio: 0.5, delay_months: 6, "
                                                          "hazard_ratio_ci: [0.3, 0.8]}]"))
    with pytest.raises(SpecError, match=r"arms\[1\]\.effects\[0\]\.hazard_ratio_ci"):
        single(protocol, write_patient(tmp_path), 100, horizon=1.0)


def generator(spec, hr, age, female, month, bg):
    """Per-month generator of the multi-state model at one step (rates at the mid-step age, hazard
    ratios, life table)."""
    names = [s.name for s in spec.states]
    q = np.zeros((len(names), len(names)))
    for k, t in enumerate(spec.transitions):
        aged = lambda name: covariate(name) + ((month + 0.5) / 12 if name == spec.age_covariate else 0.0)  # noqa: E731
        lp = sum(e.coef * (aged(e.covariate) - e.reference) for e in t.effects)
        q[names.index(t.from_), names.index(t.to)] += t.rate_per_year / 12 * math.exp(lp) * hr[k]
    if spec.background_mortality is not None:
        ia = min(int(age + month / 12), bg.shape[1] - 1)
        for i, s in enumerate(spec.states):
            if not s.absorbing:
                q[i, names.index(spec.background_mortality.to)] += bg[female, ia]
    np.fill_diagonal(q, -q.sum(axis=1))
    return q


HF_PATIENT = {"age": 71, "sex_female": 1, "nyha_class": "III", "lvef_pct": 27, "egfr_ml_min": 52, "diabetes": 1}


def covariate(name):
    if name.startswith("nyha_class["):
        return float(HF_PATIENT["nyha_class"] == name[11:-1])
    return float(HF_PATIENT[name])


def markov_hf_protocol(folder: Path) -> Path:
    """The shipped HFrEF options protocol over a copy of its disease model without time-in-state
    pieces and recurrent transitions (and without the cohort's starting states)."""
    src = ROOT / "patients" / "hf_dapagliflozin_options.yaml"
    prot = yaml.safe_load(src.read_text())
    disease = yaml.safe_load((src.parent / prot["disease"]).read_text())
    kept = [t for t in disease["transitions"] if t["from"] != t["to"]]
    for t in kept:
        t.pop("time_in_state", None)
    disease["transitions"] = kept
    names = {t["name"] for t in kept}
    cohort = yaml.safe_load((src.parent / prot["cohort"]).read_text())
    cohort.pop("start", None)
    (folder / "markov_hf.yaml").write_text(yaml.safe_dump(disease))
    (folder / "cohort_hf.yaml").write_text(yaml.safe_dump(cohort))
    prot["disease"], prot["cohort"] = "markov_hf.yaml", "cohort_hf.yaml"
    for arm in prot["arms"]:
        arm["effects"] = [e for e in arm.get("effects", []) if e.get("transition", "") in names or "biomarker" in e]
    prot["endpoint"]["events"] = [e for e in prot["endpoint"]["events"] if e in names]
    path = folder / "markov_hf_options.yaml"
    path.write_text(yaml.safe_dump(prot))
    return path


@pytest.mark.parametrize("start", ["stable", "post_hhf"])
def test_state_occupancy_matches_kolmogorov_forward_equation_from_the_starting_state(tmp_path, start):
    """HFrEF model with ageing hazards and age-dependent background mortality, made Markov (its
    time-in-state pieces and recurrences left out, which tests/test_disease_engine.py checks against a
    semi-Markov reference): product of per-step matrix exponentials."""
    protocol = markov_hf_protocol(tmp_path)
    history = "  events: [{date: 2025-05-01, event: hhf}]\n" if start == "post_hhf" else ""
    covs = "{" + ", ".join(f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {v}" for k, v in HF_PATIENT.items()) + "}"
    patient = write_patient(tmp_path, covs, history)
    n, horizon = 20_000, 5.0
    ds = single(protocol, patient, n, horizon, parameter_draws=1)
    prot = load_protocol(protocol)
    spec = prot.disease
    bg = ms.compile_model(spec).bg_hazard
    names = [s.name for s in spec.states]
    assert ds.attrs["start_state"] == start
    for a, arm in enumerate(prot.spec.arms):
        hr = np.ones(len(spec.transitions))
        for e in arm.effects:
            hr[[t.name for t in spec.transitions].index(e.transition)] *= e.hazard_ratio
        p = np.zeros(len(names))
        p[names.index(start)] = 1.0
        for month in range(int(horizon * 12)):
            p = p @ scipy.linalg.expm(generator(spec, hr, HF_PATIENT["age"], 1, month, bg))
        sim = ds["occupancy"].isel(option=a, time=-1).values
        se = np.sqrt(p * (1 - p) / n)
        assert np.all(np.abs(sim - p) < 4 * se + 1e-12), (arm.name, sim, p)


def test_life_years_and_qalys_integrate_each_drawn_path_exactly(tmp_path):
    protocol = ROOT / "patients" / "hf_dapagliflozin_options.yaml"
    covs = "{" + ", ".join(f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {v}" for k, v in HF_PATIENT.items()) + "}"
    ds = single(protocol, write_patient(tmp_path, covs), 2000, 5.0, parameter_draws=1)
    et = ds["event_time"].fillna(np.inf)
    horizon = 60.0
    death = np.minimum(et.sel(event=["cv_death", "cv_death_after_hhf", "non_cv_death"]).min("event"), horizon)
    hhf = np.minimum(et.sel(event="hhf"), death)  # stable until the first HF hospitalization or death
    np.testing.assert_allclose(ds["life_years"], death / 12, rtol=1e-12, atol=1e-12)
    utility = dict(zip(ds["state"].values, ds["state_utility"].values))
    qaly = (utility["stable"] * hhf + utility["post_hhf"] * (death - hhf)) / 12
    np.testing.assert_allclose(ds["qalys"], qaly, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------- conditioning


def marker(**kw) -> Biomarker:
    base = dict(name="m", intercept=5.0, slope_per_year=0.3, random_intercept_sd=1.2, random_slope_sd=0.5,
                random_correlation=-0.4, residual_sd=0.7)
    base.update(kw)
    return Biomarker(**base)


def joint_gaussian_posterior(b: Biomarker, mean0: float, years: np.ndarray, values: np.ndarray):
    """Condition the joint normal of (b0, b1, y_1..y_J) on the y's: Schur complement, numpy only."""
    G = twin.prior_covariance(b)
    Z = np.column_stack([np.ones_like(years), years])
    cov_yy = Z @ G @ Z.T + b.residual_sd**2 * np.eye(len(years))
    cov_by = G @ Z.T
    mu_y = mean0 + b.slope_per_year * years
    mean = cov_by @ np.linalg.solve(cov_yy, values - mu_y)
    cov = G - cov_by @ np.linalg.solve(cov_yy, cov_by.T)
    return mean, cov


def test_posterior_of_random_effects_matches_joint_gaussian_conditioning():
    gen = np.random.default_rng(11)
    b = marker()
    counts = [0, 1, 2, 5, 9]
    mean0 = gen.normal(5, 1, len(counts))
    patient = np.concatenate([np.full(c, i) for i, c in enumerate(counts)])
    years = -gen.uniform(0, 4, patient.size)
    values = gen.normal(5, 1.5, patient.size)
    mean, cov = twin.posterior_random_effects(b, mean0, patient, years, values, len(counts))
    for i, c in enumerate(counts):
        if c == 0:
            np.testing.assert_allclose(mean[i], 0.0, atol=1e-15)
            np.testing.assert_allclose(cov[i], twin.prior_covariance(b), rtol=1e-12)
            continue
        m, s = joint_gaussian_posterior(b, mean0[i], years[patient == i], values[patient == i])
        np.testing.assert_allclose(mean[i], m, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(cov[i], s, rtol=1e-10, atol=1e-12)
    # a singular prior (no random slope) works too
    b0 = marker(random_slope_sd=0.0)
    m, s = joint_gaussian_posterior(b0, mean0[3], years[patient == 3], values[patient == 3])
    mean, cov = twin.posterior_random_effects(b0, mean0[3:4], np.zeros(5, int), years[patient == 3],
                                              values[patient == 3], 1)
    np.testing.assert_allclose(mean[0], m, atol=1e-12)
    np.testing.assert_allclose(cov[0], s, atol=1e-12)


def test_posterior_variance_shrinks_as_measurements_are_added():
    gen = np.random.default_rng(5)
    b = marker()
    years = -np.sort(gen.uniform(0, 5, 8))[::-1]
    values = gen.normal(6, 1, 8)
    previous = twin.prior_covariance(b)
    for k in range(1, 9):
        _, cov = twin.posterior_random_effects(b, np.array([5.0]), np.zeros(k, int), years[:k], values[:k], 1)
        gap = np.linalg.eigvalsh(previous - cov[0])
        assert gap.min() > -1e-12  # Loewner order: the new covariance is never larger in any direction
        assert np.trace(cov[0]) < np.trace(previous)
        previous = cov[0]


def test_forecast_follows_the_posterior_predictive_and_learns_from_history(specs, tmp_path):
    """Equal covariates, different histories: different forecasts, each the closed-form posterior predictive."""
    n = 20_000
    rising = "  measurements:\n" + "".join(f"    - {{date: {d}, biomarker: marker, value: {v}}}\n" for d, v in
                                         (("2024-01-01", 9.0), ("2024-07-01", 9.8), ("2025-01-01", 10.6),
                                          ("2025-07-01", 11.5), ("2025-12-20", 12.3)))
    one = "  measurements:\n    - {date: 2025-12-20, biomarker: marker, value: 12.3}\n"
    out = {}
    for name, history in (("none", ""), ("one", one), ("rising", rising)):
        ds = single(specs / "fixed.yaml", write_patient(tmp_path, history=history, name=f"{name}.yaml"), n, 3.0)
        b = load_protocol(specs / "fixed.yaml").disease.biomarkers[0]
        mu = ds["random_effect_mean"].sel(biomarker="marker").values
        cov = ds["random_effect_cov"].sel(biomarker="marker").values
        t = 3.0
        z = np.array([1.0, t])
        mean = b.intercept + b.slope_per_year * t + z @ mu  # age 60 = reference
        sd = math.sqrt(z @ cov @ z)
        y = ds["biomarker_marker"].sel(option="control", time=36).values.astype(float)
        y = y[np.isfinite(y)]
        assert abs(y.mean() - mean) < 4 * sd / math.sqrt(y.size), name
        chi = (y.size - 1) * y.var(ddof=1) / sd**2  # sample variance against its chi-square law
        assert stats.chi2.ppf(1e-4, y.size - 1) < chi < stats.chi2.ppf(1 - 1e-4, y.size - 1), name
        out[name] = (mean, sd)
    assert out["rising"][0] > out["one"][0] + 1.0 > out["none"][0] + 1.0
    assert out["rising"][1] < out["one"][1] < out["none"][1]


# ---------------------------------------------------------------------------- parameter uncertainty


@pytest.mark.slow
def test_parameter_interval_of_the_risk_matches_the_lognormal_hazard_ratio_bounds(specs, tmp_path):
    """HR 0.6 (0.4 to 0.9): the 95% parameter interval of a risk 1 − exp(−λHh) is its value at 0.4 and 0.9."""
    prot = load_protocol(specs / "ci.yaml")
    pats = load_patient(write_patient(tmp_path), prot.cohort, prot.disease)
    M, L, H, lam = 400, 400, 10.0, 0.2
    plan, arrays = twin.simulate_batch(prot, pats, H, M * L, 7, M)
    ds = twin.build_batch_dataset(prot, pats, plan, arrays, 7, H, ["x"], "test")
    risk = ds["risk"].sel(patient="x", option="active", outcome="event")
    p = lambda h: 1 - np.exp(-lam * H * h)  # noqa: E731
    mu, sigma = math.log(0.6), (math.log(0.9) - math.log(0.4)) / (2 * twin.Z95)
    rank_sd = math.sqrt(0.025 * 0.975 / M)  # sampling SD of the rank of an empirical 2.5% quantile
    inner = math.sqrt(p(0.6) * (1 - p(0.6)) / L)
    for stat, q in (("param_lower", 0.025), ("param_upper", 0.975)):
        lo_q, hi_q = max(q - 4 * rank_sd, 1e-6), min(q + 4 * rank_sd, 1 - 1e-6)
        band = sorted(p(np.exp(mu + sigma * stats.norm.ppf(x))) for x in (lo_q, hi_q))
        value = float(risk.sel(statistic=stat))
        assert band[0] - 2 * inner < value < band[1] + 2 * inner, (stat, value, band)
    # law of total variance, against quadrature over the lognormal hazard ratio
    dens = lambda z: stats.norm.pdf(z)  # noqa: E731
    e1 = integrate.quad(lambda z: p(np.exp(mu + sigma * z)) * dens(z), -9, 9)[0]
    e2 = integrate.quad(lambda z: p(np.exp(mu + sigma * z)) ** 2 * dens(z), -9, 9)[0]
    param_sd = math.sqrt(e2 - e1**2)
    chance_sd = math.sqrt(e1 - e2)  # E[p(1 − p)]
    got = {s: float(risk.sel(statistic=s)) for s in ("mean", "sd_parameters", "sd_chance", "sd_total", "mc_se")}
    assert abs(got["mean"] - e1) < 4 * got["mc_se"]
    assert abs(got["sd_parameters"] / param_sd - 1) < 4 / math.sqrt(2 * (M - 1))
    assert abs(got["sd_chance"] / chance_sd - 1) < 0.02
    assert got["sd_total"] == pytest.approx(math.sqrt(got["sd_chance"] ** 2 + got["sd_parameters"] ** 2))
    assert float(risk.sel(statistic="param_resolved")) == 1.0
    # control has no uncertain effect: no parameter interval, no parameter part
    control = ds["risk"].sel(patient="x", option="control", outcome="event")
    assert np.isnan(float(control.sel(statistic="param_lower")))
    assert float(control.sel(statistic="sd_parameters")) == 0.0


def test_decompose_recovers_known_between_and_within_variances():
    """Normal outcomes with known parts: Y = θ_m + ε, θ ~ N(0, 0.3²), ε ~ N(0, 1)."""
    gen = np.random.default_rng(2)
    M, L = 200, 50
    theta = gen.normal(0, 0.3, M)
    y = (theta[:, None] + gen.normal(0, 1, (M, L))).reshape(-1, 1)
    s = twin.decompose(y, M)
    assert abs(s["sd_parameters"][0] / 0.3 - 1) < 4 / math.sqrt(2 * (M - 1))
    assert abs(s["sd_chance"][0] - 1) < 4 / math.sqrt(2 * M * (L - 1))
    q = np.quantile(theta, [0.025, 0.975])
    assert abs(s["param_lower"][0] - q[0]) < 0.15 and abs(s["param_upper"][0] - q[1]) < 0.15
    fixed = twin.decompose(y, M, varies=False)
    assert np.isnan(fixed["param_lower"][0]) and fixed["sd_parameters"][0] == 0.0
    assert fixed["mc_se"][0] == pytest.approx(y.std(ddof=1) / math.sqrt(y.size))


# ------------------------------------------------------------------------------------------- batch


def test_batch_risks_match_each_patients_exponential_risk(specs, tmp_path):
    csv = tmp_path / "batch.csv"
    ages = [45, 52, 60, 67, 74, 79]
    csv.write_text("id,age (years),sex_female\n" + "".join(f"P{i},{a},{i % 2}\n" for i, a in enumerate(ages)))
    prot = load_protocol(specs / "age.yaml")
    pats = load_batch(csv, prot.cohort, prot.disease)
    n, H = 4000, 5.0
    plan, arrays = twin.simulate_batch(prot, pats, H, n, 1)
    risk = arrays["value_mean"][:, :, 0]  # (P, A) the single event
    for i, age in enumerate(ages):
        for a, h in enumerate((1.0, 0.7)):
            # the patient ages: the cumulative hazard is Gompertz, λ e^(β(age−60)) (e^(βH) − 1) / β
            p = 1 - math.exp(-0.2 * h * math.exp(0.05 * (age - 60)) * math.expm1(0.05 * H) / 0.05)
            assert abs(risk[i, a] - p) < 4 * math.sqrt(p * (1 - p) / n), (age, a)


def test_batch_ranking_is_invariant_to_the_order_of_the_rows(tmp_path):
    protocol = load_protocol(ROOT / "patients" / "hf_dapagliflozin_options.yaml")
    lines = (ROOT / "patients" / "hf_clinic.csv").read_text().splitlines()
    order = np.random.default_rng(3).permutation(len(lines) - 1)
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join([lines[0]] + [lines[1 + i] for i in order]) + "\n")
    tables = []
    for path in (ROOT / "patients" / "hf_clinic.csv", shuffled):
        pats = load_batch(path, protocol.cohort, protocol.disease)
        plan, arrays = twin.simulate_batch(protocol, pats, 5.0, 200, 9)
        ds = twin.build_batch_dataset(protocol, pats, plan, arrays, 9, 5.0, list(pats.ids), "kept")
        tables.append(twin.risk_table(ds).drop(columns="row"))
    assert list(tables[0]["patient"]) == list(tables[1]["patient"])
    assert tables[0].equals(tables[1])


def test_a_batch_row_equals_the_same_patient_simulated_alone(tmp_path):
    """All patients share the draws, so a patient's forecast does not depend on who else is in the batch."""
    protocol = load_protocol(ROOT / "patients" / "hf_dapagliflozin_options.yaml")
    pats = load_batch(ROOT / "patients" / "hf_clinic.csv", protocol.cohort, protocol.disease)
    draws, M = 400, 20
    plan, arrays = twin.simulate_batch(protocol, pats, 5.0, draws, 4, M)
    one = pats.take(np.array([2]))  # HF-003, starting after an HF hospitalization
    ds = twin.build_dataset(protocol, one, *twin.simulate_patient(protocol, one, 5.0, draws, 4, M), 4, 5.0, "x", "t")
    table = twin.summarize(ds)
    names = [n for n, _ in twin.outcome_names(ds["event"].values, np.ones(1, bool))]
    for a, option in enumerate(ds["option"].values):
        for o, name in enumerate(names):
            for stat in ("mean", "sd_parameters", "param_lower"):
                np.testing.assert_allclose(table.loc[(str(option), name), stat], arrays[f"value_{stat}"][2, a, o],
                                           rtol=1e-12, atol=1e-15)


def test_common_random_numbers_across_options_delay_events_monotonically(specs, tmp_path):
    ds = single(specs / "fixed.yaml", write_patient(tmp_path), 3000, 20.0, parameter_draws=1)
    t = ds["event_time"].sel(event="event")
    both = np.isfinite(t.sel(option="active")) & np.isfinite(t.sel(option="control"))
    # the same thresholds under a hazard ratio 0.6: the event comes at exactly 1/0.6 times the time
    np.testing.assert_allclose(t.sel(option="active")[both], t.sel(option="control")[both] / 0.6, rtol=1e-10)


# ------------------------------------------------------------------------------- kernel extensions


def test_kernel_extensions_leave_the_default_paths_unchanged():
    spec = load_protocol(ROOT / "patients" / "hf_dapagliflozin_options.yaml").disease
    model = ms.compile_model(spec)
    R, n, steps = 3, 700, 24
    gen = np.random.default_rng(1)
    K = model.n_transitions
    rate = gen.uniform(0.002, 0.03, (R, n, K))
    hr = np.stack([np.ones((K, steps)), np.full((K, steps), 0.7)])
    age, female = gen.uniform(50, 90, (R, n)), (gen.random((R, n)) < 0.5).astype(float)
    base = ms.simulate(model, rate, hr, age, female, steps, 5, np.arange(R))
    ext = ms.simulate(model, rate, np.broadcast_to(hr, (R,) + hr.shape), age, female, steps, 5, np.arange(R),
                      start_state=np.zeros(n, int), patient_keys=np.arange(n), track_time=True)
    for name in ("first_time", "death_time", "occupancy"):
        np.testing.assert_array_equal(getattr(base, name), getattr(ext, name))
    assert base.time_in_state is None
    alive = np.minimum(ext.death_time, steps * model.step_months)
    np.testing.assert_allclose(ext.time_in_state[..., ~model.absorbing].sum(axis=-1), alive, rtol=1e-12)
    # equal patient keys and equal patients: equal paths; a start state is honoured
    same = ms.simulate(model, rate[:, :1].repeat(4, axis=1), hr, age[:, :1].repeat(4, axis=1),
                       female[:, :1].repeat(4, axis=1), steps, 5, np.arange(R), start_state=np.ones(4, int),
                       patient_keys=np.zeros(4, int))
    assert (same.first_time == same.first_time[:, :1]).all()
    assert (same.occupancy[:, :, 0, 1] == 4).all()
    with pytest.raises(ValueError, match="absorbing"):
        ms.simulate(model, rate, hr, age, female, steps, 5, np.arange(R), start_state=np.full(n, 2))


def test_biomarker_random_effects_given_as_the_prior_reproduce_the_prior_draws():
    b = marker()
    R, n = 4, 50
    column = lambda name: np.zeros((R, n))  # noqa: E731

    def draw(random_effects=None):
        m = bm.marker_inputs([b], column, (R, n), 3, np.arange(R), np.zeros((1, 1)), np.zeros((1, 1)),
                             np.zeros(0, np.int64), random_effects=random_effects)
        return np.stack([m.b0[..., 0], m.b1[..., 0]], axis=-1)

    prior = draw()
    chol = np.broadcast_to(np.linalg.cholesky(twin.prior_covariance(b)), (1, n, 2, 2))
    given = draw((np.zeros((1, n, 2)), chol))
    np.testing.assert_allclose(given, prior, rtol=1e-12)
    shifted = draw((np.tile([1.0, 0.5], (1, n, 1)), chol))
    np.testing.assert_allclose(shifted - given, np.broadcast_to([1.0, 0.5], shifted.shape), rtol=1e-9)


# ----------------------------------------------------------------------------------- patient files


BAD_PATIENTS = [
    ("before birth", "{age: 60, sex_female: 1}", "  measurements: [{date: 1950-06-01, biomarker: marker, value: 8}]\n",
     "history.measurements[0].date", "before the patient was born"),
    ("unknown covariate", "{age: 60, sex_female: 1, weight: 80}", "", "covariates.weight", "not a covariate"),
    ("missing covariate", "{sex_female: 1}", "", "covariates", "'age' is missing"),
    ("wrong type", "{age: sixty, sex_female: 1}", "", "covariates.age", "must be a number"),
    ("out of range", "{age: 91, sex_female: 1}", "", "covariates.age", "outside the cohort's range [40, 80]"),
    ("not binary", "{age: 60, sex_female: 0.5}", "", "covariates.sex_female", "must be 0 or 1"),
    ("wrong unit", "{age: {value: 60, unit: months}, sex_female: 1}", "", "covariates.age.unit", "not the cohort's unit"),
    ("unknown biomarker", "{age: 60, sex_female: 1}",
     "  measurements: [{date: 2025-01-01, biomarker: hba1c, value: 8}]\n", "history.measurements[0].biomarker",
     "unknown biomarker"),
    ("after as_of", "{age: 60, sex_female: 1}",
     "  measurements: [{date: 2026-05-01, biomarker: marker, value: 8}]\n", "history.measurements[0].date",
     "after as_of"),
    ("dead already", "{age: 60, sex_female: 1}", "  events: [{date: 2025-01-01, event: event}]\n",
     "history.events[0].event", "living patients"),
    ("unknown key", "{age: 60, sex_female: 1}", "  labs: []\n", "history.labs", "unknown key"),
]


@pytest.mark.parametrize("case, covariates, history, where, why", BAD_PATIENTS, ids=[b[0] for b in BAD_PATIENTS])
def test_bad_patient_file_names_file_key_and_reason(specs, tmp_path, case, covariates, history, where, why):
    prot = load_protocol(specs / "fixed.yaml")
    path = write_patient(tmp_path, covariates, history)
    with pytest.raises(SpecError) as err:
        load_patient(path, prot.cohort, prot.disease)
    assert err.value.file == str(path) and err.value.path == where and why in err.value.reason, str(err.value)


def test_a_decision_date_in_the_future_is_refused(specs, tmp_path):
    import datetime

    prot = load_protocol(specs / "fixed.yaml")
    later = datetime.date.today() + datetime.timedelta(days=400)
    path = tmp_path / "p.yaml"
    path.write_text(f"kind: patient\nas_of: {later}\ncovariates: {{age: 60, sex_female: 1}}\n")
    with pytest.raises(SpecError) as err:
        load_patient(path, prot.cohort, prot.disease)
    assert err.value.path == "as_of" and "cannot be in the future" in err.value.reason


def test_past_events_must_follow_the_disease_transitions(tmp_path):
    prot = load_protocol(ROOT / "patients" / "t2d_empagliflozin_options.yaml")
    text = (ROOT / "patients" / "t2d_patient.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_text(text.replace("cohort: ../", "cohort: " + str(ROOT) + "/").replace(
        "disease: ../", "disease: " + str(ROOT) + "/").replace("event: mace}", "event: cv_death_after_mace}"))
    with pytest.raises(SpecError, match="leaves state 'post_mace'"):
        load_patient(path, prot.cohort, prot.disease)
    path.write_text(text.replace("cohort: ../cohorts/t2d.yaml", f"cohort: {ROOT}/cohorts/hfref.yaml"))
    with pytest.raises(SpecError, match="not the protocol's cohort"):
        load_patient(path, prot.cohort, prot.disease)


def test_the_shipped_patient_is_conditioned_and_starts_after_its_event():
    prot = load_protocol(ROOT / "patients" / "t2d_empagliflozin_options.yaml")
    pats = load_patient(ROOT / "patients" / "t2d_patient.yaml", prot.cohort, prot.disease)
    assert [s.name for s in prot.disease.states][pats.start_state[0]] == "post_mace"
    assert pats.columns["bmi"][0] == pytest.approx(94 / 1.76**2)
    idx, years, values = pats.measurements["hba1c"]
    assert len(values) == 5 and years.max() == pytest.approx(-7 / 365.25) and (years < 0).all()


BAD_ROWS = [
    ("bad level", ("HF-002,74,1,III", "HF-002,74,1,V"), "line 3, nyha_class", "unknown level 'V'"),
    ("ineligible", ("HF-004,66,0,II,38", "HF-004,66,0,II,45"), "line 5, lvef_pct", "outside the cohort's range"),
    ("duplicate id", ("HF-005,", "HF-004,"), "line 6, id", "repeats line 5"),
    ("absorbing state", ("95,0,stable", "95,0,cv_death"), "line 8, state", "absorbing"),
    ("wrong unit", ("age (years)", "age (months)"), "column 'age'", "not the cohort's unit"),
    ("not a number", ("HF-010,85", "HF-010,eighty"), "line 11, age", "must be a number"),
]


@pytest.mark.parametrize("case, replace, where, why", BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_bad_batch_csv_names_line_column_and_reason(tmp_path, case, replace, where, why):
    prot = load_protocol(ROOT / "patients" / "hf_dapagliflozin_options.yaml")
    text = (ROOT / "patients" / "hf_clinic.csv").read_text()
    assert replace[0] in text
    path = tmp_path / "c.csv"
    path.write_text(text.replace(replace[0], replace[1], 1))
    with pytest.raises(SpecError) as err:
        load_batch(path, prot.cohort, prot.disease)
    assert err.value.path == where and why in err.value.reason, str(err.value)


def test_confidence_interval_must_surround_the_estimate(specs, tmp_path):
    for effect, why in (("[{transition: event, hazard_ratio: 0.6, hazard_ratio_ci: [0.7, 0.9]}]", "does not contain"),
                        ("[{transition: event, hazard_ratio: 0.6, hazard_ratio_ci: [0.4]}]", "two numbers"),
                        ("[{biomarker: marker, shift: -1, shift_ci: [-0.5, 0.2]}]", "around shift")):
        path = tmp_path / "bad.yaml"
        path.write_text(protocol_text(specs / "exp.yaml", effect))
        with pytest.raises(SpecError, match=why) as err:
            load_protocol(path)
        assert err.value.path.startswith("arms[1].effects[0].") and err.value.path.endswith("_ci")


# -------------------------------------------------------------------------------- command and plots


def vctrial(*args):
    return subprocess.run([sys.executable, "-m", "vctrial.cli", *map(str, args)], capture_output=True, text=True)


def test_twin_command_writes_labeled_file_without_identifiers_and_is_reproducible(tmp_path):
    patient = ROOT / "patients" / "t2d_patient.yaml"
    protocol = ROOT / "patients" / "t2d_empagliflozin_options.yaml"
    common = ["--protocol", protocol, "--horizon-years", 5, "--draws", 400, "--seed", 2, "-q", "--workers", 0]
    runs = []
    for i, extra in enumerate((["--id-salt", "s3cret"], ["--id-salt", "s3cret"], ["--keep-ids"])):
        out = tmp_path / f"t{i}.nc"
        proc = vctrial("twin", patient, *common, "--out", out, *extra)
        assert proc.returncode == 0, proc.stderr
        runs.append((out, proc.stdout))
    out, text = runs[0]
    assert "risk by 5 years" in text and "NNTB" in text and "add_empagliflozin - standard_care" in text
    ds = xr.open_dataset(out)
    assert ds.attrs["kind"] == "twin" and ds["health_state"].dims == ("option", "draw", "time")
    for name in ("occupancy", "event_free", "biomarker_hba1c", "life_years", "qalys"):
        assert name in ds and ds[name].attrs["units"] and ds[name].attrs["long_name"]
    assert ds.sizes["draw"] == 400 and ds.sizes["time"] == 61
    assert b"DEMO-0001" not in out.read_bytes() and b"2026-03-02" not in out.read_bytes()
    assert ds.identical(xr.open_dataset(runs[1][0]))
    kept = xr.open_dataset(runs[2][0])
    assert kept.attrs["patient"] == "DEMO-0001"
    assert np.array_equal(kept["health_state"].values, ds["health_state"].values)
    assert not list(tmp_path.glob("*.tmp"))


def test_twin_command_ranks_a_batch_and_writes_the_table(tmp_path):
    out, table = tmp_path / "b.nc", tmp_path / "b.csv"
    proc = vctrial("twin", ROOT / "patients" / "hf_clinic.csv", "--protocol",
                   ROOT / "patients" / "hf_dapagliflozin_options.yaml", "--horizon-years", 3, "--draws", 200,
                   "--out", out, "--table", table, "--rank-by", "qalys", "-q", "--workers", 0)
    assert proc.returncode == 0, proc.stderr
    import pandas as pd

    ranked = pd.read_csv(table)
    assert list(ranked["rank"]) == list(range(1, 13))
    assert (np.diff(ranked["qalys gain"]) <= 1e-12).all()
    assert not ranked["patient"].str.startswith("HF-").any()  # hashed
    ds = xr.open_dataset(out)
    assert ds.attrs["twin_scope"] == "batch" and ds["risk"].dims == ("patient", "option", "outcome", "statistic")


@pytest.mark.parametrize("case, args, why", [
    ("bad patient", ["--draws", "100"], "covariates.age"),
    ("draws without a split", ["--draws", "101"], "--draws"),
])
def test_twin_command_stops_with_one_line_and_no_output(tmp_path, specs, case, args, why):
    patient = write_patient(tmp_path, "{age: 20, sex_female: 1}" if case == "bad patient" else
                            "{age: 60, sex_female: 1}")
    out = tmp_path / "never.nc"
    proc = vctrial("twin", patient, "--protocol", specs / "ci.yaml", "--out", out, "-q", "--workers", 0, *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists() and not list(tmp_path.glob("*.nc*"))


def rendered(fig, dpi=60):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    return matplotlib.image.imread(buf, format="png")


def test_figures_render_non_blank_images_of_the_expected_size(specs, tmp_path):
    from vctrial.plots import figures

    history = "  measurements: [{date: 2025-06-01, biomarker: marker, value: 10.4}]\n"
    ds = single(specs / "ci.yaml", write_patient(tmp_path, history=history), 400, 5.0)
    figs = figures(ds)
    assert {"twin_survival", "twin_risk", "twin_biomarker_marker"} <= set(figs)
    for name, fig in figs.items():
        image = rendered(fig)
        w, h = fig.get_size_inches() * 60
        assert abs(image.shape[0] - h) <= 1 and abs(image.shape[1] - w) <= 1, (name, image.shape)  # pixel rounding
        assert image[..., :3].std() > 0.05, name  # not blank


def test_batch_figure_ranks_patients(tmp_path):
    from vctrial.plots import figures

    protocol = load_protocol(ROOT / "patients" / "hf_dapagliflozin_options.yaml")
    pats = load_batch(ROOT / "patients" / "hf_clinic.csv", protocol.cohort, protocol.disease)
    plan, arrays = twin.simulate_batch(protocol, pats, 3.0, 100, 1)
    ds = twin.build_batch_dataset(protocol, pats, plan, arrays, 1, 3.0, list(pats.ids), "kept")
    (name, fig), = figures(ds).items()
    image = rendered(fig)
    assert name == "twin_ranking" and image[..., :3].std() > 0.05
    assert sorted(json.loads(ds.attrs["endpoint_events"])) == sorted(protocol.spec.endpoint.events)


def test_a_rounding_level_risk_difference_has_no_number_needed_to_treat():
    assert twin.nnt_text(-8.7e-19, -0.08, 0.06) == "none"
    assert twin.nnt_text(-0.05, -0.08, -0.02).startswith("NNTB 20")
