"""Reference pages of the file formats, generated from the typed specs so they cannot drift.

    python -m vctrial.docgen docs/reference      # rewrite the pages
    python -m vctrial.docgen --check docs/reference   # exit 1 if a page is out of date
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pydantic
from pydantic_core import PydanticUndefined

from vctrial.spec import KINDS, model_for

UNIT_SUFFIXES = {
    "_months": "months", "_per_year": "1/year", "_years": "years", "_pct": "%", "_mmhg": "mmHg",
    "_days": "days", "_weeks": "weeks", "_per_week": "1/week", "_per_day": "1/day",
}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        for meta in annotation.__metadata__:
            extra = getattr(meta, "json_schema_input_type", None)
            if extra is not None and extra is not PydanticUndefined and extra is not Any:
                return _type_name(extra)
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join(_type_name(a) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__)
    return str(annotation).replace("typing.", "")


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    found: list[type[pydantic.BaseModel]] = []
    for arg in typing.get_args(annotation):
        for m in _models_in(arg):
            if m not in found:
                found.append(m)
    for meta in getattr(annotation, "__metadata__", ()):
        extra = getattr(meta, "json_schema_input_type", None)
        if extra is not None and extra is not PydanticUndefined:
            for m in _models_in(extra):
                if m not in found:
                    found.append(m)
    return found


def _unit(name: str, field: pydantic.fields.FieldInfo) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "unit" in extra:
        return str(extra["unit"])
    for suffix, unit in UNIT_SUFFIXES.items():
        if name.endswith(suffix):
            return unit
    return ""


def _default(field: pydantic.fields.FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if isinstance(value, pydantic.BaseModel):
        return "(see below)"
    return "`" + repr(value) + "`" if value not in (None, "", [], {}) else ("`null`" if value is None else f"`{value!r}`")


def _constraints(field: pydantic.fields.FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for attr, sym in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("min_length", "min length"),
                          ("max_length", "max length"), ("pattern", "pattern")):
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{sym} {value}")
    return "; ".join(parts)


def model_page(kind: str) -> str:
    """Markdown reference of one file kind: every key with type, default, unit and meaning."""
    root = model_for(kind)
    lines = [f"# `kind: {kind}` files", "", "Generated from the typed specs by `python -m vctrial.docgen`; do not edit.",
             "Unknown keys are errors. The JSON Schema is printed by `vctrial schema " + kind + "`.", ""]
    seen: list[type[pydantic.BaseModel]] = []
    queue: list[tuple[str, type[pydantic.BaseModel]]] = [("(top level)", root)]
    while queue:
        where, model = queue.pop(0)
        if model in seen:
            continue
        seen.append(model)
        lines += [f"## {model.__name__}" + ("" if model is root else f" — `{where}`"), ""]
        doc = (model.__doc__ or "").strip()
        if doc:
            lines += [" ".join(doc.split()), ""]
        lines += ["| key | type | default | unit | constraints | meaning |", "|---|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            key = field.alias or name
            meaning = " ".join((field.description or "").split())
            cells = [f"`{key}`", _type_name(field.annotation), _default(field), _unit(key, field),
                     _constraints(field), meaning]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            for sub in _models_in(field.annotation):
                queue.append((f"{where}.{key}" if model is not root else key, sub))
        lines.append("")
    return "\n".join(lines)


def write_pages(folder: str | Path, check: bool = False) -> list[Path]:
    """Write (or, with check, compare) one page per kind; returns the pages that differ."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stale = []
    for kind in KINDS:
        path = folder / f"{kind}.md"
        text = model_page(kind) + "\n"
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
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
