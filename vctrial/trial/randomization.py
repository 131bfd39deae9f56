"""Treatment allocation: simple, permuted-block and stratified permuted-block randomization, any ratio."""

from __future__ import annotations

import numba
import numpy as np

from vctrial import rng


def allocate(n: int, weights: list[int], method: str, block_size: int, seed: int,
             replicates: np.ndarray, *, block_sizes: list[int] | None = None,
             strata: np.ndarray | None = None) -> np.ndarray:
    """(R, n) arm index of each patient, in enrollment order.

    permuted_block: each consecutive block of ``block_size`` patients holds every arm in
    proportion to its weight, in a random order (the last block may be incomplete);
    simple: each patient independently, with probabilities proportional to the weights.

    With ``block_sizes`` (several sizes, each a multiple of the weights' total) every block
    draws its size at random from the list; with ``strata`` ((R, n) integer stratum codes) each
    stratum runs its own sequence of blocks, so arms stay balanced within every stratum to
    within half the largest block. Patients not enrolled may carry stratum -1 (skipped).
    """
    weights = np.asarray(weights, np.int64)
    stream = np.uint64(rng.stream_id("randomization"))
    reps = np.ascontiguousarray(replicates, np.int64)
    if method == "simple":
        return _simple_kernel(n, np.cumsum(weights) / weights.sum(), np.uint64(seed), stream, reps)
    sizes = [block_size] if block_sizes is None else list(block_sizes)
    if strata is None and len(sizes) == 1:
        per_block = np.repeat(np.arange(len(weights)), weights * (sizes[0] // weights.sum())).astype(np.int8)
        return _block_kernel(n, per_block, np.uint64(seed), stream, reps)
    if strata is None:
        strata = np.zeros((len(reps), n), np.int64)
    codes = np.ascontiguousarray(strata, np.int64)
    if codes.shape != (len(reps), n):
        raise ValueError(f"strata: shape {codes.shape}, expected {(len(reps), n)}")
    return _stratified_kernel(codes, np.asarray(sizes, np.int64), weights, int(codes.max(initial=0)) + 1,
                              np.uint64(seed), np.uint64(rng.stream_id("randomization:blocks")), reps)


def strata_balance(arm: np.ndarray, strata: np.ndarray, weights: list[int]) -> np.ndarray:
    """(R,) largest |n(stratum, arm) − share(arm)·n(stratum)| over strata and arms (patients)."""
    w = np.asarray(weights, np.float64) / np.sum(weights)
    R = arm.shape[0]
    G = int(strata.max(initial=0)) + 1
    ok = strata >= 0
    r_idx = np.broadcast_to(np.arange(R)[:, None], arm.shape)[ok]
    flat = (r_idx * G + strata[ok]) * len(w) + arm[ok].astype(np.int64)
    counts = np.bincount(flat, minlength=R * G * len(w)).reshape(R, G, len(w)).astype(np.float64)
    total = counts.sum(axis=2, keepdims=True)
    return np.abs(counts - total * w).max(axis=(1, 2))


@numba.njit(cache=True, parallel=True)
def _stratified_kernel(strata, sizes, weights, n_strata, seed, stream, replicates):
    """Permuted blocks run separately in each stratum, each block's size drawn from ``sizes``.

    Block b of stratum g is keyed by (replicate, g·2^32 + b): its size by the draw at slot 0, its
    order by the draws at slots 1..size, so a patient's arm depends only on the stratum's history.
    """
    R, n = strata.shape
    total = weights.sum()
    bmax = sizes.max()
    out = np.full((R, n), -1, np.int8)
    for r in numba.prange(R):
        key = rng.stream_key(seed, stream, replicates[r])
        block = np.empty((n_strata, bmax), np.int8)
        size = np.zeros(n_strata, np.int64)
        pos = np.zeros(n_strata, np.int64)
        count = np.zeros(n_strata, np.int64)
        keys = np.empty(bmax)
        template = np.empty(bmax, np.int8)
        for i in range(n):
            g = strata[r, i]
            if g < 0:
                continue
            if pos[g] == size[g]:  # open the stratum's next block
                bkey = np.uint64(g) * np.uint64(4294967296) + np.uint64(count[g])
                b = sizes[min(int(rng.uniform(key, bkey, 0) * sizes.shape[0]), sizes.shape[0] - 1)]
                m = 0
                for a in range(weights.shape[0]):
                    for _ in range(weights[a] * (b // total)):
                        template[m] = a
                        m += 1
                for j in range(b):
                    keys[j] = rng.uniform(key, bkey, j + 1)
                order = np.argsort(keys[:b])
                for j in range(b):
                    block[g, j] = template[order[j]]
                size[g] = b
                pos[g] = 0
                count[g] += 1
            out[r, i] = block[g, pos[g]]
            pos[g] += 1
    return out


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
