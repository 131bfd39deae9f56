"""Faults around the output: a full disk, a read-only folder, the driver killed while it writes the
result, two runs at once on one ``--out``. In each: one line on stderr, no partial or corrupt file
under the final name, every input byte-identical, and the work that was finished kept or cleaned as
documented (docs/reliability.md).

The full disk is a file-size limit (``RLIMIT_FSIZE``: writes past it fail with EFBIG) set in the
child process, and, where this process may mount one (root), a small tmpfs (ENOSPC). A read-only
folder is a read-only bind mount as root (permissions do not stop root), a folder without write
permission otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import xarray as xr

ROOT = Path(__file__).parent.parent
PROTOCOL = "protocols/t2d_hba1c.yaml"
RUN = ["run", PROTOCOL, "-n", "4", "-s", "7", "-w", "0", "-q", "--chunk-patients", "300"]  # 4 chunks, 4 part files


def vctrial(*args, cwd: Path, limit: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    def preexec():
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "vctrial.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, preexec_fn=preexec, timeout=timeout)


@pytest.fixture()
def tree(tmp_path):
    for folder in ("cohorts", "diseases", "protocols", "patients", "validation", "calibration"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def digest(folder: Path, skip: str | None = None) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not (skip and p.is_relative_to(folder / skip))}


def inputs(tree: Path) -> dict[str, str]:
    return {k: v for k, v in digest(tree).items() if k.split("/")[0] in
            ("cohorts", "diseases", "protocols", "patients", "validation", "calibration")}


def one_error_line(proc: subprocess.CompletedProcess, code: int, *parts: str) -> str:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vctrial: error: ") and "Traceback" not in proc.stderr, proc.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files, lock files and part folders vctrial may leave beside an output."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".lock", ".parts")))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The result of ``RUN`` written without any fault, to compare with."""
    tree = tmp_path_factory.mktemp("reference")
    for folder in ("cohorts", "diseases", "protocols"):
        shutil.copytree(ROOT / folder, tree / folder)
    proc = vctrial(*RUN, "-o", "r.nc", cwd=tree)
    assert proc.returncode == 0, proc.stderr
    return tree / "r.nc"


def same_results(path: Path, reference: Path) -> None:
    with xr.open_dataset(path) as a, xr.open_dataset(reference) as b:
        assert a.sizes["replicate"] == 4
        assert a.drop_attrs().identical(b.drop_attrs()) if hasattr(a, "drop_attrs") else a.equals(b)


# ------------------------------------------------------------------------------------- full disk

def test_a_file_size_limit_on_the_part_files_stops_with_one_line_and_leaves_nothing(tree, reference):
    # ``reference`` has run RUN without a limit first, so numba's cache is written: a process limited to
    # 4 kB files cannot write it and would otherwise compile every kernel again (minutes in a clean clone)
    before = inputs(tree)
    proc = vctrial(*RUN, "-o", "out/r.nc", cwd=tree, limit=4096)  # a part file is about 6 kB
    one_error_line(proc, 1, "cannot write the part file", "File too large")
    assert not (tree / "out").exists()  # the folder made for the output is gone with everything in it
    assert inputs(tree) == before


def test_a_file_size_limit_on_the_final_file_keeps_the_chunks_for_resume(tree, reference):
    before = inputs(tree)
    limit = reference.stat().st_size // 2  # the final file cannot be written, each part file can
    proc = vctrial(*RUN, "-o", "out/r.nc", cwd=tree, limit=limit)
    one_error_line(proc, 1, "cannot write out/r.nc", "nothing was written under that name",
                   f"files are limited to {limit:,} bytes", "kept in out/r.nc.parts", "--resume")
    assert not (tree / "out" / "r.nc").exists()
    assert leftovers(tree / "out") == ["r.nc.parts"]  # no temporary file, no lock
    assert len(list((tree / "out" / "r.nc.parts").glob("*.npz"))) == 4
    assert inputs(tree) == before
    # room again: --resume reuses the four chunks and writes the same file as a run without the fault
    proc = vctrial(*RUN, "-o", "out/r.nc", "--resume", cwd=tree)
    assert proc.returncode == 0, proc.stderr
    same_results(tree / "out" / "r.nc", reference)
    assert leftovers(tree / "out") == []


@pytest.mark.parametrize("command", [
    ["check", "validation/oak.yaml", "-n", "2", "-w", "0", "-q", "--report", "out/report.md"],
    ["calibrate", "calibration/hfref.yaml", "-n", "2", "-w", "0", "-q", "-o", "out/fit.nc"],
    ["twin", "patients/hf_clinic.csv", "--protocol", "patients/hf_dapagliflozin_options.yaml", "--draws", "20",
     "--horizon-years", "1", "-w", "0", "-q", "-o", "out/t.nc"],
], ids=["check-report", "calibrate", "twin"])
def test_every_command_reports_a_write_it_cannot_finish_in_one_line(tree, command):
    before = inputs(tree)
    proc = vctrial(*command, cwd=tree, limit=2048)
    one_error_line(proc, 1, "cannot write", "File too large")
    assert not any(p.name.endswith((".tmp", ".lock")) for p in tree.rglob("*"))
    assert not (tree / "out").exists() or not any((tree / "out").rglob("*.nc")), list((tree / "out").rglob("*"))
    assert inputs(tree) == before


@pytest.fixture()
def small_disk(tmp_path):
    """A 64 kB tmpfs (a real full file system: ENOSPC); skipped where this process cannot mount one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode(errors='replace').strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_file_system_stops_with_one_line_and_no_partial_file(tree, small_disk, reference):
    before = inputs(tree)
    proc = vctrial(*RUN, "-o", small_disk / "r.nc", cwd=tree)
    line = one_error_line(proc, 1, "cannot write", "nothing was written under that name")
    assert "No space left on device" in line or "disk full" in line, line
    assert not (small_disk / "r.nc").exists()
    assert not any(p.name.endswith((".tmp", ".lock")) for p in small_disk.iterdir())
    assert inputs(tree) == before


# ------------------------------------------------------------------------------- read-only folder

@contextlib.contextmanager
def made_read_only(folder: Path):
    """``folder`` (holding one file) read-only: a read-only bind mount as root, mode 0555 otherwise."""
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a read-only folder as root")
    bind = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bind.stderr.decode(errors='replace').strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True)
        if ro.returncode != 0:
            pytest.skip(f"cannot remount read-only: {ro.stderr.decode(errors='replace').strip()}")
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture()
def read_only(tmp_path):
    with made_read_only(tmp_path / "ro") as folder:
        yield folder


@pytest.mark.parametrize("args, option", [
    (RUN + ["-o", "{ro}/r.nc"], "--out"),
    (RUN + ["-o", "{ro}/new/deeper/r.nc"], "--out"),
    (["compare", "protocols/hf_outcomes.yaml", "protocols/hf_outcomes_gs.yaml", "-n", "2", "-w", "0", "-q",
      "-o", "{ro}/c.nc"], "--out"),
    (["check", "validation/oak.yaml", "-n", "2", "-w", "0", "-q", "--report", "{ro}/report.md"], "--report"),
    (["calibrate", "calibration/hfref.yaml", "-n", "2", "-w", "0", "-q", "-o", "fit.nc", "--disease-out",
      "{ro}/fit.yaml"], "--disease-out"),
    (["twin", "patients/hf_clinic.csv", "--protocol", "patients/hf_dapagliflozin_options.yaml", "--draws", "20",
      "--horizon-years", "1", "-w", "0", "-q", "-o", "t.nc", "--table", "{ro}/t.csv"], "--table"),
    (["plot", "{reference}", "-o", "{ro}/figures"], "--out"),
], ids=["run", "run-new-folder", "compare", "check-report", "calibrate-disease-out", "twin-table", "plot"])
def test_an_output_in_a_read_only_folder_stops_before_simulating(tree, read_only, reference, args, option):
    before = digest(tree, skip="ro")
    args = [a.format(ro=read_only, reference=reference) for a in args]
    start = time.perf_counter()
    proc = vctrial(*args, cwd=tree)
    one_error_line(proc, 2, f"command line: {option}:", str(read_only))
    assert sorted(p.name for p in read_only.iterdir()) == ["mine.txt"]
    assert digest(tree, skip="ro") == before  # nothing written anywhere (not fit.nc, not t.nc either)
    assert time.perf_counter() - start < 60


def test_a_read_only_parts_folder_stops_with_one_line_and_no_final_file(tree, tmp_path):
    """The output's folder is writable but OUT.parts is not: the first part file cannot be written."""
    before = inputs(tree)
    with made_read_only(tmp_path / "x.nc.parts") as parts:
        proc = vctrial(*RUN, "-o", tmp_path / "x.nc", cwd=tree)
        one_error_line(proc, 1, "cannot write the part file", str(parts))
        assert not (tmp_path / "x.nc").exists()
        assert not any(p.name.endswith((".tmp", ".lock")) for p in tmp_path.iterdir())
        assert sorted(p.name for p in parts.iterdir()) == ["mine.txt"]
    assert inputs(tree) == before


# ------------------------------------------------------------------- driver killed while writing

KILL_AT = {
    # the temporary file is open and half written: HDF5 has not closed it
    "mid-write": """
        import xarray.backends.netCDF4_ as backend
        close = backend.NetCDF4DataStore.close
        def dying_close(self, *a, **k):
            if ".r.nc." in str(getattr(self, "_filename", "")):
                os.kill(os.getpid(), signal.SIGKILL)
            return close(self, *a, **k)
        backend.NetCDF4DataStore.close = dying_close
    """,
    # the temporary file is complete, the rename has not happened
    "before-rename": """
        replace = os.replace
        def dying_replace(src, dst, *a, **k):
            if str(dst).endswith("r.nc"):
                os.kill(os.getpid(), signal.SIGKILL)
            return replace(src, dst, *a, **k)
        os.replace = dying_replace
    """,
}


def killed_run(tree: Path, where: str, args: list[str]) -> subprocess.CompletedProcess:
    script = "import os, signal, sys\n" + textwrap.dedent(KILL_AT[where]) + (
        "from vctrial.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    return subprocess.run([sys.executable, "-c", script, *args], cwd=tree, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("where", sorted(KILL_AT))
@pytest.mark.parametrize("earlier", [False, True], ids=["no-earlier-file", "earlier-file-kept"])
def test_a_driver_killed_during_the_final_write_leaves_no_partial_file(tree, reference, where, earlier):
    before = inputs(tree)
    out = tree / "out" / "r.nc"
    if earlier:  # a results file of another run already has the name: it must survive intact
        out.parent.mkdir()
        shutil.copy(reference, out)
        old = out.read_bytes()
    proc = killed_run(tree, where, RUN + ["-o", "out/r.nc"])
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    if earlier:
        assert out.read_bytes() == old
    else:
        assert not out.exists()
    stale = [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(stale) == 1  # the killed write's temporary file, never under the final name
    assert inputs(tree) == before
    # the next run on that output reuses the finished chunks and removes the dead run's leftovers
    proc = vctrial(*RUN, "-o", "out/r.nc", "--resume", cwd=tree)
    assert proc.returncode == 0, proc.stderr
    same_results(out, reference)
    assert leftovers(out.parent) == []
    assert inputs(tree) == before


def test_a_driver_killed_from_outside_while_writing_leaves_the_final_name_absent_or_complete(tree, reference):
    """SIGKILL from another process as soon as the temporary file appears (wherever the write then is)."""
    before = inputs(tree)
    out = tree / "out" / "r.nc"
    proc = subprocess.Popen([sys.executable, "-m", "vctrial.cli", *RUN, "-o", "out/r.nc"], cwd=tree,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if out.parent.is_dir() and any(p.name.startswith(".r.nc.") and p.name.endswith(".tmp")
                                           for p in out.parent.iterdir()):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.0005)
    finally:
        proc.wait(timeout=60)
    if out.exists():  # the kill came after the rename: the file is complete
        same_results(out, reference)
    assert inputs(tree) == before
    rerun = vctrial(*RUN, "-o", "out/r.nc", "--resume", cwd=tree)
    assert rerun.returncode == 0, rerun.stderr
    same_results(out, reference)
    assert leftovers(out.parent) == []


# ------------------------------------------------------------------ two runs at once on one --out

LONG_RUN = ["run", "protocols/hf_outcomes.yaml", "-n", "1500", "-s", "3", "-w", "0", "-q", "--chunk-patients", "8000",
            "-o", "out/r.nc"]


def test_a_second_run_on_the_same_output_refuses_cleanly_and_the_first_finishes(tree):
    before = inputs(tree)
    first = subprocess.Popen([sys.executable, "-m", "vctrial.cli", *LONG_RUN], cwd=tree, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    parts = tree / "out" / "r.nc.parts"
    deadline = time.monotonic() + 120
    while not (parts.is_dir() and any(parts.glob("*.npz"))) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the first run ended before the second could start; make it longer"
    refused = 0
    for extra in ([], ["--resume"], ["-s", "4"]):  # same seed; same seed resuming; another seed
        seen = {p.name for p in parts.glob("*.npz")}
        second = vctrial(*LONG_RUN, *extra, cwd=tree)
        if refused and first.poll() is not None:
            break  # the first run finished meanwhile (a fast machine): the later variants prove nothing
        one_error_line(second, 1, "another vctrial run", f"(process {first.pid})", "out/r.nc")
        refused += 1
        assert seen <= {p.name for p in parts.glob("*.npz")}  # no part file of the first run lost
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    with xr.open_dataset(tree / "out" / "r.nc") as ds:  # a valid, complete netCDF file
        assert ds.sizes["replicate"] == 1500 and int(ds.attrs["seed"]) == 3
        assert bool((ds["n_randomized"].sum("arm") == 4000).all())
    assert leftovers(tree / "out") == []
    assert inputs(tree) == before


def test_two_runs_started_together_on_one_output_one_finishes_and_the_other_refuses(tree, reference):
    args = RUN + ["-o", "out/r.nc"]
    procs = [subprocess.Popen([sys.executable, "-m", "vctrial.cli", *args], cwd=tree, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 1]), results  # both finish (one after the other) or one refuses
    for code, err in results:
        if code == 1:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and "another vctrial run" in lines[0], err
    same_results(tree / "out" / "r.nc", reference)
    assert leftovers(tree / "out") == []


# ------------------------------------------------------------------ numba's cache on a full disk

def test_compiled_code_that_cannot_be_cached_still_runs(tmp_path):
    """Numba's cache (cache=True) is written on first use: on a full disk (here a file-size limit and an
    empty cache folder) the kernel runs without it instead of failing with EFBIG."""
    code = ("import numpy as np; from vctrial import rng; "
            "print(float(rng.uniforms(np.uint64(1), np.uint64(2), np.arange(2), 3, 2).sum()))")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    limited = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512)))
    assert limited.returncode == 0 and "Traceback" not in limited.stderr, limited.stderr
    free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert free.returncode == 0 and free.stdout == limited.stdout, free.stderr
