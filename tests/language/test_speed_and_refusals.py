"""A run's time compression has one documented range, and the CLI refuses clearly what it cannot take.

``SPEED_MIN``/``SPEED_MAX`` live in ``flows.language.durations`` beside ``MAX_DURATION``: together
they bound the furthest instant a run can arm, so no start, timer or view can overflow.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from flows.language.durations import MAX_DURATION, SPEED_MAX, SPEED_MIN, check_speed, parse_duration


@pytest.mark.parametrize("speed", [0, -1, 0.0009, 1e-300, 100_001, 1e308, math.inf, -math.inf, math.nan])
def test_a_speed_outside_the_range_is_refused(speed: float) -> None:
    assert check_speed(speed) == f"speed must be a number from 0.001 to 100000, got {speed!r}"


@pytest.mark.parametrize("speed", [SPEED_MIN, 1, 120, 3600, SPEED_MAX])
def test_a_speed_inside_the_range_is_taken(speed: float) -> None:
    assert check_speed(speed) is None


def test_the_longest_duration_at_the_slowest_speed_is_still_a_date() -> None:
    # what overflowed before: `deadline: 99999999d` passed, then `now + deadline / speed` raised
    with pytest.raises(ValueError, match="a duration must be at most 366d"):
        parse_duration("99999999d")
    assert datetime.now(UTC) + MAX_DURATION / SPEED_MIN < datetime(9999, 1, 1, tzinfo=UTC)


def test_the_engine_refuses_a_speed_out_of_range_before_writing_anything(repo_root) -> None:
    from flows.engine.transitions import Engine, InputRefused
    from flows.language.library import load_library

    library = load_library(repo_root, env={})
    engine = SimpleNamespace(library=library, site=library.site)  # nothing else is reached before the refusal
    for speed in (1e308, 1e-300, 0, math.nan):
        with pytest.raises(InputRefused, match="speed must be a number from 0.001 to 100000"):
            Engine.start(engine, "crisis-pr", {"brand": "acme"}, speed=speed)  # type: ignore[arg-type]


# --- the CLI --------------------------------------------------------------------------------


def test_sop_drill_without_a_required_input_says_which_like_sop_run(sop) -> None:
    result = sop("drill", "creative-refresh", timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "✗ input `platform` is required (string)" in result.stderr
    assert "error: the inputs do not fit creative-refresh" in result.stderr
    assert "stack:" not in result.stdout  # refused before starting anything


@pytest.mark.parametrize("command", [("drill", "crisis-pr"), ("run", "crisis-pr")])
@pytest.mark.parametrize("speed", ["1e308", "0", "1e-300"])
def test_sop_drill_and_run_refuse_a_speed_out_of_range(sop, command: tuple[str, str], speed: str) -> None:
    result = sop(*command, "--speed", speed, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "error: --speed must be a number from 0.001 to 100000" in result.stderr


def test_a_name_that_looks_like_console_markup_is_printed_as_written(sop) -> None:
    result = sop("show", "[/]x", timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr
    assert "[/]x" in result.stderr


def test_sop_list_and_show_print_an_sops_text_as_written(sop, tmp_path, repo_root) -> None:
    # a title with `[/]` ended `sop list` and `sop show` in rich.errors.MarkupError
    import shutil

    shutil.copytree(repo_root / "config", tmp_path / "config")
    (tmp_path / "sops").mkdir()
    (tmp_path / "sops" / "markup.yaml").write_text(
        'id: markup\ntitle: "Fix [/] now [bold]"\nclass: outage\nowner: sre-oncall\nsteps:\n'
        '  - id: look\n    title: "[/]look"\n    assignee: sre-oncall\n', encoding="utf-8")
    for command in (("list",), ("show", "markup")):
        result = sop(*command, env={"SOP_HOME": str(tmp_path)}, cwd=tmp_path, timeout=60)
        assert result.returncode == 0, result.stderr[-500:]
        assert "Fix [/] now [bold]" in result.stdout
    assert "[/]look" in result.stdout



@pytest.mark.parametrize("text", ["٣", "５", "3５"])
def test_a_number_in_other_digits_is_refused_not_read_as_ours(text: str) -> None:
    from flows.language.fields import FieldSpec

    for kind in ("integer", "number"):
        with pytest.raises(ValueError, match="in the digits 0-9"):
            FieldSpec(type=kind).coerce(text)
    assert FieldSpec(type="integer").coerce("35") == 35
