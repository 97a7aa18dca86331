"""The engine's side of notifications: who is meant, what they read, and the record of delivery.

The engine decides *that* a page goes out (a :class:`flows.engine.Page`); this module
resolves ladder words (assignee, owner, lead, backup) to people, fills the context the
templates read, hands it to the ``notifications`` package, and writes every
per-destination result to the ledger. Delivery runs on a thread pool: a slow or failed
destination never holds up the engine, and never fails a run.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flows.config import Site
from flows.durations import format_duration
from flows.ledger import Ledger
from flows.ledger.schema import deliveries
from flows.runview import RunView
from flows.spec import HumanStep, Sop, StepBase

log = logging.getLogger("sop.paging")


def resolve_targets(targets: list[str], sop: Sop, step: StepBase | None, site: Site) -> list[str]:
    """Ladder words to names the notifications package knows (persons, roles, channels).

    ``assignee`` → the step's assignee; ``owner`` → the SOP's owner role; ``lead`` → the
    assignee role's lead role (the owner when there is none); ``backup`` → the assignee
    role's backup person (its primary when there is none).
    """
    assignee = step.assignee if isinstance(step, HumanStep) else None
    role = site.roles.get(assignee) if assignee else None
    out: list[str] = []
    for target in targets:
        if target == "assignee":
            names = [assignee] if assignee else [sop.owner]
        elif target == "owner":
            names = [sop.owner]
        elif target == "lead":
            names = [role.lead] if role and role.lead else [sop.owner]
        elif target == "backup":
            names = [role.backup or role.primary] if role else ([assignee] if assignee else [])
        else:
            names = [target]
        out.extend(n for n in names if n and n not in out)
    return out


def time_left(due_at: datetime | None, now: datetime, speed: float) -> str | None:
    """``"18m left"`` / ``"12m overdue"`` in SOP time (a compressed run shows playbook minutes)."""
    if due_at is None:
        return None
    delta = (due_at - now) * speed
    return f"{format_duration(delta)} left" if delta.total_seconds() >= 0 else f"{format_duration(-delta)} overdue"


class Pager:
    """Sends the engine's pages and records the results (see the module docstring)."""

    def __init__(self, site: Site, ledger: Ledger, dispatcher: Any = None):
        self.site = site
        self.ledger = ledger
        self._dispatcher = dispatcher

    @property
    def dispatcher(self) -> Any:
        if self._dispatcher is None:
            from notifications import Dispatcher

            self._dispatcher = Dispatcher(workers=8, timeout=5.0, retries=2, backoff=0.5,
                                          inbox_dir=self.site.settings.inbox_dir)
        return self._dispatcher

    def close(self) -> None:
        """Wait for deliveries in flight (a CLI process calls this before it exits)."""
        if self._dispatcher is not None:
            self._dispatcher.close(wait=True)
            self._dispatcher = None

    def send(self, engine: Any, page: Any, view: RunView | None = None) -> Any:
        """Render and deliver one page (about ``view``, read after the transition); returns the delivery future."""
        from notifications import recipients, render_for

        view = view if view is not None else engine.view(page.run_id)
        step = view.sop.step(page.step_id) if page.step_id else None
        names = resolve_targets(page.targets, view.sop, step, self.site)
        people = recipients(names, self.site)
        ctx = self.context(view, page, step, engine.clock.now())
        on_done = lambda results: self.record(page.run_id, page.step_id, page.kind, results)  # noqa: E731
        return self.dispatcher.submit(render_for(page.kind, ctx, site=self.site), people, on_done=on_done)

    def broadcast(self, run_id: str, step_id: str, targets: list[str], title: str, body: str,
                  sop_class: str = "routine") -> list[dict[str, Any]]:
        """A notify step's own message (with its SOP's urgency), delivered now; per-destination results."""
        from notifications import Message, recipients
        from notifications.urgency import notify_type, priority, title_prefix

        people = recipients(targets, self.site)
        level = priority(sop_class)
        message = Message(title=f"{title_prefix(level)} {title}", body=body,
                          notify_type=notify_type(sop_class, "assigned"), priority=level)
        results = self.dispatcher.submit(message, people).result()
        self.record(run_id, step_id, "message", results)
        return [r.to_dict() for r in results]

    def record(self, run_id: str, step_id: str | None, kind: str, results: list[Any]) -> None:
        """One ledger record per page, one ``deliveries`` row per destination tried."""
        rows = [r.to_dict() for r in results]
        try:
            with self.ledger.transaction() as tx:
                for r in results:
                    tx.conn.execute(deliveries.insert().values(
                        run_id=run_id, step_id=step_id, at=r.at, kind=kind, recipient=r.recipient,
                        destination=r.destination, ok=r.ok, error=r.error, attempts=r.attempts,
                        latency_ms=int(r.latency * 1000)))
                tx.append("notification", run_id, step_id, notification=kind, results=rows)
        except Exception:
            log.exception("event=delivery_record_failed run=%s kind=%s", run_id, kind)
        failed = [r for r in results if not r.ok]
        log.info("event=notification run=%s step=%s kind=%s destinations=%d failed=%d", run_id, step_id or "-",
                 kind, len(results), len(failed))

    def context(self, view: RunView, page: Any, step: StepBase | None, now: datetime) -> Any:
        """The notification context of a page (see notifications.message.Context)."""
        from notifications import (
            ApprovalInfo,
            Context,
            FormField,
            LevelInfo,
            RecipientInfo,
            RunInfo,
            SopInfo,
            StepInfo,
            SummaryRow,
        )

        run = view.run
        base = self.site.settings.base_url.rstrip("/")
        status = run["outcome"] if run["status"] == "finished" else run["status"]
        run_info = RunInfo(id=run["id"], url=f"{base}/v1/runs/{run['id']}", started_at=run["started_at"],
                           deadline_at=run["deadline_at"], initiator=run["initiator"], speed=view.speed,
                           status=status, reason=run["outcome"] if run["status"] == "cancelled" else None)
        step_info = None
        if step is not None:
            row = view.steps[step.id]
            form = tuple(FormField.from_spec(n, f) for n, f in getattr(step, "form", {}).items())
            approval = None
            if isinstance(step, HumanStep) and step.approval:
                approval = ApprovalInfo(approvers=tuple(step.approval.approvers), count=step.approval.count,
                                        given=len(view.approvals(step.id)))
            result = view.result(step.id)
            step_info = StepInfo(
                id=step.id, title=step.name, description=step.description,
                assignee=getattr(step, "assignee", None), due_at=row["due_at"],
                time_left=time_left(row["due_at"], now, view.speed), form=form,
                evidence_required=bool(getattr(step, "evidence", False)), approval=approval,
                actor=row["actor"], finished_at=row["finished_at"],
                values={k: v for k, v in result.items() if k in getattr(step, "form", {})})
        level = None
        if page.level:  # how late the *step* is reads from time_left; late_by is left to the templates' default
            level = LevelInfo(key=page.level["key"], message=page.level["message"], late_by=None)
        summary = None
        if page.kind in ("run_finished", "run_overdue"):
            summary = tuple(SummaryRow(id=s.id, title=s.name, state=view.state(s.id), actor=view.steps[s.id]["actor"],
                                       met_deadline=view.steps[s.id]["deadline_met"]) for s in view.sop.steps)
        return Context(kind=page.kind, sop=SopInfo(id=view.sop.id, title=view.sop.title, class_=view.sop.class_),
                       run=run_info, recipient=RecipientInfo(id="-", name="-"), api_base_url=base,
                       step=step_info, level=level, summary=summary)
