"""The /silences page over HTTP: operators only; a silence made from the form holds an alert posted to the API
(recorded, no run); a bad matcher is shown beside its field; ending one needs a reason."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.engine.conftest import records
from tests.web.conftest import Site
from tests.web.test_board import operator
from tests.web.test_pages import csrf_of, field_errors, sign_in


def _alert(site: Site, brand: str) -> httpx.Response:
    body = {"version": "4", "status": "firing", "receiver": "sop", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://am", "groupKey": "{}", "truncatedAlerts": 0,
            "alerts": [{"status": "firing", "labels": {"alertname": "NegativeSentimentSpike", "brand": brand},
                        "annotations": {}, "startsAt": "2026-12-05T06:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "fingerprint": uuid.uuid4().hex[:16]}]}
    with httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {site.tokens['alertmanager']}"}) as am:
        return am.post("/v1/alerts/alertmanager", json=body)


def test_a_responder_may_not_see_make_or_end_silences(site: Site) -> None:
    responder = site.client()
    sign_in(site, responder, "kenji-sato")  # SRE on-call: no operator
    csrf = csrf_of(responder.get("/"))
    assert 'href="/silences"' not in responder.get("/").text
    assert responder.get("/silences").status_code == 403
    made = responder.post("/silences", data={"csrf": csrf, "match": "alertname=X", "for": "2h", "reason": "mine"})
    assert made.status_code == 403
    assert responder.post("/silences/sil-any/end", data={"csrf": csrf, "reason": "x"}).status_code == 403
    assert site.client().get("/silences").status_code == 303  # not signed in: sign in first


def test_an_operator_silences_an_alert_from_the_page_and_ends_it(site: Site) -> None:
    client = operator(site)
    page = client.get("/silences")
    assert page.status_code == 200 and 'name="match"' in page.text and 'aria-current="page"' in page.text
    brand = f"b-{uuid.uuid4().hex[:8]}"
    made = client.post("/silences", data={"csrf": csrf_of(page), "match": f"alertname=NegativeSentimentSpike,brand={brand}",
                                          "for": "2h", "reason": "planned launch"})
    assert made.status_code == 303, made.text
    silence_id = re.search(r"made=(sil-[0-9a-f]+)", made.headers["location"]).group(1)  # type: ignore[union-attr]
    listed = client.get(made.headers["location"])
    assert f"Silence {silence_id} is made" in listed.text and "planned launch" in listed.text

    answer = _alert(site, brand)
    assert answer.status_code == 200, answer.text
    [outcome] = answer.json()["outcomes"]
    assert (outcome["status"], outcome["silence"], outcome["run"]) == ("silenced", silence_id, None)
    [held] = [r for r in records(site.engine, None, "trigger_silenced") if r["data"]["silence"] == silence_id]
    assert held["data"]["silenced_by"] == "li-wei" and held["data"]["sop"] == "crisis-pr"
    [made_record] = [r for r in records(site.engine, None, "silence_created") if r["data"]["silence"] == silence_id]
    assert made_record["actor"] == "li-wei" and made_record["data"]["via"] == "web"

    no_reason = client.post(f"/silences/{silence_id}/end", data={"csrf": csrf_of(listed), "reason": " "})
    assert no_reason.status_code == 422 and "say why" in field_errors(no_reason)[f"end-{silence_id}"]
    ended = client.post(f"/silences/{silence_id}/end", data={"csrf": csrf_of(listed), "reason": "launch moved"})
    assert ended.status_code == 303 and ended.headers["location"] == f"/silences?ended={silence_id}"
    # ended again (a second operator, a stale tab): said on its row, not a silent 422
    twice = client.post(f"/silences/{silence_id}/end", data={"csrf": csrf_of(listed), "reason": "launch moved"})
    assert twice.status_code == 422 and f"silence {silence_id} already ended at" in field_errors(twice)[f"end-{silence_id}"]
    assert _alert(site, brand).json()["outcomes"][0]["status"] == "started"


def test_a_bad_matcher_is_shown_beside_its_field_and_nothing_is_silenced(site: Site) -> None:
    client = operator(site)
    page = client.get("/silences")
    before = len(records(site.engine, None, "silence_created"))
    wrong = client.post("/silences", data={"csrf": csrf_of(page), "match": "alertname=X,brand~lumi", "for": "forever",
                                           "reason": ""})
    assert wrong.status_code == 422
    errors = field_errors(wrong)
    assert errors["match"].startswith("at column 13: `brand` has no operator")
    assert set(errors) == {"match", "for", "reason"}
    assert 'value="alertname=X,brand~lumi"' in wrong.text  # what was typed stays, to be fixed
    expired = client.post("/silences", data={"csrf": "forged", "match": "alertname=X", "for": "1h", "reason": "r"})
    assert expired.status_code == 403
    assert len(records(site.engine, None, "silence_created")) == before


def test_a_window_planned_on_the_page_is_read_in_the_sites_time_zone(site: Site) -> None:
    """li-wei types tomorrow 22:00 as the page says: in the site's zone (Asia/Shanghai), as /oncall and the terminal
    read it: it begins at 22:00 in Shanghai, 14:00 UTC."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    client = operator(site)
    page = client.get("/silences")
    assert "in the site&#39;s time zone (Asia/Shanghai)" in page.text or "in the site's time zone (Asia/Shanghai)" in page.text
    begins = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=1)).replace(hour=22, minute=0, second=0,
                                                                                   microsecond=0)
    made = client.post("/silences", data={"csrf": csrf_of(page), "match": f"alertname=DiskFull,host=h-{uuid.uuid4().hex[:6]}",
                                          "for": "1h", "reason": "disk swap", "from": begins.strftime("%Y-%m-%dT%H:%M")})
    assert made.status_code == 303, made.text
    silence_id = re.search(r"made=(sil-[0-9a-f]+)", made.headers["location"]).group(1)  # type: ignore[union-attr]
    [record] = [r for r in records(site.engine, None, "silence_created") if r["data"]["silence"] == silence_id]
    assert datetime.fromisoformat(record["data"]["starts_at"]) == begins.astimezone(UTC)
    assert f"{begins:%Y-%m-%d} 22:00 CST (UTC+8)" in client.get(made.headers["location"]).text
