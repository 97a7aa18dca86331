"""The site's signing secret: links and sessions are signed with it.

``$SOP_SECRET`` when set; otherwise ``var/secret`` (created once, 0600). A file anyone but
its owner can read is refused: whoever reads it could sign links as anyone.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

ENV = "SOP_SECRET"


class SecretUnsafe(RuntimeError):
    """The secret file can be read or written by others than its owner."""


def private_file(path: Path, *, make: bool = True, nbytes: int = 32) -> bytes:
    """The content of a 0600 file, created with a random token when missing (``make``).

    Refuses (SecretUnsafe) a file that group or others may read or write: fix it with
    ``chmod 600``. The file is created with O_EXCL and mode 0600, so no other process ever
    sees a readable half-written secret.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if not make:
            raise
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(nbytes)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it a moment ago: read theirs
            return private_file(path, make=False)
        with os.fdopen(fd, "w") as out:
            out.write(value + "\n")
        return value.encode()
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretUnsafe(f"{path} has permissions {stat.filemode(mode)}: only its owner may read it "
                           f"(run `chmod 600 {path}`)")
    value = path.read_text().strip()
    if not value:
        raise SecretUnsafe(f"{path} is empty: delete it and a new secret is made")
    return value.encode()


def site_secret(root: Path | str = ".", env: dict[str, str] | None = None) -> bytes:
    """The signing secret of the site at ``root``: ``$SOP_SECRET``, else ``var/secret`` (made once). SecretUnsafe,
    saying what to do, when this account may not read (or make) the file: a person's terminal on a team's host,
    the file being the service account's."""
    env = os.environ if env is None else env  # type: ignore[assignment]
    given = (env or {}).get(ENV, "").strip()
    if given:
        return given.encode()
    path = Path(root) / "var" / "secret"
    try:
        return private_file(path)
    except PermissionError as exc:
        raise SecretUnsafe(f"cannot read the site's secret {path} ({exc.strerror}): it signs step and sign-in links "
                           f"and is the service account's; run this as that account, or give this process the "
                           f"same secret in ${ENV}") from None
