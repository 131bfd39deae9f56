"""Design calculator (``vctrial design``, :func:`vctrial.api.design`): events, sample size and duration
of a two-arm trial, fixed or group-sequential, optionally written as a runnable protocol so that the
simulator checks the calculation (``--verify N``).

One module per concept: ``inputs`` (reading options), ``piecewise`` (expected accrual and events),
``sequential`` (looks and crossing probabilities), ``result`` (:class:`Design`), ``survival``, ``means``
and ``proportions`` (the endpoints' sizing), ``design`` (the entry point), ``report`` (the printed text),
``protocol`` (the files written), ``verify`` (the simulation check) and ``cli``. Times are in months,
hazards and rates per month; the allocation r is active patients per control patient. The methods and
their sources: docs/models.md, "Design calculator".
"""

from __future__ import annotations

from scipy import special  # noqa: F401 - tests reach scipy.special through the package, as before

from vctrial.trial.sizing.cli import OPTIONS, add_arguments, command
from vctrial.trial.sizing.dispatch import ENDPOINTS, design
from vctrial.trial.sizing.inputs import CMD, parse_allocation
from vctrial.trial.sizing.means import design_continuous
from vctrial.trial.sizing.piecewise import SurvivalModel
from vctrial.trial.sizing.proportions import binary_n, binary_power, continuity_corrected, design_binary
from vctrial.trial.sizing.protocol import companion_paths, protocol_documents, write_protocol
from vctrial.trial.sizing.report import format_design
from vctrial.trial.sizing.result import Design, Look, Verification
from vctrial.trial.sizing.sequential import Sequential, crossing, crossing_means, sequential_design
from vctrial.trial.sizing.survival import METHODS, design_survival, schoenfeld_events
from vctrial.trial.sizing.survival import _ahr_power, _ahr_state, _lf_variances  # noqa: F401 - tested
from vctrial.trial.sizing.simulation import binary_rejections, run_design, verify

__all__ = [
    "CMD", "ENDPOINTS", "METHODS", "OPTIONS", "Design", "Look", "Sequential", "SurvivalModel", "Verification",
    "add_arguments", "binary_n", "binary_power", "binary_rejections", "command", "companion_paths",
    "continuity_corrected", "crossing", "crossing_means", "design", "design_binary", "design_continuous",
    "design_survival", "format_design", "parse_allocation", "protocol_documents", "run_design",
    "schoenfeld_events", "sequential_design", "verify", "write_protocol",
]
