"""The errors this package raises at its boundaries; delivery itself never raises (it records)."""

from __future__ import annotations


class NotificationError(Exception):
    """Base of every error raised by ``notifications``."""


class RenderError(NotificationError):
    """A template could not be rendered; ``file`` and ``line`` locate the problem when known."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        self.file, self.line = file, line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{message}")


class UnknownTarget(NotificationError):
    """A notify target that is not a person, role or channel of the site config."""
