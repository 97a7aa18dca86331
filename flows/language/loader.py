"""Loading SOP and config YAML into the models, with errors that say file:line:col and path.

The YAML is composed into nodes first so that every value keeps its position; pydantic
errors (whose ``loc`` is a field path) are then mapped back to the line they came from.
"""

from __future__ import annotations

import difflib
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from flows.language.steps import KINDS

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class SpecError:
    """One problem in a file, located and explained so that its author can fix it."""

    file: str
    line: int
    column: int
    path: str
    message: str
    #: the id of the step ``path`` is in (``steps[1]`` is ``freeze``), said beside the path: an author looks for a
    #: step by its id, not by counting from 0
    step: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        path = f"{self.path} (step `{self.step}`)" if self.step else self.path
        return f"{where}: {path}: {self.message}" if path else f"{where}: {self.message}"


class SpecInvalid(Exception):
    """Raised when files do not validate; carries every error, not only the first."""

    def __init__(self, errors: list[SpecError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def dotted(path: Iterable[str | int]) -> str:
    """``('steps', 2, 'due')`` → ``steps[2].due``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class Document:
    """A parsed YAML file: plain data plus the position of every key and value."""

    file: str
    data: Any
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    #: the text it was parsed from (newlines made ``\n``): what a run pins is what was validated, not a second read
    text: str = ""

    def where(self, path: Path_, prefer_key: bool = False) -> tuple[int, int]:
        """Line and column of a path, or of its nearest existing parent."""
        path = tuple(path)
        while True:
            if prefer_key and path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if path in self.keys:
                return self.keys[path]
            if not path:
                return (1, 1)
            path = path[:-1]

    def error(self, path: Path_, message: str, prefer_key: bool = False) -> SpecError:
        """A SpecError located at ``path`` in this document."""
        line, col = self.where(path, prefer_key)
        return SpecError(self.file, line, col, dotted(path), message, step=self.step_at(tuple(path)))

    def step_at(self, path: Path_) -> str | None:
        """The id of the SOP step ``path`` is in (``("steps", 1, "needs", 0)`` → ``freeze``); None outside a step, or
        for a step without a text id."""
        if len(path) < 2 or path[0] != "steps" or not isinstance(path[1], int) or not isinstance(self.data, dict):
            return None
        steps = self.data.get("steps")
        if not isinstance(steps, list) or not 0 <= path[1] < len(steps) or not isinstance(steps[path[1]], dict):
            return None
        found = steps[path[1]].get("id")
        return found if isinstance(found, str) and found.strip() else None


_STR_TAG = "tag:yaml.org,2002:str"


class _MemoResolver:
    """Resolves a plain scalar's tag once per distinct text instead of once per scalar.

    A scalar's implicit tag depends only on its text and quoting (the safe loaders have no
    path resolvers), and a library repeats the same keys and values in every file.
    """

    _memo: dict[tuple[str, tuple[bool, bool]], str] = {}

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is not yaml.ScalarNode:
            return super().resolve(kind, value, implicit)  # type: ignore[misc]
        key = (value, tuple(implicit))
        tag = self._memo.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)  # type: ignore[misc]
            if len(self._memo) < 100_000:
                self._memo[key] = tag
        return tag


#: libyaml when PyYAML was built with it: it composes a file many times faster (docs/benchmarks.md)
_FAST_LOADER: type = type("_FastLoader", (_MemoResolver, getattr(yaml, "CSafeLoader", yaml.SafeLoader)), {})


#: how deep collections may nest: an SOP needs about ten levels; libyaml's composer recurses in C
MAX_NESTING = 100
#: values that YAML aliases (``*name``) and merge keys may add beyond those written: an alias
#: bomb (each anchor repeating the previous one nine times) would otherwise expand forever
MAX_ALIAS_VALUES = 100_000
#: the largest file read: a 10,000-step SOP is about 400 KB
MAX_FILE_BYTES = 4_000_000
#: the largest integer a file may hold (a 64-bit one needs 64): larger ones cannot even be printed past 4,300 digits
MAX_INTEGER_BITS = 1024
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: above these (openers, or a line this long), a file might nest deeper than libyaml's C composer can
#: recurse (it crashed the process at ~25,000 levels): its parse events are counted first
_OPENERS_TO_SCAN = 5_000
_LONG_LINE = re.compile(rf"[^\n]{{{_OPENERS_TO_SCAN}}}")


class _Located(Exception):
    """A node that cannot be built (nested too deeply, expanded too far, a bad scalar), and where it is."""

    def __init__(self, line: int, column: int, message: str):
        super().__init__(message)
        self.line, self.column, self.message = line, column, message


def _position(text: str, index: int) -> tuple[int, int]:
    """Line and column (1-based) of a character index into ``text``."""
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def _control_character(exc: yaml.reader.ReaderError, text: str, file: str) -> SpecError:
    line, column = _position(text, exc.position)
    char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
    names = {0: "NUL", 7: "BEL", 8: "backspace", 0x1B: "ESC", 0x7F: "DEL", 0xFEFF: "byte order mark"}
    name = f" ({names[char]})" if char in names else ""
    escape = f" (inside double quotes it may be written as \\x{char:02x})" if char < 0x100 else ""
    return SpecError(file, line, column, "", f"malformed YAML: control character U+{char:04X}{name} is not allowed "
                                             f"in a YAML file; remove it{escape}")


def _nesting_error(text: str, file: str) -> SpecError | None:
    """Where the file nests deeper than MAX_NESTING, found from its parse events (the composer would recurse)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_FAST_LOADER):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    mark = event.start_mark
                    return SpecError(file, mark.line + 1, mark.column + 1, "",
                                     f"malformed YAML: nested more than {MAX_NESTING} levels deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None  # the parser reports it, with its own words
    return None


def _compose(text: str, file: str) -> tuple[yaml.Node | None, Any, SpecError | None]:
    """The YAML node tree of ``text`` and the loader that made it (to construct scalars), or an error."""
    if (text.count("[") + text.count("{") > _OPENERS_TO_SCAN or _LONG_LINE.search(text)) and (
            problem := _nesting_error(text, file)):
        return None, None, problem
    loader = None
    try:
        loader = _FAST_LOADER(text)
        return loader.get_single_node(), loader, None
    except yaml.reader.ReaderError as exc:
        return None, loader, _control_character(exc, text, file)
    except yaml.YAMLError:
        pass  # the pure-Python parser is the reference: it words errors better, and a file it
        # accepts is accepted even if libyaml disagrees
    finally:
        if loader is not None:
            loader.dispose()
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        return loader.get_single_node(), loader, None
    except yaml.reader.ReaderError as exc:
        return None, loader, _control_character(exc, text, file)
    except yaml.MarkedYAMLError as exc:
        return None, loader, _yaml_error(exc, file, text)
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML raises marked errors
        return None, loader, SpecError(file, 1, 1, "", f"malformed YAML: {exc}")
    except RecursionError:
        return None, loader, SpecError(file, 1, 1, "", f"malformed YAML: nested more than {MAX_NESTING} levels deep")
    finally:
        if loader is not None:
            loader.dispose()


def parse_yaml(text: str, file: str) -> tuple[Document | None, list[SpecError]]:
    """Parse YAML text keeping positions; duplicate keys are errors (YAML would drop one).

    Never raises for any text: control characters, deep nesting and alias bombs are located
    errors. Merge keys (``<<: *defaults``) are applied, keys written beside them winning.
    """
    errors: list[SpecError] = []
    node, loader, problem = _compose(text, file)
    if problem is not None:
        return None, [problem]
    doc = Document(file=file, data=None, text=text)
    if node is None:
        return None, [SpecError(file, 1, 1, "", "the file is empty (expected a YAML mapping)")]
    seen: set[int] = set()  # nodes built once: building one again is an alias's expansion
    expanded = 0

    def too_complex(n: yaml.Node, message: str) -> _Located:
        return _Located(n.start_mark.line + 1, n.start_mark.column + 1, message)

    def scalar(n: yaml.Node) -> Any:
        try:
            value = loader.construct_object(n, deep=True)
        except yaml.constructor.ConstructorError:
            raise
        except Exception as exc:  # noqa: BLE001 - resolved, then refused: 2026-02-30, a 5,000-digit number, `!!timestamp x`
            what = n.tag.rsplit(":", 1)[-1]
            why = f" ({str(exc)[:120]})" if isinstance(exc, (ValueError, OverflowError)) else ""
            raise too_complex(n, f"malformed YAML: {str(n.value)[:40]!r} reads as a {what} but is not one{why}; "
                                 "quote it to keep it as text") from None
        if isinstance(value, int) and value.bit_length() > MAX_INTEGER_BITS:  # `0xfff…`: Python cannot even print it
            raise too_complex(n, f"malformed YAML: a number of more than {MAX_INTEGER_BITS} bits; quote it to keep it as text")
        return value

    def pairs(n: yaml.MappingNode, depth: int) -> list[tuple[yaml.Node, yaml.Node]]:
        """The mapping's own pairs, then those its merge keys bring (YAML: written keys win, earlier merges win)."""
        nonlocal expanded
        if depth > MAX_NESTING:
            raise too_complex(n, f"malformed YAML: merge keys nested more than {MAX_NESTING} levels deep")
        own = [(k, v) for k, v in n.value if k.tag != _MERGE_TAG]
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in n.value:
            if key_node.tag != _MERGE_TAG:
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise too_complex(source, "malformed YAML: a merge key `<<` takes a mapping or a list of "
                                              "mappings (e.g. `<<: *defaults`)")
                merged.extend(pairs(source, depth + 1))
        expanded += len(merged)  # what merges bring is repeated like an alias's value
        if expanded > MAX_ALIAS_VALUES:
            raise too_complex(n, f"malformed YAML: merge keys (`<<`) repeat values here into more than "
                                 f"{MAX_ALIAS_VALUES:,} values; write the values out or merge less")
        if not merged:
            return own
        written = {k.value for k, _ in own if isinstance(k, yaml.ScalarNode)}
        taken: set[str] = set()
        for key_node, value_node in merged:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value not in written | taken:
                own.append((key_node, value_node))
                taken.add(key_node.value)
        return own

    def build(n: yaml.Node, path: Path_, depth: int) -> Any:
        nonlocal expanded
        if depth > MAX_NESTING:
            raise too_complex(n, f"malformed YAML: nested more than {MAX_NESTING} levels deep")
        if id(n) in seen:
            expanded += 1
            if expanded > MAX_ALIAS_VALUES:
                raise too_complex(n, f"malformed YAML: aliases (`*name`) repeat the value anchored here into more "
                                     f"than {MAX_ALIAS_VALUES:,} values; write the values out or use fewer aliases")
        else:
            seen.add(id(n))
        doc.values[path] = (n.start_mark.line + 1, n.start_mark.column + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in pairs(n, depth) if any(k.tag == _MERGE_TAG for k, _ in n.value) else n.value:
                key = (key_node.value if key_node.tag == _STR_TAG and type(key_node) is yaml.ScalarNode
                       else scalar(key_node) if isinstance(key_node, yaml.ScalarNode)
                       else None)
                if isinstance(key_node, yaml.MappingNode) and (unquoted := _unquoted_template(n, path, text)):
                    errors.append(SpecError(file, n.start_mark.line + 1, n.start_mark.column + 1, dotted(path), unquoted))
                    continue
                if not isinstance(key, (str, int, bool)):
                    shown = repr(key) if key is not None else f"a {'list' if isinstance(key_node, yaml.SequenceNode) else 'mapping'}"
                    errors.append(SpecError(file, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                                            dotted(path), f"a mapping key must be text, got {shown}"))
                    continue
                # YAML 1.1 reads `on:`/`yes:` keys as booleans; keep the text the author wrote
                key = key_node.value if isinstance(key, bool) else str(key)
                child = (*path, key)
                if key in out:
                    first = doc.keys[child][0]
                    errors.append(SpecError(file, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                                            dotted(child), f"duplicate key {key!r} (first defined on line {first})"))
                    continue
                doc.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = build(value_node, child, depth + 1)
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(item, (*path, i), depth + 1) for i, item in enumerate(n.value)]
        if n.tag == _STR_TAG and type(n) is yaml.ScalarNode:
            return n.value  # what SafeConstructor.construct_yaml_str returns, without its dispatch
        return scalar(n)

    try:
        doc.data = build(node, (), 0)
    except _Located as exc:
        return None, [SpecError(file, exc.line, exc.column, "", exc.message)]
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        return None, [SpecError(file, mark.line + 1 if mark else 1, mark.column + 1 if mark else 1, "",
                                f"malformed YAML: {exc.problem}")]
    return doc, errors


def _unquoted_template(node: yaml.MappingNode, path: Path_, text: str) -> str | None:
    """``dedup: {{ inputs.customer }}``: YAML reads ``{…}`` as a mapping (whose key is a mapping); say to quote it."""
    mark = node.start_mark
    lines = text.split("\n", mark.line + 1)
    if mark.line >= len(lines) or not lines[mark.line][mark.column:].startswith("{{"):
        return None
    value = lines[mark.line][mark.column:].split(" #", 1)[0].strip()
    quoted = f"'{value}'" if '"' in value else f'"{value}"'
    written = f"- {quoted}" if not path or isinstance(path[-1], int) else f"{path[-1]}: {quoted}"
    return (f"a value that starts with `{{{{` must be quoted (without quotes YAML reads `{{ … }}` as a mapping): "
            f"write {written}")


#: constructs whose error is best shown where they open (the problem shows only at the next token)
_UNCLOSED = {"while scanning a quoted scalar": "quoted text", "while parsing a flow sequence": "`[` list",
             "while parsing a flow mapping": "`{` mapping"}

_YAML_HINTS = {
    "mapping values are not allowed here": "; check this line's indentation, or quote a value that holds ': '",
    "found character '\\t'": "; indent with spaces, not tabs",
}
#: PyYAML's words for what it met, in an author's words (the whole message: the jargon is no help)
_YAML_PLAIN = {
    "expected <block end>, but found '<block sequence start>'":
        "this list item (`- …`) is indented differently from the lines before it: line its `-` up with the "
        "other items of the same list",
    "expected <block end>, but found '<block mapping start>'":
        "this line is indented differently from the lines before it: line it up with the other keys of "
        "the same mapping",
}


#: a colon typed with a Chinese (or Japanese) input method: YAML sees no key in ``class： outage``
_FULL_WIDTH_COLON = "\uff1a"


def _full_width_colon(exc: yaml.MarkedYAMLError, file: str, lines: list[str]) -> SpecError | None:
    """A full-width colon on the lines the parser read last before it failed, where it is."""
    marks = [m for m in (exc.context_mark, exc.problem_mark) if m is not None]
    if not marks:
        return None
    last = max(m.line for m in marks)
    for number in range(max(0, min(m.line for m in marks) - 1), min(last + 1, len(lines))):
        line = lines[number]
        column = line.find(_FULL_WIDTH_COLON)
        if column < 0:
            continue
        fixed = line[:column].strip().removeprefix("- ") + ": " + line[column + 1:].strip()
        return SpecError(file, number + 1, column + 1, "", "malformed YAML: this is a full-width colon `：` (U+FF1A, as "
                                                           "Chinese input methods type it): YAML needs the ASCII colon "
                                                           f"`:` after a key; write `{fixed.strip()}`")
    return None


def _quote_in_quotes(exc: yaml.MarkedYAMLError, file: str, lines: list[str]) -> SpecError | None:
    """``title: "VIP "closed" case"``: a quote inside a value quoted with the same quote ends it early."""
    at = exc.problem_mark
    if at is None or not (exc.problem or "").endswith("but found '<scalar>'") or at.line >= len(lines):
        return None
    line = lines[at.line]
    before = line[:at.column].rstrip()
    if not before or before[-1] not in "\"'":
        return None
    quote = before[-1]
    start = line.find(quote)
    if start < 0 or start == len(before) - 1:
        return None
    value = line[start:].rstrip()
    inner = value[1:-1] if len(value) > 1 and value.endswith(quote) else value[1:]
    other = "'" if quote == '"' else '"'
    if other not in inner:
        kind = "single" if other == "'" else "double"
        fix = f"put the value in {kind} quotes ({other}{inner}{other})"
    else:
        fix = "quote the value the other way"
    escape = "write \\\" for each" if quote == '"' else "write '' for each"
    return SpecError(file, at.line + 1, len(before), "",
                     f"malformed YAML: this `{quote}` ends the quoted value that starts at column {start + 1}, and "
                     f"text follows it; to write `{quote}` inside a value, {fix} or {escape}")


def _yaml_error(exc: yaml.MarkedYAMLError, file: str, text: str = "") -> SpecError:
    problem = exc.problem or "malformed YAML"
    at = exc.problem_mark
    opened = exc.context_mark
    lines = text.split("\n")
    if _FULL_WIDTH_COLON in text and (found := _full_width_colon(exc, file, lines)) is not None:
        return found
    if (found := _quote_in_quotes(exc, file, lines)) is not None:
        return found
    if at is not None and at.line < len(lines) and problem.endswith("but found '<scalar>'"):
        line = lines[at.line]
        key, colon, value = line.partition(": {{")
        if colon and line[:at.column].rstrip().endswith("}}"):
            value = "{{" + value.split(" #", 1)[0].rstrip()
            quoted = f"'{value}'" if '"' in value else f'"{value}"'
            return SpecError(file, at.line + 1, len(key) + 3, "", "malformed YAML: a value that starts with `{{` must be "
                                                                 "quoted (without quotes YAML reads `{ … }` as a mapping): "
                                                                 f"write {key.strip()}: {quoted}")
    if opened is not None and exc.context in _UNCLOSED:
        found = f" at line {at.line + 1}, column {at.column + 1}" if at else ""
        return SpecError(file, opened.line + 1, opened.column + 1, "",
                         f"malformed YAML: the {_UNCLOSED[exc.context]} starting here is not closed ({problem}{found})")
    mark = at or opened
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    context = f" ({exc.context})" if exc.context else ""
    plain = _YAML_PLAIN.get(problem)
    if plain is not None:
        return SpecError(file, line, col, "", f"malformed YAML: {plain}")
    hint = next((h for start, h in _YAML_HINTS.items() if problem.startswith(start)), "")
    return SpecError(file, line, col, "", f"malformed YAML: {problem}{context}{hint}")


#: pydantic's type errors, and what was expected in an author's words
_EXPECTED = {"dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
             "list_type": "a list", "string_type": "text"}
_TYPE_ERRORS = (*_EXPECTED, "int_parsing", "int_type", "float_parsing", "float_type", "bool_parsing", "bool_type",
                "int_from_float")


def _named(loc: tuple[Any, ...]) -> str:
    """The part of a path an author wrote last: ``notify`` of ``escalation[0].notify``, ``notify[1]`` of a list item."""
    start = max((i for i, part in enumerate(loc) if isinstance(part, str)), default=0)
    return dotted(loc[start:])


def _describe(error: dict[str, Any], model: type[BaseModel] | None, raw_loc: tuple[Any, ...] = ()) -> str:
    kind, msg, value = error["type"], error["msg"], error.get("input")
    if kind == "missing":
        return f"required field `{_named(error['loc'])}` is missing"
    if value is None and kind in (*_TYPE_ERRORS, "literal_error") and error["loc"]:
        # `notify:` with nothing after it reads as null: say so, not "got NoneType None"
        expected = _EXPECTED.get(kind, msg.replace("Input should be ", ""))
        return f"`{_named(error['loc'])}` is empty (expected {expected})"
    if value is None and kind in ("step_kind", "trigger_kind") and error["loc"]:  # a `-` with nothing after it
        return f"`{_named(error['loc'])}` is empty; {msg[0].lower()}{msg[1:]}"
    if kind == "extra_forbidden":
        name = str(error["loc"][-1])
        hint = ""
        if model is not None:
            known = _known_fields(model, raw_loc or error["loc"])
            close = difflib.get_close_matches(name, known, n=1)
            if close:
                hint = f"; did you mean `{close[0]}`?"
            elif known:
                hint = f"; expected one of: {', '.join(sorted(known))}"
        return f"unknown field `{name}`{hint}"
    if kind == "step_kind" and isinstance(value, dict) and "kind" not in value:  # `asignee:` hides the kind
        from flows.language.spec import _IMPLIED

        for key, implied in _IMPLIED:
            near = difflib.get_close_matches(key, [str(k) for k in value], n=1, cutoff=0.75)
            if near:
                return (f"unknown field `{near[0]}`; did you mean `{key}`? (a step without `kind:` is a {implied} "
                        f"step when it has an `{key}`)")
    if kind == "literal_error":
        return f"{msg[0].lower()}{msg[1:]}, got {value!r}"
    if kind == "string_pattern_mismatch":
        return f"{value!r} is not a valid name (expected lower-case letters, digits and dashes, starting with a letter)"
    if kind in ("value_error", "assertion_error"):
        return msg.removeprefix("Value error, ")
    if kind in _TYPE_ERRORS:
        expected = _EXPECTED.get(kind, msg.replace("Input should be ", ""))
        return f"expected {expected}, got {type(value).__name__} {value!r}"
    if kind == "too_short":
        ctx = error.get("ctx") or {}
        if "min_length" in ctx and "actual_length" in ctx:
            return f"expected at least {ctx['min_length']} item(s), got {ctx['actual_length']}"
        return f"{msg[0].lower()}{msg[1:]}"
    if kind == "step_kind" and isinstance(value, dict) and "kind" in value:
        return f"unknown step kind {value['kind']!r}; {msg}"
    return f"{msg[0].lower()}{msg[1:]}" + (f" (got {value!r})" if value is not None and not isinstance(value, (dict, list)) else "")


def _owner_model(owner: tuple[Any, ...], root: type[BaseModel]) -> list[type[BaseModel]]:
    """The model(s) whose field list applies at ``owner`` (a path into the document)."""
    from flows.language import config, spec
    from flows.language.fields import FieldSpec
    from flows.language.ladder import LadderEntry

    steps: list[type[BaseModel]] = [kind.model for kind in KINDS.values()]
    triggers = [spec.MetricRule, spec.AlertTrigger, spec.EventTrigger, spec.ScheduleTrigger]
    tagged = dict(zip(KINDS, steps, strict=True))
    tagged |= dict(zip(("metric", "alert", "event", "schedule"), triggers, strict=True))
    list_items = {"steps": steps, "triggers": triggers, "escalation": [LadderEntry]}
    dict_values = {"form": FieldSpec, "inputs": FieldSpec, "people": config.Person, "roles": config.Role,
                   "channels": config.Channel, "tokens": config.ApiToken}
    # a step kind's parts (``request``, ``approval``, ``message``): the fields that hold one model
    fields = {name: part for model in steps for name, part in _parts(model).items()}
    fields |= {"settings": config.Settings, "api": config.ApiSettings, "prefect": config.PrefectSettings,
               "hmac": config.HmacCheck}
    if not owner:
        return [root]
    last = owner[-1]
    if isinstance(last, int):
        return list_items.get(str(owner[-2]), []) if len(owner) > 1 else []
    if last in tagged and len(owner) > 1 and isinstance(owner[-2], int):
        return [tagged[last]]
    if len(owner) > 1 and owner[-2] in dict_values:
        return [dict_values[str(owner[-2])]]
    return [fields[last]] if last in fields else []


def _parts(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The fields of ``model`` that hold one model (optional or not), by alias."""
    out: dict[str, type[BaseModel]] = {}
    for name, info in model.model_fields.items():
        for kind in (info.annotation, *get_args(info.annotation)):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                out[info.alias or name] = kind
    return out


def _known_fields(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names (by alias) allowed where ``loc`` points — for "did you mean" hints."""
    names: list[str] = []
    for model in _owner_model(tuple(loc[:-1]), root):
        names.extend(info.alias or name for name, info in model.model_fields.items() if name not in names)
    return sorted(set(names))


#: the discriminated lists, and the tags pydantic puts in an error's path right after an item's index
#: (``steps.0.human.due``): a tag is no part of the file; a field of the same name further on is
#: (``escalation.1.notify``: a ladder rung's `notify`, not the notify step kind)
_TAGGED = {"steps": {*KINDS}, "triggers": {"metric", "alert", "event", "schedule"}}


def _file_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """A pydantic error's ``loc`` as a path into the file: discriminator tags and validator wrappers dropped."""
    return tuple(part for i, part in enumerate(loc)
                 if not (isinstance(part, str)
                         and (part.startswith("function-")
                              or (i > 1 and isinstance(loc[i - 1], int) and part in _TAGGED.get(loc[i - 2], ())))))


def model_errors(doc: Document, exc: ValidationError, model: type[BaseModel]) -> list[SpecError]:
    """Turn a pydantic ValidationError into located SpecErrors (paths as written in the file)."""
    out = []
    seen = set()
    for error in exc.errors(include_url=False):
        loc = _file_path(tuple(error["loc"]))
        message = _describe({**error, "loc": loc}, model, tuple(error["loc"]))
        if error["type"] == "step_kind" and isinstance(error.get("input"), dict) and "kind" in error["input"]:
            loc = (*loc, "kind")  # point at the wrong kind, not at the whole step
        key = (loc, message)
        if key in seen:
            continue
        seen.add(key)
        out.append(doc.error(loc, message, prefer_key=error["type"] == "extra_forbidden"))
    return out


def read_document(path: Path) -> tuple[Document | None, list[SpecError]]:
    """Read and parse one YAML file; unreadable, oversized, non-UTF-8 or non-mapping files are errors."""
    file = str(path)
    try:
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):  # a FIFO or a device would block or never end
            return None, [SpecError(file, 1, 1, "", "not a regular file (a pipe, a device or a socket)")]
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, [SpecError(file, 1, 1, "", f"cannot read the file: {exc.strerror or exc}")]
    if len(raw) > MAX_FILE_BYTES:
        return None, [SpecError(file, 1, 1, "", f"the file is larger than {MAX_FILE_BYTES // 1_000_000} MB "
                                                "(an SOP of 10,000 steps is about 0.4 MB); split it")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [_not_utf8(raw, exc, file)]
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # as read_text does: universal newlines
    doc, errors = parse_yaml(text, file)
    if doc is not None and not isinstance(doc.data, dict):
        return None, [*errors, SpecError(file, 1, 1, "", f"expected a YAML mapping at the top, got {type(doc.data).__name__}")]
    return doc, errors


def _not_utf8(raw: bytes, exc: UnicodeDecodeError, file: str) -> SpecError:
    """Where the first byte that is not UTF-8 is, as line and column (characters, not bytes)."""
    before = raw[:exc.start]
    line_start = before.rfind(b"\n") + 1
    line = before.count(b"\n") + 1
    column = len(before[line_start:].decode("utf-8", "replace")) + 1
    byte = raw[exc.start]
    hint = ("it looks like UTF-16: save it as UTF-8" if raw[:2] in (b"\xff\xfe", b"\xfe\xff")
            else "save the file as UTF-8")
    return SpecError(file, line, column, "", f"the file is not UTF-8: byte 0x{byte:02x} cannot be read here ({hint})")


def yaml_files(paths: Iterable[Path]) -> list[Path]:
    """Expand folders into their ``*.yaml`` / ``*.yml`` files (sorted); keep files as given."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()))
        else:
            out.append(path)
    return out
