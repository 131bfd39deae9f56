"""Trial conduct: who stops, never starts or switches treatment, as per-patient switch schedules.

Draws are keyed by patient on their own streams ("discontinuation", "non_adherence",
"crossover"), the same in every arm, so a patient's conduct is part of their counterfactual twin:
the true effect of a simulated trial is then the effect of the treatment *policy* (intention to
treat), which is what the trial's analysis estimates.
"""

from __future__ import annotations

import numpy as np

from vctrial import rng
from vctrial.disease.multistate import Switching
from vctrial.spec.protocol import Protocol
from vctrial.trial.enrollment import exponential_times


def switching(protocol: Protocol, shape: tuple[int, int], n_steps: int, seed: int,
              replicates: np.ndarray) -> Switching | None:
    """The protocol's switch schedule for a batch, or None when treatment is taken as assigned."""
    c = protocol.spec.conduct
    if c.discontinuation is None and c.non_adherence is None and c.crossover is None:
        return None
    R, n = shape
    arms = [a.name for a in protocol.spec.arms]
    A = len(arms)
    dt = protocol.disease.time_step_months
    never = n_steps + 1
    step = np.full((R, n, A), never, np.int32)
    to_arm = np.arange(A, dtype=np.int64)
    reps = np.ascontiguousarray(replicates, np.int64)
    active = range(1, A)
    if c.discontinuation is not None:
        t = exponential_times(c.discontinuation.rate_per_year / 12.0, shape, "discontinuation", seed, reps)
        when = np.minimum(np.ceil(t / dt - 1e-9), never).astype(np.int32)
        for a in active:
            step[..., a] = np.minimum(step[..., a], when)
            to_arm[a] = 0
    if c.non_adherence is not None:
        u = rng.uniforms(np.uint64(seed), np.uint64(rng.stream_id("non_adherence")), reps, n, 1)[..., 0]
        for a in active:
            step[..., a] = np.where(u < c.non_adherence.fraction, 0, step[..., a])
            to_arm[a] = 0
    trigger_event = np.full(A, -1, np.int64)
    trigger_to = np.arange(A, dtype=np.int64)
    delay = np.zeros(A)
    ok = np.zeros((R, n, A), np.bool_)
    co = c.crossover
    if co is not None:
        src = arms.index(co.from_arm or arms[0])
        dst = arms.index(co.to_arm or arms[1])
        trigger_event[src] = protocol.disease.event_names.index(co.after_event)
        trigger_to[src] = dst
        delay[src] = co.delay_months
        u = rng.uniforms(np.uint64(seed), np.uint64(rng.stream_id("crossover")), reps, n, 1)[..., 0]
        ok[..., src] = u < co.fraction
    return Switching(step, to_arm, trigger_event, trigger_to, delay, ok)


def effect_profile(effect, n_steps: int, step_months: float, sub: int = 64) -> np.ndarray:
    """(n_steps,) mean hazard multiplier of a hazard effect over each step of treatment time.

    With the base hazard constant within a step, the step's cumulative hazard is multiplied by the
    step average of the hazard ratio (midpoint rule on ``sub`` points; exact for a constant effect).
    """
    if not getattr(effect, "time_varying", False):
        return np.full(n_steps, effect.hazard_ratio)
    u = (np.arange(n_steps)[:, None] + (np.arange(sub) + 0.5)[None, :] / sub) * step_months
    return np.asarray(effect.hazard_ratio_at(u)).mean(axis=1)

