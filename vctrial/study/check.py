"""``vctrial check``: a published study against the same study simulated by the model.

A figure passes when the published value lies inside the central ``tolerance.level`` interval of
the simulated studies' values (studies of the published study's own size, so the interval holds its
sampling variation), widened by ``tolerance.relative`` for model error: [lower / (1 + relative),
upper x (1 + relative)]. The exit status of the command is 1 when any figure fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

import vctrial
from vctrial.execute import ExecOptions
from vctrial.spec.study import PROBABILITIES, UNITS, Figure, Study, ValidationSpec
from vctrial.study.evaluate import evaluate, summary


def run_validation(study: Study, replicates: int | None = None, seed: int | None = None,
                   options: ExecOptions = ExecOptions()) -> xr.Dataset:
    """Simulate a validation file's studies; the Dataset of simulated against published figures."""
    spec = study.spec
    assert isinstance(spec, ValidationSpec)
    replicates = replicates or spec.replicates
    seed = spec.seed if seed is None else seed
    values = evaluate(study, replicates, seed, options)
    return figure_dataset(study, values, seed, spec.tolerance.level, spec.tolerance.relative, "validation")


def figure_dataset(study: Study, values: dict[str, np.ndarray], seed: int, level: float, relative: float | None,
                   kind: str) -> xr.Dataset:
    """Published figures (observed, SE) beside the simulated studies' values and their summary."""
    figs = study.figures
    sim = np.stack([values[f.name] for f in figs])
    rows = [summary(f, values[f.name], level) for f in figs]
    data = {
        "simulated": (("figure", "replicate"), sim, {"long_name": "the figure in each simulated study"}),
        "observed": (("figure",), [f.observed for f in figs], {"long_name": "published value"}),
        "observed_se": (("figure",), [f.se for f in figs], {"long_name": "standard error of the published value"}),
        "simulated_mean": (("figure",), [r["mean"] for r in rows], {"long_name": "mean over simulated studies"}),
        "mc_se": (("figure",), [r["mc_se"] for r in rows], {"long_name": "Monte Carlo standard error of that mean"}),
        "study_lower": (("figure",), [r["lower"] for r in rows],
                        {"long_name": f"{(1 - level) / 2:.1%} quantile of the simulated studies' values"}),
        "study_upper": (("figure",), [r["upper"] for r in rows],
                        {"long_name": f"{(1 + level) / 2:.1%} quantile of the simulated studies' values"}),
        "missing": (("figure",), [r["missing"] for r in rows], {"long_name": "simulated studies without a value",
                                                                 "units": "studies"}),
    }
    if relative is not None:
        lo, hi = accepted_range(figs, np.array([r["lower"] for r in rows]), np.array([r["upper"] for r in rows]),
                                relative)
        obs = np.array([f.observed for f in figs])
        data["accept_lower"] = (("figure",), lo, {"long_name": "lowest published value that passes"})
        data["accept_upper"] = (("figure",), hi, {"long_name": "highest published value that passes"})
        data["passed"] = (("figure",), (obs >= lo) & (obs <= hi), {"long_name": "published value inside the accepted range",
                                                                   "units": "1"})
        data["known_failure"] = (("figure",), [f.known_failure is not None for f in figs],
                                 {"long_name": "the validation file records this figure as a known failure", "units": "1"})
        data["known_failure_reason"] = (("figure",), [f.known_failure or "" for f in figs],
                                        {"long_name": "why, as the validation file says"})
    coords = {
        "figure": [f.name for f in figs],
        "replicate": np.arange(sim.shape[1]),
        "measure": ("figure", [f.measure for f in figs]),
        "unit": ("figure", [unit_of(study, f) for f in figs]),
        "study": ("figure", [study.study_of(f) for f in figs]),
        "arm": ("figure", [f.arm or study.protocols[study.study_of(f)].spec.arms[0].name for f in figs]),
        "events": ("figure", [" ".join(f.events) for f in figs]),
        "at_month": ("figure", [f.at_month if f.at_month is not None else np.nan for f in figs]),
        "source": ("figure", [f.source for f in figs]),
    }
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update({
        "title": f"vctrial: {study.spec.name}", "kind": kind, "name": study.spec.name,
        "file": str(study.path), "file_text": Path(study.path).read_text(encoding="utf-8"),
        "sources": "\n".join(study.spec.sources), "seed": int(seed), "level": level,
        "model": ", ".join(sorted({p.disease.name for p in study.protocols.values()})),
        "vctrial_version": vctrial.__version__,
    })
    if relative is not None:
        ds.attrs["relative_tolerance"] = relative
    return ds


def unit_of(study: Study, fig: Figure) -> str:
    """The figure's unit (a biomarker figure's is the biomarker's)."""
    if fig.biomarker is None:
        return UNITS[fig.measure]
    disease = study.protocols[study.study_of(fig)].disease
    return next(b.unit for b in disease.biomarkers if b.name == fig.biomarker) or "1"


def accepted_range(figs: list[Figure], lower: np.ndarray, upper: np.ndarray, relative: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The simulated studies' interval widened by ``relative`` (see :class:`vctrial.spec.study.Tolerance`)."""
    lo, hi = lower / (1 + relative), upper * (1 + relative)
    prob = np.array([f.measure in PROBABILITIES for f in figs])
    lo = np.where(prob, np.maximum(lo, 1 - (1 - lower) * (1 + relative)), lo)
    hi = np.where(prob, np.minimum(hi, 1 - (1 - upper) / (1 + relative)), hi)
    return lo, hi


def fmt(measure: str, x: float) -> str:
    """A figure's value as a paper prints it."""
    if not np.isfinite(x):
        return "n/a"
    if measure in ("proportion", "cumulative_incidence", "survival"):
        return f"{100 * x:.1f}%"
    if measure == "hazard_ratio":
        return f"{x:.2f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def table_rows(ds: xr.Dataset) -> list[list[str]]:
    """One row per figure: name, measure, arm, published (± SE), simulated mean (MC SE), study interval, verdict."""
    rows = []
    for i, name in enumerate(ds.figure.values):
        m = str(ds.measure.values[i])
        at = float(ds.at_month.values[i])
        what = m + (f" @{at:g} mo" if np.isfinite(at) else "")
        row = [str(name), what, str(ds.arm.values[i]),
               f"{fmt(m, float(ds.observed[i]))} ± {fmt(m, float(ds.observed_se[i]))}",
               f"{fmt(m, float(ds.simulated_mean[i]))} ± {fmt(m, float(ds.mc_se[i]))}",
               f"[{fmt(m, float(ds.study_lower[i]))}, {fmt(m, float(ds.study_upper[i]))}]"]
        if "passed" in ds:
            known = "known_failure" in ds and bool(ds.known_failure[i])
            row.append(("pass" if bool(ds.passed[i]) else "FAIL") + (" (recorded as a known failure)" if known else ""))
        missing = int(ds.missing[i])
        if missing:
            row[-1] += f" ({missing} studies n/a)"
        rows.append(row)
    return rows


HEADER = ["figure", "measure", "arm", "published ± SE", "simulated ± MC SE", "95% of studies", "verdict"]


def format_validation(ds: xr.Dataset) -> str:
    """The printed report: one line per figure and a verdict."""
    level = ds.attrs["level"]
    header = HEADER[:5] + [f"{level:.0%} of studies"] + HEADER[6:]
    rows = [header] + table_rows(ds)
    widths = [max(len(r[k]) for r in rows) for k in range(len(header))]
    lines = [f"{ds.attrs['name']}: {ds.sizes['replicate']} simulated studies, seed {ds.attrs['seed']}"]
    if "passed" in ds:
        lines.append(f"a figure passes when the published value lies in the central {level:.0%} of simulated studies, "
                     f"widened by {ds.attrs['relative_tolerance']:.0%}")
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if "passed" in ds:
        n, k = ds.sizes["figure"], int(ds.passed.sum())
        lines.append(f"{k} of {n} figures pass" + ("" if k == n else f"; failing: {', '.join(map(str, ds.figure.values[~ds.passed.values]))}"))
    return "\n".join(lines)


def document(results: list[xr.Dataset], command: str) -> str:
    """docs/validation.md: the rule, a summary per file, then each file's table and its known failures."""
    out = ["# External validation", "",
           f"Generated by `{command}` (vctrial {vctrial.__version__}); do not edit by hand.", "",
           "Each validation file (`validation/*.yaml`) describes a published study that its model was NOT "
           "calibrated on: the study's design as a trial protocol (`validation/protocols/`), its population from "
           "its own Table 1 (`validation/cohorts/`), and the figures it reported. `vctrial check` simulates the "
           "study many times and compares every figure: a figure passes when the published value lies inside "
           "the central interval of the simulated studies (studies of the published one's size, so the interval "
           "holds its sampling variation) widened by the file's relative tolerance for model error "
           "(probabilities relative to the smaller of p and 1 - p). Hazard ratios put into a protocol as the "
           "active arm's effect check the simulated analysis, not the disease model. A failure is reported, "
           "never tuned away: the file records it as a known failure with the reason, and the test suite "
           "fails when any verdict changes. The patient twin is compared with published risk equations in "
           "`docs/risk_equations.md`.", "",
           "| file | model | figures passing | known failures |", "|---|---|---|---|"]
    for ds in results:
        n, k = ds.sizes["figure"], int(ds.passed.sum())
        known = [str(f) for f, kf in zip(ds.figure.values, ds.known_failure.values) if kf]
        out.append(f"| `{ds.attrs['file']}` ({ds.attrs['name']}) | {ds.attrs.get('model', '')} | {k} of {n} | "
                   f"{', '.join(known) or 'none'} |")
    out.append("")
    for ds in results:
        out.append(markdown(ds))
        reasons = [(str(f), str(r)) for f, r in zip(ds.figure.values, ds.known_failure_reason.values) if r]
        if reasons:
            out += ["Known failures:", ""] + [f"- `{f}`: {r}" for f, r in reasons] + [""]
    return "\n".join(out)


def markdown(ds: xr.Dataset) -> str:
    """The report as a Markdown section (for docs/validation.md)."""
    level = ds.attrs["level"]
    header = HEADER[:5] + [f"{level:.0%} of studies"] + HEADER[6:]
    out = [f"### {ds.attrs['name']}", "", f"`{ds.attrs['file']}`: {ds.sizes['replicate']} simulated studies, "
           f"seed {ds.attrs['seed']}; tolerance: central {level:.0%} of simulated studies widened by "
           f"{ds.attrs['relative_tolerance']:.0%}.", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in table_rows(ds)]
    n, k = ds.sizes["figure"], int(ds.passed.sum())
    out += ["", f"**{k} of {n} figures pass.**", ""]
    return "\n".join(out)
