"""Pinning every thread pool of a benchmark to the same count, so vctrial and its peers are timed on
the same number of threads. Native pools (OpenMP, OpenBLAS, MKL, numexpr) and numba read their
variables when they load: a benchmark calls :func:`pin_from_argv` before importing numpy, and
:func:`check_pinned` once numba is imported."""

from __future__ import annotations

import os

THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def threads_from_argv(argv: list[str]) -> int:
    """The value of ``--threads N`` (or ``--threads=N``) in a command line; 1 without it."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 1


def pin_from_argv(argv: list[str]) -> None:
    """Set every pool's variable to the command line's ``--threads`` (before numpy is imported)."""
    os.environ.update({k: str(threads_from_argv(argv)) for k in THREAD_VARS})
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def check_pinned(requested: int) -> int:
    """Set numba's threads and stop unless every pool runs ``requested`` threads; returns the count."""
    import numba

    numba.set_num_threads(min(requested, numba.config.NUMBA_NUM_THREADS))
    threads = numba.get_num_threads()
    pools = {k: os.environ.get(k) for k in THREAD_VARS}
    if threads != requested or any(v != str(requested) for v in pools.values()):
        raise SystemExit(f"threads not pinned to {requested}: numba {threads}, environment {pools} "
                         "(run this file as a script)")
    return threads
