"""Shared machinery of the typed specs: strict models, safe YAML loading, readable errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from vctrial.errors import SpecError


class StrictModel(pydantic.BaseModel):
    """A spec node: unknown keys are errors, values are validated on load, objects are frozen."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


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


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file with the safe loader; problems become SpecError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), "", "file not found") from None
    except OSError as exc:
        raise SpecError(str(path), "", f"cannot be read ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(str(path), "", f"invalid YAML: {where}{problem}") from None


def validate(data: Any, model: type[M], file: str | Path, context: dict[str, Any] | None = None) -> M:
    """Validate parsed YAML against ``model``; the first problem becomes one SpecError."""
    if not isinstance(data, dict):
        raise SpecError(str(file), "", f"expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data, context=context)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        raise SpecError(str(file), key_path(_input_loc(data, err["loc"])), _reason(err, model)) from None


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
