"""Handing a step over, as its people see it: who is offered the form, who is told, what the page says after.

The walkthrough of a big-sale day (li-wei, operations director): a late step held by an
on-call engineer, reassigned from above; the person it was taken from; the new holder.
"""

from __future__ import annotations

import html
import re
import uuid

import httpx
import pytest

from flows.language.actors import Actor
from flows.language.steps.human import ReportRefused
from tests.engine.conftest import records, wait_for
from tests.web.conftest import Site
from tests.web.test_pages import csrf_of, field_errors, sign_in


def surge(site: Site, taken_by: str | None = None) -> str:
    """A traffic-surge run (owner sre-lead); its `command` step (sre-oncall) with whoever is on call, or taken."""
    run_id = site.engine.start("traffic-surge", {"service": f"s-{uuid.uuid4().hex[:8]}"}, initiator="tom-becker",
                               launch=False).run_id
    if taken_by:
        site.engine.claim(run_id, "command", taken_by)
    return run_id


def said(page: httpx.Response) -> str:
    """The page's words as a reader sees them: no tags, one space between words."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


def handover_options(page: httpx.Response) -> list[str]:
    """The people the page's Hand over form offers (none: no form)."""
    if 'value="handover"' not in page.text:
        return []
    select = page.text.split('<select name="to"', 1)[1].split("</select>", 1)[0]
    return [part.split('"', 1)[0] for part in select.split('<option value="')[2:]]


def test_the_director_above_the_roles_lead_hands_a_late_step_over_in_one_action(site: Site) -> None:
    run_id = surge(site)  # `command` went to sre-oncall's engineer on call; nobody took it
    holder = site.engine.person_for("sre-oncall")
    other = next(p for p in ("kenji-sato", "zhao-lei", "tom-becker") if p != holder)
    client = site.client()
    sign_in(site, client, "li-wei")  # ops-director: the lead of sre-lead, the lead of sre-oncall
    page = client.get(f"/runs/{run_id}/steps/command")
    offered = handover_options(page)
    assert other in offered and "sara-lopez" in offered and holder not in offered  # anyone but who has it
    handed = client.post(f"/runs/{run_id}/steps/command", data={"csrf": csrf_of(page), "action": "handover",
                                                                "to": other, "note": "Checkout first"})
    assert handed.status_code == 303, handed.text
    assert f"Handed over: {site.engine.site.people[other].name} holds the step now" in client.get(handed.headers["location"]).text
    record = records(site.engine, run_id, "step_handed_over")[-1]
    assert (record["actor"], record["data"]["holder"], record["data"]["to"]) == ("li-wei", holder, other)
    # the terminal asks the same rule (`sop hand-over … --as li-wei`), also of a step someone took
    run_id = surge(site, taken_by="zhao-lei")
    assert site.engine.hand_over(run_id, "command", Actor("li-wei", via="cli"), "kenji-sato") == "kenji-sato"


def test_an_operator_may_hand_over_as_they_may_hold_and_the_page_offers_only_what_the_engine_takes(
        site: Site) -> None:
    run_id = surge(site, taken_by="zhao-lei")
    # chen-jie (pr-lead) is an operator: as for holds, he may hand any step over, though not report it
    client = site.client()
    sign_in(site, client, "chen-jie")
    page = client.get(f"/runs/{run_id}/steps/command")
    assert "Zhao Lei 赵磊 holds this step now" in said(page) and 'name="protections"' not in page.text
    assert "kenji-sato" in handover_options(page)
    assert site.engine.hand_over(run_id, "command", Actor("chen-jie", via="cli"), "tom-becker") == "tom-becker"
    # kenji-sato, a member of sre-oncall who neither holds it nor leads, is offered no form and is refused
    client = site.client()
    sign_in(site, client, "kenji-sato")
    page = client.get(f"/runs/{run_id}/steps/command")
    assert handover_options(page) == []
    with pytest.raises(ReportRefused, match="kenji-sato does not hold `command` \\(tom-becker does\\)"):
        site.engine.hand_over(run_id, "command", Actor("kenji-sato", via="cli"), "zhao-lei")


def test_a_member_who_does_not_hold_an_untaken_step_is_not_offered_the_hand_over(site: Site) -> None:
    run_id = site.engine.start("creative-refresh", {"platform": f"p-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                               launch=False).run_id
    assert site.engine.person_for("ads-specialist") == "liu-yang"  # impact went to him; nobody took it
    client = site.client()
    sign_in(site, client, "sun-hao")  # ads-specialist's backup, no lead, no operator: may report it, not hand it away
    page = client.get(f"/runs/{run_id}/steps/impact")
    assert 'name="change_type"' in page.text and handover_options(page) == []
    with pytest.raises(ReportRefused, match="sun-hao does not hold `impact` \\(liu-yang does\\)"):
        site.engine.hand_over(run_id, "impact", Actor("sun-hao", via="web"), "zhang-min")
    # handed to him, he holds it: he may give it to another member of the role only, and is offered just those
    site.engine.hand_over(run_id, "impact", "zhang-min", "sun-hao")  # growth-lead, the role's lead
    page = client.get(f"/runs/{run_id}/steps/impact")
    assert handover_options(page) == ["liu-yang"]
    outsider = client.post(f"/runs/{run_id}/steps/impact", data={"csrf": csrf_of(page), "action": "handover",
                                                                 "to": "huang-ting"})
    assert outsider.status_code == 422 and "huang-ting is not a member of ads-specialist" in field_errors(outsider)["to"]


def test_whom_a_step_is_handed_away_from_is_told_and_their_page_says_who_holds_it_now(site: Site) -> None:
    run_id = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                               launch=False).run_id
    site.engine.claim(run_id, "assess", "wang-fang")
    seen = len(site.inbox("wang-fang"))
    site.engine.hand_over(run_id, "assess", Actor("chen-jie", via="cli"), "sara-lopez", "KOL thread first")
    told = wait_for(lambda: next((m for m in site.inbox("wang-fang")[seen:] if "Handed to" in m["title"]), None), 10,
                    "wang-fang told the step was handed away")
    assert told["title"] == ("[P1] Handed to Sara Lopez by Chen Jie 陈杰: Assess scope, spread and severity "
                             "(Crisis PR - negative mentions spike (more than 100 a day)); you no longer need to act")
    assert "You no longer need to act on it: it is theirs now." in told["body"] and "/s/" not in told["body"]
    # her page: who holds it now and how, no "I'll take it" (the engine refuses a step someone holds); she leads
    # pr-oncall too (pr-lead), so the engine still takes her report: the page offers it and says whose it is
    client = site.client()
    sign_in(site, client, "wang-fang")
    page = client.get(f"/runs/{run_id}/steps/assess")
    assert "Sara Lopez holds this step now : handed to them by Chen Jie 陈杰 (it was yours) at" in said(page)
    assert "you may still report it (you oversee PR on-call), but Sara Lopez is working on it" in said(page)
    assert "I'll take it" not in said(page) and 'name="severity"' in page.text
    # the one who handed it over is not told it was handed away from them
    site.engine.hand_over(run_id, "assess", Actor("sara-lopez", via="cli"), "chen-jie")
    record = records(site.engine, run_id, "step_handed_over")[-1]
    assert record["data"]["holder"] == "sara-lopez"
    assert not [m for m in site.inbox("sara-lopez") if m["title"].startswith("[P1] Handed to chen-jie")]


def test_a_member_who_neither_holds_nor_oversees_a_held_step_is_told_nothing_is_asked_of_them(site: Site) -> None:
    run_id = surge(site, taken_by="tom-becker")
    client = site.client()
    sign_in(site, client, "kenji-sato")
    page = client.get(f"/runs/{run_id}/steps/command")
    assert "Tom Becker holds this step now : they took it at" in said(page)
    assert "nothing is asked of you" in said(page) and 'name="protections"' not in page.text
    assert "I'll take it" not in said(page)


def fire_next_rung(site: Site, run_id: str, step_id: str) -> None:
    """The step's next armed ladder level fires now, as the timer service fires it when it is due."""
    import sqlalchemy as sa

    from flows.engine.timers import TimerService
    from flows.ledger.schema import timers

    with site.engine.ledger.read() as conn:
        timer_id = conn.execute(sa.select(timers.c.id).where(
            (timers.c.run_id == run_id) & (timers.c.step_id == step_id) & (timers.c.kind == "ladder")
            & timers.c.fired_at.is_(None) & timers.c.cancelled_at.is_(None)).order_by(timers.c.due_at)).scalar()
    assert TimerService(site.engine).fire(timer_id) is not None


def test_the_step_page_says_whom_it_is_with_how_far_it_escalated_and_the_hand_over_note(site: Site) -> None:
    run_id = surge(site)
    holder = site.engine.person_for("sre-oncall")
    name = site.engine.site.people[holder].name
    client = site.client()
    sign_in(site, client, "li-wei")
    page = said(client.get(f"/runs/{run_id}/steps/command"))
    assert f"With {name} : on call for SRE on-call" in page and "Escalation" not in page
    for _ in range(3):  # 50%: the assignee; 100%: lead and backup; then every 10m: the owner and the director
        fire_next_rung(site, run_id, "command")
    page = client.get(f"/runs/{run_id}/steps/command")
    backup = site.engine.on_call("sre-oncall").backup
    # in the words of its pages, the run page and the audit (not the key "level 3.1")
    assert "Escalation stage 3, repeat 1 reached at" in said(page)
    assert "(owner, ops-director): paged Tom Becker (SRE Lead), Li Wei 李伟 (Operations Director) · 3 levels fired so far" \
        in said(page)  # each with the role they answer for
    assert f"(lead, backup): paged Tom Becker (SRE Lead), {site.engine.site.people[backup].name} (SRE on-call)" \
        not in said(page)  # the latest only
    other = next(p for p in ("kenji-sato", "zhao-lei", "tom-becker") if p != holder)
    handed = client.post(f"/runs/{run_id}/steps/command", data={"csrf": csrf_of(page), "action": "handover",
                                                                "to": other, "note": "Checkout first"})
    assert handed.status_code == 303
    theirs = site.client()
    sign_in(site, theirs, other)
    page = said(theirs.get(f"/runs/{run_id}/steps/command"))
    other_name = site.engine.site.people[other].name
    assert f"Held by {other_name} (you): handed over by Li Wei 李伟 at" in page
    assert "Hand-over note Checkout first (Li Wei 李伟)" in page and "<q>Checkout first</q>" in theirs.get(f"/runs/{run_id}/steps/command").text


def test_an_operator_may_not_hand_a_step_to_themselves_to_report_it(site: Site) -> None:
    """cs-lead is an operator: she may hand an ads step on, but not to herself, which would let her report a step
    her roles may not act on (review)."""
    run_id = site.engine.start("creative-refresh", {"platform": f"p-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                               launch=False).run_id
    view = site.engine.view(run_id)
    step = view.sop.step("impact")
    targets = site.engine.hand_over_targets(view, step, "sara-lopez")
    assert "sun-hao" in targets and "sara-lopez" not in targets
    with pytest.raises(ReportRefused):
        site.engine.hand_over(run_id, "impact", Actor("sara-lopez", via="web"), "sara-lopez")
    assert site.engine.view(run_id).steps["impact"]["claimed_by"] is None
