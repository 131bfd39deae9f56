"""Population results: the Dataset layout, and each scenario against the baseline with Monte Carlo
intervals (events and deaths averted, QALYs and life-years gained, incremental cost, ICER)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr
import yaml
from scipy import stats

import vctrial
from vctrial.population.epidemic import DAYS_PER_YEAR
from vctrial.population.run import grid, simulate_chunk, step_days
from vctrial.results import content_hash, spec_text
from vctrial.spec.population import INFECTION_STATES, PopulationScenario

CELLS = ("age_group", "region")
# variable -> (dims after scenario and replicate, units, long name)
VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "incidence": (("time", *CELLS), "events", "incident events in the period ({incidence})"),
    "prevalence": (("time", *CELLS), "1", "share of the living in {prevalence} at the end of the period"),
    "deaths": (("time", *CELLS), "deaths", "deaths from all causes in the period"),
    "life_years": (("time", *CELLS), "years", "life-years lived in the period (undiscounted)"),
    "qalys": (("time", *CELLS), "QALY", "quality-adjusted life-years lived in the period, discounted to time 0"),
    "costs": (("time", *CELLS), "{currency}", "costs incurred in the period (disease and interventions), discounted to time 0"),
    "alive": (("time", *CELLS), "people", "people alive at the end of the period"),
    "events": (("time", "event"), "events", "events of each kind in the period"),
    "state_count": (("time", "state"), "people", "people in each state at the end of the period"),
    "delivered": (("time", "intervention"), "deliveries", "tests, doses or treatment starts delivered in the period"),
    "intervention_costs": (("time", "intervention"), "{currency}", "unit and ongoing costs of each intervention, discounted"),
}


def population_job(world: PopulationScenario):
    from vctrial.execute import Job

    grid(world)  # a bad output grid stops before any work
    return Job(simulate_chunk, world, world.spec.name,
               world.spec.population.size * len(world.spec.scenarios))


def run_population(world: PopulationScenario, replicates: int, seed: int, options=None) -> xr.Dataset:
    """Simulate ``replicates`` replicates of every scenario; returns the results Dataset."""
    from vctrial.execute import ExecOptions, run_jobs

    options = options or ExecOptions()
    (arrays,) = run_jobs([population_job(world)], replicates, seed, options)
    return build_population_dataset(world, seed, arrays, np.arange(replicates))


def spec_hash(world: PopulationScenario) -> str:
    """Hash of everything in the specs that determines results, as held in memory (no file is read): the
    resolved population spec, its scenarios' interventions with their changes applied, the cohort and
    disease, the hazard ratios borrowed from trial protocols, and a calibration's disease draws if any."""
    return content_hash(world.spec, world.scenario_interventions, world.cohort, world.disease, world.hazard_ratios,
                        getattr(world, "disease_draws", None))


def referenced_texts(world: PopulationScenario) -> str:
    """The resolved cohort and disease specs (YAML) and the borrowed hazard ratios, from memory."""
    parts = []
    for what, spec in (("cohort", world.cohort), ("disease", world.disease)):
        if spec is not None:
            source = getattr(spec, "path", None)
            parts.append(f"# --- {what}{f' ({source})' if source is not None else ''}\n{spec_text(spec)}")
    if world.hazard_ratios:
        borrowed = yaml.safe_dump({k: dict(v) for k, v in world.hazard_ratios.items()}, sort_keys=False)
        parts.append(f"# --- hazard ratios borrowed from trial protocols (effect_from)\n{borrowed}")
    return "\n".join(parts)


def build_population_dataset(world: PopulationScenario, seed: int, arrays: dict[str, np.ndarray],
                             replicates: np.ndarray) -> xr.Dataset:
    """Arrays (replicate, scenario, ...) into the documented (scenario, replicate, ...) layout."""
    spec = world.spec
    total, _, m = grid(world)
    sd = step_days(world)
    ends = np.minimum(np.arange(m, total + m, m), total)
    edges = spec.outputs.age_groups
    labels = [f"{_g(a)}-{_g(b)}" for a, b in zip(edges, edges[1:])]
    if world.kind == "chronic":
        events = world.disease.event_names
        states = [s.name for s in world.disease.states]
        d = world.disease
        inc = spec.outputs.incidence_events or [
            t.name for t in d.transitions if t.from_ == d.initial_state
            and not next(s for s in d.states if s.name == t.to).absorbing]
        prev = spec.outputs.prevalence_states or [s.name for s in d.states if s.name != d.initial_state and not s.absorbing]
    else:
        events = ["infection", "infection_death", "background_death"]
        states = list(INFECTION_STATES)
        inc, prev = ["infection"], ["exposed", "infectious"]
    coords = {
        "scenario": [s.name for s in spec.scenarios],
        "replicate": np.asarray(replicates, np.int64),
        "time": ("time", ends * sd / DAYS_PER_YEAR, {"units": "years", "long_name": "end of the period, years from the start"}),
        "day": ("time", np.round(ends * sd).astype(np.int64), {"units": "days", "long_name": "end of the period, days from the start"}),
        "age_group": ("age_group", labels, {"long_name": "age at the time (years; last group open)"}),
        "age_lower": ("age_group", np.asarray(edges[:-1], float), {"units": "years"}),
        "region": [r.name for r in spec.population.regions],
        "event": events,
        "state": states,
        "intervention": [iv.name for iv in spec.interventions],
    }
    fmt = {"currency": spec.costs.currency, "incidence": ", ".join(inc), "prevalence": ", ".join(prev)}
    data_vars = {}
    for name, values in arrays.items():
        dims, units, long_name = VARIABLES[name]
        data_vars[name] = (("scenario", "replicate") + dims, np.swapaxes(values, 0, 1),
                           {"units": units.format(**fmt), "long_name": long_name.format(**fmt)})
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update({
        "title": f"vctrial: {spec.name}",
        "kind": "population",
        "model": world.kind,
        "population_name": spec.name,
        "population_file": "" if world.path is None else str(world.path),
        "population_text": spec_text(world.spec),
        "referenced_files": "\n".join(str(p) for p in world.referenced),
        "referenced_texts": referenced_texts(world),
        "spec_hash": spec_hash(world),
        "seed": int(seed),
        "vctrial_version": vctrial.__version__,
        "population_size": int(spec.population.size),
        "horizon_years": float(spec.horizon_years),
        "discount_rate_per_year": float(spec.costs.discount_rate_per_year),
        "currency": spec.costs.currency,
        **({"willingness_to_pay_per_qaly": float(spec.costs.willingness_to_pay_per_qaly)}
           if spec.costs.willingness_to_pay_per_qaly is not None else {}),
        "baseline": spec.scenarios[0].name,
        "Conventions": "CF-1.8",
    })
    return ds


def _g(x: float) -> str:
    return f"{x:g}"


def _interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and its Monte Carlo confidence interval (t distribution) over replicates."""
    n = x.shape[0]
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def fieller(dc: np.ndarray, de: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """ICER = mean(dc) / mean(de) with Fieller's interval from paired replicates.

    The interval is (nan, nan) when it is unbounded (the effect's interval includes zero).
    """
    n = dc.shape[0]
    c, e = float(dc.mean()), float(de.mean())
    ratio = c / e if e != 0 else math.nan
    if n < 2:
        return ratio, math.nan, math.nan
    t2 = stats.t.ppf(0.5 + level / 2, n - 1) ** 2
    cov = np.cov(np.stack([dc, de]), ddof=1) / n
    vc, ve, vce = cov[0, 0], cov[1, 1], cov[0, 1]
    a = e * e - t2 * ve
    b = c * e - t2 * vce
    cc = c * c - t2 * vc
    disc = b * b - a * cc
    if a <= 0 or disc < 0:
        return ratio, math.nan, math.nan
    r = math.sqrt(disc)
    return ratio, (b - r) / a, (b + r) / a


def summarize_population(ds: xr.Dataset) -> pd.DataFrame:
    """Per scenario against the baseline, over the whole horizon and population (paired by replicate).

    Rows: (scenario, quantity); columns: value, lower, upper (95% Monte Carlo interval).
    """
    tot = {k: ds[k].sum([d for d in ds[k].dims if d not in ("scenario", "replicate")]).values
           for k in ("incidence", "deaths", "qalys", "life_years", "costs")}
    rows = []
    for a in range(1, ds.sizes["scenario"]):
        name = str(ds.scenario.values[a])
        diff = {k: v[a] - v[0] for k, v in tot.items()}
        rows.append((name, "events averted", *_interval(-diff["incidence"])))
        rows.append((name, "deaths averted", *_interval(-diff["deaths"])))
        rows.append((name, "life-years gained", *_interval(diff["life_years"])))
        rows.append((name, "QALYs gained", *_interval(diff["qalys"])))
        rows.append((name, "incremental cost", *_interval(diff["costs"])))
        rows.append((name, "ICER (cost per QALY)", *fieller(diff["costs"], diff["qalys"])))
        wtp = ds.attrs.get("willingness_to_pay_per_qaly")
        if wtp is not None:
            rows.append((name, "net monetary benefit", *_interval(wtp * diff["qalys"] - diff["costs"])))
    frame = pd.DataFrame(rows, columns=["scenario", "quantity", "value", "lower", "upper"])
    return frame.set_index(["scenario", "quantity"])


def format_population_summary(ds: xr.Dataset) -> str:
    """The printed comparison of every scenario with the baseline."""
    n = ds.sizes["replicate"]
    cur = ds.attrs.get("currency", "")
    lines = [f"{ds.attrs.get('population_name', '')}: {ds.sizes['scenario']} scenarios x {n} replicates, "
             f"{ds.attrs.get('population_size')} people, {ds.attrs.get('horizon_years'):g} years, seed {ds.attrs.get('seed')}",
             f"costs in {cur} and QALYs discounted at {100 * ds.attrs.get('discount_rate_per_year', 0):g}% a year; "
             f"intervals: 95% Monte Carlo over replicates (ICER: Fieller)"]
    base = ds.sizes["scenario"] and str(ds.scenario.values[0])
    totals = {k: ds[k].sum([d for d in ds[k].dims if d not in ("scenario",)]).values / n
              for k in ("incidence", "deaths", "qalys", "costs")}
    lines.append(f"  baseline {base}: events {totals['incidence'][0]:.6g}, deaths {totals['deaths'][0]:.6g}, "
                 f"QALYs {totals['qalys'][0]:.6g}, costs {totals['costs'][0]:.6g} (means per replicate)")
    if ds.sizes["scenario"] < 2:
        return "\n".join(lines)
    table = summarize_population(ds)
    for scenario in table.index.get_level_values(0).unique():
        lines.append(f"  {scenario} vs {base}:")
        for quantity, row in table.loc[scenario].iterrows():
            if np.isnan(row["lower"]):
                interval = "   (interval unbounded or undefined)" if "ICER" in quantity and n > 1 else ""
            else:
                interval = f"   (95% MC interval {row['lower']:.4g} to {row['upper']:.4g})"
            lines.append(f"    {quantity:<22s} {row['value']:>12.4g}{interval}")
    return "\n".join(lines)
