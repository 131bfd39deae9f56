"""The people of one replicate: ages, sexes, regions, covariates and birth times, as arrays.

Ages and sexes come from the pyramid (or from the cohort, ``age_sex: cohort``). The other
covariates come from the cohort's Gaussian copula *conditional on each person's age and sex*:

- the latent normal of age is ``Φ⁻¹(F(age))`` with F the pyramid's age distribution (so the
  cohort's age marginal is replaced by the pyramid's, and its rank correlations with age are kept);
- the latent normal of sex is drawn from its conditional normal given the age latent, truncated to
  the side of the threshold that matches the person's sex (threshold from the pyramid's share of
  women);
- the remaining latents are drawn from their conditional multivariate normal given those two, and
  mapped to their marginals exactly as :mod:`vctrial.cohort` does.

Cohort eligibility criteria are not applied (a population is everyone; interventions carry
criteria). Newborns (``births_per_1000_per_year``) are extra rows whose ``age0`` is minus their
birth time, so ``age0 + t`` is their age once born; they are conditioned on age 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from vctrial import rng
from vctrial.cohort import marginal, synthesize, to_marginal
from vctrial.errors import SpecError
from vctrial.population.pyramid import age_cdf, female_share, load_pyramid, sample_age_sex
from vctrial.spec.cohort import BinaryCovariate
from vctrial.spec.population import PopulationScenario

_EDGE = 1e-9


@dataclass
class People:
    """Arrays of one replicate's population (rows are people, including the not yet born)."""

    age0: np.ndarray  # (n,) float64: age at time 0 in years (negative: born later)
    female: np.ndarray  # (n,) int8
    region: np.ndarray  # (n,) int16
    birth_year: np.ndarray  # (n,) float64: 0 for the initial population
    columns: dict[str, np.ndarray]  # covariates at time 0 (age column = age0)
    n_initial: int

    @property
    def n(self) -> int:
        return int(self.age0.shape[0])

    def column(self, name: str) -> np.ndarray:
        """A covariate, or a categorical indicator written ``name[level]`` (needs ``levels``)."""
        return self.columns[name]


def build_people(world: PopulationScenario, seed: int, replicate: int) -> People:
    """The population of one replicate (a pure function of the spec, seed and replicate)."""
    spec = world.spec
    pop = spec.population
    n0 = pop.size
    pyr = load_pyramid(pop.pyramid)
    births = _birth_times(world, seed, replicate)
    n = n0 + births.shape[0]
    if pop.age_sex == "cohort":
        cohort = synthesize(world.cohort, n, seed, np.array([replicate]), stream="population:cohort")
        columns = {k: np.array(v[0]) for k, v in cohort.columns.items()}
        age = columns[pop.age_covariate].copy()
        female = columns[pop.female_covariate].astype(np.int8)
    else:
        age, female = sample_age_sex(pyr, pop.age_min, pop.age_max, n, seed, replicate)
        if births.size:
            age[n0:] = 0.0
            p0 = pyr.weight[1, 0] / pyr.weight[:, 0].sum()
            u = rng.uniforms(np.uint64(seed), np.uint64(rng.stream_id("population:birth_sex")),
                             np.array([replicate], np.int64), n, 1)[0, n0:, 0]
            female[n0:] = (u < p0).astype(np.int8)
        columns = {}
        if world.cohort is not None:
            columns = conditional_covariates(world, age, female, seed, replicate)
    age0 = age.astype(np.float64)
    age0[n0:] -= births
    columns[pop.age_covariate] = age0
    columns[pop.female_covariate] = female.astype(np.float64)
    if world.cohort is not None:
        for name, expr in world.cohort.derived_exprs.items():
            columns[name] = np.asarray(expr.evaluate(columns), np.float64)
        levels = world.cohort.levels()
        for name, lv in levels.items():
            for code, level in enumerate(lv):
                columns[f"{name}[{level}]"] = (columns[name] == code).astype(np.float64)
    shares = np.cumsum([r.share for r in pop.regions])
    shares[-1] = 1.0
    u = rng.uniforms(np.uint64(seed), np.uint64(rng.stream_id("population:region")),
                     np.array([replicate], np.int64), n, 1)[0, :, 0]
    region = np.searchsorted(shares, u, side="right").astype(np.int16)
    birth_year = np.zeros(n)
    birth_year[n0:] = births
    return People(age0, female.astype(np.int8), region, birth_year, columns, n0)


def _birth_times(world: PopulationScenario, seed: int, replicate: int) -> np.ndarray:
    """Birth times (years) of a Poisson process at rate births_per_1000 × size / 1000 per year."""
    rate = world.spec.demography.births_per_1000_per_year * world.spec.population.size / 1000.0
    horizon = world.spec.horizon_years
    if rate <= 0:
        return np.zeros(0)
    expected = rate * horizon
    slots = int(expected + 8 * np.sqrt(expected) + 16)
    u = rng.uniforms(np.uint64(seed), np.uint64(rng.stream_id("population:births")),
                     np.array([replicate], np.int64), slots, 1)[0, :, 0]
    times = np.cumsum(-np.log1p(-u) / rate)
    return times[times < horizon]


def conditional_covariates(world: PopulationScenario, age: np.ndarray, female: np.ndarray, seed: int,
                           replicate: int) -> dict[str, np.ndarray]:
    """The cohort's covariates drawn from its copula given each person's age and sex."""
    spec = world.spec
    pop = spec.population
    cohort = world.cohort
    names = list(cohort.covariates)
    corr = cohort.correlation
    n = age.shape[0]
    pyr = load_pyramid(pop.pyramid)
    known: list[int] = []
    z_known: list[np.ndarray] = []
    if pop.age_covariate in names:
        ja = names.index(pop.age_covariate)
        u_age = np.clip(age_cdf(pyr, pop.age_min, pop.age_max, age), _EDGE, 1 - _EDGE)
        known.append(ja)
        z_known.append(special.ndtri(u_age))
    if pop.female_covariate in names:
        js = names.index(pop.female_covariate)
        if not isinstance(cohort.covariates[pop.female_covariate], BinaryCovariate):
            raise SpecError(cohort.source, f"covariates.{pop.female_covariate}", "must be binary (1 for women)")
        c = special.ndtri(1.0 - female_share(pyr, pop.age_min, pop.age_max))
        if known:
            r = corr[js, known[0]]
            mean, sd = r * z_known[0], np.sqrt(1.0 - r * r)
        else:
            mean, sd = np.zeros(n), 1.0
        u = rng.uniforms(np.uint64(seed), np.uint64(rng.stream_id("population:sex_latent")),
                         np.array([replicate], np.int64), n, 1)[0, :, 0]
        cut = special.ndtr((c - mean) / sd)
        p = np.where(female == 1, cut + u * (1.0 - cut), u * cut)
        known.append(js)
        z_known.append(mean + sd * special.ndtri(np.clip(p, _EDGE, 1 - _EDGE)))
    rest = [j for j in range(len(names)) if j not in known]
    out: dict[str, np.ndarray] = {}
    if rest:
        if known:
            ckk = corr[np.ix_(known, known)]
            crk = corr[np.ix_(rest, known)]
            gain = np.linalg.solve(ckk, crk.T).T  # (|R|, |K|)
            cov = corr[np.ix_(rest, rest)] - gain @ crk.T
            mean = gain @ np.stack(z_known)  # (|R|, n)
        else:
            cov = corr[np.ix_(rest, rest)]
            mean = np.zeros((len(rest), n))
        chol = np.linalg.cholesky(cov + 1e-12 * np.eye(len(rest)))
        eps = rng.normals(np.uint64(seed), np.uint64(rng.stream_id("population:covariates")),
                          np.array([replicate], np.int64), n, len(rest))[0]
        z = mean + chol @ eps.T
        del eps
        for row, j in enumerate(rest):
            out[names[j]] = to_marginal(z[row], marginal(cohort.covariates[names[j]]))
    return out
