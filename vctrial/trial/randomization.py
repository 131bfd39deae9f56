"""Treatment allocation: simple and permuted-block randomization with any allocation ratio."""

from __future__ import annotations

import numba
import numpy as np

from vctrial import rng


def allocate(n: int, weights: list[int], method: str, block_size: int, seed: int,
             replicates: np.ndarray) -> np.ndarray:
    """(R, n) arm index of each patient, in enrollment order.

    permuted_block: each consecutive block of ``block_size`` patients holds every arm in
    proportion to its weight, in a random order (the last block may be incomplete);
    simple: each patient independently, with probabilities proportional to the weights.
    """
    weights = np.asarray(weights, np.int64)
    stream = np.uint64(rng.stream_id("randomization"))
    reps = np.ascontiguousarray(replicates, np.int64)
    if method == "simple":
        return _simple_kernel(n, np.cumsum(weights) / weights.sum(), np.uint64(seed), stream, reps)
    per_block = np.repeat(np.arange(len(weights)), weights * (block_size // weights.sum())).astype(np.int8)
    return _block_kernel(n, per_block, np.uint64(seed), stream, reps)


@numba.njit(cache=True, parallel=True)
def _simple_kernel(n, cumulative, seed, stream, replicates):
    R = replicates.shape[0]
    out = np.empty((R, n), np.int8)
    for r in numba.prange(R):
        key = rng.stream_key(seed, stream, replicates[r])
        for i in range(n):
            u = rng.uniform(key, i, 0)
            a = 0
            while a < cumulative.shape[0] - 1 and u >= cumulative[a]:
                a += 1
            out[r, i] = a
    return out


@numba.njit(cache=True, parallel=True)
def _block_kernel(n, per_block, seed, stream, replicates):
    R = replicates.shape[0]
    b = per_block.shape[0]
    out = np.empty((R, n), np.int8)
    for r in numba.prange(R):
        key = rng.stream_key(seed, stream, replicates[r])
        keys = np.empty(b)
        for start in range(0, n, b):
            for j in range(b):
                keys[j] = rng.uniform(key, start + j, 0)
            order = np.argsort(keys)
            for j in range(min(b, n - start)):
                out[r, start + j] = per_block[order[j]]
    return out
