"""Cohort specs and synthesis: marginals, copula correlations, eligibility, reproducibility, errors.

Statistical checks compare with independent references (scipy.stats, closed forms) within a stated
number of Monte Carlo standard errors computed from the sample size; every seed is fixed.
"""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

import vctrial.cohort as cohort_module
from vctrial import rng
from vctrial.cohort import Cohort, synthesize
from vctrial.errors import SpecError
from vctrial.spec.cohort import CohortSpec, load_cohort

COHORTS_DIR = Path(__file__).resolve().parent.parent / "cohorts"
K = 4.0  # tolerance in standard errors


def write_cohort(tmp_path: Path, body: dict, name: str = "cohort.yaml") -> Path:
    data = {"kind": "cohort", "name": "test cohort", **body}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def make(tmp_path: Path, covariates: dict, **rest) -> CohortSpec:
    return load_cohort(write_cohort(tmp_path, {"covariates": covariates, **rest}))


def pooled(cohort: Cohort, name: str) -> np.ndarray:
    return np.asarray(cohort.column(name)).ravel()


# --------------------------------------------------------------------------------- marginals


def test_untruncated_normal_has_the_specified_mean_and_sd(tmp_path):
    spec = make(tmp_path, {"x": {"distribution": "normal", "mean": 63.8, "sd": 11.5}})
    x = pooled(synthesize(spec, 50_000, seed=11, replicates=np.arange(4)), "x")
    n = x.size
    assert abs(x.mean() - 63.8) < K * 11.5 / math.sqrt(n)
    assert abs(x.std(ddof=1) - 11.5) < K * 11.5 / math.sqrt(2 * n)


def test_lognormal_has_the_specified_natural_scale_mean_and_sd(tmp_path):
    mean, sd = 2500.0, 3000.0
    spec = make(tmp_path, {"bnp": {"distribution": "lognormal", "mean": mean, "sd": sd}})
    x = pooled(synthesize(spec, 100_000, seed=12, replicates=np.arange(4)), "bnp")
    n = x.size
    sigma2 = math.log(1 + sd**2 / mean**2)
    mu = math.log(mean) - sigma2 / 2
    # Log scale: exactly normal(mu, sigma).
    logs = np.log(x)
    assert abs(logs.mean() - mu) < K * math.sqrt(sigma2 / n)
    assert abs(logs.std(ddof=1) - math.sqrt(sigma2)) < K * math.sqrt(sigma2 / (2 * n))
    # Natural scale, with standard errors from the lognormal's own moments.
    dist = stats.lognorm(s=math.sqrt(sigma2), scale=math.exp(mu))
    assert dist.mean() == pytest.approx(mean) and dist.std() == pytest.approx(sd)
    assert abs(x.mean() - mean) < K * sd / math.sqrt(n)
    raw = [dist.moment(k) for k in range(1, 5)]
    mu4 = raw[3] - 4 * raw[2] * raw[0] + 6 * raw[1] * raw[0] ** 2 - 3 * raw[0] ** 4
    se_var = math.sqrt((mu4 - sd**4) / n)
    assert abs(x.var(ddof=1) - sd**2) < K * se_var


def test_binary_has_the_specified_probability(tmp_path):
    spec = make(tmp_path, {"f": {"distribution": "binary", "p": 0.218}, "g": {"distribution": "binary", "p": 0.0}})
    cohort = synthesize(spec, 50_000, seed=13, replicates=np.arange(2))
    x = pooled(cohort, "f")
    assert set(np.unique(x)) == {0.0, 1.0}
    assert abs(x.mean() - 0.218) < K * math.sqrt(0.218 * 0.782 / x.size)
    assert not pooled(cohort, "g").any()


def test_categorical_has_the_specified_level_probabilities(tmp_path):
    levels, p = ["I", "II", "III", "IV"], [0.05, 0.70, 0.24, 0.01]
    spec = make(tmp_path, {"nyha": {"distribution": "categorical", "levels": levels, "p": p}})
    cohort = synthesize(spec, 50_000, seed=14, replicates=np.arange(2))
    codes = pooled(cohort, "nyha")
    assert set(np.unique(codes)) <= {0.0, 1.0, 2.0, 3.0}
    for code, (level, pk) in enumerate(zip(levels, p)):
        share = np.mean(codes == code)
        assert abs(share - pk) < K * math.sqrt(pk * (1 - pk) / codes.size)
        np.testing.assert_array_equal(cohort.column(f"nyha[{level}]"), (cohort.column("nyha") == code).astype(float))
    assert cohort.levels == {"nyha": tuple(levels)}


def test_categorical_level_with_zero_probability_never_occurs(tmp_path):
    spec = make(tmp_path, {"c": {"distribution": "categorical", "levels": ["a", "b", "c"], "p": [0.0, 0.5, 0.5]}})
    codes = pooled(synthesize(spec, 20_000, seed=15, replicates=np.arange(1)), "c")
    assert not np.any(codes == 0)


@pytest.mark.parametrize(
    ("mean", "sd", "lo", "hi"),
    [(63.8, 11.5, 18.0, 95.0), (35.7, 9.0, 10.0, 40.0), (0.0, 1.0, 3.0, None), (0.0, 1.0, None, -2.5), (50.0, 5.0, 70.0, 71.0)],
)
def test_truncated_normal_matches_scipy_truncnorm(tmp_path, mean, sd, lo, hi):
    cov = {"distribution": "normal", "mean": mean, "sd": sd}
    if lo is not None:
        cov["min"] = lo
    if hi is not None:
        cov["max"] = hi
    spec = make(tmp_path, {"x": cov})
    x = pooled(synthesize(spec, 50_000, seed=16, replicates=np.arange(2)), "x")
    a = -np.inf if lo is None else (lo - mean) / sd
    b = np.inf if hi is None else (hi - mean) / sd
    ref = stats.truncnorm(a, b, loc=mean, scale=sd)
    assert (lo is None or x.min() >= lo) and (hi is None or x.max() <= hi)
    assert abs(x.mean() - ref.mean()) < K * ref.std() / math.sqrt(x.size)
    assert abs(x.std(ddof=1) - ref.std()) < K * ref.std() / math.sqrt(x.size) * 1.5


def test_truncated_lognormal_matches_scipy_conditional_mean(tmp_path):
    mean, sd, lo, hi = 2002.0, 2406.0, 400.0, 35_000.0
    spec = make(tmp_path, {"bnp": {"distribution": "lognormal", "mean": mean, "sd": sd, "min": lo, "max": hi}})
    x = pooled(synthesize(spec, 50_000, seed=17, replicates=np.arange(2)), "bnp")
    sigma = math.sqrt(math.log(1 + sd**2 / mean**2))
    dist = stats.lognorm(s=sigma, scale=math.exp(math.log(mean) - sigma**2 / 2))
    ref_mean = dist.expect(lambda v: v, lb=lo, ub=hi, conditional=True)
    ref_var = dist.expect(lambda v: (v - ref_mean) ** 2, lb=lo, ub=hi, conditional=True)
    assert x.min() >= lo and x.max() <= hi
    assert abs(x.mean() - ref_mean) < K * math.sqrt(ref_var / x.size)


# ----------------------------------------------------------------------------- correlations


def test_normal_pair_has_the_specified_pearson_correlation(tmp_path):
    r = 0.45
    spec = make(
        tmp_path,
        {"h": {"distribution": "normal", "mean": 170, "sd": 10}, "w": {"distribution": "normal", "mean": 80, "sd": 15}},
        correlations=[["h", "w", r]],
    )
    cohort = synthesize(spec, 50_000, seed=21, replicates=np.arange(2))
    h, w = pooled(cohort, "h"), pooled(cohort, "w")
    assert abs(np.corrcoef(h, w)[0, 1] - r) < K * (1 - r**2) / math.sqrt(h.size)


def test_lognormal_pair_has_the_gaussian_copula_spearman_correlation(tmp_path):
    r = -0.6
    spec = make(
        tmp_path,
        {
            "a": {"distribution": "lognormal", "mean": 2500, "sd": 3000},
            "b": {"distribution": "lognormal", "mean": 60, "sd": 20},
        },
        correlations=[["a", "b", r]],
    )
    cohort = synthesize(spec, 50_000, seed=22, replicates=np.arange(2))
    rho_s = stats.spearmanr(pooled(cohort, "a"), pooled(cohort, "b")).statistic
    expected = 6 / math.pi * math.asin(r / 2)
    n = cohort.n_replicates * cohort.n_patients
    # Fisher z of Spearman's rho has variance about 1.06 / (n - 3).
    assert abs(math.atanh(rho_s) - math.atanh(expected)) < K * math.sqrt(1.06 / (n - 3))


def test_positive_latent_correlation_means_binaries_co_occur(tmp_path):
    p1, p2, r = 0.3, 0.4, 0.5
    spec = make(
        tmp_path,
        {"d": {"distribution": "binary", "p": p1}, "e": {"distribution": "binary", "p": p2}},
        correlations=[["d", "e", r]],
    )
    cohort = synthesize(spec, 50_000, seed=23, replicates=np.arange(2))
    both = np.mean((pooled(cohort, "d") == 1) & (pooled(cohort, "e") == 1))
    # P(Z1 > Φ⁻¹(1-p1), Z2 > Φ⁻¹(1-p2)) = P(Z1 < Φ⁻¹(p1), Z2 < Φ⁻¹(p2)) for a bivariate normal.
    ref = stats.multivariate_normal(mean=[0, 0], cov=[[1, r], [r, 1]]).cdf([stats.norm.ppf(p1), stats.norm.ppf(p2)])
    assert ref > p1 * p2
    n = cohort.n_replicates * cohort.n_patients
    assert abs(both - ref) < K * math.sqrt(ref * (1 - ref) / n)


def test_positive_latent_correlation_orders_binary_and_categorical_with_a_normal(tmp_path):
    spec = make(
        tmp_path,
        {
            "x": {"distribution": "normal", "mean": 0, "sd": 1},
            "d": {"distribution": "binary", "p": 0.3},
            "c": {"distribution": "categorical", "levels": ["lo", "mid", "hi"], "p": [0.3, 0.4, 0.3]},
        },
        correlations=[["x", "d", 0.5], ["x", "c", 0.5]],
    )
    cohort = synthesize(spec, 20_000, seed=24, replicates=np.arange(1))
    x, d, c = pooled(cohort, "x"), pooled(cohort, "d"), pooled(cohort, "c")
    # E[X | D = 1] = r φ(t) / p with t = Φ⁻¹(1 - p): the mean of the upper tail times r.
    t = stats.norm.ppf(0.7)
    expected = 0.5 * stats.norm.pdf(t) / 0.3
    assert abs(x[d == 1].mean() - expected) < K / math.sqrt((d == 1).sum())
    means = [x[c == k].mean() for k in range(3)]
    assert means[0] < means[1] < means[2]


def test_uncorrelated_covariates_use_the_counter_based_normals_directly(tmp_path):
    spec = make(
        tmp_path,
        {"a": {"distribution": "normal", "mean": 5, "sd": 2}, "b": {"distribution": "normal", "mean": -1, "sd": 3}},
    )
    reps = np.array([0, 7, 2], dtype=np.int64)
    cohort = synthesize(spec, 50, seed=99, replicates=reps, stream="baseline")
    z = rng.normals(99, rng.stream_id("baseline"), reps, 50, 2)
    np.testing.assert_allclose(cohort.column("a"), 5 + 2 * z[:, :, 0], rtol=1e-14)
    np.testing.assert_allclose(cohort.column("b"), -1 + 3 * z[:, :, 1], rtol=1e-14)


# ---------------------------------------------------------------------------- derived columns


def test_derived_columns_are_computed_in_order(tmp_path):
    spec = make(
        tmp_path,
        {
            "height_cm": {"distribution": "normal", "mean": 170, "sd": 10, "min": 120, "max": 220},
            "weight_kg": {"distribution": "normal", "mean": 80, "sd": 15, "min": 30},
            "nyha": {"distribution": "categorical", "levels": ["II", "III"], "p": [0.6, 0.4]},
        },
        derived={
            "bmi": {"expr": "weight_kg / (height_cm / 100) ** 2", "unit": "kg/m2"},
            "obese": {"expr": "bmi >= 30"},
            "score": {"expr": "2 * obese + (nyha == 'III')"},
        },
    )
    cohort = synthesize(spec, 1000, seed=31, replicates=np.arange(2))
    assert cohort.names == ["height_cm", "weight_kg", "nyha", "bmi", "obese", "score"]
    bmi = cohort.column("weight_kg") / (cohort.column("height_cm") / 100) ** 2
    np.testing.assert_allclose(cohort.column("bmi"), bmi, rtol=1e-12)
    np.testing.assert_array_equal(cohort.column("obese"), (bmi >= 30).astype(float))
    np.testing.assert_array_equal(cohort.column("score"), 2 * (bmi >= 30) + (cohort.column("nyha") == 1))
    assert cohort.units["bmi"] == "kg/m2" and cohort.units["height_cm"] is None


def test_non_finite_derived_value_of_a_kept_patient_is_an_error(tmp_path):
    spec = make(tmp_path, {"x": {"distribution": "normal", "mean": 0, "sd": 1}}, derived={"lx": {"expr": "log(x)"}})
    with pytest.raises(SpecError) as info:
        synthesize(spec, 100, seed=1, replicates=np.arange(1))
    assert info.value.path == "derived.lx.expr"
    assert "nan" in info.value.reason and "x=" in info.value.reason


def test_non_finite_derived_values_of_rejected_candidates_are_fine(tmp_path):
    spec = make(
        tmp_path,
        {"x": {"distribution": "normal", "mean": 0, "sd": 1}},
        derived={"lx": {"expr": "log(x)"}},
        eligibility=["x > 0"],
    )
    cohort = synthesize(spec, 100, seed=1, replicates=np.arange(2))
    assert np.all(np.isfinite(cohort.column("lx")))


# ------------------------------------------------------------------------------ eligibility


def test_kept_patients_are_the_first_eligible_candidates(tmp_path):
    covariates = {
        "age": {"distribution": "normal", "mean": 60, "sd": 12},
        "nyha": {"distribution": "categorical", "levels": ["I", "II", "III"], "p": [0.3, 0.5, 0.2]},
    }
    spec = make(tmp_path, covariates, eligibility=["age >= 55", "nyha != 'I'"])
    reps = np.array([0, 3, 5])
    n = 300
    cohort = synthesize(spec, n, seed=41, replicates=reps)
    # Reference: without eligibility, patient k is candidate k; screen them by hand.
    unscreened = load_cohort(write_cohort(tmp_path, {"covariates": covariates}, name="all.yaml"))
    everyone = synthesize(unscreened, 4000, seed=41, replicates=reps)
    for i in range(reps.size):
        age, nyha = everyone.column("age")[i], everyone.column("nyha")[i]
        ok = np.flatnonzero((age >= 55) & (nyha != 0))
        np.testing.assert_array_equal(cohort.column("age")[i], age[ok[:n]])
        np.testing.assert_array_equal(cohort.column("nyha")[i], nyha[ok[:n]])
        assert cohort.n_screened[i] == ok[n - 1] + 1


def test_every_kept_patient_is_eligible_and_screening_reflects_the_rejection_rate(tmp_path):
    spec = make(
        tmp_path,
        {
            "age": {"distribution": "normal", "mean": 63.8, "sd": 11.5},
            "lvef": {"distribution": "normal", "mean": 35, "sd": 10},
        },
        eligibility=["age >= 60", "lvef <= 40"],
    )
    cohort = synthesize(spec, 2000, seed=42, replicates=np.arange(20))
    assert np.all(cohort.column("age") >= 60) and np.all(cohort.column("lvef") <= 40)
    q = stats.norm.sf((60 - 63.8) / 11.5) * stats.norm.cdf((40 - 35) / 10)
    screened = int(cohort.n_screened.sum())
    kept = cohort.n_replicates * cohort.n_patients
    assert np.all(cohort.n_screened >= cohort.n_patients)
    assert abs(kept / screened - q) < K * math.sqrt(q * (1 - q) / screened)


def test_too_few_eligible_candidates_is_a_clear_error(tmp_path):
    spec = make(
        tmp_path,
        {"age": {"distribution": "normal", "mean": 60, "sd": 10}, "lvef": {"distribution": "normal", "mean": 35, "sd": 10}},
        eligibility=["lvef < 35", "age > 110"],
    )
    with pytest.raises(SpecError) as info:
        synthesize(spec, 100, seed=1, replicates=np.arange(2))
    err = info.value
    assert err.file == str(spec.path) and err.path == "eligibility"
    assert err.reason.startswith("only ") and "% of candidates are eligible" in err.reason
    assert "'age > 110'" in err.reason


# ---------------------------------------------------------------------------- reproducibility

MIXED = {
    "age": {"distribution": "normal", "mean": 63.8, "sd": 11.5, "min": 18, "max": 95},
    "bnp": {"distribution": "lognormal", "mean": 2500, "sd": 3000, "min": 100},
    "female": {"distribution": "binary", "p": 0.3},
    "nyha": {"distribution": "categorical", "levels": ["I", "II", "III", "IV"], "p": [0.05, 0.7, 0.24, 0.01]},
}
MIXED_REST = {
    "derived": {"log_bnp": {"expr": "log(bnp)"}},
    "correlations": [["age", "bnp", 0.3], ["female", "age", 0.1], ["nyha", "bnp", 0.4]],
    "eligibility": ["age >= 40", "nyha in ['II', 'III', 'IV']", "log_bnp > 6"],
}


def assert_same(a: Cohort, b: Cohort) -> None:
    assert a.names == b.names
    for name in a.names:
        np.testing.assert_array_equal(a.column(name), b.column(name))
    np.testing.assert_array_equal(a.n_screened, b.n_screened)


def test_same_seed_gives_identical_cohorts(tmp_path):
    spec = make(tmp_path, MIXED, **MIXED_REST)
    assert_same(synthesize(spec, 500, 7, np.arange(3)), synthesize(spec, 500, 7, np.arange(3)))


def test_a_replicate_does_not_depend_on_which_replicates_are_synthesized_with_it(tmp_path):
    spec = make(tmp_path, MIXED, **MIXED_REST)
    full = synthesize(spec, 400, 7, np.arange(6))
    part = synthesize(spec, 400, 7, np.array([3, 4]))
    for name in full.names:
        np.testing.assert_array_equal(part.column(name), full.column(name)[3:5])
    np.testing.assert_array_equal(part.n_screened, full.n_screened[3:5])
    np.testing.assert_array_equal(part.replicates, [3, 4])


def test_cohort_does_not_depend_on_batch_size(tmp_path, monkeypatch):
    spec = make(tmp_path, MIXED, **MIXED_REST)
    reference = synthesize(spec, 400, 7, np.arange(5))
    monkeypatch.setattr(cohort_module, "BATCH_BYTES", 8 * 2**10)  # tiny batches, one replicate per group
    assert_same(synthesize(spec, 400, 7, np.arange(5)), reference)


def test_more_patients_extend_a_cohort_without_changing_the_first_ones(tmp_path):
    spec = make(tmp_path, MIXED, **MIXED_REST)
    small, large = synthesize(spec, 100, 7, np.arange(2)), synthesize(spec, 300, 7, np.arange(2))
    for name in small.names:
        np.testing.assert_array_equal(small.column(name), large.column(name)[:, :100])


def test_different_seeds_or_streams_give_different_cohorts(tmp_path):
    spec = make(tmp_path, MIXED, **MIXED_REST)
    a = synthesize(spec, 200, 7, np.arange(2))
    b = synthesize(spec, 200, 8, np.arange(2))
    c = synthesize(spec, 200, 7, np.arange(2), stream="other")
    assert not np.any(a.column("age") == b.column("age"))
    assert not np.any(a.column("age") == c.column("age"))
    assert not np.array_equal(a.column("age")[0], a.column("age")[1])


# ---------------------------------------------------------------------------------- Cohort


def test_cohort_arrays_shapes_and_helpers(tmp_path):
    spec = make(tmp_path, MIXED, **MIXED_REST)
    cohort = synthesize(spec, 50, 3, [4, 9])
    assert cohort.n_replicates == 2 and cohort.n_patients == 50
    assert cohort.names == ["age", "bnp", "female", "nyha", "log_bnp"]
    for values in cohort.columns.values():
        assert values.shape == (2, 50) and values.dtype == np.float64
        with pytest.raises(ValueError):
            values[0, 0] = 1.0  # read-only
    assert cohort.n_screened.dtype == np.int64 and cohort.replicates.dtype == np.int64
    frame = cohort.to_dataframe(1)
    assert list(frame.columns) == cohort.names and len(frame) == 50
    assert list(frame["nyha"].cat.categories) == ["I", "II", "III", "IV"]
    np.testing.assert_array_equal(frame["age"].to_numpy(), cohort.column("age")[1])
    with pytest.raises(KeyError, match="not a level"):
        cohort.column("nyha[V]")
    with pytest.raises(KeyError, match="not categorical"):
        cohort.column("age[III]")
    with pytest.raises(KeyError, match="no column"):
        cohort.column("lvef")


def test_zero_patients_and_bad_arguments(tmp_path):
    spec = make(tmp_path, MIXED, **MIXED_REST)
    empty = synthesize(spec, 0, 1, np.arange(3))
    assert empty.column("age").shape == (3, 0) and np.all(empty.n_screened == 0)
    with pytest.raises(ValueError):
        synthesize(spec, 10, 1, np.array([-1]))
    with pytest.raises(ValueError):
        synthesize(spec, 10, -5, np.arange(2))
    with pytest.raises(TypeError):
        synthesize(spec, 10.5, 1, np.arange(2))


def test_large_synthesis_stays_vectorized(tmp_path):
    covariates = {f"x{j}": {"distribution": "normal", "mean": 0, "sd": 1, "min": -3} for j in range(8)}
    covariates["b"] = {"distribution": "binary", "p": 0.4}
    covariates["c"] = {"distribution": "categorical", "levels": ["a", "b", "c"], "p": [0.2, 0.5, 0.3]}
    spec = make(tmp_path, covariates, eligibility=["x0 > -1", "c != 'a'"])
    synthesize(spec, 10, 1, np.arange(2))  # compile
    import time

    start = time.perf_counter()
    cohort = synthesize(spec, 5000, 1, np.arange(200))
    elapsed = time.perf_counter() - start
    assert cohort.column("x0").shape == (200, 5000)
    assert elapsed < 15.0  # about 1 s on 2 cores; generous for busy CI machines


# ------------------------------------------------------------------------------- spec errors

VALID = {
    "kind": "cohort",
    "name": "Adults with HFrEF",
    "description": "One line.",
    "sources": ["A citation"],
    "covariates": {
        "age": {"distribution": "normal", "mean": 63.8, "sd": 11.5, "min": 18, "max": 95, "unit": "years"},
        "nt_probnp": {"distribution": "lognormal", "mean": 2500, "sd": 3000, "unit": "pg/mL"},
        "sex_female": {"distribution": "binary", "p": 0.218},
        "nyha_class": {"distribution": "categorical", "levels": ["I", "II", "III", "IV"], "p": [0.05, 0.70, 0.24, 0.01]},
        "height_cm": {"distribution": "normal", "mean": 170, "sd": 10},
        "weight_kg": {"distribution": "normal", "mean": 80, "sd": 15},
    },
    "derived": {"bmi": {"expr": "weight_kg / (height_cm / 100) ** 2", "unit": "kg/m2"}},
    "correlations": [["height_cm", "weight_kg", 0.45], ["sex_female", "height_cm", -0.5], ["age", "nt_probnp", 0.2]],
    "eligibility": ["age >= 18", "nyha_class in ['II', 'III', 'IV']"],
}


def test_the_documented_example_loads_and_remembers_its_path(tmp_path):
    path = tmp_path / "hf.yaml"
    path.write_text(yaml.safe_dump(VALID, sort_keys=False), encoding="utf-8")
    spec = load_cohort(path)
    assert spec.path == path
    assert spec.names == ["age", "nt_probnp", "sex_female", "nyha_class", "height_cm", "weight_kg", "bmi"]
    assert spec.levels() == {"nyha_class": ("I", "II", "III", "IV")}
    assert spec.correlation[4, 5] == 0.45 and spec.correlation[5, 4] == 0.45
    assert [e.text for e in spec.eligibility_exprs] == VALID["eligibility"]
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec and again.path == path
    built = CohortSpec.model_validate(VALID)
    assert built.path is None and built.names == spec.names


def test_yaml_levels_that_are_booleans_get_a_hint(tmp_path):
    path = tmp_path / "yn.yaml"
    path.write_text(
        "kind: cohort\nname: x\ncovariates:\n  smoker: {distribution: categorical, levels: [yes, no], p: [0.2, 0.8]}\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as info:
        load_cohort(path)
    assert str(info.value) == (
        f"{path}: covariates.smoker.levels[0]: levels must be quoted strings (YAML reads yes/no/on/off/true/false "
        "as booleans), got True: write 'yes'"
    )


def edit(data: dict, key_path: str, value) -> None:
    """Set data[...] along a dotted path; value DELETE removes the key; APPEND adds to a list."""
    parts = key_path.split(".")
    node = data
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if value == "DELETE":
        del node[last]
    elif isinstance(value, tuple) and value[0] == "APPEND":
        node[last].append(value[1])
    else:
        node[last] = value


@pytest.mark.parametrize(
    ("key", "value", "where", "reason"),
    [
        ("covariates.age.sd", -1, "covariates.age.sd", "must be > 0, got -1"),
        ("covariates.age.sd", 0, "covariates.age.sd", "must be > 0, got 0"),
        ("covariates.age.sd", "wide", "covariates.age.sd", "valid number"),
        ("covariates.nt_probnp.mean", -3, "covariates.nt_probnp.mean", "must be > 0, got -3"),
        ("covariates.nt_probnp.min", -3, "covariates.nt_probnp.min", "must be >= 0 for a lognormal covariate, got -3"),
        ("covariates.age.min", 100, "covariates.age.min", "must be < max, got min 100 >= max 95"),
        ("covariates.age.min", 95, "covariates.age.min", "must be < max, got min 95 >= max 95"),
        ("covariates.age.min", 300, "covariates.age.min", "must be < max"),
        ("covariates.age.max", 1000, None, None),  # fine: a distant upper bound
        ("covariates.age.sdd", 3, "covariates.age.sdd", "unknown key for a normal covariate (valid keys: distribution, max, mean, min, sd, unit)"),
        ("covariates.age.distribution", "gamma", "covariates.age.distribution", "must be one of normal, lognormal, binary, categorical, got 'gamma'"),
        ("covariates.age.distribution", "DELETE", "covariates.age.distribution", "required key is missing"),
        ("covariates.age", 63.8, "covariates.age", "must be a mapping with a 'distribution' key, got 63.8"),
        ("covariates.sex_female.p", 1.5, "covariates.sex_female.p", "must be between 0 and 1, got 1.5"),
        ("covariates.sex_female.unit", "x", "covariates.sex_female.unit", "unknown key for a binary covariate (valid keys: distribution, p)"),
        ("covariates.nyha_class.p", [0.05, 0.70, 0.22, 0.01], "covariates.nyha_class.p", "must sum to 1, got 0.98"),
        ("covariates.nyha_class.p", [0.5, 0.5], "covariates.nyha_class.p", "needs one probability per level (4), got 2"),
        ("covariates.nyha_class.p", [1.2, -0.2, 0, 0], "covariates.nyha_class.p[0]", "must be between 0 and 1, got 1.2"),
        ("covariates.nyha_class.levels", ["I", "II", "II", "IV"], "covariates.nyha_class.levels[2]", "level 'II' is listed twice"),
        ("covariates.nyha_class.levels", ["I", "II", "III", 4], "covariates.nyha_class.levels[3]", "levels must be quoted strings, got 4: write '4'"),
        ("correlations", ("APPEND", ["height_cm", "weigth_kg", 0.3]), "correlations[3]", "unknown covariate 'weigth_kg' (covariates: age, nt_probnp, sex_female, nyha_class, height_cm, weight_kg)"),
        ("correlations", ("APPEND", ["weight_kg", "height_cm", 0.3]), "correlations[3]", "the pair (weight_kg, height_cm) is already given in correlations[0]"),
        ("correlations", ("APPEND", ["age", "weight_kg", 1.0]), "correlations[3]", "the correlation must be strictly between -1 and 1, got 1.0"),
        ("correlations", ("APPEND", ["age", "weight_kg", -1.2]), "correlations[3]", "the correlation must be strictly between -1 and 1, got -1.2"),
        ("correlations", ("APPEND", ["age", "age", 0.2]), "correlations[3]", "a covariate cannot be correlated with itself ('age')"),
        ("correlations", ("APPEND", ["age", "bmi", 0.2]), "correlations[3]", "'bmi' is derived; correlations are between sampled covariates"),
        ("correlations", ("APPEND", ["sex_female", "weight_kg", 0.9]), "correlations", "the correlation matrix is not positive definite (smallest eigenvalue -0."),
        ("eligibility", ("APPEND", "lvef <= 40"), "eligibility[2]", "unknown name 'lvef' (known: age, nt_probnp, sex_female, nyha_class, height_cm, weight_kg, bmi)"),
        ("eligibility", ("APPEND", "age + 1"), "eligibility[2]", "must be a condition (e.g. a comparison), got the number 'age + 1'"),
        ("eligibility", ("APPEND", "nyha_class == 'V'"), "eligibility[2]", "'V' is not a level of 'nyha_class' (levels: I, II, III, IV)"),
        ("eligibility", ("APPEND", "__import__('os').system('x')"), "eligibility[2]", "only the functions"),
        ("derived.bmi.expr", "weight_kg / height_m ** 2", "derived.bmi.expr", "unknown name 'height_m'"),
        ("derived.bmi.expr", "weight_kg.real", "derived.bmi.expr", "attribute access"),
        ("derived.age", {"expr": "1"}, "derived.age", "'age' is already a covariate"),
        ("derived.bmi", "weight_kg / 2", "derived.bmi", "must be a mapping like {expr: \"...\", unit: ...}, got 'weight_kg / 2'"),
        ("derived.bmi.expr", "DELETE", "derived.bmi.expr", "required key is missing"),
        ("derived.bmi.units", "kg/m2", "derived.bmi.units", "unknown key for a derived covariate (valid keys: expr, unit)"),
        ("covariates.weight kg", {"distribution": "binary", "p": 0.5}, "covariates.weight kg", "names must be identifiers"),
        ("covariates.2nd", {"distribution": "binary", "p": 0.5}, "covariates.2nd", "names must be identifiers"),
        ("covariates.lambda", {"distribution": "binary", "p": 0.5}, "covariates.lambda", "'lambda' is a reserved word"),
        ("covariates.__x", {"distribution": "binary", "p": 0.5}, "covariates.__x", "names cannot start with '__'"),
        ("covariates.log", {"distribution": "binary", "p": 0.5}, "covariates.log", "'log' is the name of a function"),
        ("covariates", {}, "covariates", "at least one covariate is needed"),
        ("kind", "disease", "kind", "must be 'cohort', got 'disease'"),
        ("kind", "DELETE", "kind", "required key is missing"),
        ("colour", "blue", "colour", "unknown key (valid keys: correlations, covariates, derived, description, eligibility, kind, name, sources, start)"),
    ],
)
def test_each_spec_error_names_file_key_path_and_reason(tmp_path, key, value, where, reason):
    data = copy.deepcopy(VALID)
    edit(data, key, value)
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    if where is None:
        load_cohort(path)
        return
    with pytest.raises(SpecError) as info:
        load_cohort(path)
    err = info.value
    assert err.file == str(path)
    assert err.path == where
    assert reason in err.reason
    assert str(err).startswith(f"{path}: {where}: ")


def test_truncation_range_with_negligible_mass_is_rejected(tmp_path):
    data = copy.deepcopy(VALID)
    data["covariates"]["age"].update(min=300, max=400)
    path = write_cohort(tmp_path, {k: v for k, v in data.items() if k not in ("kind", "name")})
    with pytest.raises(SpecError) as info:
        load_cohort(path)
    assert info.value.path == "covariates.age"
    assert info.value.reason.startswith("the truncation range [300, 400] holds a negligible share")


def test_missing_file_and_bad_yaml_are_spec_errors(tmp_path):
    with pytest.raises(SpecError, match="file not found"):
        load_cohort(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: cohort\ncovariates: {age: [\n", encoding="utf-8")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_cohort(bad)


# ---------------------------------------------------------------------------- shipped cohorts

SHIPPED = sorted(COHORTS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED or [None], ids=[p.name for p in SHIPPED] or ["none"])
def test_shipped_cohorts_load_and_synthesize(path):
    if path is None:
        pytest.skip("no cohort files in cohorts/")
    spec = load_cohort(path)
    cohort = synthesize(spec, 2000, seed=2024, replicates=np.arange(2))
    assert cohort.names == spec.names
    for name, values in cohort.columns.items():
        assert np.all(np.isfinite(values)), name
    for expr in spec.eligibility_exprs:
        assert expr.evaluate(cohort.columns).all(), expr.text
