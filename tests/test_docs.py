"""The reference docs cannot drift: the file-format pages are the specs' own output, every spec key
has a meaning, `vctrial schema KIND` works for every kind, and docs/outputs.md names every
dimension, variable, coordinate and attribute of real results Datasets of every kind, with the
units and dimensions the Datasets carry."""

import datetime
import importlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pydantic
import pytest
import yaml

from population_helpers import chronic_files, sir_file
from vctrial import api, docgen, twin
from vctrial.execute import ExecOptions
from vctrial.population.output import run_population
from vctrial.spec import KINDS, json_schema, model_for
from vctrial.spec.population import load_population
from vctrial.spec.protocol import load_protocol
from vctrial.trial.dataset import PER_COMPARISON, run_trial
from vctrial.trial.design import compare, run_sweep, sweep_axes

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data"
OUTPUTS = ROOT / "docs" / "outputs.md"
SPEC_MODULES = ["cohort", "disease", "protocol", "population", "patient"]
OPT = ExecOptions(workers=0, progress=False)


# ------------------------------------------------------------------------------ file-format pages


def test_reference_pages_are_in_sync_with_the_specs():
    proc = subprocess.run([sys.executable, "-m", "vctrial.docgen", "--check", str(ROOT / "docs" / "reference")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.stem for p in (ROOT / "docs" / "reference").glob("*.md")) == sorted(KINDS)


def test_check_reports_a_page_that_differs_from_the_specs(tmp_path):
    assert docgen.write_pages(tmp_path) and docgen.write_pages(tmp_path, check=True) == []
    page = tmp_path / "trial.md"
    page.write_text(page.read_text().replace("patients to randomize", "patients to enrol"))
    assert docgen.main(["--check", str(tmp_path)]) == 1
    assert docgen.write_pages(tmp_path, check=True) == [page]


def _spec_models() -> list[type[pydantic.BaseModel]]:
    """Every pydantic model defined in the spec modules or reachable from a kind's top level."""
    found: list[type[pydantic.BaseModel]] = []
    for name in SPEC_MODULES:
        module = importlib.import_module(f"vctrial.spec.{name}")
        found += [c for c in vars(module).values() if inspect.isclass(c) and issubclass(c, pydantic.BaseModel)
                  and c.__module__ == module.__name__]
    for kind in KINDS:
        found += [m for m in docgen.spec_models(kind) if m not in found]
    return found


def test_every_spec_key_has_a_meaning_and_every_model_a_docstring():
    models = _spec_models()
    assert len(models) > 50
    missing = [f"{m.__module__}.{m.__name__}.{name}" for m in models for name, f in m.model_fields.items()
               if not (f.description or "").strip()]
    assert missing == []
    undocumented = [m.__name__ for m in models if not (m.__dict__.get("__doc__") or "").strip()]
    assert undocumented == []


def test_every_key_of_every_kind_is_on_its_page_with_type_default_and_meaning():
    for kind in KINDS:
        page = (ROOT / "docs" / "reference" / f"{kind}.md").read_text()
        rows = {}
        for section in docgen.sections(kind):
            for key, f in docgen._fields(section.model):
                rows[(section.model.__name__, key)] = f
        for (model, key), f in rows.items():
            anchor = page.index(f'<a id="{model.lower()}"></a>')
            end = page.find("<a id=", anchor + 1)
            table = page[anchor:end if end > 0 else None]
            (row,) = [r for r in table.splitlines() if r.startswith(f"| `{key}` |")]
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
            assert len(cells) == 6, row
            assert cells[1] and cells[2] and cells[5], row  # type, default, meaning
            assert cells[2] == "required" if f.is_required() else cells[2].startswith(("`", "its defaults")), row
    # units: from the key's suffix, or stated in the spec where the name does not carry one
    trial = (ROOT / "docs" / "reference" / "trial.md").read_text()
    assert "| `duration_months` | number \\| null | `null` | months |" in trial
    assert re.search(r"\| `screening_rate_per_month` \| number \| required \| 1/month \|", trial)
    assert re.search(r"\| `sample_size` \| integer \| required \| patients \|", trial)
    cohort = (ROOT / "docs" / "reference" / "cohort.md").read_text()
    assert "(distribution: lognormal)" in cohort and "mapping name → [DerivedCovariate]" in cohort


def _dates_as_text(node):
    """YAML dates as the strings an editor sees (JSON Schema has no date type)."""
    if isinstance(node, dict):
        return {k: _dates_as_text(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_dates_as_text(v) for v in node]
    return node.isoformat() if isinstance(node, datetime.date) else node


def test_schema_command_prints_a_usable_schema_for_every_kind():
    procs = {kind: subprocess.Popen([sys.executable, "-m", "vctrial.cli", "schema", kind], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, cwd=ROOT) for kind in KINDS}
    shipped = {"population": ROOT / "protocols" / "pop_flu_vaccination.yaml",
               "patient": ROOT / "patients" / "t2d_patient.yaml",
               "cohort": ROOT / "cohorts" / "t2d.yaml", "disease": ROOT / "diseases" / "t2d.yaml",
               "trial": ROOT / "protocols" / "t2d_hba1c.yaml", "calibration": ROOT / "calibration" / "hfref.yaml",
               "validation": ROOT / "tests" / "data" / "validation" / "check.yaml"}
    for kind, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (kind, err)
        schema = json.loads(out)
        assert schema == json.loads(json.dumps(json_schema(kind)))
        assert schema["additionalProperties"] is False
        top = model_for(kind).model_fields
        assert all(schema["properties"][f.alias or n].get("description") for n, f in top.items())
        data = _dates_as_text(yaml.safe_load(shipped[kind].read_text()))
        jsonschema.validate(data, schema)
        data["no_such_key"] = 1
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, schema)


# ---------------------------------------------------------------------------------- outputs.md


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A small real Dataset of every kind of results file."""
    tmp = tmp_path_factory.mktemp("outputs")
    out = {
        "trial": run_trial(load_protocol(DATA / "event_driven.yaml",
                                         {"sample_size": 100, "follow_up.target_events": 40}), 3, 1, options=OPT),
        "trial_biomarker": run_trial(load_protocol(DATA / "biomarker_change.yaml", {"sample_size": 60}), 3, 1,
                                     options=OPT),
        # looks, sites and strata
        "trial_group_sequential": run_trial(load_protocol(ROOT / "protocols" / "hf_outcomes_gs.yaml",
                                                          {"sample_size": 300, "follow_up.target_events": 60}),
                                            3, 2, options=OPT),
        # three arms with looks (multi-arm multi-stage)
        "trial_mams": run_trial(load_protocol(ROOT / "protocols" / "hf_mams.yaml",
                                              {"sample_size": 300, "follow_up.target_events": 90,
                                               "looks.stopping": "simultaneous"}), 3, 2, options=OPT),
        "compare": compare([DATA / "event_driven.yaml", DATA / "group_sequential.yaml"], 3, 1, OPT),
        "sweep": run_sweep(DATA / "event_driven.yaml", sweep_axes(DATA / "event_driven.yaml", [
            ("analysis.alpha", [0.025, 0.05]), ("arms.active.effects.0.hazard_ratio", [1.0, 0.75])]), 3, 3, OPT),
    }
    (tmp / "chronic").mkdir()
    (tmp / "infection").mkdir()
    chronic = chronic_files(
        tmp / "chronic", population={"size": 400, "age_min": 40, "age_max": 80}, horizon_years=2,
        interventions=[{"name": "drug", "type": "treatment", "cost_per_year": 300,
                        "effects": [{"transition": "death_ill", "hazard_ratio": 0.5}]}],
        scenarios=[{"name": "base"}, {"name": "drug", "interventions": ["drug"]}])
    out["population_chronic"] = run_population(load_population(chronic), 2, 3, OPT)
    out["population_infection"] = run_population(load_population(sir_file(tmp / "infection", size=400,
                                                                            horizon_years=0.05)), 2, 3, OPT)
    out["twin_patient"] = twin.run_dataset(str(ROOT / "patients" / "t2d_patient.yaml"),
                                           str(ROOT / "patients" / "t2d_empagliflozin_options.yaml"), 1.0, 40, 1,
                                           id_salt="docs")
    out["twin_batch"] = twin.run_dataset(str(ROOT / "patients" / "hf_clinic.csv"),
                                         str(ROOT / "patients" / "hf_dapagliflozin_options.yaml"), 1.0, 40, 1,
                                         id_salt="docs")
    from vctrial.cli import main

    case = tmp / "validation"
    case.mkdir()
    for name in ("illness_death.yaml", "study.yaml", "check.yaml"):
        (case / name).write_text((DATA / "validation" / name).read_text())
    (tmp / "simple_cohort.yaml").write_text((DATA / "simple_cohort.yaml").read_text())
    assert main(["check", str(case / "check.yaml"), "-q", "--workers", "0", "-n", "3", "--out", str(tmp / "v.nc")]) in (0, 1)
    out["validation"] = api.open_results(tmp / "v.nc")
    calibration = {"kind": "calibration", "name": "docs", "sources": ["s"], "disease": "illness_death.yaml",
                   "studies": {"study": "study.yaml"}, "replicates": 2,
                   "targets": yaml.safe_load((case / "check.yaml").read_text())["figures"][:2],
                   "parameters": [{"path": "transitions.illness.rate_per_year", "lower": 0.05, "upper": 1.0}],
                   "method": {"max_evaluations": 6, "draws": 4}}
    (case / "cal.yaml").write_text(yaml.safe_dump(calibration))
    out["calibration"] = api.calibrate(case / "cal.yaml", tmp / "fit.nc", progress=False)
    return out


# results file -> the headings of its sections in docs/outputs.md
TRIAL, STACKED = ("Trial run",), ("Trial run", "Compare")
SECTIONS = {"trial": TRIAL, "trial_biomarker": TRIAL, "trial_group_sequential": TRIAL, "trial_mams": TRIAL,
            "compare": STACKED,
            "sweep": STACKED, "population_chronic": ("Population scenarios",),
            "population_infection": ("Population scenarios",), "twin_patient": ("Patient twin, one patient",),
            "twin_batch": ("Patient twin, batch",), "validation": ("Validation",),
            "calibration": ("Validation", "Calibration")}
# units written in words in the doc where they depend on the spec
GENERIC_UNITS = {"the figure's", "the target's", "the parameter's", "1, text", "studies", "*effect*", "the biomarker's unit", "biomarker unit", "currency", "events, patients (biomarker, binary) or patient-years (count)",
                 "biomarker unit (per year for the slope)", "—"}


def _section(text: str, headings: tuple[str, ...]) -> str:
    parts = []
    for heading in headings:
        start = text.index("\n## " + heading)
        end = text.find("\n## ", start + 1)
        parts.append(text[start:end if end > 0 else None])
    return "\n".join(parts)


def _variable_rows(section: str) -> dict[str, tuple[tuple[str, ...], str]]:
    """variable -> (dimensions, units) from the section's variable table."""
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) >= 4 and cells[0].startswith("`"):
            dims = tuple(d.strip() for d in cells[1].split(",")) if cells[1] else ()
            for name in re.findall(r"`([^`]+)`", cells[0]):
                rows.setdefault(name, (dims, cells[2]))
    return rows


def _documented_name(ds, name: str) -> str:
    """The name a variable or coordinate goes by in the doc (per-biomarker and per-covariate ones by pattern)."""
    if name.startswith("biomarker_") and "biomarker" in ds.coords and name[10:] in ds["biomarker"].values:
        return "biomarker_<name>"
    if name.startswith("covariate_") and "patient" in ds.dims:
        return "covariate_<name>"
    return name


def test_outputs_doc_names_every_dimension_variable_coordinate_and_attribute(datasets):
    text = OUTPUTS.read_text(encoding="utf-8")
    named = set(re.findall(r"`([^`]+)`", text))
    for kind, ds in datasets.items():
        section = _section(text, SECTIONS[kind])
        local = set(re.findall(r"`([^`]+)`", section))
        swept = set(json.loads(ds.attrs.get("sweep", "{}")))
        for dim in ds.dims:
            if dim not in swept:
                assert dim in named, (kind, "dimension", dim)
        for name in list(ds.data_vars) + list(ds.coords):
            if name in swept:
                continue
            varying = name in ds.attrs.get("varying_attrs", [])
            assert _documented_name(ds, name) in (named if varying else local), (kind, "variable", name)
        for attr in ds.attrs:
            assert attr in named, (kind, "attribute", attr)
        for attr in ds.attrs.get("varying_attrs", []):
            assert attr in named, (kind, "varying attribute", attr)


def test_outputs_doc_gives_each_variable_its_dimensions_and_units(datasets):
    text = OUTPUTS.read_text(encoding="utf-8")
    for kind, ds in datasets.items():
        rows = _variable_rows(_section(text, SECTIONS[kind]))
        stacked = {"protocol", *json.loads(ds.attrs.get("sweep", "{}"))}
        varying = set(ds.attrs.get("varying_attrs", [])) | {"point_variables"}
        for name, var in ds.data_vars.items():
            if name in varying:
                continue
            dims, units = rows[_documented_name(ds, name)]
            lead = tuple(d for d in var.dims if d in stacked)
            if "comparison" in ds.dims and name in PER_COMPARISON and "comparison" not in dims:
                dims = dims[:1] + ("comparison",) + dims[1:]  # several arms: once per comparison
            assert tuple(var.dims) == lead + dims, (kind, name, var.dims, dims)
            if units not in GENERIC_UNITS:
                assert var.attrs.get("units") == units.removesuffix(" (boolean)"), (kind, name, var.attrs, units)


def test_datasets_of_every_kind_have_the_documented_kind_attribute(datasets):
    expected = {"population_chronic": ("population", "chronic"), "population_infection": ("population", "infection"),
                "twin_patient": ("twin", "patient"), "twin_batch": ("twin", "batch"),
                "validation": ("validation", None), "calibration": ("calibration", None)}
    for name, ds in datasets.items():
        kind, detail = expected.get(name, ("trial", None))
        assert ds.attrs["kind"] == kind
        if kind == "population":
            assert ds.attrs["model"] == detail
        if kind == "twin":
            assert ds.attrs["twin_scope"] == detail
    assert "look" in datasets["trial_group_sequential"].dims and "site" in datasets["trial_group_sequential"].dims
    assert "protocol" in datasets["compare"].dims
    assert {"alpha", "hazard_ratio"} <= set(datasets["sweep"].dims)
