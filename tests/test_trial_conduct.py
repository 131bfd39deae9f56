"""Enrollment, randomization and common random numbers at the level of a whole trial."""

from pathlib import Path

import numpy as np
from scipy import stats

from vctrial.spec.protocol import load_protocol
from vctrial.trial import enrollment, randomization
from vctrial.trial.run import simulate_chunk

from mc_helpers import assert_binomial

DATA = Path(__file__).parent / "data"


def test_uniform_accrual_gives_sorted_uniform_entry_times():
    entry = enrollment.uniform_accrual(5000, 24.0, seed=3, replicates=np.arange(3))
    assert np.all(np.diff(entry, axis=1) > 0)
    assert entry.min() > 0 and entry.max() < 24
    # the order statistics of uniforms: pooled, they are uniform on the period
    assert stats.kstest(entry.ravel() / 24.0, "uniform").pvalue > 1e-3


def test_permuted_blocks_balance_every_block_with_any_ratio():
    arm = randomization.allocate(3000, [2, 1], "permuted_block", 6, seed=1, replicates=np.arange(5))
    blocks = arm.reshape(5, -1, 6)
    assert np.all((blocks == 0).sum(axis=2) == 4) and np.all((blocks == 1).sum(axis=2) == 2)
    # the order within blocks is uniformly random: every one of the C(6, 2) = 15 placements of the two
    # active patients is equally likely (chi-square), so each position is active with probability 1/3
    placement = (blocks == 1).reshape(-1, 6) @ (1 << np.arange(6))
    patterns, counts = np.unique(placement, return_counts=True)
    assert patterns.size == 15 and stats.chisquare(counts).pvalue > 1e-3, counts
    for position in range(6):
        assert_binomial(int((blocks[:, :, position] == 1).sum()), blocks.shape[0] * blocks.shape[1], 1 / 3,
                        what=f"active at block position {position}")


def test_simple_randomization_follows_the_ratio_within_binomial_error():
    n = 20_000
    arm = randomization.allocate(n, [3, 1], "simple", 4, seed=2, replicates=np.arange(2))
    assert_binomial(int((arm == 1).sum()), arm.size, 0.25, what="active share")


def test_changing_the_active_arm_never_changes_the_control_arm():
    """Common random numbers: each patient meets the same draws whatever happens in the other arm."""
    base = load_protocol(DATA / "event_driven.yaml")
    other = load_protocol(DATA / "event_driven.yaml", {"arms.active.effects.0.hazard_ratio": 0.5})
    reps = np.arange(3)
    a, b = simulate_chunk(base, 42, reps), simulate_chunk(other, 42, reps)
    np.testing.assert_array_equal(a["occupancy"][:, 0], b["occupancy"][:, 0])
    np.testing.assert_array_equal(a["n_randomized"], b["n_randomized"])
    assert not np.array_equal(a["occupancy"][:, 1], b["occupancy"][:, 1])
    # a stronger effect gives a smaller counterfactual hazard ratio in the very same patients
    assert np.all(b["true_effect"] < a["true_effect"])
