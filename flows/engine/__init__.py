"""The engine: the state machine of a run, kept in the ledger.

Owns the transitions of runs and steps (``transitions``), the dedup keys that make two starts one run
(``dedup``), reading a run back (``view``),
durable timers and their firing (``timers``), pages decided by a transition (``paging``,
written to the ``outbox`` in the same transaction and delivered after it commits), the run
board (``board``), silences (``silences``: who silenced which triggers, why, until when; the
intake's silence stage reads them) and building an engine for a site (``build``).

May import: ``flows.language``, ``flows.ledger``, ``flows.clock`` and ``notifications``.
Never the Prefect adapter, the triggers, the API, the audit, the runtime or the CLI: the
engine asks for a flow run through the launcher it is given, whatever that is.
"""
