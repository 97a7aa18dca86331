"""Status cadences: while a run is open its owner posts a status update every so often.

An SOP says ``cadence: {every: 30m}`` (or its class gets one from ``settings.cadences``: P1
every 30 minutes, P2 every 2 hours). At each period's end the owner is asked for an update;
one posted within the period (or within ``grace`` after the ask) keeps the rhythm; none, and
the ``escalate`` targets are paged, like a late step's ladder. The owner may snooze the next
ask by at most ``max_snooze``, with a reason. Each update posted goes to ``share`` (by default, whom a missed
one escalates to). Durations are SOP time (a drill compresses them).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field, model_validator

from flows.language.fields import Duration, OptionalDuration, Strict

#: who a cadence names: the run's owner role and its lead
CADENCE_WORDS = ("owner", "lead")


class Cadence(Strict):
    """Ask for a status update every ``every``; page ``escalate`` when one is missed."""

    every: Duration = Field(description="how often the owner posts a status update, e.g. 30m")
    notify: list[str] = Field(default_factory=lambda: ["owner"], min_length=1,
                              description="who is asked for the update: owner (the run's owner role) or roles/people")
    escalate: list[str] = Field(default_factory=lambda: ["lead"], min_length=1,
                                description="who is paged when an update is missed: lead (the owner role's lead)")
    share: list[str] | None = Field(default=None, description="who gets each update posted: owner, lead, roles, people "
                                    "or channels (default: whom a missed one escalates to; [] for nobody)")
    grace: Duration = Field(default=timedelta(minutes=5), description="after the ask, before it counts as missed")
    max_snooze: OptionalDuration = Field(default=None, description="the longest snooze (default: one period)")
    message: str | None = Field(default=None, description="what the update should say (shown in the ask)")
    max_missed: int = Field(default=3, ge=1, le=1000,
                            description="missed updates in a row after which the asks stop (and their escalations) "
                                        "until someone posts an update: a forgotten run does not page for ever")

    @property
    def shared_with(self) -> list[str]:
        """Who gets each status update posted: ``share``, else whom a missed one escalates to."""
        return list(self.escalate) if self.share is None else list(self.share)

    @model_validator(mode="after")
    def _sane(self) -> Cadence:
        if self.every < timedelta(minutes=1):
            raise self.field_error("every", "a status cadence of less than a minute would page without pause")
        if self.grace >= self.every:
            raise self.field_error("grace", "the grace must be shorter than the period (`every`)")
        return self

    @property
    def snooze_limit(self) -> timedelta:
        return self.max_snooze or self.every


def effective_cadence(sop: Any, site: Any) -> Cadence | None:
    """The SOP's own cadence, else its class's default from ``settings.cadences`` (None: no cadence)."""
    return sop.cadence or site.settings.cadences.get(sop.class_)


def cadence_targets(owner: str, names: list[str], site: Any) -> list[str]:
    """A cadence's targets as roles, people and channels: ``owner`` is the run's owner role, ``lead`` that role's
    lead (the owner at the top of the tree)."""
    role = site.roles.get(owner)
    out = [owner if name == "owner" else (role.lead if role and role.lead else owner) if name == "lead" else name
           for name in names]
    return list(dict.fromkeys(out))
