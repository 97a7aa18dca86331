"""What a responder on a phone (390 px, Debian's Chromium) noticed in the walk of 2026-12-07 (Sara Lopez, paged for
complaint-review and page-speed at once), each as she would see it. Screenshots under ``var/test-artifacts/web/``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from flows.language.actors import Actor
from flows.language.steps.human import HumanReport
from tests.engine.conftest import records
from tests.web.conftest import Site
from tests.web.test_browser import CHROMIUM, brand, browser, browser_sign_in, open_page  # noqa: F401 - the browser's fixtures

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed: run `sudo make deps-system`")
EXPORT = {"name": "mentions-export.csv", "mimeType": "text/csv", "buffer": b"hour,mentions\n09:00,140\n"}


@pytest.fixture
def size() -> str:
    """The walk was on a phone."""
    return "phone"


WATCH = "Low severity - reply individually and watch hourly"


def fill_assess(page: Any) -> None:
    """crisis-pr's first step, filled in as its responder does (evidence a file); low severity: she watches next."""
    page.select_option("#f-severity", "low")
    page.fill("#f-topic", "late parcels")
    page.select_option("#f-category", "delivery")
    page.fill("#f-platforms", "weibo")
    page.select_option("#f-trend", "rising")
    page.set_input_files("#f-evidence_file", files=[EXPORT])


def assessed(site: Site, run_id: str) -> None:
    """wang-fang reports crisis-pr's assess (high: facts and legal follow) from her terminal."""
    site.engine.report(run_id, "assess", HumanReport(
        actor="wang-fang", values={"severity": "high", "topic": "late parcels", "category": "delivery",
                                   "platforms": "weibo", "trend": "rising", "kol_involved": False},
        evidence=["https://social.example/export"]))


def test_after_a_report_the_readers_next_step_is_a_link_named_for_them(site: Site, open_page: Any) -> None:  # noqa: F811
    """Reporting a step whose successor is hers, she was told "Now with: Write the action plan → cs-lead (sara-lopez)":
    no link, no "you", role and person as ids. Now her own next step comes first as a link she opens at once (the
    others' steps, by name and role title: test_browser's first test)."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    page = open_page()
    page.goto(site.link_for("wang-fang", run_id, "assess"))
    fill_assess(page)
    page.get_by_role("button", name="Done").click()
    page.wait_for_url(f"**/runs/{run_id}/steps/assess?done=done")
    told = page.locator(".ok")
    page.shot("walk-next-for-you")
    assert f"Next for you: {WATCH}" in told.inner_text(), told.inner_text()  # pr-oncall's, whose primary she is
    assert "Now with" not in told.inner_text()  # nothing else waits: not her own step again under someone's name
    told.get_by_role("link", name=WATCH).click()
    assert page.url.endswith(f"/runs/{run_id}/steps/watch")
    assert page.get_by_role("button", name="Done").is_visible()  # her form, one tap away


def test_a_file_chosen_before_a_refused_report_is_asked_for_again_by_name(site: Site, open_page: Any) -> None:  # noqa: F811
    """A browser does not keep a chosen file when the report comes back with a problem: the page said "No file
    chosen" and nothing else, so a second Done (evidence optional) would record the report without it."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    page = open_page()
    page.goto(site.link_for("wang-fang", run_id, "assess"))
    fill_assess(page)
    page.select_option("#f-trend", "")  # forgotten
    page.get_by_role("button", name="Done").click()
    assert page.locator("#err-trend").is_visible()
    again = page.locator("#err-evidence_file")
    page.shot("walk-file-again")
    assert again.is_visible() and "mentions-export.csv" in again.inner_text() and "again" in again.inner_text()
    assert page.locator("#f-evidence_file").get_attribute("aria-describedby") == "err-evidence_file"


def test_on_a_phone_the_bar_is_two_lines_and_every_tap_target_is_a_thumb_tall(site: Site, open_page: Any) -> None:  # noqa: F811
    """The walk's header wrapped to three lines of 24 px links (130 px before the step's title), and Need help, Hand
    over, Reject and Instructions toggled only on their 24 px text line. Now 44 px each, the pages' links in rows of
    their own, every one on screen (one row scrolled sideways and hid Library and People: test_phone_trips)."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    page = open_page()
    browser_sign_in(page, site, "li-wei")  # an operator: every page's link in the bar
    page.goto(f"{site.url}/runs/{run_id}/steps/assess")
    page.shot("walk-tap-targets")
    targets = page.locator("header.bar a, header.bar button, summary")
    heights = {t.inner_text().strip(): t.bounding_box()["height"] for t in targets.all() if t.is_visible()}
    assert {"Board", "Sign out", "Need help", "Hand over", "Reject", "Instructions"} <= set(heights), heights
    assert all(h >= 44 for h in heights.values()), {k: h for k, h in heights.items() if h < 44}
    tops = {round(a.bounding_box()["y"]) for a in page.locator("header.bar nav a").all()}
    assert len(tops) == 2, tops  # seven pages' links in two rows, under the name and Sign out
    assert page.locator("header.bar").bounding_box()["height"] <= 3 * 44 + 4
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    page.locator("summary", has_text="Hand over").click(position={"x": 300, "y": 40})  # beside its words: opens it
    assert page.locator("#f-to").is_visible()


def test_a_step_page_names_people_and_roles_as_she_reads_them(site: Site, open_page: Any) -> None:  # noqa: F811
    """The walk's step pages said "For cs-lead (sara-lopez, wang-fang)", "on call for cs-lead", "done by sara-lopez":
    config's ids where a name and a role's title are known."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    assessed(site, run_id)
    page = open_page()
    page.goto(site.link_for("sara-lopez", run_id, "facts"))
    facts = page.locator(".facts").inner_text()
    assert "Customer Service Lead (Sara Lopez, Wang Fang 王芳)" in facts, facts
    assert "on call for Customer Service Lead" in facts and "cs-lead" not in facts, facts
    assert "done by Wang Fang 王芳" in page.locator("#earlier").inner_text()
    page.fill("#f-affected_orders", "212")
    page.select_option("#f-confirmed", "confirmed")
    page.fill("#f-remedy", "free shipping voucher")
    page.get_by_role("button", name="Done").click()
    page.wait_for_url(f"**/runs/{run_id}/steps/facts?done=done")
    page.shot("walk-names")
    assert "is done by Sara Lopez (you) at" in page.locator("section.card").inner_text()


def test_a_reported_file_reads_by_its_name_with_its_sha256_on_hover(site: Site, open_page: Any) -> None:  # noqa: F811
    """The walk's "What happened" began the file with its 64-digit sha256, wrapped over three lines at 390 px before
    the name she had attached."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    page = open_page()
    page.goto(site.link_for("wang-fang", run_id, "assess"))
    fill_assess(page)
    page.get_by_role("button", name="Done").click()
    page.wait_for_url(f"**/runs/{run_id}/steps/assess?done=done")
    file = page.locator("ul.evidence a")
    assert file.inner_text() == "mentions-export.csv (24 bytes)"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", file.get_attribute("title") or "")
    assert file.bounding_box()["height"] < 30  # one line
    assert file.get_attribute("href").startswith("/evidence/")


def test_need_help_says_whom_it_paged(site: Site, open_page: Any) -> None:  # noqa: F811
    """After "Page for help" the walk's page said "the next level of the escalation ladder was paged": she could not
    tell whether anyone she knows was coming. It names them now, as the ledger's escalation record does."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    page = open_page()
    browser_sign_in(page, site, "sara-lopez")  # pr-oncall's backup
    page.goto(f"{site.url}/runs/{run_id}/steps/assess")
    page.locator("summary", has_text="Need help").click()
    page.fill("#f-help-note", "KOL involved, I need the PR lead")
    page.get_by_role("button", name="Page for help").click()
    page.wait_for_url(f"**/runs/{run_id}/steps/assess?done=help")
    paged = records(site.engine, run_id, "escalation")[-1]["data"]["paged"]
    names = ", ".join(site.engine.site.people[p].name + " (PR Lead)" for p in paged)  # the lead, as they answer
    assert paged and "sara-lopez" not in paged
    told = page.locator(".ok").inner_text()
    assert f"Help is asked: {names} {'was' if len(paged) == 1 else 'were'} paged with your note" in told, told


def test_hand_over_offers_the_steps_role_first(site: Site, open_page: Any) -> None:  # noqa: F811
    """An operator's Hand over listed all 15 people A-Z by id; her backup on the role was the 12th. The role's
    members come first now, under its title, then everyone else."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    page = open_page()
    browser_sign_in(page, site, "li-wei")  # an operator: may hand it to anyone
    page.goto(f"{site.url}/runs/{run_id}/steps/assess")
    groups = page.locator("#f-to optgroup")
    assert groups.nth(0).get_attribute("label") == "PR on-call"
    first = groups.nth(0).locator("option").evaluate_all("os => os.map(o => o.value)")
    holder = site.engine.person_for("pr-oncall")
    others = sorted({"wang-fang", "sara-lopez", "chen-jie"} - {holder})
    assert sorted(first) == others, first
    assert groups.nth(1).get_attribute("label") == "Everyone else"
    assert "Li Wei 李伟" in groups.nth(1).locator("option").evaluate_all("os => os.map(o => o.textContent)")
    page.locator("summary", has_text="Hand over").click()
    page.select_option("#f-to", others[0])  # still one choice posted as before
    page.get_by_role("button", name="Hand over").click()
    page.wait_for_url(f"**/runs/{run_id}/steps/assess?done=handover")
    assert site.engine.view(run_id).steps["assess"]["claimed_by"] == others[0]


def test_the_run_page_names_who_has_each_step_and_marks_hers(site: Site, open_page: Any) -> None:  # noqa: F811
    """The walk's run page listed "Who: cs-lead", "sara-lopez", "priya-nair": she could not find her own steps among
    ten without reading ids."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    assessed(site, run_id)
    page = open_page()
    browser_sign_in(page, site, "sara-lopez")
    page.goto(f"{site.url}/runs/{run_id}")
    who = {step: page.locator(f"#step-{step} td[data-label='Who']").inner_text() for step in ("assess", "facts")}
    page.shot("walk-run-who")
    assert who["assess"] == "Wang Fang 王芳", who
    assert who["facts"] == "Customer Service Lead (Sara Lopez, you)", who


def test_what_a_step_builds_on_is_unfolded_first(site: Site, open_page: Any) -> None:  # noqa: F811
    """The walk's rework step said "see the sign-off comments"; they were the last of six tables in the folded
    "Earlier in this run". The steps a step needs now come first, unfolded."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    assessed(site, run_id)
    site.engine.report(run_id, "facts", HumanReport(
        actor="sara-lopez", values={"affected_orders": 212, "confirmed": "confirmed", "remedy": "free shipping voucher"}))
    page = open_page()
    page.goto(site.link_for(site.engine.person_for("pr-oncall"), run_id, "draft"))  # draft needs facts
    earlier = page.locator("#earlier")
    assert earlier.get_attribute("open") is not None
    titles = earlier.locator("p > strong").all_inner_texts()
    assert titles[0] == "Establish the facts from orders and tickets", titles
    assert "Assess scope, spread and severity" in titles[1:]
    assert earlier.get_by_role("row", name=re.compile(r"^Remedy\b.* free shipping voucher$")).is_visible()


def test_a_page_she_may_not_open_says_whom_to_ask_and_the_way_back(site: Site, open_page: Any) -> None:  # noqa: F811
    """Opening the auditor's desk the walk's Sara read "open to the people and roles of settings.web.auditors
    (ops-director)": a setting's name, a role's id, and no way on."""
    page = open_page()
    browser_sign_in(page, site, "sara-lopez")
    response = page.goto(f"{site.url}/desk")
    said = page.locator("main .notice").inner_text()
    page.shot("walk-desk-refused")
    assert response.status == 403 and "Operations Director (Li Wei 李伟, Zhang Min 张敏)" in said, said
    page.get_by_role("link", name="Back to your steps").click()
    assert page.locator("h1").inner_text() == "Waiting for you"


def test_the_desks_runs_read_as_cards_on_a_phone(site: Site, open_page: Any) -> None:  # noqa: F811
    """Her manager the next morning: the desk's runs were a 9-column table in a side-scrolling box, only Run and SOP
    on screen, each row 126 px tall. On a phone each run is a card of labelled lines, outcome and escalations in view."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    page = open_page()
    browser_sign_in(page, site, "li-wei")  # ops-director: settings.web.auditors
    page.goto(f"{site.url}/desk")
    row = page.locator(f"#run-{run_id}")
    page.shot("walk-desk-runs")
    width = page.viewport_size["width"]
    for label, column in (("Trigger", 3), ("Outcome", 6), ("Escalations", 8)):
        cell = row.locator("td").nth(column)
        box = cell.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (label, box)
        assert cell.evaluate("td => getComputedStyle(td, '::before').content") == f'"{label}"'
    sop = row.locator("td").nth(1)  # its version beside its name, not on a line of its own
    assert sop.locator("code").bounding_box()["x"] > sop.bounding_box()["x"] + 80
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_the_boards_filters_are_folded_until_used(site: Site, open_page: Any) -> None:  # noqa: F811
    """The walk's board put four lists and a button (260 px) between its title and the first run. Folded now while
    nothing is filtered; a filter in use is said on the fold, open."""
    site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False)  # one open run at least
    page = open_page()
    browser_sign_in(page, site, "sara-lopez")  # cs-lead: an operator
    page.goto(f"{site.url}/board")
    page.shot("walk-board")
    first = page.locator("#board a[href^='/runs/']").first.bounding_box()
    assert first["y"] < 370, first  # the first run on the first screen, under the bar, the title and Start a playbook
    assert not page.locator("select[name=person]").is_visible()
    page.locator("summary", has_text="Filter").click()
    page.select_option("select[name=person]", "mine")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("summary", has_text="Filter").inner_text() == "Filter: person mine"
    assert page.locator("select[name=person]").is_visible()


def test_the_runs_owner_is_told_why_she_may_still_report_a_step_she_handed_over(site: Site, open_page: Any) -> None:  # noqa: F811
    """Sara, cs-lead and the owner of complaint-review, handed its rework to Wang Fang and read "you may still report it
    (you oversee cs-lead)": she is cs-lead. She may because the run is hers."""
    run_id = site.engine.start("complaint-review", {"month": "2026-11"}, initiator="li-wei", launch=False).run_id
    holder = site.engine.person_for("cs-lead")
    other = next(p for p in ("sara-lopez", "wang-fang") if p != holder)
    site.engine.hand_over(run_id, "tickets", Actor(holder, via="cli"), other, "I am on the outage call")
    page = open_page()
    browser_sign_in(page, site, holder)
    page.goto(f"{site.url}/runs/{run_id}/steps/tickets")
    held = page.locator("#held").inner_text()
    assert "you may still report it (you own this run: Customer Service Lead)" in held, held


def own_review(site: Site) -> str:
    """A complaint-review run of the test's own: its dedup key is a constant (one open run, which other tests of the
    package share), so an open one is cancelled first; the test cancels its own at its end."""
    started = site.engine.start("complaint-review", {"month": "2026-11"}, initiator="li-wei", launch=False)
    if started.attached:
        site.engine.cancel(started.run_id, "a review of its own for this test", actor="li-wei")
        started = site.engine.start("complaint-review", {"month": "2026-11"}, initiator="li-wei", launch=False)
    assert not started.attached
    return started.run_id


def test_a_date_is_picked_not_typed_and_recorded_as_the_day(site: Site, open_page: Any) -> None:  # noqa: F811
    """complaint-review asked "Date it started (YYYY-MM-DD)" in a text box: on a phone the dashes were typed by hand,
    and "20/11" was taken as text. The field is a date now: the phone's date picker, and the day recorded."""
    run_id = own_review(site)
    site.engine.report(run_id, "data", HumanReport(
        actor=site.engine.person_for("data-analyst"), values={
            "complaint_rate_pct": 2.4, "top_driver": "product_quality", "driver_share_pct": 60.0},
        evidence=["https://tickets.example/export"]))
    person = site.engine.person_for("product-manager")
    page = open_page()
    page.goto(site.link_for(person, run_id, "product"))
    since = page.locator("#f-since")
    assert since.get_attribute("type") == "date"
    page.fill("#f-finding", "a bad batch of the serum")
    since.fill("2026-11-20")  # what the picker sets
    page.shot("walk-date-picked")
    page.get_by_role("button", name="Done").click()
    page.wait_for_url(f"**/runs/{run_id}/steps/product?done=done")
    assert site.engine.view(run_id).result("product")["since"] == "2026-11-20"
    site.engine.cancel(run_id, "test done", actor="li-wei")


def test_a_list_is_written_in_a_box_of_its_own_and_read_back_line_by_line(site: Site, open_page: Any) -> None:  # noqa: F811
    """complaint-review asks her to "list process gaps" in a one-line input (walk #7): on a phone she could not see
    what she had typed, nor break it into lines. The field is `multiline: true` now: a text box, and each line
    kept when the step page shows what was reported."""
    run_id = own_review(site)
    holder = site.engine.person_for("cs-lead")
    page = open_page()
    page.goto(site.link_for(holder, run_id, "tickets"))
    gaps = page.locator("#f-process_gaps")
    assert gaps.evaluate("e => e.tagName") == "TEXTAREA"
    page.fill("#f-tickets_read", "50")
    gaps.fill("refund rule unclear to agents\nno tool to resend an invoice")
    page.shot("walk-multiline")
    page.get_by_role("button", name="Done").click()
    page.wait_for_url(f"**/runs/{run_id}/steps/tickets?done=done")
    assert site.engine.view(run_id).result("tickets")["process_gaps"] == \
        "refund rule unclear to agents\nno tool to resend an invoice"
    shown = page.locator("table.reported tr", has_text="Process gaps").locator("td").inner_text()
    assert shown.splitlines() == ["refund rule unclear to agents", "no tool to resend an invoice"], shown
    site.engine.cancel(run_id, "test done", actor="li-wei")
