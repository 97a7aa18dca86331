"""What a step makes available to later steps (``steps.<id>.<field>``), as `sop validate` checks it."""

from __future__ import annotations

from flows.language.library import load_sop
from flows.language.loader import parse_yaml

TELL_THEN_CALL = """\
id: tell-then-call
title: Tell the users, and call them when the message got nowhere
class: outage
owner: sre-oncall
steps:
  - id: tell-users
    kind: notify
    notify: [users-sms]
    message: {{title: "Service restored"}}
  - id: call-users
    needs: [tell-users]
    when: "{when}"
    assignee: sre-oncall
"""


def errors_of(when: str) -> list[str]:
    doc, parse_errors = parse_yaml(TELL_THEN_CALL.format(when=when), "tell-then-call.yaml")
    assert doc is not None and not parse_errors
    return [str(e) for e in load_sop(doc, None)[1]]


def test_a_later_step_may_read_what_a_notify_step_delivered() -> None:
    assert errors_of("{{ not steps.tell_users.delivered }}") == []
    assert errors_of("{{ steps.tell_users.failed > 0 and steps.tell_users.reached == 0 }}") == []


def test_a_misspelt_notify_output_is_named_with_the_fields_there_are() -> None:
    [error] = errors_of("{{ not steps.tell_users.delivred }}")
    assert "tell-then-call.yaml:12:" in error
    assert "step `tell_users` has no field `delivred`" in error and "delivered" in error and "reached" in error
