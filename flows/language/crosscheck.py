"""Cross-checks that no single field can make: the DAG, names, templates, deadlines, config.

Each function returns every problem it finds (never stops at the first), located in the
document it came from.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from flows.language.config import Site, env_names, expand_env, missing_env, unset_reason
from flows.language.durations import format_duration
from flows.language.expressions import ROOTS, RUN_FIELDS, TemplateProblem, analyse
from flows.language.followups import FINISHED_RUN_FIELDS
from flows.language.graph import StepGraph
from flows.language.latent import check_latent
from flows.language.loader import Document, SpecError
from flows.language.spec import Sop
from flows.language.steps import KINDS
from flows.language.steps.base import StepBase
from flows.language.steps.human import HumanStep

LADDER_WORDS = ("assignee", "owner", "lead", "backup")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_APPRISE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S")
_JINJA_GLOBALS = {"range", "dict", "lipsum", "cycler", "joiner", "namespace", "true", "false", "none", "loop"}


def _listed(names: Iterable[str], limit: int = 20) -> str:
    """Names for a message, at most ``limit`` of them: an SOP of 10,000 steps must not print 10,000 per error."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return f"{shown}, … ({len(names)} in all)" if len(names) > limit else shown


def _near(name: str, names: Iterable[str], prefix: str = "") -> str:
    """``"; did you mean `freeze`?"`` for a name spelled nearly like one of ``names`` (``freze``), written after
    ``prefix`` (``inputs.``); "" otherwise."""
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.75)
    return f"; did you mean `{prefix}{close[0]}`?" if close else ""


def _arrows(cycle: list[str]) -> str:
    """``a → b → c → a``; a cycle of thousands shows its first and last five steps."""
    if len(cycle) <= 12:
        return " → ".join(cycle)
    return f"{' → '.join(cycle[:5])} → … {len(cycle) - 10} more … → {' → '.join(cycle[-5:])}"


def _step_index(sop: Sop) -> dict[str, int]:
    return {step.id: i for i, step in enumerate(sop.steps)}


def upstream(sop: Sop, step_id: str) -> set[str]:
    """Every step that must finish (or be skipped) before ``step_id`` can start.

    Terminates on a cycle too (each step is visited once), so templates can be checked in an
    SOP whose cycle is reported.
    """
    return StepGraph(sop).upstream(step_id)


def _fallbacks_after_their_step(sop: Sop, doc: Document, index: dict[str, int],
                                steps_path: tuple) -> list[SpecError]:
    """A fallback that needs, directly or through other steps, the step it stands in for: it takes over when that
    step timed out, and the steps after that step wait for it, so it would wait for them (the run would never end)."""
    graph, found = StepGraph(sop), []
    for i, step in enumerate(sop.steps):
        if step.fallback in index and step.id in graph.upstream(step.fallback):
            found.append(doc.error((*steps_path, i, "on_timeout"), (
                f"step `{step.fallback}` stands in for `{step.id}` when it times out, but needs it (directly or through "
                f"the steps after it): it would wait for ever; take `{step.id}` out of what `{step.fallback}` needs")))
    return found


def find_cycle(sop: Sop) -> list[str] | None:
    """A dependency cycle as a list of step ids (first repeated at the end), or None."""
    return StepGraph(sop).cycle([s.id for s in sop.steps])


class _TemplateChecker:
    """Checks one template's variables against what the SOP and site declare."""

    def __init__(self, sop: Sop, doc: Document, site: Site | None, errors: list[SpecError]):
        self.sop, self.doc, self.site, self.errors = sop, doc, site, errors
        self.by_id = {s.id: s for s in sop.steps}
        self.graph = StepGraph(sop)

    def check(self, text: Any, path: tuple, *, expression: bool = False, step: StepBase | None = None,
              allowed: tuple[str, ...] = ROOTS, run_fields: tuple[str, ...] = RUN_FIELDS) -> None:
        if not isinstance(text, str):
            return
        if not expression and "{" not in text:
            return
        try:
            refs = analyse(text, expression)
        except TemplateProblem as exc:
            self.errors.append(self.doc.error(path, str(exc)))
            return
        for ref in refs:
            problem = self._problem(ref, step, allowed, run_fields)
            if problem:
                self.errors.append(self.doc.error(path, problem))

    def _problem(self, ref: tuple[str, ...], step: StepBase | None, allowed: tuple[str, ...],
                 run_fields: tuple[str, ...] = RUN_FIELDS) -> str | None:
        root, rest = ref[0], ref[1:]
        name = ".".join(ref)
        if root in _JINJA_GLOBALS:
            return None
        if root not in ROOTS:
            return f"unknown variable `{root}` (expected one of: {', '.join(allowed)})"
        if root not in allowed:
            return f"`{name}`: `{root}` is not available here (only {', '.join(allowed)})"
        if not rest:
            return None
        if root == "inputs" and rest[0] not in self.sop.inputs:
            known = _listed(self.sop.inputs) or "none declared"
            return f"unknown input `{name}`{_near(rest[0], self.sop.inputs, 'inputs.')} (inputs: {known})"
        if root == "run" and rest[0] not in run_fields:
            return f"unknown variable `{name}` (run has: {', '.join(run_fields)})"
        if root == "config" and self.site is not None and rest[0] not in self.site.vars:
            known = ", ".join(self.site.vars) or "none declared"
            return f"unknown variable `{name}` (config vars: {known})"
        if root == "steps":
            target = self.by_id.get(rest[0]) or self.by_id.get(rest[0].replace("_", "-"))
            if target is None:
                dashed = [s for s in self.by_id if s.startswith(f"{rest[0]}-")]
                hint = (f"; step ids with dashes are written with underscores: steps.{dashed[0].replace('-', '_')}"
                        if dashed else f"{_near(rest[0], self.by_id)} (steps: {_listed(self.by_id)})")
                return f"unknown step `{rest[0]}` in `{name}`{hint}"
            if step is not None and not self.graph.needs(step.id, target.id):
                return (f"`{name}` reads step `{target.id}`, which step `{step.id}` does not need "
                        f"(add it to `needs` so its result exists when this runs)")
            if len(rest) > 1 and rest[1] not in target.outputs():
                return (f"step `{rest[0]}` has no field `{rest[1]}` "
                        f"(it has: {', '.join(sorted(target.outputs()))})")
        return _private_name(ref)


#: step outputs that hold JSON as received: a key starting with `_` (``_id``) is read as a key
_FREE_FORM_OUTPUTS = ("json",)


def _private_name(ref: tuple[str, ...]) -> str | None:
    """A name starting with `_` read from a value that is not a mapping: the sandbox refuses it at every render.

    The names an SOP declares (inputs, form fields) and keys inside free-form mappings (``trigger``,
    an http step's ``json``) are looked up as keys and may start with `_`.
    """
    root, rest = ref[0], ref[1:]
    if root == "trigger":
        return None
    declared = {"inputs": 1, "config": 1, "run": 1, "steps": 2}.get(root, 0)
    if root == "steps" and len(rest) > 1 and rest[1] in _FREE_FORM_OUTPUTS:
        return None
    for part in rest[declared:]:
        if part.startswith("_"):
            return (f"`{'.'.join(ref)}`: `{part}` cannot be read: the sandbox refuses names starting with `_` "
                    "on a value, so the template would fail whenever it is rendered")
    return None


def in_library(file: str) -> bool:
    """Whether a file is an SOP of a library folder (``sops/``), where each file is named after its SOP's id."""
    return "/sops/" in f"/{file}"


def misnamed(sop_id: str, file: str) -> str | None:
    """The name of a YAML file that is not ``<sop_id>.yaml`` (its stem), or None when it is."""
    stem = file.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return stem if file.endswith((".yaml", ".yml")) and stem != sop_id else None


def check_sop(sop: Sop, doc: Document, site: Site | None) -> list[SpecError]:
    """All cross-checks of one SOP (``site`` None: skip the checks that need config)."""
    errors: list[SpecError] = []
    index = _step_index(sop)
    steps_path = ("steps",)

    if in_library(doc.file) and (stem := misnamed(sop.id, doc.file)) is not None:
        errors.append(doc.error(("id",), f"the id `{sop.id}` must match the file name `{stem}`"))

    seen: dict[str, int] = {}
    for i, step in enumerate(sop.steps):
        if step.id in seen:
            first = doc.where((*steps_path, seen[step.id], "id"))[0]
            errors.append(doc.error((*steps_path, i, "id"),
                                    f"duplicate step id `{step.id}`: steps[{seen[step.id]}] (line {first}) has it too; "
                                    "rename one of them (this SOP's other checks run once each step has an id of its "
                                    "own)"))
        else:
            seen[step.id] = i
    if len(seen) < len(sop.steps):  # every reference to the id is ambiguous: what follows would be its echoes
        return errors  # ("step `investigate` needs itself", "has no field `cause`": one mistake, six errors)

    def ref_step(target: str, path: tuple, what: str, self_id: str) -> bool:
        if target == self_id:
            errors.append(doc.error(path, f"step `{self_id}` {what} itself (a step cannot depend on itself)"))
            return False
        if target not in index:
            errors.append(doc.error(path, f"{what} unknown step `{target}`{_near(target, index)} (steps: {_listed(index)})"))
            return False
        return True

    for i, step in enumerate(sop.steps):
        base = (*steps_path, i)
        for j, need in enumerate(step.needs):
            ref_step(need, (*base, "needs", j), "needs", step.id)
        if step.fallback:
            ref_step(step.fallback, (*base, "on_timeout"), "falls back to", step.id)
        for branch in step.branches():
            for j, target in enumerate(branch.steps):
                ref_step(target, (*base, branch.field, j), f"branches ({branch.field}) to", step.id)

    cycle = find_cycle(sop)
    if cycle and len(cycle) > 2:  # a step that needs itself is reported above
        errors.append(doc.error((*steps_path, index[cycle[0]], "needs"),
                                f"steps form a cycle: {_arrows(cycle)}"))
    elif not cycle:
        errors.extend(_fallbacks_after_their_step(sop, doc, index, steps_path))

    for name in sop.inputs:
        if not _IDENT.match(name):
            errors.append(doc.error(("inputs", name), f"input name `{name}` must be an identifier (letters, digits, _)", True))
    for i, step in enumerate(sop.steps):
        if isinstance(step, HumanStep):
            for name in step.form:
                if not _IDENT.match(name):
                    errors.append(doc.error((*steps_path, i, "form", name),
                                            f"form field `{name}` must be an identifier (letters, digits, _)", True))

    if site is not None:
        errors.extend(_check_names(sop, doc, site))
    errors.extend(_check_ladders(sop, doc))
    if not cycle:  # the longest chain of `needs` has no end in a cycle
        errors.extend(_check_deadline(sop, doc))
    errors.extend(_check_templates(sop, doc, site))
    errors.extend(check_latent(sop, doc, site))
    if not cycle:
        errors.extend(_check_rework(sop, doc, index))
    if site is not None and sop.cadence is not None:
        errors.extend(_check_cadence_targets(sop, doc, site))
    if site is not None:
        errors.extend(_check_calendars(sop, doc, site))
    return errors


def _check_calendars(sop: Sop, doc: Document, site: Site) -> list[SpecError]:
    """``calendar:`` of the SOP and of its steps names a calendar of config (or ``wall``)."""
    from flows.language.calendar import WALL

    known = ", ".join(sorted(site.calendars)) or "none: add config/calendars.yaml"
    places = [(("calendar",), sop.calendar)] + [(("steps", i, "calendar"), s.calendar) for i, s in enumerate(sop.steps)]
    return [doc.error(path, f"unknown calendar `{name}` (calendars in config: {known}; `{WALL}` is wall time)")
            for path, name in places if name is not None and name != WALL and name not in site.calendars]


def _check_cadence_targets(sop: Sop, doc: Document, site: Site) -> list[SpecError]:
    """A cadence names `owner`, `lead`, or roles and people of config."""
    from flows.language.cadence import CADENCE_WORDS

    errors: list[SpecError] = []
    for field in ("notify", "escalate", "share"):
        for j, name in enumerate(getattr(sop.cadence, field) or ()):
            channel = field == "share" and name in site.channels  # an update may go to the incident room
            if name not in CADENCE_WORDS and name not in site.roles and name not in site.people and not channel:
                errors.append(doc.error(("cadence", field, j), f"cadence {field}: `{name}` is neither owner, lead, "
                                        f"a role{', a channel' if field == 'share' else ''} nor a person in config"))
    return errors


def _check_rework(sop: Sop, doc: Document, index: dict[str, int]) -> list[SpecError]:
    """``on_reject`` names an earlier step, and the loop it makes holds only steps people or the engine do."""
    from flows.language.steps.human import rework_loop, upstream

    errors: list[SpecError] = []
    for step in sop.steps:
        if not isinstance(step, HumanStep) or step.on_reject is None:
            continue
        path = ("steps", index[step.id], "on_reject")
        if step.on_reject not in index:
            near = _near(step.on_reject, index)
            errors.append(doc.error(path, f"on_reject names unknown step `{step.on_reject}`{near} (steps: {_listed(index)})"))
        elif step.on_reject not in upstream(sop, step.id):
            errors.append(doc.error(path, f"on_reject must name an earlier step that `{step.id}` waits on "
                                          f"(through needs); `{step.on_reject}` is not one"))
        else:
            automated = [s for s in rework_loop(sop, step) if sop.step(s).kind not in ("human", "wait", "check")]
            if automated:
                errors.append(doc.error(path, f"a rework loop from `{step.id}` back to `{step.on_reject}` would "
                                              f"run automated step(s) again ({', '.join(automated)}): not supported; "
                                              "loop over people's steps only"))
    return errors


def _check_names(sop: Sop, doc: Document, site: Site) -> list[SpecError]:
    errors: list[SpecError] = []
    roles, people = ", ".join(site.roles) or "none", ", ".join(site.people) or "none"
    if sop.owner not in site.roles:
        errors.append(doc.error(("owner",), f"unknown role `{sop.owner}`{site.near(sop.owner, ('roles',))} "
                                            f"(roles in config: {roles})"))

    def target_ok(target: str, path: tuple, ladder: bool) -> None:
        name = target.split(":", 1)[1] if ":" in target else target
        kind = target.split(":", 1)[0] if ":" in target else None
        if ladder and kind is None and name in LADDER_WORDS:
            return
        if kind is not None and kind not in ("role", "person", "channel"):
            errors.append(doc.error(path, f"unknown target kind `{kind}` (expected role:, person: or channel:)"))
            return
        found = site.kind_of(name)
        if found is None or (kind is not None and found != kind):
            words = f"{', '.join(LADDER_WORDS)}, " if ladder else ""
            errors.append(doc.error(path, f"unknown notify target `{target}`{site.near(name)} (expected {words}a role, "
                                          "a person or a channel in config)"))

    def ladder_ok(ladder: list, path: tuple) -> None:
        for i, entry in enumerate(ladder):
            for j, target in enumerate(entry.notify):
                target_ok(target, (*path, i, "notify", j), ladder=True)

    ladder_ok(sop.escalation, ("escalation",))
    for i, step in enumerate(sop.steps):
        base = ("steps", i)
        if isinstance(step, HumanStep):
            if step.assignee not in site.roles and step.assignee not in site.people:
                errors.append(doc.error((*base, "assignee"),
                                        f"unknown assignee `{step.assignee}`{site.near(step.assignee, ('roles', 'people'))} "
                                        f"(expected a role: {roles}; or a person: {people})"))
            if step.approval:
                for j, role in enumerate(step.approval.approvers):
                    if role not in site.roles:
                        errors.append(doc.error((*base, "approval", "approvers", j),
                                                f"unknown role `{role}`{site.near(role, ('roles',))} (roles in config: {roles})"))
        if step.escalation is not None:
            ladder_ok(step.escalation, (*base, "escalation"))
        for target, path in KINDS[step.kind].targets(step):
            target_ok(target, (*base, *path), ladder=False)
    return errors


def _check_ladders(sop: Sop, doc: Document) -> list[SpecError]:
    errors: list[SpecError] = []
    for i, step in enumerate(sop.steps):
        if not isinstance(step, HumanStep) or step.due is not None:
            continue
        ladder = sop.ladder_for(step)
        if any(entry.percent is not None for entry in ladder):
            where = "its own" if step.escalation is not None else "the SOP's"
            errors.append(doc.error(("steps", i), f"step `{step.id}` has no `due`, but {where} escalation ladder "
                                                  "has % entries (a % of what?): give the step a `due`"))
    return errors


def _check_deadline(sop: Sop, doc: Document) -> list[SpecError]:
    """A step's due must fit in the run deadline along its longest chain of ``needs``."""
    if sop.deadline is None:
        return []
    by_id = {s.id: s for s in sop.steps}
    graph = StepGraph(sop)
    # each step after its dependencies (no recursion along a long chain): its earliest end and, of the
    # longest chain to it, how many steps take time and the first and last three of them (enough to
    # say why, in constant time per step)
    finish: dict[str, tuple[timedelta, int, tuple[str, ...], tuple[str, ...]]] = {}
    for step_id in graph.topological():
        deps = [finish[d] for d in graph.deps[step_id] if d in finish]
        before, count, first, last = max(deps, key=lambda d: d[0]) if deps else (timedelta(0), 0, (), ())
        if by_id[step_id].span():
            count, first, last = count + 1, first if len(first) == 3 else (*first, step_id), (*last, step_id)[-3:]
        finish[step_id] = (before + by_id[step_id].span(), count, first, last)

    errors = []
    for i, step in enumerate(sop.steps):
        total, count, first, last = finish[step.id]
        if step.span() and total > sop.deadline:
            shown = [*first, *last[max(0, 3 - (count - 3)):]] if count <= 6 else [*first, "…", *last]
            parts = [c if c == "…" else f"{c} {format_duration(by_id[c].span())}" for c in shown]
            if count > 6:
                parts[3] = f"… {count - 6} more …"
            errors.append(doc.error(("steps", i, step.span_field),
                                    f"step `{step.id}` is due {format_duration(total)} after the run starts "
                                    f"({' + '.join(parts)}), past the run deadline of {format_duration(sop.deadline)}"))
    return errors


def _check_templates(sop: Sop, doc: Document, site: Site | None) -> list[SpecError]:
    errors: list[SpecError] = []
    checker = _TemplateChecker(sop, doc, site, errors)
    checker.check(sop.dedup, ("dedup",), allowed=("inputs", "trigger", "config"))
    for i, trigger in enumerate(sop.triggers):
        for name, value in trigger.inputs.items():
            checker.check(value, ("triggers", i, "inputs", name), allowed=("trigger", "config"))
            if name not in sop.inputs:
                errors.append(doc.error(("triggers", i, "inputs", name),
                                        f"unknown input `{name}` (inputs: {_listed(sop.inputs) or 'none declared'})", True))
    for i, step in enumerate(sop.steps):
        base = ("steps", i)
        checker.check(step.when, (*base, "when"), expression=True, step=step)
        checker.check(step.description, (*base, "description"), step=step)
        checker.check(step.title, (*base, "title"), step=step)
        for template in KINDS[step.kind].templates(step):
            checker.check(template.value, (*base, *template.path), expression=template.expression, step=step)
    ended = (*RUN_FIELDS, *FINISHED_RUN_FIELDS)  # a follow-up reads the run as it ended, any of its steps
    for i, follow_up in enumerate(sop.follow_ups):
        checker.check(follow_up.when, ("follow_ups", i, "when"), expression=True, run_fields=ended)
        for name, value in follow_up.inputs.items():
            checker.check(value, ("follow_ups", i, "inputs", name), run_fields=ended)
    return errors


def _is_apprise_url(template: str, env: Mapping[str, str] | None) -> bool:
    """Whether a contact has the Apprise form ``scheme://…`` once its ``${…}`` are expanded.

    A variable that is not set stays a placeholder (it is reported on its own); when the
    scheme itself would come from one, the form cannot be judged and passes.
    """
    env = os.environ if env is None else env
    unset = {var: "${" + var + "}" for var, has_default in env_names(template) if not has_default and not env.get(var)}
    url = expand_env(template, {**env, **unset}) if unset else expand_env(template, env)
    return url.startswith("${") or bool(_APPRISE_URL.match(url))


def _expanded(template: str) -> str:
    # the value may be a secret: name the variables it came from, never the value
    names = [f"${{{var}}}" for var, _ in env_names(template)]
    return f" after expanding {', '.join(names)}" if names else ""


def check_site(site: Site, where: dict[tuple, Document], env: dict[str, str] | None = None) -> list[SpecError]:
    """Cross-checks of the merged config; ``where`` maps (table, name) to the defining document."""
    errors: list[SpecError] = []

    def err(table: str, name: str, sub: tuple, message: str) -> None:
        doc = where[(table, name)]
        errors.append(doc.error((table, name, *sub), message))

    people = ", ".join(site.people) or "none"
    for name, role in site.roles.items():
        for j, member in enumerate(role.members):
            if member not in site.people:
                err("roles", name, ("members", j), f"role `{name}`: unknown person `{member}`"
                                                   f"{site.near(member, ('people',))} (people in config: {people})")
        if role.lead is not None and role.lead not in site.roles:
            err("roles", name, ("lead",), f"role `{name}`: lead `{role.lead}` is not a role in config")
        if role.lead == name:
            err("roles", name, ("lead",), f"role `{name}` cannot be its own lead")
    for table in ("people", "roles", "channels"):
        for name in getattr(site, table):
            others = [t for t in ("people", "roles", "channels") if t != table and name in getattr(site, t)]
            if others and table == "people":
                err(table, name, (), f"`{name}` is both a person and a {others[0][:-1] if others[0] != 'people' else 'person'}: "
                                     "names must be unique across people, roles and channels")
    def one_persons(field: str, values: Any, why: str) -> None:
        """Each value (``values(person)``: its path, its key as compared, how it is shown) is one person's: a
        second person with it is refused, naming where the first has it."""
        owners: dict[str, str] = {}
        for name, person in site.people.items():
            for path, key, shown in values(person):
                if owners.setdefault(key, name) != name:
                    first = where[("people", owners[key])]
                    err("people", name, path, f"{shown} is already {owners[key]}'s "
                        f"({first.file}:{first.where(('people', owners[key], field), True)[0]}): {why}")

    # an OS account: the terminal acts as its person (docs/people.md); an e-mail: sign-in and single sign-on find
    # the person by it
    one_persons("os_users", lambda person: [(("os_users", i), account, f"OS account `{account}`")
                                            for i, account in enumerate(person.os_users)], "an account is one person's")
    one_persons("email", lambda person: [(("email",), person.email.lower(), f"e-mail `{person.email}`")]
                if person.email else [], "sign-in and single sign-on find a person by it, so it must be one person's")
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    for name, person in site.people.items():
        try:
            ZoneInfo(person.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
            err("people", name, ("timezone",), f"unknown time zone `{person.timezone}` (expected an IANA name such as Asia/Shanghai)")
        if not person.contacts:
            err("people", name, (), f"person `{name}` has no contacts: nobody could reach them")
        for j, url in enumerate(person.contacts):
            for var in missing_env(url, env):
                err("people", name, ("contacts", j),
                    f"person `{name}`: environment variable `{var}` {unset_reason(var, env)} "
                    f"(write ${{{var}:-default}} for a fallback)")
            if not _is_apprise_url(url, env):
                err("people", name, ("contacts", j),
                    f"person `{name}`: contacts[{j}] is not an Apprise URL{_expanded(url)} (expected scheme://…, "
                    f"such as ntfy://ntfy.sh/{name}, mailto://user:password@example.com or inbox://{name})")
    for name, channel in site.channels.items():
        for j, url in enumerate(channel.urls):
            for var in missing_env(url, env):
                err("channels", name, ("urls", j),
                    f"channel `{name}`: environment variable `{var}` {unset_reason(var, env)}")
            if not _is_apprise_url(url, env):
                err("channels", name, ("urls", j), f"channel `{name}`: urls[{j}] is not an Apprise URL{_expanded(url)} "
                                                   f"(expected scheme://…, such as json://example.com/hook or inbox://{name})")
    for name, value in site.vars.items():
        if isinstance(value, str):
            for var in missing_env(value, env):
                err("vars", name, (), f"var `{name}`: environment variable `{var}` {unset_reason(var, env)}")
    for access in ("operators", "auditors"):
        for j, name in enumerate(getattr(site.settings.web, access)):
            if name not in site.people and name not in site.roles and ("settings", "web") in where:
                err("settings", "web", (access, j), f"settings.web.{access}: `{name}` is neither a person nor a role "
                                                    "in config")
    for sop_class, name in site.settings.class_calendars.items():
        if name not in site.calendars and ("settings", "web") in where:  # the document that holds settings
            errors.append(where[("settings", "web")].error(
                ("settings", "class_calendars", sop_class),
                f"settings.class_calendars.{sop_class}: unknown calendar `{name}` "
                f"(calendars in config: {', '.join(sorted(site.calendars)) or 'none'})"))
    for name, token in site.tokens.items():
        if token.person is not None and token.person not in site.people:
            err("tokens", name, ("person",), f"token `{name}`: unknown person `{token.person}`")
        if not env_names("${" + token.env + "}"):
            err("tokens", name, ("env",), f"token `{name}`: `{token.env}` is not an environment variable name")
        if token.hmac is not None and not env_names("${" + token.hmac.env + "}"):
            err("tokens", name, ("hmac", "env"), f"token `{name}`: `{token.hmac.env}` is not an environment variable name")
    return errors
