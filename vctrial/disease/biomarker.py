"""Continuous biomarker trajectories from a linear mixed model, observed at visits.

y_i(t) = intercept + Σ coef·(x_i − ref) + b0_i + (slope + b1_i)·t + treatment_a(t) + ε_i(t)

t in years since randomization; (b0, b1) bivariate normal per patient; ε independent normal
measurement noise at each visit; treatment_a(t) = shift_a + slope_change_a·t for t > 0 (baseline
is measured before treatment). The random effects and the noise are drawn by counter (patient,
visit day), so a patient's trajectory is the same in every arm but for the treatment term.
"""

from __future__ import annotations

import numba
import numpy as np

from vctrial import rng
from vctrial.disease.multistate import linear_predictor
from vctrial.spec.disease import Biomarker

DAYS_PER_MONTH = 365.25 / 12.0


def simulate_visits(
    spec: Biomarker,
    column,
    shape: tuple[int, int],
    visit_months: np.ndarray,
    shift: np.ndarray,
    slope_change_per_year: np.ndarray,
    seed: int,
    replicates: np.ndarray,
    random_effects: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Observed and noise-free values at visits under every arm.

    Args:
        column: ``column(name)`` returns a cohort covariate as an (R, n) array.
        visit_months: (V,) visit times in months since randomization (0 = baseline).
        shift, slope_change_per_year: (A,) treatment effect of each arm.
        random_effects: optional per-patient distribution of (b0, b1) replacing the prior, as
            (mean (n, 2), lower Cholesky factor of the covariance (n, 2, 2)), e.g. the posterior
            given a patient's measured values; drawn from the same standard normals as the prior.
    Returns:
        observed (R, n, A, V) with measurement noise and clipping, true (R, n, A, V) without noise.
    """
    lp = linear_predictor(spec.effects, column)
    mean = np.full(shape, spec.intercept) + (lp if lp is not None else 0.0)
    days = np.rint(np.asarray(visit_months, np.float64) * DAYS_PER_MONTH).astype(np.int64)
    if random_effects is None:
        re_mean, re_chol = np.zeros((1, 2)), np.zeros((1, 2, 2))
    else:
        re_mean = np.ascontiguousarray(random_effects[0], np.float64)
        re_chol = np.ascontiguousarray(random_effects[1], np.float64)
        if re_mean.shape != (shape[1], 2) or re_chol.shape != (shape[1], 2, 2):
            raise ValueError("random_effects must be (n, 2) means and (n, 2, 2) Cholesky factors")
    observed, true = _visits_kernel(
        np.ascontiguousarray(mean, np.float64),
        np.asarray(visit_months, np.float64) / 12.0,
        days,
        np.asarray(shift, np.float64),
        np.asarray(slope_change_per_year, np.float64),
        spec.slope_per_year,
        spec.random_intercept_sd,
        spec.random_slope_sd,
        spec.random_correlation,
        spec.residual_sd,
        -np.inf if spec.min is None else spec.min,
        np.inf if spec.max is None else spec.max,
        np.uint64(seed),
        np.uint64(rng.stream_id(f"biomarker:{spec.name}:random_effects")),
        np.uint64(rng.stream_id(f"biomarker:{spec.name}:residual")),
        np.ascontiguousarray(replicates, np.int64),
        random_effects is not None,
        re_mean,
        re_chol,
    )
    return observed, true


@numba.njit(cache=True, parallel=True)
def _visits_kernel(mean, years, days, shift, slope_change, slope, sd0, sd1, corr, sd_eps, lo, hi,
                   seed, stream_re, stream_eps, replicates, given, re_mean, re_chol):
    R, n = mean.shape
    A = shift.shape[0]
    V = years.shape[0]
    observed = np.empty((R, n, A, V))
    true = np.empty((R, n, A, V))
    partner = np.sqrt(1.0 - corr * corr)
    for r in numba.prange(R):
        key_re = rng.stream_key(seed, stream_re, replicates[r])
        key_eps = rng.stream_key(seed, stream_eps, replicates[r])
        for i in range(n):
            z0 = rng.normal(key_re, i, 0)
            z1 = rng.normal(key_re, i, 1)
            if given:
                b0 = re_mean[i, 0] + re_chol[i, 0, 0] * z0
                b1 = re_mean[i, 1] + re_chol[i, 1, 0] * z0 + re_chol[i, 1, 1] * z1
            else:
                b0 = sd0 * z0
                b1 = sd1 * (corr * z0 + partner * z1)
            for v in range(V):
                t = years[v]
                base = mean[r, i] + b0 + (slope + b1) * t
                noise = sd_eps * rng.normal(key_eps, i, days[v])
                for a in range(A):
                    y = base
                    if t > 0.0:
                        y += shift[a] + slope_change[a] * t
                    true[r, i, a, v] = y
                    observed[r, i, a, v] = min(max(y + noise, lo), hi)
    return observed, true
