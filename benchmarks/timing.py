"""Timing helpers shared by the benchmarks: a batched call's median time, and a reference called one
replicate at a time."""

from __future__ import annotations

import time
import warnings

import numpy as np


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn()`` after one untimed warm-up call (which compiles or
    loads numba's cache)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def per_replicate(fn, n: int) -> tuple[float, np.ndarray]:
    """(seconds per replicate of ``fn(r)`` for r < n, the results as an array), after one untimed warm-up
    call (imports, first-call caches); the references' warnings are silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn(0)
        out = []
        t0 = time.perf_counter()
        for r in range(n):
            out.append(fn(r))
        elapsed = time.perf_counter() - t0
    return elapsed / n, np.array(out)
