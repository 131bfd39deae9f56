"""Group-sequential boundaries against published tables and the canonical joint distribution.

References (values copied from the cited published outputs, not computed here):

* [gsD-snap] gsDesign test snapshots, tests/testthat/_snaps/independent-test-gsBoundSummary.md
  (keaven/gsDesign): gsDesign(k = 5, test.type = 1) with the default sfHSD(gamma = -4),
  alpha = 0.025: Z = 3.2527, 2.9860, 2.6917, 2.3737, 2.0253 and cumulative P(cross | delta = 0)
  = 0.0006, 0.0018, 0.0047, 0.0110, 0.0250; the default gsDesign() (k = 3, test.type = 4, beta =
  0.1, sfu = sfHSD(-4), sfl = sfHSD(-2)): efficacy 3.0107, 2.5465, 1.9992, futility -0.2387,
  0.9411, 1.9992, information 124.91 for delta = 0.3; and k = 5, test.type = 4: futility
  -0.9016, -0.0367, 0.6945, 1.3603, 2.0253.
* [rpact] rpact unit tests, tests/testthat/test-f_design_group_sequential.R (getDesign...
  expected results to 1e-7): asHSD gammaA = 0, alpha 0.03, rates (0.2, 0.4, 1): 2.5121443,
  2.4228747, 2.0280392; asHSD gammaA = -1 with bsHSD gammaB = -2, alpha 0.07, beta 0.14:
  critical 2.364813, 2.1928805, 1.5660474, futility -1.1063623, -0.35992439, shift 7.1015942;
  asP with rates (0.4, 0.7), alpha 0.025: 2.223875, 2.3050796, alpha spent 0.013078429,
  0.0197432; asOF with bsKD gammaB = 2.5, alpha 0.13, beta 0.41, rates (0.4, 0.75, 1),
  non-binding: critical 2.1280732, 1.4368565, 1.2468994, futility -0.83725762, 0.35992547.
* [LD-OBF] Lan-DeMets O'Brien-Fleming spending, 3 equally spaced looks, one-sided 0.025:
  3.7103, 2.5114, 1.9930 (rpact getDesignGroupSequential(typeOfDesign = "asOF") and gsDesign
  sfLDOF, as cross-checked in a public validation script).
* [JT] Jennison & Turnbull (2000), Group Sequential Methods with Applications to Clinical
  Trials, Table 2.1 (Pocock C_P(K, 0.05) = 2.178, 2.289, 2.361, 2.413 for K = 2..5) and Table 2.3
  (O'Brien-Fleming C_B(K, 0.05) = 1.977, 2.004, 2.024, 2.040).
* [AMR] Armitage, McPherson & Rowe (1969) repeated significance tests at nominal two-sided 0.05
  on K equally spaced looks: overall 0.083, 0.126, 0.193, 0.248 for K = 2, 4, 10, 20, i.e. one
  side 0.042, 0.063, 0.097, 0.124 (as checked in gsDesign's runit.output.R).
"""

import math

import numpy as np
import pytest
from scipy import stats

from vctrial.trial import sequential as sq

from mc_helpers import assert_binomial


def test_hsd_bounds_and_alpha_spent_match_gsdesign_default_one_sided_design():
    d = sq.design(np.arange(1, 6) / 5, 0.025, "hsd", -4)
    assert np.allclose(d.efficacy, [3.2527, 2.9860, 2.6917, 2.3737, 2.0253], atol=6e-5)
    assert np.allclose(d.alpha_spent, [0.0006, 0.0018, 0.0047, 0.0110, 0.0250], atol=6e-5)


def test_nonbinding_beta_spending_design_matches_gsdesign_default():
    d = sq.design([1, 2, 3], 0.025, "hsd", -4, futility="hsd", beta=0.1, futility_gamma=-2)
    assert np.allclose(d.efficacy, [3.0107, 2.5465, 1.9992], atol=6e-5)
    assert np.allclose(d.futility, [-0.2387, 0.9411, 1.9992], atol=6e-5)
    # gsDesign reports information 124.91 for delta = 0.3: drift^2 / 0.3^2
    assert abs(d.drift**2 / 0.09 - 124.91) < 0.01
    d5 = sq.design(np.arange(1, 6), 0.025, "hsd", -4, futility="hsd", beta=0.1, futility_gamma=-2)
    assert np.allclose(d5.futility, [-0.9016, -0.0367, 0.6945, 1.3603, 2.0253], atol=6e-5)


def test_spending_families_match_rpact_to_1e6():
    assert np.allclose(sq.design([0.2, 0.4, 1], 0.03, "hsd", 0.0).efficacy,
                       [2.5121443, 2.4228747, 2.0280392], atol=1e-6)
    d = sq.design([0.2, 0.4, 1], 0.07, "hsd", -1, futility="hsd", beta=0.14, futility_gamma=-2)
    assert np.allclose(d.efficacy, [2.364813, 2.1928805, 1.5660474], atol=1e-6)
    assert np.allclose(d.futility[:2], [-1.1063623, -0.35992439], atol=1e-6)
    assert abs(d.drift**2 - 7.1015942) < 1e-5
    b, cum = sq.efficacy_bounds([0.4, 0.7], sq.SpendingSpec("pocock", 0.025))
    assert np.allclose(b, [2.223875, 2.3050796], atol=1e-6)
    assert np.allclose(cum, [0.013078429, 0.0197432], atol=1e-8)
    d = sq.design([0.4, 0.75, 1], 0.13, "obf", futility="power", beta=0.41, futility_gamma=2.5)
    assert np.allclose(d.efficacy, [2.1280732, 1.4368565, 1.2468994], atol=1e-6)
    assert np.allclose(d.futility[:2], [-0.83725762, 0.35992547], atol=1e-6)


def test_obrien_fleming_type_spending_matches_published_bounds():
    assert np.allclose(sq.design([1, 2, 3], 0.025, "obf").efficacy, [3.7103, 2.5114, 1.9930], atol=6e-5)


@pytest.mark.parametrize("K, pocock, obf", [(2, 2.178, 1.977), (3, 2.289, 2.004), (4, 2.361, 2.024), (5, 2.413, 2.040)])
def test_classical_two_sided_constants_match_jennison_turnbull_tables(K, pocock, obf):
    t = np.arange(1, K + 1)
    assert abs(sq.two_sided_constant(t, 0.05, "pocock") - pocock) < 6e-4
    assert abs(sq.two_sided_constant(t, 0.05, "obf") - obf) < 6e-4


@pytest.mark.parametrize("K, one_side", [(2, 0.042), (4, 0.063), (10, 0.097), (20, 0.124)])
def test_repeated_testing_at_nominal_level_matches_armitage_mcpherson_rowe(K, one_side):
    z = stats.norm.isf(0.025)
    up, _ = sq.crossing_probabilities(np.arange(1, K + 1), np.full(K, z), np.full(K, -z))
    assert round(up.sum(), 3) == one_side


def test_spending_functions_spend_exactly_alpha_at_full_information():
    for fam, g in (("obf", None), ("pocock", None), ("hsd", -4.0), ("hsd", 2.0), ("hsd", 0.0), ("power", 3.0)):
        assert sq.spend(fam, 0.025, 1.0, g) == pytest.approx(0.025, abs=1e-15)
        v = sq.spend(fam, 0.025, np.linspace(0, 1, 11), g)
        assert v[0] == pytest.approx(0.0, abs=1e-15) and np.all(np.diff(v) >= 0)


def canonical_paths(fractions, drift, n, seed):
    """Z_k from a Brownian motion observed at the fractions (independent Monte Carlo check)."""
    rng = np.random.default_rng(seed)
    t = np.asarray(fractions, float)
    inc = rng.standard_normal((n, t.size)) * np.sqrt(np.diff(t, prepend=0.0)) + drift * np.diff(t, prepend=0.0)
    return np.cumsum(inc, axis=1) / np.sqrt(t)


@pytest.mark.parametrize("drift", [0.0, 2.5])
def test_crossing_probabilities_match_monte_carlo_of_the_canonical_distribution(drift):
    t = np.array([0.3, 0.55, 0.8, 1.0])
    d = sq.design(t, 0.025, "obf", futility="hsd", beta=0.15, futility_gamma=-2)
    up, low = sq.crossing_probabilities(t, d.efficacy, d.futility, drift)
    n = 400_000
    z = canonical_paths(t, drift, n, seed=42)
    alive = np.ones(n, bool)
    for k in range(t.size):
        u = alive & (z[:, k] >= d.efficacy[k])
        lo = alive & ~u & (z[:, k] < d.futility[k])
        assert_binomial(int(u.sum()), n, up[k], what=f"efficacy crossing at look {k + 1}")
        assert_binomial(int(lo.sum()), n, low[k], what=f"futility crossing at look {k + 1}")
        alive &= ~u & ~lo


def test_efficacy_bounds_alone_keep_type_one_error_at_alpha_by_monte_carlo():
    t = np.array([0.25, 0.5, 0.75, 1.0])
    for fam, g in (("obf", None), ("pocock", None), ("hsd", -2.0)):
        b, _ = sq.efficacy_bounds(t, sq.SpendingSpec(fam, 0.025, g))
        n = 200_000
        z = canonical_paths(t, 0.0, n, seed=7)
        assert_binomial(int((z >= b).any(axis=1).sum()), n, 0.025, what=fam)  # 2.39% to 2.62%


def test_bounds_recomputed_at_observed_fractions_spend_alpha_at_those_fractions():
    planned = sq.design([1, 2, 3], 0.025, "obf")
    b, a = sq.updated_bounds([0.4, 0.71, 0.97], planned, 0.025, "obf")
    up, _ = sq.crossing_probabilities([0.4, 0.71, 0.97], b, None)
    # interim looks spend alpha(t_obs); the final look spends what remains, whatever its information
    assert np.allclose(np.cumsum(up)[:2], sq.spend("obf", 0.025, [0.4, 0.71]), atol=1e-9)
    assert abs(up.sum() - 0.025) < 1e-9
    assert np.all(np.isneginf(a[:2])) and a[2] == b[2]


def test_stagewise_p_value_is_below_alpha_exactly_when_a_bound_is_crossed():
    d = sq.design([1, 2, 3], 0.025, "obf")
    for look in range(3):  # stopping for efficacy at any look gives p <= alpha
        assert sq.stagewise_p_value(d.fractions, d.efficacy, look, d.efficacy[look] + 1e-6) <= 0.025 + 1e-9
    # reaching the final look: p <= alpha if and only if Z crosses the final bound
    assert sq.stagewise_p_value(d.fractions, d.efficacy, 2, d.efficacy[2] - 1e-3) > 0.025
    assert sq.stagewise_p_value(d.fractions, d.efficacy, 2, d.efficacy[2] + 1e-3) < 0.025
    # at the first look it is the nominal p-value
    assert sq.stagewise_p_value(d.fractions, d.efficacy, 0, 2.0) == pytest.approx(stats.norm.sf(2.0), rel=1e-9)


def test_conditional_power_bound_gives_the_stated_conditional_power():
    t, bK, thr = 0.5, 1.96, 0.1
    z = sq.conditional_power_bound(t, bK, thr)
    cp = stats.norm.sf((bK - z / math.sqrt(t)) / math.sqrt(1 - t))
    assert cp == pytest.approx(thr, abs=1e-12)
