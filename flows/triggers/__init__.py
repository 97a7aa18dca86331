"""Trigger intake: what monitoring sends, turned into runs.

Owns the signals and what becomes of them: their shapes (``model``: Alert, Event, Sample,
and the Disposition of each — started, attached, resolved, refused, unrouted), the parsers
of each sender's payload, routing (label matchers, metric rules over the sample store) and
the intake that dedups and starts, attaches or resolves runs.

May import ``flows.engine`` and the layers below it (``notifications``, ``flows.ledger``,
``flows.language``, ``flows.clock``); never ``flows.api``, ``flows.prefect``,
``flows.audit``, ``flows.runtime`` or ``flows.cli``, and no HTTP framework. The HTTP edge
(authenticate, read and verify the body, answer) is ``flows.api.webhooks``, which hands
the parsed signals to this layer.

The stages read like Alertmanager's notify pipeline, one small stage per module:

    parse   alertmanager.py, grafana.py, events.py, metrics.py   payload → Alert / Event / Sample
    route   match.py, route.py     which SOP triggers a signal matches (label matchers)
            rules.py, metrics.py   metric rules over the sample store (metrics.SampleStore)
    silence silence.py             a person's silence holds it: ``trigger_silenced``, no run
    dedup   intake.py              the SOP's dedup key; the database decides (runs.open_key)
    start   intake.py              Engine.start(trigger=…) — or attach, or record a resolution
    refuse  refusal.py             inputs that cannot be made: ``trigger_refused``, no run; the owner paged
            refusal_page.py        (once an hour per SOP, trigger and problem)

``intake.Intake`` composes the stages; each is tested alone under ``tests/triggers/``.
"""
