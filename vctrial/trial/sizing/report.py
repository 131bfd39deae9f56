"""The text ``vctrial design`` prints for a design (also the header of a written protocol)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from vctrial.trial.sizing.inputs import _show

if TYPE_CHECKING:  # result.py imports this module (Design.text)
    from vctrial.trial.sizing.result import Design


def _ratio_text(d: Design) -> str:
    if d.weights is not None:
        return f"{d.weights[0]}:{d.weights[1]}"
    return f"{d.allocation:g}:1"


def format_design(d: Design) -> str:
    s = d.seq
    lines = [f"vctrial design: {d.endpoint} endpoint, {d.method}"]
    lines.append("inputs")
    lines.append(f"  alpha {d.alpha:g} {d.sided}-sided, power {d.power:g}, allocation {_ratio_text(d)} (active:control)")
    for key, value in d.inputs:
        lines.append(f"  {key}: {value}")
    if s.looks > 1:
        fut = (f"; non-binding futility by {s.futility_family} beta spending" +
               (f" (gamma {s.futility_gamma:g})" if s.futility_gamma is not None else "")) if s.futility_family else ""
        lines.append(f"  {s.looks} looks at information fractions {_show(np.round(s.fractions, 4))}, "
                     f"{s.spending} alpha spending" + (f" (gamma {s.gamma:g})" if s.gamma is not None else "") + fut)
    lines.append("design")
    if d.endpoint == "survival":
        if d.schoenfeld_events is not None:
            lines.append(f"  Schoenfeld events (fixed design): {d.schoenfeld_events:.2f}")
        if s.looks > 1 and "inflation" in d.params:
            lines.append(f"  maximum events / fixed-design events: {d.params['inflation']:.4f} (the bounds' inflation "
                         f"factor with a constant effect: {d.inflation:.4f})")
        elif s.looks > 1:
            lines.append(f"  inflation factor (maximum information / fixed design): {d.inflation:.4f}")
        lines.append(f"  events: {d.events:.2f} -> {d.events_round}")
        if d.model is not None:
            lines.append(f"  sample size: {d.n:.2f} -> {d.n_round} ({d.arms_round[0]} control, "
                         f"{d.arms_round[1]} active)")
            lines.append(f"  accrual: {_show(np.round(d.accrual_rates, 4))} patients per month over "
                         f"{_show(d.accrual_durations)} months (ends month {sum(d.accrual_durations):g})")
            lines.append(f"  study duration (expected, under H1): {d.duration:.2f} months")
            if "ahr" in d.params:
                lines.append(f"  average hazard ratio at the final analysis: {d.params['ahr']:.4f} "
                             f"(information H0 {d.params['info0']:.2f}, H1 {d.params['info1']:.2f})")
    else:
        if s.looks > 1:
            lines.append(f"  inflation factor (maximum information / fixed design): {d.inflation:.4f}")
        lines.append(f"  patients analysed: {d.n:.2f}")
        lines.append(f"  sample size: {d.n_enrolled:.2f} -> {d.n_round} ({d.arms_round[0]} control, "
                     f"{d.arms_round[1]} active)")
    lines.append(f"  power at the rounded design: {d.power_rounded:.4f}")
    if d.assurance is not None:
        lo, hi = d.params["hazard_ratio_ci"]
        lines.append(f"  assurance (probability of success, log hazard ratio normal over [{lo:g}, {hi:g}]): "
                     f"{d.assurance:.4f}")
    info_name = "events" if d.endpoint == "survival" else "patients"
    head = f"  {'look':>4} {'fraction':>8} {info_name:>9}"
    if d.endpoint == "survival" and d.model is not None:
        head += f" {'month':>7} {'enrolled':>8}"
    head += f" {'efficacy_z':>10} {'futility_z':>10} {'alpha_spent':>11} {'power':>7}"
    if any(lk.ahr is not None for lk in d.looks):
        head += f" {'AHR':>7}"
    lines.append("looks (information; power = cumulative P(reject) under H1)")
    lines.append(head)
    for k, lk in enumerate(d.looks):
        row = f"  {k + 1:>4d} {lk.fraction:>8.4f} {lk.information:>9.2f}"
        if lk.time is not None:
            row += f" {lk.time:>7.2f} {lk.enrolled:>8.1f}"
        fut = lk.futility if np.isfinite(lk.futility) and k < len(d.looks) - 1 else math.nan
        row += f" {lk.efficacy:>10.4f} {fut:>10.4f} {lk.alpha_spent:>11.6f} {lk.power:>7.4f}"
        if lk.ahr is not None:
            row += f" {lk.ahr:>7.4f}"
        lines.append(row.replace("nan", "  - "))
    if s.looks > 1 and d.expected:
        lines.append("expected at stopping (H1 | H0)")
        for key, label in (("events", "events"), ("n", "patients enrolled"), ("duration", "months")):
            if key in d.expected["H1"]:
                lines.append(f"  {label}: {d.expected['H1'][key]:.2f} | {d.expected['H0'][key]:.2f}")
    for note in d.notes:
        lines.append(f"note: {note}")
    if d.written:
        for p in d.written:
            lines.append(f"wrote {p}")
    v = d.verification
    if v is not None:
        lines.append(f"verification: {v.replicates} simulated trials of {v.protocol} (seed {v.seed}), {v.statistic}")
        what = "assurance" if d.assurance is not None else "power"
        lines.append(f"  calculated {what} {v.calculated:.4f}, simulated {v.simulated:.4f} "
                     f"[95% Wilson interval {v.lower:.4f}, {v.upper:.4f}]: "
                     + (f"calculated {what} inside" if v.covered else f"calculated {what} OUTSIDE the interval"))
    return "\n".join(lines)
