"""The built-in local inbox: ``inbox://NAME`` appends each message to ``<inbox dir>/NAME.jsonl``.

A fresh clone runs with no secret because every contact in ``config/`` defaults to the
inbox. It is an Apprise custom notification (``apprise.decorators.notify``), so it goes
through exactly the same delivery path, results and retries as a real channel.

Each file is its owner's alone (0600; a new folder 0700): its messages hold live step and sign-in links.
One JSON object per line: ``{"at", "title", "body", "type", "recipient"}`` (``at`` is the
UTC instant it was written). The folder is, first found: the URL's ``?dir=`` option, the
``SOP_INBOX_DIR`` environment variable, the ``inbox_dir`` passed by the caller (the site's
``settings.inbox_dir``), ``var/inbox``; a relative folder is under ``$SOP_HOME`` (else the
current folder).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apprise.decorators import notify

from flows.language.library import project_root

SCHEMA = "inbox"
ENV_VAR = "SOP_INBOX_DIR"
DEFAULT_DIR = "var/inbox"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def inbox_dir(configured: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The inbox folder: ``$SOP_INBOX_DIR``, else ``configured``, else ``var/inbox``; relative to the project."""
    env = os.environ if env is None else env
    chosen = Path(env.get(ENV_VAR) or configured or DEFAULT_DIR)
    return chosen if chosen.is_absolute() else project_root() / chosen


def inbox_file(name: str, directory: str | Path | None = None) -> Path:
    """The file holding ``name``'s inbox. Raises ValueError for a name that is not a plain file name."""
    if not _NAME.match(name or ""):
        raise ValueError(
            f"inbox name {name!r} must start with a letter or digit and hold only letters, "
            "digits, '.', '_' and '-' (e.g. inbox://li-wei)"
        )
    folder = Path(directory) if directory is not None else inbox_dir()
    return folder / f"{name}.jsonl"


def read_inbox(name: str, directory: str | Path | None = None) -> list[dict[str, Any]]:
    """Every message in ``name``'s inbox, oldest first (an empty list when there is none)."""
    path = inbox_file(name, directory)
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def append(name: str, title: str, body: str, notify_type: str, directory: str | Path | None = None) -> Path:
    """Append one message to ``name``'s inbox (thread-safe; one ``write`` per line) and return the file."""
    path = inbox_file(name, directory)
    record = {
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "title": title,
        "body": body,
        "type": notify_type,
        "recipient": name,
    }
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with _lock(path):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # the owner's alone (0600), like var/secret: its messages hold live step and sign-in links
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with open(fd, "a", encoding="utf-8") as handle:  # closes fd whatever happens below
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)  # one an older release made 0644
            handle.write(line)
    return path


@notify(on=SCHEMA, name="Local inbox (sops-as-code)")
def _inbox_plugin(body: str, title: str, notify_type: str, *args: Any, meta: Mapping[str, Any], **kwargs: Any) -> bool:
    """Apprise calls this for ``inbox://NAME``; an exception becomes a failed attempt with its text."""
    options = meta.get("qsd") or {}
    append(str(meta.get("host") or ""), title, body, str(notify_type), options.get("dir") or None)
    return True


def _lock(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.Lock())
