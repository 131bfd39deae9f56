"""Group-sequential boundaries: Lan–DeMets spending and exact recursive numerical integration.

The canonical joint distribution (Jennison & Turnbull 2000, ch. 3): at information fractions
t_1 < ... < t_K the standardized statistics Z_k (oriented so that benefit is positive) are jointly
normal with E[Z_k] = drift·√t_k and Cov(Z_j, Z_k) = √(t_j / t_k) for j ≤ k; equivalently the
score process S_k = Z_k √t_k has independent increments N(drift·Δt, Δt).

Crossing probabilities are computed exactly up to quadrature error by the recursion of Armitage,
McPherson & Rowe (1969) on the grid of Jennison & Turnbull (2000, ch. 19): the sub-density of Z_k
on the continuation region is carried from look to look with Simpson's rule on about 12·r points
concentrated around the mean, then integrated against the normal transition kernel. With the
default r = 18 probabilities are accurate to about 1e-7, well beyond what any table prints. A look
that adds little information to the one before (under about 3% of it: dozens of looks or more, or a
look capped by the maximum duration) is integrated against the sub-density interpolated on a finer
grid instead, where Simpson's rule would break down (see :func:`_narrow`).

Efficacy bounds b_k spend α(t) − α(t_{k−1}) of type I error at look k (Lan & DeMets 1983), ignoring
any futility bound (futility is non-binding: stopping for futility can only lower the type I
error). Futility bounds a_k spend type II error by a β-spending function under the design drift,
with the efficacy bounds in place, and the drift is solved so that a_K = b_K (the gsDesign
``test.type = 4`` construction); or they follow a conditional-power rule. Bounds can be recomputed
at each look from the observed information fractions (:func:`updated_bounds`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import optimize, special

SPENDING_FAMILIES = ("obf", "pocock", "hsd", "power")
GRID_R = 18
_BIG = 40.0  # |z| beyond this is treated as infinite
_NARROW = 3.0  # σ·r below which a step is integrated against the interpolated sub-density (see _narrow)
_R_MAX = 60  # grid parameter of the looks before such short steps (see _grid_r)


def spend(family: str, level: float, t, gamma: float | None = None) -> np.ndarray:
    """Cumulative error spent by information fraction ``t`` (array-like in [0, 1]).

    Args:
        family: ``obf`` (Lan–DeMets O'Brien–Fleming type, 2 − 2Φ(Φ⁻¹(1 − level/2)/√t)),
            ``pocock`` (Lan–DeMets Pocock type, level·ln(1 + (e − 1)t)),
            ``hsd`` (Hwang–Shih–DeCani, level·(1 − e^(−γt))/(1 − e^(−γ)); γ = 0 is linear),
            ``power`` (Kim–DeMets, level·t^γ, γ > 0).
        level: total error to spend (one-sided α, or β for futility).
        gamma: the parameter of ``hsd`` (default −4) and ``power`` (default 1).
    """
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    if family == "obf":
        with np.errstate(divide="ignore"):
            q = special.ndtri(1.0 - level / 2.0) / np.sqrt(t)
        out = 2.0 * special.ndtr(-q)
    elif family == "pocock":
        out = level * np.log1p((math.e - 1.0) * t)
    elif family == "hsd":
        g = -4.0 if gamma is None else float(gamma)
        out = level * t if abs(g) < 1e-12 else level * -np.expm1(-g * t) / -np.expm1(-g)
    elif family == "power":
        g = 1.0 if gamma is None else float(gamma)
        if not g > 0.0:
            raise ValueError(f"gamma: the power family needs gamma > 0, got {g}")
        out = level * t**g
    else:
        raise ValueError(f"spending: must be one of {', '.join(SPENDING_FAMILIES)}, got {family!r}")
    return np.minimum(out, level)


# --------------------------------------------------------------------------------------------
# Recursive numerical integration.
# --------------------------------------------------------------------------------------------


def _grid(lo: float, hi: float, mean: float, r: int, breaks=()) -> tuple[np.ndarray, np.ndarray]:
    """Points and Simpson weights on (lo, hi) for a density centred near ``mean`` (J&T §19.2);
    ``breaks`` are added as points (where the density may jump)."""
    i = np.arange(1, 6 * r, dtype=np.float64)
    x = np.where(i < r, -3.0 - 4.0 * np.log(r / i),
                 np.where(i <= 5 * r, -3.0 + 3.0 * (i - r) / (2.0 * r), 3.0 + 4.0 * np.log(r / (6.0 * r - i))))
    x = x + mean
    if len(breaks):
        x = np.union1d(x, [b for b in breaks if x[0] < b < x[-1]])
    inner = x[(x > lo) & (x < hi)]
    pts = np.concatenate(([lo] if lo > x[0] else [], inner, [hi] if hi < x[-1] else []))
    if pts.size < 2:  # the continuation region is narrower than one grid step
        pts = np.array([max(lo, x[0]), min(hi, x[-1])])
        if pts[1] <= pts[0]:
            return np.array([pts[0]]), np.array([0.0])
    mid = 0.5 * (pts[:-1] + pts[1:])
    z = np.empty(2 * pts.size - 1)
    z[0::2] = pts
    z[1::2] = mid
    h = np.diff(pts)
    w = np.zeros_like(z)
    w[0:-1:2] += h / 6.0
    w[2::2] += h / 6.0
    w[1::2] = 4.0 * h / 6.0
    return z, w


@dataclass
class _State:
    """Sub-density of Z_k on the continuation region: points z, weights·density."""

    t: float
    z: np.ndarray
    wg: np.ndarray  # Simpson weight × sub-density
    dens: np.ndarray  # the sub-density at z
    short_next: bool = False  # the step to the next look is short: integrate it against the interpolated density


def _narrow(state: _State, t: float) -> tuple[bool, float]:
    """Whether the step from ``state.t`` to ``t`` is too short for Simpson's rule on the state's grid, and
    the standard deviation of the transition kernel in the state's z.

    Given Z at state.t = u, the kernel of the next look is normal in u with standard deviation
    σ = √((t − state.t) / state.t). Simpson's rule on the grid (points 3/(4r) apart near the mean,
    further apart in the tails) needs σ·r ≥ 3 or so, look after look. A shorter step (dozens of looks
    or more; a look that adds almost no information, as one capped by the maximum duration) is
    integrated exactly against the sub-density interpolated linearly between the points of a finer
    grid (r = _R_MAX; bounds within about 2e-4 on the z scale), which stays exact as σ → 0; the grid
    of the look before it is built finer for that (:func:`_grid_r`). Simpson's rule alone failed
    there: for looks at 0.5, 0.5 + 1e-9 and 1 it gave a final bound of 3.7 instead of 1.97, and NaN
    (densities growing without bound in the grid's coarse tails) for a thousand looks."""
    sigma = math.sqrt(max(t - state.t, 0.0) / state.t)
    return state.short_next or sigma == 0.0, sigma


def _grid_r(t: np.ndarray, k: int, r: int) -> tuple[int, bool]:
    """(grid parameter, short step) for the sub-density at look k: ``r`` and Simpson's rule when the
    step to look k + 1 is long enough for it; else a grid at least _R_MAX fine, and the interpolated
    sub-density (see :func:`_narrow`)."""
    if k + 1 >= len(t) or math.sqrt(max(t[k + 1] - t[k], 0.0) / t[k]) * r >= _NARROW:
        return r, False
    return max(r, _R_MAX), True


def _linear_pieces(state: _State) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cells [u0, u1] of the state's grid and the sub-density on each as alpha + beta·u."""
    u0, u1 = state.z[:-1], state.z[1:]
    f0, f1 = state.dens[:-1], state.dens[1:]
    h = u1 - u0
    beta = np.divide(f1 - f0, h, out=np.zeros_like(h), where=h > 0)
    alpha = f0 - beta * u0
    return u0, u1, alpha, beta


def _linear_times_normal(state: _State, c: np.ndarray, sigma: float) -> np.ndarray:
    """∫ f(u) N(u; c_i, σ) du for each c_i, f the state's sub-density, linear between grid points."""
    u0, u1, alpha, beta = _linear_pieces(state)
    if u0.size == 0:
        return np.zeros(np.shape(c))
    c = np.asarray(c, dtype=np.float64)[:, None]
    a, b = (u0[None, :] - c) / sigma, (u1[None, :] - c) / sigma
    mass = special.ndtr(b) - special.ndtr(a)
    pdf = (np.exp(-0.5 * b * b) - np.exp(-0.5 * a * a)) / math.sqrt(2.0 * math.pi)
    return (alpha[None, :] * mass + beta[None, :] * (c * mass - sigma * pdf)).sum(axis=1)


def _linear_times_cdf(state: _State, c: float, sigma: float) -> float:
    """∫ f(u) Φ((u − c)/σ) du, f the state's sub-density, linear between grid points."""
    u0, u1, alpha, beta = _linear_pieces(state)
    if u0.size == 0:
        return 0.0

    def antiderivative(u):  # of (alpha + beta·u) Φ((u − c)/σ) in u
        y = (u - c) / sigma
        cdf, pdf = special.ndtr(y), np.exp(-0.5 * y * y) / math.sqrt(2.0 * math.pi)
        return (sigma * (alpha + beta * c) * (y * cdf + pdf)
                + beta * sigma * sigma * 0.5 * ((y * y - 1.0) * cdf + y * pdf))

    return float((antiderivative(u1) - antiderivative(u0)).sum())


def _linear_mass(state: _State) -> float:
    u0, u1, alpha, beta = _linear_pieces(state)
    return float((alpha * (u1 - u0) + 0.5 * beta * (u1 * u1 - u0 * u0)).sum())


def _exceed(state: _State | None, t: float, bound: float, drift: float, upper: bool) -> float:
    """P(continue to this look and Z_t > bound) (upper) or < bound (lower)."""
    if bound >= _BIG:
        return 0.0 if upper else _mass(state, t, drift)
    if bound <= -_BIG:
        return _mass(state, t, drift) if upper else 0.0
    mean = drift * math.sqrt(t)
    if state is None:
        x = bound - mean
        return float(special.ndtr(-x) if upper else special.ndtr(x))
    dt = t - state.t
    narrow, sigma = _narrow(state, t)
    if narrow:  # P(Z_t > bound | u) = Φ((u − c)/σ): exact against the interpolated sub-density
        c = (bound * math.sqrt(t) - drift * dt) / math.sqrt(state.t)
        above = _linear_times_cdf(state, c, sigma) if sigma > 0 else _linear_mass_above(state, c)
        return max(above, 0.0) if upper else max(_linear_mass(state) - above, 0.0)
    s = math.sqrt(dt)
    x = (bound * math.sqrt(t) - state.z * math.sqrt(state.t) - drift * dt) / s
    p = special.ndtr(-x) if upper else special.ndtr(x)
    return float(np.dot(state.wg, p))


def _linear_mass_above(state: _State, c: float) -> float:
    """∫_{u > c} f(u) du (a step of no information: Z does not move)."""
    u0, u1, alpha, beta = _linear_pieces(state)
    lo = np.clip(c, u0, u1)
    return float((alpha * (u1 - lo) + 0.5 * beta * (u1 * u1 - lo * lo)).sum())


def _mass(state: _State | None, t: float, drift: float) -> float:
    return 1.0 if state is None else float(state.wg.sum())


def _advance(state: _State | None, t: float, lo: float, hi: float, drift: float, grid: tuple[int, bool]) -> _State:
    """Sub-density of Z at fraction t restricted to (lo, hi) (continuation region)."""
    r, short_next = grid
    mean = drift * math.sqrt(t)
    breaks = ()
    if state is not None and _narrow(state, t)[0]:
        # after a short step the density still drops where the last look's region ended: make those points
        edges = np.array([state.z[0], state.z[-1]])
        breaks = (edges * math.sqrt(state.t) + drift * (t - state.t)) / math.sqrt(t)
    z, w = _grid(max(lo, -_BIG), min(hi, _BIG), mean, r, breaks)
    if state is None:
        dens = np.exp(-0.5 * (z - mean) ** 2) / math.sqrt(2.0 * math.pi)
    elif _narrow(state, t)[0]:
        # f_t(z) = √(t/t0) ∫ f(u) N(u; c(z), σ) du with c(z) = (z√t − drift·Δt)/√t0
        dt = t - state.t
        narrow, sigma = _narrow(state, t)
        c = (z * math.sqrt(t) - drift * dt) / math.sqrt(state.t)
        scale = math.sqrt(t / state.t)
        if sigma > 0:
            dens = scale * _linear_times_normal(state, c, sigma)
        else:
            dens = scale * np.interp(c, state.z, state.dens, left=0.0, right=0.0)
    else:
        dt = t - state.t
        s = math.sqrt(dt)
        x = (z[:, None] * math.sqrt(t) - state.z[None, :] * math.sqrt(state.t) - drift * dt) / s
        kern = np.exp(-0.5 * x * x) * (math.sqrt(t) / (s * math.sqrt(2.0 * math.pi)))
        dens = kern @ state.wg
    return _State(t, z, w * dens, dens, short_next)


def crossing_probabilities(fractions, upper, lower=None, drift: float = 0.0, r: int = GRID_R
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of first crossing each bound at each look (like gsDesign's gsProbability).

    Args:
        fractions: (K,) increasing information fractions (any positive scale).
        upper: (K,) efficacy bounds on the z scale (``inf`` = none).
        lower: (K,) futility bounds (``-inf`` or None = none); the trial stops at either.
        drift: E[Z_k] = drift·√t_k.

    Returns:
        (upper_k, lower_k): probability of stopping at look k by crossing the upper (lower) bound.
    """
    t = np.asarray(fractions, dtype=np.float64)
    b = np.asarray(upper, dtype=np.float64)
    a = np.full_like(b, -np.inf) if lower is None else np.asarray(lower, dtype=np.float64)
    _check_fractions(t)
    up = np.zeros(t.size)
    low = np.zeros(t.size)
    state = None
    for k in range(t.size):
        up[k] = _exceed(state, t[k], b[k], drift, True)
        low[k] = _exceed(state, t[k], a[k], drift, False)
        if k + 1 < t.size:
            state = _advance(state, t[k], a[k], b[k], drift, _grid_r(t, k, r))
    return up, low


def _check_fractions(t: np.ndarray) -> None:
    if t.ndim != 1 or t.size == 0:
        raise ValueError("fractions: must be a non-empty 1-D sequence")
    if not (np.all(t > 0.0) and np.all(np.diff(t) > 0.0)):
        raise ValueError(f"fractions: must be positive and increasing, got {t.tolist()}")


def _solve_bound(target: float, f) -> float:
    """The z where the decreasing crossing probability f(z) equals target."""
    if target <= 1e-15:
        return math.inf
    lo, hi = -_BIG + 1.0, _BIG - 1.0
    if f(hi) >= target:
        return hi
    if f(lo) <= target:
        return lo
    return float(optimize.brentq(lambda z: f(z) - target, lo, hi, xtol=1e-10, rtol=1e-12))


def _solve_lower(target: float, f) -> float:
    """The z where the increasing probability f(z) of falling below z equals target."""
    if target <= 1e-15:
        return -math.inf
    lo, hi = -_BIG + 1.0, _BIG - 1.0
    if f(lo) >= target:
        return lo
    if f(hi) <= target:
        return hi
    return float(optimize.brentq(lambda z: f(z) - target, lo, hi, xtol=1e-10, rtol=1e-12))


# --------------------------------------------------------------------------------------------
# Designs.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpendingSpec:
    """A spending function: family, total error and parameter."""

    family: str
    level: float
    gamma: float | None = None

    def at(self, t) -> np.ndarray:
        return spend(self.family, self.level, t, self.gamma)


@dataclass(frozen=True)
class Bounds:
    """Boundaries of a one-sided group-sequential design on the z scale (benefit positive).

    Attributes:
        fractions: (K,) information fractions used for the correlation of the statistics.
        efficacy: (K,) stop and reject H0 when Z_k ≥ efficacy[k].
        futility: (K,) stop without rejecting when Z_k < futility[k] (``-inf`` = no bound);
            non-binding, so it does not enter the type I error computation.
        alpha_spent: (K,) cumulative type I error spent (efficacy bounds alone, under H0).
        beta_spent: (K,) cumulative type II error spent by the futility bounds under the design
            drift (zeros without beta spending).
        drift: the design drift E[Z at full information] under the alternative (NaN if none).
    """

    fractions: np.ndarray
    efficacy: np.ndarray
    futility: np.ndarray
    alpha_spent: np.ndarray
    beta_spent: np.ndarray = field(default_factory=lambda: np.zeros(0))
    drift: float = math.nan

    @property
    def looks(self) -> int:
        return int(self.fractions.size)


def efficacy_bounds(fractions, alpha_spending: SpendingSpec, spend_at=None, r: int = GRID_R) -> tuple[np.ndarray, np.ndarray]:
    """Efficacy bounds by α spending, computed look by look under H0 without futility.

    Args:
        fractions: (K,) information fractions for the correlation structure.
        alpha_spending: the spending function.
        spend_at: (K,) fractions at which the spending function is evaluated (default the
            same); pass 1.0 for the final look to spend all remaining α whatever the information.

    Returns:
        (bounds, cumulative alpha spent).
    """
    t = np.asarray(fractions, dtype=np.float64)
    _check_fractions(t)
    s = t if spend_at is None else np.asarray(spend_at, dtype=np.float64)
    cum = alpha_spending.at(s)
    cum = np.maximum.accumulate(cum)
    b = np.empty(t.size)
    state = None
    spent = 0.0
    for k in range(t.size):
        target = cum[k] - spent
        st = state
        b[k] = _solve_bound(target, lambda z, st=st, tk=t[k]: _exceed(st, tk, z, 0.0, True))
        spent += _exceed(state, t[k], b[k], 0.0, True)
        if k + 1 < t.size:
            state = _advance(state, t[k], -math.inf, b[k], 0.0, _grid_r(t, k, r))
    return b, np.cumsum(crossing_probabilities(t, b, None, 0.0, r)[0])


def _futility_for_drift(t, b, beta_spending: SpendingSpec, drift: float, spend_at, r: int):
    """Futility bounds spending β under ``drift`` with efficacy bounds b in place."""
    cum = np.maximum.accumulate(beta_spending.at(spend_at))
    a = np.empty(t.size)
    state = None
    spent = 0.0
    for k in range(t.size):
        target = cum[k] - spent
        st = state
        a[k] = _solve_lower(target, lambda z, st=st, tk=t[k]: _exceed(st, tk, z, drift, False))
        if k + 1 < t.size:
            a[k] = min(a[k], b[k])
        spent += _exceed(state, t[k], a[k], drift, False)
        if k + 1 < t.size:
            state = _advance(state, t[k], a[k], b[k], drift, _grid_r(t, k, r))
    return a


def design(fractions, alpha: float, spending: str, gamma: float | None = None,
           futility: str | None = None, beta: float = 0.1, futility_gamma: float | None = None,
           r: int = GRID_R) -> Bounds:
    """A one-sided design: α-spending efficacy bounds, optional non-binding β-spending futility.

    With ``futility`` (a spending family), the drift is solved so that the final futility bound
    equals the final efficacy bound, i.e. the design has power 1 − β at that drift (gsDesign
    ``test.type = 4``, rpact ``bindingFutility = FALSE``).
    """
    t = np.asarray(fractions, dtype=np.float64)
    _check_fractions(t)
    t = t / t[-1]
    b, cum_alpha = efficacy_bounds(t, SpendingSpec(spending, alpha, gamma), r=r)
    if futility is None:
        return Bounds(t, b, np.full(t.size, -np.inf), cum_alpha, np.zeros(t.size), math.nan)
    beta_spec = SpendingSpec(futility, beta, futility_gamma)

    def gap(drift: float) -> float:
        return _futility_for_drift(t, b, beta_spec, drift, t, r)[-1] - b[-1]

    # the final futility bound rises with the drift; bracket the root (-ndtri(p) rather than ndtri(1 - p):
    # finite for any p > 0, where 1 - 1e-300 rounds to 1)
    lo, hi = 0.0, 2.0 * (-special.ndtri(alpha) - special.ndtri(beta)) + 2.0
    for _ in range(12):
        if gap(hi) >= 0.0:
            break
        hi *= 2.0
    else:  # no drift up to thousands gives a final futility bound at the efficacy bound
        raise ValueError(f"futility: no design drift reaches power 1 - beta with beta {beta:g} and alpha {alpha:g}")
    drift = float(optimize.brentq(gap, lo, hi, xtol=1e-10, rtol=1e-12))
    a = _futility_for_drift(t, b, beta_spec, drift, t, r)
    a[-1] = b[-1]
    low = crossing_probabilities(t, b, a, drift, r)[1]
    return Bounds(t, b, a, cum_alpha, np.cumsum(low), drift)


@lru_cache(maxsize=4096)
def _updated(observed: tuple[float, ...], alpha: float, spending: str, gamma: float | None,
             futility: str | None, beta: float, futility_gamma: float | None, drift: float,
             final: bool, r: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    t = np.asarray(observed, dtype=np.float64)
    spend_at = np.minimum(t, 1.0)
    if final:
        spend_at = spend_at.copy()
        spend_at[-1] = 1.0
    b, _ = efficacy_bounds(t, SpendingSpec(spending, alpha, gamma), spend_at, r)
    if futility is None or not math.isfinite(drift):
        a = np.full(t.size, -np.inf)
    else:
        a = _futility_for_drift(t, b, SpendingSpec(futility, beta, futility_gamma), drift, spend_at, r)
    if final:
        a[-1] = b[-1]
    return tuple(b.tolist()), tuple(a.tolist())


def updated_bounds(observed_fractions, planned: Bounds, alpha: float, spending: str,
                   gamma: float | None = None, futility: str | None = None, beta: float = 0.1,
                   futility_gamma: float | None = None, final: bool = True,
                   r: int = GRID_R) -> tuple[np.ndarray, np.ndarray]:
    """Bounds recomputed from the information fractions actually observed at the looks so far.

    Interim looks spend α(t_obs) (and β(t_obs) under the planned design drift); when ``final``
    the last look given is the final analysis and spends all remaining α whatever its
    information, its futility bound equal to its efficacy bound. Results are cached on the
    fractions rounded to 1e-9.
    """
    obs = tuple(round(float(x), 9) for x in observed_fractions)
    b, a = _updated(obs, float(alpha), spending, gamma, futility, float(beta), futility_gamma,
                    float(planned.drift), bool(final), int(r))
    return np.array(b), np.array(a)


def conditional_power_bound(fraction: float, final_bound: float, threshold: float) -> float:
    """Futility bound from conditional power under the current trend.

    With B = Z√t and the trend θ̂ = Z/√t, conditional power is
    1 − Φ((b_K − Z/√t) / √(1 − t)); it falls below ``threshold`` exactly when
    Z < √t·(b_K − Φ⁻¹(1 − threshold)·√(1 − t)).
    """
    if fraction >= 1.0:
        return final_bound
    return math.sqrt(fraction) * (final_bound - float(special.ndtri(1.0 - threshold)) * math.sqrt(1.0 - fraction))


def stagewise_p_value(fractions, efficacy, look: int, z: float, r: int = GRID_R) -> float:
    """One-sided p-value by stagewise ordering for a trial stopped at ``look`` (0-based) with Z = z.

    P_H0(cross an efficacy bound before ``look``) + P_H0(reach ``look`` and Z ≥ z); futility is
    ignored (non-binding). It is below α exactly when the trial rejected.
    """
    t = np.asarray(fractions, dtype=np.float64)[: look + 1]
    b = np.asarray(efficacy, dtype=np.float64)[: look + 1].copy()
    b[look] = min(z, _BIG)
    up, _ = crossing_probabilities(t, b, None, 0.0, r)
    return float(min(1.0, up.sum()))


def two_sided_constant(fractions, alpha: float, shape: str, r: int = GRID_R) -> float:
    """Constant C of the classical two-sided symmetric Pocock (b_k = C) or O'Brien–Fleming
    (b_k = C/√t_k) design with overall type I error ``alpha`` (J&T Tables 2.1 and 2.3)."""
    t = np.asarray(fractions, dtype=np.float64)
    _check_fractions(t)
    t = t / t[-1]
    scale = np.ones_like(t) if shape == "pocock" else 1.0 / np.sqrt(t)

    def total(c: float) -> float:
        b = c * scale
        up, low = crossing_probabilities(t, b, -b, 0.0, r)
        return up.sum() + low.sum() - alpha

    return float(optimize.brentq(total, 0.5, 10.0, xtol=1e-10))


def format_bounds(bounds: Bounds) -> str:
    """One look per line: look, information fraction, efficacy z, nominal p, cumulative α spent
    (and futility z with cumulative β spent when there is a futility bound)."""
    has_fut = bool(np.isfinite(bounds.futility[:-1]).any()) if bounds.looks > 1 else False
    head = f"{'look':>4} {'fraction':>9} {'efficacy_z':>11} {'nominal_p':>10} {'alpha_spent':>12}"
    if has_fut:
        head += f" {'futility_z':>11} {'beta_spent':>11}"
    lines = [head]
    for k in range(bounds.looks):
        z = bounds.efficacy[k]
        p = float(special.ndtr(-z))
        line = f"{k + 1:>4d} {bounds.fractions[k]:>9.4f} {z:>11.4f} {p:>10.6f} {bounds.alpha_spent[k]:>12.6f}"
        if has_fut:
            line += f" {bounds.futility[k]:>11.4f} {bounds.beta_spent[k]:>11.6f}"
        lines.append(line)
    if has_fut:
        lines.append(f"design drift (E[Z] at full information with power 1 - beta): {bounds.drift:.4f}")
    return "\n".join(lines)
