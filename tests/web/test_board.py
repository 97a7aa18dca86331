"""The ops manager's board over HTTP: who may open it, starting a playbook from its form, live rows, cancelling."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from flows.engine import outbox
from tests.engine.conftest import records, wait_for
from tests.web.conftest import Site
from tests.web.test_pages import csrf_of, field_errors, sign_in


def operator(site: Site, person: str = "li-wei") -> httpx.Client:
    client = site.client()
    sign_in(site, client, person)
    return client


def test_a_responder_cannot_open_the_board_or_its_write_actions(site: Site) -> None:
    run_id = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                               launch=False).run_id
    responder = site.client()
    sign_in(site, responder, "kenji-sato")  # SRE on-call: no operator
    csrf = csrf_of(responder.get("/"))
    assert responder.get("/board").status_code == 403
    assert responder.get("/board/start/crisis-pr").status_code == 403
    started = responder.post("/board/start/crisis-pr", data={"csrf": csrf, "brand": "x"})
    cancelled = responder.post(f"/runs/{run_id}/cancel", data={"csrf": csrf, "reason": "not mine"})
    assert started.status_code == 403 and cancelled.status_code == 403
    assert site.engine.view(run_id).is_open
    token = httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {site.tokens['sre-oncall-phone']}"})
    assert token.post("/v1/runs", json={"sop": "crisis-pr"}).status_code == 403  # nor the API's, with a token
    assert token.post(f"/v1/runs/{run_id}/cancel", json={"reason": "x"}).status_code == 403


def test_the_cs_lead_opens_the_board_and_starts_the_complaint_review_they_own(site: Site) -> None:
    client = operator(site, "sara-lopez")  # cs-lead's primary: complaint-review (R5, a complaint, first) is theirs
    assert client.get("/board").status_code == 200 and 'href="/board"' in client.get("/").text
    assert client.get("/board/start/complaint-review").status_code == 200


def test_a_required_input_left_blank_on_the_start_form_is_refused_beside_it(site: Site) -> None:
    """As `sop run -p platform=` and the API: a blank is not a value (the form already refused it; kept so)."""
    client = operator(site)
    form = client.get("/board/start/creative-refresh")
    blank = client.post("/board/start/creative-refresh", data={"csrf": csrf_of(form), "platform": "   "})
    assert blank.status_code == 422 and field_errors(blank) == {"platform": "required"}


def test_an_operator_starts_a_playbook_from_its_form_and_a_repeat_attaches(site: Site) -> None:
    client = operator(site)
    picked = client.get("/board/start")  # the playbooks to pick from, their deadlines as people write them
    assert "crisis-pr · complaint · deadline 2h" in picked.text and "0:00:00" not in picked.text
    form = client.get("/board/start/crisis-pr")
    assert form.status_code == 200 and 'name="mentions_per_day"' in form.text and 'name="drill"' in form.text
    brand = f"b-{uuid.uuid4().hex[:8]}"
    wrong = client.post("/board/start/crisis-pr", data={"csrf": csrf_of(form), "brand": brand,
                                                        "mentions_per_day": "-5"})
    assert wrong.status_code == 422 and field_errors(wrong) == {"mentions_per_day": "must be at least 0, got -5"}
    slow = client.post("/board/start/crisis-pr", data={"csrf": csrf_of(form), "brand": brand, "drill": "1",
                                                       "speed": "1e9"})
    assert slow.status_code == 422 and "a number from 0.001 to 100000" in field_errors(slow)["speed"]
    started = client.post("/board/start/crisis-pr", data={"csrf": csrf_of(form), "brand": brand,
                                                          "mentions_per_day": "140"})
    assert started.status_code == 303 and started.headers["location"].endswith("?started=1")
    run_id = started.headers["location"].split("/runs/", 1)[1].split("?")[0]
    first = records(site.engine, run_id, "run_started")[0]
    assert first["actor"] == "li-wei" and first["data"]["via"] == "web"
    again = client.post("/board/start/crisis-pr", data={"csrf": csrf_of(form), "brand": brand})
    assert again.headers["location"] == f"/runs/{run_id}?attached=1"
    page = client.get(again.headers["location"])
    assert f"Attached to the open run {run_id}" in page.text


def test_a_drill_started_from_the_form_names_who_takes_part_and_a_name_that_is_nobody_is_said_beside_it(
        site: Site) -> None:
    client = operator(site)
    form = client.get("/board/start/crisis-pr")
    assert 'name="people"' in form.text  # one field, in the drill's fieldset
    brand = f"b-{uuid.uuid4().hex[:8]}"
    drill = {"csrf": csrf_of(form), "brand": brand, "drill": "1", "speed": "100"}
    wrong = client.post("/board/start/crisis-pr", data={**drill, "people": "wang-fang, chenjie"})
    assert wrong.status_code == 422, wrong.text[:300]
    said = field_errors(wrong)["people"]
    assert "person `chenjie` is not a person in config/" in said and "chen-jie" in said, said
    assert 'value="wang-fang, chenjie"' in wrong.text  # what was typed is kept
    started = client.post("/board/start/crisis-pr", data={**drill, "people": "wang-fang, chen-jie"})
    assert started.status_code == 303, started.text[:300]
    run_id = started.headers["location"].split("/runs/", 1)[1].split("?")[0]
    try:
        trigger = records(site.engine, run_id, "run_started")[0]["data"]["trigger"]
        assert trigger["kind"] == "drill" and trigger["people"] == ["wang-fang", "chen-jie"]
    finally:
        site.engine.cancel(run_id, "test over", "li-wei")


def test_a_start_from_the_form_in_another_case_attaches_and_the_run_keeps_its_first_subject(site: Site) -> None:
    """The alert opened crisis-pr for ``lumi-…``; the director types " Lumi-… " in the board's form: no second P1
    run, the run page says it attached, and the run is still called as the alert wrote it (board, page title)."""
    brand = f"lumi-{uuid.uuid4().hex[:8]}"
    alerted = site.engine.start("crisis-pr", {"brand": brand}, initiator="alertmanager", launch=False,
                                trigger={"kind": "alert", "labels": {"alertname": "NegativeSentimentSpike",
                                                                     "brand": brand}}).run_id
    client = operator(site)
    form = client.get("/board/start/crisis-pr")
    again = client.post("/board/start/crisis-pr", data={"csrf": csrf_of(form), "brand": f" {brand.capitalize()} "})
    assert again.headers["location"] == f"/runs/{alerted}?attached=1"
    page = client.get(again.headers["location"])
    assert f"Attached to the open run {alerted} with the same dedup key ({brand}; letter case" in page.text
    assert re.search(rf"<title>Crisis PR[^<]* · {brand} · run [^<]*</title>", page.text), page.text[:300]
    board = client.get("/board").text
    assert board.count(f'href="/runs/{alerted}"') >= 1 and brand.capitalize() not in board


def test_the_board_orders_runs_and_answers_only_when_the_ledger_moved(site: Site) -> None:
    client = operator(site)
    routine = site.engine.start("t-approval", {}, initiator="li-wei", launch=False).run_id
    crisis = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                               launch=False).run_id
    for run_id in (routine, crisis):  # their pages' deliveries are records too: let them land first
        outbox.wait_delivered(site.engine.ledger, run_id, timeout=10)
    page = client.get("/board")
    assert page.status_code == 200
    order = re.findall(r'id="run-([0-9a-f]+)"', page.text)
    assert order.index(crisis) < order.index(routine)  # P1 before P4
    assert order[0] == crisis or site.engine.view(order[0]).run["priority"] == 1
    version = int(re.search(r'data-version="(\d+)"', page.text).group(1))  # type: ignore[union-attr]
    assert client.get(f"/board/rows?after={version}").status_code == 204
    site.engine.claim(crisis, "assess", "sara-lopez")
    outbox.wait_delivered(site.engine.ledger, crisis, timeout=10)
    moved = client.get(f"/board/rows?after={version}")
    assert moved.status_code == 200 and int(moved.headers["X-Board-Version"]) > version
    assert "taken by <strong>Sara Lopez</strong>" in moved.text
    mine = client.get("/board?person=sara-lopez").text
    assert f'id="run-{crisis}"' in mine and f'id="run-{routine}"' not in mine
    assert f'id="run-{crisis}"' not in client.get("/board?class=routine").text
    assert f'id="run-{routine}"' in client.get("/board?role=growth-lead").text
    # a value no choice has (an address edited by hand) is said, not answered "no open run matches"
    bogus = client.get("/board", params={"class": "bogus", "person": "nobody"})
    assert bogus.status_code == 422
    assert "`bogus` is no class here (one of: complaint, outage, policy, routine)" in bogus.text
    assert "`nobody` is no person here" in bogus.text
    nul = client.get("/board?sop=%00", headers={"Accept": "text/html"})  # a page, not the API's JSON
    assert nul.status_code == 400 and nul.headers["content-type"].startswith("text/html") and "NUL" in nul.text


def test_the_board_says_a_handed_over_step_was_handed_over_and_by_whom(site: Site) -> None:
    client = operator(site)
    run_id = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                               launch=False).run_id
    holder = site.engine.person_for("pr-oncall")
    to = next(p for p in ("wang-fang", "chen-jie") if p != holder)
    site.engine.hand_over(run_id, "assess", holder, to, "boarding a plane")
    card = client.get("/board").text.split(f'id="run-{run_id}"', 1)[1].split("</article>", 1)[0]
    names = site.engine.site.people
    assert f"handed to <strong>{names[to].name}</strong> by {names[holder].name}" in card and "taken by" not in card


def test_an_automated_step_that_failed_shows_on_the_board_until_the_run_ends(site: Site) -> None:
    """traffic-surge's circuit breakers could not be set: the run goes on (its people are working), and the board
    says which step failed, so an operator sees someone must do it by hand."""
    client = operator(site)
    run = site.engine.start("traffic-surge", {"service": f"s-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                            launch=False).run_id
    outbox.wait_delivered(site.engine.ledger, run, timeout=10)
    before = len(site.inbox("tom-becker"))  # sre-lead's primary: the owner
    site.engine.mark_running(run, "breaker")
    site.engine.complete(run, "breaker", {}, error="PUT http://127.0.0.1:9900/v1/circuit-breakers failed: refused")
    site.engine.advance(run)
    assert site.engine.view(run).is_open
    [told] = wait_for(lambda: [m for m in site.inbox("tom-becker")[before:] if "Automated step failed" in m["title"]],
                      10, "the owner's page")
    assert "circuit-breakers failed: refused" in told["body"] and "Carry it out by hand" in told["body"]
    row = re.search(rf'<article class="card run[^"]*" id="run-{run}">(.*?)</article>', client.get("/board").text, re.S)
    assert row is not None
    assert f'href="/runs/{run}#step-breaker"' in row.group(1)
    assert "(http, failed: carry it out by hand)" in row.group(1)
    page = client.get(f"/runs/{run}")  # the run's page says why, on the step's row
    assert page.status_code == 200
    assert re.search(r'<tr class="failed" id="step-breaker">.*?circuit-breakers failed: refused', page.text, re.S)


def test_cancelling_needs_a_reason_and_is_recorded_with_who(site: Site) -> None:
    run_id = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                               launch=False).run_id
    client = operator(site, "chen-jie")
    page = client.get(f"/runs/{run_id}")
    assert "Cancel this run" in page.text
    none = client.post(f"/runs/{run_id}/cancel", data={"csrf": csrf_of(page), "reason": "  "})
    assert none.status_code == 422 and site.engine.view(run_id).is_open
    assert field_errors(none)["cancel"].startswith("say why the run is cancelled")  # beside the form, on the run page
    done = client.post(f"/runs/{run_id}/cancel", data={"csrf": csrf_of(page), "reason": "false alarm"})
    assert done.status_code == 303
    view = site.engine.view(run_id)
    assert view.run["status"] == "cancelled" and view.run["outcome"] == "cancelled: false alarm"
    cancelled = records(site.engine, run_id, "run_cancelled")[-1]
    assert cancelled["actor"] == "chen-jie" and cancelled["data"]["via"] == "web"


def test_the_library_shows_an_sop_with_its_graph_ladder_triggers_and_versions(site: Site) -> None:
    client = operator(site, "zhang-min")
    listing = client.get("/library")
    assert listing.status_code == 200 and '/library/crisis-pr' in listing.text
    page = client.get("/library/crisis-pr")
    assert page.status_code == 200
    assert '<pre class="mermaid"' in page.text and "flowchart TD" in page.text  # the text `sop graph` prints
    assert "metric negative_mentions &gt; 100 per day" in page.text  # triggers in words
    assert "+7m30s: reminder → assignee" in page.text  # assess's ladder at its offsets
    assert "+1h15m: escalated → owner, ops-director" in page.text  # its 4th and last repeat: max 4, all listed
    assert "(current)" in page.text  # crisis-pr ran in this package on the library's text
    assert client.get("/library/nosuch").status_code == 404


def test_people_shows_roles_masked_contacts_and_sends_me_a_test_page(site: Site) -> None:
    client = operator(site, "zhang-min")
    page = client.get("/people")
    assert page.status_code == 200 and "Wang Fang 王芳" in page.text and "pr-oncall" in page.text
    assert "<code>inbox://wang-fang</code>" in page.text  # masked as deliveries are recorded
    before = len(site.inbox("zhang-min"))
    sent = client.post("/people/test", data={"csrf": csrf_of(page)})
    assert sent.status_code == 200 and "inbox://zhang-min: delivered" in sent.text
    assert site.messages("zhang-min", before)[0]["title"] == "[P4] Test notification for Zhang Min 张敏"
    assert site.client().post("/people/test", data={}).status_code == 303  # signed in first


def test_a_waiting_board_hears_of_a_change_at_once(site: Site) -> None:
    import threading

    client = operator(site)
    run_id = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                               launch=False).run_id
    outbox.wait_delivered(site.engine.ledger, run_id, timeout=10)
    version = int(re.search(r'data-version="(\d+)"', client.get("/board").text).group(1))  # type: ignore[union-attr]
    answers: list[httpx.Response] = []
    waiting = threading.Thread(target=lambda: answers.append(client.get(f"/board/rows?after={version}&wait=20")))
    waiting.start()
    site.engine.claim(run_id, "assess", "wang-fang")
    waiting.join(20)
    assert answers and answers[0].status_code == 200  # answered by the change, not by the 20 s timeout
    assert "taken by <strong>Wang Fang 王芳</strong>" in answers[0].text


def test_the_run_page_posts_a_status_update_and_snoozes_the_next_ask(site: Site) -> None:
    run_id = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                               launch=False).run_id
    client = site.client()
    sign_in(site, client, "chen-jie")  # pr-lead: the run's owner
    page = client.get(f"/runs/{run_id}")
    assert "Asked of PR Lead every 30m" in page.text and "None yet." in page.text
    posted = client.post(f"/runs/{run_id}/updates", data={"csrf": csrf_of(page), "text": "statement drafted"})
    assert posted.status_code == 303
    page = client.get(posted.headers["location"])
    assert "Chen Jie" in page.text or "chen-jie" in page.text
    assert "statement drafted" in page.text and records(site.engine, run_id, "status_update")[-1]["data"]["via"] == "web"
    too_long = client.post(f"/runs/{run_id}/snooze", data={"csrf": csrf_of(page), "for": "2h", "reason": "call"})
    assert too_long.status_code == 422 and "a snooze is up to 30m" in too_long.text
    # said beside the snooze form on the run's own page, open, with what was typed kept
    assert field_errors(too_long)["snooze"].startswith("a snooze is up to 30m")
    assert 'value="2h"' in too_long.text and 'value="call"' in too_long.text and "<h1>" in too_long.text
    bad = client.post(f"/runs/{run_id}/snooze", data={"csrf": csrf_of(page), "for": "2x", "reason": "press call"})
    assert bad.status_code == 422 and field_errors(bad)["snooze"].startswith("how long:")
    empty = client.post(f"/runs/{run_id}/updates", data={"csrf": csrf_of(page), "text": "   "})
    assert empty.status_code == 422 and "needs some text" in field_errors(empty)["update"]
    ended = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                              launch=False).run_id
    site.engine.cancel(ended, "duplicate", "li-wei")  # a stale page: its forms are gone, the refusal is a page
    late = client.post(f"/runs/{ended}/updates", data={"csrf": csrf_of(page), "text": "still on it"})
    assert late.status_code == 422 and "takes no status updates" in late.text
    snoozed = client.post(f"/runs/{run_id}/snooze", data={"csrf": csrf_of(page), "for": "15m", "reason": "press call"})
    assert snoozed.status_code == 303
    assert records(site.engine, run_id, "cadence_snoozed")[-1]["actor"] == "chen-jie"


def test_the_live_rows_answer_a_script_plainly_and_a_bad_wait_does_not_hang(site: Site) -> None:
    assert site.client().get("/board/rows?after=0&wait=1").status_code == 401  # signed out: the script stops
    responder = site.client()
    sign_in(site, responder, "kenji-sato")  # SRE on-call: no operator
    assert responder.get("/board/rows?after=0").status_code == 403
    client = operator(site)
    version = int(re.search(r'data-version="(\d+)"', client.get("/board").text).group(1))  # type: ignore[union-attr]
    assert client.get(f"/board/rows?after={version + 10**9}&wait=nan").status_code == 204  # answered, not held


def test_a_status_update_comes_from_the_runs_people_only(site: Site) -> None:
    from flows.engine.inputs import InputRefused

    run_id = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                               launch=False).run_id
    with pytest.raises(InputRefused, match="huang-ting is not one of this run's people"):
        site.engine.post_update(run_id, "huang-ting", "all good")
    # a long one is refused, not cut at 4,000 characters without a word
    with pytest.raises(InputRefused, match=r"a status update is at most 4,000 characters \(50,000 given\)"):
        site.engine.post_update(run_id, "sara-lopez", "x" * 50_000)
    with pytest.raises(InputRefused, match=r"the reason is at most 4,000 characters"):
        site.engine.cancel(run_id, "y" * 10_000, "li-wei")
    assert site.engine.view(run_id).is_open
    assert site.engine.post_update(run_id, "sara-lopez", "CS briefed")  # a step of it (facts, brief-cs) is hers


def test_runs_leads_to_the_open_runs_and_a_scheduled_run_is_not_by_schedule_twice(site: Site) -> None:
    client = operator(site)
    moved = client.get("/runs")
    assert (moved.status_code, moved.headers["location"]) == (303, "/#runs")
    assert 'id="runs"' in client.get("/").text
    run = site.engine.start("t-approval", {}, initiator="schedule", trigger={"kind": "schedule", "cron": "0 9 * * MON"},
                            launch=False).run_id
    row = re.search(rf'id="run-{run}">(.*?)</article>', client.get("/board").text, re.S)
    assert row is not None and "schedule by schedule" not in row.group(1) and "schedule," in row.group(1)


def _card(page: str, run_id: str) -> str:
    """The board's card of one run (its heading and its steps)."""
    found = re.search(rf'<article class="card run[^"]*" id="run-{run_id}">(.*?)</article>', page, re.S)
    assert found, f"no card for {run_id}"
    return found.group(1)


def test_two_runs_of_one_sop_read_apart_by_what_they_are_about(site: Site) -> None:
    """A big-sale day: two crisis-PR runs (brand lumi and lumi-kids) read the same but for their run ids. Each says
    its brand (its dedup key) on its board card's heading, its run page's header, and the titles of its pages."""
    client = operator(site)
    tag = uuid.uuid4().hex[:6]
    brands = [f"lumi-{tag}", f"lumi-kids-{tag}"]
    run_ids = [site.engine.start("crisis-pr", {"brand": brand}, initiator="li-wei", launch=False).run_id
               for brand in brands]
    page = client.get("/board").text
    for brand, run_id in zip(brands, run_ids, strict=True):
        heading = _card(page, run_id).split("</header>")[0]
        assert re.search(rf'<strong>Crisis PR[^<]*</strong> · <span class="subject">{brand}</span></a>', heading), heading
        shown = client.get(f"/runs/{run_id}").text
        assert re.search(rf'<h1>Crisis PR[^<]* <span class="subject muted">· {brand}</span></h1>', shown)
        assert re.search(rf"<title>Crisis PR[^<]* · {brand} · run", shown)
    # the PR on-call's two assignments: the brand right after the SOP's short name, not two identical titles
    oncall = site.engine.person_for("pr-oncall")
    titles = {run_id: wait_for(lambda run_id=run_id: next(
        (m["title"] for m in site.inbox(oncall) if "Assigned to you" in m["title"] and run_id in m["body"]), None),
        10, f"{oncall}'s assignment in {run_id}") for run_id in run_ids}
    for brand, run_id in zip(brands, run_ids, strict=True):
        assert titles[run_id] == f"[P1] Assigned to you: Assess scope, spread and severity (Crisis PR · {brand}), 15m left"


def test_a_repeat_with_new_figures_and_a_resolved_alert_show_on_the_board_and_the_run_page(site: Site) -> None:
    """A crisis started by its alert; monitoring repeats it with a new figure, then resolves it. The ops director sees
    the latest figure and the resolution on the card and the run's page, not only "1 repeat attached"."""
    from flows.triggers.intake import Intake
    from flows.triggers.model import Alert

    brand = f"lumi-{uuid.uuid4().hex[:6]}"
    intake = Intake(site.engine)

    def spike(status: str, summary: str) -> Alert:
        return Alert(source="alertmanager", status=status,  # type: ignore[arg-type]
                     labels={"alertname": "NegativeSentimentSpike", "brand": brand},
                     annotations={"summary": summary})

    [started] = intake.alerts([spike("firing", "180 negative mentions/day")], "token:alertmanager")
    client = operator(site)
    card = _card(client.get("/board").text, started.run)
    assert "repeat" not in card and "resolved" not in card  # nothing said since it started
    assert '<p class="meta">alert NegativeSentimentSpike by the alertmanager token' in card  # its alertname, from its labels
    intake.alerts([spike("firing", "420 negative mentions/day")], "token:alertmanager")
    card = _card(client.get("/board").text, started.run)
    assert re.search(r"<strong>1 repeat</strong> attached, the latest <time [^>]+>[^<]+</time>: "
                     r'<q class="said">420 negative mentions/day</q>', card), card
    assert "resolved" not in card
    intake.alerts([spike("resolved", "420 negative mentions/day")], "token:alertmanager")
    card = _card(client.get("/board").text, started.run)
    heading = card.split("</header>")[0]
    assert '<span class="resolved">✓ alert resolved</span>' in heading
    assert re.search(r'<span class="resolved">monitoring: resolved at <time [^>]+>[^<]+</time> '
                     r"\(alert NegativeSentimentSpike\)</span>", card), card
    page = client.get(f"/runs/{started.run}").text
    assert re.search(r'<dd id="monitoring" class="resolved">resolved at <time [^>]+>[^<]+</time> '
                     r"\(alert NegativeSentimentSpike\)</dd>", page), page
    assert '<q class="said">420 negative mentions/day</q>' in page
    # it fires again: no longer resolved, the new figure is the latest
    intake.alerts([spike("firing", "510 negative mentions/day")], "token:alertmanager")
    card = _card(client.get("/board").text, started.run)
    assert "resolved" not in card and '<q class="said">510 negative mentions/day</q>' in card
