"""Comparing protocols and sweeping design parameters on the same virtual patients.

Each protocol (or sweep point) is one ``execute.Job`` run with the same root seed. Draws are
keyed by (seed, stream, replicate, patient), so replicate r of every job meets the same
candidates, dropout times, disease thresholds... (common random numbers): differences between
protocols are paired, with far smaller Monte Carlo error than independent runs would give.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from vctrial.errors import SpecError
from vctrial.execute import ExecOptions, run_jobs
from vctrial.results import stack
from vctrial.spec.base import parse_yaml, read_yaml
from vctrial.spec.protocol import Protocol, _apply, load_protocol
from vctrial.trial.dataset import build_dataset, trial_job

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


MAX_SWEEP_POINTS = 1_000
"""Most points (combinations of swept values) one sweep may have: each is loaded and checked (about 0.1 s
each) before anything is simulated, and each adds its own results to the Dataset."""

_KEY = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


def sweep_axes(path: str | Path, cli: list[tuple[str, list[Any]]] | None = None) -> dict[str, tuple[str, list[Any]]]:
    """The sweep of a protocol: its ``sweep:`` declaration, then ``--sweep`` options (which win).

    Returns {dimension name: (dotted path, values)} in declaration order. Key paths, distinct values and
    the number of points are checked here; the points themselves by :func:`sweep_protocols`.
    """
    declared = _declared(path, read_yaml(path))
    axes: dict[str, list[Any]] = dict(declared)
    for key, values in cli or []:
        axes[key] = values
    names = dim_names(list(axes))
    out = {}
    for name, (key, values) in zip(names, axes.items()):
        file, where = _where(path, declared, key, values)
        if key == "sweep" or key.startswith("sweep."):
            raise SpecError(file, where, "a sweep cannot vary the sweep itself")
        labels = [_label(v) for v in values]
        if len(set(map(str, labels))) != len(labels):
            raise SpecError(file, where, "values must be distinct")
        out[name] = (key, values)
    points = math.prod(len(v) for _, v in out.values())
    if points > MAX_SWEEP_POINTS:
        declared_only = all(declared.get(k) == v for k, v in out.values())
        raise SpecError(str(path), "sweep" if declared_only else "--sweep",
                        f"{points:,} points ({' x '.join(str(len(v)) for _, v in out.values())}); at most "
                        f"{MAX_SWEEP_POINTS:,} in one run (split the sweep over several runs)")
    return out


def _declared(path: str | Path, data: Any) -> dict[str, list[Any]]:
    """The ``sweep:`` mapping of a parsed protocol file, its keys and value lists checked."""
    declared = data.get("sweep") or {} if isinstance(data, dict) else {}
    if not isinstance(declared, dict):
        raise SpecError(str(path), "sweep", "must be a mapping {dotted.path: [values]}")
    for key, values in declared.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise SpecError(str(path), f"sweep.{key}", "expected a dotted key path such as "
                            "arms.active.effects.0.hazard_ratio")
        if not isinstance(values, list) or not values:
            raise SpecError(str(path), f"sweep.{key}", "needs a non-empty list of values")
    return declared


def _where(path: str | Path, declared: dict[str, list[Any]], key: str, values: list[Any]) -> tuple[str, str]:
    """(file, key path) naming a sweep axis in errors: ``sweep.KEY`` of the file, or ``--sweep KEY`` (an option
    of the command line, applied to that file)."""
    if declared.get(key) == values:
        return str(path), f"sweep.{key}"
    return str(path), f"--sweep {key}"


def sweep_protocols(path: str | Path, axes: dict[str, tuple[str, list[Any]]],
                    base: dict[str, Any] | None = None) -> list[Protocol]:
    """Every point of the sweep loaded and validated (C order over the axes), ``base`` overrides under them.

    Each value is first checked alone, so that an error names its axis and position (``sweep.KEY[i]``, or
    ``--sweep KEY[i]`` for a value of a --sweep option); then every combination, since values valid alone
    may not fit together (an error then names the point).
    """
    data = read_yaml(path)
    declared = _declared(path, data)
    base = {k: v for k, v in (base or {}).items() if k != "sweep"}

    def load_point(point: dict[str, Any]) -> Protocol:
        return load_protocol(path, {**base, **point, "sweep": {}})

    singles: dict[tuple[str, int], Protocol] = {}
    for key, values in axes.values():
        file, where = _where(path, declared, key, values)
        try:
            _apply(data, {key: values[0]}, Path(path))  # the key path exists (on a copy of the data)
        except SpecError as exc:
            raise SpecError(file, where, exc.reason) from None
        for i, value in enumerate(values):
            try:
                singles[key, i] = load_point({key: value})
            except SpecError as exc:
                if exc.file == str(path) and exc.reason.startswith("unknown key") and _same_key(exc.path, key):
                    raise SpecError(file, where, exc.reason) from None
                raise SpecError(file, f"{where}[{i}]", _cause(exc, path, key)) from None
    if len(axes) == 1:
        ((key, values),) = axes.values()
        return [singles[key, i] for i in range(len(values))]
    keys = [k for k, _ in axes.values()]
    declared_only = all(_where(path, declared, k, v)[1].startswith("sweep.") for k, v in axes.values())
    points = []
    for combo in itertools.product(*(v for _, v in axes.values())):
        point = dict(zip(keys, combo))
        try:
            points.append(load_point(point))
        except SpecError as exc:
            at = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in point.items())
            raise SpecError(str(path), "sweep" if declared_only else "--sweep",
                            f"the point {at}: {_cause(exc, path, None)}") from None
    return points


def _same_key(error_path: str, key: str) -> bool:
    """Whether an error's key path (``arms[1].name``) is the swept dotted key (``arms.1.name``, or ``arms.active.name``
    with the list item named)."""
    got, want = re.sub(r"\[(\d+)\]", r".\1", error_path).split("."), key.split(".")
    return len(got) == len(want) and all(g == w or (g.isdigit() and not w.isdigit()) for g, w in zip(got, want))


def _cause(exc: SpecError, path: str | Path, key: str | None) -> str:
    """The reason of a point's error, with its file and key path unless they are the swept key's."""
    if exc.file != str(path):
        return f"{exc.file}: {exc.path}: {exc.reason}" if exc.path else f"{exc.file}: {exc.reason}"
    where, reason = exc.path, exc.reason
    if not where and (m := re.match(r"([\w.\[\]]+): (.*)", reason, re.S)):  # a model check names its key first
        where, reason = m.groups()
    if not where or (key is not None and _same_key(where, key)):
        return reason
    return f"{where}: {reason}"


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
    comparisons = [[a.name for a in p.spec.arms[1:]] for p in protocols]
    for p, names in zip(protocols[1:], comparisons[1:]):
        if (len(names) > 1 or len(comparisons[0]) > 1) and names != comparisons[0]:
            raise SpecError(str(p.path), "arms", f"compare puts protocols with three or more arms side by side "
                            f"comparison by comparison, so their active arms must be the same: "
                            f"{protocols[0].path.name} has {', '.join(comparisons[0])}, this one {', '.join(names)}")
    labels = protocol_labels(paths)
    jobs = [trial_job(p, label) for p, label in zip(protocols, labels)]
    results = run_jobs(jobs, replicates, seed, options)
    datasets = [build_dataset(p, seed, arrays, np.arange(replicates)) for p, arrays in zip(protocols, results)]
    ds = stack(datasets, {"protocol": labels})
    ds["protocol"].attrs["long_name"] = "compared protocol (file name)"
    return ds
