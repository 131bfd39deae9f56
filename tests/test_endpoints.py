"""Binary and count endpoints, stratified and covariate-adjusted Cox analyses: the kernels against
statsmodels, lifelines and scipy; the simulated trials' per-replicate analyses against the same
references on the patient-level data; type I error at the null within its Monte Carlo interval; spec
errors naming the file and key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mc_helpers import assert_binomial
import statsmodels.api as sm
from lifelines import CoxPHFitter
from scipy import stats
from statsmodels.stats.contingency_tables import StratifiedTable, Table2x2
from statsmodels.stats.proportion import confint_proportions_2indep
from test_counts import statsmodels_lwyy

from vctrial.errors import SpecError
from vctrial.spec.protocol import covariate_columns, load_protocol
from vctrial.trial import binary, counts, endpoints
from vctrial.trial.observation import assigned
from vctrial.trial.run import simulate_chunk, simulate_patients
from vctrial.trial.stratified import cox_adjusted

ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = ROOT / "protocols"
RTOL = 1e-6


def _data(seed=1, R=3, n=300):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 2, (R, n))
    x = rng.normal(size=(R, n, 2))
    st = rng.integers(0, 3, (R, n))
    return rng, g, x, st


# ------------------------------------------------------------------------------ kernels


def test_cox_adjusted_matches_statsmodels_phreg_stratified_with_covariates():
    rng, g, x, st = _data()
    haz = np.exp(-0.4 * g + 0.5 * x[..., 0] + 0.3 * st)
    t, c = rng.exponential(1 / haz), rng.exponential(2.0, g.shape)
    time, event = np.minimum(t, c), t <= c
    inc = rng.random(g.shape) < 0.9
    fit = cox_adjusted(time, event, g, x, inc, st)
    for r in range(g.shape[0]):
        k = inc[r]
        ref = sm.PHReg(time[r][k], np.column_stack([g[r][k], x[r][k]]), status=event[r][k].astype(float),
                       strata=st[r][k], ties="breslow").fit()
        assert fit.converged[r]
        assert fit.log_hr[r] == pytest.approx(ref.params[0], rel=RTOL)
        assert fit.se[r] == pytest.approx(ref.bse[0], rel=RTOL)


def test_cox_adjusted_matches_lifelines_on_untied_times():
    """lifelines (Efron) equals Breslow when no event times tie."""
    rng, g, x, st = _data(seed=2, R=2, n=200)
    haz = np.exp(0.3 * g - 0.4 * x[..., 1])
    t, c = rng.exponential(1 / haz), rng.exponential(1.5, g.shape)
    time, event = np.minimum(t, c), t <= c
    fit = cox_adjusted(time, event, g, x, strata=st)
    for r in range(2):
        df = pd.DataFrame({"T": time[r], "E": event[r], "g": g[r], "x0": x[r, :, 0], "x1": x[r, :, 1], "s": st[r]})
        ref = CoxPHFitter().fit(df, "T", "E", strata=["s"], fit_options={"precision": 1e-12})
        assert fit.log_hr[r] == pytest.approx(ref.params_["g"], rel=1e-5)
        assert fit.se[r] == pytest.approx(ref.standard_errors_["g"], rel=1e-5)


def test_logistic_matches_statsmodels_logit_with_covariates_and_strata():
    rng, g, x, st = _data(seed=3)
    y = rng.random(g.shape) < 1 / (1 + np.exp(-(-0.5 + 0.6 * g + 0.4 * x[..., 0] - 0.3 * st)))
    fit = binary.logistic(y, g, x, strata=st)
    for r in range(g.shape[0]):
        X = np.column_stack([np.ones(g.shape[1]), g[r], x[r], st[r] == 1, st[r] == 2]).astype(float)
        ref = sm.Logit(y[r].astype(float), X).fit(disp=0, tol=1e-12)
        assert fit.converged[r]
        assert fit.log_or[r] == pytest.approx(ref.params[1], rel=RTOL)
        assert fit.se[r] == pytest.approx(ref.bse[1], rel=RTOL)


def test_logistic_and_cox_adjusted_equal_fits_without_excluded_patients_uniform_strata_constant_covariates():
    """The kernels build the design themselves: excluded patients (covariates NaN) are never read,
    a stratum without events and a covariate constant among the included drop out, labels are any
    integers; times rounded to 0.1, so many events tie (Breslow)."""
    rng, g, x, st = _data(seed=6, R=2)
    y = (rng.random(g.shape) < 0.4) & (st != 2)
    haz = np.exp(-0.4 * g + 0.5 * x[..., 0] + 0.3 * st)
    t, c = rng.exponential(1 / haz), rng.exponential(2.0, g.shape)
    time, event = np.round(np.minimum(t, c), 1), t <= c
    inc = rng.random(g.shape) < 0.9
    x[..., 1] = 1.5
    x[~inc] = np.nan
    labels = 7 * st - 3
    lf = binary.logistic(y, g, x, inc, labels)
    cf = cox_adjusted(time, event, g, x, inc, labels)
    for r in range(2):
        k = inc[r] & (st[r] != 2)
        X = np.column_stack([np.ones(k.sum()), g[r][k], x[r][k, 0], st[r][k] == 1]).astype(float)
        ref = sm.Logit(y[r][k].astype(float), X).fit(disp=0, tol=1e-12)
        assert lf.log_or[r] == pytest.approx(ref.params[1], rel=RTOL)
        assert lf.se[r] == pytest.approx(ref.bse[1], rel=RTOL)
        k = inc[r]
        ref = sm.PHReg(time[r][k], np.column_stack([g[r][k], x[r][k, 0]]), status=event[r][k].astype(float),
                       strata=st[r][k], ties="breslow").fit()
        assert cf.log_hr[r] == pytest.approx(ref.params[0], rel=RTOL)
        assert cf.se[r] == pytest.approx(ref.bse[0], rel=RTOL)
    x[~inc] = 0.0
    x[0, np.flatnonzero(inc[0])[0], 0] = np.inf
    for fit in (lambda: binary.logistic(y, g, x, inc, st), lambda: cox_adjusted(time, event, g, x, inc, st)):
        with pytest.raises(ValueError, match="covariates: must be finite for included patients"):
            fit()


def test_cox_adjusted_without_a_maximum_gives_nan():
    """A small stratified replicate whose partial likelihood keeps rising (statsmodels' PHReg runs past
    |beta| = 150): not converged, NaN. The risk-set sums are scaled by the largest linear predictor of
    each risk set, so they cannot underflow to 0 on the way (an earlier kernel's could: it reported a
    converged fit with meaningless values here, and divided by zero on similar replicates)."""
    time = np.array([[2, 9, 5, 2, 7, 4, 7, 46, 129, 19, 44, 0, 32, 47]], float)
    event = np.array([[0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0]], bool)
    g = np.array([[1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 1, 1]])
    age = [0.1145438422433483, 0.6814264937421466, -1.5818917878888374, 1.0412905935790173, 1.7732342831364063,
           -0.2980393261831532, 1.67165089983231, -2.4575071160392836, -0.7178052186236229, -0.8706380382958325,
           0.5264952217977313, -0.40491200976310326, 0.3772776321803109, 0.38566827107514656]
    prior = [0, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0]
    st = np.array([[2, 1, 3, 2, 1, 3, 2, 0, 0, 1, 0, 1, 2, 0]])
    fit = cox_adjusted(time, event, g, np.stack([age, prior], axis=1)[None], strata=st)
    assert not fit.converged[0] and np.isnan(fit.log_hr[0]) and np.isnan(fit.se[0])


def test_chi_square_matches_scipy_pearson_without_correction():
    rng, g, _, _ = _data(seed=4)
    y = rng.random(g.shape) < np.where(g == 1, 0.3, 0.4)
    z = binary.chi_square(y, g)
    for r in range(g.shape[0]):
        table = [[np.sum((g[r] == a) & (y[r] == o)) for o in (0, 1)] for a in (0, 1)]
        chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
        assert z[r] ** 2 == pytest.approx(chi2, rel=1e-10)
        assert 2 * stats.norm.sf(abs(z[r])) == pytest.approx(p, rel=1e-8)
        assert np.sign(z[r]) == np.sign(y[r][g[r] == 1].mean() - y[r][g[r] == 0].mean())


def _strat_tables(y, g, st):
    # statsmodels: rows = arm (active first), columns = outcome (event first)
    return [np.array([[np.sum((g == a) & (y == o) & (st == k)) for o in (1, 0)] for a in (1, 0)], float)
            for k in np.unique(st)]


def test_cmh_and_mantel_haenszel_odds_and_risk_ratios_match_statsmodels():
    rng, g, _, st = _data(seed=5)
    y = rng.random(g.shape) < 0.2 + 0.1 * st - 0.05 * g
    z = binary.cmh(y, g, st)
    orr = binary.risk_effect(y, g, "odds_ratio", strata=st)
    rr = binary.risk_effect(y, g, "risk_ratio", strata=st)
    for r in range(g.shape[0]):
        ref = StratifiedTable(_strat_tables(y[r], g[r], st[r]))
        test = ref.test_null_odds(correction=False)
        assert z[r] ** 2 == pytest.approx(test.statistic, rel=1e-10)
        assert orr.estimate[r] == pytest.approx(ref.oddsratio_pooled, rel=1e-10)
        assert np.log(orr.estimate[r]) == pytest.approx(ref.logodds_pooled, rel=1e-10)
        assert orr.se[r] == pytest.approx(ref.logodds_pooled_se, rel=1e-10)
        lo, hi = ref.oddsratio_pooled_confint()
        assert (orr.lower[r], orr.upper[r]) == pytest.approx((lo, hi), rel=1e-8)
        assert rr.estimate[r] == pytest.approx(ref.riskratio_pooled, rel=1e-10)


def test_mantel_haenszel_risk_difference_and_risk_ratio_variances_match_plain_formulas():
    """Greenland-Robins (1985) variances, transcribed stratum by stratum."""
    rng, g, _, st = _data(seed=6, R=2)
    y = rng.random(g.shape) < 0.25 + 0.1 * st
    rd = binary.risk_effect(y, g, "risk_difference", strata=st)
    rr = binary.risk_effect(y, g, "risk_ratio", strata=st)
    for r in range(2):
        num = den = var = 0.0
        rn = sn = vr = 0.0
        for k in np.unique(st[r]):
            m = st[r] == k
            a, n1 = y[r][m & (g[r] == 1)].sum(), (m & (g[r] == 1)).sum()
            c, n0 = y[r][m & (g[r] == 0)].sum(), (m & (g[r] == 0)).sum()
            N = n1 + n0
            w = n1 * n0 / N
            p1, p0 = a / n1, c / n0
            num += w * (p1 - p0)
            den += w
            var += w * w * (p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
            rn += a * n0 / N
            sn += c * n1 / N
            vr += (n1 * n0 * (a + c) - a * c * N) / N**2
        assert rd.estimate[r] == pytest.approx(num / den, rel=1e-12)
        assert rd.se[r] == pytest.approx(np.sqrt(var) / den, rel=1e-12)
        assert rr.se[r] == pytest.approx(np.sqrt(vr / (rn * sn)), rel=1e-12)


def test_crude_measures_match_statsmodels():
    rng, g, _, _ = _data(seed=7)
    y = rng.random(g.shape) < np.where(g == 1, 0.25, 0.35)
    effects = {m: binary.risk_effect(y, g, m, level=0.9) for m in binary.MEASURES}
    for r in range(g.shape[0]):
        t = Table2x2(_strat_tables(y[r], g[r], np.zeros_like(g[r]))[0])
        assert effects["risk_ratio"].estimate[r] == pytest.approx(t.riskratio, rel=1e-10)
        assert effects["risk_ratio"].se[r] == pytest.approx(t.log_riskratio_se, rel=1e-10)
        assert effects["odds_ratio"].estimate[r] == pytest.approx(t.oddsratio, rel=1e-10)
        assert effects["odds_ratio"].se[r] == pytest.approx(t.log_oddsratio_se, rel=1e-10)
        a, n1 = y[r][g[r] == 1].sum(), (g[r] == 1).sum()
        c, n0 = y[r][g[r] == 0].sum(), (g[r] == 0).sum()
        lo, hi = confint_proportions_2indep(a, n1, c, n0, method="wald", compare="diff", alpha=0.1)
        assert effects["risk_difference"].estimate[r] == pytest.approx(a / n1 - c / n0, rel=1e-12)
        assert (effects["risk_difference"].lower[r], effects["risk_difference"].upper[r]) == pytest.approx((lo, hi), rel=1e-9)


def test_binary_degenerate_replicates_give_nan():
    g = np.array([[0, 0, 1, 1], [0, 0, 0, 0]])
    y = np.array([[0, 0, 0, 0], [1, 0, 1, 0]])
    assert np.isnan(binary.chi_square(y, g)).all()
    assert np.isnan(binary.risk_effect(y, g, "odds_ratio").estimate).all()
    fit = binary.logistic(y, g)
    assert not fit.converged.any() and np.isnan(fit.log_or).all()


# ------------------------------------------------------------------------------ simulated trials


def _statsmodels_nb(y, exposure, group):
    """statsmodels NB2 by Newton-Raphson from the Poisson fit and alpha = 1 (its default start can stop
    at alpha -> 0, where its log-likelihood loses all precision, on these very over-dispersed counts)."""
    x = sm.add_constant(group, has_constant="add")
    poisson = sm.Poisson(y, x, exposure=exposure).fit(disp=0)
    model = sm.NegativeBinomial(y, x, loglike_method="nb2", exposure=exposure)
    return model.fit(start_params=np.r_[poisson.params, 1.0], method="newton", maxiter=200, tol=1e-12, disp=0)


def _protocol(name, **overrides):
    return load_protocol(PROTOCOLS / name, overrides=overrides or None)


def test_count_endpoint_negbin_and_lwyy_match_statsmodels_on_simulated_trials():
    reps = np.arange(3)
    for method in ("negative_binomial", "lwyy"):
        p = _protocol("hf_total_hospitalizations.yaml", sample_size=600, **{"analysis.method": method})
        out = simulate_chunk(p, 11, reps)
        trial, _, _ = simulate_patients(p, 11, reps)
        follow = np.minimum(np.minimum(trial.dropout, assigned(trial.paths.death_time, trial.arm)), 24.0)
        times = np.take_along_axis(trial.paths.event_times, trial.arm[..., None, None].astype(int), axis=2)[:, :, 0]
        y = counts.event_counts(times, follow)
        assert out["n_events"].sum() == y.sum() > 0
        for r in range(3):
            g = trial.arm[r].astype(float)
            if method == "negative_binomial":
                ref = _statsmodels_nb(y[r], follow[r] / 12.0, g)
                b, se = ref.params[1], ref.bse[1]
                assert out["dispersion"][r] == pytest.approx(ref.params[2], rel=1e-3)
            else:
                b, se = statsmodels_lwyy(times[r], follow[r], trial.arm[r])
            assert np.log(out["estimate"][r]) == pytest.approx(b, rel=1e-4, abs=1e-6)
            assert out["statistic"][r] == pytest.approx(b / se, rel=1e-3)
            assert out["p_value"][r] == pytest.approx(stats.norm.cdf(b / se), rel=1e-3, abs=1e-8)


def test_count_truth_is_the_counterfactual_rate_ratio_and_the_events_can_recur():
    p = _protocol("hf_total_hospitalizations.yaml", sample_size=800)
    out = simulate_chunk(p, 5, np.arange(2))
    trial, _, _ = simulate_patients(p, 5, np.arange(2))
    n_rec = np.isfinite(trial.paths.event_times).sum(axis=3)
    assert n_rec.max() >= 2  # repeat hospitalizations are kept
    assert np.all((out["true_effect"] > 0.6) & (out["true_effect"] < 0.9))  # HR 0.75 on both HF transitions


def test_binary_cmh_and_logistic_match_statsmodels_on_simulated_trials():
    reps = np.arange(3)
    p = _protocol("hf_event_by_12_months.yaml", sample_size=900)
    out = simulate_chunk(p, 21, reps)
    trial, _, _ = simulate_patients(p, 21, reps)
    names = list(p.disease.event_names)
    codes = [names.index(e) for e in p.spec.endpoint.events]
    t_ev = assigned(trial.paths.first_time[..., codes].min(axis=3), trial.arm)
    lost = np.minimum(trial.dropout, assigned(trial.paths.death_time, trial.arm))
    y = t_ev <= 12.0
    inc = trial.enrolled & (y | (lost > 12.0))
    for r in range(3):
        k = inc[r]
        ref = StratifiedTable(_strat_tables(y[r][k], trial.arm[r][k], trial.strata[r][k]))
        chi2 = ref.test_null_odds(correction=False).statistic
        assert out["statistic"][r] ** 2 == pytest.approx(chi2, rel=1e-9)
        assert out["estimate"][r] == pytest.approx(ref.riskratio_pooled, rel=1e-10)
        assert out["n_analysed"][r].sum() == k.sum()
    # logistic regression with covariates on the same patients
    p = _protocol("hf_event_by_12_months.yaml", sample_size=900, **{"analysis.method": "logistic",
                  "analysis.measure": "odds_ratio", "analysis.covariates": ["age", "lvef_pct"]})
    out = simulate_chunk(p, 21, reps)
    trial, cohort, _ = simulate_patients(p, 21, reps)
    for r in range(3):
        k = inc[r]
        X = np.column_stack([np.ones(k.sum()), trial.arm[r][k], trial.covariates[r][k]])
        ref = sm.Logit(y[r][k].astype(float), X).fit(disp=0, tol=1e-12)
        assert np.log(out["estimate"][r]) == pytest.approx(ref.params[1], rel=1e-6)
        assert out["p_value"][r] == pytest.approx(stats.norm.cdf(ref.params[1] / ref.bse[1]), rel=1e-5)


def test_binary_responder_endpoint_matches_statsmodels_logit():
    reps = np.arange(2)
    p = _protocol("t2d_hba1c_responder.yaml", sample_size=300)
    out = simulate_chunk(p, 3, reps)
    assert np.all(out["n_analysed"].sum(axis=1) < 300)  # dropout before the visit leaves patients out
    assert np.all(out["estimate"] > 1.0) or np.mean(out["estimate"] > 1.0) >= 0.5  # the shift lowers HbA1c
    assert np.all((out["outcome_proportion"] > 0) & (out["outcome_proportion"] < 1))
    assert np.all(out["true_effect"] > 1.0)


def test_stratified_and_adjusted_cox_analyses_match_lifelines_on_simulated_trials():
    reps = np.arange(2)
    p = _protocol("hf_stratified.yaml", sample_size=1000, **{"follow_up.target_events": 200})
    out = simulate_chunk(p, 8, reps)
    trial, _, _ = simulate_patients(p, 8, reps)
    from vctrial.trial.run import _cut_data, endpoint_data, look_dates

    _, t_ep, t_loss = endpoint_data(trial, list(p.spec.endpoint.events))
    date = look_dates(trial, t_ep, t_loss)[:, 0]
    time, event, include = _cut_data(trial, t_ep, t_loss, date)
    for r in range(2):
        k = include[r]
        df = pd.DataFrame({"T": time[r][k], "E": event[r][k], "arm": trial.arm[r][k], "s": trial.strata[r][k]})
        for j, name in enumerate(covariate_columns(p.spec, p.cohort)):
            df[name] = trial.covariates[r][k][:, j]
        ref = CoxPHFitter().fit(df, "T", "E", strata=["s"], fit_options={"precision": 1e-12})
        assert np.log(out["estimate"][r]) == pytest.approx(ref.params_["arm"], rel=1e-5)
        assert out["statistic"][r] == pytest.approx(ref.params_["arm"] / ref.standard_errors_["arm"], rel=1e-5)


# ------------------------------------------------------------------------------ type I error


def _type_one(name, reps, **overrides):
    p = _protocol(name, **{"arms.active.effects": [], **overrides})
    assert p.is_null
    out = simulate_chunk(p, 2024, np.arange(reps))
    return out, p.spec.analysis.alpha


@pytest.mark.parametrize("name, overrides", [
    ("hf_total_hospitalizations.yaml", {"analysis.method": "negative_binomial"}),
    ("hf_total_hospitalizations.yaml", {"analysis.method": "lwyy"}),
    ("hf_event_by_12_months.yaml", {}),
    ("hf_event_by_12_months.yaml", {"analysis.method": "chi_square", "analysis.measure": "risk_difference"}),
    ("hf_event_by_12_months.yaml", {"analysis.method": "logistic", "analysis.measure": "odds_ratio",
                                    "analysis.stratified": True, "analysis.covariates": ["age"]}),
    ("hf_stratified.yaml", {"follow_up.target_events": 120}),
    ("hf_stratified.yaml", {"follow_up.target_events": 120, "analysis.method": "logrank",
                            "analysis.covariates": []}),
], ids=["negbin", "lwyy", "cmh", "chi-square", "logistic", "cox-adjusted-stratified", "stratified-logrank"])
def test_type_one_error_at_the_null_within_its_monte_carlo_interval(name, overrides):
    """400 null trials at alpha 0.05 two-sided: significant results in either direction (reject or harm)
    at rate alpha, and favourable ones (reject) at alpha / 2, each inside its exact binomial region."""
    reps = 400
    out, alpha = _type_one(name, reps, sample_size=400, **{"analysis.alpha": 0.05, "analysis.sided": "two",
                                                            **overrides})
    reject, harm = out["reject"].astype(bool), out["harm"].astype(bool)
    assert not (reject & harm).any()
    assert_binomial(int((reject | harm).sum()), reps, alpha, what=f"{name}: either direction")
    assert_binomial(int(reject.sum()), reps, alpha / 2, what=f"{name}: favourable direction")


# ------------------------------------------------------------------------------ spec errors


def _write(tmp_path, name, edit):
    import yaml

    data = yaml.safe_load((PROTOCOLS / name).read_text())
    data["cohort"] = str(PROTOCOLS / data["cohort"])
    data["disease"] = str(PROTOCOLS / data["disease"])
    edit(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name, edit, key, words", [
    ("hf_total_hospitalizations.yaml", lambda d: d["endpoint"].update(events=["cv_death"]), "endpoint.events",
     "more than once"),
    ("hf_total_hospitalizations.yaml", lambda d: d["endpoint"].update(events=["hhf", "hospital"]),
     "endpoint.events[1]", "unknown event"),
    ("hf_total_hospitalizations.yaml", lambda d: d["analysis"].update(method="logrank"), "analysis.method",
     "negative_binomial, lwyy"),
    ("hf_total_hospitalizations.yaml", lambda d: (d.update(looks={"information_fractions": [0.5, 1.0]}),
                                                  d["analysis"].update(sided="two")), "analysis.sided",
     "one-sided"),
    ("t2d_hba1c_responder.yaml", lambda d: d["endpoint"].update(biomarker="ldl"), "endpoint.biomarker",
     "unknown biomarker"),
    ("t2d_hba1c_responder.yaml", lambda d: d["analysis"].update(measure="risk_ratio"), "analysis.measure",
     "odds_ratio"),
    ("t2d_hba1c_responder.yaml", lambda d: d["analysis"].update(covariates=["weight"]), "analysis.covariates[0]",
     "no covariate"),
    ("t2d_hba1c_responder.yaml", lambda d: d["endpoint"].update(above=6.0), "endpoint", "below or above"),
    ("t2d_hba1c_responder.yaml", lambda d: d["analysis"].update(method="chi_square", covariates=[]),
     None, None),
    ("hf_event_by_12_months.yaml", lambda d: d["randomization"].pop("strata"), "analysis.method",
     "randomization strata"),
    ("hf_event_by_12_months.yaml", lambda d: d["endpoint"].update(by_month=18), "endpoint.by_month",
     "after the end of follow-up"),
    ("hf_stratified.yaml", lambda d: d["analysis"].update(method="rmst", tau_months=12, covariates=[]),
     "analysis.stratified", "no stratified form"),
    ("hf_stratified.yaml", lambda d: d["analysis"].update(method="logrank"), "analysis.covariates",
     "does not adjust"),
], ids=["count-absorbing", "count-unknown", "count-method", "count-looks-two-sided", "responder-biomarker",
        "logistic-measure", "unknown-covariate", "two-thresholds", "chi-square-ok", "cmh-no-strata",
        "binary-after-follow-up", "rmst-stratified", "logrank-covariates"])
def test_bad_endpoint_or_analysis_is_a_spec_error_with_file_and_key(tmp_path, name, edit, key, words):
    path = _write(tmp_path, name, edit)
    if key is None:
        load_protocol(path)
        return
    with pytest.raises(SpecError) as err:
        load_protocol(path)
    msg = str(err.value)
    assert str(path) in msg and key in msg and words in msg, msg


def test_a_categorical_covariate_enters_as_its_possible_levels_but_the_first():
    p = _protocol("hf_event_by_12_months.yaml", **{"analysis.method": "logistic", "analysis.measure": "odds_ratio",
                                                   "analysis.covariates": ["age", "nyha_class"]})
    assert covariate_columns(p.spec, p.cohort) == ["age", "nyha_class[III]", "nyha_class[IV]"]  # class I: p = 0


def test_recorded_events_only_for_count_endpoints():
    mask, slots = endpoints.recorded_events(_protocol("hf_total_hospitalizations.yaml"))
    assert mask.sum() == 2 and slots == 24
    assert endpoints.recorded_events(_protocol("hf_event_by_12_months.yaml")) == (None, 0)


# --------------------------------------------------------------------------------------------
# Binary endpoints with looks (group-sequential).
# --------------------------------------------------------------------------------------------


def _binary_looks(hr: float, **extra):
    """The exponential test trial, event by month 12, chi-square, looks at half and all of the patients
    assessed."""
    return load_protocol(Path(__file__).parent / "data" / "event_driven.yaml", {
        "follow_up": {"type": "fixed", "duration_months": 12},
        "endpoint": {"type": "binary", "events": ["event"], "by_month": 12},
        "analysis": {"method": "chi_square", "alpha": 0.025, "sided": "one"},
        "looks": {"information_fractions": [0.5, 1.0]},
        "arms.active.effects.0.hazard_ratio": hr, **extra})


def test_binary_looks_analyse_the_patients_assessed_by_each_look():
    from scipy.stats import chi2_contingency

    protocol = _binary_looks(0.7, sample_size=800)
    seed, reps = 4, np.arange(6)
    out = simulate_chunk(protocol, seed, reps)
    trial, _, _ = simulate_patients(protocol, seed, reps)
    y = np.take_along_axis(trial.paths.first_time[..., 0] <= 12.0, trial.arm[..., None].astype(np.int64), 2)[..., 0]
    for r in range(len(reps)):
        date = out["look_date_months"][r, 0]
        seen = trial.enrolled[r] & (trial.entry[r] + 12.0 <= date)
        assert seen.sum() == pytest.approx(0.5 * 800, abs=1)  # half the patients assessed at look 1
        a = trial.arm[r][seen] == 1
        table = [[(y[r][seen] & a).sum(), (~y[r][seen] & a).sum()], [(y[r][seen] & ~a).sum(), (~y[r][seen] & ~a).sum()]]
        chi2 = chi2_contingency(table, correction=False)[0]
        fewer = table[0][0] / a.sum() < table[1][0] / (~a).sum()  # fewer events on the active arm: benefit
        assert out["look_z"][r, 0] == pytest.approx(np.sqrt(chi2) * (1 if fewer else -1), rel=1e-9)
        assert out["look_information"][r, 0] == seen.sum()
        assert out["look_fraction"][r, 0] == pytest.approx(seen.sum() / 800)


@pytest.mark.slow
def test_binary_looks_type_one_error_at_the_null():
    from vctrial import api

    n = 3000
    ds = api.run(_binary_looks(1.0, sample_size=600), replicates=n, seed=2026, progress=False)
    assert_binomial(int(ds["reject"].values.sum()), n, 0.025, what="binary group-sequential type I error")
    assert (ds["stop_look"].values == 1).any()


# --------------------------------------------------------------------------------------------
# Count endpoints with looks: partial follow-up at calendar cuts.
# --------------------------------------------------------------------------------------------


def test_count_looks_analyse_the_follow_up_accrued_by_each_look():
    p = _protocol("hf_total_hospitalizations.yaml", sample_size=600,
                  looks={"information_fractions": [0.4, 1.0]}, **{"analysis.method": "lwyy"})
    reps = np.arange(3)
    out = simulate_chunk(p, 13, reps)
    trial, _, _ = simulate_patients(p, 13, reps)
    follow = np.where(trial.enrolled, np.minimum(np.minimum(trial.dropout, assigned(trial.paths.death_time, trial.arm)),
                                                 24.0), 0.0)
    times = np.take_along_axis(trial.paths.event_times, trial.arm[..., None, None].astype(int), axis=2)[:, :, 0]
    for r in range(3):
        date = out["look_date_months"][r, 0]
        partial = np.clip(date - trial.entry[r], 0.0, follow[r])
        # the look is where the accrued follow-up reaches 40% of 600 patients x 24 months
        assert partial.sum() == pytest.approx(0.4 * 600 * 24, rel=1e-9)
        assert out["look_information"][r, 0] == pytest.approx(partial.sum() / 12.0)
        seen = partial > 0
        b, se = statsmodels_lwyy(times[r][seen], partial[seen], trial.arm[r][seen])
        assert out["look_z"][r, 0] == pytest.approx(-b / se, rel=1e-3)  # benefit positive
    assert out["look_fraction"][:, 1].max() < 1.0  # deaths and dropouts: less than the planned follow-up


@pytest.mark.slow
def test_count_looks_type_one_error_at_the_null():
    from vctrial import api

    n = 2000
    p = _protocol("hf_total_hospitalizations.yaml", sample_size=400, looks={"information_fractions": [0.5, 1.0]},
                  **{"analysis.method": "negative_binomial", "arms.active.effects": []})
    ds = api.run(p, replicates=n, seed=31, progress=False)
    assert ds["look_information"].attrs["units"] == "patient-years"
    assert_binomial(int(ds["reject"].values.sum()), n, 0.025, what="count group-sequential type I error")
