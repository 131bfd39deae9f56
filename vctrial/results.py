"""Results as self-describing xarray Datasets: layout, provenance, atomic netCDF, summaries."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import norm

import vctrial
from vctrial.spec.protocol import Protocol

# variable -> (dimensions after "replicate", units, long name); "{effect}" is filled per endpoint
VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "statistic": ((), "1", "test statistic (log-rank z or ANCOVA t; negative favours the active arm when lower is better)"),
    "p_value": ((), "1", "p-value"),
    "reject": ((), "1", "null hypothesis rejected at the protocol's alpha"),
    "estimate": ((), "{unit}", "estimated {effect}"),
    "ci_lower": ((), "{unit}", "lower confidence limit of the {effect}"),
    "ci_upper": ((), "{unit}", "upper confidence limit of the {effect}"),
    "log_hr_se": ((), "1", "standard error of the log hazard ratio"),
    "true_effect": ((), "{unit}", "counterfactual {effect} in the trial's own patients (every patient under every arm)"),
    "duration_months": ((), "months", "trial duration from first randomization to the analysis"),
    "n_screened": ((), "patients", "candidates screened to randomize the sample"),
    "n_randomized": (("arm",), "patients", "patients randomized"),
    "n_analysed": (("arm",), "patients", "patients in the analysis"),
    "n_events": (("arm",), "events", "endpoint events observed at the analysis"),
    "km_survival": (("arm", "month"), "1", "Kaplan-Meier endpoint-free probability"),
    "biomarker_mean": (("arm", "visit_month"), "{biomarker_unit}", "mean observed biomarker in analysed patients"),
    "occupancy": (("arm", "month", "state"), "1", "fraction of all patients in each state had they all received the arm"),
}


def spec_hash(protocol: Protocol) -> str:
    """Hash of everything that determines results: the protocol, cohort and disease texts."""
    h = hashlib.sha256()
    for p in (protocol.path, protocol.cohort.path, protocol.disease.path):
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def build_dataset(protocol: Protocol, seed: int, arrays: dict[str, np.ndarray], replicates: np.ndarray) -> xr.Dataset:
    """Assemble per-replicate arrays into the documented Dataset layout."""
    spec = protocol.spec
    tte = spec.endpoint.type == "time_to_event"
    if tte:
        effect, unit = "hazard ratio (active vs control)", "1"
        bio_unit = ""
    else:
        marker = next(b for b in protocol.disease.biomarkers if b.name == spec.endpoint.biomarker)
        effect = f"mean difference in change of {marker.name} from baseline to month {spec.endpoint.visit_month:g}"
        unit = bio_unit = marker.unit or "1"
    steps = arrays["occupancy"].shape[2]
    dt = protocol.disease.time_step_months
    coords = {
        "replicate": np.asarray(replicates, np.int64),
        "arm": [a.name for a in spec.arms],
        "state": [s.name for s in protocol.disease.states],
    }
    data_vars = {}
    for name, values in arrays.items():
        dims, units, long_name = VARIABLES[name]
        dims = ("replicate",) + tuple("step_month" if (d == "month" and name == "occupancy") else d for d in dims)
        attrs = {"units": units.format(unit=unit, biomarker_unit=bio_unit),
                 "long_name": long_name.format(effect=effect)}
        data_vars[name] = (dims, values, attrs)
    if "km_survival" in arrays:
        coords["month"] = ("month", np.arange(arrays["km_survival"].shape[2]) * 1.0, {"units": "months"})
    if "biomarker_mean" in arrays:
        coords["visit_month"] = ("visit_month", [0.0, spec.endpoint.visit_month], {"units": "months"})
    coords["step_month"] = ("step_month", np.arange(steps) * dt, {"units": "months", "long_name": "time since randomization"})
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update({
        "title": f"vctrial: {spec.name}",
        "kind": "trial",
        "protocol_name": spec.name,
        "protocol_file": str(protocol.path),
        "protocol_text": protocol.text,
        "cohort_text": Path(protocol.cohort.path).read_text(encoding="utf-8"),
        "disease_text": Path(protocol.disease.path).read_text(encoding="utf-8"),
        "spec_hash": spec_hash(protocol),
        "seed": int(seed),
        "vctrial_version": vctrial.__version__,
        "endpoint": spec.endpoint.label or spec.endpoint.type,
        "effect_measure": effect,
        "analysis": spec.analysis.method,
        "alpha": spec.analysis.alpha,
        "sided": spec.analysis.sided,
        "null_effect": int(protocol.is_null),
        "Conventions": "CF-1.8",
    })
    return ds


def write_netcdf(ds: xr.Dataset, path: str | Path) -> Path:
    """Write atomically: a temporary file in the same folder, renamed over the target when complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        encoding = {v: {"zlib": True, "complevel": 4} for v in ds.data_vars if ds[v].dtype != bool}
        out = ds.copy()
        for v in ds.data_vars:
            if ds[v].dtype == bool:
                out[v] = ds[v].astype(np.int8)
                out[v].attrs.update(ds[v].attrs, flag_values=[0, 1], flag_meanings="false true")
        out.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def binomial_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (Monte Carlo interval of power or type I error)."""
    if trials == 0:
        return (float("nan"), float("nan"))
    z = norm.ppf(0.5 + level / 2.0)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return (float(centre - half), float(centre + half))


def summarize(ds: xr.Dataset) -> pd.DataFrame:
    """Operating characteristics of a trial results Dataset, one row per quantity.

    Columns: value, lower, upper (95% Monte Carlo interval where it applies).
    """
    n = ds.sizes["replicate"]
    rows: list[tuple[str, float, float, float]] = []
    reject = ds["reject"].values.astype(bool)
    label = "type I error" if int(ds.attrs.get("null_effect", 0)) else "power"
    lo, hi = binomial_interval(int(reject.sum()), n)
    rows.append((label, reject.mean(), lo, hi))
    est = ds["estimate"].values
    ratio = ds.attrs.get("analysis") == "logrank"
    centre = np.log(est) if ratio else est
    truth = np.log(ds["true_effect"].values) if ratio else ds["true_effect"].values
    ok = np.isfinite(centre)
    mean, sd = centre[ok].mean(), centre[ok].std(ddof=1) if ok.sum() > 1 else np.nan
    half = 1.96 * sd / np.sqrt(ok.sum())
    back = np.exp if ratio else (lambda x: x)
    name = "estimate (geometric mean HR)" if ratio else "estimate (mean)"
    rows.append((name, back(mean), back(mean - half), back(mean + half)))
    rows.append(("estimate SD (log HR)" if ratio else "estimate SD", sd, np.nan, np.nan))
    true_mean = truth[ok].mean()
    rows.append(("true effect (mean)", back(true_mean), np.nan, np.nan))
    bias = centre[ok] - truth[ok]
    bhalf = 1.96 * bias.std(ddof=1) / np.sqrt(ok.sum()) if ok.sum() > 1 else np.nan
    rows.append(("bias (log HR)" if ratio else "bias", bias.mean(), bias.mean() - bhalf, bias.mean() + bhalf))
    cover = (ds["ci_lower"].values <= ds["true_effect"].values) & (ds["true_effect"].values <= ds["ci_upper"].values)
    lo, hi = binomial_interval(int(cover.sum()), n)
    rows.append(("CI coverage of true effect", cover.mean(), lo, hi))
    dur = ds["duration_months"].values
    dhalf = 1.96 * dur.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
    rows.append(("duration (months, mean)", dur.mean(), dur.mean() - dhalf, dur.mean() + dhalf))
    if "n_events" in ds:
        ev = ds["n_events"].sum("arm").values
        rows.append(("events at analysis (mean)", ev.mean(), np.nan, np.nan))
    rows.append(("randomized (mean)", ds["n_randomized"].sum("arm").values.mean(), np.nan, np.nan))
    rows.append(("analysed (mean)", ds["n_analysed"].sum("arm").values.mean(), np.nan, np.nan))
    return pd.DataFrame(rows, columns=["quantity", "value", "lower", "upper"]).set_index("quantity")


def format_summary(ds: xr.Dataset) -> str:
    """The printed operating characteristics."""
    table = summarize(ds)
    lines = [f"{ds.attrs.get('protocol_name', '')}: {ds.sizes['replicate']} replicates, seed {ds.attrs.get('seed')}",
             f"endpoint: {ds.attrs.get('endpoint')}; effect: {ds.attrs.get('effect_measure')}",
             f"analysis: {ds.attrs.get('analysis')}, {ds.attrs.get('sided')}-sided alpha {ds.attrs.get('alpha')}"]
    for name, row in table.iterrows():
        interval = "" if np.isnan(row["lower"]) else f"   (95% MC interval {row['lower']:.4g} to {row['upper']:.4g})"
        lines.append(f"  {name:<32s} {row['value']:>10.4g}{interval}")
    return "\n".join(lines)
