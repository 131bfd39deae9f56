"""A calibration's parameter draws as disease models: the disease model's own uncertainty for the
twin (one draw per parameter draw) and population runs (one draw per replicate)."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from vctrial.errors import SpecError
from vctrial.spec.base import read_yaml
from vctrial.spec.disease import DiseaseSpec
from vctrial.spec.study import disease_from, parameter_value, with_parameters


def open_calibration(path: str | Path) -> xr.Dataset:
    """A ``vctrial calibrate`` result, read fully; one clear line when it is not one."""
    if not Path(path).is_file():
        raise SpecError("command line", "--calibration", f"{path}: file not found")
    try:
        with xr.open_dataset(path) as ds:
            ds = ds.load()
    except (OSError, ValueError) as exc:
        raise SpecError(str(path), "", f"not a readable netCDF file ({exc})") from None
    if ds.attrs.get("kind") != "calibration" or "draws" not in ds:
        raise SpecError(str(path), "attrs.kind", f"not a vctrial calibrate result (kind {ds.attrs.get('kind')!r})")
    ds.attrs["opened_from"] = str(path)
    return ds


def disease_draws(disease: DiseaseSpec, calibration: xr.Dataset, count: int, option: str) -> list[DiseaseSpec]:
    """The disease model at the calibration's first ``count`` parameter draws.

    The disease file must be the one calibrated, or the calibrated file written from it; a draw
    sets the free parameters, and numbers tied to a parameter (``scales_with``) keep their ratio
    to it. ``option`` names the command-line option that sets ``count`` (for the error message).
    """
    import json

    source = calibration.attrs.get("opened_from", "--calibration")
    path = Path(disease.path)
    fitted = [calibration.attrs.get("disease_file"), calibration.attrs.get("disease_out")]
    if path.resolve() not in {Path(f).resolve() for f in fitted if f}:
        raise SpecError("command line", "--calibration", f"{source} calibrated {fitted[0]} (written as {fitted[1]}), "
                        f"not the disease file {path}")
    draws = calibration.draws.values
    if draws.shape[0] < count:
        raise SpecError("command line", option, f"{count} parameter draws asked for, but {source} has "
                        f"{draws.shape[0]}")
    data = read_yaml(path)
    names = [str(p) for p in calibration.parameter.values]
    scales = json.loads(calibration.attrs.get("scales_with", "{}"))
    out = []
    for m in range(count):
        values = {}
        for i, name in enumerate(names):
            values[name] = float(draws[m, i])
            for other in scales.get(name, []):
                values[other] = (float(parameter_value(data, other)) * float(draws[m, i])
                                 / float(parameter_value(data, name)))
        out.append(disease_from(with_parameters(data, values), path))
    return out
