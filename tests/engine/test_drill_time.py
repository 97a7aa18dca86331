"""On the real stack: an automated step's retry delays and time limits follow its run's clock (``speed``).

A run at 600x that calls a gateway stuck on a lock cuts each attempt after a second of wall
time (its 5 s timeout scaled, floored at a second), not after 5 s; a run played at half speed
waits twice its backoff between attempts. The Prefect task is the deployment's, re-paced per
run (``StepTask.at``).
"""

from __future__ import annotations

from tests.engine.conftest import step_states, wait_for

#: t-http's call step: retries 3, retry_delay 0.2s (doubling), timeout 5s
TIMEOUT_S, DELAYS_S = 5.0, (0.2, 0.4, 0.8)


def _gaps(gateway) -> list[float]:
    return [later["at"] - earlier["at"] for earlier, later in zip(gateway.requests, gateway.requests[1:], strict=False)]


def test_a_call_that_hangs_is_cut_on_the_runs_clock(engine, gateway):
    gateway.hang = 60.0
    run = engine.start("t-http", {}, initiator="li-wei", speed=600)
    wait_for(lambda: not engine.view(run.run_id).is_open, 90, "the run to end")

    assert engine.view(run.run_id).run["outcome"] == "failed"
    assert step_states(engine, run.run_id) == {"call": "failed", "confirm": "blocked", "tell": "blocked"}
    assert len(gateway.requests) == 4  # the first try and 3 retries, each cut
    # unscaled, each attempt would hang its whole 5 s before the next began (gaps of 5.2 s and more)
    assert all(gap < TIMEOUT_S for gap in _gaps(gateway)), _gaps(gateway)


def test_a_slowed_run_waits_its_backoff_on_its_clock(engine, gateway):
    gateway.failures = 100
    speed = 0.5  # a run played at half speed: every duration twice as long in wall time
    run = engine.start("t-http", {}, initiator="li-wei", speed=speed)
    wait_for(lambda: not engine.view(run.run_id).is_open, 90, "the run to end")

    assert engine.view(run.run_id).run["outcome"] == "failed" and len(gateway.requests) == 4
    gaps = _gaps(gateway)  # each at least its delay on the run's clock: 0.4, 0.8, 1.6 s (real time: 0.2, 0.4, 0.8)
    assert all(gap >= delay / speed for gap, delay in zip(gaps, DELAYS_S, strict=True)), gaps
