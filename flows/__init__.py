"""SOPs as code. One folder per layer; each folder's ``__init__`` says what it owns and may import.

From the top down (a layer imports only the layers below it; ``.importlinter`` holds the
contract and ``make test`` checks it):

    flows.cli        the ``sop`` command
    flows.runtime    process wiring: the embedded stack, the API process, drills, SIGTERM
    flows.api        the HTTP API (FastAPI): people, monitoring, the audit desk
    flows.audit      read-only: reports, timelines and chain verification from the records
    flows.prefect    the Prefect adapter: deployments, the flow body, the launcher
    flows.triggers   monitoring's signals turned into runs (parse, route, dedup, start)
    flows.engine     the run state machine over the ledger: transitions, timers, pages
    notifications    messages (Jinja2) and their delivery (Apprise); knows no engine
    flows.ledger     the hash-chained records and their projections (SQLAlchemy)
    flows.language   what an SOP says, validated; imports no runtime package
    flows.clock      time, injected (wall clock, compressed, manual)
    flows.logfmt     key=value log lines with every value escaped (imports nothing; any layer uses it)

See docs/architecture.md for the path of a trigger, a report and a timer through them.
"""
