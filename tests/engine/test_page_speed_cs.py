"""The library's page-speed (R8) on the real stack: the churn warning "at that touch point" reaches customer service.

CS takes the complaints about slow product pages (walk 40, item 25): when the rule fires, the CS lead (Sara Lopez,
cs-lead's primary) is told at once what to tell those customers, beside SRE's warning; the run goes on to triage.
"""

from __future__ import annotations

import uuid
from typing import Any

from notifications import read_inbox
from tests.engine.conftest import wait_for


def test_a_slow_detail_page_tells_the_cs_lead_what_to_say_to_customers_who_complain(engine: Any) -> None:
    page = f"detail-{uuid.uuid4().hex[:6]}"
    run = engine.start("page-speed", {"page": page, "load_seconds": 2.4}, initiator="alertmanager", speed=60).run_id
    inbox = engine.library.root / "var" / "inbox"

    told = wait_for(lambda: [m for m in read_inbox("sara-lopez", inbox) if page in m["title"]], 90,
                    "the CS lead's message")
    [message] = told
    body = " ".join(message["body"].split())
    assert message["title"] == f"[P2] Slow {page} pages: what to tell customers who complain", message["title"]
    assert f"The {page} page loads in 2.4 s (limit 1.5 s)" in body
    assert "nothing in their cart or their orders is lost" in body and "Promise no time and no compensation" in body
    assert f"/runs/{run}" in body
    assert wait_for(lambda: engine.view(run).state("triage") == "active", 30, "SRE's triage")
