"""Execution of replicate chunks: split, run, collect, show progress.

Work is a list of jobs; a job is a picklable spec and a module-level chunk function
``fn(spec, seed, replicates) -> dict[str, ndarray]`` whose arrays lead with the replicate axis.
A task is (job, replicate chunk). Tasks are independent and their results do not depend on how
replicates are grouped (random numbers are keyed by replicate and patient), so the split is a
matter of memory and scheduling only, and every command that simulates goes through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from vctrial.results import build_dataset
from vctrial.spec.protocol import Protocol
from vctrial.trial.run import simulate_chunk

PATIENTS_PER_CHUNK = 200_000

ChunkFn = Callable[[Any, int, np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Job:
    """One thing to simulate over all replicates: ``fn(spec, seed, replicates)``."""

    fn: ChunkFn
    spec: Any
    label: str
    patients: int  # patients per replicate, to size chunks


@dataclass(frozen=True)
class ExecOptions:
    """How to run: in-process for now (``workers=0``)."""

    workers: int | None = 0
    progress: bool = True


def chunks(n_replicates: int, sample_size: int, patients_per_chunk: int = PATIENTS_PER_CHUNK) -> list[np.ndarray]:
    """Replicate index ranges holding about ``patients_per_chunk`` patients each."""
    size = max(1, patients_per_chunk // max(sample_size, 1))
    return [np.arange(lo, min(lo + size, n_replicates)) for lo in range(0, n_replicates, size)]


def run_jobs(jobs: list[Job], replicates: int, seed: int, options: ExecOptions = ExecOptions()) -> list[dict[str, np.ndarray]]:
    """Run every job over replicates 0..replicates-1; per job, its arrays concatenated over replicates."""
    if replicates < 1:
        raise ValueError("replicates must be at least 1")
    tasks = [(j, reps) for j, job in enumerate(jobs) for reps in chunks(replicates, job.patients)]
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in jobs]
    desc = jobs[0].label[:40] if len(jobs) == 1 else f"{len(jobs)} jobs"
    with tqdm(total=replicates * len(jobs), desc=desc, unit="trial", disable=not options.progress,
              dynamic_ncols=True) as bar:
        for j, reps in tasks:
            job = jobs[j]
            parts[j].append(job.fn(job.spec, seed, reps))
            bar.update(len(reps))
    return [{k: np.concatenate([p[k] for p in job_parts], axis=0) for k in job_parts[0]} for job_parts in parts]


def trial_job(protocol: Protocol, label: str | None = None) -> Job:
    return Job(simulate_chunk, protocol, label or protocol.spec.name, protocol.spec.sample_size)


def run_trial(protocol: Protocol, replicates: int, seed: int, progress: bool = True,
              options: ExecOptions | None = None) -> xr.Dataset:
    """Simulate ``replicates`` independent trials of a protocol; returns the results Dataset."""
    options = options or ExecOptions(progress=progress)
    (arrays,) = run_jobs([trial_job(protocol)], replicates, seed, options)
    return build_dataset(protocol, seed, arrays, np.arange(replicates))
