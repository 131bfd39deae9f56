"""Patient-level data of chosen replicates: one row per simulated patient, for analysis elsewhere.

The rows are the patients of replicate r of a run with the same protocol and seed (draws are keyed
by replicate), so another tool's analysis of them can be set beside vctrial's own, replicate by
replicate. Times are months; a time that did not happen by the model's horizon is empty (NaN).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vctrial.spec.protocol import Protocol
from vctrial.trial import endpoints, observation
from vctrial.trial import run as trial_run
from vctrial.trial.sites import site_labels

MAX_EXPORT_PATIENTS = 20_000_000  # rows of one export (replicates × sample size): a CSV of a few GB


def patient_table(protocol: Protocol, seed: int, replicates: list[int] | np.ndarray) -> pd.DataFrame:
    """One row per randomized patient of each replicate: arm, stratum, site, covariates, entry, the
    first time of every disease event and of death or dropout, and the primary endpoint as the final
    analysis sees it (time-to-event: time, event, included; biomarker change: baseline and visit value;
    binary: the outcome; count: events within follow-up)."""
    spec = protocol.spec
    replicates = np.asarray(replicates, np.int64)
    trial, cohort, _ = trial_run.simulate_patients(protocol, seed, replicates)
    R, n = trial.entry.shape
    arm = trial.arm.astype(np.int64)
    cols: dict[str, np.ndarray] = {
        "replicate": np.repeat(replicates, n),
        "patient": np.tile(np.arange(n), R),
        "arm": np.asarray([a.name for a in spec.arms], dtype=object)[arm].ravel(),
    }
    if trial.strata is not None:
        cols["stratum"] = trial.strata.ravel()
    if trial.site is not None:
        names = np.asarray(site_labels(spec.enrollment)[0], dtype=object)
        cols["site"] = names[np.maximum(trial.site, 0)].ravel()
    cols["entry_month"] = trial.entry.ravel()
    for name in cohort.names:
        if name in cohort.levels:
            codes = np.rint(cohort.columns[name]).astype(np.int64)
            cols[name] = np.asarray(cohort.levels[name], dtype=object)[codes].ravel()
        else:
            cols[name] = cohort.column(name).ravel()
    own = observation.assigned
    first = trial.paths.first_time
    for e, event in enumerate(protocol.disease.event_names):
        cols[f"first_{event}_month"] = _finite_or_nan(own(first[..., e], arm))
    if trial.paths.event_count is not None:
        for e, event in enumerate(protocol.disease.event_names):
            cols[f"count_{event}"] = own(trial.paths.event_count[..., e], arm).ravel()
    cols["death_month"] = _finite_or_nan(own(trial.paths.death_time, arm))
    cols["dropout_month"] = _finite_or_nan(trial.dropout)
    cols.update(_primary(trial, cohort, seed, replicates))
    frame = pd.DataFrame(cols)
    return frame[np.isfinite(trial.entry.ravel())].reset_index(drop=True)


def _finite_or_nan(x: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(x), x, np.nan).ravel()


def _primary(trial: trial_run.Trial, cohort, seed: int, replicates: np.ndarray) -> dict[str, np.ndarray]:
    """The primary endpoint's data at the final planned analysis (whether or not a look stopped earlier)."""
    spec = trial.protocol.spec
    n = trial.entry.shape[1]
    if spec.endpoint.type == "time_to_event":
        time, event, include, follow = trial_run.final_data(trial, list(spec.endpoint.events))
        _, t_primary, t_loss = trial_run.endpoint_data(trial, list(spec.endpoint.events))
        date = trial_run.look_dates(trial, t_primary, t_loss)[:, -1]
        return {"analysis_month": np.repeat(date, n), "follow_up_months": follow.ravel(),
                "included": include.ravel(), "time_months": np.where(include, time, np.nan).ravel(),
                "event": (event & include).ravel().astype(np.int8)}
    if spec.endpoint.type == "biomarker_change":
        return _biomarker(trial, seed, replicates)
    if spec.endpoint.type == "binary":
        y, include, _, _ = endpoints.binary_data(trial, seed, replicates)
        return {"included": include.ravel(), "outcome": np.where(include, y, np.nan).ravel()}
    _, follow, y, include, _ = endpoints.count_data(trial)
    return {"included": include.ravel(), "follow_up_months": follow.ravel(), "events": y.ravel()}


def _biomarker(trial: trial_run.Trial, seed: int, replicates: np.ndarray) -> dict[str, np.ndarray]:
    from vctrial.disease import biomarker

    protocol = trial.protocol
    ep = protocol.spec.endpoint
    j = [b.name for b in protocol.disease.biomarkers].index(ep.biomarker)
    months = trial_run._record_steps(protocol) * protocol.disease.time_step_months
    observed = biomarker.observe(protocol.disease.biomarkers, trial.paths.marker_true, months, seed,
                                 replicates)[:, :, :, j, :]
    death = observation.assigned(trial.paths.death_time, trial.arm)
    include = (trial.dropout > ep.visit_month) & (death > ep.visit_month) & trial.enrolled
    visit = observation.assigned(observed[:, :, :, 1], trial.arm)
    return {"included": include.ravel(), f"{ep.biomarker}_baseline": observed[:, :, 0, 0].ravel(),
            f"{ep.biomarker}_month_{ep.visit_month:g}": np.where(include, visit, np.nan).ravel()}


def write_patients(protocol: Protocol, seed: int, replicates: list[int], path, *, label: str = "--patients") -> int:
    """Write :func:`patient_table` of ``replicates`` as CSV, atomically and a few replicates at a time
    (memory stays bounded); text cells a spreadsheet would run as a formula are neutralised. Returns
    the number of rows."""
    from vctrial.errors import SpecError
    from vctrial.results import spreadsheet_safe, write_text

    n = protocol.spec.sample_size
    if len(replicates) * n > MAX_EXPORT_PATIENTS:
        raise SpecError("command line", label, f"{len(replicates)} replicates of {n} patients is "
                        f"{len(replicates) * n:,} rows; export at most {MAX_EXPORT_PATIENTS:,} at a time")
    per_piece = max(1, 200_000 // max(n, 1))
    rows = 0

    def pieces():
        nonlocal rows
        for k in range(0, len(replicates), per_piece):
            frame = spreadsheet_safe(patient_table(protocol, seed, replicates[k:k + per_piece]))
            rows += len(frame)
            yield frame.to_csv(index=False, header=k == 0, float_format="%.10g")

    write_text(pieces(), path)
    return rows
