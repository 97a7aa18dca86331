"""The route stage: which SOP triggers a signal matches.

The router indexes the library once (alert triggers in library order, event triggers by
name, metric rules by metric) so that matching an alert costs a few dict lookups and
regex matches, not a walk over every SOP file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flows.language.library import Library
from flows.language.spec import AlertTrigger, EventTrigger, MetricRule
from flows.triggers.match import matches, matches_one
from flows.triggers.model import Alert, Event


@dataclass(frozen=True)
class Match:
    """One SOP trigger that a signal satisfies: the SOP, the trigger's index and spec."""

    sop_id: str
    index: int
    trigger: Any  # AlertTrigger | EventTrigger | MetricRule


class Router:
    """Matches alerts, events and metric names against every SOP's ``triggers``."""

    def __init__(self, library: Library):
        self.alerts: list[Match] = []
        self.events: dict[str, list[Match]] = {}
        self.metrics: dict[str, list[Match]] = {}
        for sop_id in sorted(library.sops):
            for i, trigger in enumerate(library.sops[sop_id].sop.triggers):
                match = Match(sop_id, i, trigger)
                if isinstance(trigger, AlertTrigger):
                    self.alerts.append(match)
                elif isinstance(trigger, EventTrigger):
                    self.events.setdefault(trigger.event, []).append(match)
                elif isinstance(trigger, MetricRule):
                    self.metrics.setdefault(trigger.metric, []).append(match)

    def route_alert(self, alert: Alert) -> list[Match]:
        """Alert triggers whose source and label matchers fit; at most one per SOP (the first)."""
        found: dict[str, Match] = {}
        for match in self.alerts:
            trigger: AlertTrigger = match.trigger
            if match.sop_id in found or trigger.source not in ("any", alert.source):
                continue
            if matches(trigger.alert, alert.labels):
                found[match.sop_id] = match
        return list(found.values())

    def near_misses(self, alert: Alert) -> list[str]:
        """Why the alert triggers that name this alert did not take it, when one matcher alone failed: a label the
        SOP spells otherwise than the alerting rule (``brnd``), or a value it does not want. Said in the alert's
        words for the webhook's answer to an unrouted alert; [] when no trigger names its ``alertname``."""
        said: list[str] = []
        for match in self.alerts:
            trigger: AlertTrigger = match.trigger
            if "alertname" not in trigger.alert or trigger.source not in ("any", alert.source):
                continue
            failing = [name for name, matcher in trigger.alert.items() if not matches_one(matcher, alert.labels.get(name))]
            if len(failing) != 1 or failing[0] == "alertname":
                continue
            name = failing[0]
            has = (f"has {name}={alert.labels[name]!r}" if name in alert.labels else
                   f"has no label `{name}` (its labels: {', '.join(sorted(alert.labels))})")
            said.append(f"{match.sop_id} (triggers[{match.index}]) wants {name}={trigger.alert[name]!r}; the alert {has}")
        return said

    def route_event(self, event: Event) -> list[Match]:
        """Event triggers of that name whose ``match`` fits the event's values (and ``key``)."""
        found: dict[str, Match] = {}
        fields = {"key": event.key, **event.values}
        for match in self.events.get(event.name, []):
            if match.sop_id not in found and matches(match.trigger.match, fields):
                found[match.sop_id] = match
        return list(found.values())

    def rules_for(self, metric: str) -> list[Match]:
        """Metric rules that read this metric."""
        return self.metrics.get(metric, [])
