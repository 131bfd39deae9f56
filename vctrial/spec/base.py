"""Shared machinery of the typed specs: strict models, safe YAML loading, readable errors.

Every number in a spec must be finite: ``.nan`` or ``.inf`` (or a string such as ``'nan'`` or
``'1e999'`` that becomes one) is refused where it is written, with its key path. A field whose
meaning needs a non-finite value says so with ``Field(allow_inf_nan=True)`` and the reason in its
description; optional bounds use ``None`` (key left out), never an infinity.

YAML is read with the safe loader, plus three guards: a mapping key given twice is an error (YAML
would silently keep the last); a document may nest at most :data:`MAX_YAML_DEPTH` collections deep;
and it may expand to at most :data:`MAX_YAML_NODES` values, each use of an alias (``*name``) counting
its anchored node again, so that a small file cannot explode into a huge one ("billion laughs").
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from vctrial.errors import SpecError
from vctrial.spec import KINDS

MAX_YAML_DEPTH = 100
"""Deepest nesting of lists and mappings a spec file may have, aliases expanded (shipped files: at most 10)."""

MAX_YAML_NODES = 1_000_000
"""Most values (mapping keys, values, list items) a spec file may expand to, each alias use counted
again (shipped files: at most a few hundred)."""


class StrictModel(pydantic.BaseModel):
    """A spec node: unknown keys are errors, values are validated on load, objects are frozen.

    Numbers must be finite (``allow_inf_nan=False`` applies to every float and int field, inside
    lists, tuples, dicts and unions too); a field that needs ``inf`` or ``nan`` must say
    ``Field(allow_inf_nan=True)`` and explain why in its description.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


M = TypeVar("M", bound=pydantic.BaseModel)


def key_path(loc: tuple[Any, ...]) -> str:
    """('arms', 1, 'effects', 0, 'hazard_ratio') -> 'arms[1].effects[0].hazard_ratio'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _reason(err: dict[str, Any], model: type[pydantic.BaseModel]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key" + _valid_keys(err["loc"][:-1], model)
    if kind == "missing":
        return "required key is missing"
    if kind == "finite_number":
        msg = "must be a finite number"
    else:
        msg = err["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
    if "input" in err and kind not in ("model_type", "dict_type") and not isinstance(err["input"], (dict, list)):
        msg += f", got {err['input']!r}"
    return msg


def _valid_keys(loc: tuple[Any, ...], model: type[pydantic.BaseModel]) -> str:
    """List the keys accepted at ``loc`` when it can be resolved to a model."""
    node: Any = model
    for part in loc:
        if isinstance(part, int) or node is None:
            continue
        field = getattr(node, "model_fields", {}).get(part)
        if field is None:
            node = None
            break
        node = _model_in(field.annotation)
    if node is None or not hasattr(node, "model_fields"):
        return ""
    names = [f.alias or n for n, f in node.model_fields.items()]
    return " (valid keys: " + ", ".join(sorted(names)) + ")"


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside an annotation like list[Model] or Model | None, if any."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


class _TooDeep(Exception):
    def __init__(self, line: int):
        self.line = line


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing documents nested deeper than MAX_YAML_DEPTH while it composes them.

    (Composing is recursive: without the bound a file of nested brackets ends in a RecursionError.)
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def _nested(self, compose, anchor):
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _TooDeep(self.peek_event().start_mark.line + 1)
        try:
            return compose(anchor)
        finally:
            self._depth -= 1

    def compose_sequence_node(self, anchor):
        return self._nested(super().compose_sequence_node, anchor)

    def compose_mapping_node(self, anchor):
        return self._nested(super().compose_mapping_node, anchor)


MAX_SPEC_BYTES = 64 * 2**20
"""Largest spec file read (shipped files: at most a few tens of kB)."""


def read_spec_bytes(path: str | Path) -> bytes:
    """The bytes of an input file; SpecError when it is missing, unreadable, not a regular file (a folder,
    a FIFO or a device, which could block or never end) or larger than :data:`MAX_SPEC_BYTES`."""
    file = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; the type is checked on what was opened
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SpecError(file, "", "file not found") from None
    except ValueError:  # a NUL byte in the name
        raise SpecError(file, "", "is not a valid file name") from None
    except OSError as exc:
        raise SpecError(file, "", f"cannot be read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise SpecError(file, "", "is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(file, "", "is not a regular file (a FIFO, device or socket); give a file")
        if info.st_size > MAX_SPEC_BYTES:
            raise SpecError(file, "", f"is {info.st_size:,} bytes, more than the limit of {MAX_SPEC_BYTES:,} "
                            "for an input file")
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return f.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(file, "", f"cannot be read ({exc.strerror})") from None
    finally:
        if fd >= 0:
            os.close(fd)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file with the safe loader; problems become SpecError.

    Refused besides invalid YAML: text that is not UTF-8, a duplicate mapping key, nesting deeper
    than :data:`MAX_YAML_DEPTH`, more than :data:`MAX_YAML_NODES` values once aliases are expanded, an
    alias inside the node it names, and a top-level ``kind`` that is not a string.
    """
    path = Path(path)
    file = str(path)
    raw = read_spec_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SpecError(file, "", f"is not UTF-8 text: byte 0x{raw[exc.start]:02x} on line {line} "
                        "(save the file as UTF-8)") from None
    data = parse_yaml(text, file)
    if isinstance(data, dict) and "kind" in data and not isinstance(data["kind"], str):
        raise SpecError(file, "kind", f"must be one of {', '.join(KINDS)}, got {data['kind']!r}")
    return data


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text with the safe loader and the guards of :func:`read_yaml`; problems become SpecError.

    ``source`` names where the text came from (a file, or an option such as ``--sweep``) in errors.
    """
    try:
        loader = _Loader(text)  # reads the text at once: a character YAML does not allow fails here
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        raise SpecError(source, "", f"invalid YAML: line {line}: character U+{code:04X} is not allowed "
                        "(a control character or an unpaired surrogate)") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_tree(node, source, loader)
        return loader.construct_document(node)
    except _TooDeep as exc:
        raise SpecError(source, "", f"line {exc.line}: nested more than {MAX_YAML_DEPTH} lists or mappings deep "
                        "(the limit for a spec file)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(source, "", f"invalid YAML: {where}{problem}") from None
    finally:
        loader.dispose()


def _check_tree(root: Node, file: str, loader: yaml.SafeLoader) -> None:
    """Refuse duplicate keys, recursive aliases, and documents too big or too deep once aliases are expanded.

    Each distinct node is visited once (in document order, so an alias always names a node already
    measured, or one still open: a cycle); sizes and heights are memoized, so an alias bomb is
    measured without being expanded.
    """
    measured: dict[Node, tuple[int, int]] = {}  # node -> (values it expands to, nesting height)
    open_nodes: set[Node] = set()

    def where(loc: tuple[Any, ...], node: Node) -> str:
        return key_path(loc) or f"line {node.start_mark.line + 1}"

    def walk(node: Node, loc: tuple[Any, ...]) -> tuple[int, int]:
        done = measured.get(node)
        if done is not None:
            return done
        if node in open_nodes:
            raise SpecError(file, where(loc, node), f"line {node.start_mark.line + 1}: an alias refers to a "
                            "node that contains it (recursive structures are not allowed)")
        if isinstance(node, ScalarNode):
            return 1, 0
        open_nodes.add(node)
        size, height = 1, 0
        if isinstance(node, SequenceNode):
            for i, child in enumerate(node.value):
                s, h = walk(child, (*loc, i))
                size, height = size + s, max(height, h)
        elif isinstance(node, MappingNode):
            first: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = _scalar_key(key_node, loader)
                name = str(key) if key is not None else "?"
                if key is not None:
                    line = key_node.start_mark.line + 1
                    if key in first:
                        raise SpecError(file, key_path((*loc, name)), f"duplicate key {key!r} on line {line} "
                                        f"(first on line {first[key]}); YAML would silently keep the last")
                    first[key] = line
                for child in (key_node, value_node):
                    s, h = walk(child, (*loc, name))
                    size, height = size + s, max(height, h)
        height += 1
        open_nodes.discard(node)
        if height > MAX_YAML_DEPTH:
            raise SpecError(file, where(loc, node), f"nested more than {MAX_YAML_DEPTH} lists or mappings deep "
                            "once its aliases are expanded (the limit for a spec file)")
        if size > MAX_YAML_NODES:
            raise SpecError(file, where(loc, node), f"expands to {size:,} values once its aliases (*name) are "
                            f"expanded, more than the limit of {MAX_YAML_NODES:,} for a spec file")
        measured[node] = (size, height)
        return size, height

    walk(root, ())


def _scalar_key(node: Node, loader: yaml.SafeLoader) -> Any:
    """The value of a plain mapping key, for spotting duplicates; None for merge (``<<``) and complex keys."""
    if not isinstance(node, ScalarNode) or node.tag == "tag:yaml.org,2002:merge":
        return None
    key = loader.construct_object(node)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _floats(data: Any) -> Iterator[tuple[tuple[Any, ...], float]]:
    """Every float in parsed YAML with its location, in document order (iterative: any depth)."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        loc, node = stack.pop()
        if isinstance(node, float):
            yield loc, node
        elif isinstance(node, dict):
            stack.extend(((*loc, k), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, (list, tuple)):
            stack.extend(((*loc, i), v) for i, v in reversed(list(enumerate(node))))


def _allows_non_finite(model: type[pydantic.BaseModel], loc: tuple[Any, ...]) -> bool:
    """True when a field on the way to ``loc`` is declared with ``Field(allow_inf_nan=True)``.

    Parts that are not field names (list indices, dict keys) are stepped over, staying in the model.
    """
    annotation: Any = model
    for part in loc:
        current = _model_in(annotation)
        if current is None:
            return False
        if isinstance(part, int):
            continue
        field = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            continue
        if any(getattr(m, "allow_inf_nan", None) is True for m in field.metadata):
            return True
        annotation = field.annotation
    return False


def check_finite(data: Any, model: type[pydantic.BaseModel], file: str | Path) -> None:
    """Refuse ``.nan``, ``.inf`` and ``-.inf`` anywhere in parsed YAML, unless the field allows them.

    Runs before the model sees the data, so fields typed ``Any`` (values checked later) and custom
    validators never receive a non-finite number, and the error names the key where it was written.
    (Strings that become non-finite, such as ``'nan'`` or ``'1e999'``, are refused by the models.)
    """
    for loc, value in _floats(data):
        if not math.isfinite(value) and not _allows_non_finite(model, loc):
            raise SpecError(str(file), key_path(loc), f"must be a finite number, got {value!r}")


def validate(data: Any, model: type[M], file: str | Path, context: dict[str, Any] | None = None) -> M:
    """Validate parsed YAML against ``model``; the first problem becomes one SpecError."""
    if not isinstance(data, dict):
        raise SpecError(str(file), "", f"expected a mapping at the top level, got {type(data).__name__}")
    check_finite(data, model, file)
    try:
        return model.model_validate(data, context=context)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        raise SpecError(str(file), key_path(_input_loc(data, err["loc"])), _reason(err, model)) from None
    except ArithmeticError as exc:  # finite numbers too extreme for a validator's arithmetic (sd 1e308 / mean 1e-300)
        why = exc.args[-1] if exc.args else type(exc).__name__
        raise SpecError(str(file), key_path(_arithmetic_path(data, model, context)),
                        f"numbers too large or too small to compute with ({why})") from None


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    """Every pydantic model inside an annotation (list[A | B], dict[str, A]...)."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    import typing

    args = list(typing.get_args(annotation))
    args += [a.json_schema_input_type for a in getattr(annotation, "__metadata__", ())
             if getattr(a, "json_schema_input_type", None) is not None]  # PlainValidator(..., json_schema_input_type)
    return [m for arg in args for m in _models_in(arg)]


def _arithmetic_path(data: Any, model: type[pydantic.BaseModel], context: dict[str, Any] | None) -> tuple[Any, ...]:
    """The deepest node of ``data`` whose own validation raises an ArithmeticError (its key path)."""
    if not isinstance(data, dict):
        return ()
    for name, field in model.model_fields.items():
        key = field.alias if field.alias in data else name
        if key not in data:
            continue
        value = data[key]
        candidates: list[tuple[tuple[Any, ...], Any]] = [((), value)]
        if isinstance(value, list):
            candidates += [((i,), v) for i, v in enumerate(value)]
        elif isinstance(value, dict):
            candidates += [((k,), v) for k, v in value.items()]
        for loc, sub in candidates:
            if not isinstance(sub, dict):
                continue
            for sub_model in _models_in(field.annotation):
                try:
                    sub_model.model_validate(sub, context=context)
                except ArithmeticError:
                    return (key, *loc, *_arithmetic_path(sub, sub_model, context))
                except Exception:  # noqa: BLE001 - not this model, or wrong in another way
                    continue
    return ()


def _input_loc(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Keep the parts of an error location that address the input.

    Unions add their tag or member name to the location (``follow_up.event_driven.target_events``);
    walking the parsed YAML tells which parts are real keys and indices.
    """
    out: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and i == len(loc) - 1:
            pass  # a missing or unknown key: keep it
        elif isinstance(node, dict) and not any(isinstance(p, str) and p in node for p in loc[i + 1:]):
            pass
        else:
            continue
        out.append(part)
    return tuple(out)


def load(path: str | Path, model: type[M]) -> M:
    """Read and validate one spec file."""
    return validate(read_yaml(path), model, path)
