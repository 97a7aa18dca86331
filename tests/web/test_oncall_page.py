"""The on-call page over HTTP: operators see who is on call now and next and record an override."""

from __future__ import annotations

import html
import json
from datetime import timedelta

import sqlalchemy as sa

from flows.ledger.schema import records
from tests.web.conftest import Site
from tests.web.test_board import operator
from tests.web.test_pages import csrf_of, sign_in


def test_an_operator_records_an_override_from_the_page_and_a_responder_cannot(site: Site) -> None:
    responder = site.client()
    sign_in(site, responder, "kenji-sato")  # SRE on-call: no operator
    assert responder.get("/oncall").status_code == 403
    assert responder.post("/oncall/override", data={"csrf": csrf_of(responder.get("/")), "role": "sre-oncall",
                                                    "person": "tom-becker", "until": "+1h", "reason": "x"}
                          ).status_code == 403

    client = operator(site, "li-wei")
    page = client.get("/oncall")
    assert page.status_code == 200 and "sre-oncall" in page.text and "rotation: shift" in html.unescape(page.text)
    # most of a year ahead: the other tests of this site keep the rotation's people
    form = {"csrf": csrf_of(page), "role": "sre-oncall", "person": "li-wei", "from": "+300d", "until": "+2h",
            "reason": "covering"}
    refused = client.post("/oncall/override", data=form)
    # in the page's words: people by name, roles by title (`sop oncall override` says their ids)
    assert refused.status_code == 422 and "Li Wei 李伟 is not a member of SRE on-call" in html.unescape(refused.text)
    backwards = client.post("/oncall/override", data={**form, "person": "tom-becker", "until": "2026-01-01T00:00"})
    said = html.unescape(backwards.text)  # in the form's words, not the terminal's options
    assert backwards.status_code == 422 and "“Until” (" in said and "must come after “From”" in said
    assert "--until" not in said and "--from" not in said
    done = client.post("/oncall/override", data={**form, "person": "tom-becker", "reason": "zhao-lei at the dentist"})
    assert done.status_code == 303 and done.headers["location"].startswith("/oncall?added=")
    assert "is recorded" in client.get(done.headers["location"]).text
    later = site.engine.clock.now() + timedelta(days=300, hours=1)
    assert site.engine.on_call("sre-oncall", later).primary == "tom-becker"
    assert site.engine.on_call("sre-oncall").source == "rotation"
    with site.engine.ledger.read() as conn:
        row = conn.execute(sa.select(records).where(records.c.kind == "oncall_override")
                           .order_by(records.c.seq.desc())).first()
    data = json.loads(row.data)
    assert (row.actor, data["person"], data["via"]) == ("li-wei", "tom-becker", "web")


def test_an_override_at_the_edge_of_time_is_refused_beside_its_field_not_a_500(site: Site) -> None:
    client = operator(site, "li-wei")
    page = client.get("/oncall")
    for when in ("9999-12-31T23:59", "0001-01-01"):
        answer = client.post("/oncall/override", data={"csrf": csrf_of(page), "role": "sre-oncall", "person": "tom-becker",
                                                       "from": when, "until": "+1h", "reason": "edge"})
        assert answer.status_code == 422 and "out of range" in html.unescape(answer.text), when


def test_an_operator_ends_an_override_from_the_page_with_a_reason(site: Site) -> None:
    client = operator(site, "li-wei")
    page = client.get("/oncall")
    form = {"csrf": csrf_of(page), "role": "pr-oncall", "person": "sara-lopez", "from": "+10d", "until": "+2h",
            "reason": "wang-fang at a conference"}
    made = client.post("/oncall/override", data=form)
    assert made.status_code == 303, made.text
    override = int(made.headers["location"].split("added=")[1])
    listed = client.get("/oncall").text
    assert f'action="/oncall/override/{override}/end"' in listed and f"End override #{override}" in listed

    unexplained = client.post(f"/oncall/override/{override}/end", data={"csrf": csrf_of(page), "reason": " "})
    assert unexplained.status_code == 422 and "needs a reason" in html.unescape(unexplained.text)
    ended = client.post(f"/oncall/override/{override}/end", data={"csrf": csrf_of(page), "reason": "trip cancelled"})
    assert (ended.status_code, ended.headers["location"]) == (303, f"/oncall?ended={override}")
    after = client.get(ended.headers["location"]).text
    assert f"Override #{override} is ended" in after and f'action="/oncall/override/{override}/end"' not in after
    with site.engine.ledger.read() as conn:
        row = conn.execute(sa.select(records).where(records.c.kind == "oncall_override_ended")
                           .order_by(records.c.seq.desc())).first()
    data = json.loads(row.data)
    assert (row.actor, data["override"], data["reason"], data["withdrawn"], data["via"]) == (
        "li-wei", override, "trip cancelled", True, "web")
    # wang-fang is pr-oncall's fixed primary: "putting her on call" would change nobody's pages
    pointless = client.post("/oncall/override", data={**form, "person": "wang-fang", "reason": "just in case"})
    assert pointless.status_code == 422
    assert "Wang Fang 王芳 is primary of PR on-call for that whole stretch already" in html.unescape(pointless.text)
    no_csrf = client.post(f"/oncall/override/{override}/end", data={"reason": "x"})
    assert no_csrf.status_code in (400, 403)
