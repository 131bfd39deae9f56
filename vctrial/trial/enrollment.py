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


def piecewise_exponential_times(ends: list[float], rates_per_month: list[float], shape: tuple[int, int],
                                stream: str, seed: int, replicates: np.ndarray) -> np.ndarray:
    """(R, n) times (months) of a piecewise-constant hazard, keyed by patient; ``inf`` if never.

    ``rates_per_month[j]`` holds on [ends[j-1], ends[j]) (ends[-1] = 0), the last rate from the
    last end on. The time solves H(t) = E for a unit exponential E = -log(1 - U), with the same U
    as :func:`exponential_times`, so a constant rate gives exactly the same times.
    """
    if len(rates_per_month) != len(ends) + 1:
        raise ValueError("need one more rate than period ends")
    if not ends:
        return exponential_times(rates_per_month[0], shape, stream, seed, replicates)
    u = rng.uniforms(np.uint64(seed), np.uint64(rng.stream_id(stream)), np.ascontiguousarray(replicates, np.int64),
                     shape[1], 1)[..., 0]
    target = -np.log1p(-u)
    starts = np.concatenate([[0.0], np.asarray(ends, np.float64)])
    rates = np.asarray(rates_per_month, np.float64)
    widths = np.diff(np.concatenate([starts, [np.inf]]))
    cum = np.concatenate([[0.0], np.cumsum(rates[:-1] * widths[:-1])])  # H at each period start
    out = np.full(shape, np.inf)
    for j in range(len(rates)):  # few periods: vectorized over patients
        inside = (target >= cum[j]) & ((target < cum[j + 1]) if j + 1 < len(cum) else True)
        if rates[j] > 0.0:
            out = np.where(inside, starts[j] + (target - cum[j]) / rates[j], out)
    return out
