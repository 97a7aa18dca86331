"""What a responder still tripped on at 390 px (Debian's Chromium) after the walk's leftovers: the header's links off
screen, a step card's tag under its label, a reported value broken mid-word, the override form's bare boxes, the
audit's Deadlines off screen and in ids, six-line deliveries, and a few small targets. Each as she sees it.
Screenshots under ``var/test-artifacts/web/``.
"""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import pytest

from flows.engine import outbox
from tests.web.conftest import Site
from tests.web.test_board import operator
from tests.web.test_browser import CHROMIUM, brand, browser, browser_sign_in, open_page  # noqa: F401 - the browser's fixtures
from tests.web.test_pages import csrf_of
from tests.web.test_phone_walk import assessed

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed: run `sudo make deps-system`")
#: a thumb's height, in CSS px
THUMB = 44
#: each word of the texts under ``sel`` that is drawn on two lines (a word broken inside itself): "Deliver|y"
BROKEN_WORDS = """sel => [...document.querySelectorAll(sel)].flatMap(el => {
  const out = [], walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let node = walk.nextNode(); node; node = walk.nextNode()) {
    for (const m of node.data.matchAll(/\\S+/g)) {
      const r = document.createRange(); r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
      const tops = new Set([...r.getClientRects()].map(b => Math.round(b.top)));
      if (tops.size > 1) out.push(m[0]);
    } }
  return out; })"""
#: the elements inside the value side of a phone's card that start left of it (under the label): "(notify)"
UNDER_LABEL = """sel => [...document.querySelectorAll(sel)].filter(td => td.offsetParent).flatMap(td => {
  const label = parseFloat(getComputedStyle(td, '::before').width), left = td.getBoundingClientRect().left;
  return [...td.querySelectorAll('*')].filter(el => el.getClientRects().length
    && el.getBoundingClientRect().left < left + label).map(el => td.dataset.label + ': ' + el.textContent); })"""


@pytest.fixture
def size() -> str:
    """Her phone."""
    return "phone"


def on_screen(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def failed_breaker(site: Site) -> str:
    """A traffic-surge run whose circuit breakers could not be set (an automated step failed, with its reason)."""
    run = site.engine.start("traffic-surge", {"service": f"s-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                            launch=False).run_id
    outbox.wait_delivered(site.engine.ledger, run, timeout=10)
    site.engine.mark_running(run, "breaker")
    site.engine.complete(run, "breaker", {}, error="PUT http://127.0.0.1:9900/v1/circuit-breakers failed: refused")
    site.engine.advance(run)
    outbox.wait_delivered(site.engine.ledger, run, timeout=10)
    return run


def test_every_section_of_the_header_is_on_screen_and_a_thumb_tall(site: Site, open_page: Any) -> None:  # noqa: F811
    """The header's links scrolled sideways in their row: Library and People began off screen, nothing showed they
    were there. They wrap now, every one on screen."""
    page = open_page()
    browser_sign_in(page, site, "li-wei")  # an operator and an auditor: every section
    page.goto(f"{site.url}/board")
    page.shot("trips-header")
    links = page.locator("header.bar nav a")
    assert links.all_inner_texts() == ["My steps", "Board", "On call", "Silences", "Audit", "Library", "People"]
    width = page.viewport_size["width"]
    for link in links.all():
        box = link.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width and box["height"] >= THUMB, (link.inner_text(), box)
    nav = page.locator("header.bar nav")
    assert nav.evaluate("n => n.scrollWidth <= n.clientWidth")  # nothing hidden to the side
    on_screen(page)
    page.get_by_role("link", name="People").click()
    assert page.url.endswith("/people")


def test_a_run_pages_step_cards_keep_every_value_beside_its_label(site: Site, open_page: Any) -> None:  # noqa: F811
    """An automated step's "(notify)" dropped under the card's "Step" label, a failed step's reason too: a value
    read as a label. Every piece of a value is in the value's column now."""
    run = failed_breaker(site)
    page = open_page()
    browser_sign_in(page, site, "li-wei")
    page.goto(f"{site.url}/runs/{run}")
    page.shot("trips-step-cards")
    tag = page.locator("#step-sms-users td[data-label='Step'] .muted")
    assert tag.inner_text() == "(notify)"
    assert page.evaluate(UNDER_LABEL, "table.steps td") == []
    reason = page.locator("#step-breaker td[data-label='Step'] .bad")
    assert "circuit-breakers failed: refused" in reason.inner_text()
    label_top = page.locator("#step-breaker td[data-label='Step']").bounding_box()["y"]
    assert reason.bounding_box()["y"] > label_top  # under the step's name, in its column
    on_screen(page)


def test_earlier_reported_values_get_the_room_and_no_word_breaks(site: Site, open_page: Any) -> None:  # noqa: F811
    """"Earlier in this run": the label column, its help under it, took most of the width; "Delivery" broke as
    "Deliver|y". Labels and values keep their words whole, and the values have at least the labels' room."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    assessed(site, run_id)
    page = open_page()
    page.goto(site.link_for("sara-lopez", run_id, "facts"))
    earlier = page.locator("#earlier table.reported")
    page.shot("trips-earlier")
    category = earlier.get_by_role("row", name="Category")
    assert category.locator("td").inner_text() == "Delivery"
    assert page.evaluate(BROKEN_WORDS, "#earlier table.reported th, #earlier table.reported td") == []
    topic = earlier.get_by_role("row", name="Topic")  # a label with its help under it
    assert topic.locator("td").bounding_box()["width"] >= topic.locator("th").bounding_box()["width"]
    on_screen(page)


def test_the_override_form_offers_the_roles_members_in_thumb_tall_boxes(site: Site, open_page: Any) -> None:  # noqa: F811
    """The override form's boxes were 21 px, unstyled, and Person was typed by hand. Now each box is a thumb tall,
    Person offers each role's members by name, and a non-member is still refused, by name."""
    page = open_page()
    browser_sign_in(page, site, "li-wei")
    page.goto(f"{site.url}/oncall")
    page.shot("trips-override")
    form = page.locator("form[action='/oncall/override']")
    for box in form.locator("input:not([type=hidden]), select").all():
        assert box.bounding_box()["height"] >= THUMB, (box.get_attribute("name"), box.bounding_box())
    offered = form.locator("#f-override-person optgroup[label='SRE on-call'] option").all_inner_texts()
    assert offered == ["Zhao Lei 赵磊", "Kenji Sato", "Tom Becker"], offered
    form.locator("#f-override-role").select_option("sre-oncall")
    form.locator("#f-override-person").select_option("li-wei")  # Operations Director's: not SRE on-call's
    form.locator("#f-override-until").fill("+2h")
    form.locator("#f-override-reason").fill("covering")
    form.get_by_role("button", name="Record the override").click()
    said = page.locator("#override-problem").inner_text()
    assert f"{site.engine.site.people['li-wei'].name} is not a member of SRE on-call" in said and "Zhao Lei 赵磊" in said and "`" not in said, said
    assert form.locator("#f-override-person").input_value() == "li-wei"  # what she chose is kept
    on_screen(page)


def test_the_audits_deadlines_are_cards_on_a_phone_in_names_and_titles(site: Site, open_page: Any) -> None:  # noqa: F811
    """The audit's Deadlines scrolled sideways (Ended, By and Verdict off screen), each step "(assess, human,
    pr-oncall)", and "manual by li-wei", "Started … by li-wei": ids. A card per row now, like the runs list, in
    names and role titles."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    assessed(site, run_id)
    page = open_page()
    browser_sign_in(page, site, "li-wei")
    page.goto(f"{site.url}/desk/runs/{run_id}")
    page.shot("trips-deadlines")
    width = page.viewport_size["width"]
    for row in page.locator("table.deadlines tbody tr").all():
        verdict = row.locator("td[data-label='Verdict']")
        box = verdict.bounding_box()
        assert verdict.is_visible() and box["x"] + box["width"] <= width, (row.inner_text(), box)
    assess = page.locator("#step-assess").inner_text()
    assert "PR on-call" in assess and "pr-oncall" not in assess and "Wang Fang 王芳" in assess, assess
    facts = page.locator("#run-facts").inner_text()
    assert "manual by Li Wei" in facts and "li-wei" not in facts, facts
    on_screen(page)


def test_a_page_sent_is_a_line_or_two_in_words(site: Site, open_page: Any) -> None:  # noqa: F811
    """Each delivery was a six-line card (~170 px): "run_started", "status_update" and the channel's URL. A line or
    two now: what was sent in words, the kind of channel, its masked address kept on hover."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    outbox.wait_delivered(site.engine.ledger, run_id, timeout=10)
    page = open_page()
    browser_sign_in(page, site, "li-wei")
    page.goto(f"{site.url}/runs/{run_id}")
    page.shot("trips-pages-sent")
    rows = page.locator("table.sent tbody tr")
    assert rows.count() >= 2
    for row in rows.all():
        assert row.bounding_box()["height"] <= 64, (row.inner_text(), row.bounding_box())
    texts = " ".join(rows.all_inner_texts())
    assert "Run started" in texts and "run_started" not in texts and "inbox://" not in texts, texts
    owner = site.engine.person_for("pr-lead")
    started = rows.filter(has_text="Run started").filter(has_text=site.engine.site.people[owner].name).first
    through = started.locator("td[data-label='Through'] [title]")
    assert through.inner_text() == "inbox" and through.get_attribute("title") == f"inbox://{owner}"
    on_screen(page)


def test_small_things_a_thumb_trips_on(site: Site, open_page: Any) -> None:  # noqa: F811
    """The step page said "Sara Lopez (sara-lopez)"; the file picker was 21 px tall, the audit's links 35-38 px, the
    library's 19 px and close together."""
    run_id = site.engine.start("crisis-pr", {"brand": brand()}, initiator="li-wei", launch=False).run_id
    assessed(site, run_id)
    page = open_page()
    browser_sign_in(page, site, "li-wei")
    page.goto(f"{site.url}/runs/{run_id}/steps/facts")
    holder = site.engine.person_for("cs-lead")
    facts = page.locator("dl.facts").inner_text()
    assert site.engine.site.people[holder].name in facts and f"({holder})" not in facts, facts
    page.locator("summary", has_text="Hand over").click()
    assert f"({holder})" not in page.locator("#f-to").inner_text()
    assert page.locator("#f-evidence_file").bounding_box()["height"] >= THUMB
    page.goto(f"{site.url}/desk/runs/{run_id}")
    for link in page.locator(".desk-nav a").all():
        assert link.bounding_box()["height"] >= THUMB, (link.inner_text(), link.bounding_box())
    page.goto(f"{site.url}/library")
    page.shot("trips-library")
    links = page.locator("ul.cards a").all()
    boxes = [link.bounding_box() for link in links]
    assert all(b["height"] >= THUMB for b in boxes), [b["height"] for b in boxes][:5]
    assert all(b2["y"] - (b1["y"] + b1["height"]) >= 8 for b1, b2 in zip(boxes, boxes[1:], strict=False))


def test_a_non_member_is_refused_by_name_over_http(site: Site) -> None:
    """Posted by hand (or by an old form), a non-member is still refused, in the page's words."""
    client = operator(site, "li-wei")
    page = client.get("/oncall")
    refused = client.post("/oncall/override", data={"csrf": csrf_of(page), "role": "sre-oncall", "person": "li-wei",
                                                    "until": "+2h", "reason": "covering"})
    said = html.unescape(refused.text)
    name = site.engine.site.people["li-wei"].name
    assert refused.status_code == 422 and f"{name} is not a member of SRE on-call" in said and "`" not in said


def test_who_is_on_call_now_and_next_reads_in_names_as_cards_on_a_phone(site: Site, open_page: Any) -> None:  # noqa: F811
    """/oncall's "Now and next" was a six-column table of ids ("wang-fang", "pr-oncall", "rotation: shift 2
    (wang-fang)") that scrolled sideways in its box at 390 px. A card per stretch now, in names and role titles."""
    page = open_page()
    browser_sign_in(page, site, "li-wei")
    page.goto(f"{site.url}/oncall")
    page.shot("trips-oncall-now")
    table = page.locator("table.oncall")
    assert table.evaluate("t => t.parentElement.scrollWidth <= t.parentElement.clientWidth")  # nothing to the side
    width = page.viewport_size["width"]
    for cell in table.locator("tbody td").all():
        box = cell.bounding_box()
        assert box is None or box["x"] + box["width"] <= width, (cell.inner_text(), box)
    people = site.engine.site.people
    shown = " ".join(table.locator("tbody").all_inner_texts())
    assert "PR on-call" in shown and "pr-oncall" not in shown, shown
    pr_now = site.engine.on_call("pr-oncall").primary
    ids = [pid for pid in people if re.search(rf"(?<![\w-]){re.escape(pid)}(?![\w-])", shown)]
    assert people[pr_now].name in shown and ids == [], ids
    on_screen(page)
