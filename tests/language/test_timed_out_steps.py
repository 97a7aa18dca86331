"""Reading a field of a step whose deadline hands it to a fallback: refused by `sop validate`, since then it fails.

A step with `on_timeout: fallback:<step>` that is not reported by its due ends `timed_out`, with only state,
outcome, actor, note and finished_at; the steps that need it go on once the fallback is done, and a `when`, a
description, a message or a follow-up's input reading one of its form fields fails there (the engine's side:
tests/engine/test_timed_out_fields.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flows.language.library import validate_paths

#: `call` falls back to `mail` when not reported within 30 minutes; `after` needs it (so runs once `mail` is done)
SOP = """\
id: t-fallback
title: Reach the supplier
class: routine
owner: sre-lead
steps:
  - id: call
    title: Reach the supplier by phone
    assignee: sre-oncall
    due: 30m
    on_timeout: fallback:mail
    form:
      answer: {type: string, enum: [agreed, refused]}
      eta_days: {type: integer}
  - id: mail
    title: Write to the supplier
    assignee: sre-lead
    due: 1h
  - id: after
    title: Act on the supplier's answer
    assignee: sre-oncall
    needs: [call]
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


def errors_of(repo_root: Path, tmp_path: Path, tail: str, sop: str = SOP) -> list[str]:
    root = tmp_path / f"project-{len(list(tmp_path.iterdir()))}"
    shutil.copytree(repo_root / "config", root / "config")
    (root / "sops").mkdir()
    (root / "sops" / "t-b.yaml").write_text(TARGET, encoding="utf-8")
    path = root / "sops" / "t-fallback.yaml"
    path.write_text(sop + tail, encoding="utf-8")
    errors, _, _ = validate_paths([path], root / "config")
    return [str(e).removeprefix(f"{path}:") for e in errors]


def test_a_when_reading_a_field_of_a_step_that_may_time_out_to_its_fallback_is_refused(
        repo_root: Path, tmp_path: Path) -> None:
    assert errors_of(repo_root, tmp_path, "    when: \"{{ steps.call.answer == 'agreed' }}\"\n") == [
        "22:11: steps[2].when (step `after`): `when` would fail whenever step `call` did not finish (it timed out and `mail` took "
        "over: `on_timeout: fallback:mail`): a step that did not finish has no `answer` (only state, outcome, actor, "
        "note, finished_at); write `steps.call.answer | default(…)`, or test `steps.call.outcome == 'done' and …` "
        "first"]


@pytest.mark.parametrize(("tail", "where"), [
    ('    description: "The supplier needs {{ steps.call.eta_days }} days."\n', "22:18: steps[2].description"),
    ("  - id: tell\n    kind: notify\n    needs: [call]\n    notify: [sre-lead]\n    message:\n"
     '      title: "Supplier: {{ steps.call.answer }}"\n', "27:14: steps[3].message.title"),
    ('follow_ups:\n  - start: t-b\n    within: 1d\n    inputs: {ticket: "{{ steps.call.answer }}"}\n',
     "25:22: follow_ups[0].inputs.ticket"),
])
def test_a_description_a_message_and_a_follow_up_reading_it_are_refused_too(
        repo_root: Path, tmp_path: Path, tail: str, where: str) -> None:
    [error] = errors_of(repo_root, tmp_path, tail)
    assert error.startswith(where), error
    assert "whenever step `call` did not finish (it timed out and `mail` took over" in error


def test_the_guard_against_a_skipped_step_does_not_guard_against_a_timed_out_one(
        repo_root: Path, tmp_path: Path) -> None:
    [error] = errors_of(repo_root, tmp_path, "    when: \"{{ steps.call.outcome != 'skipped' and "
                                             "steps.call.eta_days > 3 }}\"\n")
    assert "whenever step `call` did not finish (it timed out" in error and "has no `eta_days`" in error


@pytest.mark.parametrize("when", [
    "{{ steps.call.outcome == 'done' and steps.call.answer == 'agreed' }}",  # the guard the error names
    "{{ steps.call.answer | default('refused') == 'agreed' }}",
    "{{ steps.call.outcome != 'timed_out' and steps.call.eta_days > 3 }}",
    "{{ steps.call.state == 'timed_out' or steps.call.note is none }}",  # its own fields stay
])
def test_a_guarded_read_passes(repo_root: Path, tmp_path: Path, when: str) -> None:
    assert errors_of(repo_root, tmp_path, f'    when: "{when}"\n') == []


def test_a_step_that_keeps_waiting_past_its_due_is_not_judged_so(repo_root: Path, tmp_path: Path) -> None:
    waits = SOP.replace("    on_timeout: fallback:mail\n", "")  # no on_timeout: it escalates and stays to be done
    assert errors_of(repo_root, tmp_path, "    when: \"{{ steps.call.answer == 'agreed' }}\"\n", waits) == []


def test_a_follow_up_reading_a_step_after_one_whose_fallback_may_fail_is_refused(
        repo_root: Path, tmp_path: Path) -> None:
    # `mail` fails when it is not done in an hour: then `after`, which waited for it in `call`'s place, is blocked
    sop = SOP.replace("    due: 1h\n", "    due: 1h\n    on_timeout: fail\n") + "    form: {ordered: {type: boolean}}\n"
    [error] = errors_of(repo_root, tmp_path, 'follow_ups:\n  - start: t-b\n    within: 1d\n'
                                             '    inputs: {ticket: "{{ steps.after.ordered }}"}\n', sop)
    assert ("whenever step `after` did not finish (step `call` it needs timed out and its fallback `mail` failed, "
            "and the run with it): a step that did not finish has no `ordered`") in error


@pytest.mark.parametrize("needs", ["[call]", "[after]"])
def test_a_fallback_that_needs_the_step_it_stands_in_for_is_refused(repo_root: Path, tmp_path: Path,
                                                                    needs: str) -> None:
    """`mail` takes over when `call` times out, and what needs `call` waits for `mail`: a `mail` that needs `call`
    (or `after`, which needs `call`) would wait for ever, and its run never end."""
    sop = SOP.replace("    due: 1h\n", f"    due: 1h\n    needs: {needs}\n", 1)
    errors = errors_of(repo_root, tmp_path, "", sop)
    assert any(e.startswith("10:17: steps[0].on_timeout (step `call`): ") and "step `mail` stands in for `call` when it times out, "
               "but needs it (directly or through the steps after it): it would wait for ever; take `call` out of "
               "what `mail` needs" in e for e in errors), errors


@pytest.mark.parametrize("fallback", ["    when: \"{{ run.speed > 1 }}\"\n", "    on_timeout: skip\n"])
def test_a_follow_up_of_a_done_run_reading_a_step_after_a_fallback_that_may_be_skipped_is_refused(
        repo_root: Path, tmp_path: Path, fallback: str) -> None:
    """`mail` may end without standing in for `call` (its own `when`, or skipped by its deadline): `after` is then
    left blocked, and the run ends done: a follow-up on a done run reading `after` would fail there."""
    sop = SOP.replace("    due: 1h\n", "    due: 1h\n" + fallback) + "    form: {ordered: {type: boolean}}\n"
    [error] = errors_of(repo_root, tmp_path, "follow_ups:\n  - start: t-b\n    within: 1d\n"
                                             "    when: \"{{ run.outcome == 'done' }}\"\n"
                                             '    inputs: {ticket: "{{ steps.after.ordered }}"}\n', sop)
    assert ("whenever step `after` did not finish (step `call` it needs timed out and its fallback `mail` ended "
            "without standing in for it (skipped), and the run ended done): a step that did not finish has no "
            "`ordered`") in error, error
