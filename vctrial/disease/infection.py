"""SIR / SEIR transmission over contact layers, stepped daily by a numba kernel.

States: 0 susceptible, 1 exposed (SEIR), 2 infectious, 3 recovered (immune), 4 dead.

Order of one day d (documented here and nowhere else):

1. **Transmission** (parallel over infectious people, against the states at the start of the day):
   each infectious person i meets
   - every other member of their household, each with probability ``beta_household``;
   - a Poisson (or fixed) number of people drawn uniformly from the whole population
     (community layer), each contact transmitting with probability ``beta_community``;
   - for each age group b, a Poisson(C[a_i, b]) number of people drawn uniformly from group b
     (age-mixing layer), each transmitting with probability ``beta_mixing``.
   A contact infects only a susceptible, born, living person, with probability
   beta × (1 − VE_infection(d)) for a vaccinated one. The contact's target and the transmission
   are two uniforms keyed by (infector, day, contact index); a successful contact marks the target.
2. **Progression** (parallel over people), at the end of the day: scheduled transitions whose day
   has come (exposed → infectious, infectious → recovered or dead, recovered → susceptible when
   immunity wanes), then marked susceptibles become exposed (SEIR) or infectious (SIR), then
   background death by the life table (cumulative-hazard clock, one threshold per person).
   Durations are drawn at each transition, keyed by (person, infection number), rounded up to
   whole days (at least one). Death from infection happens at the end of the infectious period
   with probability fatality(age) × (1 − VE_severe(d)).
3. **Tallies** by (age group, region): the day's transitions (new infections, exposed →
   infectious, recoveries, infection deaths, loss of immunity, background deaths by state). People
   with nothing happening cost one read; the number of people in each state at the end of each day
   follows from the states at the start of the call plus these flows (see
   :func:`occupancy_from_flows`).

Because every draw is keyed by who, when and which contact, results are identical however the
people are split among threads, and a vaccinated person in one scenario meets the same contacts
as in the baseline (common random numbers): vaccination can only remove infections they would
have caught on that contact.

A person infected on day d is infectious on days d+1 .. d+D (SIR) or d+L+1 .. d+L+D (SEIR), so
the basic reproduction number on a well-mixed layer is contacts_per_day × beta × E[D] with D the
rounded duration (see :func:`expected_days`).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy import special, stats

from vctrial import rng

S, E, I, R, D = 0, 1, 2, 3, 4
MAX_CONTACTS = 4096  # community contacts per infector per day (cap; far above any realistic mean)
EXPONENTIAL, FIXED, LOGNORMAL = 0, 1, 2


def duration_params(distribution: str, mean_days: float, sd_days: float | None) -> tuple[int, float, float]:
    """(kind, a, b) for the kernel: exponential (mean), fixed (days), lognormal (mu, sigma of the log)."""
    if distribution == "exponential":
        return EXPONENTIAL, float(mean_days), 0.0
    if distribution == "fixed":
        return FIXED, float(mean_days), 0.0
    sigma2 = math.log1p((sd_days / mean_days) ** 2)
    return LOGNORMAL, math.log(mean_days) - sigma2 / 2.0, math.sqrt(sigma2)


def expected_days(kind: int, a: float, b: float) -> float:
    """E[max(1, ceil(X))] of a duration: the mean number of whole days it lasts."""
    if kind == FIXED:
        return float(max(1, math.ceil(a - 1e-12)))
    k = np.arange(1, 200_000)
    if kind == EXPONENTIAL:
        # P(ceil X > k) = P(X > k) = exp(-k/a); E = 1 + Σ_{k>=1} P(X > k)
        return 1.0 + math.exp(-1.0 / a) / (1.0 - math.exp(-1.0 / a))
    tail = stats.lognorm.sf(k, s=b, scale=math.exp(a))
    return 1.0 + float(tail.sum())


@numba.njit(inline="always")
def _duration(kind, a, b, key, person, count):
    if kind == 1:
        d = np.ceil(a - 1e-12)
    elif kind == 0:
        d = np.ceil(-a * np.log(rng.uniform_open(key, person, count)))
    else:
        d = np.ceil(np.exp(a + b * rng.normal(key, person, count)))
    return max(1, int(d))


@numba.njit(inline="always")
def _poisson(lam, u):
    """Inverse-CDF Poisson draw from one uniform."""
    k = 0
    p = np.exp(-lam)
    cum = p
    while u > cum and k < MAX_CONTACTS:
        k += 1
        p *= lam / k
        cum += p
    return k


@numba.njit(inline="always")
def _ve(day, vax_day, ve0, wane):
    if vax_day < 0.0 or day < vax_day:
        return 0.0
    return ve0 * np.exp(-wane * (day - vax_day))


@numba.njit(cache=True)
def init_thresholds(seed, stream, replicate, n):
    """Exponential thresholds of the background-death clock."""
    key = rng.stream_key(seed, stream, replicate)
    out = np.empty(n)
    for i in range(n):
        out[i] = -np.log(rng.uniform_open(key, i, 0))
    return out


@numba.njit(cache=True)
def seed_infections(state, t_next, n_inf, first, count, seir, lat_kind, lat_a, lat_b, inf_kind, inf_a, inf_b,
                    seed, stream_dur, replicate):
    """Infect people first..first+count-1 on day 0 (exposed for SEIR, infectious for SIR)."""
    key = rng.stream_key(seed, stream_dur, replicate)
    for i in range(first, first + count):
        n_inf[i] += 1
        if seir:
            state[i] = E
            t_next[i] = _duration(lat_kind, lat_a, lat_b, key, i, 2 * n_inf[i])
        else:
            state[i] = I
            t_next[i] = _duration(inf_kind, inf_a, inf_b, key, i, 2 * n_inf[i] + 1) - 1


@numba.njit(cache=True, parallel=True)
def step_days(state, t_next, n_inf, newinf, vax_day, ve_inf, ve_sev, wane, group, mix_group, birth_day,
              age_years, female, bg_clock, bg_thr, bg_hazard_day, has_bg,
              hh_ptr, hh_of, beta_h, has_hh,
              c_comm, comm_poisson, beta_c, has_comm,
              mix_order, mix_ptr, mix_c, beta_m, has_mix,
              seir, lat_kind, lat_a, lat_b, inf_kind, inf_a, inf_b, imm_mean,
              ifr_age_edges, ifr_p, n_groups, d0, n_days, n_blocks, seed, replicate, streams):
    """Advance ``n_days`` days from day d0; returns per-day transition counts by group.

    Returns (new_infections (n_days, G), infection_deaths (n_days, G), background_deaths
    (n_days, G, 4) by the state died from, flows (n_days, G, 3): exposed → infectious,
    infectious → recovered, recovered → susceptible).
    """
    n = state.shape[0]
    bs = (n + n_blocks - 1) // n_blocks
    inc = np.zeros((n_blocks, n_days, n_groups), np.int64)
    dth = np.zeros((n_blocks, n_days, n_groups), np.int64)
    bgd = np.zeros((n_blocks, n_days, n_groups, 4), np.int64)
    flow = np.zeros((n_blocks, n_days, n_groups, 3), np.int64)
    k_hh = rng.stream_key(seed, streams[0], replicate)
    k_ct = rng.stream_key(seed, streams[1], replicate)
    k_cn = rng.stream_key(seed, streams[2], replicate)
    k_tr = rng.stream_key(seed, streams[3], replicate)
    k_mx = rng.stream_key(seed, streams[4], replicate)
    k_dur = rng.stream_key(seed, streams[5], replicate)
    k_ifr = rng.stream_key(seed, streams[6], replicate)
    k_imm = rng.stream_key(seed, streams[7], replicate)
    n_mix = mix_ptr.shape[0] - 1
    max_age = bg_hazard_day.shape[1] - 1
    for dd in range(n_days):
        d = d0 + dd
        # 1. transmission
        for b in numba.prange(n_blocks):
            lo = b * bs
            hi = min(lo + bs, n)
            for i in range(lo, hi):
                if state[i] != I:
                    continue
                if has_hh:
                    h = hh_of[i]
                    slot = 0
                    for j in range(hh_ptr[h], hh_ptr[h + 1]):
                        if j == i:
                            continue
                        slot += 1
                        if state[j] == S and birth_day[j] <= d:
                            p = beta_h * (1.0 - _ve(d, vax_day[j], ve_inf[j], wane[j]))
                            if rng.uniform(k_hh, i, d * 64 + slot) < p:
                                newinf[j] = 1
                if has_comm:
                    m = int(c_comm)
                    if comm_poisson:
                        m = _poisson(c_comm, rng.uniform(k_cn, i, d))
                    for c in range(m):
                        step = d * MAX_CONTACTS + c
                        j = int(rng.uniform(k_ct, i, step) * n)
                        if j == i or state[j] != S or birth_day[j] > d:
                            continue
                        p = beta_c * (1.0 - _ve(d, vax_day[j], ve_inf[j], wane[j]))
                        if rng.uniform(k_tr, i, step) < p:
                            newinf[j] = 1
                if has_mix:
                    a = mix_group[i]
                    for g in range(n_mix):
                        size = mix_ptr[g + 1] - mix_ptr[g]
                        if size == 0:
                            continue
                        base = (d * n_mix + g) * MAX_CONTACTS
                        m = _poisson(mix_c[a, g], rng.uniform(k_mx, i, base))
                        for c in range(m):
                            j = mix_order[mix_ptr[g] + int(rng.uniform(k_mx, i, base + 1 + 2 * c) * size)]
                            if j == i or state[j] != S or birth_day[j] > d:
                                continue
                            p = beta_m * (1.0 - _ve(d, vax_day[j], ve_inf[j], wane[j]))
                            if rng.uniform(k_mx, i, base + 2 + 2 * c) < p:
                                newinf[j] = 1
        # 2. progression and 3. tallies
        for b in numba.prange(n_blocks):
            lo = b * bs
            hi = min(lo + bs, n)
            for i in range(lo, hi):
                s = state[i]
                if s == D:
                    continue
                if not has_bg and t_next[i] > d and newinf[i] == 0:
                    continue  # nothing happens to this person today
                if birth_day[i] > d:
                    continue
                gr = group[i]
                if t_next[i] <= d:
                    if s == E:
                        s = I
                        flow[b, dd, gr, 0] += 1
                        t_next[i] = d + _duration(inf_kind, inf_a, inf_b, k_dur, i, 2 * n_inf[i] + 1)
                    elif s == I:
                        p_die = 0.0
                        if ifr_p.shape[0] > 0:
                            ag = 0
                            while ag < ifr_p.shape[0] - 1 and age_years[i] + d / 365.25 >= ifr_age_edges[ag + 1]:
                                ag += 1
                            p_die = ifr_p[ag] * (1.0 - _ve(d, vax_day[i], ve_sev[i], wane[i]))
                        if p_die > 0.0 and rng.uniform(k_ifr, i, n_inf[i]) < p_die:
                            s = D
                            dth[b, dd, gr] += 1
                        else:
                            s = R
                            flow[b, dd, gr, 1] += 1
                            if imm_mean > 0.0:
                                t_next[i] = d + max(1, int(np.ceil(-imm_mean * np.log(rng.uniform_open(k_imm, i, n_inf[i])))))
                            else:
                                t_next[i] = 2147483647
                    elif s == R:
                        s = S
                        flow[b, dd, gr, 2] += 1
                        t_next[i] = 2147483647
                if newinf[i] == 1:
                    newinf[i] = 0
                    if s == S:
                        n_inf[i] += 1
                        inc[b, dd, gr] += 1
                        if seir:
                            s = E
                            t_next[i] = d + _duration(lat_kind, lat_a, lat_b, k_dur, i, 2 * n_inf[i])
                        else:
                            s = I
                            t_next[i] = d + _duration(inf_kind, inf_a, inf_b, k_dur, i, 2 * n_inf[i] + 1)
                if has_bg and s != D:
                    age = int(age_years[i] + d / 365.25)
                    bg_clock[i] += bg_hazard_day[female[i], min(max(age, 0), max_age)]
                    if bg_clock[i] >= bg_thr[i]:
                        bgd[b, dd, gr, s] += 1
                        s = D
                state[i] = s
    return inc.sum(axis=0), dth.sum(axis=0), bgd.sum(axis=0), flow.sum(axis=0)


def occupancy_from_flows(start: np.ndarray, births: np.ndarray, new_inf: np.ndarray, inf_deaths: np.ndarray,
                         bg_deaths: np.ndarray, flows: np.ndarray, seir: bool) -> np.ndarray:
    """People in S, E, I, R at the end of each day of a call, (n_days, G, 4).

    ``start`` (G, 4) are the states before the call, ``births`` (n_days, G) the people born on each
    day; the other arguments are :func:`step_days`' outputs.
    """
    change = np.zeros(flows.shape[:2] + (4,), np.int64)
    change[..., S] += births - new_inf + flows[..., 2]
    change[..., E if seir else I] += new_inf
    change[..., E] -= flows[..., 0]
    change[..., I] += flows[..., 0] - flows[..., 1] - inf_deaths
    change[..., R] += flows[..., 1] - flows[..., 2]
    change -= bg_deaths
    return start[None] + np.cumsum(change, axis=0)


def final_size(r0: float) -> float:
    """Root z in (0, 1) of z = 1 − exp(−R0·z) (0 when R0 <= 1): the SIR final attack rate."""
    if r0 <= 1.0:
        return 0.0
    # z = 1 + W(−R0 e^{−R0}) / R0 on the principal branch
    return float(1.0 + special.lambertw(-r0 * math.exp(-r0), 0).real / r0)
