"""A field's choices: what a person is shown for each (its ``enum_labels`` entry, else the id in words), and a
choice's value that reads as its label in text people read and as its id to every program."""

from __future__ import annotations

import json
import pickle

import pytest
import yaml

from flows.language.expressions import evaluate, render, render_text, render_url, render_value
from flows.language.fields import FieldSpec

CATEGORY = FieldSpec(enum=["product_quality", "rumour_or_fake", "every-4-hours", "Weibo"],
                     enum_labels={"rumour_or_fake": "Rumour or fake news"})


def test_each_choice_is_shown_by_its_label_else_in_words_else_as_written() -> None:
    assert CATEGORY.choices == [("product_quality", "Product quality"), ("rumour_or_fake", "Rumour or fake news"),
                                ("every-4-hours", "Every 4 hours"), ("Weibo", "Weibo")]
    level = FieldSpec(type="integer", enum=[1, 2, 3], enum_labels={3: "3 (stop selling)"})
    assert level.choices == [(1, "1"), (2, "2"), (3, "3 (stop selling)")]
    assert CATEGORY.choice_label("rumour") is None  # not a choice


def test_a_person_may_name_a_choice_by_its_id_or_its_label_in_any_case() -> None:
    assert CATEGORY.choice_named("PRODUCT_QUALITY") == "product_quality"
    assert CATEGORY.choice_named(" product quality ") == "product_quality"
    assert CATEGORY.choice_named("rumour or FAKE news") == "rumour_or_fake"
    assert CATEGORY.choice_named("fake news") is None
    assert FieldSpec(type="integer", enum=[1, 2, 3], enum_labels={3: "Stop selling"}).choice_named("stop selling") == 3


def test_a_choice_reads_as_its_label_in_text_people_read_and_as_its_id_everywhere_else() -> None:
    context = {"steps": {"assess": {"category": CATEGORY.labelled("rumour_or_fake")}}}
    assert render_text("Category: {{ steps.assess.category }}", context) == "Category: Rumour or fake news"
    assert render_text("{{ steps.assess.category }}", context) == "Rumour or fake news"  # a lone path too
    assert render_text("{% if steps.assess.category == 'rumour_or_fake' %}fake{% endif %}", context) == "fake"
    assert evaluate("steps.assess.category in ['rumour_or_fake']", context) is True  # a `when`
    assert render("{{ steps.assess.category }}", context) == "rumour_or_fake"  # a command, a header, a dedup key
    assert render_url("https://x.example/c/{{ steps.assess.category }}", context) == "https://x.example/c/rumour_or_fake"
    assert json.dumps(render_value({"c": "{{ steps.assess.category }}"}, context)) == '{"c": "rumour_or_fake"}'
    assert json.dumps(context["steps"]["assess"]) == '{"category": "rumour_or_fake"}'  # a check's result, stored
    assert pickle.loads(pickle.dumps(context["steps"]["assess"]["category"])).label == "Rumour or fake news"
    number = FieldSpec(type="integer", enum=[1, 3], enum_labels={3: "3 (stop selling)"}).labelled(3)
    assert render_text("level {{ inputs.level }}", {"inputs": {"level": number}}) == "level 3 (stop selling)"
    assert number + 1 == 4 and json.dumps(number) == "3"


def test_inside_the_sops_sentence_a_choice_in_words_reads_as_its_id_is_written_not_capitalised() -> None:
    from flows.language.fields import in_words
    from flows.language.presentation import shown

    context = {"c": CATEGORY.labelled("product_quality"), "r": CATEGORY.labelled("rumour_or_fake")}
    assert render_text("Crisis PR ({{ c }}), {{ r }}", context) == "Crisis PR (product quality), Rumour or fake news"
    assert render_text("{{ c }}", context) == "product quality"  # a lone path too
    assert shown(context["c"]) == "Product quality"  # alone (a page's value, a select): a label, capitalised
    assert pickle.loads(pickle.dumps(context["c"])).in_text == "product quality"
    assert in_words("max_CPU_load") == "Max CPU load"  # a capital within a name stays


@pytest.mark.parametrize("field", ['{type: integer, multiline: true}', '{type: string, enum: [a, b], multiline: true}'])
def test_multiline_is_for_a_string_written_freely(field: str) -> None:
    with pytest.raises(Exception) as refused:
        FieldSpec.model_validate(yaml.safe_load(field))
    assert "multiline applies to a string field written freely (no `enum`)" in str(refused.value)
