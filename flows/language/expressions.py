"""Templates and expressions: one sandboxed, strict Jinja2 environment for checking and running.

``sop validate`` uses :func:`references` to find every variable a template uses and checks it
against what the SOP declares; the engine renders with the same environment, so a template
that validated cannot meet an unknown variable at 3 a.m.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment

from flows.language.presentation import said


def default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """Jinja's ``default`` (``d``), which also stands in for None: an optional input left out, a field nobody
    filled, is None, and ``{{ inputs.topic | default('not known yet') }}`` must not print "None"."""
    if value is None or isinstance(value, Undefined) or (boolean and not value):
        return default_value
    return value


ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
ENV.filters["default"] = ENV.filters["d"] = default
#: text people read (a notify step's message, a step's instructions): each value as the pages show it (yes / no,
#: —, lists joined, a choice by its label) and pinging nobody in a chat (``@everyone`` in a topic), while commands,
#: URLs, bodies and keys keep ENV's ``str()`` (a program reads ``True``)
TEXT_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True,
                                         finalize=said)
TEXT_ENV.filters["default"] = TEXT_ENV.filters["d"] = default
ROOTS = ("inputs", "steps", "trigger", "run", "config")
RUN_FIELDS = ("id", "sop", "title", "started_at", "deadline_at", "initiator", "speed", "url", "class", "priority",
              "drill")
_WRAPPED = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)


class TemplateProblem(ValueError):
    """A template that does not parse or names an unknown filter or test; ``lineno`` is relative to the template text."""

    def __init__(self, message: str, lineno: int = 1):
        super().__init__(message)
        self.lineno = lineno


def unwrap(expression: str) -> str:
    """``"{{ a > 1 }}"`` → ``"a > 1"``; a bare expression is returned as is."""
    match = _WRAPPED.match(expression)
    return match.group(1).strip() if match and "{{" not in match.group(1) else expression.strip()


def parse(text: str, expression: bool = False) -> nodes.Template:
    """Parse a template (or an expression) or raise TemplateProblem with a readable message.

    Filter and test names are checked too: Jinja2 only looks them up when it compiles or
    runs the template, which for a step is at run time.
    """
    source = "{{ " + unwrap(text) + " }}" if expression else text
    try:
        tree = ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error: {exc.message}", exc.lineno or 1) from None
    except RecursionError:
        raise TemplateProblem("template nested too deeply (brackets or blocks inside each other hundreds of times)") from None
    except (ValueError, OverflowError) as exc:  # the lexer's own: a number of 5,000 digits
        raise TemplateProblem(f"template cannot be read: {str(exc)[:120]}") from None
    try:
        if "|" in source or " is " in source:  # walking the tree costs as much as parsing: only when it can find something
            for node in tree.find_all((nodes.Filter, nodes.Test)):
                kind, known = ("filter", ENV.filters) if isinstance(node, nodes.Filter) else ("test", ENV.tests)
                if node.name not in known:
                    raise TemplateProblem(f"unknown {kind} `{node.name}`{_did_you_mean(node.name, known, kind)}", node.lineno)
        if _MAY_ALWAYS_FAIL.search(source):
            _always_fails(tree)
    except RecursionError:
        raise TemplateProblem("template nested too deeply (expressions inside each other hundreds of times)") from None
    return tree


#: what :func:`_always_fails` looks for can only be there when the text has one of these
_MAY_ALWAYS_FAIL = re.compile(r"include|extends|import|__|/|%|range")


def _always_fails(tree: nodes.Template) -> None:
    """Refuse what parses but fails whenever the template is rendered (the sandbox or Python would refuse it)."""
    for node in tree.find_all((nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)):
        raise TemplateProblem("a template cannot include, extend or import another template (there are no template "
                              "files to load): it would fail whenever it is rendered", node.lineno)
    for node in tree.find_all(nodes.Getattr):
        if node.attr.startswith("__") and hasattr(object(), node.attr):
            raise TemplateProblem(f"`{node.attr}` cannot be read in a template: the sandbox refuses names starting with "
                                  "`_`, so it would fail whenever it is rendered", node.lineno)
    for node in tree.find_all((nodes.Div, nodes.FloorDiv, nodes.Mod)):
        if isinstance(node.right, nodes.Const) and node.right.value == 0 and not isinstance(node.left, nodes.TemplateData):
            if isinstance(node, nodes.Mod) and isinstance(node.left, nodes.Const) and isinstance(node.left.value, str):
                continue  # ``"%d" % 0`` is formatting
            raise TemplateProblem("division by zero: it would fail whenever it is rendered", node.lineno)
    for node in tree.find_all(nodes.Call):
        if (isinstance(node.node, nodes.Name) and node.node.name == "range" and node.args and not node.kwargs
                and all(isinstance(a, nodes.Const) and type(a.value) is int for a in node.args)):
            try:
                size = len(range(*[a.value for a in node.args]))  # type: ignore[attr-defined]
            except (TypeError, ValueError, OverflowError):
                continue
            if size > MAX_RANGE:
                raise TemplateProblem(f"range of {size:,} items: the sandbox allows at most {MAX_RANGE:,}, "
                                      "so it would fail whenever it is rendered", node.lineno)


def _did_you_mean(name: str, known: Any, kind: str) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=3)
    if not close:
        return f" (expected a Jinja2 built-in {kind}: https://jinja.palletsprojects.com/en/stable/templates/#builtin-{kind}s)"
    return f"; did you mean {' or '.join(f'`{c}`' for c in close)}?"


#: nodes that bind names; a template without them reads every name it mentions from outside
_BINDING = (nodes.For, nodes.Assign, nodes.AssignBlock, nodes.Macro, nodes.CallBlock, nodes.With, nodes.Import,
            nodes.FromImport, nodes.Scope, nodes.OverlayScope, nodes.FilterBlock, nodes.Block)


def _free_names(tree: nodes.Template) -> set[str] | None:
    """The names a template reads from outside; None when it binds none (then every name it reads is free)."""
    # jinja2.meta runs the code generator, ~10x the cost of a walk; most templates bind nothing
    if next(tree.find_all(_BINDING), None) is not None:
        return meta.find_undeclared_variables(tree)
    return None


def references(tree: nodes.Template, statements: bool = True) -> list[tuple[str, ...]]:
    """Every variable path the template reads from outside, e.g. ``('steps', 'assess', 'severity')``.

    A path stops at the first dynamic part (``steps[x]``) or call; names the template binds
    itself (``{% for %}``, ``{% set %}``) are left out. ``statements`` False: the text has no
    ``{%``, so nothing is bound (a walk saved).
    """
    free = _free_names(tree) if statements else None
    found: list[tuple[str, ...]] = []

    def chain(node: nodes.Node) -> tuple[str, ...] | None:
        parts: list[str] = []
        while True:
            if isinstance(node, nodes.Getattr):
                parts.append(node.attr)
                node = node.node
            elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                parts.append(node.arg.value)
                node = node.node
            elif isinstance(node, nodes.Name):
                parts.append(node.name)
                return tuple(reversed(parts))
            else:
                return None

    def visit(node: nodes.Node) -> None:
        if isinstance(node, (nodes.Getattr, nodes.Getitem, nodes.Name)):
            path = chain(node)
            if path is not None:
                if free is None or path[0] in free:
                    found.append(path)
                return
            if isinstance(node, nodes.Getitem):
                visit(node.arg)
            visit(node.node)  # type: ignore[union-attr]
            return
        for child in node.iter_child_nodes():
            visit(child)

    visit(tree)
    return found


_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_LITERAL = r"'[^'\\{}%#]*'|\"[^\"\\{}%#]*\"|-?[0-9]+(?:\.[0-9]+)?"
#: ``path``, ``path == 'x'``, ``path >= 3``: most expressions; read without Jinja's parser (a tenth of the cost)
_SIMPLE_EXPRESSION = re.compile(rf"\s*({_PATH})\s*(?:(?:==|!=|<=|>=|<|>)\s*(?:{_LITERAL})\s*)?")
#: text with ``{{ path }}`` in it and no other Jinja syntax: most titles, messages and URLs
_SIMPLE_TEMPLATE = re.compile(rf"(?:[^{{}}%#]|\{{\{{\s*{_PATH}\s*\}}\}})*")
_PATH_IN_TEMPLATE = re.compile(rf"\{{\{{\s*({_PATH})\s*\}}\}}")
#: Jinja's words: a path made of one of these is left to Jinja's parser
_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False", "None",
                       "for", "recursive", "block", "with", "without", "context", "import", "as", "set"})


def _simple_references(text: str, expression: bool) -> tuple[tuple[str, ...], ...] | None:
    """The references of a template or expression of the commonest shapes, or None to let Jinja parse it.

    Must answer exactly as :func:`references` over :func:`parse` would (tests/language/test_render.py
    compares both); anything it is unsure of goes to Jinja.
    """
    if expression:
        match = _SIMPLE_EXPRESSION.fullmatch(unwrap(text))
        paths = [match.group(1)] if match else None
    elif _SIMPLE_TEMPLATE.fullmatch(text) and "{#" not in text:
        paths = _PATH_IN_TEMPLATE.findall(text)
    else:
        paths = None
    if paths is None:
        return None
    refs = tuple(tuple(path.split(".")) for path in paths)
    for ref in refs:
        if any(part in _KEYWORDS or part.startswith("__") for part in ref):
            return None  # a keyword, a constant or a dunder: Jinja's parser decides what it means
    return refs


@lru_cache(maxsize=4096)
def analyse(text: str, expression: bool = False) -> tuple[tuple[str, ...], ...]:
    """The variable paths a template (or expression) reads, as :func:`references` finds them.

    Raises TemplateProblem when it does not parse. Remembered per text: a library repeats
    the same templates across SOPs, and parsing is most of what `sop validate` does.
    """
    simple = _simple_references(text, expression)
    if simple is not None:
        return simple
    tree = parse(text, expression=expression)
    try:
        return tuple(references(tree, statements=not expression and "{%" in text))
    except RecursionError:
        raise TemplateProblem("template nested too deeply (expressions inside each other hundreds of times)") from None


@lru_cache(maxsize=2048)
def _compiled(text: str) -> Template:
    # compiling is ~20x the cost of rendering; the templates of a library are few and reused
    return ENV.from_string(text)


#: ``{{ a.b.c }}`` and nothing else: the shape of most dedup keys and trigger inputs
_LOOKUP = re.compile(r"\{\{\s*([A-Za-z]\w*(?:\.[A-Za-z]\w*)*)\s*\}\}\Z")
_PLAIN = (str, int, float)


@lru_cache(maxsize=2048)
def _lookup_path(text: str) -> tuple[str, ...] | None:
    match = _LOOKUP.match(text)
    return tuple(match.group(1).split(".")) if match else None


def variable_path(text: str) -> tuple[str, ...] | None:
    """The path of a template that is one variable and nothing else (``"{{ inputs.area }}"`` → ``("inputs",
    "area")``), None for any other template."""
    return _lookup_path(text)


@lru_cache(maxsize=1024)
def _compiled_text(text: str) -> Template:
    return TEXT_ENV.from_string(text)


def render(text: str, context: dict[str, Any]) -> str:
    """Render a template with the run's context (inputs, steps, trigger, run, config) for a program to read: a
    command's argument, an HTTP header, a dedup key (a boolean is ``True``)."""
    return _rendered(text, context, _compiled, str)


def render_text(text: str, context: dict[str, Any]) -> str:
    """Render a template people read (a notify step's message, a step's instructions): a value as the pages show
    it (:func:`flows.language.presentation.shown`: ``Approved: yes``, not ``Approved: True``), a mention in it
    pinging nobody (the SOP's own ``@here`` does)."""
    return _rendered(text, context, _compiled_text, said)


def _rendered(text: str, context: dict[str, Any], compiled: Callable[[str], Template],
              finish: Callable[[Any], str]) -> str:
    path = _lookup_path(text)
    if path is not None:
        # a lone variable path through plain dicts to a plain value renders as its environment's finalize (``finish``)
        # of it, as Jinja would, without a template context (the intake renders two of these per alert);
        # anything else (a missing key, a key that is also a dict method, an object) goes to Jinja
        value: Any = context
        for name in path:
            if type(value) is not dict or name not in value or hasattr(dict, name):
                return compiled(text).render(**context)
            value = value[name]
        if type(value) in _PLAIN:
            return finish(value)
    return compiled(text).render(**context)


def _url_part(value: Any) -> str:
    """A value placed in a URL after its base: percent-encoded whole (``/``, ``?``, ``#``, ``%`` and spaces too), and
    a lone ``.`` or ``..`` spelled out, so that no value can change which path or query is called."""
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


#: marks around each expression's value in a rendered URL (private-use characters: no value keeps them), the
#: second for a value the template encoded itself (``| urlencode``)
_VALUE, _ENCODED, _END = "\ue000", "\ue001", "\ue002"


class _Encoded(str):
    """What ``| urlencode`` made in a URL template: encoded already, taken as it is."""


def _url_encode(value: Any) -> _Encoded:
    """``| urlencode`` in a URL: every character that means something in a URL encoded, ``/`` too (Jinja's own
    leaves ``/``, so ``../..`` went through); a mapping or pairs as ``a=1&b=2``."""
    from urllib.parse import urlencode

    if isinstance(value, dict) or (isinstance(value, (list, tuple)) and all(isinstance(p, (list, tuple)) for p in value)):
        return _Encoded(urlencode(list(value.items()) if isinstance(value, dict) else list(value), quote_via=quote,
                                  safe=""))
    return _Encoded(quote(str(value), safe=""))


def _marked(value: Any) -> str:
    """URL_ENV's ``finalize``: each expression's value between marks (:func:`render_url` decides what it becomes)."""
    text = str(value).replace(_VALUE, "").replace(_ENCODED, "").replace(_END, "")
    return f"{_ENCODED if isinstance(value, _Encoded) else _VALUE}{text}{_END}"


#: URL templates: every expression's value marked, to be placed by :func:`render_url`
URL_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, finalize=_marked)
URL_ENV.filters["default"] = URL_ENV.filters["d"] = default
URL_ENV.filters["urlencode"] = _url_encode


@lru_cache(maxsize=512)
def _compiled_url(text: str) -> Template:
    return URL_ENV.from_string(text)


def _base_ends(char: str, tail: str) -> bool:
    """Whether ``char``, written by a URL template after ``tail`` (its last two characters), ends the URL's base: the
    first ``?`` or ``#``, or a ``/`` that is not one of the scheme's ``//``."""
    return char in "?#" or (char == "/" and not tail.endswith((":", ":/")))


def url_base_references(text: str) -> list[tuple[str, ...]]:
    """The variable paths the base of a URL template reads (what :func:`render_url` puts in as it is, unencoded):
    those of every expression before the first ``/``, ``?`` or ``#`` the template writes itself. A statement
    (``{% if %}``) before it counts whole, since where its text ends the base is known only when it runs.
    Raises TemplateProblem when the template does not parse."""
    tree = parse(text)
    found: list[tuple[str, ...]] = []
    tail = ""
    for node in tree.body:
        parts = node.nodes if isinstance(node, nodes.Output) else [node]
        for part in parts:
            if isinstance(part, nodes.TemplateData):
                for char in part.data:
                    if _base_ends(char, tail):
                        return found
                    tail = (tail + char)[-2:]
            else:
                found.extend(references(nodes.Template([nodes.Output([part])]) if isinstance(part, nodes.Expr)
                                        else nodes.Template([part])))
    return found


def render_url(text: str, context: dict[str, Any]) -> str:
    """Render an HTTP step's URL. Its base, up to the first ``/`` of its path (or a ``?`` or ``#``) written in the
    template, goes in as the values make it (``{{ config.gateway }}/…``, ``https://{{ config.host }}/…``: the site's,
    or the SOP author's choice); the value of every expression after it is percent-encoded as one path segment or
    query value. An alert label ``service: ../../admin?x=1`` in ``…/scaling-groups/{{ inputs.service }}/capacity``
    stays inside that segment instead of calling ``/admin``. ``| urlencode`` in it encodes ``/`` too and is not
    encoded twice."""
    if "{" not in text:
        return text
    rendered = _compiled_url(text).render(**context)
    out: list[str] = []
    in_base, tail, i = True, "", 0
    while i < len(rendered):
        mark = rendered[i]
        if mark in (_VALUE, _ENCODED):
            end = rendered.index(_END, i)
            value = rendered[i + 1:end]
            out.append(value if in_base or mark == _ENCODED else _url_part(value))
            i = end + 1
            continue
        if in_base and _base_ends(mark, tail):
            in_base = False  # the path (or query) begins: what the template writes from here is the SOP's
        tail = (tail + mark)[-2:]
        out.append(mark)
        i += 1
    return "".join(out)


@lru_cache(maxsize=1024)
def compiled_expression(expression: str) -> Any:
    """An expression (``when``, ``check``) compiled once: a callable of the context's names."""
    return ENV.compile_expression(unwrap(expression), undefined_to_none=False)


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """Evaluate an expression (``when``, ``check``) to a Python value."""
    return compiled_expression(expression)(**context)


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """Render every string inside a JSON-like value (for http bodies and headers)."""
    if isinstance(value, str):
        return render(value, context) if "{" in value else value
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    return value
