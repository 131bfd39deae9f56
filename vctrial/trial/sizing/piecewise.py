"""Piecewise-exponential model of a time-to-event trial: expected accrual and events by calendar time,
in closed form. Accrual rates are piecewise constant in calendar time; the control hazard, hazard ratio
and dropout hazard in time since randomization."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from vctrial.trial.sizing.inputs import _err

_INF = math.inf


def _xm(x: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """x − (1 − e^{−ρx})/ρ, stable for small ρx (0 where ρ = 0)."""
    y = rho * x
    small = y < 1e-5
    with np.errstate(divide="ignore", invalid="ignore"):
        big = x - (-np.expm1(-y)) / np.where(rho > 0, rho, 1.0)
    out = np.where(small, x * (y / 2.0 - y * y / 6.0), big)
    return np.where(rho > 0, out, 0.0)


@dataclass(frozen=True)
class SurvivalModel:
    """Hazards by time since randomization (pieces j), accrual by calendar time (periods k)."""

    starts: np.ndarray  # (m,) piece starts (months since randomization)
    lam: np.ndarray  # (m,) control hazard per month
    hr: np.ndarray  # (m,) hazard ratio active/control
    eta: np.ndarray  # (m,) dropout hazard per month (both arms)
    acc_starts: np.ndarray  # (k,) accrual period starts (calendar months)
    acc_ends: np.ndarray  # (k,)
    acc_rates: np.ndarray  # (k,) patients per month
    q_e: float

    @staticmethod
    def build(lam, lam_ends, hr, hr_ends, eta, eta_ends, rates, durations, q_e) -> SurvivalModel:
        cuts = sorted(set(lam_ends) | set(hr_ends) | set(eta_ends))
        starts = np.array([0.0] + cuts)

        def value(vals, ends):
            idx = np.searchsorted(np.asarray(ends, float), starts, side="right")
            return np.asarray(vals, float)[idx]

        acc_ends = np.cumsum(durations)
        return SurvivalModel(starts, value(lam, lam_ends), value(hr, hr_ends), value(eta, eta_ends),
                             np.concatenate([[0.0], acc_ends[:-1]]), acc_ends.astype(float),
                             np.asarray(rates, float), float(q_e))

    @property
    def q_c(self) -> float:
        return 1.0 - self.q_e

    @property
    def ends(self) -> np.ndarray:
        return np.append(self.starts[1:], _INF)

    @property
    def accrual_end(self) -> float:
        return float(self.acc_ends[-1])

    def scaled(self, c: float) -> SurvivalModel:
        return SurvivalModel(self.starts, self.lam, self.hr, self.eta, self.acc_starts, self.acc_ends,
                             self.acc_rates * c, self.q_e)

    def hazards(self, scenario: str, hr_ph: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(control, active) hazards per piece: 'h1' the alternative, 'h0' both arms at the control
        hazard, 'ph' a constant hazard ratio ``hr_ph``, 'lf0' both at q_c λ + q_e λ·hr_ph."""
        if scenario == "h1":
            return self.lam, self.lam * self.hr
        if scenario == "h0":
            return self.lam, self.lam
        if scenario == "ph":
            return self.lam, self.lam * hr_ph
        if scenario == "lf0":
            h = self.lam * (self.q_c + self.q_e * hr_ph)
            return h, h
        raise ValueError(scenario)

    def _arm(self, h: np.ndarray):
        rho = h + self.eta
        w = self.ends - self.starts
        surv = np.exp(-np.concatenate([[0.0], np.cumsum((rho * w)[:-1])]))
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.where(rho > 0, surv * h / np.where(rho > 0, rho, 1.0), 0.0)
        full = k * np.where(np.isfinite(w), -np.expm1(-rho * np.where(np.isfinite(w), w, 0.0)), 1.0)
        return rho, k, full

    def _cum(self, f: float, arm) -> np.ndarray:
        """∫_0^f P(event in piece j by follow-up x) dx per piece."""
        rho, k, full = arm
        w = self.ends - self.starts
        x = np.maximum(f - self.starts, 0.0)
        inside = np.minimum(x, w)
        beyond = np.where(np.isfinite(w) & (x > w), x - np.where(np.isfinite(w), w, 0.0), 0.0)
        return k * _xm(inside, rho) + full * beyond

    def arm_events(self, T: float, h: np.ndarray, q: float) -> np.ndarray:
        """(m,) expected events per hazard piece by calendar time T in one arm (share q of accrual)."""
        arm = self._arm(h)
        total = np.zeros(self.starts.size)
        for s0, s1, a in zip(self.acc_starts, self.acc_ends, self.acc_rates):
            s1 = min(s1, T)
            if s1 <= s0 or a == 0.0:
                continue
            total += a * (self._cum(T - s0, arm) - self._cum(T - s1, arm))
        return q * total

    def events(self, T: float, scenario: str = "h1", hr_ph: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        hc, he = self.hazards(scenario, hr_ph)
        return self.arm_events(T, hc, self.q_c), self.arm_events(T, he, self.q_e)

    def total_events(self, T: float, scenario: str = "h1", hr_ph: float | None = None) -> float:
        dc, de = self.events(T, scenario, hr_ph)
        return float(dc.sum() + de.sum())

    def enrolled(self, T: float) -> float:
        return float(np.sum(self.acc_rates * np.clip(np.minimum(self.acc_ends, T) - self.acc_starts, 0.0, None)))

    def max_events(self, scenario: str = "h1", hr_ph: float | None = None) -> float:
        """Events as T → ∞ (everyone enrolled followed to the event or dropout)."""
        n = self.enrolled(_INF)
        hc, he = self.hazards(scenario, hr_ph)
        return float(n * (self.q_c * self._arm(hc)[2].sum() + self.q_e * self._arm(he)[2].sum()))

    def time_for(self, target: float, scenario: str = "h1", hr_ph: float | None = None,
                 option: str = "--study-duration") -> float:
        """Calendar time at which ``target`` events are expected."""
        top = self.max_events(scenario, hr_ph)
        if target >= top * (1 - 1e-9):
            raise _err(option, f"{target:.1f} events are never expected (at most {top:.1f} with this accrual, "
                       "hazard and dropout): enrol more patients or lower the power")
        hi = max(self.accrual_end, 1.0)
        while self.total_events(hi, scenario, hr_ph) < target:
            hi *= 2.0
        return float(optimize.brentq(lambda t: self.total_events(t, scenario, hr_ph) - target, 0.0, hi,
                                     xtol=1e-10, rtol=1e-12))

    def ahr(self, T: float) -> tuple[float, float, float]:
        """(average hazard ratio, information under H0, information under H1) at time T (H1 events)."""
        dc, de = self.events(T, "h1")
        d = dc + de
        total = float(d.sum())
        if total <= 0:
            return 1.0, 0.0, 0.0
        ahr = math.exp(float(np.sum(d * np.log(self.hr))) / total)
        with np.errstate(divide="ignore", invalid="ignore"):
            i1 = float(np.sum(np.where((dc > 0) & (de > 0), dc * de / (dc + de), 0.0)))
        return ahr, total * self.q_c * self.q_e, i1
