"""Silences: a person's decision that triggers matching some labels start no run, for a while, and why.

A silence holds label matchers written as on the command line (``alertname=HighErrorRate,brand=~lumi|nova``),
a reason, who made it, from when (now, or later: a maintenance window planned ahead) until
when, on the engine's clock. While it holds, the intake's
silence stage (``flows.triggers.intake``) records each matching signal as ``trigger_silenced``
instead of starting (or attaching to) a run; once it expires or a person ends it, it matches
nothing. Alertmanager's own silences are not replaced: ours cover the SOPs' trigger rules,
metric rules and events too.

Matchers are the SOP alert triggers' (``flows.triggers.match``): ``name=value`` (equal) and
``name=~regex`` (the whole value matches); a label that is absent reads as the empty string.
``!=`` and ``!~`` are refused, as the SOPs' triggers have no negation either. The book keeps
the matchers in that module's form (``{name: value}``, ``{name: "~regex"}``) for the intake.

Every write is a record of the chain (``silence_created``, ``silence_ended``) and the
``silences`` projection, in one transaction.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from flows.language.actors import Actor
from flows.language.durations import DURATION_HINT, format_duration, parse_duration
from flows.language.fields import length_problem
from flows.ledger import Ledger, utc
from flows.ledger.schema import silences
from flows.ledger.vocabulary import RecordKind
from flows.logfmt import kv

log = logging.getLogger("sop.silences")

#: the longest a silence may last: longer is a change to the SOP's triggers, not a silence
MAX_DURATION = timedelta(days=30)
#: how far back ``listing`` shows silences that expired or were ended
RECENT = timedelta(days=7)
#: how far ahead a maintenance window may be planned
MAX_AHEAD = timedelta(days=30)
#: the operators a matcher may use (the SOPs' triggers have no negation)
OPERATORS = ("=~", "=")
_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]*"
_MATCHER = re.compile(rf"\s*(?P<name>{_NAME})?\s*(?P<op>=~|!~|!=|=|~)?")
#: where an unquoted value ends: a comma followed by the next ``name<op>``
_NEXT = re.compile(rf",(?=\s*{_NAME}\s*(?:=~|!~|!=|=|~))")
MATCHER_HINT = "write name=value or name=~regex, separated by commas: alertname=HighErrorRate,brand=~lumi|nova"


class SilenceRefused(ValueError):
    """A silence not made or not ended, with the problems by field (``match``, ``for``, ``reason``, ``as``)."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class SilenceNotFound(LookupError):
    """No silence with that id."""


@dataclass(frozen=True)
class Matcher:
    """One label matcher: ``name=value`` or ``name=~regex``."""

    name: str
    op: str
    value: str

    def text(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value, ensure_ascii=False)}"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "op": self.op, "value": self.value}


def parse_matchers(text: str) -> list[Matcher]:
    """The matchers of ``alertname=X,brand=~lumi|nova`` (values may be "quoted"); SilenceRefused (field
    ``match``) naming the column of the first problem, and what to write instead."""
    source = text or ""
    out: list[Matcher] = []
    pos = 0
    if not source.strip():
        _refuse("give at least one matcher; " + MATCHER_HINT)
    while pos < len(source):
        head = _MATCHER.match(source, pos)
        assert head is not None  # every group is optional
        name, op = head.group("name"), head.group("op")
        column = len(source) - len(source[pos:].lstrip()) + 1  # where this matcher begins
        if not name:
            _refuse(f"at column {column}: expected a label name, got {_snippet(source, column - 1)}; {MATCHER_HINT}")
        if op is None or op == "~":
            _refuse(f"at column {column}: `{name}` has no operator (= or =~); {MATCHER_HINT}")
        if op in ("!=", "!~"):
            _refuse(f"at column {head.start('op') + 1}: `{op}` is not supported: SOP alert triggers match with "
                    "= and =~ only (no negation); narrow the silence with more matchers instead")
        pos = head.end()
        starts = pos + 1 + (source[pos:pos + 1] == '"')  # the value's first character, as a column
        value, pos = _value(source, pos, column)
        if any(m.name == name for m in out):
            _refuse(f"at column {column}: `{name}` is matched twice; one matcher per label")
        if op == "=~":
            try:
                re.compile(value)
            except re.error as exc:  # where in the value it goes wrong (a quoted value's escapes aside)
                where = starts + exc.pos if exc.pos is not None else column
                _refuse(f"at column {where}: `{name}=~{value}`: not a regular expression ({exc.msg})")
            try:  # as alert triggers match it: the whole value (flags of the whole pattern cannot be inside that)
                re.compile(f"(?:{value})\\Z")
            except re.error as exc:
                _refuse(f"at column {starts}: `{name}=~{value}`: {exc.msg} once matched against the whole value; "
                        "scope flags to a group instead, e.g. (?i:nova)")
        elif value.startswith("~"):
            _refuse(f"at column {column}: `{name}={value}`: a value starting with ~ reads as a regular expression "
                    f"in the SOPs' matchers; write {name}=~{value[1:]} for one")
        out.append(Matcher(name, op, value))
        after = len(source) - len(source[pos:].lstrip())  # the next character that is not a space
        if after == len(source):
            break
        if source[after] != ",":
            _refuse(f"at column {after + 1}: expected a comma before {_snippet(source, after)}")
        if not source[after + 1:].strip():
            _refuse(f"at column {after + 1}: a comma with no matcher after it; {MATCHER_HINT}")
        pos = after + 1
    if all(_matches_empty(m) for m in out):
        _refuse("every matcher also matches an absent label: this silence would silence every signal; "
                "add a matcher that needs a value (e.g. alertname=…)")
    return out


def _value(source: str, pos: int, column: int) -> tuple[str, int]:
    """The value starting at ``pos`` (quoted, or up to the next ``,name=``) and where it ends."""
    stripped = len(source) - len(source[pos:].lstrip())
    if source[stripped:stripped + 1] == '"':
        try:
            value, end = json.JSONDecoder().raw_decode(source, stripped)
        except json.JSONDecodeError as exc:
            _refuse(f"at column {column}: the quoted value does not end ({exc.msg})")
        return str(value), end
    found = _NEXT.search(source, pos)
    end = found.start() if found else len(source)
    value = source[pos:end].strip()
    if value.endswith(","):
        _refuse(f"at column {column}: a comma with no matcher after it (quote a value that ends in a comma); "
                f"{MATCHER_HINT}")
    return value, end


def _matches_empty(matcher: Matcher) -> bool:
    if matcher.op == "=~":
        return re.compile(f"(?:{matcher.value})\\Z").match("") is not None
    return matcher.value == ""


def _snippet(source: str, at: int) -> str:
    rest = source[at:at + 20]
    return f"`{rest}`" if rest else "the end"


def _refuse(message: str) -> Any:
    raise SilenceRefused({"match": message})


@dataclass(frozen=True)
class Silence:
    """One silence as the book holds it."""

    id: str
    matchers: tuple[Matcher, ...]
    reason: str
    created_by: str
    created_via: str
    created_at: datetime
    starts_at: datetime
    ends_at: datetime
    ended_at: datetime | None = None
    ended_by: str | None = None
    end_reason: str | None = None

    @property
    def rule(self) -> dict[str, str]:
        """The matchers in ``flows.triggers.match``'s form: ``{name: value}``, ``{name: "~regex"}``."""
        return {m.name: ("~" + m.value if m.op == "=~" else m.value) for m in self.matchers}

    @property
    def text(self) -> str:
        """``alertname="X", brand=~"lumi"``."""
        return ", ".join(m.text() for m in self.matchers)

    @property
    def until(self) -> datetime:
        """When it stopped (or stops) holding: ended early, or its end."""
        return min(self.ended_at, self.ends_at) if self.ended_at else self.ends_at

    def state(self, now: datetime) -> str:
        """``active``, ``pending`` (starts later), ``ended`` (by a person) or ``expired``."""
        if self.ended_at is not None and self.ended_at <= now:
            return "ended"
        if self.ends_at <= now:
            return "expired"
        return "active" if self.starts_at <= now else "pending"

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "matchers": [m.to_dict() for m in self.matchers], "text": self.text, "reason": self.reason,
            "created_by": self.created_by, "created_via": self.created_via, "created_at": self.created_at.isoformat(),
            "starts_at": self.starts_at.isoformat(), "ends_at": self.ends_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None, "ended_by": self.ended_by,
            "end_reason": self.end_reason,
        }
        if now is not None:
            out["state"] = self.state(now)
        return out

    @classmethod
    def of(cls, row: Any) -> Silence:
        return cls(
            id=row.id, matchers=tuple(Matcher(**m) for m in json.loads(row.matchers)), reason=row.reason,
            created_by=row.created_by, created_via=row.created_via, created_at=utc(row.created_at),  # type: ignore[arg-type]
            starts_at=utc(row.starts_at), ends_at=utc(row.ends_at), ended_at=utc(row.ended_at),  # type: ignore[arg-type]
            ended_by=row.ended_by, end_reason=row.end_reason,
        )


#: silences still to hold (now or later), by a statement built once: building one per call costs more than running it
_c = silences.c
_UNEXPIRED = (sa.select(silences)
              .where((_c.ends_at > sa.bindparam("now")) & (_c.ended_at.is_(None) | (_c.ended_at > sa.bindparam("now"))))
              .order_by(_c.created_at, _c.id))
#: bumped by every silence this process makes or ends: a cache of them (the intake's) reads them again at once
written = [0]


def check_start(text: str | datetime | None, now: datetime, zone: str = "UTC") -> datetime:
    """``--from``: when the silence begins (an ISO time, in ``zone`` unless it has an offset; ``+2h`` from now;
    none: now), not in the past and at most :data:`MAX_AHEAD` ahead; SilenceRefused (field ``from``)."""
    from flows.language.oncall import parse_instant

    if text is None or (isinstance(text, str) and not text.strip()):
        return now
    if isinstance(text, datetime):
        at = text.replace(tzinfo=UTC) if text.tzinfo is None else text.astimezone(UTC)
    else:
        try:
            at = parse_instant(text.strip().replace("Z", "+00:00"), zone, now=now)
        except ValueError:
            raise SilenceRefused({"from": f"expected a time such as 2026-12-06T22:00 ({zone}), "
                                          f"2026-12-07T06:00+08:00 or +2h (from now), got {text!r}"}) from None
    if at < now - timedelta(minutes=1):
        raise SilenceRefused({"from": f"{at.isoformat(timespec='seconds')} is in the past (now "
                                      f"{now.isoformat(timespec='seconds')}): leave it out to begin now"})
    if at > now + MAX_AHEAD:
        raise SilenceRefused({"from": f"at most {format_duration(MAX_AHEAD)} ahead, got "
                                      f"{at.isoformat(timespec='seconds')}"})
    return max(at, now)


def check_duration(text: str | timedelta) -> timedelta:
    """``--for``: a duration longer than zero and at most :data:`MAX_DURATION`; SilenceRefused (field ``for``)."""
    try:
        duration = parse_duration(text)
    except ValueError as exc:
        raise SilenceRefused({"for": str(exc)}) from None
    if duration > MAX_DURATION:
        raise SilenceRefused({"for": f"at most {format_duration(MAX_DURATION)}, got {format_duration(duration)}: "
                                     "a longer silence is a change to the SOP's triggers"})
    return duration


#: the same person's silence of the same matchers made again within this (wall time) is the same one, refused
SAME_SILENCE_WITHIN = timedelta(minutes=1)


class SilenceBook:
    """Silences in the ledger: made, ended, listed, and the ones holding now (what the intake reads)."""

    def __init__(self, ledger: Ledger, clock: Any = None):
        self.ledger = ledger
        self.clock = clock or ledger.clock

    def create(self, matchers: str, duration: str | timedelta, reason: str, actor: Actor, *,
               starts: str | datetime | None = None, zone: str = "UTC") -> Silence:
        """Silence what ``matchers`` match for ``duration`` from ``starts`` (default now: a maintenance window
        may be planned ahead; a time without an offset is in ``zone``: the site's on the terminal and the page,
        UTC by default); recorded as ``silence_created`` by ``actor``.

        Every problem is told at once, by field (SilenceRefused): nothing is written.
        """
        now = self.clock.now()
        errors: dict[str, str] = {}
        found: dict[str, Any] = {}
        for field, check in (("match", lambda: parse_matchers(matchers)), ("for", lambda: check_duration(duration)),
                             ("from", lambda: check_start(starts, now, zone))):
            try:
                found[field] = check()
            except SilenceRefused as exc:
                errors[field] = exc.errors.get(field, str(exc))
        reason = (reason or "").strip()
        if not reason:
            errors["reason"] = "say why: the auditors read it beside every signal it silences"
        elif (too_long := length_problem(reason, "the reason")) is not None:
            errors["reason"] = too_long
        if errors:
            raise SilenceRefused(errors)
        parsed: list[Matcher] = found["match"]
        begins: datetime = found["from"]
        silence = Silence(id=f"sil-{secrets.token_hex(4)}", matchers=tuple(parsed), reason=reason,
                          created_by=actor.person, created_via=actor.via, created_at=now, starts_at=begins,
                          ends_at=begins + found["for"])
        kept = [m.to_dict() for m in parsed]
        stored = json.dumps(kept, ensure_ascii=False)  # the matchers as the table keeps (and compares) them
        with self.ledger.transaction() as tx:
            same = tx.conn.execute(sa.select(silences.c.id, silences.c.created_at).where(
                (silences.c.created_by == actor.person) & (silences.c.created_at > now - SAME_SILENCE_WITHIN)
                & silences.c.ended_at.is_(None)
                & (silences.c.matchers == stored)
                # the same window (as sent a moment apart): another window of the same matchers is another silence
                & silences.c.starts_at.between(begins - SAME_SILENCE_WITHIN, begins + SAME_SILENCE_WITHIN)
                & silences.c.ends_at.between(silence.ends_at - SAME_SILENCE_WITHIN,
                                             silence.ends_at + SAME_SILENCE_WITHIN))).first()
            if same is not None:  # a double submit, a second tab: one silence, not two to end
                raise SilenceRefused({"match": f"you made this silence a moment ago ({same.id}): it stands; end it or "
                                               "wait a minute to make another of the same matchers"})
            tx.conn.execute(silences.insert().values(
                id=silence.id, matchers=stored, reason=reason,
                created_by=silence.created_by, created_via=silence.created_via, created_at=now, starts_at=begins,
                ends_at=silence.ends_at))
            tx.append(RecordKind.SILENCE_CREATED, actor=actor.person, at=now, silence=silence.id,
                      matchers=kept, text=silence.text, reason=reason,
                      starts_at=begins.isoformat(), ends_at=silence.ends_at.isoformat(), **actor.facts())
        written[0] += 1
        log.info(kv("event=silence_created", silence=silence.id, by=actor.person, via=actor.via, match=silence.text,
                    starts=begins.isoformat(), until=silence.ends_at.isoformat(), reason=reason[:200]))
        return silence

    def end(self, silence_id: str, actor: Actor, reason: str) -> Silence:
        """End a silence now (it matches nothing after); ``silence_ended`` recorded. SilenceNotFound, or
        SilenceRefused when it already stopped or no reason is given."""
        reason = (reason or "").strip()
        now = self.clock.now()
        with self.ledger.transaction() as tx:
            row = tx.conn.execute(sa.select(silences).where(silences.c.id == silence_id)).first()
            if row is None:
                raise SilenceNotFound(f"no silence `{silence_id}` (see `sop silence list`)")
            silence = Silence.of(row)
            state = silence.state(now)
            if state in ("ended", "expired"):
                when = silence.until.isoformat(timespec="seconds")
                raise SilenceRefused({"silence": f"silence {silence_id} already {state} at {when}"})
            if not reason:
                raise SilenceRefused({"reason": "say why it ends early: it is recorded"})
            tx.conn.execute(silences.update().where(silences.c.id == silence_id)
                            .values(ended_at=now, ended_by=actor.person, end_reason=reason))
            tx.append(RecordKind.SILENCE_ENDED, actor=actor.person, at=now, silence=silence_id, reason=reason,
                      ends_at=silence.ends_at.isoformat(), **actor.facts())
        written[0] += 1
        log.info(kv("event=silence_ended", silence=silence_id, by=actor.person, via=actor.via, reason=reason[:200]))
        return replace(silence, ended_at=now, ended_by=actor.person, end_reason=reason)

    def get(self, silence_id: str) -> Silence:
        with self.ledger.read() as conn:
            row = conn.execute(sa.select(silences).where(silences.c.id == silence_id)).first()
        if row is None:
            raise SilenceNotFound(f"no silence `{silence_id}` (see `sop silence list`)")
        return Silence.of(row)

    def active(self, now: datetime | None = None) -> list[Silence]:
        """The silences holding at ``now`` (default: the clock's now), oldest first."""
        now = now or self.clock.now()
        return [s for s in self.unexpired(now) if s.state(now) == "active"]

    def unexpired(self, now: datetime) -> list[Silence]:
        """The silences holding at ``now`` or later (not expired, not ended), oldest first."""
        with self.ledger.read() as conn:
            return [Silence.of(r) for r in conn.execute(_UNEXPIRED, {"now": now})]

    def listing(self, now: datetime | None = None, recent: timedelta = RECENT) -> list[Silence]:
        """Silences holding now, then those that stopped within ``recent``, each group newest first."""
        now = now or self.clock.now()
        c = silences.c
        with self.ledger.read() as conn:
            rows = conn.execute(sa.select(silences).where(c.ends_at > now - recent)
                                .order_by(c.created_at.desc(), c.id)).all()
        found = [Silence.of(r) for r in rows]
        held = [s for s in found if s.state(now) in ("active", "pending")]
        stopped = [s for s in found if s.state(now) not in ("active", "pending") and s.until > now - recent]
        return held + stopped


__all__ = ["DURATION_HINT", "MATCHER_HINT", "MAX_AHEAD", "MAX_DURATION", "Matcher", "Silence", "SilenceBook",
           "SilenceNotFound", "SilenceRefused", "check_duration", "check_start", "parse_matchers"]
