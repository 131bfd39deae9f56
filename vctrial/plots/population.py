"""Figures of population scenarios: time series by scenario with Monte Carlo bands, each scenario
against the baseline over time, and the cost-effectiveness plane.

Bands are the 5–95% range over replicates around the median; counts and costs are summed over age
groups and regions, prevalence is the share of all the living (each cell weighted by the people alive).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from vctrial.population.output import CELLS, summarize_population

BAND = (0.05, 0.95)
COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
WTP_ATTR = "willingness_to_pay_per_qaly"  # optional Dataset attribute: the threshold line of the plane


def figures(ds: xr.Dataset) -> dict[str, Figure]:
    """Every population figure that the Dataset allows, by name."""
    out = {"population_time_series": time_series_figure(ds)}
    if ds.sizes["scenario"] > 1:
        out["scenarios_vs_baseline"] = versus_baseline_figure(ds)
        q, c = _horizon_totals(ds, "qalys"), _horizon_totals(ds, "costs")
        if np.any(q != q[:1]) or np.any(c != c[:1]):  # else no scenario changes QALYs or costs: no plane
            out["cost_effectiveness_plane"] = cost_effectiveness_figure(ds)
    return out


def _horizon_totals(ds: xr.Dataset, name: str) -> np.ndarray:
    """(scenario, replicate) totals over the whole horizon and population."""
    da = ds[name]
    return da.sum([d for d in da.dims if d not in ("scenario", "replicate")]).transpose("scenario", "replicate").values


def _quantiles(values: np.ndarray, axis: int = 0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(values, [BAND[0], 0.5, BAND[1]], axis=axis)


def totals(ds: xr.Dataset, name: str) -> xr.DataArray:
    """A (scenario, replicate, time) series over the whole population: counts and costs summed over
    age groups and regions; prevalence as the share of all the living (cells weighted by ``alive``)."""
    da = ds[name]
    cells = [d for d in CELLS if d in da.dims]
    if name == "prevalence":
        alive = ds["alive"]
        weighted = (da.fillna(0.0) * alive).sum(cells)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weighted / alive.sum(cells)).transpose("scenario", "replicate", "time")
    return da.sum(cells).transpose("scenario", "replicate", "time")


def _axis_time(ds: xr.Dataset) -> tuple[np.ndarray, str]:
    """x values and label: days for horizons up to two years, else years."""
    if float(ds.attrs.get("horizon_years", ds["time"].values[-1])) <= 2.0 and "day" in ds.coords:
        return ds["day"].values.astype(float), "Days from the start (end of each period)"
    return ds["time"].values.astype(float), "Years from the start (end of each period)"


def _period(ds: xr.Dataset) -> str:
    """The output period in words, from the first period's length in days."""
    days = float(ds["day"].values[0]) if "day" in ds.coords else float(ds["time"].values[0]) * 365.25
    for length, word in ((1, "day"), (7, "week"), (365, "year"), (366, "year")):
        if abs(days - length) < 0.6:
            return f"per {word}"
    return f"per {days:g}-day period"


def _money(x: float, _pos=None) -> str:
    a = abs(x)
    for div, suffix in ((1e9, " bn"), (1e6, " M"), (1e3, " k")):
        if a >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _subtitle(ds: xr.Dataset) -> str:
    n = ds.sizes["replicate"]
    return (f"{ds.attrs.get('population_name', '')}: {ds.attrs.get('population_size', '?')} people, "
            f"{n} replicates a scenario")


def time_series_figure(ds: xr.Dataset) -> Figure:
    """Incidence, prevalence, deaths and costs over time by scenario: median with a 5–95% band."""
    t, xlabel = _axis_time(ds)
    per = _period(ds)
    cur = ds.attrs.get("currency", "")
    rate = float(ds.attrs.get("discount_rate_per_year", 0.0))
    disc = f", discounted {100 * rate:g}%/yr" if rate else ""
    panels = [("incidence", f"Incident events {per}", 1.0, ds["incidence"].attrs.get("long_name", "")),
              ("prevalence", "Prevalence (% of the living)", 100.0, ds["prevalence"].attrs.get("long_name", "")),
              ("deaths", f"Deaths {per}", 1.0, "deaths from all causes"),
              ("costs", f"Costs {per} ({cur}{disc})", 1.0, "disease and intervention costs")]
    present = [p for p in panels if p[0] in ds]
    panels = [p for p in present if np.any(ds[p[0]].values)]  # e.g. no costs given: no costs panel
    left_out = [p[0] for p in present if p not in panels]
    cols = 2
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(11, 3.6 * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False).ravel()
    for ax, (name, ylabel, scale, what) in zip(axes, panels):
        series = totals(ds, name).values * scale
        for s, scenario in enumerate(ds["scenario"].values):
            lo, mid, hi = _quantiles(series[s])
            color = COLORS[s % len(COLORS)]
            ax.plot(t, mid, color=color, lw=1.6, label=str(scenario), gid=f"{name}:{scenario}")
            ax.fill_between(t, lo, hi, color=color, alpha=0.18, linewidth=0)
        ax.set_ylabel(ylabel)
        ax.set_title(what, fontsize=9)
        ax.grid(alpha=0.3)
        if name == "costs":
            ax.yaxis.set_major_formatter(FuncFormatter(_money))
        ax.set_ylim(bottom=0)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax in axes[max(0, len(panels) - cols):len(panels)]:
        ax.set_xlabel(xlabel)
        ax.xaxis.set_tick_params(labelbottom=True)
    axes[0].legend(fontsize=8, title="scenario", title_fontsize=8)
    none = f" (zero throughout, not drawn: {', '.join(left_out)})" if left_out else ""
    fig.suptitle(f"{_subtitle(ds)}\nby scenario over time: median over replicates and 5–95% band{none}", fontsize=10)
    return fig


def _cumulative_differences(ds: xr.Dataset, name: str) -> np.ndarray:
    """(scenario, replicate, time) cumulative totals of each scenario minus the baseline's, paired by replicate."""
    series = np.cumsum(totals(ds, name).values, axis=2)
    return series - series[:1]


def versus_baseline_figure(ds: xr.Dataset) -> Figure:
    """Cumulative events and deaths averted, QALYs gained and incremental costs against the baseline.

    Differences are paired by replicate (the same virtual people in every scenario), so the bands
    show what the scenario changes, not the population's own variation.
    """
    t, xlabel = _axis_time(ds)
    base = str(ds["scenario"].values[0])
    cur = ds.attrs.get("currency", "")
    rate = float(ds.attrs.get("discount_rate_per_year", 0.0))
    disc = f", discounted {100 * rate:g}%/yr" if rate else ""
    panels = [("incidence", -1.0, "Cumulative incident events averted"),
              ("deaths", -1.0, "Cumulative deaths averted"),
              ("qalys", 1.0, f"Cumulative QALYs gained{disc}"),
              ("costs", 1.0, f"Cumulative incremental cost ({cur}{disc})")]
    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, (name, sign, ylabel) in zip(axes, panels):
        diff = sign * _cumulative_differences(ds, name)
        for s in range(1, ds.sizes["scenario"]):
            lo, mid, hi = _quantiles(diff[s])
            color = COLORS[s % len(COLORS)]
            ax.plot(t, mid, color=color, lw=1.6, label=str(ds["scenario"].values[s]), gid=f"{name}:{s}")
            ax.fill_between(t, lo, hi, color=color, alpha=0.18, linewidth=0)
        ax.axhline(0, color="black", lw=0.7)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if name == "costs":
            ax.yaxis.set_major_formatter(FuncFormatter(_money))
    for ax in axes[2:]:
        ax.set_xlabel(xlabel)
    axes[0].legend(fontsize=8, title=f"scenario vs {base}", title_fontsize=8)
    fig.suptitle(f"{_subtitle(ds)}\neach scenario against {base}, paired by replicate: median and 5–95% band",
                 fontsize=10)
    return fig


def _icer_text(value: float, lo: float, hi: float, dq: float, dc: float, cur: str) -> str:
    """The ICER in words (mean incremental cost and QALYs decide dominance)."""
    if dq == 0 and dc == 0:
        return "no difference in QALYs or costs"
    if dq >= 0 and dc <= 0:
        return "dominant (more QALYs, less cost)"
    if dq <= 0 and dc >= 0:
        return "dominated (fewer QALYs, more cost)"
    interval = f", 95% {_money(lo)} to {_money(hi)}" if np.isfinite(lo) and np.isfinite(hi) else ""
    return f"ICER {_money(value)} {cur}/QALY{interval}"


def cost_effectiveness_figure(ds: xr.Dataset) -> Figure:
    """Incremental QALYs against incremental costs, per replicate, for every scenario against the baseline.

    Large markers are the means with their 95% Monte Carlo intervals; the legend gives the ICER
    (Fieller interval). With ``attrs["willingness_to_pay_per_qaly"]``, the threshold line is drawn.
    """
    cur = ds.attrs.get("currency", "")
    base = str(ds["scenario"].values[0])
    table = summarize_population(ds)
    q, c = _horizon_totals(ds, "qalys"), _horizon_totals(ds, "costs")
    fig = Figure(figsize=(8.5, 6), layout="constrained")
    ax = fig.add_subplot()
    for s in range(1, ds.sizes["scenario"]):
        name = str(ds["scenario"].values[s])
        dq, dc = q[s] - q[0], c[s] - c[0]
        color = COLORS[s % len(COLORS)]
        ax.scatter(dq, dc, s=14, color=color, alpha=0.45, linewidths=0, gid=f"replicates:{name}")
        mq, lq, hq = table.loc[(name, "QALYs gained")]
        mc, lc, hc = table.loc[(name, "incremental cost")]
        icer = table.loc[(name, "ICER (cost per QALY)")]
        label = f"{name}: {_icer_text(icer['value'], icer['lower'], icer['upper'], mq, mc, cur)}"
        ax.errorbar([mq], [mc], xerr=[[mq - lq], [hq - mq]] if np.isfinite(lq) else None,
                    yerr=[[mc - lc], [hc - mc]] if np.isfinite(lc) else None, fmt="D", ms=9, color=color,
                    mec="black", capsize=4, label=label, gid=f"mean:{name}")
    ax.axhline(0, color="black", lw=0.8)
    ax.axvline(0, color="black", lw=0.8)
    xlo, xhi = ax.get_xlim()
    ylo, yhi = ax.get_ylim()
    xlo, xhi, ylo, yhi = min(xlo, -0.05 * (xhi - xlo)), max(xhi, 0.05 * (xhi - xlo)), \
        min(ylo, -0.05 * (yhi - ylo)), max(yhi, 0.05 * (yhi - ylo))
    wtp = ds.attrs.get(WTP_ATTR)
    if wtp is not None and np.isfinite(float(wtp)):
        xs = np.array([xlo, xhi])
        ax.plot(xs, float(wtp) * xs, color="black", ls="--", lw=1.2, gid="wtp",
                label=f"willingness to pay {_money(float(wtp))} {cur}/QALY (below: cost-effective)")
    ax.set_xlim(xlo, xhi)
    ax.set_ylim(ylo, yhi)
    for (x, y, ha, va, text) in ((0.99, 0.99, "right", "top", "more effective, more costly"),
                                 (0.99, 0.01, "right", "bottom", "more effective, cost saving"),
                                 (0.01, 0.99, "left", "top", "less effective, more costly"),
                                 (0.01, 0.01, "left", "bottom", "less effective, cost saving")):
        ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=8, color="#808080")
    rate = float(ds.attrs.get("discount_rate_per_year", 0.0))
    disc = f", discounted {100 * rate:g}%/yr" if rate else ""
    horizon = float(ds.attrs.get("horizon_years", np.nan))
    ax.set_xlabel(f"Incremental QALYs vs {base} (whole population over {horizon:g} years{disc})")
    ax.set_ylabel(f"Incremental cost vs {base} ({cur}{disc})")
    ax.yaxis.set_major_formatter(FuncFormatter(_money))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1)
    fig.suptitle(f"{_subtitle(ds)}\ncost-effectiveness plane: dots are replicates (paired with {base}), "
                 "diamonds means with 95% Monte Carlo intervals", fontsize=10)
    return fig
