"""The ``sop`` command for the tests, started from a process that has its libraries imported already.

Most of the suite's terminal tests run a ``sop`` command a dozen times, and each start spent a second or more of CPU
importing the libraries and the project's own modules before doing anything. Here one process per test worker (the
*warm* process) imports them once; each command is then a fork of it (a process of its own, with its own pid, exit
code, environment, working folder and standard streams) that runs the console script's own entry point,
``flows.cli.main``, which reads its SOPs, config and ledger afresh as any command does.

What differs from a cold start: the modules :data:`PRELOADED` brings are imported in the warm process's environment
(the tests' own, with the fixture's ``SOP_HOME``, ``NO_COLOR`` and ``COLUMNS``), and every command of a worker shares
one hash seed. The CLI's own modules (``flows.cli.*``) are dropped again, so each command imports them and makes its
consoles with its own ``COLUMNS``, ``NO_COLOR`` and terminal; no other project module reads the environment (or calls
what does) when it is imported, and ``test_no_module_below_the_cli_reads_the_environment_when_imported`` keeps it
so. Typer reads ``TERMINAL_WIDTH`` and ``TYPER_USE_RICH`` when imported: no test sets them. Prefect and Apprise are not
imported ahead. The command's stdin is ``/dev/null``, and the fixture returns when the command exits (not when a child
it left holding its output does). ``SOP_TEST_COLD_CLI=1`` runs every command cold, as a user's shell does; so do the
tests that start services (``sop serve``…), which use ``subprocess`` themselves.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

#: what the warm process imports before the first command: libraries, and what the command modules a test runs most
#: import (those themselves are dropped again)
PRELOADED = ("sqlalchemy", "sqlalchemy.orm", "sqlalchemy.dialects.sqlite", "pydantic", "jinja2", "jinja2.sandbox",
             "yaml", "asyncio", "annotated_types", "json", "zoneinfo", "typer", "rich", "click", "flows.cli",
             "flows.cli.runs", "flows.cli.status", "flows.cli.holds", "flows.cli.oncall", "flows.cli.silences",
             "flows.cli.audit", "flows.cli.library")

#: the warm process: listens on a Unix socket; per command, a handler child forks the command and reports its pid
#: and exit code (the handler's ``waitpid``); the warm process itself stays single-threaded, so forking it is safe
_WARM = r'''
import json, os, signal, socket, struct, sys
for name in sys.argv[3].split(","):
    __import__(name)
for name in [name for name in sys.modules if name == "flows.cli" or name.startswith("flows.cli.")]:
    del sys.modules[name]  # each command imports the CLI afresh: its consoles read the command's terminal settings
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(64)
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # handlers are reaped by the kernel
print("ready", flush=True)

def command(request, fds):
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [sys.argv[2], *request["args"]]
    from flows.cli import main
    sys.exit(main())  # the interpreter's own exit: atexit handlers, flushed streams, as the console script

def handle(conn):
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    head, fds, _, _ = socket.recv_fds(conn, 8, 3)
    size = struct.unpack("!Q", head)[0]
    body = b""
    while len(body) < size:
        body += conn.recv(size - len(body))
    pid = os.fork()
    if pid == 0:
        conn.close()
        command(json.loads(body), fds)
    for fd in fds:
        os.close(fd)
    conn.sendall(f"{pid}\n".encode())
    _, status = os.waitpid(pid, 0)
    conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
    conn.close()
    os._exit(0)

while True:
    conn, _ = server.accept()
    if os.fork() == 0:
        server.close()
        handle(conn)
    conn.close()
'''


class WarmCommand:
    """``run(args, env, cwd, timeout)`` as ``subprocess.run(..., capture_output=True, text=True)`` would answer,
    with each command forked from the warm process (started on first use, stopped when the tests end)."""

    def __init__(self, script: str, env: dict[str, str]) -> None:
        self.script = script
        self.env = env
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    def _socket_path(self) -> str:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._folder = tempfile.TemporaryDirectory(prefix="sop-warm-")
                path = os.path.join(self._folder.name, "s")
                self._process = subprocess.Popen([sys.executable, "-c", _WARM, path, self.script, ",".join(PRELOADED)],
                                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                                                 env=self.env)
                assert self._process.stdout is not None
                if self._process.stdout.readline().strip() != "ready":
                    raise RuntimeError("the warm process for `sop` commands did not start")
                atexit.register(self.stop)
            assert self._folder is not None
            return os.path.join(self._folder.name, "s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._folder is not None:
            self._folder.cleanup()

    def run(self, args: list[str], env: dict[str, str], cwd: Path,
            timeout: float) -> subprocess.CompletedProcess[str]:
        path = self._socket_path()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
                open(os.devnull, "rb") as stdin, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(path)
            body = json.dumps({"args": args, "env": env, "cwd": str(cwd)}).encode()
            socket.send_fds(conn, [len(body).to_bytes(8, "big")], [stdin.fileno(), out.fileno(), err.fileno()])
            conn.sendall(body)
            conn.settimeout(timeout)
            reader = conn.makefile("r")
            pid = int(reader.readline())
            try:
                code = int(reader.readline())
            except TimeoutError:
                os.kill(pid, 9)
                raise subprocess.TimeoutExpired([self.script, *args], timeout, _read(out), _read(err)) from None
            return subprocess.CompletedProcess([self.script, *args], code, _read(out), _read(err))


def _read(file: tempfile._TemporaryFileWrapper[bytes] | object) -> str:
    file.seek(0)  # type: ignore[attr-defined]
    return file.read().decode(errors="replace")  # type: ignore[attr-defined]
