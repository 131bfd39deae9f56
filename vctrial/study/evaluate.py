"""Simulate every study of a validation or calibration file and compute its figures.

Each study is one ``execute.Job`` (so in-process, Ray, ``--workers``, ``--address`` and part files
work as for every run); all studies of an evaluation share the root seed, so the same candidate
patients, dropout times and event thresholds are drawn in every evaluation (common random numbers).
"""

from __future__ import annotations

import numpy as np

from vctrial.execute import ExecOptions, Job, run_jobs
from vctrial.spec.protocol import Protocol
from vctrial.spec.study import Figure, Study
from vctrial.study.measures import StudyJob, figures_chunk


def study_jobs(study: Study, protocols: dict[str, Protocol] | None = None, label: str = "") -> list[Job]:
    """One job per study that has figures; ``protocols`` replaces the loaded ones (a candidate disease)."""
    protocols = protocols or study.protocols
    jobs = []
    for name, protocol in protocols.items():
        figs = tuple(f for f in study.figures if study.study_of(f) == name)
        if figs:
            jobs.append(Job(figures_chunk, StudyJob(protocol, figs), f"{label}{name}", protocol.spec.sample_size))
    return jobs


def evaluate(study: Study, replicates: int, seed: int, options: ExecOptions = ExecOptions(),
             protocols: dict[str, Protocol] | None = None) -> dict[str, np.ndarray]:
    """(replicates,) simulated value of every figure, by figure name."""
    results = run_jobs(study_jobs(study, protocols), replicates, seed, options)
    values: dict[str, np.ndarray] = {}
    for arrays in results:
        values.update(arrays)
    return {f.name: values[f.name] for f in study.figures}


def summary(fig: Figure, values: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Mean over simulated studies with its Monte Carlo SE, the central ``level`` interval of the
    studies' values, and how many studies gave no value."""
    x = values[np.isfinite(values)]
    n = x.size
    if n == 0:
        nan = float("nan")
        return {"mean": nan, "mc_se": nan, "lower": nan, "upper": nan, "missing": int(values.size)}
    q = (1.0 - level) / 2.0
    return {"mean": float(x.mean()), "mc_se": float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "lower": float(np.quantile(x, q)), "upper": float(np.quantile(x, 1.0 - q)),
            "missing": int(values.size - n)}
