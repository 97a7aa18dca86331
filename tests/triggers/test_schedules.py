"""`schedule:` triggers become Prefect deployment schedules: the cron, in the trigger's time zone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from prefect.server.schemas.schedules import CronSchedule as ServerCron

from flows.language.library import Library
from flows.prefect.deployments import deployment_schedules


def next_runs(schedule, n: int, start: datetime) -> list[datetime]:  # noqa: ANN001
    """The instants Prefect's scheduler would create, computed by Prefect's own server schema."""
    server = ServerCron(**schedule.model_dump(exclude_none=True))
    return [d.astimezone(UTC) for d in asyncio.run(server.get_dates(n, start=start))]


def test_the_weekly_review_runs_mondays_at_10_shanghai_time(library: Library) -> None:
    [created] = deployment_schedules(library.sops["weekly-review"].sop)
    assert created.active is True
    assert (created.schedule.cron, created.schedule.timezone) == ("0 10 * * MON", "Asia/Shanghai")
    runs = next_runs(created.schedule, 2, datetime(2026, 11, 22, tzinfo=UTC))  # a Sunday
    assert runs == [datetime(2026, 11, 23, 2, tzinfo=UTC), datetime(2026, 11, 30, 2, tzinfo=UTC)]  # 10:00 +08:00


def test_every_seed_schedule_maps_one_to_one(library: Library) -> None:
    for loaded in library.sops.values():
        triggers = loaded.sop.schedules()
        created = deployment_schedules(loaded.sop)
        assert [(c.schedule.cron, c.schedule.timezone) for c in created] == [(t.schedule, t.timezone) for t in triggers]
    assert not deployment_schedules(library.sops["crisis-pr"].sop)  # alert-triggered: no schedule
