"""Time-to-event designs: Schoenfeld (1983) events, Lachin–Foulkes (1986, on the log hazard ratio as
gsDesign's ``nSurv``) and the average hazard ratio (gsDesign2's ``gs_design_ahr``), the default with a
changing hazard ratio. With ``--study-duration`` the accrual rates are scaled to the power; without it
the study duration is solved."""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

from vctrial.trial.sizing.inputs import _breaks, _err, _float, _floats, _positive, _show
from vctrial.trial.sizing.piecewise import SurvivalModel
from vctrial.trial.sizing.result import Design, Look, _round_arms
from vctrial.trial.sizing.sequential import Sequential, _stops, _z, crossing, crossing_means

METHODS = ("schoenfeld", "lachin-foulkes", "ahr")


def schoenfeld_events(hr: float, alpha1: float, power: float, r: float) -> float:
    """Schoenfeld (1983): events for a log-rank test of hazard ratio ``hr`` with allocation r:1."""
    qe = r / (1 + r)
    return (_z(alpha1) + _z(1.0 - power)) ** 2 / (qe * (1 - qe) * math.log(hr) ** 2)


def _lf_variances(model: SurvivalModel, T: float, hr: float) -> tuple[float, float, float]:
    """(σ₀², σ₁², events under H1) per unit of accrual scale for Lachin–Foulkes at time T."""
    dc1, de1 = model.events(T, "ph", hr)
    dc0, de0 = model.events(T, "lf0", hr)
    v1 = 1.0 / dc1.sum() + 1.0 / de1.sum()
    v0 = 1.0 / dc0.sum() + 1.0 / de0.sum()
    return float(v0), float(v1), float(dc1.sum() + de1.sum())


def design_survival(*, hazard_ratio_ci=None, common: dict, **options) -> Design:
    """A time-to-event design (see the module docstring); with ``hazard_ratio_ci`` also its assurance."""
    design = _design_point(common=common, **options)
    if hazard_ratio_ci is not None:
        hrs = _floats("--hazard-ratio", options.get("hazard_ratio"))
        ci = _positive("--hazard-ratio-ci", _floats("--hazard-ratio-ci", hazard_ratio_ci))
        if len(hrs) != 1:
            raise _err("--hazard-ratio-ci", "assurance needs one hazard ratio (not pieces in time)")
        if len(ci) != 2 or not ci[0] < hrs[0] < ci[1]:
            raise _err("--hazard-ratio-ci", f"must be LOWER,UPPER around the hazard ratio {hrs[0]:g}, got {_show(ci)}")
        design.inputs.append(("hazard ratio 95% interval", _show(ci)))
        design.params["hazard_ratio_ci"] = (float(ci[0]), float(ci[1]))
        design.assurance = assurance(design, hrs[0], (ci[0], ci[1]))
    return design


def assurance(design: Design, hr: float, ci: tuple[float, float], nodes: int = 64) -> float:
    """The rounded design's probability of success averaged over log HR ~ N(log hr, sd²), sd from the 95%
    interval ``ci`` (O'Hagan, Stevens & Campbell 2005): its information held fixed, the drift of the
    final Z is that which gives its power at ``hr``, scaled by log HR / log hr; Gauss–Hermite quadrature.
    Only rejections for benefit count (as the simulator's ``reject``)."""
    s = design.seq
    up = lambda delta: float(crossing(s.fractions, s.efficacy, s.futility, delta)[0].sum())  # noqa: E731
    other = (lambda delta: float(special.ndtr(-delta - s.efficacy[0]))) if design.sided == "two" and s.looks == 1 \
        else (lambda delta: 0.0)
    delta = optimize.brentq(lambda x: up(x) + other(x) - design.power_rounded, -5.0, 40.0, xtol=1e-12)
    sd = (math.log(ci[1]) - math.log(ci[0])) / (2 * 1.959963984540054)
    x, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-x²/2): a standard normal after / sqrt(2π)
    scaled = delta * (math.log(hr) + sd * x) / math.log(hr)
    return float(np.dot(w, [up(v) for v in scaled]) / math.sqrt(2 * math.pi))


def _design_point(*, hazard_ratio=None, hazard_ratio_breaks=None, control_median=None, control_hazard=None,
                    control_hazard_breaks=None, dropout_rate=None, dropout_breaks=None, accrual_rate=None,
                    accrual_duration=None, study_duration=None, method=None, information="h0-h1",
                    common: dict) -> Design:
    alpha, sided, power, r, weights, seq = (common[k] for k in ("alpha", "sided", "power", "r", "weights", "seq"))
    alpha1 = alpha / 2 if sided == "two" else alpha
    za, zb = _z(alpha1), _z(1.0 - power)
    hrs = _positive("--hazard-ratio", _floats("--hazard-ratio", hazard_ratio))
    if not hrs:
        raise _err("--hazard-ratio", "needed for a time-to-event design")
    hr_ends = _breaks("--hazard-ratio-breaks", hazard_ratio_breaks, len(hrs), "--hazard-ratio")
    if len(hrs) == 1 and hrs[0] == 1.0:
        raise _err("--hazard-ratio", "must differ from 1 (no effect to detect)")
    if information not in ("h0-h1", "h0"):
        raise _err("--information", f"must be h0-h1 or h0, got {information!r}")
    if method is None:
        method = "ahr" if len(hrs) > 1 else "lachin-foulkes"
    if method not in METHODS:
        raise _err("--method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "schoenfeld" and len(hrs) > 1:
        raise _err("--method", "schoenfeld takes one hazard ratio; with a changing hazard ratio use ahr "
                   "(--information h0 is Schoenfeld's formula on the average hazard ratio)")
    inputs = [("hazard ratio", _show(hrs) + (f" (breaks at month {_show(hr_ends)})" if hr_ends else ""))]

    if control_median is not None and control_hazard is not None:
        raise _err("--control-median", "give --control-median or --control-hazard, not both")
    if control_median is not None:
        med = _positive("--control-median", _floats("--control-median", control_median))
        lam = [math.log(2) / m for m in med]
        lam_ends = _breaks("--control-hazard-breaks", control_hazard_breaks, len(lam), "--control-median")
    elif control_hazard is not None:
        lam = _positive("--control-hazard", _floats("--control-hazard", control_hazard))
        lam_ends = _breaks("--control-hazard-breaks", control_hazard_breaks, len(lam), "--control-hazard")
    else:
        lam, lam_ends = None, []

    if lam is None:  # events only
        if len(hrs) > 1:
            raise _err("--control-hazard", "a changing hazard ratio needs the control hazard and accrual "
                       "(the average hazard ratio depends on when events happen)")
        for opt, v in (("--accrual-rate", accrual_rate), ("--accrual-duration", accrual_duration),
                       ("--study-duration", study_duration), ("--dropout-rate", dropout_rate)):
            if v is not None:
                raise _err(opt, "needs --control-median or --control-hazard (the sample size needs a control hazard)")
        d_fix = schoenfeld_events(hrs[0], alpha1, power, r)
        d = d_fix * seq.inflation(za, zb)
        design = Design("survival", "schoenfeld (events only)", alpha, sided, power, r, weights, seq, inputs,
                        math.nan, math.nan, 0, (0, 0), events=d, events_round=math.ceil(d - 1e-9),
                        schoenfeld_events=d_fix)
        design.looks = _looks_ph(design, None, None, None)
        design.expected = _expected_ph(design, None)
        design.power_rounded = _power_schoenfeld(design, design.events_round, hrs[0])
        design.notes.append("no control hazard given: events only (add --control-median and accrual for N)")
        return design

    eta = _floats("--dropout-rate", dropout_rate) if dropout_rate is not None else [0.0]
    if any(e < 0 for e in eta):
        raise _err("--dropout-rate", f"must be >= 0, got {_show(eta)}")
    eta_ends = _breaks("--dropout-breaks", dropout_breaks, len(eta), "--dropout-rate")
    if accrual_duration is None:
        raise _err("--accrual-duration", "needed with a control hazard: the months of each accrual period")
    durations = _positive("--accrual-duration", _floats("--accrual-duration", accrual_duration))
    if accrual_rate is None:
        if study_duration is None:
            raise _err("--accrual-rate", "needed (patients per month) when the study duration is to be solved; "
                       "or give --study-duration to scale relative rates")
        rates = [1.0] * len(durations)
    else:
        rates = _floats("--accrual-rate", accrual_rate)
        if any(a < 0 for a in rates) or not any(a > 0 for a in rates):
            raise _err("--accrual-rate", f"must be >= 0 and not all 0, got {_show(rates)}")
    if len(rates) != len(durations):
        raise _err("--accrual-rate", f"give one rate per accrual period ({len(durations)} durations), got {len(rates)}")
    T = _float("--study-duration", study_duration)
    if T is not None and T <= sum(durations) - 1e-12:
        raise _err("--study-duration", f"must be longer than the accrual ({sum(durations):g} months), got {T:g}")
    model = SurvivalModel.build(lam, lam_ends, hrs, hr_ends, eta, eta_ends, rates, durations, r / (1 + r))
    inputs += [("control hazard", f"{_show(lam)} per month"
                + (f" (breaks at month {_show(lam_ends)})" if lam_ends else "")
                + (f", median {_show([math.log(2) / x for x in lam])} months" if len(lam) == 1 else "")),
               ("dropout", f"{_show(eta)} per month" + (f" (breaks at month {_show(eta_ends)})" if eta_ends else "")),
               ("accrual", f"{_show(durations)} months at {'relative ' if T is not None else ''}rates "
                f"{_show(rates)} per month"),
               ("study duration", f"{T:g} months (accrual rates scaled to the power)" if T is not None
                else "solved (accrual rates as given)")]
    if method == "ahr":
        inputs.append(("information", "H0 and H1 (gsDesign2 default)" if information == "h0-h1"
                       else "H0 only (Schoenfeld on the average hazard ratio)"))
    design = Design("survival", method, alpha, sided, power, r, weights, seq, inputs, 0.0, 0.0, 0, (0, 0),
                    model=model, accrual_durations=durations)
    design.params = {"hrs": hrs, "hr_ends": hr_ends, "lam": lam, "lam_ends": lam_ends, "eta": eta,
                     "eta_ends": eta_ends, "information": information, "mode": "scale" if T is not None else "solve"}
    if len(hrs) == 1:
        design.schoenfeld_events = schoenfeld_events(hrs[0], alpha1, power, r)
    infl = seq.inflation(za, zb)

    if method == "schoenfeld":
        d = design.schoenfeld_events * infl
        if T is not None:
            c = d / model.total_events(T)
        else:
            c = 1.0
            T = model.time_for(d, option="--accrual-rate")
        _finish_ph(design, c, T, d, hrs[0], "h1", None)
    elif method == "lachin-foulkes":
        def needed(t):  # accrual scale c giving the power at study duration t
            hr_lf = hrs[0] if len(hrs) == 1 else model.ahr(t)[0]
            v0, v1, _ = _lf_variances(model, t, hr_lf)
            return infl * ((za * math.sqrt(v0) + zb * math.sqrt(v1)) / abs(math.log(hr_lf))) ** 2, hr_lf

        if T is None:
            T = _solve_duration(model, lambda t: math.log(needed(t)[0]), "--accrual-rate")
        c, hr_lf = needed(T)
        if design.params["mode"] == "solve":
            c = 1.0  # the rates as given (needed(T) is 1 up to the root finder's tolerance)
        if len(hrs) > 1:
            design.notes.append(f"Lachin-Foulkes with the average hazard ratio {hr_lf:.4f} at month {T:g} as a "
                                "constant hazard ratio (as gsDesign2 fixed_design_lf)")
        d = c * _lf_variances(model, T, hr_lf)[2]
        _finish_ph(design, c, T, d, hr_lf, "ph", hr_lf)
    else:
        _design_ahr(design, T, information)
    return design


def _solve_duration(model: SurvivalModel, log_need, option: str) -> float:
    """Study duration at which the needed accrual scale is 1 (accrual rates as given)."""
    lo = model.accrual_end
    if log_need(lo) <= 0:
        raise _err(option, "the trial has the power before accrual ends: lower the accrual rates or durations "
                   "(or give --study-duration)")
    hi = lo * 2 + 12
    while log_need(hi) > 0:
        if hi > 1e4:
            raise _err(option, "the power is not reached with this accrual, however long the follow-up: enrol "
                       "more patients (raise the accrual rates or durations)")
        hi *= 2
    return float(optimize.brentq(log_need, lo, hi, xtol=1e-10, rtol=1e-12))


def _finish_ph(design: Design, c: float, T: float, d: float, hr: float, scenario: str, hr_ph) -> None:
    """Proportional-hazards designs (Schoenfeld, Lachin–Foulkes): N, looks, expected values."""
    model = design.model.scaled(c)
    design.model = model
    design.accrual_rates = [float(x) for x in model.acc_rates]
    design.duration = T
    design.events = d
    design.events_round = math.ceil(d - 1e-9)
    design.n = design.n_enrolled = model.enrolled(T)
    design.n_round, design.arms_round = _round_arms(design.n, design.allocation, design.weights)
    design.params.update(c=c, hr_design=hr, scenario=scenario, hr_ph=hr_ph)
    design.looks = _looks_ph(design, model, scenario, hr_ph)
    design.expected = _expected_ph(design, model)
    if design.method == "schoenfeld":
        design.power_rounded = _power_schoenfeld(design, design.events_round, hr)
    else:
        scale = design.n_round / design.n
        v0, v1, _ = _lf_variances(model.scaled(scale), T, hr)
        if design.seq.looks == 1:
            z = (abs(math.log(hr)) - _z(design.alpha1) * math.sqrt(v0)) / math.sqrt(v1)
            design.power_rounded = float(special.ndtr(z))
        else:
            s = design.seq
            up, _ = crossing(s.fractions, s.efficacy, s.futility, s.drift * math.sqrt(scale))
            design.power_rounded = float(up.sum())


def _power_schoenfeld(design: Design, events: float, hr: float) -> float:
    q = design.allocation / (1 + design.allocation)
    drift = abs(math.log(hr)) * math.sqrt(events * q * (1 - q))
    s = design.seq
    up, _ = crossing(s.fractions, s.efficacy, s.futility, drift)
    p = float(up.sum())
    if design.sided == "two" and s.looks == 1:
        p += float(special.ndtr(-drift - s.efficacy[0]))
    return p


def _looks_ph(design: Design, model: SurvivalModel | None, scenario, hr_ph) -> list[Look]:
    s = design.seq
    up, _ = crossing(s.fractions, s.efficacy, s.futility, s.drift)
    cum = np.cumsum(up)
    looks = []
    for k in range(s.looks):
        d_k = s.fractions[k] * design.events
        t_k = n_k = None
        if model is not None:
            t_k = design.duration if k == s.looks - 1 else model.time_for(d_k, scenario, hr_ph)
            n_k = model.enrolled(t_k)
        looks.append(Look(float(s.fractions[k]), d_k, t_k, n_k, float(s.efficacy[k]), float(s.futility[k]),
                          float(s.alpha_spent[k]), float(cum[k])))
    return looks


def _expected_ph(design: Design, model: SurvivalModel | None) -> dict[str, dict[str, float]]:
    s = design.seq
    out = {}
    for name, drift in (("H1", s.drift), ("H0", 0.0)):
        up, low = crossing(s.fractions, s.efficacy, s.futility, drift)
        p = _stops(up, low)
        row = {"events": float(np.dot(p, s.fractions * design.events)), "reject": float(up.sum())}
        if model is not None:
            times = []
            for k in range(s.looks):
                d_k = s.fractions[k] * design.events
                if name == "H1":
                    times.append(design.looks[k].time)
                else:
                    times.append(model.time_for(d_k, "h0"))
            row["duration"] = float(np.dot(p, times))
            row["n"] = float(np.dot(p, [model.enrolled(t) for t in times]))
        out[name] = row
    return out


def _ahr_state(model: SurvivalModel, T: float, fractions: np.ndarray):
    """Look times (unit accrual scale), AHR and information per unit scale at event fractions of T."""
    e_final = model.total_events(T)
    times, ahrs, i0, i1 = [], [], [], []
    for f in fractions:
        t = T if f >= 1.0 else model.time_for(f * e_final)
        a, j0, j1 = model.ahr(t)
        times.append(t)
        ahrs.append(a)
        i0.append(j0)
        i1.append(j1)
    return np.array(times), np.array(ahrs), np.array(i0), np.array(i1)


def _ahr_power(seq: Sequential, ahrs, i0, i1, c: float, information: str, sided: str) -> tuple[np.ndarray, np.ndarray]:
    """Crossing probabilities under H1 of an AHR design with accrual scale c."""
    i1 = i1 if information == "h0-h1" else i0
    theta = -np.log(ahrs)
    means = theta * np.sqrt(c * i0)
    sd = np.sqrt(i0 / i1)
    up, low = crossing_means(i1, seq.efficacy, seq.futility, means, sd)
    if sided == "two" and seq.looks == 1:
        up = up + special.ndtr((-seq.efficacy - means) / sd)
    return up, low


def _design_ahr(design: Design, T: float | None, information: str) -> None:
    model = design.model
    seq = design.seq
    target = design.power

    def power_at(t: float, c: float) -> float:
        _, ahrs, i0, i1 = _ahr_state(model, t, seq.fractions)
        return float(_ahr_power(seq, ahrs, i0, i1, c, information, design.sided)[0].sum())

    if design.params["mode"] == "scale":
        _, ahrs, i0, i1 = _ahr_state(model, T, seq.fractions)
        if not np.all(ahrs < 1.0):
            raise _err("--hazard-ratio", f"the average hazard ratio must be below 1 at every look, got "
                       f"{_show(np.round(ahrs, 4))}")

        def gap(logc):
            return float(_ahr_power(seq, ahrs, i0, i1, math.exp(logc), information, design.sided)[0].sum()) - target
        # closed form of the fixed design as a starting bracket
        za, zb = _z(design.alpha1), _z(1.0 - target)
        ii1 = i1[-1] if information == "h0-h1" else i0[-1]
        c0 = ((za / math.sqrt(i0[-1]) + zb / math.sqrt(ii1)) / -math.log(ahrs[-1])) ** 2
        lo, hi = math.log(c0) - 1.0, math.log(c0) + 1.0
        while gap(lo) > 0:
            lo -= 1.0
        while gap(hi) < 0:
            hi += 1.0
        c = math.exp(optimize.brentq(gap, lo, hi, xtol=1e-12, rtol=1e-13))
        design.params["inflation"] = c / c0
    else:
        c = 1.0
        lo = model.accrual_end

        def shortfall(t):
            return target - power_at(t, 1.0)

        if shortfall(lo) <= 0:
            raise _err("--accrual-rate", "the trial has the power before accrual ends: lower the accrual rates or "
                       "durations (or give --study-duration)")
        hi = lo * 2 + 12
        while shortfall(hi) > 0:
            if hi > 1e4:
                raise _err("--accrual-rate", "the power is not reached with this accrual, however long the "
                           "follow-up: enrol more patients")
            hi *= 2
        T = float(optimize.brentq(shortfall, lo, hi, xtol=1e-10, rtol=1e-12))
    times, ahrs, i0, i1 = _ahr_state(model, T, seq.fractions)
    scaled = model.scaled(c)
    design.model = scaled
    design.accrual_rates = [float(x) for x in scaled.acc_rates]
    design.duration = T
    design.events = c * model.total_events(T)
    design.events_round = math.ceil(design.events - 1e-9)
    design.n = design.n_enrolled = scaled.enrolled(T)
    design.n_round, design.arms_round = _round_arms(design.n, design.allocation, design.weights)
    design.params.update(c=c, ahr=float(ahrs[-1]), info0=float(c * i0[-1]), info1=float(c * i1[-1]))
    up, low = _ahr_power(seq, ahrs, i0, i1, c, information, design.sided)
    cum = np.cumsum(up)
    design.looks = [Look(float(seq.fractions[k]), c * model.total_events(times[k]), float(times[k]),
                         scaled.enrolled(times[k]), float(seq.efficacy[k]), float(seq.futility[k]),
                         float(seq.alpha_spent[k]), float(cum[k]), float(ahrs[k])) for k in range(seq.looks)]
    p1 = _stops(up, low)
    up0, low0 = crossing(seq.fractions, seq.efficacy, seq.futility, 0.0)
    p0 = _stops(up0, low0)
    ev = np.array([lk.information for lk in design.looks])
    t0 = [scaled.time_for(e, "h0") for e in ev]
    design.expected = {
        "H1": {"events": float(p1 @ ev), "duration": float(p1 @ times),
               "n": float(p1 @ [lk.enrolled for lk in design.looks]),
               "reject": float(up.sum())},
        "H0": {"events": float(p0 @ ev), "duration": float(p0 @ t0), "n": float(p0 @ [scaled.enrolled(t) for t in t0]),
               "reject": float(up0.sum())},
    }
    # power at the written design: rates scaled to the rounded N, analysis at the rounded event count
    c_r = c * design.n_round / design.n
    m_r = model.scaled(c_r)
    t_r = m_r.time_for(design.events_round) if design.events_round < m_r.max_events() else T
    _, ahrs_r, i0_r, i1_r = _ahr_state(model, t_r, seq.fractions)
    design.power_rounded = float(_ahr_power(seq, ahrs_r, i0_r, i1_r, c_r, information, design.sided)[0].sum())
