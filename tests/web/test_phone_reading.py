"""The rest of the walk of 2026-12-07 (Sara Lopez, cs-lead, Europe/Madrid, on a 390x844 phone; walk40), each as she
would see it: names and titles where ids were, the SOP's title before the dedup key, reported values as the form
asks them, a shorter run page, one notice after a hand-over, whom "Need help" will page. Screenshots under
``var/test-artifacts/web/``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from flows.language.steps.human import HumanReport
from tests.engine.conftest import records
from tests.web.conftest import Site
from tests.web.test_browser import CHROMIUM, browser, browser_sign_in, open_page  # noqa: F401 - the browser's fixtures

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed: run `sudo make deps-system`")
REVIEW = "Service-process review - complaint rate up 30% month over month"
CHURN = "Churn warning - product detail page loads slower than 1.5 s"


@pytest.fixture
def size() -> str:
    """The walk was on a phone."""
    return "phone"


def review(site: Site) -> str:
    """complaint-review, started by the operator Li Wei from his console (its dedup key is a constant: one open run)."""
    return site.engine.start("complaint-review", {"month": "2026-11"}, initiator="li-wei", launch=False).run_id


def slow_page_alert(site: Site) -> str:
    """page-speed, started by Alertmanager's DetailPageSlow through its token, for a page of its own."""
    from flows.triggers.intake import Intake
    from flows.triggers.model import Alert

    alert = Alert(source="alertmanager", status="firing", labels={"alertname": "DetailPageSlow",  # type: ignore[arg-type]
                                                                  "page": f"detail-{uuid.uuid4().hex[:6]}"})
    [started] = Intake(site.engine).alerts([alert], "token:alertmanager")
    return started.run


def test_the_board_and_home_name_people_and_roles_and_put_the_sops_title_first(site: Site, open_page: Any) -> None:  # noqa: F811
    """The walk's board read "complaint-rate · Service-process review …", "alert DetailPageSlow by token:alertmanager",
    "→ sre-oncall (kenji-sato)"; home "complaint-rate · … · cs-lead"; the run page "Started … by li-wei": config's
    ids, and the dedup key read as a second title before the SOP's own (a constant one is not shown at all now:
    test_phone_leftovers)."""
    run_id, alerted = review(site), slow_page_alert(site)
    page = open_page()
    browser_sign_in(page, site, "sara-lopez")  # cs-lead, an operator
    page.goto(f"{site.url}/board")
    card = page.locator(f"#run-{alerted}")
    page.shot("reading-board")
    assert card.locator("header a").inner_text().startswith(CHURN), card.locator("header a").inner_text()
    meta = card.locator(".meta").inner_text()
    assert meta.startswith("alert DetailPageSlow by the alertmanager token,"), meta
    sre = site.engine.site.people[site.engine.person_for("sre-oncall")].name
    assert f"→ SRE on-call ({sre})" in card.locator(".now").inner_text(), card.locator(".now").inner_text()
    assert page.locator(f"#run-{run_id} header a").inner_text().startswith(REVIEW)
    assert "by Li Wei 李伟," in page.locator(f"#run-{run_id} .meta").inner_text()
    page.goto(f"{site.url}/")
    mine = page.locator("li.card", has=page.locator(f"a[href^='/runs/{run_id}/steps/']")).first.inner_text()
    assert f"{REVIEW} · Customer Service Lead" in mine, mine
    assert page.locator(f"a[href='/runs/{run_id}']").inner_text().startswith(REVIEW)
    page.goto(f"{site.url}/runs/{run_id}")
    assert page.locator("h1").inner_text() == REVIEW
    started = page.locator(".facts dd").nth(1).inner_text()
    assert started.endswith("by Li Wei 李伟"), started
    assert page.title().startswith(REVIEW)


def analysed(site: Site, run_id: str) -> None:
    """The data analyst reports complaint-review's breakdown (once: the run is shared by the tests of the package)."""
    if site.engine.view(run_id).state("data") == "active":
        site.engine.report(run_id, "data", HumanReport(
            actor=site.engine.person_for("data-analyst"), evidence=["https://bi.example/complaints"],
            values={"complaint_rate_pct": 2.4, "top_driver": "delivery_delay", "driver_share_pct": 61,
                    "second_driver": "refund process"}))


def test_reported_values_read_in_the_forms_order_with_its_words(site: Site, open_page: Any) -> None:  # noqa: F811
    """The walk's "What happened" listed the analyst's figures A-Z (Complaint rate pct, Driver share pct, Second
    driver, Top driver) under names made from ids, without the form's "Complaints per 100 orders this month"."""
    run_id = review(site)
    analysed(site, run_id)
    page = open_page()
    browser_sign_in(page, site, "sara-lopez")  # the run's owner (cs-lead)
    page.goto(f"{site.url}/runs/{run_id}/steps/data")
    heads = page.locator("table.reported th")
    page.shot("reading-reported")
    assert [h.split("\n")[0] for h in heads.all_inner_texts()] == [
        "Complaint rate pct", "Top driver", "Driver share pct", "Second driver"], heads.all_inner_texts()
    assert heads.first.locator(".help").inner_text() == "Complaints per 100 orders this month"
    assert page.locator("table.reported td").nth(1).inner_text() == "Delivery delay"


def test_a_runs_pending_steps_are_three_lines_on_a_phone_and_hers_are_marked(site: Site, open_page: Any) -> None:  # noqa: F811
    """The walk's run page was 4,900 px tall at 390 px: every pending step a six-line card, three of them "—" (Due,
    Time left, Ladder). Those lines are left out now; her own steps still say "you" and are marked."""
    run_id = review(site)
    page = open_page()
    browser_sign_in(page, site, "sara-lopez")
    page.goto(f"{site.url}/runs/{run_id}")
    page.shot("reading-run")
    pending = page.locator("#step-plan")  # cs-lead's, waiting for the root-cause session
    shown = [td.get_attribute("data-label") for td in pending.locator("td").all() if td.is_visible()]
    assert shown == ["Step", "State", "Who"], shown
    assert pending.bounding_box()["height"] < 130, pending.bounding_box()  # was six lines, 170 px
    assert "—" not in pending.inner_text()
    holder = site.engine.person_for("cs-lead")
    if holder == "sara-lopez":  # on call for cs-lead now: her steps say so, and are marked
        assert "you" in pending.locator("td[data-label='Who']").inner_text()
        assert "mine" in (pending.get_attribute("class") or "")
        assert pending.evaluate("tr => getComputedStyle(tr).borderLeftWidth") == "4px"
    active = page.locator("tr.active td[data-label='Time left']").first
    assert active.is_visible()  # a step with a clock keeps its time left
    sent_to = set(page.locator("td[data-label='To']").all_inner_texts())  # the pages sent: to whom, by name
    people = site.engine.site.people
    assert sent_to and not sent_to & set(people) and people["sara-lopez"].name in sent_to, sent_to


def test_after_a_hand_over_one_notice_says_who_has_it_and_that_she_handed_it(site: Site, open_page: Any) -> None:  # noqa: F811
    """The walk's page after "Hand over" said it twice, one notice under the other (green "Handed over: wang-fang
    holds the step now…", yellow "Wang Fang … holds this step now: handed to them by you…")."""
    run_id = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:6]}"}, initiator="li-wei",
                               launch=False).run_id
    holder = site.engine.person_for("pr-oncall")
    to = next(p for p in ("wang-fang", "sara-lopez", "chen-jie") if p != holder)
    page = open_page()
    browser_sign_in(page, site, holder)
    page.goto(f"{site.url}/runs/{run_id}/steps/assess")
    page.locator("summary", has_text="Hand over").click()
    page.select_option("#f-to", to)
    page.fill("#f-handover-note", "boarding a plane")
    page.get_by_role("button", name="Hand over").click()
    page.wait_for_url(f"**/runs/{run_id}/steps/assess?done=handover")
    page.shot("reading-handed-over")
    name = site.engine.site.people[to].name
    said = [n.inner_text() for n in page.locator("main [role=status]").all()]
    assert len([s for s in said if name in s]) == 1, said
    assert said[0].startswith(f"Handed over: {name} holds the step now"), said
    assert "paged with your note" in said[0] and "handed to them by you" not in said[0], said
    held = page.locator(".facts dd").nth(1).inner_text()
    assert held.startswith(name) and "handed over by you" in held, held


def test_need_help_names_whom_it_will_page_before_she_presses_it(site: Site, open_page: Any) -> None:  # noqa: F811
    """The walk's "Need help" said "Pages the next people on this step's escalation ladder now": she could not tell
    whether it would reach anyone she knows before pressing. It names them (and the role they answer for) now, as
    the engine would page them; pressing pages exactly those."""
    run_id = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:6]}"}, initiator="li-wei",
                               launch=False).run_id
    page = open_page()
    browser_sign_in(page, site, "sara-lopez")  # pr-oncall's backup
    page.goto(f"{site.url}/runs/{run_id}/steps/assess")
    page.locator("summary", has_text="Need help").click()
    what = page.locator("#help-what").inner_text()
    page.shot("reading-need-help")
    assert not records(site.engine, run_id, "help_asked") and not records(site.engine, run_id, "escalation")
    assert what.startswith("Pages ") and "escalation ladder" not in what, what
    page.get_by_role("button", name="Page for help").click()
    page.wait_for_url(f"**/runs/{run_id}/steps/assess?done=help")
    paged = records(site.engine, run_id, "escalation")[-1]["data"]["paged"]
    people = site.engine.site.people
    named = what.removeprefix("Pages ").split(" now")[0]
    assert [part.split(" (")[0] for part in named.split("), ")] == [people[p].name for p in paged], (what, paged)
    roles = site.engine.site.roles
    assert any(f"{people[p].name} ({r.title})" in what for p in paged for r in roles.values()), what


def test_a_link_page_greets_her_in_the_bar_and_hand_over_asks_whom_before_it_posts(site: Site, open_page: Any) -> None:  # noqa: F811
    """The walk's link page greeted her as Sara Lopez (you) under a bar that said "Sign in"; its Hand over "To" had a
    red * but the phone let her press Hand over with nobody chosen (the server then sent the page back)."""
    run_id = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:6]}"}, initiator="li-wei",
                               launch=False).run_id
    holder = site.engine.person_for("pr-oncall")
    page = open_page()
    link = site.link_for(holder, run_id, "assess")
    page.goto(link)
    bar = page.locator("header.bar")
    page.shot("reading-link-bar")
    assert site.engine.site.people[holder].name in bar.inner_text() and "Sign in" not in bar.inner_text(), bar.inner_text()
    others = bar.get_by_role("link", name="All your steps")
    assert others.get_attribute("href") == "/sign-in?next=/" and others.bounding_box()["height"] >= 44
    page.locator("summary", has_text="Hand over").click()
    page.get_by_role("button", name="Hand over").click()  # nobody chosen
    assert page.url == link  # the phone asks first: nothing was posted, the link is not used up
    assert page.locator("#f-to").evaluate("s => !s.validity.valid && s.required")
    assert site.engine.link_used(site.engine.links.read_step(link.rsplit("/s/", 1)[1]).nonce) is None
