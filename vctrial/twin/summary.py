"""What a twin's Dataset says: the what-if table of one patient, the ranked table of a batch, NNTs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from vctrial.errors import SpecError
from vctrial.twin.outcomes import RISK, YEARS, outcome_names, outcomes_from_paths
from vctrial.twin.uncertainty import dataset_varies, decompose


def draw_outcomes(ds: xr.Dataset) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Outcome names and per-draw values (D, A, O) from a single-patient twin Dataset."""
    events = [str(e) for e in ds["event"].values]
    endpoint = np.isin(events, json.loads(ds.attrs.get("endpoint_events", "[]")))
    first = ds["event_time"].transpose("draw", "option", "event").values
    first = np.where(np.isnan(first), np.inf, first)
    absorbing = ds["state_absorbing"].values.astype(bool)
    dead = absorbing[ds["health_state"].transpose("draw", "option", "time").values[..., -1]]
    death = np.where(dead, 0.0, np.inf)
    y = outcomes_from_paths(first, death, np.zeros(first.shape[:2] + (len(absorbing),)), absorbing,
                            ds["state_utility"].values, endpoint)
    y[..., -2] = ds["life_years"].transpose("draw", "option").values
    y[..., -1] = ds["qalys"].transpose("draw", "option").values
    return outcome_names(events, endpoint), y


def summarize(ds: xr.Dataset) -> pd.DataFrame:
    """Per option and outcome of a single-patient twin: mean, uncertainty parts, difference vs the first option, NNT.

    Columns are the :data:`STATISTICS` of the value and, prefixed ``difference_``, of the paired
    difference against the first option (the same draws under both), plus ``kind`` (risk or
    years) and ``nnt`` (text, for risks).
    """
    names, y = draw_outcomes(ds)
    M = int(ds.attrs["parameter_draws"])
    varies = dataset_varies(ds)
    stats = decompose(y, M, varies[:, None])
    diff = decompose(y - y[:, :1, :], M, (varies | varies[0])[:, None])
    rows = []
    for a, option in enumerate(ds["option"].values):
        for o, (name, kind) in enumerate(names):
            row = {"option": str(option), "outcome": name, "kind": kind}
            row.update({k: float(v[a, o]) for k, v in stats.items()})
            row.update({f"difference_{k}": float(v[a, o]) for k, v in diff.items()})
            row["nnt"] = nnt_text(row["difference_mean"], row["difference_param_lower"],
                                  row["difference_param_upper"]) if kind == RISK and a > 0 else ""
            rows.append(row)
    return pd.DataFrame(rows).set_index(["option", "outcome"])


NNT_ZERO = 1e-9
"""A risk difference smaller than this is rounding in the mean of paired differences, not a difference."""


def nnt_text(diff: float, lo: float, hi: float) -> str:
    """Number needed to treat for a risk difference and its interval (Altman, BMJ 1998;317:1309).

    A negative difference (fewer events) gives an NNT to benefit (NNTB), a positive one to harm
    (NNTH); an interval that includes 0 runs from NNTB through infinity to NNTH.
    """
    if not np.isfinite(diff) or abs(diff) < NNT_ZERO:
        return "none"
    point = f"{'NNTB' if diff < 0 else 'NNTH'} {1 / abs(diff):.0f}"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return point
    if hi < 0 or lo > 0:
        a, b = sorted((1 / abs(lo), 1 / abs(hi)))
        return f"{point} ({a:.0f} to {b:.0f})"
    ends = [f"NNTB {1 / abs(lo):.0f}" if lo < 0 else "", f"NNTH {1 / abs(hi):.0f}" if hi > 0 else ""]
    return f"{point} ({' to ∞ to '.join(e for e in ends if e) or '∞'})"


def _cell(mean: float, lo: float, hi: float, resolved: float, scale: float, digits: int) -> str:
    if not np.isfinite(lo):
        return f"{mean * scale:.{digits}f}"
    mark = "" if resolved else "*"
    return f"{mean * scale:.{digits}f} ({lo * scale:.{digits}f} to {hi * scale:.{digits}f}){mark}"


def format_twin(ds: xr.Dataset) -> str:
    """The printed what-if table of a single-patient twin."""
    table = summarize(ds)
    M = int(ds.attrs["parameter_draws"])
    options = [str(o) for o in ds["option"].values]
    years = ds.attrs["horizon_months"] / 12.0
    names = list(dict.fromkeys(table.index.get_level_values("outcome")))
    label = {"any_event": "any event", "all_cause_death": "death (any cause)", "life_years": "life-years",
             "qalys": "QALYs", "endpoint": f"endpoint: {ds.attrs.get('endpoint_label', '')}"}
    possible = [n for n in names if (table.xs(n, level="outcome")["mean"] != 0).any()
                or table.xs(n, level="outcome")["kind"].iloc[0] != RISK]
    marker_labels = [f"{b} at {years:g} y ({ds[f'biomarker_{b}'].attrs.get('units', '')})"
                     for b in ds.coords.get("biomarker", xr.DataArray([])).values]
    width = max([len(label.get(n, n)) for n in possible] + [len(s) for s in marker_labels]) + 2
    heads = options + [f"{o} - {options[0]}" for o in options[1:]]
    cols = [max(len(h), 22) + 3 for h in heads]
    lines = [
        f"patient {ds.attrs['patient']} ({ds.attrs['patient_id_policy']})",
        f"options: {', '.join(options)} ({ds.attrs['protocol_name']}); horizon {years:g} years; "
        f"starting state {ds.attrs['start_state']}"
        + (f" (entered {ds.attrs['start_months_in_state']:.1f} months ago)"
           if ds.attrs.get("start_months_in_state", 0.0) > 0 else ""),
        f"draws: {ds.attrs['draws']} per option = {M} parameter draws x {ds.attrs['chance_draws_per_parameter_draw']} "
        f"chance draws, common random numbers across options; seed {ds.attrs['seed']}",
    ]
    for kind, title, scale, digits in ((RISK, f"risk by {years:g} years (%)", 100.0, 1),
                                       (YEARS, f"by {years:g} years (years)", 1.0, 2)):
        lines += ["", f"  {title:<{width}}" + "".join(f"{h:>{w}}" for h, w in zip(heads, cols))
                  + ("   NNT" if kind == RISK else "")]
        for name in possible:
            rows = table.xs(name, level="outcome")
            if rows["kind"].iloc[0] != kind:
                continue
            text = f"  {label.get(name, name):<{width}}"
            for a in range(len(options)):
                r = rows.iloc[a]
                cell = _cell(r["mean"], r["param_lower"], r["param_upper"], r["param_resolved"], scale, digits)
                text += f"{cell:>{cols[a]}}"
            for a in range(1, len(options)):
                r = rows.iloc[a]
                cell = _cell(r["difference_mean"], r["difference_param_lower"], r["difference_param_upper"],
                             r["difference_param_resolved"], scale, digits)
                text += f"{cell:>{cols[len(options) + a - 1]}}" + (f"   {r['nnt']}" if kind == RISK else "")
            lines.append(text)
    worst = {kind: table.loc[table["kind"] == kind, ["mc_se", "difference_mc_se"]].to_numpy().max()
             for kind in (RISK, YEARS)}
    if "biomarker" in ds.coords:
        months = ds["time"].values
        at = sorted({float(months[np.argmin(np.abs(months - 12.0))]), float(months[-1])})
        lines += ["", "  biomarker, patients alive: mean (95% range)",
                  f"  {'':<{width}}" + "".join(f"{o:>{c}}" for o, c in zip(options, cols))]
        for b in ds["biomarker"].values:
            var = ds[f"biomarker_{b}"]
            for t in at:
                values = var.sel(time=t).transpose("option", "draw").values.astype(np.float64)
                name = f"{b} at {t / 12:g} y ({var.attrs.get('units', '')})"
                text = f"  {name:<{width}}"
                for a in range(len(options)):
                    v = values[a][np.isfinite(values[a])]
                    cell = f"{v.mean():.2f} ({np.quantile(v, 0.025):.2f} to {np.quantile(v, 0.975):.2f})" if v.size else "-"
                    text += f"{cell:>{cols[a]}}"
                lines.append(text)
    mc = f"Monte Carlo SE at most {worst[RISK] * 100:.2f} percentage points and {worst[YEARS]:.3f} years."
    if M > 1:
        notes = ["Intervals: 95% parameter uncertainty (effects drawn from their confidence intervals); a number",
                 "without one has no uncertain parameter. * marks a spread that Monte Carlo noise alone could give",
                 "(ANOVA F-test at 5%), shown unshrunk (conservative); more --draws resolve it.", mc]
    else:
        notes = [f"No effect of the protocol has a confidence interval: numbers carry Monte Carlo error only. {mc}"]
    impossible = [label.get(n, n) for n in names if n not in possible]
    if impossible:
        notes.append(f"Not possible from the starting state (risk 0 under every option): {', '.join(impossible)}.")
    lines += [""] + notes + ["", f"  {'SD of one outcome':<{width}}" + "".join(f"{o:>34}" for o in options),
                             f"  {'(chance / parameters / total)':<{width}}"]
    for name in possible:
        rows = table.xs(name, level="outcome")
        scale, unit = (100.0, " %") if rows["kind"].iloc[0] == RISK else (1.0, " y")
        lines.append(f"  {label.get(name, name):<{width}}" + "".join(
            f"{rows['sd_chance'].iloc[a] * scale:>12.2f} /{rows['sd_parameters'].iloc[a] * scale:>7.2f} /"
            f"{rows['sd_total'].iloc[a] * scale:>7.2f}{unit}" for a in range(len(options))))
    return "\n".join(lines)


def risk_table(ds: xr.Dataset, rank_by: str | None = None) -> pd.DataFrame:
    """A batch twin's per-patient table, ranked by expected benefit of the last option over the first.

    Benefit is the risk reduction of ``rank_by`` (an outcome: an event, ``any_event`` (the
    default: the first event of any kind, which every starting state can have), ``all_cause_death``,
    ``endpoint``) or the gain in ``life_years`` / ``qalys``. Ties are broken by the patient label,
    so the ranking does not depend on the order of the input rows. ``interval_resolved`` is False
    where the parameter interval of the difference could be Monte Carlo noise (it is then unshrunk).
    """
    outcomes = [str(o) for o in ds["outcome"].values]
    rank_by = rank_by or "any_event"
    options = [str(o) for o in ds["option"].values]
    if rank_by in ("life_years", "qalys"):
        value, diff, sign = ds[rank_by], ds[rank_by + "_difference"], 1.0
    elif rank_by in outcomes:
        value, diff, sign = ds["risk"].sel(outcome=rank_by), ds["risk_difference"].sel(outcome=rank_by), -1.0
    else:
        raise SpecError("command line", "--rank-by", f"unknown outcome {rank_by!r} (one of "
                                                     f"{', '.join(outcomes + ['life_years', 'qalys'])})")
    frame = pd.DataFrame({"patient": ds["patient"].values.astype(str), "row": ds["row"].values,
                          "start_state": ds["start_state"].values.astype(str)})
    for o in options:
        frame[f"{rank_by} {o}"] = value.sel(option=o, statistic="mean").values
    d = diff.sel(option=options[-1])
    frame["difference"] = d.sel(statistic="mean").values
    frame["lower"] = d.sel(statistic="param_lower").values
    frame["upper"] = d.sel(statistic="param_upper").values
    frame["mc_se"] = d.sel(statistic="mc_se").values
    frame["interval_resolved"] = d.sel(statistic="param_resolved").values.astype(bool)
    if sign < 0:
        frame["NNT"] = [nnt_text(x, lo, hi) for x, lo, hi in zip(frame["difference"], frame["lower"], frame["upper"])]
    for name in ("life_years", "qalys"):
        frame[f"{name} gain"] = ds[name + "_difference"].sel(option=options[-1], statistic="mean").values
    frame["benefit"] = sign * frame["difference"]
    frame = frame.sort_values(["benefit", "patient"], ascending=[False, True], kind="mergesort")
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame.set_index("rank")
