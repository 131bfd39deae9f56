"""Reading the options of ``vctrial design`` (command-line strings or Python values): a mistake stops
with one :class:`~vctrial.errors.SpecError` naming the option."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from vctrial.errors import SpecError

CMD = "command line"


def _err(option: str, reason: str) -> SpecError:
    return SpecError(CMD, option, reason)


def _floats(option: str, value) -> list[float]:
    """A number or a comma-separated list of numbers."""
    if value is None:
        return []
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if not value.strip() or any(p == "" for p in parts):
            raise _err(option, f"expected a number or comma-separated numbers, got {value!r}")
        try:
            out = [float(p) for p in parts]
        except ValueError:
            raise _err(option, f"expected a number or comma-separated numbers, got {value!r}") from None
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        out = [float(value)]
    else:
        try:
            out = [float(v) for v in value]
        except (TypeError, ValueError):
            raise _err(option, f"expected numbers, got {value!r}") from None
        if not out:
            raise _err(option, "expected at least one number")
    if not all(math.isfinite(v) for v in out):
        raise _err(option, f"must be finite, got {value!r}")
    return out


def _float(option: str, value, default=None) -> float | None:
    if value is None:
        return default
    v = _floats(option, value)
    if len(v) != 1:
        raise _err(option, f"expected one number, got {value!r}")
    return v[0]


def _int(option: str, value, default: int) -> int:
    if value is None:
        return default
    v = _float(option, value)
    if v != int(v):
        raise _err(option, f"expected a whole number, got {value!r}")
    return int(v)


def _positive(option: str, values: list[float]) -> list[float]:
    if any(v <= 0 for v in values):
        raise _err(option, f"must be > 0, got {_show(values)}")
    return values


def _breaks(option: str, value, pieces: int, of: str) -> list[float]:
    """Breakpoints (months) between the pieces of a piecewise value: increasing, > 0, one fewer."""
    ends = _floats(option, value)
    if len(ends) != pieces - 1:
        raise _err(option, f"give {pieces - 1} breakpoint{'s' * (pieces != 2)} (months) for the {pieces} values "
                   f"of {of}, got {len(ends)}")
    if any(e <= 0 for e in ends) or any(b <= a for a, b in zip(ends, ends[1:])):
        raise _err(option, f"must be increasing months > 0, got {_show(ends)}")
    return ends


def _show(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def parse_allocation(value) -> tuple[float, tuple[int, int] | None]:
    """Active:control allocation: '2:1', '2' or 2 (active per control). Returns (r, integer weights
    (active, control) up to 20 each, or None when r has no such form)."""
    option = "--allocation"
    if value is None:
        return 1.0, (1, 1)
    if isinstance(value, str) and ":" in value:
        parts = value.split(":")
        try:
            a, c = (float(p) for p in parts)
        except ValueError:
            raise _err(option, f"expected ACTIVE:CONTROL (e.g. 2:1) or a ratio, got {value!r}") from None
        if not (a > 0 and c > 0 and math.isfinite(a) and math.isfinite(c)):
            raise _err(option, f"must be positive, got {value!r}")
        r = a / c
    else:
        r = _float(option, value)
        if not (r > 0):
            raise _err(option, f"must be positive (active patients per control patient), got {value!r}")
    f = Fraction(r).limit_denominator(20)
    ok = abs(float(f) - r) < 1e-9 and f.numerator <= 20 and f.denominator <= 20
    return r, ((f.numerator, f.denominator) if ok else None)


def _dropout(value) -> float:
    f = _float("--dropout", value, 0.0)
    if not 0.0 <= f < 1.0:
        raise _err("--dropout", f"must be a fraction in [0, 1), got {value!r}")
    return f
