"""Assurance: the probability of success when the treatment effect itself is uncertain.

With ``analysis.assurance`` each replicate runs at its own draw of every hazard ratio given with a
95% interval (lognormal, centred on ``hazard_ratio``, whose central 95% spans ``hazard_ratio_ci``),
so the rejection rate averages the power over what is known of the effect (O'Hagan, Stevens &
Campbell 2005, Pharmaceutical Statistics 4:187). Draws are keyed by (seed, stream, replicate,
parameter): the same for a replicate in every chunk, on every worker, and for every protocol of a
comparison that names the same parameters.
"""

from __future__ import annotations

import math

import numpy as np

from vctrial import rng
from vctrial.spec.protocol import HazardEffect, Protocol, parameter_correlation_matrix

STREAM = "trial:assurance"
Z95 = 1.959963984540054
SUB = 64  # sub-points per step of a delayed or waning effect (as conduct.effect_profile)


def uncertain_effects(protocol: Protocol) -> list[tuple[int, int, str, HazardEffect]]:
    """(arm, transition index, parameter name, effect) of every hazard effect with an interval."""
    names = [t.name for t in protocol.disease.transitions]
    found = []
    for a, arm in enumerate(protocol.spec.arms):
        for j, e in enumerate(arm.effects):
            if isinstance(e, HazardEffect) and e.hazard_ratio_ci is not None:
                found.append((a, names.index(e.transition), getattr(e, "parameter", None) or f" arms[{a}].effects[{j}]",
                              e))
    return found


def log_hazard_ratio_draws(protocol: Protocol, seed: int, replicates: np.ndarray) -> np.ndarray:
    """(R, J) drawn log hazard ratio of each uncertain effect (``uncertain_effects`` order)."""
    effects = uncertain_effects(protocol)
    params: dict[str, int] = {}
    for _, _, name, _ in effects:
        params.setdefault(name, len(params))
    chol = np.linalg.cholesky(parameter_correlation_matrix(list(params), protocol.spec.parameter_correlations))
    z = rng.normals(np.uint64(seed), np.uint64(rng.stream_id(STREAM)), np.asarray(replicates, np.int64),
                    len(params), 1)[:, :, 0] @ chol.T
    out = np.empty((len(replicates), len(effects)))
    for j, (_, _, name, e) in enumerate(effects):
        sd = (math.log(e.hazard_ratio_ci[1]) - math.log(e.hazard_ratio_ci[0])) / (2 * Z95)
        out[:, j] = math.log(e.hazard_ratio) + sd * z[:, params[name]]
    return out


def sampled_hazard_ratios(protocol: Protocol, fixed: np.ndarray, seed: int, replicates: np.ndarray) -> np.ndarray:
    """(R, A, K, T) hazard ratios: ``fixed`` (A, K, T), the protocol's profile at its stated effects, with
    each uncertain effect's factor replaced by its draw for the replicate. A delayed or waning effect
    keeps its shape in treatment time: the step average of exp(log HR_r × f(u)), f the effect's share
    at treatment time u (0 during a delay, halving while it wanes)."""
    dt = protocol.disease.time_step_months
    T = fixed.shape[2]
    draws = log_hazard_ratio_draws(protocol, seed, replicates)
    out = np.broadcast_to(fixed, (len(replicates),) + fixed.shape).copy()
    for j, (a, k, _, e) in enumerate(uncertain_effects(protocol)):
        if getattr(e, "time_varying", False):
            u = (np.arange(T)[:, None] + (np.arange(SUB) + 0.5)[None, :] / SUB) * dt
            share = np.log(e.model_copy(update={"hazard_ratio": math.e}).hazard_ratio_at(u))  # (T, SUB)
            stated = np.exp(math.log(e.hazard_ratio) * share).mean(axis=1)
            drawn = np.exp(draws[:, j, None, None] * share[None]).mean(axis=2)  # (R, T)
        else:
            stated, drawn = np.full(T, e.hazard_ratio), np.exp(draws[:, j, None]) * np.ones(T)
        out[:, a, k, :] *= drawn / stated
    return out
