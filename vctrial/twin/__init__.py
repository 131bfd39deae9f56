"""Patient digital twin: what may happen to this patient under each option, with honest uncertainty.

The protocol's arms are the options. A patient (or a batch) is simulated N times under every
option by the disease model's own kernels, with the draws as the replicate axis of the
counter-based generator: draw d of every option meets the same random numbers (common random
numbers across options), and so does every patient of a batch (all patients share the patient
coordinate 0), so a patient's forecast does not depend on which other patients are simulated with
them or in which order.

Two kinds of uncertainty, reported apart and together (law of total variance):

- the model's parameters: effects given with a confidence interval (``hazard_ratio_ci``,
  ``shift_ci``) are drawn once per *parameter draw* m; the N draws are M parameter draws × L
  chance draws (draw d uses parameter draw d // L). Effects naming the same ``parameter`` (e.g. one
  published CV-death hazard ratio applied to two transitions) share one draw; an effect without a
  name is its own parameter. Parameter q of draw m is ln HR (or shift) = point + SD · (C z)_q with
  z_q standard normals keyed by (seed, "twin:parameters", m, q) and C the lower Cholesky factor of
  the protocol's ``parameter_correlations`` (identity without them);
- the patient's own chance: the L draws given the parameters.

For an outcome Y (an event by the horizon, life-years...) with group means Ȳ_m, the chance variance
E[Var(Y|θ)] is the mean within-group variance, and the parameter variance Var(E[Y|θ]) is the
between-group variance less its Monte Carlo part (within / L). The 95% parameter interval takes
the quantiles of the group means after shrinking them towards the overall mean so that their
spread equals the parameter variance (removing the inner Monte Carlo noise to first order).

Conditioning: the biomarker random effects b = (b0, b1) ~ N(0, G) of the mixed model are replaced
by their posterior given the patient's measured values y_j at times t_j ≤ 0 (years relative to the
decision date): with Z_j = (1, τ(t_j)) (τ the model's slope time scale), r_j = y_j − mean − slope·τ(t_j)
and noise variance σ² = residual_sd² + process_sd², Σ = (G⁻¹ + ZᵀZ/σ²)⁻¹ = G (I + ZᵀZ G/σ²)⁻¹ (valid
for singular G) and μ = Σ Zᵀr/σ². Clipping of measured values at the biomarker's bounds is ignored
in the conditioning. Past events set the starting state, and the date of the last one the months
already spent in it at time zero (``TwinPlan.start_months``; a batch CSV gives them in a
``months_in_state`` column), where time-in-state hazards start. The disease kernel steps the
biomarkers with the events, so where a model's hazards depend on a biomarker's current value the
conditioned random effects change the event risks as well as the biomarker forecast.

Modules: :mod:`~vctrial.twin.plan` (protocol, disease and patients compiled into arrays),
:mod:`~vctrial.twin.posterior` (conditioning on the patient's measurements),
:mod:`~vctrial.twin.uncertainty` (parameter draws and the variance decomposition),
:mod:`~vctrial.twin.outcomes` (what is counted per draw), :mod:`~vctrial.twin.simulate` (the kernels
and the runner's chunk functions), :mod:`~vctrial.twin.output` (the Datasets),
:mod:`~vctrial.twin.summary` (tables and text) and :mod:`~vctrial.twin.command` (``vctrial twin``).
"""

from vctrial.twin.command import run_command, run_dataset
from vctrial.twin.outcomes import RISK, YEARS, outcome_names
from vctrial.twin.output import build_batch_dataset, build_dataset
from vctrial.twin.plan import TwinPlan, make_plan
from vctrial.twin.posterior import posterior_random_effects, prior_covariance
from vctrial.twin.simulate import simulate_batch, simulate_patient
from vctrial.twin.summary import draw_outcomes, format_twin, nnt_text, risk_table, summarize
from vctrial.twin.uncertainty import STATISTICS, Z95, dataset_varies, decompose, sample_parameters

__all__ = [
    "RISK", "STATISTICS", "YEARS", "Z95", "TwinPlan", "build_batch_dataset", "build_dataset", "dataset_varies",
    "decompose", "draw_outcomes", "format_twin", "make_plan", "nnt_text", "outcome_names", "posterior_random_effects",
    "prior_covariance", "risk_table", "run_command", "run_dataset", "sample_parameters", "simulate_batch",
    "simulate_patient", "summarize",
]
