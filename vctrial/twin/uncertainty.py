"""The twin's two kinds of uncertainty: parameter draws of the effects, and the split of an outcome's
variance into the patient's chance and the model's parameters (law of total variance)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from vctrial import rng

if TYPE_CHECKING:
    from vctrial.twin.plan import TwinPlan

LEVEL = 0.95
Z95 = 1.959963984540054  # standard normal 97.5% quantile: a 95% interval spans ±Z95 SD
STATISTICS = ("mean", "param_lower", "param_upper", "param_resolved", "mc_se", "sd_chance", "sd_parameters",
              "sd_total", "chance_lower", "chance_upper", "total_lower", "total_upper")


def sample_parameters(plan: TwinPlan, seed: int, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hazard ratios (D, A, K) and biomarker shifts (D, A, B) of each draw's parameter draw.

    Parameter draw m = d // L has one standard normal per parameter q, keyed by
    (seed, "twin:parameters", m, q): the same in every chunk, for every patient, whatever N is, and
    one draw however many effects share the parameter. They are correlated by the parameters'
    Cholesky factor C (z ↦ C z), then each effect j is point_j + SD_j · (C z)_{q(j)}.
    """
    draws = np.asarray(draws, np.int64)
    D, A, K, B = draws.shape[0], plan.n_arms, plan.rate.shape[1], len(plan.biomarkers)
    J = plan.effect_point.shape[0]
    Q = plan.parameter_chol.shape[0]
    outer = draws // plan.inner_draws
    z = rng.normals(np.uint64(seed), np.uint64(rng.stream_id("twin:parameters")), outer, max(Q, 1), 1)[:, :Q, 0]
    z = z @ plan.parameter_chol.T  # (D, Q) correlated standard normals
    value = plan.effect_point[None, :] + plan.effect_sd[None, :] * z[:, plan.effect_parameter]  # (D, J)
    log_hr = np.zeros((D, A, K))
    shift = np.zeros((D, A, B))
    for j in range(J):  # a handful of effects, vectorized over draws
        target = log_hr if plan.effect_is_hazard[j] else shift
        target[:, plan.effect_arm[j], plan.effect_target[j]] += value[:, j]
    return np.exp(log_hr), shift


def decompose(y: np.ndarray, parameter_draws: int, varies: np.ndarray | bool = True,
              level: float = LEVEL, ranges: bool = True) -> dict[str, np.ndarray]:
    """Mean and uncertainty of per-draw values ``y`` (D, ...) with D = M parameter draws × L chance draws.

    Args:
        varies: where the parameters acting on the value vary between parameter draws (broadcast
            to ``y.shape[1:]``); elsewhere the parameter part is zero by construction.
    Returns arrays of shape y.shape[1:]: ``mean``; the 95% parameter interval ``param_lower/upper``
    (NaN where nothing varies); ``param_resolved``, 1 where the between-draw spread is significant
    (ANOVA F-test at 5%), else 0 and the interval is the unshrunk, conservative one; ``mc_se``, the Monte Carlo
    standard error of the mean; the SDs of the patient's chance, of the parameters and in total
    (law of total variance); and the 95% ranges of a single outcome given the parameters
    (``chance_*``, centred per parameter draw) and overall (``total_*``, predictive); these two
    need a sort over the draws and are NaN unless ``ranges`` (they say little for a 0/1 outcome).
    """
    from scipy.stats import f as f_dist

    D = y.shape[0]
    M = int(parameter_draws)
    L = D // M
    if M * L != D:
        raise ValueError("draws must be a multiple of parameter_draws")
    varies = np.broadcast_to(np.asarray(varies, bool), y.shape[1:]) & (M > 1)
    q = [(1 - level) / 2, (1 + level) / 2]
    g = y.reshape((M, L) + y.shape[1:])
    gm = g.sum(axis=1) / L  # one pass of sums and sums of squares (0/1 and year-scale values: no cancellation)
    gsq = np.einsum("ml...,ml...->m...", g, g) / L
    mean = gm.mean(axis=0)
    total_var = np.maximum(gsq.mean(axis=0) - mean * mean, 0.0) * D / (D - 1)
    out = {"mean": mean, "param_lower": np.full_like(mean, np.nan), "param_upper": np.full_like(mean, np.nan),
           "param_resolved": np.zeros_like(mean), "mc_se": np.sqrt(total_var / D), "sd_chance": np.sqrt(total_var),
           "sd_parameters": np.zeros_like(mean), "sd_total": np.sqrt(total_var)}
    centred = y
    if varies.any():
        within = (np.maximum(gsq - gm * gm, 0.0) * L / (L - 1)).mean(axis=0)
        between = gm.var(axis=0, ddof=1)
        param_var = np.maximum(between - within / L, 0.0)
        critical = f_dist.ppf(0.95, M - 1, M * (L - 1))
        resolved = L * between > critical * within
        # resolved: shrink the group means so their spread is the parameter variance alone;
        # unresolved: keep them as they are (wider than the parameter interval: conservative)
        k = np.sqrt(np.divide(param_var, between, out=np.ones_like(between), where=between > 0))
        k = np.where(resolved, k, 1.0)
        lo, hi = np.quantile(mean + k * (gm - mean), q, axis=0)
        for key, value in (("param_lower", lo), ("param_upper", hi), ("param_resolved", resolved.astype(float)),
                           ("mc_se", np.sqrt(between / M)), ("sd_chance", np.sqrt(within)),
                           ("sd_parameters", np.sqrt(param_var)), ("sd_total", np.sqrt(within + param_var))):
            out[key] = np.where(varies, value, out[key])
        centred = np.where(varies, (g - gm[:, None] + mean).reshape(y.shape), y)
    if ranges:
        out["chance_lower"], out["chance_upper"] = np.quantile(centred, q, axis=0)
        out["total_lower"], out["total_upper"] = np.quantile(y, q, axis=0)
    else:
        for key in ("chance_lower", "chance_upper", "total_lower", "total_upper"):
            out[key] = np.full_like(mean, np.nan)
    return out


def option_varies(plan: TwinPlan) -> np.ndarray:
    """(A,) True for options with an effect drawn from a confidence interval."""
    varies = np.zeros(plan.n_arms, bool)
    varies[plan.effect_arm[plan.effect_sd > 0]] = True
    if plan.variants is not None:  # the disease model's parameters vary under every option
        varies[:] = True
    return varies & (plan.parameter_draws > 1)


def dataset_varies(ds: xr.Dataset) -> np.ndarray:
    """(A,) True for options whose sampled effects differ between parameter draws."""
    varies = np.zeros(ds.sizes["option"], bool)
    if ds.attrs.get("calibration_file") and int(ds.attrs.get("parameter_draws", 1)) > 1:
        varies[:] = True  # the disease model's parameter draws act under every option
    for name in ("hazard_ratio", "biomarker_shift"):
        if name in ds:
            v = ds[name].transpose("option", "draw", ...).values
            varies |= (v != v[:, :1]).reshape(v.shape[0], -1).any(axis=1)
    return varies
