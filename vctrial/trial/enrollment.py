"""Enrollment calendar: when each randomized patient enters the trial."""

from __future__ import annotations

import numba
import numpy as np

from vctrial import rng


def uniform_accrual(n: int, duration_months: float, seed: int, replicates: np.ndarray) -> np.ndarray:
    """(R, n) entry times in months, increasing in patient index.

    Uniform accrual over [0, duration]: the sorted entry times are the order statistics of n
    uniforms, drawn directly as normalised cumulative sums of n + 1 exponential gaps, so patient i
    is always the i-th to enter (randomization follows that order).
    """
    return _accrual_kernel(n, float(duration_months), np.uint64(seed),
                           np.uint64(rng.stream_id("enrollment")), np.ascontiguousarray(replicates, np.int64))


@numba.njit(cache=True, parallel=True)
def _accrual_kernel(n, duration, seed, stream, replicates):
    R = replicates.shape[0]
    out = np.empty((R, n))
    for r in numba.prange(R):
        key = rng.stream_key(seed, stream, replicates[r])
        total = 0.0
        for i in range(n):
            total += -np.log(rng.uniform_open(key, i, 0))
            out[r, i] = total
        total += -np.log(rng.uniform_open(key, n, 0))
        for i in range(n):
            out[r, i] *= duration / total
    return out


def exponential_times(rate_per_month: float, shape: tuple[int, int], stream: str, seed: int,
                      replicates: np.ndarray) -> np.ndarray:
    """(R, n) exponential times (months) keyed by patient; ``inf`` when the rate is zero."""
    if rate_per_month <= 0.0:
        return np.full(shape, np.inf)
    u = rng.uniforms(np.uint64(seed), np.uint64(rng.stream_id(stream)), np.ascontiguousarray(replicates, np.int64),
                     shape[1], 1)[..., 0]
    return -np.log1p(-u) / rate_per_month
