"""Running the disease kernels for a twin: draws as replicates, chunk functions for the generic runner.

Draw d of every option meets the same random numbers (common random numbers across options), and
so does every patient of a batch (all patients share the patient coordinate 0).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from vctrial.disease import biomarker as bm
from vctrial.disease import multistate as ms
from vctrial.execute import ExecOptions, Job, run_jobs
from vctrial.spec.patient import Patients
from vctrial.spec.protocol import Protocol
from vctrial.twin.outcomes import RISK, outcome_names, outcomes_from_paths
from vctrial.twin.plan import TwinPlan, make_plan
from vctrial.twin.uncertainty import STATISTICS, decompose, option_varies, sample_parameters


def _hazard_ratio_steps(plan: TwinPlan, hr: np.ndarray) -> np.ndarray:
    """(A, K, T) when every draw has the same parameters, else (D, A, K, T)."""
    profile = 1.0 if plan.hr_profile is None else plan.hr_profile
    if plan.parameter_draws == 1 or not plan.effect_sd.any():
        return np.repeat(hr[0][..., None], plan.n_steps, axis=2) * profile
    return np.repeat(hr[..., None], plan.n_steps, axis=3) * profile


def _simulate(plan: TwinPlan, seed: int, draws: np.ndarray, patients: np.ndarray, record: bool = False):
    """Run the disease kernel for the given draws (replicates) and patients; with ``record`` keep the
    biomarkers' true values at every step."""
    hr, shift = sample_parameters(plan, seed, draws)
    D, n = draws.shape[0], patients.shape[0]
    rate = np.broadcast_to(plan.rate[patients][None], (D, n, plan.rate.shape[1]))
    age = np.broadcast_to(plan.age[patients][None], (D, n))
    female = np.broadcast_to(plan.female[patients][None], (D, n))
    markers = None
    if plan.biomarkers and (record or plan.model.has_links or plan.model.has_intensification):
        column = lambda name: plan.covariates[name][None, patients]  # noqa: E731
        steps = np.arange(plan.n_steps + 1) if record else np.zeros(0, np.int64)
        slope = np.broadcast_to(plan.slope_change[None], shift.shape)
        markers = bm.marker_inputs(plan.biomarkers, column, (D, n), seed, draws, shift, slope, steps,
                                   patient_keys=np.zeros(n, np.int64),
                                   random_effects=(plan.re_mean[:, patients], plan.re_chol[:, patients]))
    hrs = _hazard_ratio_steps(plan, hr)
    kwargs = dict(start_state=plan.start[patients], patient_keys=np.zeros(n, np.int64), track_time=True,
                  start_months_in_state=plan.start_months[patients])
    if plan.variants is None:
        paths = ms.simulate(plan.model, rate, hrs, age, female, plan.n_steps, seed, draws, markers=markers, **kwargs)
        return paths, hr, shift
    # the disease model's own parameter draws: one kernel call per parameter draw in this chunk (draws of
    # one parameter draw are contiguous), each with that draw's compiled model and hazards
    outer = draws // plan.inner_draws
    parts = []
    for m in np.unique(outer):
        sel = np.flatnonzero(outer == m)
        model_m, rate_m = plan.variants[int(m)]
        sub = None if markers is None else ms.Markers(
            mean0=markers.mean0[sel], b0=markers.b0[sel], b1=markers.b1[sel],
            shift=markers.shift[sel] if markers.shift.ndim == 3 else markers.shift,
            slope_change=markers.slope_change[sel] if markers.slope_change.ndim == 3 else markers.slope_change,
            record_steps=markers.record_steps)
        parts.append(ms.simulate(model_m, np.broadcast_to(rate_m[patients][None], (sel.size, n, rate_m.shape[1])),
                                 hrs if hrs.ndim == 3 else hrs[sel], age[sel], female[sel], plan.n_steps, seed,
                                 draws[sel], markers=sub, **kwargs))
    return _concat_paths(parts), hr, shift


def _concat_paths(parts: list) -> ms.Paths:
    """Paths of consecutive groups of replicates, joined along the replicate axis."""
    import dataclasses

    fields = {}
    for f in dataclasses.fields(ms.Paths):
        values = [getattr(p, f.name) for p in parts]
        fields[f.name] = None if values[0] is None else np.concatenate(values, axis=0)
    return ms.Paths(**fields)


def draws_chunk(plan: TwinPlan, seed: int, draws: np.ndarray) -> dict[str, np.ndarray]:
    """One patient (plan with P = 1), the given draws: per-draw paths, arrays lead with the draw axis."""
    draws = np.asarray(draws, np.int64)
    paths, hr, shift = _simulate(plan, seed, draws, np.zeros(1, np.int64), record=True)
    model = plan.model
    state = paths.occupancy.argmax(axis=3).astype(np.int8)  # (D, A, T+1): one patient per replicate
    first = paths.first_time[:, 0]  # (D, A, E)
    grid = plan.grid_months()
    any_event = first.min(axis=2)
    out = {
        "health_state": state,
        "event_time": np.where(np.isfinite(first), first, np.nan),
        "event_free": (any_event[..., None] > grid).astype(np.int8),
        "life_years": paths.time_in_state[:, 0][..., ~model.absorbing].sum(axis=-1) / 12.0,
        "qalys": (paths.time_in_state[:, 0] * plan.utility).sum(axis=-1) / 12.0,
        "hazard_ratio": hr,
        "biomarker_shift": shift,
    }
    dead = model.absorbing[state]
    if paths.marker_true is not None:
        for j, b in enumerate(plan.biomarkers):  # true (noise-free) values of the patient alive
            out[f"biomarker_{b.name}"] = np.where(dead, np.nan, paths.marker_true[:, 0, :, j, :]).astype(np.float32)
    return out


def patients_chunk(plan: TwinPlan, seed: int, patients: np.ndarray) -> dict[str, np.ndarray]:
    """A batch: all draws of the given patients, summarized per patient; arrays lead with the patient axis."""
    patients = np.asarray(patients, np.int64)
    draws = np.arange(plan.draws, dtype=np.int64)
    paths, _, _ = _simulate(plan, seed, draws, patients)
    y = outcomes_from_paths(paths.first_time, paths.death_time, paths.time_in_state, plan.model.absorbing,
                            plan.utility, plan.endpoint)  # (D, n, A, O)
    varies = option_varies(plan)
    risk = np.array([kind == RISK for _, kind in outcome_names(plan.model.event_names, plan.endpoint)])
    out = {}
    for prefix, values, var in (("value", y, varies), ("difference", y - y[:, :, :1, :], varies | varies[0])):
        # the chance and predictive ranges (a sort over the draws) only for life-years and QALYs
        parts = [decompose(values[..., ~risk], plan.parameter_draws, var[:, None], ranges=True),
                 decompose(values[..., risk], plan.parameter_draws, var[:, None], ranges=False)]
        for k in STATISTICS:
            merged = np.empty(values.shape[1:])
            merged[..., ~risk], merged[..., risk] = parts[0][k], parts[1][k]
            out[f"{prefix}_{k}"] = merged
    return out


def simulate_patient(protocol: Protocol, patients: Patients, horizon_years: float, draws: int, seed: int,
                     parameter_draws: int | None = None, options: ExecOptions | None = None,
                     calibration: xr.Dataset | None = None) -> tuple[TwinPlan, dict[str, np.ndarray]]:
    """Per-draw arrays of one patient under every option (see :func:`draws_chunk`)."""
    if patients.n != 1:
        raise ValueError("simulate_patient takes one patient; use simulate_batch for several")
    plan = make_plan(protocol, patients, horizon_years, draws, parameter_draws, calibration)
    # chunk weight: the kernel's per-draw counts take (T+1)·A·S·8 bytes, so about 100 MB per chunk
    weight = max(1, math.ceil((plan.n_steps + 1) * plan.n_arms * len(plan.utility) / 40))
    job = Job(draws_chunk, plan, "twin", weight)
    (arrays,) = run_jobs([job], draws, seed, options or ExecOptions(progress=False))
    return plan, arrays


def simulate_batch(protocol: Protocol, patients: Patients, horizon_years: float, draws: int, seed: int,
                   parameter_draws: int | None = None, options: ExecOptions | None = None,
                   calibration: xr.Dataset | None = None) -> tuple[TwinPlan, dict]:
    """Per-patient summaries of a batch; the job's replicate axis is the patient axis (chunks of patients)."""
    plan = make_plan(protocol, patients, horizon_years, draws, parameter_draws, calibration)
    job = Job(patients_chunk, plan, "twin batch", draws)
    (arrays,) = run_jobs([job], patients.n, seed, options or ExecOptions(progress=False))
    return plan, arrays
