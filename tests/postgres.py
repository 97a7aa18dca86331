"""A private PostgreSQL cluster for the tests and the benchmarks: Debian's ``initdb`` and ``pg_ctl``.

``PostgresCluster.start()`` makes a cluster in its own temporary folder, listening on a free
127.0.0.1 port with its unix socket in that folder, durability off (``fsync=off``: a test
cluster is thrown away), and a superuser ``sop`` trusted on loopback. No system cluster,
service or port is touched. ``database()`` makes an empty database, or a copy of a template
(``CREATE DATABASE … TEMPLATE``: a migrated ledger in ~30 ms); ``stop()`` stops the cluster
and removes its folder. A session killed outright cannot: its cluster outlives it, and the
next ``start()`` on this machine stops it (its folder names the process that started it).

initdb refuses to run as root: as root the cluster runs as the ``postgres`` account Debian's
package creates (or ``nobody`` when there is none), which owns the folder.

Used by ``tests/conftest.py`` (the ``database_url`` fixture) and by ``bench/``.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import free_port

#: where Debian's postgresql-<version> package puts its server binaries
DEBIAN_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "sop"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


#: a cluster's folder: ``<temp>/sop-pg-…``, holding ``owner.pid`` (the process that started it), ``data``, the log
PREFIX, OWNER = "sop-pg-", "owner.pid"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (``apt-get install postgresql``)."""


def server_binaries() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``pg_ctl``."""
    found = sorted(
        (path for path in DEBIAN_ROOT.glob("*/bin") if (path / "initdb").exists() and (path / "pg_ctl").exists()),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresUnavailable(
            f"no PostgreSQL server binaries under {DEBIAN_ROOT}/<version>/bin; install Debian's "
            "'postgresql' package (as root 'make test' does) or run with SOP_TEST_DATABASE=sqlite")
    return found[-1]


def _cluster_account() -> str | None:
    """The account the cluster runs as when we are root (None: as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and there is no 'postgres' or 'nobody' account to run initdb as")


class PostgresCluster:
    """One private cluster: ``start()``, ``database(name)`` → URL, ``stop()``."""

    def __init__(self, *, bin_dir: Path | None = None):
        self.bin_dir = bin_dir or server_binaries()
        self.account = _cluster_account()
        self.port = 0
        self.folder: Path | None = None
        self._admin = None  # a psycopg connection to the 'postgres' database, autocommit

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> PostgresCluster:
        """initdb + pg_ctl start; returns once the server accepts connections (or raises with its log). Clusters
        left running by sessions that were killed outright are stopped first (:func:`stop_orphans`)."""
        stop_orphans(self.bin_dir)
        self.folder = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.folder / OWNER).write_text(f"{os.getpid()}\n")
        data, log = self.folder / "data", self.folder / "server.log"
        if self.account is not None:
            entry = pwd.getpwnam(self.account)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self._as_owner([str(self.bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                        "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"])
        self.port = free_port()
        options = " ".join([
            f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={self.folder}",
            "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
            "-c max_connections=200", "-c shared_buffers=64MB", "-c log_min_messages=warning",
            "-c TimeZone=UTC",
        ])
        self._as_owner([str(self.bin_dir / "pg_ctl"), "start", "-D", str(data), "-l", str(log), "-w",
                        "-t", "60", "-o", options])
        atexit.register(self.stop)
        self._wait_ready(log)
        return self

    def stop(self, mode: str = "fast", *, remove_behind: bool = False) -> None:
        """Stop the server (``pg_ctl``'s shutdown ``mode``) and remove its folder; safe to call twice.

        ``remove_behind``: the folder is renamed out of the way and removed by a detached ``rm -rf`` while the caller
        goes on (a test session's cluster holds a database per test, gigabytes in tens of thousands of files: seconds
        to remove at the end of each session, with nothing else to do)."""
        if self.folder is None:
            return
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        data = self.folder / "data"
        if (data / "postmaster.pid").exists():
            self._as_owner([str(self.bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", mode, "-w", "-t", "30"],
                           check=False)
        stopped = not (data / "postmaster.pid").exists()  # (renamed under a server still up, its folder would hide
        if not (remove_behind and stopped and _removed_behind(self.folder)):  # it from stop_orphans)
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    # --- databases ----------------------------------------------------------------------------

    def url(self, database: str, driver: str = "psycopg") -> str:
        """The SQLAlchemy URL of a database of this cluster (``driver="asyncpg"`` for Prefect)."""
        return f"postgresql+{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` (dropping one of that name first), as a copy of ``template`` if
        given; returns its URL."""
        self.drop(name)
        copy = f" TEMPLATE {_quoted(template)}" if template else ""
        self._sql(f"CREATE DATABASE {_quoted(name)}{copy}")
        return self.url(name)

    def drop(self, name: str) -> None:
        """Drop database ``name`` if it exists, closing its connections."""
        self._sql(f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)")

    def psql(self, database: str, sql: str) -> str:
        """Run SQL with ``psql`` as an operator would (over the unix socket); returns its output."""
        done = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", str(self.folder),
             "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql],
            capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    # --- inside -------------------------------------------------------------------------------

    def _sql(self, statement: str) -> None:
        import psycopg

        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                                          autocommit=True)
        self._admin.execute(statement)

    def _as_owner(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        program = Path(argv[0]).name
        if self.account is not None:
            argv = ["runuser", "-u", self.account, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                              cwd=self.folder, env={**os.environ, "LC_ALL": "C.UTF-8"})
        if check and done.returncode != 0:
            log = self.folder / "server.log" if self.folder else None
            tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
                               f"\n{tail}")
        return done

    def _wait_ready(self, log: Path) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                                connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not accept connections on 127.0.0.1:{self.port} within "
                                       f"30 s:\n{log.read_text()[-2000:] if log.exists() else ''}") from None
                time.sleep(0.05)


def _removed_behind(folder: Path) -> bool:
    """``folder`` renamed out of the way (no longer a cluster's: not :data:`PREFIX`) and removed by a detached
    ``rm -rf`` that outlives this process; False when that could not be done (nothing was)."""
    rm = shutil.which("rm")
    gone = folder.with_name(f"sop-gone-{folder.name}")
    try:
        if rm is None:
            return False
        folder.rename(gone)
    except OSError:
        return False
    os.posix_spawn(rm, [rm, "-rf", "--", str(gone)], os.environ, setsid=True)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another account's process: alive
        return True
    return True


def stop_orphans(bin_dir: Path | None = None, where: Path | None = None) -> list[Path]:
    """Stop and remove the clusters under ``where`` (the temporary folder) whose starting process has died
    without stopping them (a test session or bench killed with SIGKILL: ``pg_ctl`` servers outlive their
    parent); the folders removed. A cluster whose owner lives, or that names none, is left alone."""
    removed = []
    for folder in sorted(Path(where or tempfile.gettempdir()).glob(f"{PREFIX}*")):
        try:
            owner = int((folder / OWNER).read_text().strip())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        orphan = PostgresCluster(bin_dir=bin_dir)
        orphan.folder = folder
        orphan.stop(mode="immediate")  # a thrown-away cluster: nothing to write out first
        removed.append(folder)
    return removed


def _quoted(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"database name {name!r}: lower-case letters, digits and _ only")
    return f'"{name}"'
