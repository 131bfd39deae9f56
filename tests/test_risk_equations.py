"""External validation of the disease models against published risk equations, patient by patient.

For each model, 24 patient profiles (tests/data/risk/*_patients.csv, a twin batch CSV with the model's
covariates; tests/data/risk/*_equation_inputs.csv, the inputs only the equation uses, by id) are
forecast by the patient twin (control option, seed SEED, DRAWS draws per profile) and by a published
risk equation implemented here, independently of vctrial, from its published coefficients:

  model                    equation (docs/risk_equations.md)         twin outcome compared
  diseases/cvd_primary     Pooled Cohort Equations, 10-y hard ASCVD  first of first_cvd or cv_death by
                           (Appendix A; white race)                  10 y (tests/data/risk/cvd_primary_options.yaml)
  diseases/hfref           MAGGIC score, 1-y and 3-y all-cause       all_cause_death by 1 and 3 y
                           death (Appendix B)                        (protocols/hf_outcomes.yaml)
  diseases/t2d             SMART risk score, 10-y MI, stroke or      first of mace or cv_death by 10 y
                           vascular death (Appendix C)               (tests/data/risk/t2d_options.yaml)

Agreement statistics over the profiles: mean ratio = mean of (twin risk / equation risk); calibration
slope = ordinary least-squares slope of logit(twin risk) on logit(equation risk); correlation =
Pearson correlation of the same logits. Their Monte Carlo SEs come from a parametric bootstrap of the
twin risks with their own Monte Carlo SEs.

Tolerance (the agreement tests): mean ratio within [0.67, 1.5] and calibration slope within
[0.5, 1.5]. A model outside it is NOT changed to pass: its test is marked
``xfail(strict=True)`` with the measured figures, so CI records the known disagreement and flags it
(XPASS -> failure) when a change to the model moves it inside.

The equations' own implementations are checked first against worked examples: the PCE against the
guideline's published example (2.1 / 3.0 / 5.3 / 6.1%); MAGGIC and SMART have no published worked
example in the stored material, so they are checked against their published points table and lookup
(MAGGIC, a profile tallied item by item here) and the hand arithmetic of docs/risk_equations.md,
Appendix C.5 (SMART).

Run ``.venv/bin/python tests/test_risk_equations.py`` to print the Markdown tables of
docs/risk_equations.md (section "Results"); its appendices A-C hold the transcribed coefficients,
points tables, worked examples, sources and open questions of the three equations.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data" / "risk"
SEED = 20260302
DRAWS = 20_000
RATIO_RANGE = (0.67, 1.5)
SLOPE_RANGE = (0.5, 1.5)


# =============================================================================== Pooled Cohort Equations
# Goff DC Jr et al. 2013 ACC/AHA guideline on the assessment of cardiovascular risk, Circulation
# 2014;129(25 Suppl 2):S49-S73, Table A (coefficients, mean "coefficient x value", baseline survival), as
# transcribed in docs/risk_equations.md, Appendix A.4 (white women's Ln untreated SBP 1.957, settled by the
# worked example, Appendix A.5).
# Terms: ln_age, ln_age2 = (ln age)^2, ln_tc, age_tc = ln age x ln TC, ln_hdl, age_hdl, ln_tsbp (treated),
# age_tsbp, ln_usbp (untreated), age_usbp, smoker, age_smoker = ln age x smoker, diabetes.

PCE = {
    ("white", "female"): dict(ln_age=-29.799, ln_age2=4.884, ln_tc=13.540, age_tc=-3.114, ln_hdl=-13.578,
                              age_hdl=3.149, ln_tsbp=2.019, ln_usbp=1.957, smoker=7.574, age_smoker=-1.665,
                              diabetes=0.661, mean=-29.18, s10=0.9665),
    ("african_american", "female"): dict(ln_age=17.114, ln_tc=0.940, ln_hdl=-18.920, age_hdl=4.475, ln_tsbp=29.291,
                                         age_tsbp=-6.432, ln_usbp=27.820, age_usbp=-6.087, smoker=0.691,
                                         diabetes=0.874, mean=86.61, s10=0.9533),
    ("white", "male"): dict(ln_age=12.344, ln_tc=11.853, age_tc=-2.664, ln_hdl=-7.990, age_hdl=1.769, ln_tsbp=1.797,
                            ln_usbp=1.764, smoker=7.837, age_smoker=-1.795, diabetes=0.658, mean=61.18, s10=0.9144),
    ("african_american", "male"): dict(ln_age=2.469, ln_tc=0.302, ln_hdl=-0.307, ln_tsbp=1.916, ln_usbp=1.809,
                                       smoker=0.549, diabetes=0.645, mean=19.54, s10=0.8954),
}


def pce_risk(age: float, female: bool, total_chol: float, hdl: float, sbp: float, bp_treated: bool,
             smoker: bool, diabetes: bool, race: str = "white") -> float:
    """10-year risk of a first hard ASCVD event (mg/dL, mmHg, years): 1 - S10 ** exp(IndSum - Mean)."""
    c = PCE[(race, "female" if female else "male")]
    a, tc, h, s = math.log(age), math.log(total_chol), math.log(hdl), math.log(sbp)
    ind = (c.get("ln_age", 0) * a + c.get("ln_age2", 0) * a * a + c.get("ln_tc", 0) * tc
           + c.get("age_tc", 0) * a * tc + c.get("ln_hdl", 0) * h + c.get("age_hdl", 0) * a * h
           + (c.get("smoker", 0) + c.get("age_smoker", 0) * a) * bool(smoker) + c.get("diabetes", 0) * bool(diabetes))
    if bp_treated:
        ind += c.get("ln_tsbp", 0) * s + c.get("age_tsbp", 0) * a * s
    else:
        ind += c.get("ln_usbp", 0) * s + c.get("age_usbp", 0) * a * s
    return 1.0 - c["s10"] ** math.exp(ind - c["mean"])


# ======================================================================================== MAGGIC score
# Pocock SJ et al. Eur Heart J 2013;34:1404-13; points and score -> mortality lookup as transcribed in
# docs/risk_equations.md, Appendix B.3-B.4 (agreeing sources [P], [R], [L]; listed in Appendix B.2).

MAGGIC_1Y = [0.015, 0.016, 0.018, 0.020, 0.022, 0.024, 0.027, 0.029, 0.032, 0.036, 0.039, 0.043, 0.048, 0.052,
             0.058, 0.063, 0.070, 0.077, 0.084, 0.093, 0.102, 0.111, 0.122, 0.134, 0.147, 0.160, 0.175, 0.191,
             0.209, 0.227, 0.248, 0.269, 0.292, 0.316, 0.342, 0.369, 0.398, 0.427, 0.458, 0.490, 0.523, 0.557,
             0.591, 0.625, 0.659, 0.692, 0.725, 0.757, 0.787, 0.816, 0.842]
MAGGIC_3Y = [0.039, 0.043, 0.048, 0.052, 0.058, 0.063, 0.070, 0.077, 0.084, 0.092, 0.102, 0.111, 0.122, 0.134,
             0.146, 0.160, 0.175, 0.191, 0.209, 0.227, 0.247, 0.269, 0.292, 0.316, 0.342, 0.369, 0.397, 0.427,
             0.458, 0.490, 0.523, 0.556, 0.590, 0.625, 0.658, 0.692, 0.725, 0.756, 0.787, 0.815, 0.842, 0.866,
             0.889, 0.908, 0.926, 0.941, 0.953, 0.964, 0.973, 0.980, 0.985]


def _band(value: float, lower_edges: list[float], points: list[int]) -> int:
    """points[k] for the band k whose lower edge is the largest edge <= value (edges increasing)."""
    return points[int(np.searchsorted(lower_edges, value, side="right"))]


def _ef_column(ef: float) -> int:
    return 0 if ef < 30 else (1 if ef < 40 else 2)


def maggic_points(age: float, female: bool, ef: float, nyha: str, creatinine_umol_l: float, bmi: float,
                  sbp: float, diabetes: bool, smoker: bool = False, copd: bool = False,
                  hf_duration_points: int = 0, beta_blocker: bool = True, acei_arb: bool = True) -> int:
    """The integer MAGGIC score. Creatinine, BMI and SBP are banded as integers (as reported by a lab).

    ``hf_duration_points``: 0 (the reference category) or 2; the sources conflict on which category of
    time since diagnosis (< or >= 18 months) carries the 2 points (see docs/risk_equations.md, Appendix B.8).
    """
    ef_pts = _band(ef, [20, 25, 30, 35, 40], [7, 6, 5, 3, 2, 0])
    nyha_pts = {"I": 0, "II": 2, "III": 6, "IV": 8}[nyha]
    creat = round(creatinine_umol_l)
    creat_pts = _band(creat, [90, 110, 130, 150, 170, 210, 250], [0, 1, 2, 3, 4, 5, 6, 8])
    bmi_pts = _band(round(bmi), [15, 20, 25, 30], [6, 5, 3, 2, 0])
    sbp_pts = _band(round(sbp), [110, 120, 130, 140, 150],
                    [[5, 4, 3, 2, 1, 0], [3, 2, 1, 1, 0, 0], [2, 1, 1, 0, 0, 0]][_ef_column(ef)])
    age_pts = _band(age, [55, 60, 65, 70, 75, 80],
                    [[0, 1, 2, 4, 6, 8, 10], [0, 2, 4, 6, 8, 10, 13], [0, 3, 5, 7, 9, 12, 15]][_ef_column(ef)])
    binary = ((not female) * 1 + bool(smoker) * 1 + bool(diabetes) * 3 + bool(copd) * 2 + int(hf_duration_points)
              + (not beta_blocker) * 3 + (not acei_arb) * 1)
    return int(ef_pts + nyha_pts + creat_pts + bmi_pts + sbp_pts + age_pts + binary)


def maggic_risk(score: int, years: int) -> float:
    """Probability of death within 1 or 3 years for an integer score 0-50."""
    table = {1: MAGGIC_1Y, 3: MAGGIC_3Y}[years]
    return table[int(min(max(score, 0), 50))]


def ckd_epi_2009(creatinine_mg_dl: float, age: float, female: bool) -> float:
    """eGFR (mL/min/1.73m2), CKD-EPI 2009 (Levey AS et al. Ann Intern Med 2009;150:604-12), non-Black."""
    k, alpha = (0.7, -0.329) if female else (0.9, -0.411)
    r = creatinine_mg_dl / k
    return 141.0 * min(r, 1.0) ** alpha * max(r, 1.0) ** -1.209 * 0.993**age * (1.018 if female else 1.0)


def creatinine_from_egfr(egfr: float, age: float, female: bool) -> float:
    """Serum creatinine (µmol/L) that gives this eGFR by CKD-EPI 2009 (non-Black): the inverse of the above."""
    k, alpha = (0.7, -0.329) if female else (0.9, -0.411)
    g = egfr / (141.0 * 0.993**age * (1.018 if female else 1.0))
    r = g ** (1.0 / alpha) if g >= 1.0 else g ** (-1.0 / 1.209)
    return r * k * 88.4


# ======================================================================================= SMART risk score
# Dorresteijn JAN et al. Heart 2013;99:866-72, recalibrated (Kaasenbrood L et al. Circulation 2016), with
# the antithrombotic-treatment adjustment of U-Prevent; as transcribed in docs/risk_equations.md, Appendix C.4
# (provenance in Appendix C.3).

SMART = dict(age=-0.0850, age2=0.00105, male=0.156, smoker=0.262, sbp=0.00429, diabetes=0.223, cad=0.140,
             cerebro=0.406, aaa=0.558, pad=0.283, years=0.0229, hdl=-0.426, tc=0.0959, egfr=-0.0532,
             egfr2=0.000306, ln_crp=0.139)


def smart_lp(age, female, smoker, sbp, diabetes, cad, cerebro, aaa, pad, years, hdl, tc, egfr, crp) -> float:
    c = SMART
    return (c["age"] * age + c["age2"] * age**2 + c["male"] * (not female) + c["smoker"] * bool(smoker)
            + c["sbp"] * sbp + c["diabetes"] * bool(diabetes) + c["cad"] * bool(cad) + c["cerebro"] * bool(cerebro)
            + c["aaa"] * bool(aaa) + c["pad"] * bool(pad) + c["years"] * years + c["hdl"] * hdl + c["tc"] * tc
            + c["egfr"] * egfr + c["egfr2"] * egfr**2 + c["ln_crp"] * math.log(crp))


def smart_risk(antithrombotic: bool = True, **inputs) -> float:
    """10-year risk of MI, stroke or vascular death (mmol/L, mg/L, mmHg, mL/min/1.73m2, years)."""
    x = smart_lp(**inputs)
    risk = 1.0 - 0.81066 ** math.exp(x + 2.099)
    if inputs["cerebro"]:
        risk = max(risk, 1.0 - 0.71840 ** math.exp(x + 1.933))
    if inputs["pad"]:
        risk = max(risk, 1.0 - 0.70594 ** math.exp(x + 1.400))
    if not antithrombotic:
        risk = 1.0 - (1.0 - risk) ** (1.0 / 0.81)
    return risk


# ================================================================================ (a) worked examples


@pytest.mark.parametrize("race, female, printed", [("white", True, 0.021), ("african_american", True, 0.030),
                                                   ("white", False, 0.053), ("african_american", False, 0.061)])
def test_pce_reproduces_the_guideline_worked_example(race, female, printed):
    """Guideline example: 55 years, TC 213, HDL-C 50 mg/dL, untreated SBP 120 mmHg, non-smoker, no diabetes.

    The guideline prints the risk to 0.1%; with exact logarithms the risks are 2.05 / 3.03 / 5.38 / 6.07%,
    so the tolerance is 0.1 percentage point. White men's 5.38 is not 5.3 by rounding alone: the third
    decimal of their Ln Age x Ln HDL-C coefficient (1.769 here, 1.767 in a secondary table) is unverified
    (docs/risk_equations.md, Appendix A.5-A.6).
    """
    risk = pce_risk(55, female, 213, 50, 120, bp_treated=False, smoker=False, diabetes=False, race=race)
    assert abs(risk - printed) <= 0.001 + 1e-12, (race, female, risk)


def test_pce_typo_in_the_secondary_table_would_fail_the_worked_example():
    """The JAHA reprint's 1.857 for white women's Ln untreated SBP gives 1.3%, not the guideline's 2.1%."""
    saved = PCE[("white", "female")]["ln_usbp"]
    try:
        PCE[("white", "female")]["ln_usbp"] = 1.857
        assert pce_risk(55, True, 213, 50, 120, False, False, False) < 0.015
    finally:
        PCE[("white", "female")]["ln_usbp"] = saved


def test_maggic_points_table_item_by_item():
    """No published worked example (a patient with a printed MAGGIC score) was in the stored material; this
    tallies one profile by hand from the published points table (docs/risk_equations.md, Appendix B.3) and checks
    band edges of every item."""
    # 72-year-old man, EF 25% (5), age 70-74 with EF < 30 (6), SBP 115 with EF < 30 (4), BMI 23 (3),
    # creatinine 140 µmol/L (3), NYHA III (6), male (1), diabetes (3), HF diagnosed >= 18 months ago (2),
    # non-smoker, no COPD, on a beta-blocker and an ACE inhibitor (0): 33 points.
    s = maggic_points(72, False, 25, "III", 140, 23, 115, diabetes=True, hf_duration_points=2)
    assert s == 33
    assert (maggic_risk(s, 1), maggic_risk(s, 3)) == (0.316, 0.625)
    # the reference profile: 50-year-old woman, EF >= 40, NYHA I, creatinine < 90, BMI >= 30, SBP >= 150 -> 0
    assert maggic_points(50, True, 45, "I", 80, 32, 160, diabetes=False) == 0
    base = dict(age=50, female=True, ef=45, nyha="I", creatinine_umol_l=80, bmi=32, sbp=160, diabetes=False)
    item = lambda **kw: maggic_points(**{**base, **kw})  # noqa: E731
    assert [item(ef=e) for e in (19, 20, 24, 25, 29, 30, 34, 35, 39, 40)] == [7, 6, 6, 5, 5, 3, 3, 2, 2, 0]
    assert [item(nyha=n) for n in ("I", "II", "III", "IV")] == [0, 2, 6, 8]
    assert [item(creatinine_umol_l=c) for c in (89, 90, 109, 110, 130, 150, 170, 209, 210, 249, 250)] == \
        [0, 1, 1, 2, 3, 4, 5, 5, 6, 6, 8]
    assert [item(bmi=b) for b in (14, 15, 19, 20, 24, 25, 29, 30)] == [6, 5, 5, 3, 3, 2, 2, 0]
    for ef, row in ((25, [5, 4, 3, 2, 1, 0]), (35, [3, 2, 1, 1, 0, 0]), (45, [2, 1, 1, 0, 0, 0])):
        ef_pts = item(ef=ef, sbp=160)
        assert [item(ef=ef, sbp=s) - ef_pts for s in (100, 115, 125, 135, 145, 155)] == row
    for ef, row in ((25, [0, 1, 2, 4, 6, 8, 10]), (35, [0, 2, 4, 6, 8, 10, 13]), (45, [0, 3, 5, 7, 9, 12, 15])):
        ef_pts = item(ef=ef, age=50)
        assert [item(ef=ef, age=a) - ef_pts for a in (54, 55, 60, 65, 70, 75, 80)] == row
    assert item(female=False) == 1 and item(smoker=True) == 1 and item(diabetes=True) == 3 and item(copd=True) == 2
    assert item(beta_blocker=False) == 3 and item(acei_arb=False) == 1 and item(hf_duration_points=2) == 2


def test_maggic_lookup_matches_the_published_anchors():
    """Lookup ends and a published pairing: PARADIGM-HF's median score 20 <-> 10.2% / 24.7%
    (docs/risk_equations.md, Appendix B.6; derived)."""
    assert len(MAGGIC_1Y) == len(MAGGIC_3Y) == 51
    assert (maggic_risk(0, 1), maggic_risk(0, 3), maggic_risk(50, 1), maggic_risk(50, 3)) == (0.015, 0.039, 0.842, 0.985)
    assert (maggic_risk(20, 1), maggic_risk(20, 3)) == (0.102, 0.247)
    assert np.all(np.diff(MAGGIC_1Y) > 0) and np.all(np.diff(MAGGIC_3Y) > 0)
    assert np.all(np.array(MAGGIC_3Y) > np.array(MAGGIC_1Y))


def test_creatinine_back_calculation_inverts_ckd_epi():
    for age in (45, 70, 86):
        for female in (False, True):
            for egfr in (30, 45, 60, 90, 120):
                creat = creatinine_from_egfr(egfr, age, female) / 88.4
                assert ckd_epi_2009(creat, age, female) == pytest.approx(egfr, rel=1e-10)
    # at Scr = kappa the eGFR is 141 x 0.993^age (x 1.018 for women)
    assert ckd_epi_2009(0.9, 60, False) == pytest.approx(141 * 0.993**60)


def test_smart_reproduces_the_worked_example_of_the_docs():
    """The worked example of docs/risk_equations.md, Appendix C.5 (hand arithmetic; no published worked example of
    the SMART score was in the stored material): x = -2.0910, 19.1%, 23.0% without antithrombotics, 15.9%
    for the woman variant. Printed to 0.1%, so the tolerance is 0.05 percentage point."""
    man = dict(age=63, female=False, smoker=False, sbp=135, diabetes=True, cad=True, cerebro=False, aaa=False,
               pad=False, years=10, hdl=1.1, tc=4.2, egfr=74, crp=2.0)
    assert smart_lp(**man) == pytest.approx(-2.0910, abs=5e-4)
    assert smart_risk(**man) == pytest.approx(0.191, abs=5e-4)
    assert smart_risk(antithrombotic=False, **man) == pytest.approx(0.230, abs=5e-4)
    woman = {**man, "female": True, "hdl": 1.3, "tc": 4.6}
    assert smart_lp(**woman) == pytest.approx(-2.2939, abs=5e-4)
    assert smart_risk(**woman) == pytest.approx(0.159, abs=5e-4)
    # disease-specific baselines take the larger risk
    assert smart_risk(**{**man, "cerebro": True}) > smart_risk(**man)


# ================================================================================ profiles and the twin


def _profiles(model: str) -> pd.DataFrame:
    """The twin's batch CSV joined with the equation-only inputs, by id; columns without units."""
    twin_csv = pd.read_csv(DATA / f"{model}_patients.csv", dtype={"nyha_class": str})
    twin_csv.columns = [c.split(" (")[0] for c in twin_csv.columns]
    extra = pd.read_csv(DATA / f"{model}_equation_inputs.csv")
    assert list(extra["id"]) == list(twin_csv["id"])
    return twin_csv.merge(extra, on="id").set_index("id")


def equation_risks(model: str) -> pd.DataFrame:
    """Equation risk per profile: columns ``risk`` (``risk_1y``, ``risk_3y`` for MAGGIC) and the score."""
    p = _profiles(model)
    out = pd.DataFrame(index=p.index)
    if model == "cvd":
        out["risk"] = [pce_risk(r.age, r.sex_female, r.total_chol_mg_dl, r.hdl_mg_dl, r.sbp_mmhg, r.bp_treated,
                                r.smoker, r.diabetes, r.race) for r in p.itertuples()]
    elif model == "hf":
        out["creatinine_umol_l"] = [creatinine_from_egfr(r.egfr_ml_min, r.age, r.sex_female) for r in p.itertuples()]
        out["score"] = [maggic_points(r.age, r.sex_female, r.lvef_pct, r.nyha_class, c, r.bmi_kg_m2, r.sbp_mmhg,
                                      r.diabetes, r.current_smoker, r.copd, r.hf_duration_points, r.beta_blocker,
                                      r.acei_arb) for r, c in zip(p.itertuples(), out["creatinine_umol_l"])]
        out["risk_1y"] = [maggic_risk(s, 1) for s in out["score"]]
        out["risk_3y"] = [maggic_risk(s, 3) for s in out["score"]]
    else:
        out["risk"] = [smart_risk(antithrombotic=r.antithrombotic, age=r.age, female=r.sex_female,
                                  smoker=r.current_smoker, sbp=r.sbp_mmhg, diabetes=True, cad=r.history_cad,
                                  cerebro=r.history_cerebrovascular, aaa=r.aaa, pad=r.pad,
                                  years=r.years_since_first_vascular_diagnosis, hdl=r.hdl_mmol_l,
                                  tc=r.total_chol_mmol_l, egfr=r.egfr_ml_min, crp=r.hscrp_mg_l)
                       for r in p.itertuples()]
    return out


# model -> (patients CSV, protocol, outcome, control option, horizons in years)
TWIN = {
    "cvd": (DATA / "cvd_patients.csv", DATA / "cvd_primary_options.yaml", "endpoint", "control", (10,)),
    "hf": (DATA / "hf_patients.csv", ROOT / "protocols" / "hf_outcomes.yaml", "all_cause_death", "control", (1, 3)),
    "t2d": (DATA / "t2d_patients.csv", DATA / "t2d_options.yaml", "endpoint", "placebo", (10,)),
}


@functools.lru_cache(maxsize=None)
def twin_risks(model: str, years: int, draws: int = DRAWS, seed: int = SEED, patients: str | None = None) -> pd.DataFrame:
    """Twin risk (mean, Monte Carlo SE) of the model's compared outcome by ``years``, control option
    (``patients``: another batch CSV of the same profiles, for a sensitivity analysis)."""
    from vctrial import api

    default, protocol, outcome, control, _ = TWIN[model]
    ds = api.twin(patients or default, protocol, horizon_years=years, draws=draws, seed=seed, keep_ids=True)
    r = ds["risk"].sel(option=control, outcome=outcome)
    return pd.DataFrame({"risk": r.sel(statistic="mean").values, "mc_se": r.sel(statistic="mc_se").values},
                        index=pd.Index(ds["patient"].values.astype(str), name="id"))


def _logit(p):
    p = np.asarray(p, np.float64)
    return np.log(p / (1 - p))


def agreement(twin: np.ndarray, twin_se: np.ndarray, eq: np.ndarray, boot: int = 2000) -> dict[str, float]:
    """Mean ratio, logit calibration slope and correlation, with Monte Carlo SEs (parametric bootstrap).

    Also, for the report: the ratio of the mean risks, the geometric mean ratio, and the slope and
    correlation on the risk scale (twin on equation).
    """
    def stats(t):
        lt, le = _logit(t), _logit(eq)
        return np.array([np.mean(t / eq), np.cov(le, lt)[0, 1] / np.var(le, ddof=1), np.corrcoef(le, lt)[0, 1],
                         np.mean(t) / np.mean(eq), np.exp(np.mean(np.log(t / eq))),
                         np.cov(eq, t)[0, 1] / np.var(eq, ddof=1), np.corrcoef(eq, t)[0, 1]])
    point = stats(twin)
    rng = np.random.default_rng(0)
    sims = np.array([stats(np.clip(twin + twin_se * rng.standard_normal(twin.shape), 1e-6, 1 - 1e-6))
                     for _ in range(boot)])
    se = sims.std(axis=0, ddof=1)
    names = ["mean_ratio", "slope", "correlation", "ratio_of_means", "geometric_mean_ratio", "slope_risk_scale",
             "correlation_risk_scale"]
    return {**dict(zip(names, point)), **{f"{n}_mc_se": s for n, s in zip(names, se)},
            "max_mc_se": float(np.max(twin_se)), "n": int(twin.shape[0])}


def comparison(model: str, years: int, eq: pd.DataFrame | None = None,
               tw: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-profile table (equation, twin, its MC SE, ratio) and the agreement statistics."""
    eq = equation_risks(model) if eq is None else eq
    tw = twin_risks(model, years) if tw is None else tw
    column = "risk" if model != "hf" else f"risk_{years}y"
    table = pd.DataFrame({"equation": eq[column], "twin": tw["risk"].reindex(eq.index),
                          "twin_mc_se": tw["mc_se"].reindex(eq.index)})
    if model == "hf":
        table.insert(0, "score", eq["score"])
    table["ratio"] = table["twin"] / table["equation"]
    return table, agreement(table["twin"].to_numpy(), table["twin_mc_se"].to_numpy(), table["equation"].to_numpy())


def test_profiles_are_consistent_and_span_the_cohorts():
    """20+ profiles per model; the twin CSV and the equation inputs describe the same patients."""
    cvd = _profiles("cvd")
    friedewald = (cvd["total_chol_mg_dl"] - cvd["hdl_mg_dl"] - cvd["triglycerides_mg_dl"] / 5) / 38.67
    np.testing.assert_allclose(cvd["ldl_mmol_l"], friedewald, atol=0.006)
    assert cvd["age"].between(40, 79).all() and cvd["total_chol_mg_dl"].between(130, 320).all()
    hf, t2d = _profiles("hf"), _profiles("t2d")
    for frame in (cvd, hf, t2d):
        assert len(frame) >= 20 and frame["sex_female"].sum() >= 6 and (1 - frame["sex_female"]).sum() >= 6
        assert frame["age"].max() - frame["age"].min() >= 30
    assert set(hf["nyha_class"]) == {"II", "III", "IV"} and hf["lvef_pct"].max() - hf["lvef_pct"].min() >= 20
    assert t2d["egfr_ml_min"].between(30, 150).all() and (t2d["prior_cvd"] == 1).all()


# ===================================================================== (b) agreement twin vs equation


def _check(model: str, years: int) -> None:
    _, a = comparison(model, years)
    assert RATIO_RANGE[0] <= a["mean_ratio"] <= RATIO_RANGE[1], a
    assert SLOPE_RANGE[0] <= a["slope"] <= SLOPE_RANGE[1], a


@pytest.mark.slow
def test_cvd_primary_agrees_with_the_pooled_cohort_equations():
    _check("cvd", 10)


@pytest.mark.slow
def test_hfref_agrees_with_maggic_at_1_year():
    _check("hf", 1)


@pytest.mark.slow
def test_hfref_agrees_with_maggic_at_3_years():
    _check("hf", 3)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "measured (seed 20260302, 20,000 draws): mean ratio twin/SMART 1.53 (MC SE 0.004) > 1.5, logit slope 0.73 "
    "(inside); the model (calibrated on 3.1 years of EMPA-REG OUTCOME placebo) gives 1.2-2.1x SMART's 10-year risk "
    "below age 72 and 0.9-1.2x at 73-80: a flatter age and eGFR gradient (age log-HR 0.041/y vs SMART's "
    "0.047/y at 63 rising to 0.07/y at 75; eGFR linear -0.01 vs SMART's U-shape) and a cumulative incidence with "
    "competing non-CV death against SMART's Cox 1 - S. Borderline: the ratio of mean risks is 1.32 and the mean "
    "ratio depends on SMART-only inputs the model lacks (1.39 with 15 years since first diagnosis, 1.69 with 5)"))
def test_t2d_agrees_with_the_smart_risk_score():
    _check("t2d", 10)


# ======================================================================================= report (script)


def _inside(a: dict) -> bool:
    return RATIO_RANGE[0] <= a["mean_ratio"] <= RATIO_RANGE[1] and SLOPE_RANGE[0] <= a["slope"] <= SLOPE_RANGE[1]


def _summary(a: dict) -> str:
    return (f"mean ratio twin/equation **{a['mean_ratio']:.2f}** (MC SE {a['mean_ratio_mc_se']:.3f}); "
            f"calibration slope (logit twin on logit equation) **{a['slope']:.2f}** (MC SE {a['slope_mc_se']:.3f}); "
            f"correlation of the logits **{a['correlation']:.3f}** (MC SE {a['correlation_mc_se']:.3f}). "
            f"Also: ratio of the mean risks {a['ratio_of_means']:.2f}, geometric mean ratio "
            f"{a['geometric_mean_ratio']:.2f}; risk scale, slope of twin on equation {a['slope_risk_scale']:.2f} and "
            f"correlation {a['correlation_risk_scale']:.3f}")


def _markdown(model: str, years: int, title: str) -> str:
    table, a = comparison(model, years)
    p = _profiles(model)
    lines = [f"#### {title}", ""]
    if model == "cvd":
        head = "| profile | age | sex | SBP | TC / HDL (mg/dL) | LDL (mmol/L) | diabetes | smoker | PCE | twin (MC SE) | ratio |"
        rows = [f"| {r.Index} | {r.age} | {'F' if r.sex_female else 'M'} | {r.sbp_mmhg} | {r.total_chol_mg_dl} / "
                f"{r.hdl_mg_dl} | {r.ldl_mmol_l:.2f} | {r.diabetes} | {r.smoker} |" for r in p.itertuples()]
    elif model == "hf":
        head = ("| profile | age | sex | NYHA | LVEF (%) | eGFR | creatinine (µmol/L) | diabetes | MAGGIC score | MAGGIC "
                "| twin (MC SE) | ratio |")
        eq = equation_risks("hf")
        rows = [f"| {r.Index} | {r.age} | {'F' if r.sex_female else 'M'} | {r.nyha_class} | {r.lvef_pct} | "
                f"{r.egfr_ml_min} | {eq.loc[r.Index, 'creatinine_umol_l']:.0f} | {r.diabetes} | "
                f"{eq.loc[r.Index, 'score']} |" for r in p.itertuples()]
    else:
        head = "| profile | age | sex | SBP | eGFR | HbA1c (%) | HDL / TC (mmol/L) | SMART | twin (MC SE) | ratio |"
        rows = [f"| {r.Index} | {r.age} | {'F' if r.sex_female else 'M'} | {r.sbp_mmhg} | {r.egfr_ml_min} | "
                f"{r.hba1c_pct} | {r.hdl_mmol_l} / {r.total_chol_mmol_l} |" for r in p.itertuples()]
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for row, t in zip(rows, table.itertuples()):
        lines.append(f"{row} {t.equation * 100:.1f}% | {t.twin * 100:.1f}% ({t.twin_mc_se * 100:.2f}) | {t.ratio:.2f} |")
    lines += ["", f"Summary ({a['n']} profiles): {_summary(a)}. Mean risk: equation {table['equation'].mean() * 100:.1f}%, "
              f"twin {table['twin'].mean() * 100:.1f}%; largest per-profile Monte Carlo SE {a['max_mc_se'] * 100:.2f} "
              f"percentage points. Tolerance (mean ratio in [{RATIO_RANGE[0]}, {RATIO_RANGE[1]}], slope in "
              f"[{SLOPE_RANGE[0]}, {SLOPE_RANGE[1]}]): {'inside' if _inside(a) else '**outside**'}.", ""]
    return "\n".join(lines)


def _sensitivity() -> str:
    """Summaries under other choices for what the model or the equation cannot share (not tested)."""
    import tempfile

    rows = ["| model | variant | mean ratio | slope (logit) | correlation (logit) | ratio of means |", "|---|---|---|---|---|---|"]

    def add(model, variant, a):
        rows.append(f"| {model} | {variant} | {a['mean_ratio']:.2f} | {a['slope']:.2f} | {a['correlation']:.3f} | "
                    f"{a['ratio_of_means']:.2f} |")

    add("cvd_primary", "as tested (white-race PCE)", comparison("cvd", 10)[1])
    eq = equation_risks("cvd")
    p = _profiles("cvd")
    eq["risk"] = [pce_risk(r.age, r.sex_female, r.total_chol_mg_dl, r.hdl_mg_dl, r.sbp_mmhg, r.bp_treated, r.smoker,
                           r.diabetes, "african_american") for r in p.itertuples()]
    add("cvd_primary", "African-American PCE on the same profiles", comparison("cvd", 10, eq=eq)[1])
    with tempfile.TemporaryDirectory() as tmp:
        frame = pd.read_csv(TWIN["hf"][0], dtype=str)
        frame["state"] = "post_hhf"
        frame["months_in_state (months)"] = "10"
        path = Path(tmp) / "hf_post_hhf.csv"
        frame.to_csv(path, index=False)
        for years in (1, 3):
            add("hfref", f"{years} y, as tested (never hospitalized for HF: state stable)", comparison("hf", years)[1])
            tw = twin_risks("hf", years, patients=str(path))
            add("hfref", f"{years} y, the same profiles 10 months after an HF hospitalization (post_hhf; the "
                "cohort's median time since one)", comparison("hf", years, tw=tw)[1])
    add("t2d", "as tested (SMART: non-smoker, CAD only, 10 years since first diagnosis, hs-CRP 2 mg/L)",
        comparison("t2d", 10)[1])
    p = _profiles("t2d")
    for label, change in (("5 years since first vascular diagnosis", {"years": 5}),
                          ("15 years since first vascular diagnosis", {"years": 15}),
                          ("hs-CRP 1 mg/L", {"crp": 1.0}), ("hs-CRP 4 mg/L", {"crp": 4.0}),
                          ("an ASSUMED 13% share of current smokers (risk averaged)", {"smoker_share": 0.13})):
        eq = equation_risks("t2d")
        risks = []
        for r in p.itertuples():
            inputs = dict(age=r.age, female=r.sex_female, smoker=r.current_smoker, sbp=r.sbp_mmhg, diabetes=True,
                          cad=r.history_cad, cerebro=r.history_cerebrovascular, aaa=r.aaa, pad=r.pad,
                          years=r.years_since_first_vascular_diagnosis, hdl=r.hdl_mmol_l, tc=r.total_chol_mmol_l,
                          egfr=r.egfr_ml_min, crp=r.hscrp_mg_l)
            share = change.get("smoker_share")
            inputs.update({k: v for k, v in change.items() if k != "smoker_share"})
            if share is None:
                risks.append(smart_risk(antithrombotic=r.antithrombotic, **inputs))
            else:
                risks.append((1 - share) * smart_risk(antithrombotic=r.antithrombotic, **{**inputs, "smoker": False})
                             + share * smart_risk(antithrombotic=r.antithrombotic, **{**inputs, "smoker": True}))
        eq["risk"] = risks
        add("t2d", f"SMART with {label}", comparison("t2d", 10, eq=eq)[1])
    return "\n".join(["#### Sensitivity (reported, not tested)", ""] + rows + [""])


if __name__ == "__main__":
    sections = [("cvd", 10, "diseases/cvd_primary.yaml vs the Pooled Cohort Equations (10-year hard ASCVD, white race)"),
                ("hf", 1, "diseases/hfref.yaml vs MAGGIC, 1-year all-cause mortality"),
                ("hf", 3, "diseases/hfref.yaml vs MAGGIC, 3-year all-cause mortality"),
                ("t2d", 10, "diseases/t2d.yaml vs the SMART risk score (10-year MI, stroke or vascular death)")]
    print(f"Twin: seed {SEED}, {DRAWS} draws per profile, control option.\n")
    for model, years, title in sections:
        print(_markdown(model, years, title))
    print(_sensitivity())
