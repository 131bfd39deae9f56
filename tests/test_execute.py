"""Execution: identical results in-process and on Ray, part files, resume, failures, lost workers.

Real Ray throughout: one local instance (2 CPUs, 127.0.0.1) is shared by the tests of this module;
the command-line tests start their own in a subprocess, as a user's command would.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import xarray as xr

from vctrial.errors import SpecError
from vctrial.execute import (ExecOptions, Job, RunError, chunks, fingerprint, iter_part_headers, job_key, run_jobs,
                             start_local_ray)
from vctrial.results import parts_dir, write_netcdf
from vctrial.spec.protocol import load_protocol
from vctrial.trial.dataset import trial_job
from vctrial.trial.run import simulate_chunk

DATA = Path(__file__).parent / "data"
PROTOCOL = DATA / "event_driven.yaml"  # 600 patients per replicate
SEED = 20261126


@pytest.fixture(scope="module")
def protocol():
    return load_protocol(PROTOCOL)


@pytest.fixture(scope="module")
def reference(protocol):
    """48 replicates computed in-process, in one piece."""
    (arrays,) = run_jobs([trial_job(protocol)], 48, SEED, ExecOptions(workers=0, progress=False,
                                                                         chunk_patients=10**9))
    return arrays


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance with 2 CPUs started the way the command starts one; stopped at module end."""
    import ray
    from ray import cloudpickle

    if ray.is_initialized():
        ray.shutdown()
    start_local_ray(2)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    yield ray
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k], equal_nan=True), k


def options(**kw) -> ExecOptions:
    kw.setdefault("progress", False)
    return ExecOptions(**kw)


# --- chunks and fingerprints ---------------------------------------------------------------------

def test_the_runner_and_the_results_module_know_jobs_not_trials():
    """Importing ``vctrial.execute`` and ``vctrial.results`` loads nothing of the trial, twin or population
    packages: trials come to the runner as jobs (``vctrial.trial.dataset.trial_job``)."""
    code = ("import sys, vctrial.execute, vctrial.results; "
            "print(sorted(m for m in sys.modules if m.startswith(('vctrial.trial', 'vctrial.twin', 'vctrial.population'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_chunks_cover_replicates_in_order_with_near_equal_sizes():
    for n, size, cap in [(1000, 600, 200_000), (7, 600, 1200), (5, 10**6, 1), (1, 600, 200_000), (10, 1, 3)]:
        parts = chunks(n, size, cap)
        assert np.array_equal(np.concatenate(parts), np.arange(n))
        lengths = [len(p) for p in parts]
        assert max(lengths) - min(lengths) <= 1
        assert max(lengths) <= max(1, cap // size)


def test_fingerprint_is_stable_across_processes_and_sensitive_to_content(protocol, tmp_path):
    key = job_key(trial_job(protocol), SEED)
    code = ("import sys; from vctrial.execute import job_key; from vctrial.trial.dataset import trial_job; "
            "from vctrial.spec.protocol import "
            f"load_protocol; print(job_key(trial_job(load_protocol({str(PROTOCOL)!r})), {SEED}))")
    for hash_seed in ("0", "12345"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": hash_seed})
        assert out.stdout.strip() == key
    assert job_key(trial_job(protocol), SEED + 1) != key
    changed = load_protocol(PROTOCOL, overrides={"arms.active.effects.0.hazard_ratio": 0.8})
    assert job_key(trial_job(changed), SEED) != key
    assert job_key(trial_job(load_protocol(PROTOCOL), label="another label"), SEED) == key
    assert fingerprint({"b": np.arange(3), "a": [1.0, None]}) == fingerprint({"a": [1.0, None], "b": np.arange(3)})
    assert fingerprint(np.arange(3)) != fingerprint(np.arange(3.0))
    with pytest.raises(TypeError):
        fingerprint(threading.Lock())


# --- identity across execution modes ------------------------------------------------------------

def test_chunk_layout_does_not_change_results(protocol, reference):
    for cap in (600, 600 * 5, 600 * 17):
        (arrays,) = run_jobs([trial_job(protocol)], 48, SEED, options(workers=0, chunk_patients=cap))
        assert_same(arrays, reference)


def test_ray_one_and_two_workers_match_in_process_bit_for_bit(ray_local, protocol, reference):
    for workers in (1, 2):
        result = run_jobs([trial_job(protocol)], 48, SEED, options(workers=workers, chunk_patients=600 * 6))
        assert "Ray" in result.mode and result.computed == 8 and result.reused == 0
        assert_same(result[0], reference)


def test_several_jobs_share_one_run_and_keep_their_own_results(ray_local, protocol, reference):
    other = load_protocol(PROTOCOL, overrides={"arms.active.effects.0.hazard_ratio": 1.0})
    (alone,) = run_jobs([trial_job(other)], 48, SEED, options(workers=0))
    both = run_jobs([trial_job(protocol), trial_job(other, "null")], 48, SEED,
                    options(workers=2, chunk_patients=600 * 12))
    assert both.computed == 8
    assert_same(both[0], reference)
    assert_same(both[1], alone)
    assert not np.array_equal(both[0]["statistic"], both[1]["statistic"])


def test_local_ray_started_by_us_listens_on_loopback_only(ray_local):
    listening = []
    for proc in psutil.Process().children(recursive=True):
        try:
            listening += [c.laddr.ip for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    assert listening, "no Ray server found among this process's children"
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip in listening), listening
    assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray_local.nodes())


# --- lost workers and failing tasks -------------------------------------------------------------

def stalling_chunk(folder: str, spec, seed, replicates):
    """simulate_chunk, except that the chunk holding replicate 0, the first time it runs, records its
    worker's pid in ``folder``/pid and waits there to be killed; a retry runs normally."""
    pid = Path(folder) / "pid"
    if 0 in replicates and not pid.exists():
        (Path(folder) / "pid.tmp").write_text(str(os.getpid()))
        os.replace(Path(folder) / "pid.tmp", pid)
        time.sleep(600)
    return simulate_chunk(spec, seed, replicates)


def _kill_stalled_worker(folder: Path, killed: list[psutil.Process], stop: threading.Event) -> None:
    """Wait until the stalled chunk has recorded its worker, then SIGKILL that worker (once)."""
    pid = folder / "pid"
    while not stop.is_set():
        if pid.exists():
            proc = psutil.Process(int(pid.read_text()))
            proc.send_signal(signal.SIGKILL)
            killed.append(proc)
            return
        time.sleep(0.01)


def run_killing_one_worker(protocol, folder: Path, **kw):
    """run_jobs on 2 Ray workers while the worker running replicate 0's chunk is killed mid-task."""
    killed: list[psutil.Process] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_stalled_worker, args=(folder, killed, stop), daemon=True)
    killer.start()
    job = Job(functools.partial(stalling_chunk, str(folder)), protocol, "stalling", 600)
    try:
        return run_jobs([job], 48, SEED, options(workers=2, chunk_patients=600 * 8, **kw)), killed
    finally:
        stop.set()
        killer.join()
        assert len(killed) == 1, "the stalled chunk's worker was not killed"


def test_worker_killed_mid_run_is_retried_and_results_are_identical(ray_local, protocol, reference, tmp_path):
    result, killed = run_killing_one_worker(protocol, tmp_path)
    # SIGKILL lands asynchronously (a loaded machine may take a moment): the worker must be gone soon
    _, alive = psutil.wait_procs(killed, timeout=20)
    assert all(p.status() == psutil.STATUS_ZOMBIE for p in alive), [p.status() for p in alive]
    assert result.computed == 6
    assert_same(result[0], reference)


def test_worker_lost_more_often_than_retried_stops_with_a_clear_error(ray_local, protocol, tmp_path):
    with pytest.raises(RunError, match=r"'stalling', replicates 0-7: Ray could not run the task "
                                       r"\(retried up to 0 times\)"):
        run_killing_one_worker(protocol, tmp_path, max_retries=0)


def bad_parameter_chunk(spec, seed, replicates):
    """simulate_chunk, except that replicate 29 meets a parameter it cannot use."""
    if 29 in replicates:
        raise ValueError("hazard ratio must be positive, got -0.5")
    return simulate_chunk(spec, seed, replicates)


def bad_spec_chunk(spec, seed, replicates):
    if 29 in replicates:
        raise SpecError("sweep.yaml", "points[3].hazard_ratio", "must be > 0, got -0.5")
    return simulate_chunk(spec, seed, replicates)


@pytest.mark.parametrize("workers", [0, 2])
def test_task_failing_on_its_own_stops_run_naming_job_and_replicates(ray_local, protocol, workers):
    job = Job(bad_parameter_chunk, protocol, "HR sweep point 3", 600)
    started = time.perf_counter()
    with pytest.raises(RunError) as err:
        run_jobs([job], 48, SEED, options(workers=workers, chunk_patients=600 * 8))
    assert time.perf_counter() - started < 60
    message = str(err.value)
    assert "'HR sweep point 3'" in message and "replicates 24-31" in message
    assert "ValueError: hazard ratio must be positive, got -0.5" in message and "\n" not in message
    assert "bad_parameter_chunk" in err.value.details  # the remote traceback, for whoever digs further


@pytest.mark.parametrize("workers", [0, 2])
def test_task_failing_on_a_spec_problem_raises_spec_error(ray_local, protocol, workers):
    job = Job(bad_spec_chunk, protocol, "sweep", 600)
    with pytest.raises(SpecError) as err:
        run_jobs([job], 48, SEED, options(workers=workers, chunk_patients=600 * 8))
    assert err.value.file == "sweep.yaml" and err.value.path == "points[3].hazard_ratio"
    assert "must be > 0" in err.value.reason and "replicates 24-31" in err.value.reason


# --- part files and resume ----------------------------------------------------------------------

def test_part_files_are_written_per_chunk_with_a_header_and_removed_with_the_final_file(protocol, reference,
                                                                                      tmp_path):
    out = tmp_path / "res.nc"
    result = run_jobs([trial_job(protocol)], 48, SEED, options(workers=0, out=out, chunk_patients=600 * 8))
    headers = list(iter_part_headers(out))
    assert len(headers) == result.computed == 6
    assert [h["replicates"] for _, h in headers] == [[i, i + 8] for i in range(0, 48, 8)]
    assert {h["seed"] for _, h in headers} == {SEED} and {h["job_key"] for _, h in headers} == {
        job_key(trial_job(protocol), SEED)}
    assert not list(parts_dir(out).glob("*.tmp"))
    write_netcdf(xr.Dataset({"x": ("replicate", result[0]["statistic"])}), out)
    assert out.exists() and not parts_dir(out).exists()


def test_resume_reuses_matching_parts_and_rejects_corrupted_and_foreign_ones(protocol, reference, tmp_path,
                                                                            caplog):
    out = tmp_path / "res.nc"
    opts = dict(workers=0, out=out, chunk_patients=600 * 8)
    run_jobs([trial_job(protocol)], 48, SEED, options(**opts))
    paths = [p for p, _ in iter_part_headers(out)]
    # 1: truncated; 2: arrays altered under an intact header; 3: another seed's chunk under this name
    paths[1].write_bytes(paths[1].read_bytes()[:-200])
    with np.load(paths[2]) as z:
        data = {k: z[k] for k in z.files}
    data["array:statistic"] = data["array:statistic"] + 1e-12
    np.savez(paths[2], **data)
    foreign = tmp_path / "other.nc"
    run_jobs([trial_job(protocol)], 48, SEED + 1, options(workers=0, out=foreign, chunk_patients=600 * 8))
    foreign_parts = [p for p, _ in iter_part_headers(foreign)]
    foreign_parts[3].replace(paths[3])
    foreign_parts[4].replace(parts_dir(out) / foreign_parts[4].name)  # unrelated file beside ours

    caplog.set_level("INFO", logger="vctrial")
    result = run_jobs([trial_job(protocol)], 48, SEED, options(resume=True, **opts))
    assert result.reused == 3 and result.computed == 3
    assert_same(result[0], reference)
    text = caplog.text
    assert f"{paths[1]}: corrupted" in text and f"{paths[2]}: corrupted: its arrays do not match" in text
    assert f"{paths[3]}: foreign" in text and "replicates 24-31" in text
    assert "1 file is not part of this run" in text
    assert "3 computed, 3 reused" in text


def test_without_resume_finished_parts_of_the_same_run_are_not_overwritten(protocol, tmp_path):
    out = tmp_path / "res.nc"
    run_jobs([trial_job(protocol)], 16, SEED, options(workers=0, out=out, chunk_patients=600 * 8))
    before = {p: p.read_bytes() for p, _ in iter_part_headers(out)}
    with pytest.raises(RunError, match="--resume"):
        run_jobs([trial_job(protocol)], 16, SEED, options(workers=0, out=out, chunk_patients=600 * 8))
    assert {p: p.read_bytes() for p, _ in iter_part_headers(out)} == before
    # another seed is another run: its parts live beside these and nothing is refused
    result = run_jobs([trial_job(protocol)], 16, SEED + 1, options(workers=0, out=out, chunk_patients=600 * 8))
    assert result.computed == 2 and len(list(iter_part_headers(out))) == 4


def test_parts_written_by_ray_workers_are_reused_in_process(ray_local, protocol, reference, tmp_path):
    out = tmp_path / "res.nc"
    run_jobs([trial_job(protocol)], 24, SEED, options(workers=2, out=out, chunk_patients=600 * 8))
    result = run_jobs([trial_job(protocol)], 48, SEED, options(workers=0, out=out, resume=True,
                                                               chunk_patients=600 * 8))
    assert result.reused == 3 and result.computed == 3
    assert_same(result[0], reference)


# --- the command line ---------------------------------------------------------------------------

def vctrial(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vctrial.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def wait_for_parts(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(list(parts_dir(out).glob("*.npz"))) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no part files appeared"
        time.sleep(0.02)


def session_processes(sid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            continue
    return found


def computed_reused(stderr: str) -> tuple[int, int]:
    line = next(l for l in stderr.splitlines() if "chunks:" in l and "computed" in l)
    words = line.replace(",", " ").split()
    return int(words[words.index("computed") - 1]), int(words[words.index("reused") - 1])


@pytest.fixture(scope="module")
def cli_reference(tmp_path_factory):
    """The uninterrupted run of the command-line tests, in-process."""
    out = tmp_path_factory.mktemp("ref") / "ref.nc"
    proc = vctrial("run", PROTOCOL, "-n", 40, "-s", 9, "-o", out, "-w", 0, "-q")
    assert proc.wait() == 0, proc.communicate()
    return xr.load_dataset(out)


def test_resume_after_killed_driver_computes_only_missing_chunks(tmp_path, cli_reference):
    out = tmp_path / "res.nc"
    args = ["run", PROTOCOL, "-n", 40, "-s", 9, "-o", out, "-w", 0, "--chunk-patients", 2400]  # 10 chunks
    proc = vctrial(*args)
    wait_for_parts(out, 3, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    kept = len(list(parts_dir(out).glob("*.npz")))
    assert 3 <= kept < 10

    refused = vctrial(*args)
    _, err = refused.communicate()
    assert refused.returncode == 1 and "--resume" in err and len(err.strip().splitlines()) == 1

    resumed = vctrial(*args, "--resume")
    _, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert computed_reused(err) == (10 - kept, kept)
    assert xr.load_dataset(out).identical(cli_reference)
    assert not parts_dir(out).exists()


def test_ctrl_c_on_ray_run_keeps_parts_stops_ray_and_resume_finishes(tmp_path, cli_reference):
    out = tmp_path / "res.nc"
    args = ["run", PROTOCOL, "-n", 40, "-s", 9, "-o", out, "--chunk-patients", 2400]  # 10 chunks
    proc = vctrial(*args, "-w", 2)
    wait_for_parts(out, 3, proc)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "on a local Ray instance with 2 workers (127.0.0.1)" in err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    assert not out.exists()
    deadline = time.monotonic() + 30
    while session_processes(proc.pid) and time.monotonic() < deadline:  # Ray's processes end with the command
        time.sleep(0.2)
    assert not session_processes(proc.pid)
    kept = len(list(parts_dir(out).glob("*.npz")))
    assert 3 <= kept < 10

    resumed = vctrial(*args, "-w", 0, "--resume")  # parts do not depend on where they were computed
    _, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert computed_reused(err) == (10 - kept, kept)
    assert xr.load_dataset(out).identical(cli_reference)


def test_dashboard_is_started_only_when_asked_and_explains_a_missing_dependency(tmp_path):
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        proc = vctrial("run", PROTOCOL, "-n", 2, "-o", tmp_path / "r.nc", "-w", 1, "--dashboard")
        _, err = proc.communicate()
        assert proc.returncode == 1 and "vctrial[dashboard]" in err and len(err.strip().splitlines()) == 1
    else:
        proc = vctrial("run", PROTOCOL, "-n", 2, "-o", tmp_path / "r.nc", "-w", 1, "--dashboard")
        _, err = proc.communicate()
        assert proc.returncode == 0 and "Ray dashboard: http://127.0.0.1:" in err, err
