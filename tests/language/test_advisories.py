"""`sop validate` warns (and still passes) where a file is valid but probably not what its author meant."""

from __future__ import annotations

from pathlib import Path

from flows.language.library import validate_paths

SOP = """\
id: self-paging
title: A lead's own step under a ladder that pages the owner
class: outage
owner: sre-lead
escalation:
  - at: 50%
    notify: [assignee]
  - at: 100%
    notify: [owner]
steps:
  - id: fix
    assignee: sre-oncall
    due: 1h
  - id: sign-off
    assignee: sre-lead
    needs: [fix]
    due: 1h
{extra}"""


def warnings_of(text: str, tmp_path: Path, repo_root: Path) -> list[str]:
    path = tmp_path / "self-paging.yaml"
    path.write_text(text, encoding="utf-8")
    warnings: list = []
    errors, _, _ = validate_paths([path], repo_root / "config", warnings=warnings)
    assert errors == []
    return [str(w).removeprefix(f"{path}:") for w in warnings]


def test_a_rung_paging_the_owner_role_that_holds_the_step_is_warned_at_the_rung(tmp_path: Path, repo_root: Path) -> None:
    assert warnings_of(SOP.format(extra=""), tmp_path, repo_root) == [
        "9:14: escalation[1].notify[0]: `owner` (the SOP's owner role `sre-lead`) is also the assignee of step "
        "`sign-off`: for it this rung reaches only the person who holds the step (told it is late), and nobody above "
        "them hears of it; give it a ladder of its own that escalates to `lead` (`assignee` is the reminder)"]


def test_a_steps_own_ladder_naming_its_assignee_role_or_person_is_warned(tmp_path: Path, repo_root: Path) -> None:
    extra = """\
  - id: report
    assignee: li-wei
    needs: [fix]
    due: 1h
    escalation:
      - at: 50%
        notify: [assignee]
      - at: 100%
        notify: [person:li-wei]
"""
    text = SOP.format(extra=extra).replace("notify: [owner]", "notify: [lead]")
    assert warnings_of(text, tmp_path, repo_root) == [
        "26:18: steps[2].escalation[1].notify[0] (step `report`): `person:li-wei` is also the assignee of step `report`: for it this "
        "rung reaches only the person who holds the step (told it is late), and nobody above them hears of it; write "
        "`lead` to escalate (`assignee` is the reminder)"]


def test_a_ladder_that_reminds_the_assignee_and_escalates_past_them_has_no_warning(tmp_path: Path,
                                                                                   repo_root: Path) -> None:
    text = SOP.format(extra="").replace("notify: [owner]", "notify: [lead, backup]")
    assert warnings_of(text, tmp_path, repo_root) == []


def test_a_rung_that_also_reaches_someone_above_has_no_warning(tmp_path: Path, repo_root: Path) -> None:
    text = SOP.format(extra="").replace("notify: [owner]", "notify: [owner, lead]")  # the shipped SOPs' rung
    assert warnings_of(text, tmp_path, repo_root) == []


def test_sop_validate_prints_the_warning_and_passes(sop, tmp_path: Path) -> None:
    path = tmp_path / "self-paging.yaml"
    path.write_text(SOP.format(extra=""), encoding="utf-8")
    result = sop("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert (f"! warning: {path}:9:14: escalation[1].notify[0]: `owner` (the SOP's owner role `sre-lead`) is also the "
            "assignee of step `sign-off`" in " ".join(result.stderr.split()))
    assert "1 warning(s) above" in result.stdout
    quiet = sop("validate", "-q", str(path))
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""


def test_a_once_step_with_retries_is_warned_at_its_retries(tmp_path: Path, repo_root: Path) -> None:
    text = ("id: self-paging\ntitle: Tell every customer\nclass: outage\nowner: sre-lead\nsteps:\n"
            "  - id: sms\n    kind: command\n    command: [\"true\"]\n    once: true\n    retries: 2\n"
            "  - id: again\n    kind: command\n    command: [\"true\"]\n    once: true\n")
    assert warnings_of(text, tmp_path, repo_root) == [
        "10:14: steps[0].retries (step `sms`): step `sms` is `once: true` (its action must not happen twice) but `retries: 2`: an "
        "attempt that failed is made again, and a call that timed out or a command that was killed may have acted "
        "already; write `retries: 0` unless a failure surely means nothing happened"]
