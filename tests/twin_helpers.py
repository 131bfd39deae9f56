"""Small options protocols for the twin tests, over the test cohort and a given disease file."""

from __future__ import annotations

from pathlib import Path

COHORT = Path(__file__).parent / "data" / "simple_cohort.yaml"


def options_protocol(disease: Path, effects: str, events: str, extra: str = "") -> str:
    """A two-option protocol (control, active) whose active arm has ``effects`` (a YAML flow list)."""
    return f"""kind: trial
name: twin test options
cohort: {COHORT}
disease: {disease}
sample_size: 100
arms:
  - {{name: control}}
  - name: active
    effects: {effects}
enrollment: {{duration_months: 6}}
follow_up: {{type: fixed, duration_months: 12}}
endpoint: {{type: time_to_event, events: [{events}]}}
analysis: {{method: logrank}}
{extra}"""
