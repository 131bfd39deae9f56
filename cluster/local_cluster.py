#!/usr/bin/env python3
"""Start and stop a multi-node Ray cluster on this one machine: a head and worker nodes on 127.0.0.1.

For trying ``vctrial ... --address`` without a real cluster, and for the tests. Each node is a
``ray start --block`` process of its own (as a node on another machine would be); stopping sends
each of them SIGTERM, which makes it stop the Ray processes it started, and nothing else on the
machine (unlike ``ray stop``, which ends every Ray process of the user).

    python cluster/local_cluster.py start --nodes 2 --cpus 1        # prints the address
    RAY_AUTH_MODE=token vctrial run protocols/hf_outcomes.yaml -n 400 --address 127.0.0.1:6390
    python cluster/local_cluster.py stop

Every Ray command of such a cluster needs ``RAY_AUTH_MODE=token`` (Ray's token authentication;
the token is kept in ~/.ray/auth_token) and ``--node-ip-address=127.0.0.1``; this script sets
both for the nodes. Ray itself replaces 127.0.0.1 by the machine's own address for its servers.
Only the Python standard library is used; Ray is the ``ray`` program beside this Python or on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def ray_program() -> str:
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        sys.exit("local_cluster: cannot find the 'ray' program (pip install ray)")
    return found


def node_env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "token"
    env.pop("RAY_ADDRESS", None)
    return env


def start_node(folder: Path, name: str, args: list[str], timeout: float) -> int:
    """Start one ``ray start --block`` node in its own session; wait until Ray says it is up."""
    log_path = folder / f"{name}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([ray_program(), "start", "--block", *args], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=node_env(), start_new_session=True)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Ray runtime started" in log_path.read_text(errors="replace"):
            return proc.pid
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"{name} failed to start (see {log_path}):\n" + "\n".join(tail))
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"{name} did not start within {timeout:.0f} s (see {log_path})")


def start(folder: Path, nodes: int, cpus: int, port: int | None, timeout: float) -> dict:
    """Start a head and ``nodes - 1`` worker nodes; return the cluster record (also saved in folder)."""
    state = folder / "cluster.json"
    if state.exists():
        raise RuntimeError(f"{state} exists: a cluster is already running there (stop it first)")
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    address = f"{HOST}:{port}"
    temp = folder / "ray"  # sessions and sockets of this cluster only (short: socket paths are limited)
    common = [f"--node-ip-address={HOST}", f"--num-cpus={cpus}", f"--temp-dir={temp}", "--disable-usage-stats"]
    record = {"address": address, "pids": [], "started": [], "folder": str(folder)}
    # the nodes authenticate with the user's Ray token; make one if this machine has none yet
    made = subprocess.run([ray_program(), "get-auth-token", "--generate"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=node_env())
    if made.returncode != 0:
        raise RuntimeError(f"cannot find or make a Ray authentication token: {made.stderr.strip()}")
    try:
        head = start_node(folder, "head", ["--head", f"--port={port}", "--include-dashboard=false",
                                           f"--dashboard-agent-listen-port={free_port()}", *common], timeout)
        record["pids"].append(head)
        record["started"].append(_start_time(head))
        for i in range(1, nodes):
            pid = start_node(folder, f"worker{i}", [f"--address={address}",
                                                    f"--dashboard-agent-listen-port={free_port()}", *common], timeout)
            record["pids"].append(pid)
            record["started"].append(_start_time(pid))
    except BaseException:
        stop_pids(record["pids"], record["started"])
        raise
    state.write_text(json.dumps(record, indent=2))
    return record


def stop_pids(pids: list[int], started: list[int | None], grace: float = 30.0) -> None:
    """SIGTERM each node process (it stops its own Ray processes), SIGKILL any left after ``grace``.

    A pid is signalled only while it still names the process this script started (same start
    time): pids are reused, and another user's process must never be hit.
    """
    nodes = list(zip(pids, started))
    for pid, start in reversed(nodes):  # workers first, the head last
        if alive(pid, start):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for pid, start in nodes:
        while time.monotonic() < deadline and alive(pid, start):
            time.sleep(0.1)
        if alive(pid, start):
            try:
                os.killpg(pid, signal.SIGKILL)  # the node's own session: its Ray processes
            except ProcessLookupError:
                pass


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def _start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None  # field 22 of stat: start time in clock ticks


def alive(pid: int, start: int | None = None) -> bool:
    """True while ``pid`` is the process started at ``start`` and not a zombie."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        if done == pid:
            return False
    except ChildProcessError:
        pass
    fields = _stat(pid)
    if fields is None:  # no /proc (not Linux): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    if start is not None and int(fields[19]) != start:
        return False  # the pid now names another process
    return fields[0] != "Z"  # a zombie left for a parent that does not reap counts as gone


def stop(folder: Path) -> bool:
    """Stop the cluster recorded in folder; False when there is none."""
    state = folder / "cluster.json"
    if not state.exists():
        return False
    record = json.loads(state.read_text())
    stop_pids(record["pids"], record.get("started", [None] * len(record["pids"])))
    state.unlink()
    shutil.rmtree(folder / "ray", ignore_errors=True)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Start or stop a multi-node Ray cluster on this machine.")
    p.add_argument("action", choices=["start", "stop", "address"])
    p.add_argument("--nodes", type=int, default=2, help="nodes including the head (default 2)")
    p.add_argument("--cpus", type=int, default=1, help="CPUs each node offers (default 1)")
    p.add_argument("--port", type=int, default=None, help="head port (default: a free one)")
    p.add_argument("--dir", default="/tmp/vctrial-cluster", help="state and logs (default /tmp/vctrial-cluster)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each node")
    args = p.parse_args(argv)
    folder = Path(args.dir)
    if args.action == "start":
        if args.nodes < 1 or args.cpus < 1:
            p.error("--nodes and --cpus must be at least 1")
        try:
            record = start(folder, args.nodes, args.cpus, args.port, args.timeout)
        except RuntimeError as exc:
            print(f"local_cluster: {exc}", file=sys.stderr)
            return 1
        print(record["address"])
        print(f"local_cluster: {args.nodes} nodes × {args.cpus} CPUs at {record['address']}; use it with "
              f"RAY_AUTH_MODE=token vctrial ... --address {record['address']}", file=sys.stderr)
        return 0
    if args.action == "address":
        state = folder / "cluster.json"
        if not state.exists():
            print(f"local_cluster: no cluster recorded in {folder}", file=sys.stderr)
            return 1
        print(json.loads(state.read_text())["address"])
        return 0
    if not stop(folder):
        print(f"local_cluster: no cluster recorded in {folder}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
