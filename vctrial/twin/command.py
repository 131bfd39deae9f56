"""``vctrial twin``: validate the patient file(s) against the protocol, simulate, write atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from vctrial.errors import SpecError
from vctrial.execute import ExecOptions
from vctrial.results import check_outputs, spreadsheet_safe, write_netcdf, write_text
from vctrial.spec.patient import load_batch, load_patient
from vctrial.spec.protocol import load_protocol
from vctrial.study.draws import open_calibration
from vctrial.twin.outcomes import outcome_names
from vctrial.twin.output import build_batch_dataset, build_dataset, id_policy_text, patient_label
from vctrial.twin.simulate import simulate_batch, simulate_patient
from vctrial.twin.summary import format_twin, risk_table

DEFAULT_DRAWS = {"patient": 10_000, "batch": 1_000}


def run_dataset(patient_file: str, protocol_file: str, horizon_years: float = 10.0, draws: int | None = None,
                seed: int = 1, parameter_draws: int | None = None, keep_ids: bool = False,
                id_salt: str | None = None, options: ExecOptions | None = None,
                calibration: str | None = None) -> xr.Dataset:
    """Validate the patient file(s) against the protocol's models and simulate every option.

    A ``.csv`` file is a batch (dims patient, option, outcome, statistic); a YAML file one patient
    (dims option, draw, time). ``calibration`` (a ``vctrial calibrate`` result for the protocol's
    disease file) adds the disease model's parameter uncertainty to that of the effects.
    """
    protocol = load_protocol(protocol_file)
    batch = Path(patient_file).suffix.lower() == ".csv"
    draws = draws or DEFAULT_DRAWS["batch" if batch else "patient"]
    loader = load_batch if batch else load_patient
    patients = loader(patient_file, protocol.cohort, protocol.disease)
    salt = id_salt.encode("utf-8") if id_salt is not None else os.urandom(16)
    labels = [patient_label(pid, keep_ids, salt) for pid in patients.ids]
    policy = id_policy_text(keep_ids, id_salt is not None)
    options = options or ExecOptions(progress=False)
    fit = open_calibration(calibration) if calibration is not None else None
    if batch:
        plan, arrays = simulate_batch(protocol, patients, horizon_years, draws, seed, parameter_draws, options, fit)
        ds = build_batch_dataset(protocol, patients, plan, arrays, seed, horizon_years, labels, policy)
    else:
        plan, arrays = simulate_patient(protocol, patients, horizon_years, draws, seed, parameter_draws, options, fit)
        ds = build_dataset(protocol, patients, plan, arrays, seed, horizon_years, labels[0], policy)
    if fit is not None:
        ds.attrs["calibration_file"] = str(calibration)
        ds.attrs["calibration_parameters"] = json.dumps([str(p) for p in fit.parameter.values])
    return ds


def run_command(patient_file: str, protocol_file: str, horizon_years: float, draws: int | None, seed: int, out: str,
                parameter_draws: int | None = None, keep_ids: bool = False, id_salt: str | None = None,
                table: str | None = None, rank_by: str | None = None,
                options: ExecOptions | None = None, calibration: str | None = None) -> str:
    """``vctrial twin``: validate everything, simulate, write atomically; returns the text to print."""
    check_outputs({"--out": out, "--table": table}, [patient_file, protocol_file] + ([calibration] if calibration else []))
    batch = Path(patient_file).suffix.lower() == ".csv"
    out_path = Path(out)
    for path in (out_path, Path(table) if table else None):
        if path is not None and path.is_dir():
            raise SpecError(str(path), "", "an output must be a file name, not a folder")
    if table and not batch:
        raise SpecError("command line", "--table", "a ranked table is made for a batch CSV of patients")
    if rank_by is not None and not batch:
        raise SpecError("command line", "--rank-by", "ranks the patients of a batch CSV; one patient has no ranking")
    if batch and rank_by is not None:
        protocol = load_protocol(protocol_file)
        tte = np.array([protocol.spec.endpoint.type == "time_to_event"])
        names = [n for n, _ in outcome_names(protocol.disease.event_names, tte)]
        if rank_by not in names:
            raise SpecError("command line", "--rank-by", f"unknown outcome {rank_by!r} (one of {', '.join(names)})")
    ds = run_dataset(patient_file, protocol_file, horizon_years, draws, seed, parameter_draws, keep_ids, id_salt,
                     options, calibration)
    if not batch:
        text = format_twin(ds)
        write_netcdf(ds, out_path)
        return text + f"\nwrote {out_path}"
    ranked = risk_table(ds, rank_by)
    write_netcdf(ds, out_path)
    if table:
        _write_csv(ranked, Path(table))
    shown = ranked.head(20)
    draws_each = ds.attrs.get("draws", draws)
    text = [f"{ds.sizes['patient']} patients, {draws_each} draws each ({ds.attrs.get('parameter_draws')} parameter "
            f"draws), horizon {horizon_years:g} years, seed {seed}; ranked by expected benefit of "
            f"{ds['option'].values[-1]} ({'gain' if rank_by in ('life_years', 'qalys') else 'risk reduction'} "
            f"of {rank_by or 'any_event'})",
            shown.drop(columns=["benefit"]).to_string(float_format=lambda v: f"{v:.4f}")]
    if len(ranked) > len(shown):
        text.append(f"... {len(ranked) - len(shown)} more in {table or out_path}")
    text.append(f"wrote {out_path}" + (f" and {table}" if table else ""))
    return "\n".join(text)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """The batch table as CSV, atomically (results.write_text)."""
    write_text(spreadsheet_safe(frame.drop(columns=["benefit"])).to_csv(), path)
