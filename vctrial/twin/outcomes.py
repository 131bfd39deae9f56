"""The outcomes a twin reports per draw: each event, any event, death, the endpoint, life-years and QALYs."""

from __future__ import annotations

import numpy as np

RISK, YEARS = "risk", "years"


def outcome_names(events, endpoint: np.ndarray) -> list[tuple[str, str]]:
    """(name, kind) of the summarized outcomes: each event, any event, death, endpoint, LY, QALYs."""
    names = [(e, RISK) for e in events]
    names += [("any_event", RISK), ("all_cause_death", RISK)]
    if endpoint.any():
        names.append(("endpoint", RISK))
    return names + [("life_years", YEARS), ("qalys", YEARS)]


def outcomes_from_paths(first_time: np.ndarray, death_time: np.ndarray, time_in_state: np.ndarray,
                        absorbing: np.ndarray, utility: np.ndarray, endpoint: np.ndarray) -> np.ndarray:
    """(..., O) per draw: event indicators by the horizon, life-years and QALYs (years)."""
    happened = np.isfinite(first_time)
    cols = [happened, happened.any(axis=-1)[..., None], np.isfinite(death_time)[..., None]]
    if endpoint.any():
        cols.append(happened[..., endpoint].any(axis=-1)[..., None])
    alive_months = time_in_state[..., ~absorbing].sum(axis=-1)
    cols += [(alive_months / 12.0)[..., None], ((time_in_state * utility).sum(axis=-1) / 12.0)[..., None]]
    return np.concatenate([c.astype(np.float64) for c in cols], axis=-1)
