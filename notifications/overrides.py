"""Checking a site's template overrides (``config/templates/*.md.j2``) before any run needs them.

Three passes, each error located at file:line: the file name must be a kind (or a ``_partial``);
the template must parse; every variable it reads must exist in the context contract
(``step.titel`` is caught with a suggestion). Then each kind is rendered once with a
filled-in sample context, which catches what reading cannot (a typo inside a loop, a
filter applied to the wrong type, an empty title line).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from jinja2 import TemplateSyntaxError, meta, nodes

from flows.language.loader import SpecError
from notifications import refusal
from notifications.errors import RenderError
from notifications.message import KINDS, template_fields
from notifications.samples import sample
from notifications.templating import SUFFIX, environment, render_message, template_name

#: names Jinja itself provides to every template
JINJA_NAMES = frozenset(
    {
        "range",
        "dict",
        "lipsum",
        "cycler",
        "joiner",
        "namespace",
        "loop",
        "true",
        "false",
        "none",
        "True",
        "False",
        "None",
    }
)


def validate_overrides(config_dir: Path | str) -> list[SpecError]:
    """Every problem in ``<config_dir>/templates``; an empty list when there is none (or no folder)."""
    folder = Path(config_dir) / "templates"
    if not folder.is_dir():
        return []
    errors: list[SpecError] = []
    kinds = (*KINDS, refusal.REFUSED)
    env = environment(str(folder.resolve()))
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        file = str(path)
        if not path.name.endswith(SUFFIX):
            errors.append(
                SpecError(
                    file,
                    1,
                    1,
                    "",
                    f"not a template: site templates are named <kind>{SUFFIX} (kinds: {', '.join(kinds)})",
                )
            )
            continue
        kind = path.name[: -len(SUFFIX)]
        if kind not in kinds and not kind.startswith("_"):
            close = difflib.get_close_matches(kind, kinds, n=1)
            hint = f"; did you mean {template_name(close[0])}?" if close else f" (kinds: {', '.join(kinds)})"
            errors.append(SpecError(file, 1, 1, "", f"unknown notification kind `{kind}`{hint}"))
            continue
        try:
            text = path.read_text(encoding="utf-8")
            tree = env.parse(text, path.name, file)
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(SpecError(file, 1, 1, "", f"cannot read the template: {exc}"))
            continue
        except TemplateSyntaxError as exc:
            errors.append(SpecError(file, exc.lineno or 1, 1, "", f"template syntax error: {exc.message}"))
            continue
        errors.extend(unknown_variables(tree, file, refusal.template_fields() if kind == refusal.REFUSED else None))
    if errors:
        return errors
    for kind in kinds:
        try:
            if kind == refusal.REFUSED:  # a refused signal's page: no run, a context of its own
                refusal.sample_message(overrides_dir=folder)
            else:
                render_message(kind, sample(kind), overrides_dir=folder)
        except RenderError as exc:
            file = exc.file or str(folder / template_name(kind))
            message = str(exc).removeprefix(f"{exc.file}:{exc.line}: ").removeprefix(f"{exc.file}: ")
            errors.append(SpecError(file, exc.line or 1, 1, "", f"rendering `{kind}` fails: {message}"))
    return _unique(errors)


def unknown_variables(tree: nodes.Template, file: str,
                      shapes: dict[str, frozenset[str] | None] | None = None) -> list[SpecError]:
    """Variables a template reads that the context does not have (``shapes``: the runs' pages'), each at its line."""
    shapes = shapes or template_fields()
    free = meta.find_undeclared_variables(tree)
    errors: list[SpecError] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        path = _chain(node)
        if path is None or path[0] not in free or path[0] in JINJA_NAMES:
            continue
        root = path[0]
        if root not in shapes:
            close = difflib.get_close_matches(root, list(shapes), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else f" (templates see: {', '.join(shapes)})"
            errors.append(SpecError(file, node.lineno, 1, "", f"unknown variable `{root}`{hint}"))
        elif len(path) > 1 and shapes[root] is not None and path[1] not in shapes[root]:  # type: ignore[operator]
            known = sorted(shapes[root] or ())
            close = difflib.get_close_matches(path[1], known, n=1)
            hint = f"; did you mean `{root}.{close[0]}`?" if close else f" ({root} has: {', '.join(known)})"
            errors.append(SpecError(file, node.lineno, 1, "", f"unknown variable `{root}.{path[1]}`{hint}"))
    return _unique(errors)


def _chain(node: nodes.Node) -> tuple[str, ...] | None:
    """``step.form`` → ('step', 'form'); only the outermost node of a chain is reported."""
    parts: list[str] = []
    current = node
    while True:
        if isinstance(current, nodes.Getattr):
            parts.append(current.attr)
            current = current.node
        elif (
            isinstance(current, nodes.Getitem)
            and isinstance(current.arg, nodes.Const)
            and isinstance(current.arg.value, str)
        ):
            parts.append(current.arg.value)
            current = current.node
        elif isinstance(current, nodes.Name):
            if current.ctx != "load":
                return None
            return (current.name, *reversed(parts))
        else:
            return None


def _unique(errors: list[SpecError]) -> list[SpecError]:
    return list(dict.fromkeys(errors))
