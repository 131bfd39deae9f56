"""A design checked by simulation (``--verify N``): its protocol simulated and the calculated power
set against the simulated one; :func:`run_design` sizes, writes and verifies."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from vctrial.trial.sizing.dispatch import design
from vctrial.trial.sizing.inputs import _err, _int
from vctrial.trial.sizing.proportions import binary_power
from vctrial.trial.sizing.protocol import companion_paths, write_protocol
from vctrial.trial.sizing.result import Design, Verification
from vctrial.trial.sizing.sequential import _z


def binary_rejections(ds, d: Design) -> np.ndarray:
    """Per replicate, whether the design's two-proportion test rejects on the simulated counts."""
    p = d.params
    x = ds["n_events"].sel(arm=["control", "active"]).values.astype(float)
    n = ds["n_analysed"].sel(arm=["control", "active"]).values.astype(float)
    pc_hat, pe_hat = x[:, 0] / n[:, 0], x[:, 1] / n[:, 1]
    diff = pc_hat - pe_hat  # the simulated event is the outcome the active arm makes rarer: benefit is diff > 0
    if p["continuity"]:
        cc = 0.5 * (1 / n[:, 0] + 1 / n[:, 1])
        diff = np.sign(diff) * np.maximum(np.abs(diff) - cc, 0.0)
    if p["variance"] == "pooled":
        pbar = (x[:, 0] + x[:, 1]) / (n[:, 0] + n[:, 1])
        var = pbar * (1 - pbar) * (1 / n[:, 0] + 1 / n[:, 1])
    else:
        var = pc_hat * (1 - pc_hat) / n[:, 0] + pe_hat * (1 - pe_hat) / n[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, diff / np.sqrt(var), 0.0)
    if d.sided == "two":
        return np.abs(z) > _z(d.alpha / 2)
    return z > _z(d.alpha)


def verify(d: Design, protocol: str | Path, replicates: int, seed: int, exec_options, label: str | None = None
           ) -> Verification:
    """Simulate the written protocol and set ``d.verification``."""
    from vctrial import api
    from vctrial.results import binomial_interval

    if replicates < 2:
        raise _err("--verify", f"must be at least 2 simulated trials, got {replicates}")
    ds = api.run(str(protocol), replicates, seed, exec_options=exec_options)
    if d.endpoint == "binary":
        reject = binary_rejections(ds, d)
        nc, ne = d.params["protocol_arms"]
        calc = binary_power(d.params["p_c"], d.params["p_e"], nc, ne, d.alpha1, d.params["variance"],
                            d.params["continuity"], d.sided, d.seq)
        what = (f"two-proportion z-test ({d.params['variance']} variance"
                + (", continuity corrected" if d.params["continuity"] else "") + ") on the simulated counts")
    else:
        reject = ds["reject"].values.astype(bool)
        calc = d.power_rounded if d.assurance is None else d.assurance
        what = "the protocol's " + ("log-rank test" if d.endpoint == "survival" else "ANCOVA t-test")
    k = int(reject.sum())
    lo, hi = binomial_interval(k, int(reject.size))
    d.verification = Verification(int(reject.size), int(seed), float(calc), k / reject.size, lo, hi, what,
                                  label or Path(protocol).name)
    return d.verification


def run_design(endpoint: str = "survival", *, out=None, verify_replicates=None, seed: int = 1, exec_options=None,
               **kwargs) -> Design:
    """Size a design; with ``out`` write it as a protocol; with ``verify_replicates`` simulate it."""
    if out is not None:
        companion_paths(out)
        for f in companion_paths(out):
            if f.exists() or f.is_symlink():
                raise _err("--out", f"{f} exists; vctrial design never overwrites a file: choose another name")
    reps = None if verify_replicates is None else _int("--verify", verify_replicates, 0)
    if reps is not None and reps < 2:
        raise _err("--verify", f"must be at least 2 simulated trials, got {verify_replicates!r}")
    d = design(endpoint, **kwargs)
    if out is None and reps is None:
        return d
    if out is not None:
        write_protocol(d, out)
    if reps is not None:
        if exec_options is None:
            from vctrial.execute import ExecOptions

            exec_options = ExecOptions(workers=0, progress=False)
        if out is not None:
            verify(d, out, reps, seed, exec_options)
        else:
            with tempfile.TemporaryDirectory(prefix="vctrial-design-") as tmp:
                files = write_protocol(d, Path(tmp) / "design.yaml")
                verify(d, files[0], reps, seed, exec_options, label="the design written as a temporary protocol")
                d.written = []
    return d
