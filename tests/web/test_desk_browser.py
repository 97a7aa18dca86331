"""The auditor's desk in a real browser (Debian's Chromium, at phone and desk sizes): an auditor signs in,
finds a finished run, reads its story, downloads the report's CSV (the rows of ``sop audit report --csv``),
leaves the drill out of the figures, and notes the chain's head. Screenshots under ``var/test-artifacts/web/``.
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.audit.export import from_csv
from flows.audit.report import Compliance
from flows.language.actors import Actor
from tests.web.conftest import Site, forget_sign_ins
from tests.web.test_browser import CHROMIUM, browser, open_page, size  # noqa: F401 - the browser's fixtures
from tests.web.test_desk import Played, _finish, cli

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed: run `sudo make deps-system`")
AUDITOR = {"phone": "li-wei", "desk": "zhang-min"}  # both ops-director (settings.web.auditors): one sign-in link each


@pytest.fixture(scope="module")
def played(site: Site) -> Played:
    """A real run of t-ladder answered at once (met), and a drill at ×7200 answered after its hour (missed)."""
    since = (site.engine.clock.now() - timedelta(seconds=1)).isoformat()
    real = site.engine.start("t-ladder", {}, initiator="sun-hao", trigger={"kind": "manual", "by": "sun-hao"},
                             launch=False).run_id
    drill = site.engine.start("t-ladder", {}, initiator="drill", speed=7200, trigger={"kind": "drill"},
                              launch=False).run_id
    _finish(site, real, "zhao-lei")
    time.sleep(0.8)
    _finish(site, drill, "kenji-sato")
    return Played(since, drill, real)


def sign_in_as(site: Site, page: Any, person: str, path: str) -> None:
    """Open ``path``, be sent to sign in, ask for a link, open it from the inbox: back at ``path``."""
    forget_sign_ins(site.engine.ledger, person)  # one link per person per 30 s: other tests signed them in
    page.goto(f"{site.url}{path}")
    assert "/sign-in?next=" in page.url
    before = len(site.inbox(person))
    page.fill("#who", person)
    page.get_by_role("button", name="Send me a link").click()
    page.goto(site.sign_in_link(person, before))
    page.get_by_role("button", name="Sign in").click()  # the link's page: one button uses it
    page.wait_for_url(f"{site.url}{path}")


def downloaded(page: Any, link: Any) -> str:
    with page.expect_download() as info:
        link.click()
    return Path(info.value.path()).read_text(encoding="utf-8")


def test_an_auditor_reads_a_finished_run_and_downloads_the_report(sop: Any, site: Site, open_page: Any,  # noqa: F811
                                                                   size: str, played: Played) -> None:  # noqa: F811
    page = open_page()
    sign_in_as(site, page, AUDITOR[size], "/desk")
    assert page.locator("h1").inner_text() == "Runs"

    # the runs of the probe since just before they started, typed in the form and sent with the keyboard
    page.fill("#f-since", played.since)
    page.fill("#f-sop", "t-ladder")
    page.locator("#f-sop").press("Enter")
    assert page.locator("#run-count").inner_text() == played.count(site)
    drill_row = page.locator(f"#run-{played.drill}")
    assert "drill ×7200" in drill_row.inner_text() and "missed" in drill_row.inner_text()
    assert "drill" not in page.locator(f"#run-{played.real}").inner_text()
    page.shot("desk-runs")

    # one finished run's whole story, with its chart; times in the reader's zone, UTC on hover
    page.get_by_role("link", name=played.real).click()
    page.wait_for_url(f"{site.url}/desk/runs/{played.real}")
    assert page.locator("h1").inner_text() == "Ladder timing probe"
    story = page.locator("#timeline").inner_text()
    assert "run started by sun-hao" in story and "done by zhao-lei (direct)" in story and "run finished" in story
    assert page.locator("svg.gantt:visible").count() == 1  # the one drawn for the screen's width
    started = page.locator("#run-facts time").first
    assert started.inner_text().endswith("CST (UTC+8)") and started.get_attribute("title").endswith(" UTC")
    page.shot("desk-run")

    # the report: its CSV holds the rows `sop audit report --csv` writes
    page.get_by_role("link", name="Report").click()
    assert page.locator("h1").inner_text() == "Compliance report"
    csv_text = downloaded(page, page.locator("#downloads").get_by_role("link", name="CSV"))
    assert from_csv(csv_text, Compliance) == from_csv(cli(sop, site, "report", "--csv", "-"), Compliance)

    # leave the drill out: the figures change, and the download follows the form
    page.fill("#f-since", played.since)
    page.fill("#f-sop", "t-ladder")
    assert (page.locator("#kpi-runs").inner_text(), page.locator("#kpi-on-time").inner_text()) != ("1", "100%")
    page.select_option("#f-drills", "exclude")
    page.get_by_role("button", name="Show").click()
    # the figures `sop audit report` gives for the same window: this run, and any other this worker's tests ended
    overall = json.loads(cli(sop, site, "report", "--json", "-", "--since", played.since, "--sop", "t-ladder",
                             "--drills", "exclude"))["overall"]
    assert overall["runs"] >= 1 and overall["on_time_pct"] == 100.0
    assert (page.locator("#kpi-runs").inner_text(), page.locator("#kpi-on-time").inner_text()) == (
        str(overall["runs"]), "100%")
    assert "drills left out" in page.locator(".summary").inner_text()
    assert page.locator(".charts svg.gantt:visible").count() == overall["runs"]  # a chart per run
    page.shot("desk-report")
    csv_text = downloaded(page, page.locator("#downloads").get_by_role("link", name="CSV"))
    expected = cli(sop, site, "report", "--csv", "-", "--since", played.since, "--sop", "t-ladder", "--drills", "exclude")
    assert from_csv(csv_text, Compliance) == from_csv(expected, Compliance)

    # a window that does not parse is said beside its field, nothing else lost
    page.fill("#f-since", "last tuesday")
    page.get_by_role("button", name="Show").click()
    assert page.locator("#err-since").inner_text().startswith("`last tuesday` is neither a date, a time nor a duration")
    assert page.locator("#f-sop").input_value() == "t-ladder"
    page.shot("desk-report-error")

    # the chain, and the head to note down
    page.get_by_role("link", name="Verify the chain").click()
    assert page.locator("#verdict").inner_text().startswith("✓ Chain intact")
    assert re.fullmatch(r"[0-9a-f]{64}", page.locator("#head-hash").inner_text())
    page.shot("desk-verify")
    assert page.outside == []  # type: ignore[attr-defined]


def test_whom_each_escalation_reached_is_on_screen_at_either_width(
        site: Site, open_page: Any, size: str) -> None:  # noqa: F811
    """On a phone the Escalations table scrolled sideways with Reached, what a review reads first, off the screen:
    now a card per level, as Deadlines, every line of it within the page's width."""
    run_id = site.engine.start("t-ladder", {}, initiator="tom-becker", launch=False,
                               trigger={"kind": "manual", "by": "tom-becker"}).run_id
    holder = site.engine.person_for("sre-oncall")
    site.engine.ask_for_help(run_id, "respond", Actor(person=holder, via="direct"), "need a hand")
    page = open_page()
    sign_in_as(site, page, AUDITOR[size], f"/desk/runs/{run_id}")
    reached = page.locator("#ladder td[data-label=Reached]").last
    assert reached.inner_text() == "Tom Becker"
    box, width = reached.bounding_box(), page.viewport_size["width"]
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (box, width)
    page.shot("desk-escalations")
    _finish(site, run_id, holder)


def test_a_responder_cannot_open_the_desk(site: Site, open_page: Any, size: str) -> None:  # noqa: F811
    page = open_page()
    person = {"phone": "wang-fang", "desk": "sara-lopez"}[size]
    sign_in_as(site, page, person, "/")
    response = page.goto(f"{site.url}/desk/report")
    assert response.status == 403 and page.locator("h1").inner_text() == "For auditors only"
    page.shot("desk-refused")
