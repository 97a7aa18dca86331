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


def test_a_filter_jinja2_does_not_have_is_caught_before_the_run(sop, tmp_path):
    # Jinja2 looks filters up only when it compiles the template: at run time, for a step
    broken = tmp_path / "shout.yaml"
    broken.write_text(
        "id: shout\ntitle: Shout\nclass: routine\nowner: sre-oncall\nsteps:\n"
        "  - id: tell\n    kind: notify\n    notify: [sre-oncall]\n"
        '    message: {title: "{{ trigger.summary | xyzzy }}"}\n'
    )

    result = sop("validate", str(broken))

    assert result.returncode == 1
    assert f"{broken}:9:" in result.stderr
    assert "unknown filter `xyzzy` (expected a Jinja2 built-in filter" in result.stderr
