"""Comparing protocols and sweeping design parameters on the same virtual patients.

Each protocol (or sweep point) is one ``execute.Job`` run with the same root seed. Draws are
keyed by (seed, stream, replicate, patient), so replicate r of every job meets the same
candidates, dropout times, disease thresholds... (common random numbers): differences between
protocols are paired, with far smaller Monte Carlo error than independent runs would give.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from vctrial.errors import SpecError
from vctrial.execute import ExecOptions, run_jobs, trial_job
from vctrial.results import build_dataset, stack
from vctrial.spec.base import parse_yaml, read_yaml
from vctrial.spec.protocol import Protocol, load_protocol

# existing dimensions, and keywords of Dataset.sel (a dimension named "method" could not be selected by name)
RESERVED = {"replicate", "arm", "state", "month", "step_month", "visit_month", "look", "site", "protocol", "point",
            "method", "tolerance", "drop", "indexers"}


def parse_sweep_option(text: str) -> tuple[str, list[Any]]:
    """``path=v1,v2,...`` → (path, values); values are YAML scalars or [lists] / {maps}."""
    if "=" not in text:
        raise SpecError("--sweep", text, "expected PATH=VALUE1,VALUE2,...")
    path, _, rest = text.partition("=")
    path = path.strip()
    if not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", path):
        raise SpecError("--sweep", path, "expected a dotted key path such as arms.active.effects.0.hazard_ratio")
    values = []
    for item in _split_top(rest):
        try:
            values.append(parse_yaml(item, "--sweep"))
        except SpecError as exc:
            raise SpecError("--sweep", path, f"cannot read value {item!r}: {exc.reason}") from None
    if not values or any(v is None and item.strip() == "" for v, item in zip(values, _split_top(rest))):
        raise SpecError("--sweep", path, "needs at least one value")
    return path, values


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets and braces."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [x.strip() for x in out]


def dim_names(paths: list[str]) -> list[str]:
    """A short, unique Dataset dimension name for each dotted path (its shortest unique suffix)."""
    names = []
    for p in paths:
        parts = p.split(".")
        for k in range(1, len(parts) + 1):
            name = "_".join(parts[-k:])
            if name not in RESERVED and not any(
                    q != p and "_".join(q.split(".")[-k:]) == name for q in paths):
                break
        names.append(name if name not in RESERVED else f"sweep_{name}")
    return names  # e.g. analysis.method -> analysis_method


def _label(value: Any) -> Any:
    """A coordinate label: numbers and strings as they are, anything else as compact JSON."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return value


def sweep_axes(path: str | Path, cli: list[tuple[str, list[Any]]] | None = None) -> dict[str, tuple[str, list[Any]]]:
    """The sweep of a protocol: its ``sweep:`` declaration, then ``--sweep`` options (which win).

    Returns {dimension name: (dotted path, values)} in declaration order.
    """
    data = read_yaml(path)
    declared = data.get("sweep") or {} if isinstance(data, dict) else {}
    if not isinstance(declared, dict):
        raise SpecError(str(path), "sweep", "must be a mapping {dotted.path: [values]}")
    axes: dict[str, list[Any]] = {}
    for key, values in declared.items():
        if not isinstance(values, list) or not values:
            raise SpecError(str(path), f"sweep.{key}", "needs a non-empty list of values")
        axes[str(key)] = values
    for key, values in cli or []:
        axes[key] = values
    names = dim_names(list(axes))
    out = {}
    for name, (key, values) in zip(names, axes.items()):
        labels = [_label(v) for v in values]
        if len(set(map(str, labels))) != len(labels):
            raise SpecError(str(path), f"sweep.{key}", "values must be distinct")
        out[name] = (key, values)
    return out


def sweep_protocols(path: str | Path, axes: dict[str, tuple[str, list[Any]]]) -> list[Protocol]:
    """Every point of the sweep loaded and validated (C order over the axes); errors name the path."""
    keys = [k for k, _ in axes.values()]
    points = []
    for combo in itertools.product(*(v for _, v in axes.values())):
        overrides = dict(zip(keys, combo))
        overrides["sweep"] = {}
        points.append(load_protocol(path, overrides))
    return points


def run_sweep(path: str | Path, axes: dict[str, tuple[str, list[Any]]], replicates: int, seed: int,
              options: ExecOptions = ExecOptions()) -> xr.Dataset:
    """Simulate every sweep point on the same virtual patients; one Dataset dimension per axis."""
    protocols = sweep_protocols(path, axes)
    labels = [", ".join(f"{n}={_label(v)}" for n, v in zip(axes, combo))
              for combo in itertools.product(*(v for _, v in axes.values()))]
    jobs = [trial_job(p, label) for p, label in zip(protocols, labels)]
    results = run_jobs(jobs, replicates, seed, options)
    datasets = [build_dataset(p, seed, arrays, np.arange(replicates)) for p, arrays in zip(protocols, results)]
    ds = stack(datasets, {name: [_label(v) for v in values] for name, (_, values) in axes.items()})
    for name, (key, _) in axes.items():
        ds[name].attrs.update({"long_name": f"swept protocol key {key}", "protocol_key": key})
    ds.attrs["sweep"] = json.dumps({name: key for name, (key, _) in axes.items()})
    return ds


def protocol_labels(paths: list[str | Path]) -> list[str]:
    """Unique labels for compared protocol files (their stems, numbered when they repeat)."""
    stems = [Path(p).stem for p in paths]
    return [s if stems.count(s) == 1 else f"{s}_{i + 1}" for i, s in enumerate(stems)]


def compare(paths: list[str | Path], replicates: int, seed: int, options: ExecOptions = ExecOptions()) -> xr.Dataset:
    """Simulate several protocols on the same virtual patients; a Dataset with a ``protocol`` dimension."""
    protocols = [load_protocol(p) for p in paths]
    for p in protocols:
        if p.spec.sweep:
            raise SpecError(str(p.path), "sweep", "compare runs single designs; run the sweep with vctrial run")
    labels = protocol_labels(paths)
    jobs = [trial_job(p, label) for p, label in zip(protocols, labels)]
    results = run_jobs(jobs, replicates, seed, options)
    datasets = [build_dataset(p, seed, arrays, np.arange(replicates)) for p, arrays in zip(protocols, results)]
    ds = stack(datasets, {"protocol": labels})
    ds["protocol"].attrs["long_name"] = "compared protocol (file name)"
    return ds
