"""`vctrial schema KIND`: JSON Schemas that accept the shipped files and reject unknown keys."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).parent.parent
FOLDERS = {"cohort": "cohorts", "disease": "diseases", "trial": "protocols"}


@pytest.mark.parametrize("kind", sorted(FOLDERS))
def test_schema_accepts_shipped_files_and_rejects_unknown_keys(kind):
    proc = subprocess.run([sys.executable, "-m", "vctrial.cli", "schema", kind], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    files = [f for f in sorted((ROOT / FOLDERS[kind]).glob("*.yaml"))
             if yaml.safe_load(f.read_text()).get("kind") == kind]
    assert files
    for f in files:
        data = yaml.safe_load(f.read_text())
        jsonschema.validate(data, schema)
    data["no_such_key"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)
