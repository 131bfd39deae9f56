"""Patient twin over a clinic's batch: wall time and peak memory, the issue's size by default.

10,000 HFrEF patients (synthesized from cohorts/hfref.yaml, written to a CSV and read back as a user's
batch would be) × 2 options (standard care, add dapagliflozin with DAPA-HF hazard ratios and their
confidence intervals) × 1,000 draws (25 parameter draws × 40 chance draws) × 10 years of monthly
steps. The batch is streamed in chunks of patients (``execute.run_jobs``): each chunk simulates all
draws of its patients and keeps only per-patient summaries, so memory does not grow with
patients × draws × steps.

    python benchmarks/bench_twin.py [--patients 10000] [--draws 1000] [--years 10] [--workers 0]

Peak memory is the process's maximum resident set size (``resource.getrusage``), printed before and
after the batch; the difference is what the batch added on top of the loaded libraries.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from vctrial.cohort import synthesize
from vctrial.execute import ExecOptions
from vctrial.spec.patient import load_batch
from vctrial.spec.protocol import load_protocol
from vctrial.twin import build_batch_dataset, risk_table, simulate_batch

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["age", "sex_female", "nyha_class", "lvef_pct", "egfr_ml_min", "diabetes"]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_clinic(protocol, n: int, path: Path) -> None:
    """A batch CSV of n synthetic patients (one in five after an HF hospitalization)."""
    cohort = synthesize(protocol.cohort, n, 2024, np.arange(1))
    frame = cohort.to_dataframe(0)[COLUMNS]
    frame.insert(0, "id", [f"P{i:06d}" for i in range(n)])
    frame["state"] = np.where(np.arange(n) % 5 == 0, "post_hhf", "stable")
    frame.to_csv(path, index=False, float_format="%.3f")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=10_000)
    p.add_argument("--draws", type=int, default=1_000)
    p.add_argument("--years", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=0, help="0: in-process, numba threads on every core")
    args = p.parse_args()
    protocol = load_protocol(ROOT / "patients" / "hf_dapagliflozin_options.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "clinic.csv"
        write_clinic(protocol, args.patients, csv)
        t0 = time.perf_counter()
        patients = load_batch(csv, protocol.cohort, protocol.disease)
        t_load = time.perf_counter() - t0
    warm = patients.take(np.arange(min(50, patients.n)))
    simulate_batch(protocol, warm, 1.0, 50, 1)  # compile / load the cached kernels
    base = peak_mb()
    options = ExecOptions(workers=args.workers, progress=False)
    t0 = time.perf_counter()
    plan, arrays = simulate_batch(protocol, patients, args.years, args.draws, 1, options=options)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = build_batch_dataset(protocol, patients, plan, arrays, 1, args.years, list(patients.ids), "kept")
    table = risk_table(ds)
    t_table = time.perf_counter() - t0
    steps = patients.n * 2 * args.draws * plan.n_steps
    print(f"{patients.n} patients x 2 options x {args.draws} draws ({plan.parameter_draws} parameter draws) x "
          f"{plan.n_steps} monthly steps = {steps / 1e9:.2f} G patient-steps")
    print(f"load + check CSV:        {t_load:8.2f} s")
    print(f"simulate + summarize:    {t_sim:8.2f} s   ({steps / t_sim / 1e6:.0f} M patient-steps/s)")
    print(f"Dataset + ranked table:  {t_table:8.2f} s")
    print(f"peak RSS: {base:.0f} MB before the batch, {peak_mb():.0f} MB after")
    print(f"top patient: {table.iloc[0]['patient']}, risk reduction of any event "
          f"{-table.iloc[0]['difference']:.3f}")


if __name__ == "__main__":
    main()
