"""Notifications: render a message per kind (Jinja2) and deliver it through Apprise.

The engine's whole interface::

    from notifications import Dispatcher, recipients, render_for

    people = recipients(["pr-oncall"], site)                   # roles → primary (backup=True: and backup)
    message = render_for("assigned", ctx, site=site)           # each reader gets their own link, --as and time zone
    dispatcher.submit(message, people, on_done=record_in_ledger)   # returns at once

or, waiting: ``results = deliver(render_message("assigned", ctx, site), people)``. Delivery never
raises for a failed destination: each destination tried gives a :class:`DeliveryResult`
(masked destination, ok, error, attempts, latency). See docs/notifications.md.

Owns: what a message says (``message``: the context templates read, one kind each;
``templating``: one Jinja2 template per kind, a site's own checked by ``overrides``;
``urgency``, ``actions``), who is meant (``addressing``), and delivery: Apprise with
retries (``delivery``, ``attempt``), what each channel is handed (``markup``: no value
disguises a link), secrets masked (``masking``), many at once
(``dispatch``), the local inbox (``inbox``).

May import: ``flows.language`` only (the site's people and settings, priorities, the
project root), plus Jinja2 and Apprise. Never the engine, the ledger, Prefect or
SQLAlchemy: the engine hands it a context and records the results it gets back.
"""

from __future__ import annotations

import logging

from notifications.addressing import Recipient, recipients
from notifications.delivery import DeliveryResult, lane_key, lane_outcomes
from notifications.dispatch import Dispatcher, deliver
from notifications.errors import NotificationError, RenderError, UnknownTarget
from notifications.inbox import inbox_dir, read_inbox
from notifications.masking import mask_url, redact
from notifications.message import (
    KINDS,
    Action,
    ApprovalInfo,
    Context,
    FormField,
    HeldStep,
    HoldInfo,
    LevelInfo,
    Message,
    RecipientInfo,
    RunInfo,
    SopInfo,
    StepInfo,
    SummaryRow,
    test_message,
)
from notifications.overrides import validate_overrides
from notifications.templating import render_for, render_message

# a library logs, the application decides where to (no "No handlers" fallback to stderr)
logging.getLogger("notifications").addHandler(logging.NullHandler())

__all__ = [
    "test_message",
    "KINDS",
    "Action",
    "ApprovalInfo",
    "Context",
    "DeliveryResult",
    "Dispatcher",
    "FormField",
    "HeldStep",
    "HoldInfo",
    "LevelInfo",
    "Message",
    "NotificationError",
    "Recipient",
    "RecipientInfo",
    "RenderError",
    "RunInfo",
    "SopInfo",
    "StepInfo",
    "SummaryRow",
    "UnknownTarget",
    "deliver",
    "inbox_dir",
    "lane_key",
    "lane_outcomes",
    "mask_url",
    "read_inbox",
    "recipients",
    "redact",
    "render_for",
    "render_message",
    "validate_overrides",
]
