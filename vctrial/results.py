"""Results as self-describing xarray Datasets: provenance from the resolved specs, atomic netCDF, one
run per output, stacking of protocols and sweep points, summaries.

The trial layout itself is built in :mod:`vctrial.trial.dataset`, the population layout in
:mod:`vctrial.population.output`, the twin layouts in :mod:`vctrial.twin.output`.
"""

from __future__ import annotations

import math

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import xarray as xr
import yaml
from scipy.stats import norm

import vctrial
from vctrial.spec.protocol import Protocol


def spec_document(spec: pydantic.BaseModel) -> dict[str, Any]:
    """A resolved spec as plain data: every key (defaults filled in), under the names its files use."""
    return spec.model_dump(mode="json", by_alias=True)


def spec_text(spec: pydantic.BaseModel | None) -> str:
    """A resolved spec as YAML text that loads back to the same spec ("" for none)."""
    if spec is None:
        return ""
    return yaml.safe_dump(spec_document(spec), sort_keys=False, allow_unicode=True, width=100)


def content_hash(*parts: Any) -> str:
    """First 16 hex digits of the SHA-256 of a canonical JSON text of ``parts`` (specs as their
    :func:`spec_document`): equal for equal resolved specs, wherever they came from."""
    def plain(x: Any) -> Any:
        if isinstance(x, pydantic.BaseModel):
            return spec_document(x)
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, Path):
            return str(x)
        if isinstance(x, np.generic):
            return x.item()
        return x

    text = json.dumps(plain(list(parts)), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def spec_hash(protocol: Protocol) -> str:
    """Hash of everything in the specs that determines results: the resolved protocol (overrides and
    sweep values applied), cohort and disease, as held in memory (no file is read)."""
    return content_hash(protocol.spec, protocol.cohort, protocol.disease)


def provenance(protocol: Protocol, seed: int) -> dict[str, str | int]:
    """Attributes that make a results file reproducible: the three resolved specs, their hash, seed, version.

    Everything comes from the specs in memory, so a sweep point records its own values, overrides
    are recorded, and specs built in code (or whose files are gone) are recorded too.
    """
    return {
        "protocol_name": protocol.spec.name,
        "protocol_file": "" if protocol.path is None else str(protocol.path),
        "protocol_text": spec_text(protocol.spec),
        "cohort_text": spec_text(protocol.cohort),
        "disease_text": spec_text(protocol.disease),
        "spec_hash": spec_hash(protocol),
        "seed": int(seed),
        "vctrial_version": vctrial.__version__,
    }


def parts_dir(path: str | Path) -> Path:
    """Where a run writing ``path`` keeps its finished chunks until the final file is written."""
    path = Path(path)
    return path.with_name(path.name + ".parts")


def file_mode() -> int:
    """Permissions of a new file under the process's umask (temporary files are created 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class WriteError(Exception):
    """An output could not be written (disk full, file too large, read-only file system...): one line for the
    user; the command line reports it like a failed run (``execute.RunError`` is one)."""


def _made_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, deepest first (to undo)."""
    missing = []
    while not _exists(folder):
        missing.append(folder)
        folder = folder.parent
    for f in reversed(missing):
        f.mkdir(exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for f in folders:
        try:
            f.rmdir()
        except OSError:
            break


def _fsync(path: str | Path, directory: bool = False) -> None:
    """Flush a file (or a folder's entries) to disk, where the system allows it."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_failed(path: Path, exc: BaseException) -> WriteError:
    text = str(exc).strip()
    reason = getattr(exc, "strerror", None) or (text.splitlines()[0] if text else type(exc).__name__)
    if not isinstance(exc, OSError):  # netCDF4 names the HDF5 call that failed, not why: say what we can see
        reason += _space_note(path.parent)
    parts = parts_dir(path)
    kept = (f"; the finished chunks are kept in {parts} (rerun with --resume)"
            if parts.is_dir() and any(_PART_NAME.match(p.name) for p in parts.iterdir()) else "")
    return WriteError(f"cannot write {path}: {reason}; nothing was written under that name{kept}")


def _space_note(folder: Path) -> str:
    """Why a write may have failed: a nearly full file system, or a file-size limit on this process."""
    import shutil

    notes = []
    try:
        free = shutil.disk_usage(folder).free
        if free < 2**20:
            notes.append(f"the file system has {free / 1024:.0f} kB free (disk full?)")
    except OSError:
        pass
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            notes.append(f"files are limited to {limit:,} bytes here (ulimit -f)")
    except (ImportError, OSError, ValueError):
        pass
    return f" ({'; '.join(notes)})" if notes else ""


def write_netcdf(ds: xr.Dataset, path: str | Path) -> Path:
    """Write atomically: a temporary file in the same folder, flushed to disk, renamed over the target.

    The run's part files (``parts_dir(path)``), no longer needed, are removed afterwards, and the run's
    hold on the output (:func:`hold_output`) released. A file system that refuses the write (full, file
    too large, read-only) raises :class:`WriteError`: nothing is left under the final name or beside it.
    """
    path = Path(path)
    try:
        made = _made_folders(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        release_output(path, failed=True)
        raise _write_failed(path, exc) from None
    os.close(fd)
    try:
        encoding = {v: {"zlib": True, "complevel": 4} for v in ds.data_vars if ds[v].dtype != bool}
        out = ds.copy()
        for v in ds.data_vars:
            if ds[v].dtype == bool:
                out[v] = ds[v].astype(np.int8)
                out[v].attrs.update(ds[v].attrs, flag_values=[0, 1], flag_meanings="false true")
        out.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
        _fsync(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
        _fsync(path.parent, directory=True)
    except (OSError, RuntimeError) as exc:  # netCDF4 reports a failed write as RuntimeError ("NetCDF: HDF error")
        Path(tmp).unlink(missing_ok=True)
        _remove_empty(made)
        release_output(path, failed=True)
        raise _write_failed(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        _remove_empty(made)
        release_output(path, failed=True)
        raise
    remove_parts(path, ds.attrs.get("seed"))
    release_output(path)
    return path


def write_text(text: str | Iterable[str], path: str | Path) -> Path:
    """Write a text file atomically (a temporary file in the same folder, renamed when complete);
    :class:`WriteError` when the file system refuses it. ``text`` may come in pieces (an iterable),
    so that a large table is never whole in memory."""
    path = Path(path)
    try:
        made = _made_folders(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_failed(path, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for piece in ([text] if isinstance(text, str) else text):
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        _remove_empty(made)
        raise _write_failed(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        _remove_empty(made)
        raise
    return path


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula (starting with =, +, -, @, tab or carriage
    return: a patient identifier kept with --keep-ids, a name from a spec) get a leading apostrophe."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype == object:
            out[name] = [f"'{v}" if isinstance(v, str) and v.startswith(FORMULA_START) else v for v in out[name]]
    return out


# --- one run per output at a time --------------------------------------------------------------

class OutputBusy(Exception):
    """Another process is running a command that writes the same output."""


_HELD: dict[Path, tuple[int, list[Path]]] = {}  # resolved output -> (lock file descriptor, folders made for it)
_TEMPORARY = r"^\.{name}\.[A-Za-z0-9_]{{8}}\.tmp$"


def lock_file(path: str | Path) -> Path:
    """The lock file of an output while a run writes it: ``.NAME.lock`` beside it."""
    target = Path(path).resolve()
    return target.with_name(f".{target.name}.lock")


def hold_output(path: str | Path) -> None:
    """Hold ``path`` for this process until its final write (or :func:`release_output`): an exclusive lock
    on ``.NAME.lock`` beside it, so that two runs never write one output (and its part files) at once.
    :class:`OutputBusy` when another process holds it. Temporary files an interrupted run left for this
    output (``.NAME.XXXXXXXX.tmp``) are removed. Held already by this process: nothing to do."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this system
        return
    target = Path(path).resolve()
    if target in _HELD:
        return
    lock = lock_file(target)
    made = _made_folders(target.parent)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip()
            os.close(fd)
            _remove_empty(made)
            raise OutputBusy(f"another vctrial run (process {holder or '?'}) is writing {path}; wait for it to "
                             f"finish, or choose another output") from None
        try:  # the holder before may have finished and removed the file between our open and lock
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    _HELD[target] = (fd, made)
    stale = re.compile(_TEMPORARY.format(name=re.escape(target.name)))
    for item in target.parent.iterdir():
        if stale.match(item.name) and item.is_file():
            item.unlink(missing_ok=True)  # an interrupted write's; no other run writes this output now


def release_output(path: str | Path, failed: bool = False) -> None:
    """Give up the hold of :func:`hold_output` (after the final write, or ``failed``: then also remove the
    folders made for the output if they are still empty)."""
    target = Path(path).resolve()
    held = _HELD.pop(target, None)
    if held is None:
        return
    fd, made = held
    try:
        lock_file(target).unlink(missing_ok=True)
    except OSError:
        pass
    os.close(fd)
    if failed:
        _remove_empty(made)


_PART_NAME = re.compile(r"^[0-9a-f]{24}\.\d{9}-\d{9}\.npz$")


def remove_parts(path: str | Path, seed=None) -> None:
    """Remove the part files a run kept for ``path`` once its final file is written: only files named
    as vctrial names them (and, with ``seed``, written for that seed, so a concurrent run with another
    seed keeps its own), and the folder only if nothing else is left in it. vctrial deletes only what
    it created."""
    folder = parts_dir(path)
    if not folder.is_dir() or folder.is_symlink():
        return
    for item in folder.iterdir():
        if not item.is_file() or item.is_symlink() or not _PART_NAME.match(item.name):
            continue
        if seed is not None:
            try:
                with np.load(item, allow_pickle=False) as z:
                    if json.loads(str(z["header"][()])).get("seed") != int(seed):
                        continue
            except Exception:  # noqa: BLE001 - not a readable part file: not ours to delete
                continue
        item.unlink(missing_ok=True)
    try:
        folder.rmdir()  # only when empty
    except OSError:
        pass


def input_files(path: str | Path, _seen: set[Path] | None = None) -> set[Path]:
    """A spec file and every file it references (cohort, disease, borrowed protocols...), resolved
    (links followed): every string value that names an existing file relative to the spec's folder
    counts, so no spec kind needs listing here."""
    from vctrial.errors import SpecError
    from vctrial.spec.base import read_yaml

    seen = set() if _seen is None else _seen
    try:
        path = Path(path).resolve()
        if path in seen or not path.is_file():
            return seen
    except (OSError, ValueError):  # a name the system refuses (too long, a NUL byte): nothing to protect
        return seen
    seen.add(path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        return seen
    try:
        data = read_yaml(path)  # with the loaders' guards: an alias bomb is refused, not walked
    except SpecError:  # the loaders report bad files; here only references matter
        return seen
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and len(node) < 4096 and "\n" not in node:
            ref = (path.parent / node.split("#", 1)[0])
            try:
                if node.split("#", 1)[0] and ref.is_file():
                    input_files(ref, seen)
            except (OSError, ValueError):
                continue
    return seen


def check_outputs(outputs: dict[str, str | Path | None], inputs: list[str | Path]) -> None:
    """Refuse, before anything is simulated, an output that is one of the inputs (links followed) or
    another output of the same command: an output never replaces an input."""
    from vctrial.errors import SpecError

    files: set[Path] = set()
    for item in inputs:
        files |= input_files(item)
    taken: dict[Path, str] = {}
    for option, out in outputs.items():
        if out is None:
            continue
        target = output_target(option, out)
        for candidate in (target, parts_dir(target)):
            for inp in files:
                if candidate == inp or (candidate.exists() and inp.exists() and os.path.samefile(candidate, inp)):
                    raise SpecError("command line", option, f"{out} is the input file {inp}: an output never "
                                    "replaces an input; choose another name")
        if target in taken:
            raise SpecError("command line", option, f"{out} is also the {taken[target]} output; give each output "
                            "its own file")
        taken[target] = option
        _check_writable(option, Path(out))


TEMPORARY_NAME_EXTRA = len(".") + len(".") + 8 + len(".tmp")
"""Characters a temporary file's name adds to its final name (``.NAME.XXXXXXXX.tmp``)."""


def output_target(option: str, out: str | Path) -> Path:
    """The resolved path of an output, refused (SpecError naming the option) when it cannot be a file vctrial
    writes: a name with a NUL byte or too long for the file system (with room for the temporary file's
    name), an existing folder, or an existing FIFO, device or socket (never replaced by a file)."""
    import stat

    from vctrial.errors import SpecError

    text = os.fspath(out)
    if "\0" in text:
        raise SpecError("command line", option, f"{text!r} is not a valid file name (a NUL byte)")
    if not Path(text).name or Path(text).name in (".", ".."):
        raise SpecError("command line", option, f"{text!r} names no file; give a file name")
    folder = Path(os.path.abspath(text)).parent
    while not _exists(folder):
        folder = folder.parent
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX") if folder.is_dir() else 255
    except (OSError, ValueError):
        limit = 255
    for part in Path(text).parts:
        if len(os.fsencode(part)) > limit:
            raise SpecError("command line", option, f"the name {part[:40]}... is {len(os.fsencode(part))} bytes long, "
                            f"more than this file system's {limit}")
    name = Path(text).name
    if len(os.fsencode(name)) + max(TEMPORARY_NAME_EXTRA, len(".parts")) > limit:
        raise SpecError("command line", option, f"the file name {name[:40]}... is too long: vctrial needs "
                        f"{TEMPORARY_NAME_EXTRA} more bytes for its temporary file, and this file system allows {limit}")
    target = Path(text).resolve()
    try:
        info = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):  # a folder on the way that is a file: _check_writable says so
        return target
    except OSError as exc:
        raise SpecError("command line", option, f"{text}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise SpecError("command line", option, f"{text} is a folder; give a file name")
    if not stat.S_ISREG(info.st_mode):
        raise SpecError("command line", option, f"{text} exists and is not a regular file (a FIFO, device or socket); "
                        "vctrial would replace it; give another name")
    return target


def check_folder_output(option: str, folder: str | Path) -> None:
    """An output folder (of figures) exists as a folder or can be made, and can be written; SpecError if not."""
    from vctrial.errors import SpecError

    text = os.fspath(folder)
    if "\0" in text:
        raise SpecError("command line", option, f"{text!r} is not a valid folder name (a NUL byte)")
    path = Path(text)
    if _exists(path) and not path.is_dir():
        raise SpecError("command line", option, f"{text} is a file, not a folder")
    for part in path.parts:
        if len(os.fsencode(part)) > 255 - TEMPORARY_NAME_EXTRA:
            raise SpecError("command line", option, f"the name {part[:40]}... is too long")
    _check_writable(option, path / "x")


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name too long: it cannot exist
        return False


def _check_writable(option: str, out: Path) -> None:
    """The output's folder exists or can be made, and can be written (checked before simulating)."""
    from vctrial.errors import SpecError

    folder = Path(os.path.abspath(out)).parent
    while not _exists(folder):
        folder = folder.parent
    if not folder.is_dir():
        raise SpecError("command line", option, f"{out} would be under {folder}, which is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        except (OSError, AttributeError):
            read_only = False
        why = "a read-only file system" if read_only else "no permission"
        raise SpecError("command line", option, f"cannot write in {folder} ({why})")


def binomial_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (Monte Carlo interval of power or type I error)."""
    if trials == 0:
        return (float("nan"), float("nan"))
    z = norm.ppf(0.5 + level / 2.0)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return (float(centre - half), float(centre + half))


def summarize(ds: xr.Dataset) -> pd.DataFrame:
    """Operating characteristics of a trial results Dataset, one row per quantity.

    Columns: value, lower, upper (95% Monte Carlo interval where it applies).
    """
    ds = point(ds)
    if "comparison" in ds.dims:
        return _multiarm_summary(ds)
    n = ds.sizes["replicate"]
    rows: list[tuple[str, float, float, float]] = []
    reject = ds["reject"].values.astype(bool)
    label = "type I error" if int(ds.attrs.get("null_effect", 0)) else "power"
    if ds.attrs.get("hypothesis", "superiority") != "superiority":  # its null is the margin, not no effect
        label = f"{ds.attrs['hypothesis']} shown"
    if int(ds.attrs.get("assurance", 0)):
        label = "assurance (probability of success)"
    lo, hi = binomial_interval(int(reject.sum()), n)
    rows.append((label, reject.mean(), lo, hi))
    if "harm" in ds:
        harm = ds["harm"].values.astype(bool)
        rows.append(("harm (significant, unfavourable)", harm.mean(), *binomial_interval(int(harm.sum()), n)))
    est = ds["estimate"].values
    ratio = is_ratio(ds)
    centre = np.log(est) if ratio else est
    truth = np.log(ds["true_effect"].values) if ratio else ds["true_effect"].values
    ok = np.isfinite(centre)
    mean = centre[ok].mean() if ok.any() else np.nan  # no finite estimate at all: NaN, no numpy warning
    sd = centre[ok].std(ddof=1) if ok.sum() > 1 else np.nan
    half = 1.96 * sd / np.sqrt(ok.sum())
    back = np.exp if ratio else (lambda x: x)
    short = ratio_abbreviation(ds)
    name = f"estimate (geometric mean {short})" if ratio else "estimate (mean)"
    rows.append((name, back(mean), back(mean - half), back(mean + half)))
    rows.append((f"estimate SD (log {short})" if ratio else "estimate SD", sd, np.nan, np.nan))
    if ok.sum() < n:
        rows.append(("no estimate (no finite Cox MLE)", float(n - ok.sum()), np.nan, np.nan))
    ok &= np.isfinite(truth)
    true_mean = truth[ok].mean() if ok.any() else np.nan
    rows.append(("true effect (mean)", back(true_mean), np.nan, np.nan))
    bias = centre[ok] - truth[ok]
    bhalf = 1.96 * bias.std(ddof=1) / np.sqrt(ok.sum()) if ok.sum() > 1 else np.nan
    bmean = bias.mean() if bias.size else np.nan
    rows.append((f"bias (log {short})" if ratio else "bias", bmean, bmean - bhalf, bmean + bhalf))
    cover = (ds["ci_lower"].values <= ds["true_effect"].values) & (ds["true_effect"].values <= ds["ci_upper"].values)
    judged = np.isfinite(ds["ci_lower"].values) & np.isfinite(ds["ci_upper"].values) & np.isfinite(
        ds["true_effect"].values)  # replicates with an interval and a truth to compare
    lo, hi = binomial_interval(int(cover[judged].sum()), int(judged.sum()))
    rows.append(("CI coverage of true effect", cover[judged].mean() if judged.any() else np.nan, lo, hi))
    rows.extend(_estimation_rows(ds))
    if "secondary" in ds.dims:  # key secondary endpoints, after the primary's rows
        from vctrial.trial.secondary import summary_rows

        rows.extend(summary_rows(ds))
    dur = ds["duration_months"].values
    known = np.isfinite(dur)
    if not known.all():
        rows.append(("no duration (nobody randomized)", float(n - known.sum()), np.nan, np.nan))
    dur = dur[known]
    dhalf = 1.96 * dur.std(ddof=1) / np.sqrt(dur.size) if dur.size > 1 else np.nan
    mean_dur = dur.mean() if dur.size else np.nan
    rows.append(("duration (months, mean)", mean_dur, mean_dur - dhalf, mean_dur + dhalf))
    if "n_events" in ds:
        ev = ds["n_events"].sum("arm").values
        rows.append(("events at analysis (mean)", ev.mean(), np.nan, np.nan))
    rows.append(("randomized (mean)", ds["n_randomized"].sum("arm").values.mean(), np.nan, np.nan))
    rows.append(("analysed (mean)", ds["n_analysed"].sum("arm").values.mean(), np.nan, np.nan))
    if "stop_look" in ds:
        rows.extend(_sequential_rows(ds))
    if "enrollment_months" in ds:
        em = ds["enrollment_months"].values
        done = np.isfinite(em)
        lo, hi = binomial_interval(int(done.sum()), n)
        rows.append(("enrollment completed", done.mean(), lo, hi))
        if done.any():
            rows.append(("enrollment duration (months, mean)", *_mean_interval(em[done])))
    if "imbalance" in ds:
        rows.append(("imbalance |active - share| (mean)", float(np.abs(ds["imbalance"].values).mean()), np.nan, np.nan))
    if "max_stratum_imbalance" in ds:
        rows.append(("max stratum imbalance (max)", float(ds["max_stratum_imbalance"].values.max()), np.nan, np.nan))
    return pd.DataFrame(rows, columns=["quantity", "value", "lower", "upper"]).set_index("quantity")


_SHARED_ROWS = ("duration", "no duration", "events at analysis", "randomized", "analysed", "expected", "enrollment",
                "imbalance", "max stratum")
"""Summary rows of the whole trial (not of one comparison) when it has several arms."""


def _multiarm_summary(ds: xr.Dataset) -> pd.DataFrame:
    """Operating characteristics of a trial with three or more arms: the family-wise error rate or the
    disjunctive power (any comparison rejected), the conjunctive power (every effective arm rejected),
    then each comparison's rows (its power or type I error, harm, estimate, bias, coverage) prefixed by
    the active arm's name, then the rows shared by the comparisons (duration, events, patients)."""
    n = ds.sizes["replicate"]
    reject = ds["reject"].transpose("replicate", "comparison").values.astype(bool)
    C = reject.shape[1]
    null = (ds["comparison_null"].values.astype(bool) if "comparison_null" in ds.coords else np.zeros(C, bool))
    rows: list[tuple[str, float, float, float]] = []

    def share(hits: np.ndarray) -> tuple[float, float, float]:
        return (float(hits.mean()), *binomial_interval(int(hits.sum()), n))

    if null.all():
        rows.append(("family-wise error rate (any rejected)", *share(reject.any(axis=1))))
    else:
        rows.append(("disjunctive power (any rejected)", *share(reject.any(axis=1))))
        rows.append(("conjunctive power (all effective rejected)", *share(reject[:, ~null].all(axis=1))))
        if null.any():
            rows.append(("family-wise error rate (null arms)", *share(reject[:, null].any(axis=1))))
    if "sci_lower" in ds:  # simultaneous intervals (dunnett, bonferroni): every comparison's holds at once
        lo, hi, truth = (ds[k].transpose("replicate", "comparison").values for k in ("sci_lower", "sci_upper",
                                                                                      "true_effect"))
        judged = (~np.isnan(lo) & ~np.isnan(hi) & np.isfinite(truth)).all(axis=1)
        held = int(((lo <= truth) & (truth <= hi)).all(axis=1)[judged].sum())
        m = int(judged.sum())
        rows.append(("simultaneous CI coverage (all comparisons)", held / m if m else np.nan,
                     *binomial_interval(held, m)))
    common = None
    for i, name in enumerate(ds["comparison"].values):
        one = ds.isel(comparison=i, drop=True)
        one.attrs = {**ds.attrs, "null_effect": int(null[i])}
        table = summarize(one)
        shared = np.array([q.startswith(_SHARED_ROWS) for q in table.index])
        rows.extend((f"{name}: {q}", *table.loc[q].values) for q in table.index[~shared])
        common = table[shared]
    rows.extend((q, *common.loc[q].values) for q in common.index)
    return pd.DataFrame(rows, columns=["quantity", "value", "lower", "upper"]).set_index("quantity")


def interval_coverage(ds: xr.Dataset, lower: str, upper: str) -> tuple[float, float, float, int]:
    """Share of replicates whose interval [ds[lower], ds[upper]] holds ``true_effect``, with its 95% Wilson
    interval and the number of replicates judged (those with an interval and a truth)."""
    lo_v, hi_v, truth = ds[lower].values, ds[upper].values, ds["true_effect"].values
    judged = np.isfinite(lo_v) & np.isfinite(hi_v) & np.isfinite(truth)
    hits = int(((lo_v <= truth) & (truth <= hi_v))[judged].sum())
    m = int(judged.sum())
    return (hits / m if m else np.nan, *binomial_interval(hits, m), m)


def _estimation_rows(ds: xr.Dataset) -> list[tuple[str, float, float, float]]:
    """After a group-sequential stop: coverage of the repeated and stagewise intervals, bias of the
    median-unbiased estimate (on the log scale for ratios)."""
    rows = []
    if "rci_lower" in ds:
        rows.append(("RCI coverage of true effect", *interval_coverage(ds, "rci_lower", "rci_upper")[:3]))
    if "mue_estimate" in ds:
        rows.append(("stagewise CI coverage of true effect", *interval_coverage(ds, "mue_ci_lower", "mue_ci_upper")[:3]))
        ratio = is_ratio(ds)
        with np.errstate(divide="ignore", invalid="ignore"):
            est, truth = ds["mue_estimate"].values, ds["true_effect"].values
            d = (np.log(est) - np.log(truth)) if ratio else est - truth
        rows.append((f"median-unbiased bias (log {ratio_abbreviation(ds)})" if ratio else "median-unbiased bias",
                     *_mean_interval(d)))
    return rows


def ratio_abbreviation(ds: xr.Dataset) -> str:
    """HR, RR, OR or "rate ratio": the name of a ratio effect in summary rows (from ``effect_measure``)."""
    measure = str(ds.attrs.get("effect_measure", "hazard ratio"))
    for words, short in (("hazard ratio", "HR"), ("risk ratio", "RR"), ("odds ratio", "OR"), ("rate ratio", "rate ratio")):
        if measure.startswith(words):
            return short
    return "ratio"


def is_ratio(ds: xr.Dataset) -> bool:
    """True when the effect is a hazard ratio (summarized on the log scale)."""
    scale = ds.attrs.get("effect_scale")
    return scale == "ratio" if scale is not None else ds.attrs.get("analysis") == "logrank"


def _mean_interval(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and its 95% normal Monte Carlo interval."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    m = float(x.mean())
    half = 1.96 * float(x.std(ddof=1)) / np.sqrt(x.size) if x.size > 1 else np.nan
    return (m, m - half, m + half)


def _sequential_rows(ds: xr.Dataset) -> list[tuple[str, float, float, float]]:
    """Probability of stopping at each look (and why), expected sample size, events and duration."""
    n = ds.sizes["replicate"]
    stop = ds["stop_look"].values
    reason = ds["stop_reason"].values
    rows = []
    for k in ds["look"].values:
        hits = int((stop == k).sum())
        lo, hi = binomial_interval(hits, n)
        rows.append((f"stop at look {int(k)}", hits / n, lo, hi))
    for code, what in ((1, "efficacy"), (2, "futility")):
        hits = int((reason == code).sum())
        lo, hi = binomial_interval(hits, n)
        rows.append((f"stopped early for {what}", hits / n, lo, hi))
    rows.append(("expected patients (at stop)", *_mean_interval(ds["n_enrolled"].sum("arm").values.astype(float))))
    if "n_events" in ds:
        rows.append(("expected events (at stop)", *_mean_interval(ds["n_events"].sum("arm").values.astype(float))))
    rows.append(("expected duration (months)", *_mean_interval(ds["duration_months"].values)))
    return rows


def format_summary(ds: xr.Dataset) -> str:
    """The printed operating characteristics."""
    table = summarize(ds)
    lines = [f"{ds.attrs.get('protocol_name', '')}: {ds.sizes['replicate']} replicates, seed {ds.attrs.get('seed')}",
             f"endpoint: {ds.attrs.get('endpoint')}; effect: {ds.attrs.get('effect_measure')}",
             f"analysis: {ds.attrs.get('analysis')}, {ds.attrs.get('sided')}-sided alpha {ds.attrs.get('alpha')}"]
    width = 32
    if "comparison" in ds.dims:  # several arms: the comparisons and their adjustment
        lines.append(f"comparisons with {ds['arm'].values[0]}: {', '.join(map(str, ds['comparison'].values))}; "
                     f"multiplicity: {ds.attrs.get('multiplicity', 'none')}")
        width = max(width, *(len(q) for q in table.index))
    if "secondary" in ds.dims:  # key secondary endpoints, in their testing order
        named = [f"{s} ({lab})" for s, lab in zip(ds["secondary"].values, ds["secondary_label"].values)]
        lines.append(f"key secondary endpoints, {ds.attrs.get('secondary_testing', 'hierarchical')}: "
                     f"{', then '.join(named)}")
        width = max(width, *(len(q) for q in table.index))
    for name, row in table.iterrows():
        interval = "" if np.isnan(row["lower"]) else f"   (95% MC interval {row['lower']:.4g} to {row['upper']:.4g})"
        lines.append(f"  {name:<{width}s} {row['value']:>10.4g}{interval}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Several protocols or sweep points in one Dataset.
# --------------------------------------------------------------------------------------------

VARYING = "varying_attrs"


def _attr_value(v):
    """An attribute as a netCDF-storable scalar (lists become JSON text)."""
    import json

    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    return v


def stack(datasets: list[xr.Dataset], dims: dict[str, list]) -> xr.Dataset:
    """Stack results Datasets along new dimensions (``protocol``, or one per swept parameter).

    ``datasets`` are in C order over the product of ``dims``' values. Attributes equal in all
    of them stay attributes; those that differ (protocol text, null effect...) are listed in
    ``attrs["varying_attrs"]`` and become variables along the new dimensions, named after the
    attribute; :func:`point` restores them for one selected point. An attribute named like a
    dimension (``alpha`` when ``analysis.alpha`` is swept) is not stored twice when the dimension's
    coordinate already holds each point's value; otherwise its variable is ``attribute_<name>``
    (variable attribute ``point_attribute`` = the name). Variables some datasets lack (e.g.
    per-look outputs of a design without looks) are filled with NaN.
    """
    import itertools
    import json

    datasets = [d.assign_attrs(point_variables=json.dumps(sorted(map(str, d.data_vars)))) for d in datasets]
    keys: list[str] = []
    for d in datasets:
        keys.extend(k for k in d.attrs if k not in keys)
    first = datasets[0].attrs
    common = {k: first[k] for k in keys
              if all(k in d.attrs and _attr_value(d.attrs[k]) == _attr_value(first.get(k)) for d in datasets)}
    varying = [k for k in keys if k not in common]
    names = list(dims)
    labels = list(itertools.product(*(list(v) for v in dims.values())))  # each dataset's coordinates
    taken = set(names) | {str(v) for d in datasets for v in d.variables}
    carriers: dict[str, str | None] = {}  # attribute -> variable holding it (None: its dimension's coordinate)
    for k in varying:
        if k not in taken:
            carriers[k] = k
        elif k in dims and all(_same_value(d.attrs.get(k), combo[names.index(k)]) for d, combo in zip(datasets, labels)):
            carriers[k] = None
        else:
            name = f"attribute_{k}"
            while name in taken:
                name = "_" + name
            carriers[k] = name
            taken.add(name)
    numeric = {k for k in varying  # a number where present: NaN (not "") where absent, so the variable is numeric
               if all(isinstance(_attr_value(d.attrs[k]), (int, float, np.number)) for d in datasets if k in d.attrs)}
    parts = []
    for d in datasets:
        extra = {k: _attr_value(d.attrs.get(k, np.nan if k in numeric else "")) for k in varying}
        d = d.copy()
        d.attrs = {}
        for k, v in extra.items():
            if carriers[k] is not None:
                attrs = {"long_name": f"attribute {k} of each point"}
                if carriers[k] != k:
                    attrs["point_attribute"] = k
                d[carriers[k]] = ((), v, attrs)
        parts.append(d)
    if len(names) == 1:
        out = xr.concat(parts, dim=pd.Index(list(dims[names[0]]), name=names[0]), join="outer",
                        data_vars="all", coords="different", compat="equals")
    else:
        index = pd.MultiIndex.from_product([list(v) for v in dims.values()], names=names)
        out = xr.concat(parts, dim="point", join="outer", data_vars="all", coords="different", compat="equals")
        out = out.assign_coords(xr.Coordinates.from_pandas_multiindex(index, "point")).unstack("point")
    out = out.transpose(*names, "replicate", ...)
    out.attrs = dict(common)
    out.attrs[VARYING] = varying
    return out


def _same_value(attribute, label) -> bool:
    """True when a point's attribute equals its coordinate label (numbers compared as numbers)."""
    a = _attr_value(attribute)
    if isinstance(a, (int, float, np.number)) and isinstance(label, (int, float, np.number)) \
            and not isinstance(label, (bool, np.bool_)):
        return bool(a == label)
    return type(a) is type(label) and a == label


def _carriers(ds: xr.Dataset, varying: list[str]) -> dict[str, str]:
    """Where a stacked Dataset holds each varying attribute: its variable, or its dimension's coordinate."""
    renamed = {str(v.attrs["point_attribute"]): str(name) for name, v in ds.data_vars.items()
               if "point_attribute" in v.attrs}
    return {k: renamed.get(k, k) for k in varying if renamed.get(k, k) in ds.variables}


def point(ds: xr.Dataset) -> xr.Dataset:
    """One protocol or sweep point of a stacked Dataset, with its own attributes restored.

    A Dataset that is not stacked is returned unchanged. Select a single value of every stacked
    dimension first (e.g. ``ds.sel(protocol="gs")``).
    """
    varying = ds.attrs.get(VARYING)
    if varying is None:
        return ds
    if isinstance(varying, str):
        varying = [varying]
    carriers = _carriers(ds, list(varying))
    stacked = {d for name in carriers.values() for d in ds[name].dims}
    if stacked:
        raise ValueError(f"select one point of {', '.join(sorted(stacked))} first (e.g. ds.sel(...))")
    import json

    out = ds.drop_vars([name for name in carriers.values() if name in ds.data_vars])
    out.attrs = {k: v for k, v in ds.attrs.items() if k != VARYING}
    for k, name in carriers.items():
        value = ds[name].values.item()
        if isinstance(value, float) and math.isnan(value) or value == "":  # the point did not have it
            continue
        out.attrs[k] = value
    own = out.attrs.pop("point_variables", None)
    if own is not None:  # drop the variables other points had and this one did not (NaN padding)
        out = out[[v for v in json.loads(own) if v in out.data_vars]]
    return out


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean paired difference b - a over replicates with its 95% Monte Carlo interval."""
    d = (b.astype(float) - a.astype(float))
    d = d[np.isfinite(d)]
    if d.size < 2:
        return (np.nan, np.nan, np.nan)
    m = float(d.mean())
    half = 1.96 * float(d.std(ddof=1)) / np.sqrt(d.size)
    return (m, m - half, m + half)


def _paired_quantities(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """Per-replicate quantities whose paired differences a comparison reports."""
    reject = ds["reject"]
    if "comparison" in reject.dims:  # several arms: any comparison rejected (the disjunctive power)
        reject = reject.any("comparison")
    q = {"rejection rate": reject.values.astype(float)}
    est = ds["estimate"].values.astype(float)
    q[f"estimate (log {ratio_abbreviation(ds)})" if is_ratio(ds) else "estimate"] = np.log(est) if is_ratio(ds) else est
    q["duration (months)"] = ds["duration_months"].values.astype(float)
    if "n_events" in ds:
        q["events"] = ds["n_events"].sum("arm").values.astype(float)
    patients = ds["n_enrolled"] if "n_enrolled" in ds else ds["n_randomized"]
    q["patients"] = patients.sum("arm").values.astype(float)
    return q


def compare_table(ds: xr.Dataset, dim: str = "protocol") -> pd.DataFrame:
    """Side-by-side operating characteristics of stacked protocols, and paired differences from the first.

    Columns: each protocol's value; for each later protocol, ``<name> - <first>`` with its
    ``lower``/``upper`` 95% Monte Carlo interval. Differences are over the same replicates, i.e.
    the same virtual patients (common random numbers), hence paired.
    """
    labels = [str(v) for v in ds[dim].values]
    points = [point(ds.isel({dim: i})) for i in range(len(labels))]
    tables = [summarize(p)["value"].rename(lbl) for p, lbl in zip(points, labels)]
    side = pd.concat(tables, axis=1)
    base = _paired_quantities(points[0])
    rows = {}
    for p, lbl in zip(points[1:], labels[1:]):
        other = _paired_quantities(p)
        for name, values in base.items():
            if name in other:
                m, lo, hi = _paired(values, other[name])
                rows.setdefault(name, {}).update({f"{lbl} - {labels[0]}": m, f"{lbl} lower": lo, f"{lbl} upper": hi})
    diffs = pd.DataFrame.from_dict(rows, orient="index")
    diffs.index = ["paired difference: " + i for i in diffs.index]
    return pd.concat([side, diffs], axis=0, sort=False)


def format_comparison(ds: xr.Dataset, dim: str = "protocol") -> str:
    """The printed comparison: one column per protocol, then paired differences from the first."""
    labels = [str(v) for v in ds[dim].values]
    table = compare_table(ds, dim)
    width = max(12, *(len(x) for x in labels))
    lines = [f"{len(labels)} protocols on the same {ds.sizes['replicate']} sets of virtual patients, "
             f"seed {ds.attrs.get('seed')}",
             f"  {'':<34s}" + "".join(f"{x:>{width + 2}s}" for x in labels)]
    for name in table.index:
        if name.startswith("paired difference: "):
            continue
        vals = [table.loc[name, x] if x in table.columns else np.nan for x in labels]
        lines.append(f"  {name:<34s}" + "".join(f"{v:>{width + 2}.4g}" for v in vals))
    if len(labels) > 1:
        lines.append(f"paired differences from {labels[0]} (95% Monte Carlo interval):")
        for name in table.index:
            if not name.startswith("paired difference: "):
                continue
            cells = []
            for x in labels[1:]:
                col = f"{x} - {labels[0]}"
                if col in table.columns and np.isfinite(table.loc[name, col]):
                    cells.append(f"{x}: {table.loc[name, col]:+.4g} ({table.loc[name, f'{x} lower']:+.4g} to "
                                 f"{table.loc[name, f'{x} upper']:+.4g})")
            lines.append(f"  {name.removeprefix('paired difference: '):<20s} " + "; ".join(cells))
    return "\n".join(lines)


def sweep_table(ds: xr.Dataset, dims: list[str]) -> pd.DataFrame:
    """One row per sweep point: rejection rate with its Wilson interval, mean duration, events, patients."""
    rows = []
    index = pd.MultiIndex.from_product([list(ds[d].values) for d in dims], names=dims)
    for values in index:
        p = point(ds.sel(dict(zip(dims, values if isinstance(values, tuple) else (values,)))))
        n = p.sizes["replicate"]
        rej = (p["reject"].any("comparison") if "comparison" in p["reject"].dims else p["reject"]).values.astype(bool)
        lo, hi = binomial_interval(int(rej.sum()), n)
        q = _paired_quantities(p)
        rows.append({"null": int(p.attrs.get("null_effect", 0)), "rejection rate": rej.mean(), "lower": lo, "upper": hi,
                     "duration (months)": np.nanmean(q["duration (months)"]),
                     "events": np.nanmean(q["events"]) if "events" in q else np.nan,
                     "patients": np.nanmean(q["patients"])})
    return pd.DataFrame(rows, index=index)


def format_sweep(ds: xr.Dataset, dims: list[str]) -> str:
    """The printed sweep: one line per point (type I error where the effect is null, else power)."""
    table = sweep_table(ds, dims)
    w = [max(len(d), *(len(str(v)) for v in ds[d].values)) for d in dims]
    lines = [f"sweep over {', '.join(dims)}: {len(table)} points x {ds.sizes['replicate']} replicates, "
             f"seed {ds.attrs.get('seed')}",
             "  " + "  ".join(f"{d:>{wd}s}" for d, wd in zip(dims, w)) + f"  {'rejection':>10s}  {'95% MC interval':>17s}"
             f"  {'months':>7s}  {'events':>7s}  {'patients':>8s}"]
    for values, row in table.iterrows():
        values = values if isinstance(values, tuple) else (values,)
        what = " (type I)" if row["null"] else ""
        lines.append("  " + "  ".join(f"{str(v):>{wd}s}" for v, wd in zip(values, w))
                     + f"  {row['rejection rate']:>10.4f}  {row['lower']:>8.4f}-{row['upper']:<8.4f}"
                     + f"  {row['duration (months)']:>7.1f}  {row['events']:>7.1f}  {row['patients']:>8.1f}{what}")
    return "\n".join(lines)
