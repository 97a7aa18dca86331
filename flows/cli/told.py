"""What a command at a terminal says of a warning logged while it acted (a Prefect that did not answer, a follow-up
refused): one plain sentence per event, what happened, what it means and what to do if anything. The log line itself
(``event=… key=value``, for a service's log) goes to ``var/log/cli.log``, never to the person's terminal."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from flows.logfmt import fields

#: the log file of commands run at a terminal, under the project's folder
CLI_LOG = Path("var") / "log" / "cli.log"

#: Prefect not answering a resume: said as well when a resume is still under way as the command ends
PREFECT_AWAY = "note: Prefect did not answer{why}; the run goes on once it does (`sop serve` moves it on: nothing to do)"

#: event → the sentence a person reads, filled from the log line's fields (``{why}``: `` (the error)``, or nothing)
SENTENCES = {
    "resume_failed": PREFECT_AWAY,
    "nudge_failed": PREFECT_AWAY,
    "cancel_failed": "note: the run is cancelled; Prefect did not answer{why}, so its flow run there ends once "
                     "`sop serve` runs (nothing to do)",
    "launch_failed": "note: the run is recorded and its people are paged; Prefect did not answer{why}, so its "
                     "automated steps start once `sop serve` reaches it (nothing to do)",
    "follow_up_refused": "warning: the follow-up `{sop}` was not started: {reason} (recorded on run {run}; start "
                         "it by hand with `sop run {sop}` if it is still needed)",
}


def sentence(record: logging.LogRecord, log: Path) -> str:
    """One held log record in words: its event's sentence, else its event named plainly with where the details are."""
    said = fields(record.getMessage())
    event = said.get("event", "")
    why = f" ({said['error']})" if said.get("error") else ""
    template = SENTENCES.get(event)
    if template is not None:
        try:
            return template.format(why=why, **{k: v for k, v in said.items() if k != "why"})
        except KeyError:  # a line without a field its sentence names: said plainly below
            pass
    words = event.replace("_", " ") or record.getMessage()
    return f"{record.levelname.lower()}: {words}{why}; the details are in {log}"


def keep(records: list[logging.LogRecord], root: Path) -> Path:
    """Append the records to the project's ``var/log/cli.log`` as the services log theirs (time, level, logger,
    the key=value line); the path, to point to. Best effort: a folder we may not write leaves the terminal's
    sentence as all there is."""
    path = root / CLI_LOG
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            for record in records:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
                out.write(f"{stamp} {record.levelname} {record.name} {record.getMessage()}\n")
    except OSError:
        pass
    return path


def in_words(records: list[logging.LogRecord], root: Path, *, resume_pending: bool) -> list[str]:
    """What the terminal reads of the held ``records``, each sentence once (the records kept in the log first);
    ``resume_pending``: a resume was still under way as the command ended, said as Prefect not answering."""
    log = keep(records, root) if records else root / CLI_LOG
    said = dict.fromkeys(sentence(record, log) for record in records)
    if resume_pending and not any(line.startswith(PREFECT_AWAY.partition("{")[0]) for line in said):
        said[PREFECT_AWAY.format(why="")] = None
    return list(said)
