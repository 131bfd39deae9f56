"""Small population files written on the fly for the population tests."""

from __future__ import annotations

from pathlib import Path

import yaml

ILLNESS_DEATH = {
    "kind": "disease", "name": "illness-death (constant hazards)", "time_step_months": 1,
    "initial_state": "well",
    "states": [{"name": "well", "utility": 0.9}, {"name": "ill", "utility": 0.6},
               {"name": "dead", "absorbing": True, "utility": 0.0}],
    "transitions": [
        {"name": "onset", "from": "well", "to": "ill", "rate_per_year": 0.3},
        {"name": "recovery", "from": "ill", "to": "well", "rate_per_year": 0.5},
        {"name": "death_well", "from": "well", "to": "dead", "rate_per_year": 0.1},
        {"name": "death_ill", "from": "ill", "to": "dead", "rate_per_year": 0.4},
    ],
}


def write(tmp: Path, name: str, data: dict) -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def chronic_files(tmp: Path, disease: dict | None = None, **population) -> Path:
    """A chronic population file over ``disease`` (default: the constant-hazard illness-death model)."""
    write(tmp, "disease.yaml", disease or ILLNESS_DEATH)
    spec = {
        "kind": "population", "name": "test population",
        "population": {"size": 20_000, "age_min": 40, "age_max": 80},
        "horizon_years": 5,
        "demography": {"ageing": False, "background_mortality": False},
        "disease": "disease.yaml",
        "costs": {"discount_rate_per_year": 0.0},
        "outputs": {"interval_days": 365.25, "age_groups": [0, 60, 200]},
        "scenarios": [{"name": "baseline"}],
    }
    spec.update(population)
    return write(tmp, "population.yaml", spec)


def sir_file(tmp: Path, size: int = 20_000, r0: float = 2.0, mean_days: float = 4.0, seeds: int = 20,
             **extra) -> Path:
    """Well-mixed SIR on the community layer with the given basic reproduction number."""
    from vctrial.disease.infection import duration_params, expected_days

    c = 10.0
    beta = r0 / (c * expected_days(*duration_params("exponential", mean_days, None)))
    spec = {
        "kind": "population", "name": "well-mixed SIR",
        "population": {"size": size},
        "horizon_years": 1,
        "demography": {"background_mortality": False},
        "infection": {
            "model": "sir", "infectious": {"distribution": "exponential", "mean_days": mean_days},
            "initial_infected": seeds,
            "layers": {"community": {"contacts_per_day": c, "beta": beta}},
        },
        "costs": {"discount_rate_per_year": 0.0},
        "outputs": {"interval_days": 1, "calendar_days": 7, "age_groups": [0, 200]},
        "scenarios": [{"name": "baseline"}],
    }
    spec.update(extra)
    return write(tmp, "sir.yaml", spec)
