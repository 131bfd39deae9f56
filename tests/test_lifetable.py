"""Cause-deleted background mortality: the shipped cause-of-death shares and hazard_per_month(remove=...)."""

from __future__ import annotations

import numpy as np
import pytest

from vctrial.disease.lifetable import MAX_AGE, cause_share, hazard_per_month, known_causes, life_table


def life_expectancy(hazard: np.ndarray, age: int) -> np.ndarray:
    """Remaining life expectancy (years) at exact ``age`` by sex, integrating a per-month hazard month by month.

    The hazard is constant within a year of age; within each month survival is exp(-mu t), so the month
    contributes S_start * (1 - exp(-mu)) / mu months of life.
    """
    mu = np.repeat(hazard[:, age:], 12, axis=1)
    survival_start = np.exp(-np.concatenate([np.zeros((2, 1)), np.cumsum(mu, axis=1)[:, :-1]], axis=1))
    return (survival_start * -np.expm1(-mu) / mu).sum(axis=1) / 12.0


def test_cardiovascular_is_a_known_cause():
    assert "cardiovascular" in known_causes()
    assert known_causes() == tuple(sorted(known_causes()))


@pytest.mark.parametrize("cause", known_causes())
def test_shares_are_fractions_at_every_age_and_sex(cause):
    share = cause_share((cause,))
    assert share.shape == (2, MAX_AGE + 1)
    assert np.all(np.isfinite(share))
    assert np.all((share >= 0.0) & (share <= 1.0))


def test_shares_of_all_shipped_causes_together_stay_below_one():
    total = cause_share(known_causes())
    assert np.all(total <= 1.0)
    # the union is the sum of the (disjoint ICD-10) causes
    np.testing.assert_allclose(total, sum(cause_share((c,)) for c in known_causes()), atol=1e-15)


def test_no_causes_and_repeated_causes():
    assert np.all(cause_share(()) == 0.0)
    np.testing.assert_array_equal(cause_share(("cardiovascular", "cardiovascular")), cause_share(("cardiovascular",)))


def test_cause_deleted_plus_removed_cause_hazard_is_the_all_cause_hazard():
    for multiplier in (1.0, 1.7):
        all_cause = hazard_per_month("us_ssa", multiplier)
        for causes in [("cardiovascular",), known_causes()]:
            deleted = hazard_per_month("us_ssa", multiplier, remove=causes)
            removed = all_cause * cause_share(causes)
            assert deleted.shape == (2, MAX_AGE + 1)
            np.testing.assert_allclose(deleted + removed, all_cause, rtol=0.0, atol=1e-12)
            assert np.all(deleted <= all_cause) and np.all(deleted > 0.0)


def test_empty_remove_is_the_all_cause_table():
    np.testing.assert_array_equal(hazard_per_month(remove=()), hazard_per_month())
    np.testing.assert_array_equal(hazard_per_month("us_ssa", 2.0), 2.0 * hazard_per_month())


def test_cardiovascular_share_rises_with_age_above_35_for_both_sexes():
    share = cause_share(("cardiovascular",))
    for sex, label in enumerate(("male", "female")):
        above = share[sex, 35:]
        assert np.all(np.diff(above) >= 0.0), f"{label}: CV share not non-decreasing above 35: {np.unique(above)}"
        assert share[sex, 90] > 2 * share[sex, 40], f"{label}: CV share at 90 {share[sex, 90]:.3f} vs 40 {share[sex, 40]:.3f}"


def test_life_expectancy_at_40_gains_a_plausible_amount_without_cardiovascular_deaths():
    e_all = life_expectancy(hazard_per_month(), 40)
    e_deleted = life_expectancy(hazard_per_month(remove=("cardiovascular",)), 40)
    table = life_table()
    # the monthly integration reproduces the SSA table's own e40 (38.59 male, 42.64 female)
    np.testing.assert_allclose(e_all, [table["e_male"][40], table["e_female"][40]], atol=0.05)
    gain = e_deleted - e_all
    message = (f"e40 all-cause male {e_all[0]:.2f}, female {e_all[1]:.2f}; without heart disease and stroke "
               f"male {e_deleted[0]:.2f}, female {e_deleted[1]:.2f} years (about 42.3 and 45.7 expected: "
               f"gains of about 3.7 and 3.1 years)")
    assert np.all(gain > 1.5) and np.all(gain < 7.0), message
    assert abs(e_deleted[0] - 42.29) < 0.05 and abs(e_deleted[1] - 45.73) < 0.05, message


def test_unknown_cause_is_refused_with_the_known_ones_named():
    with pytest.raises(ValueError, match="cardiovascular") as err:
        cause_share(("heart_failure",))
    assert "heart_failure" in str(err.value)
    with pytest.raises(ValueError, match="heart_failure"):
        hazard_per_month("us_ssa", 1.0, remove=("cardiovascular", "heart_failure"))
