"""Contact structures built with numpy, without loops over people.

- Households: sizes 1 + Poisson(mean − 1) capped at max_size, drawn with counter-based uniforms
  and laid over consecutive person indices (people are in random order of age and sex, so
  household composition is random; a simplification). Members of household h are persons
  ``hh_ptr[h] .. hh_ptr[h+1]-1``.
- Age-mixing groups: persons sorted by group; members of group g are
  ``order[ptr[g]:ptr[g+1]]``.
- The community layer needs no structure: targets are drawn uniformly per contact and day.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from vctrial import rng


def households(n: int, mean_size: float, max_size: int, seed: int, replicate: int) -> tuple[np.ndarray, np.ndarray]:
    """(hh_ptr (H+1,) int64, hh_of (n,) int32) for n people."""
    lam = max(mean_size - 1.0, 0.0)
    upper = n + 1
    u = rng.uniforms(np.uint64(seed), np.uint64(rng.stream_id("population:households")),
                     np.array([replicate], np.int64), upper, 1)[0, :, 0]
    extra = stats.poisson.ppf(u, lam) if lam > 0 else np.zeros(upper)
    sizes = np.minimum(1 + extra.astype(np.int64), max_size)
    ends = np.cumsum(sizes)
    h = int(np.searchsorted(ends, n, side="left")) + 1
    ptr = np.zeros(h + 1, np.int64)
    ptr[1:] = np.minimum(ends[:h], n)
    hh_of = np.repeat(np.arange(h, dtype=np.int32), np.diff(ptr))
    return ptr, hh_of


def groups_index(group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(order (n,) int32, ptr (G+1,) int64): persons of group g are order[ptr[g]:ptr[g+1]]."""
    order = np.argsort(group, kind="stable").astype(np.int32)
    ptr = np.zeros(n_groups + 1, np.int64)
    ptr[1:] = np.cumsum(np.bincount(group, minlength=n_groups))
    return order, ptr
