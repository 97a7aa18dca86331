"""An automated step's retry delays and time limits are on its run's clock, like every other duration.

A drill at 600x plays the traffic-surge playbook's 2 hours in 12 seconds: its scale-out call's
backoff (10s, 20s, 40s) and its one-minute timeout shrink 600 times too, but a time limit never
leaves a call less than a second of wall time (a real system answers in real time). Without Prefect.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from flows.language.library import load_library
from flows.language.steps import KINDS, StepContext, StepFailed
from flows.language.steps.base import pacing
from flows.language.steps.command import CommandStep
from flows.language.steps.http import HttpStep


@pytest.fixture(scope="module")
def surge(repo_root):
    return load_library(repo_root).sops["traffic-surge"].sop


def test_the_backoff_and_the_timeout_shrink_with_the_speed(surge):
    scaleout = surge.step("scaleout")  # retries 3, retry_delay 10s, timeout 1m
    assert (pacing(scaleout, 1).delays, pacing(scaleout, 1).timeout) == ((10, 20, 40), 60)
    assert (pacing(scaleout, 10).delays, pacing(scaleout, 10).timeout) == ((1, 2, 4), 6)
    at_600 = pacing(scaleout, 600)
    assert at_600.delays == pytest.approx((10 / 600, 20 / 600, 40 / 600), abs=1e-6)  # to the microsecond
    assert at_600.timeout == 1.0  # 60s / 600 = 0.1 s would cut a call that answers in 200 ms: a second at least
    slowed = pacing(scaleout, 0.5)  # a run played at half speed waits twice as long
    assert (slowed.delays, slowed.timeout) == ((20, 40, 80), 120)
    status_page = surge.step("status-page")  # retries 2, no retry_delay: 2 s doubling, as Prefect's backoff
    assert pacing(status_page, 1).delays == (2, 4) and pacing(status_page, 120).delays == pytest.approx((2 / 120, 4 / 120), abs=1e-6)
    assert pacing(surge.step("page"), 600).timeout is None  # no timeout stays none


def test_a_limit_shorter_than_the_floor_stays_itself():
    quick = CommandStep(id="probe", command=["true"], timeout="0.3s")
    assert pacing(quick, 1).timeout == pytest.approx(0.3)
    assert pacing(quick, 600).timeout == pytest.approx(0.3)  # the floor never lengthens a limit


def test_the_deployed_task_is_paced_per_run(surge):
    from flows.prefect.deployments import step_task

    scaleout = step_task(surge, surge.step("scaleout"))
    assert (scaleout.task.retries, scaleout.task.retry_delay_seconds, scaleout.task.timeout_seconds) == (3, [10, 20, 40], 60)
    assert scaleout.at(1) is scaleout.task  # a real run: the deployment's own task
    drill = scaleout.at(600)
    assert drill.retry_delay_seconds == pytest.approx([10 / 600, 20 / 600, 40 / 600], abs=1e-6)
    assert drill.timeout_seconds == 1.0
    assert (drill.name, drill.retries, drill.task_key) == ("scaleout", 3, scaleout.task.task_key)  # the same task in the UI


def test_a_command_is_killed_at_its_timeout_on_the_runs_clock():
    step = CommandStep(id="restart", command=["sleep", "5"], timeout="30s")
    began = time.monotonic()
    with pytest.raises(StepFailed) as failed:
        KINDS["command"].execute(step, StepContext(variables={}, run_id="r1", speed=600))  # type: ignore[misc]
    took = time.monotonic() - began
    assert 1.0 <= took < 5.0  # a second of wall time (the floor), not 30 s nor the 5 s the program wanted
    assert str(failed.value) == "command sleep did not finish within 30s of SOP time (1s of wall time at ×600)"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A real socket on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_a_call_that_hangs_is_cut_at_its_timeout_on_the_runs_clock(silent_server):
    step = HttpStep(id="ratelimit", request={"url": f"{silent_server}/v1/rate-limits"}, timeout="30s")
    began = time.monotonic()
    with pytest.raises(StepFailed) as failed:
        KINDS["http"].execute(step, StepContext(variables={}, run_id="r1", speed=600))  # type: ignore[misc]
    took = time.monotonic() - began
    assert 1.0 <= took < 5.0
    assert str(failed.value) == (f"POST {silent_server}/v1/rate-limits timed out after 30s of SOP time "
                                 "(1s of wall time at ×600)")
    untimed = HttpStep(id="ratelimit", request={"url": f"{silent_server}/v1/rate-limits"})  # 30 s by default, scaled too
    began = time.monotonic()
    with pytest.raises(StepFailed, match="timed out after 30s of SOP time"):
        KINDS["http"].execute(untimed, StepContext(variables={}, run_id="r1", speed=600))  # type: ignore[misc]
    assert time.monotonic() - began < 5.0
