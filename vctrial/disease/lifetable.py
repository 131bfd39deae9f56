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


def hazard_per_month(name: str = "us_ssa", multiplier: float = 1.0,
                     remove: tuple[str, ...] = ()) -> np.ndarray:
    """Force of mortality (1/month) of shape (2, MAX_AGE + 1): row 0 male, row 1 female.

    Constant within each year of age: mu_x = -ln(1 - q_x); q = 1 at the last age is capped so
    the hazard stays finite (death within a month is then near-certain).

    ``remove`` names causes of death that a disease model simulates itself (see :func:`known_causes`).
    The life table is all-cause, so using it as background mortality next to an explicit cause would
    count those deaths twice; with ``remove`` the result is the cause-deleted hazard
    ``mu_all(x) * (1 - share(x)) * multiplier``, share from :func:`cause_share` (US 2019 data cited in
    ``vctrial/data/cause_share_us.csv``).
    """
    table = life_table(name)
    q = np.stack([table["q_male"], table["q_female"]])
    q = np.clip(q, 0.0, 1.0 - 1e-9)
    mu = -np.log1p(-q) / 12.0
    if remove:
        mu = mu * (1.0 - cause_share(tuple(remove)))
    return multiplier * mu


@lru_cache(maxsize=None)
def _cause_table(name: str = "us") -> dict[str, np.ndarray]:
    """Per cause, an array (2, MAX_AGE + 1) of the share of deaths at each age from that cause.

    Read from ``cause_share_{name}.csv`` (age groups, age_hi exclusive); the rows of each cause must tile
    ages 0..MAX_AGE, and the causes must be disjoint (their shares at an age add to at most 1).
    """
    text = resources.files("vctrial.data").joinpath(f"cause_share_{name}.csv").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    header = rows[0].split(",")
    if header != ["age_lo", "age_hi", "cause", "share_male", "share_female"]:
        raise ValueError(f"cause_share_{name}.csv: unexpected header {header}")
    out: dict[str, np.ndarray] = {}
    for row in rows[1:]:
        lo, hi, cause, male, female = row.split(",")
        share = out.setdefault(cause, np.full((2, MAX_AGE + 1), np.nan))
        share[:, int(lo):min(int(hi), MAX_AGE + 1)] = np.array([float(male), float(female)])[:, None]
    for cause, share in out.items():
        if np.isnan(share).any() or (share < 0).any() or (share > 1).any():
            raise ValueError(f"cause_share_{name}.csv: shares of {cause!r} do not cover ages 0..{MAX_AGE} within [0, 1]")
        share.flags.writeable = False
    if out and (sum(out.values()) > 1.0 + 1e-9).any():
        raise ValueError(f"cause_share_{name}.csv: shares of the causes add to more than 1")
    return out


def known_causes(name: str = "us") -> tuple[str, ...]:
    """Causes with shipped death shares in ``cause_share_{name}.csv``, e.g. ``cardiovascular``."""
    return tuple(sorted(_cause_table(name)))


def cause_share(causes: tuple[str, ...], name: str = "us") -> np.ndarray:
    """Share of all deaths at each single year of age due to any of ``causes``: shape (2, MAX_AGE + 1).

    Row 0 male, row 1 female; a step function over the source's age groups. The shipped causes are
    disjoint ICD-10 underlying-cause groups, so the share of a union is the sum. Source, year and
    definitions (e.g. cardiovascular = diseases of heart + cerebrovascular) are in the CSV's header.
    """
    if isinstance(causes, str):
        causes = (causes,)
    table = _cause_table(name)
    unknown = [c for c in causes if c not in table]
    if unknown:
        raise ValueError(f"unknown cause(s) {unknown} for cause_share_{name}.csv; known: {list(known_causes(name))}")
    share = np.zeros((2, MAX_AGE + 1))
    for cause in dict.fromkeys(causes):
        share += table[cause]
    return share
