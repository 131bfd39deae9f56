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


def _tolerate_cache_write_errors() -> None:
    """Numba's compiled-code cache (``cache=True``) is an optimization: when it cannot be written (a full
    disk, a file-size limit, a read-only installation) the run goes on without it instead of failing
    with the OSError. Installed once, before any kernel is compiled (every kernel module imports this
    one)."""
    try:
        from numba.core import caching
    except ImportError:  # a numba without this module: leave it as it is
        return
    save = getattr(caching.Cache, "save_overload", None)
    if save is None or getattr(save, "_vctrial_tolerant", False):
        return

    def save_overload(self, sig, data):
        try:
            save(self, sig, data)
        except OSError:
            pass

    save_overload._vctrial_tolerant = True
    caching.Cache.save_overload = save_overload


_tolerate_cache_write_errors()

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


# Acklam's rational approximation of the standard normal quantile (relative error below 1.2e-9):
# central region coefficients (a, b) and tail coefficients (c, d).
_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
      -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
      -1.328068155288572e01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
      4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
_P_LOW = 0.02425


@numba.njit(inline="always")
def _tail(q):
    num = ((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]
    return num / ((((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0)


@numba.njit(inline="always")
def normal_quantile(p):
    """Standard normal quantile of p in (0, 1), by Acklam's rational approximation: no transcendental
    function in the central 95%, so a draw costs about a third of Box-Muller's."""
    if p < _P_LOW:
        return _tail(np.sqrt(-2.0 * np.log(p)))
    if p > 1.0 - _P_LOW:
        return -_tail(np.sqrt(-2.0 * np.log1p(-p)))
    q = p - 0.5
    r = q * q
    num = (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * q
    return num / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)


@numba.njit(inline="always")
def normal_fast(key, patient, step):
    """Standard normal at (key, patient, step) from one hash by the quantile function (for per-step
    processes, where the draw is in the hot loop)."""
    z = combine(combine(key, patient), step)
    return normal_quantile(((z >> np.uint64(11)) + 0.5) * _INV53)


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
