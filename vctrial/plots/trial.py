"""Figures of simulated trials.

Per design point: survival by arm, estimate against truth, biomarkers, state occupancy and, for
group-sequential designs, the z paths against the bounds and the stopping distribution by look.
Across points: power (or type I error) against each swept parameter, and the operating
characteristics of compared protocols side by side.

Stacked files (``vctrial compare``: a ``protocol`` dimension; sweeps: one dimension per swept key)
draw the per-point figures with one panel per protocol or sweep point (at most ``MAX_PANELS`` sweep
points, else the first point only); titles say which. The group-sequential figures are drawn for each
compared protocol with looks, or for the first sweep point.

Three or more arms (a ``comparison`` dimension, one per active arm against the shared control) are
not a stacked dimension: the estimate figure has a panel per comparison, the group-sequential figures
of a multi-arm multi-stage design a panel per comparison, ``power_by_comparison`` shows each
comparison's power (type I error for an arm without effect) beside the disjunctive and conjunctive
power, and the power against a swept key has a line per comparison plus the disjunctive power.
Wherever one rejection rate stands for a multi-arm trial (compared protocols, the power surface) it is
the disjunctive power (any comparison rejected; the family-wise error rate at the global null).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import warnings

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vctrial.results import binomial_interval, is_ratio, point

BAND = (0.05, 0.95)
COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
MAX_PANELS = 6  # sweep points drawn as panels of the per-point figures; more: the first point only
PATHS = 50  # replicates whose z paths the group-sequential figure draws
Z95 = 1.959963984540054
# stopping outcomes: (label, colour)
EFFICACY, FUTILITY, FINAL_REJECT, FINAL_ACCEPT, CONTINUED = (
    ("stopped for efficacy", "#2e8b57"), ("stopped for futility", "#c44e52"),
    ("final analysis, null rejected", "#4c72b0"), ("final analysis, null not rejected", "#a0a0a0"),
    ("continued to the next look", "#e8e8e8"))
WITH_TRIAL = ("stopped with the trial", "#8172b3")  # multi-arm, simultaneous stopping: another arm crossed
ANY, ALL, NULL_ANY = "disjunctive", "conjunctive", "fwer_null"  # the trial-level rates of power_by_comparison


def figures(ds: xr.Dataset) -> dict[str, Figure]:
    """Every trial figure that the Dataset's variables and dimensions allow, by name."""
    panels, _ = _panels(ds)

    def has(variable: str) -> bool:
        return any(variable in p for _, p in panels)

    out: dict[str, Figure] = {}
    if has("km_survival"):
        out["km_by_arm"] = km_figure(ds)
    out["estimate"] = estimate_figure(ds)
    if any("comparison" in p.dims for _, p in panels):
        out["power_by_comparison"] = power_by_comparison_figure(ds)
    if has("biomarker_mean"):
        out["biomarker_by_arm"] = biomarker_figure(ds)
    if has("occupancy"):
        out["state_occupancy"] = occupancy_figure(ds)
    sweep = sweep_dims(ds)
    for d in sweep:
        out[f"power_vs_{_safe(d)}"] = power_figure(ds, d)
    if len(sweep) == 2:
        out["power_surface"] = power_surface_figure(ds)
    if "protocol" in ds.dims:
        out["operating_characteristics"] = operating_characteristics_figure(ds)
        for label, p in panels:
            if "look_z" in p:
                out[f"sequential_bounds_{_safe(label)}"] = sequential_bounds_figure(p, f"protocol {label}")
                out[f"stopping_by_look_{_safe(label)}"] = stopping_figure(p, f"protocol {label}")
    else:
        first_label, first = _first_point(ds)
        if "look_z" in first:
            where = f"first sweep point ({first_label})" if first_label else ""
            out["sequential_bounds"] = sequential_bounds_figure(first, where)
            out["stopping_by_look"] = stopping_figure(first, where)
    return out


# --- stacked files --------------------------------------------------------------------------------

def sweep_dims(ds: xr.Dataset) -> list[str]:
    """The swept dimensions of a sweep file, in declaration order (empty for other files)."""
    declared = ds.attrs.get("sweep")
    if declared:
        return [d for d in json.loads(declared) if d in ds.dims]
    return []


def _stacked_dims(ds: xr.Dataset) -> list[str]:
    """Protocol and swept dimensions (the ``comparison`` of a multi-arm trial is not one)."""
    return [d for d in ds["reject"].dims if d not in ("replicate", "comparison")]


def _label(values: dict) -> str:
    return ", ".join(f"{d}={_fmt(v)}" for d, v in values.items())


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v.item() if isinstance(v, np.generic) else v)


def _safe(text: str) -> str:
    """A file-name-safe form of a label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "x"


def _all_points(ds: xr.Dataset) -> list[tuple[str, xr.Dataset]]:
    """(label, single-point Dataset) for every point of a stacked file, in C order."""
    dims = _stacked_dims(ds)
    if not dims:
        return [("", ds)]
    out = []
    for idx in itertools.product(*(range(ds.sizes[d]) for d in dims)):
        sel = dict(zip(dims, idx))
        values = {d: ds[d].values[i] for d, i in sel.items()}
        label = _fmt(values["protocol"]) if dims == ["protocol"] else _label(values)
        out.append((label, _own_point(ds.isel(sel))))
    return out


def _first_point(ds: xr.Dataset) -> tuple[str, xr.Dataset]:
    dims = _stacked_dims(ds)
    if not dims:
        return "", ds
    sel = {d: 0 for d in dims}
    return _label({d: ds[d].values[0] for d in dims}), _own_point(ds.isel(sel))


def _own_point(ds: xr.Dataset) -> xr.Dataset:
    """One point of a stacked file, as its own results file would hold it.

    Stacking a two-arm protocol with multi-arm ones repeats its per-replicate values along their
    ``comparison`` dimension; a point that randomized into two arms only gets them back without it.
    """
    p = point(ds)
    if "comparison" in p.dims and "n_randomized" in p and len(_present(p["n_randomized"], "arm")) <= 2:
        est = p["estimate"].transpose("comparison", ...).values
        if all(np.array_equal(est[0], e, equal_nan=True) for e in est[1:]):  # repeated, not compared
            p = p.isel(comparison=0, drop=True)  # drops comparison_null with it
    return p


def _control(p: xr.Dataset) -> str:
    """The shared control arm of a multi-arm point: its arm that no comparison names."""
    arms = _present(p["n_randomized"], "arm") if "n_randomized" in p else list(p["arm"].values)
    active = set(map(str, p["comparison"].values))
    rest = [str(a) for a in arms if str(a) not in active]
    return rest[0] if rest else "control"


def _comparisons(p: xr.Dataset) -> list[tuple[str, xr.Dataset]]:
    """(active arm, that comparison's Dataset) for each comparison of a multi-arm point, its
    ``null_effect`` attribute from ``comparison_null``; ``[("", p)]`` for a two-arm point."""
    if "comparison" not in p.dims:
        return [("", p)]
    null = (p["comparison_null"].values.astype(int) if "comparison_null" in p.coords
            else np.zeros(p.sizes["comparison"], int))
    out = []
    for i, arm in enumerate(p["comparison"].values):
        one = p.isel(comparison=i, drop=True)
        one.attrs = {**p.attrs, "null_effect": int(null[i])}
        out.append((str(arm), one))
    return out


def _panels(ds: xr.Dataset) -> tuple[list[tuple[str, xr.Dataset]], str]:
    """The points the per-point figures draw, and a note for their titles."""
    dims = _stacked_dims(ds)
    if not dims:
        return [("", ds)], ""
    n = int(np.prod([ds.sizes[d] for d in dims]))
    if "protocol" in dims or n <= MAX_PANELS:
        what = "protocol" if "protocol" in dims else "sweep point"
        return _all_points(ds), f"one panel per {what}"
    label, p = _first_point(ds)
    return [(label, p)], f"first of {n} sweep points ({label})"


def _grid(n: int, width: float, height: float, sharey: bool = True) -> tuple[Figure, list]:
    """A figure with ``n`` panels, at most three a row."""
    cols = 2 if n == 4 else min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols if n > 1 else width * 1.4, height * rows if n > 1 else height * 1.4),
                 layout="constrained")
    axes = fig.subplots(rows, cols, sharey=sharey, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def _panel_grid(n: int, width: float, height: float) -> tuple[Figure, list]:
    """A figure with ``n`` panels of ``width`` x ``height`` inches (a single one not enlarged), at most
    three a row, sharing the y axis."""
    cols = 2 if n == 4 else min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def _name(ds: xr.Dataset) -> str:
    name = ds.attrs.get("protocol_name")
    if name:
        return str(name)
    if "protocol" in ds.dims:
        return "comparison of " + ", ".join(map(str, ds["protocol"].values))
    return ""


def _title(ds: xr.Dataset, what: str, note: str = "") -> str:
    return f"{_name(ds)}\n{what}" + (f"; {note}" if note else "")


def _quantiles(values: np.ndarray) -> np.ndarray:
    """5%, 50%, 95% over replicates (axis 0), NaN where no replicate has a value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(values, [BAND[0], 0.5, BAND[1]], axis=0)


def _present(da: xr.DataArray, dim: str) -> list:
    """Values of ``dim`` where ``da`` has any value (a stacked file pads missing arms with NaN)."""
    other = [d for d in da.dims if d != dim]
    has = np.isfinite(da.astype(float)).any(other) if other else np.isfinite(da.astype(float))
    return list(da[dim].values[has.values])


def _is_null(p: xr.Dataset) -> bool:
    """True when the point has no effect (with several arms: no active arm has one, the global null)."""
    if "comparison" in p.dims and "comparison_null" in p.coords:
        return bool(p["comparison_null"].values.astype(bool).all())
    return bool(int(p.attrs.get("null_effect", 0)))


def _share(hits: np.ndarray) -> tuple[float, float, float]:
    """Share of replicates with a hit and its 95% Wilson Monte Carlo interval."""
    hits = np.asarray(hits, bool)
    lo, hi = binomial_interval(int(hits.sum()), hits.size)
    return float(hits.mean()) if hits.size else np.nan, lo, hi


def _rejection(p: xr.Dataset) -> tuple[float, float, float]:
    """Rejection rate over replicates with its 95% Wilson Monte Carlo interval (with several arms: any
    comparison rejected, the disjunctive power)."""
    reject = p["reject"]
    if "comparison" in reject.dims:
        reject = reject.any("comparison")
    return _share(reject.values.astype(bool))


def trial_rates(p: xr.Dataset) -> dict[str, tuple[float, float, float]]:
    """Trial-level rejection rates of a multi-arm point with their 95% Wilson intervals: ``ANY``, any
    comparison rejected (the disjunctive power; the family-wise error rate when no arm has an effect);
    when some arm has one, ``ALL``, every effective arm rejected (the conjunctive power), and when some
    arms have none, ``NULL_ANY``, any of those rejected (the family-wise error rate over them)."""
    reject = p["reject"].transpose("replicate", "comparison").values.astype(bool)
    null = (p["comparison_null"].values.astype(bool) if "comparison_null" in p.coords
            else np.zeros(reject.shape[1], bool))
    out = {ANY: _share(reject.any(axis=1))}
    if not null.all():
        out[ALL] = _share(reject[:, ~null].all(axis=1))
    if null.any() and not null.all():
        out[NULL_ANY] = _share(reject[:, null].any(axis=1))
    return out


def _mean_interval(x: np.ndarray) -> tuple[float, float, float]:
    """Mean over replicates and its 95% normal Monte Carlo interval."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    m = float(x.mean())
    half = Z95 * float(x.std(ddof=1)) / math.sqrt(x.size) if x.size > 1 else 0.0
    return (m, m - half, m + half)


def operating_characteristics(p: xr.Dataset) -> dict[str, tuple[float, float, float]]:
    """Rejection rate (Wilson interval), expected duration, events and patients (normal intervals).

    Events and patients are counted at the analysis (at the stopping look with interim analyses).
    """
    out = {"rejection": _rejection(p), "duration": _mean_interval(p["duration_months"].values)}
    if "n_events" in p:
        out["events"] = _mean_interval(p["n_events"].sum("arm").values)
    patients = p["n_enrolled"] if "n_enrolled" in p else p["n_randomized"]
    out["patients"] = _mean_interval(patients.sum("arm").values)
    return out


# --- per-point figures ----------------------------------------------------------------------------

def km_figure(ds: xr.Dataset) -> Figure:
    """Kaplan–Meier curves by arm: median over replicates with a 5–95% band."""
    panels, note = _panels(ds)
    panels = [(lbl, p) for lbl, p in panels if "km_survival" in p]
    fig, axes = _grid(len(panels), 5.0, 3.6)
    for ax, (label, p) in zip(axes, panels):
        km = p["km_survival"]
        months = km["month"].values
        for i, arm in enumerate(_present(km, "arm")):
            lo, mid, hi = _quantiles(km.sel(arm=arm).transpose("replicate", "month").values)
            color = COLORS[i % len(COLORS)]
            ax.step(months, mid, where="post", color=color, label=f"{arm} (median)")
            ax.fill_between(months, lo, hi, step="post", color=color, alpha=0.2, label=f"{arm} 5–95%")
        ax.set_xlabel("Months since randomization")
        seen = km.values[np.isfinite(km.values)]  # empty when no replicate randomized anybody
        ax.set_ylim(max(0.0, float(seen.min()) - 0.05) if seen.size else 0.0, 1.01)
        ax.grid(alpha=0.3)
        if label:
            ax.set_title(label, fontsize=9)
        last = months[np.isfinite(km.transpose(..., "month").values).reshape(-1, months.size).any(axis=0)]
        if last.size and last[-1] > 0:  # a follow-up that ends at 0 months has no range to show
            ax.set_xlim(0, last[-1])
    axes[0].set_ylabel("Endpoint-free probability")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8, loc="lower left")
    n = ds.sizes["replicate"]
    what = f"Kaplan–Meier by arm over {n} simulated trials (median and 5–95% band)"
    fig.suptitle(_title(ds, what, note), fontsize=10)
    return fig


def estimate_figure(ds: xr.Dataset) -> Figure:
    """Distribution of the estimate across replicates against the counterfactual truth.

    One panel per point; with several arms, a row per point and a panel per comparison (gid
    ``estimate:<arm>``; stacked files ``estimate:<point>:<arm>``), each with its own true effect.
    """
    panels, note = _panels(ds)
    rows = [[(label, arm, c) for arm, c in _comparisons(p)] for label, p in panels]
    n = ds.sizes["replicate"]
    what = f"Effect estimates over {n} simulated trials against the true effect"
    if all(len(r) == 1 for r in rows):
        fig, axes = _grid(len(panels), 5.0, 3.6, sharey=False)
        for ax, (label, p) in zip(axes, panels):
            _draw_estimate(ax, p, label)
        axes[0].set_ylabel("Simulated trials")
    else:
        if len(rows) == 1:  # one point: its comparisons at most three a row
            fig, axes = _grid(len(rows[0]), 5.0, 3.6, sharey=False)
            grid = np.array([axes], dtype=object)
        else:  # a row per point
            fig = Figure(figsize=(4.5 * max(map(len, rows)), 3.5 * len(rows) + 1.0), layout="constrained")
            grid = fig.subplots(len(rows), max(map(len, rows)), squeeze=False)
        for r, row in enumerate(rows):
            span = _estimate_span([p for _, _, p in row])  # the comparisons of a point on one scale
            for c in range(grid.shape[1]):
                ax = grid[r, c]
                if c >= len(row):
                    ax.set_visible(False)
                    continue
                label, arm, p = row[c]
                head = f"{label}: {arm}" if label and arm else (label or arm)
                if arm:
                    head += f" vs {_control(panels[r][1])}"
                _draw_estimate(ax, p, head, span, COLORS[c % len(COLORS)])
                ax.set_gid(f"estimate:{label}:{arm}" if label else f"estimate:{arm}")
            step = (2 if len(row) == 4 else 3) if len(rows) == 1 else grid.shape[1]
            for c in range(0, len(row), step):  # the first panel of each line of panels
                grid[r, c].set_ylabel("Simulated trials")
        what += "\none panel per comparison with the control"
        if len(rows) > 1:
            what += ", a row per " + ("protocol" if "protocol" in ds.dims else "sweep point")
            note = ""
    fig.suptitle(_title(ds, what, note), fontsize=10)
    return fig


def _drawable(p: xr.Dataset) -> np.ndarray:
    """The estimates a histogram can show: finite (and positive for a ratio)."""
    est = p["estimate"].values.astype(float)
    return est[np.isfinite(est) & ((est > 0) if is_ratio(p) else True)]


def _estimate_span(points: list[xr.Dataset]) -> tuple[float, float] | None:
    """Smallest and largest drawable estimate over points on one effect scale (None: no common scale)."""
    if len({(is_ratio(p), _effect_label(p)) for p in points}) != 1:
        return None
    est = np.concatenate([_drawable(p) for p in points])
    return (float(est.min()), float(est.max())) if est.size else None


def _draw_estimate(ax, p: xr.Dataset, label: str, span: tuple[float, float] | None = None,
                   color: str = COLORS[0]) -> None:
    truth = p["true_effect"].values.astype(float)
    ratio = is_ratio(p)
    shown = _drawable(p)
    bins = min(40, max(10, shown.size // 8))
    if span is None and shown.size:
        span = (float(shown.min()), float(shown.max()))
    if ratio and span is not None:
        edges = np.exp(np.linspace(np.log(span[0]), np.log(span[1]) + 1e-9, bins + 1))
        ax.set_xscale("log")
    elif span is not None and span[1] > span[0]:
        edges = np.linspace(span[0], span[1], bins + 1)
    else:
        edges = bins
    ax.hist(shown, bins=edges, color=color, alpha=0.75, label="estimate, each trial")
    good = np.isfinite(truth) & ((truth > 0) if ratio else True)
    if good.any():  # no true effect where no replicate had patients in both arms
        centre = float(np.exp(np.mean(np.log(truth[good])))) if ratio else float(np.mean(truth[good]))
        ax.axvline(centre, color="black", lw=2, label=f"true effect {centre:.3g}")
    ax.axvline(1.0 if ratio else 0.0, color="grey", ls="--", lw=1, label="no effect")
    if ratio:  # evenly spaced ratio ticks on the log axis (log ticks would label only 1 in this range)
        from matplotlib.ticker import FixedLocator, NullLocator, StrMethodFormatter

        lo_x, hi_x = ax.get_xlim()
        ticks = MaxNLocator(nbins=6).tick_values(lo_x, hi_x)
        ax.xaxis.set_major_locator(FixedLocator(ticks[(ticks >= lo_x) & (ticks <= hi_x) & (ticks > 0)]))
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:.3g}"))
        ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    text, unit = _effect_label(p)
    text = text[0].upper() + text[1:] + (f" ({unit})" if unit and unit != "1" else "")
    ax.set_xlabel(text + (" [log scale]" if ratio else ""), fontsize=8)
    rate, lo, hi = _rejection(p)
    what = "type I error" if _is_null(p) else "power"
    head = f"{label}\n" if label else ""
    ax.set_title(f"{head}{what} {rate:.3f} (95% MC {max(lo, 0.0):.3f}–{hi:.3f})", fontsize=9)  # no "-0.000"
    ax.legend(fontsize=7)


def _effect_label(p: xr.Dataset) -> tuple[str, str]:
    """What the estimate is and its unit, for one point.

    A stacked file keeps the variable attributes of its first point; where the effect measure
    differs between points (a sweep over the analysis method), the point's own attributes say what
    it is.
    """
    long_name = p["estimate"].attrs.get("long_name", "estimate")
    unit = p["estimate"].attrs.get("units", "")
    measure = p.attrs.get("effect_measure")
    if measure and long_name != f"estimated {measure}":
        long_name = f"estimated {measure}"
        unit = "months" if p.attrs.get("analysis") == "rmst" else ("1" if is_ratio(p) else "")
    return long_name, unit


def power_by_comparison_figure(ds: xr.Dataset) -> Figure:
    """Each comparison's power (type I error for an arm without effect) and the trial's disjunctive and
    conjunctive power (family-wise error rates where they apply), with 95% Wilson Monte Carlo intervals.

    One panel per multi-arm point. Bars have gids ``comparison:<arm>``, ``disjunctive``,
    ``conjunctive`` and ``fwer_null``; their intervals are the error bars labelled ``_interval:<gid>``.
    """
    panels, note = _panels(ds)
    panels = [(lbl, p) for lbl, p in panels if "comparison" in p.dims]
    width = max(p.sizes["comparison"] + len(trial_rates(p)) for _, p in panels)
    fig, axes = _panel_grid(len(panels), float(math.ceil(1.5 + 1.25 * width)), 4.5)
    for ax, (label, p) in zip(axes, panels):
        bars = []  # (gid, tick label, (rate, lo, hi), colour, hatched)
        for i, (arm, c) in enumerate(_comparisons(p)):
            null = _is_null(c)
            bars.append((f"comparison:{arm}", f"{arm}\n({'type I error' if null else 'power'})", _rejection(c),
                         COLORS[i % len(COLORS)], null))
        for key, rate in trial_rates(p).items():
            text = {ANY: "any arm\nrejected\n(FWER)" if _is_null(p) else "any arm\nrejected\n(disjunctive power)",
                    ALL: "every effective\narm rejected\n(conjunctive power)",
                    NULL_ANY: "any null arm\nrejected\n(FWER, null arms)"}[key]
            bars.append((key, text, rate, "#404040" if key != NULL_ANY else "#8c8c8c", key == NULL_ANY
                         or (key == ANY and _is_null(p))))
        x = np.arange(len(bars), dtype=float)
        arms = p.sizes["comparison"]
        x[arms:] += 0.6  # a gap between the comparisons and the trial-level rates
        for xi, (gid, _, (rate, lo, hi), color, hatched) in zip(x, bars):
            ax.bar([xi], [rate], width=0.7, color="white" if hatched else color, edgecolor=color,
                   hatch="//" if hatched else None, lw=1.5, gid=gid)
            ax.errorbar([xi], [rate], yerr=[[max(rate - lo, 0.0)], [max(hi - rate, 0.0)]], fmt="none",
                        ecolor="black", capsize=4, label=f"_interval:{gid}")
            ax.annotate(f"{rate:.3f}", (xi, hi), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
        ax.axvline((x[arms - 1] + x[arms]) / 2, color="grey", lw=0.8, ls=":")
        alpha = float(p.attrs.get("alpha", ds.attrs.get("alpha", np.nan)))
        if np.isfinite(alpha):
            ax.axhline(alpha, color="grey", ls="--", lw=1, label=f"nominal alpha {alpha:g}")
            ax.legend(fontsize=8, loc="upper right")
        ax.set_xticks(x, [b[1] for b in bars], fontsize=7.5)
        ax.set_ylim(0, 1.22)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.grid(axis="y", alpha=0.3)
        ax.set_title((f"{label}\n" if label else "") + f"each active arm against {_control(p)}, adjusted: "
                     f"{p.attrs.get('multiplicity', 'none')}", fontsize=9)
    axes[0].set_ylabel("Rejection rate (hatched: no true effect)")
    n = ds.sizes["replicate"]
    fig.suptitle(_title(ds, f"Power by comparison and of the trial over {n} simulated trials; "
                            "bars: 95% Monte Carlo intervals (Wilson)", note), fontsize=10)
    return fig


def biomarker_figure(ds: xr.Dataset) -> Figure:
    """Mean observed biomarker by visit and arm: median over replicates with a 5–95% band."""
    panels, note = _panels(ds)
    panels = [(lbl, p) for lbl, p in panels if "biomarker_mean" in p]
    fig, axes = _grid(len(panels), 5.0, 3.6)
    for ax, (label, p) in zip(axes, panels):
        bm = p["biomarker_mean"]
        visits = bm["visit_month"].values
        for i, arm in enumerate(_present(bm, "arm")):
            lo, mid, hi = _quantiles(bm.sel(arm=arm).transpose("replicate", "visit_month").values)
            color = COLORS[i % len(COLORS)]
            ax.plot(visits, mid, marker="o", color=color, label=str(arm))
            ax.fill_between(visits, lo, hi, color=color, alpha=0.2)
        ax.set_xlabel("Months since randomization")
        ax.grid(alpha=0.3)
        if label:
            ax.set_title(label, fontsize=9)
        unit = bm.attrs.get("units", "")
        ax.set_ylabel(f"Mean observed biomarker ({unit})" if unit else "Mean observed biomarker")
    axes[0].legend(fontsize=8)
    fig.suptitle(_title(ds, "Biomarker by arm (median over trials, 5–95% band)", note), fontsize=10)
    return fig


def occupancy_figure(ds: xr.Dataset) -> Figure:
    """Counterfactual state occupancy over time: a row per point, a panel per arm (mean over replicates)."""
    panels, note = _panels(ds)
    panels = [(lbl, p) for lbl, p in panels if "occupancy" in p]
    arms_of = [_present(p["occupancy"], "arm") for _, p in panels]
    cols = max(len(a) for a in arms_of)
    rows = len(panels)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows + 0.8), layout="constrained")
    grid = fig.subplots(rows, cols, sharey=True, squeeze=False)
    for r, ((label, p), arms) in enumerate(zip(panels, arms_of)):
        occ = p["occupancy"].mean("replicate")
        months = occ["step_month"].values
        keep = np.isfinite(occ.values).all(axis=tuple(i for i, d in enumerate(occ.dims) if d != "step_month"))
        for c in range(cols):
            ax = grid[r, c]
            if c >= len(arms):
                ax.set_visible(False)
                continue
            arm = arms[c]
            ax.stackplot(months[keep], occ.sel(arm=arm).transpose("state", "step_month").values[:, keep],
                         labels=[str(s) for s in occ["state"].values], colors=COLORS, alpha=0.85)
            ax.set_xlabel("Months since randomization")
            ax.set_title(f"{label + ': ' if label else ''}all patients on {arm}", fontsize=9)
            if keep.any():
                ax.set_xlim(months[keep][0], months[keep][-1])
            ax.set_ylim(0, 1)
        grid[r, 0].set_ylabel("Fraction of patients")
    grid[0, min(cols, len(arms_of[0])) - 1].legend(fontsize=8, loc="lower left")
    fig.suptitle(_title(ds, "Disease state occupancy (counterfactual, mean over trials)", note), fontsize=10)
    return fig


# --- across points: sweeps and comparisons ----------------------------------------------------------

def _positions(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """x positions of a swept dimension's values: the values when numeric, else 0, 1, 2..."""
    if np.issubdtype(np.asarray(values).dtype, np.number):
        return np.asarray(values, float), True
    return np.arange(len(values), dtype=float), False


def _sweep_points(ds: xr.Dataset, dims: list[str]) -> dict[tuple, dict[str, tuple[float, float, float]]]:
    """Operating characteristics of every sweep point, keyed by its index tuple; plus the null flag."""
    out = {}
    for idx in itertools.product(*(range(ds.sizes[d]) for d in dims)):
        p = _own_point(ds.isel(dict(zip(dims, idx))))
        oc = operating_characteristics(p)
        oc["null"] = _is_null(p)
        if "comparison" in p.dims:  # per active arm: (rejection rate and interval, null)
            oc["comparisons"] = {arm: (_rejection(c), _is_null(c)) for arm, c in _comparisons(p)}
        out[idx] = oc
    return out


def power_figure(ds: xr.Dataset, dim: str) -> Figure:
    """Rejection rate (power; type I error at null points) and expected duration against one swept key.

    One line per combination of the other swept dimensions' values; error bars are 95% Monte Carlo
    intervals (Wilson for the rejection rate, normal for the mean duration).
    """
    dims = sweep_dims(ds)
    others = [d for d in dims if d != dim]
    stats = _sweep_points(ds, dims)
    x, numeric = _positions(ds[dim].values)
    combos = list(itertools.product(*(range(ds.sizes[d]) for d in others)))
    if any("comparisons" in s for s in stats.values()):
        return _multiarm_power_figure(ds, dim, others, stats, combos, x, numeric)
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax_p, ax_d = fig.subplots(1, 2)
    span = (x.max() - x.min()) if x.size > 1 else 1.0
    width = 0.012 * span * (len(combos) > 1) if numeric else 0.08 * (len(combos) > 1)
    any_null = any(s["null"] for s in stats.values())
    all_null = all(s["null"] for s in stats.values())
    for c, combo in enumerate(combos):
        color = COLORS[c % len(COLORS)]
        label = _label({d: ds[d].values[i] for d, i in zip(others, combo)}) or "rejection rate"
        shift = (c - (len(combos) - 1) / 2) * width
        rows = []
        for i in range(ds.sizes[dim]):
            idx = tuple(combo[others.index(d)] if d != dim else i for d in dims)
            rows.append(stats[idx])
        rate = np.array([r["rejection"] for r in rows])
        null = np.array([r["null"] for r in rows])
        xs = x + shift
        ax_p.plot(xs, rate[:, 0], color=color, lw=1.2, label=label, gid=f"power:{label}")
        ax_p.errorbar(xs, rate[:, 0], yerr=np.abs(rate[:, 1:].T - rate[:, 0]), fmt="none", ecolor=color, capsize=3,
                      label=f"_power:{label}")
        ax_p.plot(xs[~null], rate[~null, 0], "o", color=color)
        ax_p.plot(xs[null], rate[null, 0], "s", mfc="white", mec=color, mew=1.5)
        dur = np.array([r["duration"] for r in rows])
        ax_d.errorbar(xs, dur[:, 0], yerr=np.abs(dur[:, 1:].T - dur[:, 0]), fmt="o-", color=color, capsize=3,
                      label=label)
    alpha = float(ds.attrs.get("alpha", np.nan))
    if np.isfinite(alpha):
        ax_p.axhline(alpha, color="grey", ls="--", lw=1, label=f"nominal alpha {alpha:g}")
    if any_null and not all_null:
        ax_p.plot([], [], "s", mfc="white", mec="black", label="null effect: type I error")
    ax_p.set_ylim(-0.02, 1.02)
    ax_p.set_ylabel("Type I error" if all_null else ("Rejection rate (power; type I error at null)" if any_null
                                                      else "Power"))
    ax_d.set_ylabel("Expected trial duration (months)")
    ax_d.set_ylim(bottom=0)
    xlabel = ds[dim].attrs.get("protocol_key", dim)
    for ax in (ax_p, ax_d):
        ax.set_xlabel(f"{dim} (protocol key {xlabel})" if xlabel != dim else dim)
        ax.grid(alpha=0.3)
        if not numeric:
            ax.set_xticks(x, [_fmt(v) for v in ds[dim].values])
    ax_p.legend(fontsize=8, title=", ".join(others) or None, title_fontsize=8)
    n = ds.sizes["replicate"]
    fig.suptitle(_title(ds, f"Operating characteristics against {dim}, {n} simulated trials a point; "
                            "bars: 95% Monte Carlo intervals (Wilson for rates)"), fontsize=10)
    return fig


def _multiarm_power_figure(ds: xr.Dataset, dim: str, others: list[str], stats: dict, combos: list[tuple],
                           x: np.ndarray, numeric: bool) -> Figure:
    """``power_figure`` of a sweep of multi-arm protocols: a line per comparison (its power; type I error,
    hollow squares, where its arm has no effect) and the disjunctive power (any comparison rejected; the
    family-wise error rate where no arm has an effect), by colour; the other swept dimensions' values by
    line style. Lines have gids ``power:<arm>`` or ``power:any rejected``, followed by ``; <values>`` of
    the other dimensions; their intervals are the error bars labelled ``_`` + the gid, their effect-free
    points the markers ``null:`` + the same label."""
    dims = sweep_dims(ds)
    series = []  # comparisons in the order the points hold them, then the trial-level rate
    for s in stats.values():
        series.extend(a for a in s.get("comparisons", {}) if a not in series)
    series.append(ANY)
    fig = Figure(figsize=(12, 5.0), layout="constrained")
    ax_p, ax_d = fig.subplots(1, 2, width_ratios=(1.4, 1))
    lines = len(combos) * len(series)
    span = (x.max() - x.min()) if x.size > 1 else 1.0
    width = (0.012 * span if numeric else 0.06) * (lines > 1)
    styles = ("-", "--", ":", "-.")
    top = 0.0
    for c, combo in enumerate(combos):
        where = _label({d: ds[d].values[i] for d, i in zip(others, combo)})
        rows = [stats[tuple(combo[others.index(d)] if d != dim else i for d in dims)] for i in range(ds.sizes[dim])]
        for k, name in enumerate(series):
            color = "black" if name == ANY else COLORS[k % len(COLORS)]
            text = "any rejected" if name == ANY else str(name)
            label = text + (f"; {where}" if where else "")
            rate, null = [], []
            for r in rows:
                if name == ANY:
                    rate.append(r["rejection"])
                    null.append(r["null"])
                else:
                    one = r.get("comparisons", {}).get(name, ((np.nan,) * 3, False))
                    rate.append(one[0])
                    null.append(one[1])
            rate, null = np.array(rate, float), np.array(null, bool)
            xs = x + (c * len(series) + k - (lines - 1) / 2) * width
            shown = label.replace("any rejected", "any rejected (disjunctive power)") if name == ANY else label
            ax_p.plot(xs, rate[:, 0], color=color, ls=styles[c % len(styles)], lw=2.0 if name == ANY else 1.2,
                      label=shown, gid=f"power:{label}")
            ax_p.errorbar(xs, rate[:, 0], yerr=np.abs(rate[:, 1:].T - rate[:, 0]), fmt="none", ecolor=color,
                          capsize=3, label=f"_power:{label}")
            ax_p.plot(xs[~null], rate[~null, 0], "o", color=color)
            ax_p.plot(xs[null], rate[null, 0], "s", mfc="white", mec=color, mew=1.5, gid=f"null:{label}")
        dur = np.array([r["duration"] for r in rows])
        xs = x + (c - (len(combos) - 1) / 2) * (0.012 * span if numeric else 0.06) * (len(combos) > 1)
        ax_d.errorbar(xs, dur[:, 0], yerr=np.abs(dur[:, 1:].T - dur[:, 0]), fmt="o" + styles[c % len(styles)],
                      color="#404040", capsize=3, label=where or "duration")
        top = max(top, float(np.nanmax(dur[:, 2], initial=0.0)))
    alpha = float(ds.attrs.get("alpha", np.nan))
    if np.isfinite(alpha):
        ax_p.axhline(alpha, color="grey", ls="--", lw=1, label=f"nominal alpha {alpha:g}")
    if any(s["null"] or any(n for _, n in s.get("comparisons", {}).values()) for s in stats.values()):
        ax_p.plot([], [], "s", mfc="white", mec="black", label="no effect: type I error (any rejected: FWER)")
    ax_p.set_ylim(-0.02, 1.02)
    ax_p.set_ylabel("Rejection rate by comparison and of the trial")
    ax_d.set_ylabel("Expected trial duration (months)")
    ax_d.set_ylim(0, 1.1 * top if top > 0 else None)
    xlabel = ds[dim].attrs.get("protocol_key", dim)
    for ax in (ax_p, ax_d):
        ax.set_xlabel(f"{dim} (protocol key {xlabel})" if xlabel != dim else dim)
        ax.grid(alpha=0.3)
        if not numeric:
            ax.set_xticks(x, [_fmt(v) for v in ds[dim].values])
    ax_p.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.14), ncol=2)
    if others:
        ax_d.legend(fontsize=7, title=", ".join(others), title_fontsize=7)
    n = ds.sizes["replicate"]
    fig.suptitle(_title(ds, f"Power by comparison against {dim}, {n} simulated trials a point; "
                            "bars: 95% Monte Carlo intervals (Wilson for rates)"), fontsize=10)
    return fig


def power_surface_figure(ds: xr.Dataset) -> Figure:
    """Rejection rate over two swept dimensions as an annotated heatmap (with Wilson intervals)."""
    d0, d1 = sweep_dims(ds)
    stats = _sweep_points(ds, [d0, d1])
    n0, n1 = ds.sizes[d0], ds.sizes[d1]
    grid = np.array([[stats[(i, j)]["rejection"][0] for j in range(n1)] for i in range(n0)])
    fig = Figure(figsize=(max(6.0, 1.5 * n1 + 2.5), max(4.0, 0.9 * n0 + 2.0)), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto", origin="lower")
    for i in range(n0):
        for j in range(n1):
            s = stats[(i, j)]
            rate, lo, hi = s["rejection"]
            text = f"{rate:.2f}\n({lo:.2f}–{hi:.2f})" + (("\nFWER" if "comparisons" in s else "\ntype I")
                                                          if s["null"] else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black" if rate > 0.55 else "white")
    ax.set_xticks(np.arange(n1), [_fmt(v) for v in ds[d1].values])
    ax.set_yticks(np.arange(n0), [_fmt(v) for v in ds[d0].values])
    ax.set_xlabel(d1)
    ax.set_ylabel(d0)
    several = any("comparisons" in s for s in stats.values())
    fig.colorbar(im, ax=ax, label="Any comparison rejected\n(disjunctive power; FWER at global null points)" if several
                 else "Rejection rate (power; type I error at null points)")
    fig.suptitle(_title(ds, f"Power surface over {ds.sizes['replicate']} trials a point (95% Wilson MC interval)"),
                 fontsize=10)
    return fig


def operating_characteristics_figure(ds: xr.Dataset) -> Figure:
    """Compared protocols side by side: rejection rate, expected duration, events and patients."""
    points = _all_points(ds)
    labels = [lbl for lbl, _ in points]
    stats = [operating_characteristics(p) for _, p in points]
    nulls = [_is_null(p) for _, p in points]
    rejection = "Rejection rate (power; type I error where null)"
    if any("comparison" in p.dims for _, p in points):
        rejection += "\nseveral arms: any comparison rejected (disjunctive power; FWER at the global null)"
    panels = [("rejection", rejection), ("duration", "Expected duration (months)")]
    if any("events" in s for s in stats):
        panels.append(("events", "Expected events at the analysis"))
    panels.append(("patients", "Expected patients randomized by the analysis"))
    fig = Figure(figsize=(10, 1.6 + 0.45 * len(labels) * math.ceil(len(panels) / 2) + 1.2 * math.ceil(len(panels) / 2)),
                 layout="constrained")
    axes = fig.subplots(math.ceil(len(panels) / 2), 2, squeeze=False).ravel()
    y = np.arange(len(labels))
    for ax, (key, text) in zip(axes, panels):
        for i, s in enumerate(stats):
            if key not in s:
                continue
            m, lo, hi = s[key]
            color = COLORS[i % len(COLORS)]
            ax.errorbar([m], [y[i]], xerr=[[max(m - lo, 0.0)], [max(hi - m, 0.0)]],
                        fmt="s" if key == "rejection" and nulls[i] else "o",
                        color=color, capsize=4, ms=7, label=f"_oc:{key}:{labels[i]}")
            ax.annotate(f"{m:.3g}" if key == "rejection" else f"{m:,.1f}", (m, y[i]), textcoords="offset points",
                        xytext=(0, 8), ha="center", fontsize=8)
        ax.set_yticks(y, labels)
        ax.set_ylim(-0.6, len(labels) - 0.4)
        ax.invert_yaxis()
        ax.set_xlabel(text)
        ax.grid(axis="x", alpha=0.3)
        if key != "rejection":
            ax.set_xlim(left=0, right=ax.get_xlim()[1] * 1.05)
        else:
            ax.set_xlim(0, 1.02)
            alpha = float(ds.attrs.get("alpha", np.nan))
            if np.isfinite(alpha):
                ax.axvline(alpha, color="grey", ls="--", lw=1, label=f"alpha {alpha:g}")
                ax.legend(fontsize=8, loc="lower right")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(_title(ds, f"Operating characteristics on the same {ds.sizes['replicate']} sets of virtual patients; "
                            "bars: 95% Monte Carlo intervals\n(Wilson for the rejection rate; events and patients at "
                            "the stopping look for group-sequential designs)"), fontsize=10)
    return fig


# --- group-sequential designs ----------------------------------------------------------------------

def _look_ticks(p: xr.Dataset) -> list[str]:
    looks = p["look"].values
    planned = p["planned_fraction"].values if "planned_fraction" in p.coords else [np.nan] * len(looks)
    last = len(looks)
    return [f"look {int(k)}{' (final)' if i == last - 1 else ''}\n{100 * f:.0f}% information"
            for i, (k, f) in enumerate(zip(looks, planned))]


def sequential_bounds_figure(p: xr.Dataset, where: str = "") -> Figure:
    """Efficacy (and futility) bounds on the z scale per look, with the z paths of ``PATHS`` replicates.

    Bounds are the median over replicates of the bounds recomputed at each trial's observed
    information (the bar spans their 5–95% range when it varies); each path stops at its trial's
    stopping look, marked by why it stopped. A multi-arm multi-stage design has a panel per
    comparison (its own information, bounds and stopping; gid ``bounds:<arm>``).
    """
    cells = _comparisons(p)
    design = (f"{p.attrs.get('efficacy_spending', '')} efficacy spending; futility: {p.attrs.get('futility', 'none')}")
    head = f"{where}: " if where else ""
    n = p.sizes["replicate"]
    shown = min(PATHS, n)
    if len(cells) == 1:
        fig = Figure(figsize=(8, 5), layout="constrained")
        ax = fig.add_subplot()
        _draw_bounds(ax, p)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.suptitle(_title(p, f"{head}group-sequential bounds ({design})\nz paths of {shown} of {n} simulated "
                               "trials, each to its stopping look"), fontsize=10)
        return fig
    fig, axes = _panel_grid(len(cells), 5.0, 5.5)
    control = _control(p)
    for ax, (arm, c) in zip(axes, cells):
        _draw_bounds(ax, c)
        ax.set_gid(f"bounds:{arm}")
        ax.set_title(f"{arm} vs {control}" + (" (no effect)" if _is_null(c) else ""), fontsize=9)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
        ax.yaxis.set_tick_params(labelleft=True)
    for ax in axes[1:]:
        ax.set_ylabel("")
    try:
        level = f"; per-comparison level {float(p.attrs['comparison_alpha']):.4g} ({p.attrs.get('multiplicity', '')})"
    except (KeyError, TypeError, ValueError):  # not recorded (or a stacked file's padding)
        level = ""
    stopping = p.attrs.get("stopping")
    fig.suptitle(_title(p, f"{head}multi-arm multi-stage bounds, a panel per comparison"
                           f"{f' ({stopping} stopping)' if stopping else ''}\n{design}{level}\n"
                           f"z paths of {shown} of {n} simulated trials, each to its comparison's stopping look"),
                 fontsize=10)
    return fig


def _draw_bounds(ax, p: xr.Dataset) -> None:
    """The z paths, their stopping outcomes and the bounds of one comparison (dimensions replicate, look)."""
    looks = p["look"].values.astype(float)
    z = p["look_z"].transpose("replicate", "look").values.astype(float)
    stop = p["stop_look"].values.astype(int)
    reason = p["stop_reason"].values.astype(int)
    reject = p["reject"].values.astype(bool)
    shown = min(PATHS, z.shape[0])
    for r in range(shown):
        k = int(np.clip(stop[r], 1, len(looks)))
        ax.plot(looks[:k], z[r, :k], color="#606060", lw=0.7, alpha=0.45, gid=f"path:{r}")
    outcome = np.where(reason == 1, 0, np.where(reason == 2, 1, np.where(reason == 3, 4, np.where(reject, 2, 3))))
    end = np.clip(stop[:shown], 1, len(looks)) - 1
    for code, ((text, color), marker) in enumerate(zip((EFFICACY, FUTILITY, FINAL_REJECT, FINAL_ACCEPT, WITH_TRIAL),
                                                       ("^", "v", "o", "o", "s"))):
        sel = outcome[:shown] == code
        if sel.any():
            ax.plot(looks[end[sel]], z[np.arange(shown)[sel], end[sel]], marker, color=color, ms=6, ls="none",
                    label=f"{text} ({int(sel.sum())})", mec="black" if code == 3 else color, mew=0.5,
                    gid=f"outcome:{text}")
    for var, text, color in (("efficacy_bound", "efficacy bound", EFFICACY[1]),
                             ("futility_bound", "futility bound (non-binding)", FUTILITY[1])):
        if var not in p:
            continue
        b = p[var].transpose("replicate", "look").values.astype(float)
        b = np.where(np.isfinite(b), b, np.nan)
        if not np.isfinite(b[:, :-1]).any():  # no interim bound (at the final look both bounds meet)
            continue
        lo, mid, hi = _quantiles(b)
        ax.plot(looks, mid, color=color, lw=2.5, marker="D", ms=6, label=text, gid=var)
        vary = np.nan_to_num(hi - lo) > 1e-9
        if vary.any():
            ax.errorbar(looks[vary], mid[vary], yerr=[(mid - lo)[vary], (hi - mid)[vary]], fmt="none",
                        ecolor=color, capsize=5, lw=1.5)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(looks, _look_ticks(p), fontsize=8)
    ax.set_xlim(looks[0] - 0.3, looks[-1] + 0.3)
    ax.set_ylabel("Standardized statistic z (positive favours the active arm)")
    ax.grid(alpha=0.3)


def stopping_shares(p: xr.Dataset) -> dict[str, np.ndarray]:
    """Share of replicates per look: stopped for efficacy or futility, final analysis (rejected or
    not) at that look, stopped with the trial (a multi-arm design whose other arm's efficacy ended it),
    or continued past it. The shares at a look sum to the share that reached it. One comparison."""
    looks = p["look"].values.astype(int)
    stop = p["stop_look"].values.astype(int)
    reason = p["stop_reason"].values.astype(int)
    reject = p["reject"].values.astype(bool)
    n = stop.size
    at = stop[None, :] == looks[:, None]
    return {
        EFFICACY[0]: (at & (reason == 1)).sum(1) / n,
        FUTILITY[0]: (at & (reason == 2)).sum(1) / n,
        FINAL_REJECT[0]: (at & (reason == 0) & reject).sum(1) / n,
        FINAL_ACCEPT[0]: (at & (reason == 0) & ~reject).sum(1) / n,
        WITH_TRIAL[0]: (at & (reason == 3)).sum(1) / n,
        CONTINUED[0]: (stop[None, :] > looks[:, None]).sum(1) / n,
    }


def stopping_figure(p: xr.Dataset, where: str = "") -> Figure:
    """Stacked shares of trials by look: stopped for efficacy / futility, final analysis, continued.

    A multi-arm multi-stage design has a panel per comparison (gid ``stopping:<arm>``), and the share
    of its comparisons stopped with the trial (``looks.stopping: simultaneous``) where there are any.
    """
    cells = _comparisons(p)
    n = p.sizes["replicate"]
    head = f"{where}: " if where else ""
    if len(cells) == 1:
        fig = Figure(figsize=(8, 5), layout="constrained")
        ax = fig.add_subplot()
        _draw_stopping(ax, p)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.suptitle(_title(p, f"{head}stopping by look over {n} simulated trials\n{_early_efficacy(p, ', ')}"),
                     fontsize=10)
        return fig
    fig, axes = _panel_grid(len(cells), 5.0, 5.0)
    control = _control(p)
    for ax, (arm, c) in zip(axes, cells):
        _draw_stopping(ax, c)
        ax.set_gid(f"stopping:{arm}")
        ax.set_title(f"{arm} vs {control}" + (" (no effect)" if _is_null(c) else "") +
                     f"\n{_early_efficacy(c, chr(10))}", fontsize=9)
    for ax in axes[1:]:
        ax.set_ylabel("")
    drawn = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            drawn.setdefault(text, handle)
    order = [t for t, _ in (EFFICACY, FUTILITY, FINAL_REJECT, FINAL_ACCEPT, WITH_TRIAL, CONTINUED) if t in drawn]
    fig.legend([drawn[t] for t in order], order, fontsize=8, loc="outside right center")
    stopping = p.attrs.get("stopping")
    fig.suptitle(_title(p, f"{head}stopping by look over {n} simulated trials, a panel per comparison"
                           + (f" ({stopping} stopping)" if stopping else "")), fontsize=10)
    return fig


def _early_efficacy(p: xr.Dataset, sep: str) -> str:
    """Share stopped early for efficacy (95% Wilson interval) and the mean stopping look, of one comparison."""
    reason = p["stop_reason"].values.astype(int)
    rate, lo, hi = _share(reason == 1)
    stop = p["stop_look"].values.astype(float)
    return (f"early stop for efficacy {rate:.3f} (95% MC {max(lo, 0.0):.3f}–{hi:.3f}){sep}"
            f"mean stopping look {stop.mean():.2f}")


def _draw_stopping(ax, p: xr.Dataset) -> None:
    """Stacked bars of one comparison's stopping shares by look (gid: the outcome)."""
    shares = stopping_shares(p)
    looks = p["look"].values.astype(float)
    bottom = np.zeros(len(looks))
    for text, color in (EFFICACY, FUTILITY, FINAL_REJECT, FINAL_ACCEPT, WITH_TRIAL, CONTINUED):
        h = shares[text] * 100
        if not h.any():
            continue
        ax.bar(looks, h, bottom=bottom, color=color, edgecolor="white", width=0.6, label=text, gid=text)
        for x, b, v in zip(looks, bottom, h):
            if v >= 3:
                ax.text(x, b + v / 2, f"{v:.1f}%", ha="center", va="center", fontsize=9,
                        color="black" if color in (CONTINUED[1], FINAL_ACCEPT[1]) else "white")
            elif v > 0:  # too thin to hold its label: write it beside the bar
                ax.annotate(f"{v:.1f}%", (x + 0.3, b + v / 2), xytext=(4, 0), textcoords="offset points",
                            ha="left", va="center", fontsize=8, color=color)
        bottom += h
    ax.set_xticks(looks, _look_ticks(p), fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("Share of simulated trials (%)")
    ax.grid(axis="y", alpha=0.3)
