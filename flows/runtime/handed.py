"""The library ``sop serve`` runs, handed down to its child processes (the pager, the executors).

``sop serve`` loads ``sops/`` and ``config/`` once (and again at a reload); its timer service, nudger and API run
on that library in its own process. Its children used to read the files again when they started, so after a
reload that failed and went back to the library loaded before, or an executor restarted after a crash while
someone edited the files, a child ran newer files than the rest of the stack: a page went to a contact the
stack had not loaded, or a child crash-looped on a file half edited. Now the stack writes the library it runs
(pickled, 0600, in ``var/serve/``) before it starts a child, and names it in the child's environment
(:data:`ENV`); ``sop pager`` and ``sop executor`` run on it (:func:`handed_down`). A run executes its pinned SOP
text anyway; this is about the site (people, contacts, roles, channels) and which SOPs exist.
"""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flows.language.library import Library

#: the environment variable naming the file of the library handed down
ENV = "SOP_SERVE_LIBRARY"


class NotHandedDown(RuntimeError):
    """The file :data:`ENV` names cannot be used; the message says why."""


def hand_down(root: Path, library: Library) -> dict[str, str]:
    """Write ``library`` for the children to come (replacing what an earlier start wrote, atomically); returns
    what to add to a child's environment."""
    path = root / "var" / "serve" / "library.pickle"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)  # another account may not swap in an older file of ours, nor take it away
    partial = path.with_name(f".library.{os.getpid()}.tmp")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        pickle.dump(library, out, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(partial, path)
    return {ENV: str(path)}


def handed_down() -> Library | None:
    """The library the ``sop serve`` that started this process runs (None when no ``sop serve`` handed one down).

    Only a file this account owns and no one else may write is read (unpickling runs code):
    :class:`NotHandedDown` otherwise.
    """
    named = os.environ.get(ENV)
    if not named:
        return None
    try:
        fd = os.open(named, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise NotHandedDown(f"${ENV} names {named}, which cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise NotHandedDown(f"${ENV} names {named}, which another account owns or may write: not read")
        try:
            library: Library = pickle.load(handle)  # noqa: S301 - our own sop serve's file, checked above
        except Exception as exc:  # noqa: BLE001 - a file an older release wrote: one line, not a crash loop's traceback
            raise NotHandedDown(f"${ENV} names {named}, which cannot be read as a library ({type(exc).__name__}: "
                                f"{exc}); restart `sop serve`, which writes it again") from None
    return library


__all__ = ["ENV", "NotHandedDown", "hand_down", "handed_down"]
