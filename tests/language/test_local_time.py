"""Times shown to people carry a zone label no reader can take for another zone's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows.clock import local_time

AT = datetime(2026, 12, 5, 6, 20, tzinfo=UTC)


@pytest.mark.parametrize(("zone", "shown"), [
    ("Asia/Shanghai", "2026-12-05 14:20 CST (UTC+8)"),  # CST alone is also the US Central's
    ("America/Chicago", "2026-12-05 00:20 CST (UTC-6)"),
    ("Asia/Kolkata", "2026-12-05 11:50 IST (UTC+5:30)"),
    ("Asia/Dubai", "2026-12-05 10:20 UTC+4"),  # no abbreviation of its own: the offset alone, not "+04 (UTC+4)"
    ("UTC", "2026-12-05 06:20 UTC"),
])
def test_a_local_time_says_its_offset(zone: str, shown: str) -> None:
    assert local_time(AT, zone) == shown


def test_seconds_when_asked() -> None:
    assert local_time(AT.replace(second=9), "Europe/Madrid", seconds=True) == "2026-12-05 07:20:09 CET (UTC+1)"


def test_a_person_without_a_time_zone_reads_the_sites_not_utc() -> None:
    from flows.language.config import Person

    assert Person(name="Ana").zone_or("Asia/Shanghai") == "Asia/Shanghai"
    assert Person(name="Bo", timezone="UTC").zone_or("Asia/Shanghai") == "UTC"  # said in config: kept
    assert Person(name="Cy", timezone="Europe/Madrid").zone_or("Asia/Shanghai") == "Europe/Madrid"
