"""The SOP library and the site config, loaded and validated together.

``load_library`` is what the engine, the API and the CLI call: it returns only validated
objects, or raises :class:`SpecInvalid` with every error located.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flows.checks import check_site, check_sop
from flows.config import Site
from flows.loader import Document, SpecError, SpecInvalid, model_errors, read_document, yaml_files
from flows.spec import Sop

CONFIG_KEYS = frozenset({"people", "roles", "channels", "vars", "settings", "tokens"})
MERGED_TABLES = ("people", "roles", "channels", "vars", "tokens")


def project_root() -> Path:
    """The folder holding ``sops/`` and ``config/``: ``$SOP_HOME``, else the current folder."""
    return Path(os.environ.get("SOP_HOME") or Path.cwd())


@dataclass
class LoadedSop:
    """A validated SOP with the exact text it came from (the ledger pins text and hash)."""

    sop: Sop
    path: Path
    text: str

    @property
    def text_hash(self) -> str:
        """SHA-256 of the file's exact text."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass
class Library:
    """Every SOP of ``sops/`` plus the site config, all validated."""

    site: Site
    sops: dict[str, LoadedSop] = field(default_factory=dict)
    root: Path = field(default_factory=project_root)

    def get(self, sop_id: str) -> LoadedSop:
        """The SOP with this id; KeyError with the known ids when there is none."""
        try:
            return self.sops[sop_id]
        except KeyError:
            raise KeyError(f"unknown SOP `{sop_id}` (known: {', '.join(sorted(self.sops)) or 'none'})") from None


def is_config_doc(doc: Document) -> bool:
    """A YAML document is config when all its top-level keys are config sections."""
    return isinstance(doc.data, dict) and bool(doc.data) and set(doc.data) <= CONFIG_KEYS


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
            continue
        for table in MERGED_TABLES:
            for name, value in getattr(part, table).items():
                if (table, name) in where:
                    first = where[(table, name)]
                    errors.append(doc.error((table, name), f"`{name}` is defined twice in {table} "
                                                           f"(also in {first.file}:{first.where((table, name), True)[0]})", True))
                    continue
                where[(table, name)] = doc
                merged[table][name] = value
        if "settings" in doc.data:
            if settings_from is not None:
                errors.append(doc.error(("settings",), f"settings are defined twice (also in {settings_from.file})", True))
            settings_from = doc
            merged["settings"] = part.settings
    if errors:
        return None, errors
    site = Site.model_construct(**merged) if "settings" in merged else Site.model_construct(**merged, settings=Site().settings)
    errors.extend(check_site(site, where, env))
    return (site if not errors else None), errors


def load_sop(doc: Document, site: Site | None) -> tuple[Sop | None, list[SpecError]]:
    """Validate one SOP document and cross-check it against the site config."""
    try:
        sop = Sop.model_validate(doc.data)
    except ValidationError as exc:
        return None, model_errors(doc, exc, Sop)
    errors = check_sop(sop, doc, site)
    return (sop if not errors else None), errors


def validate_paths(paths: list[Path], config_dir: Path, env: dict[str, str] | None = None) -> tuple[list[SpecError], int, int]:
    """Validate SOP and config files (folders expanded). Returns (errors, sops checked, configs checked).

    A folder whose files are all config is one site (merged); a config file given on its own
    or among SOPs is validated as a site of its own. SOP files are checked against the site
    in ``config_dir`` (or the one among ``paths``).
    """
    errors: list[SpecError] = []
    sop_docs: list[Document] = []
    config_groups: list[list[Document]] = []
    for path in paths:
        if not path.exists():
            errors.append(SpecError(str(path), 1, 1, "", "no such file or folder"))
            continue
        docs = []
        for file in yaml_files([path]):
            doc, parse_errors = read_document(file)
            errors.extend(parse_errors)
            if doc is not None and not parse_errors:
                docs.append(doc)
        configs = [d for d in docs if is_config_doc(d)]
        sop_docs.extend(d for d in docs if not is_config_doc(d))
        if path.is_dir() and configs and len(configs) == len(docs):
            config_groups.append(configs)
        else:
            config_groups.extend([d] for d in configs)
    site: Site | None = None
    for group in config_groups:
        group_site, group_errors = load_site(group, env)
        errors.extend(group_errors)
        if len(group) > 1 or site is None:
            site = group_site or site
    if sop_docs and not any(len(g) > 1 for g in config_groups):
        site = _site_from(config_dir, env, errors) or site
    for doc in sop_docs:
        errors.extend(load_sop(doc, site)[1])
    return errors, len(sop_docs), sum(len(g) for g in config_groups)


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


def load_library(root: Path | None = None, env: dict[str, str] | None = None) -> Library:
    """Load ``config/`` and ``sops/`` under ``root``; raise SpecInvalid listing every error."""
    root = root or project_root()
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
    for file in yaml_files([root / "sops"]) if (root / "sops").is_dir() else []:
        doc, parse_errors = read_document(file)
        errors.extend(parse_errors)
        if doc is None:
            continue
        sop, sop_errors = load_sop(doc, site)
        errors.extend(sop_errors)
        if sop is not None:
            if sop.id in library.sops:
                errors.append(doc.error(("id",), f"SOP id `{sop.id}` is also used by {library.sops[sop.id].path}"))
            library.sops[sop.id] = LoadedSop(sop=sop, path=file, text=file.read_text(encoding="utf-8"))
    if errors:
        raise SpecInvalid(errors)
    return library
