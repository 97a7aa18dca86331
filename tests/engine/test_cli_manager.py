"""`sop hold` / `sop release` / `sop status` / `sop snooze` as an ops manager types them: a held step shows its clock
stopped, a wrong `--for` (a duration, as `sop silence --for` takes) is refused naming what the SOP lets a hold wait
for, an ended run says how it ended, and times are said in the site's zone."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC
from typing import Any

import pytest

from flows.clock import local_time
from flows.engine.transitions import Engine
from tests.engine.conftest import records


def test_hold_and_release_from_the_terminal(sop: Callable[..., Any], site: tuple[Engine, dict[str, str]]) -> None:
    engine, env = site
    run_id = engine.start("creative-refresh", {"platform": "meta"}, initiator="li-wei", launch=False).run_id
    assert engine.view(run_id).state("impact") == "active"
    due = engine.view(run_id).steps["impact"]["due_at"]

    wrong = sop("hold", run_id, "impact", "--for", "2h", "--as", "li-wei", env=env)
    assert wrong.returncode == 1
    said = " ".join(wrong.stderr.split())
    assert "2h" in said and "platform_reply" in said and "Traceback" not in said, said
    assert records(engine, run_id, "step_held") == []  # nothing recorded

    held = sop("hold", run_id[:6], "impact", "--for", "platform_reply", "--note", "ticket 4411", "--as", "li-wei",
               env=env)
    assert held.returncode == 0, held.stderr
    assert "impact is on hold (platform_reply)" in held.stdout
    [record] = records(engine, run_id, "step_held")
    assert record["actor"] == "li-wei" and record["data"]["reason"] == "platform_reply"
    assert record["data"]["note"] == "ticket 4411" and record["data"]["via"] == "cli"
    assert engine.view(run_id).steps["impact"]["held_at"] is not None
    twice = sop("hold", run_id, "impact", "--for", "platform_reply", "--as", "li-wei", env=env)
    assert twice.returncode == 1 and "is on hold already (waiting for platform_reply, since" in twice.stderr
    since = local_time(engine.view(run_id).steps["impact"]["held_at"].replace(tzinfo=UTC), "Asia/Shanghai")
    assert f"since {since})" in " ".join(twice.stderr.split())  # the site's time, as the terminal says every time
    # the status shows it held, its clock stopped (no time left counting down), and why
    shown = sop("status", run_id, env=env).stdout
    line = next(text for text in shown.splitlines() if text.strip().startswith("impact"))
    assert "on hold (platform_reply)" in line and "clock stopped" in line and " left" not in line, line
    [status] = json.loads(sop("status", run_id, "--json", env=env).stdout)
    impact = next(s for s in status["steps"] if s["step"] == "impact")
    assert impact["hold"]["reason"] == "platform_reply" and impact["hold"]["by"] == "li-wei"
    assert impact["time_left"] is None

    released = sop("release", run_id, "impact", "--note", "they answered", "--as", "li-wei", env=env)
    assert released.returncode == 0, released.stderr
    assert "impact is released; due" in released.stdout
    assert [r["actor"] for r in records(engine, run_id, "step_released")] == ["li-wei"]
    view = engine.view(run_id)
    assert view.steps["impact"]["held_at"] is None and view.steps["impact"]["due_at"] >= due  # moved by the time held
    line = next(t for t in sop("status", run_id, env=env).stdout.splitlines() if t.strip().startswith("impact"))
    assert "active" in line and " left" in line and "on hold" not in line, line

    # the audit says who held it and why, and who released it (the note is the record's own line)
    story = " ".join(sop("audit", "show", run_id, env=env).stdout.split())
    assert "put on hold by li-wei (cli, self-declared" in story and "waiting for platform_reply" in story
    assert "hold (platform_reply) released by li-wei (cli, self-declared" in story
    assert "not ended · open" in story and "— UTC" not in story  # an open run has no end time to show

    again = sop("release", run_id, "impact", "--as", "li-wei", env=env)
    assert again.returncode == 1 and "step `impact` is not on hold" in again.stderr


def test_the_status_of_an_ended_run_says_how_it_ended(sop: Callable[..., Any],
                                                      site: tuple[Engine, dict[str, str]]) -> None:
    engine, env = site
    run_id = engine.start("creative-refresh", {"platform": "tiktok"}, initiator="li-wei", launch=False).run_id
    engine.cancel(run_id, "started by mistake", "li-wei")
    head = sop("status", run_id, env=env).stdout.splitlines()[0]
    assert head.endswith("— cancelled: started by mistake"), head


def test_a_snooze_from_the_terminal_is_said_in_the_sites_time(sop: Callable[..., Any],
                                                               site: tuple[Engine, dict[str, str]]) -> None:
    engine, env = site
    run_id = engine.start("crisis-pr", {"brand": "lumi"}, initiator="li-wei", launch=False).run_id
    wrong = sop("snooze", run_id, "--for", "2x", "--reason", "r", "--as", "chen-jie", env=env)
    assert wrong.returncode == 1 and "such as 10m or 30m (up to the SOP's max_snooze)" in wrong.stderr
    done = sop("snooze", run_id, "--for", "10m", "--reason", "statement with legal", "--as", "chen-jie", env=env)
    assert done.returncode == 0, done.stderr
    assert "the next status ask of" in done.stdout and "CST (UTC+8)" in done.stdout  # settings.timezone, said


def test_the_runs_list_shows_a_compressed_runs_speed(sop: Callable[..., Any], site: tuple[Engine, dict[str, str]]) -> None:
    """A run on compressed time that is no drill (a site that runs everything fast) shows its speed too: its
    durations are SOP time."""
    engine, env = site
    fast = engine.start("creative-refresh", {"platform": "x"}, initiator="li-wei", speed=60, launch=False).run_id
    plain = engine.start("creative-refresh", {"platform": "y"}, initiator="li-wei", launch=False).run_id
    listed = sop("audit", "runs", "--sop", "creative-refresh", env=env).stdout.splitlines()
    assert "manual by li-wei ×60" in next(line for line in listed if fast in line)
    assert "×" not in next(line for line in listed if plain in line)


def test_a_run_id_of_one_or_three_characters_cancels_nothing(sop: Callable[..., Any],
                                                             site: tuple[Engine, dict[str, str]]) -> None:
    """A busy director's `sop cancel 7` took the live run whose id began with 7: a prefix is four characters or more."""
    engine, env = site
    run_id = engine.start("creative-refresh", {"platform": "meta"}, initiator="li-wei", launch=False).run_id
    for short in (run_id[:1], run_id[:3]):
        refused = sop("cancel", short, "--as", "li-wei", "--reason", "x", env=env)
        assert refused.returncode == 1, refused.stdout
        said = " ".join(refused.stderr.split())
        assert f"`{short}` is too short to name a run: write at least 4 characters of its id" in said, said
    assert engine.view(run_id).is_open
    done = sop("cancel", run_id[:4], "--as", "li-wei", "--reason", "a duplicate", env=env)
    assert done.returncode == 0, done.stderr
    assert not engine.view(run_id).is_open


@pytest.mark.parametrize("command", [
    ["take", "{run}", "impact"],
    ["hold", "{run}", "impact", "--for", "platform_reply"],
    ["update", "{run}", "--text", "rolling back"],
    ["cancel", "{run}", "--reason", "a test"],
    ["silence", "--match", "alertname=X", "--for", "1h", "--reason", "maintenance"],
    ["oncall", "override", "sre-oncall", "tom-becker", "--until", "+1d", "--reason", "leave"],
])
def test_a_misspelt_or_spoken_name_after_as_is_answered_with_the_nearest_person(
        sop: Callable[..., Any], site: tuple[Engine, dict[str, str]], command: list[str]) -> None:
    engine, env = site
    run_id = engine.start("creative-refresh", {"platform": "meta"}, initiator="li-wei", launch=False).run_id
    args = [arg.format(run=run_id) for arg in command]
    for given, said in (("sara-lopes", "did you mean `sara-lopez`?"),
                        ("Sara Lopez", "did you mean `sara-lopez` (Sara Lopez)?")):
        refused = sop(*args, "--as", given, env=env)
        assert refused.returncode == 1 and f"--as `{given}` is not a person in config/; {said}" in refused.stderr


def test_status_says_who_reported_a_step_for_whom(sop: Callable[..., Any], site: tuple[Engine, dict[str, str]]) -> None:
    from flows.language.actors import Actor
    from flows.language.steps.human import HumanReport

    engine, env = site
    run_id = engine.start("creative-refresh", {"platform": "meta"}, initiator="li-wei", launch=False).run_id
    values = {"change_type": "ranking_algorithm", "campaigns_affected": 3, "daily_spend_affected": 1200,
              "ctr_change_pct": -18, "formats_hit": "15s vertical video"}
    # li-wei (an operator) reports liu-yang's answer through the API, as liu-yang told it on the phone
    engine.report(run_id, "impact", HumanReport(actor=Actor(person="liu-yang", via="api", by="li-wei"),
                                                values=values, evidence=["https://ads.example/export"]))
    line = next(t for t in sop("status", run_id, env=env).stdout.splitlines() if t.strip().startswith("impact"))
    assert "done" in line and line.rstrip().endswith("li-wei for liu-yang"), line
    [status] = json.loads(sop("status", run_id, "--json", env=env).stdout)
    impact = next(s for s in status["steps"] if s["step"] == "impact")
    assert (impact["actor"], impact["actor_by"]) == ("liu-yang", "li-wei")


def test_status_tells_two_runs_of_one_sop_apart_by_what_they_are_about(sop: Callable[..., Any],
                                                                       site: tuple[Engine, dict[str, str]]) -> None:
    """Two traffic-surge runs (services storefront and checkout): each heading says its service (its dedup key)."""
    engine, env = site
    runs = {service: engine.start("traffic-surge", {"service": service}, initiator="li-wei", launch=False).run_id
            for service in ("storefront", "checkout")}
    shown = sop("status", env=env).stdout.splitlines()
    for service, run_id in runs.items():
        head = next(line for line in shown if run_id in line)
        assert f"P2 {run_id} traffic-surge · {service} — running" in head, head
    [row] = json.loads(sop("status", runs["checkout"], "--json", env=env).stdout)
    assert row["subject"] == "checkout"


def test_status_says_the_latest_repeat_and_that_the_alert_resolved(sop: Callable[..., Any],
                                                                   site: tuple[Engine, dict[str, str]]) -> None:
    """A traffic surge its alert started: `sop status` says what the latest repeat said, then that it resolved."""
    from flows.triggers.intake import Intake
    from flows.triggers.model import Alert

    engine, env = site
    intake = Intake(engine)

    def surge(status: str, summary: str) -> Alert:
        return Alert(source="alertmanager", status=status,  # type: ignore[arg-type]
                     labels={"alertname": "HighErrorRate", "severity": "critical", "service": "storefront"},
                     annotations={"summary": summary})

    [started] = intake.alerts([surge("firing", "5xx at 7%")], "token:alertmanager")
    intake.alerts([surge("firing", "5xx at 12%")], "token:alertmanager")
    lines = sop("status", started.run, env=env).stdout.splitlines()
    [repeat] = [line for line in lines if "latest repeat" in line]
    at = local_time(records(engine, started.run, "trigger_repeated")[-1]["at"], "Asia/Shanghai")
    assert repeat.strip() == f"latest repeat {at} (1 in all): 5xx at 12%", repeat
    assert not [line for line in lines if "monitoring:" in line]
    intake.alerts([surge("resolved", "5xx at 12%")], "token:alertmanager")
    lines = sop("status", started.run, env=env).stdout.splitlines()
    at = local_time(records(engine, started.run, "alert_resolved")[-1]["at"], "Asia/Shanghai")
    assert f"monitoring: resolved at {at} (alert HighErrorRate)" in [line.strip() for line in lines], lines
    [row] = json.loads(sop("status", started.run, "--json", env=env).stdout)
    assert row["monitoring"]["resolved_alert"] == "HighErrorRate" and row["monitoring"]["repeat_said"] == "5xx at 12%"
