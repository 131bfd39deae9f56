"""The ``vctrial`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vctrial.errors import SpecError

EXIT_SPEC = 2


def _run(args: argparse.Namespace) -> int:
    from vctrial.execute import run_trial
    from vctrial.results import format_summary, write_netcdf
    from vctrial.spec.protocol import load_protocol

    protocol = load_protocol(args.protocol)
    out = Path(args.out)
    if out.is_dir():
        raise SpecError(str(out), "", "--out must be a file name, not a folder")
    ds = run_trial(protocol, args.replicates, args.seed, progress=not args.quiet)
    write_netcdf(ds, out)
    print(format_summary(ds))
    print(f"wrote {out}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from vctrial.spec.base import read_yaml
    from vctrial.spec.cohort import load_cohort
    from vctrial.spec.disease import load_disease
    from vctrial.spec.protocol import load_protocol

    for file in args.files:
        data = read_yaml(file)
        kind = data.get("kind") if isinstance(data, dict) else None
        loaders = {"cohort": load_cohort, "disease": load_disease, "trial": load_protocol}
        if kind not in loaders:
            raise SpecError(file, "kind", f"must be one of {', '.join(loaders)}, got {kind!r}")
        loaders[kind](file)
        print(f"{file}: valid {kind}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import xarray as xr

    from vctrial.plots import save_figures

    path = Path(args.file)
    if not path.is_file():
        raise SpecError(str(path), "", "file not found")
    try:
        ds = xr.open_dataset(path)
    except (OSError, ValueError) as exc:
        raise SpecError(str(path), "", f"not a readable netCDF results file ({exc})") from None
    with ds:
        try:
            paths = save_figures(ds.load(), args.out, dpi=args.dpi)
        except ValueError as exc:
            raise SpecError(str(path), "attrs.kind", str(exc)) from None
    for p in paths:
        print(f"wrote {p}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    import json

    from vctrial.spec import json_schema

    print(json.dumps(json_schema(args.kind), indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vctrial", description="Virtual clinical trials on synthetic patients.")
    from vctrial import __version__

    p.add_argument("--version", action="version", version=f"vctrial {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate replicates of a trial protocol and write a netCDF file")
    run.add_argument("protocol", help="protocol YAML file")
    run.add_argument("--replicates", "-n", type=_positive, default=1000, help="number of simulated trials (default 1000)")
    run.add_argument("--seed", "-s", type=_seed, default=1, help="root random seed (default 1)")
    run.add_argument("--out", "-o", default="results.nc", help="output netCDF file (default results.nc)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    val = sub.add_parser("validate", help="check cohort, disease or protocol files without running them")
    val.add_argument("files", nargs="+")
    val.set_defaults(func=_validate)

    plot = sub.add_parser("plot", help="write PNG figures of a results file")
    plot.add_argument("file", help="netCDF results file written by vctrial")
    plot.add_argument("--out", "-o", default="figures", help="output folder (default figures/)")
    plot.add_argument("--dpi", type=_positive, default=110, help="resolution (default 110)")
    plot.set_defaults(func=_plot)

    from vctrial.spec import KINDS

    schema = sub.add_parser("schema", help="print the JSON Schema of a file kind (for editors)")
    schema.add_argument("kind", choices=sorted(KINDS))
    schema.set_defaults(func=_schema)
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63 - 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as err:
        print(f"vctrial: error: {err}", file=sys.stderr)
        return EXIT_SPEC
    except KeyboardInterrupt:
        print("vctrial: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
