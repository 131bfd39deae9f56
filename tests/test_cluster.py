"""A two-node Ray cluster on 127.0.0.1, started with cluster/local_cluster.py: same results, both nodes used,
a node lost mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import numpy as np
import psutil
import pytest
import xarray as xr

from vctrial.execute import ExecOptions, run_jobs
from vctrial.trial.dataset import trial_job
from vctrial.spec.protocol import load_protocol

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "cluster" / "local_cluster.py"
PROTOCOL = Path(__file__).parent / "data" / "event_driven.yaml"
SEED = 77


def script(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Head + one worker node, 1 CPU each, on a free port; stopped (by its own pids) at module end."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    folder = Path(f"/tmp/vct-{os.getpid()}")  # short: Ray's socket paths live under it
    started = script("start", "--nodes", 2, "--cpus", 1, "--dir", folder)
    assert started.returncode == 0, started.stderr
    record = json.loads((folder / "cluster.json").read_text())
    nodes = [psutil.Process(pid) for pid in record["pids"]]
    saved = os.environ.get("RAY_AUTH_MODE")
    # Ray's token authentication, as the nodes use it; a user sets RAY_AUTH_MODE=token before starting
    # Python, here Ray is already imported, so its cached configuration is refreshed the way Ray does it
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    _enable_token_auth()
    yield {"address": started.stdout.strip(), "folder": folder, **record}
    if saved is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = saved
    ray._raylet.Config.initialize("")
    stopped = script("stop", "--dir", folder)
    assert stopped.returncode == 0, stopped.stderr
    for node in nodes:  # psutil tells a reused pid from the process it named
        assert not node.is_running() or node.status() == psutil.STATUS_ZOMBIE
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def reference():
    (arrays,) = run_jobs([trial_job(load_protocol(PROTOCOL))], 40, SEED, ExecOptions(workers=0, progress=False))
    return arrays


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True), k


def test_two_node_cluster_gives_in_process_results_and_uses_both_nodes(cluster, reference):
    result = run_jobs([trial_job(load_protocol(PROTOCOL))], 40, SEED,
                      ExecOptions(address=cluster["address"], progress=False, chunk_patients=600 * 4))
    assert "2 nodes, 2 CPUs" in result.mode
    assert result.computed == 10 and len(result.nodes) == 2
    assert_same(result[0], reference)


def test_cli_address_writes_the_same_file_as_in_process(cluster, tmp_path):
    files = {}
    for name, extra in (("local", ["-w", 0]), ("cluster", ["--address", cluster["address"]])):
        files[name] = tmp_path / f"{name}.nc"
        args = ["run", PROTOCOL, "-n", 24, "-s", 3, "-o", files[name], "--chunk-patients", 3000, *extra]
        proc = subprocess.run([sys.executable, "-m", "vctrial.cli", *map(str, args)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    assert "on the Ray cluster at" in proc.stderr and "2 nodes" in proc.stderr
    assert xr.load_dataset(files["cluster"]).identical(xr.load_dataset(files["local"]))


def test_node_lost_mid_run_its_tasks_are_retried_and_results_are_identical(cluster, reference):
    """Runs last here: it takes the worker node down for good."""
    worker = psutil.Process(cluster["pids"][1])  # the worker node's `ray start --block`
    lost = threading.Event()

    def kill_node_when_busy() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                busy = any(p.cmdline()[:1] == ["ray::_run_chunk"] for p in worker.children(recursive=True))
            except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
                busy = False
            if busy:
                os.killpg(worker.pid, signal.SIGKILL)  # the node and every process it started
                lost.set()
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_node_when_busy, daemon=True)
    killer.start()
    result = run_jobs([trial_job(load_protocol(PROTOCOL))], 40, SEED,
                      ExecOptions(address=cluster["address"], progress=False, chunk_patients=600 * 4))
    killer.join()
    assert lost.is_set(), "the worker node never ran a chunk"
    assert result.computed == 10
    assert_same(result[0], reference)


def test_shipped_cluster_configurations_are_valid_and_match_the_installed_ray():
    import ray
    import yaml

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    launcher = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    jsonschema.validate(launcher, schema)
    assert "~/venv/bin/pip install ~/vctrial" in launcher["setup_commands"]
    manifest = yaml.safe_load((ROOT / "cluster" / "kuberay.yaml").read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayCluster"
    assert manifest["spec"]["rayVersion"] == ray.__version__
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert f"FROM rayproject/ray:{ray.__version__}-{python}-cpu" in (ROOT / "cluster" / "Dockerfile").read_text()
