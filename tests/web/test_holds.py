"""Holds through the step page: the holder puts a step on hold for a reason its SOP declares, the page and
the board say so (since when, why), the holder releases it; someone else, or an undeclared reason, is
refused with nothing written.

The SOP is the library's creative refresh (``waiting_for: [platform_reply]``): its `impact` step
goes to ads-specialist (liu-yang on call; sun-hao the other member), whose lead is growth-lead.
"""

from __future__ import annotations

import re
import uuid

from tests.engine.conftest import records
from tests.web.conftest import Site
from tests.web.test_pages import csrf_of, field_errors, sign_in


def refresh(site: Site) -> str:
    return site.engine.start("creative-refresh", {"platform": f"p-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                             launch=False).run_id


def written(site: Site, run_id: str) -> list[str]:
    """The run's record kinds but deliveries (the pager's threads deliver the run's first pages meanwhile)."""
    return [r["kind"] for r in records(site.engine, run_id) if r["kind"] != "notification"]


def test_the_holder_puts_a_step_on_hold_from_its_page_the_board_shows_it_and_they_release_it(site: Site) -> None:
    run_id = refresh(site)
    page_path = f"/runs/{run_id}/steps/impact"
    client = site.client()
    sign_in(site, client, "liu-yang")
    page = client.get(page_path)
    assert page.status_code == 200 and "<summary>Put on hold</summary>" in page.text
    assert '<option value="platform_reply">platform reply</option>' in page.text
    assert "Release hold" not in page.text

    held = client.post(page_path, data={"csrf": csrf_of(page), "action": "hold", "hold_reason": "platform_reply",
                                        "note": "asked Douyin support about the new rules"})
    assert held.status_code == 303 and held.headers["location"] == f"{page_path}?done=hold"
    [record] = records(site.engine, run_id, "step_held")
    assert (record["actor"], record["step_id"]) == ("liu-yang", "impact")
    assert (record["data"]["via"], record["data"]["reason"]) == ("web", "platform_reply")
    since = site.engine.view(run_id).steps["impact"]["held_at"]
    assert since is not None

    after = client.get(held.headers["location"])
    assert "On hold: its clock, reminders and escalations are stopped" in after.text
    shown = re.sub(r"\s+", " ", after.text)
    assert "<strong>On hold</strong> since <time" in shown and since.isoformat() in shown
    assert "waiting for <strong>platform_reply</strong>: asked Douyin support about the new rules" in shown
    assert "clock stopped while on hold" in shown and "Release hold" in shown
    assert "<summary>Put on hold</summary>" not in shown

    operator = site.client()
    sign_in(site, operator, "zhang-min")  # growth lead and an operator: the board
    board = operator.get("/board")
    row = board.text.split(f'id="run-{run_id}"', 1)[1].split("</article>", 1)[0]
    assert "on hold since" in row and f'datetime="{since.isoformat()}"' in row
    assert "waiting for platform_reply" in row and "(Liu Yang 刘洋)" in row
    run_page = re.sub(r"\s+", " ", operator.get(f"/runs/{run_id}").text)  # the run's steps table says so too
    impact = run_page.split('id="step-impact"', 1)[1].split("</tr>", 1)[0]
    cells = dict(re.findall(r'<td data-label="([^"]+)">(.*?)</td>', impact))
    assert '<span class="held">on hold</span>' in cells["State"] and cells["Time left"] == "clock stopped"

    released = client.post(page_path, data={"csrf": csrf_of(after), "action": "release", "note": "they answered"})
    assert released.status_code == 303 and released.headers["location"] == f"{page_path}?done=release"
    [end] = records(site.engine, run_id, "step_released")
    assert (end["actor"], end["data"]["via"], end["data"]["ended"]) == ("liu-yang", "web", "released")
    assert end["data"]["due_at"] > end["data"]["previous_due_at"]  # moved later by the time held
    assert site.engine.view(run_id).steps["impact"]["held_at"] is None
    again = client.get(released.headers["location"])
    assert "Released: its clock runs again" in again.text and "<summary>Put on hold</summary>" in again.text
    row = operator.get("/board").text.split(f'id="run-{run_id}"', 1)[1].split("</article>", 1)[0]
    assert "on hold" not in row


def test_someone_not_allowed_and_an_undeclared_reason_are_refused_and_nothing_is_written(site: Site) -> None:
    run_id = refresh(site)
    page_path = f"/runs/{run_id}/steps/impact"
    other = site.client()
    sign_in(site, other, "sun-hao")  # ads-specialist too, but not the holder, its lead, the owner or an operator
    page = other.get(page_path)
    assert page.status_code == 200 and 'name="action" value="done"' in page.text  # may report on the step
    assert "Put on hold" not in page.text  # but is not offered the hold
    before = written(site, run_id)
    refused = other.post(page_path, data={"csrf": csrf_of(page), "action": "hold", "hold_reason": "platform_reply"})
    assert refused.status_code == 403
    assert "sun-hao may not put on hold step `impact`: only the person the step is with (liu-yang)" in refused.text

    holder = site.client()
    sign_in(site, holder, "liu-yang")
    page = holder.get(page_path)
    wrong = holder.post(page_path, data={"csrf": csrf_of(page), "action": "hold", "hold_reason": "customer",
                                         "note": "waiting on someone"})
    assert wrong.status_code == 422
    assert field_errors(wrong) == {"hold_reason": "`customer` is not a reason to hold `impact`: it may wait for "
                                                  "platform_reply"}
    assert "<details class=\"card\" id=\"hold\" open>" in wrong.text and ">waiting on someone</textarea>" in wrong.text
    unsigned = holder.post(page_path, data={"action": "hold", "hold_reason": "platform_reply"})
    assert unsigned.status_code == 403 and "Nothing was recorded" in unsigned.text

    assert written(site, run_id) == before
    assert site.engine.view(run_id).steps["impact"]["held_at"] is None


def test_the_run_owner_holds_the_whole_run_from_its_page_and_releases_it_and_another_person_is_refused(
        site: Site) -> None:
    run_id = refresh(site)
    owner = site.client()
    sign_in(site, owner, "huang-ting")  # creative-lead, the run's owner
    page = owner.get(f"/runs/{run_id}")
    assert "<summary>Put the run on hold</summary>" in page.text
    long = owner.post(f"/runs/{run_id}/hold", data={"csrf": csrf_of(page), "reason": "platform_reply",
                                                    "note": "n" * 4_001})  # was cut at 2,000 without a word
    assert long.status_code == 422 and "the note is at most 4,000 characters (4,001 given)" in long.text
    assert not records(site.engine, run_id, "run_held")
    held = owner.post(f"/runs/{run_id}/hold", data={"csrf": csrf_of(page), "reason": "platform_reply",
                                                    "note": "Douyin reviews the new rules"})
    assert held.status_code == 303 and held.headers["location"] == f"/runs/{run_id}?hold=1#hold"
    [record] = records(site.engine, run_id, "run_held")
    assert (record["actor"], record["data"]["via"], record["data"]["reason"]) == ("huang-ting", "web", "platform_reply")
    assert site.engine.view(run_id).steps["impact"]["held_at"] is not None
    after = re.sub(r"\s+", " ", owner.get(held.headers["location"]).text)
    assert "waiting for platform reply" in after and "Release the run's hold" in after
    assert "waits while the run is on hold" in after  # its deadline: no time left counting down
    operator = site.client()
    sign_in(site, operator, "zhang-min")
    row = operator.get("/board").text.split(f'id="run-{run_id}"', 1)[1].split("</article>", 1)[0]
    assert "the run is on hold since" in row and "its deadline waits" in row and "deadline <" not in row
    liu = site.client()
    sign_in(site, liu, "liu-yang")  # impact's person: their home lists it, its clock stopped
    mine = re.sub(r"\s+", " ", liu.get("/").text)
    card = mine.split(f'/runs/{run_id}/steps/impact"', 1)[1].split("</li>", 1)[0]
    assert "on hold: its clock is stopped" in card and " left" not in card

    other = site.client()
    sign_in(site, other, "sun-hao")  # of ads-specialist: neither the run's owner nor an operator
    theirs = other.get(f"/runs/{run_id}")
    assert "Release the run" not in theirs.text
    before = written(site, run_id)
    refused = other.post(f"/runs/{run_id}/release", data={"csrf": csrf_of(theirs)})
    assert refused.status_code == 403 and f"sun-hao may not release run {run_id}" in refused.text
    assert written(site, run_id) == before

    released = owner.post(f"/runs/{run_id}/release", data={"csrf": csrf_of(page), "note": "approved"})
    assert released.status_code == 303
    [end] = records(site.engine, run_id, "run_released")
    assert (end["actor"], end["data"]["via"], end["data"]["ended"]) == ("huang-ting", "web", "released")
    assert site.engine.view(run_id).steps["impact"]["held_at"] is None
