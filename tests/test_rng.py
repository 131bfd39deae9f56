"""Counter-based random numbers: uniform, independent streams, pure functions of their coordinates."""

import math

import numba
import numpy as np
from scipy import stats

from vctrial import rng


def test_stream_ids_are_stable_and_distinct():
    assert rng.stream_id("dropout") == rng.stream_id("dropout")
    assert len({rng.stream_id(n) for n in ("dropout", "cohort", "progression", "transition")}) == 4
    # a fixed value: the id must not depend on Python's hash seed or the platform
    assert rng.stream_id("progression") == int.from_bytes(
        __import__("hashlib").blake2b(b"progression", digest_size=8).digest(), "little") >> 1


def test_uniforms_pass_kolmogorov_smirnov_and_streams_are_uncorrelated():
    reps = np.arange(4)
    a = rng.uniforms(np.uint64(1), np.uint64(rng.stream_id("a")), reps, 25_000, 2)
    b = rng.uniforms(np.uint64(1), np.uint64(rng.stream_id("b")), reps, 25_000, 2)
    assert a.min() >= 0 and a.max() < 1
    assert stats.kstest(a.ravel(), "uniform").pvalue > 1e-3
    r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert abs(r) < 4 / np.sqrt(a.size)
    # neighbouring patients and steps are not correlated either
    assert abs(np.corrcoef(a[:, :-1, 0].ravel(), a[:, 1:, 0].ravel())[0, 1]) < 4 / np.sqrt(a[:, 1:, 0].size)


def test_normals_have_unit_variance_and_are_normal():
    z = rng.normals(np.uint64(9), np.uint64(rng.stream_id("z")), np.arange(2), 50_000, 1).ravel()
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / z.size)
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_draws_depend_only_on_their_coordinates():
    s = np.uint64(rng.stream_id("x"))
    full = rng.uniforms(np.uint64(5), s, np.arange(6), 100, 3)
    part = rng.uniforms(np.uint64(5), s, np.array([4, 2]), 100, 3)
    np.testing.assert_array_equal(full[[4, 2]], part)
    other_seed = rng.uniforms(np.uint64(6), s, np.arange(6), 100, 3)
    assert not np.any(full == other_seed)


def test_fast_normal_quantile_matches_scipy_and_its_draws_are_normal():
    from scipy import stats

    from vctrial import rng as r

    @numba.njit
    def quantiles(p):
        return np.array([r.normal_quantile(x) for x in p])

    @numba.njit
    def draws(key, n):
        return np.array([r.normal_fast(key, i, 7) for i in range(n)])

    p = np.concatenate([np.logspace(-15, -1, 300), np.linspace(0.01, 0.99, 2001), 1 - np.logspace(-15, -1, 300)])
    np.testing.assert_allclose(quantiles(p), stats.norm.ppf(p), rtol=2e-9, atol=1e-12)
    x = draws(np.uint64(r.stream_key(np.uint64(3), np.uint64(5), 0)), 200_000)
    assert stats.kstest(x, "norm").pvalue > 0.001
    assert abs(x.mean()) < 4 / math.sqrt(x.size) and abs(x.var() - 1) < 4 * math.sqrt(2 / x.size)
