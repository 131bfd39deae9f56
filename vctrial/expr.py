"""A small, safe expression grammar for derived covariates and eligibility criteria.

Expressions are parsed with :func:`ast.parse` and only a whitelist of node types is accepted:

- numbers; quoted strings only as levels of a categorical covariate;
- names of known covariates;
- ``+ - * / **`` and unary ``-`` (and unary ``+``);
- comparisons ``< <= > >= == !=`` (chained, e.g. ``18 <= age < 65``);
- ``and``, ``or``, ``not``;
- ``name in ['II', 'III']`` and ``name not in [...]`` for a categorical covariate;
- calls of ``log``, ``exp``, ``sqrt``, ``abs`` (one argument) and ``min``, ``max`` (two
  arguments, elementwise).

Categorical covariates are stored as integer level codes in float arrays; ``nyha_class == 'III'``
compares codes, and a level the covariate does not have is a parse error. A condition used in
arithmetic counts as 1.0 (true) or 0.0 (false), so ``2 * (age >= 65)`` is valid.

Nothing is ever passed to ``eval``, ``exec`` or ``compile``: the checked tree is evaluated here,
node by node, over numpy arrays.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Expr", "ExprError", "FUNCTIONS", "parse"]

MAX_LENGTH = 2000
"""Longest expression accepted, in characters."""

FUNCTIONS: dict[str, int] = {"log": 1, "exp": 1, "sqrt": 1, "abs": 1, "min": 2, "max": 2}
"""Whitelisted functions and their number of arguments."""

_NUMBER = "number"
_BOOL = "condition"

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_CMPOPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}

_UFUNC = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.true_divide,
    "**": np.power,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
    "log": np.log,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "min": np.minimum,
    "max": np.maximum,
}

# Node names rejected with a more specific reason than "not allowed".
_REJECT_REASON = {
    "Attribute": "attribute access (a.b) is not allowed",
    "Subscript": "indexing (a[...]) is not allowed",
    "Lambda": "lambda is not allowed",
    "ListComp": "comprehensions are not allowed",
    "SetComp": "comprehensions are not allowed",
    "DictComp": "comprehensions are not allowed",
    "GeneratorExp": "comprehensions are not allowed",
    "IfExp": "'x if c else y' is not allowed",
    "NamedExpr": "':=' is not allowed",
    "Await": "'await' is not allowed",
    "Yield": "'yield' is not allowed",
    "YieldFrom": "'yield' is not allowed",
    "JoinedStr": "f-strings are not allowed",
    "Starred": "'*' unpacking is not allowed",
    "Dict": "dictionaries are not allowed",
    "Set": "sets are not allowed",
    "Slice": "slices are not allowed",
}


class ExprError(ValueError):
    """An expression is not valid; ``reason`` says why (spec code adds the file and key path)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


# The checked tree: tuples whose first item names the operation.
#   ("const", float)                  a number
#   ("var", name)                     a column (numeric, or the codes of a categorical)
#   ("neg", a)                        -a
#   ("bin", op, a, b)                 a op b, op in + - * / **
#   ("cmp", (op, ...), (a, b, ...))   a op1 b op2 c ..., chained
#   ("and", (a, b, ...)) / ("or", (a, b, ...)) / ("not", a)
#   ("isin", name, (code, ...), negate)
#   ("call", fname, (a, ...))
Node = tuple


@dataclass(frozen=True)
class Expr:
    """A parsed, checked expression.

    Attributes:
        text: the source text.
        names: the covariate names it uses.
        kind: ``"number"`` or ``"condition"`` (the type of its value).
    """

    text: str
    names: frozenset[str]
    kind: str
    tree: Node = field(repr=False, compare=False)

    @property
    def is_condition(self) -> bool:
        """True if the expression is a condition (its value is boolean)."""
        return self.kind == _BOOL

    def evaluate(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Evaluate over arrays that broadcast together.

        Args:
            columns: one array per name in ``self.names`` (categoricals as level codes).

        Returns:
            A float64 array (numbers) or a bool array (conditions), broadcast to the shape of
            the columns used (to the shape of any given column if the expression uses none).
        """
        missing = sorted(n for n in self.names if n not in columns)
        if missing:
            raise KeyError(f"no column for {', '.join(missing)} (needed by {self.text!r})")
        with np.errstate(all="ignore"):
            value = _eval(self.tree, columns)
        value = np.asarray(value, dtype=bool if self.kind == _BOOL else np.float64)
        shape = np.broadcast_shapes(*(np.shape(columns[n]) for n in self.names)) if self.names else None
        if shape is None and columns:
            shape = np.shape(next(iter(columns.values())))
        if shape is not None and value.shape != shape:
            value = np.broadcast_to(value, shape).copy()
        return value

    def __str__(self) -> str:
        return self.text


def parse(text: str, names: Mapping[str, list[str] | tuple[str, ...] | None]) -> Expr:
    """Parse and check an expression.

    Args:
        text: the expression, e.g. ``"age >= 18 and nyha_class in ['II', 'III']"``.
        names: every name the expression may use, mapped to its categorical levels (in code
            order) or to None for a numeric covariate.

    Returns:
        The checked :class:`Expr`.

    Raises:
        ExprError: the text is not an expression of the grammar; the reason says why.
    """
    if not isinstance(text, str):
        raise ExprError(f"must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ExprError("expression is empty")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression is longer than {MAX_LENGTH} characters")
    try:
        module = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ExprError(f"not a valid expression: {exc.msg}{where}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExprError("expression is too deeply nested or contains invalid characters") from None
    checker = _Checker(text, {k: (tuple(v) if v is not None else None) for k, v in names.items()})
    try:
        tree, kind = checker.check(module.body)
    except RecursionError:
        raise ExprError("expression is too deeply nested") from None
    if kind not in (_NUMBER, _BOOL):
        raise ExprError(checker.describe_bad_result(module.body, kind))
    return Expr(text=text, names=frozenset(checker.used), kind=kind, tree=tree)


# ----------------------------------------------------------------------------------- checking


class _Checker:
    """Walks a Python AST, rejects anything outside the grammar, builds the evaluation tree.

    ``check`` returns (tree, kind) where kind is ``"number"``, ``"condition"``, ``("cat", name)``
    for a bare categorical name, or ``("str", value)`` for a string constant; the last two are
    only valid as operands of a comparison with each other.
    """

    def __init__(self, text: str, names: dict[str, tuple[str, ...] | None]):
        self.text = text
        self.names = names
        self.used: set[str] = set()

    def segment(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text.strip(), node) or type(node).__name__

    def check(self, node: ast.AST) -> tuple[Node, Any]:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            kind = type(node).__name__
            reason = _REJECT_REASON.get(kind, f"{kind} expressions are not allowed")
            raise ExprError(f"{reason}: {self.segment(node)!r}")
        return method(node)

    def number(self, node: ast.AST, what: str) -> Node:
        """Check an operand that must be numeric (a condition counts as 0/1)."""
        tree, kind = self.check(node)
        if kind in (_NUMBER, _BOOL):
            return tree
        raise ExprError(self.describe_bad_operand(node, kind, what))

    def condition(self, node: ast.AST, what: str) -> Node:
        tree, kind = self.check(node)
        if kind == _BOOL:
            return tree
        if kind == _NUMBER:
            raise ExprError(
                f"{what} needs a condition (a comparison, 'in' test, and/or/not), "
                f"got the number {self.segment(node)!r}"
            )
        raise ExprError(self.describe_bad_operand(node, kind, what))

    def describe_bad_operand(self, node: ast.AST, kind: Any, what: str) -> str:
        if kind[0] == "cat":
            return self.categorical_hint(kind[1]) + f" (used with {what})"
        return f"a quoted string can only be compared with a categorical covariate, got {self.segment(node)!r}"

    def describe_bad_result(self, node: ast.AST, kind: Any) -> str:
        if kind[0] == "cat":
            return self.categorical_hint(kind[1])
        return f"a quoted string is not an expression: {self.segment(node)!r}"

    def categorical_hint(self, name: str) -> str:
        levels = self.names[name] or ()
        example = levels[0] if levels else "level"
        return (
            f"'{name}' is categorical (levels {', '.join(levels)}); compare it with a level, "
            f"e.g. {name} == '{example}' or {name} in ['{example}']"
        )

    # --- leaves

    def _Constant(self, node: ast.Constant) -> tuple[Node, Any]:
        value = node.value
        if isinstance(value, bool) or value is None or value is Ellipsis:
            raise ExprError(f"{value!r} is not allowed; use a number or a comparison")
        if isinstance(value, (int, float)):
            try:
                number = float(value)
            except OverflowError:
                raise ExprError(f"number too large: {self.segment(node)}") from None
            if not math.isfinite(number):
                raise ExprError(f"number too large: {self.segment(node)}")
            return ("const", number), _NUMBER
        if isinstance(value, str):
            return ("str", value), ("str", value)
        raise ExprError(f"{type(value).__name__} constants are not allowed: {self.segment(node)!r}")

    def _Name(self, node: ast.Name) -> tuple[Node, Any]:
        name = node.id
        if name.startswith("__"):
            raise ExprError(f"names starting with '__' are not allowed: {name!r}")
        if name not in self.names:
            if name in FUNCTIONS:
                raise ExprError(f"'{name}' is a function; call it, e.g. {name}(x)")
            known = ", ".join(self.names) or "none"
            raise ExprError(f"unknown name {name!r} (known: {known})")
        self.used.add(name)
        if self.names[name] is not None:
            return ("var", name), ("cat", name)
        return ("var", name), _NUMBER

    # --- arithmetic

    def _BinOp(self, node: ast.BinOp) -> tuple[Node, Any]:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise ExprError(f"operator {type(node.op).__name__} is not allowed: {self.segment(node)!r}")
        left = self.number(node.left, f"'{op}'")
        right = self.number(node.right, f"'{op}'")
        return ("bin", op, left, right), _NUMBER

    def _UnaryOp(self, node: ast.UnaryOp) -> tuple[Node, Any]:
        if isinstance(node.op, ast.Not):
            return ("not", self.condition(node.operand, "'not'")), _BOOL
        if isinstance(node.op, ast.USub):
            return ("neg", self.number(node.operand, "unary '-'")), _NUMBER
        if isinstance(node.op, ast.UAdd):
            return self.number(node.operand, "unary '+'"), _NUMBER
        raise ExprError(f"operator {type(node.op).__name__} is not allowed: {self.segment(node)!r}")

    def _BoolOp(self, node: ast.BoolOp) -> tuple[Node, Any]:
        word = "and" if isinstance(node.op, ast.And) else "or"
        values = tuple(self.condition(v, f"'{word}'") for v in node.values)
        return (word, values), _BOOL

    def _Call(self, node: ast.Call) -> tuple[Node, Any]:
        if not isinstance(node.func, ast.Name):
            raise ExprError(f"only the functions {', '.join(FUNCTIONS)} can be called: {self.segment(node)!r}")
        name = node.func.id
        if name not in FUNCTIONS:
            raise ExprError(f"unknown function {name!r} (allowed: {', '.join(FUNCTIONS)})")
        if node.keywords:
            raise ExprError(f"keyword arguments are not allowed: {self.segment(node)!r}")
        arity = FUNCTIONS[name]
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise ExprError(f"'*' unpacking is not allowed: {self.segment(node)!r}")
        if len(node.args) != arity:
            plural = "s" if arity > 1 else ""
            raise ExprError(f"{name}() takes {arity} argument{plural}, got {len(node.args)}: {self.segment(node)!r}")
        args = tuple(self.number(a, f"{name}()") for a in node.args)
        return ("call", name, args), _NUMBER

    # --- comparisons

    def _Compare(self, node: ast.Compare) -> tuple[Node, Any]:
        if len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)):
            return self.membership(node, negate=isinstance(node.ops[0], ast.NotIn))
        if any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            raise ExprError(f"'in' cannot be chained with other comparisons: {self.segment(node)!r}")
        operands_ast = [node.left, *node.comparators]
        checked = []
        for item in operands_ast:
            if isinstance(item, (ast.List, ast.Tuple)):
                raise ExprError(f"a list can only follow 'in' / 'not in': {self.segment(node)!r}")
            checked.append(self.check(item))
        ops: list[str] = []
        operands: list[Node] = []
        for i, op_node in enumerate(node.ops):
            op = _CMPOPS.get(type(op_node))
            if op is None:
                raise ExprError(f"comparison {type(op_node).__name__} is not allowed: {self.segment(node)!r}")
            ops.append(op)
            (ltree, lkind), (rtree, rkind) = checked[i], checked[i + 1]
            lpair = self.comparand(ltree, lkind, rkind, op, node)
            rpair = self.comparand(rtree, rkind, lkind, op, node)
            if i == 0:
                operands.append(lpair)
            operands.append(rpair)
        return ("cmp", tuple(ops), tuple(operands)), _BOOL

    def comparand(self, tree: Node, kind: Any, other: Any, op: str, node: ast.AST) -> Node:
        """The evaluation tree of one side of a comparison, a quoted level turned into its code."""
        if kind in (_NUMBER, _BOOL) and other in (_NUMBER, _BOOL):
            return tree
        cats = [k for k in (kind, other) if isinstance(k, tuple) and k[0] == "cat"]
        strs = [k for k in (kind, other) if isinstance(k, tuple) and k[0] == "str"]
        if len(cats) == 1 and len(strs) == 1:
            if op not in ("==", "!="):
                raise ExprError(
                    "categorical levels can only be compared with '==' or '!=' (or 'in [...]'): "
                    f"{self.segment(node)!r}"
                )
            if kind is cats[0]:
                return tree
            return ("const", float(self.level_code(cats[0][1], kind[1])))
        if cats:
            raise ExprError(self.categorical_hint(cats[0][1]) + f": {self.segment(node)!r}")
        raise ExprError(f"a quoted string can only be compared with a categorical covariate: {self.segment(node)!r}")

    def level_code(self, name: str, level: str) -> int:
        levels = self.names[name] or ()
        if level not in levels:
            raise ExprError(f"{level!r} is not a level of '{name}' (levels: {', '.join(levels)})")
        return levels.index(level)

    def membership(self, node: ast.Compare, negate: bool) -> tuple[Node, Any]:
        word = "not in" if negate else "in"
        left, container = node.left, node.comparators[0]
        if not isinstance(left, ast.Name):
            raise ExprError(f"the left side of '{word}' must be a categorical covariate: {self.segment(node)!r}")
        _, kind = self._Name(left)
        if kind == _NUMBER:
            raise ExprError(
                f"'{word}' needs a categorical covariate on the left; '{left.id}' is numeric: {self.segment(node)!r}"
            )
        if not isinstance(container, (ast.List, ast.Tuple)):
            raise ExprError(f"'{word}' needs a list of quoted levels, e.g. ['II', 'III']: {self.segment(node)!r}")
        codes = []
        for item in container.elts:
            if not (isinstance(item, ast.Constant) and isinstance(item.value, str)):
                raise ExprError(f"'{word}' needs a list of quoted levels, got {self.segment(item)!r}")
            codes.append(float(self.level_code(left.id, item.value)))
        if not codes:
            raise ExprError(f"the list after '{word}' is empty: {self.segment(node)!r}")
        return ("isin", left.id, tuple(codes), negate), _BOOL

    def _List(self, node: ast.List) -> tuple[Node, Any]:
        raise ExprError(f"a list can only follow 'in' / 'not in': {self.segment(node)!r}")

    _Tuple = _List


# --------------------------------------------------------------------------------- evaluation


def _eval(node: Node, cols: Mapping[str, np.ndarray]) -> Any:
    tag = node[0]
    if tag == "const":
        return node[1]
    if tag == "var":
        return np.asarray(cols[node[1]], dtype=np.float64)
    if tag == "neg":
        return np.negative(_as_float(_eval(node[1], cols)))
    if tag == "bin":
        return _UFUNC[node[1]](_as_float(_eval(node[2], cols)), _as_float(_eval(node[3], cols)))
    if tag == "cmp":
        ops, operands = node[1], node[2]
        values = [_as_float(_eval(o, cols)) for o in operands]
        out = _UFUNC[ops[0]](values[0], values[1])
        for i in range(1, len(ops)):
            out = np.logical_and(out, _UFUNC[ops[i]](values[i], values[i + 1]))
        return out
    if tag == "and":
        out = _eval(node[1][0], cols)
        for sub in node[1][1:]:
            out = np.logical_and(out, _eval(sub, cols))
        return out
    if tag == "or":
        out = _eval(node[1][0], cols)
        for sub in node[1][1:]:
            out = np.logical_or(out, _eval(sub, cols))
        return out
    if tag == "not":
        return np.logical_not(_eval(node[1], cols))
    if tag == "isin":
        codes = np.asarray(cols[node[1]], dtype=np.float64)
        out = np.isin(codes, np.array(node[2]))
        return np.logical_not(out) if node[3] else out
    if tag == "call":
        args = [_as_float(_eval(a, cols)) for a in node[2]]
        return _UFUNC[node[1]](*args)
    raise AssertionError(f"unknown node {tag!r}")  # pragma: no cover - the checker builds only the above


def _as_float(value: Any) -> Any:
    """Conditions count as 1.0 / 0.0 in arithmetic."""
    if isinstance(value, np.ndarray) and value.dtype == np.bool_:
        return value.astype(np.float64)
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    return value
