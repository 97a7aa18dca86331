"""`when` and `check` expressions tried at validation with the values their fields can have.

tests/language/corpus holds the refused ones (an integer compared with text, an optional field
left empty, a choice that does not exist); here: the written ways to guard against them pass,
and what is refused fails the same way when the engine evaluates it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.language.expressions import evaluate
from flows.language.library import validate_paths

SOP = """\
id: guarded
title: Reads typed fields in its conditions
class: outage
owner: sre-oncall
inputs:
  refund_cny: {{type: number, required: false}}
  region: {{type: string, enum: [cn, eu], default: cn}}
steps:
  - id: investigate
    assignee: sre-oncall
    form:
      compensation_cny: {{type: integer, required: false}}
      amount: {{type: integer}}
      category: {{type: string, enum: [delivery, quality, refund]}}
      vip: {{type: boolean}}
      remark: {{type: string, required: false}}
  - id: approve
    assignee: sre-lead
    needs: [investigate]
    when: "{when}"
"""


def errors_of(when: str, tmp_path: Path, repo_root: Path) -> list[str]:
    path = tmp_path / "guarded.yaml"
    path.write_text(SOP.format(when=when.replace('"', '\\"')), encoding="utf-8")
    errors, _, _ = validate_paths([path], repo_root / "config")
    return [e.message for e in errors]


@pytest.mark.parametrize("when", [
    "{{ steps.investigate.compensation_cny is not none and steps.investigate.compensation_cny > 500 }}",
    "{{ (steps.investigate.compensation_cny or 0) > 500 }}",
    "{{ steps.investigate.compensation_cny | default(0) > 500 }}",
    "{{ steps.investigate.amount > 500 }}",
    "{{ steps.investigate.amount > 500 and steps.investigate.category == 'refund' }}",
    "{{ steps.investigate.category in ['delivery', 'quality'] }}",
    "{{ steps.investigate.vip or steps.investigate.amount >= 1000 }}",
    "{{ inputs.refund_cny | default(0) >= 1000 }}",
    "{{ inputs.refund_cny is none or inputs.refund_cny < 10 }}",
    "{{ inputs.region == 'eu' and (inputs.refund_cny or 0) > 10 }}",
    "{{ steps.investigate.remark | default('') | length > 3 }}",
    "{{ 'refund' in (steps.investigate.remark or '') }}",
    "{{ steps.investigate.amount | string == '500' }}",
    "{{ run.priority > 3 and steps.investigate.amount > 1 }}",  # run's fields are not typed: not tried
    "{{ steps.investigate.note | length > steps.investigate.amount }}",
])
def test_a_guarded_or_well_typed_condition_passes(when: str, tmp_path: Path, repo_root: Path) -> None:
    assert errors_of(when, tmp_path, repo_root) == []


@pytest.mark.parametrize(("when", "message"), [
    ("{{ steps.investigate.amount > '500' }}", "'>' not supported between instances of 'int' and 'str'"),
    ("{{ steps.investigate.category == 'refund' and steps.investigate.amount > 'x' }}",
     "would fail whenever `steps.investigate.category` is 'refund'"),
    ("{{ steps.investigate.remark | length > 3 }}", "whenever `steps.investigate.remark` is left empty"),
    ("{{ inputs.refund_cny + 1 > 10 }}", "whenever a run starts without `inputs.refund_cny`"),
    ("{{ steps.investigate.category != 'shipping' }}", "`!=` is always true"),
    ("{{ steps.investigate.category in ['shipping', 'refund'] }}", "is compared with 'shipping', which is not one"),
    ("{{ inputs.region == 'us' }}", "(cn, eu): `==` is never true"),
])
def test_a_condition_that_would_fail_or_never_hold_is_refused(when: str, message: str, tmp_path: Path,
                                                               repo_root: Path) -> None:
    [error] = errors_of(when, tmp_path, repo_root)
    assert message in error


def test_what_is_refused_fails_the_same_way_when_the_engine_evaluates_it() -> None:
    with pytest.raises(TypeError, match="'>' not supported between instances of 'int' and 'str'"):
        evaluate("{{ steps.investigate.compensation_cny > '500' }}",
                 {"steps": {"investigate": {"compensation_cny": 700}}})
    with pytest.raises(TypeError, match="'NoneType' and 'int'"):
        evaluate("{{ steps.investigate.compensation_cny > 500 }}", {"steps": {"investigate": {"compensation_cny": None}}})
    assert evaluate("{{ steps.investigate.compensation_cny | default(0) > 500 }}",
                    {"steps": {"investigate": {"compensation_cny": None}}}) is False


def test_an_input_that_failed_validation_is_not_tried_as_the_text_its_stand_in_is(tmp_path: Path,
                                                                                 repo_root: Path) -> None:
    path = tmp_path / "stand-in.yaml"
    path.write_text("id: stand-in\ntitle: A broken input read as a number\nclass: outage\nowner: sre-oncall\n"
                    "inputs:\n  amount: {type: integer, default: 'x'}\nsteps:\n  - id: big\n    kind: check\n"
                    "    check: \"inputs.amount > 5\"\n", encoding="utf-8")
    errors, _, _ = validate_paths([path], repo_root / "config")
    assert [e.path for e in errors] == ["inputs.amount.default"]
