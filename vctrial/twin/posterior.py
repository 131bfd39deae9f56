"""Conditioning on the patient's own measurements: the posterior of the biomarker random effects.

The biomarker random effects b = (b0, b1) ~ N(0, G) of the mixed model are replaced by their
posterior given the patient's measured values (see :func:`posterior_random_effects`).
"""

from __future__ import annotations

import math

import numpy as np

from vctrial.disease import multistate as ms
from vctrial.spec.disease import Biomarker


def prior_covariance(b: Biomarker) -> np.ndarray:
    """G, the 2×2 covariance of the random intercept and slope."""
    c = b.random_correlation * b.random_intercept_sd * b.random_slope_sd
    return np.array([[b.random_intercept_sd**2, c], [c, b.random_slope_sd**2]])


def biomarker_mean(b: Biomarker, column) -> np.ndarray:
    """Population mean of the biomarker at time zero, intercept + Σ coef·(x − ref), per patient."""
    lp = ms.linear_predictor(b.effects, column)
    return b.intercept + (np.zeros(1) if lp is None else np.asarray(lp, np.float64))


def posterior_random_effects(b: Biomarker, mean0: np.ndarray, patient: np.ndarray, years: np.ndarray,
                             values: np.ndarray, n_patients: int) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean (P, 2) and covariance (P, 2, 2) of (b0, b1) given measured values.

    Args:
        mean0: (P,) population mean at time zero (see :func:`biomarker_mean`).
        patient, years, values: (J,) patient index, time in years (≤ 0 for history), measured value.
    The design row of a measurement at t is (1, τ(t)) with τ the model's slope time scale (t, or
    (1 − e^(−κt))/κ when slopes fade); the mean-reverting process W is treated as extra independent
    noise (variance residual_sd² + process_sd²), an approximation that ignores its autocorrelation
    and so widens the forecast a little. Patients without measurements keep the prior N(0, G).
    Vectorized over patients.
    """
    G = prior_covariance(b)
    P = n_patients
    mean0 = np.broadcast_to(np.asarray(mean0, np.float64), (P,))
    patient = np.asarray(patient, np.int64)
    years = np.asarray(years, np.float64)
    kappa = 0.0 if b.slope_half_life_years is None else math.log(2.0) / b.slope_half_life_years
    tau = years if kappa == 0.0 else -np.expm1(-kappa * years) / kappa
    resid = np.asarray(values, np.float64) - mean0[patient] - b.slope_per_year * tau
    noise_var = b.residual_sd**2 + b.process_sd**2
    if patient.size and noise_var <= 0:
        raise ValueError(f"{b.name}: conditioning needs residual_sd > 0")
    s2 = noise_var if noise_var > 0 else 1.0
    info = np.zeros((P, 2, 2))  # ZᵀZ / σ² per patient
    info[:, 0, 0] = np.bincount(patient, minlength=P) / s2
    info[:, 0, 1] = info[:, 1, 0] = np.bincount(patient, tau, minlength=P) / s2
    info[:, 1, 1] = np.bincount(patient, tau * tau, minlength=P) / s2
    score = np.stack([np.bincount(patient, resid, minlength=P),
                      np.bincount(patient, tau * resid, minlength=P)], axis=1) / s2  # Zᵀr / σ²
    cov = G @ np.linalg.inv(np.eye(2) + info @ G)
    cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
    mean = np.einsum("pij,pj->pi", cov, score)
    return mean, cov


def cholesky_2x2(cov: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of (P, 2, 2) positive semi-definite matrices (zeros allowed)."""
    l00 = np.sqrt(np.maximum(cov[:, 0, 0], 0.0))
    l10 = np.divide(cov[:, 1, 0], l00, out=np.zeros_like(l00), where=l00 > 0)
    l11 = np.sqrt(np.maximum(cov[:, 1, 1] - l10 * l10, 0.0))
    out = np.zeros_like(cov)
    out[:, 0, 0], out[:, 1, 0], out[:, 1, 1] = l00, l10, l11
    return out
