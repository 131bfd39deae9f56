"""Acceptance intervals for Monte Carlo tests, computed from the number of replicates.

A statistical test here asserts that a simulated count lies in the central ``level`` region of its
exact binomial distribution under the reference value (99.9% by default: a correct simulator fails
one such check in a thousand seeds, and every seed is fixed so the outcome is deterministic).
"""

from scipy import stats

LEVEL = 0.999


def binomial_region(p: float, n: int, level: float = LEVEL) -> tuple[int, int]:
    """Central ``level`` acceptance region [lo, hi] of a Binomial(n, p) count (exact quantiles)."""
    tail = (1.0 - level) / 2.0
    lo, hi = stats.binom.ppf([tail, 1.0 - tail], n, p)
    return int(lo), int(hi)


def assert_binomial(count: int, n: int, p: float, level: float = LEVEL, what: str = "") -> None:
    """Assert ``count`` successes in ``n`` replicates agree with the probability ``p``."""
    lo, hi = binomial_region(p, n, level)
    assert lo <= count <= hi, (f"{what}: {count}/{n} = {count / n:.4f} outside the {level:.1%} binomial "
                               f"region [{lo}, {hi}] = [{lo / n:.4f}, {hi / n:.4f}] around p = {p:.4f}")
