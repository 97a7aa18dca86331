"""The board says which alerts were refused in the last 24 hours: an incident no run was started for."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.triggers.payloads import alertmanager as am_body
from tests.web.conftest import Site
from tests.web.test_board import operator

NOTICE = re.compile(r'<p class="bad refused-notice"[^>]*>(.*?)</p>', re.S)


def test_the_board_shows_an_alert_its_sop_refused_and_where_to_read_more(site: Site) -> None:
    monitor = httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {site.tokens['alertmanager']}"})
    # a label named for this test alone: its refusal is its own (SOP, trigger, problem), whatever ran before
    labels = {"alertname": "ServerOverload", "severity": "page", f"rack_{uuid.uuid4().hex[:6]}": "r1"}
    answer = monitor.post("/v1/alerts/alertmanager", json=am_body({"labels": labels}))
    assert answer.json()["outcomes"][0]["status"] == "refused"

    board = operator(site).get("/board")
    assert board.status_code == 200
    [notice] = NOTICE.findall(board.text)
    said = re.sub(r"<[^>]+>", "", notice)
    assert re.search(r"\d+ alerts? refused in the last 24 h: .*traffic-surge — the alert has no label `service`", said)
    assert '<a href="/library/traffic-surge">traffic-surge</a>' in notice  # the SOP's page: its triggers, its owner
    assert '<a href="/board/start">Start a playbook</a>' in notice
    assert "sop audit refused" in said
