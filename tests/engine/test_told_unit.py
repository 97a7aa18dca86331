"""What a terminal reads of the warnings a command logged: sentences in words, the key=value lines in var/log/cli.log."""

from __future__ import annotations

import logging

from flows.cli.told import in_words
from flows.logfmt import kv


def _record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("sop.engine", level, __file__, 1, message, None, None)


def test_each_warning_is_one_sentence_and_its_line_is_kept_in_the_log(tmp_path) -> None:
    held = [_record(kv("event=follow_up_refused", run="3f9a", sop="post-incident-review", reason="its SOP left")),
            _record(kv("event=cancel_failed", run="3f9a", error="timed out", then="the nudger ends it")),
            _record(kv("event=cancel_failed", run="3f9a", error="timed out", then="the nudger ends it")),
            _record("event=digest_claim_lost person=li-wei items=2", logging.ERROR)]
    said = in_words(held, tmp_path, resume_pending=False)
    assert said == [
        "warning: the follow-up `post-incident-review` was not started: its SOP left (recorded on run 3f9a; start it "
        "by hand with `sop run post-incident-review` if it is still needed)",
        "note: the run is cancelled; Prefect did not answer (timed out), so its flow run there ends once `sop serve` "
        "runs (nothing to do)",
        f"error: digest claim lost; the details are in {tmp_path / 'var' / 'log' / 'cli.log'}",
    ]
    assert not any("=" in line for line in said)
    kept = (tmp_path / "var" / "log" / "cli.log").read_text().splitlines()
    assert len(kept) == 4 and kept[1].endswith('WARNING sop.engine event=cancel_failed run=3f9a error="timed out" '
                                               'then="the nudger ends it"')


def test_a_resume_still_under_way_at_the_end_is_said_once(tmp_path) -> None:
    assert in_words([], tmp_path, resume_pending=True) == [
        "note: Prefect did not answer; the run goes on once it does (`sop serve` moves it on: nothing to do)"]
    assert not (tmp_path / "var").exists()  # nothing logged: no log file
