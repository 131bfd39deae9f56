"""The twin's results Datasets (docs/outputs.md, "Patient twin"): one patient's draws, or a batch's
per-patient summaries, with their provenance and patient-identifier policy."""

from __future__ import annotations

import hashlib
import hmac
import json

import numpy as np
import xarray as xr

from vctrial.results import provenance
from vctrial.spec.patient import Patients
from vctrial.spec.protocol import Protocol
from vctrial.twin.outcomes import RISK, outcome_names
from vctrial.twin.plan import TwinPlan
from vctrial.twin.uncertainty import STATISTICS


def patient_label(pid: str | None, keep_ids: bool, salt: bytes) -> str:
    """The identifier itself (if asked), else the first 16 hex digits of HMAC-SHA256(salt, id)."""
    if pid is None:
        return "anonymous"
    if keep_ids:
        return pid
    return hmac.new(salt, pid.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def id_policy_text(keep_ids: bool, salt_given: bool) -> str:
    if keep_ids:
        return "patient identifiers kept (--keep-ids)"
    if salt_given:
        return "patient identifiers replaced by HMAC-SHA256 with the user's salt (--id-salt), not recorded"
    return "patient identifiers replaced by HMAC-SHA256 with a random salt drawn for this run and not recorded"


def _provenance(protocol: Protocol, seed: int, plan: TwinPlan, horizon_years: float) -> dict:
    return {
        **provenance(protocol, seed),
        "horizon_years": float(horizon_years),
        "horizon_months": float(plan.n_steps * plan.step_months),
        "draws": int(plan.draws),
        "parameter_draws": int(plan.parameter_draws),
        "chance_draws_per_parameter_draw": int(plan.inner_draws),
        "endpoint_label": (protocol.spec.endpoint.label or "protocol endpoint")
        if protocol.spec.endpoint.type == "time_to_event" else "",
        "endpoint_events": json.dumps([plan.model.event_names[i] for i in np.flatnonzero(plan.endpoint)]),
        "Conventions": "CF-1.8",
    }


def build_dataset(protocol: Protocol, patients: Patients, plan: TwinPlan, arrays: dict, seed: int,
                  horizon_years: float, label: str, id_policy: str) -> xr.Dataset:
    """The single-patient Dataset: dims (option, draw, time), attrs kind="twin"."""
    model = plan.model
    opt = ("option", "draw")
    S = len(model.state_names)
    state = np.moveaxis(arrays["health_state"], 0, 1)  # (A, D, T+1)
    occ = np.stack([(state == s).mean(axis=1) for s in range(S)], axis=-1)
    data = {
        "health_state": (opt + ("time",), state,
                         {"long_name": "health state at each time (index into the state coordinate)", "units": "1",
                          "flag_values": np.arange(S, dtype=np.int8), "flag_meanings": " ".join(model.state_names)}),
        "occupancy": (("option", "time", "state"), occ,
                      {"long_name": "probability of being in each state", "units": "1"}),
        "event_free": (opt + ("time",), np.moveaxis(arrays["event_free"], 0, 1),
                       {"long_name": "no event of any kind yet (1) since time zero", "units": "1"}),
        "event_time": (opt + ("event",), np.moveaxis(arrays["event_time"], 0, 1),
                       {"long_name": "time of the first occurrence of each event (NaN: not by the horizon)",
                        "units": "months"}),
        "life_years": (opt, arrays["life_years"].T, {"long_name": "life-years lived by the horizon", "units": "years"}),
        "qalys": (opt, arrays["qalys"].T,
                  {"long_name": "quality-adjusted life-years by the horizon (state utilities, undiscounted)",
                   "units": "QALY"}),
        "hazard_ratio": (opt + ("transition",), np.moveaxis(arrays["hazard_ratio"], 0, 1),
                         {"long_name": "treatment hazard ratio of each transition in this draw's parameter draw",
                          "units": "1"}),
        "state_absorbing": (("state",), model.absorbing.astype(np.int8), {"long_name": "absorbing state", "units": "1"}),
        "state_utility": (("state",), plan.utility, {"long_name": "quality-of-life weight", "units": "1"}),
    }
    coords = {
        "option": [a.name for a in protocol.spec.arms],
        "draw": np.arange(plan.draws),
        "parameter_draw": ("draw", np.arange(plan.draws) // plan.inner_draws,
                           {"long_name": "parameter draw (outer draw) of each draw"}),
        "time": ("time", plan.grid_months(), {"units": "months", "long_name": "time since the decision date"}),
        "state": list(model.state_names),
        "event": list(model.event_names),
        "transition": [t.name for t in protocol.disease.transitions],
    }
    if plan.biomarkers:
        coords["biomarker"] = [b.name for b in plan.biomarkers]
        coords["random_effect"] = ["intercept", "slope_per_year"]
        data["biomarker_shift"] = (opt + ("biomarker",), np.moveaxis(arrays["biomarker_shift"], 0, 1),
                                   {"long_name": "treatment shift of each biomarker in this draw's parameter draw",
                                    "units": "biomarker unit"})
        cov = plan.re_chol[:, 0] @ np.swapaxes(plan.re_chol[:, 0], 1, 2)
        data["random_effect_mean"] = (("biomarker", "random_effect"), plan.re_mean[:, 0],
                                      {"long_name": "posterior mean of the patient's random effects given their history",
                                       "units": "biomarker unit; per year for the slope"})
        data["random_effect_cov"] = (("biomarker", "random_effect", "random_effect_2"), cov,
                                     {"long_name": "posterior covariance of the patient's random effects"})
        for b in plan.biomarkers:
            data[f"biomarker_{b.name}"] = (opt + ("time",), np.moveaxis(arrays[f"biomarker_{b.name}"], 0, 1),
                                           {"long_name": f"{b.name}: the patient's underlying value (no measurement "
                                                         "noise, clipped at the model's bounds); NaN after death",
                                            "units": b.unit or "1"})
    ds = xr.Dataset(data, coords=coords)
    history = [{"biomarker": name, "months_before": round(float(-y * 12.0), 3), "value": float(v)}
               for name, (_, yrs, vals) in patients.measurements.items() for y, v in zip(yrs, vals)]
    covs = {name: (patients.levels[name][int(v[0])] if name in patients.levels else float(v[0]))
            for name, v in patients.columns.items()}
    ds.attrs.update({
        "title": f"vctrial twin: {protocol.spec.name}",
        "kind": "twin",
        "twin_scope": "patient",
        "patient": label,
        "patient_id_policy": id_policy,
        "patient_covariates": json.dumps(covs),
        "patient_history": json.dumps(history),
        "start_state": model.state_names[int(patients.start_state[0])],
        "start_months_in_state": float(patients.start_months[0]),
    })
    ds.attrs.update(_provenance(protocol, seed, plan, horizon_years))
    return ds


def build_batch_dataset(protocol: Protocol, patients: Patients, plan: TwinPlan, arrays: dict, seed: int,
                        horizon_years: float, labels: list[str], id_policy: str) -> xr.Dataset:
    """The batch Dataset: per patient, option and outcome; attrs kind="twin", twin_scope="batch"."""
    names = outcome_names(plan.model.event_names, plan.endpoint)
    risk = [i for i, (_, k) in enumerate(names) if k == RISK]
    data = {}
    for prefix, what in (("value", ""), ("difference", "difference vs the first option: ")):
        stack = np.stack([arrays[f"{prefix}_{s}"] for s in STATISTICS], axis=-1)  # (P, A, O, stat)
        suffix = "" if prefix == "value" else "_difference"
        data["risk" + suffix] = (("patient", "option", "outcome", "statistic"), stack[:, :, risk],
                                 {"long_name": what + "probability of the outcome by the horizon", "units": "1"})
        for name in ("life_years", "qalys"):
            i = [n for n, _ in names].index(name)
            data[name + suffix] = (("patient", "option", "statistic"), stack[:, :, i],
                                   {"long_name": what + name.replace("_", "-") + " by the horizon",
                                    "units": "QALY" if name == "qalys" else "years"})
    coords = {
        "patient": labels,
        "row": ("patient", patients.rows, {"long_name": "line of the patient in the input file"}),
        "option": [a.name for a in protocol.spec.arms],
        "outcome": [names[i][0] for i in risk],
        "statistic": list(STATISTICS),
        "start_state": ("patient", np.array(plan.model.state_names, dtype=object)[patients.start_state].astype(str)),
        "start_months_in_state": ("patient", np.asarray(patients.start_months, np.float64),
                                  {"long_name": "months already spent in the starting state at time zero",
                                   "units": "months"}),
    }
    for name, values in patients.columns.items():
        if name in patients.levels:
            values = np.array(patients.levels[name], dtype=object)[values.astype(np.int64)].astype(str)
        coords[f"covariate_{name}"] = ("patient", values)
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update({"title": f"vctrial twin batch: {protocol.spec.name}", "kind": "twin", "twin_scope": "batch",
                     "patient_id_policy": id_policy, "patients_file_rows": int(patients.n)})
    ds.attrs.update(_provenance(protocol, seed, plan, horizon_years))
    return ds
