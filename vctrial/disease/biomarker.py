"""Biomarker inputs of the disease kernel and the measurements a visit observes.

A biomarker's true value follows the mixed model with a mean-reverting process described in
:class:`vctrial.spec.disease.Biomarker`; the disease kernel (:mod:`vctrial.disease.multistate`)
steps it together with the events, since hazards may depend on it and intensification rules act on
it. This module prepares the per-patient parts (population mean at the covariates, random effects
drawn from the prior or from a patient's posterior) and adds measurement noise to recorded values.
The random effects and the noise are drawn by counter (patient key, visit day), so a patient's
trajectory is the same in every arm but for what the treatment changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from vctrial import rng
from vctrial.disease.multistate import Markers, linear_predictor
from vctrial.spec.disease import Biomarker

DAYS_PER_MONTH = 365.25 / 12.0


def marker_inputs(
    biomarkers: Sequence[Biomarker],
    column,
    shape: tuple[int, int],
    seed: int,
    replicates: np.ndarray,
    shift: np.ndarray,
    slope_change: np.ndarray,
    record_steps: np.ndarray,
    patient_keys: np.ndarray | None = None,
    random_effects: tuple[np.ndarray, np.ndarray] | None = None,
) -> Markers:
    """Kernel inputs for the disease model's ``biomarkers`` (in the model's order).

    Args:
        column: ``column(name)`` returns a covariate as an (R, n) array (or broadcastable to it).
        shift, slope_change: (A, B) or (R, A, B) treatment effect of each arm on each biomarker.
        record_steps: steps at which the kernel returns true values.
        patient_keys: (n,) random-number coordinate of each patient (default 0..n-1).
        random_effects: optional per-patient distribution of (b0, b1) replacing the prior, as
            (mean (B, n, 2), lower Cholesky factor of the covariance (B, n, 2, 2)), e.g. the posterior
            given a patient's measured values; drawn from the same standard normals as the prior.
    """
    R, n = shape
    B = len(biomarkers)
    keys = np.arange(n, dtype=np.int64) if patient_keys is None else np.asarray(patient_keys, np.int64)
    reps = np.asarray(replicates, np.int64)
    mean0 = np.zeros((R, n, B))
    b0 = np.zeros((R, n, B))
    b1 = np.zeros((R, n, B))
    n_keys = int(keys.max(initial=0)) + 1
    for j, b in enumerate(biomarkers):
        lp = linear_predictor(b.effects, column)
        mean0[..., j] = b.intercept + (0.0 if lp is None else np.broadcast_to(lp, (R, n)))
        z = rng.normals(np.uint64(seed), np.uint64(rng.stream_id(f"biomarker:{b.name}:random_effects")), reps,
                        n_keys, 2)[:, keys]
        z0, z1 = z[..., 0], z[..., 1]
        if random_effects is None:
            b0[..., j] = b.random_intercept_sd * z0
            b1[..., j] = b.random_slope_sd * (b.random_correlation * z0
                                              + np.sqrt(1.0 - b.random_correlation**2) * z1)
        else:
            m, c = random_effects[0][j], random_effects[1][j]
            b0[..., j] = m[None, :, 0] + c[None, :, 0, 0] * z0
            b1[..., j] = m[None, :, 1] + c[None, :, 1, 0] * z0 + c[None, :, 1, 1] * z1
    return Markers(mean0=mean0, b0=b0, b1=b1, shift=np.asarray(shift, np.float64),
                   slope_change=np.asarray(slope_change, np.float64),
                   record_steps=np.asarray(record_steps, np.int64))


def observe(biomarkers: Sequence[Biomarker], true: np.ndarray, months: np.ndarray, seed: int, replicates: np.ndarray,
            patient_keys: np.ndarray | None = None) -> np.ndarray:
    """Measured values (R, n, A, B, V): true values plus the visit's measurement noise, clipped.

    The noise of a visit is keyed by (patient key, visit day), the same in every arm and the same
    draw the kernel's intensification rule sees on that day.
    """
    R, n = true.shape[:2]
    keys = np.arange(n, dtype=np.int64) if patient_keys is None else np.asarray(patient_keys, np.int64)
    days = np.rint(np.asarray(months, np.float64) * DAYS_PER_MONTH).astype(np.int64)
    out = np.empty_like(true)
    for j, b in enumerate(biomarkers):
        noise = _noise(np.uint64(seed), np.uint64(rng.stream_id(f"biomarker:{b.name}:residual")),
                       np.asarray(replicates, np.int64), keys, days)  # (R, n, V)
        lo = -np.inf if b.min is None else b.min
        hi = np.inf if b.max is None else b.max
        out[:, :, :, j, :] = np.clip(true[:, :, :, j, :] + b.residual_sd * noise[:, :, None, :], lo, hi)
    return out


@numba.njit(cache=True, parallel=True)
def _noise(seed, stream, replicates, keys, days):
    R, n, V = replicates.shape[0], keys.shape[0], days.shape[0]
    out = np.empty((R, n, V))
    for r in numba.prange(R):
        key = rng.stream_key(seed, stream, replicates[r])
        for i in range(n):
            for v in range(V):
                out[r, i, v] = rng.normal(key, keys[i], days[v])
    return out
