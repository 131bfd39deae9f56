""":func:`design`, the entry point: checks the options every endpoint shares, builds the group-sequential
looks and hands the rest to the endpoint's sizing."""

from __future__ import annotations

from vctrial.trial import sequential  # the bounds (vctrial/trial/sequential.py)
from vctrial.trial.sizing.inputs import _err, _float, _floats, _int, _show, parse_allocation
from vctrial.trial.sizing.means import design_continuous
from vctrial.trial.sizing.proportions import design_binary
from vctrial.trial.sizing.result import Design
from vctrial.trial.sizing.sequential import sequential_design
from vctrial.trial.sizing.survival import design_survival

ENDPOINTS = ("survival", "continuous", "binary")


def design(endpoint: str = "survival", *, alpha=0.025, sided="one", power=0.9, allocation=None, looks=None,
           fractions=None, spending="obf", gamma=None, futility=None, futility_gamma=None, **kwargs) -> Design:
    """Size a design (see the module docstring); keyword arguments are those of ``vctrial design``."""
    if endpoint not in ENDPOINTS:
        raise _err("--endpoint", f"must be one of {', '.join(ENDPOINTS)}, got {endpoint!r}")
    if sided not in ("one", "two"):
        raise _err("--sided", f"must be one or two, got {sided!r}")
    a = _float("--alpha", alpha)
    if not (0.0 < a < (1.0 if sided == "two" else 0.5)):
        top = "1" if sided == "two" else "0.5"
        raise _err("--alpha", f"must be between 0 and {top} ({sided}-sided), got {alpha!r}")
    alpha1 = a / 2 if sided == "two" else a
    pw = _float("--power", power)
    if not (0.0 < pw < 1.0):
        raise _err("--power", f"must be strictly between 0 and 1, got {power!r}")
    if pw <= alpha1:
        raise _err("--power", f"must exceed the one-sided alpha {alpha1:g}, got {power!r}")
    r, weights = parse_allocation(allocation)
    k = _int("--looks", looks, 1)
    if k < 1 or k > 20:
        raise _err("--looks", f"must be between 1 and 20, got {looks!r}")
    if fractions is not None:
        t = _floats("--fractions", fractions)
        if len(t) != k:
            raise _err("--fractions", f"give {k} fractions (one per look), got {len(t)}")
        if not (all(0 < x <= 1 for x in t) and all(b > x for x, b in zip(t, t[1:])) and t[-1] == 1.0):
            raise _err("--fractions", f"must increase within (0, 1] and end with 1, got {_show(t)}")
    else:
        t = [(i + 1) / k for i in range(k)]
    fams = sequential.SPENDING_FAMILIES
    if spending not in fams:
        raise _err("--spending", f"must be one of {', '.join(fams)}, got {spending!r}")
    if futility is not None and futility not in fams:
        raise _err("--futility", f"must be one of {', '.join(fams)}, got {futility!r}")
    g = _float("--gamma", gamma)
    fg = _float("--futility-gamma", futility_gamma)
    if spending == "power" and g is not None and g <= 0:
        raise _err("--gamma", f"the power family needs gamma > 0, got {gamma!r}")
    if futility == "power" and fg is not None and fg <= 0:
        raise _err("--futility-gamma", f"the power family needs gamma > 0, got {futility_gamma!r}")
    if k == 1 and futility is not None:
        raise _err("--futility", "needs interim looks (--looks 2 or more)")
    if futility is not None and pw <= 0.5:
        raise _err("--power", f"beta-spending futility needs power above 0.5 (beta below 0.5), got {power!r}")
    seq = sequential_design(k, t, alpha1, pw, spending, g, futility, fg)
    common = {"alpha": a, "sided": sided, "power": pw, "r": r, "weights": weights, "seq": seq}
    allowed = {
        "survival": {"hazard_ratio", "hazard_ratio_ci", "hazard_ratio_breaks", "control_median", "control_hazard",
                     "control_hazard_breaks", "dropout_rate", "dropout_breaks", "accrual_rate", "accrual_duration",
                     "study_duration", "method", "information"},
        "continuous": {"mean_difference", "sd", "sd_active", "dropout"},
        "binary": {"p_control", "p_active", "variance", "continuity", "dropout"},
    }[endpoint]
    protocol_keys = {"visit_month", "accrual_duration"}
    given = {key: v for key, v in kwargs.items() if v is not None and v is not False}
    for key in given:
        if key not in allowed and not (endpoint != "survival" and key in protocol_keys):
            raise _err("--" + key.replace("_", "-"), f"does not apply to a {endpoint} endpoint")
    extra = {key: given.pop(key) for key in list(given) if key in protocol_keys and endpoint != "survival"}
    if endpoint == "survival":
        d = design_survival(common=common, **given)
    elif endpoint == "continuous":
        d = design_continuous(common=common, **given)
    else:
        d = design_binary(common=common, **given)
    d.params.update(extra)
    if k > 1:
        d.notes.append("expected values assume the trial stops at the first bound crossed (futility included)")
    return d
