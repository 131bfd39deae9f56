"""Binary endpoint: two proportions by the normal approximation, pooled variance under H0 with unpooled
under H1 (Fleiss, Tytun & Ury 1980) or unpooled throughout (Chow, Shao & Wang), optionally with the
Fleiss–Tytun–Ury continuity correction."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from vctrial.trial.sizing.inputs import _dropout, _err, _float
from vctrial.trial.sizing.result import Design, _finish_fixed_n
from vctrial.trial.sizing.sequential import Sequential, _z, crossing_means


def binary_n(p_c: float, p_e: float, alpha1: float, power: float, r: float, variance: str) -> float:
    """Total N analysed for two proportions (normal approximation, no continuity correction)."""
    qe = r / (1 + r)
    qc = 1 - qe
    za, zb = _z(alpha1), _z(1.0 - power)
    v1 = p_c * (1 - p_c) / qc + p_e * (1 - p_e) / qe
    if variance == "pooled":
        pbar = qc * p_c + qe * p_e
        v0 = pbar * (1 - pbar) * (1 / qc + 1 / qe)
    else:
        v0 = v1
    return (za * math.sqrt(v0) + zb * math.sqrt(v1)) ** 2 / (p_e - p_c) ** 2


def continuity_corrected(n: float, p_c: float, p_e: float, r: float) -> float:
    """Fleiss, Tytun & Ury (1980): n_c = n'/4 (1 + √(1 + 2(r + 1)/(r n' |δ|)))², n' the uncorrected control
    arm size; returns the corrected total (1 + r) n_c."""
    nc = n / (1 + r)
    nc_cc = nc / 4.0 * (1.0 + math.sqrt(1.0 + 2.0 * (r + 1) / (r * nc * abs(p_e - p_c)))) ** 2
    return nc_cc * (1 + r)


def design_binary(*, p_control=None, p_active=None, variance="pooled", continuity=False, dropout=None,
                  common: dict) -> Design:
    alpha, sided, power, r, weights, seq = (common[k] for k in ("alpha", "sided", "power", "r", "weights", "seq"))
    pc = _float("--p-control", p_control)
    pe = _float("--p-active", p_active)
    for opt, p in (("--p-control", pc), ("--p-active", pe)):
        if p is None or not 0.0 < p < 1.0:
            raise _err(opt, f"needed, a proportion strictly between 0 and 1, got {p!r}")
    if pc == pe:
        raise _err("--p-active", "must differ from --p-control (no effect to detect)")
    if variance not in ("pooled", "unpooled"):
        raise _err("--variance", f"must be pooled or unpooled, got {variance!r}")
    if continuity and seq.looks > 1:
        raise _err("--continuity-correction", "applies to a fixed design (no --looks)")
    f = _dropout(dropout)
    alpha1 = alpha / 2 if sided == "two" else alpha
    n_fix = binary_n(pc, pe, alpha1, power, r, variance)
    inputs = [("proportions", f"control {pc:g}, active {pe:g} (difference {pe - pc:+g})"),
              ("variance", "pooled under H0, unpooled under H1 (Fleiss)" if variance == "pooled"
               else "unpooled (Wald)")]
    method = "normal approximation"
    if continuity:
        n_fix = continuity_corrected(n_fix, pc, pe, r)
        method += ", Fleiss-Tytun-Ury continuity correction"
    if f:
        inputs.append(("dropout before the visit", f"{f:g} (N enrolled = N analysed / {1 - f:g})"))
    design = Design("binary", method, alpha, sided, power, r, weights, seq, inputs, 0.0, 0.0, 0, (0, 0))
    design.params = {"p_c": pc, "p_e": pe, "variance": variance, "continuity": bool(continuity), "dropout": f}
    _finish_fixed_n(design, n_fix, f)
    nc, ne = (x * (1 - f) for x in design.arms_round)
    design.power_rounded = binary_power(pc, pe, nc, ne, alpha1, variance, continuity, sided, seq)
    return design


def binary_power(pc, pe, nc, ne, alpha1, variance, continuity, sided, seq: Sequential) -> float:
    """Power of the two-proportion test at nc, ne patients analysed (the design's normal approximation)."""
    delta = abs(pe - pc)
    if continuity:
        delta = max(delta - 0.5 * (1 / nc + 1 / ne), 0.0)
    v1 = pc * (1 - pc) / nc + pe * (1 - pe) / ne
    if variance == "pooled":
        pbar = (nc * pc + ne * pe) / (nc + ne)
        v0 = pbar * (1 - pbar) * (1 / nc + 1 / ne)
    else:
        v0 = v1
    sd = math.sqrt(v1 / v0)
    mean = delta / math.sqrt(v0)
    s = seq
    means = mean * np.sqrt(s.fractions)
    up, _ = crossing_means(s.fractions, s.efficacy, s.futility, means, np.full(s.looks, sd))
    p = float(up.sum())
    if sided == "two" and s.looks == 1:
        p += float(special.ndtr((-s.efficacy[0] - mean) / sd))
    return p
