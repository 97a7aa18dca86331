"""One incident, one run, over HTTP: an operator's "Lumi" and the alert's ``lumi`` are the same dedup key.

The big-sale-day story: Alertmanager's NegativeSentimentSpike opened crisis-pr for ``lumi`` while a
director started it by hand for "Lumi"; the second start must attach, whichever came first, and the run
keeps the subject its first start wrote. Real HTTP on 127.0.0.1, each database.
"""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api, unique
from tests.triggers.payloads import alertmanager as am_body


def spike(api: Api, brand: str, status: str = "firing") -> dict[str, Any]:
    """Alertmanager's webhook for a NegativeSentimentSpike of ``brand``: its one outcome."""
    body = am_body({"labels": {"alertname": "NegativeSentimentSpike", "severity": "critical", "brand": brand}},
                   status=status)
    answer = api.as_("alertmanager").post("/v1/alerts/alertmanager", json=body)
    assert answer.status_code == 200, answer.text
    [outcome] = answer.json()["outcomes"]
    return outcome


def start(api: Api, brand: str) -> Any:
    return api.as_("ops-console").post("/v1/runs", json={"sop": "crisis-pr", "inputs": {"brand": brand}})


def test_an_operators_start_in_another_case_or_spacing_attaches_to_the_alerts_run(api: Api) -> None:
    brand = unique("lumi")  # lumi-1a2b3c4d, as the alert's label has it
    alerted = spike(api, brand)
    assert alerted["status"] == "started"
    for n, typed in enumerate((brand.capitalize(), f"  {brand.upper()} "), start=1):
        answer = start(api, typed)
        assert answer.status_code == 200, answer.text  # attached, not 201 created
        assert (answer.json()["attached"], answer.json()["run"], answer.json()["repeats"]) == (True, alerted["run"], n)
    row = api.as_("audit-readonly").get(f"/v1/runs/{alerted['run']}").json()
    assert row["repeats"] == 2 and row["dedup_key"] == brand and row["subject"] == brand
    listed = [r for r in api.as_("audit-readonly").get("/v1/runs", params={"sop": "crisis-pr"}).json()
              if (r["subject"] or "").casefold() == brand]
    assert [r["run"] for r in listed] == [alerted["run"]]  # one P1 run, not two


def test_the_alert_attaches_to_the_run_a_person_started_first_and_it_keeps_their_subject(api: Api) -> None:
    brand = unique("lumi")
    typed = brand.capitalize()  # Lumi-1a2b3c4d
    started = start(api, typed)
    assert started.status_code == 201, started.text
    run = started.json()["run"]
    alerted = spike(api, brand)
    assert (alerted["status"], alerted["run"], alerted["repeats"]) == ("attached", run, 1)
    resolved = spike(api, brand.upper(), status="resolved")  # noted on the run whatever the label's case
    assert (resolved["status"], resolved["run"]) == ("resolved", run)
    row = api.as_("audit-readonly").get(f"/v1/runs/{run}").json()
    assert row["dedup_key"] == typed and row["subject"] == typed and row["repeats"] == 1
