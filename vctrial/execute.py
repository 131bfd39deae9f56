"""Execution of replicate chunks: split, run in-process or on Ray, collect, keep parts, resume.

Work is a list of jobs; a job is a picklable spec and a module-level chunk function
``fn(spec, seed, replicates) -> dict[str, ndarray]`` whose arrays lead with the replicate axis.
A task is (job, replicate chunk). Tasks are independent and their results do not depend on how
replicates are grouped or where they run (random numbers are keyed by replicate and patient), so
the split is a matter of memory and scheduling only, and every command that simulates goes through
here.

Where tasks run (``ExecOptions``):

- ``workers=0``: in this process, numba threads on every core; no Ray.
- ``workers=W``: a local Ray instance with W CPUs, started for the run and stopped after it,
  bound to 127.0.0.1 with the dashboard off unless asked for; one numba thread per task.
- ``address="HOST:PORT"`` or ``"auto"``: an existing Ray cluster (``workers`` then caps how many
  tasks run at once).
- ``workers=None``: all local cores. The first chunk runs in-process and is timed; a local Ray
  instance with a worker per core takes the rest only if they would take longer than
  ``RAY_WORTH_SECONDS`` in-process (starting Ray costs seconds that a small run would not win back).

If this process is already connected to Ray (``ray.init`` was called, e.g. in a notebook), that
connection is used and left open.

When ``out`` is set, each finished chunk is written atomically to a part file in ``OUT.parts/``
with a header naming the job (a fingerprint of its spec and chunk function), the seed, the
replicate range, the package version and a checksum of the arrays. ``resume=True`` reuses the
part files that match this run and recomputes the rest; corrupted or foreign ones are reported and
recomputed. ``results.write_netcdf`` removes the folder once the final file is written.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

import vctrial
from vctrial.errors import SpecError
from vctrial.results import OutputBusy, WriteError, hold_output, parts_dir, release_output

log = logging.getLogger("vctrial")

PATIENTS_PER_CHUNK = 200_000
from vctrial import MAX_REPLICATES  # noqa: E402 - re-exported: most replicates one run simulates
RESULTS_MEMORY_SHARE = 0.5
"""Share of the machine's memory the results of a run may take (they are held twice while assembled)."""
PART_FORMAT = 1  # bump when the part-file layout changes
RAY_WORTH_SECONDS = 15.0  # in-process work above which starting a local Ray (about 6 s here) pays off

ChunkFn = Callable[[Any, int, np.ndarray], dict[str, np.ndarray]]


class RunError(Exception):
    """A run that cannot complete: a task failed, a cluster is unreachable, or finished work is in the way.

    ``str(err)`` is one line for the user; ``details`` holds the remote traceback when there is one.
    """

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class Job:
    """One thing to simulate over all replicates: ``fn(spec, seed, replicates)``.

    ``key`` identifies the job's results for part files; by default a fingerprint of ``fn`` and
    ``spec`` (see ``fingerprint``).
    """

    fn: ChunkFn
    spec: Any
    label: str
    patients: int  # patients per replicate, to size chunks
    key: str | None = None


@dataclass(frozen=True)
class ExecOptions:
    """How to run: where (in-process, local Ray, a cluster), with which part files, showing what.

    Attributes:
        workers: 0 in-process; W ≥ 1 Ray workers (a local instance with W CPUs, or at most W tasks
            at a time on a cluster); None all local cores (in-process, or a local Ray instance
            when the first chunk shows the run is long enough to pay for starting it).
        progress: show a progress bar with an ETA.
        address: join an existing Ray cluster ("HOST:PORT" or "auto") instead of starting one.
        out: the run's final output file; finished chunks are kept in ``OUT.parts/`` beside it.
        resume: reuse matching part files of an interrupted run (needs ``out``).
        dashboard: start the Ray dashboard (on 127.0.0.1) with a local instance.
        chunk_patients: about how many patients (replicates × patients per replicate) one task
            simulates; sets memory per task and the number of tasks, never the results.
        threads_per_task: CPUs (and numba threads) each Ray task takes.
        max_retries: times Ray reruns a task whose worker or node was lost.
        shared_parts: ``out``'s part folder is shared by many calls of one command (a calibration's
            candidates): look only for this call's chunks, and say nothing of the others.
    """

    workers: int | None = 0
    progress: bool = True
    address: str | None = None
    out: str | Path | None = None
    resume: bool = False
    dashboard: bool = False
    chunk_patients: int = PATIENTS_PER_CHUNK
    threads_per_task: int = 1
    max_retries: int = 3
    shared_parts: bool = False


class JobResults(list):
    """``run_jobs``'s result: per job, its arrays concatenated over replicates (a list).

    Also says how the run went: ``computed`` and ``reused`` chunk counts, ``nodes`` (the Ray node
    ids, or ``"local"``, that computed chunks) and ``mode`` (a short description of where it ran).
    """

    computed: int = 0
    reused: int = 0
    nodes: frozenset[str] = frozenset()
    mode: str = ""


@dataclass(frozen=True)
class _Task:
    job: int
    lo: int
    hi: int  # replicates lo..hi-1


def chunks(n_replicates: int, sample_size: int, patients_per_chunk: int = PATIENTS_PER_CHUNK) -> list[np.ndarray]:
    """Replicate index ranges of near-equal size holding at most about ``patients_per_chunk`` patients each."""
    return [np.arange(lo, hi, dtype=np.int64) for lo, hi in chunk_bounds(n_replicates, sample_size, patients_per_chunk)]


def chunk_bounds(n_replicates: int, sample_size: int, patients_per_chunk: int = PATIENTS_PER_CHUNK) -> list[tuple[int, int]]:
    """``chunks`` as (first, last + 1) pairs, computed without allocating the replicate indices
    (the same split as ``np.array_split``: the first chunks one replicate longer)."""
    size = max(1, patients_per_chunk // max(sample_size, 1))
    n_chunks = max(1, -(-n_replicates // size))
    base, extra = divmod(n_replicates, n_chunks)
    out, lo = [], 0
    for k in range(n_chunks):
        hi = lo + base + (k < extra)
        if hi > lo:
            out.append((lo, hi))
        lo = hi
    return out


def memory_bytes() -> int:
    """Memory this process may use: the machine's physical memory, or a lower address-space limit."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 16 * 2**30
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            total = min(total, soft)
    except (ImportError, OSError, ValueError):
        pass
    return int(total)


def _check_results_fit(jobs: list[Job], replicates: int, task: _Task, arrays: Mapping[str, np.ndarray]) -> None:
    """After the first chunk: refuse a run whose results cannot fit in memory, before computing the rest."""
    per_replicate = sum(np.asarray(a).nbytes for a in arrays.values()) / max(task.hi - task.lo, 1)
    need = per_replicate * replicates * len(jobs)
    have = memory_bytes()
    if need > RESULTS_MEMORY_SHARE * have:
        raise RunError(f"{replicates:,} replicates of {jobs[task.job].label!r} need about {need / 2**30:,.1f} GiB for "
                       f"their results ({per_replicate / 2**10:,.1f} KiB each), more than {RESULTS_MEMORY_SHARE:.0%} "
                       f"of the {have / 2**30:,.1f} GiB of memory here; run fewer replicates (several runs with "
                       f"different seeds can be combined)")


def local_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _ray_connected() -> bool:
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def run_jobs(jobs: list[Job], replicates: int, seed: int, options: ExecOptions = ExecOptions()) -> JobResults:
    """Run every job over replicates 0..replicates-1; per job, its arrays concatenated over replicates.

    With ``options.out``, this process holds the output (``results.hold_output``) from here to its final
    write, so that a second run on the same output refuses to start instead of mixing part files.

    Raises:
        RunError: a task failed for a reason of its own (named by job label and replicates), Ray
            lost a task more than ``max_retries`` times, a cluster could not be reached, or part
            files of an interrupted run would be overwritten without ``resume``.
        SpecError: a task failed on a spec problem (the job and replicates are added to the reason).
    """
    if replicates < 1:
        raise ValueError("replicates must be at least 1")
    if replicates > MAX_REPLICATES:
        raise RunError(f"{replicates:,} replicates: at most {MAX_REPLICATES:,} in one run")
    if options.workers is not None and options.workers < 0:
        raise ValueError(f"workers must be 0 or more, got {options.workers}")
    if options.resume and options.out is None:
        raise ValueError("resume needs the output path (ExecOptions.out)")
    if options.dashboard and options.workers != 0:
        _require_dashboard()
    if options.out is None:
        return _run_jobs(jobs, replicates, seed, options)
    try:
        hold_output(options.out)
    except OutputBusy as busy:
        raise RunError(str(busy)) from None
    try:
        return _run_jobs(jobs, replicates, seed, options)
    except BaseException:
        release_output(options.out, failed=True)
        raise


def _run_jobs(jobs: list[Job], replicates: int, seed: int, options: ExecOptions) -> JobResults:
    tasks = [_Task(j, lo, hi)
             for j, job in enumerate(jobs) for lo, hi in chunk_bounds(replicates, job.patients, options.chunk_patients)]
    parts = _Parts(Path(options.out), jobs, seed) if options.out is not None else None
    done: dict[_Task, dict[str, np.ndarray]] = {}
    if parts is not None:
        done = parts.reuse(tasks, options.shared_parts) if options.resume else parts.refuse_overwrite(tasks)
    todo = [t for t in tasks if t not in done]
    result = JobResults()
    result.reused = len(done)
    nodes: set[str] = set()

    desc = jobs[0].label[:40] if len(jobs) == 1 else f"{len(jobs)} jobs"
    bar = tqdm(total=replicates * len(jobs), initial=sum(t.hi - t.lo for t in done), desc=desc, unit="replicate",
               disable=not options.progress, dynamic_ncols=True, file=sys.stderr)

    def finished(task: _Task, arrays: dict[str, np.ndarray], node: str) -> None:
        _check_arrays(jobs[task.job], task, arrays)
        if not done or len(done) == result.reused:  # the first chunk computed here
            _check_results_fit(jobs, replicates, task, arrays)
        if parts is not None:
            parts.write(task, arrays)
        done[task] = arrays
        nodes.add(node)
        bar.update(task.hi - task.lo)

    try:
        with bar, logging_redirect_tqdm(loggers=[log]):
            pending = todo
            if options.workers is None and options.address is None and not _ray_connected() and len(todo) > 1:
                # all local cores: time one chunk here, and start Ray only if the rest would take longer
                start = time.perf_counter()
                _run_in_process(jobs, seed, pending[:1], finished)
                estimate = (len(pending) - 1) * (time.perf_counter() - start)
                pending = pending[1:]
                use_ray = estimate > RAY_WORTH_SECONDS
                log.debug("the other %d chunks would take about %.0f s in-process: %s", len(pending), estimate,
                         "starting Ray" if use_ray else "staying in-process")
            else:
                use_ray = bool(pending) and (options.address is not None or bool(options.workers)
                                             or (options.workers is None and _ray_connected()))
            with _session(options, use_ray) as session:
                result.mode = session.mode
                if pending:
                    log.info("%d chunk%s to compute%s, %s", len(pending), "s" * (len(pending) != 1),
                             f" ({len(done)} done)" if done else "", session.mode)
                if session.ray is None:
                    _run_in_process(jobs, seed, pending, finished)
                else:
                    _run_on_ray(session, jobs, seed, pending, options, finished)
    except KeyboardInterrupt:
        if parts is not None and done:
            log.warning("interrupted: %d of %d chunks are finished and kept in %s; rerun with --resume "
                        "to reuse them", len(done), len(tasks), parts.folder)
        raise

    result.computed = len(todo)
    result.nodes = frozenset(nodes)
    if todo or done:
        log.info("chunks: %d computed, %d reused%s", result.computed, result.reused,
                 f" from {parts.folder}" if parts is not None and result.reused else "")
    for j in range(len(jobs)):
        mine = sorted((t for t in tasks if t.job == j), key=lambda t: t.lo)
        names = done[mine[0]].keys()
        result.append({k: np.concatenate([done[t][k] for t in mine], axis=0) for k in names})
    return result


# --- tasks -------------------------------------------------------------------------------------

def _run_chunk(fn: ChunkFn, spec: Any, seed: int, lo: int, hi: int, threads: int) -> tuple:
    """Run one chunk; return ("ok", arrays, node) or ("error", what, details).

    Errors are returned, not raised, so that Ray does not retry them (only lost workers are
    retried) and the driver can name the job and replicates; SpecError's fields travel as data.
    """
    node = "local"
    if threads > 0:  # inside a Ray worker: use the task's CPU share, not every core of the node
        import numba
        import ray

        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        node = ray.get_runtime_context().get_node_id()
    try:
        arrays = fn(spec, seed, np.arange(lo, hi, dtype=np.int64))
    except Exception as exc:  # noqa: BLE001 - reported to the driver with its type and traceback
        what: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, SpecError):
            what["spec"] = (exc.file, exc.path, exc.reason)
        return ("error", what, traceback.format_exc())
    return ("ok", arrays, node)


_TOO_BIG = ("array is too big", "Maximum allowed dimension exceeded", "Maximum allowed size exceeded")
"""How numpy refuses an array larger than any memory (a ValueError, before trying to allocate)."""


def _failure(job: Job, task: _Task, what: dict[str, Any], details: str) -> Exception:
    where = f"job {job.label!r}, replicates {task.lo}-{task.hi - 1}"
    if "spec" in what:
        file, path, reason = what["spec"]
        err: Exception = SpecError(file, path, f"{reason} ({where})")
        err.details = details  # type: ignore[attr-defined]
        return err
    if what["type"] == "MemoryError" or (what["type"] == "ValueError" and what["message"].startswith(_TOO_BIG)):
        return RunError(f"{where}: not enough memory for one chunk ({what['message'] or 'MemoryError'}); fewer patients "
                        "per replicate (sample_size, population size, draws) or a smaller --chunk-patients may fit",
                        details)
    return RunError(f"{where}: {what['type']}: {what['message']}", details)


def _check_arrays(job: Job, task: _Task, arrays: Any) -> None:
    n = task.hi - task.lo
    if not isinstance(arrays, Mapping) or not arrays:
        raise RunError(f"job {job.label!r}, replicates {task.lo}-{task.hi - 1}: the chunk function returned "
                       f"{type(arrays).__name__}, not a dict of arrays")
    for name, a in arrays.items():
        if np.ndim(a) == 0 or np.shape(a)[0] != n:
            raise RunError(f"job {job.label!r}, replicates {task.lo}-{task.hi - 1}: array {name!r} has shape "
                           f"{np.shape(a)}, expected {n} replicates first")


def _run_in_process(jobs: list[Job], seed: int, todo: list[_Task], finished) -> None:
    for task in todo:
        job = jobs[task.job]
        status, payload, extra = _run_chunk(job.fn, job.spec, seed, task.lo, task.hi, 0)
        if status != "ok":
            raise _failure(job, task, payload, extra)
        finished(task, payload, extra)


@functools.cache
def _remote_chunk():
    import ray

    return ray.remote(_run_chunk)


def _run_on_ray(session: _Session, jobs: list[Job], seed: int, todo: list[_Task], options: ExecOptions,
                finished) -> None:
    """Keep up to ``session.limit`` tasks in flight; collect them as they complete."""
    ray = session.ray
    threads = max(1, options.threads_per_task)
    # native thread pools (OpenBLAS, OpenMP) read these when the worker starts: one task's CPU share,
    # so that W workers on W cores do not each run a pool as wide as the machine
    pools = {name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    remote = _remote_chunk().options(num_cpus=threads, max_retries=options.max_retries, retry_exceptions=False,
                                     runtime_env={"env_vars": pools})
    specs: dict[int, Any] = {}
    for job in jobs:  # each spec goes once through the object store, however many tasks read it
        if id(job.spec) not in specs:
            specs[id(job.spec)] = ray.put(job.spec)
    queue = list(reversed(todo))
    flight: dict[Any, _Task] = {}

    def submit() -> None:
        task = queue.pop()
        job = jobs[task.job]
        flight[remote.remote(job.fn, specs[id(job.spec)], seed, task.lo, task.hi, threads)] = task

    try:
        while queue and len(flight) < session.limit:
            submit()
        while flight:
            ready, _ = ray.wait(list(flight), num_returns=1)
            for ref in ready:
                task = flight.pop(ref)
                if queue:  # refill before the driver's own work on the result
                    submit()
                job = jobs[task.job]
                try:
                    status, payload, extra = ray.get(ref)
                except ray.exceptions.RayError as exc:  # lost more often than retried, out of memory...
                    first = (str(exc).strip().splitlines() or [""])[0]
                    raise RunError(f"job {job.label!r}, replicates {task.lo}-{task.hi - 1}: Ray could not run the "
                                   f"task (retried up to {options.max_retries} times): {type(exc).__name__}: {first}",
                                   str(exc)) from None
                if status != "ok":
                    raise _failure(job, task, payload, extra)
                finished(task, payload, extra)
    finally:
        # a Ray instance this run started ends its tasks at shutdown; force-cancelling them first races
        # their replies and can abort the driver inside Ray ("Tried to complete task that was not pending")
        for ref in flight if not session.owned else ():
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass


# --- Ray sessions ------------------------------------------------------------------------------

@dataclass
class _Session:
    ray: Any  # the ray module, or None in-process
    mode: str
    limit: int = 1  # tasks in flight
    owned: bool = False  # started by this run, so ray.shutdown() ends its tasks


class _session:
    """Context manager: connect to or start Ray as the options say, and stop what it started."""

    def __init__(self, options: ExecOptions, use_ray: bool):
        self.options = options
        self.use_ray = use_ray
        self.started = False

    def __enter__(self) -> _Session:
        o = self.options
        connected = _ray_connected()
        if not self.use_ray:
            return _Session(None, "in-process")
        import ray

        if connected:
            mode = "on the Ray instance this process is connected to"
        elif o.address is not None:
            _probe_cluster(o.address)
            try:
                ray.init(address=o.address, log_to_driver=False, logging_level=logging.ERROR)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                hint = ("; a cluster with token authentication (Ray's default) also needs RAY_AUTH_MODE=token "
                        "here" if "RAY_AUTH_MODE" not in os.environ else "")
                raise RunError(f"cannot connect to the Ray cluster at {o.address}: {exc}{hint}") from None
            self.started = True
            mode = f"on the Ray cluster at {o.address}"
        else:
            workers = o.workers or local_cores()
            start_local_ray(workers, o.dashboard)
            self.started = True
            mode = f"on a local Ray instance with {workers} worker{'s' * (workers != 1)} (127.0.0.1)"
        cpus = int(ray.cluster_resources().get("CPU", 1))
        per_task = max(1, o.threads_per_task)
        limit = o.workers if o.workers else max(1, 2 * (cpus // per_task))
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        return _Session(ray, f"{mode}: {nodes} node{'s' * (nodes != 1)}, {cpus} CPU{'s' * (cpus != 1)}", limit,
                        owned=self.started)

    def __exit__(self, *exc) -> None:
        if self.started:
            import ray

            ray.shutdown()


def _require_dashboard() -> None:
    try:
        import aiohttp  # noqa: F401 - the dashboard needs ray[default]
    except ImportError:
        raise RunError("the Ray dashboard needs Ray's optional packages: pip install 'vctrial[dashboard]'") from None


CONNECT_TIMEOUT_S = 10.0
"""How long ``--address HOST:PORT`` waits for the cluster's head to accept a connection."""


def _probe_cluster(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout`` seconds, with one line, when nothing listens at HOST:PORT (Ray itself
    would retry for minutes, printing only its own log lines). ``auto`` is left to Ray."""
    import socket

    if address == "auto":
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise RunError(f"--address must be HOST:PORT or auto, got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise RunError(f"no Ray cluster answers at {address} (waited up to {timeout:g} s: {exc}); start one with "
                       f"`ray start --head` there, or check the address") from None


def start_local_ray(workers: int, dashboard: bool = False) -> None:
    """Start a Ray instance on this machine with ``workers`` CPUs, reachable on 127.0.0.1 only.

    Ray swaps 127.0.0.1 for the machine's routable address unless it believes multi-node clusters
    are unsupported; that belief is switched on for the start only, so every server of this
    instance listens on the loopback interface.
    """
    import ray

    if dashboard:
        _require_dashboard()
    try:
        from ray._private import ray_constants
    except ImportError:  # a Ray without that module: it keeps its own choice of address
        ray_constants = None
    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if ray_constants is not None and saved is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        context = ray.init(address="local", num_cpus=workers, include_dashboard=dashboard,
                           dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1", log_to_driver=False,
                           logging_level=logging.ERROR)
    finally:
        if ray_constants is not None and saved is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved
    if dashboard:
        log.info("Ray dashboard: http://%s", getattr(context, "dashboard_url", "") or "127.0.0.1:8265")


# --- part files --------------------------------------------------------------------------------

def fingerprint(obj: Any) -> str:
    """A stable hash of a spec's content (same in every process and Python session).

    Covers pydantic models (field by field), dataclasses, mappings, sequences, numpy arrays,
    paths (resolved), functions and classes (by module and name), and plain objects (by their
    attributes); raises TypeError for anything else (give ``Job.key`` then).
    """
    h = hashlib.sha256()
    _feed(h, obj, 0)
    return h.hexdigest()


def _feed(h, obj: Any, depth: int) -> None:
    import pydantic

    if depth > 64:
        raise TypeError("spec nests too deeply to fingerprint")

    def put(tag: str) -> None:
        h.update(tag.encode("utf-8") + b"\x00")

    if obj is None or isinstance(obj, (bool, int, float, complex, str)):
        put(f"{type(obj).__name__}:{obj!r}")
    elif isinstance(obj, bytes):
        put(f"bytes:{len(obj)}")
        h.update(obj)
    elif isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("cannot fingerprint an object array")
        put(f"ndarray:{obj.dtype.str}:{obj.shape}")
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, np.generic):
        put(f"{obj.dtype.str}:{obj.item()!r}")
    elif isinstance(obj, Path):
        put(f"path:{obj.resolve()}")
    elif isinstance(obj, pydantic.BaseModel):
        put(f"model:{type(obj).__module__}.{type(obj).__qualname__}")
        for name in type(obj).model_fields:
            put(name)
            _feed(h, getattr(obj, name), depth + 1)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        put(f"dataclass:{type(obj).__module__}.{type(obj).__qualname__}")
        for f in dataclasses.fields(obj):
            put(f.name)
            _feed(h, getattr(obj, f.name), depth + 1)
    elif isinstance(obj, Mapping):
        put(f"mapping:{len(obj)}")
        for key in sorted(obj, key=repr):
            _feed(h, key, depth + 1)
            _feed(h, obj[key], depth + 1)
    elif isinstance(obj, (list, tuple)):
        put(f"{type(obj).__name__}:{len(obj)}")
        for item in obj:
            _feed(h, item, depth + 1)
    elif isinstance(obj, (set, frozenset)):
        put(f"set:{len(obj)}")
        for item_hash in sorted(fingerprint(item) for item in obj):
            put(item_hash)
    elif isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
        put(f"callable:{obj.__module__}.{obj.__qualname__}")
    elif hasattr(obj, "__dict__"):
        put(f"object:{type(obj).__module__}.{type(obj).__qualname__}")
        for name in sorted(vars(obj)):
            put(name)
            _feed(h, vars(obj)[name], depth + 1)
    else:
        raise TypeError(f"cannot fingerprint a {type(obj).__name__}; give the Job a key")


def job_key(job: Job, seed: int) -> str:
    """What a part file must match to be reused: the job's identity, the seed, the version."""
    identity = job.key if job.key is not None else fingerprint((job.fn, job.spec))
    return fingerprint(("vctrial-part", PART_FORMAT, vctrial.__version__, identity, int(seed)))


def _array_digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode("utf-8") + b"\x00")
        h.update(a.tobytes())
    return h.hexdigest()


class _Parts:
    """The part-file folder of one run: ``OUT.parts/<job key>.<first>-<last>.npz``."""

    def __init__(self, out: Path, jobs: list[Job], seed: int):
        self.folder = parts_dir(out)
        self.jobs = jobs
        self.seed = int(seed)
        self.keys = [job_key(job, seed) for job in jobs]

    def path(self, task: _Task) -> Path:
        return self.folder / f"{self.keys[task.job][:24]}.{task.lo:09d}-{task.hi - 1:09d}.npz"

    def header(self, task: _Task, digest: str) -> dict[str, Any]:
        return {"format": PART_FORMAT, "vctrial_version": vctrial.__version__, "job_key": self.keys[task.job],
                "label": self.jobs[task.job].label, "seed": self.seed, "replicates": [task.lo, task.hi],
                "sha256": digest}

    def write(self, task: _Task, arrays: Mapping[str, np.ndarray]) -> None:
        """Write one finished chunk atomically (a temporary file renamed when complete); WriteError when the
        file system refuses it (full, file too large, read-only)."""
        target = self.path(task)
        data = {f"array:{k}": np.asarray(v) for k, v in arrays.items()}
        data["header"] = np.array(json.dumps(self.header(task, _array_digest(arrays)), sort_keys=True))
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=self.folder)
        except OSError as exc:
            raise WriteError(f"cannot write the part file {target}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            self._remove_if_empty()
            raise WriteError(f"cannot write the part file {target}: {exc.strerror or exc}") from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _remove_if_empty(self) -> None:
        try:
            self.folder.rmdir()
        except OSError:
            pass

    def read(self, task: _Task) -> dict[str, np.ndarray]:
        """The arrays of a part file; ValueError saying what is wrong when it does not belong here."""
        path = self.path(task)
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"][()]))
                arrays = {k.removeprefix("array:"): z[k] for k in z.files if k.startswith("array:")}
        except Exception as exc:  # noqa: BLE001 - any failure to read means corrupted
            raise ValueError(f"corrupted ({type(exc).__name__}: {exc})") from None
        expect = self.header(task, "")
        for field in ("format", "job_key", "seed", "replicates", "vctrial_version"):
            if header.get(field) != expect[field]:
                raise ValueError(f"foreign: written for another {field.replace('_', ' ')} "
                                 f"({header.get(field)!r}, this run has {expect[field]!r})")
        if _array_digest(arrays) != header.get("sha256"):
            raise ValueError("corrupted: its arrays do not match the checksum in its header")
        return arrays

    def reuse(self, tasks: list[_Task], shared: bool = False) -> dict[_Task, dict[str, np.ndarray]]:
        """Load every part file that matches a chunk of this run; report the others (unless the folder is
        ``shared`` by several calls of one command: then only this call's chunks are looked at)."""
        found: dict[_Task, dict[str, np.ndarray]] = {}
        if not self.folder.is_dir():
            if not shared:
                log.info("resume: no part files in %s; computing everything", self.folder)
            return found
        expected = {self.path(t).name: t for t in tasks}
        if not shared:
            for stale in self.folder.glob(".*.tmp"):  # left by an interrupted write
                stale.unlink(missing_ok=True)
        other = 0
        names = sorted(self.folder.iterdir()) if not shared else [self.folder / n for n in expected
                                                                   if (self.folder / n).exists()]
        for path in names:
            task = expected.get(path.name)
            if task is None:
                other += 1
                continue
            try:
                found[task] = self.read(task)
            except ValueError as why:
                log.warning("%s: %s; recomputing job %r, replicates %d-%d", path, why,
                            self.jobs[task.job].label, task.lo, task.hi - 1)
                path.unlink(missing_ok=True)
        if other:
            log.warning("%s: %d file%s not part of this run (another spec, seed, replicate count or version); "
                        "not used", self.folder, other, "s are" if other != 1 else " is")
        if not shared:
            log.info("resume: reusing %d of %d chunks from %s", len(found), len(tasks), self.folder)
        return found

    def refuse_overwrite(self, tasks: list[_Task]) -> dict[_Task, dict[str, np.ndarray]]:
        """Without resume, stop rather than overwrite finished chunks of this very run."""
        present = [t for t in tasks if self.path(t).exists()]
        if present:
            raise RunError(f"{self.folder} holds {len(present)} finished chunks of an interrupted run of this spec "
                           f"and seed; rerun with --resume to reuse them, or delete the folder to start over")
        return {}


def iter_part_headers(out: str | Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The headers of the part files kept for an output (for inspection and tests)."""
    folder = parts_dir(Path(out))
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.npz")):
        with np.load(path, allow_pickle=False) as z:
            yield path, json.loads(str(z["header"][()]))
