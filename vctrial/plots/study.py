"""Figures of a validation or calibration result: every published figure against the simulated
studies, on one ratio scale (simulated / published), and for a calibration the parameters' moves."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

Z95 = 1.959963984540054


def figures(ds: xr.Dataset) -> dict[str, Figure]:
    """``figures`` (published against simulated), and ``parameters`` for a calibration."""
    out = {"figures": figure_chart(ds)}
    if ds.attrs.get("kind") == "calibration":
        out["parameters"] = parameter_chart(ds)
    return out


def figure_chart(ds: xr.Dataset) -> Figure:
    """Per figure, relative to the published value: its 95% interval (grey), the central interval of
    the simulated studies (bar), the simulated mean (dot), and for a calibration the start (cross)."""
    names = [str(n) for n in ds.figure.values]
    obs = ds.observed.values
    n = len(names)
    y = np.arange(n)[::-1]
    fig = Figure(figsize=(8, 1.2 + 0.38 * n), layout="constrained")
    ax = fig.subplots()
    lo_obs = np.maximum(obs - Z95 * ds.observed_se.values, 1e-3 * obs) / obs
    hi_obs = (obs + Z95 * ds.observed_se.values) / obs
    ax.hlines(y, lo_obs, hi_obs, color="0.75", lw=9, label="published, 95% interval")
    ax.hlines(y, ds.study_lower.values / obs, ds.study_upper.values / obs, color="#4c72b0", lw=2.5,
              label="simulated studies, central 95%")
    ax.plot(ds.simulated_mean.values / obs, y, "o", color="#4c72b0", label="simulated mean")
    if "start_mean" in ds:
        ax.plot(ds.start_mean.values / obs, y, "x", color="#dd8452", label="at the starting values")
    if "passed" in ds:
        for yi, ok in zip(y, ds.passed.values):
            if not ok:
                ax.annotate("fails", (1.0, yi), xytext=(6, 4), textcoords="offset points", color="#c44e52", fontsize=8)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(y, [f"{nm} ({m})" for nm, m in zip(names, ds.measure.values)])
    ax.set_xlabel("relative to the published value")
    ax.set_title(f"{ds.attrs.get('name', '')}\n{ds.sizes['replicate']} simulated studies, seed {ds.attrs.get('seed')}",
                 fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.4 / max(n, 1)), ncol=2, fontsize=8, frameon=False)
    return fig


def parameter_chart(ds: xr.Dataset) -> Figure:
    """Per parameter, relative to its starting value: the estimate, its 95% interval and the bounds."""
    names = [str(p) for p in ds.parameter.values]
    start = ds.start_value.values
    n = len(names)
    y = np.arange(n)[::-1]
    ok = ds.identified.values.astype(bool)
    fig = Figure(figsize=(8, 1.2 + 0.4 * n), layout="constrained")
    ax = fig.subplots()
    logs = ds.log_scale.values.astype(bool)
    scale = np.where(logs & (start > 0), start, 1.0)
    shift = np.where(logs & (start > 0), 0.0, start)
    rel = lambda v: (v - shift) / scale  # noqa: E731 - ratio for log-scaled parameters, difference otherwise
    ax.hlines(y, rel(ds.lower_bound.values), rel(ds.upper_bound.values), color="0.85", lw=9, label="bounds")
    ax.hlines(y[ok], rel(ds.interval_lower.values)[ok], rel(ds.interval_upper.values)[ok], color="#4c72b0", lw=2.5,
              label="95% interval (Laplace)")
    ax.plot(rel(ds.estimate.values), y, "o", color="#4c72b0", label="estimate")
    ax.axvline(1.0 if logs.all() else 0.0, color="k", lw=0.8)
    if logs.all():
        ax.set_xscale("log")
    ax.set_yticks(y, names)
    ax.set_xlabel("relative to the starting value" + ("" if logs.all() else " (ratio; difference for linear ones)"))
    ax.set_title(f"{ds.attrs.get('name', '')}: {ds.attrs.get('evaluations')} evaluations", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return fig
