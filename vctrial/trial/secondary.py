"""Key secondary endpoints of a two-arm trial with a time-to-event primary endpoint, tested in a fixed
sequence after the primary (``secondary_endpoints``, ``analysis.secondary_testing: hierarchical``).

Each secondary is the time to the first of its events, analysed at the primary's data cut: the final
analysis, or the look at which a group-sequential trial stopped. The analysis is the primary's (its
sidedness, alpha, confidence level, strata and, for ``method: cox``, covariates) with the secondary's own
method: log-rank test and Cox hazard ratio, or the Cox Wald test. The truth is the counterfactual hazard
ratio in the trial's own patients (every patient under both arms, followed to the same cut), as for the
primary.

Fixed-sequence testing: the first secondary is rejected only if the primary is, and at the full alpha;
each next one only if every one before it is. This keeps the family-wise error rate over the primary and
the secondaries at alpha in a fixed design: any false rejection needs the first true null hypothesis of
the sequence rejected, and that is a level-alpha test. With interim looks the secondaries are tested once,
at the full alpha, at the look where the trial stopped. That is a common simplification, not an exact
procedure: Hung, Wang & O'Neill (2007, J Biopharm Stat 17:1201-1210) show that it can inflate the
family-wise error rate when the primary crosses an interim bound; group-sequential bounds for the
secondaries too (Glimm, Maurer & Bretz 2010; Tamhane, Mehta & Liu 2010) keep it, and are not implemented.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from vctrial.results import binomial_interval
from vctrial.spec.protocol import Protocol, SecondaryEndpoint, TrialProtocol
from vctrial.trial import run

KEYS = ("estimate", "ci_lower", "ci_upper", "p_value", "statistic", "true_effect", "reject", "n_events")
"""Per-secondary results of one analysis, stored as ``secondary_<key>``."""


def analyse(trial: run.Trial, primary: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every key secondary endpoint at the primary's data cut, and the fixed-sequence decisions.

    Args:
        trial: the per-patient arrays of the batch (:func:`vctrial.trial.run.simulate_patients`).
        primary: the primary's per-replicate outputs; ``duration_months`` (R,) is the date of its final or
            stopping analysis (months from the start of enrollment) and ``reject`` (R,) its decision.

    Returns:
        ``secondary_<key>`` (R, S) for the keys of :data:`KEYS` (``secondary_n_events`` (R, S, A)), and
        ``secondary_reject_hierarchical`` (R, S).
    """
    spec = trial.protocol.spec
    date = np.asarray(primary["duration_months"], np.float64)
    per = [_one(trial, sec, date) for sec in spec.secondary_endpoints]
    out = {f"secondary_{key}": np.stack([res[key] for res in per], axis=1) for key in KEYS}
    out["secondary_reject_hierarchical"] = fixed_sequence(primary["reject"], out["secondary_reject"])
    return out


def fixed_sequence(primary_reject: np.ndarray, secondary_reject: np.ndarray) -> np.ndarray:
    """(R, S) fixed-sequence decisions: secondary j is rejected when the primary and secondaries 0..j all
    are (each unadjusted, at the full alpha)."""
    chain = np.concatenate([np.asarray(primary_reject, bool)[:, None], np.asarray(secondary_reject, bool)], axis=1)
    return np.logical_and.accumulate(chain, axis=1)[:, 1:]


def _one(trial: run.Trial, sec: SecondaryEndpoint, date: np.ndarray) -> dict[str, np.ndarray]:
    """One secondary at the cut ``date`` (R,): statistic, p-value, estimate and interval, truth, events,
    and the unadjusted superiority decision."""
    spec = trial.protocol.spec
    # run's analysis of a cut reads the protocol's analysis: give it the primary's with this secondary's
    # method (a superiority test whatever the primary's hypothesis)
    analysis = spec.analysis.model_copy(update={"method": sec.method, "hypothesis": "superiority", "margin": None})
    own_spec = spec.model_copy(update={"analysis": analysis})
    protocol = Protocol(trial.protocol.path, own_spec, trial.protocol.text, trial.protocol.cohort,
                        trial.protocol.disease)
    own = dataclasses.replace(trial, protocol=protocol,
                              covariates=trial.covariates if sec.method == "cox" else None)
    t_all, t_ep, t_loss = run.endpoint_data(own, list(sec.events))
    res = run._tte_cut(own, t_all, t_ep, t_loss, date)
    res.update(run._decide(own_spec, res))
    return res


# --------------------------------------------------------------------------------------------
# Dataset layout and summary.
# --------------------------------------------------------------------------------------------

VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "secondary_estimate": (("secondary",), "1", "estimated hazard ratio (active vs control) of each key secondary "
                           "endpoint"),
    "secondary_ci_lower": (("secondary",), "1", "lower confidence limit of each key secondary hazard ratio"),
    "secondary_ci_upper": (("secondary",), "1", "upper confidence limit of each key secondary hazard ratio"),
    "secondary_p_value": (("secondary",), "1", "p-value of each key secondary endpoint (unadjusted)"),
    "secondary_statistic": (("secondary",), "1", "test statistic of each key secondary endpoint (log-rank z or Cox "
                            "Wald z; negative favours the active arm)"),
    "secondary_true_effect": (("secondary",), "1", "counterfactual hazard ratio of each key secondary endpoint in the "
                              "trial's own patients (every patient under every arm)"),
    "secondary_reject": (("secondary",), "1", "key secondary null hypothesis rejected at the full alpha in the "
                         "favourable direction, unadjusted (whatever the primary's result)"),
    "secondary_reject_hierarchical": (("secondary",), "1", "key secondary rejected by the fixed-sequence test: the "
                                      "primary and every secondary up to this one rejected"),
    "secondary_n_events": (("secondary", "arm"), "events", "key secondary endpoint events observed at the primary's "
                           "(final or stopping) analysis"),
}
"""Dataset variables of the key secondary endpoints: name -> (dimensions after replicate, units, long name)."""


def coordinates(spec: TrialProtocol) -> dict[str, tuple]:
    """The ``secondary`` coordinate (names, in testing order) and ``secondary_label``."""
    secs = spec.secondary_endpoints
    return {"secondary": ("secondary", [s.name for s in secs],
                          {"long_name": "key secondary endpoint, in the order of the fixed-sequence test"}),
            "secondary_label": ("secondary", [s.label or s.name for s in secs],
                                {"long_name": "key secondary endpoint label"})}


def summary_rows(ds: xr.Dataset) -> list[tuple[str, float, float, float]]:
    """Rows of :func:`vctrial.results.summarize` for the key secondaries: at the global null the family-wise
    error rate over the primary and the secondaries (fixed-sequence and unadjusted); then per secondary its
    hierarchical rejection rate (power, or type I error at the global null), unadjusted rejection rate,
    geometric mean hazard ratio, mean true hazard ratio and confidence-interval coverage."""
    n = ds.sizes["replicate"]
    null = bool(int(ds.attrs.get("null_effect", 0)))
    rows: list[tuple[str, float, float, float]] = []

    def share(hits: np.ndarray) -> tuple[float, float, float]:
        hits = np.asarray(hits, bool)
        return (float(hits.mean()) if n else np.nan, *binomial_interval(int(hits.sum()), n))

    primary = ds["reject"].values.astype(bool)
    hier = ds["secondary_reject_hierarchical"].transpose("replicate", "secondary").values.astype(bool)
    raw = ds["secondary_reject"].transpose("replicate", "secondary").values.astype(bool)
    if null:
        rows.append(("family-wise error rate (hierarchical)", *share(primary | hier.any(axis=1))))
        rows.append(("any rejected, unadjusted", *share(primary | raw.any(axis=1))))
    label = "type I error" if null else "power"
    for j, name in enumerate(ds["secondary"].values):
        one = ds.isel(secondary=j)
        rows.append((f"{name}: {label} (hierarchical)", *share(hier[:, j])))
        rows.append((f"{name}: rejected, unadjusted", *share(raw[:, j])))
        log_est = np.log(one["secondary_estimate"].values)
        ok = np.isfinite(log_est)
        mean = log_est[ok].mean() if ok.any() else np.nan
        half = 1.96 * log_est[ok].std(ddof=1) / np.sqrt(ok.sum()) if ok.sum() > 1 else np.nan
        rows.append((f"{name}: estimate (geometric mean HR)", np.exp(mean), np.exp(mean - half), np.exp(mean + half)))
        truth = one["secondary_true_effect"].values
        known = np.isfinite(truth)
        rows.append((f"{name}: true effect (mean)", np.exp(np.log(truth[known]).mean()) if known.any() else np.nan,
                     np.nan, np.nan))
        lo, hi = one["secondary_ci_lower"].values, one["secondary_ci_upper"].values
        judged = np.isfinite(lo) & np.isfinite(hi) & known
        cover = ((lo <= truth) & (truth <= hi))[judged]
        value = float(cover.mean()) if cover.size else np.nan
        rows.append((f"{name}: CI coverage of true effect", value, *binomial_interval(int(cover.sum()), cover.size)))
    return rows

