"""A follow-up that reads a step its run's end left unfinished: refused by `sop validate`, since then it fails.

A follow-up is decided when its run ends. A run that failed (a call or a command failed, a deadline with
`on_timeout: fail`, an automated step's `timeout`, a notify step's too), was rejected or was cancelled leaves steps
that never finished: they have only state, outcome, actor, note and finished_at, and a follow-up's `when` or input
reading one of their own fields fails then (the follow-up is refused, and nobody starts the review it was for).
Tried only where the follow-up starts on that end.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jinja2 import UndefinedError

from flows.engine.view import RunView, variables
from flows.language.config import Site
from flows.language.expressions import render
from flows.language.library import pinned_sop, validate_paths
from flows.language.loader import parse_yaml
from flows.language.spec import Sop

#: deploy (a command: it may fail) and work (a person's step: it may be rejected) come before verify
ENDS = """\
id: t-ends
title: Ends in many ways
class: routine
owner: sre-lead
steps:
  - id: deploy
    kind: command
    command: [./deploy.sh]
  - id: work
    assignee: sre-oncall
    form: {minutes: {type: integer}}
  - id: verify
    assignee: sre-lead
    needs: [deploy]
    form: {healthy: {type: boolean}}
follow_ups:
  - start: t-b
    within: 1d
"""
TARGET = """\
id: t-b
title: Takes a ticket
class: routine
owner: sre-lead
inputs: {ticket: {type: string}}
steps:
  - {id: note, assignee: sre-oncall}
"""


def errors_of(repo_root: Path, tmp_path: Path, follow_up: str, sop: str = ENDS) -> list[str]:
    root = tmp_path / f"project-{len(list(tmp_path.iterdir()))}"
    shutil.copytree(repo_root / "config", root / "config")
    (root / "sops").mkdir()
    (root / "sops" / "t-b.yaml").write_text(TARGET, encoding="utf-8")
    path = root / "sops" / "t-ends.yaml"
    path.write_text(sop + follow_up, encoding="utf-8")
    errors, _, _ = validate_paths([path], root / "config")
    return [str(e).removeprefix(f"{path}:") for e in errors]


def test_an_input_reading_a_step_after_one_that_may_fail_is_refused_as_the_follow_up_starts_on_a_failure(
        repo_root: Path, tmp_path: Path) -> None:
    # without `when`, a follow-up starts on every end but a cancel: a failed run's too
    assert errors_of(repo_root, tmp_path, '    inputs: {ticket: "{{ steps.verify.healthy }}"}\n') == [
        "19:22: follow_ups[0].inputs.ticket: `inputs.ticket` would fail whenever step `verify` did not finish (step "
        "`deploy` it needs failed, and the run with it): a step that did not finish has no `healthy` (only state, "
        "outcome, actor, note, finished_at); write `steps.verify.healthy | default(…)`, or test "
        "`steps.verify.outcome == 'done' and …` first"]


def test_the_step_that_may_fail_and_one_after_a_rejection_are_refused_too(repo_root: Path, tmp_path: Path) -> None:
    [error] = errors_of(repo_root, tmp_path, '    inputs: {ticket: "{{ steps.deploy.exit_code }}"}\n')
    assert "whenever step `deploy` did not finish (it failed, and the run with it: its command may fail)" in error
    after_work = ENDS.replace("    needs: [deploy]\n", "    needs: [work]\n")
    [error] = errors_of(repo_root, tmp_path, '    inputs: {ticket: "{{ steps.verify.healthy }}"}\n', after_work)
    assert "whenever step `verify` did not finish (step `work` it needs was rejected, and the run with it)" in error


def test_a_when_that_may_hold_on_a_cancelled_run_is_tried_with_steps_cancelled(repo_root: Path, tmp_path: Path) -> None:
    [error] = errors_of(repo_root, tmp_path, "    when: \"{{ steps.work.outcome != 'skipped' and steps.work.minutes > 30 "
                                             "}}\"\n    inputs: {ticket: x}\n")
    assert error.startswith("19:11: follow_ups[0].when: `when` would fail whenever step `work` did not finish (the run "
                            "was cancelled first): a step that did not finish has no `minutes`")


#: a notify step before `verify` instead of `deploy`: it fails its run only when it has a time limit
TOLD = ENDS.replace("""  - id: deploy
    kind: command
    command: [./deploy.sh]
""", """  - id: deploy
    kind: notify
    notify: [sre-lead]
    message: {title: Deploying}
    timeout: 5s
""")


def test_a_notify_step_with_a_timeout_may_fail_the_run_and_is_tried_so(repo_root: Path, tmp_path: Path) -> None:
    # its delivery to a slow webhook may outlast its 5s: it fails then (tests/engine/test_notify_limit.py)
    [error] = errors_of(repo_root, tmp_path, '    inputs: {ticket: "{{ steps.verify.healthy }}"}\n', TOLD)
    assert "whenever step `verify` did not finish (step `deploy` it needs failed, and the run with it)" in error
    [error] = errors_of(repo_root, tmp_path, '    inputs: {ticket: "{{ steps.deploy.delivered }}"}\n', TOLD)
    assert ("whenever step `deploy` did not finish (it failed, and the run with it: its `timeout: 5s` may end it "
            "first): a step that did not finish has no `delivered`") in error
    # without a time limit a notify step never fails: a message nobody got is `delivered: false`
    untimed = TOLD.replace("    timeout: 5s\n", "")
    assert errors_of(repo_root, tmp_path, '    inputs: {ticket: "{{ steps.verify.healthy }}"}\n', untimed) == []


@pytest.mark.parametrize("follow_up", [
    '    inputs: {ticket: "{{ steps.work.minutes }}"}\n',  # nothing before work may fail, and a cancel starts nothing
    "    when: \"{{ run.outcome == 'done' }}\"\n    inputs: {ticket: \"{{ steps.verify.healthy }}\"}\n",
    "    when: \"{{ steps.work.outcome == 'done' and steps.work.minutes > 30 }}\"\n    inputs: {ticket: x}\n",
    '    inputs: {ticket: "{{ steps.verify.healthy | default(\'not verified\') }}"}\n',
    "    inputs: {ticket: \"{{ steps.verify.healthy if steps.verify.outcome == 'done' else 'no' }}\"}\n",
])
def test_a_follow_up_guarded_against_an_unfinished_step_passes(repo_root: Path, tmp_path: Path, follow_up: str) -> None:
    assert errors_of(repo_root, tmp_path, follow_up) == []


def test_what_is_refused_fails_so_with_the_engines_variables_of_a_failed_run() -> None:
    doc, _ = parse_yaml(ENDS, "t-ends.yaml")
    sop = Sop.model_validate(doc.data)  # type: ignore[union-attr]
    now = datetime(2026, 12, 7, tzinfo=UTC)
    run = {"id": "r1", "sop_id": sop.id, "title": sop.title, "started_at": now, "deadline_at": None, "initiator": "x",
           "speed": 1, "sop_class": "routine", "priority": 4, "inputs": "{}", "trigger": "{}"}
    rows = {"deploy": {"state": "failed", "actor": None, "note": "command not found: ./deploy.sh", "finished_at": now,
                       "result": None},
            "work": {"state": "done", "actor": "zhao-lei", "note": None, "finished_at": now, "result": None},
            "verify": {"state": "blocked", "actor": None, "note": "upstream: deploy failed", "finished_at": now,
                       "result": None}}
    context = variables(RunView(run, rows, sop), Site())
    with pytest.raises(UndefinedError, match="has no attribute 'healthy'"):
        render("{{ steps.verify.healthy }}", context)
    assert render("{{ steps.verify.healthy | default('not verified') }}", context) == "not verified"


def test_a_run_under_way_keeps_its_pinned_text_that_these_checks_now_refuse(repo_root: Path, tmp_path: Path) -> None:
    text = ENDS + '    inputs: {ticket: "{{ steps.verify.healthy }}"}\n'
    assert errors_of(repo_root, tmp_path, text.removeprefix(ENDS)) != []
    pinned = pinned_sop(hashlib.sha256(text.encode()).hexdigest(), text)  # what a run started before replays
    assert pinned.follow_ups[0].inputs == {"ticket": "{{ steps.verify.healthy }}"}
