"""Multiplicity adjustment of the comparisons of several active arms with one shared control.

Every procedure takes the (R, C) p-values of C comparisons in R replicates (the protocol's sidedness:
one-sided for benefit, or two-sided) and returns adjusted p-values of the same shape: hypothesis j is
rejected when its adjusted p-value is below the protocol's alpha (and, two-sided, the effect is
favourable), which keeps the family-wise error rate at alpha.

- ``bonferroni``: min(1, C p).
- ``holm``: step-down Bonferroni (Holm 1979).
- ``hochberg``: step-up (Hochberg 1988), valid for the positively correlated many-to-one statistics.
- ``dunnett``: single-step Dunnett (1955): the adjusted p-value of t_j is P(max_k T_k ≥ t_j) (two-sided
  max_k |T_k| ≥ |t_j|) for T with the many-to-one correlation of the allocation ratios,
  rho_jk = sqrt(r_j r_k / ((1 + r_j)(1 + r_k))), r_j = n_j / n_0 (the planned allocation weights).
  T is multivariate normal for the z statistics (log-rank, Cox, RMST) and multivariate t with the
  ANCOVA's residual degrees of freedom for its t statistics (Dunnett 1955's t form: T_k = Z_k / S with
  S^2 ~ chi^2_df / df shared; each comparison's ANCOVA is fitted on its own two arms, so the smallest of
  the comparisons' df in the replicate is used, and the p-values are read as t_j = t_df quantiles). This
  correlation has the product form rho_jk = f_j f_k, so given S the distribution of the maximum is an
  exact one-dimensional integral over a shared normal; the integral over S is a second, fixed grid
  (trapezoid in log S^2); both deterministic and vectorised over replicates (the tests check them
  against scipy's multivariate normal and t CDFs and ``scipy.stats.dunnett``).
- ``dunnett_stepdown``: step-down Dunnett (Dunnett & Tamhane 1991), the closed test of Dunnett tests of
  the intersection hypotheses: with the statistics ordered t_(1) ≥ ... ≥ t_(C), the adjusted p-value of
  the i-th is the running maximum over l ≤ i of P(max_{k in S_l} T_k ≥ t_(l)), S_l the comparisons
  ranked l..C (the many-to-one correlation restricted to S_l; multivariate t as above for ANCOVA).
  Never larger than single-step Dunnett's, and the family-wise error rate is still alpha.
- ``graphical``: the sequentially rejective graphical procedure of Bretz, Maurer, Brannath & Posch (2009,
  Statistics in Medicine 28:586-604) with the protocol's ``analysis.graph``: initial weights w_j (summing to
  at most 1) and a transition matrix G (g_jk: the share of H_j's weight passed to H_k once H_j is
  rejected). Its adjusted p-values (the smallest level at which each hypothesis is rejected, Bretz et al.
  2009, Section 3.2) come from Algorithm 1 run on the p-values themselves: repeatedly remove the hypothesis
  with the smallest p_j / w_j, its adjusted p-value the running maximum of those ratios (capped at 1), and
  update the remaining weights w_l += w_j g_jl and transitions g_lk = (g_lk + g_lj g_jk) / (1 - g_lj g_jl).
  Weights 1/C with g_jk = 1/(C-1) give Holm; weight 1 on H_1 passed on down a chain gives the fixed sequence.

Simultaneous confidence intervals (``sci_lower``, ``sci_upper``) come with the procedures that have
compatible ones: ``dunnett`` (estimate ± c se, c the Dunnett critical value at family-wise level
``confidence_level``, of the analysis's sidedness; multivariate t for ANCOVA) and ``bonferroni`` (each
at 1 - (1 - confidence_level) / C). One-sided, the bound on the benefit side only, the other end
infinite (0 for a hazard ratio, whose interval is exp(log HR ± c se)). Step-down, step-up and graphical
procedures have no simple simultaneous intervals compatible with their decisions, so none are given.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

PROCEDURES = ("none", "bonferroni", "holm", "hochberg", "dunnett", "dunnett_stepdown", "graphical")
SIMULTANEOUS = ("dunnett", "bonferroni")
"""The procedures whose simultaneous confidence intervals are output (``sci_lower``, ``sci_upper``)."""


def many_to_one_correlation(weights: list[float] | np.ndarray) -> np.ndarray:
    """(C, C) correlation of the C = A - 1 statistics comparing arms 1..A-1 with arm 0.

    Args:
        weights: (A,) allocation weights (or sample sizes) of the arms, control first.
    """
    w = np.asarray(weights, dtype=np.float64)
    r = w[1:] / w[0]
    f = np.sqrt(r / (1.0 + r))
    rho = np.outer(f, f)
    np.fill_diagonal(rho, 1.0)
    return rho


def dunnett_critical_value(alpha: float, weights, sided: str = "one", df: float | None = None) -> float:
    """Single-step Dunnett critical value c: P(max T_j < c) = 1 - alpha (two-sided: max |T_j|).

    Args:
        alpha: the family-wise level (one-sided: of the benefit side).
        weights: the arms' allocation weights (or sample sizes), control first.
        sided: ``one`` or ``two``.
        df: degrees of freedom of the multivariate t; None (or inf) for the multivariate normal.
    """
    return float(_critical_values(alpha, _loadings(weights), sided, np.array([np.inf if df is None else df]))[0])


def _critical_values(alpha: float, f: np.ndarray, sided: str, df: np.ndarray) -> np.ndarray:
    """Dunnett critical values for each of the (U,) df (inf: normal), by bisection vectorised over them."""
    df = np.asarray(df, dtype=np.float64)
    lo = np.zeros(df.shape)
    hi = np.full(df.shape, 10.0)
    for _ in range(60):  # heavy tails at a few df need a wider bracket
        short = _tail(hi, f, sided, df=df) > alpha
        if not short.any():
            break
        hi = np.where(short, 2.0 * hi, hi)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        above = _tail(mid, f, sided, df=df) > alpha
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return 0.5 * (lo + hi)


def _loadings(weights) -> np.ndarray:
    """f with rho_jk = f_j f_k for the C = A - 1 comparisons of arms with allocation ``weights`` (control first)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size < 2 or not (w > 0).all():
        raise ValueError(f"weights: the arms' positive allocation weights, control first, got {weights}")
    r = w[1:] / w[0]
    return np.sqrt(r / (1.0 + r))


# Trapezoid rule over the shared standard normal W: the integrand is smooth and decays like the normal
# density, so the rule converges geometrically; spacing 0.15 is exact to ~1e-13 even for allocation
# ratios of 10:1 (checked against a 4001-node grid).
_NODES = np.linspace(-8.5, 8.5, 115)
_WEIGHTS = stats.norm.pdf(_NODES) * (_NODES[1] - _NODES[0])
_CHI_DEPTH = 40.0  # the grid in log S^2 spans where its density is within e^-40 of the mode


def _chi_grid(df: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes S and weights (U, K) for the scale S = sqrt(chi^2_df / df), one row per df (U,) (finite, > 0).

    Trapezoid rule in y = log S^2, whose density is proportional to exp(df/2 (y - e^y + 1)) (smooth, with
    exponential and double-exponential tails), between the two points where it has fallen by e^-40;
    weights normalised to sum to 1. 48 nodes are exact to ~1e-10 from 6 df on, 256 from 1 df on (checked
    against adaptive quadrature of the chi density).
    """
    df = np.asarray(df, dtype=np.float64)
    b = 2.0 * _CHI_DEPTH / df
    # roots of e^y - 1 - y = b, one each side of 0 (bisection, vectorised over df)
    roots = []
    for negative in (True, False):  # e^y - 1 - y - b decreases for y < 0 and increases for y > 0
        lo, hi = (-(1.0 + b), np.zeros_like(b)) if negative else (np.zeros_like(b), 1.0 + b)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            right = (special.expm1(mid) - mid - b > 0) == negative  # the root lies above mid
            lo, hi = np.where(right, mid, lo), np.where(right, hi, mid)
        roots.append(0.5 * (lo + hi))
    K = 48 if df.size == 0 or df.min() >= 6 else 256
    t = np.linspace(0.0, 1.0, K)
    y = roots[0][:, None] + (roots[1] - roots[0])[:, None] * t[None, :]
    logw = 0.5 * df[:, None] * (y - special.expm1(y))
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    return np.exp(0.5 * y), w / w.sum(axis=1, keepdims=True)


def _normal_tail(c: np.ndarray, f: np.ndarray, sided: str, mask: np.ndarray | None) -> np.ndarray:
    """P(max_{j in mask} Z_j >= c) (two-sided |Z_j|) for each of the (M,) c, Z ~ N(0, rho), rho_jk = f_j f_k."""
    s = np.sqrt(1.0 - f * f)
    out = np.empty(c.shape)
    step = max(1, 200_000 // (len(_NODES) * len(f)))
    shifted = f[None, None, :] * _NODES[None, :, None]
    for i in range(0, c.size, step):  # bounded memory: a block of c values at a time
        ci = c[i:i + step, None, None]
        inside = special.ndtr((ci - shifted) / s)
        if sided == "two":
            inside = inside - special.ndtr((-ci - shifted) / s)
        if mask is not None:
            inside = np.where(mask[i:i + step, None, :], inside, 1.0)
        out[i:i + step] = 1.0 - np.prod(inside, axis=2) @ _WEIGHTS
    return out


def _tail(c: np.ndarray, f: np.ndarray, sided: str, mask: np.ndarray | None = None,
          df: np.ndarray | None = None) -> np.ndarray:
    """P(max_{j in mask} T_j >= c) for each of the (N,) c; T = Z / S multivariate t with df (N,) (inf or
    None: normal); ``mask`` (N, C) restricts the maximum to a subset of the comparisons.

    The t form is sum_k w_k G(c s_k) over the chi grid (:func:`_chi_grid`), G the normal tail of the
    subset, which is tabulated once per subset on a fine grid and read off a cubic spline (error below
    1e-7 where the tail is below 0.99, ~3e-7 next to it), so the cost is about that of the normal form.
    """
    c = np.asarray(c, dtype=np.float64)
    finite = np.zeros(c.shape, bool) if df is None else np.isfinite(np.broadcast_to(df, c.shape))
    out = np.empty(c.shape)
    normal = ~finite
    if normal.any():
        out[normal] = _normal_tail(c[normal], f, sided, None if mask is None else mask[normal])
    if finite.any():
        df = np.broadcast_to(np.asarray(df, dtype=np.float64), c.shape)
        values, index = np.unique(df[finite], return_inverse=True)
        nodes, weights = _chi_grid(values)
        pattern = np.zeros(c.shape, np.int64) if mask is None else mask.astype(np.int64) @ (1 << np.arange(len(f)))
        rows = np.flatnonzero(finite)
        for pat in np.unique(pattern[rows]):
            here = pattern[rows] == pat
            subset = np.ones(len(f), bool) if mask is None else (pat >> np.arange(len(f))) & 1 == 1
            x = c[rows[here], None] * nodes[index[here]]
            out[rows[here]] = (_tabulated(f[subset], sided, x) * weights[index[here]]).sum(axis=1)
    return np.clip(out, 0.0, 1.0)


_TABLE_STEP, _TABLE_END = 0.02, 9.0  # beyond 9 the tail is below 1e-18 (zero); below -9 it is 1


def _tabulated(f: np.ndarray, sided: str, x: np.ndarray) -> np.ndarray:
    """The normal max tail of loadings ``f`` at the points ``x`` (any shape), by a cubic spline through its
    exact values on a grid of step 0.02 (one-sided on [-9, 9], two-sided on [0, 9]; outside, 1 or 0)."""
    from scipy.interpolate import CubicSpline

    start = -_TABLE_END if sided == "one" else 0.0
    grid = np.linspace(start, _TABLE_END, int(round((_TABLE_END - start) / _TABLE_STEP)) + 1)
    spline = CubicSpline(grid, _normal_tail(grid, f, sided, None))
    g = spline(np.clip(x, start, _TABLE_END))
    return np.where(x <= start, 1.0, np.where(x >= _TABLE_END, 0.0, g))


def max_tail(z: np.ndarray, f: np.ndarray, sided: str = "one", df=None) -> np.ndarray:
    """P(max_j T_j >= z) (two-sided: max_j |T_j| >= z) for each z, T ~ N(0, rho), rho_jk = f_j f_k, or the
    multivariate t with ``df`` degrees of freedom (a number or one per z; None or inf: normal).

    The many-to-one correlation is of this product form: Z_j = f_j W + sqrt(1 - f_j^2) E_j with W and the
    E_j independent standard normals, so conditionally on W the Z_j are independent and the distribution
    of the maximum is a one-dimensional integral over W (Dunnett 1955), computed here on a fixed grid; the
    t form T_j = Z_j / S adds a fixed grid over S (see :func:`_chi_grid`).
    """
    z = np.asarray(z, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    d = None if df is None else np.broadcast_to(np.asarray(df, dtype=np.float64), z.shape).ravel()
    return _tail(z.ravel(), f, sided, df=d).reshape(z.shape)


def _common_df(df, R: int) -> np.ndarray | None:
    """Per-replicate (R,) degrees of freedom of the multivariate t from a number, (R,) or (R, C) array
    (the smallest of the comparisons'); None when there are none (normal statistics). NaN or <= 0: inf."""
    if df is None:
        return None
    d = np.asarray(df, dtype=np.float64)
    if d.ndim == 2:
        d = np.where(np.isnan(d), np.inf, d).min(axis=1)
    d = np.broadcast_to(d, (R,)).astype(np.float64)
    d = np.where(np.isnan(d) | (d <= 0), np.inf, d)
    return d if np.isfinite(d).any() else None


def _statistics(p: np.ndarray, sided: str, nu: np.ndarray | None) -> np.ndarray:
    """The statistics (normal, or t with nu (R,) df) whose tail probability is p (two-sided: of |T|)."""
    q = p if sided == "one" else p / 2.0
    if nu is None:
        return stats.norm.isf(q)
    return np.where(np.isfinite(nu)[:, None], stats.t.isf(q, np.where(np.isfinite(nu), nu, 1.0)[:, None]),
                    stats.norm.isf(q))


def dunnett_adjusted(p: np.ndarray, weights, sided: str = "one", df=None) -> np.ndarray:
    """Single-step Dunnett adjusted p-values of (R, C) p-values (of the given sidedness).

    ``weights``: the arms' allocation weights, control first; ``df``: degrees of freedom of t statistics
    (a number, (R,) or (R, C); None for normal statistics).
    """
    p = np.asarray(p, dtype=np.float64)
    f = _loadings(weights)
    if len(f) == 1:
        return p.copy()
    R, C = p.shape
    nu = _common_df(df, R)
    z = _statistics(p, sided, nu)
    adj = _tail(np.where(np.isnan(z), 0.0, z).ravel(), f, sided,
                df=None if nu is None else np.repeat(nu, C)).reshape(R, C)
    return np.where(np.isnan(p), np.nan, np.clip(adj, p, 1.0))


def dunnett_stepdown_adjusted(p: np.ndarray, weights, sided: str = "one", df=None) -> np.ndarray:
    """Step-down Dunnett adjusted p-values (Dunnett & Tamhane 1991) of (R, C) p-values (no NaN).

    A loop over the C steps, each vectorised over the replicates: at step i every replicate tests its
    i-th smallest p-value with the Dunnett maximum over the comparisons not yet passed (its own subset
    of the many-to-one correlation), and the adjusted p-value is the running maximum (see the module's
    docstring). ``weights`` and ``df`` as in :func:`dunnett_adjusted`.
    """
    p = np.asarray(p, dtype=np.float64)
    f = _loadings(weights)
    if len(f) == 1:
        return p.copy()
    R, C = p.shape
    nu = _common_df(df, R)
    z = _statistics(p, sided, nu)
    order = np.argsort(p, axis=1, kind="stable")
    ranked = np.take_along_axis(z, order, axis=1)
    remaining = np.ones((R, C), dtype=bool)
    rows = np.arange(R)
    running = np.zeros(R)
    scaled = np.empty((R, C))
    for i in range(C):
        running = np.maximum(running, _tail(ranked[:, i], f, sided, remaining, nu))
        scaled[:, i] = running
        remaining[rows, order[:, i]] = False
    adj = np.empty_like(p)
    np.put_along_axis(adj, order, scaled, axis=1)
    return np.clip(adj, p, 1.0)


def graphical_adjusted(p: np.ndarray, weights, transitions) -> np.ndarray:
    """Adjusted p-values of the graphical procedure (Bretz et al. 2009) for (R, C) p-values.

    Args:
        p: (R, C) p-values (no NaN).
        weights: (C,) initial hypothesis weights, >= 0, summing to at most 1.
        transitions: (C, C) transition weights in [0, 1], zero diagonal, rows summing to at most 1.

    A loop of C steps, each vectorised over the replicates: in every replicate the remaining hypothesis
    with the smallest p_j / w_j is removed (ties: the first), its adjusted p-value max(previous, p_j / w_j)
    capped at 1 (a hypothesis whose weight stays 0 gets 1), and the graph is updated (Algorithm 1).
    """
    p = np.asarray(p, dtype=np.float64)
    R, C = p.shape
    w0 = np.asarray(weights, dtype=np.float64)
    g0 = np.asarray(transitions, dtype=np.float64)
    if w0.shape != (C,) or g0.shape != (C, C):
        raise ValueError(f"graph: needs {C} weights and a {C}x{C} transition matrix, got {w0.shape} and {g0.shape}")
    w = np.broadcast_to(w0, (R, C)).copy()
    g = np.broadcast_to(g0, (R, C, C)).copy()
    active = np.ones((R, C), dtype=bool)
    adj = np.ones((R, C))
    running = np.zeros(R)
    rows = np.arange(R)
    for _ in range(C):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(active & (w > 0), p / w, np.inf)
        # among the remaining (ratio inf when w = 0; past 1 the order no longer matters, every later one is 1)
        j = np.argmin(np.where(active, np.minimum(ratio, 2.0), 3.0), axis=1)
        running = np.maximum(running, np.minimum(ratio[rows, j], 1.0))
        adj[rows, j] = running
        active[rows, j] = False
        g_to = g[rows, :, j]  # (R, C): g_lj, the share l passes to j
        g_from = g[rows, j, :]  # (R, C): g_jk, the share j passes to k
        w = np.where(active, w + w[rows, j][:, None] * g_from, 0.0)
        denom = 1.0 - g_to * g_from  # 1 - g_lj g_jl, per l
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(denom[:, :, None] > 0,
                         (g + g_to[:, :, None] * g_from[:, None, :]) / denom[:, :, None], 0.0)
        keep = active[:, :, None] & active[:, None, :]
        g = np.where(keep, g, 0.0)
        g[:, np.arange(C), np.arange(C)] = 0.0
    return adj


def adjust(p: np.ndarray, method: str, weights: list[float] | None = None, sided: str = "one",
           graph=None, df=None) -> np.ndarray:
    """Adjusted p-values (R, C) of the (R, C) p-values by ``method`` (see the module's docstring).

    NaN p-values (no test in that replicate) count as 1 for the others' adjustment and stay NaN.
    ``weights`` are the arms' allocation weights (control first; needed by ``dunnett`` and
    ``dunnett_stepdown``); ``graph`` is the ``graphical`` procedure's (hypothesis weights, transition
    matrix) pair, or an object with ``weights`` and ``transitions`` attributes (the protocol's
    ``analysis.graph``); ``df`` the degrees of freedom of t statistics (a number, (R,) or (R, C); None:
    normal statistics), used by the Dunnett procedures.
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"p: must be (replicates, comparisons), got shape {p.shape}")
    R, C = p.shape
    missing = np.isnan(p)
    q = np.where(missing, 1.0, p)
    if method == "none":
        adj = q.copy()
    elif method == "bonferroni":
        adj = np.minimum(C * q, 1.0)
    elif method in ("holm", "hochberg"):
        order = np.argsort(q, axis=1, kind="stable")
        ranked = np.take_along_axis(q, order, axis=1)
        factor = (C - np.arange(C))[None, :]  # C, C-1, ..., 1 for the smallest to the largest
        scaled = np.minimum(ranked * factor, 1.0)
        if method == "holm":
            scaled = np.maximum.accumulate(scaled, axis=1)
        else:
            scaled = np.minimum.accumulate(scaled[:, ::-1], axis=1)[:, ::-1]
        adj = np.empty_like(q)
        np.put_along_axis(adj, order, scaled, axis=1)
    elif method in ("dunnett", "dunnett_stepdown"):
        if weights is None or len(weights) != C + 1:
            raise ValueError(f"weights: {method} needs the {C + 1} arms' allocation weights, got {weights}")
        procedure = dunnett_adjusted if method == "dunnett" else dunnett_stepdown_adjusted
        adj = procedure(q, weights, sided, df)
    elif method == "graphical":
        if graph is None:
            raise ValueError("graph: the graphical procedure needs the hypothesis weights and transitions")
        gw, gt = (graph.weights, graph.transitions) if hasattr(graph, "weights") else graph
        adj = graphical_adjusted(q, gw, gt)
    else:
        raise ValueError(f"method: one of {', '.join(PROCEDURES)}, got {method!r}")
    return np.where(missing, np.nan, adj)


PER_COMPARISON = ("statistic", "p_value", "estimate", "ci_lower", "ci_upper", "log_hr_se", "true_effect", "z_benefit",
                  "_se", "_df", "_p_harm")
"""Per-replicate outputs that a trial with three or more arms has once per comparison (active arm vs control)."""


def by_comparison(arm: np.ndarray, include: np.ndarray, n_arms: int, analyse) -> dict[str, np.ndarray]:
    """Each active arm against the control: ``analyse(group, include, j)`` on the patients of arms 0 and j.

    With two arms this is ``analyse(arm, include, 1)`` unchanged. With more, ``group`` is 1 on arm j and 0
    on the control, ``include`` keeps only those two arms' patients, and the outputs named in
    :data:`PER_COMPARISON` are stacked to (R, C) along a new axis 1 (others are left to the caller).
    """
    if n_arms == 2:
        return analyse(arm.astype(np.int8), include, 1)
    results = []
    for j in range(1, n_arms):  # a loop over comparisons; each analysis is vectorised over replicates
        pair = include & ((arm == 0) | (arm == j))
        results.append(analyse((arm == j).astype(np.int8), pair, j))
    return {k: np.stack([r[k] for r in results], axis=1) for k in results[0] if k in PER_COMPARISON}


def decide(a_spec, weights: list[int], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``p_adjusted`` and the adjusted ``reject`` of the (R, C) comparisons of a trial with three or more arms.

    A comparison is rejected when its adjusted p-value is below alpha and, two-sided, its effect is
    favourable; ``harm`` stays the unadjusted per-comparison signal (a safety flag, not a claim).
    """
    from vctrial.trial import estimation

    p_adj = adjust(out["p_value"], a_spec.multiplicity, weights, a_spec.sided, a_spec.graph, out.get("_df"))
    z_benefit = -out["statistic"] if a_spec.benefit == "lower" else out["statistic"]
    reject, _ = estimation.superiority(z_benefit, p_adj, a_spec.alpha, a_spec.sided)
    res = {"p_adjusted": p_adj, "reject": reject}
    if a_spec.multiplicity in SIMULTANEOUS:
        ratio = "log_hr_se" in out  # a hazard ratio (every time-to-event analysis but RMST)
        if ratio:
            theta, se = np.log(out["estimate"]), out["log_hr_se"]
        elif "_se" in out:  # ANCOVA
            theta, se = out["estimate"], out["_se"]
        else:  # a symmetric normal interval (RMST): its half-width over the quantile
            theta = out["estimate"]
            se = (out["ci_upper"] - out["ci_lower"]) / (2.0 * stats.norm.isf((1.0 - a_spec.confidence_level) / 2.0))
        lower, upper = simultaneous_intervals(theta, se, a_spec.multiplicity, weights, a_spec.confidence_level,
                                              a_spec.sided, a_spec.estimate_benefit, out.get("_df"))
        res["sci_lower"], res["sci_upper"] = (np.exp(lower), np.exp(upper)) if ratio else (lower, upper)
    return res


def simultaneous_intervals(theta: np.ndarray, se: np.ndarray, method: str, weights, level: float,
                           sided: str = "two", benefit: str = "lower", df=None) -> tuple[np.ndarray, np.ndarray]:
    """Simultaneous confidence intervals (lower, upper), each (R, C), of the C effects: theta ± c se.

    Args:
        theta: (R, C) estimates on the scale where they are normal (or t): a log ratio, or a difference.
        se: (R, C) their standard errors.
        method: ``dunnett`` (c the Dunnett critical value at family-wise level ``level``, multivariate t
            with the smallest of the replicate's ``df``) or ``bonferroni`` (each at 1 - (1 - level) / C).
        weights: the arms' allocation weights, control first.
        level: the family-wise confidence level (all C intervals hold their effects at once).
        sided: ``two``, or ``one``: a one-sided bound on the side of ``benefit`` (the upper bound when
            lower estimates are better), the other end -inf or +inf.
        df: degrees of freedom of t statistics (a number, (R,) or (R, C)); None for normal estimates.
    """
    theta, se = np.asarray(theta, dtype=np.float64), np.asarray(se, dtype=np.float64)
    R, C = theta.shape
    miss = 1.0 - level if sided == "one" else (1.0 - level) / 2.0
    if method == "bonferroni":
        d = None if df is None else np.broadcast_to(np.asarray(df, dtype=np.float64), (R, C))
        c = stats.norm.isf(miss / C) * np.ones((R, C))
        if d is not None:
            finite = np.isfinite(d) & (d > 0)
            c = np.where(finite, stats.t.isf(miss / C, np.where(finite, d, 1.0)), c)
    elif method == "dunnett":
        f = _loadings(weights)
        nu = _common_df(df, R)
        if nu is None:
            c = np.full((R, C), _critical_values(1.0 - level, f, sided, np.array([np.inf]))[0])
        else:
            values, index = np.unique(nu, return_inverse=True)
            c = np.broadcast_to(_critical_values(1.0 - level, f, sided, values)[index][:, None], (R, C))
    else:
        raise ValueError(f"method: simultaneous intervals for {', '.join(SIMULTANEOUS)}, got {method!r}")
    lower, upper = theta - c * se, theta + c * se
    if sided == "one":
        if benefit == "lower":
            lower = np.where(np.isnan(upper), np.nan, -np.inf)
        else:
            upper = np.where(np.isnan(lower), np.nan, np.inf)
    return lower, upper
