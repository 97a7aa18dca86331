"""Safe by default: the report and verify fork a child only when this process runs one thread.

A fork copies every lock as it is; one held by another thread (the API serves on a thread
pool) would stay held in the child for ever. So with another thread running, both stay on
one process without being told, and give the same answer.
"""

from __future__ import annotations

import _thread
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from flows.audit import Audit, parallel
from flows.audit.export import to_json
from flows.audit.html import render_html
from tests.audit.conftest import Scenario
from tests.conftest import REPO_ROOT


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The forks this test makes: each call of ``os.fork`` is counted, then done."""
    made: list[int] = []
    fork = os.fork

    def counted() -> int:
        made.append(1)
        return fork()

    monkeypatch.setattr(os, "fork", counted)
    return made


@contextmanager
def _python_thread() -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="another")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def _native_thread() -> Iterator[None]:
    # started below the threading module, as a C library's thread is: threading.active_count() misses it
    started, stop = _thread.allocate_lock(), _thread.allocate_lock()
    started.acquire()
    stop.acquire()

    def run() -> None:
        started.release()
        stop.acquire()

    _thread.start_new_thread(run, ())
    started.acquire()
    try:
        yield
    finally:
        stop.release()


THREADS: dict[str, Callable[[], AbstractContextManager[None]]] = {
    "a Python thread": _python_thread, "a thread the threading module does not know": _native_thread}


def _answers(audit: Audit, **options: Any) -> tuple[dict[str, Any], str, dict[str, Any]]:
    report, charts = audit.report_with_sections(**options)
    return report.to_dict(), render_html(report, charts), audit.verify(**options).to_dict()


#: the audit as a fresh ``sop`` process runs it (one thread), each fork counted: report, HTML, verify, forks
ALONE = """
import os, sys
from datetime import datetime
from flows.audit import Audit
from flows.audit.export import to_json
from flows.audit.html import render_html
from flows.clock import ManualClock
from flows.ledger import Ledger

forks, fork = [], os.fork
os.fork = lambda: forks.append(1) or fork()
audit = Audit(Ledger(sys.argv[1], ManualClock(datetime.fromisoformat(sys.argv[2]))))
report, charts = audit.report_with_sections(min_records=0)
answers = [report.to_dict(), render_html(report, charts), audit.verify(min_records=0).to_dict(), len(forks)]
sys.stdout.write(to_json(answers))
"""


def test_alone_it_forks_and_gives_the_same_answer(audit: Audit, scenario: Scenario) -> None:
    # in a fresh interpreter: this test process may run other tests' threads (the API's)
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: the default is one process")
    done = subprocess.run([sys.executable, "-c", ALONE, scenario.url, scenario.now.isoformat()], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True)
    *answers, forks = json.loads(done.stdout)
    assert answers == json.loads(to_json(list(_answers(audit, workers=1))))
    # the report's child; the walk forks only over records written before lanes (the scenario has none):
    # lanes are walked in one process for now (docs/benchmarks.md, team ingest: what is left)
    assert forks == 1


@pytest.mark.parametrize("other", list(THREADS))
def test_with_another_thread_running_the_audit_stays_on_one_process(audit: Audit, other: str,
                                                                    forks: list[int]) -> None:
    if other == "a thread the threading module does not know" and not os.path.isdir("/proc/self/task"):
        pytest.skip("only Linux's /proc counts the threads Python does not know of")
    expected = _answers(audit, workers=1)
    with THREADS[other]():
        assert not parallel.forking_is_safe()
        assert _answers(audit, min_records=0) == expected  # long enough to fork, with the default workers
    assert forks == []
