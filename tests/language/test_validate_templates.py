"""A broken site message template is caught by `sop validate`, not at 3 a.m. when a page is sent."""

from __future__ import annotations

import shutil

import pytest

from flows.engine.build import runnable_library
from flows.language.loader import SpecInvalid


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


def test_validate_checks_the_templates_of_the_config_given_with_dash_dash_config(sop, repo_root, tmp_path):
    config = tmp_path / "config"
    shutil.copytree(repo_root / "config", config)
    (config / "templates").mkdir(exist_ok=True)
    (config / "templates" / "overdue.md.j2").write_text("# Late: {{ step.title }}\n\n{{ step.titel }}\n")

    result = sop("validate", "sops", "--config", str(config))

    assert result.returncode == 1
    assert f"{config}/templates/overdue.md.j2:3:" in result.stderr
    assert "unknown variable `step.titel`" in result.stderr


def test_serve_and_run_refuse_a_broken_site_template_when_they_load_the_library(repo_root, tmp_path):
    shutil.copytree(repo_root / "config", tmp_path / "config")
    (tmp_path / "sops").mkdir()
    for name in ("traffic-surge", "post-incident-review"):  # the surge and the review its end starts
        shutil.copy(repo_root / "sops" / f"{name}.yaml", tmp_path / "sops")
    (tmp_path / "config" / "templates").mkdir(exist_ok=True)
    (tmp_path / "config" / "templates" / "assigned.md.j2").write_text("# {{ step.title }}\n\nDue {{ step.due_at }\n")

    for only in (None, "traffic-surge"):  # the whole library, and a flow run's own SOP
        with pytest.raises(SpecInvalid) as caught:
            runnable_library(tmp_path, env={}, only=only)
        [error] = caught.value.errors
        assert (error.file, error.line) == (str(tmp_path / "config" / "templates" / "assigned.md.j2"), 3)
        assert "template syntax error" in error.message


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


# --- the fast path for the commonest shapes answers as Jinja's parser does ----------------------

SHAPES = [
    ("{{ steps.a.outcome != 'rejected' }}", True), ("steps.a.b", True), ("a > 3", True), ("x <= -3.5", True),
    ("{{ a }}", True), ("not a", True), ("a == b", True), ("true", True), ("a.__class__", True),
    ("Outage in {{ inputs.region }} now", False), ("{{ a }}{{ b.c }}", False), ("{{a.b}}", False),
    ("{% if a %}x{% endif %}", False), ("{{ a|upper }}", False), ("50% {{ a }}", False), ("{{- a }}", False),
    ("{{ run.id.__class__ }}", False), ("{{ if }}", False), ("{{ a.b }} {# note #}", False),
]


@pytest.mark.parametrize(("text", "expression"), SHAPES)
def test_the_fast_reading_of_a_template_agrees_with_jinja(text: str, expression: bool) -> None:
    from flows.language.expressions import TemplateProblem, _simple_references, parse, references

    fast = _simple_references(text, expression)
    try:
        slow: object = tuple(references(parse(text, expression=expression)))
    except TemplateProblem:
        slow = "refused"
    assert fast is None or fast == slow
