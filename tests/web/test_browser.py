"""The responder's path in a real browser: Debian's Chromium driven by Playwright, at phone and desk sizes.

No browser is downloaded: Playwright drives ``/usr/bin/chromium`` (``make test`` installs it
as root). A screenshot of each page at each size is kept under ``var/test-artifacts/web/``
(not committed) for a person to look at.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import records
from tests.web.conftest import Site

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed: run `sudo make deps-system`")
SIZES = {"phone": {"width": 390, "height": 844}, "desk": {"width": 1280, "height": 900}}
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(params=list(SIZES))
def size(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def open_page(browser: Any, size: str, repo_root: Path) -> Iterator[Any]:
    """A new browser context (no cookies) at ``size``; ``shot(name)`` keeps a screenshot of the page."""
    folder = repo_root / "var" / "test-artifacts" / "web"
    folder.mkdir(parents=True, exist_ok=True)
    contexts: list[Any] = []

    def new() -> Any:
        context = browser.new_context(viewport=SIZES[size], locale="en-GB")
        contexts.append(context)
        page = context.new_page()
        outside: list[str] = []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:"))
                else None)
        page.outside = outside  # type: ignore[attr-defined]
        page.shot = lambda name: page.screenshot(path=str(folder / f"{name}-{size}.png"), full_page=True)  # type: ignore[attr-defined]
        return page

    yield new
    for context in contexts:
        context.close()


def brand() -> str:
    return f"b-{uuid.uuid4().hex[:8]}"


def test_a_responder_reports_from_the_link_in_their_message(site: Site, open_page: Any) -> None:
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    link = site.link_for("wang-fang", run_id, "assess")
    page = open_page()
    page.goto(link)
    assert page.locator("h1").inner_text() == "Assess scope, spread and severity"
    assert re.search(r"\d+m\d*s? left", page.locator(".facts").inner_text())  # the live time left
    page.shot("step")
    page.select_option("#f-severity", "high")
    page.fill("#f-topic", "late parcels")
    page.select_option("#f-category", "delivery")
    # a long word (a link with its tracking) must wrap on a phone, on this page and the next person's
    page.fill("#f-platforms", "weibo,douyin:https://weibo.example/lumi/status/5012345678901234?utm_source=app&"
                              "utm_medium=share&utm_campaign=winter_sale_2026_parcels_delay_statement_followup_" + "x" * 80)
    page.check("#f-kol_involved")
    page.set_input_files("#f-evidence_file", files=[{"name": "weibo-mentions-export.csv", "mimeType": "text/csv",
                                                    "buffer": b"hour,mentions\n09:00,140\n"}])
    page.get_by_role("button", name="Done").click()  # the trend is forgotten
    error = page.locator("#err-trend")
    assert error.inner_text() == "required: one of Rising, Stable, Falling"
    assert page.locator("#f-trend").get_attribute("aria-invalid") == "true"
    assert page.locator("#f-trend").get_attribute("aria-describedby") == "err-trend"
    # a field's help is read out with it, error or not (a screen reader hears "One line: …")
    assert page.locator("#f-topic").get_attribute("aria-describedby") == "help-topic"
    assert page.locator("#help-topic").inner_text().startswith("One line")
    assert page.locator("#f-topic").input_value() == "late parcels"  # nothing typed is lost
    assert site.engine.view(run_id).state("assess") == "active"
    page.shot("step-error")
    page.select_option("#f-trend", "rising")
    if not page.locator("#f-evidence_file").input_value():  # a browser does not keep a file across a refusal
        page.set_input_files("#f-evidence_file", files=[{"name": "weibo-mentions-export.csv", "mimeType": "text/csv",
                                                        "buffer": b"hour,mentions\n09:00,140\n"}])
    page.get_by_role("button", name="Done").click()
    page.wait_for_url(re.compile(rf"/runs/{run_id}/steps/assess\?done=done$"))
    told = page.locator(".ok").inner_text()  # who has the run now: the role and its person, not this step again
    assert re.search(r"Now with: .*Establish the facts from orders and tickets → (Sara Lopez|Wang Fang 王芳) "
                     r"\(Customer Service Lead\)", told) and "Assess scope" not in told, told
    kol = page.get_by_role("row", name=re.compile(r"^KOL involved\b"))  # its label, the form's help under it
    assert kol.locator("td").inner_text() == "yes"  # as a person reads it, not "True"
    # the file, by its name (its sha256 on hover), stays inside a phone's width
    assert "weibo-mentions-export.csv" in page.locator("ul.evidence").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    page.shot("step-done")
    view = site.engine.view(run_id)
    assert view.state("assess") == "done" and view.state("facts") == "active"
    assert records(site.engine, run_id, "step_done")[-1]["data"]["via"] == "link"
    facts = open_page()  # the next person's step: what was reported before it, folded
    facts.goto(site.link_for("sara-lopez", run_id, "facts"))
    assert facts.locator("#earlier").get_attribute("open") is not None  # assess, which facts needs: unfolded
    assert facts.get_by_role("row", name=re.compile(r"^Topic\b.* late parcels$")).count() == 1
    assert facts.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    facts.shot("step-earlier")
    page.goto(f"{site.url}/runs/{run_id}")  # the session the link began opens the run
    assert page.locator("table.steps").inner_text().count("done") >= 1
    page.shot("run")
    assert page.outside == []  # type: ignore[attr-defined]


def test_a_claim_tells_the_others_and_the_used_link_shows_what_happened(site: Site, open_page: Any) -> None:
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    link = site.link_for("wang-fang", run_id, "assess")
    others = {p: len(site.inbox(p)) for p in ("sara-lopez", "chen-jie")}
    page = open_page()
    page.goto(link)
    page.get_by_role("button", name="I'll take it").click()
    assert "You hold this step now" in page.locator(".ok").inner_text()
    assert "Now with" not in page.locator(".ok").inner_text()  # the reader is still at the step
    for person, seen in others.items():
        assert any(m["title"].startswith("[P1] Taken:") for m in site.messages(person, seen)), person
    replay = open_page()  # the same link in another browser: it acted once already
    replay.goto(link)
    assert "already used" in replay.locator("#told").inner_text()  # told, not an error: it did act, once
    assert replay.locator(".error").count() == 0
    assert replay.locator("form[action^='/s/']").count() == 0
    assert "Held by" in replay.locator(".facts").inner_text()
    replay.shot("link-used")


def test_an_expired_link_is_refused(site: Site, open_page: Any) -> None:
    from datetime import timedelta

    from flows.clock import ManualClock
    from flows.engine.links import Links

    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    old = Links(site.engine.links.secret, ManualClock(site.engine.clock.now() - timedelta(days=2)), site.url)
    page = open_page()
    response = page.goto(old.step_link("wang-fang", run_id, "assess"))
    assert response.status == 410 and "expired" in page.locator(".notice").inner_text()
    page.shot("link-expired")


def test_the_initiator_cannot_give_a_four_eyes_approval_in_the_page(site: Site, open_page: Any) -> None:
    run_id = site.engine.start("t-approval", {}, initiator="zhang-min", launch=False).run_id
    link = site.link_for("zhang-min", run_id, "approve")  # growth-lead's primary started the run herself
    page = open_page()
    page.goto(link)
    page.get_by_role("button", name="Approve").click()
    assert "zhang-min started this run and cannot approve it (four-eyes rule)" in page.locator(".error").inner_text()
    assert site.engine.view(run_id).approvals("approve") == []
    page.shot("approval-refused")


def test_sign_in_page(site: Site, open_page: Any) -> None:
    page = open_page()
    page.goto(f"{site.url}/")
    assert page.url.endswith("/sign-in?next=%2F")
    page.fill("#who", "sara-lopez")
    page.get_by_role("button", name="Send me a link").click()
    assert "a sign-in link is on its way" in page.locator(".ok").inner_text()
    page.shot("sign-in")


@pytest.fixture(scope="module")
def timers(site: Site) -> Iterator[None]:
    """The timer service, as `sop serve` runs it: ladders and dues fire on the runs' compressed time."""
    import threading

    from flows.engine.timers import TimerService

    stop = threading.Event()
    thread = threading.Thread(target=TimerService(site.engine, name="web-browser-tests").run, args=(stop,),
                              daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)


def browser_sign_in(page: Any, site: Site, person: str) -> None:
    """Sign in as a person does: the form, then the link from their own inbox."""
    seen = len(site.inbox(person))
    page.goto(f"{site.url}/sign-in")
    page.fill("#who", person)
    page.get_by_role("button", name="Send me a link").click()
    page.goto(site.sign_in_link(person, seen))
    page.get_by_role("button", name="Sign in").click()  # the link's page: one button uses it


def test_an_operator_starts_crisis_pr_and_watches_it_escalate_without_reloading(site: Site, open_page: Any,
                                                                                timers: None) -> None:
    page = open_page()
    browser_sign_in(page, site, "li-wei")
    page.goto(f"{site.url}/board/start/crisis-pr")
    page.fill("#f-brand", brand())
    page.fill("#f-mentions_per_day", "140")
    page.check("#f-drill")
    page.fill("#f-speed", "300")  # assess's 15 minutes in 3 seconds
    page.shot("start")
    page.get_by_role("button", name="Start crisis-pr").click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f]+\?started=1$"))
    run_id = page.url.split("/runs/", 1)[1].split("?")[0]
    page.goto(f"{site.url}/board")
    # P1: above every run of a lower class (other tests' complaint runs, overdue, may come before it)
    cards = [(a.get_attribute("id"), a.get_attribute("class")) for a in page.locator("article.run").all()]
    mine = cards.index((f"run-{run_id}", "card run p1"))
    assert all(" p1" in classes for _, classes in cards[:mine]), cards
    page.evaluate("window.notReloaded = true")
    card = page.locator(f"#run-{run_id}")
    card.locator(".overdue").first.wait_for(timeout=30_000)  # assess turns overdue on the page
    page.wait_for_function(
        f"document.querySelector('#run-{run_id} .level') && "
        f"document.querySelector('#run-{run_id} .level').textContent.trim() !== 'escalation stage 1'", timeout=30_000)
    assert re.match(r"escalation stage [2-9]", card.locator(".level").first.inner_text())  # the ladder rose
    assert page.evaluate("window.notReloaded") is True  # the rows came without a reload
    page.shot("board")
    page.goto(f"{site.url}/runs/{run_id}")
    page.locator("summary", has_text="Cancel this run").click()
    page.fill("#f-cancel-reason", "drill over")
    page.get_by_role("button", name="Cancel the run").click()
    assert "Cancelled" in page.locator(".ok").inner_text()
    assert site.engine.view(run_id).run["status"] == "cancelled"
    assert page.outside == []  # type: ignore[attr-defined]


def test_the_library_draws_the_graph_and_people_read_in_both_scripts(site: Site, open_page: Any) -> None:
    page = open_page()
    browser_sign_in(page, site, "guo-jing")
    page.goto(f"{site.url}/library/crisis-pr")
    page.locator("pre.mermaid svg").wait_for(timeout=20_000)  # drawn by Mermaid served from this machine
    assert "Assess scope" in page.locator("pre.mermaid svg").text_content()
    page.shot("library")
    page.goto(f"{site.url}/people")
    assert "Wang Fang 王芳" in page.locator("table").nth(1).inner_text()
    page.shot("people")
    assert page.outside == []  # type: ignore[attr-defined]


def test_on_a_phone_a_runs_steps_show_their_time_left_and_ladder_without_scrolling_sideways(
        site: Site, open_page: Any, size: str) -> None:
    """The walkthrough's director at 390 px: the steps table was 493 px wide in a 366 px box, so Time left and
    Ladder (what says a step is late) were off-screen. On a phone each step reads as a card of labelled lines."""
    run_id = site.engine.start("crisis-pr", {"brand": brand(), "mentions_per_day": 140}, initiator="li-wei",
                               launch=False).run_id
    page = open_page()
    browser_sign_in(page, site, "li-wei")
    page.goto(f"{site.url}/runs/{run_id}")
    row = page.locator("#step-assess")
    left, ladder = row.locator("td[data-label='Time left']"), row.locator("td[data-label='Ladder']")
    width = page.viewport_size["width"]
    for cell in (left, ladder) if size != "phone" else (left,):
        box = cell.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (size, box)
    if size == "phone":
        label = left.evaluate("td => getComputedStyle(td, '::before').content")
        assert label == '"Time left"', label  # its label beside it: the table's head is not shown
        assert not ladder.is_visible()  # no escalation yet: its "—" is left out of the card (test_phone_reading)
    page.shot("run-steps")
