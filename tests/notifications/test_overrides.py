"""A broken site template is caught by validation, at its file and line, not at 3 a.m. in a run."""

from __future__ import annotations

import shutil
from pathlib import Path

from notifications import validate_overrides
from notifications.templating import PACKAGE_TEMPLATES


def site_templates(tmp_path: Path, **files: str) -> Path:
    """A config/ folder whose templates/ holds ``files`` (name → text); returns config/."""
    folder = tmp_path / "config" / "templates"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return tmp_path / "config"


def where(errors: list) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    return [(Path(e.file).name, e.line) for e in errors]


def test_no_templates_folder_means_nothing_to_check(tmp_path: Path) -> None:
    assert validate_overrides(tmp_path) == []


def test_a_good_override_passes(tmp_path: Path) -> None:
    config = site_templates(tmp_path, **{"assigned.md.j2": "Please: {{ step.title }}\n\n`{{ action.command }}`\n"})
    assert validate_overrides(config) == []


def test_the_packaged_templates_pass_as_overrides_too(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(PACKAGE_TEMPLATES, config / "templates")
    assert validate_overrides(config) == []


def test_a_syntax_error_is_reported_at_its_line(tmp_path: Path) -> None:
    config = site_templates(tmp_path, **{"reminder.md.j2": "Reminder\n\n{% if step.due_at %}\nDue soon\n"})
    [error] = validate_overrides(config)
    assert where([error]) == [("reminder.md.j2", 4)]
    assert "template syntax error" in error.message and "endif" in error.message


def test_an_unknown_variable_is_reported_at_its_line_with_a_suggestion(tmp_path: Path) -> None:
    config = site_templates(
        tmp_path, **{"overdue.md.j2": "Late: {{ step.title }}\n\nDue {{ step.due }}\n\nAsk {{ recepient.name }}\n"}
    )
    errors = validate_overrides(config)
    assert where(errors) == [("overdue.md.j2", 3), ("overdue.md.j2", 5)]
    assert "unknown variable `step.due`; did you mean `step.due_at`?" in errors[0].message
    assert "unknown variable `recepient`; did you mean `recipient`?" in errors[1].message


def test_an_error_inside_a_loop_is_found_by_the_trial_render(tmp_path: Path) -> None:
    config = site_templates(
        tmp_path, **{"assigned.md.j2": "Assigned\n\n{% for f in step.form %}\n- {{ f.nme }}\n{% endfor %}\n"}
    )
    [error] = validate_overrides(config)
    assert where([error]) == [("assigned.md.j2", 4)]
    assert "rendering `assigned` fails" in error.message and "nme" in error.message


def test_a_template_with_an_empty_title_is_refused(tmp_path: Path) -> None:
    config = site_templates(tmp_path, **{"step_done.md.j2": "{% if false %}never{% endif %}\n"})
    [error] = validate_overrides(config)
    assert "empty first line (the title)" in error.message


def test_a_file_that_is_not_a_kind_is_named(tmp_path: Path) -> None:
    config = site_templates(tmp_path, **{"asigned.md.j2": "x\n", "notes.txt": "x", "_footer.md.j2": "{{ run.url }}\n"})
    errors = validate_overrides(config)
    assert where(errors) == [("asigned.md.j2", 1), ("notes.txt", 1)]
    assert "unknown notification kind `asigned`; did you mean assigned.md.j2?" in errors[0].message
    assert "site templates are named <kind>.md.j2" in errors[1].message


def test_a_site_page_for_a_refused_alert_is_checked_against_its_own_names(tmp_path: Path) -> None:
    """trigger_refused.md.j2 reads a refusal, not a run: its names are checked, and a good one passes."""
    good = site_templates(tmp_path / "good", **{
        "trigger_refused.md.j2": "{{ sop.short_title }} did not start: {{ refusal.why }}\n\n`{{ refusal.command }}`\n"})
    assert validate_overrides(good) == []
    bad = site_templates(tmp_path / "bad", **{"trigger_refused.md.j2": "Refused\n\n{{ refusal.wy }}\n{{ run.id }}\n"})
    errors = validate_overrides(bad)
    assert where(errors) == [("trigger_refused.md.j2", 3), ("trigger_refused.md.j2", 4)]
    assert "unknown variable `refusal.wy`; did you mean `refusal.why`?" in errors[0].message
    assert "unknown variable `run`" in errors[1].message
