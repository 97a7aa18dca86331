"""A responder's path through the pages, as the browser speaks it: the link in the message, the form, the run.

Each test starts its own run (its own brand, so dedup keeps them apart) and reads the
personal link out of the person's inbox, as their phone would show it.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import secrets
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from flows.clock import ManualClock
from flows.engine.links import Links
from tests.engine.conftest import records, wait_for
from tests.web.conftest import PROXY_SECRET, SIGN_IN_LINK, UPLOAD_MAX, Site, forget_sign_ins

ASSESS = {"severity": "high", "topic": "late parcels", "category": "delivery", "platforms": "weibo",
          "trend": "rising", "evidence_link": "https://dash.example/q/1"}


def crisis(site: Site, initiator: str = "li-wei") -> str:
    return site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator=initiator,
                             launch=False).run_id


def csrf_of(page: httpx.Response) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def field_errors(page: httpx.Response) -> dict[str, str]:
    """The problems shown beside each field: ``{field: message}``."""
    return {name: re.sub(r"&#3[49];", "'", text) for name, text in
            re.findall(r'<p class="field-error" id="err-([\w-]+)">([^<]*)</p>', page.text)}


def path_of(link: str) -> str:
    return "/s/" + link.rsplit("/s/", 1)[1]


def sign_in(site: Site, client: httpx.Client, person: str) -> None:
    """Sign ``person`` in the way they would: ask for a link, open it from their inbox."""
    form = client.get("/sign-in")
    before = len(site.inbox(person))
    sent = client.post("/sign-in", data={"csrf": csrf_of(form), "who": person, "next": "/"})
    assert sent.status_code == 200 and "a sign-in link is on its way" in sent.text
    link = site.sign_in_link(person, before).split(site.url, 1)[1]
    page = client.get(link)  # one button; opening the link uses nothing
    assert page.status_code == 200, page.text
    opened = client.post(link, data={"csrf": csrf_of(page)})
    assert opened.status_code == 303, opened.text


def test_the_link_in_the_message_opens_the_step_and_a_mistake_is_shown_beside_its_field(site: Site) -> None:
    run_id = crisis(site)
    link = site.link_for("wang-fang", run_id, "assess")
    assert link.startswith(site.url)  # the message's own link, to this site
    client = site.client()
    page = client.get(path_of(link))
    assert page.status_code == 200
    assert '<select name="severity"' in page.text and 'role="switch" name="kol_involved"' in page.text
    assert "<span>KOL involved</span>" in page.text and "Kol involved" not in page.text  # the field's label
    assert "Open the social-listening dashboard" in page.text  # the instructions, rendered
    before = len(records(site.engine, run_id))

    wrong = client.post(path_of(link), data={**ASSESS, "csrf": csrf_of(page), "action": "done", "severity": "huge",
                                             "trend": ""})
    assert wrong.status_code == 422
    assert field_errors(wrong) == {"severity": "expected one of low, medium, high, critical, got 'huge'",
                                   "trend": "required: one of Rising, Stable, Falling"}  # as the select says them
    assert 'value="late parcels"' in wrong.text  # what was typed is kept
    assert len(records(site.engine, run_id)) == before and site.engine.view(run_id).state("assess") == "active"
    # a remark given as evidence is said with the form's other mistakes, not on a second try (walkthrough)
    both = client.post(path_of(link), data={**ASSESS, "csrf": csrf_of(page), "action": "done", "severity": "huge",
                                            "evidence_link": "grafana board"})
    assert set(field_errors(both)) == {"severity", "evidence"}, field_errors(both)
    assert "evidence 'grafana board' is not a link" in field_errors(both)["evidence"]

    right = client.post(path_of(link), data={**ASSESS, "csrf": csrf_of(page), "action": "done"})
    assert right.status_code == 303 and right.headers["location"] == f"/runs/{run_id}/steps/assess?done=done"
    assert "sop_session" in right.cookies  # the person goes on in a session
    done = records(site.engine, run_id, "step_done")[-1]
    assert done["actor"] == "wang-fang" and done["data"]["via"] == "link"
    assert done["data"]["result"]["severity"] == "high"
    view = site.engine.view(run_id)
    assert view.state("facts") == "active" and view.steps["facts"]["assignee"] == "cs-lead"
    assert site.link_for("sara-lopez", run_id, "facts")  # the next person got their own link
    after = client.get(right.headers["location"])
    assert "Recorded." in after.text and "Establish the facts" in after.text  # who has it next
    # the next person's step shows what was reported before it, which its instructions build on
    facts = site.client().get(path_of(site.link_for("sara-lopez", run_id, "facts")))
    earlier = facts.text.split('id="earlier"', 1)[1].split("</details>", 1)[0]
    assert "Assess scope, spread and severity</strong>: done by Wang Fang 王芳" in earlier
    assert "<th scope=\"row\">Topic<br><span class=\"muted help\">One line: what most negative posts are about</span></th><td>late parcels</td>" in earlier


def test_a_used_link_cannot_act_again_and_shows_what_happened(site: Site) -> None:
    run_id = crisis(site)
    link = path_of(site.link_for("wang-fang", run_id, "assess"))
    first = site.client()
    page = first.get(link)
    assert first.post(link, data={"csrf": csrf_of(page), "action": "claim"}).status_code == 303
    assert site.engine.view(run_id).steps["assess"]["claimed_by"] == "wang-fang"
    before = len(records(site.engine, run_id))

    replay = site.client()  # someone else holding the same link (a forwarded message)
    again = replay.post(link, data={**ASSESS, "csrf": csrf_of(page), "action": "done"})
    assert again.status_code == 410 and "already used" in again.text
    assert '<form method="post" action="/s/' not in again.text
    assert site.engine.view(run_id).state("assess") == "active"
    after = [r["kind"] for r in records(site.engine, run_id)[before:] if r["kind"] != "notification"]
    assert after == ["link_refused"]  # (the claim's pages to the others are delivered meanwhile)
    # whoever holds a copy sent it: the record names whose link it was, not an actor it cannot prove
    [refused] = [r for r in records(site.engine, run_id) if r["kind"] == "link_refused"]
    assert refused["actor"] is None and refused["data"]["link_of"] == "wang-fang"
    from flows.audit.timeline import describe
    assert describe("link_refused", refused["data"], None).startswith(
        "a personal link of wang-fang sent again, refused (already used) from ")
    reopened = replay.get(link)
    assert reopened.status_code == 410 and "What happened" in reopened.text and "Held by" in reopened.text
    assert "This link was already used to take the step" in reopened.text  # in words, not "(claim)"


def test_a_forged_or_expired_link_is_refused(site: Site) -> None:
    run_id = crisis(site)
    token = site.link_for("wang-fang", run_id, "assess").rsplit("/s/", 1)[1]
    client = site.client()
    forged = client.get(f"/s/{token[:-3]}abc")
    assert forged.status_code == 403 and "not one we made" in forged.text
    for glued in (".", ").", "%20", ",", ">"):  # a full stop, a bracket, a space a chat app kept
        found = client.get(f"/s/{token}{glued}")
        assert (found.status_code, found.headers.get("location")) == (303, f"/s/{token}"), glued
    assert client.get(f"/s/{token[:-3]}abc.").status_code == 403  # stripping makes no forged link good
    past = ManualClock(site.engine.clock.now() - timedelta(days=3))
    old = Links(site.engine.links.secret, past, site.url).step_token("wang-fang", run_id, "assess")
    copied = client.get(f"/s/{old}.")  # an expired link copied with a full stop: to its clean self, which says why
    assert (copied.status_code, copied.headers.get("location")) == (303, f"/s/{old}")
    expired = client.get(f"/s/{old}")
    assert expired.status_code == 410 and "This link has expired" in expired.text
    # which step it was for, when it expired in its person's time, and the way back in
    zone = site.engine.site.people["wang-fang"].timezone
    assert f"Your link to “Assess scope, spread and severity” of run {run_id} expired at " in expired.text
    assert f"({zone})" in expired.text and "UTC" not in expired.text
    assert f'href="/sign-in?next=%2Fruns%2F{run_id}%2Fsteps%2Fassess"' in expired.text
    kinds = [r["data"]["reason"] for r in records(site.engine, None or run_id) if r["kind"] == "link_refused"]
    assert kinds == []  # a link that names nothing trustworthy is not filed under the run it claims


def test_a_post_without_the_forms_csrf_token_records_nothing(site: Site) -> None:
    run_id = crisis(site)
    link = path_of(site.link_for("wang-fang", run_id, "assess"))
    client = site.client()
    client.get(link)
    before = len(records(site.engine, run_id))
    assert client.post(link, data={**ASSESS, "action": "done"}).status_code == 403
    assert client.post(link, data={**ASSESS, "action": "done", "csrf": "guess"}).status_code == 403
    sign_in(site, client, "wang-fang")
    page = f"/runs/{run_id}/steps/assess"
    assert client.post(page, data={**ASSESS, "action": "done", "csrf": "guess"}).status_code == 403
    assert len(records(site.engine, run_id)) == before


def test_a_sign_in_link_goes_to_the_persons_own_contacts_and_works_once(site: Site) -> None:
    client = site.client()
    assert client.get("/").status_code == 303  # not signed in: to the sign-in page
    form = client.get("/sign-in")
    unknown = client.post("/sign-in", data={"csrf": csrf_of(form), "who": "mallory"})
    assert unknown.status_code == 200 and "a sign-in link is on its way" in unknown.text  # the same answer
    no_csrf = site.client().post("/sign-in", data={"who": "sara-lopez"})
    assert no_csrf.status_code == 403
    before = len(site.inbox("sara-lopez"))
    client.post("/sign-in", data={"csrf": csrf_of(form), "who": "sara-lopez"})
    message = site.sign_in_message("sara-lopez", before)
    assert message["title"] == "Sign in to SOPs"
    link = SIGN_IN_LINK.search(message["body"]).group(1)  # type: ignore[union-attr]
    path = link.split(site.url, 1)[1]
    for _ in range(3):  # a mail scanner, a chat's link preview: opening it uses nothing
        scanned = site.client().get(path)
        assert scanned.status_code == 200 and "Sign in as Sara Lopez" in scanned.text and "sop_session" not in scanned.cookies
    page = client.get(path)
    assert client.post(path, data={"csrf": "forged"}).status_code == 403  # the page's own CSRF cookie
    opened = client.post(path, data={"csrf": csrf_of(page)})
    assert opened.status_code == 303 and "sop_session" in opened.cookies
    home = client.get("/")
    assert home.status_code == 200 and "Sara Lopez" in home.text and "Waiting for you" in home.text
    again = site.client()
    assert again.post(path, data={"csrf": csrf_of(again.get(path))}).status_code == 403  # used once
    signed = [r for r in _site_records(site) if r["kind"] == "signed_in" and r["actor"] == "sara-lopez"]
    assert signed and signed[-1]["data"]["via"] == "sign-in"


def test_a_leavers_session_reads_nothing_once_config_no_longer_has_them(site: Site,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = crisis(site)
    link = path_of(site.link_for("wang-fang", run_id, "assess"))
    assert site.client().get(link).status_code == 200
    client = site.client()
    sign_in(site, client, "sara-lopez")
    assert client.get("/library").status_code == 200
    csrf = csrf_of(client.get("/"))
    sign_in_path = site.engine.links.sign_in_link("sara-lopez").split(site.url, 1)[1]
    people = {k: v for k, v in site.engine.site.people.items() if k not in ("sara-lopez", "wang-fang")}
    monkeypatch.setattr(site.engine.library, "site", site.engine.site.model_copy(update={"people": people}))  # a reload
    for path in ("/", "/library", "/people"):
        assert client.get(path).status_code == 303, path  # asked to sign in, which she no longer can
    tested = client.post("/people/test", data={"csrf": csrf})
    assert tested.status_code == 303 and "internal error" not in tested.text  # was a 500 (UnknownTarget)
    left = site.client().get(link)  # her step link read the step, its notes and evidence, for 24 h
    assert left.status_code == 403 and "wang-fang is no longer a person of this site" in left.text
    again = site.client()
    assert again.get(sign_in_path).status_code == 403  # and a sign-in link of hers begins no session
    assert again.post(sign_in_path, data={"csrf": "x"}, cookies={"sop_csrf": "x"}).status_code == 403
    assert "sop_session" not in again.cookies


def test_asking_for_a_sign_in_link_answers_before_the_link_is_sent(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer is the same for a person and a stranger, and as quick: a slow channel must not say who is one."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, HTTPServer


    release, got = threading.Event(), threading.Event()

    class Slow(BaseHTTPRequestHandler):  # sara's phone gateway, answering when the test lets it
        def do_POST(self) -> None:  # noqa: N802 - the handler's name in http.server
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            release.wait(20)
            got.set()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        people = dict(site.engine.site.people)
        people["sara-lopez"] = people["sara-lopez"].model_copy(
            update={"contacts": [f"json://127.0.0.1:{server.server_port}/hook"]})
        monkeypatch.setattr(site.engine.library, "site", site.engine.site.model_copy(update={"people": people}))
        forget_sign_ins(site.engine.ledger, "sara-lopez")
        client = site.client()
        form = client.get("/sign-in")
        began = time.monotonic()
        answer = client.post("/sign-in", data={"csrf": csrf_of(form), "who": "sara-lopez"})
        took = time.monotonic() - began
        assert answer.status_code == 200 and "a sign-in link is on its way" in answer.text
        assert took < 5 and not got.is_set()  # answered while the gateway still holds the link
        release.set()
        assert got.wait(20)  # and the link went out after
    finally:
        release.set()
        server.shutdown()


def test_one_address_may_ask_for_so_many_sign_in_links_a_minute(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone may ask for a link for anyone: without a bound one address paged every person twice a minute."""
    from flows.web import signin

    monkeypatch.setattr(signin, "ASKS_PER_MINUTE", 3)
    monkeypatch.setattr(signin, "_asked", {})
    client = site.client()
    form = client.get("/sign-in")
    answers = [client.post("/sign-in", data={"csrf": csrf_of(form), "who": who}).status_code
               for who in ("mallory", "li-wei", "nobody", "zhao-lei")]
    assert answers == [200, 200, 200, 429]
    refused = client.post("/sign-in", data={"csrf": csrf_of(form), "who": "chen-jie"})
    assert "Too many sign-in links asked from your address (3 a minute)" in refused.text


def test_one_sign_in_link_per_person_per_30_s_whichever_api_process_the_form_reaches(
        site: Site, caplog: pytest.LogCaptureFixture) -> None:
    """Behind a balancer, asking twice lands on two API processes: the second must not page her phone again (each
    process remembered only its own links, so two processes sent two)."""
    import logging

    from flows.api import create_app
    from flows.engine.build import build_engine
    from flows.language.library import load_library
    from flows.ledger import Ledger
    from tests.api.conftest import TOKEN_ENV, ServedApp

    ledger = Ledger(site.engine.ledger.url)
    env = {var: site.tokens[name] for name, var in TOKEN_ENV.items()}
    other = ServedApp(create_app(build_engine(load_library(site.root), ledger=ledger),
                                 env={**env, "SOP_HMAC_GRAFANA": secrets.token_hex(12), "SOP_PROXY_SECRET": PROXY_SECRET}))
    try:
        before = len(site.inbox("sun-hao"))
        first = site.client()
        assert first.post("/sign-in", data={"csrf": csrf_of(first.get("/sign-in")), "who": "sun-hao"}).status_code == 200
        site.sign_in_message("sun-hao", before)
        second = httpx.Client(base_url=other.url, timeout=30)
        with caplog.at_level(logging.INFO, logger="sop.web"):
            answer = second.post("/sign-in", data={"csrf": csrf_of(second.get("/sign-in")), "who": "sun-hao"})
            assert answer.status_code == 200 and "a sign-in link is on its way" in answer.text  # the same answer
            wait_for(lambda: any("sign_in_throttled person=sun-hao" in r.getMessage() for r in caplog.records), 10,
                     "the second process to hold the link back")
        assert len([m for m in site.inbox("sun-hao")[before:] if SIGN_IN_LINK.search(m["body"])]) == 1
    finally:
        other.stop()
        ledger.dispose()


def test_the_company_proxy_is_believed_only_with_its_secret(site: Site) -> None:
    trusted = {"X-Forwarded-User": "chen-jie", "X-Proxy-Secret": PROXY_SECRET}
    home = site.client().get("/", headers=trusted)
    assert home.status_code == 200 and "Chen Jie" in home.text and "sop_session" in home.cookies
    for headers in ({"X-Forwarded-User": "chen-jie"}, {"X-Forwarded-User": "chen-jie", "X-Proxy-Secret": "nope"}):
        assert site.client().get("/", headers=headers).status_code == 303  # asked to sign in
    nobody = site.client().get("/", headers={**trusted, "X-Forwarded-User": "mallory"})
    assert nobody.status_code == 303


def test_someone_outside_the_role_cannot_act_on_the_step(site: Site) -> None:
    run_id = crisis(site)
    client = site.client()
    sign_in(site, client, "huang-ting")  # creative lead: not PR on-call
    page = client.get(f"/runs/{run_id}/steps/assess")
    assert page.status_code == 200 and "cannot act on it" in page.text and 'name="severity"' not in page.text
    before = len(records(site.engine, run_id))
    refused = client.post(f"/runs/{run_id}/steps/assess", data={**ASSESS, "action": "done", "csrf": csrf_of(page)})
    assert refused.status_code == 422 and "huang-ting may not act on step `assess`" in refused.text
    assert len(records(site.engine, run_id)) == before


def test_taking_a_step_tells_the_others_and_asking_for_help_pages_the_next_level(site: Site) -> None:
    run_id = crisis(site)
    client = site.client()
    sign_in(site, client, "sara-lopez")
    page = client.get(f"/runs/{run_id}/steps/assess")
    seen = {p: len(site.inbox(p)) for p in ("wang-fang", "chen-jie")}
    taken = client.post(f"/runs/{run_id}/steps/assess", data={"action": "claim", "csrf": csrf_of(page)})
    assert taken.status_code == 303
    for person in seen:
        titles = [m["title"] for m in site.messages(person, seen[person])]
        assert "[P1] Taken: Assess scope, spread and severity" in " ".join(titles), (person, titles)
    claim = records(site.engine, run_id, "step_claimed")[-1]
    assert claim["actor"] == "sara-lopez" and claim["data"]["via"] == "web"
    assert "You hold this step now" in client.get(taken.headers["location"]).text

    # the button says what it does: it pages people now, and the step stays hers
    form = page.text.split('name="action" value="help"', 1)[1].split("</form>", 1)[0]
    assert "Page for help</button>" in form and "You keep the step." in form and "Escalate" not in form
    lead = len(site.inbox("chen-jie"))  # pr-lead's primary: the ladder's `lead` level
    helped = client.post(f"/runs/{run_id}/steps/assess", data={"action": "help", "note": "KOL involved",
                                                                "csrf": csrf_of(page)})
    assert helped.status_code == 303
    asked = records(site.engine, run_id, "help_asked")[-1]
    assert asked["actor"] == "sara-lopez" and asked["data"]["note"] == "KOL involved"
    escalation = records(site.engine, run_id, "escalation")[-1]
    assert escalation["data"]["asked_by"] == "sara-lopez"
    assert any("sara-lopez asked for help" in m["body"] or "Help asked" in m["title"]
               for m in site.messages("chen-jie", lead))
    [helping] = [m["body"] for m in site.messages("chen-jie", lead) if "Help asked" in m["title"]]
    assert "next on its escalation ladder (escalation stage 2)" in " ".join(helping.split())  # not "(level 2)"
    row = re.search(r'id="step-assess">(.*?)</tr>', client.get(f"/runs/{run_id}").text, re.S).group(1)  # type: ignore[union-attr]
    assert '<td data-label="Ladder">escalation stage 2</td>' in row, row
    # pressed again at once (a double tap, an impatient second press): no rung more, said beside the form
    climbed = len(records(site.engine, run_id, "escalation"))
    again = client.post(f"/runs/{run_id}/steps/assess", data={"action": "help", "note": "KOL involved",
                                                               "csrf": csrf_of(page)})
    assert again.status_code == 422 and "help on `assess` was asked" in again.text and "give them a moment" in again.text
    assert len(records(site.engine, run_id, "help_asked")) == 1 and len(records(site.engine, run_id, "escalation")) \
        == climbed


def test_an_evidence_file_is_kept_with_its_sha256_and_a_large_one_is_refused(site: Site) -> None:
    run_id = crisis(site)
    link = path_of(site.link_for("wang-fang", run_id, "assess"))
    client = site.client()
    page = client.get(link)
    data = {**ASSESS, "evidence_link": "", "csrf": csrf_of(page), "action": "done"}
    big = client.post(link, data=data, files={"evidence_file": ("dump.bin", b"x" * (UPLOAD_MAX + 1))})
    assert big.status_code == 422 and "dump.bin is larger than 200,000 bytes" in field_errors(big)["evidence"]
    # larger than a page's whole body may be (the file and the form around it): a page that says so, not JSON
    huge = client.post(link, data=data, files={"evidence_file": ("screen.mp4", b"x" * (UPLOAD_MAX * 3))},
                       headers={"Accept": "text/html"})
    assert huge.status_code == 413 and huge.headers["content-type"].startswith("text/html")
    assert "File too large" in huge.text and "nothing was recorded" in huge.text
    missing = client.post(link, data=data)
    assert missing.status_code == 422 and "needs evidence" in field_errors(missing)["evidence"]
    # a remark is not evidence an auditor can follow: said beside the field, nothing recorded
    remark = client.post(link, data={**data, "evidence_link": "posted in the war-room chat"})
    assert remark.status_code == 422, remark.text
    assert "'posted in the war-room chat' is not a link" in field_errors(remark)["evidence"]
    script = client.post(link, data={**data, "evidence_link": "javascript:alert(document.domain)"})
    assert script.status_code == 422 and "a javascript: address runs in a browser" in field_errors(script)["evidence"]
    assert records(site.engine, run_id, "step_done") == []
    shot = b"\x89PNG fake screenshot " + uuid.uuid4().bytes
    ok = client.post(link, data={**data, "note": "export of 09:00-10:00"},
                     files={"evidence_file": ("screen shot.png", shot, "image/png")})
    assert ok.status_code == 303
    digest = hashlib.sha256(shot).hexdigest()
    evidence = records(site.engine, run_id, "step_done")[-1]["data"]["result"]["evidence"]
    assert evidence == [f"sha256:{digest} screen shot.png ({len(shot)} bytes)"]
    assert (site.root / "var" / "evidence" / digest).read_bytes() == shot
    assert client.get(f"/evidence/{digest}").content == shot  # in the session the link began
    # the step page's link downloads it under the name it was sent with (a phone opens a .png as an image),
    # never inline (an uploaded page must not run as this site)
    shown = client.get(ok.headers["location"]).text
    assert "Note: <q>export of 09:00-10:00</q>" in shown  # the note typed with Done is shown with what was reported
    href = html.unescape(re.search(rf'href="(/evidence/{digest}[^"]*)"', shown).group(1))  # type: ignore[union-attr]
    download = client.get(href)
    assert download.content == shot and download.headers["content-type"] == "application/octet-stream"
    disposition = download.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "screen shot.png" in unquote(disposition)
    forged = client.get(f"/evidence/{digest}", params={"name": '../../etc/"passwd\r\n'})
    assert forged.status_code == 200 and "/" not in unquote(forged.headers["content-disposition"])
    assert site.client().get(f"/evidence/{digest}").status_code == 303  # nobody else's


def test_the_run_page_shows_steps_holders_and_every_page_with_its_delivery(site: Site) -> None:
    run_id = crisis(site)
    site.engine.claim(run_id, "assess", "wang-fang")  # a step's page after the run's own (its start)
    client = site.client()
    sign_in(site, client, "li-wei")
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert "Assess scope, spread and severity" in page.text and "<svg" in page.text
    assert re.search(r'<td data-label="What">Assigned</td>\s*<td data-label="Step">Assess scope, spread and severity</td>'
                     r'<td data-label="To">Wang Fang 王芳</td>\s*<td data-label="Through"><span title="inbox://wang-fang">'
                     r'inbox</span></td>\s*<td data-label="Result"><span class="good">delivered</span>', page.text)
    assert 'data-due="' in page.text  # the live clock's anchor
    table = page.text.split("<h2>Pages sent</h2>", 1)[1].split("</table>", 1)[0]
    sent = re.findall(r'<tr><td data-label="When"><time datetime="([^"]+)".*?</td><td data-label="What">([A-Za-z ]+)</td>',
                      table)
    assert {"Run started", "Assigned"} <= {kind for _, kind in sent}
    assert [at for at, _ in sent] == sorted(at for at, _ in sent)  # in the order they went (was grouped by step)
    assert client.get("/runs/nosuchrun").status_code == 404


def test_the_api_docs_load_nothing_from_outside(site: Site) -> None:
    client = site.client()
    docs = client.get("/docs")
    assert docs.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', docs.text) + re.findall(r"url: '([^']+)'", docs.text)
    assert urls and all(u.startswith("/") for u in urls), urls
    for url in urls:
        assert client.get(url).status_code == 200, url


def test_a_page_that_does_not_exist_is_a_page_for_a_browser_and_json_for_the_api(site: Site) -> None:
    client = site.client()
    page = client.get("/runz", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "Page not found" in page.text and "There is no page /runz." in page.text and 'href="/"' in page.text
    api = client.get("/runz")  # an API client (no HTML asked for), and anything under /v1: JSON as before
    assert api.status_code == 404 and api.json()["field"] == "path"
    assert client.get("/v1/nothing", headers={"Accept": "text/html"}).json()["field"] == "path"


def test_a_fault_of_ours_is_a_page_for_a_browser_and_json_for_the_api(site: Site,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    client = site.client()
    sign_in(site, client, "li-wei")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(site.engine, "view", broken)
    page = client.get("/runs/0123456789", headers={"Accept": "text/html"})
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert "Something went wrong on our side" in page.text and "not of anything you did" in page.text
    assert "RuntimeError" not in page.text and "Traceback" not in page.text
    api = client.get("/runs/0123456789")
    assert api.status_code == 500 and api.json()["error"].startswith("internal error (RuntimeError)")
    # when the site's own page cannot be drawn either (its session read fails with the database): a plain page
    monkeypatch.setattr("flows.web.pages.html", broken)
    bare = client.get("/runs/0123456789", headers={"Accept": "text/html"})
    assert bare.status_code == 500 and "Something went wrong on our side" in bare.text and "<h1>" in bare.text


def test_the_browsers_icon_is_answered_not_a_404(site: Site) -> None:
    """Every browser asks for /favicon.ico: a 404 each time was a warning in the log for every page view."""
    client = site.client()
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml" and b"<svg" in icon.content
    page = client.get("/sign-in")
    assert '<link rel="icon" href="/static/favicon.svg"' in page.text
    assert client.get("/static/favicon.svg").status_code == 200


def _site_records(site: Site) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from flows.ledger.schema import records as table

    with site.engine.ledger.read() as conn:
        return [{**dict(r._mapping), "data": json.loads(r.data)} for r in conn.execute(sa.select(table))]


def test_the_holder_hands_a_step_over_and_the_new_holder_is_paged_with_the_note(site: Site) -> None:
    from flows.language.steps.human import HumanReport

    run_id = crisis(site)
    values = {k: v for k, v in ASSESS.items() if k != "evidence_link"} | {"kol_involved": False}
    site.engine.report(run_id, "assess", HumanReport("wang-fang", values=values, evidence=["https://x.example"]))
    link = path_of(site.link_for("sara-lopez", run_id, "facts"))  # cs-lead's primary
    client = site.client()
    page = client.get(link)
    # an operator (cs-lead is one) may hand a step to anyone; a holder who is not, to their role's members only
    # (tests/web/test_handover.py)
    assert '<option value="wang-fang">' in page.text and '<option value="huang-ting">' in page.text
    seen = len(site.inbox("wang-fang"))
    handed = client.post(link, data={"csrf": csrf_of(page), "action": "handover", "to": "wang-fang",
                                     "note": "she knows the customer"})
    assert handed.status_code == 303
    message = next(m for m in site.messages("wang-fang", seen) if "Handed to you" in m["title"])
    assert message["title"].startswith("[P1] Handed to you: Establish the facts from orders and tickets")
    assert "> she knows the customer" in message["body"] and "**Open your step:**" in message["body"]
    record = records(site.engine, run_id, "step_handed_over")[-1]
    assert (record["actor"], record["data"]["to"], record["data"]["via"]) == ("sara-lopez", "wang-fang", "link")
    assert site.engine.view(run_id).steps["facts"]["claimed_by"] == "wang-fang"
    assert site.link_for("wang-fang", run_id, "facts")  # her own link to act on it


def test_links_in_instructions_and_descriptions_render_as_links(site: Site) -> None:
    run_id = site.engine.start("t-link", {"dashboard": "https://grafana.example.com/d/traffic"},
                               initiator="tom-becker", launch=False).run_id
    person = site.engine.person_for("sre-oncall")
    page = site.client().get(path_of(site.engine.links.step_link(person, run_id, "look")))
    assert page.status_code == 200
    assert '<a href="https://grafana.example.com/d/traffic" rel="noopener noreferrer" target="_blank">' in page.text
    assert page.headers["X-Frame-Options"] == "DENY"  # no other site frames a page that acts
    client = site.client()
    sign_in(site, client, "tom-becker")
    library = client.get("/library/t-link")
    assert library.status_code == 200 and '<a href="https://wiki.example.com/runbooks/r1"' in library.text


def test_a_taken_step_is_reported_only_by_its_holder_or_an_overseer(site: Site) -> None:
    import hmac

    import pytest

    from flows.engine.people import StepHeld
    from flows.language.steps.human import HumanReport

    run_id = crisis(site)
    site.engine.claim(run_id, "assess", "wang-fang")
    link = path_of(site.engine.links.step_link("sara-lopez", run_id, "assess"))  # pr-oncall's backup, no lead
    nonce = site.engine.links.read_step(link[3:]).nonce
    csrf = hmac.new(site.engine.links.secret, f"csrf|{nonce}".encode(), hashlib.sha256).hexdigest()[:32]
    before = len(records(site.engine, run_id, "step_done"))
    shot = b"evidence " + uuid.uuid4().bytes  # her page shows no form now: she posts as an old tab would
    refused = site.client().post(link, data={**ASSESS, "csrf": csrf, "action": "done"},
                                 files={"evidence_file": ("s.png", shot)})
    assert refused.status_code == 409 and "taken by wang-fang" in refused.text
    assert len(records(site.engine, run_id, "step_done")) == before
    assert not (site.root / "var" / "evidence" / hashlib.sha256(shot).hexdigest()).exists()  # nothing kept
    values = {k: v for k, v in ASSESS.items() if k != "evidence_link"} | {"kol_involved": False}
    with pytest.raises(StepHeld, match="taken by wang-fang"):
        site.engine.report(run_id, "assess", HumanReport("sara-lopez", values=values, evidence=["https://e.x"]))
    assert site.engine.report(run_id, "assess", HumanReport("chen-jie", values=values,  # pr-oncall's lead
                                                            evidence=["https://e.x"])) == "done"


def test_refused_posts_keep_no_evidence_and_odd_values_are_refused_beside_their_field(site: Site) -> None:
    run_id = crisis(site)
    client = site.client()
    sign_in(site, client, "liu-yang")  # not of pr-oncall
    page = client.get(f"/runs/{run_id}/steps/assess")
    shot = b"not theirs " + uuid.uuid4().bytes
    refused = client.post(f"/runs/{run_id}/steps/assess", data={**ASSESS, "csrf": csrf_of(page), "action": "done"},
                          files={"evidence_file": ("x.png", shot)})
    assert refused.status_code == 422
    assert not (site.root / "var" / "evidence" / hashlib.sha256(shot).hexdigest()).exists()
    client = site.client()  # wang-fang, from her link
    link = path_of(site.link_for("wang-fang", run_id, "assess"))
    page = client.get(link)
    nul = client.post(link, data={**ASSESS, "topic": "late\x00parcels", "csrf": csrf_of(page), "action": "done"})
    assert nul.status_code == 422 and field_errors(nul)["topic"] == "contains a NUL character"
    long = client.post(link, data={**ASSESS, "note": "x" * 5000, "csrf": csrf_of(page), "action": "done"})
    assert long.status_code == 422 and "at most 4,000 characters" in field_errors(long)["note"]
    topic = client.post(link, data={**ASSESS, "topic": "y" * 20_000, "csrf": csrf_of(page), "action": "done"})
    assert topic.status_code == 422  # a form's text field is free text too, with the note's bound
    assert field_errors(topic)["topic"] == "is at most 4,000 characters (20,000 given)"
    assert "y" * 100 in topic.text  # what was typed is kept in the form
    assert site.engine.view(run_id).state("assess") == "active"


def test_a_forged_link_writes_nothing_to_the_chain_and_sign_in_keeps_the_whole_next(site: Site) -> None:
    seqs = len(_site_records(site))
    assert site.client().get("/s/not-a-token").status_code == 403
    assert len(_site_records(site)) == seqs  # logged only: anyone can send garbage
    bounced = site.client().get("/board?class=routine&sop=t-link")
    assert bounced.status_code == 303
    assert bounced.headers["location"] == "/sign-in?next=%2Fboard%3Fclass%3Droutine%26sop%3Dt-link"


def test_a_step_escalated_to_you_waits_for_you_on_your_home_page(site: Site) -> None:
    """The director paged "Escalated to you … make sure it gets done" read "Nothing waits for you now" on her home page:
    a step is hers to see to once its ladder reached her, though she is not of its role."""
    import time

    from flows.engine.timers import TimerService

    run_id = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="chen-jie",
                               launch=False, speed=900).run_id  # assess's 15 minutes in a second
    client = site.client()
    sign_in(site, client, "li-wei")
    before = client.get("/").text
    assert f"/runs/{run_id}/steps/assess" not in before
    service = TimerService(site.engine, name="home-test")
    deadline = time.monotonic() + 30
    while not records(site.engine, run_id, "escalation") or \
            not any("ops-director" in r["data"]["notify"] for r in records(site.engine, run_id, "escalation")):
        assert time.monotonic() < deadline, "the ladder never reached ops-director"
        service.fire_due()
        time.sleep(0.2)
    site.engine.pager.close()  # every page delivered (and recorded)
    home = re.sub(r"\s+", " ", client.get("/").text)
    mine = home.split("<h2", 1)[0]  # "Waiting for you", above the open runs
    assert f'href="/runs/{run_id}/steps/assess"' in mine, mine
    assert "escalated to you" in mine
    board = re.sub(r"\s+", " ", client.get("/board?person=mine").text)  # the board narrowed to her: the run is there
    assert f'id="run-{run_id}"' in board, board[-2000:]


def test_a_step_handed_to_someone_outside_its_role_waits_on_their_home_page_not_on_its_members(site: Site) -> None:
    """The lead chain and operators may hand a step to anyone: it waits for whoever holds it, and its role's members,
    told they no longer need to act, no longer see it as theirs (review)."""
    run_id = crisis(site)
    site.engine.hand_over(run_id, "assess", "chen-jie", "li-wei")  # pr-lead hands pr-oncall's step to the director
    step_link = f'href="/runs/{run_id}/steps/assess"'
    for person, waits in (("li-wei", True), ("wang-fang", False)):
        client = site.client()
        sign_in(site, client, person)
        mine = re.sub(r"\s+", " ", client.get("/").text).split("<h2", 1)[0]
        assert (step_link in mine) is waits, (person, mine[-1500:])
