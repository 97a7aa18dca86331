"""Rotations and overrides, pure: who is on call at an instant, and what `sop validate` says of a rotation."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flows.language.library import load_site
from flows.language.loader import read_document
from flows.language.oncall import Override, away_errors, on_call, schedule

PEOPLE = """\
    people:
      ana: {name: Ana, contacts: ["inbox://ana"], timezone: Europe/Madrid}
      bo: {name: Bo, contacts: ["inbox://bo"], timezone: Asia/Shanghai}
      cy: {name: Cy, contacts: ["inbox://cy"], timezone: America/New_York}
      di: {name: Di, contacts: ["inbox://di"], timezone: Asia/Shanghai}
"""


def site_of(tmp_path: Path, roles: str, people: str = PEOPLE) -> tuple[object, list[object], list[object]]:
    """The site of a config folder holding ``people`` and ``roles`` (YAML), with its errors and documents."""
    (tmp_path / "people.yaml").write_text(textwrap.dedent(people))
    (tmp_path / "roles.yaml").write_text(textwrap.dedent(roles))
    docs = [read_document(tmp_path / name)[0] for name in ("people.yaml", "roles.yaml")]
    site, errors = load_site(docs)
    return site, errors, docs


WEEKLY = """\
    roles:
      oncall:
        members: [ana, bo, cy]
        rotation: {shift: 1w, handoff: MON 09:00 Europe/Madrid, start: 2026-03-02}
        lead: none
"""


def test_a_weekly_rotation_hands_over_at_its_local_instant_even_across_daylight_saving(tmp_path: Path) -> None:
    site, errors, _ = site_of(tmp_path, WEEKLY)
    assert errors == []
    role = site.roles["oncall"]  # type: ignore[attr-defined]
    first = on_call("oncall", role, datetime(2026, 3, 2, 8, 0, tzinfo=UTC))  # 09:00 in Madrid (UTC+1)
    assert (first.primary, first.backup, first.source) == ("ana", "bo", "rotation")
    assert on_call("oncall", role, datetime(2026, 3, 9, 7, 59, tzinfo=UTC)).primary == "ana"
    assert on_call("oncall", role, datetime(2026, 3, 9, 8, 0, tzinfo=UTC)).primary == "bo"
    # Madrid moves to UTC+2 on 2026-03-29: the handoff stays at 09:00 there, 07:00 UTC
    assert on_call("oncall", role, datetime(2026, 3, 30, 6, 59, tzinfo=UTC)).primary == "ana"  # round again
    after = on_call("oncall", role, datetime(2026, 3, 30, 7, 0, tzinfo=UTC))
    assert (after.primary, after.backup) == ("bo", "cy")  # the backup is the next in line
    assert after.why == "rotation: shift 5 (bo) from 2026-03-30 09:00 until 2026-04-06 09:00 Europe/Madrid"
    assert [s.primary for s in schedule("oncall", role, after.since, after.since + timedelta(weeks=3))] == [
        "bo", "cy", "ana"]


def test_a_follow_the_sun_rotation_splits_the_day_and_rotates_each_part(tmp_path: Path) -> None:
    site, errors, _ = site_of(tmp_path, """\
        roles:
          oncall:
            members: [ana, bo, cy, di]
            rotation:
              shift: 1w
              handoff: MON 09:00 Asia/Shanghai
              start: 2026-03-02
              follow_the_sun:
                - {hours: 09:00-21:00, members: [bo, di]}
                - {hours: 21:00-09:00, members: [ana], backup: [cy]}
            lead: none
        """)
    assert errors == []
    role = site.roles["oncall"]  # type: ignore[attr-defined]
    day = on_call("oncall", role, datetime(2026, 3, 3, 4, 0, tzinfo=UTC))  # 12:00 in Shanghai
    night = on_call("oncall", role, datetime(2026, 3, 3, 14, 0, tzinfo=UTC))  # 22:00 in Shanghai
    assert (day.primary, day.backup, night.primary, night.backup) == ("bo", "di", "ana", "cy")
    assert day.until == datetime(2026, 3, 3, 13, 0, tzinfo=UTC)  # 21:00 in Shanghai: the night part begins
    assert on_call("oncall", role, datetime(2026, 3, 10, 4, 0, tzinfo=UTC)).primary == "di"  # next week's day part


def test_an_override_wins_over_the_rotation_and_ends_by_itself(tmp_path: Path) -> None:
    site, _, _ = site_of(tmp_path, WEEKLY)
    role = site.roles["oncall"]  # type: ignore[attr-defined]
    cover = Override(7, "oncall", "cy", datetime(2026, 3, 3, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC),
                     "ana at a wedding", by="bo")
    during = on_call("oncall", role, datetime(2026, 3, 4, tzinfo=UTC), [cover])
    assert (during.primary, during.backup, during.source, during.override) == ("cy", "bo", "override", 7)
    assert "ana at a wedding" in during.why
    assert on_call("oncall", role, datetime(2026, 3, 5, tzinfo=UTC), [cover]).primary == "ana"  # it ended
    before = on_call("oncall", role, datetime(2026, 3, 2, 12, tzinfo=UTC), [cover])
    assert (before.primary, before.until) == ("ana", cover.starts_at)  # the answer changes when it begins
    stretches = schedule("oncall", role, datetime(2026, 3, 2, 12, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC),
                         [cover])
    assert [(s.primary, s.since) for s in stretches] == [("ana", datetime(2026, 3, 2, 8, tzinfo=UTC)),
                                                         ("cy", cover.starts_at), ("ana", cover.ends_at)]
    other = Override(8, "other-role", "cy", cover.starts_at, cover.ends_at, "not this role")
    assert on_call("oncall", role, datetime(2026, 3, 4, tzinfo=UTC), [other]).primary == "ana"


def test_rotation_errors_are_located_in_their_file(tmp_path: Path) -> None:
    _, errors, _ = site_of(tmp_path, """\
        roles:
          gappy:
            members: [ana, bo, cy]
            rotation:
              shift: 1w
              handoff: MON 09:00 Asia/Shanghai
              start: 2026-03-02
              follow_the_sun:
                - {hours: 09:00-17:00, members: [bo, cy]}
                - {hours: 21:00-09:00, members: [ana, bo]}
            lead: none
          stranger:
            members: [ana, bo]
            rotation: {shift: 1d, handoff: 09:00 Europe/Madrid, start: 2026-03-02, members: [ana, di]}
            lead: none
          both:
            members: [ana, bo]
            primary: ana
            rotation: {shift: 12h, handoff: 09:00 Europe/Madrid, start: 2026-03-02}
            lead: none
          mars:
            members: [ana, bo]
            rotation: {shift: 1w, handoff: MON 09:00 Mars/Olympus, start: 2026-03-02}
            lead: none
          no-day:
            members: [ana, bo]
            rotation: {shift: 1w, handoff: 09:00 Europe/Madrid, start: 2026-03-02}
            lead: none
        """)
    found = sorted((e.line, e.path, e.message) for e in errors)  # type: ignore[attr-defined]
    assert all(str(e).startswith(str(tmp_path / "roles.yaml")) for e in errors)
    assert found[0][:2] == (9, "roles.gappy.rotation.follow_the_sun")
    assert "leave 17:00-21:00 uncovered" in found[0][2]
    assert found[1][:2] == (18, "roles.both.primary") and "leave `primary` out" in found[1][2]
    assert found[2][:2] == (23, "roles.mars.rotation.handoff") and "unknown time zone 'Mars/Olympus'" in found[2][2]
    assert found[3][:2] == (27, "roles.no-day.rotation.handoff") and "write it first, e.g. `MON 09:00" in found[3][2]
    assert len(found) == 4  # a model error stops the cross-checks: the stranger is reported once the rest is fixed

    _, errors, _ = site_of(tmp_path, """\
        roles:
          stranger:
            members: [ana, bo]
            rotation: {shift: 1d, handoff: 09:00 Europe/Madrid, start: 2026-03-02, members: [ana, di]}
            lead: none
          alone:
            members: [ana]
            rotation: {shift: 1d, handoff: 09:00 Europe/Madrid, start: 2026-03-02}
            lead: none
        """)
    found = sorted((e.line, e.path, e.message) for e in errors)  # type: ignore[attr-defined]
    assert found[0][:2] == (4, "roles.stranger.rotation.members[1]") and "`di` is in the rotation but not" in found[0][2]
    assert found[1][:2] == (8, "roles.alone.rotation.members") and "has no backup" in found[1][2]


def test_someone_on_call_while_away_is_reported_at_their_away_entry_unless_an_override_covers_it(
        tmp_path: Path) -> None:
    people = PEOPLE.replace(
        'bo: {name: Bo, contacts: ["inbox://bo"], timezone: Asia/Shanghai}',
        'bo:\n        name: Bo\n        contacts: ["inbox://bo"]\n        timezone: Asia/Shanghai\n'
        '        away:\n          - {from: 2026-03-10, until: 2026-03-12, reason: conference}')
    site, errors, docs = site_of(tmp_path, WEEKLY, people)
    assert errors == []
    now = datetime(2026, 3, 5, tzinfo=UTC)
    [gap] = away_errors(site, docs, now, days=14)
    assert (Path(gap.file).name, gap.line, gap.path) == ("people.yaml", 8, "people.bo.away[0]")
    assert "bo is primary of `oncall` from 2026-03-09 16:00 until 2026-03-11 16:00 UTC but away (conference)" in gap.message
    cover = Override(1, "oncall", "cy", datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 12, tzinfo=UTC), "bo away")
    assert away_errors(site, docs, now, days=14, overrides=[cover]) == []
    # the command it suggests covers the gap exactly (the stretch's own instants, their offset said), no hour left
    suggested = re.search(r"--from (\S+) --until (\S+)", gap.message)
    assert suggested is not None
    starts, ends = (datetime.fromisoformat(t) for t in suggested.groups())
    exact = Override(2, "oncall", "cy", starts, ends, "bo away")
    assert away_errors(site, docs, now, days=14, overrides=[exact]) == []
    assert away_errors(site, docs, now, days=3) == []  # beyond the horizon
