"""Property-based harness: mutated spec files and command-line arguments against the contract.

Hypothesis takes a copy of the shipped files (populations shrunk to 2,000 people so that a case runs
in well under a second), mutates one or more of the files a command reads (wrong types; zero,
negative, extreme and non-finite numbers; huge integers; unknown, deleted and duplicated keys; list
items deleted or repeated; references to files, arms, events and transitions that do not exist or
are of the wrong kind; duplicate YAML keys, bytes that are not UTF-8, truncated text) or the command
line itself, and runs the real entry point, ``vctrial.cli.main``, in this process. Every case must
end in one of:

- exit 0: every number in the files written is finite, unless docs/outputs.md says a variable may
  hold NaN or infinity; no part file or temporary file is left;
- exit 2: exactly one line on stderr, ``vctrial: error: FILE: ...`` naming a file of the case (or
  ``command line``), and nothing written at all;
- exit 1 from ``vctrial check`` only: figures outside their tolerance, said on the last stderr line;

never an uncaught exception, a Python warning on the way to an error, or a changed input: every
file of the tree is byte-identical afterwards.

The number of examples per test is small enough for CI (the file runs in about two minutes on two
cores); a long run takes more from the environment::

    VCTRIAL_HYPOTHESIS_EXAMPLES=2000 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_properties.py

Examples are derandomized (the same cases on every run) and no example database is kept.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import hashlib
import io
import math
import os
import re
import resource
import shutil
import signal
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ROOT = Path(__file__).parent.parent
FOLDERS = ("cohorts", "diseases", "protocols", "patients", "validation", "calibration")
LONG_RUN = int(os.environ.get("VCTRIAL_HYPOTHESIS_EXAMPLES", "0") or 0)
CASE_SECONDS = 120.0  # one command of one example; past this the example fails (a hang is a bug too)
MEMORY_LIMIT = 12 * 2**30  # address space while the harness runs: a huge allocation fails fast


def examples(default: int) -> int:
    return LONG_RUN or default


def harness_settings(default: int):
    # no shrinking: a failure prints its whole mutated file and command, and shrinking a slow case takes minutes
    return settings(max_examples=examples(default), deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])


# --------------------------------------------------------------------------------------- the cases

@dataclass(frozen=True)
class Case:
    """A command over shipped files; ``inputs`` are the files named on its command line."""

    name: str
    argv: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...] = ("out/r.nc",)


def _run(protocol: str, n: int = 2) -> Case:
    return Case(f"run {protocol}", ("run", protocol, "-n", str(n), "-w", "0", "-q", "-o", "out/r.nc"), (protocol,))


TRIAL_CASES = [
    _run("protocols/t2d_hba1c.yaml"),
    _run("protocols/hf_outcomes.yaml"),
    _run("protocols/hf_outcomes_gs.yaml"),
    _run("protocols/oncology_delayed_effect.yaml"),
    Case("compare", ("compare", "protocols/hf_outcomes.yaml", "protocols/hf_outcomes_gs.yaml", "-n", "2", "-w", "0",
                     "-q", "-o", "out/r.nc"), ("protocols/hf_outcomes.yaml", "protocols/hf_outcomes_gs.yaml")),
]
POPULATION_CASES = [_run("protocols/pop_cvd_prevention.yaml", 1), _run("protocols/pop_flu_vaccination.yaml", 1),
                    _run("protocols/pop_hf_scaleup.yaml", 1)]
TWIN_CASES = [
    Case("twin patient", ("twin", "patients/t2d_patient.yaml", "--protocol", "patients/t2d_empagliflozin_options.yaml",
                          "--draws", "40", "--horizon-years", "1", "-w", "0", "-q", "-o", "out/r.nc"),
         ("patients/t2d_patient.yaml", "patients/t2d_empagliflozin_options.yaml")),
    Case("twin batch", ("twin", "patients/hf_clinic.csv", "--protocol", "patients/hf_dapagliflozin_options.yaml",
                        "--draws", "10", "--horizon-years", "1", "-w", "0", "-q", "-o", "out/r.nc", "--table",
                        "out/r.csv"),
         ("patients/hf_clinic.csv", "patients/hf_dapagliflozin_options.yaml"), ("out/r.nc", "out/r.csv")),
]
VALIDATION_CASES = [
    Case(f"check {name}", ("check", f"validation/{name}.yaml", "-n", "2", "-w", "0", "-q", "-o", "out/r.nc"),
         (f"validation/{name}.yaml",))
    for name in ("leader", "checkmate017", "oak", "jupiter")
]
CALIBRATION_CASES = [
    Case("calibrate hfref", ("calibrate", "calibration/hfref.yaml", "-n", "2", "-w", "0", "-q", "-o", "out/r.nc"),
         ("calibration/hfref.yaml",), ("out/r.nc", "out/r.yaml")),
]
ALL_CASES = TRIAL_CASES + POPULATION_CASES + TWIN_CASES + VALIDATION_CASES + CALIBRATION_CASES


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """The shipped files, populations shrunk to 2,000 people (everything else as shipped)."""
    root = tmp_path_factory.mktemp("pristine")
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, root / folder)
    for path in (root / "protocols").glob("pop_*.yaml"):
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(r"(?m)^(  size:) \d+$", r"\1 2000", text), encoding="utf-8")
    return root


@pytest.fixture(scope="module", autouse=True)
def bounded_memory():
    """A soft address-space limit while the harness runs, restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = MEMORY_LIMIT if hard == resource.RLIM_INFINITY else min(MEMORY_LIMIT, hard)
    if soft == resource.RLIM_INFINITY or soft > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def case_files(tree: Path, case: Case) -> list[str]:
    """The files a case reads: its inputs and every file they reference (relative to the tree)."""
    from vctrial.results import input_files

    found: set[Path] = set()
    for name in case.inputs:
        found |= input_files(tree / name)
    root = tree.resolve()
    return sorted(str(p.relative_to(root)) for p in found if p.is_relative_to(root))


# ------------------------------------------------------------------------------------ the mutations

NUMBERS = [0, -1, 1, 2, 3, 0.5, -0.5, 1e-9, 1e-308, 5e-324, 1e308, -1e308, 1.7976931348623157e308, 2**31 - 1, 2**31,
           2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30, 10**400, float("nan"), float("inf"), float("-inf"),
           100000, 1e6, 1e12, 0.999999, 1.000001]
OTHER_VALUES = [None, True, False, "", "x", "nan", "1e999", "-1", "0x10", "yes", "1,5", [], {}, [1, 2], [[]], {"a": 1},
                ["a", "b"], datetime.date(2020, 2, 29), datetime.date(1800, 1, 1), datetime.date(2999, 12, 31),
                "2020-13-45", "a" * 300, "é ü", "line\nbreak", "nul\0byte", "/", ".", "..", "~", "*", "?"]
UNKNOWN_KEYS = ["bogus", "Name", "name ", "sample_sise", "seed", "kind", "description", "sweep", "1", "null", "<<"]
TEXT_ENCODINGS = ["utf-16", "latin-1", "cp1252", "utf-8-sig"]


def nodes(data: Any, loc: tuple = ()) -> list[tuple]:
    """Every location in parsed YAML (the root excluded), in document order."""
    out = []
    if isinstance(data, dict):
        for key, value in data.items():
            out.append((*loc, key))
            out.extend(nodes(value, (*loc, key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.append((*loc, i))
            out.extend(nodes(value, (*loc, i)))
    return out


def get(data: Any, loc: tuple) -> Any:
    for part in loc:
        data = data[part]
    return data


def strings(data: Any) -> list[str]:
    """Every string value in parsed YAML (names of arms, events, transitions, files...)."""
    if isinstance(data, dict):
        return [s for v in data.values() for s in strings(v)]
    if isinstance(data, list):
        return [s for v in data for s in strings(v)]
    return [data] if isinstance(data, str) and len(data) < 80 else []


@st.composite
def replacement(draw, old: Any, names: list[str], files: list[str]) -> Any:
    """A value to put where ``old`` was: extreme numbers, other types, names and files that may or may not exist."""
    choices = ["number", "other", "name", "file"]
    if isinstance(old, (int, float)) and not isinstance(old, bool):
        choices += ["number", "scaled"]
    if isinstance(old, str):
        choices += ["name", "file", "edited"]
    kind = draw(st.sampled_from(choices))
    if kind == "number":
        return draw(st.sampled_from(NUMBERS))
    if kind == "scaled":
        return old * draw(st.sampled_from([-1, 0, 0.5, 2, 10, 1000, 1e6, 1e-6]))
    if kind == "other":
        return draw(st.sampled_from(OTHER_VALUES))
    if kind == "name":
        return draw(st.sampled_from(names)) if names else "unknown_name"
    if kind == "file":
        return draw(st.sampled_from(files))
    return draw(st.sampled_from([old + "_x", old.upper(), old[:-1], old + " ", "x" + old, old + "#nope"]))


@st.composite
def mutated_data(draw, data: Any, names: list[str], files: list[str]) -> Any:
    """One structural mutation of parsed YAML: a value replaced, a key or item deleted, an item repeated,
    an unknown key added."""
    import copy

    data = copy.deepcopy(data)
    locs = nodes(data)
    if not locs or not isinstance(data, (dict, list)):
        return draw(st.sampled_from(OTHER_VALUES + NUMBERS))
    numeric = [loc for loc in locs if isinstance(get(data, loc), (int, float)) and not isinstance(get(data, loc), bool)]
    op = draw(st.sampled_from(["number", "number", "replace", "replace", "delete", "repeat", "unknown_key"]))
    if op == "number" and numeric:  # a number of the file made extreme, or of another sign or type
        loc = draw(st.sampled_from(numeric))
        parent, key = get(data, loc[:-1]), loc[-1]
        old = parent[key]
        scaled = [old * f for f in (-1, 0, 0.5, 2, 10, 1e3, 1e6, 1e-6)] if abs(old) < 1e300 else [-old, 0]
        parent[key] = draw(st.sampled_from(NUMBERS + scaled + [float(old) if abs(old) < 1e300 else 1e300,
                                                               int(old) if isinstance(old, int) or math.isfinite(old) else 0,
                                                               str(old)]))
        return data
    op = "replace" if op == "number" else op
    loc = draw(st.sampled_from(locs))
    parent, key = get(data, loc[:-1]), loc[-1]
    if op == "replace":
        parent[key] = draw(replacement(parent[key], names, files))
    elif op == "delete":
        del parent[key]
    elif op == "repeat" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    elif op == "repeat" and isinstance(parent, dict):  # the same value under a key of its siblings
        sibling = draw(st.sampled_from(sorted(parent, key=str)))
        parent[sibling] = copy.deepcopy(parent[key])
    else:
        target = parent[key] if isinstance(parent[key], dict) else parent if isinstance(parent, dict) else data
        if isinstance(target, dict):
            target[draw(st.sampled_from(UNKNOWN_KEYS))] = draw(st.sampled_from([1, "x", None, {"a": 1}]))
        else:
            target.append(draw(st.sampled_from(OTHER_VALUES)))
    return data


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)


@st.composite
def mutated_text(draw, text: str) -> bytes:
    """A mutation of a file's text as bytes: a key given twice, another encoding, a stray byte, truncation."""
    lines = text.splitlines(keepends=True)
    op = draw(st.sampled_from(["duplicate_line", "encoding", "byte", "truncate", "empty", "tabs", "documents",
                               "aliases"]))
    if op == "duplicate_line":
        keyed = [i for i, line in enumerate(lines) if re.match(r"^\s*[A-Za-z_][\w]*\s*:", line)]
        if keyed:
            i = draw(st.sampled_from(keyed))
            lines.insert(i + 1, lines[i] if lines[i].endswith("\n") else lines[i] + "\n")
        return "".join(lines).encode("utf-8")
    if op == "encoding":
        encoding = draw(st.sampled_from(TEXT_ENCODINGS))
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        lines.insert(i, "# Café, naïve, 10 µg\n")
        return "".join(lines).encode(encoding, errors="replace")
    raw = text.encode("utf-8")
    if op == "byte":
        at = draw(st.integers(0, len(raw)))
        byte = draw(st.sampled_from([b"\x00", b"\xff", b"\x80", b"\t", b"\r", b"\x1b", b"\xef\xbb\xbf", b"{", b"&", b"*"]))
        return raw[:at] + byte + raw[at:]
    if op == "truncate":
        return raw[:draw(st.integers(0, len(raw)))]
    if op == "empty":
        return draw(st.sampled_from([b"", b"\n", b"---\n", b"~\n", b"[]\n", b"kind: trial\n", b"0\n", b"'text'\n"]))
    if op == "aliases":  # an alias bomb or deep nesting under a key of the file
        keyed = [i for i, line in enumerate(lines) if re.match(r"^[A-Za-z_]\w*\s*:", line)] or [0]
        i = draw(st.sampled_from(keyed))
        key = lines[i].split(":", 1)[0] if lines else "x"
        bomb = "[" + ", ".join(["*b"] * 10) + "]"
        value = draw(st.sampled_from([
            "&b [&a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]" + ", *a" * 9 + "]\n" + "".join(
                f"b{k}: &b{k} " + bomb.replace("*b", f"*b{k - 1}" if k > 1 else "*b") + "\n" for k in range(1, 8)),
            "[" * 150 + "]" * 150 + "\n", "&x [1, *x]\n", "*undefined\n", "!!python/object:os.system ['true']\n"]))
        lines[i] = f"{key}: {value}"
        return "".join(lines).encode("utf-8")
    if op == "tabs":
        return raw.replace(b"  ", b"\t", draw(st.integers(1, 5)))
    return raw + draw(st.sampled_from([b"\n---\nkind: trial\n", b"\n...\n", b"\n--- 1\n"]))


@st.composite
def mutated_csv(draw, text: str) -> bytes:
    """A mutation of a patients CSV: a cell, a column or a row changed, removed or repeated."""
    rows = list(csv.reader(io.StringIO(text)))
    op = draw(st.sampled_from(["cell", "cell", "cell", "drop_column", "repeat_column", "drop_rows", "repeat_row",
                               "short_row", "unknown_column"]))
    if op == "cell":
        r = draw(st.integers(0, len(rows) - 1))
        c = draw(st.integers(0, len(rows[r]) - 1))
        value = draw(st.sampled_from(NUMBERS + OTHER_VALUES + ["", "II", "IV", "stable", "dead", "HF-001"]))
        rows[r][c] = str(value) if not isinstance(value, float) else repr(value)
    elif op == "drop_column":
        c = draw(st.integers(0, len(rows[0]) - 1))
        rows = [row[:c] + row[c + 1:] for row in rows]
    elif op == "repeat_column":
        c = draw(st.integers(0, len(rows[0]) - 1))
        rows = [row + [row[c]] for row in rows]
    elif op == "drop_rows":
        rows = rows[:draw(st.integers(0, 1))]
    elif op == "repeat_row":
        r = draw(st.integers(1, len(rows) - 1))
        rows.insert(r, list(rows[r]))
    elif op == "short_row":
        r = draw(st.integers(1, len(rows) - 1))
        rows[r] = rows[r][:draw(st.integers(0, len(rows[r]) - 1))]
    else:
        rows[0].append(draw(st.sampled_from(["bogus", "age (years)", "id", "state", "kind"])))
        for row in rows[1:]:
            row.append("1")
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


@st.composite
def mutation(draw, tree: Path, files: list[str]) -> tuple[str, bytes]:
    """(file, new bytes): one mutated file of a case."""
    rel = draw(st.sampled_from(files))
    path = tree / rel
    text = path.read_text(encoding="utf-8")
    if rel.endswith(".csv"):
        return rel, draw(mutated_csv(text) if draw(st.integers(0, 4)) else mutated_text(text))
    if draw(st.integers(0, 5)) == 0:
        return rel, draw(mutated_text(text))
    data = yaml.safe_load(text)
    names = sorted({s for f in files if f.endswith((".yaml", ".yml"))
                    for s in strings(yaml.safe_load((tree / f).read_text(encoding="utf-8")))})
    here = path.parent
    refs = sorted({os.path.relpath(tree / f, here) for f in files} | {"missing.yaml", "../missing/x.yaml", "", ".",
                   os.path.relpath(tree / "protocols", here), os.path.relpath(tree / "patients/hf_clinic.csv", here),
                   os.path.relpath(tree / "patients/README.md", here), "/dev/null", "/", rel.rsplit("/", 1)[-1]})
    for _ in range(draw(st.integers(1, 3))):
        data = draw(mutated_data(data, names, refs))
    return rel, dump(data).encode("utf-8")


# ------------------------------------------------------------------------------------- the checks

class Timeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    def expire(signum, frame):
        raise Timeout(f"took more than {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def captured():
    """stdout and stderr of the code inside, Python's and the file descriptors' (C libraries write there),
    and the warnings it raised (each would be printed on stderr)."""
    import sys

    result: dict[str, Any] = {}
    files = {fd: tempfile.TemporaryFile() for fd in (1, 2)}
    saved = {fd: os.dup(fd) for fd in files}
    out, err = io.StringIO(), io.StringIO()
    try:
        for fd, f in files.items():
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(f.fileno(), fd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield result
    finally:
        for fd in files:
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
        raw = {}
        for fd, f in files.items():
            f.seek(0)
            raw[fd] = f.read().decode("utf-8", errors="replace")
            f.close()
        result["stdout"] = out.getvalue() + raw[1]
        result["stderr"] = err.getvalue() + raw[2]
        result["warnings"] = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]


def cli(argv: list[str], cwd: Path) -> dict[str, Any]:
    """Run ``vctrial.cli.main`` in this process; exit code, stdout, stderr, warnings, and the exception if any."""
    from vctrial.cli import main

    old = Path.cwd()
    os.chdir(cwd)
    start = time.perf_counter()
    try:
        with captured() as result:
            try:
                with time_limit(CASE_SECONDS):
                    result["code"] = main([str(a) for a in argv])
            except SystemExit as exc:
                result["code"] = exc.code
            except BaseException as exc:  # noqa: BLE001 - the finding
                import traceback

                result["code"] = None
                result["exception"] = "".join(traceback.format_exception(exc))
    finally:
        os.chdir(old)
    result["seconds"] = time.perf_counter() - start
    return result


def snapshot(tree: Path) -> dict[str, str]:
    """Every file (its SHA-256) and folder of a tree."""
    out = {}
    for p in sorted(tree.rglob("*")):
        rel = str(p.relative_to(tree))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else "dir"
    return out


def allowed_non_finite() -> set[str]:
    """Variables that docs/outputs.md says may hold NaN or infinity (the rows mentioning them)."""
    names: set[str] = set()
    for line in (ROOT / "docs" / "outputs.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("|") and re.search(r"NaN|[−-]?inf\b|infinit", line):
            first = line.split("|")[1]
            names.update(re.findall(r"`([A-Za-z_][A-Za-z0-9_<>]*)`", first))
    return names


ALLOWED_NON_FINITE = None


def non_finite(path: Path) -> list[str]:
    """Variables and coordinates of a netCDF file holding NaN or infinity that docs/outputs.md does not allow."""
    import xarray as xr

    global ALLOWED_NON_FINITE
    if ALLOWED_NON_FINITE is None:
        ALLOWED_NON_FINITE = allowed_non_finite()
    import json

    found = []
    with xr.open_dataset(path) as ds:
        # compare and sweep results pad the variables a protocol or point does not have with NaN
        padded = [d for d in ("protocol", *json.loads(ds.attrs.get("sweep") or "{}")) if d in ds.dims]
        for name, var in {**ds.data_vars, **ds.coords}.items():
            allowed = name in ALLOWED_NON_FINITE or any(
                name.startswith(a.split("<")[0]) for a in ALLOWED_NON_FINITE if "<" in a)
            if var.dtype.kind not in "fc" or allowed:
                continue
            bad = ~np.isfinite(var.values)
            for axis, dim in enumerate(var.dims):  # entries of a dimension documented as possibly NaN
                labels = ds[dim].values if dim in ds.coords else ()
                if len(labels) and labels.dtype.kind in "US":
                    ok = np.isin(labels.astype(str), sorted(ALLOWED_NON_FINITE))
                    bad = bad & ~ok.reshape([-1 if i == axis else 1 for i in range(var.ndim)])
            pads = [var.dims.index(d) for d in padded if d in var.dims]
            if pads and bad.any():
                bad = bad & ~padding(bad, pads, [i for i in range(var.ndim) if i not in pads])
            if bad.any():
                found.append(f"{name} ({int(bad.sum())} of {var.size})")
    return found


def padding(bad: np.ndarray, pads: list[int], labelled: list[int]) -> np.ndarray:
    """Where non-finite values are padding: a protocol (or sweep point) without the variable at all, or
    without a label (an arm, a state...) that another protocol has."""
    rest = tuple(i for i in range(bad.ndim) if i not in pads)
    out = np.broadcast_to(bad.all(axis=rest, keepdims=True), bad.shape).copy()
    for axis in labelled:
        others = tuple(i for i in rest if i != axis)
        out |= np.broadcast_to(bad.all(axis=others, keepdims=True), bad.shape) if others else bad
    return out


def contract_violations(argv: list[str], result: dict[str, Any], tree: Path, before: dict[str, str],
                        case_names: list[str], outputs: tuple[str, ...]) -> list[str]:
    """What a command did against the contract (empty when it kept it)."""
    problems = []
    code, err = result["code"], result["stderr"]
    lines = err.strip().splitlines()
    after = snapshot(tree)
    named = {str(Path(o)) for o in outputs}  # an output may replace a file that is not an input of the command
    changed = [k for k in before if after.get(k) != before[k] and not (code in (0, 1) and k in named)]
    if changed:
        problems.append(f"inputs changed or removed: {changed}")
    new = sorted(set(after) - set(before))
    if "exception" in result:
        problems.append(f"uncaught exception:\n{result['exception']}")
    elif code == 2:
        if len(lines) != 1 or not lines[0].startswith("vctrial: error: "):
            problems.append(f"exit 2 without exactly one 'vctrial: error:' line on stderr:\n{err}")
        elif not (lines[0].startswith("vctrial: error: command line: ")
                  or any(name in lines[0] for name in case_names)):
            problems.append(f"the error names no file of the case ({', '.join(case_names)}):\n{err}")
        if result["warnings"]:
            problems.append("warnings before the error: " + "; ".join(result["warnings"]))
        if new:
            problems.append(f"wrote {new} although it stopped on an error")
    elif code == 1 and argv[0] == "check" and lines and "outside their tolerance" in lines[-1] \
            and all(not line.startswith("vctrial: error") for line in lines):
        pass
    elif code == 1 and len(lines) == 1 and "not enough memory for one chunk" in lines[0]:
        if new:  # a run too big for this machine: refused with one line, nothing written
            problems.append(f"wrote {new} although it stopped on an error")
    elif code == 0:
        if argv[0] not in ("validate", "bounds"):
            for rel in outputs:
                if not (tree / rel).is_file():
                    problems.append(f"exit 0 but {rel} was not written")
                elif rel.endswith(".nc") and (bad := non_finite(tree / rel)):
                    problems.append(f"{rel}: non-finite values in {', '.join(bad)}")
        stray = [n for n in new if n.endswith(".tmp") or any(n == f"{o}.parts" or n.startswith(f"{o}.parts/")
                                                             for o in outputs)]
        if stray:
            problems.append(f"left behind: {stray}")
    else:
        problems.append(f"exit code {code!r}:\n{err}")
    if result["seconds"] > CASE_SECONDS:
        problems.append(f"took {result['seconds']:.0f} s")
    return problems


def fresh_tree(pristine: Path) -> Path:
    tree = Path(tempfile.mkdtemp(prefix="case-", dir=pristine.parent))
    for folder in FOLDERS:
        shutil.copytree(pristine / folder, tree / folder)
    return tree


def check_case(pristine: Path, case: Case, changes: list[tuple[str, bytes]], extra_argv: list[str] | None = None):
    """Write the mutated files into a fresh tree, run ``validate`` on them and the case's command; assert the contract."""
    tree = fresh_tree(pristine)
    try:
        for rel, raw in changes:
            (tree / rel).write_bytes(raw)
        names = sorted({rel for rel, _ in changes} | set(case_files(tree, case)) | set(case.inputs))
        report = []
        commands = [["validate", rel] for rel, _ in changes if rel.endswith((".yaml", ".yml"))]
        commands.append(list(case.argv) + (extra_argv or []))
        for argv in commands:
            before = snapshot(tree)
            result = cli(argv, tree)
            problems = contract_violations(argv, result, tree, before, names,
                                           case.outputs if argv[0] != "validate" else ())
            if problems:
                report.append(f"$ vctrial {' '.join(argv)}\n" + "\n".join(problems))
            STATS.record(argv[0], result)
        if report:
            shown = "\n".join(f"--- {rel} ---\n{raw.decode('utf-8', errors='replace')[:4000]}" for rel, raw in changes)
            pytest.fail("\n\n".join(report) + f"\n\nmutated files:\n{shown}", pytrace=False)
    finally:
        shutil.rmtree(tree, ignore_errors=True)


class Stats:
    """How many commands each test ran and how they ended (printed at the end of the module, with -s)."""

    def __init__(self):
        self.counts: dict[tuple[str, Any], int] = {}
        self.reasons: dict[str, int] = {}
        self.seconds = 0.0

    def record(self, command: str, result: dict[str, Any]) -> None:
        key = (command, result.get("code"))
        self.counts[key] = self.counts.get(key, 0) + 1
        self.seconds += result["seconds"]
        if result.get("code") == 2:  # the kinds of refusal seen: the reason without file, key and values
            line = (result["stderr"].strip().splitlines() or [""])[0]
            reason = re.sub(r"(got|is|to) .*$", r"\1 ...", line.rsplit(": ", 1)[-1])[:60]
            self.reasons[reason] = self.reasons.get(reason, 0) + 1


STATS = Stats()


@pytest.fixture(scope="module", autouse=True)
def stats_report():
    yield
    total = sum(STATS.counts.values())
    lines = [f"{cmd} exit {code}: {n}" for (cmd, code), n in sorted(STATS.counts.items(), key=str)]
    lines += [f"{reason}: {n}" for reason, n in sorted(STATS.reasons.items(), key=lambda x: -x[1])[:40]]
    print(f"\nproperty harness: {total} commands in {STATS.seconds:.0f} s\n  " + "\n  ".join(lines))


# ------------------------------------------------------------------------------------- the tests

def case_strategy(pristine: Path, cases: list[Case]):
    @st.composite
    def strategy(draw):
        case = draw(st.sampled_from(cases))
        files = [f for f in case_files(pristine, case) if f.endswith((".yaml", ".yml", ".csv"))]
        changes: dict[str, bytes] = {}
        for _ in range(draw(st.integers(1, 2))):
            rel, raw = draw(mutation(pristine, files))
            changes[rel] = raw
        return case, sorted(changes.items())

    return strategy()


def test_the_cases_keep_the_contract_unmutated(pristine):
    """Every case runs as shipped (exit 0, or 1 for a validation outside its tolerance)."""
    for case in ALL_CASES:
        check_case(pristine, case, [])


@pytest.mark.parametrize("cases", [TRIAL_CASES], ids=["trial"])
def test_mutated_trial_files(pristine, cases):
    @harness_settings(150)
    @given(case_strategy(pristine, cases))
    def prop(drawn):
        case, changes = drawn
        check_case(pristine, case, changes)

    prop()


def test_mutated_population_files(pristine):
    @harness_settings(40)
    @given(case_strategy(pristine, POPULATION_CASES))
    def prop(drawn):
        case, changes = drawn
        check_case(pristine, case, changes)

    prop()


def test_mutated_patient_files(pristine):
    @harness_settings(100)
    @given(case_strategy(pristine, TWIN_CASES))
    def prop(drawn):
        case, changes = drawn
        check_case(pristine, case, changes)

    prop()


def test_mutated_validation_files(pristine):
    @harness_settings(80)
    @given(case_strategy(pristine, VALIDATION_CASES))
    def prop(drawn):
        case, changes = drawn
        check_case(pristine, case, changes)

    prop()


def test_mutated_calibration_files(pristine):
    @harness_settings(40)
    @given(case_strategy(pristine, CALIBRATION_CASES))
    def prop(drawn):
        case, changes = drawn
        check_case(pristine, case, changes)

    prop()


# ------------------------------------------------------------------------- command-line arguments

COUNTS = ["0", "-1", "1", "2", "3", "1e3", "2.5", "nan", "inf", "-inf", "1e308", str(2**31), str(2**63 - 1), str(2**63),
          str(2**64), "9" * 30, "", "x", "0x10", " 2", "+2", "２"]
REALS = ["0", "-1", "0.5", "1", "10", "1e-9", "1e308", "-1e308", "nan", "inf", "-inf", "", "x", "1e999", "0.0", "1/2"]
PROBABILITIES = ["0", "0.025", "0.1", "0.49", "0.5", "1", "-0.1", "nan", "inf", "1e-300", "x", ""]
FRACTIONS = ["0.5,1", "1", "0.3,0.6,1", "1,0.5", "0,1", "0.5,0.5,1", "nan,1", "inf", "0.5,1,1", "", ",", "x,1",
             "1e-300,1", "0.9999999999999999,1", "0.5;1", "1," * 50 + "1"]
OUTPUTS = ["out/r.nc", "out/sub/deeper/r.nc", "out", ".", "/", "", "out/r.nc/x.nc", "protocols/hf_outcomes.yaml",
           "cohorts/hfref.yaml", "patients/hf_clinic.csv", "out/" + "a" * 300 + ".nc", "out/" + "b" * 250 + ".nc",
           "out/r.nc.parts", "out/fifo", "out/r.yaml", "out/r.csv", "-", "out/spaced name.nc", "out/é.nc",
           "protocols/t2d_hba1c.yaml/r.nc", "out/.hidden.nc", "out/r"]
SPECS = ["protocols/t2d_hba1c.yaml", "protocols/hf_outcomes.yaml", "protocols/pop_hf_scaleup.yaml", "cohorts/t2d.yaml",
         "diseases/hfref.yaml", "validation/oak.yaml", "calibration/hfref.yaml", "patients/t2d_patient.yaml",
         "patients/hf_clinic.csv", "patients/README.md", "missing.yaml", "protocols", "", "/", "out/fifo",
         "patients/t2d_empagliflozin_options.yaml"]
SWEEPS = ["sample_size=200,400", "arms.active.effects.0.hazard_ratio=0.7,0.8", "sample_size=", "=1", "sample_size",
          "sample_size=nan", "sample_size=1e999", "nope.key=1,2", "arms.9.name=x", "sample_size=[1,2]",
          "sample_size={a: 1}", "sample_size=200,200", "arms.active.allocation=0,1", "sample_size=2**63",
          "sample_size=&a [1]", "analysis.alpha=0.01,0.05", "enrollment.duration_months=0,1", "sample_size=1" + ",1" * 40]


def _option(draw, name: str, values: list[str], p_skip: int = 2) -> list[str]:
    return [] if draw(st.integers(0, p_skip)) == 0 else [name, draw(st.sampled_from(values))]


@st.composite
def command_line(draw) -> list[str]:
    """A command line of any subcommand with values from the pools above (a few options each)."""
    command = draw(st.sampled_from(["run", "run", "compare", "bounds", "bounds", "twin", "check", "calibrate",
                                    "validate", "plot"]))
    out = _option(draw, "-o", OUTPUTS, 3)
    if command == "run":
        argv = ["run", draw(st.sampled_from(SPECS[:3] + SPECS)), "-w", "0", "-q"]
        argv += _option(draw, "-n", COUNTS, 1) or ["-n", "2"]
        argv += _option(draw, "-s", COUNTS) + out + _option(draw, "--chunk-patients", COUNTS)
        argv += _option(draw, "--sweep", SWEEPS, 1) + _option(draw, "--sweep", SWEEPS, 5)
        argv += draw(st.sampled_from([[], [], ["--resume"], ["--dashboard"], ["-w", "1", "--address", "nowhere"]]))
    elif command == "compare":
        specs = draw(st.lists(st.sampled_from(SPECS[:3] + SPECS[:3] + SPECS), min_size=1, max_size=3))
        argv = ["compare", *specs, "-w", "0", "-q", "-n", draw(st.sampled_from(["2"] + COUNTS))] + out
    elif command == "bounds":
        argv = ["bounds", "-k", draw(st.sampled_from(["1", "2", "3", "5", "0", "-1", "50", "x", "nan"]))]
        argv += _option(draw, "-a", PROBABILITIES) + _option(draw, "--spending", ["obf", "pocock", "hsd", "power", "x"])
        argv += _option(draw, "--gamma", REALS) + _option(draw, "--fractions", FRACTIONS)
        argv += _option(draw, "--futility", ["obf", "pocock", "hsd", "power"]) + _option(draw, "--beta", PROBABILITIES)
        argv += _option(draw, "--futility-gamma", REALS)
    elif command == "twin":
        patient = draw(st.sampled_from(["patients/t2d_patient.yaml", "patients/hf_clinic.csv"] + SPECS))
        options = draw(st.sampled_from(["patients/t2d_empagliflozin_options.yaml",
                                        "patients/hf_dapagliflozin_options.yaml"] + SPECS))
        argv = ["twin", patient, "--protocol", options, "-w", "0", "-q"]
        argv += _option(draw, "--draws", COUNTS, 1) or ["--draws", "20"]
        argv += _option(draw, "--parameter-draws", COUNTS) + _option(draw, "--horizon-years", REALS, 1)
        argv += out + _option(draw, "--table", OUTPUTS) + _option(draw, "--rank-by", ["qalys", "any_event", "x", ""])
        argv += _option(draw, "-s", COUNTS) + draw(st.sampled_from([[], ["--keep-ids"], ["--id-salt", ""]]))
    elif command == "check":
        files = draw(st.lists(st.sampled_from(["validation/oak.yaml", "validation/checkmate017.yaml"] + SPECS),
                              min_size=1, max_size=2))
        argv = ["check", *files, "-w", "0", "-q", "-n", draw(st.sampled_from(["2"] + COUNTS))]
        argv += out + _option(draw, "--report", OUTPUTS) + _option(draw, "-s", COUNTS)
    elif command == "calibrate":
        argv = ["calibrate", draw(st.sampled_from(["calibration/hfref.yaml"] * 3 + SPECS)), "-w", "0", "-q", "-n",
                draw(st.sampled_from(["2"] + COUNTS))]
        argv += (out or ["-o", "out/r.nc"]) + _option(draw, "--disease-out", OUTPUTS)
    elif command == "validate":
        argv = ["validate", *draw(st.lists(st.sampled_from(SPECS), min_size=1, max_size=3))]
    else:
        argv = ["plot", draw(st.sampled_from(["results/r.nc", "results/truncated.nc", "results/empty.nc",
                                              "results/other.nc"] + SPECS))]
        argv += out + _option(draw, "--dpi", COUNTS)
    return argv


@pytest.fixture(scope="module")
def results_files(pristine) -> Path:
    """Files for ``plot``: a results file, the same truncated, an empty one, a netCDF vctrial did not write."""
    import xarray as xr

    folder = pristine.parent / "results"
    folder.mkdir()
    tree = fresh_tree(pristine)
    try:
        result = cli(["run", "protocols/t2d_hba1c.yaml", "-n", "2", "-w", "0", "-q", "-o", str(folder / "r.nc")], tree)
        assert result["code"] == 0, result
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    raw = (folder / "r.nc").read_bytes()
    (folder / "truncated.nc").write_bytes(raw[: len(raw) // 2])
    (folder / "empty.nc").write_bytes(b"")
    xr.Dataset({"x": ("i", [1.0, 2.0])}).to_netcdf(folder / "other.nc")
    return folder


def is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system
        return False


def check_command_line(pristine: Path, results: Path, argv: list[str]) -> None:
    tree = fresh_tree(pristine)
    try:
        shutil.copytree(results, tree / "results")
        (tree / "out").mkdir()
        os.mkfifo(tree / "out" / "fifo")
        before = snapshot(tree)
        result = cli(argv, tree)
        inputs = sorted({a for a in argv[1:] if a and not a.startswith("-")} | {str(Path(a)) for a in argv[1:]})
        outputs = tuple(argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-o", "--table", "--report"))
        if argv[0] in ("run", "compare", "twin", "calibrate") and "-o" not in argv:
            outputs += ({"run": "results.nc", "compare": "comparison.nc", "twin": "twin.nc",
                         "calibrate": "calibration.nc"}[argv[0]],)
        if argv[0] == "plot":
            outputs = ()
        problems = contract_violations(argv, result, tree, before, inputs, outputs)
        if problems:
            pytest.fail(f"$ vctrial {' '.join(repr(a) if ' ' in a or not a else a for a in argv)}\n"
                        + "\n".join(problems), pytrace=False)
        STATS.record(argv[0], result)
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def test_command_lines(pristine, results_files):
    @harness_settings(300)
    @given(command_line())
    def prop(argv):
        check_command_line(pristine, results_files, argv)

    prop()


# ------------------------------------------------------------------------------------ regressions
# Each class of failure the harness (or its long run) found, as a fixed case. The fix is at the root
# named in each docstring; docs/reliability.md lists them.

def run_cli(tree: Path, *argv) -> dict[str, Any]:
    return cli([str(a) for a in argv], tree)


def assert_refused(result: dict[str, Any], *parts: str, code: int = 2) -> str:
    assert "exception" not in result, result["exception"]
    lines = result["stderr"].strip().splitlines()
    assert result["code"] == code and len(lines) == 1 and lines[0].startswith("vctrial: error: "), result
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def work(pristine) -> Path:
    tree = fresh_tree(pristine)
    yield tree
    shutil.rmtree(tree, ignore_errors=True)


@pytest.mark.parametrize("text, line", [("kind: cohort\nname: a\x1bb\n", 2), ("kind: trial\nname: x\x00\n", 2),
                                        ("kind: '\x07'\n", 1)])
def test_a_character_yaml_does_not_allow_is_named_with_its_line(work, text, line):
    """spec/base.py parse_yaml: PyYAML's reader refuses control characters before any parsing (ReaderError
    raised by the loader's constructor, outside the handled errors)."""
    path = work / "bad.yaml"
    path.write_bytes(text.encode("utf-8"))
    assert_refused(run_cli(work, "validate", path), str(path), f"line {line}", "is not allowed")
    from vctrial.errors import SpecError
    from vctrial.spec.base import parse_yaml

    with pytest.raises(SpecError, match="line 1: character U\\+D800 is not allowed"):  # text from --sweep
        parse_yaml("'\ud800'", "--sweep")


def test_an_input_that_is_not_a_regular_file_is_refused_without_reading_it(work):
    """spec/base.py read_spec_bytes: a FIFO blocked the command forever (and /dev/zero would never end)."""
    os.mkfifo(work / "fifo.yaml")
    start = time.perf_counter()
    assert_refused(run_cli(work, "validate", "fifo.yaml"), "fifo.yaml", "not a regular file")
    assert_refused(run_cli(work, "run", "fifo.yaml", "-n", "2", "-w", "0", "-q", "-o", "out/r.nc"), "not a regular file")
    assert_refused(run_cli(work, "validate", "protocols"), "protocols", "is a folder")
    assert time.perf_counter() - start < 30


def test_an_alias_bomb_referenced_by_an_output_check_is_not_expanded(work):
    """results.py input_files: the files an --out must not replace were read with yaml.safe_load and their
    values walked, aliases expanded: a billion-laughs protocol hung ``run --out`` before any guard ran."""
    lines = ["kind: trial", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    (work / "bomb.yaml").write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    assert_refused(run_cli(work, "run", "bomb.yaml", "-n", "2", "-w", "0", "-q", "-o", "out/r.nc"), "bomb.yaml",
                   "aliases")
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("argv, parts", [
    (["run", "protocols/t2d_hba1c.yaml", "-n", "0"], ["command line: argument --replicates/-n: must be at least 1"]),
    (["run", "protocols/t2d_hba1c.yaml", "-n", "x"], ["expected a whole number, got 'x'"]),
    (["run", "protocols/t2d_hba1c.yaml", "-n", str(2**64)], ["must be at most 10,000,000"]),
    (["check", "validation/oak.yaml", "-n", "9" * 30], ["must be at most 10,000,000"]),
    (["run"], ["command line: the following arguments are required: protocol"]),
    (["twin", "patients/t2d_patient.yaml", "--protocol", "patients/t2d_empagliflozin_options.yaml", "--horizon-years",
      "inf"], ["--horizon-years: must be a finite number"]),
    (["bounds", "-k", "3", "--gamma", "nan", "--spending", "hsd"], ["--gamma: must be a finite number"]),
    (["bounds", "-k", "2", "--spending", "power", "--gamma", "-1"], ["command line: --gamma: the power family"]),
    (["bounds", "-k", "2", "--fractions", "nan,1"], ["--fractions: must be finite numbers"]),
    (["bounds", "-k", "1000"], ["--looks/-k: must be at most 100"]),
    (["plot", "results.nc", "--dpi", "100000"], ["--dpi: must be between 10 and 1200"]),
    (["run", "protocols/t2d_hba1c.yaml", "--address", "nowhere", "-w", "1"], ["--address: must be HOST:PORT or auto"]),
    (["run", "protocols/t2d_hba1c.yaml", "--address", "auto", "--dashboard"], ["command line: --dashboard: applies"]),
])
def test_a_wrong_argument_is_one_line_naming_the_command_line(work, argv, parts):
    """cli.py: argparse printed its usage (several lines) and some values went through unchecked: non-finite
    numbers, counts that cannot be allocated, spending parameters the solver refuses with a traceback."""
    assert_refused(run_cli(work, *argv), *parts)
    assert not (work / "out").exists() and not (work / "results.nc").exists()


@pytest.mark.parametrize("option_args, option, reason", [
    (["-o", "/"], "--out", "names no file"),
    (["-o", "out"], "--out", "is a folder"),
    (["-o", "out/fifo"], "--out", "not a regular file"),
    (["-o", "out/" + "a" * 300 + ".nc"], "--out", "bytes long"),
    (["-o", "out/" + "b" * 250 + ".nc"], "--out", "too long"),
    (["-o", "x.nc", "--disease-out", "out"], "--disease-out", "is a folder"),
])
def test_an_output_name_that_cannot_be_written_is_refused_before_simulating(work, option_args, option, reason):
    """results.py output_target: an --out that is a folder (``/`` crashed in Path.with_name), a FIFO or device
    (which a run as root would have replaced by a file: /dev/null), or a name longer than the file system
    allows (the temporary file's name included) failed after the simulation, with a traceback."""
    (work / "out").mkdir()
    os.mkfifo(work / "out" / "fifo")
    command = ["calibrate", "calibration/hfref.yaml", "-n", "2", "-w", "0", "-q"] if option == "--disease-out" else \
        ["twin", "patients/t2d_patient.yaml", "--protocol", "patients/t2d_empagliflozin_options.yaml", "--draws", "20",
         "-w", "0", "-q"]
    before = snapshot(work)
    assert_refused(run_cli(work, *command, *option_args), f"command line: {option}:", reason)
    assert snapshot(work) == before


def test_plot_checks_its_input_and_output_before_writing_anything(work, results_files):
    """cli.py _plot: --out naming a file crashed in mkdir; a netCDF file vctrial did not write left an empty
    figures folder behind; xarray's multi-line message made a multi-line error."""
    shutil.copytree(results_files, work / "results")
    before = snapshot(work)
    assert_refused(run_cli(work, "plot", "results/r.nc", "-o", "cohorts/t2d.yaml"), "--out", "is a file, not a folder")
    assert_refused(run_cli(work, "plot", "results/other.nc", "-o", "figs"), "results/other.nc", "attrs.kind")
    assert_refused(run_cli(work, "plot", "diseases/hfref.yaml", "-o", "figs"), "not a readable netCDF")
    assert snapshot(work) == before


def test_more_replicates_than_fit_are_refused_before_allocating():
    """execute.py: the replicate indices were allocated whole (np.arange(2**63) in chunks) before anything
    else; now a cap, chunk bounds computed without allocating, and a results-size check after the first chunk."""
    from vctrial.execute import MAX_REPLICATES, RunError, chunk_bounds, chunks, memory_bytes

    for n, size, cap in [(1000, 600, 200_000), (7, 600, 1200), (10, 1, 3), (1001, 7, 100)]:
        split = [c for c in np.array_split(np.arange(n), max(1, -(-n // max(1, cap // size)))) if len(c)]
        assert [(int(c[0]), int(c[-1]) + 1) for c in split] == chunk_bounds(n, size, cap)
        assert all(np.array_equal(a, b) for a, b in zip(chunks(n, size, cap), split))
    assert len(chunk_bounds(MAX_REPLICATES, 4000)) == MAX_REPLICATES // 50
    assert memory_bytes() > 0
    from vctrial.execute import Job, run_jobs

    job = Job(_two_arrays, None, "big", 1, key="big")
    with pytest.raises(RunError, match="at most 10,000,000"):
        run_jobs([job], MAX_REPLICATES + 1, 1)
    with pytest.raises(RunError, match="need about .* GiB for their results"):
        run_jobs([job], MAX_REPLICATES, 1)


def _two_arrays(spec, seed, replicates):
    return {"x": np.zeros((len(replicates), 4096))}  # 32 kB a replicate: 10 million need 305 GiB


def test_group_sequential_bounds_with_looks_close_together_are_right():
    """trial/sequential.py: Simpson's rule on the look-to-look kernel failed when a look added almost no
    information (the simulation spaces a look capped by the maximum duration 1e-9 after the one before):
    a final bound of 3.72 instead of 1.97; and NaN (a traceback from the root finder) with 1000 looks."""
    from vctrial.trial.sequential import crossing_probabilities, design

    two = design([0.5, 1.0], 0.025, "obf")
    for fractions in ([0.5, 0.5 + 1e-9, 1.0], [0.5, 0.5 + 1e-6, 1.0], [0.5, 0.501, 1.0]):
        b = design(fractions, 0.025, "obf")
        assert abs(b.efficacy[0] - two.efficacy[0]) < 1e-9
        assert abs(b.efficacy[-1] - two.efficacy[-1]) < 2e-3, b.efficacy
        assert abs(crossing_probabilities(b.fractions, b.efficacy)[0].sum() - 0.025) < 1e-6
    t = np.linspace(0.02, 1, 50)
    b = design(t, 0.025, "obf", futility="hsd", futility_gamma=-2.0)
    assert abs(b.efficacy[-1] - design(t, 0.025, "obf", r=120).efficacy[-1]) < 1e-3  # a fine grid: Simpson's rule
    assert abs(crossing_probabilities(b.fractions, b.efficacy)[0].sum() - 0.025) < 1e-5
    t = np.linspace(0.005, 1, 200)
    b = design(t, 0.025, "obf")
    assert abs(b.efficacy[-1] - 2.2013) < 5e-3 and abs(b.alpha_spent[-1] - 0.025) < 1e-6
    # few, well spaced looks: the same numbers as before the fix (Simpson's rule, unchanged)
    assert abs(design([1 / 3, 2 / 3, 1.0], 0.025, "obf").efficacy[-1] - 1.99304753) < 1e-7


def test_numbers_too_extreme_for_a_validators_arithmetic_are_named_at_their_key(work):
    """spec/base.py validate and spec/cohort.py: sd 1e308 over a lognormal mean raised OverflowError in a
    validator (a traceback), or later in the simulation (an OverflowError from the run)."""
    path = work / "cohorts" / "t2d.yaml"
    text = path.read_text()
    data = yaml.safe_load(text)
    name = next(k for k, v in data["covariates"].items() if isinstance(v, dict) and v.get("distribution") == "lognormal")
    data["covariates"][name].update(sd=1e308, min=0.001)
    path.write_text(dump(data))
    line = assert_refused(run_cli(work, "validate", "cohorts/t2d.yaml"), f"covariates.{name}")
    assert "too large" in line or "negligible" in line, line
    for key in ("min", "max"):
        data["covariates"][name].pop(key, None)
    path.write_text(dump(data))
    result = run_cli(work, "run", "protocols/t2d_hba1c.yaml", "-n", "2", "-w", "0", "-q", "-o", "out/r.nc")
    assert result["code"] in (0, 2) and "exception" not in result, result


def test_a_recurrent_transition_at_an_enormous_rate_stops_at_once_naming_the_disease_file(work):
    """disease/multistate.py _step: events within one step were generated one by one without a bound (2**31
    a year: 10**8 events a patient-step, a run that never ended); now the kernel stops counting past its
    scratch size and the error names the disease file."""
    path = work / "diseases" / "hfref.yaml"
    data = yaml.safe_load(path.read_text())
    recurrent = next(t for t in data["transitions"] if t["from"] == t["to"])
    recurrent["rate_per_year"] = 2**31
    path.write_text(dump(data))
    start = time.perf_counter()
    assert_refused(run_cli(work, "run", "protocols/hf_outcomes.yaml", "-n", "2", "-w", "0", "-q", "-o", "out/r.nc"),
                   "diseases/hfref.yaml: time_step_months: more than 32 events")
    assert time.perf_counter() - start < 60
    assert not (work / "out").exists()


def test_an_output_interval_longer_than_the_horizon_is_the_whole_horizon(work):
    """population/run.py grid: interval_days 2**64 made step counts numpy could not index with (IndexError)."""
    path = work / "protocols" / "pop_flu_vaccination.yaml"
    data = yaml.safe_load(path.read_text())
    data["outputs"]["interval_days"] = 2**64
    path.write_text(dump(data))
    result = run_cli(work, "run", "protocols/pop_flu_vaccination.yaml", "-n", "1", "-w", "0", "-q", "-o", "out/r.nc")
    assert result["code"] == 0, result
    assert not non_finite(work / "out" / "r.nc")


def test_a_spending_setting_the_bound_solver_cannot_meet_is_refused_at_load(work):
    """trial/sequential.py design and spec/protocol.py: futility beta 1e-308 made the drift bracket double
    forever (ndtri(1 - beta) is infinite once 1 - beta rounds to 1): every replicate of the run hung."""
    path = work / "protocols" / "hf_outcomes_gs.yaml"
    data = yaml.safe_load(path.read_text())
    data["looks"]["futility"]["beta"] = 1e-308
    path.write_text(dump(data))
    start = time.perf_counter()
    assert_refused(run_cli(work, "run", "protocols/hf_outcomes_gs.yaml", "-n", "2", "-w", "0", "-q", "-o", "out/r.nc"),
                   "protocols/hf_outcomes_gs.yaml: looks: the bounds cannot be computed")
    assert time.perf_counter() - start < 30
    from vctrial.trial.sequential import design

    assert design([0.4, 0.7, 1.0], 0.025, "obf", futility="hsd", beta=1e-12, futility_gamma=-2.0).drift < 20


def test_sizes_numpy_cannot_allocate_are_refused_when_loaded(work):
    """A sample size of 2**63 - 1 reached numpy as 'array is too big' (a ValueError) and read as an internal
    error; the spec now bounds it, so the file is refused at load naming the key, before anything runs."""
    path = work / "protocols" / "t2d_hba1c.yaml"
    data = yaml.safe_load(path.read_text())
    data["sample_size"] = 2**63 - 1
    path.write_text(dump(data))
    result = run_cli(work, "run", "protocols/t2d_hba1c.yaml", "-n", "2", "-w", "0", "-q", "-o", "out/r.nc")
    assert_refused(result, "sample_size: Input should be less than or equal to 1000000")
    assert not (work / "out").exists()
