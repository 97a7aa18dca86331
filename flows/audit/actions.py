"""What people did outside any run, from the chain: sign-ins, on-call overrides, silences.

A run's story is read with ``sop audit show``; these records belong to no run (``run_id`` is
empty), so an auditor lists them here (``sop audit actions``, ``GET /v1/audit/actions``): who
was sent a sign-in link and who began or ended a browser session (and how), who put whom on
call instead of whom and why, who silenced what and who ended it. Each line names the person
as the audit writes an actor (``li-wei (cli, os user ops)``, ``li-wei (web)``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from flows.audit.scope import AuditError, Window, recorded
from flows.clock import local_time
from flows.language.actors import described
from flows.ledger.vocabulary import RecordKind

#: the kinds listed, by the word ``--kind`` takes
GROUPS: dict[str, tuple[str, ...]] = {
    "sign-in": (RecordKind.SIGN_IN_SENT, RecordKind.SIGNED_IN, RecordKind.SIGNED_OUT),
    "oncall": (RecordKind.ONCALL_OVERRIDE, RecordKind.ONCALL_OVERRIDE_ENDED),
    "silence": (RecordKind.SILENCE_CREATED, RecordKind.SILENCE_ENDED),
}


@dataclass
class ActionLine:
    """One action outside any run: when, which record (``seq``: ``sop audit verify`` names records by it), who and
    how it came, and what it did in words."""

    at: datetime
    seq: int
    kind: str
    who: str
    what: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ACTION_COLUMNS = [f.name for f in fields(ActionLine)]


def check_groups(kinds: list[str] | None) -> list[str]:
    """``--kind`` words, each one of :data:`GROUPS` (AuditError with the choices otherwise); none: all of them."""
    for kind in kinds or []:
        if kind not in GROUPS:
            raise AuditError(f"unknown kind `{kind}`", f"one of {', '.join(GROUPS)}")
    return list(kinds or GROUPS)


def action_lines(conn: Connection, within: Window | None = None, kinds: list[str] | None = None,
                 zone: str = "UTC") -> list[ActionLine]:
    """The actions of ``kinds`` (:data:`GROUPS`' words; all by default) in the window, in the order they came; the
    times their words give in ``zone`` (a table's, beside its own times; the exports' are UTC)."""
    wanted = [str(k) for group in check_groups(kinds) for k in GROUPS[group]]
    out = []
    for row, at, data in recorded(conn, wanted, within):
        # a sign-in link is sent to whoever's name is typed at /sign-in: its person did not necessarily ask
        who = "-" if row.kind == RecordKind.SIGN_IN_SENT or not row.actor else described(row.actor, data)
        out.append(ActionLine(at=at, seq=row.seq, kind=row.kind, who=who,  # type: ignore[arg-type]
                              what=_what(row.kind, row.actor, data, zone)))
    return out


def _when(zone: str) -> Any:
    """A recorded instant in words, in ``zone``: ``2026-12-06 10:59 UTC``, ``2026-12-06 18:59 CST (UTC+8)``."""
    def said(value: Any) -> str:
        try:
            return local_time(datetime.fromisoformat(str(value)).astimezone(UTC), zone)
        except ValueError:
            return str(value)
    return said


def _what(kind: str, person: str | None, data: dict[str, Any], zone: str = "UTC") -> str:
    _t = _when(zone)
    if kind == RecordKind.SIGN_IN_SENT:
        return (f"a sign-in link for {person} sent to {person}'s own contacts ({data.get('delivered')} of "
                f"{data.get('destinations')} reached)")
    if kind == RecordKind.SIGNED_IN:
        return f"signed in (session until {_t(data.get('expires_at'))})"
    if kind == RecordKind.SIGNED_OUT:
        return "signed out"
    if kind == RecordKind.ONCALL_OVERRIDE:
        return (f"put {data.get('person')} on call as primary of {data.get('role')} instead of {data.get('replaces')} "
                f"from {_t(data.get('starts_at'))} until {_t(data.get('ends_at'))}: {data.get('reason')}")
    if kind == RecordKind.ONCALL_OVERRIDE_ENDED:
        how = "withdrew" if data.get("withdrawn") else "ended"
        return (f"{how} override #{data.get('override')} ({data.get('person')} for {data.get('role')}, "
                f"was until {_t(data.get('was_until'))}): {data.get('reason')}")
    if kind == RecordKind.SILENCE_CREATED:
        return (f"silenced {data.get('text')} from {_t(data.get('starts_at'))} until {_t(data.get('ends_at'))} "
                f"({data.get('silence')}): {data.get('reason')}")
    if kind == RecordKind.SILENCE_ENDED:
        return f"ended silence {data.get('silence')} early: {data.get('reason')}"
    return kind
