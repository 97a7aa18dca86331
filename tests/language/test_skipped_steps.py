"""Reading a field of a step that may be skipped: refused by `sop validate`, since at run time it fails.

A skipped step (its `when` false, its branch not taken, `on_timeout: skip`, a fallback not needed)
has only state, outcome, actor, note and finished_at: the engine's variables lack its form fields
and outputs, and the strict templates refuse to compare or print what is missing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from jinja2 import UndefinedError

from flows.engine.view import RunView, instructions, variables
from flows.language.config import Site
from flows.language.expressions import evaluate
from flows.language.library import validate_paths
from flows.language.loader import parse_yaml
from flows.language.spec import Sop

SOP = """\
id: skippable
title: Reads a step that may be skipped
class: outage
owner: sre-oncall
inputs:
  sev: {{type: string, enum: [low, high]}}
steps:
  - id: triage
    assignee: sre-oncall
    when: "{{{{ inputs.sev == 'high' }}}}"
    form:
      severity: {{type: string, enum: [minor, major]}}
      cost: {{type: integer}}
  - id: act
    assignee: sre-lead
    needs: [triage]
    when: "{when}"
"""


def errors_of(text: str, tmp_path: Path, repo_root: Path) -> list[str]:
    path = tmp_path / "skippable.yaml"
    path.write_text(text, encoding="utf-8")
    errors, _, _ = validate_paths([path], repo_root / "config")
    return [str(e).removeprefix(f"{path}:") for e in errors]


def when_errors(when: str, tmp_path: Path, repo_root: Path) -> list[str]:
    return errors_of(SOP.format(when=when.replace('"', '\\"')), tmp_path, repo_root)


def test_a_when_reading_a_field_of_a_step_that_may_be_skipped_is_refused(tmp_path: Path, repo_root: Path) -> None:
    assert when_errors("{{ steps.triage.severity == 'major' }}", tmp_path, repo_root) == [
        "17:11: steps[1].when (step `act`): `when` would fail whenever step `triage` is skipped (its `when` is false): a skipped "
        "step has no `severity` (only state, outcome, actor, note, finished_at); write "
        "`steps.triage.severity | default(…)`, or test `steps.triage.outcome != 'skipped' and …` first"]


@pytest.mark.parametrize("when", [
    "{{ steps.triage.cost is not none and steps.triage.cost > 5 }}",  # a skipped step's field is missing, not none
    "{{ (steps.triage.cost or 0) > 5 }}",
])
def test_a_none_guard_does_not_guard_against_a_skipped_step(when: str, tmp_path: Path, repo_root: Path) -> None:
    [error] = when_errors(when, tmp_path, repo_root)
    assert "whenever step `triage` is skipped (its `when` is false): a skipped step has no `cost`" in error


@pytest.mark.parametrize("when", [
    "{{ steps.triage.severity | default('minor') == 'major' }}",
    "{{ steps.triage.outcome != 'skipped' and steps.triage.cost > 5 }}",
    "{{ steps.triage.state == 'done' and steps.triage.cost > 5 }}",
    "{{ steps.triage.severity is defined and steps.triage.severity == 'major' }}",
    "{{ inputs.sev == 'high' and steps.triage.cost > 5 }}",  # triage ran whenever this holds
    "{{ steps.triage.outcome == 'skipped' or steps.triage.note is none }}",  # its own fields stay
])
def test_a_guarded_read_passes(when: str, tmp_path: Path, repo_root: Path) -> None:
    assert when_errors(when, tmp_path, repo_root) == []


def _triage_skipped(text: str, act: str) -> RunView:
    """A run of ``text`` (an SOP of triage, then act) whose triage was skipped by its `when`, act in state ``act``."""
    doc, _ = parse_yaml(text, "skippable.yaml")
    sop = Sop.model_validate(doc.data)  # type: ignore[union-attr]
    now = datetime(2026, 12, 6, tzinfo=UTC)
    run = {"id": "r1", "sop_id": sop.id, "title": sop.title, "started_at": now, "deadline_at": None, "initiator": "x",
           "speed": 1, "sop_class": "outage", "priority": 2, "inputs": '{"sev": "low"}', "trigger": "{}"}
    rows = {"triage": {"state": "skipped", "actor": None, "note": "when: … is false", "finished_at": now, "result": None},
            "act": {"state": act, "actor": None, "note": None, "finished_at": None, "result": None}}
    return RunView(run, rows, sop)


def test_what_is_refused_fails_so_with_the_engines_variables_of_a_skipped_step() -> None:
    context = variables(_triage_skipped(SOP.format(when="true"), "pending"), Site())
    with pytest.raises(UndefinedError, match="has no attribute 'severity'"):
        evaluate("{{ steps.triage.severity == 'major' }}", context)
    with pytest.raises(UndefinedError, match="has no attribute 'cost'"):
        evaluate("{{ steps.triage.cost is not none and steps.triage.cost > 5 }}", context)
    assert evaluate("{{ steps.triage.outcome != 'skipped' and steps.triage.cost > 5 }}", context) is False
    assert evaluate("{{ steps.triage.severity | default('minor') == 'major' }}", context) is False


BRANCHES = """\
id: skippable
title: Branches
class: outage
owner: sre-oncall
inputs:
  sev: {type: string, enum: [low, high]}
steps:
  - id: gate
    kind: check
    check: "{{ inputs.sev == 'high' }}"
    then: [triage, inner]
    else: [other]
  - id: triage
    assignee: sre-oncall
    form:
      cost: {type: integer}
  - id: inner
    kind: check
    needs: [triage]
    check: "{{ steps.triage.cost > 5 }}"
    then: [tell]
  - id: tell
    kind: notify
    notify: [sre-lead]
    message:
      title: "Cost {{ steps.triage.cost }}"
      body: "{{ run.url }}"
  - id: other
    kind: notify
    needs: [triage]
    notify: [sre-lead]
    message:
      title: "Low severity"
      body: "Cost {{ steps.triage.cost }}"
"""


def test_a_template_reading_a_step_of_a_branch_not_taken_is_refused_and_one_on_that_branch_passes(
        tmp_path: Path, repo_root: Path) -> None:
    # `inner` and `tell` run only on gate's `then`, with triage; `other` runs on its `else`, without
    assert errors_of(BRANCHES, tmp_path, repo_root) == [
        "34:13: steps[4].message.body (step `other`): `message.body` would fail whenever step `triage` is skipped (check `gate` "
        "takes its other branch): a skipped step has no `cost` (only state, outcome, actor, note, finished_at); write "
        "`steps.triage.cost | default(…)`, or test `steps.triage.outcome != 'skipped' and …` first"]


def test_a_template_of_a_step_whose_own_when_needs_the_read_step_done_passes(tmp_path: Path, repo_root: Path) -> None:
    guarded = BRANCHES.replace("    needs: [triage]\n    notify: [sre-lead]\n",
                               "    needs: [triage]\n    when: \"steps.triage.outcome == 'done'\"\n"
                               "    notify: [sre-lead]\n")
    assert guarded != BRANCHES
    assert errors_of(guarded, tmp_path, repo_root) == []


def test_a_steps_description_reading_a_step_that_may_be_skipped_is_refused_and_a_title_holds_no_template(
        tmp_path: Path, repo_root: Path) -> None:
    # its page and its messages show the description as written, `{{ … }}` and all, when it cannot render; a title is
    # never rendered, so a template in it is refused whatever it reads
    described = SOP.format(when="true") + ('    title: "Act on a {{ steps.triage.severity }} case"\n'
                                           '    description: "Triage found it {{ steps.triage.severity }}"\n')
    assert errors_of(described, tmp_path, repo_root) == [
        "18:12: steps[1].title (step `act`): a title is shown as written (on the board, in pages and in the audit), never "
        "rendered: write it without `{{ … }}` and put the run's values in `description`"]
    titled = described.replace("Act on a {{ steps.triage.severity }} case", "Act on the case")
    assert [e.split(": a skipped step")[0] for e in errors_of(titled, tmp_path, repo_root)] == [
        "19:18: steps[1].description (step `act`): `description` would fail whenever step `triage` is skipped (its `when` is "
        "false)"]
    guarded = titled.replace("{{ steps.triage.severity }}", "{{ steps.triage.severity | default('minor') }}")
    assert errors_of(guarded, tmp_path, repo_root) == []
    unreached = titled.replace('when: "true"', "when: \"{{ steps.triage.outcome == 'done' }}\"")
    assert errors_of(unreached, tmp_path, repo_root) == []  # act runs only when triage did


def test_a_pinned_text_with_a_template_in_a_title_still_loads() -> None:
    from flows.language.fields import PINNED

    titled = SOP.format(when="true") + '    title: "Act on {{ inputs.sev }}"\n'
    doc, _ = parse_yaml(titled, "titled.yaml")
    assert Sop.model_validate(doc.data, context=PINNED).step("act").name == "Act on {{ inputs.sev }}"  # type: ignore[union-attr]


def test_what_is_refused_shows_as_written_on_the_steps_page_when_the_step_was_skipped() -> None:
    described = SOP.format(when="true") + '    description: "Triage found it {{ steps.triage.severity }}"\n'
    view = _triage_skipped(described, "active")
    assert instructions(view, view.sop.step("act"), Site()) == "Triage found it {{ steps.triage.severity }}"
