"""Background mortality from the shipped period life table."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

MAX_AGE = 119


@lru_cache(maxsize=None)
def life_table(name: str = "us_ssa") -> dict[str, np.ndarray]:
    """Columns of a shipped life table (``age``, ``q_male``, ``q_female``, ``e_male``, ``e_female``).

    q_x is the probability of dying within a year at exact age x; the source and year are cited in
    the CSV's header comment.
    """
    text = resources.files("vctrial.data").joinpath(f"lifetable_{name}.csv").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    header = rows[0].split(",")
    data = np.array([[float(v) for v in row.split(",")] for row in rows[1:]])
    return {h: data[:, i] for i, h in enumerate(header)}


def hazard_per_month(name: str = "us_ssa", multiplier: float = 1.0) -> np.ndarray:
    """Force of mortality (1/month) of shape (2, MAX_AGE + 1): row 0 male, row 1 female.

    Constant within each year of age: mu_x = -ln(1 - q_x); q = 1 at the last age is capped so
    the hazard stays finite (death within a month is then near-certain).
    """
    table = life_table(name)
    q = np.stack([table["q_male"], table["q_female"]])
    q = np.clip(q, 0.0, 1.0 - 1e-9)
    return multiplier * -np.log1p(-q) / 12.0
