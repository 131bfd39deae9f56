"""Typed specs of the files vctrial reads, one module per kind."""

from __future__ import annotations

import importlib
from typing import Any

# kind (the file's ``kind:`` key) -> "module:Model"
KINDS: dict[str, str] = {
    "cohort": "vctrial.spec.cohort:CohortSpec",
    "disease": "vctrial.spec.disease:DiseaseSpec",
    "trial": "vctrial.spec.protocol:TrialProtocol",
    "population": "vctrial.spec.population:PopulationSpec",
    "patient": "vctrial.spec.patient:PatientSpec",
    "validation": "vctrial.spec.study:ValidationSpec",
    "calibration": "vctrial.spec.study:CalibrationSpec",
}


def model_for(kind: str) -> Any:
    """The pydantic model of a file kind."""
    if kind not in KINDS:
        raise KeyError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    module, name = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def json_schema(kind: str) -> dict[str, Any]:
    """JSON Schema of a file kind, usable by editors (e.g. the YAML language server)."""
    schema = model_for(kind).model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema.setdefault("title", f"vctrial {kind} file")
    return schema
