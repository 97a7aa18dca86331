"""The ledger's database URL: which ones work, and a plain refusal of those that cannot.

SQLite (``sqlite:///var/ledger.db``, the default) or PostgreSQL with psycopg 3
(``postgresql+psycopg://user:password@host:5432/sop``; a bare ``postgresql://`` means the
same, since psycopg2 is not a dependency). Anything else, a missing driver or a server that
does not answer is a :class:`LedgerUnavailable` naming the setting and what was expected,
which the commands and the API print as one line instead of a traceback.
"""

from __future__ import annotations

import importlib.util

import sqlalchemy as sa

#: where the URL comes from (flows.engine.build.database_url reads them in this order)
SETTING = "SOP_DATABASE_URL (or database_url in config/settings.yaml)"
EXPECTED = "sqlite:///var/ledger.db or postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE"
#: the PostgreSQL drivers the ledger runs on (it is synchronous: asyncpg is Prefect's, not ours)
_POSTGRES_DRIVER = "psycopg"


class LedgerUnavailable(RuntimeError):
    """The ledger's database cannot be used: a wrong URL, a missing driver, a server that does not answer."""


def shown(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def ledger_url(url: str) -> str:
    """``url`` as the ledger opens it (``postgresql://`` → ``postgresql+psycopg://``), or LedgerUnavailable."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise LedgerUnavailable(f"{SETTING}: {url!r} is not a database URL; expected {EXPECTED}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return url
    if backend in ("postgresql", "postgres"):
        if driver not in ("", _POSTGRES_DRIVER):
            raise LedgerUnavailable(
                f"{SETTING}: driver {driver!r} in {shown(url)} is not one the ledger runs on; "
                f"expected postgresql+psycopg:// (psycopg 3)")
        if importlib.util.find_spec("psycopg") is None:
            raise LedgerUnavailable(
                f"{SETTING}: {shown(url)} needs psycopg 3, which is not installed; "
                "install it with: pip install 'sops-as-code[postgres]'")
        return parsed.set(drivername=f"postgresql+{_POSTGRES_DRIVER}").render_as_string(hide_password=False)
    raise LedgerUnavailable(f"{SETTING}: {shown(url)} is not a database the ledger runs on; expected {EXPECTED}")


def unreachable(url: str, exc: BaseException) -> LedgerUnavailable:
    """The error for a database that refused or did not answer a connection."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return LedgerUnavailable(f"{SETTING}: cannot open the ledger at {shown(url)}: "
                             f"{reason[0] if reason else type(exc).__name__}")
