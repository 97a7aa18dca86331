"""Webhook bodies in the shapes the real senders post (Alertmanager 0.25 webhook v4, Grafana 11 contact point)."""

from __future__ import annotations

from typing import Any

from flows.triggers.model import labels_fingerprint


def alertmanager(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    """An Alertmanager webhook body holding ``alerts`` (each: labels, and optionally status / annotations)."""
    items = []
    for alert in alerts:
        item_status = alert.get("status", status)
        items.append(
            {
                "status": item_status,
                "labels": alert["labels"],
                "annotations": alert.get("annotations", {"summary": "error rate above 5% for 5m"}),
                "startsAt": "2026-11-22T09:51:03.157076+08:00",
                "endsAt": "2026-11-22T10:06:03.157076+08:00" if item_status == "resolved" else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local:9090/graph?g0.expr=rate%28http_errors_total%5B5m%5D%29",
                "fingerprint": alert.get("fingerprint", labels_fingerprint(alert["labels"])),
            }
        )
    return {
        "receiver": "sop",
        "status": status,
        "alerts": items,
        "groupLabels": {"alertname": items[0]["labels"].get("alertname", "")} if items else {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.local:9093",
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0,
    }


GRAFANA = {
    "receiver": "sop-webhook",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "NegativeSentimentSpike", "brand": "lumi", "grafana_folder": "PR"},
            "annotations": {"summary": "negative mentions 3x the weekly baseline"},
            "startsAt": "2026-11-22T09:51:03.157076+08:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://grafana.local/alerting/grafana/b1f2/view?orgId=1",
            "fingerprint": "c6eadffa33fcdf37",
            "silenceURL": "https://grafana.local/alerting/silence/new?alertmanager=grafana&matcher=alertname%3DNegativeSentimentSpike",
            "dashboardURL": "https://grafana.local/d/pr-overview?orgId=1",
            "panelURL": "https://grafana.local/d/pr-overview?orgId=1&viewPanel=3",
            "values": {"B": 312.0, "C": 1},
            "valueString": "[ var='B' labels={brand=lumi} value=312 ], [ var='C' labels={brand=lumi} value=1 ]",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "DetailPageSlow", "page": "/p/8812", "grafana_folder": "Web"},
            "annotations": {"summary": "p75 load time above 1.5s"},
            "startsAt": "2026-11-22T08:56:03.157076+08:00",
            "endsAt": "2026-11-22T09:40:03.157076+08:00",
            "generatorURL": "https://grafana.local/alerting/grafana/d1rd/view?orgId=1",
            "fingerprint": "bc97ff14869b13e3",
            "silenceURL": "https://grafana.local/alerting/silence/new?alertmanager=grafana&matcher=alertname%3DDetailPageSlow",
            "dashboardURL": "",
            "panelURL": "",
            "values": {"B": 1.21, "C": 0},
            "valueString": "[ var='B' labels={page=/p/8812} value=1.21 ]",
        },
    ],
    "groupLabels": {"alertname": "NegativeSentimentSpike"},
    "commonLabels": {},
    "commonAnnotations": {},
    "externalURL": "https://grafana.local/",
    "version": "1",
    "groupKey": '{}/{}:{alertname="NegativeSentimentSpike"}',
    "truncatedAlerts": 0,
    "title": "[FIRING:1, RESOLVED:1]  (PR)",
    "state": "alerting",
    "message": "**Firing**\n\nValue: B=312, C=1\nLabels:\n - alertname = NegativeSentimentSpike\n",
}

GRAFANA_LEGACY = {
    "dashboardId": 1,
    "evalMatches": [{"value": 1.8, "metric": "detail_page_load_seconds", "tags": {}}],
    "imageUrl": "https://grafana.local/public/img/attachments/x.png",
    "message": "Detail page p75 above 1.5 s",
    "orgId": 1,
    "panelId": 2,
    "ruleId": 1,
    "ruleName": "DetailPageSlow",
    "ruleUrl": "https://grafana.local/d/web/web?fullscreen&edit&tab=alert&panelId=2&orgId=1",
    "state": "alerting",
    "tags": {"page": "/p/42"},
    "title": "[Alerting] DetailPageSlow",
}
