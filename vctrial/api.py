"""The Python API: what the command line does, as functions returning xarray Datasets.

Every command of ``vctrial`` is built from these functions, so a notebook gets exactly what the
command line prints and writes::

    from vctrial import api
    ds = api.run("protocols/hf_outcomes.yaml", replicates=200, seed=1)
    api.summarize(ds)                 # operating characteristics as a pandas DataFrame
    api.figures(ds)["km_by_arm"]      # a matplotlib Figure

Execution options are the same as the command line's: ``workers=0`` runs in-process (the default
here, good for small jobs and debugging); ``workers=None`` starts a local Ray instance on all
cores; ``address="HOST:PORT"`` (or ``"auto"``) joins a running Ray cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from vctrial.cohort import Cohort
from vctrial.cohort import synthesize as _synthesize
from vctrial.errors import SpecError
from vctrial.execute import ExecOptions
from vctrial.spec.base import read_yaml
from vctrial.spec.cohort import CohortSpec, load_cohort
from vctrial.spec.disease import DiseaseSpec, load_disease
from vctrial.spec.population import PopulationScenario, load_population
from vctrial.spec.protocol import Protocol, load_protocol

__all__ = [
    "load", "load_cohort", "load_disease", "load_protocol", "load_population", "validate", "synthesize",
    "run", "compare", "sweep", "summarize", "report", "figures", "save_figures", "write", "open_results",
    "bounds", "twin", "check", "calibrate", "design",
]

PathLike = str | Path


def options(workers: int | None = 0, address: str | None = None, out: PathLike | None = None,
            resume: bool = False, progress: bool = True) -> ExecOptions:
    """Execution options shared by every simulating function (see the module docstring)."""
    return ExecOptions(workers=workers, address=address, out=out, resume=resume, progress=progress)


def load(path: PathLike) -> CohortSpec | DiseaseSpec | Protocol | PopulationScenario:
    """Load and validate any vctrial file by its ``kind``; raises SpecError naming file, key and reason."""
    data = read_yaml(path)
    kind = data.get("kind") if isinstance(data, dict) else None
    from vctrial.spec.study import load_study

    loaders = {"cohort": load_cohort, "disease": load_disease, "trial": load_protocol, "population": load_population,
               "patient": _load_patient_alone, "validation": load_study, "calibration": load_study}
    if not isinstance(kind, str) or kind not in loaders:
        raise SpecError(str(path), "kind", f"must be one of {', '.join(loaders)}, got {kind!r}")
    return loaders[kind](path)


def validate(path: PathLike) -> str:
    """Check a file without running it; returns its kind."""
    from vctrial.spec.study import Study

    spec = load(path)
    if isinstance(spec, Study):
        return spec.spec.kind
    kinds = {CohortSpec: "cohort", DiseaseSpec: "disease", Protocol: "trial", PopulationScenario: "population"}
    return kinds.get(type(spec), "patient")


def _load_patient_alone(path: PathLike):
    """A patient file checked against the cohort and disease files it names itself."""
    from vctrial.spec.base import load as load_spec
    from vctrial.spec.patient import PatientSpec, load_patient

    spec = load_spec(path, PatientSpec)
    for key in ("cohort", "disease"):
        if getattr(spec, key) is None:
            raise SpecError(str(path), key, "needed to check a patient file on its own "
                            "(or check it against a protocol with vctrial twin)")
    base = Path(path).parent
    for key in ("cohort", "disease"):
        ref = getattr(spec, key)
        if not (base / ref).is_file():
            raise SpecError(str(path), key, f"referenced file not found: {ref} (looked for {base / ref})")
    return load_patient(path, load_cohort(base / spec.cohort), load_disease(base / spec.disease))


def synthesize(cohort: PathLike | CohortSpec, n_patients: int, seed: int = 1, replicate: int = 0) -> pd.DataFrame:
    """One replicate of a synthetic cohort as a DataFrame (categoricals as pandas Categoricals)."""
    spec = cohort if isinstance(cohort, CohortSpec) else load_cohort(cohort)
    synthetic: Cohort = _synthesize(spec, n_patients, seed, [replicate])
    frame = synthetic.to_dataframe(0)
    frame.attrs["n_screened"] = int(synthetic.n_screened[0])
    return frame


def run(spec: PathLike | Protocol | PopulationScenario, replicates: int = 1000, seed: int = 1, *,
        sweep: dict[str, list[Any]] | list[tuple[str, list[Any]]] | None = None, workers: int | None = 0,
        address: str | None = None, out: PathLike | None = None, resume: bool = False, progress: bool = True,
        exec_options: ExecOptions | None = None, calibration: PathLike | None = None) -> xr.Dataset:
    """Simulate a trial protocol or a population scenario file; returns the results Dataset.

    ``sweep`` maps dotted key paths to lists of values (``{"sample_size": [2000, 4000]}``); each
    becomes a dimension, merged with any ``sweep:`` the protocol declares. With ``out``, the
    Dataset is also written there atomically (and ``resume`` reuses finished chunks of an
    interrupted run with the same spec and seed). ``exec_options`` replaces the execution keywords.
    ``calibration`` (population scenarios): replicate r runs the disease model at the r-th parameter
    draw of a ``vctrial calibrate`` result, so the spread over replicates holds the model's own
    uncertainty (a probabilistic sensitivity analysis).
    """
    opts = exec_options or options(workers, address, out, resume, progress)
    _check_out(out, [spec] + ([calibration] if calibration is not None else []))
    if isinstance(spec, PopulationScenario) or (not isinstance(spec, Protocol) and _kind(spec) == "population"):
        from vctrial.population.output import run_population

        world = spec if isinstance(spec, PopulationScenario) else load_population(spec)
        if calibration is not None:
            from vctrial.study.draws import disease_draws, open_calibration

            if world.disease is None:
                raise SpecError(str(world.path), "", "--calibration draws a disease model; this scenario has none")
            fit = open_calibration(calibration)
            world.disease_draws = disease_draws(world.disease, fit, min(replicates, fit.sizes["draw"]), "--replicates")
            if replicates > fit.sizes["draw"]:
                raise SpecError("command line", "--replicates", f"{replicates} replicates, but {calibration} has "
                                f"{fit.sizes['draw']} parameter draws (one per replicate)")
        ds = run_population(world, replicates, seed, options=opts)
        if calibration is not None:
            ds.attrs["calibration_file"] = str(calibration)
        return _written(ds, out)
    if calibration is not None:
        raise SpecError("command line", "--calibration", "parameter draws are used by population scenarios and the "
                        "twin; a trial protocol runs at the disease file's values")
    from vctrial.trial.design import run_sweep, sweep_axes

    if not isinstance(spec, Protocol):
        pairs = list(sweep.items()) if isinstance(sweep, dict) else list(sweep or [])
        axes = sweep_axes(spec, pairs or None)
        if axes:
            return _written(run_sweep(spec, axes, replicates, seed, options=opts), out)
        spec = load_protocol(spec)
    elif sweep:
        raise ValueError("sweep needs the protocol's file path, not a loaded Protocol")
    from vctrial.trial.dataset import run_trial

    return _written(run_trial(spec, replicates, seed, options=opts), out)


def compare(protocols: list[PathLike], replicates: int = 1000, seed: int = 1, *, workers: int | None = 0,
            address: str | None = None, out: PathLike | None = None, resume: bool = False,
            progress: bool = True, exec_options: ExecOptions | None = None) -> xr.Dataset:
    """Several protocols on the same virtual patients (common random numbers): a ``protocol`` dimension."""
    _check_out(out, protocols)
    from vctrial.trial.design import compare as _compare

    opts = exec_options or options(workers, address, out, resume, progress)
    return _written(_compare(list(protocols), replicates, seed, options=opts), out)


def sweep(protocol: PathLike, values: dict[str, list[Any]], replicates: int = 1000, seed: int = 1,
          **kwargs: Any) -> xr.Dataset:
    """``run`` with a sweep: one Dataset dimension per swept key path."""
    return run(protocol, replicates, seed, sweep=values, **kwargs)


def summarize(ds: xr.Dataset) -> pd.DataFrame:
    """The operating characteristics (or population / twin summaries) of a results Dataset."""
    return _readers(ds)[0]()


def report(ds: xr.Dataset) -> str:
    """The text the command line prints for a results Dataset."""
    return _readers(ds)[1]()


def _readers(ds: xr.Dataset) -> tuple[Any, Any]:
    """(summary table, printed text) functions of a results Dataset, chosen by what it holds."""
    kind = ds.attrs.get("kind")
    if kind == "population":
        from vctrial.population import output

        return (lambda: output.summarize_population(ds)), (lambda: output.format_population_summary(ds))
    if kind == "twin":
        from vctrial import twin as twin_module

        return (lambda: twin_module.summarize(ds)), (lambda: twin_module.format_twin(ds))
    if kind == "validation":
        from vctrial.study.check import format_validation

        return (lambda: _along(ds, "figure")), (lambda: format_validation(ds))
    if kind == "calibration":
        from vctrial.study.calibrate import format_fit

        return (lambda: _along(ds, "parameter")), (lambda: format_fit(ds))
    from vctrial import results

    if "protocol" in ds.dims:
        return (lambda: results.compare_table(ds)), (lambda: results.format_comparison(ds))
    dims = [d for d in _sweep_dims(ds) if d in ds.dims]  # a ds.sel(...) may have taken some or all
    if dims:
        return (lambda: results.sweep_table(ds, dims)), (lambda: results.format_sweep(ds, dims))
    if results.VARYING in ds.attrs:  # one point of a sweep or comparison: its own attributes back
        ds = results.point(ds)
    return (lambda: results.summarize(ds)), (lambda: results.format_summary(ds))


def figures(ds: xr.Dataset) -> dict[str, Figure]:
    """Every figure that applies to a results Dataset, by name."""
    from vctrial.plots import figures as _figures

    return _figures(ds)


def save_figures(ds: xr.Dataset, out_dir: PathLike, dpi: int = 110) -> list[Path]:
    """Write the figures of a results Dataset as PNG files."""
    from vctrial.plots import save_figures as _save

    return _save(ds, out_dir, dpi=dpi)


def _check_out(out: PathLike | None, specs: list) -> None:
    """An output never replaces an input: refuse ``out`` naming one of the spec files (or a file they
    reference) before anything is simulated."""
    if out is None:
        return
    from vctrial.results import check_outputs

    files = [s if isinstance(s, (str, Path)) else getattr(s, "path", None) for s in specs]
    check_outputs({"--out": out}, [f for f in files if f is not None])


def write(ds: xr.Dataset, path: PathLike) -> Path:
    """Write a results Dataset to netCDF atomically."""
    from vctrial.results import write_netcdf

    return write_netcdf(ds, path)


def open_results(path: PathLike) -> xr.Dataset:
    """Read a results file fully into memory (booleans restored from their 0/1 storage)."""
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    for name in ds.data_vars:
        if ds[name].attrs.get("flag_meanings") == "false true":
            ds[name] = ds[name].astype(bool).assign_attrs(ds[name].attrs)
    return ds


def bounds(looks: int, alpha: float = 0.025, spending: str = "obf", gamma: float | None = None,
           fractions: list[float] | None = None) -> pd.DataFrame:
    """Group-sequential efficacy bounds (z scale) and cumulative alpha spent, one row per look."""
    from vctrial.trial.sequential import design

    fractions = fractions or [(k + 1) / looks for k in range(looks)]
    if spending == "hsd" and gamma is None:
        gamma = -4.0
    b = design(fractions, alpha, spending, gamma)
    return pd.DataFrame({"information_fraction": b.fractions, "efficacy_z": b.efficacy,
                         "cumulative_alpha": b.alpha_spent}, index=pd.RangeIndex(1, b.looks + 1, name="look"))


def design(endpoint: str = "survival", *, out: PathLike | None = None, verify: int | None = None, seed: int = 1,
           workers: int | None = 0, progress: bool = True, exec_options: ExecOptions | None = None, **settings: Any):
    """Size a trial as ``vctrial design`` does: events, sample size, duration and per-look information of a
    fixed or group-sequential design (see :mod:`vctrial.trial.sizing`); options are the command's, with
    underscores (``hazard_ratio=0.7, control_median=12, accrual_duration=12, study_duration=36``). With
    ``out`` the design is written as a protocol (with its disease and cohort files beside it, never over an
    existing file); with ``verify=N`` N trials of it are simulated. Returns a ``Design`` (``.text()`` is what
    the command prints; ``.verification`` holds the calculated and simulated power)."""
    from vctrial.trial.sizing import run_design

    return run_design(endpoint, out=out, verify_replicates=verify, seed=seed,
                      exec_options=exec_options or ExecOptions(workers=workers, progress=progress), **settings)


def check(files: list[PathLike] | PathLike, replicates: int | None = None, seed: int | None = None, *,
          out: PathLike | None = None, report: PathLike | None = None, workers: int | None = 0,
          progress: bool = True, exec_options: ExecOptions | None = None) -> list[xr.Dataset]:
    """External validation: each validation file's studies simulated, every published figure against
    the simulated ones (see :mod:`vctrial.study.check`). ``out`` (one file) writes the comparison as
    netCDF; ``report`` writes all tables as Markdown. Every file is loaded and checked before anything
    is simulated."""
    from vctrial.results import check_outputs
    from vctrial.spec.study import load_study
    from vctrial.study.check import document, run_validation

    files = [files] if isinstance(files, (str, Path)) else list(files)
    studies = [load_study(f) for f in files]
    for f, s in zip(files, studies):
        if s.spec.kind != "validation":
            raise SpecError(str(f), "kind", f"vctrial check takes validation files, got {s.spec.kind} "
                            "(calibration files run with vctrial calibrate)")
    check_outputs({"--out": out, "--report": report}, files)
    options = exec_options or ExecOptions(workers=workers, progress=progress)
    results = [run_validation(s, replicates, seed, options) for s in studies]
    if out is not None:
        write(results[0], out)
    if report is not None:
        from vctrial.results import write_text

        write_text(document(results, "vctrial check " + " ".join(str(f) for f in files) + f" --report {report}"),
                   report)
    return results


def calibrate(file: PathLike, out: PathLike, disease_out: PathLike | None = None, replicates: int | None = None,
              seed: int | None = None, *, workers: int | None = 0, address: str | None = None, resume: bool = False,
              progress: bool = True) -> xr.Dataset:
    """Fit a calibration file's free parameters (see :mod:`vctrial.study.calibrate`); writes ``out`` (the
    fit, netCDF) and the calibrated disease file (``disease_out``, default ``out`` with ``.yaml``)."""
    from vctrial.study.calibrate import run_command

    ds, _ = run_command(str(file), str(out), None if disease_out is None else str(disease_out), replicates, seed,
                        ExecOptions(workers=workers, address=address, out=out, resume=resume, progress=progress))
    return ds


def twin(patient: PathLike, protocol: PathLike, horizon_years: float = 10.0, draws: int | None = None,
         seed: int = 1, **kwargs: Any) -> xr.Dataset:
    """What may happen to one patient (YAML) or a batch (CSV) under each arm of a protocol."""
    from vctrial.twin import run_dataset

    return run_dataset(str(patient), str(protocol), horizon_years, draws, seed, **kwargs)


def _kind(path: PathLike) -> str | None:
    data = read_yaml(path)
    kind = data.get("kind") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


def patients(protocol: PathLike | Protocol, replicates: Iterable[int], seed: int = 1) -> pd.DataFrame:
    """One row per simulated patient of the given replicates of a trial protocol (the same patients as
    replicate r of ``run`` with this seed): arm, stratum, site, covariates, entry, every event's first
    time, death, dropout, and the primary endpoint at the final analysis (``vctrial run --patients K``
    writes the same rows as CSV)."""
    from vctrial.trial.export import patient_table

    spec = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    return patient_table(spec, seed, [int(r) for r in replicates])


def _along(ds: xr.Dataset, dim: str) -> pd.DataFrame:
    """The variables of a Dataset that run along ``dim`` alone, one row per value of it."""
    names = [v for v in ds.data_vars if ds[v].dims == (dim,)]
    return ds[names].reset_coords(drop=True).to_dataframe()


def _sweep_dims(ds: xr.Dataset) -> list[str]:
    """Names of a sweep's dimensions (recorded as JSON {dimension: protocol key} in attrs)."""
    import json

    return list(json.loads(ds.attrs["sweep"])) if ds.attrs.get("sweep") else []


def _written(ds: xr.Dataset, out: PathLike | None) -> xr.Dataset:
    if out is not None:
        write(ds, out)
    return ds
