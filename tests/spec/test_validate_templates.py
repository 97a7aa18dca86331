"""A broken site message template is caught by `sop validate`, not at 3 a.m. when a page is sent."""

from __future__ import annotations

import shutil


def test_validate_reports_a_broken_site_template_with_its_line(sop, repo_root, tmp_path):
    config = tmp_path / "config"
    shutil.copytree(repo_root / "config", config)
    (config / "templates").mkdir(exist_ok=True)
    (config / "templates" / "assigned.md.j2").write_text("# {{ step.title }}\n\nDue {{ step.due_at }\n")

    result = sop("validate", str(config))

    assert result.returncode == 1
    assert f"{config}/templates/assigned.md.j2:3:" in result.stderr
    assert "template syntax error" in result.stderr


def test_validate_accepts_a_good_site_template(sop, repo_root, tmp_path):
    config = tmp_path / "config"
    shutil.copytree(repo_root / "config", config)
    (config / "templates").mkdir(exist_ok=True)
    (config / "templates" / "reminder.md.j2").write_text("# Reminder: {{ step.title }}\n\n{{ step.time_left }}\n")

    result = sop("validate", str(config))

    assert result.returncode == 0, result.stderr
