"""Trial design depth: stratified randomization, sites, conduct, time-varying effects, NPH analyses,
group-sequential trials, comparisons and sweeps, each against an independent reference."""

import math
from pathlib import Path

import mesa
import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import restricted_mean_survival_time
from scipy import stats

from vctrial import rng
from vctrial.disease import multistate
from vctrial.errors import SpecError
from vctrial.execute import ExecOptions
from vctrial.results import point, summarize
from vctrial.spec.protocol import Enrollment, load_protocol
from vctrial.trial import conduct, design, nph, randomization, sites
from vctrial.trial import sequential as sq
from vctrial.trial.dataset import run_trial
from vctrial.trial.run import hazard_ratios, n_steps, simulate_chunk

from mc_helpers import assert_binomial

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
LOCAL = ExecOptions(workers=0, progress=False)


# --------------------------------------------------------------------------------------------
# Randomization.
# --------------------------------------------------------------------------------------------


def reference_stratified(strata, sizes, weights, seed, replicate):
    """Plain-Python permuted blocks per stratum, from the same counter-based draws."""
    key = np.uint64(rng.stream_key(np.uint64(seed), np.uint64(rng.stream_id("randomization:blocks")),
                                   np.int64(replicate)))
    total = sum(weights)
    state = {}
    out = []
    for g in strata:
        blk, pos, count = state.get(g, ([], 0, 0))
        if pos == len(blk):
            bkey = np.uint64(g) * np.uint64(2**32) + np.uint64(count)
            b = sizes[min(int(rng.uniform(key, bkey, 0) * len(sizes)), len(sizes) - 1)]
            template = [a for a, w in enumerate(weights) for _ in range(w * (b // total))]
            keys = [rng.uniform(key, bkey, j + 1) for j in range(b)]
            blk, pos, count = [template[j] for j in np.argsort(keys)], 0, count + 1
        out.append(blk[pos])
        state[g] = (blk, pos + 1, count)
    return np.array(out)


def test_stratified_blocks_match_a_plain_python_reference():
    codes = np.random.default_rng(3).integers(0, 4, (2, 300))
    got = randomization.allocate(300, [2, 1], "permuted_block", 3, 9, np.array([5, 6]), block_sizes=[3, 6, 9],
                                 strata=codes)
    for r, rep in enumerate((5, 6)):
        np.testing.assert_array_equal(got[r], reference_stratified(codes[r], [3, 6, 9], [2, 1], 9, rep))


@pytest.mark.parametrize("weights, sizes", [([1, 1], [4, 6]), ([2, 1], [3, 6]), ([1, 3], [8])])
def test_stratified_randomization_keeps_every_stratum_balanced_within_block_size(weights, sizes):
    R, n = 40, 2000
    codes = np.random.default_rng(1).integers(0, 12, (R, n))
    arm = randomization.allocate(n, weights, "permuted_block", sizes[0], 4, np.arange(R), block_sizes=sizes,
                                 strata=codes)
    share = weights[1] / sum(weights)
    # an incomplete block of size B holds c = share*B active patients: the worst deviation is
    # B*share*(1 - share), whatever the number of patients in the stratum
    bound = max(sizes) * share * (1 - share)
    worst = randomization.strata_balance(arm, codes, weights)
    assert np.all(worst <= bound + 1e-9), (worst.max(), bound)
    # ... while simple randomization drifts by about sqrt(m) in strata of m patients
    simple = randomization.allocate(n, weights, "simple", sizes[0], 4, np.arange(R))
    assert randomization.strata_balance(simple, codes, weights).mean() > 2 * bound
    # every block size is used, in proportion
    assert abs((arm == 1).mean() - share) < 0.01


# --------------------------------------------------------------------------------------------
# Sites (Mesa).
# --------------------------------------------------------------------------------------------


def site_enrollment(**group):
    base = {"name": "g", "count": 30, "screening_rate_per_month": 2.0}
    base.update(group)
    return Enrollment(sites=[base], calendar_step_months=0.5, max_duration_months=60)


def test_site_model_is_a_mesa_model_with_one_agent_per_site_and_respects_caps_and_opening():
    enr = Enrollment(sites=[{"name": "a", "region": "eu", "count": 12, "activation_months": [2, 6],
                             "screening_rate_per_month": 3.0, "rate_cv": 0.8, "cap": 25},
                            {"name": "b", "count": 8, "screening_rate_per_month": 1.0}], max_duration_months=100)
    n, R = 300, 6
    n_screened = np.full(R, 420)
    model = sites.EnrollmentModel(enr, n, n_screened, 7, np.arange(R))
    assert isinstance(model, mesa.Model) and len(model.agents) == 20
    assert all(isinstance(a, mesa.Agent) for a in model.agents)
    while model.running:
        model.step()
    res = model.result()
    assert np.all(np.isfinite(res.entry)) and np.all(np.diff(res.entry, axis=1) >= 0)
    assert np.all(res.randomized.sum(axis=1) == n) and np.all(res.screened.sum(axis=1) == 420)
    assert res.randomized[:, :12].max() <= 25
    opened = np.take_along_axis(res.opened, res.site.astype(np.int64), axis=1)
    assert np.all(res.entry >= opened)  # nobody is randomized at a site before it opens
    assert np.all((res.opened[:, :12] >= 2) & (res.opened[:, :12] <= 6))
    assert res.regions[:12] == ("eu",) * 12 and res.regions[12] == "b"
    np.testing.assert_allclose(res.complete, res.entry[:, -1])


def test_site_results_do_not_depend_on_how_replicates_are_chunked():
    enr = site_enrollment(activation_months=[0, 5], rate_cv=0.5, cap=30)
    ns = np.array([700, 650, 800, 720])
    whole = sites.enroll(enr, 500, ns, 3, np.arange(4))
    part = sites.enroll(enr, 500, ns[2:], 3, np.arange(2, 4))
    np.testing.assert_array_equal(whole.entry[2:], part.entry)
    np.testing.assert_array_equal(whole.site[2:], part.site)


def test_enrollment_time_of_identical_open_sites_follows_the_gamma_law():
    """30 sites open at 0, rate 2/month, no caps: the N-th screening is at Gamma(N, 60/month)."""
    R, n, N = 400, 200, 260
    res = sites.enroll(site_enrollment(), n, np.full(R, N), 11, np.arange(R))
    rate = 30 * 2.0
    mean, sd = N / rate, math.sqrt(N) / rate
    assert abs(res.complete.mean() - mean) < 4 * sd / math.sqrt(R)
    assert abs(res.complete.std() / sd - 1) < 0.15
    # screen failures follow the cohort: the n eligible positions among N screenings are uniform
    assert np.all(res.screened.sum(axis=1) == N)


def test_gamma_heterogeneity_gives_negative_binomial_site_counts():
    """Counts of sites open 20 months at gamma rates (mean 1.5, CV 0.6): E = 30, Var = 30 + 30² 0.36."""
    R = 60
    enr = Enrollment(sites=[{"name": "g", "count": 50, "screening_rate_per_month": 1.5, "rate_cv": 0.6}],
                     calendar_step_months=1.0, max_duration_months=20)
    big = 10**6
    res = sites.enroll(enr, 2000, np.full(R, big), 5, np.arange(R))
    counts = res.screened.ravel().astype(float)
    mu = 1.5 * 20
    assert abs(counts.mean() - mu) < 4 * math.sqrt((mu + mu**2 * 0.36) / counts.size)
    var = mu + mu**2 * 0.36
    assert abs(counts.var() / var - 1) < 0.12
    assert np.isnan(res.complete).all()  # enrollment closed at 20 months, never complete


def test_trial_with_sites_reports_per_site_counts_and_stratifies_by_site():
    p = load_protocol(ROOT / "protocols" / "hf_outcomes_gs.yaml", {"randomization.strata": ["site"]})
    out = simulate_chunk(p, 2, np.arange(2))
    assert out["site_randomized"].shape == (2, 250)
    np.testing.assert_array_equal(out["site_randomized"].sum(axis=1), [4000, 4000])
    assert out["max_stratum_imbalance"].max() <= 8 * 0.25 + 1e-9


# --------------------------------------------------------------------------------------------
# Conduct and time-varying effects.
# --------------------------------------------------------------------------------------------


def paths_of(protocol, reps=np.arange(2)):
    from vctrial.cohort import synthesize

    n = protocol.spec.sample_size
    cohort = synthesize(protocol.cohort, n, 5, reps)
    model = multistate.compile_model(protocol.disease)
    steps = n_steps(protocol)
    rate = multistate.patient_rates(protocol.disease, cohort.column, (len(reps), n))
    sw = conduct.switching(protocol, (len(reps), n), steps, 5, reps)
    return multistate.simulate(model, rate, hazard_ratios(protocol, steps), np.zeros((len(reps), n)),
                               np.zeros((len(reps), n)), steps, 5, reps, switching=sw)


ONC = ROOT / "protocols" / "oncology_delayed_effect.yaml"
NO_CONDUCT = {"sweep": {}, "conduct": {}}


def test_non_adherent_patients_live_exactly_the_control_life():
    p = load_protocol(ONC, {**NO_CONDUCT, "conduct.non_adherence": {"fraction": 0.3}})
    paths = paths_of(p)
    u = rng.uniforms(np.uint64(5), np.uint64(rng.stream_id("non_adherence")), np.arange(2), 580, 1)[..., 0]
    flag = u < 0.3
    same = np.all(paths.first_time[..., 1, :] == paths.first_time[..., 0, :], axis=-1)
    assert np.all(same[flag])
    assert same[~flag].mean() < 0.5  # the others are changed by the treatment


def test_crossover_and_discontinuation_move_events_only_in_the_expected_direction():
    base = paths_of(load_protocol(ONC, NO_CONDUCT))
    cross = paths_of(load_protocol(ONC, {**NO_CONDUCT, "conduct.crossover": {"after_event": "progression"}}))
    # crossing over to a treatment with hazard ratios <= 1 after month 2 can only delay control deaths
    # (same thresholds, lower hazards), and never touches the active arm
    np.testing.assert_array_equal(cross.death_time[..., 1], base.death_time[..., 1])
    assert np.all(cross.death_time[..., 0] >= base.death_time[..., 0])
    assert (cross.death_time[..., 0] > base.death_time[..., 0]).mean() > 0.2
    stop = paths_of(load_protocol(ONC, {**NO_CONDUCT, "conduct.discontinuation": {"rate_per_year": 2.0}}))
    np.testing.assert_array_equal(stop.death_time[..., 0], base.death_time[..., 0])
    assert (stop.death_time[..., 1] != base.death_time[..., 1]).mean() > 0.2


def test_delayed_effect_gives_hazard_ratio_one_before_the_delay_and_h_after():
    """Exponential hazard 0.2/yr, HR 1 for 6 months then 0.5: occurrence/exposure per period and arm."""
    p = load_protocol(DATA / "event_driven.yaml", {"arms.active.effects.0.delay_months": 6,
                                                   "arms.active.effects.0.hazard_ratio": 0.5,
                                                   "sample_size": 20000,
                                                   "follow_up": {"type": "fixed", "duration_months": 30}})
    hr = hazard_ratios(p, n_steps(p))
    assert np.all(hr[1, 0, :6] == 1.0) and np.all(hr[1, 0, 6:] == 0.5)
    paths = paths_of(p, np.arange(1))
    t = paths.first_time[0, :, :, 0]  # (n, arm)
    rates = []
    for a in range(2):
        for lo, hi in ((0, 6), (6, 30)):
            ev = ((t[:, a] >= lo) & (t[:, a] < hi)).sum()
            expo = np.clip(np.minimum(t[:, a], hi) - lo, 0, None).sum() / 12
            rates.append((ev, expo))
    (e0a, x0a), (e0b, x0b), (e1a, x1a), (e1b, x1b) = rates
    # log rate ratio and its Poisson standard error, per period
    for (ea, xa), (eb, xb), want in (((e1a, x1a), (e0a, x0a), 1.0), ((e1b, x1b), (e0b, x0b), 0.5)):
        log_rr = math.log((ea / xa) / (eb / xb))
        se = math.sqrt(1 / ea + 1 / eb)
        assert abs(log_rr - math.log(want)) < 4 * se, (log_rr, want)


def test_waning_and_piecewise_effect_profiles_are_step_averages_of_the_stated_curves():
    p = load_protocol(DATA / "event_driven.yaml", {
        "arms.active.effects.0": {"transition": "event", "hazard_ratio": 0.6,
                                  "piecewise": [{"until_month": 2.5, "hazard_ratio": 1.2}],
                                  "waning": {"start_month": 12, "half_life_months": 6}}})
    e = p.spec.arms[1].effects[0]
    prof = conduct.effect_profile(e, 40, 1.0)
    assert prof[0] == pytest.approx(1.2) and prof[2] == pytest.approx(0.5 * 1.2 + 0.5 * 0.6)
    assert prof[5] == pytest.approx(0.6)
    # 6 months after the waning starts the log hazard ratio has halved (month 18: midpoint 18.5)
    assert math.log(e.hazard_ratio_at(18.0)) == pytest.approx(math.log(0.6) / 2)
    assert prof[-1] > prof[20] > prof[12] > 0.6


# --------------------------------------------------------------------------------------------
# Non-proportional hazards analyses.
# --------------------------------------------------------------------------------------------


def survival_batch(R, n, seed, hr_late=0.6):
    g = np.random.default_rng(seed)
    group = (g.random((R, n)) < 0.5).astype(np.int8)
    # delayed effect: hazard 0.08/month, times active by hr_late after month 4
    e = g.exponential(1.0, (R, n))
    t0 = e / 0.08
    late = 4 + (e - 0.08 * 4) / (0.08 * hr_late)
    t = np.where((group == 1) & (t0 > 4), late, t0)
    c = g.uniform(6, 30, (R, n))
    return np.minimum(t, c), t <= c, group


def test_rmst_matches_lifelines_and_a_slow_variance_reference():
    time, event, group = survival_batch(3, 300, 1)
    rm = nph.rmst(time, event, group, tau=18.0)
    for r in range(3):
        for a in range(2):
            sel = group[r] == a
            kmf = KaplanMeierFitter().fit(time[r][sel], event[r][sel])
            assert rm.rmst[r, a] == pytest.approx(restricted_mean_survival_time(kmf, t=18.0), rel=1e-10)
            # Greenwood-type variance, summed naively over event times
            ts = np.unique(time[r][sel & event[r]])
            ts = ts[ts <= 18.0]
            surv = kmf.survival_function_at_times(ts).values
            var = 0.0
            for j, tj in enumerate(ts):
                grid = np.append(ts[j:], 18.0)
                area = np.sum(np.diff(grid) * surv[j:])
                at_risk = (time[r][sel] >= tj).sum()
                d = ((time[r][sel] == tj) & event[r][sel]).sum()
                if at_risk > d:
                    var += area**2 * d / (at_risk * (at_risk - d))
            assert rm.variance[r, a] == pytest.approx(var, rel=1e-9)


def test_rmst_standard_error_matches_the_spread_of_estimates():
    time, event, group = survival_batch(600, 400, 2)
    rm = nph.rmst(time, event, group, tau=20.0)
    sd = rm.difference.std(ddof=1)
    # the SD of 600 normal estimates is known to within about 4 * sd / sqrt(2 * 600)
    assert abs(np.mean(rm.se) / sd - 1) < 4 / math.sqrt(1200)


def test_maxcombo_statistics_are_the_weighted_logranks_and_p_values_match_scipy():
    from vctrial.trial import analysis

    time, event, group = survival_batch(6, 300, 3)
    combos = [(0, 0), (0, 1), (1, 1)]  # a non-singular set, so scipy's integrator applies
    mc = nph.maxcombo(time, event, group, combos=combos, n_points=8192)
    for j, (rho, gamma) in enumerate(combos):
        np.testing.assert_allclose(mc.z[:, j], analysis.logrank(time, event, group, rho=rho, gamma=gamma).z,
                                   rtol=1e-12)
    for r in range(6):
        ref = stats.multivariate_normal(np.zeros(3), mc.correlation[r], seed=1, abseps=1e-7, releps=0,
                                        maxpts=2_000_000)
        p1 = 1 - ref.cdf(np.full(3, -mc.statistic[r]))
        zz = np.abs(mc.z[r]).max()
        p2 = 1 - ref.cdf(np.full(3, zz), lower_limit=np.full(3, -zz))
        assert mc.p_one[r] == pytest.approx(p1, abs=2e-4)
        assert mc.p_two[r] == pytest.approx(p2, abs=2e-4)


def test_maxcombo_p_value_with_the_singular_default_combos_matches_monte_carlo():
    time, event, group = survival_batch(3, 300, 4)
    mc = nph.maxcombo(time, event, group, sided="one")
    g = np.random.default_rng(5)
    N = 2_000_000
    for r in range(3):
        w, v = np.linalg.eigh(mc.correlation[r])
        x = g.standard_normal((N, 4)) @ (v * np.sqrt(np.clip(w, 0, None))).T
        p = (x.min(axis=1) <= mc.statistic[r]).mean()
        assert abs(mc.p_one[r] - p) < 4 * math.sqrt(p * (1 - p) / N) + 1e-4, (mc.p_one[r], p)


@pytest.mark.slow
def test_maxcombo_is_a_level_alpha_test_under_the_null():
    R = 4000  # 99.9% binomial region around 5%: 3.9% to 6.2%
    g = np.random.default_rng(8)
    t = g.exponential(12, (R, 200))
    c = g.uniform(6, 30, (R, 200))
    group = (g.random((R, 200)) < 0.5).astype(np.int8)
    mc = nph.maxcombo(np.minimum(t, c), t <= c, group, sided="one", n_points=512)
    assert_binomial(int((mc.p_one < 0.05).sum()), R, 0.05, what="MaxCombo size")


# --------------------------------------------------------------------------------------------
# Group-sequential trials.
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_group_sequential_null_rejection_rate_is_alpha():
    p = load_protocol(DATA / "group_sequential.yaml", {"arms.active.effects.0.hazard_ratio": 1.0})
    n = 3000
    ds = run_trial(p, n, seed=31, options=LOCAL)
    reject = ds["reject"].values.astype(bool)
    assert_binomial(int(reject.sum()), n, 0.025, what="type I error")  # 1.6% to 3.5%
    # and look by look, the null crossing probabilities of the bounds at the observed fractions
    t = [0.5, 0.75, 1.0]
    b, _ = sq.efficacy_bounds(t, sq.SpendingSpec("obf", 0.025), spend_at=t)
    up, _ = sq.crossing_probabilities(t, b, None, 0.0)
    for k in range(3):
        assert_binomial(int(((ds["stop_look"].values == k + 1) & reject).sum()), n, up[k], what=f"look {k + 1}")
    # the stagewise p-value is below alpha exactly for the rejected trials
    np.testing.assert_array_equal(ds["p_value"].values <= 0.025, ds["reject"].values.astype(bool))


@pytest.mark.slow
def test_group_sequential_stopping_probabilities_match_the_canonical_distribution():
    """Drift from Schoenfeld: E[Z at 300 events] = sqrt(300/4)·|log 0.75|; looks at 150, 225, 300 events."""
    p = load_protocol(DATA / "group_sequential.yaml")
    n = 2000
    ds = run_trial(p, n, seed=32, options=LOCAL)
    drift = math.sqrt(300 / 4) * abs(math.log(0.75))
    t = [0.5, 0.75, 1.0]
    b, _ = sq.efficacy_bounds(t, sq.SpendingSpec("obf", 0.025), spend_at=t)
    up, _ = sq.crossing_probabilities(t, b, None, drift)
    stop = ds["stop_look"].values
    reject = ds["reject"].values.astype(bool)
    for k in range(3):
        assert_binomial(int(((stop == k + 1) & reject).sum()), n, up[k], what=f"look {k + 1}")
    assert_binomial(int(reject.sum()), n, up.sum(), what="power")
    # early stopping exaggerates the effect: the mean log HR at stopping is what the canonical distribution
    # predicts for the estimate Z_T / sqrt(I_T) (Monte Carlo of Brownian paths), away from the model's log 0.75.
    # (Against the model's HR, not each replicate's counterfactual HR: that one moves with the sample's own
    # luck, which also drives early stopping, so the bias measured against it is smaller.)
    g = np.random.default_rng(5)
    m = 400_000
    frac = np.asarray(t)
    paths = np.cumsum(g.standard_normal((m, 3)) * np.sqrt(np.diff(frac, prepend=0.0))
                      + drift * np.diff(frac, prepend=0.0), axis=1) / np.sqrt(frac)
    crossed = paths >= b
    look = np.where(crossed.any(axis=1), crossed.argmax(axis=1), 2)
    theta_hat = paths[np.arange(m), look] / np.sqrt(300 / 4 * frac[look])
    log_hr = np.log(ds["estimate"].values)
    half = 3.29 * math.sqrt(log_hr.var(ddof=1) / n + theta_hat.var() / m)  # 99.9%, both Monte Carlo errors
    assert abs(log_hr.mean() + theta_hat.mean()) < half, (log_hr.mean(), -theta_hat.mean(), half)
    assert -theta_hat.mean() < math.log(0.75) - 0.01  # the prediction is a bias, not a rounding
    assert summarize(ds).loc["bias (log HR)", "value"] < 0


def test_group_sequential_outputs_per_look_and_a_consistent_stop():
    p = load_protocol(DATA / "group_sequential.yaml", {"looks.futility": {"type": "beta_spending", "beta": 0.1}})
    ds = run_trial(p, 40, seed=3, options=LOCAL)
    assert ds.sizes["look"] == 3 and list(ds["planned_fraction"].values) == [0.5, 0.75, 1.0]
    np.testing.assert_array_equal(ds["look_information"].values[:, :2], np.tile([150, 225], (40, 1)))
    z = ds["look_z"].values
    b, a = ds["efficacy_bound"].values, ds["futility_bound"].values
    for r in range(40):
        k = int(ds["stop_look"].values[r]) - 1
        reason = int(ds["stop_reason"].values[r])
        assert np.all((z[r, :k] < b[r, :k]) & (z[r, :k] >= a[r, :k]))  # no earlier crossing
        if reason == 1:
            assert z[r, k] >= b[r, k] and ds["reject"].values[r]
        elif reason == 2:
            assert z[r, k] < a[r, k] and not ds["reject"].values[r]
        assert ds["duration_months"].values[r] == ds["look_date_months"].values[r, k]
        assert ds["n_events"].values[r].sum() == ds["look_information"].values[r, k]
    assert np.all(np.diff(ds["look_date_months"].values, axis=1) > 0)


def test_conditional_power_futility_bound_is_applied_at_interim_looks():
    p = load_protocol(DATA / "group_sequential.yaml",
                      {"looks.futility": {"type": "conditional_power", "threshold": 0.2}})
    ds = run_trial(p, 20, seed=4, options=LOCAL)
    planned = sq.design([0.5, 0.75, 1.0], 0.025, "obf")
    want = [sq.conditional_power_bound(f, planned.efficacy[-1], 0.2) for f in (0.5, 0.75)]
    np.testing.assert_allclose(ds["futility_bound"].values[:, :2], np.tile(want, (20, 1)), rtol=1e-8)


@pytest.mark.slow
def test_biomarker_group_sequential_null_rejection_rate_is_alpha():
    p = load_protocol(DATA / "biomarker_change.yaml", {
        "arms.active.effects.0.shift": 0.0, "analysis.sided": "one", "analysis.alpha": 0.025,
        "looks": {"information_fractions": [0.5, 1.0], "efficacy": {"spending": "pocock"}}})
    n = 3000
    ds = run_trial(p, n, seed=33, options=LOCAL)
    assert_binomial(int(ds["reject"].values.sum()), n, 0.025, what="type I error")  # 1.6% to 3.5%
    assert np.all(ds["look_fraction"].values[:, -1] == 1.0)


# --------------------------------------------------------------------------------------------
# Compare and sweep.
# --------------------------------------------------------------------------------------------


def test_compare_runs_protocols_on_the_same_patients():
    ds = design.compare([DATA / "event_driven.yaml", DATA / "group_sequential.yaml", DATA / "event_driven.yaml"],
                        30, 9, LOCAL)
    assert list(ds["protocol"].values) == ["event_driven_1", "group_sequential", "event_driven_3"]
    a, c = point(ds.sel(protocol="event_driven_1")), point(ds.sel(protocol="event_driven_3"))
    np.testing.assert_array_equal(a["statistic"].values, c["statistic"].values)
    gs = point(ds.sel(protocol="group_sequential"))
    assert "look_z" in gs and "look_z" not in a
    # common random numbers: the group-sequential final look sees the fixed design's data exactly
    final = gs["stop_look"].values == 3
    np.testing.assert_allclose(gs["look_z"].values[final, 2], -a["statistic"].values[final], rtol=1e-12)


def test_sweep_points_equal_standalone_runs_and_are_one_sel_away():
    axes = design.sweep_axes(DATA / "event_driven.yaml", [("arms.active.effects.0.hazard_ratio", [0.7, 1.0]),
                                                           ("sample_size", [400, 600])])
    assert list(axes) == ["hazard_ratio", "sample_size"]
    ds = design.run_sweep(DATA / "event_driven.yaml", axes, 5, 12, LOCAL)
    assert ds["reject"].dims == ("hazard_ratio", "sample_size", "replicate")
    alone = run_trial(load_protocol(DATA / "event_driven.yaml", {"arms.active.effects.0.hazard_ratio": 1.0,
                                                                  "sample_size": 400}), 5, 12, options=LOCAL)
    pt = point(ds.sel(hazard_ratio=1.0, sample_size=400))
    np.testing.assert_array_equal(pt["statistic"].values, alone["statistic"].values)
    assert pt.attrs["null_effect"] == 1 and point(ds.sel(hazard_ratio=0.7, sample_size=400)).attrs["null_effect"] == 0


def test_sweep_dimension_names_are_short_and_unique():
    assert design.dim_names(["arms.active.effects.0.hazard_ratio", "sample_size"]) == ["hazard_ratio", "sample_size"]
    assert design.dim_names(["arms.active.effects.0.hazard_ratio", "arms.active.effects.1.hazard_ratio"]) == [
        "0_hazard_ratio", "1_hazard_ratio"]
    assert design.dim_names(["looks.information_fractions"]) == ["information_fractions"]
    assert design.dim_names(["analysis.method"]) == ["analysis_method"]  # "method" is a keyword of sel
    assert design.parse_sweep_option("looks.information_fractions=[0.5,1.0],[0.3,0.6,1.0]") == (
        "looks.information_fractions", [[0.5, 1.0], [0.3, 0.6, 1.0]])


# --------------------------------------------------------------------------------------------
# Spec errors.
# --------------------------------------------------------------------------------------------

BAD = [
    ({"follow_up": {"type": "fixed", "duration_months": 24},
      "looks": {"information_fractions": [0.5, 1.0]}}, "looks", "event_driven"),
    ({"looks": {"information_fractions": [0.5, 0.9]}}, "looks.information_fractions", "end with 1.0"),
    ({"randomization.strata": ["weight"]}, "randomization.strata[0]", "unknown covariate"),
    ({"randomization.strata": ["age"]}, "randomization.strata[0]", "cuts"),
    ({"randomization.block_sizes": [4, 5]}, "randomization", "multiple"),
    ({"randomization.strata": ["site"]}, "randomization", "enrollment.sites"),
    ({"conduct.crossover": {"after_event": "relapse"}}, "conduct.crossover.after_event", "relapse"),
    ({"analysis.method": "rmst"}, "analysis", "tau_months"),
    ({"enrollment.sites": [{"name": "a", "count": 2, "screening_rate_per_month": 1}]}, "enrollment", "not both"),
    ({"arms.active.effects.0.delay_months": 2, "arms.active.effects.0.piecewise": [
        {"until_month": 3, "hazard_ratio": 1}]}, "piecewise", "not both"),
]


@pytest.mark.parametrize("overrides, where, why", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_design_stops_with_one_spec_error_naming_the_key(overrides, where, why):
    with pytest.raises(SpecError) as err:
        load_protocol(DATA / "event_driven.yaml", overrides)
    assert str(DATA / "event_driven.yaml") in str(err.value)
    assert where in str(err.value) and why in str(err.value), str(err.value)


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------


def vctrial(*args, cwd=None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "vctrial.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def test_bounds_command_prints_one_look_per_line_with_alpha_spent():
    proc = vctrial("bounds", "--looks", 3, "--alpha", 0.025, "--spending", "hsd", "--gamma", -4)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    z = [float(r[2]) for r in rows]
    spent = [float(r[4]) for r in rows]
    assert np.allclose(z, [3.0107, 2.5465, 1.9992], atol=1e-4)  # gsDesign default design (see test_sequential)
    assert spent[-1] == pytest.approx(0.025) and np.all(np.diff(spent) > 0)
    bad = vctrial("bounds", "--looks", 3, "--fractions", "0.5,0.4,1")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--fractions" in bad.stderr


def test_compare_and_sweep_commands_write_labeled_datasets(tmp_path):
    import xarray as xr

    out = tmp_path / "cmp.nc"
    proc = vctrial("compare", DATA / "event_driven.yaml", DATA / "group_sequential.yaml", "-n", 6, "-s", 2,
                   "-o", out, "-q", "-w", 0)
    assert proc.returncode == 0, proc.stderr
    assert "paired differences from event_driven" in proc.stdout and "stop at look 1" in proc.stdout
    with xr.open_dataset(out) as ds:
        assert list(ds["protocol"].values) == ["event_driven", "group_sequential"]
        assert ds["reject"].dims == ("protocol", "replicate")
    out2 = tmp_path / "sweep.nc"
    proc = vctrial("run", DATA / "event_driven.yaml", "--sweep", "arms.active.effects.0.hazard_ratio=0.75,1.0",
                   "-n", 4, "-o", out2, "-q", "-w", 0)
    assert proc.returncode == 0, proc.stderr
    assert "(type I)" in proc.stdout
    with xr.open_dataset(out2) as ds:
        assert list(ds["hazard_ratio"].values) == [0.75, 1.0] and ds["reject"].dims == ("hazard_ratio", "replicate")


def test_a_bad_sweep_key_stops_with_one_line_and_no_output(tmp_path):
    out = tmp_path / "never.nc"
    proc = vctrial("run", DATA / "event_driven.yaml", "--sweep", "arms.active.effects.0.hazard_ratoi=0.7,0.8",
                   "-n", 2, "-o", out, "-w", 0)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "hazard_ratoi" in lines[0] and "event_driven.yaml" in lines[0], proc.stderr
    assert not out.exists() and not list(tmp_path.glob("*.nc*"))
