"""`sop validate` and the library check an SOP's follow-ups, each error at its file and line.

Unknown SOP, inputs the follow-up's SOP does not take or is not given, fixed values that do
not fit, templates and durations that are wrong, and chains of follow-ups that loop.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from flows.language.library import load_library
from flows.language.loader import SpecInvalid

HEAD = """\
id: {id}
title: Probe {id}
class: routine
owner: sre-lead
inputs: {{ticket: {{type: string}}, count: {{type: integer, default: 1}}}}
steps:
  - {{id: work, assignee: sre-oncall, due: 10m}}
"""


def project(repo_root: Path, tmp_path: Path, sops: dict[str, str]) -> Path:
    shutil.copytree(repo_root / "config", tmp_path / "config")
    (tmp_path / "sops").mkdir()
    for sop_id, follow_ups in sops.items():
        (tmp_path / "sops" / f"{sop_id}.yaml").write_text(HEAD.format(id=sop_id) + textwrap.dedent(follow_ups))
    return tmp_path


def errors_of(sop, root: Path, *paths: str) -> list[str]:  # noqa: ANN001 - the fixture
    result = sop("validate", *(paths or [str(root / "sops")]), "--config", str(root / "config"),
                 env={"SOP_HOME": str(root)})
    assert result.returncode == (1 if "✗" in result.stderr else 0), result.stderr
    return [line.removeprefix("✗ ") for line in result.stderr.splitlines() if line.startswith("✗")]


def test_each_wrong_follow_up_is_named_at_its_line(sop, repo_root: Path, tmp_path: Path) -> None:
    root = project(repo_root, tmp_path, {
        "t-b": "",
        "t-a": """\
            follow_ups:
              - start: t-nope
                within: 5d
              - start: t-b
                within: 5d
                inputs: {ticket: "{{ run.id }}", colour: red, count: lots}
              - start: t-b
                within: 1d
                when: "{{ run.outcom == 'done' }}"
                inputs: {ticket: x}
              - start: t-b
                within: 1d
            """,
        "t-c": "follow_ups:\n  - {start: t-b, within: 5 days, inputs: {ticket: x}}\n",
    })
    errors = errors_of(sop, root)
    a = f"{root}/sops/t-a.yaml"
    assert f"{a}:9:12: follow_ups[0].start: unknown SOP `t-nope` (SOPs: t-a, t-b, t-c)" in errors
    assert any(e.startswith(f"{a}:13:") and "`t-b` takes no input `colour` (its inputs: ticket, count)" in e
               for e in errors), errors
    assert any(e.startswith(f"{a}:13:") and "input `count`: expected integer, got 'lots'" in e for e in errors), errors
    assert any(e.startswith(f"{a}:16:") and "unknown variable `run.outcom`" in e and "outcome" in e
               for e in errors), errors
    assert any(e.startswith(f"{a}:18:") and "can never start `t-b`" in e and "`ticket`" in e for e in errors), errors
    assert any(e.startswith(f"{root}/sops/t-c.yaml:9:") and "follow_ups[0].within" in e and "expected a duration" in e
               for e in errors), errors


def test_a_chain_of_follow_ups_that_loops_is_refused(sop, repo_root: Path, tmp_path: Path) -> None:
    loop = "follow_ups:\n  - {{start: {to}, within: 1d, inputs: {{ticket: x}}}}\n"
    root = project(repo_root, tmp_path, {"t-a": loop.format(to="t-b"), "t-b": loop.format(to="t-a"),
                                         "t-self": loop.format(to="t-self")})
    errors = errors_of(sop, root)
    assert f"{root}/sops/t-a.yaml:9:13: follow_ups[0].start: follow-ups form a cycle: t-a → t-b → t-a: each end " \
           "would start the next run without end (a follow-up may not lead back to an SOP on its chain)" in errors
    assert any(f"{root}/sops/t-self.yaml:9:13:" in e and "follow-ups starts itself" in e for e in errors), errors
    assert not any("t-b.yaml" in e for e in errors)  # one loop, told once
    with pytest.raises(SpecInvalid) as caught:  # the library refuses to run it too
        load_library(root)
    assert any("cycle" in e.message for e in caught.value.errors)


def test_one_file_is_checked_against_the_library_it_belongs_to(sop, repo_root: Path, tmp_path: Path) -> None:
    root = project(repo_root, tmp_path, {"t-b": "", "t-a": "follow_ups:\n  - {start: t-b, within: 1d, inputs: {ticket: x}}\n"})
    assert errors_of(sop, root, str(root / "sops" / "t-a.yaml")) == []  # t-b is found in sops/


def test_the_shipped_crisis_and_surge_declare_their_review(repo_root: Path) -> None:
    library = load_library(repo_root)
    for sop_id in ("crisis-pr", "traffic-surge"):
        [review] = library.get(sop_id).sop.follow_ups
        assert review.start == "post-incident-review" and review.within.days == 5


def test_a_flow_runs_own_library_holds_the_sops_its_end_may_start(repo_root: Path) -> None:
    library = load_library(repo_root, only="crisis-pr")  # what a flow-run process loads
    assert set(library.sops) == {"crisis-pr", "post-incident-review"}


READS = """\
id: t-reads
title: Reads its steps when it ends
class: routine
owner: sre-lead
inputs: {ticket: {type: string}}
steps:
  - id: work
    assignee: sre-oncall
    form: {minutes: {type: integer}, kind: {type: string, enum: [fix, workaround]}}
  - id: review
    assignee: sre-lead
    needs: [work]
    when: "{{ steps.work.minutes > 30 }}"
    form: {verdict: {type: string}}
follow_ups:
  - start: t-b
    within: 1d
    when: "%s"
    inputs: {ticket: "%s"}
"""


def follow_up_errors(repo_root: Path, tmp_path: Path, when: str, ticket: str = "{{ inputs.ticket }}") -> list[str]:
    from flows.language.library import validate_paths

    root = project(repo_root, tmp_path / f"project-{len(list(tmp_path.iterdir()))}", {"t-b": ""})
    path = root / "sops" / "t-reads.yaml"
    path.write_text(READS % (when.replace('"', '\\"'), ticket.replace('"', '\\"')), encoding="utf-8")
    errors, _, _ = validate_paths([path], root / "config")
    return [str(e).removeprefix(f"{path}:") for e in errors]


@pytest.mark.parametrize(("when", "expected"), [
    ("{{ steps.work.minutes > '30' }}",
     "18:11: follow_ups[0].when: `when` would fail whenever it is evaluated: '>' not supported between instances of "
     "'int' and 'str' (`steps.work.minutes` is an integer field); compare a field with a value of its type: a number "
     "without quotes (500), text in quotes ('high')"),
    ("{{ run.outcome == 'canceled' }}",
     "18:11: follow_ups[0].when: `run.outcome` is compared with 'canceled', which is not one of its choices (done, "
     "rejected, failed, cancelled): `==` is never true"),
    ("{{ run.outcome == 'done' and steps.review.verdict == 'redo' }}",
     "18:11: follow_ups[0].when: `when` would fail whenever step `review` is skipped (its `when` is false): a skipped "
     "step has no `verdict` (only state, outcome, actor, note, finished_at); write `steps.review.verdict | "
     "default(…)`, or test `steps.review.outcome != 'skipped' and …` first"),
])
def test_a_follow_ups_when_is_tried_with_the_values_the_ended_run_can_have(
        repo_root: Path, tmp_path: Path, when: str, expected: str) -> None:
    assert follow_up_errors(repo_root, tmp_path, when) == [expected]


@pytest.mark.parametrize("when", [
    "{{ run.outcome != 'cancelled' and steps.work.minutes > 30 }}",
    "{{ steps.review.verdict | default('none') == 'redo' }}",
    # `!= 'skipped'` would not do: a run cancelled before review finished has it `cancelled`, without a verdict
    "{{ steps.review.outcome == 'done' and steps.review.verdict == 'redo' }}",
    "{{ run.outcome != 'cancelled' and steps.work.kind == 'workaround' or not run.deadline_met }}",
])
def test_a_guarded_follow_up_when_passes(repo_root: Path, tmp_path: Path, when: str) -> None:
    assert follow_up_errors(repo_root, tmp_path, when) == []


def test_a_follow_ups_input_reading_a_skipped_step_is_refused_unless_its_when_rules_the_skip_out(
        repo_root: Path, tmp_path: Path) -> None:
    [error] = follow_up_errors(repo_root, tmp_path, "{{ run.outcome == 'done' }}", "{{ steps.review.verdict }}")
    assert error.startswith("19:22: follow_ups[0].inputs.ticket: `inputs.ticket` would fail whenever step `review` is "
                            "skipped (its `when` is false): a skipped step has no `verdict`")
    assert follow_up_errors(repo_root, tmp_path, "{{ steps.review.outcome == 'done' }}",
                            "{{ steps.review.verdict }}") == []


def test_validating_one_sop_checks_the_follow_ups_of_the_library_that_start_it(sop, repo_root: Path,
                                                                                tmp_path: Path) -> None:
    # t-b gains a required input: t-a's follow-up to it, untouched, can no longer start it
    root = project(repo_root, tmp_path, {"t-b": "", "t-a": "follow_ups:\n  - {start: t-b, within: 1d, inputs: {ticket: x}}\n"})
    edited = HEAD.format(id="t-b").replace("inputs: {", "inputs: {reason: {type: string}, ")
    expected = (f"{root / 'sops' / 't-a.yaml'}:9:5: follow_ups[0]: this follow-up can never start `t-b`: it gives no "
                "value for its required input(s) `reason` (add them to `inputs`)")
    (root / "sops" / "t-b.yaml").write_text(edited)
    assert errors_of(sop, root, str(root / "sops" / "t-b.yaml")) == [expected]
    # a draft of it outside sops/ stands in for the library's file, as it will once saved there
    (root / "sops" / "t-b.yaml").write_text(HEAD.format(id="t-b"))
    (root / "drafts").mkdir()
    (root / "drafts" / "t-b.yaml").write_text(edited)
    assert errors_of(sop, root, str(root / "drafts" / "t-b.yaml")) == [expected]
    assert errors_of(sop, root, str(root / "sops" / "t-b.yaml")) == []
