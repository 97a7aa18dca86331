"""How ``sop audit show`` tells one run's story on a terminal: its trigger and people, its deadlines, its
escalations, every record of its timeline (each one that does not check out marked), and its SOP text.

The tables and verdicts of the other commands are in :mod:`flows.cli.audit_views`; ``--json`` never comes here.
"""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from rich.table import Table

from flows.audit.timeline import acknowledged_text, ladder_line
from flows.cli.audit_views import UTC_TIMES, Times, dur, styled_verdict
from flows.cli.common import console
from flows.language.presentation import skip_reason


def _deliveries(items: list[dict[str, Any]]) -> list[str]:
    out = []
    for d in items:
        status = "[green]ok[/]" if d["ok"] else f"[red]failed[/] {escape(d.get('error') or '')}"
        out.append(f"      → {escape(d['recipient'])} {escape(d['destination'])} {status}"
                   f" ({d.get('attempts')} attempt(s))")
    return out


def _entry_details(entry: dict[str, Any]) -> list[str]:
    data, kind = entry["data"], entry["kind"]
    if kind == "notification":
        rows = [{"recipient": r.get("recipient", "?"), "destination": r.get("destination", "?"), "ok": r.get("ok"),
                 "error": r.get("error"), "attempts": r.get("attempts")} for r in data.get("results") or []]
        return _deliveries(rows) + [f"      → {escape(person)} kept for their digest" for person in data.get("kept") or []] \
            + [f"      → {escape(str(n.get('to')))} not sent: {escape(str(n.get('why')))}" for n in data.get("not_sent") or []]
    out = []
    if kind in ("step_done", "step_rejected"):
        result = data.get("result") or {}
        evidence, approvers = result.get("evidence"), result.get("approvers")
        if entry.get("values_text"):
            out.append("      values: " + escape(entry["values_text"]))
        if evidence:
            out.append("      evidence: " + escape(", ".join(evidence)))
        if approvers:
            out.append("      approvers: " + escape(", ".join(approvers)))
    if data.get("note"):
        out.append(f"      note: {escape(str(data['note']))}")
    if data.get("token"):  # which API token it came with (its person and how it came are on the line above)
        out.append(f"      token: {escape(str(data['token']))}")
    if kind in ("step_failed", "step_timed_out") and data.get("reason"):
        out.append(f"      reason: {escape(str(data['reason']))}")
    if kind in ("step_skipped", "follow_up_skipped") and (condition := skip_reason(data)[1]):
        out.append(f"      condition: {escape(condition)}")
    return out


def print_document(doc: dict[str, Any], times: Times = UTC_TIMES, unsound: dict[int, str] | None = None) -> None:
    """The terminal rendering of ``sop audit show``; each record that does not check out (``unsound``:
    :attr:`flows.audit.verification.Verification.unsound`) marked where it is told."""
    text_state = {True: "text verified", False: "[red]TEXT DOES NOT MATCH ITS HASH[/]", None: "[red]text missing[/]"}
    console.print(f"[bold]run {doc['run']}[/] — {doc['sop']} v{doc['version']} ({doc['sop_hash'][:12]}…, "
                  f"{text_state[doc['sop_text_ok']]}) · {doc['class']}")
    console.print(f"  {escape(doc['title'])}")
    console.print(f"trigger: {escape(doc['trigger_text'])}")
    console.print(f"  payload: {escape(json.dumps(doc['trigger'], ensure_ascii=False, default=str))}")
    console.print(f"inputs: {escape(json.dumps(doc['inputs'], ensure_ascii=False, default=str))}")
    console.print(f"started {times.full(doc['started_at'])}"
                  + (f" by {escape(doc['initiator_text'])}" if doc["initiator_text"] else "")
                  + f" · speed ×{doc['speed']:g}"
                  + (f" · repeats attached: {doc['repeats']}" if doc["repeats"] else ""))
    console.print(("not ended" if doc["ended_at"] is None else f"ended {times.full(doc['ended_at'])}")
                  + f" · {escape(doc['outcome'])}"
                  + (f" by {escape(doc['ended_by_text'])}" if doc["ended_by_text"] else "")
                  + f" · time to acknowledge {dur(doc['time_to_acknowledge_s'])}"
                  + f" · time to complete {dur(doc['time_to_complete_s'])} · {doc['escalations']} escalation(s)")
    console.print(f"acknowledged: {escape(acknowledged_text(doc))}", soft_wrap=True)
    if doc.get("parent_run"):
        verdict = (doc.get("follow_up_verdict") or "").replace("_", " ")
        console.print(f"follow-up of run {doc['parent_run']} ({escape(str((doc['trigger'] or {}).get('parent_sop')))}): "
                      f"window ends {times.full(doc['window_ends_at'])} · {styled_verdict(verdict)}")
    for link in doc.get("follow_ups", []):
        target = f" → run {link['run']}" if link["run"] else ""
        why = f": {escape(link['reason'])}" if link["reason"] else ""
        window = f", window ends {times.full(link['window_ends_at'])}" if link["state"] in ("started", "attached") else ""
        console.print(f"follow-up {link['sop']} {link['state']}{target}{window}{why}")
        if link.get("condition"):
            console.print(f"      condition: {escape(link['condition'])}")
    deadlines = Table(title="Deadlines (SOP time)", title_justify="left", show_edge=False)
    for column in ("what", "ready", "due after", "ended", "by", "verdict"):
        deadlines.add_column(column)
    deadlines.add_row("[bold]run[/]", "+0s", dur(doc["deadline_s"]),
                      "—" if doc["ended_at"] is None else "+" + dur((doc["ended_at"] - doc["started_at"]).total_seconds() * doc["speed"]),
                      escape(doc["ended_by_text"] or ""), styled_verdict(doc["deadline"]))
    for step in doc["steps"]:
        for earlier in step.get("rounds", []):  # a rejection sent it back: each earlier round on a line of its own
            deadlines.add_row(f"{step['id']}: round {earlier['round']}", "", "",
                              f"{earlier['state']}, sent back from {escape(earlier['sent_back_from'] or '?')}",
                              escape(earlier["actor_text"] or ""), "")
        ended = "—" if step["took_s"] is None else f"+{dur((step['ready_offset_s'] or 0) + step['took_s'])}"
        name = f"{step['id']}: round {step['round']}" if step.get("round", 1) > 1 else step["id"]
        deadlines.add_row(f"{name} ({step['kind']}, {escape(step['assignee'] or 'automated')})",
                          "—" if step["ready_offset_s"] is None else f"+{dur(step['ready_offset_s'])}",
                          dur(step["due_s"]), f"{ended} {step['state']}", escape(step["actor_text"] or ""),
                          styled_verdict(step["deadline"]))
    console.print(deadlines)
    if doc["ladder"]:  # who was escalated to, when: what a review reads first
        console.print("[bold]Escalations[/] (SOP time from the start; → the ladder's targets: who they reached; "
                      f"then when, {times.said(doc['started_at'])}, and the record)")
        for row in doc["ladder"]:
            console.print(f"  {escape(ladder_line(row))} [dim]· {times.at(row['at'])} #{row['seq']}[/]", soft_wrap=True)
    console.print(f"[bold]Timeline[/] (SOP time from the start, then {times.said(doc['started_at'])})")
    for entry in doc["timeline"]:
        where = f"[cyan]{entry['step']}[/] " if entry["step"] else ""
        console.print(f"  +{dur(entry['offset_s']):<9} {times.at(entry['at'])}  #{entry['seq']:<6} {where}{escape(entry['text'])}")
        if entry["seq"] in (unsound or {}):
            console.print(f"      [bold red]✗ this record does not match the chain ({unsound[entry['seq']]}): what it "
                          "says may not be what happened[/]", soft_wrap=True)
        for line in _entry_details(entry):
            console.print(line)
    console.rule(f"SOP text the run used (sha256 {doc['sop_hash']})")
    if doc["sop_text"] is None:
        console.print("[red]the pinned text is missing from the ledger[/]")
    else:
        console.print(escape(doc["sop_text"]), end="", soft_wrap=True)
