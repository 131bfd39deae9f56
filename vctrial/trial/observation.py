"""What the trial observes of the simulated paths: censoring, analysis date, inclusion."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def endpoint_times(first_time, event_columns):
    """(R, n, A) time to the first of the endpoint's events under each arm."""
    R, n, A, _ = first_time.shape
    out = np.full((R, n, A), np.inf)
    for r in numba.prange(R):
        for i in range(n):
            for a in range(A):
                best = np.inf
                for e in event_columns:
                    best = min(best, first_time[r, i, a, e])
                out[r, i, a] = best
    return out


@numba.njit(cache=True, parallel=True)
def event_driven_dates(entry, t_event, t_loss, target, max_date):
    """(R,) calendar date (months) of the target-th observed endpoint event, capped at max_date.

    An event counts when it happens before the patient is lost (dropout, competing death).
    """
    R, n = entry.shape
    out = np.empty(R)
    for r in numba.prange(R):
        dates = np.empty(n)
        m = 0
        for i in range(n):
            if t_event[r, i] <= t_loss[r, i]:
                d = entry[r, i] + t_event[r, i]
                if d <= max_date:
                    dates[m] = d
                    m += 1
        if m >= target:
            out[r] = np.partition(dates[:m], target - 1)[target - 1]
        else:
            out[r] = max_date
    return out


def censor(t_event: np.ndarray, t_loss: np.ndarray, follow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observed time and event indicator: the event is seen if it comes before loss and the cut."""
    limit = np.minimum(t_loss, follow)
    return np.minimum(t_event, limit), t_event <= limit


def assigned(x: np.ndarray, arm: np.ndarray) -> np.ndarray:
    """(R, n, ...) values under each patient's own arm, from (R, n, A, ...) values under every arm."""
    idx = arm.astype(np.int64).reshape(arm.shape + (1,) * (x.ndim - 2))
    return np.take_along_axis(x, idx, axis=2)[:, :, 0]


def last_entry(entry: np.ndarray) -> np.ndarray:
    """(R,) calendar month of the last randomization; NaN in a replicate where nobody was randomized
    (e.g. sites that never recruit), so its duration is NaN rather than -inf."""
    enrolled = np.isfinite(entry)
    last = np.where(enrolled, entry, -np.inf).max(axis=1, initial=-np.inf)
    return np.where(enrolled.any(axis=1), last, np.nan)
