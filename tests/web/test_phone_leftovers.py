"""What the walk of 2026-12-07 left on the people's pages, each as its reader sees it on a 390 px phone (Debian's
Chromium): the run chart's ~6 px labels (walk #27), the run page's long list of pages sent (#15), a constant dedup key
read as a second title (#14), and the backup a "Need help" pages named without the role they answer for.
Screenshots under ``var/test-artifacts/web/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from flows.audit import Audit
from flows.engine.oncall import on_call_now
from flows.language.actors import Actor
from tests.engine.conftest import wait_for
from tests.web.conftest import Site
from tests.web.test_browser import CHROMIUM, brand, browser, browser_sign_in, open_page  # noqa: F401 - the browser's fixtures
from tests.web.test_phone_walk import assessed

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed: run `sudo make deps-system`")
REVIEW = "Service-process review - complaint rate up 30% month over month"
CRISIS = "Crisis PR - negative mentions spike (more than 100 a day)"
#: the rendered size, in CSS px, of each text of the charts (and keys) shown: its font size times the chart's scale
TEXT_PX = """sel => [...document.querySelectorAll(sel)].filter(svg => svg.getBoundingClientRect().width > 0)
  .flatMap(svg => { const k = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
                    return [...svg.querySelectorAll('text')].map(t => parseFloat(t.getAttribute('font-size')) * k); })"""


@pytest.fixture
def size() -> str:
    """The walk was on a phone."""
    return "phone"


def readable_chart(page: Any) -> None:
    """One chart on screen, each of its texts at least 12 px, each step's name inside the phone's width."""
    shown = [svg for svg in page.locator(".chart svg.gantt").all() if svg.is_visible()]
    assert len(shown) == 1, len(shown)
    sizes = page.evaluate(TEXT_PX, ".chart svg.gantt")
    assert sizes and min(sizes) >= 12, sorted(sizes)[:5]
    width = page.viewport_size["width"]
    for name in shown[0].locator("text", has_text="assess").all():
        box = name.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_a_runs_chart_reads_at_a_phones_size_on_the_audit_desk_and_the_run_page(site: Site, open_page: Any) -> None:  # noqa: F811
    """The desk's chart, 960 units wide, was scaled into the phone's width: step names and the hour axis ~6 px, the
    key ~4 px. On a phone the chart drawn for it shows instead: names above their bars, 12-14 px text."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    assessed(site, run_id)
    page = open_page()
    browser_sign_in(page, site, "li-wei")  # ops-director: an auditor
    page.goto(f"{site.url}/desk/runs/{run_id}")
    page.shot("leftovers-desk-chart")
    readable_chart(page)
    page.locator("summary", has_text="How to read the chart").click()
    keys = page.evaluate(TEXT_PX, ".chart svg.legend")
    assert keys and min(keys) >= 12, sorted(keys)[:5]
    page.goto(f"{site.url}/runs/{run_id}")  # the run page's Timeline: the same chart
    readable_chart(page)


def broken_inbox(site: Site, person: str) -> Path:
    """Make ``person``'s inbox unwritable (a folder where its file goes): a page to them fails as a full disk would.
    Returns where their messages were put aside (:func:`mended_inbox` puts them back)."""
    inbox = site.root / "var" / "inbox" / f"{person}.jsonl"
    aside = inbox.with_name(f"{person}.aside")
    if inbox.exists():
        inbox.rename(aside)
    inbox.mkdir(parents=True)
    return aside


def mended_inbox(site: Site, person: str, aside: Path) -> None:
    inbox = site.root / "var" / "inbox" / f"{person}.jsonl"
    shutil.rmtree(inbox)
    if aside.exists():
        aside.rename(inbox)


def test_the_pages_sent_show_failures_and_the_latest_and_fold_the_rest_behind_a_count(site: Site, open_page: Any) -> None:  # noqa: F811
    """A busy run's page listed every page sent, five lines each on a phone: dozens, scrolled past for ages. Every
    failure and the latest five show now; the rest fold behind their count, and opened, none is missing."""
    owner = site.engine.person_for("pr-lead")
    aside = broken_inbox(site, owner)
    try:
        run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
        wait_for(lambda: any(not d.ok for n in Audit(site.engine.ledger).run(run_id).notifications
                             for d in n.deliveries) or None, 20, "the owner's run_started page to fail")
    finally:
        mended_inbox(site, owner, aside)
    assessed(site, run_id)  # facts, legal and tell-director follow: their people are paged
    for step, role in (("facts", "cs-lead"), ("legal", "compliance-officer")):  # each pages two more people
        site.engine.ask_for_help(run_id, step, Actor(site.engine.person_for(role), via="cli"), "a second pair of eyes")

    def count() -> int:
        story = Audit(site.engine.ledger).run(run_id)
        notes = story.notifications + [n for s in story.steps.values() for n in s.notifications]
        return sum(len(n.deliveries) + len(n.kept) for n in notes)

    total = wait_for(lambda: count() if count() >= 8 else None, 20, "eight deliveries", explain=count)
    page = open_page()
    browser_sign_in(page, site, "li-wei")
    page.goto(f"{site.url}/runs/{run_id}")
    first = page.locator("table.sent").first.locator("tbody tr")
    page.shot("leftovers-pages-sent")
    assert first.count() == 6, first.all_inner_texts()  # the latest five, and the failure before them
    failed = first.first
    assert failed.is_visible() and "failed" in failed.locator("td[data-label='Result']").inner_text()
    assert site.engine.site.people[owner].name in failed.locator("td[data-label='To']").inner_text()
    fold = page.locator("#earlier-pages")
    assert fold.locator("summary").inner_text() == f"{total - 6} earlier deliveries, none failed"
    assert not fold.locator("tbody tr").first.is_visible()
    fold.locator("summary").click()
    assert fold.locator("tbody tr").count() == total - 6 and fold.locator("tbody tr").first.is_visible()
    assert page.locator("table.sent tbody tr").count() == total  # nothing lost


def test_a_constant_dedup_key_is_not_shown_as_what_a_run_is_about(site: Site, open_page: Any) -> None:  # noqa: F811
    """complaint-review's key is the constant "complaint-rate" (one open run at a time): the board, the home card and
    the run page showed it after the title ("… month over month · complaint-rate"), the same words for every run.
    A key rendered from the run's inputs still tells runs apart (crisis-pr's brand); the constant one is still said
    where it is needed: why a start attached, and the audit."""
    review = site.engine.start("complaint-review", {"month": "2026-11"}, initiator="li-wei", launch=False).run_id
    label = brand()
    crisis = site.engine.start("crisis-pr", {"brand": label}, initiator="li-wei", launch=False).run_id
    page = open_page()
    browser_sign_in(page, site, "li-wei")
    page.goto(f"{site.url}/board")
    page.shot("leftovers-board-subjects")
    assert page.locator(f"#run-{review} header a").inner_text() == REVIEW
    assert page.locator(f"#run-{crisis} header a").inner_text() == f"{CRISIS} · {label}"
    page.goto(f"{site.url}/")
    assert page.locator(f"#runs ~ ul a[href='/runs/{review}']").inner_text() == REVIEW
    page.goto(f"{site.url}/runs/{review}")
    assert page.locator("h1").inner_text() == REVIEW and page.title().startswith(f"{REVIEW} · run ")
    page.goto(f"{site.url}/board/start/complaint-review")  # a second start attaches: the key says why
    page.fill("#f-month", "2026-11")
    page.get_by_role("button", name="Start complaint-review").click()
    page.wait_for_url(f"**/runs/{review}?attached=1")
    assert "same dedup key (complaint-rate;" in page.locator("p.notice").inner_text()
    page.goto(f"{site.url}/desk/runs/{review}")
    page.locator("summary", has_text="Trigger payload and inputs").click()
    assert '"dedup_key": "complaint-rate"' in page.locator("details.payload pre").inner_text()


def test_the_backup_a_call_for_help_pages_is_named_with_the_role_they_answer_for(site: Site, open_page: Any) -> None:  # noqa: F811
    """crisis-pr's "Need help" climbs to [lead, backup]: the page read "Pages Chen Jie, PR Lead; Sara Lopez now", the
    backup without a role, and after pressing "Chen Jie, Sara Lopez were paged". Each is named as the others now."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    people = site.engine.site.people
    oncall = on_call_now(site.engine.site, site.engine.ledger, "pr-oncall")
    lead = people[site.engine.person_for("pr-lead")].name
    backup = people[oncall.backup].name
    page = open_page()
    browser_sign_in(page, site, oncall.primary)
    page.goto(f"{site.url}/runs/{run_id}/steps/assess")
    page.locator("summary", has_text="Need help").click()
    what = page.locator("#help-what").inner_text()
    page.shot("leftovers-help-backup")
    assert what.startswith(f"Pages {lead} (PR Lead), {backup} (PR on-call) now"), what
    page.get_by_role("button", name="Page for help").click()
    page.wait_for_url(f"**/runs/{run_id}/steps/assess?done=help")
    told = page.locator(".ok").inner_text()
    assert f"Help is asked: {lead} (PR Lead), {backup} (PR on-call) were paged" in told, told
    assert f"paged {lead} (PR Lead), {backup} (PR on-call)" in page.locator("#escalation").inner_text()
