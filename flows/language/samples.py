"""Expressions tried with the values their fields can have: what parses but fails when it runs.

A ``when`` or a ``check`` is evaluated when its step becomes ready; one that compares an integer
field with the text ``'500'``, or an optional field left empty (None) with a number, raises there
and fails the step. :func:`expression_problems` evaluates each such expression at validation time
with typed stand-ins for the fields it reads (an integer field an int, an enum each of its
choices, a boolean True and False), then with None for each optional field or input without a
default, and says what would fail. It also refuses a comparison of a choice field with a value
that is not one of its choices (never equal).

Only what is certain is reported: a value whose type is not declared (``run``, ``trigger``,
``config``, a step's ``note``) is an :class:`_Unknown` that takes part in any operation, and only
a TypeError that no unknown value took part in is an error.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import nodes

from flows.language.expressions import TemplateProblem, analyse, compiled_expression, parse
from flows.language.fields import FieldSpec

#: the combinations of sample values tried per expression, at most (enums multiply)
MAX_TRIES = 64
#: an input stood in for one that failed validation (:mod:`flows.language.library`): its type is not known
STAND_IN = "stand-in for an input that failed validation"
#: outputs of step kinds whose type is fixed (a human step's are its form's fields)
_TYPED_OUTPUTS: dict[str, dict[str, Any]] = {
    "check": {"result": bool},
    "command": {"exit_code": int},
    "http": {"status": int},
    "notify": {"delivered": bool, "reached": int, "failed": int},
}
_SAMPLES: dict[Any, list[Any]] = {"string": ["text"], "integer": [1], "number": [1.5], "boolean": [True, False],
                                  "date": ["2026-12-31"], bool: [True, False], int: [1]}
_ARTICLE = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
            "date": "a date (text, YYYY-MM-DD)"}
_FITTING_DEFAULT = {"string": "''", "integer": "0", "number": "0", "boolean": "false", "date": "''"}
_NEGATED = {"eq": "`==` is never true", "ne": "`!=` is always true", "in": "`in` never finds it",
            "notin": "`not in` is always true"}


class _Unknown:
    """A value whose type the SOP does not declare: every operation on it succeeds (and gives an unknown)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("unsafe_callable", "alters_data"):  # the sandbox asks these of a value
            raise AttributeError(name)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> _Unknown:
        return self

    def __getitem__(self, key: Any) -> _Unknown:
        return self

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __lt__(self, other: object) -> bool:
        return False

    __le__ = __gt__ = __ge__ = __lt__

    def __bool__(self) -> bool:
        return True

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __contains__(self, item: object) -> bool:
        return False

    def __int__(self) -> int:
        return 1

    def __float__(self) -> float:
        return 1.0

    def __index__(self) -> int:
        return 1

    def __str__(self) -> str:
        return "unknown"

    def _same(self, *other: Any) -> _Unknown:
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _same
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __pow__ = __rpow__ = __neg__ = __pos__ = __abs__ = _same
    __round__ = _same


UNKNOWN = _Unknown()


@dataclass(frozen=True)
class Typed:
    """A value an expression reads whose type is declared: its name as written, its samples, what may leave it empty."""

    name: str
    type: str
    samples: tuple[Any, ...]
    #: None when it always has a value; else how it comes to be empty ("left empty", "a run starts without it")
    empty: str | None = None
    enum: tuple[Any, ...] | None = None


def field_typed(name: str, spec: FieldSpec, empty: str | None) -> Typed | None:
    """A form field or an input as a :class:`Typed` (None for a stand-in, whose type is not known)."""
    if spec.description == STAND_IN:
        return None
    samples = tuple(spec.enum) if spec.enum else tuple(_SAMPLES[spec.type])
    optional = not spec.is_required and spec.default is None
    return Typed(name, spec.type, samples, empty if optional else None, tuple(spec.enum) if spec.enum else None)


def output_typed(name: str, kind: str, output: str) -> Typed | None:
    """An output of a step kind whose type is fixed (``steps.probe.exit_code``), else None."""
    python_type = _TYPED_OUTPUTS.get(kind, {}).get(output)
    if python_type is None:
        return None
    return Typed(name, "boolean" if python_type is bool else "integer", tuple(_SAMPLES[python_type]))


@lru_cache(maxsize=1024)
def _tree(text: str) -> nodes.Template:
    return parse(text, expression=True)


#: node types an evaluation could spend unbounded time or memory on (``10 ** 10 ** 10``, ``'x' * 10 ** 9``)
_COSTLY = (nodes.Pow, nodes.Mul, nodes.Call, nodes.Filter)


def _chain(node: nodes.Node) -> tuple[str, ...] | None:
    parts: list[str] = []
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            parts.append(node.arg.value)
        else:
            return None
        node = node.node
    if isinstance(node, nodes.Name):
        return (node.name, *reversed(parts))
    return None


def safe_to_run(tree: nodes.Template) -> bool:
    """Whether evaluating the expression costs no more than reading it: no power, no repetition of a big number
    of items, and no call or filter that is handed a number it could loop on."""
    for node in tree.find_all(_COSTLY):
        if isinstance(node, nodes.Pow):
            return False
        if isinstance(node, nodes.Mul):
            for side in (node.left, node.right):
                if not isinstance(side, nodes.Const) or not isinstance(side.value, (int, float)) or abs(side.value) > 1000:
                    if not _chain(side):
                        return False
        if isinstance(node, (nodes.Call, nodes.Filter)):
            name = node.name if isinstance(node, nodes.Filter) else getattr(node.node, "name", None)
            if name in ("range", "lipsum", "batch", "slice", "wordwrap", "indent", "center", "truncate"):
                return False
    return True


def context_of(values: dict[tuple[str, ...], Any]) -> dict[str, Any] | None:
    """The nested variables that hold each path's value; None when one path is inside another (``steps.a``
    and ``steps.a.b``): then the expression reads a whole mapping, which is not tried."""
    context: dict[str, Any] = {}
    for path, value in sorted(values.items(), key=lambda item: len(item[0])):
        node = context
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                return None
            node = child
        if path[-1] in node:
            return None
        node[path[-1]] = value
    return context


def _try(text: str, values: dict[tuple[str, ...], Any]) -> TypeError | None:
    """The TypeError evaluating ``text`` with ``values`` raises, when no unknown value took part in it."""
    context = context_of(values)
    if context is None:
        return None
    try:
        compiled_expression(text)(**context)
    except TypeError as exc:
        return None if _Unknown.__name__ in str(exc) else exc
    except Exception:  # noqa: BLE001 - anything but a type error may depend on the sample values: not certain
        return None
    return None


def _label(typed: Typed) -> str:
    return f"`{typed.name}` is {_ARTICLE.get(typed.type, typed.type)} field"


def expression_problems(text: str, field: str, typed: dict[tuple[str, ...], Typed]) -> list[str]:
    """What is wrong with an expression (``field``: ``when`` or ``check``) given the declared types of the paths
    it reads (``typed``, by path as :func:`analyse` gives them; a path not in it is of unknown type). The same
    expression over the same types (SOPs written from one template) is tried once."""
    try:
        refs = analyse(text, expression=True)
    except TemplateProblem:
        return []  # reported on its own
    reads = tuple((ref, typed[ref]) for ref in refs if ref in typed)
    if not reads:
        return []
    try:
        return list(_problems(text, field, tuple(refs), reads))
    except TypeError:  # a sample that cannot be a cache key: tried without the cache
        return _tried(text, field, tuple(refs), dict(reads))


@lru_cache(maxsize=4096)
def _problems(text: str, field: str, refs: tuple[tuple[str, ...], ...],
              typed_reads: tuple[tuple[tuple[str, ...], Typed], ...]) -> tuple[str, ...]:
    return tuple(_tried(text, field, refs, dict(typed_reads)))


def _tried(text: str, field: str, refs: tuple[tuple[str, ...], ...], reads: dict[tuple[str, ...], Typed]) -> list[str]:
    try:
        tree = _tree(text)
    except TemplateProblem:
        return []
    problems = _choices(tree, reads)
    if not safe_to_run(tree):
        return problems
    unknown = {ref: UNKNOWN for ref in refs if ref not in reads}
    order = list(reads)
    for combination in itertools.islice(itertools.product(*(reads[ref].samples for ref in order)), MAX_TRIES):
        values = dict(zip(order, combination, strict=True))
        exc = _try(text, {**unknown, **values})
        if exc is not None:
            enums = [f"`{reads[ref].name}` is {value!r}" for ref, value in values.items() if reads[ref].enum
                     and len(reads[ref].samples) > 1]
            when = f"whenever {' and '.join(enums)}" if enums else "whenever it is evaluated"
            labels = "; ".join(_label(reads[ref]) for ref in order)
            problems.append(f"`{field}` would fail {when}: {exc} ({labels}); compare a field with a value of its "
                            "type: a number without quotes (500), text in quotes ('high')")
            return problems  # the values it fails with are wrong whatever is left empty
    for ref in order:
        item = reads[ref]
        if item.empty is None:
            continue
        others = [other for other in order if other != ref]
        for combination in itertools.islice(itertools.product(*(reads[o].samples for o in others)), MAX_TRIES):
            exc = _try(text, {**unknown, **dict(zip(others, combination, strict=True)), ref: None})
            if exc is not None:
                default = repr(item.enum[0]) if item.enum else _FITTING_DEFAULT.get(item.type, "''")
                problems.append(f"`{field}` would fail {item.empty}: {exc}; write `{item.name} | default({default})` "
                                f"(or a fitting default), or test `{item.name} is not none and …` first")
                break
    return problems


def _choices(tree: nodes.Template, reads: dict[tuple[str, ...], Typed]) -> list[str]:
    """Comparisons of a choice field with a value that is not one of its choices (``== 'shipping'``)."""
    problems: list[str] = []
    for compare in tree.find_all(nodes.Compare):
        left = compare.expr
        for operand in compare.ops:
            right = operand.expr
            pairs = [(left, right)] + ([(right, left)] if operand.op in ("eq", "ne") else [])
            for field_node, literal in pairs:
                path = _chain(field_node)
                item = reads.get(path) if path else None
                if item is None or item.enum is None:
                    continue
                if isinstance(literal, nodes.Const):
                    values = [literal.value]
                elif isinstance(literal, (nodes.List, nodes.Tuple)) and operand.op in ("in", "notin") and all(
                        isinstance(v, nodes.Const) for v in literal.items):
                    values = [v.value for v in literal.items]  # type: ignore[attr-defined]
                else:
                    continue
                if operand.op not in _NEGATED or (operand.op in ("eq", "ne") and len(values) != 1):
                    continue
                outside = [v for v in values if not any(v == c and type(v) is type(c) or (
                    isinstance(v, (int, float)) and isinstance(c, (int, float)) and not isinstance(v, bool)
                    and not isinstance(c, bool) and v == c) for c in item.enum)]
                if outside:
                    shown = ", ".join(repr(v) for v in outside)
                    choices = ", ".join(str(c) for c in item.enum)
                    which = "which is not one of its choices" if len(outside) == 1 else "which are not among its choices"
                    verdict = _NEGATED[operand.op] if len(outside) == len(values) else f"{shown} never matches"
                    problems.append(f"`{item.name}` is compared with {shown}, {which} ({choices}): {verdict}")
            left = right
    return problems
