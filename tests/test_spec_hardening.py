"""Spec files refuse what would load silently and give wrong results, or crash instead of saying why.

Non-finite numbers (``.nan``, ``.inf``, and strings such as ``'1e999'`` that become them) anywhere in a
shipped spec; and YAML hazards: duplicate keys, alias bombs, deep nesting, non-UTF-8 text, a ``kind``
that is not a word. Each must end in one SpecError naming the file (and the key where there is one);
on the command line, one line on stderr and exit code 2.
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from vctrial.errors import SpecError
from vctrial.spec.base import MAX_YAML_DEPTH, MAX_YAML_NODES, key_path, read_yaml
from vctrial.spec.cohort import load_cohort
from vctrial.spec.disease import load_disease
from vctrial.spec.patient import load_patient
from vctrial.spec.population import load_population
from vctrial.spec.protocol import load_protocol

ROOT = Path(__file__).parent.parent
FOLDERS = ("cohorts", "diseases", "protocols", "patients")
SHIPPED = sorted(str(p.relative_to(ROOT)) for folder in FOLDERS for p in (ROOT / folder).glob("*.yaml"))
NUMBER_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
EXIT_SPEC = 2


def vctrial(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vctrial.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def assert_one_line_spec_error(proc, *parts):
    assert proc.returncode == EXIT_SPEC, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and lines[0].startswith("vctrial: error: ")
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A copy of the shipped spec folders, so mutated files sit next to the files they reference."""
    root = tmp_path_factory.mktemp("specs")
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, root / folder)
    return root


def numeric_leaves(text: str) -> list[tuple[str, int, int, bool]]:
    """(key path, start, end, written as an integer) of every number in a YAML document, in document order.

    A number inside an anchored node is listed once, at its anchor (where the error points).
    """
    out: list[tuple[str, int, int, bool]] = []
    seen: set[int] = set()

    def walk(node, loc):
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            if node.tag in NUMBER_TAGS:
                out.append((key_path(loc), node.start_mark.index, node.end_mark.index,
                            node.tag == "tag:yaml.org,2002:int"))
        elif isinstance(node, SequenceNode):
            for i, child in enumerate(node.value):
                walk(child, (*loc, i))
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                walk(value, (*loc, key.value))

    walk(yaml.compose(text, Loader=yaml.SafeLoader), ())
    return out


def loader_for(path: Path, tree: Path):
    kind = yaml.safe_load(path.read_text(encoding="utf-8"))["kind"]
    if kind == "patient":
        cohort, disease = load_cohort(tree / "cohorts/t2d.yaml"), load_disease(tree / "diseases/t2d.yaml")
        return lambda p: load_patient(p, cohort, disease)
    return {"cohort": load_cohort, "disease": load_disease, "trial": load_protocol,
            "population": load_population}[kind]


def mutation_failures(rel: str, tree: Path, replacement: str) -> tuple[int, list[str]]:
    """Write each numeric leaf of a shipped file as ``replacement`` in turn; list the leaves not refused properly.

    Properly: a SpecError naming the mutated file and the leaf's key path, saying the value must be a
    finite number (or, for a string where an integer is expected, a valid integer).
    """
    source = tree / rel
    text = source.read_text(encoding="utf-8")
    load = loader_for(source, tree)
    mutated = source.with_name(source.stem + ".mutated.yaml")
    leaves = numeric_leaves(text)
    problems = []
    for where, start, end, integer in leaves:
        mutated.write_text(text[:start] + replacement + text[end:], encoding="utf-8")
        reasons = ("must be a finite number",)
        if integer and replacement.startswith("'"):
            reasons += ("Input should be a valid integer",)
        try:
            load(mutated)
        except SpecError as err:
            if (err.file, err.path) != (str(mutated), where) or not err.reason.startswith(reasons):
                problems.append(f"{where}: {err}")
        else:
            problems.append(f"{where}: accepted {replacement}")
    mutated.unlink()
    return len(leaves), problems


def test_every_shipped_spec_loads_as_shipped(tree):
    for rel in SHIPPED:
        loader_for(tree / rel, tree)(tree / rel)


@pytest.mark.parametrize("replacement", [".nan", ".inf", "-.inf"])
@pytest.mark.parametrize("rel", SHIPPED)
def test_a_non_finite_number_anywhere_in_a_shipped_spec_is_refused_at_its_key(tree, rel, replacement):
    count, problems = mutation_failures(rel, tree, replacement)
    assert count > 0
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("replacement", [".NaN", "+.Inf", "-.INF", "1.0e+999", "-1.0e+999"])
def test_other_spellings_of_non_finite_numbers_are_refused(tree, replacement):
    count, problems = mutation_failures("protocols/hf_outcomes_gs.yaml", tree, replacement)
    assert count > 0
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("rel", "replacement"), [
    (rel, "'nan'" if rel.startswith("cohorts") else "'1e999'")
    for rel in SHIPPED if rel.startswith(("cohorts", "diseases"))
])
def test_a_string_that_becomes_non_finite_is_refused_in_cohort_and_disease_files(tree, rel, replacement):
    count, problems = mutation_failures(rel, tree, replacement)
    assert count > 0
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("rel", "where", "value"), [
    ("protocols/hf_outcomes.yaml", "arms[1].effects[0].hazard_ratio", "'inf'"),
    ("protocols/hf_outcomes_gs.yaml", "arms[1].effects[0].hazard_ratio", "'nan'"),
    ("protocols/pop_hf_scaleup.yaml", "population.regions[0].share", "'-inf'"),
])
def test_a_string_that_becomes_non_finite_is_refused_in_protocol_files(tree, rel, where, value):
    source = tree / rel
    text = source.read_text(encoding="utf-8")
    start, end = next((s, e) for w, s, e, _ in numeric_leaves(text) if w == where)
    bad = source.with_name("string.mutated.yaml")
    bad.write_text(text[:start] + value + text[end:], encoding="utf-8")
    with pytest.raises(SpecError) as info:
        loader_for(source, tree)(bad)
    assert (info.value.file, info.value.path) == (str(bad), where)
    assert info.value.reason == f"must be a finite number, got {value[1:-1]!r}"


def test_a_non_finite_number_on_the_command_line_is_one_line_and_exit_code_2(tree):
    source = tree / "diseases/hfref.yaml"
    text = source.read_text(encoding="utf-8")
    where, start, end, _ = next(leaf for leaf in numeric_leaves(text) if leaf[0].endswith("rate_per_year"))
    bad = source.with_name("cli.mutated.yaml")
    bad.write_text(text[:start] + ".nan" + text[end:], encoding="utf-8")
    proc = vctrial("validate", bad)
    assert_one_line_spec_error(proc, f"{bad}: {where}: must be a finite number")


def test_a_duplicate_key_is_refused_with_its_line(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("kind: cohort\nname: x\ncovariates:\n  age: {distribution: normal, mean: 60, sd: 10}\n"
                    "  sex_female:\n    distribution: binary\n    p: 0.3\n    p: 0.7\n", encoding="utf-8")
    proc = vctrial("validate", path)
    assert_one_line_spec_error(proc, f"{path}: covariates.sex_female.p: duplicate key 'p' on line 8",
                               "first on line 7")


def test_a_duplicate_top_level_key_and_equal_keys_written_differently_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("kind: cohort\nname: x\nname: y\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"^.*dup\.yaml: name: duplicate key 'name' on line 3"):
        read_yaml(path)
    path.write_text("kind: cohort\ncuts: {1: a, 0x1: b}\n", encoding="utf-8")
    with pytest.raises(SpecError, match="duplicate key 1 on line 2"):
        read_yaml(path)


def test_merge_keys_and_aliases_still_load(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nmerged: {<<: *b, y: 3}\nagain: *b\n", encoding="utf-8")
    assert read_yaml(path) == {"base": {"x": 1, "y": 2}, "merged": {"x": 1, "y": 3}, "again": {"x": 1, "y": 2}}


def billion_laughs() -> str:
    lines = ["kind: cohort", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_fast_without_expanding_it(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs(), encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        read_yaml(path)
    assert time.perf_counter() - start < 0.5
    assert info.value.file == str(path) and f"more than the limit of {MAX_YAML_NODES:,}" in info.value.reason
    proc = vctrial("validate", path)
    assert_one_line_spec_error(proc, f"{path}: ", "aliases", "limit")


def test_an_alias_inside_the_node_it_names_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("kind: cohort\nloop: &x [1, *x]\n", encoding="utf-8")
    proc = vctrial("validate", path)
    assert_one_line_spec_error(proc, f"{path}: loop[1]: ", "recursive")


def test_aliases_within_the_limits_load(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("a: &a [1, 2, 3]\nb: [*a, *a]\n", encoding="utf-8")
    assert read_yaml(path) == {"a": [1, 2, 3], "b": [[1, 2, 3], [1, 2, 3]]}


@pytest.mark.parametrize("depth", [MAX_YAML_DEPTH + 1, 100_000])
def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path, depth):
    path = tmp_path / "deep.yaml"
    path.write_text("[" * depth + "]" * depth + "\n", encoding="utf-8")
    with pytest.raises(SpecError, match=f"nested more than {MAX_YAML_DEPTH}"):
        read_yaml(path)
    if depth > MAX_YAML_DEPTH + 1:
        proc = vctrial("validate", path)
        assert_one_line_spec_error(proc, f"{path}: line 1: nested more than {MAX_YAML_DEPTH}")


def test_nesting_at_the_limit_loads_and_aliases_cannot_stack_past_it(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH + "\n", encoding="utf-8")
    assert isinstance(read_yaml(path), list)
    half = MAX_YAML_DEPTH // 2
    path.write_text(f"a: &a {'[' * half}1{']' * half}\nb: &b {'[' * half}*a{']' * half}\n", encoding="utf-8")
    with pytest.raises(SpecError, match="once its aliases are expanded"):
        read_yaml(path)


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("kind: cohort\nname: Caf\xe9 patients\n".encode("latin-1"))
    proc = vctrial("validate", path)
    assert_one_line_spec_error(proc, f"{path}: is not UTF-8 text", "line 2")


def test_a_kind_given_as_a_list_is_refused(tmp_path):
    path = tmp_path / "kind.yaml"
    path.write_text("kind: [trial]\n", encoding="utf-8")
    proc = vctrial("validate", path)
    assert_one_line_spec_error(proc, f"{path}: kind: must be one of", "got ['trial']")


def test_a_field_declared_with_allow_inf_nan_accepts_infinity_and_others_still_refuse_it(tmp_path):
    import pydantic

    from vctrial.spec.base import StrictModel, validate

    class Window(StrictModel):
        end: float = pydantic.Field(allow_inf_nan=True, description="end; .inf for open-ended (test only)")
        start: float = 0.0

    class Spec(StrictModel):
        windows: dict[str, list[Window]]

    ok = validate({"windows": {"a": [{"end": float("inf")}]}}, Spec, "t.yaml")
    assert ok.windows["a"][0].end == float("inf")
    with pytest.raises(SpecError) as info:
        validate({"windows": {"a": [{"end": 1.0, "start": float("-inf")}]}}, Spec, "t.yaml")
    assert str(info.value) == "t.yaml: windows.a[0].start: must be a finite number, got -inf"


def test_yaml_text_from_elsewhere_gets_the_same_guards():
    from vctrial.spec.base import parse_yaml

    assert parse_yaml("[0.5, {a: 1}]", "--sweep") == [0.5, {"a": 1}]
    with pytest.raises(SpecError, match=r"^--sweep: a: duplicate key 'a' on line 1"):
        parse_yaml("{a: 1, a: 2}", "--sweep")
    with pytest.raises(SpecError, match=r"^--sweep: line 1: nested more than"):
        parse_yaml("[" * 10_000, "--sweep")
