"""An input a person gives empty is no value: a required one, or one with a default, is refused by name; an optional
one without a default is none; a signal's empty text stays its word."""

from __future__ import annotations

import pytest

from flows.engine.inputs import InputRefused, check_inputs
from flows.language.library import load_library


@pytest.fixture(scope="module")
def library(repo_root):
    return load_library(repo_root, env={})


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_required_input_given_blank_is_refused_by_name(library, blank: str) -> None:
    with pytest.raises(InputRefused) as refused:
        check_inputs(library.sops["creative-refresh"].sop, {"platform": blank})
    assert refused.value.problems == [f"input `platform` is required (string), got {blank!r}: give a value"]


def test_an_optional_input_given_blank_counts_as_not_given(library) -> None:
    inputs = check_inputs(library.sops["crisis-pr"].sop, {"topic": "  ", "mentions_per_day": ""})
    assert inputs == {"brand": "lumi", "topic": None, "mentions_per_day": None}


def test_an_input_with_a_default_given_blank_is_refused_not_defaulted(library) -> None:
    # `-p brand=$BRAND` with the variable unset: not the default brand's crisis, quietly
    with pytest.raises(InputRefused) as refused:
        check_inputs(library.sops["crisis-pr"].sop, {"brand": ""})
    assert refused.value.problems == ["input `brand` was given empty (''): give a value, or leave it out for its "
                                      "default ('lumi')"]


def test_a_signals_empty_text_stays_its_word(library) -> None:
    # an alert without a brand label is not lumi's run (flows.triggers.intake.given), nor refused
    assert check_inputs(library.sops["crisis-pr"].sop, {"brand": ""}, rendered=True)["brand"] == ""


def test_sop_run_with_an_empty_required_input_says_which_and_starts_nothing(sop) -> None:
    result = sop("run", "creative-refresh", "-p", "platform=", timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "✗ input `platform` is required (string), got '': give a value" in result.stderr
    assert "error: the inputs do not fit creative-refresh" in result.stderr
