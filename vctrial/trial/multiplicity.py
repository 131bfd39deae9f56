"""Multiplicity adjustment of the comparisons of several active arms with one shared control.

Every procedure takes the (R, C) p-values of C comparisons in R replicates (the protocol's sidedness:
one-sided for benefit, or two-sided) and returns adjusted p-values of the same shape: hypothesis j is
rejected when its adjusted p-value is below the protocol's alpha (and, two-sided, the effect is
favourable), which keeps the family-wise error rate at alpha.

- ``bonferroni``: min(1, C p).
- ``holm``: step-down Bonferroni (Holm 1979).
- ``hochberg``: step-up (Hochberg 1988), valid for the positively correlated many-to-one statistics.
- ``dunnett``: single-step Dunnett (1955): the adjusted p-value of z_j is P(max_k Z_k ≥ z_j) (two-sided
  max_k |Z_k| ≥ |z_j|) for Z multivariate normal with the many-to-one correlation of the allocation
  ratios, rho_jk = sqrt(r_j r_k / ((1 + r_j)(1 + r_k))), r_j = n_j / n_0 (the planned allocation
  weights). The normal (infinite degrees of freedom) form is used for every analysis (for ANCOVA's t
  statistics an approximation, excellent beyond a few dozen patients per arm). This correlation has the
  product form rho_jk = f_j f_k, so the distribution of the maximum is an exact one-dimensional integral,
  evaluated deterministically and vectorised over replicates (the tests check it against scipy's
  multivariate normal CDF and ``scipy.stats.dunnett``).
- ``graphical``: the sequentially rejective graphical procedure of Bretz, Maurer, Brannath & Posch (2009,
  Statistics in Medicine 28:586-604) with the protocol's ``analysis.graph``: initial weights w_j (summing to
  at most 1) and a transition matrix G (g_jk: the share of H_j's weight passed to H_k once H_j is
  rejected). Its adjusted p-values (the smallest level at which each hypothesis is rejected, Bretz et al.
  2009, Section 3.2) come from Algorithm 1 run on the p-values themselves: repeatedly remove the hypothesis
  with the smallest p_j / w_j, its adjusted p-value the running maximum of those ratios (capped at 1), and
  update the remaining weights w_l += w_j g_jl and transitions g_lk = (g_lk + g_lj g_jk) / (1 - g_lj g_jl).
  Weights 1/C with g_jk = 1/(C-1) give Holm; weight 1 on H_1 passed on down a chain gives the fixed sequence.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

PROCEDURES = ("none", "bonferroni", "holm", "hochberg", "dunnett", "graphical")


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


def dunnett_critical_value(alpha: float, weights, sided: str = "one") -> float:
    """Single-step Dunnett critical value c: P(max Z_j < c) = 1 - alpha (two-sided: max |Z_j|).

    Args:
        alpha: the family-wise level (one-sided: of the benefit side).
        weights: the arms' allocation weights (or sample sizes), control first.
        sided: ``one`` or ``two``.
    """
    from scipy.optimize import brentq

    f = _loadings(weights)
    return float(brentq(lambda c: max_tail(np.array([c]), f, sided)[0] - alpha, 0.0, 10.0, xtol=1e-10))


def _loadings(weights) -> np.ndarray:
    """f with rho_jk = f_j f_k for the C = A - 1 comparisons of arms with allocation ``weights`` (control first)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size < 2 or not (w > 0).all():
        raise ValueError(f"weights: the arms' positive allocation weights, control first, got {weights}")
    r = w[1:] / w[0]
    return np.sqrt(r / (1.0 + r))


_NODES = np.linspace(-9.0, 9.0, 361)
_WEIGHTS = stats.norm.pdf(_NODES) * (_NODES[1] - _NODES[0])  # trapezoid: the integrand vanishes at both ends


def max_tail(z: np.ndarray, f: np.ndarray, sided: str = "one") -> np.ndarray:
    """P(max_j Z_j >= z) (two-sided: max_j |Z_j| >= z) for each z, Z ~ N(0, rho), rho_jk = f_j f_k.

    The many-to-one correlation is of this product form: Z_j = f_j W + sqrt(1 - f_j^2) E_j with W and the
    E_j independent standard normals, so conditionally on W the Z_j are independent and the distribution
    of the maximum is a one-dimensional integral over W (Dunnett 1955), computed here on a fixed grid.
    """
    z = np.asarray(z, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    s = np.sqrt(1.0 - f * f)
    flat = z.ravel()
    out = np.empty(flat.shape)
    step = max(1, 200_000 // (len(_NODES) * len(f)))
    for i in range(0, flat.size, step):  # bounded memory: a block of z values at a time
        c = flat[i:i + step, None, None]
        shifted = f[None, None, :] * _NODES[None, :, None]
        inside = special.ndtr((c - shifted) / s)
        if sided == "two":
            inside = inside - special.ndtr((-c - shifted) / s)
        out[i:i + step] = 1.0 - np.prod(inside, axis=2) @ _WEIGHTS
    return np.clip(out, 0.0, 1.0).reshape(z.shape)


def dunnett_adjusted(p: np.ndarray, weights, sided: str = "one") -> np.ndarray:
    """Single-step Dunnett adjusted p-values of (R, C) p-values (of the given sidedness).

    ``weights``: the arms' allocation weights, control first.
    """
    p = np.asarray(p, dtype=np.float64)
    f = _loadings(weights)
    if len(f) == 1:
        return p.copy()
    z = stats.norm.isf(p) if sided == "one" else stats.norm.isf(p / 2.0)
    adj = max_tail(np.where(np.isnan(z), 0.0, z), f, sided)
    return np.where(np.isnan(p), np.nan, np.clip(adj, p, 1.0))


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
           graph=None) -> np.ndarray:
    """Adjusted p-values (R, C) of the (R, C) p-values by ``method`` (see the module's docstring).

    NaN p-values (no test in that replicate) count as 1 for the others' adjustment and stay NaN.
    ``weights`` are the arms' allocation weights (control first; needed by ``dunnett``); ``graph`` is the
    ``graphical`` procedure's (hypothesis weights, transition matrix) pair, or an object with ``weights``
    and ``transitions`` attributes (the protocol's ``analysis.graph``).
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
    elif method == "dunnett":
        if weights is None or len(weights) != C + 1:
            raise ValueError(f"weights: dunnett needs the {C + 1} arms' allocation weights, got {weights}")
        adj = dunnett_adjusted(q, weights, sided)
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

    p_adj = adjust(out["p_value"], a_spec.multiplicity, weights, a_spec.sided, a_spec.graph)
    z_benefit = -out["statistic"] if a_spec.benefit == "lower" else out["statistic"]
    reject, _ = estimation.superiority(z_benefit, p_adj, a_spec.alpha, a_spec.sided)
    return {"p_adjusted": p_adj, "reject": reject}
