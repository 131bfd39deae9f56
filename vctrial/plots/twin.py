"""Figures of a patient twin: survival by option with bands, a what-if risk chart, biomarker fans;
for a batch, the patients ranked by expected benefit.

Bands and error bars are the 95% parameter intervals where an option's effects are uncertain, else
95% Monte Carlo intervals (mean ± 1.96 SE); both come from :func:`vctrial.twin.decompose`.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from vctrial.twin import RISK, Z95, dataset_varies, decompose, draw_outcomes

COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")
LABELS = {"any_event": "any event", "all_cause_death": "death (any cause)", "endpoint": "endpoint"}
TOP = 30  # patients shown in the ranking figure


def figures(ds: xr.Dataset) -> dict[str, Figure]:
    """Figures of a twin Dataset (``attrs["kind"] == "twin"``), by name."""
    if ds.attrs.get("twin_scope") == "batch":
        return {"twin_ranking": ranking_figure(ds)}
    out = {"twin_survival": survival_figure(ds), "twin_risk": risk_figure(ds)}
    for b in ds.coords.get("biomarker", xr.DataArray([])).values:
        out[f"twin_biomarker_{b}"] = biomarker_figure(ds, str(b))
    return out


def _band(stats: dict[str, np.ndarray], varies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper limits: parameter interval where the option varies, else Monte Carlo."""
    mc_lo = stats["mean"] - Z95 * stats["mc_se"]
    mc_hi = stats["mean"] + Z95 * stats["mc_se"]
    return np.where(varies, stats["param_lower"], mc_lo), np.where(varies, stats["param_upper"], mc_hi)


def _years(ds: xr.Dataset) -> np.ndarray:
    return ds["time"].values / 12.0


def _subtitle(ds: xr.Dataset) -> str:
    M = int(ds.attrs["parameter_draws"])
    band = "95% parameter intervals (Monte Carlo where no effect is uncertain)" if M > 1 else "95% Monte Carlo intervals"
    return f"patient {ds.attrs.get('patient', '')}, {ds.attrs['draws']} draws per option\n{band}"


def survival_figure(ds: xr.Dataset) -> Figure:
    """Overall and event-free survival by option over time."""
    M = int(ds.attrs["parameter_draws"])
    varies = dataset_varies(ds)[:, None]
    absorbing = ds["state_absorbing"].values.astype(bool)
    alive = ~absorbing[ds["health_state"].transpose("draw", "option", "time").values]
    event_free = ds["event_free"].transpose("draw", "option", "time").values
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    t = _years(ds)
    for ax, values, title in ((axes[0], alive, "Overall survival"), (axes[1], event_free, "Event-free survival")):
        stats = decompose(values.astype(np.float64), M, varies)
        lo, hi = _band(stats, varies)
        for a, option in enumerate(ds["option"].values):
            color = COLORS[a % len(COLORS)]
            ax.plot(t, stats["mean"][a], color=color, label=str(option))
            ax.fill_between(t, lo[a], hi[a], color=color, alpha=0.2, linewidth=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("Years from the decision")
        ax.set_ylim(-0.01, 1.01)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Probability")
    axes[0].legend(loc="lower left", fontsize=9)
    fig.suptitle(f"{ds.attrs.get('protocol_name', '')}\n{_subtitle(ds)}", fontsize=10)
    return fig


def risk_figure(ds: xr.Dataset) -> Figure:
    """What-if chart: the risk of each event by the horizon under each option, with intervals."""
    names, y = draw_outcomes(ds)
    M = int(ds.attrs["parameter_draws"])
    varies = dataset_varies(ds)[:, None]
    stats = decompose(y, M, varies)
    lo, hi = _band(stats, varies)
    risk = [o for o, (name, kind) in enumerate(names) if kind == RISK and np.any(stats["mean"][:, o] > 0)]
    options = [str(o) for o in ds["option"].values]
    fig = Figure(figsize=(8, 1.2 + 0.55 * max(len(risk), 1) * len(options) ** 0.5), layout="constrained")
    ax = fig.add_subplot()
    step = 0.8 / max(len(options), 1)
    for a, option in enumerate(options):
        pos = np.arange(len(risk)) - 0.4 + step * (a + 0.5)
        mean = stats["mean"][a, risk] * 100
        err = np.vstack([mean - lo[a, risk] * 100, hi[a, risk] * 100 - mean])
        color = COLORS[a % len(COLORS)]
        ax.barh(pos, mean, height=step * 0.9, color=color, alpha=0.35)
        ax.errorbar(mean, pos, xerr=np.maximum(err, 0), fmt="o", color=color, capsize=3, label=option)
    ax.set_yticks(np.arange(len(risk)), [LABELS.get(names[o][0], names[o][0]) for o in risk])
    ax.invert_yaxis()
    ax.set_xlabel(f"Risk by {ds.attrs['horizon_months'] / 12:g} years (%)")
    ax.set_xlim(0, 100)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"What if: risk under each option\n{_subtitle(ds)}", fontsize=9)
    return fig


def biomarker_figure(ds: xr.Dataset, name: str) -> Figure:
    """A biomarker's forecast among patients alive: median with 50% and 95% ranges, by option."""
    var = ds[f"biomarker_{name}"]
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    t = _years(ds)
    for a, option in enumerate(ds["option"].values):
        values = var.sel(option=option).transpose("draw", "time").values.astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # no one alive at a time
            q = np.nanquantile(values, [0.025, 0.25, 0.5, 0.75, 0.975], axis=0)
        color = COLORS[a % len(COLORS)]
        ax.plot(t, q[2], color=color, label=f"{option} (median)")
        ax.fill_between(t, q[1], q[3], color=color, alpha=0.25, linewidth=0)
        ax.fill_between(t, q[0], q[4], color=color, alpha=0.1, linewidth=0)
    history = [h for h in _history(ds) if h["biomarker"] == name]
    if history:
        ax.scatter([-h["months_before"] / 12 for h in history], [h["value"] for h in history], color="black",
                   s=14, zorder=3, label="measured")
    ax.set_xlabel("Years from the decision")
    ax.set_ylabel(f"{name} ({var.attrs.get('units', '')})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ax.set_title(f"{name}: the patient's underlying value, patients alive (50% and 95% ranges)", fontsize=10)
    return fig


def _history(ds: xr.Dataset) -> list[dict]:
    import json

    return json.loads(ds.attrs.get("patient_history", "[]"))


def ranking_figure(ds: xr.Dataset) -> Figure:
    """A batch: expected risk reduction (any event) of the last option, patients ranked, with intervals."""
    from vctrial.twin import risk_table

    table = risk_table(ds).head(TOP)
    n = len(table)
    fig = Figure(figsize=(8, 1.5 + 0.28 * n), layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(n)
    benefit = -table["difference"].to_numpy() * 100
    resolved = table["interval_resolved"].to_numpy()
    lo = -table["upper"].to_numpy() * 100
    hi = -table["lower"].to_numpy() * 100
    mc = Z95 * table["mc_se"].to_numpy() * 100
    lo, hi = np.where(np.isfinite(lo), lo, benefit - mc), np.where(np.isfinite(hi), hi, benefit + mc)
    ax.barh(pos, benefit, color=np.where(resolved, COLORS[0], "#9aa9c4"))
    ax.errorbar(benefit, pos, xerr=np.maximum(np.vstack([benefit - lo, hi - benefit]), 0), fmt="none",
                color="black", capsize=2, linewidth=0.8)
    ax.set_yticks(pos, table["patient"].astype(str))
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    options = ds["option"].values
    ax.set_xlabel(f"Risk reduction of any event by {ds.attrs['horizon_months'] / 12:g} years, "
                  f"{options[-1]} vs {options[0]} (percentage points)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{ds.attrs.get('protocol_name', '')}\npatients ranked by expected benefit (top {n} of "
                 f"{ds.sizes['patient']}); light bars: interval not resolved from Monte Carlo noise", fontsize=9)
    return fig
