"""A protocol's simulated trials as a results Dataset: the job the generic runner executes, the
documented layout (docs/outputs.md, "Trial run"), and :func:`run_trial`, which does both.

``vctrial.execute`` knows jobs, not trials; this module is where a trial becomes one.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from vctrial.execute import ExecOptions, Job, run_jobs
from vctrial.results import provenance
from vctrial.spec.protocol import Protocol
from vctrial.trial import endpoints, secondary
from vctrial.trial.run import simulate_chunk
from vctrial.trial.sites import site_labels

# variable -> (dimensions after "replicate", units, long name); "{effect}" is filled per endpoint
VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "statistic": ((), "1", "test statistic (log-rank z or ANCOVA t; negative favours the active arm when lower is better)"),
    "p_value": ((), "1", "p-value"),
    "p_adjusted": ((), "1", "p-value adjusted for the several comparisons with the control (analysis.multiplicity)"),
    "reject": ((), "1", "null hypothesis rejected at the protocol's alpha in the favourable direction"),
    "harm": ((), "1", "significant in the unfavourable direction (the harmful side of the test, at the level of one side)"),
    "estimate": ((), "{unit}", "estimated {effect}"),
    "ci_lower": ((), "{unit}", "lower confidence limit of the {effect}"),
    "ci_upper": ((), "{unit}", "upper confidence limit of the {effect}"),
    "sci_lower": ((), "{unit}", "lower simultaneous confidence limit of the {effect} (all comparisons together, analysis.multiplicity dunnett or bonferroni)"),
    "sci_upper": ((), "{unit}", "upper simultaneous confidence limit of the {effect} (all comparisons together, analysis.multiplicity dunnett or bonferroni)"),
    "log_hr_se": ((), "1", "standard error of the log hazard ratio"),
    "true_effect": ((), "{unit}", "counterfactual {effect} in the trial's own patients (every patient under every arm)"),
    "duration_months": ((), "months", "trial duration from the start of enrollment to the (final or stopping) analysis"),
    "n_screened": ((), "patients", "candidates screened to randomize the sample"),
    "n_randomized": (("arm",), "patients", "patients randomized"),
    "n_analysed": (("arm",), "patients", "patients in the analysis"),
    "n_events": (("arm",), "events", "endpoint events observed at the analysis"),
    "km_survival": (("arm", "month"), "1", "Kaplan-Meier endpoint-free probability"),
    "biomarker_mean": (("arm", "visit_month"), "{biomarker_unit}", "mean observed biomarker in analysed patients"),
    "occupancy": (("arm", "month", "state"), "1", "fraction of all patients in each state had they all received the arm"),
    "n_enrolled": (("arm",), "patients", "patients randomized by the analysis date (by the stopping look with interim analyses)"),
    "imbalance": ((), "patients", "realized imbalance: patients on the active arm minus its allocation share of all randomized"),
    "max_stratum_imbalance": ((), "patients", "largest |patients of an arm in a stratum - its allocation share of the stratum| over strata and arms"),
    "site_randomized": (("site",), "patients", "patients randomized at each site"),
    "site_screened": (("site",), "patients", "candidates screened at each site"),
    "site_opened_month": (("site",), "months", "calendar month each site opened"),
    "enrollment_months": ((), "months", "calendar month the last patient was randomized (NaN: enrollment closed first)"),
    "stop_look": ((), "1", "look at which the trial stopped (1 = first)"),
    "stop_reason": ((), "1", "why the trial stopped: 0 final analysis, 1 efficacy at an interim look, 2 futility at an interim look"),
    "look_performed": (("look",), "1", "the look took place (not after the final analysis at the maximum duration)"),
    "look_date_months": (("look",), "months", "calendar date of each look"),
    "look_information": (("look",), "{info}", "information at each look"),
    "look_fraction": (("look",), "1", "observed information fraction at each look"),
    "look_z": (("look",), "1", "standardized statistic at each look (positive favours the active arm), whether or not the trial stopped before"),
    "look_estimate": (("look",), "{unit}", "estimated {effect} at each look"),
    "look_true_effect": (("look",), "{unit}", "counterfactual {effect} at each look's data cut"),
    "look_n_enrolled": (("look",), "patients", "patients randomized by each look"),
    "efficacy_bound": (("look",), "1", "efficacy bound on the z scale, recomputed at the observed information fractions"),
    "futility_bound": (("look",), "1", "non-binding futility bound on the z scale (-inf: none)"),
    "rci_lower": ((), "{unit}", "lower repeated confidence limit of the {effect} at the stopping look (level 1 - 2 alpha)"),
    "rci_upper": ((), "{unit}", "upper repeated confidence limit of the {effect} at the stopping look (level 1 - 2 alpha)"),
    "mue_estimate": ((), "{unit}", "median-unbiased {effect} under the stagewise ordering"),
    "mue_ci_lower": ((), "{unit}", "lower stagewise-ordering confidence limit of the {effect}"),
    "mue_ci_upper": ((), "{unit}", "upper stagewise-ordering confidence limit of the {effect}"),
    "outcome_proportion": (("arm",), "1", "proportion of the analysed patients with the binary outcome"),
    "event_rate": (("arm",), "events/patient-year", "observed event rate: events within follow-up per patient-year of follow-up"),
    "dispersion": ((), "1", "negative binomial dispersion alpha (Var = mu + alpha mu^2; 0: not over-dispersed)"),
    **secondary.VARIABLES,
}

PER_COMPARISON = ("statistic", "p_value", "p_adjusted", "estimate", "ci_lower", "ci_upper", "log_hr_se", "true_effect",
                  "reject", "harm", "stop_look", "stop_reason", "look_information", "look_fraction", "look_z",
                  "look_estimate", "look_true_effect", "efficacy_bound", "futility_bound", "rci_lower", "rci_upper",
                  "mue_estimate", "mue_ci_lower", "mue_ci_upper", "sci_lower", "sci_upper")
"""Variables that a trial with three or more arms has once per comparison (dimension ``comparison``)."""

INFO_UNITS = {"time_to_event": "events", "count": "patient-years"}
"""Units of a look's information by endpoint (patients analysed otherwise)."""

FLAGS = {"stop_reason": ([0, 1, 2], "final efficacy futility")}
SIMULTANEOUS_FLAGS = {"stop_reason": ([0, 1, 2, 3], "final efficacy futility stopped_with_trial")}


def build_dataset(protocol: Protocol, seed: int, arrays: dict[str, np.ndarray], replicates: np.ndarray) -> xr.Dataset:
    """Assemble per-replicate arrays into the documented Dataset layout."""
    spec = protocol.spec
    tte = spec.endpoint.type == "time_to_event"
    described = endpoints.effect_description(protocol)
    if described is not None:  # binary and count endpoints
        effect, unit = described
        bio_unit = ""
    elif tte and spec.analysis.method == "rmst":
        tau = spec.analysis.tau_months
        effect, unit = f"difference in restricted mean survival time to month {tau:g} (active - control)", "months"
        bio_unit = ""
    elif tte:
        effect, unit = "hazard ratio (active vs control)", "1"
        bio_unit = ""
    else:
        marker = next(b for b in protocol.disease.biomarkers if b.name == spec.endpoint.biomarker)
        effect = f"mean difference in change of {marker.name} from baseline to month {spec.endpoint.visit_month:g}"
        unit = bio_unit = marker.unit or "1"
    steps = arrays["occupancy"].shape[2]
    dt = protocol.disease.time_step_months
    coords = {
        "replicate": np.asarray(replicates, np.int64),
        "arm": [a.name for a in spec.arms],
        "state": [s.name for s in protocol.disease.states],
    }
    data_vars = {}
    multistage = spec.looks is not None and len(spec.arms) > 2
    for name, values in arrays.items():
        dims, units, long_name = VARIABLES[name]
        if len(spec.arms) > 2 and name in PER_COMPARISON:
            dims = ("comparison",) + dims
        dims = ("replicate",) + tuple("step_month" if (d == "month" and name == "occupancy") else d for d in dims)
        attrs = {"units": units.format(unit=unit, biomarker_unit=bio_unit, info=INFO_UNITS.get(spec.endpoint.type, "patients")),
                 "long_name": long_name.format(effect=effect)}
        flags = SIMULTANEOUS_FLAGS if multistage and spec.looks.stopping == "simultaneous" else FLAGS
        if name in flags:
            attrs.update(flag_values=flags[name][0], flag_meanings=flags[name][1])
        data_vars[name] = (dims, values, attrs)
    if "km_survival" in arrays:
        coords["month"] = ("month", np.arange(arrays["km_survival"].shape[2]) * 1.0, {"units": "months"})
    if "biomarker_mean" in arrays:
        coords["visit_month"] = ("visit_month", [0.0, spec.endpoint.visit_month], {"units": "months"})
    coords["step_month"] = ("step_month", np.arange(steps) * dt, {"units": "months", "long_name": "time since randomization"})
    if len(spec.arms) > 2:
        coords["comparison"] = ("comparison", [a.name for a in spec.arms[1:]],
                                {"long_name": f"active arm compared with the control ({spec.arms[0].name})"})
        coords["comparison_null"] = ("comparison", [int(protocol.arm_is_null(j)) for j in range(1, len(spec.arms))],
                                     {"long_name": "the active arm has no effect (its rejections are type I errors)"})
    if spec.looks is not None:
        K = len(spec.looks.information_fractions)
        coords["look"] = ("look", np.arange(1, K + 1), {"long_name": "analysis number (the last is the final analysis)"})
        coords["planned_fraction"] = ("look", np.asarray(spec.looks.information_fractions),
                                      {"long_name": "planned information fraction"})
    if spec.secondary_endpoints:
        coords.update(secondary.coordinates(spec))
    if spec.enrollment.sites:
        names, groups, regions = site_labels(spec.enrollment)
        coords["site"] = ("site", list(names), {"long_name": "trial site (group:number)"})
        coords["site_group"] = ("site", list(groups))
        coords["site_region"] = ("site", list(regions))
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update({
        "title": f"vctrial: {spec.name}",
        "kind": "trial",
        **provenance(protocol, seed),
        "endpoint": spec.endpoint.label or spec.endpoint.type,
        "effect_measure": effect,
        "effect_scale": "ratio" if (tte and spec.analysis.method != "rmst") or endpoints.ratio_scale(protocol)
        else "difference",
        "analysis": spec.analysis.method,
        "alpha": spec.analysis.alpha,
        "sided": spec.analysis.sided,
        "null_effect": int(protocol.is_null),
        "hypothesis": spec.analysis.hypothesis,
        **({"assurance": 1} if spec.analysis.assurance else {}),
        **({"multiplicity": spec.analysis.multiplicity} if len(spec.arms) > 2 else {}),
        **({"secondary_testing": spec.analysis.secondary_testing} if spec.secondary_endpoints else {}),
        "Conventions": "CF-1.8",
    })
    if spec.analysis.margin is not None:
        m = spec.analysis.margin
        ds.attrs["margin"] = list(m) if isinstance(m, tuple) else float(m)
    if spec.looks is not None:
        lk = spec.looks
        fut = lk.futility
        ds.attrs.update({
            "information_fractions": list(lk.information_fractions),
            "efficacy_spending": lk.efficacy.spending + (f"({lk.efficacy.gamma:g})" if lk.efficacy.gamma is not None else ""),
            **({"stopping": lk.stopping, "comparison_alpha": spec.comparison_alpha} if multistage else {}),
            "futility": "none" if fut is None else (
                f"beta spending {fut.spending}, beta {fut.beta:g}" if fut.type == "beta_spending"
                else f"conditional power < {fut.threshold:g} (non-binding)"),
        })
    return ds


def trial_job(protocol: Protocol, label: str | None = None) -> Job:
    """The runner's job for a protocol: :func:`vctrial.trial.run.simulate_chunk` over its replicates."""
    return Job(simulate_chunk, protocol, label or protocol.spec.name, protocol.spec.sample_size)


def run_trial(protocol: Protocol, replicates: int, seed: int, progress: bool = True,
              options: ExecOptions | None = None) -> xr.Dataset:
    """Simulate ``replicates`` independent trials of a protocol; returns the results Dataset."""
    options = options or ExecOptions(progress=progress)
    (arrays,) = run_jobs([trial_job(protocol)], replicates, seed, options)
    return build_dataset(protocol, seed, arrays, np.arange(replicates))
