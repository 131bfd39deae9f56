"""Figures of simulated trials: survival by arm, estimate against truth, biomarkers, state occupancy."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

BAND = (0.05, 0.95)
COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")


def figures(ds: xr.Dataset) -> dict[str, Figure]:
    """Every trial figure that the Dataset's variables allow."""
    out: dict[str, Figure] = {}
    if "km_survival" in ds:
        out["km_by_arm"] = km_figure(ds)
    out["estimate"] = estimate_figure(ds)
    if "biomarker_mean" in ds:
        out["biomarker_by_arm"] = biomarker_figure(ds)
    if "occupancy" in ds:
        out["state_occupancy"] = occupancy_figure(ds)
    return out


def _core(da: xr.DataArray, keep: tuple[str, ...]) -> xr.DataArray:
    """Select the first value of any dimension other than ``keep`` (e.g. a sweep), for one panel."""
    extra = {d: 0 for d in da.dims if d not in keep}
    return da.isel(extra) if extra else da


def _title(ds: xr.Dataset, what: str) -> str:
    return f"{ds.attrs.get('protocol_name', '')}\n{what}"


def _quantiles(values: np.ndarray) -> np.ndarray:
    """5%, 50%, 95% over replicates (axis 0), NaN where no replicate has a value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(values, [BAND[0], 0.5, BAND[1]], axis=0)


def km_figure(ds: xr.Dataset) -> Figure:
    """Kaplan–Meier curves by arm: median over replicates with a 5–95% band."""
    km = _core(ds["km_survival"], ("replicate", "arm", "month"))
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    months = km["month"].values
    for i, arm in enumerate(km["arm"].values):
        curves = km.sel(arm=arm).values
        lo, mid, hi = _quantiles(curves)
        color = COLORS[i % len(COLORS)]
        ax.step(months, mid, where="post", color=color, label=f"{arm} (median)")
        ax.fill_between(months, lo, hi, step="post", color=color, alpha=0.2, label=f"{arm} 5–95%")
    ax.set_xlabel("Months since randomization")
    ax.set_ylabel("Endpoint-free probability")
    ax.set_ylim(max(0.0, float(np.nanmin(km.values)) - 0.05), 1.01)
    ax.set_title(_title(ds, f"Kaplan–Meier by arm over {ds.sizes['replicate']} simulated trials"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def estimate_figure(ds: xr.Dataset) -> Figure:
    """Distribution of the estimate across replicates against the counterfactual truth."""
    est = _core(ds["estimate"], ("replicate",)).values
    truth = _core(ds["true_effect"], ("replicate",)).values
    ratio = ds.attrs.get("analysis") == "logrank"
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ok = np.isfinite(est)
    ax.hist(est[ok], bins=min(40, max(10, ok.sum() // 10)), color=COLORS[0], alpha=0.75, label="estimate in each simulated trial")
    centre = float(np.exp(np.mean(np.log(truth)))) if ratio else float(np.mean(truth))
    ax.axvline(centre, color="black", lw=2, label=f"true effect (counterfactual mean) {centre:.3g}")
    ax.axvline(1.0 if ratio else 0.0, color="grey", ls="--", lw=1, label="no effect")
    unit = ds["estimate"].attrs.get("units", "")
    label = ds["estimate"].attrs.get("long_name", "estimate")
    ax.set_xlabel(label[0].upper() + label[1:] + (f" ({unit})" if unit and unit != "1" else ""))
    ax.set_ylabel("Simulated trials")
    reject = float(ds["reject"].values.astype(bool).mean())
    what = "type I error" if int(ds.attrs.get("null_effect", 0)) else "power"
    ax.set_title(_title(ds, f"Estimates over {ds.sizes['replicate']} trials ({what} {reject:.3f})"), fontsize=10)
    ax.legend(fontsize=8)
    return fig


def biomarker_figure(ds: xr.Dataset) -> Figure:
    """Mean observed biomarker by visit and arm: median over replicates with a 5–95% band."""
    bm = _core(ds["biomarker_mean"], ("replicate", "arm", "visit_month"))
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    visits = bm["visit_month"].values
    for i, arm in enumerate(bm["arm"].values):
        vals = bm.sel(arm=arm).values
        lo, mid, hi = _quantiles(vals)
        color = COLORS[i % len(COLORS)]
        ax.plot(visits, mid, marker="o", color=color, label=str(arm))
        ax.fill_between(visits, lo, hi, color=color, alpha=0.2)
    ax.set_xlabel("Months since randomization")
    unit = bm.attrs.get("units", "")
    ax.set_ylabel(f"Mean observed biomarker ({unit})" if unit else "Mean observed biomarker")
    ax.set_title(_title(ds, "Biomarker by arm (median over trials, 5–95% band)"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def occupancy_figure(ds: xr.Dataset) -> Figure:
    """Counterfactual state occupancy over time, one panel per arm (mean over replicates)."""
    occ = _core(ds["occupancy"], ("replicate", "arm", "step_month", "state")).mean("replicate")
    arms = occ["arm"].values
    fig = Figure(figsize=(4.2 * len(arms), 4.2), layout="constrained")
    axes = fig.subplots(1, len(arms), sharey=True, squeeze=False)[0]
    months = occ["step_month"].values
    for ax, arm in zip(axes, arms):
        ax.stackplot(months, occ.sel(arm=arm).transpose("state", "step_month").values,
                     labels=[str(s) for s in occ["state"].values], colors=COLORS, alpha=0.85)
        ax.set_xlabel("Months since randomization")
        ax.set_title(f"all patients on {arm}", fontsize=10)
        ax.set_xlim(months[0], months[-1])
    axes[0].set_ylabel("Fraction of patients")
    axes[-1].legend(fontsize=8, loc="lower left")
    fig.suptitle(_title(ds, "Disease state occupancy (counterfactual, mean over trials)"), fontsize=10)
    return fig
