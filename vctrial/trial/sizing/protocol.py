"""A design written as a runnable protocol with its disease and cohort files beside it (never over an
existing file), so that the simulator can check the calculation."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np

from vctrial.trial.sizing.inputs import _err, _float, _floats, _show
from vctrial.trial.sizing.report import format_design
from vctrial.trial.sizing.result import Design, _round_arms

_STEPS = (1.0, 0.5, 0.25, 0.2, 0.1)


def _time_step(times, option: str) -> float:
    """The disease model's time step: the largest of 1, 0.5, 0.25, 0.2, 0.1 months dividing every
    breakpoint (hazard-ratio pieces and visits are resolved at step boundaries)."""
    for step in _STEPS:
        if all(abs(t / step - round(t / step)) < 1e-9 for t in times):
            return step
    raise _err(option, f"breakpoints and visits must be multiples of 0.1 month to be simulated, got {_show(times)}")


def companion_paths(out: str | Path) -> tuple[Path, Path, Path]:
    """(protocol, disease, cohort) files written for ``--out``: the disease and cohort beside it,
    named after it."""
    p = Path(out)
    if p.suffix not in (".yaml", ".yml"):
        raise _err("--out", f"must name a .yaml file (the protocol), got {str(out)!r}")
    return p, p.with_name(f"{p.stem}_disease{p.suffix}"), p.with_name(f"{p.stem}_cohort{p.suffix}")


def _cohort() -> dict:
    return {"kind": "cohort", "name": "Minimal cohort for a design (vctrial design)",
            "description": "Only what the simulator needs: the design's hazards do not depend on covariates.",
            "covariates": {"age": {"distribution": "normal", "mean": 60, "sd": 10, "min": 18, "max": 90,
                                   "unit": "years"}}}


def protocol_documents(d: Design, names: tuple[str, str]) -> tuple[dict, dict, list[str]]:
    """(protocol, disease, notes) for a design; ``names`` are the disease and cohort file names."""
    if d.weights is None:
        raise _err("--allocation", f"{d.allocation:g}:1 cannot be written as whole-number arm weights up to 20")
    disease_name, cohort_name = names
    a_w, c_w = d.weights
    s = d.seq
    one_sided = s.looks > 1 or d.sided == "one"
    notes: list[str] = []
    analysis = {"alpha": float(round(d.alpha1 if s.looks > 1 else d.alpha, 12)), "sided": "one" if one_sided else "two"}
    if s.looks > 1 and d.sided == "two":
        notes.append(f"the protocol's looks test one-sided at alpha {d.alpha1:g} (half the two-sided alpha)")
    looks = None
    if s.looks > 1:
        eff = {"spending": s.spending}
        if s.gamma is not None:
            eff["gamma"] = float(s.gamma)
        looks = {"information_fractions": [float(round(x, 10)) for x in s.fractions], "efficacy": eff}
        if s.futility_family is not None:
            fut = {"type": "beta_spending", "spending": s.futility_family, "beta": float(round(1 - d.power, 12))}
            if s.futility_gamma is not None:
                fut["gamma"] = float(s.futility_gamma)
            looks["futility"] = fut
    base = {"kind": "trial", "name": f"{d.endpoint} design ({d.method})",
            "description": f"Written by vctrial design: alpha {d.alpha:g} {d.sided}-sided, power {d.power:g}, "
                           f"allocation {a_w}:{c_w} (active:control).",
            "cohort": cohort_name, "disease": disease_name}
    if d.endpoint == "survival":
        return _survival_documents(d, base, analysis, looks, notes)
    if d.endpoint == "continuous":
        return _continuous_documents(d, base, analysis, looks, notes)
    return _binary_documents(d, base, analysis, looks, notes)


def _arms(d: Design, effects: list[dict]) -> list[dict]:
    a_w, c_w = d.weights
    return [{"name": "control", "allocation": c_w}, {"name": "active", "allocation": a_w, "effects": effects}]


def _piece_list(values, ends, key: str, scale: float = 1.0) -> list[dict]:
    return [{"until_month": float(e), key: float(v * scale)} for v, e in zip(values[:-1], ends)]


def _survival_documents(d: Design, base, analysis, looks, notes):
    p = d.params
    if d.model is None:
        raise _err("--out", "an events-only design has no control hazard or accrual to simulate: add "
                   "--control-median (or --control-hazard) and the accrual")
    hrs, hr_ends, lam, lam_ends, eta, eta_ends = (p[k] for k in ("hrs", "hr_ends", "lam", "lam_ends", "eta",
                                                                "eta_ends"))
    if p.get("ahr", p.get("hr_design", 0.0)) >= 1.0:
        raise _err("--hazard-ratio", "the protocol's log-rank test looks for a lower hazard on the active arm: "
                   "a design with a hazard ratio above 1 cannot be written as a protocol")
    step = _time_step(list(hr_ends) + list(lam_ends), "--hazard-ratio-breaks")
    transition = {"name": "event", "from": "event_free", "to": "event", "rate_per_year": float(12 * lam[-1])}
    if len(lam) > 1:
        transition["time_on_study"] = {"piecewise": [{"until_month": float(e), "multiplier": float(v / lam[-1])}
                                                     for v, e in zip(lam[:-1], lam_ends)]}
    disease = {"kind": "disease", "name": "Piecewise-exponential event (vctrial design)",
               "description": "One event with the design's control hazard; no covariate effects.",
               "time_step_months": step, "age_covariate": None,
               "states": [{"name": "event_free"}, {"name": "event", "absorbing": True}],
               "initial_state": "event_free", "transitions": [transition]}
    effect = {"transition": "event", "hazard_ratio": float(hrs[-1])}
    if len(hrs) > 1:
        effect["piecewise"] = _piece_list(hrs, hr_ends, "hazard_ratio")
    if d.assurance is not None:  # the protocol simulates the assurance: a hazard ratio drawn per trial
        effect["hazard_ratio_ci"] = list(d.params["hazard_ratio_ci"])
        analysis = dict(analysis, assurance=True)
    T = d.duration
    horizon = float(math.ceil(max(2 * T, T + 24)))
    scale = d.n_round / d.n
    rates = [a * scale for a in d.accrual_rates]
    durations = d.accrual_durations
    if len(durations) == 1:
        enrollment = {"duration_months": float(durations[0])}
    else:
        starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
        groups = []
        last = max(k for k, a in enumerate(rates) if a > 0)
        for k, (s0, dur, a) in enumerate(zip(starts, durations, rates)):
            if a <= 0:
                continue
            g = {"name": f"period{k + 1}", "count": 1, "activation_months": [float(s0), float(s0)],
                 "screening_rate_per_month": float(a)}
            if k != last:
                g["cap"] = max(1, int(round(a * dur)))
            groups.append(g)
        enrollment = {"sites": groups, "max_duration_months": horizon}
        notes.append("piecewise accrual is simulated by one Poisson site per accrual period, opening at the period's "
                     "start, its cap the period's expected patients (the last period uncapped)")
    dropout = {"rate_per_year": float(12 * eta[-1])}
    if len(eta) > 1:
        dropout["piecewise"] = _piece_list(eta, eta_ends, "rate_per_year", 12.0)
    protocol = dict(base)
    protocol.update({
        "sample_size": int(d.n_round), "arms": _arms(d, [effect]),
        "randomization": {"method": "permuted_block"}, "enrollment": enrollment,
        "follow_up": {"type": "event_driven", "target_events": int(d.events_round), "max_duration_months": horizon},
        "dropout": dropout,
        "endpoint": {"type": "time_to_event", "label": "event", "events": ["event"]},
        "analysis": dict({"method": "logrank"}, **analysis),
    })
    if looks:
        protocol["looks"] = looks
    return protocol, disease, notes


def _visit(d: Design) -> tuple[float, float, float]:
    v = _float("--visit-month", d.params.get("visit_month"), 6.0)
    if not v > 0:
        raise _err("--visit-month", f"must be > 0, got {v:g}")
    acc = _floats("--accrual-duration", d.params.get("accrual_duration", 12.0))
    if len(acc) != 1 or not acc[0] > 0:
        raise _err("--accrual-duration", f"one accrual period (months > 0) for a {d.endpoint} protocol, got "
                   f"{_show(acc)}")
    return v, acc[0], _time_step([v], "--visit-month")


def _continuous_documents(d: Design, base, analysis, looks, notes):
    p = d.params
    if p["sd_active"] != p["sd"]:
        raise _err("--sd-active", "the simulator's biomarker has one residual SD for both arms: a design with "
                   "--sd-active cannot be written as a protocol")
    v, acc, step = _visit(d)
    disease = {"kind": "disease", "name": "Normal outcome (vctrial design)",
               "description": "A biomarker measured at baseline and at the visit with independent normal noise of "
                              "SD sd: the change adjusted for baseline (ANCOVA) has residual SD sd.",
               "time_step_months": step, "age_covariate": None,
               "states": [{"name": "alive"}, {"name": "dead", "absorbing": True}], "initial_state": "alive",
               "transitions": [{"name": "death", "from": "alive", "to": "dead", "rate_per_year": 1.0e-9}],
               "biomarkers": [{"name": "outcome", "intercept": 0.0, "residual_sd": float(p["sd"])}]}
    protocol = dict(base)
    protocol.update({
        "sample_size": int(d.n_round),
        "arms": _arms(d, [{"biomarker": "outcome", "shift": float(p["delta"])}]),
        "randomization": {"method": "permuted_block"}, "enrollment": {"duration_months": float(acc)},
        "follow_up": {"type": "fixed", "duration_months": float(v)},
    })
    if p["dropout"] > 0:
        protocol["dropout"] = {"rate_per_year": float(-math.log1p(-p["dropout"]) * 12.0 / v)}
    protocol["endpoint"] = {"type": "biomarker_change", "label": "outcome", "biomarker": "outcome",
                            "visit_month": float(v)}
    protocol["analysis"] = dict({"method": "ancova"}, **analysis, benefit="higher" if p["delta"] > 0 else "lower")
    if looks:
        protocol["looks"] = looks
    notes.append("the protocol analyses the change from baseline by ANCOVA (residual SD = --sd, t with n - 3 df); "
                 "the calculation uses the normal approximation")
    return protocol, disease, notes


def _binary_documents(d: Design, base, analysis, looks, notes):
    p = d.params
    if looks:
        raise _err("--looks", "the simulator has no binary endpoint with interim looks: a group-sequential binary "
                   "design cannot be written as a protocol")
    v, acc, step = _visit(d)
    pc, pe = p["p_c"], p["p_e"]
    flip = pe > pc  # model the outcome that the active arm makes rarer, so the log-rank's benefit is 'lower'
    qc, qe = (1 - pc, 1 - pe) if flip else (pc, pe)
    rate = -math.log1p(-qc) * 12.0 / v
    hr = math.log1p(-qe) / math.log1p(-qc)
    disease = {"kind": "disease", "name": "Binary outcome by the visit (vctrial design)",
               "description": f"An event with probability {qc:g} by month {v:g} under control (constant hazard).",
               "time_step_months": step, "age_covariate": None,
               "states": [{"name": "event_free"}, {"name": "event", "absorbing": True}],
               "initial_state": "event_free",
               "transitions": [{"name": "event", "from": "event_free", "to": "event", "rate_per_year": float(rate)}]}
    n_an, arms = _round_arms(d.n, d.allocation, d.weights)
    protocol = dict(base)
    protocol.update({
        "sample_size": int(n_an), "arms": _arms(d, [{"transition": "event", "hazard_ratio": float(hr)}]),
        "randomization": {"method": "permuted_block"}, "enrollment": {"duration_months": float(acc)},
        "follow_up": {"type": "fixed", "duration_months": float(v)},
        "endpoint": {"type": "time_to_event", "label": ("no " if flip else "") + "response by the visit",
                     "events": ["event"]},
        "analysis": dict({"method": "logrank"}, **analysis),
    })
    d.params["protocol_arms"] = arms
    notes.append(f"the simulator has no binary analysis: the protocol simulates the outcome as an event by month {v:g} "
                 f"(probabilities {qc:g} and {qe:g}{', the complement of the response' if flip else ''}) with follow-up "
                 "to the visit and its own log-rank test; --verify applies the design's two-proportion test to the "
                 "simulated counts")
    if p["dropout"] > 0:
        notes.append(f"the protocol simulates the {n_an} patients analysed (completers), not the {d.n_round} enrolled")
    return protocol, disease, notes


def _dump(doc: dict, header: str) -> str:
    import yaml

    lines = [f"# {h}" if h else "#" for h in header.splitlines()]
    return "\n".join(lines) + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110)


def _write_new(path: Path, text: str) -> None:
    """Write ``path`` atomically, never replacing an existing file."""
    from vctrial.results import file_mode

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, file_mode())
        try:
            os.link(tmp, path)  # fails if the file exists: no overwrite, even in a race
        except FileExistsError:
            raise _err("--out", f"{path} exists; vctrial design never overwrites a file: choose another name") from None
        except OSError:  # file systems without hard links
            if path.exists():
                raise _err("--out", f"{path} exists; vctrial design never overwrites a file: choose another "
                           "name") from None
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_protocol(d: Design, out: str | Path) -> list[Path]:
    """Write the design as a protocol at ``out`` with ``<stem>_disease.yaml`` and ``<stem>_cohort.yaml``
    beside it; refuses (SpecError) if any of them exists. Returns the paths written."""
    import vctrial
    from vctrial.results import _check_writable

    files = companion_paths(out)
    for f in files:
        if f.exists() or f.is_symlink():
            raise _err("--out", f"{f} exists; vctrial design never overwrites a file: choose another name")
        _check_writable("--out", f)
    protocol, disease, notes = protocol_documents(d, (files[1].name, files[2].name))
    head = (f"Written by vctrial design (vctrial {vctrial.__version__}); `vctrial run {files[0].name}` simulates it.\n"
            + format_design(d))
    docs = [(files[0], protocol, head), (files[1], disease, f"Disease model of {files[0].name} (vctrial design)."),
            (files[2], _cohort(), f"Cohort of {files[0].name} (vctrial design).")]
    written = []
    try:
        for path, doc, h in docs:
            _write_new(path, _dump(doc, h))
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    from vctrial.spec.protocol import load_protocol

    load_protocol(files[0])  # the written files must load; a failure here is a bug of this module
    d.notes.extend(n for n in notes if n not in d.notes)
    d.written = list(files)
    return list(files)
