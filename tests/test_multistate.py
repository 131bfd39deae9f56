"""Multi-state kernel: exact against the matrix exponential, a slow reference, and CRN properties."""

import math

import numba
import numpy as np
import pytest
import scipy.linalg

from vctrial import rng
from vctrial.disease import multistate as ms
from vctrial.disease.lifetable import hazard_per_month, life_table
from vctrial.spec.disease import DiseaseSpec


def illness_death(background=False):
    data = {
        "kind": "disease", "name": "illness-death", "initial_state": "well",
        "states": [{"name": "well"}, {"name": "ill"}, {"name": "dead", "absorbing": True}],
        "transitions": [
            {"name": "onset", "from": "well", "to": "ill", "rate_per_year": 0.3},
            {"name": "recovery", "from": "ill", "to": "well", "rate_per_year": 0.5},
            {"name": "death_well", "from": "well", "to": "dead", "rate_per_year": 0.1},
            {"name": "death_ill", "from": "ill", "to": "dead", "rate_per_year": 0.4},
        ],
    }
    if background:
        data["background_mortality"] = {"to": "dead"}
    return DiseaseSpec.model_validate(data)


def generator_matrix(spec, factor=1.0):
    names = [s.name for s in spec.states]
    q = np.zeros((len(names), len(names)))
    for t in spec.transitions:
        q[names.index(t.from_), names.index(t.to)] += factor * t.rate_per_year / 12.0
    np.fill_diagonal(q, -q.sum(axis=1))
    return q


def run(spec, R=2, n=20_000, steps=48, hr_active=0.5, age=60.0, female=0, seed=7, replicates=None):
    model = ms.compile_model(spec)
    rate = ms.patient_rates(spec, None, (R, n))
    hr = np.ones((2, model.n_transitions, steps))
    hr[1] = hr_active
    reps = np.arange(R) if replicates is None else np.asarray(replicates)
    return ms.simulate(model, rate, hr, np.full((R, n), age), np.full((R, n), female), steps, seed, reps)


def test_occupancy_matches_matrix_exponential_in_both_arms():
    spec = illness_death()
    R, n, steps = 2, 20_000, 48
    paths = run(spec, R, n, steps)
    total = R * n
    for arm, factor in ((0, 1.0), (1, 0.5)):
        for t in (6, 24, 48):
            exact = scipy.linalg.expm(generator_matrix(spec, factor) * t)[0]
            simulated = paths.occupancy[:, arm, t, :].sum(axis=0) / total
            se = np.sqrt(exact * (1 - exact) / total)
            assert np.all(np.abs(simulated - exact) < 4 * se + 1e-12), (arm, t, simulated, exact)


def test_everyone_starts_in_the_initial_state_and_counts_are_conserved():
    paths = run(illness_death(), R=3, n=1000, steps=12)
    assert np.all(paths.occupancy[:, :, 0, 0] == 1000)
    assert np.all(paths.occupancy.sum(axis=3) == 1000)


def test_background_mortality_follows_the_life_table():
    spec = DiseaseSpec.model_validate({
        "kind": "disease", "name": "bg only", "initial_state": "alive",
        "states": [{"name": "alive"}, {"name": "other"}, {"name": "dead", "absorbing": True}],
        "transitions": [{"name": "never", "from": "alive", "to": "other", "rate_per_year": 1e-12}],
        "background_mortality": {"to": "dead"},
    })
    n = 200_000
    for female, col in ((0, "q_male"), (1, "q_female")):
        paths = run(spec, R=1, n=n, steps=12, hr_active=1.0, age=80.0, female=female)
        died = np.isfinite(paths.death_time[0, :, 0]).mean()
        q = life_table()[col][80]
        assert abs(died - q) < 4 * math.sqrt(q * (1 - q) / n)


def test_lifetable_hazard_reproduces_q():
    mu = hazard_per_month()
    table = life_table()
    assert np.allclose(1 - np.exp(-12 * mu[0, :100]), table["q_male"][:100])
    assert np.allclose(1 - np.exp(-12 * mu[1, :100]), table["q_female"][:100])


def test_hazard_ratio_on_every_transition_rescales_time_exactly():
    """Common random numbers: the same thresholds, hazards halved, so the first event comes at twice the time."""
    paths = run(illness_death(), R=1, n=5000, steps=600, hr_active=0.5)
    first = np.min(paths.first_time[0], axis=2)  # (n, A) time of the first event of any kind
    both = np.isfinite(first[:, 1])
    assert both.sum() > 4000
    np.testing.assert_allclose(first[both, 1], 2.0 * first[both, 0], rtol=1e-12)


def test_results_do_not_depend_on_threads_or_chunking():
    spec = illness_death(background=True)
    numba.set_num_threads(1)
    try:
        one = run(spec, R=4, n=1500, steps=24)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    two = run(spec, R=4, n=1500, steps=24)
    part = run(spec, R=2, n=1500, steps=24, replicates=[2, 3])
    np.testing.assert_array_equal(one.first_time, two.first_time)
    np.testing.assert_array_equal(one.occupancy, two.occupancy)
    np.testing.assert_array_equal(two.first_time[2:], part.first_time)
    np.testing.assert_array_equal(two.death_time[2:], part.death_time)


def reference_path(spec, seed, replicate, patient, hr, steps, age, female):
    """Plain-Python transcription of the algorithm for one patient in one arm (slow, obvious)."""
    model = ms.compile_model(spec)
    names = [s.name for s in spec.states]
    out = {t.name: [] for t in spec.transitions}
    key_e = np.uint64(rng.stream_key(np.uint64(seed), np.uint64(rng.stream_id("progression")), replicate))
    key_c = np.uint64(rng.stream_key(np.uint64(seed), np.uint64(rng.stream_id("transition")), replicate))
    state, clock, n_ev = spec.initial_state, 0.0, 0
    threshold = -math.log(rng.uniform_open(key_e, patient, 0))
    events = []
    for t in range(steps):
        bg = 0.0
        if spec.background_mortality is not None:
            bg = model.bg_hazard[female, min(int(age + t * model.step_months / 12.0), 119)]
        outgoing = [(k, tr) for k, tr in enumerate(spec.transitions) if tr.from_ == state]
        hazards = [tr.rate_per_year / 12.0 * hr[k] for k, tr in outgoing]
        h = bg + sum(hazards)
        now, left = t * model.step_months, model.step_months
        while h > 0 and clock + h * left >= threshold:
            tau = (threshold - clock) / h
            now, left = now + tau, left - tau
            v = rng.uniform(key_c, patient, n_ev) * h
            acc, chosen = 0.0, None
            for (k, tr), hk in zip(outgoing, hazards):
                acc += hk
                if v < acc:
                    chosen = tr.to
                    events.append((tr.name, now))
                    break
            if chosen is None:
                chosen = spec.background_mortality.to
                events.append(("background_death", now))
            state, n_ev, clock = chosen, n_ev + 1, 0.0
            threshold = -math.log(rng.uniform_open(key_e, patient, n_ev))
            if spec.states[names.index(state)].absorbing:
                return events
            outgoing = [(k, tr) for k, tr in enumerate(spec.transitions) if tr.from_ == state]
            hazards = [tr.rate_per_year / 12.0 * hr[k] for k, tr in outgoing]
            h = bg + sum(hazards)
        else:
            clock += h * left
    return events


@pytest.mark.parametrize("background", [False, True])
def test_kernel_equals_slow_reference(background):
    spec = illness_death(background)
    steps, seed = 120, 11
    paths = run(spec, R=2, n=40, steps=steps, hr_active=0.7, age=75.0, female=1, seed=seed)
    event_names = ms.compile_model(spec).event_names
    for r in range(2):
        for i in range(40):
            for a, factor in ((0, 1.0), (1, 0.7)):
                events = reference_path(spec, seed, r, i, [factor] * 4, steps, 75.0, 1)
                first = {}
                for name, when in events:
                    first.setdefault(name, when)
                for e, name in enumerate(event_names):
                    expected = first.get(name, np.inf)
                    assert paths.first_time[r, i, a, e] == pytest.approx(expected, rel=1e-12, abs=0)
