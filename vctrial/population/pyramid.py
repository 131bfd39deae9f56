"""Ages and sexes from a shipped population pyramid, drawn with counter-based random numbers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from vctrial import rng
from vctrial.disease.lifetable import life_table


@dataclass(frozen=True)
class Pyramid:
    """Single-year weights of an age–sex structure: ``weight[sex, age]`` (0 male, 1 female), ages 0..99."""

    name: str
    weight: np.ndarray  # (2, 100), people (any unit)

    def restrict(self, age_min: int, age_max: int) -> np.ndarray:
        """(2, 100) weights with ages outside [age_min, age_max) set to zero, normalised to sum 1."""
        w = self.weight.copy()
        w[:, :age_min] = 0.0
        w[:, age_max:] = 0.0
        total = w.sum()
        if total <= 0:
            raise ValueError(f"no one in the pyramid between ages {age_min} and {age_max}")
        return w / total


@lru_cache(maxsize=None)
def load_pyramid(name: str = "us_2022") -> Pyramid:
    """Read ``vctrial/data/pyramid_<name>.csv`` (five-year groups) into single years of age.

    Within a closed group people are spread evenly over its years; within the oldest group they
    follow the survivorship l(x) of the shipped life table (a stationary population inside it).
    """
    text = resources.files("vctrial.data").joinpath(f"pyramid_{name}.csv").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    header = rows[0].split(",")
    data = np.array([[float(v) for v in row.split(",")] for row in rows[1:]])
    col = {h: data[:, i] for i, h in enumerate(header)}
    weight = np.zeros((2, 100))
    table = life_table("us_ssa")
    last = len(data) - 1
    for g in range(len(data)):
        lo, hi = int(col["age_lo"][g]), int(col["age_hi"][g])
        for sex, key, qkey in ((0, "male", "q_male"), (1, "female", "q_female")):
            if g == last:
                q = table[qkey][lo:hi]
                lx = np.concatenate([[1.0], np.cumprod(1.0 - q)[:-1]])
                weight[sex, lo:hi] = col[key][g] * lx / lx.sum()
            else:
                weight[sex, lo:hi] = col[key][g] / (hi - lo)
    return Pyramid(name, weight)


def sample_age_sex(pyramid: Pyramid, age_min: int, age_max: int, n: int, seed: int,
                   replicate: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ages (years, continuous) and sexes (1 = female) of persons first..first+n-1.

    Person i's cell (sex, year of age) is the inverse CDF of one uniform; the age within the year is
    a second uniform. Draws are keyed by (seed, "population:age_sex", replicate, person).
    """
    w = pyramid.restrict(age_min, age_max).ravel()  # index = sex * 100 + age
    cum = np.cumsum(w)
    cum[-1] = 1.0
    u = rng.uniforms(np.uint64(seed), np.uint64(rng.stream_id("population:age_sex")),
                     np.array([replicate], np.int64), first + n, 2)[0, first:]
    cell = np.minimum(np.searchsorted(cum, u[:, 0], side="right"), w.size - 1)
    female = (cell >= 100).astype(np.int8)
    age = (cell % 100) + u[:, 1]
    return age, female


def age_cdf(pyramid: Pyramid, age_min: int, age_max: int, age: np.ndarray) -> np.ndarray:
    """CDF of age (both sexes) in the restricted pyramid, linear within each year of age."""
    w = pyramid.restrict(age_min, age_max).sum(axis=0)
    cum = np.concatenate([[0.0], np.cumsum(w)])
    a = np.clip(age, 0.0, 100.0)
    year = np.minimum(a.astype(np.int64), 99)
    return np.clip(cum[year] + w[year] * (a - year), 0.0, 1.0)


def female_share(pyramid: Pyramid, age_min: int, age_max: int) -> float:
    """Share of women in the restricted pyramid."""
    return float(pyramid.restrict(age_min, age_max)[1].sum())
