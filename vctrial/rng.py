"""Counter-based random numbers: every draw is a pure function of its coordinates.

A draw is keyed by (root seed, stream, replicate, patient, step). Streams are named after the
decision they serve (``"cohort"``, ``"progression"``, ``"dropout"``...) and turned into integers by
a stable hash, so adding a stream never shifts another one's draws. Because nothing depends on
the order in which draws are taken, results are identical however replicates are split across
threads, processes or machines, and the same patient meets the same draws in every arm (common
random numbers).

The mixer is splitmix64's finalizer; two rounds chain the coordinates.
"""

from __future__ import annotations

import hashlib

import numba
import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_INV53 = 1.0 / 9007199254740992.0
_TWO_PI = 2.0 * np.pi


def stream_id(name: str) -> int:
    """Stable 63-bit integer for a stream name (independent of Python's hash seed)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@numba.njit(inline="always")
def mix(z):
    """splitmix64 finalizer: a bijective avalanche of a uint64."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@numba.njit(inline="always")
def combine(key, value):
    """Key for a child coordinate: mix(key + value * golden ratio)."""
    return mix(np.uint64(key) + np.uint64(value) * _GOLD)


@numba.njit(inline="always")
def stream_key(seed, stream, replicate):
    """Key of one replicate's stream; patients and steps are combined into it."""
    return combine(combine(mix(np.uint64(seed)), stream), replicate)


@numba.njit(inline="always")
def uniform(key, patient, step):
    """Uniform on [0, 1) at (key, patient, step); 53 random bits."""
    z = combine(combine(key, patient), step)
    return (z >> np.uint64(11)) * _INV53


@numba.njit(inline="always")
def uniform_open(key, patient, step):
    """Uniform on (0, 1]: safe under log."""
    return 1.0 - uniform(key, patient, step)


@numba.njit(inline="always")
def normal(key, patient, step):
    """Standard normal at (key, patient, step) by Box-Muller on two sub-draws."""
    u1 = uniform_open(key, patient, np.uint64(2) * np.uint64(step))
    u2 = uniform(key, patient, np.uint64(2) * np.uint64(step) + np.uint64(1))
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2)


@numba.njit(cache=True)
def normals(seed, stream, replicates, n_patients, n_cols):
    """Standard normals of shape (len(replicates), n_patients, n_cols); column = step index."""
    out = np.empty((replicates.shape[0], n_patients, n_cols))
    for r in range(replicates.shape[0]):
        key = stream_key(seed, stream, replicates[r])
        for i in range(n_patients):
            for j in range(n_cols):
                out[r, i, j] = normal(key, i, j)
    return out


@numba.njit(cache=True)
def uniforms(seed, stream, replicates, n_patients, n_cols):
    """Uniforms on [0, 1) of shape (len(replicates), n_patients, n_cols)."""
    out = np.empty((replicates.shape[0], n_patients, n_cols))
    for r in range(replicates.shape[0]):
        key = stream_key(seed, stream, replicates[r])
        for i in range(n_patients):
            for j in range(n_cols):
                out[r, i, j] = uniform(key, i, j)
    return out
