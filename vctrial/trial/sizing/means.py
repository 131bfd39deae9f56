"""Continuous endpoint: a difference in means (common or per-arm SD), normal approximation."""

from __future__ import annotations

import math

from scipy import special

from vctrial.trial.sizing.inputs import _dropout, _err, _float
from vctrial.trial.sizing.result import Design, _finish_fixed_n
from vctrial.trial.sizing.sequential import _z, crossing


def design_continuous(*, mean_difference=None, sd=None, sd_active=None, dropout=None, common: dict) -> Design:
    alpha, sided, power, r, weights, seq = (common[k] for k in ("alpha", "sided", "power", "r", "weights", "seq"))
    delta = _float("--mean-difference", mean_difference)
    if delta is None or delta == 0:
        raise _err("--mean-difference", "needed and must not be 0 (active minus control)")
    sc = _float("--sd", sd)
    if sc is None or sc <= 0:
        raise _err("--sd", f"needed and must be > 0, got {sd!r}")
    se = _float("--sd-active", sd_active, sc)
    if se <= 0:
        raise _err("--sd-active", f"must be > 0, got {sd_active!r}")
    f = _dropout(dropout)
    qe = r / (1 + r)
    alpha1 = alpha / 2 if sided == "two" else alpha
    za, zb = _z(alpha1), _z(1.0 - power)
    n_fix = (za + zb) ** 2 * (sc ** 2 / (1 - qe) + se ** 2 / qe) / delta ** 2
    inputs = [("mean difference", f"{delta:g} (active - control)"),
              ("standard deviation", f"{sc:g}" + (f" control, {se:g} active" if se != sc else " (both arms)"))]
    if f:
        inputs.append(("dropout before the visit", f"{f:g} (N enrolled = N analysed / {1 - f:g})"))
    design = Design("continuous", "normal approximation", alpha, sided, power, r, weights, seq, inputs,
                    0.0, 0.0, 0, (0, 0))
    design.params = {"delta": delta, "sd": sc, "sd_active": se, "dropout": f}
    _finish_fixed_n(design, n_fix, f)
    n_an = design.n_round * (1 - f)
    drift = abs(delta) / math.sqrt(sc ** 2 / (1 - qe) + se ** 2 / qe) * math.sqrt(n_an)
    up, _ = crossing(seq.fractions, seq.efficacy, seq.futility, drift)
    other_tail = float(special.ndtr(-drift - za)) if sided == "two" and seq.looks == 1 else 0.0
    design.power_rounded = float(up.sum()) + other_tail
    return design
