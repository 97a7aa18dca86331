"""The SOP library and the site config, loaded and validated together.

``load_library`` is what the engine, the API and the CLI call: it returns only validated
objects, or raises :class:`SpecInvalid` with every error located. The site's message
templates (``config/templates/``) belong to ``notifications``, which sits above the language:
``flows.engine.build.runnable_library`` checks them too, for every process that runs SOPs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flows.language.advisories import sop_advisories
from flows.language.config import Site
from flows.language.crosscheck import check_site, check_sop, in_library, misnamed
from flows.language.fields import PINNED
from flows.language.followups import check_follow_ups
from flows.language.loader import Document, SpecError, SpecInvalid, model_errors, parse_yaml, read_document, yaml_files
from flows.language.oncall import check_rotations
from flows.language.samples import STAND_IN
from flows.language.spec import Sop
from flows.language.steps.check import CheckStep

CONFIG_KEYS = frozenset({"people", "roles", "channels", "vars", "settings", "tokens", "calendars"})
MERGED_TABLES = ("people", "roles", "channels", "vars", "tokens", "calendars")


def project_root() -> Path:
    """The folder holding ``sops/`` and ``config/``: ``$SOP_HOME``, else the current folder."""
    return Path(os.environ.get("SOP_HOME") or Path.cwd())


@dataclass
class LoadedSop:
    """A validated SOP with the exact text it came from (the ledger pins text and hash): the text that was parsed
    and validated, read once (a file saved again meanwhile is not what a run would replay)."""

    sop: Sop
    path: Path
    text: str

    @cached_property
    def text_hash(self) -> str:
        """SHA-256 of the file's exact text (computed once: the text does not change)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass
class Library:
    """Every SOP of ``sops/`` plus the site config, all validated."""

    site: Site
    sops: dict[str, LoadedSop] = field(default_factory=dict)
    root: Path = field(default_factory=project_root)
    #: loaded ``lenient``: the errors of the SOP files left out (each file's SOP is not in ``sops``)
    left_out: list[SpecError] = field(default_factory=list)

    def get(self, sop_id: str) -> LoadedSop:
        """The SOP with this id; KeyError with the known ids when there is none."""
        try:
            return self.sops[sop_id]
        except KeyError:
            raise KeyError(f"unknown SOP `{sop_id}` (known: {', '.join(sorted(self.sops)) or 'none'})") from None


def is_config_doc(doc: Document) -> bool:
    """A YAML document is config when all its top-level keys are config sections."""
    return isinstance(doc.data, dict) and bool(doc.data) and set(doc.data) <= CONFIG_KEYS


def _claim(doc: Document, where: dict[tuple, Document],
           tables: dict[str, dict[Any, Any]]) -> tuple[list[SpecError], dict[str, dict[Any, Any]]]:
    """The names ``doc`` defines (table → name → value), each claimed for it in ``where``: an error for each one an
    earlier file defines (naming that file and line), and the new ones."""
    errors: list[SpecError] = []
    new: dict[str, dict[Any, Any]] = {}
    for table, names in tables.items():
        for name, value in names.items():
            if (table, name) in where:
                first = where[(table, name)]
                errors.append(doc.error((table, name), f"`{name}` is defined twice in {table} "
                                                       f"(also in {first.file}:{first.where((table, name), True)[0]})", True))
                continue
            where[(table, name)] = doc
            new.setdefault(table, {})[name] = value
    return errors, new


def load_site(docs: list[Document], env: dict[str, str] | None = None) -> tuple[Site | None, list[SpecError]]:
    """Validate config documents one by one (errors stay in their file), merge, cross-check."""
    errors: list[SpecError] = []
    merged: dict[str, Any] = {table: {} for table in MERGED_TABLES}
    where: dict[tuple, Document] = {}
    settings_from: Document | None = None
    for doc in docs:
        try:
            part = Site.model_validate(doc.data)
        except ValidationError as exc:
            errors.extend(model_errors(doc, exc, Site))
            # its names still count: one that another file defines too is said now, not once this error is mended
            errors.extend(_claim(doc, where, {table: names for table in MERGED_TABLES
                                              if isinstance(names := doc.data.get(table), dict)})[0])
            continue
        twice, new = _claim(doc, where, {table: getattr(part, table) for table in MERGED_TABLES})
        errors.extend(twice)
        for table, names in new.items():
            merged[table].update(names)
        if "settings" in doc.data:
            if settings_from is not None:
                first = f"{settings_from.file}:{settings_from.where(('settings',), True)[0]}"
                errors.append(doc.error(("settings",), f"settings are defined twice (also in {first}): a site has one "
                                                       "`settings`: keep them in one file", True))
            settings_from = doc
            where[("settings", "web")] = doc
            merged["settings"] = part.settings
    if errors:
        return None, errors
    site = Site.model_construct(**merged) if "settings" in merged else Site.model_construct(**merged, settings=Site().settings)
    errors.extend(check_site(site, where, env))
    errors.extend(check_rotations(site, where))
    return (site if not errors else None), errors


def load_sop(doc: Document, site: Site | None) -> tuple[Sop | None, list[SpecError]]:
    """Validate one SOP document and cross-check it against the site config."""
    try:
        sop = Sop.model_validate(doc.data)
    except ValidationError as exc:
        return None, model_errors(doc, exc, Sop) + _check_valid_parts(doc, exc, site)
    errors = check_sop(sop, doc, site)
    return (sop if not errors else None), errors


@lru_cache(maxsize=256)
def pinned_sop(text_hash: str, text: str) -> Sop:
    """The SOP a run was started with, parsed from its pinned text (validated at start)."""
    doc, errors = parse_yaml(text, f"<pinned {text_hash[:12]}>")
    if doc is None or errors:
        raise ValueError(f"the pinned SOP text {text_hash[:12]} no longer parses: {errors}")
    return Sop.model_validate(doc.data, context=PINNED)



class _StandIn(CheckStep):
    """Holds the place of a step that failed validation: keeps its id and edges, claims every field."""

    def outputs(self) -> set[str]:
        return _EveryName()


class _EveryName(set):
    def __contains__(self, name: object) -> bool:
        return True


_STAND_INS: dict[str, Any] = {"id": "sop", "title": "stand-in", "class": "routine", "owner": ""}


def _check_valid_parts(doc: Document, exc: ValidationError, site: Site | None) -> list[SpecError]:
    """Cross-check the parts of an SOP that did validate, so one run lists every kind of error.

    Broken parts are left out or stood in for: a broken step by an inert step with the same id
    and edges (so references to it stay valid), a broken input by a string input of that name.
    When that is not possible (no usable step id, ``steps`` itself broken…) nothing is checked:
    a missed error is better than a false one.
    """
    data = dict(doc.data)
    broken_steps: set[int] = set()
    unsure: set[str] = set()
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        head, item = loc[0], loc[1] if len(loc) > 1 else None
        if head == "steps" and isinstance(item, int):
            broken_steps.add(item)
        elif head == "inputs" and isinstance(item, str) and isinstance(data.get("inputs"), dict):
            data["inputs"] = {**data["inputs"], item: {"type": "string", "required": False,  # no trigger owes it a value
                                                         "description": STAND_IN}}  # nor is its type known
        elif head == "triggers" and isinstance(item, int):
            data["triggers"] = [{"event": "stand-in"} if i == item else t for i, t in enumerate(data["triggers"])]
            unsure.add(f"triggers[{item}]")  # the stand-in gives no inputs: what it would lack is not the author's
        elif head == "escalation" and isinstance(item, int):
            data["escalation"] = [{"at": "1h", "notify": ["owner"]} if i == item else e
                                  for i, e in enumerate(data["escalation"])]
        elif head in _STAND_INS:
            data[head] = _STAND_INS[head]
            unsure.add(str(head))
        elif head in ("steps", "inputs"):
            return []  # no steps or no input names to check references against
        else:
            data.pop(str(head), None)  # an unknown key, or an optional field that is wrong as a whole
    stand_ins: dict[int, dict[str, Any]] = {}
    for i in broken_steps:
        raw = data["steps"][i]
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            return []
        if raw.get("kind") != "check" and ("then" in raw or "else" in raw):
            return []  # branch edges of a step whose kind is wrong: we cannot tell whether they hold
        edges = {key: raw.get(key, []) for key in ("needs", "then", "else") if key in raw or key == "needs"}
        edges = {key: [v] if isinstance(v, str) else v for key, v in edges.items()}
        if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in edges.values()):
            return []
        stand_ins[i] = {"id": raw["id"], "check": "true", **edges}
    try:
        sop = Sop.model_validate({**data, "steps": [{"kind": "check", **stand_ins[i]} if i in stand_ins else step
                                                    for i, step in enumerate(data["steps"])]})
    except ValidationError:
        return []
    for i, fields in stand_ins.items():
        sop.steps[i] = _StandIn.model_validate(fields)
    return [e for e in check_sop(sop, doc, site)
            if e.path.split(".")[0].split("[")[0] not in unsure and e.path.split(".")[0] not in unsure]


def validate_paths(paths: list[Path], config_dir: Path, env: dict[str, str] | None = None, *,
                   warnings: list[SpecError] | None = None) -> tuple[list[SpecError], int, int]:
    """Validate SOP and config files (folders expanded). Returns (errors, sops checked, configs checked).

    Errors come file by file, each file's by line and column. ``warnings``, when given, receives what
    is not an error but the author should know, located like an error: a check that could not be
    made (the id of an SOP file outside ``sops/`` against its file name), and flows.language.advisories'.

    A folder whose files are all config is one site (merged), at any depth of a folder given;
    a config file given on its own or among SOPs is validated as a site of its own, unless it
    is a file of ``config_dir``: that is checked with the rest of its site. SOP files are
    checked against the site of a config folder given by name or of ``config_dir``.
    """
    errors: list[SpecError] = []
    sop_docs: list[Document] = []
    config_groups: list[list[Document]] = []
    named_sites: set[Path] = set()  # config folders given by name: SOPs are checked against them
    for path in paths:
        if not path.exists():
            errors.append(SpecError(str(path), 1, 1, "", "no such file or folder"))
            continue
        by_folder: dict[Path, list[Document]] = {}
        for file in yaml_files([path]):
            doc, parse_errors = read_document(file)
            errors.extend(parse_errors)
            if doc is not None and not parse_errors:
                by_folder.setdefault(file.parent, []).append(doc)
        for folder, docs in by_folder.items():
            configs = [d for d in docs if is_config_doc(d)]
            sop_docs.extend(d for d in docs if not is_config_doc(d))
            if path.is_dir() and configs and len(configs) == len(docs):
                config_groups.append(configs)
                if folder.resolve() == path.resolve():
                    named_sites.add(folder.resolve())
            else:
                config_groups.extend([d] for d in configs)
    config_groups = _with_whole_site(config_groups, config_dir, errors)
    if config_dir.is_dir():
        named_sites.add(config_dir.resolve())
    site: Site | None = None
    named: list[Site | None] = []
    for group in config_groups:
        group_site, group_errors = load_site(group, env)
        errors.extend(group_errors)
        if Path(group[0].file).resolve().parent in named_sites:
            named.append(group_site)
        site = site or group_site
    if sop_docs:
        # a named site with errors leaves names unchecked: its own errors are listed already
        site = named[0] if named else _site_from(config_dir, env, errors) or site
    checked: dict[str, Sop] = {}
    where: dict[str, Document] = {}
    for doc in sop_docs:
        errors.extend(_checked(doc, site))
        sop = _parsed(doc)
        if warnings is not None and sop is not None:
            warnings.extend(sop_advisories(sop, doc))
        if warnings is not None and sop is not None and not in_library(doc.file) and (
                stem := misnamed(sop.id, doc.file)) is not None:
            warnings.append(doc.error(("id",), f"the id `{sop.id}` was not compared with the file name `{stem}`: "
                                               f"this file is outside sops/, where it must be saved as `{sop.id}.yaml`"))
        if sop is not None and sop.follow_ups and sop.id not in checked:
            checked[sop.id], where[sop.id] = sop, doc
    library = _library_docs(config_dir.parent / "sops") if sop_docs else []
    known = _known_sops([*sop_docs, *library])
    if checked:
        errors.extend(check_follow_ups(checked, where, known))
    errors.extend(_follow_ups_into(sop_docs, library, known))
    errors.extend(_ids_used_twice(sop_docs, library, config_dir.parent / "sops"))
    return _by_file_and_line(errors), len(sop_docs), sum(len(g) for g in config_groups)


def _parsed(doc: Document) -> Sop | None:
    """The SOP a document holds, by its model alone (no cross-checks), or None when it is none."""
    try:
        return Sop.model_validate(doc.data)
    except ValidationError:
        return None


def _library_docs(library: Path) -> list[Document]:
    """The documents of the library folder (``sops/``) that parse."""
    files = yaml_files([library]) if library.is_dir() else []
    return [d for f in files for d in [read_document(f)[0]] if d is not None]


def _follow_ups_into(given: list[Document], library: list[Document], known: dict[str, Sop | None]) -> list[SpecError]:
    """The follow-ups of the library's other SOPs that start an SOP given (as it is given: a draft of it stands in
    for the library's file), checked against it: a required input added to ``b`` breaks ``a``'s follow-up to ``b``,
    which ``sop validate b.yaml`` must say, in ``a``'s file."""
    given_files = {Path(doc.file).resolve() for doc in given}
    given_ids = {sop.id for doc in given if (sop := _parsed(doc)) is not None}
    errors: list[SpecError] = []
    for doc in library:
        sop = _parsed(doc) if Path(doc.file).resolve() not in given_files else None
        if sop is None or sop.id in given_ids:
            continue  # given itself (checked as given), or stood in for by a draft given
        into = {f"follow_ups[{i}]" for i, f in enumerate(sop.follow_ups) if f.start in given_ids}
        if into:
            errors.extend(e for e in check_follow_ups({sop.id: sop}, {sop.id: doc}, known)
                          if e.path.split(".")[0] in into)
    return errors


def _ids_used_twice(given: list[Document], library: list[Document], folder: Path) -> list[SpecError]:
    """A file of the library folder given whose SOP id an earlier file of that folder holds too (``sops/old/a.yaml``
    beside ``sops/a.yaml``): the library refuses to load then, and says it as :func:`load_library` does."""
    first: dict[str, Path] = {}
    for doc in library:
        if (sop := _parsed(doc)) is not None:
            first.setdefault(sop.id, Path(doc.file).resolve())
    errors: list[SpecError] = []
    for doc in given:
        path = Path(doc.file).resolve()
        sop = _parsed(doc) if folder.is_dir() and path.is_relative_to(folder.resolve()) else None
        if sop is not None and first.get(sop.id, path) != path:
            errors.append(doc.error(("id",), f"SOP id `{sop.id}` is also used by {first[sop.id]}"))
    return errors


def _known_sops(docs: list[Document]) -> dict[str, Sop | None]:
    """Every SOP a follow-up may name, the first document of each id winning (those given, then the library's);
    None for one whose file holds an id but does not validate (its own errors say why)."""
    known: dict[str, Sop | None] = {}
    for doc in docs:
        sop = _parsed(doc)
        if sop is not None:
            known.setdefault(sop.id, sop)
        elif isinstance(doc.data, dict) and isinstance(doc.data.get("id"), str):
            known.setdefault(doc.data["id"], None)
    return known


def _checked(doc: Document, site: Site | None) -> list[SpecError]:
    """``load_sop``'s errors; a check that breaks on this file is an error of the file, never a traceback.

    Every case known to break a check is fixed where it breaks (issue #16); this is the net
    under the ones nobody has found yet, so that the author still gets an answer and a place.
    """
    try:
        return load_sop(doc, site)[1]
    except Exception as exc:  # noqa: BLE001 - reported as an error of the file
        return [SpecError(doc.file, 1, 1, "", f"this file could not be checked ({type(exc).__name__}: {str(exc)[:200]}); "
                                               "please report it with the file")]


def _by_file_and_line(errors: list[SpecError]) -> list[SpecError]:
    """Each file's errors together (files in the order they were read), top to bottom."""
    order: dict[str, int] = {}
    for error in errors:
        order.setdefault(error.file, len(order))
    return sorted(errors, key=lambda e: (order[e.file], e.line, e.column))


def _with_whole_site(groups: list[list[Document]], config_dir: Path, errors: list[SpecError]) -> list[list[Document]]:
    """Replace single files of ``config_dir`` by the whole folder: alone, ``roles.yaml`` would
    name people that only ``people.yaml`` defines."""
    home = config_dir.resolve() if config_dir.is_dir() else None

    def at_home(group: list[Document]) -> bool:
        return len(group) == 1 and Path(group[0].file).resolve().parent == home

    if home is None or not any(at_home(g) for g in groups):
        return groups
    kept = [g for g in groups if not at_home(g)]
    if any({Path(d.file).resolve() for d in g} == {f.resolve() for f in yaml_files([config_dir])} for g in kept):
        return kept  # the folder itself was given too
    site_docs = []
    for file in yaml_files([config_dir]):
        doc, parse_errors = read_document(file)
        errors.extend(e for e in parse_errors if e not in errors)
        if doc is not None and not parse_errors and is_config_doc(doc):
            site_docs.append(doc)
    return [*kept, site_docs]


def _site_from(config_dir: Path, env: dict[str, str] | None, errors: list[SpecError]) -> Site | None:
    docs = []
    for file in yaml_files([config_dir]) if config_dir.is_dir() else []:
        doc, parse_errors = read_document(file)
        if doc is not None and not parse_errors:
            docs.append(doc)
    if not docs:
        return None
    site, site_errors = load_site(docs, env)
    if site is None:
        errors.append(SpecError(str(config_dir), 1, 1, "", "the site config does not validate; "
                                f"run `sop validate {config_dir}` (role and person names were not checked)"))
    return site


def load_library(root: Path | None = None, env: dict[str, str] | None = None, *,
                 only: str | None = None, lenient: bool = False) -> Library:
    """Load ``config/`` and ``sops/`` under ``root``; raise SpecInvalid listing every error.

    ``only``: the SOP with this id alone, read from ``sops/<id>.yaml`` when that file holds
    it (a flow-run process needs its own SOP and the site; the whole library otherwise).
    ``lenient``: an SOP file with errors is left out (its errors in ``Library.left_out``) rather
    than failing the whole library; ``config/`` must still be valid. For commands that act on
    runs already under way (each runs its pinned text): a colleague's half-edited file must not
    stop a responder reporting from the terminal.
    """
    root = root or project_root()
    if only is not None:
        single = _load_one(root, env, only)
        if single is not None:
            return single
    errors: list[SpecError] = []
    config_docs = []
    for file in yaml_files([root / "config"]) if (root / "config").is_dir() else []:
        doc, parse_errors = read_document(file)
        errors.extend(parse_errors)
        if doc is not None:
            config_docs.append(doc)
    site, site_errors = load_site(config_docs, env)
    errors.extend(site_errors)
    library = Library(site=site or Site(), root=root)
    where: dict[str, Document] = {}
    for file in yaml_files([root / "sops"]) if (root / "sops").is_dir() else []:
        doc, file_errors = read_document(file)
        sop = None
        if doc is not None:
            sop, sop_errors = load_sop(doc, site)
            file_errors = [*file_errors, *sop_errors]
            if sop is not None and sop.id in library.sops:
                file_errors.append(doc.error(("id",), f"SOP id `{sop.id}` is also used by {library.sops[sop.id].path}"))
        if file_errors and lenient and not errors:  # (config/ broken: nothing is lenient)
            library.left_out.extend(file_errors)
            continue
        errors.extend(file_errors)
        if sop is not None and doc is not None:
            library.sops[sop.id] = LoadedSop(sop=sop, path=file, text=doc.text)
            where[sop.id] = doc
    if not errors and not library.left_out:  # an SOP left out for its own errors would read as unknown here
        sops = {sop_id: loaded.sop for sop_id, loaded in library.sops.items()}
        errors.extend(check_follow_ups(sops, where))
    if errors:
        raise SpecInvalid(errors)
    return library


def _load_one(root: Path, env: dict[str, str] | None, sop_id: str) -> Library | None:
    """The site plus the one SOP in ``sops/<sop_id>.yaml``; None when that file does not hold it cleanly."""
    path = root / "sops" / f"{sop_id}.yaml"
    if not path.is_file():
        return None
    config_docs = []
    for file in yaml_files([root / "config"]) if (root / "config").is_dir() else []:
        doc, parse_errors = read_document(file)
        if doc is None or parse_errors:
            return None
        config_docs.append(doc)
    site, site_errors = load_site(config_docs, env)
    doc, parse_errors = read_document(path)
    if site is None or site_errors or doc is None or parse_errors:
        return None
    sop, sop_errors = load_sop(doc, site)
    if sop is None or sop_errors or sop.id != sop_id:
        return None
    library = Library(site=site, root=root)
    library.sops[sop.id] = LoadedSop(sop=sop, path=path, text=doc.text)
    todo = [f.start for f in sop.follow_ups]  # a run's end may start these: the process needs them too
    while todo:
        wanted = todo.pop(0)
        if wanted in library.sops:
            continue
        path = root / "sops" / f"{wanted}.yaml"
        doc, parse_errors = read_document(path) if path.is_file() else (None, [])
        found, found_errors = load_sop(doc, site) if doc is not None and not parse_errors else (None, [])
        if doc is None or found is None or found_errors or found.id != wanted:
            return None  # not where its name says: the whole library finds it (or says why not)
        library.sops[wanted] = LoadedSop(sop=found, path=path, text=doc.text)
        todo.extend(f.start for f in found.follow_ups)
    return library
