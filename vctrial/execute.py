"""Execution of replicate chunks: split, run, collect, show progress.

A chunk is (protocol, seed, replicate indices) → arrays; chunks are independent and their results
do not depend on how replicates are grouped, so the split is a matter of memory and scheduling only.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from vctrial.results import build_dataset
from vctrial.spec.protocol import Protocol
from vctrial.trial.run import simulate_chunk

PATIENTS_PER_CHUNK = 200_000


def chunks(n_replicates: int, sample_size: int, patients_per_chunk: int = PATIENTS_PER_CHUNK) -> list[np.ndarray]:
    """Replicate index ranges holding about ``patients_per_chunk`` patients each."""
    size = max(1, patients_per_chunk // max(sample_size, 1))
    return [np.arange(lo, min(lo + size, n_replicates)) for lo in range(0, n_replicates, size)]


def run_trial(protocol: Protocol, replicates: int, seed: int, progress: bool = True) -> xr.Dataset:
    """Simulate ``replicates`` independent trials of a protocol; returns the results Dataset."""
    if replicates < 1:
        raise ValueError("replicates must be at least 1")
    parts: list[dict[str, np.ndarray]] = []
    with tqdm(total=replicates, desc=protocol.spec.name[:40], unit="trial", disable=not progress,
              dynamic_ncols=True) as bar:
        for reps in chunks(replicates, protocol.spec.sample_size):
            parts.append(simulate_chunk(protocol, seed, reps))
            bar.update(len(reps))
    arrays = {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
    return build_dataset(protocol, seed, arrays, np.arange(replicates))
