"""Follow-ups: the runs a run's end starts (an SOP's ``follow_ups``), in the transaction that ends it.

When a change finishes or cancels a run (``RunChange.finish`` / ``cancel`` note it in the
transaction's ``ended``), :meth:`FollowUpStarts.start_follow_ups` runs before that transaction
commits (``Engine.transaction``) and decides each follow-up of the run's pinned SOP:

- **when**: without ``when``, every end but a cancel starts it; with one, the expression decides
  over the ended run (``run.outcome`` done | rejected | failed | cancelled, ``run.finished_at``,
  ``run.deadline_met``, its inputs, steps and trigger). False: ``follow_up_skipped``.
- **drills**: a drill's follow-ups are not started (``follow_up_skipped``, reason drill): a drill
  plays its own run's people only, so a follow-up would page people for an incident that did
  not happen and wait on them for days. The record says what would have started and by when.
- **start**: through the engine's start path in the same transaction (:meth:`Engine.open_run_in`):
  the SOP's dedup key (an open run with it is attached to, not doubled), the owner paged, the
  first steps assigned, the flow run launched once it commits. The run's speed is its parent's;
  its initiator is ``run:<parent id>`` (the system, for the run whose end started it) and its
  trigger ``{kind: follow_up, run, sop, outcome, follow_up, within, window_ends_at}``; its
  deadline is the window's end (``within`` from the parent's end), or its SOP's own when sooner.
  Recorded on the parent as ``follow_up_started`` with the run it started or attached to.
- **refused** (``follow_up_refused``, logged): inputs that do not render or fit, an SOP the
  library no longer has, an SOP already on the run's chain (a loop ``sop validate`` refuses; a
  pinned text older than the library could still make one). The parent's end stands.

Exactly once: the end and its follow-ups commit together (a run ends once: a closed run is
never finished or cancelled again), and each follow-up is fenced by (parent run, index) —
looked up first, and unique in ``runs`` (``uq_runs_follow_up``) so the database refuses a second.
"""

from __future__ import annotations

import logging
from typing import Any

from flows.clock import scaled
from flows.engine.change import Ended, Transaction
from flows.engine.inputs import InputRefused, check_inputs
from flows.engine.view import variables
from flows.language.durations import format_duration
from flows.language.expressions import evaluate, render_value
from flows.language.followups import starts_on
from flows.language.presentation import CONDITION_NOT_MET
from flows.language.spec import FollowUp
from flows.ledger.vocabulary import RecordKind
from flows.logfmt import kv

log = logging.getLogger("sop.engine")

#: how long a chain of follow-ups may grow at run time (``sop validate`` refuses loops; this bounds the rest)
MAX_CHAIN = 20


def initiator_of(parent_id: str) -> str:
    """The initiator a follow-up run is recorded with: the run whose end started it."""
    return f"run:{parent_id}"


class FollowUpStarts:
    """The engine's side of follow-ups (mixed into :class:`~flows.engine.transitions.Engine`)."""

    # mixed into the Engine: ``self`` has its library, site, _dedup_key and open_run_in
    def start_follow_ups(self: Any, t: Transaction) -> list[str]:
        """Start the follow-ups of every run ``t`` ended (and of those they end at once), inside ``t``.

        Returns the ids of the runs started that wait for a flow run (launched once ``t`` commits).
        """
        launches: list[str] = []
        while t.ended:
            ended = t.ended.pop(0)
            for index, follow_up in enumerate(ended.view.sop.follow_ups):
                started = self._follow_up(t, ended, index, follow_up)
                if started is not None:
                    launches.append(started)
        return launches

    def _follow_up(self: Any, t: Transaction, ended: Ended, index: int, follow_up: FollowUp) -> str | None:
        parent = ended.view
        store = t.store
        fence = str(index)
        already = store.follow_up_run(parent.id, fence)
        if already is not None:  # its end was already followed up: never twice
            log.info(kv("event=follow_up_fenced", run=parent.id, follow_up=fence, started=already))
            return None
        window_ends_at = ended.at + scaled(follow_up.within, parent.speed)
        what = {"sop": follow_up.start, "follow_up": index, "outcome": ended.outcome,
                "within": format_duration(follow_up.within), "window_ends_at": window_ends_at}

        def skipped(reason: str, **facts: Any) -> None:
            store.record(RecordKind.FOLLOW_UP_SKIPPED, parent.id, reason=reason, **facts, **what)
            log.info(kv("event=follow_up_skipped", run=parent.id, sop=follow_up.start, reason=reason))

        def refused(reason: str) -> None:
            store.record(RecordKind.FOLLOW_UP_REFUSED, parent.id, reason=reason, **what)
            log.warning(kv("event=follow_up_refused", run=parent.id, sop=follow_up.start, reason=reason[:300]))

        if parent.is_drill:
            # no parentheses: pages and the run page show a reason in them ("skipped (…)")
            skipped(f"not started in a drill; a live run's end starts it, to be done within {what['within']}")
            return None
        context = variables(parent, self.site)
        context["run"].update(outcome=ended.outcome, finished_at=ended.at, deadline_met=ended.deadline_met)
        go = starts_on(follow_up, ended.outcome)
        if go is None:
            try:
                go = bool(evaluate(follow_up.when or "", context))
            except Exception as exc:  # noqa: BLE001 - a run-time template error is the follow-up's, not the end's
                refused(f"`when` could not be evaluated: {exc}")
                return None
        if not go:
            if follow_up.when:
                skipped(CONDITION_NOT_MET, when=follow_up.when)
            else:
                skipped("the run was cancelled")
            return None
        if follow_up.start not in self.library.sops:
            refused(f"unknown SOP `{follow_up.start}` (not in the library any more)")
            return None
        chain = store.lineage(parent.id, MAX_CHAIN)
        if follow_up.start in chain or len(chain) >= MAX_CHAIN:
            refused(f"`{follow_up.start}` is already on this run's chain ({' ← '.join(chain)}): a loop")
            return None
        loaded = self.library.get(follow_up.start)
        try:
            raw = {name: render_value(value, context) for name, value in follow_up.inputs.items()}
            inputs = check_inputs(loaded.sop, raw, rendered=True)
        except InputRefused as exc:
            refused("the inputs do not fit: " + "; ".join(exc.problems))
            return None
        except Exception as exc:  # noqa: BLE001 - a template that fails on this run's values
            refused(f"the inputs could not be rendered: {exc}")
            return None
        # what the follow-up's run says started it (its trigger): the parent run, its SOP, its end, the window
        started = {"kind": "follow_up", "run": parent.id, "parent_sop": parent.sop.id,
                   **{k: v for k, v in what.items() if k != "sop"}}
        key = self._dedup_key(loaded.sop, inputs, started)
        result, plan, view = self.open_run_in(t, loaded, inputs, key, initiator_of(parent.id), started, parent.speed,
                                              None, parent=(parent.id, fence), window_ends_at=window_ends_at)
        deadline_at = view.run["deadline_at"] if view is not None else None
        store.record(RecordKind.FOLLOW_UP_STARTED, parent.id, run=result.run_id, attached=result.attached,
                     deadline_at=deadline_at, **what)
        log.info(kv("event=follow_up_started", run=parent.id, sop=follow_up.start, follow_up_run=result.run_id,
                    attached=result.attached, window_ends_at=window_ends_at.isoformat()))
        return None if result.attached or plan.finished else result.run_id


__all__ = ["MAX_CHAIN", "FollowUpStarts", "initiator_of"]
