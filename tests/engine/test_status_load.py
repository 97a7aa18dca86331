"""`sop status --for PERSON` and `sop status --people` on a big-sale day: what waits on one person across the open runs
(assigned to them as their role's primary now, held, handed to them, escalated to them), most urgent first, and one
line per person with open steps."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.engine import outbox
from flows.engine.oncall import add_override
from flows.engine.paging import Pager
from flows.engine.timers import TimerService
from flows.engine.transitions import Engine, Page
from flows.language.actors import Actor
from flows.language.library import load_library
from flows.ledger import Ledger
from flows.ledger.schema import outbox as outbox_table
from flows.ledger.schema import records
from tests.conftest import TestDatabase
from tests.engine.conftest import make_project


@pytest.fixture
def site(database: TestDatabase, repo_root: Path, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Engine, dict[str, str]]]:
    root = make_project(repo_root, tmp_path / "site")
    roles = root / "config" / "roles.yaml"  # the director also stands in as data analyst (an override needs a member)
    roles.write_text(roles.read_text().replace("members: [priya-nair, liu-yang]", "members: [priya-nair, liu-yang, li-wei]"))
    url = database.url_at(root / "var" / "ledger.db")
    monkeypatch.setenv("SOP_INBOX_DIR", str(root / "var" / "inbox"))
    ledger = Ledger(url)
    ledger.migrate()
    library = load_library(root)
    engine = Engine(library, ledger, pager=Pager(library.site, ledger))
    yield engine, {"SOP_HOME": str(root), "SOP_DATABASE_URL": url, "SOP_INBOX_DIR": str(root / "var" / "inbox")}
    engine.pager.close()
    ledger.dispose()


def _escalated_to_director(engine: Engine, run_id: str) -> None:
    """Fire the run's ladder (a drill's pace) until it pages the ops director, and deliver the pages."""
    service = TimerService(engine, name="load-test")
    deadline = time.monotonic() + 30
    while True:
        with engine.ledger.read() as conn:
            said = [json.loads(r.data or "{}") for r in conn.execute(
                records.select().where((records.c.run_id == run_id) & (records.c.kind == "escalation")))]
        if any("ops-director" in s.get("notify", []) for s in said):
            break
        assert time.monotonic() < deadline, "the ladder never reached ops-director"
        service.fire_due()
        time.sleep(0.2)
    engine.pager.close()  # every page delivered (and recorded)


def test_what_waits_on_one_person_across_runs_most_urgent_first(sop: Any, site: tuple[Engine, dict[str, str]]) -> None:
    engine, env = site
    director = Actor("li-wei", via="cli")

    def start(sop_id: str, inputs: dict[str, Any], speed: float | None = None) -> str:
        return engine.start(sop_id, inputs, initiator="li-wei", launch=False, speed=speed).run_id

    routine = start("weekly-review", {})  # its pack is the data analyst's: li-wei stands in for her now
    policy = start("creative-refresh", {"platform": "douyin"})
    outage = start("traffic-drop", {"site": "storefront"})
    complaint = start("crisis-pr", {"brand": "lumi"}, speed=900)  # its 15 minutes pass in a second
    now = engine.clock.now()
    add_override(engine.site, engine.ledger, "data-analyst", "li-wei", now - timedelta(minutes=1),
                 now + timedelta(hours=4), "priya is on a plane", director)
    engine.claim(outage, "confirm", director)  # he took over the outage's first step himself
    engine.hand_over(policy, "impact", Actor("zhang-min", via="cli"), "li-wei", "you know the platform")
    _escalated_to_director(engine, complaint)  # not his role's step: its ladder paged him

    shown = sop("status", "--for", "li-wei", env=env)
    assert shown.returncode == 0, shown.stderr
    lines = [" ".join(line.split()) for line in shown.stdout.splitlines() if re.match(r"P\d ", line)]
    assert [line.split()[1] for line in lines] == [complaint, outage, policy, routine], shown.stdout
    # a due on another day of the site's zone (UTC+8: after 15:30 UTC for a 30m due) shows its date too
    assert re.search(r"assess escalation stage 3, repeat 1 (?:\d\d-\d\d )?\d\d:\d\d \S+ overdue$", lines[0]), lines[0]
    assert re.search(r"Traffic drop · storefront confirm holding (?:\d\d-\d\d )?\d\d:\d\d \d+m\S* left$", lines[1]), lines[1]
    assert re.search(r"impact handed by zhang-min ", lines[2]), lines[2]
    assert re.search(r"Weekly.* pack assigned ", lines[3]), lines[3]
    assert "li-wei: 4 open step(s), 1 overdue, most urgent first" in " ".join(shown.stdout.split())

    facts = json.loads(sop("status", "--for", "li-wei", "--json", env=env).stdout)
    assert [(f["run"], f["step"], f["why"]) for f in facts] == [
        (complaint, "assess", "escalated"), (outage, "confirm", "holding"), (policy, "impact", "handed"),
        (routine, "pack", "assigned")]
    assert facts[2]["handed_by"] == "zhang-min" and facts[0]["overdue"] is True

    one = sop("status", "--for", "li-wei", "--short", env=env)
    said = " ".join(one.stdout.split())
    assert re.fullmatch(rf"li-wei: 4 open step\(s\), 1 overdue; most urgent P1 {complaint} Crisis PR · lumi / assess, "
                        r"\S+ overdue \(escalation stage 3, repeat 1\)", said), said

    # everyone's load, the most overdue first: the complaint's step is overdue for its primary, for li-wei, and for
    # its backup and lead its ladder paged (members of its role, not only free to take it); then by the most urgent
    # step, the most steps, the name
    everyone = sop("status", "--people", env=env)
    assert everyone.returncode == 0, everyone.stderr
    lines = {line.split(":")[0]: " ".join(line.split()) for line in everyone.stdout.splitlines()
             if re.match(r"[a-z-]+: +\d+ open", line)}
    assert list(lines)[:5] == ["li-wei", "chen-jie", "sara-lopez", "wang-fang", "sun-hao"], everyone.stdout
    # her stage is the one whose page reached her (the lead's and backup's), not the director's it reached since
    assert re.fullmatch(rf"sara-lopez: 2 open step\(s\), 1 overdue; most urgent P1 {complaint} Crisis PR · lumi / "
                        r"assess, \S+ overdue \(escalation stage 2\)", lines["sara-lopez"]), lines["sara-lopez"]
    assert "priya-nair" not in lines  # her steps went to who stands in for her: a member who may take them is no load
    loads = {f["person"]: f for f in json.loads(sop("status", "--people", "--json", env=env).stdout)}
    assert (loads["li-wei"]["steps"], loads["li-wei"]["overdue"]) == (4, 1)
    assert (loads["wang-fang"]["most_urgent"]["run"], loads["wang-fang"]["most_urgent"]["why"]) == (complaint, "assigned")


def test_someone_with_nothing_gets_one_line(sop: Any, site: tuple[Engine, dict[str, str]]) -> None:
    engine, env = site
    engine.start("crisis-pr", {"brand": "acme"}, initiator="li-wei", launch=False)
    shown = sop("status", "--for", "he-xin", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "nothing waits on he-xin: none of the 1 open run(s) has a step that is theirs"
    assert json.loads(sop("status", "--for", "he-xin", "--json", env=env).stdout) == []


def test_an_unknown_person_gets_did_you_mean(sop: Any, site: tuple[Engine, dict[str, str]]) -> None:
    _, env = site
    shown = sop("status", "--for", "sara-lopes", env=env)
    assert shown.returncode == 1
    said = " ".join(shown.stderr.split())
    assert "--for `sara-lopes` is not a person in config/; did you mean `sara-lopez`?" in said, said
    assert "Traceback" not in shown.stderr
    both = sop("status", "--for", "li-wei", "--people", env=env)
    assert both.returncode == 1 and "ask for one" in both.stderr


def test_me_is_who_this_terminal_is(sop: Any, site: tuple[Engine, dict[str, str]]) -> None:
    engine, env = site
    run = engine.start("crisis-pr", {"brand": "acme"}, initiator="li-wei", launch=False).run_id
    shown = sop("status", "--for", "me", "--json", env={**env, "SOP_ACTOR": "wang-fang"})
    assert shown.returncode == 0, shown.stderr
    assert [(f["run"], f["step"], f["why"]) for f in json.loads(shown.stdout)] == [(run, "assess", "assigned")]


def test_both_views_say_when_pages_have_waited(sop: Any, site: tuple[Engine, dict[str, str]]) -> None:
    engine, env = site
    run = engine.start("crisis-pr", {"brand": "acme"}, initiator="li-wei", launch=False).run_id
    with engine.ledger.transaction() as tx:  # a page nobody sent for 3 minutes: no pager process is alive
        outbox.queue(tx, [Page("run_started", run, None, ["pr-lead"])], claimed_by=None)
    with engine.ledger.transaction() as tx:  # (queued with the commit on PostgreSQL: Tx.defer)
        tx.conn.execute(outbox_table.update().values(queued_at=outbox.wall() - timedelta(minutes=3)))
    for view in (["--for", "wang-fang"], ["--for", "wang-fang", "--short"], ["--people"]):
        shown = sop("status", *view, env=env)
        assert shown.returncode == 0, shown.stderr
        first = " ".join(shown.stdout.splitlines()[0].split())
        assert re.fullmatch(r"\d+ page\(s\) waiting to be sent, the oldest for \d+s \(no pager process is alive: "
                            r"start `sop serve` or `sop pager`\)", first), (view, shown.stdout)
        assert "wang-fang" in shown.stdout
    assert json.loads(sop("status", "--for", "wang-fang", "--json", env=env).stdout)[0]["run"] == run  # JSON only


@pytest.mark.parametrize("columns", [60, 80])
def test_a_laptop_half_screen_reads_every_view_whole(sop: Any, site: tuple[Engine, dict[str, str]], columns: int) -> None:
    engine, env = site
    runs = [engine.start(sop_id, inputs, initiator="li-wei", launch=False).run_id for sop_id, inputs in
            (("crisis-pr", {"brand": "lumi"}), ("traffic-drop", {"site": "storefront"}),
             ("creative-refresh", {"platform": "douyin"}))]  # its title is long, with no dash to cut it at
    engine.claim(runs[1], "confirm", Actor("li-wei", via="cli"))
    engine.hand_over(runs[2], "impact", Actor("zhang-min", via="cli"), "li-wei", "you know the platform")
    narrow = {**env, "COLUMNS": str(columns)}

    def shown(*args: str) -> list[str]:
        out = sop("status", *args, env=narrow)
        assert out.returncode == 0, out.stderr
        lines = [line.rstrip() for line in out.stdout.splitlines()]
        assert max(len(line) for line in lines) <= columns, "\n" + out.stdout  # no line the terminal breaks
        return lines

    mine = shown("--for", "li-wei")
    rows = [line.split() for line in mine if re.match(r"P\d ", line)]
    assert [(row[1], row[-3] if row[-1] == "left" else None) for row in rows] == [
        (runs[1], "confirm"), (runs[2], "impact")], "\n".join(mine)  # the run and the step whole: what `sop done` takes
    about = "\n".join(mine)
    assert "P2  " + runs[1] + "  Traffic drop · sto" in about  # the SOP and its subject, cut to the room left
    assert re.search(r"^ +holding\s*$", about, re.M) and re.search(r"^ +handed by zhang-min\s*$", about, re.M), about

    board = shown("--short")
    assert [line.split()[1] for line in board if re.match(r"P\d ", line)] == runs, "\n".join(board)
    # the title cut to the room left: less of it when a due falls on another day and shows its date (after 16:00 UTC
    # creative-refresh's 4h due is tomorrow in the site's UTC+8), so only its start is certain
    assert any("Crisis PR ·" in line for line in board), "\n".join(board)

    everyone = " ".join(" ".join(shown("--people")).split())  # each person's words wrap beside their name
    assert f"li-wei: 2 open step(s); most urgent P2 {runs[1]} Traffic drop · storefront / confirm," in everyone
    one = " ".join(" ".join(shown("--for", "li-wei", "--short")).split())
    assert one.startswith(f"li-wei: 2 open step(s); most urgent P2 {runs[1]} Traffic drop · storefront / confirm, ")
