"""The graphical multiple-testing procedure of Bretz, Maurer, Brannath & Posch (2009, Statistics in Medicine
28:586-604) for the comparisons of a trial with three or more arms (analysis.multiplicity: graphical)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mc_helpers import binomial_region
from test_multiarm import _t2d_three_arm  # the 2:1:1 T2D overrides of the multi-arm tests
from vctrial import api
from vctrial.errors import SpecError
from vctrial.spec.protocol import load_protocol
from vctrial.trial import multiplicity

ROOT = Path(__file__).resolve().parents[1]
T2D = ROOT / "protocols" / "t2d_hba1c.yaml"


def _holm_graph(C: int) -> tuple[list[float], list[list[float]]]:
    return [1.0 / C] * C, [[0.0 if j == k else 1.0 / (C - 1) for k in range(C)] for j in range(C)]


def _chain_graph(C: int) -> tuple[list[float], list[list[float]]]:
    """Fixed sequence H1 -> H2 -> ... -> HC: all the weight on H1, passed on whole to the next."""
    return [1.0] + [0.0] * (C - 1), [[1.0 if k == j + 1 else 0.0 for k in range(C)] for j in range(C)]


@pytest.mark.parametrize("C", [2, 3, 4, 6])
def test_equal_weights_complete_graph_is_holm(C, monkeypatch):
    import gc

    from statsmodels.stats.multitest import multipletests

    monkeypatch.setattr(gc, "collect", lambda *args: 0)  # statsmodels' Holm collects garbage on every call
    rng = np.random.default_rng(40 + C)
    p = rng.uniform(0, 0.3, size=(30, C)) ** rng.uniform(0.5, 2.0, size=(30, 1))
    p[::5, 0] = p[::5, -1]  # exact ties
    adj = multiplicity.adjust(p, "graphical", graph=_holm_graph(C))
    ref = np.array([multipletests(row, method="holm")[1] for row in p])
    np.testing.assert_allclose(adj, ref, rtol=0, atol=1e-12)


def _fixed_sequence(p: list[float], alpha: float) -> tuple[list[float], list[bool]]:
    """The hierarchical test, written out: H_k is tested at the full alpha only once H_1..H_{k-1} are rejected;
    its adjusted p-value is max(p_1, ..., p_k)."""
    adjusted, rejected, running, open_ = [], [], 0.0, True
    for x in p:
        running = max(running, x)
        adjusted.append(running)
        open_ = open_ and x <= alpha
        rejected.append(open_)
    return adjusted, rejected


@pytest.mark.parametrize("C", [2, 3, 5])
def test_chain_graph_is_the_fixed_sequence(C):
    rng = np.random.default_rng(70 + C)
    p = rng.uniform(0, 0.06, size=(200, C))
    adj = multiplicity.adjust(p, "graphical", graph=_chain_graph(C))
    for row, got in zip(p, adj):
        ref_adj, ref_rej = _fixed_sequence(list(row), 0.025)
        np.testing.assert_allclose(got, ref_adj, rtol=0, atol=1e-15)
        assert list(got <= 0.025) == ref_rej


def test_worked_example_two_primary_two_secondary():
    """The graph of the graphicalMCP vignette (openpharma.github.io/graphicalMCP/articles/graphicalMCP.html; the
    two-primary, two-secondary structure of Bretz et al. 2009, Section 4): w = (1/2, 1/2, 0, 0), H1 -> H3,
    H2 -> H4, H3 -> H2, H4 -> H1 (each weight 1). That page prints no adjusted p-values for it, so they are
    computed here by hand for p = (0.01, 0.005, 0.015, 0.022):

    step 1: p/w = (0.02, 0.01, inf, inf): H2 goes first, adjusted 0.01; H4 receives H2's 1/2 -> w = (1/2, -, 0,
            1/2); g_34 = (g_34 + g_32 g_24) / (1 - g_32 g_23) = (0 + 1) / 1 = 1, so H1 -> H3 -> H4 -> H1.
    step 2: p/w = (0.02, -, inf, 0.044): H1, adjusted max(0.01, 0.02) = 0.02; H3 receives 1/2 -> w = (-, -, 1/2,
            1/2); g_43 = (0 + g_41 g_13) / (1 - g_41 g_14) = 1, so H3 <-> H4.
    step 3: p/w = (-, -, 0.03, 0.044): H3, adjusted max(0.02, 0.03) = 0.03; H4 receives 1/2 -> w_4 = 1.
    step 4: H4: max(0.03, 0.022 / 1) = 0.03.
    At alpha = 0.025 H1 and H2 are rejected, H3 (0.015 > 0.0125 = its level after H1) and H4 are not.
    """
    w = [0.5, 0.5, 0.0, 0.0]
    g = [[0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0], [1, 0, 0, 0]]
    adj = multiplicity.adjust(np.array([[0.01, 0.005, 0.015, 0.022]]), "graphical", graph=(w, g))[0]
    np.testing.assert_allclose(adj, [0.02, 0.01, 0.03, 0.03], rtol=0, atol=1e-15)
    assert list(adj <= 0.025) == [True, True, False, False]


def test_weights_summing_below_one_and_unreachable_hypotheses():
    # w = (0.4, 0.4, 0) with no edges into H3: H3 can never be rejected (adjusted 1); H1 and H2 are weighted
    # Bonferroni at 0.4 alpha each, then H2 gets H1's weight (g_12 = 1): p2 / 0.8
    w = [0.4, 0.4, 0.0]
    g = [[0, 1, 0], [0, 0, 0], [0, 0, 0]]
    adj = multiplicity.adjust(np.array([[0.004, 0.012, 1e-6], [0.9, 0.5, 0.0]]), "graphical", graph=(w, g))
    np.testing.assert_allclose(adj, [[0.01, 0.015, 1.0], [1.0, 1.0, 1.0]], rtol=0, atol=1e-15)


def test_missing_p_values_stay_missing():
    adj = multiplicity.adjust(np.array([[0.01, np.nan, 0.02]]), "graphical", graph=_holm_graph(3))
    assert np.isnan(adj[0, 1])
    np.testing.assert_allclose(adj[0, [0, 2]], [0.03, 0.04])


def test_fwer_at_the_global_null_is_at_most_alpha():
    """All arms effect-free (ANCOVA, 2:1:1), an asymmetric graph run through the protocol: the family-wise error
    rate is at most alpha (within the exact binomial region, one-sided), and reject is p_adjusted < alpha."""
    R, alpha = 4000, 0.025
    protocol = load_protocol(T2D, _t2d_three_arm(low=0.0, high=0.0, sample_size=400, **{
        "analysis.multiplicity": "graphical", "analysis.sided": "one", "analysis.alpha": alpha,
        "analysis.graph": {"weights": [0.8, 0.2], "transitions": [[0, 1], [0.5, 0]]}}))
    ds = api.run(protocol, replicates=R, seed=2025, progress=False)
    assert ds.attrs["multiplicity"] == "graphical"
    p = ds["p_value"].transpose("replicate", "comparison").values
    p_adj = ds["p_adjusted"].transpose("replicate", "comparison").values
    np.testing.assert_allclose(p_adj, multiplicity.adjust(p, "graphical", graph=([0.8, 0.2], [[0, 1], [0.5, 0]])))
    reject = ds["reject"].transpose("replicate", "comparison").values
    assert (reject == (p_adj < alpha)).all()
    hits = int(reject.any(axis=1).sum())
    _, hi = binomial_region(alpha, R)
    assert hits <= hi, f"graphical FWER {hits / R:.4f} above alpha (region upper end {hi / R:.4f})"
    assert hits > 0


GRAPH = {"weights": [0.5, 0.5], "transitions": [[0, 1], [1, 0]]}


@pytest.mark.parametrize("graph,multiplicity_,key", [
    ({"weights": [0.7, 0.5], "transitions": [[0, 1], [1, 0]]}, "graphical", "analysis.graph.weights"),
    ({"weights": [-0.1, 0.5], "transitions": [[0, 1], [1, 0]]}, "graphical", "analysis.graph.weights[0]"),
    ({"weights": [0.5, 0.5], "transitions": [[0, 1], [1.2, 0]]}, "graphical", "analysis.graph.transitions[1][0]"),
    ({"weights": [0.5, 0.5, 0.0], "transitions": [[0, 0.6, 0.6], [1, 0, 0], [1, 0, 0]]}, "graphical",
     "analysis.graph.weights"),
    ({"weights": [0.5, 0.5], "transitions": [[0.5, 0.5], [1, 0]]}, "graphical", "analysis.graph.transitions[0][0]"),
    ({"weights": [0.5, 0.5], "transitions": [[0, 1], [1, 0], [0, 0]]}, "graphical", "analysis.graph.transitions"),
    ({"weights": [0.5, 0.5], "transitions": [[0, 1, 0], [1, 0]]}, "graphical", "analysis.graph.transitions[0]"),
    (GRAPH, "holm", "analysis.graph"),
    (None, "graphical", "analysis.graph"),
])
def test_graph_spec_errors(graph, multiplicity_, key):
    extra = {"analysis.multiplicity": multiplicity_}
    if graph is not None:
        extra["analysis.graph"] = graph
    with pytest.raises(SpecError) as err:
        load_protocol(T2D, _t2d_three_arm(**extra))
    assert f"{key}:" in str(err.value), str(err.value)


def test_row_summing_above_one_is_refused():
    four_arm = _t2d_three_arm(**{"analysis.multiplicity": "graphical", "analysis.graph": {
        "weights": [0.4, 0.3, 0.3], "transitions": [[0, 0.6, 0.6], [0.5, 0, 0.5], [0.5, 0.5, 0]]}})
    four_arm["arms"] = four_arm["arms"] + [{"name": "top", "allocation": 2, "effects": [{"biomarker": "hba1c",
                                                                                          "shift": -0.6}]}]
    four_arm["randomization.block_size"] = 12
    with pytest.raises(SpecError) as err:
        load_protocol(T2D, four_arm)
    assert "analysis.graph.transitions[0]: a row must sum to at most 1" in str(err.value), str(err.value)
    four_arm["analysis.graph"]["transitions"][0] = [0, 0.5, 0.5]
    spec = load_protocol(T2D, four_arm).spec
    assert spec.analysis.graph.weights == [0.4, 0.3, 0.3]


def _closed_test_adjusted(p, w, g):
    """The closed test the graph stands for (Bretz et al. 2009, Section 3): every intersection H_J is tested by
    the weighted Bonferroni test with the weights left on J once the hypotheses outside J are removed from the
    graph one by one (the update rule of Algorithm 1), and p_adj_j = max over J containing j of
    min over i in J of p_i / w_i(J) (capped at 1). Plain Python over all 2^C - 1 intersections."""
    from itertools import combinations

    C = len(p)

    def weights_on(J):
        ww, gg, alive = list(w), [list(r) for r in g], list(range(C))
        for r in [i for i in range(C) if i not in J]:
            alive.remove(r)
            new_w = {l: ww[l] + ww[r] * gg[r][l] for l in alive}
            new_g = [[0.0] * C for _ in range(C)]
            for l in alive:
                for k in alive:
                    den = 1.0 - gg[l][r] * gg[r][l]
                    if l != k and den > 0:
                        new_g[l][k] = (gg[l][k] + gg[l][r] * gg[r][k]) / den
            ww = [new_w.get(i, 0.0) for i in range(C)]
            gg = new_g
        return ww

    adj = [0.0] * C
    for size in range(1, C + 1):
        for J in combinations(range(C), size):
            wJ = weights_on(J)
            pJ = min((p[i] / wJ[i] if wJ[i] > 0 else np.inf) for i in J)
            for j in J:
                adj[j] = max(adj[j], min(pJ, 1.0))
    return adj


@pytest.mark.parametrize("C", [3, 4])
def test_random_graphs_match_the_closed_test(C):
    rng = np.random.default_rng(90 + C)
    for _ in range(25):
        w = rng.dirichlet(np.ones(C)) * rng.choice([1.0, 0.9])
        w[rng.random(C) < 0.25] = 0.0
        g = rng.dirichlet(np.ones(C - 1), size=C) * rng.choice([1.0, 0.8], size=(C, 1))
        g[rng.random((C, C - 1)) < 0.3] = 0.0
        g = np.array([np.insert(row, j, 0.0) for j, row in enumerate(g)])
        p = rng.uniform(0, 0.05, size=(8, C))
        adj = multiplicity.adjust(p, "graphical", graph=(w, g))
        ref = np.array([_closed_test_adjusted(list(row), list(w), g.tolist()) for row in p])
        np.testing.assert_allclose(adj, ref, rtol=0, atol=1e-12)
