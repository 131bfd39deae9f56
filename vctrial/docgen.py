"""Reference pages of the file formats, generated from the typed specs so they cannot drift.

    python -m vctrial.docgen docs/reference      # rewrite the pages
    python -m vctrial.docgen --check docs/reference   # exit 1 if a page is out of date

One page per kind of :data:`vctrial.spec.KINDS`: the spec module's docstring (with its example),
then one section per model reachable from the file's top level, each a table of its keys with
type, default, unit, constraints and meaning. Meanings are the fields' ``description``; units come
from ``json_schema_extra={"unit": ...}``, else from the key's suffix (``_months``, ``_per_year``...),
else ``1`` for a dimensionless number.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
from pydantic_core import PydanticUndefined

from vctrial.spec import KINDS, model_for

# longest suffixes first: the first match wins
UNIT_SUFFIXES = {
    "_per_week_per_100k": "1/week per 100 000 residents", "_per_1000_per_year": "1/1000/year",
    "_per_month": "1/month", "_per_year": "1/year", "_per_week": "1/week", "_per_day": "1/day",
    "_months": "months", "_month": "months", "_years": "years", "_year": "years", "_weeks": "weeks",
    "_days": "days", "_pct": "%", "_mmhg": "mmHg",
}
IDENTIFIER = "^[A-Za-z_][A-Za-z0-9_]*$"
NUMBERS = (int, float)


def _anchor(model: type) -> str:
    return model.__name__.lower()


def _link(model: type) -> str:
    return f"[{model.__name__}](#{_anchor(model)})"


def _input_type(annotation: Any) -> Any:
    """The type a value is written as: ``json_schema_input_type`` of a plain validator, else the type."""
    for meta in getattr(annotation, "__metadata__", ()):
        extra = getattr(meta, "json_schema_input_type", None)
        if extra is not None and extra is not PydanticUndefined and extra is not Any:
            return extra
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def _is_model(x: Any) -> bool:
    return isinstance(x, type) and issubclass(x, pydantic.BaseModel)


def _union_members(annotation: Any) -> list[Any]:
    annotation = _input_type(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [_input_type(a) for a in typing.get_args(annotation)]
    return [annotation]


def _tag(model: type[pydantic.BaseModel]) -> tuple[str, Any] | None:
    """(field, value) of a required single-value Literal field, the usual union discriminator."""
    for name, f in model.model_fields.items():
        if f.is_required() and typing.get_origin(f.annotation) is typing.Literal and len(typing.get_args(f.annotation)) == 1:
            return f.alias or name, typing.get_args(f.annotation)[0]
    return None


def variant_labels(models: list[type[pydantic.BaseModel]]) -> dict[type, str]:
    """How a reader tells the variants of a union apart: ``type: fixed``, or a key only one of them has."""
    tags = {m: _tag(m) for m in models}
    keys = {t[0] for t in tags.values() if t is not None}
    if len(models) > 1 and all(tags.values()) and len(keys) == 1:
        return {m: f"{tags[m][0]}: {tags[m][1]}" for m in models}
    out = {}
    for m in models:
        others = {k for o in models if o is not m for k in _keys(o)}
        own = [k for k, f in _fields(m) if f.is_required() and k not in others]
        out[m] = f"has `{own[0]}`" if own else ""
    return out


def _keys(model: type[pydantic.BaseModel]) -> set[str]:
    return {f.alias or n for n, f in model.model_fields.items()}


def _fields(model: type[pydantic.BaseModel]) -> list[tuple[str, pydantic.fields.FieldInfo]]:
    """The model's keys, its discriminator (``type``, ``distribution``...) first."""
    tag = _tag(model)
    items = [(f.alias or n, f) for n, f in model.model_fields.items()]
    return sorted(items, key=lambda kv: 0 if tag is not None and kv[0] == tag[0] else 1)


def _type_name(annotation: Any) -> str:
    annotation = _input_type(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        members = _union_members(annotation)
        models = [m for m in members if _is_model(m)]
        if len(models) > 1:
            labels = variant_labels(models)
            parts = [f"{_link(m)} ({labels[m]})" if labels[m] else _link(m) for m in models]
            parts += [_type_name(a) for a in members if not _is_model(a)]
            return "one of: " + " \\| ".join(parts)
        return " \\| ".join(_type_name(a) for a in members)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is list:
        inner = _type_name(args[0]) if args else "any"
        return f"list of ({inner})" if " \\| " in inner or inner.startswith("one of") else f"list of {inner}"
    if origin is tuple:
        return "[" + ", ".join(_type_name(a) for a in args if a is not Ellipsis) + "]"
    if origin is dict:
        return f"mapping name → {_type_name(args[1])}"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if _is_model(annotation):
        return _link(annotation)
    if isinstance(annotation, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
                "date": "date (YYYY-MM-DD)"}.get(annotation.__name__, annotation.__name__)
    return str(annotation).replace("typing.", "")


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    """Models inside an annotation (list items, dict values, union members), in order."""
    annotation = _input_type(annotation)
    if _is_model(annotation):
        return [annotation]
    found: list[type[pydantic.BaseModel]] = []
    for arg in typing.get_args(annotation):
        for m in _models_in(arg):
            if m not in found:
                found.append(m)
    return found


def _child_path(path: str, key: str, annotation: Any) -> str:
    """Where the values of a key sit: ``arms[]`` for list items, ``covariates.<name>`` for mapping values."""
    where = f"{path}.{key}" if path else key
    annotation = _input_type(annotation)
    for member in _union_members(annotation):
        origin = typing.get_origin(member)
        if origin is list:
            return where + "[]"
        if origin is dict:
            return where + ".<name>"
    return where


def _is_number(annotation: Any) -> bool:
    """A number, or lists and tuples of numbers (null allowed)."""
    members = [m for m in _union_members(annotation) if m is not type(None)]
    return bool(members) and all(m in NUMBERS or (typing.get_origin(m) in (list, tuple) and all(
        _is_number(a) for a in typing.get_args(m) if a is not Ellipsis)) or (
        typing.get_origin(m) is dict and _is_number(typing.get_args(m)[1])) for m in members)


def _unit(name: str, field: pydantic.fields.FieldInfo) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "unit" in extra:
        return str(extra["unit"])
    for suffix, unit in UNIT_SUFFIXES.items():
        if name.endswith(suffix):
            return unit
    return "1" if _is_number(field.annotation) else ""


def _plain(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(by_alias=True, exclude_defaults=True)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _flow(value: Any) -> str:
    """A default as YAML flow text: ``[]``, ``{name: all, share: 1.0}``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if value == "" or value != value.strip() else value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, datetime.date):
        return value.isoformat()
    return repr(value)


def _default(field: pydantic.fields.FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, pydantic.BaseModel):
        return "its defaults"
    return f"`{_flow(_plain(value))}`"


def _constraints(field: pydantic.fields.FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for attr, sym in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("min_length", "at least"),
                          ("max_length", "at most"), ("pattern", "pattern")):
            value = getattr(meta, attr, None)
            if value is None:
                continue
            if attr == "pattern" and value == IDENTIFIER:
                parts.append("identifier")
            elif attr in ("min_length", "max_length"):
                parts.append(f"{sym} {value} item{'s' if value != 1 else ''}")
            else:
                parts.append(f"{sym} {value}")
    return "; ".join(parts)


def markdown_text(doc: str) -> str:
    """A docstring as Markdown: paragraphs joined, ``x`` as `x`, ``::`` blocks as fenced YAML."""
    doc = inspect.cleandoc(doc or "")
    doc = re.sub(r":(?:class|func|mod|data|meth):`~?([^`]+)`", r"`\1`", doc)
    out: list[str] = []
    lines = doc.splitlines()
    i = 0
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append(" ".join(s.strip() for s in para).replace("``", "`"))
            out.append("")
            para.clear()

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            flush()
            i += 1
            continue
        if line.startswith("- ") and para:
            flush()
        para.append(line)
        i += 1
        if line.rstrip().endswith("::"):
            para[-1] = line.rstrip()[:-1]
            flush()
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                block.append(lines[i])
                i += 1
            block = inspect.cleandoc("\n".join(block)).splitlines()
            out += ["```yaml", *block, "```", ""]
    flush()
    return "\n".join(out).strip()


@dataclass
class _Section:
    model: type[pydantic.BaseModel]
    paths: list[str] = field(default_factory=list)
    label: str = ""


def sections(kind: str) -> list[_Section]:
    """Every model reachable from a kind's top level, breadth first, with the key paths it sits at."""
    root = model_for(kind)
    found: dict[type, _Section] = {root: _Section(root, [""])}
    queue: list[tuple[str, type[pydantic.BaseModel]]] = [("", root)]
    while queue:
        path, model = queue.pop(0)
        for key, f in _fields(model):
            subs = _models_in(f.annotation)
            labels = variant_labels(subs) if len(subs) > 1 else {}
            child = _child_path(path, key, f.annotation)
            for sub in subs:
                sec = found.get(sub)
                if sec is None:
                    found[sub] = sec = _Section(sub, label=labels.get(sub, ""))
                    queue.append((child, sub))
                if child not in sec.paths:
                    sec.paths.append(child)
    return list(found.values())


def spec_models(kind: str) -> list[type[pydantic.BaseModel]]:
    """The models documented on a kind's page."""
    return [s.model for s in sections(kind)]


def model_page(kind: str) -> str:
    """Markdown reference of one file kind: every key with type, default, unit and meaning."""
    root = model_for(kind)
    lines = [f"# `kind: {kind}` files", "",
             "Generated from the typed specs by `python -m vctrial.docgen docs/reference`; do not edit by hand. "
             f"Unknown keys are errors. `vctrial schema {kind}` prints the JSON Schema (for editors).", ""]
    module_doc = markdown_text(sys.modules[root.__module__].__doc__ or "")
    if module_doc:
        lines += [module_doc, ""]
    lines += ["Columns: *type* as written in YAML (a mapping name → X takes any names as keys); *default* "
              "(`required` when the key must be given); *unit* (`1`: a dimensionless number); *constraints* "
              "checked when the file is loaded, besides those stated in the meaning.", ""]
    for sec in sections(kind):
        model = sec.model
        if model is root:
            title = f"Top level ({model.__name__})"
        else:
            title = f"`{sec.paths[0]}` — {model.__name__}" + (f" ({sec.label})" if sec.label else "")
        lines += [f'<a id="{_anchor(model)}"></a>', "", f"## {title}", ""]
        if len(sec.paths) > 1:
            lines += ["Also at " + ", ".join(f"`{p}`" for p in sec.paths[1:]) + ".", ""]
        doc = markdown_text(model.__dict__.get("__doc__") or "")
        if doc:
            lines += [doc, ""]
        lines += ["| key | type | default | unit | constraints | meaning |", "|---|---|---|---|---|---|"]
        for key, f in _fields(model):
            meaning = " ".join((f.description or "").split())
            cells = [f"`{key}`", _type_name(f.annotation), _default(f), _unit(key, f), _constraints(f),
                     meaning.replace("|", "\\|")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_pages(folder: str | Path, check: bool = False) -> list[Path]:
    """Write (or, with check, compare) one page per kind; returns the pages that differ."""
    folder = Path(folder)
    if not check:
        folder.mkdir(parents=True, exist_ok=True)
    stale = []
    for kind in KINDS:
        path = folder / f"{kind}.md"
        text = model_page(kind)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(path)
            if not check:
                path.write_text(text, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Generate the file-format reference pages from the specs.")
    p.add_argument("folder", nargs="?", default="docs/reference")
    p.add_argument("--check", action="store_true", help="exit 1 if a page is out of date")
    args = p.parse_args(argv)
    stale = write_pages(args.folder, check=args.check)
    for path in stale:
        print(("out of date: " if args.check else "wrote ") + str(path))
    if args.check and stale:
        print(f"regenerate with: python -m vctrial.docgen {args.folder}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
