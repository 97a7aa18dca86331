"""The auditor's desk over HTTP: an auditor (ops-director: li-wei) reads runs, one run's story, the report and
its downloads, and the chain; others are refused. What the desk serves is what ``sop audit …`` prints.

Two runs of the one-step probe ``t-ladder`` (deadline 1h) are played here: a drill at ×7200 whose
responder answers after its deadline (half a second of wall time), and a real run answered at once.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa

from flows.audit.export import from_csv
from flows.audit.report import Compliance
from flows.language.actors import Actor
from flows.language.steps.human import HumanReport
from flows.ledger.schema import records, runs
from tests.conftest import sql_on
from tests.web.conftest import Site, forget_sign_ins
from tests.web.test_pages import field_errors, sign_in


@dataclass
class Played:
    since: str  # an ISO instant just before both runs started: the window of these tests' figures
    drill: str
    real: str

    @property
    def window(self) -> dict[str, str]:
        return {"since": self.since, "sop": "t-ladder"}

    def count(self, site: Site) -> str:
        """The count the window's page must show: the runs of t-ladder the ledger holds since ``since``, these two
        and any another test of this worker started meanwhile (the site is the session's)."""
        with site.engine.ledger.read() as conn:
            n = conn.execute(sa.select(sa.func.count()).select_from(runs).where(
                runs.c.sop_id == "t-ladder", runs.c.started_at >= datetime.fromisoformat(self.since))).scalar_one()
        assert n >= 2
        return f"{n} run(s)"


def _finish(site: Site, run_id: str, person: str) -> None:
    site.engine.report(run_id, "respond", HumanReport(actor=Actor(person=person, via="direct"), values={"answer": "ok"},
                                                      note="probe answered"))


@pytest.fixture(scope="module")
def played(site: Site) -> Played:
    since = (site.engine.clock.now() - timedelta(seconds=1)).isoformat()
    drill = site.engine.start("t-ladder", {}, initiator="drill", speed=7200, trigger={"kind": "drill"},
                              launch=False).run_id
    real = site.engine.start("t-ladder", {}, initiator="tom-becker", trigger={"kind": "manual", "by": "tom-becker"},
                             launch=False).run_id
    _finish(site, real, "zhao-lei")  # at once: well within its hour
    time.sleep(0.8)  # the drill's hour is half a second of wall time at ×7200
    _finish(site, drill, "kenji-sato")
    return Played(since, drill, real)


def _signed_in(site: Site, person: str) -> httpx.Client:
    forget_sign_ins(site.engine.ledger, person)  # one link per person per 30 s: other tests signed them in already
    client = site.client()
    sign_in(site, client, person)
    return client


@pytest.fixture(scope="module")
def auditor(site: Site) -> Iterator[httpx.Client]:
    client = _signed_in(site, "li-wei")  # ops-director: settings.web.auditors
    yield client
    client.close()


@pytest.fixture(scope="module")
def responder(site: Site) -> Iterator[httpx.Client]:
    client = _signed_in(site, "wang-fang")  # PR on-call: not an auditor
    yield client
    client.close()


def cli(sop: Any, site: Site, *args: str) -> str:
    """``sop audit …`` run as a user would, on the site's ledger."""
    done = sop("audit", *args, env={"SOP_HOME": str(site.root),
                                    "SOP_DATABASE_URL": f"sqlite:///{site.root / 'var' / 'ledger.db'}"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def text_of(page: httpx.Response, ident: str) -> str:
    """The text of the element with this id (tags dropped)."""
    found = re.search(rf'id="{ident}"[^>]*>(.*?)</(?:b|span|code|p|div|dl|table)>', page.text, re.S)
    assert found, f"no #{ident} on the page"
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


# --- who may open the desk ---------------------------------------------------------------------


def test_nobody_signed_in_is_asked_to_sign_in(site: Site) -> None:
    with site.client() as client:
        answer = client.get("/desk/report", params={"drills": "exclude"})
    assert answer.status_code == 303 and answer.headers["location"] == "/sign-in?next=%2Fdesk%2Freport%3Fdrills%3Dexclude"


@pytest.mark.parametrize("path", ["/desk", "/desk/report", "/desk/report.csv", "/desk/report.json", "/desk/report.html",
                                  "/desk/runs.csv", "/desk/verify", "/desk/runs/{run}", "/desk/runs/{run}.json"])
def test_a_responder_is_refused_every_page_of_the_desk(site: Site, responder: httpx.Client, played: Played,
                                                       path: str) -> None:
    answer = responder.get(path.format(run=played.real))
    assert answer.status_code == 403
    assert "For auditors only" in answer.text and "Operations Director (Li Wei 李伟, Zhang Min 张敏)" in answer.text
    assert played.real not in answer.text


# --- runs and one run's story ------------------------------------------------------------------


def test_the_runs_with_the_drill_marked(site: Site, auditor: httpx.Client, played: Played) -> None:
    page = auditor.get("/desk", params=played.window)
    assert page.status_code == 200
    assert text_of(page, "run-count") == played.count(site)
    drill_row = re.search(rf'<tr id="run-{played.drill}" class="drill">(.*?)</tr>', page.text, re.S)
    real_row = re.search(rf'<tr id="run-{played.real}">(.*?)</tr>', page.text, re.S)
    assert drill_row and "drill ×7200" in drill_row.group(1) and "missed" in drill_row.group(1)
    assert real_row and "drill" not in real_row.group(1) and "manual by tom-becker" in real_row.group(1)
    assert f'href="/desk/runs/{played.real}"' in page.text
    # times in the reader's zone (li-wei: Asia/Shanghai) with its offset (CST alone is also the US Central's),
    # the UTC instant on hover
    assert re.search(r'<time datetime="[^"]+\+00:00" title="[\d\- :]+ UTC">[\d\- :]+ CST \(UTC\+8\)</time>',
                     page.text)

    left_out = auditor.get("/desk", params={**played.window, "drills": "exclude"})
    assert int(text_of(left_out, "run-count").split()[0]) == int(played.count(site).split()[0]) - 1
    assert played.drill not in left_out.text

    # a time typed as the page shows it (the reader's wall time, no offset) is read in that zone, not as UTC
    typed = datetime.fromisoformat(played.since).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%dT%H:%M:%S")
    local = auditor.get("/desk", params={"since": typed, "sop": "t-ladder"})
    assert text_of(local, "run-count") == played.count(site)
    assert "read in Asia/Shanghai" in text_of(local, "zone-note")


def test_the_runs_csv_is_what_the_command_writes(sop: Any, site: Site, auditor: httpx.Client, played: Played) -> None:
    answer = auditor.get("/desk/runs.csv", params=played.window)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.text == cli(sop, site, "runs", "--csv", "--since", played.since, "--sop", "t-ladder")


def test_a_finished_runs_story(sop: Any, site: Site, auditor: httpx.Client, played: Played) -> None:
    page = auditor.get(f"/desk/runs/{played.real}")
    assert page.status_code == 200
    assert "<h1>Ladder timing probe</h1>" in page.text
    facts = re.sub(r"<[^>]+>", "", re.search(r'id="run-facts">(.*?)</dl>', page.text, re.S).group(1))  # type: ignore[union-attr]
    assert "manual by Tom Becker" in facts and "text verified" in facts and "met" in facts  # by name: the records say ids
    story = page.text.split('id="timeline"', 1)[1]
    assert "done by zhao-lei (direct)" in story and "answer=&#34;ok&#34;" in story and "probe answered" in story
    assert story.index("run started by tom-becker") < story.index("done by zhao-lei") < story.index("run finished")
    assert re.match(r"\S+ after the first ask, by Zhao Lei 赵磊 \(direct\): respond done\n",
                        text_of(page, "acknowledged")), text_of(page, "acknowledged")  # who answered first, by name
    assert 'class="gantt"' in page.text  # the run's chart
    assert "id: t-ladder" in page.text  # the exact SOP text the run used
    # the JSON download is `sop audit show --json`, with the chain it rests on (the file alone says it, and gives the
    # head an auditor re-checks it against later)
    download = auditor.get(f"/desk/runs/{played.real}.json")
    assert download.headers["content-disposition"] == f'attachment; filename="sop-audit-run-{played.real}.json"'
    doc = json.loads(download.text)
    verification = doc.pop("verification")
    assert doc == json.loads(cli(sop, site, "show", played.real, "--json", "--no-verify"))
    assert verification["ok"] is True and verification["first_break"] is None and verification["records"] > 0
    head = verification["head"]
    anchored = cli(sop, site, "verify", "--anchor", f"{head['seq']}:{head['hash']}")
    assert "chain intact" in anchored, anchored


def test_a_prefix_opens_the_run_and_an_unknown_run_is_a_404(auditor: httpx.Client, played: Played) -> None:
    prefix = auditor.get(f"/desk/runs/{played.real[:6]}")
    assert prefix.status_code == 303 and prefix.headers["location"] == f"/desk/runs/{played.real}"
    missing = auditor.get("/desk/runs/ffffffffffff")
    assert missing.status_code == 404 and "no run `ffffffffffff` in the ledger" in missing.text


def test_a_filter_that_does_not_parse_is_shown_beside_its_field(auditor: httpx.Client) -> None:
    page = auditor.get("/desk", params={"since": "yesterday", "class": "urgent"})
    assert page.status_code == 422
    errors = field_errors(page)
    assert errors["since"].startswith("`yesterday` is neither a date, a time nor a duration: write 2026-03-01")
    assert errors["class"] == "unknown class `urgent`: one of complaint, outage, policy, routine"
    assert 'value="yesterday"' in page.text and 'aria-invalid="true" aria-describedby="err-since"' in page.text
    for edge in ({"until": "9999-12-31"}, {"since": "99999999d"}):  # the last and the first day there are
        for page in ("/desk", "/desk/report"):
            assert auditor.get(page, params=edge).status_code == 200, (page, edge)
    no_such_day = auditor.get("/desk", params={"since": "2026-02-30"})
    assert no_such_day.status_code == 422 and "text/html" in no_such_day.headers["content-type"]
    assert field_errors(no_such_day)["since"].startswith("`2026-02-30` is not a day of the calendar")
    backwards = auditor.get("/desk/report", params={"since": "2026-03-02", "until": "2026-03-01"})
    assert backwards.status_code == 422 and "is not before --until" in field_errors(backwards)["until"]
    typo = auditor.get("/desk", params={"sop": "t-ladr"})  # no such SOP: not "0 run(s)", the closest name
    assert typo.status_code == 422 and field_errors(typo)["sop"].startswith("no SOP `t-ladr`")
    assert "did you mean t-ladder?" in field_errors(typo)["sop"]
    wrong = auditor.get("/desk/report.csv", params={"drills": "skip"})  # a download asked wrongly: the form says why
    assert wrong.status_code == 422 and field_errors(wrong)["drills"].startswith("unknown drills choice `skip`")


# --- the report ----------------------------------------------------------------------------------


def test_the_report_csv_has_the_rows_of_the_command(sop: Any, site: Site, auditor: httpx.Client, played: Played) -> None:
    download = auditor.get("/desk/report.csv")
    assert download.status_code == 200
    assert download.headers["content-disposition"] == 'attachment; filename="sop-audit-report.csv"'
    assert from_csv(download.text, Compliance) == from_csv(cli(sop, site, "report", "--csv", "-"), Compliance)
    assert list(csv.reader(io.StringIO(download.text)))[0][:3] == ["scope", "key", "runs"]


def test_leaving_the_drill_out_changes_the_figures(sop: Any, site: Site, auditor: httpx.Client, played: Played) -> None:
    def kpis(drills: str) -> tuple[str, str]:
        page = auditor.get("/desk/report", params={**played.window, "drills": drills})
        assert page.status_code == 200
        return text_of(page, "kpi-runs"), text_of(page, "kpi-on-time")

    assert kpis("include") == ("2", "50%")  # the real run met its hour, the drill missed its
    counted = auditor.get("/desk/report", params={**played.window, "drills": "include"})
    assert "1 drill counted with the real runs" in counted.text  # the figures say the drill is in them
    assert kpis("exclude") == ("1", "100%")
    assert kpis("only") == ("1", "0%")
    page = auditor.get("/desk/report", params={**played.window, "drills": "exclude"})
    assert "drills left out" in page.text and 'href="/desk/report.csv?since=' in page.text
    download = auditor.get("/desk/report.csv", params={**played.window, "drills": "exclude"})
    rows = from_csv(download.text, Compliance)
    assert rows == from_csv(cli(sop, site, "report", "--csv", "-", "--drills", "exclude", "--since", played.since,
                                "--sop", "t-ladder"), Compliance)
    assert (rows[0].runs, rows[0].met, rows[0].missed) == (1, 1, 0)
    figures = json.loads(auditor.get("/desk/report.json", params={**played.window, "drills": "exclude"}).text)
    assert figures["drills"] == "exclude" and [r["run"] for r in figures["runs"]] == [played.real]


def test_late_steps_by_role_name_the_roles_by_their_titles(auditor: httpx.Client, played: Played) -> None:
    """The desk names roles as every page does ("SRE on-call"), the role's id on hover; the CSV keeps ids."""
    page = auditor.get("/desk/report", params=played.window).text
    table = re.search(r'<table class="compliance" id="by-role">(.*?)</table>', page, re.S)
    assert table, "no late steps by role"
    assert '<th scope="row" title="sre-oncall">SRE on-call</th>' in table.group(1), table.group(1)


def test_every_desk_page_says_when_the_chain_does_not_verify(site: Site, auditor: httpx.Client, played: Played) -> None:
    """A forged verdict is shown under a warning: the desk's pages read what the ledger holds, the chain says whether
    that is what happened. The verify page's walk is the newest the pages show (else one a minute at most)."""
    url = site.engine.ledger.url
    [[row]] = sql_on(url, ("SELECT seq, data FROM records WHERE run_id = ? AND kind = 'step_done'", (played.drill,)))
    forged = json.dumps({**json.loads(row["data"]), "deadline_met": True})  # the drill's late answer made on time
    assert auditor.get("/desk/verify").status_code == 200
    story = auditor.get(f"/desk/runs/{played.drill}")
    assert 'id="chain-state"' not in story.text and "verified intact" in text_of(story, "chain-checked")
    sql_on(url, ("UPDATE records SET data = ? WHERE seq = ?", (forged, row["seq"])))
    try:
        assert "does not verify" in auditor.get("/desk/verify").text
        for path in (f"/desk/runs/{played.drill}", "/desk/report", "/desk"):
            page = auditor.get(path, params=played.window if path != f"/desk/runs/{played.drill}" else None)
            banner = text_of(page, "chain-state")
            assert banner.startswith("The ledger's hash chain does not verify") and "may have been edited" in banner
            assert "found broken" in text_of(page, "chain-checked")
        # where it is read: the run's row in the list, and the record in its story
        listed = auditor.get("/desk", params=played.window).text

        def run_row(run_id: str) -> str:
            return re.search(rf'<tr id="run-{run_id}"[^>]*>(.*?)</tr>', listed, re.S).group(1)  # type: ignore[union-attr]

        assert f"✗ record {row['seq']} edited" in run_row(played.drill)
        assert "✗ record" not in run_row(played.real)
        story = auditor.get(f"/desk/runs/{played.drill}").text
        told = re.search(rf'<li id="record-{row["seq"]}"[^>]*>(.*?)</li>', story, re.S)
        assert told and "✗ this record does not match the chain (edited)" in told.group(1)
        assert story.count("does not match the chain") == 1
    finally:
        sql_on(url, ("UPDATE records SET data = ? WHERE seq = ?", (row["data"], row["seq"])))
        auditor.get("/desk/verify")  # the pages' newest walk: intact again
    assert 'id="chain-state"' not in auditor.get(f"/desk/runs/{played.drill}").text


def test_a_page_never_waits_for_the_chain_walk(site: Site) -> None:
    """The walk (seconds on a long chain) runs on a thread of its own: the first page says it is under way."""
    from flows.web.app import Web
    from tests.engine.conftest import wait_for

    web = Web(site.engine)
    assert web.chain() is None  # none yet: one begun, the page is not held for it
    checked = wait_for(web.chain, 30, "the walk in the background")
    assert checked.result.ok and checked.result.records > 0


def test_the_printable_report_is_the_commands_with_the_chain_verified(auditor: httpx.Client, played: Played) -> None:
    page = auditor.get("/desk/report.html", params={**played.window, "drills": "exclude"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<h1>SOP audit report</h1>" in page.text and "Hash chain verified" in page.text
    assert "drills left out" in page.text and f'id="run-{played.real}"' in page.text
    assert f'id="run-{played.drill}"' not in page.text
    assert "<script" not in page.text


# --- the chain -----------------------------------------------------------------------------------


def test_the_chain_verified_with_the_head_to_note_down(site: Site, auditor: httpx.Client) -> None:
    page = auditor.get("/desk/verify")
    assert page.status_code == 200 and "✓ Chain intact" in text_of(page, "verdict")
    seq, digest = int(text_of(page, "head-seq")), text_of(page, "head-hash")
    with site.engine.ledger.read() as conn:
        assert conn.execute(sa.select(records.c.hash).where(records.c.seq == seq)).scalar() == digest
    assert f"sop audit verify --anchor {seq}:{digest}" in page.text

    again = auditor.get("/desk/verify", params={"anchor": f"{seq}:{digest}"})
    assert "the noted head still stands" in text_of(again, "verdict")
    rewritten = auditor.get("/desk/verify", params={"anchor": f"{seq}:{'0' * 64}"})
    assert rewritten.status_code == 200 and "The ledger does not verify" in rewritten.text
    assert f"record {seq}: <strong>rewritten</strong>" in rewritten.text
    assert "sop audit verify --anchor" not in rewritten.text  # a head to note down only from a chain that verifies
    wrong = auditor.get("/desk/verify", params={"anchor": "12:abc"})
    assert wrong.status_code == 422
    assert field_errors(wrong)["anchor"].startswith("anchor `12:abc` is not SEQ:HASH")


def test_records_past_the_head_are_said_and_their_newest_is_given_to_note_down_too(
        sop: Any, site: Site, auditor: httpx.Client) -> None:
    """The last records of a process that stopped are in no checkpoint: cut, they would leave no trace, and the head
    alone would still stand. The page says how many there are and gives the newest to note down with the head."""
    ledger = site.engine.ledger
    every, ledger.checkpoint_every = ledger.checkpoint_every, None  # this process writes no checkpoint meanwhile
    try:
        ledger.checkpoint()
        run_id = site.engine.start("t-ladder", {}, initiator="tom-becker", launch=False,
                                   trigger={"kind": "manual", "by": "tom-becker"}).run_id
        page = auditor.get("/desk/verify")
    finally:
        ledger.checkpoint_every = every
    assert "✓ Chain intact" in text_of(page, "verdict")
    said = text_of(page, "past-head")
    assert re.match(r"\d+ record\(s\) were written after the head, in no checkpoint yet", said), said
    with ledger.read() as conn:
        started = conn.execute(sa.select(records.c.seq).where((records.c.run_id == run_id)
                                                              & (records.c.kind == "run_started"))).scalar_one()
    head = f"{text_of(page, 'head-seq')}:{text_of(page, 'head-hash')}"
    command = re.search(r"sop audit verify((?: --anchor \d+:[0-9a-f]{64})+)", page.text)
    assert command, "no command to note down"
    anchors = command.group(1).split()[1::2]
    assert anchors[0] == head and len(anchors) >= 2 and int(anchors[-1].split(":")[0]) >= started, anchors
    assert "chain intact" in cli(sop, site, "verify", *(f"--anchor={anchor}" for anchor in anchors))
    _finish(site, run_id, "zhao-lei")


def test_a_runs_story_lists_who_was_escalated_to_and_when(site: Site, auditor: httpx.Client) -> None:
    """The review's first question, answered in one table instead of among every record: each level, when (SOP time),
    the ladder's targets and whom they reached, and help a person asked for, by whom."""
    run_id = site.engine.start("t-ladder", {}, initiator="tom-becker", trigger={"kind": "manual", "by": "tom-becker"},
                               launch=False).run_id
    holder = site.engine.person_for("sre-oncall")
    site.engine.ask_for_help(run_id, "respond", Actor(person=holder, via="direct"), "disk full, need a hand")
    page = auditor.get(f"/desk/runs/{run_id}")
    assert page.status_code == 200
    table = re.search(r'<table class="[^"]*" id="ladder">(.*?)</table>', page.text, re.S)
    assert table, "no escalations table"
    rows = [[re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", table.group(1).split("<tbody>", 1)[1], re.S)]
    assert rows, table.group(1)
    assert rows[0][1] == "respond" and rows[0][2].startswith("help asked") and f"by {holder}" in rows[0][2]
    escalated = [row for row in rows if row[2].startswith("escalation stage")]
    assert escalated and escalated[0][3] == "lead" and escalated[0][4] == "Tom Becker", rows  # by name, as above it
    # when on the wall clock too (the reader's zone), and the record it came from, a link into Every record
    assert re.fullmatch(r"\+\S+?\s*\d{4}-\d\d-\d\d \d\d:\d\d CST \(UTC\+8\) #\d+", escalated[0][0]), escalated[0][0]
    seq = escalated[0][0].rsplit("#", 1)[1]
    assert f'<a href="#record-{seq}">#{seq}</a>' in page.text and f'<li id="record-{seq}"' in page.text
    _finish(site, run_id, holder)


def ladder_rows(page: httpx.Response) -> list[list[str]]:
    """The cells of the run page's Escalations table, row by row."""
    table = re.search(r'<table class="[^"]*" id="ladder">(.*?)</table>', page.text, re.S)
    assert table, "no escalations table"
    return [[re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", table.group(1).split("<tbody>", 1)[1], re.S)]


def test_a_level_that_paged_nobody_in_the_drill_says_why(site: Site, auditor: httpx.Client) -> None:
    """A game day of Li Wei alone: the lead the holder's "Need help" fires is not in it, so the level reached nobody,
    and the table says why instead of a bare dash (which also stood for records that do not say)."""
    run_id = site.engine.start("t-ladder", {}, initiator="li-wei", speed=60, launch=False,
                               trigger={"kind": "drill", "by": "li-wei", "people": ["li-wei"]}).run_id
    holder = site.engine.person_for("sre-oncall")
    site.engine.ask_for_help(run_id, "respond", Actor(person=holder, via="direct"), "stuck")
    [escalated] = [row for row in ladder_rows(auditor.get(f"/desk/runs/{run_id}")) if row[2].startswith("escalation")]
    assert escalated[3:] == ["lead", "nobody: none of them takes part in the drill (Tom Becker)"], escalated
    _finish(site, run_id, holder)


def test_a_run_downloaded_after_the_last_walk_is_vouched_for_by_a_walk_that_reached_its_records(
        site: Site, auditor: httpx.Client) -> None:
    """The review's finding: the download reused the desk's last walk (up to a minute old), so a run's records written
    since (its end) were in a file that said "verified" without any walk having read them."""
    run_id = site.engine.start("t-ladder", {}, initiator="tom-becker", trigger={"kind": "manual", "by": "tom-becker"},
                               launch=False).run_id
    assert auditor.get("/desk/verify").status_code == 200  # a walk now: the desk's last
    _finish(site, run_id, "zhao-lei")  # the run's last records, after that walk
    doc = json.loads(auditor.get(f"/desk/runs/{run_id}.json").text)
    last = max(entry["seq"] for entry in doc["timeline"])
    with site.engine.ledger.read() as conn:  # every record there was when the run's last was written
        written = conn.execute(sa.select(sa.func.count()).select_from(records).where(records.c.seq <= last)).scalar_one()
    assert doc["verification"]["ok"] is True and doc["verification"]["records"] >= written, (doc["verification"], written)
