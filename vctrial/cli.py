"""The ``vctrial`` command."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import warnings
from pathlib import Path

from vctrial.errors import SpecError

EXIT_SPEC = 2
EXIT_RUN = 1


def _run(args: argparse.Namespace) -> int:
    """``vctrial run``: a protocol (with or without a sweep) or a population scenario file."""
    from vctrial import api

    out = _out_file(args.out)
    patients_out = _patients_export(args, out)
    ds = api.run(args.protocol, args.replicates, args.seed, sweep=getattr(args, "sweep", None), out=out,
                 exec_options=execution_options(args, out), calibration=args.calibration)
    print(api.report(ds))
    print(f"wrote {out}")
    if patients_out is not None:
        from vctrial.trial.export import write_patients

        rows = write_patients(api.load_protocol(args.protocol), args.seed, list(range(args.patients)), patients_out)
        print(f"wrote {patients_out} ({rows:,} patients of replicates 0-{args.patients - 1})")
    return 0


def _patients_export(args: argparse.Namespace, out: Path) -> Path | None:
    """``--patients K``: where the first K replicates' patients go, checked before anything is simulated."""
    if args.patients is None:
        if args.patients_out is not None:
            raise SpecError("command line", "--patients-out", "needs --patients K (how many replicates to export)")
        return None
    from vctrial import api
    from vctrial.results import check_outputs

    if api._kind(args.protocol) != "trial" or args.sweep:
        raise SpecError("command line", "--patients", "exports the patients of a trial protocol run without a sweep "
                        "(run one point of a sweep as its own protocol)")
    if args.patients > args.replicates:
        raise SpecError("command line", "--patients", f"{args.patients} replicates to export, but the run has "
                        f"{args.replicates}")
    target = Path(args.patients_out) if args.patients_out else out.with_name(out.stem + ".patients.csv")
    check_outputs({"--out": out, "--patients-out": target}, [args.protocol])
    return target


def _compare(args: argparse.Namespace) -> int:
    """``vctrial compare``: protocols on the same virtual patients, side by side."""
    from vctrial import api

    out = _out_file(args.out)
    ds = api.compare(args.protocols, args.replicates, args.seed, out=out, exec_options=execution_options(args, out))
    print(api.report(ds))
    print(f"wrote {out}")
    return 0


def _bounds(args: argparse.Namespace) -> int:
    """``vctrial bounds``: group-sequential bounds by alpha spending, one look per line."""
    from vctrial.trial.sequential import design, format_bounds

    if args.fractions is not None:
        fractions = args.fractions
        if len(fractions) != args.looks:
            raise SpecError("command line", "--fractions", f"give {args.looks} fractions (one per look), got "
                            f"{len(fractions)}")
        if not (all(0 < f <= 1 for f in fractions) and all(b > a for a, b in zip(fractions, fractions[1:]))
                and fractions[-1] == 1.0):
            raise SpecError("command line", "--fractions", f"must increase within (0, 1] and end with 1, got "
                            f"{fractions}")
    else:
        fractions = [(k + 1) / args.looks for k in range(args.looks)]
    if args.spending == "hsd" and args.gamma is None:
        args.gamma = -4.0
    if args.futility == "hsd" and args.futility_gamma is None:
        args.futility_gamma = -2.0
    for option, family, gamma in (("--gamma", args.spending, args.gamma),
                                  ("--futility-gamma", args.futility, args.futility_gamma)):
        if family == "power" and gamma is not None and gamma <= 0:
            raise SpecError("command line", option, f"the power family needs a gamma above 0, got {gamma:g}")
    try:
        b = design(fractions, args.alpha, args.spending, args.gamma, futility=args.futility, beta=args.beta,
                   futility_gamma=args.futility_gamma)
    except ValueError as exc:  # a combination the spending functions refuse
        raise SpecError("command line", "bounds", str(exc)) from None
    spend = args.spending + (f"(gamma={args.gamma:g})" if args.gamma is not None else "")
    print(f"one-sided alpha {args.alpha:g}, {args.looks} looks, {spend} spending"
          + (f"; non-binding futility by {args.futility} beta spending, beta {args.beta:g}" if args.futility else ""))
    print(format_bounds(b))
    return 0


def _design(args: argparse.Namespace) -> int:
    """``vctrial design``: events, sample size and duration; --out writes a protocol, --verify simulates it."""
    from vctrial.trial.sizing import command

    print(command(args, execution_options(args)))
    return 0


def _out_file(text: str) -> Path:
    from vctrial.results import output_target

    output_target("--out", text)  # a name that can be a file: not a folder, a FIFO or a name too long
    return Path(text)


def _validate(args: argparse.Namespace) -> int:
    from vctrial import api

    for file in args.files:
        print(f"{file}: valid {api.validate(file)}")
    return 0


def _twin(args: argparse.Namespace) -> int:
    from vctrial.twin import run_command

    print(run_command(args.patient, args.protocol, args.horizon_years, args.draws, args.seed, args.out,
                      parameter_draws=args.parameter_draws, keep_ids=args.keep_ids, id_salt=args.id_salt,
                      table=args.table, rank_by=args.rank_by, options=execution_options(args, args.out),
                      calibration=args.calibration))
    return 0


def _plot(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from vctrial.plots import save_figures
    from vctrial.results import check_folder_output

    check_folder_output("--out", args.out)
    paths = save_figures(_results_file(args.file), args.out, dpi=args.dpi)
    for p in paths:
        print(f"wrote {p}")
    return 0


def _results_file(file: str):
    """A results file vctrial wrote, read into memory; SpecError (exit 2) for anything else."""
    from vctrial import api
    from vctrial.plots import KINDS
    from vctrial.spec.base import read_spec_bytes

    path = Path(file)
    read_spec_bytes(path)  # a regular, readable file (not a folder, FIFO or device)
    try:
        ds = api.open_results(path)
    except (OSError, ValueError, RuntimeError) as exc:
        raise SpecError(str(path), "", f"not a readable netCDF results file ({exc})") from None
    kind = ds.attrs.get("kind")
    if kind not in KINDS:
        raise SpecError(str(path), "attrs.kind", f"not a results file vctrial writes: kind {kind!r} "
                        f"(known: {', '.join(KINDS)})")
    return ds


def _summarize(args: argparse.Namespace) -> int:
    """``vctrial summarize FILE.nc``: the operating characteristics (or summaries) a run printed."""
    from vctrial import api
    from vctrial.results import check_outputs, write_text

    check_outputs({"--csv": args.csv}, list(args.files))
    if args.csv and len(args.files) != 1:
        raise SpecError("command line", "--csv", "summarizes one results file; give one file")
    tables = []
    for n, file in enumerate(args.files):
        ds = _select(_results_file(file), file, args.sel or [])
        print(("\n" if n else "") + (f"{file}\n" if len(args.files) > 1 else "") + api.report(ds))
        tables.append(api.summarize(ds))
    if args.csv:
        print(f"wrote {write_text(tables[0].to_csv(), args.csv)}")
    return 0


def _select(ds, file: str, selections: list[tuple[str, str]]):
    """``ds.sel`` of one value per named dimension, the value read as the dimension's type."""
    import numpy as np

    from vctrial.api import _sweep_dims

    points = [d for d in [*_sweep_dims(ds), "protocol"] if d in ds.dims and d in ds.coords]
    for dim, text in selections:
        if dim not in points:
            raise SpecError(file, f"--sel {dim}", "not a sweep or comparison dimension of this file "
                            f"({', '.join(points) or 'it has none'})")
        values = ds[dim].values
        found = [i for i, v in enumerate(values) if str(v) == text or _same_number(v, text)]
        if len(found) != 1:
            shown = ", ".join(str(v) for v in values[:20]) + (", ..." if len(values) > 20 else "")
            raise SpecError(file, f"--sel {dim}", f"{text!r} is not one of its values ({shown})")
        ds = ds.isel({dim: int(np.int64(found[0]))})
    return ds


def _same_number(value, text: str) -> bool:
    try:
        return math.isclose(float(value), float(text), rel_tol=1e-12, abs_tol=0.0)
    except (TypeError, ValueError):
        return False


def _check(args: argparse.Namespace) -> int:
    """``vctrial check``: validation files, each a published study against its simulation; exit 1 on a failure."""
    from vctrial import api

    if args.out is not None and len(args.files) > 1:
        raise SpecError("--out", "", "names one results file: give one validation file with it")
    results = api.check(args.files, replicates=args.replicates, seed=args.seed, out=args.out, report=args.report,
                        exec_options=execution_options(args, args.out))
    from vctrial.study.check import format_validation

    for ds in results:
        print(format_validation(ds))
        print()
    for path in (args.out, args.report):
        if path is not None:
            print(f"wrote {path}")
    failed = [ds.attrs["file"] for ds in results if not bool(ds.passed.all())]
    if failed:
        print(f"vctrial: {len(failed)} of {len(results)} validation file{'s' * (len(results) != 1)} with figures "
              f"outside their tolerance: {', '.join(failed)}", file=sys.stderr)
        return EXIT_RUN
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    """``vctrial calibrate``: fit a disease file to published targets; writes results and a new disease file."""
    from vctrial.study.calibrate import format_fit, run_command

    _out_file(args.out)  # a name that can be a file (the calibrated disease file's name is made from it)
    ds, disease_out = run_command(args.file, args.out, args.disease_out, args.replicates, args.seed,
                                  execution_options(args, args.out))
    print(format_fit(ds))
    print(f"wrote {args.out}")
    print(f"wrote {disease_out}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    import json

    from vctrial.spec import json_schema

    print(json.dumps(json_schema(args.kind), indent=2))
    return 0


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line naming the command line, exit code 2 (as for a wrong spec file)."""

    def error(self, message: str):
        command = self.prog.removeprefix("vctrial").strip()
        message = " ".join(message.split())
        self.exit(EXIT_SPEC, f"vctrial: error: command line: {message} (see vctrial {command + ' ' if command else ''}"
                             "--help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vctrial", description="Virtual clinical trials on synthetic patients.")
    from vctrial import __version__

    p.add_argument("--version", action="version", version=f"vctrial {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate replicates of a trial protocol or population scenario file and write a netCDF file")
    run.add_argument("protocol", help="protocol YAML file")
    run.add_argument("--replicates", "-n", type=_count, default=1000, help="number of simulated trials (default 1000)")
    run.add_argument("--seed", "-s", type=_seed, default=1, help="root random seed (default 1)")
    run.add_argument("--out", "-o", default="results.nc", help="output netCDF file (default results.nc)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    run.add_argument("--sweep", action="append", type=_sweep, metavar="KEY.PATH=V1,V2,...",
                     help="vary a protocol key over values (repeatable; adds to the protocol's own sweep:); "
                          "each key becomes a result dimension, e.g. arms.active.effects.0.hazard_ratio=0.7,0.8")
    run.add_argument("--calibration", default=None, metavar="FIT.nc",
                     help="population scenario: replicate r runs the disease model at the r-th parameter draw of "
                          "a vctrial calibrate result (a probabilistic sensitivity analysis)")
    run.add_argument("--patients", type=_count, default=None, metavar="K",
                     help="trial protocols: also write one row per simulated patient of replicates 0 to K-1 (arm, "
                          "stratum, covariates, event times, censoring) as CSV, for analysis in another tool")
    run.add_argument("--patients-out", default=None, metavar="FILE.csv",
                     help="where --patients writes (default: the --out name with .patients.csv)")
    add_execution_options(run)
    run.set_defaults(func=_run)

    cmp = sub.add_parser("compare", help="simulate several trial protocols on the same virtual patients, side by side")
    cmp.add_argument("protocols", nargs="+", help="protocol YAML files")
    cmp.add_argument("--replicates", "-n", type=_count, default=1000, help="number of simulated trials (default 1000)")
    cmp.add_argument("--seed", "-s", type=_seed, default=1, help="root random seed (default 1)")
    cmp.add_argument("--out", "-o", default="comparison.nc", help="output netCDF file (default comparison.nc)")
    cmp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_execution_options(cmp)
    cmp.set_defaults(func=_compare)

    bnd = sub.add_parser("bounds", help="group-sequential efficacy (and futility) bounds by Lan-DeMets spending")
    bnd.add_argument("--looks", "-k", type=_looks, required=True, help="number of analyses, the final one included "
                     "(at most 100)")
    bnd.add_argument("--alpha", "-a", type=_probability, default=0.025, help="one-sided type I error (default 0.025)")
    bnd.add_argument("--spending", choices=["obf", "pocock", "hsd", "power"], default="obf",
                     help="alpha spending: Lan-DeMets O'Brien-Fleming or Pocock type, Hwang-Shih-DeCani, "
                          "Kim-DeMets power (default obf)")
    bnd.add_argument("--gamma", type=_finite, default=None, help="hsd gamma (default -4) or power exponent")
    bnd.add_argument("--fractions", type=_fractions, default=None, metavar="F1,F2,...",
                     help="information fractions of the looks (default equally spaced)")
    bnd.add_argument("--futility", choices=["obf", "pocock", "hsd", "power"], default=None,
                     help="add non-binding futility bounds by this beta spending")
    bnd.add_argument("--beta", type=_probability, default=0.1, help="type II error for futility spending (default 0.1)")
    bnd.add_argument("--futility-gamma", type=_finite, default=None, help="futility hsd gamma (default -2) or power exponent")
    bnd.set_defaults(func=_bounds)

    from vctrial.trial.sizing import add_arguments as add_design_arguments

    dsg = sub.add_parser("design", help="events, sample size and duration of a fixed or group-sequential design "
                                        "(time-to-event, continuous, binary); optionally a runnable protocol and a "
                                        "simulation check")
    add_design_arguments(dsg)
    add_execution_options(dsg)
    dsg.set_defaults(func=_design)

    val = sub.add_parser("validate", help="check cohort, disease or protocol files without running them")
    val.add_argument("files", nargs="+")
    val.set_defaults(func=_validate)

    plot = sub.add_parser("plot", help="write PNG figures of a results file")
    plot.add_argument("file", help="netCDF results file written by vctrial")
    plot.add_argument("--out", "-o", default="figures", help="output folder (default figures/)")
    plot.add_argument("--dpi", type=_dpi, default=110, help="resolution, 10 to 1200 (default 110)")
    plot.set_defaults(func=_plot)

    smz = sub.add_parser("summarize", help="print the operating characteristics (or summaries) of results files")
    smz.add_argument("files", nargs="+", help="netCDF results files written by vctrial")
    smz.add_argument("--sel", action="append", type=_selection, metavar="DIM=VALUE",
                     help="one point of a sweep or comparison (repeatable), e.g. --sel hazard_ratio=0.8")
    smz.add_argument("--csv", help="also write the summary table of the (one) file as CSV")
    smz.set_defaults(func=_summarize)

    twin = sub.add_parser("twin", help="what may happen to one patient (YAML) or a batch (CSV) under each option")
    twin.add_argument("patient", help="patient YAML file, or a CSV of patients (id, covariates, optional state)")
    twin.add_argument("--protocol", "-p", required=True, help="protocol whose arms are the options")
    twin.add_argument("--horizon-years", type=_finite, default=10.0, help="forecast horizon in years (default 10)")
    twin.add_argument("--draws", "-n", type=_count, default=None,
                      help="simulations per option and patient (default 10000 for a patient, 1000 for a batch)")
    twin.add_argument("--parameter-draws", type=_count, default=None,
                      help="draws of the uncertain effects (confidence intervals); must divide --draws "
                           "(default: 1 without intervals, else about sqrt of --draws, at most 40)")
    twin.add_argument("--calibration", default=None, metavar="FIT.nc",
                      help="a vctrial calibrate result for the protocol's (calibrated) disease file: each parameter "
                           "draw also draws the disease model's fitted parameters")
    twin.add_argument("--seed", "-s", type=_seed, default=1, help="root random seed (default 1)")
    twin.add_argument("--out", "-o", default="twin.nc", help="output netCDF file (default twin.nc)")
    twin.add_argument("--table", help="batch: also write the ranked per-patient table as CSV")
    twin.add_argument("--rank-by", help="batch: outcome ranking the benefit (an event, any_event, all_cause_death, "
                                        "endpoint, life_years, qalys; default any_event)")
    twin.add_argument("--keep-ids", action="store_true", help="write patient identifiers (default: a salted hash)")
    twin.add_argument("--id-salt", help="salt of the identifier hash, to link outputs of several runs "
                                        "(default: random per run; never recorded)")
    twin.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_execution_options(twin)
    twin.set_defaults(func=_twin)

    chk = sub.add_parser("check", help="external validation: simulate published studies (validation files) and "
                                        "compare every reported figure; exit 1 when one is outside its tolerance")
    chk.add_argument("files", nargs="+", help="validation YAML files (kind: validation)")
    chk.add_argument("--replicates", "-n", type=_at_least_two, default=None,
                     help="simulated studies per file (default: the file's replicates)")
    chk.add_argument("--seed", "-s", type=_seed, default=None, help="root random seed (default: the file's seed)")
    chk.add_argument("--out", "-o", default=None, help="write the comparison (one file) as netCDF, for vctrial plot")
    chk.add_argument("--report", default=None, help="write every file's table as Markdown (e.g. docs/validation.md)")
    chk.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_execution_options(chk)
    chk.set_defaults(func=_check)

    cal = sub.add_parser("calibrate", help="fit a disease file's free parameters to published targets "
                                           "(a calibration file); writes the fit and a new disease file")
    cal.add_argument("file", help="calibration YAML file (kind: calibration)")
    cal.add_argument("--out", "-o", default="calibration.nc", help="the fit as netCDF (default calibration.nc)")
    cal.add_argument("--disease-out", default=None, help="the calibrated disease file (default: --out with .yaml)")
    cal.add_argument("--replicates", "-n", type=_at_least_two, default=None,
                     help="simulated studies per candidate (default: the file's replicates)")
    cal.add_argument("--seed", "-s", type=_seed, default=None, help="root random seed (default: the file's seed)")
    cal.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_execution_options(cal)
    cal.set_defaults(func=_calibrate)

    from vctrial.spec import KINDS

    schema = sub.add_parser("schema", help="print the JSON Schema of a file kind (for editors)")
    schema.add_argument("kind", choices=sorted(KINDS))
    schema.set_defaults(func=_schema)
    return p


def add_execution_options(sub: argparse.ArgumentParser) -> None:
    """The options of every command that runs simulations: where, resume, dashboard."""
    g = sub.add_argument_group("execution")
    g.add_argument("--workers", "-w", type=_workers, default=None,
                   help="Ray workers on a local Ray instance started for the run and bound to 127.0.0.1; "
                        "0 runs in this process without Ray; with --address, the most tasks run at once "
                        "(default: all local cores, in-process unless the first chunk shows the run is long "
                        "enough to pay for starting Ray)")
    g.add_argument("--address", type=_address, default=None, metavar="HOST:PORT",
                   help="join an existing Ray cluster ('auto': the one started on this machine) instead of "
                        "starting one")
    g.add_argument("--resume", action="store_true",
                   help="reuse the finished chunks an interrupted run of the same spec and seed left in "
                        "OUT.parts/, compute the rest")
    g.add_argument("--dashboard", action="store_true",
                   help="start the Ray dashboard (127.0.0.1) with the local instance")
    g.add_argument("--chunk-patients", type=_positive, default=None, metavar="N",
                   help="about how many patients (replicates × sample size) one task simulates (default 200000); "
                        "sets memory per task and the number of tasks, never the results")


def execution_options(args: argparse.Namespace, out: str | Path | None = None):
    """ExecOptions from the options ``add_execution_options`` defined; ``out`` is the command's output."""
    from vctrial.execute import ExecOptions

    if args.address is not None and args.dashboard:
        raise SpecError("command line", "--dashboard", "applies to a Ray instance the command starts, not to one "
                        "joined with --address")
    extra = {"chunk_patients": args.chunk_patients} if args.chunk_patients else {}
    return ExecOptions(workers=args.workers, progress=not getattr(args, "quiet", False), address=args.address,
                       out=out, resume=args.resume, dashboard=args.dashboard, **extra)


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _finite(text: str) -> float:
    value = _number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _address(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if text != "auto" and not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise argparse.ArgumentTypeError(f"must be HOST:PORT or auto, got {text!r}")
    return text


def _workers(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _selection(text: str) -> tuple[str, str]:
    dim, eq, value = text.partition("=")
    if not eq or not dim.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected DIM=VALUE, got {text!r}")
    return dim.strip(), value.strip()


def _sweep(text: str):
    from vctrial.trial.design import parse_sweep_option

    try:
        return parse_sweep_option(text)
    except SpecError as err:
        raise argparse.ArgumentTypeError(err.reason) from None


def _probability(text: str) -> float:
    value = _number(text)
    if not 0.0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"must be between 0 and 0.5, got {value}")
    return value


def _fractions(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"must be finite numbers, got {text!r}")
    return values


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _count(text: str, least: int = 1) -> int:
    """A number of replicates or draws: at least ``least``, at most vctrial.MAX_REPLICATES."""
    from vctrial import MAX_REPLICATES

    value = _integer(text)
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    if value > MAX_REPLICATES:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_REPLICATES:,}, got {value:,}")
    return value


def _looks(text: str) -> int:
    value = _positive(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"must be at most 100, got {value}")
    return value


def _dpi(text: str) -> int:
    value = _integer(text)
    if not 10 <= value <= 1200:
        raise argparse.ArgumentTypeError(f"must be between 10 and 1200, got {value}")
    return value


def _at_least_two(text: str) -> int:
    return _count(text, 2)


def _seed(text: str) -> int:
    value = _integer(text)
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63 - 1, got {value}")
    return value


class _StderrHandler(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment (a notebook or a test may replace it between two calls of
    ``main``), not to the one of the first call."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _log_to_stderr(quiet: bool) -> None:
    """Notes of the run (where it runs, chunks computed and reused) as ``vctrial: ...`` lines."""
    log = logging.getLogger("vctrial")
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("vctrial: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def _runtime_warnings_to_debug_log(show):
    """A ``warnings.showwarning`` that logs RuntimeWarnings (numpy's NaN and inf notes) at debug level and
    passes every other warning to ``show``."""

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, RuntimeWarning):
            logging.getLogger("vctrial").debug("%s:%s: %s: %s", filename, lineno, category.__name__, message)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


def _one_line(err: Exception) -> str:
    """An error as one line: reasons quoting a library's message may hold line breaks."""
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    # numba's OpenMP threads otherwise busy-wait between parallel loops, which stalls a loaded machine;
    # set before numba is imported (results do not depend on it)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = parser().parse_args(argv)
    _log_to_stderr(getattr(args, "quiet", False))
    try:
        with warnings.catch_warnings():  # restores the caller's warning handling when the command ends
            if not sys.warnoptions:  # an explicit -W or PYTHONWARNINGS keeps Python's own handling
                # last resort only: the computations known to give NaN or inf (degenerate replicates) do so
                # without warnings; any numpy RuntimeWarning left goes to the debug log, not the terminal
                warnings.showwarning = _runtime_warnings_to_debug_log(warnings.showwarning)
            return args.func(args)
    except SpecError as err:
        print(f"vctrial: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_SPEC
    except BrokenPipeError:  # the reader went away (e.g. `| head`): outputs are already written; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as err:
        from vctrial.execute import RunError
        from vctrial.results import WriteError

        if not isinstance(err, (RunError, WriteError)):
            raise
        print(f"vctrial: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_RUN
    except KeyboardInterrupt:
        print("vctrial: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
