"""`sop status --short` with several incidents open: one line per run, the most urgent first (complaint > outage >
policy > routine, then the least time left), each saying its SOP and subject, its state, its next due and the time
left, and who holds the step that runs out first."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from flows.engine.transitions import Engine
from flows.language.actors import Actor


def test_one_line_per_open_run_the_most_urgent_first(sop: Any, site: tuple[Engine, dict[str, str]]) -> None:
    engine, env = site

    def start(sop_id: str, inputs: dict[str, Any], speed: float | None = None) -> str:
        return engine.start(sop_id, inputs, initiator="li-wei", launch=False, speed=speed).run_id

    # started in no order of urgency: a policy change, a routine review, an outage, two complaints
    policy = start("creative-refresh", {"platform": "douyin"})
    routine = start("weekly-review", {})
    outage = start("traffic-drop", {"site": "storefront"})
    lumi = start("crisis-pr", {"brand": "lumi"})
    acme = start("crisis-pr", {"brand": "acme"}, speed=3600)  # a drill's pace: its 15 minutes pass in 0.25 s
    engine.claim(lumi, "assess", Actor("sara-lopez", via="cli"))
    for step in ("impact", "rules"):  # both its steps wait for the platform's answer
        engine.hold(policy, step, Actor("li-wei", via="cli"), "platform_reply", "ticket 4411")
    time.sleep(0.5)

    shown = sop("status", "--short", env=env)
    assert shown.returncode == 0, shown.stderr
    lines = [line.split() for line in shown.stdout.splitlines() if re.match(r"P\d ", line)]
    assert [line[1] for line in lines] == [acme, lumi, outage, policy, routine]
    said = {line[1]: " ".join(line) for line in lines}
    assert re.fullmatch(rf"P1 {acme} Crisis PR · acme overdue assess (?:\d\d-\d\d )?\d\d:\d\d \S+ overdue wang-fang", said[acme])
    assert re.fullmatch(rf"P1 {lumi} Crisis PR · lumi running assess (?:\d\d-\d\d )?\d\d:\d\d 1[45]m\S* left sara-lopez", said[lumi])
    assert said[outage].startswith(f"P2 {outage} Traffic drop · storefront running confirm ")
    # its steps wait for the platform: their clocks stopped, the run's 48h deadline is what comes next
    assert re.fullmatch(rf"P3 {policy} Creative refresh .* on hold run \d\d-\d\d \d\d:\d\d 1d2[34]h\S* left \S+",
                        said[policy]), said[policy]
    assert said[routine].startswith(f"P4 {routine} Weekly")
    assert "times CST (UTC+8); time left in SOP time" in shown.stdout  # the site's zone

    facts = json.loads(sop("status", "--short", "--json", env=env).stdout)
    assert [(f["run"], f["priority"], f["state"], f["due"]) for f in facts][:4] == [
        (acme, "P1", "overdue", "assess"), (lumi, "P1", "running", "assess"), (outage, "P2", "running", "confirm"),
        (policy, "P3", "on hold", "run")]
    assert facts[1]["holder"] == "sara-lopez" and facts[0]["role"] == "pr-oncall"

    one = sop("status", lumi[:6], "-s", env=env)  # one run, by a prefix of its id
    assert [line.split()[1] for line in one.stdout.splitlines() if line.startswith("P")] == [lumi]


def test_the_help_says_what_the_short_view_shows(sop: Any) -> None:
    said = " ".join(sop("status", "--help").stdout.split())
    assert "--short" in said and "one line per run" in said and "who holds the most urgent step" in said
