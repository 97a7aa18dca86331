"""The intake pipeline: parsed signals → route → inputs → dedup → start (see ``flows.triggers``).

Authentication and parsing happen at the HTTP edge (``flows.api``); what reaches
:class:`Intake` is already a list of :class:`Alert`, an :class:`Event` or samples. Each
stage is a small method, and what became of each signal (a :class:`Disposition`) is
returned and logged (one key=value line).

Routing comes before dedup because the dedup key is the *SOP's* template (over the inputs
a trigger renders), as Alertmanager dedups per receiver after routing. The dedup decision
itself is the database's: :meth:`Engine.start` opens a run under a unique ``open_key`` or
attaches to the one that holds it (counting the repeat in the run's ledger), so two API
processes receiving the same alert start one run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import TemplateError, UndefinedError

from flows.engine.silences import Silence
from flows.engine.transitions import Engine, InputRefused
from flows.language.config import expand_env
from flows.language.expressions import analyse, render_value
from flows.ledger.vocabulary import RecordKind
from flows.logfmt import kv
from flows.triggers import rules
from flows.triggers.match import matches
from flows.triggers.metrics import SampleStore, check_dates
from flows.triggers.model import Alert, Disposition, Event, Sample
from flows.triggers.refusal import RefusalStage
from flows.triggers.route import Match, Router
from flows.triggers.silence import SilenceStage, labels_of

log = logging.getLogger("sop.intake")


class InputsUnrenderable(ValueError):
    """A trigger's ``inputs`` templates could not be rendered from the signal (a label is missing…)."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def render_inputs(trigger: Any, payload: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The run inputs a trigger gives: its ``inputs`` templates rendered over {trigger, config}."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    for name, template in trigger.inputs.items():
        try:
            out[name] = render_value(template, {"trigger": payload, "config": config})
        except TemplateError as exc:
            kind = payload.get("kind", "signal")
            why = (_absent(template, payload) if isinstance(exc, UndefinedError) else None) or str(exc)
            problems.append(f"input `{name}`: {template!r} cannot be rendered from the {kind}: {why}")
    if problems:
        raise InputsUnrenderable(problems)
    return out


#: what a part of the trigger is called where it lacks a key (``trigger.labels.brand``: "no label `brand`")
_PARTS = {"labels": "label", "annotations": "annotation", "values": "value"}


def _absent(template: Any, payload: dict[str, Any]) -> str | None:
    """What the signal lacks that ``template`` reads, in the words of the alert (``the alert has no label `brand`
    (its labels: alertname, shop)``), with how to mend it; None when that is not why it failed."""
    if not isinstance(template, str):
        return None
    for path in analyse(template):
        node: Any = payload if path[0] == "trigger" else None
        for depth, key in enumerate(path[1:], start=1):
            if not isinstance(node, Mapping):
                break
            if key not in node:
                part = _PARTS.get(path[depth - 1], "field") if depth > 1 else "field"
                holds = ", ".join(sorted(map(str, node))[:20]) or "none"
                kind = payload.get("kind", "signal")
                return (f"the {kind} has no {part} `{key}` (its {part}s: {holds}): set it where the {kind} is made, "
                        f"or write `{{{{ {'.'.join(path)} | default('…') }}}}` in the trigger's inputs")
            node = node[key]
    return None


def given(inputs: dict[str, Any], declared: Mapping[str, Any]) -> dict[str, Any]:
    """A trigger's rendered inputs as given to the run: one that rendered empty for an input that is not text (an
    annotation the signal lacks, ``{{ … | default('') }}``) is not given, as a start by hand leaves it out: its
    default applies, or it is none, and a required one is refused as missing. Empty text stays text: a string input
    rendered empty is still the signal's word."""
    return {name: value for name, value in inputs.items()
            if not (value == "" and name in declared and declared[name].type != "string")}


def _number(value: float) -> float | int:
    """140.0 → 140, so ``{{ trigger.value }}`` renders as an integer input would be typed."""
    return int(value) if float(value).is_integer() else value


def fold_copies(alerts: list[Alert]) -> list[tuple[Alert, int]]:
    """Each alert once, in the order first sent, with how many times the payload holds it (same status
    and fingerprint): 10,000 copies of one alert are one signal, not 10,000 records."""
    counts: dict[tuple[str, str], int] = {}
    first: dict[tuple[str, str], Alert] = {}
    for alert in alerts:
        key = (alert.status, alert.fingerprint)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, alert)
    return [(first[key], count) for key, count in counts.items()]


class Intake:
    """Turns signals into runs through one engine. ``launch(run_id)`` creates a new run's flow run."""

    def __init__(
        self,
        engine: Engine,
        *,
        router: Router | None = None,
        store: SampleStore | None = None,
        launch: Callable[[str], None] | None = None,
    ):
        self.engine = engine
        self.router = router or Router(engine.library)
        self.store = store or SampleStore(engine.ledger)
        self.silences = SilenceStage(engine.ledger)
        self.refusals = RefusalStage(engine)
        self.launch = launch
        self.config = {k: expand_env(v) if isinstance(v, str) else v for k, v in engine.site.vars.items()}

    # --- alerts -----------------------------------------------------------------------------

    def alerts(self, alerts: list[Alert], actor: str) -> list[Disposition]:
        """Route each alert; start or attach a run for a firing one, record a resolved one on its run.

        Copies of one alert in one payload (same status and fingerprint) are taken once: a run
        started or attached once, its repeats counted in one ``trigger_repeated`` record (``copies``).
        """
        dispositions: list[Disposition] = []
        holding = self.silences.holding()
        for alert, copies in fold_copies(alerts):
            found = self.router.route_alert(alert)
            if not found:
                unrouted = Disposition("unrouted", subject=alert.fingerprint, copies=copies,
                                       problems=self.router.near_misses(alert))
                dispositions.append(self._log(unrouted, alert.source))
                continue
            payload = alert.payload()
            resolved = alert.status == "resolved"
            silence = None if resolved else self.silences.find(holding, labels_of(alert))
            for match in found:
                if silence is not None:
                    disposition = self.silences.record(silence, match, payload, actor, subject=alert.fingerprint,
                                                       copies=copies)
                else:
                    disposition = self.start_or_resolve(
                        match, payload, actor, resolved=resolved, subject=alert.fingerprint, copies=copies
                    )
                dispositions.append(self._log(disposition, alert.source))
        return dispositions

    # --- events -----------------------------------------------------------------------------

    def event(self, event: Event, actor: str) -> list[Disposition]:
        """Route an event; start or attach a run for each SOP that listens for it."""
        found = self.router.route_event(event)
        if not found:
            return [self._log(Disposition("unrouted", subject=event.name), "event")]
        payload = event.payload()
        subject = event.key or event.name
        silence = self.silences.find(self.silences.holding(), labels_of(event))
        if silence is not None:
            return [self._log(self.silences.record(silence, m, payload, actor, subject=subject), "event") for m in found]
        return [self._log(self.start_or_resolve(m, payload, actor, subject=subject), "event") for m in found]

    # --- metrics ----------------------------------------------------------------------------

    def samples(self, samples: list[Sample], actor: str) -> list[Disposition]:
        """Store samples, then judge every rule on the series they touched; a firing starts (or attaches) a run.

        A batch holding a sample dated beyond the clock skew allowed is refused whole (:class:`SignalRefused`).
        """
        check_dates(samples, self.engine.clock.now())
        self.store.add(samples)
        series = {(s.metric, s.series): s.labels for s in samples}
        dispositions: list[Disposition] = []
        holding = self.silences.holding()
        for (metric, key), labels in series.items():
            silence = self.silences.find(holding, labels_of((metric, labels)))
            for match in self.router.rules_for(metric):
                if matches(match.trigger.labels, labels):
                    disposition = self.judge(match, metric, key, labels, actor, silence=silence)
                    if disposition is not None:
                        dispositions.append(self._log(disposition, "metric"))
        return dispositions

    def judge(self, match: Match, metric: str, series: str, labels: dict[str, str], actor: str, *,
              silence: Silence | None = None) -> Disposition | None:
        """Evaluate one rule on one series; fire at most once per period (fenced in the database).

        A firing that ``silence`` holds is recorded (``trigger_silenced``) and does not use up the
        period: once the silence stops, the next sample of the period may still fire the rule.
        """
        rule = match.trigger
        newest = self.store.newest(metric, series)
        if newest is None:
            return None
        calendar = rules.Calendar(rule.period, self.engine.site.settings.timezone) if rule.period else None
        span = rules.window(rule, calendar, newest)
        points = (
            self.store.between(metric, series, *span)
            if span
            else self.store.last(metric, series, rules.samples_needed(rule))
        )
        verdict = rules.evaluate(rule, points, calendar, newest)
        if verdict is None or not verdict.fired:
            return None
        if silence is None:
            firing = self.store.claim(match.sop_id, match.index, series, verdict.period_start, verdict.value)
            if firing is None:
                return None  # this rule already fired for this series and period
        payload = {
            "kind": "metric",
            "metric": metric,
            "labels": dict(labels),
            "value": _number(verdict.value),
            "condition": verdict.condition,
            "period": rule.period or "sample",
            "period_start": verdict.period_start.isoformat(),
            "aggregate": rule.aggregate,
            "values": [_number(v) for v in verdict.values],
        }
        if verdict.previous is not None:
            payload["previous"] = _number(verdict.previous)
        subject = f"{metric}{labels or ''}"
        if silence is not None:
            return self.silences.record(silence, match, payload, actor, subject=subject)
        disposition = self.start_or_resolve(match, payload, actor, subject=subject)
        self.store.settle(firing, disposition.status, disposition.run)
        return disposition

    # --- the shared tail: inputs → dedup → start --------------------------------------------

    def start_or_resolve(
        self,
        match: Match,
        payload: dict[str, Any],
        actor: str,
        *,
        resolved: bool = False,
        subject: str | None = None,
        copies: int = 1,
    ) -> Disposition:
        """Render the trigger's inputs, then start / attach a run (firing) or note it on the open run (resolved).

        A refusal (inputs that cannot be rendered or do not fit the SOP) is a disposition too, with its problems;
        a firing one is recorded and its owner paged (:class:`RefusalStage`), a resolved one only logged.
        ``copies``: how many times the payload held this signal.
        """
        base = Disposition("refused", sop=match.sop_id, trigger=match.index, subject=subject, copies=copies)
        try:
            inputs = given(render_inputs(match.trigger, payload, self.config),
                           self.engine.library.get(match.sop_id).sop.inputs)
            if resolved:
                return self.resolve(base, inputs, payload, actor)
            return self.start(base, inputs, payload, actor)
        except (InputsUnrenderable, InputRefused) as exc:
            base.problems = list(exc.problems)
            return base if resolved else self.refusals.record(base, payload, actor)

    def resolve(self, base: Disposition, inputs: dict[str, Any], payload: dict[str, Any], actor: str) -> Disposition:
        """A resolved alert: note it on the open run it belongs to (same SOP, same dedup key)."""
        run_id = self.engine.open_run(base.sop or "", inputs, payload, rendered=True)
        if run_id is None:
            base.status = "no_open_run"
            return base
        self.engine.note(
            run_id,
            None,
            RecordKind.ALERT_RESOLVED,
            actor=actor,
            fingerprint=payload.get("fingerprint"),
            labels=payload.get("labels"),
            ends_at=payload.get("ends_at"),
            source=payload.get("source"),
            **({"copies": base.copies} if base.copies > 1 else {}),
        )
        base.status, base.run = "resolved", run_id
        return base

    def start(self, base: Disposition, inputs: dict[str, Any], payload: dict[str, Any], actor: str) -> Disposition:
        """Start a run, or attach to the open one with the same dedup key (the database decides)."""
        result = self.engine.start(
            base.sop or "", inputs, initiator=actor, trigger=payload, launch=False, copies=base.copies, rendered=True
        )
        base.run, base.repeats = result.run_id, result.repeats
        base.status = "attached" if result.attached else "started"
        if not result.attached and self.launch is not None:
            launch, run_id = self.launch, result.run_id
            self.engine.ledger.after_commit(lambda: launch(run_id))  # a launch must find the run committed
        return base

    @staticmethod
    def _log(disposition: Disposition, source: str) -> Disposition:
        fields = {
            "source": source,
            "outcome": disposition.status,
            "sop": disposition.sop or "-",
            "run": disposition.run or "-",
            "subject": disposition.subject or "-",
            "copies": disposition.copies if disposition.copies > 1 else None,
            "silence": disposition.silence,
            "owner_paged": disposition.paged,
            "problems": "; ".join(disposition.problems)[:500] or None,  # a refusal's, or an unrouted alert's near misses
        }
        if disposition.status == "refused":
            log.warning(kv("event=trigger", **fields))
        else:
            log.info(kv("event=trigger", **fields))
        return disposition
