"""``sop audit show``: one run's whole story as a JSON-ready document (the CLI and the API print it)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from flows.audit.facts import Entry, Notification
from flows.audit.followups import verdict as follow_up_verdict
from flows.audit.model import RunAudit, StepAudit, started_by
from flows.language.actors import described
from flows.language.durations import format_duration
from flows.language.fields import FieldSpec
from flows.language.ladder import level_words
from flows.language.library import pinned_sop
from flows.language.presentation import skip_reason


def actor_text(kind: str, data: dict[str, Any], actor: str | None) -> str | None:
    """A record's actor and how it came, as the audit prints it: ``li-wei for wang-fang (api)``."""
    if not actor:
        return None
    if kind == "run_started":
        return started_by(actor, data, data.get("trigger"))
    return described(actor, data)


def describe(kind: str, data: dict[str, Any], actor: str | None) -> str | None:
    """One readable line per ledger record (None: not shown on a timeline)."""
    who = actor_text(kind, data, actor)
    if kind == "run_started":
        trigger = data.get("trigger")
        if isinstance(trigger, dict) and trigger.get("kind") == "follow_up":
            who = (f"the end ({trigger.get('outcome')}) of {trigger.get('parent_sop')} run {trigger.get('run')}, "
                   f"a follow-up due within {trigger.get('within')}")
        return f"run started by {who}, speed ×{data.get('speed')}"
    if kind == "follow_up_started":
        how = "attached to the open" if data.get("attached") else "started"
        return f"follow-up {data.get('sop')}: {how} run {data.get('run')}, due within {data.get('within')}"
    if kind in ("follow_up_skipped", "follow_up_refused"):  # a condition's template: on a details line
        return f"follow-up {data.get('sop')} {kind.removeprefix('follow_up_')}: {skip_reason(data)[0]}"
    if kind == "step_assigned":
        on_call = data.get("on_call")
        why = f"; {on_call['why']}" if isinstance(on_call, dict) and on_call.get("why") else ""
        return f"assigned to {data.get('assignee')} ({data.get('person')}{why})"
    if kind == "escalation":
        late = f", {data['late_ms']} ms late" if data.get("late") else ""
        return (f"{data.get('message')}, {level_words(data.get('level'))} → {', '.join(data.get('notify', []))}{late}"
                f"{_on_call_text(data)}")
    if kind == "step_overdue":
        return f"due time passed{'; on_timeout ' + data['on_timeout'] if data.get('on_timeout') else ''}"
    if kind == "run_overdue":
        return "run deadline passed"
    if kind in ("step_done", "step_rejected"):
        return f"{kind.removeprefix('step_')} by {who or 'automation'}" + (
            "" if data.get("deadline_met") in (None, True) else ", late") + (
            f", its timer {data.get('late_ms')} ms late" if data.get("late") else "")  # a wait ended by a late timer
    if kind == "link_refused":
        whose = data.get("link_of") or actor  # records before 2026-12-06 named the link's person as the actor
        reason = {"used": "already used"}.get(data.get("reason") or "", data.get("reason") or "refused")
        return (f"a personal link of {whose} sent again, refused ({reason})"
                + (f" from {data['client']}" if data.get("client") else ""))
    if kind in ("step_skipped", "step_blocked", "step_failed", "step_timed_out"):
        return f"{kind.removeprefix('step_')}: {skip_reason(data)[0]}"
    if kind == "step_attempt_failed":  # numbered since 2026-12-07: the count goes on across executors
        which = f"attempt {data['attempt']} of {data.get('of')}" if data.get("attempt") else "an attempt"
        return f"{which} failed: {data.get('reason')}"
    if kind == "step_attempt_started":  # a `once` step's: an attempt cut mid-way is told from one that failed
        return f"attempt {data.get('attempt')} started (once: not made again if cut)"
    if kind == "flow_run_rescued":
        if data.get("by"):
            return f"its flow run put back in its queue by {data['by']}, stopped before the step's next attempt"
        return "its flow run put back in its queue: its executor was lost"
    if kind == "step_ready":
        return f"ready ({data.get('step_kind')})"
    if kind == "step_started":  # an automated step's task began: from ready to here is the executor's latency
        return "started"
    if kind == "approval":
        return f"approved by {who} ({len(data.get('approvals', []))}/{data.get('needed')})"
    if kind == "step_claimed":
        return f"{who} took it"
    if kind == "step_simulated":
        sent, message = data.get("request") or {}, data.get("message") or {}
        what = (f"{sent.get('method')} {sent.get('url')}" if sent else
                f"message “{message.get('title')}” to {', '.join(message.get('to') or []) or 'nobody'}" if message
                else " ".join(data.get("argv") or []))
        return f"simulated (drill): {what}"
    if kind == "status_update":
        return f"status update by {who}: {data.get('text')}"
    if kind == "status_asked":
        return f"status update asked (period {data.get('period')})"
    if kind == "status_missed":
        return f"status update missed (period {data.get('period')}): escalated"
    if kind == "status_asks_stopped":
        return (f"status asks stopped after {data.get('missed')} missed updates in a row: they start again with the "
                "next update")
    if kind == "cadence_snoozed":
        return f"status ask snoozed by {who} for {format_duration(timedelta(seconds=data.get('by_s') or 0))}: " \
               f"{data.get('reason')}"
    if kind == "step_reopened":
        note = f": {data['note']}" if data.get("note") else ""
        return f"round {data.get('round')}: sent back by {data.get('by')} from {data.get('cause')}{note}"
    if kind == "step_handed_over":
        note = f": {data['note']}" if data.get("note") else ""
        moved = ""
        if data.get("ladder_from") and data.get("ladder_to"):  # the new holder's grace (docs/sop-format.md)
            by = datetime.fromisoformat(data["ladder_to"]) - datetime.fromisoformat(data["ladder_from"])
            moved = f"; its ladder's next level moved {format_duration(by)} later"
        return f"{who} handed it to {data.get('to')}{note}{moved}"
    if kind == "help_asked":
        level = f" → {level_words(data['level'])}" if data.get("level") else " → the lead"
        return f"help asked by {who}{level}"
    if kind == "notification":
        return notification_text(data)
    if kind == "run_finished":
        if data.get("outcome") == "failed":  # the procedure was not carried out: its deadline, if any, not met
            met = ", deadline not met" if data.get("deadline_met") is False else ""  # True: it had none
            return f"run finished: failed{met} (the procedure was not carried out)"
        return f"run finished: {data.get('outcome')}, deadline {'met' if data.get('deadline_met') else 'missed'}"
    if kind == "run_cancelled":
        return f"run cancelled by {who}: {data.get('reason')}" if who else f"run cancelled: {data.get('reason')}"
    if kind in ("step_held", "run_held"):
        what = "the run put" if kind == "run_held" else "put"
        with_run = " (with its run)" if data.get("run_hold") else ""
        return f"{what} on hold{with_run} by {who or '-'}, waiting for {data.get('reason')}"
    if kind in ("step_released", "run_released"):
        what = "the run's hold" if kind == "run_released" else "hold"
        ended = data.get("ended")
        how = (f"released by {who or '-'}" if ended == "released" else
               "ended: its maximum passed (escalated)" if ended == "expired" else
               "ended with the step" if ended == "step_ended" else "ended with the run" if ended == "run_ended" else
               f"ended ({ended})")
        held = format_duration(timedelta(seconds=data.get("held_s") or 0))
        return f"{what} ({data.get('reason')}) {how} after {held} held"
    if kind == "launch_given_up":
        return f"{data.get('reason')} (after {data.get('attempts')} attempts; owner paged)"
    return None


def entry_text(entry: Entry) -> str:
    """One readable line for a record (the drill's wording; the kind itself when it has none)."""
    data = entry.data
    if entry.kind in ("step_done", "step_rejected"):
        verb = entry.kind.removeprefix("step_")
        late = "" if data.get("deadline_met") in (None, True) else ", after its due time"
        return f"{verb} by {actor_text(entry.kind, data, entry.actor) or 'automation'}{late}"
    if entry.kind == "step_overdue":
        return "due time passed" + (f"; on_timeout {data['on_timeout']}" if data.get("on_timeout") else "")
    if entry.kind == "trigger_repeated":
        copies = f" ×{data['copies']} in one payload" if data.get("copies") else ""
        return f"trigger repeated{copies} (#{data.get('repeats')}), attached to this run"
    if entry.kind == "report_refused":
        return f"report by {actor_text(entry.kind, data, entry.actor)} refused: {data.get('reason')}"
    if entry.kind == "resume_refused":  # a resume through Prefect the engine did not sign: it reported nothing
        claimed = f"; it carried {', '.join(data['fields'])}" if data.get("fields") else ""
        return f"Prefect resume refused ({data.get('reason')}): not signed by the engine, reported nothing{claimed}"
    return describe(entry.kind, data, entry.actor) or entry.kind.replace("_", " ")


def values_text(values: dict[str, Any], form: dict[str, FieldSpec]) -> str:
    """A step's reported values as the audit prints them: each as it is recorded, and a choice with the label its
    reader was shown (``category="product_quality" (Product quality), affected_orders=12``)."""
    parts = []
    for name, value in values.items():
        spec = form.get(name)
        label = spec.choice_label(value) if spec is not None else None
        said = f"{name}={json.dumps(value, ensure_ascii=False, default=str)}"
        parts.append(f"{said} ({label})" if label is not None and label != str(value) else said)
    return ", ".join(parts)


def _forms(run: RunAudit) -> dict[str, dict[str, FieldSpec]]:
    """Each step's form as the run's pinned SOP has it ({} when its text is missing or no longer parses: the
    values are then printed as recorded, without labels)."""
    try:
        sop = pinned_sop(run.sop_hash, run.sop_text) if run.sop_text else None
    except Exception:  # noqa: BLE001 - an edited text: `sop audit verify` reports it
        return {}
    return {step.id: getattr(step, "form", {}) for step in sop.steps} if sop is not None else {}


def _entry(e: Entry, run: RunAudit, forms: dict[str, dict[str, FieldSpec]]) -> dict[str, Any]:
    """A timeline line: the record, its readable text, and (a step's report) its values as people read them."""
    result = dict(e.data.get("result") or {}) if e.kind in ("step_done", "step_rejected") else {}
    values = {k: v for k, v in result.items() if k not in ("evidence", "approvers")}
    return {"seq": e.seq, "at": e.at, "offset_s": run.sop_seconds(run.started_at, e.at), "kind": e.kind,
            "step": e.step_id, "actor": e.actor, "actor_text": actor_text(e.kind, e.data, e.actor),
            "text": entry_text(e), "data": e.data,
            "values_text": values_text(values, forms.get(e.step_id or "", {})) if values else None}


def notification_text(data: dict[str, Any]) -> str:
    """A ``notification`` record's line: to whom it was sent and how many destinations took it; whose digest
    kept it (``kept for li-wei's digest``), whom it was not sent to and why (``not sent to sun-hao: not in the
    drill``: ``flows.engine.participants``); a digest, which pages of the run it carried."""
    results = data.get("results", [])
    ok = sum(1 for r in results if r.get("ok"))
    sent = f"sent to {', '.join(sorted({r['recipient'] for r in results}))} ({ok}/{len(results)} delivered)"
    kept = "; ".join([*(f"kept for {person}'s digest" for person in data.get("kept") or []),
                      *(f"not sent to {n.get('to')}: {n.get('why')}" for n in data.get("not_sent") or [])])
    if data.get("notification") == "digest":
        covers = ", ".join(f"#{seq}" for seq in data.get("covers") or [] if seq is not None)
        kinds = ", ".join(data.get("kinds") or [])
        return f"digest {sent}, carrying {len(data.get('kinds') or [])} kept page(s) of this run: {kinds}" + (
            f" (records {covers})" if covers else "")
    if kept and not results:
        return f"{data.get('notification')} {kept}"
    return f"{data.get('notification')} {sent}" + (f"; {kept}" if kept else "")


def _notification(n: Notification, run: RunAudit) -> dict[str, Any]:
    return {"seq": n.seq, "at": n.at, "offset_s": run.sop_seconds(run.started_at, n.at), "kind": n.kind,
            "delivered": n.delivered, "destinations": len(n.deliveries), "deliveries": [asdict(d) for d in n.deliveries],
            "kept": n.kept}


def _step(step: StepAudit, run: RunAudit, now: datetime) -> dict[str, Any]:
    offset = run.sop_seconds
    return {
        "id": step.id, "title": step.title, "kind": step.kind, "assignee": step.assignee, "person": step.person,
        "state": step.state, "ready_at": step.ready_at, "due_at": step.due_at, "finished_at": step.finished_at,
        "ready_offset_s": offset(run.started_at, step.ready_at), "due_s": offset(step.ready_at, step.due_at),
        "took_s": offset(step.ready_at, step.finished_at), "deadline": step.deadline(now),
        "overdue_at": step.overdue_at, "actor": step.actor, "actor_text": step.actor_text, "values": step.values,
        "note": step.note, "evidence": step.evidence, "reason": step.reason,
        "approvals": [{"seq": a.seq, "at": a.at, "actor": a.actor, "actor_text": a.actor_text, "note": a.note}
                      for a in step.approvals],
        "claimed_by": step.claimed_by, "claimed_by_text": step.claimed_by_text, "claimed_at": step.claimed_at,
        "help": [{"seq": h.seq, "at": h.at, "offset_s": offset(run.started_at, h.at), "actor": h.actor,
                  "actor_text": h.actor_text, "note": h.note, "level": h.level} for h in step.help],
        "escalations": [{"seq": e.seq, "at": e.at, "offset_s": offset(run.started_at, e.at), "level": e.level,
                         "message": e.message, "notify": e.notify, "paged": e.paged, "late_ms": e.late_ms}
                        for e in step.escalations],
        "notifications": [_notification(n, run) for n in step.notifications],
        "round": step.round,
        "rounds": [{"round": r.round, "state": r.state, "actor": r.actor,
                    "actor_text": described(r.actor, r.actor_facts) if r.actor else None, "ready_at": r.ready_at,
                    "finished_at": r.finished_at, "took_s": offset(r.ready_at, r.finished_at), "values": r.values,
                    "note": r.note, "sent_back_by": r.sent_back_by, "sent_back_from": r.sent_back_from,
                    "sent_back_note": r.sent_back_note} for r in step.rounds],
    }


def ladder(run: RunAudit) -> list[dict[str, Any]]:
    """Who was escalated to, when and by what, every step's in the order they came: a rung its timer fired (``by``
    None) or help a person asked for (``by``: who). What a review after a drill or an incident reads first, and
    otherwise finds only among every record."""
    offset = run.sop_seconds
    drill = run.drill_names_people
    rows = [{"seq": e.seq, "at": e.at, "offset_s": offset(run.started_at, e.at), "step": step.id, "level": e.level,
             "stage": level_words(e.level), "by": None, "notify": e.notify, "paged": e.paged,
             "left_out": left.get(e.seq, []), "reached": reached_words(e.paged, drill, left.get(e.seq, [])),
             "late_ms": e.late_ms}
            for step in run.steps.values() for left in [_left_out(step) if drill else {}] for e in step.escalations]
    rows += [{"seq": h.seq, "at": h.at, "offset_s": offset(run.started_at, h.at), "step": step.id, "level": h.level,
              "stage": f"help asked ({level_words(h.level) or 'the lead'})", "by": h.actor_text, "notify": [],
              "paged": [], "left_out": [], "reached": "", "late_ms": None}
             for step in run.steps.values() for h in step.help]
    return sorted(rows, key=lambda r: r["seq"])


def _left_out(step: StepAudit) -> dict[int, list[str]]:
    """Whom each fired level's page was not sent to (by the level's record number): a drill naming its people records
    them on the page, not on the level. Each level is paired with the step's next page of its kind (``reminder``,
    ``escalated``; "Need help" pages as ``escalated``), each page with one level."""
    pages, used, out = sorted(step.notifications, key=lambda n: n.seq), set(), {}
    for level in sorted(step.escalations, key=lambda e: e.seq):
        page = next((n for n in pages if n.seq > level.seq and n.seq not in used and n.kind in (level.message,
                                                                                                 "escalated")), None)
        if page is not None:
            used.add(page.seq)
            out[level.seq] = [to for to, _why in page.not_sent]
    return out


#: what a fired level reached, when its record names nobody: it was written before records named anyone (2026-12) ...
NOT_RECORDED = "not recorded (written before 2026-12, when escalations did not name whom they reached)"
#: ... or it names nobody: in a drill that names who takes part, none of its people did; else no person answered
NONE_IN_DRILL = "nobody: none of them takes part in the drill"
NOBODY = "nobody: no person answered for them"


def reached_words(paged: list[str] | None, drill_names_people: bool, left_out: list[str] | None = None) -> str:
    """Whom a fired level reached, in words: the people its record names, else why none (never the same words for a
    record that says nobody was reached and one that does not say); in a drill, who its page left out:
    ``chen-jie (not in the drill: sara-lopez)``, ``nobody: none of them takes part in the drill (sara-lopez)``."""
    if paged is None:
        return NOT_RECORDED
    left = f" ({', '.join(left_out)})" if left_out else ""
    if paged:
        return ", ".join(paged) + (f" (not in the drill: {', '.join(left_out)})" if left_out else "")
    return (NONE_IN_DRILL + left) if drill_names_people else NOBODY


def ladder_line(row: dict[str, Any]) -> str:
    """One row of :func:`ladder` in words: ``+15m assess escalation stage 2 → lead, backup: chen-jie, sara-lopez``."""
    to = ", ".join(row["notify"])
    reached = row["reached"]
    by = f" by {row['by']}" if row["by"] else ""
    return (f"+{format_duration(timedelta(seconds=row['offset_s'] or 0))} {row['step']} {row['stage']}{by}"
            + (f" → {to}: {reached}" if to else ""))


def document(run: RunAudit, now: datetime) -> dict[str, Any]:
    """Everything about the run: trigger payload, steps, deadlines, notifications, records, SOP text."""
    forms = _forms(run)
    return {
        "run": run.id, "sop": run.sop_id, "title": run.title, "class": run.sop_class, "version": run.version,
        "sop_hash": run.sop_hash, "sop_text_ok": run.sop_text_ok,
        "trigger": run.trigger, "trigger_text": run.trigger_text(), "initiator": run.initiator,
        "initiator_text": run.initiator_text, "inputs": run.inputs,
        "dedup_key": run.dedup_key, "repeats": run.repeats, "speed": run.speed,
        "started_at": run.started_at, "deadline_at": run.deadline_at, "deadline_s": run.sop_deadline_seconds,
        "ended_at": run.ended_at, "status": run.status, "outcome": run.outcome_text, "ended_by": run.ended_by,
        "ended_by_text": run.ended_by_text,
        "deadline": run.deadline(now), "overdue_at": run.overdue_at,
        "first_asked_at": run.first_assigned_at, "time_to_acknowledge_s": run.time_to_acknowledge,
        "acknowledged": _acknowledged(run),
        "time_to_complete_s": run.time_to_complete,
        "escalations": run.escalations,
        "ladder": ladder(run),
        "parent_run": run.parent_run, "window_ends_at": run.window_ends_at,
        "follow_up_verdict": follow_up_verdict(run, now),
        "follow_ups": [{"seq": f.seq, "at": f.at, "sop": f.sop, "state": f.state, "run": f.run, "reason": f.reason,
                        "window_ends_at": f.window_ends_at} for f in run.follow_ups],
        "cadence": {"asked": run.status_asked, "missed": run.status_missed,
                   "updates": [{"seq": u.seq, "at": u.at, "offset_s": run.sop_seconds(run.started_at, u.at),
                                "actor": u.actor, "actor_text": u.actor_text, "text": u.text}
                               for u in run.status_updates],
                   "snoozes": [{"seq": z.seq, "at": z.at, "actor": z.actor, "actor_text": z.actor_text,
                                "reason": z.text} for z in run.snoozes]},
        "notifications": [_notification(n, run) for n in run.notifications],
        "steps": [_step(step, run, now) for step in run.steps.values()],
        "timeline": [_entry(e, run, forms) for e in run.entries],
        "sop_text": run.sop_text,
    }


def _acknowledged(run: RunAudit) -> dict[str, Any] | None:
    """Who answered first, on which step, how and in which record: where the time to acknowledge ends."""
    answer = run.acknowledged
    if answer is None:
        return None
    return {"seq": answer.seq, "at": answer.at, "step": answer.step, "actor": answer.actor,
            "actor_text": answer.actor_text, "how": answer.how}


def acknowledged_text(doc: dict[str, Any]) -> str:
    """The time to acknowledge in words, with who ended it: ``19m4s after the first ask, by wang-fang (link):
    assess done (#4155)``; else why there is none."""
    answer = doc.get("acknowledged")
    if answer is None:
        return "none: nobody was asked" if doc.get("first_asked_at") is None else "none: nobody answered yet"
    took = format_duration(timedelta(seconds=doc["time_to_acknowledge_s"] or 0))
    return f"{took} after the first ask, by {answer['actor_text']}: {answer['step']} {answer['how']} (#{answer['seq']})"


def _on_call_text(data: dict[str, Any]) -> str:
    """Who the roles of an escalation meant when it fired: `` (held by zhao-lei; sre-oncall: kenji-sato by
    rotation)``; empty for fixed roles and unclaimed steps (the config says)."""
    parts = [f"held by {data['holder']}"] if data.get("holder") else []
    for role, answer in sorted((data.get("on_call") or {}).items()):
        if isinstance(answer, dict):
            parts.append(f"{role}: {answer.get('primary')} by {answer.get('source')}")
    return f" ({'; '.join(parts)})" if parts else ""
