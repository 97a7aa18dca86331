"""Rendering: a lone ``{{ a.b }}`` takes a short path (the intake renders two per alert); it must
render exactly what Jinja renders, and fail the same way."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import UndefinedError

from flows.language.expressions import _compiled, _compiled_text, render, render_text

CONTEXT: dict[str, Any] = {
    "inputs": {"service": "checkout", "count": 3, "ratio": 1.5, "flag": True, "nothing": None, "items": "shadowed",
               "nested": {"deep": "value"}, "list": [1, 2]},
    "trigger": {"labels": {"service": "payments", "severity": "critical"}},
    "config": {"cloud_api": "https://cloud.example"},
}


@pytest.mark.parametrize("template", [
    "{{ inputs.service }}", "{{inputs.count}}", "{{ inputs.ratio }}", "{{ inputs.flag }}", "{{ inputs.nothing }}",
    "{{ inputs.items }}",  # a key that is also a dict method: Jinja's getattr finds the method first
    "{{ inputs.nested.deep }}", "{{ inputs.nested }}", "{{ inputs.list }}", "{{ trigger.labels.service }}",
    "{{ config.cloud_api }}/v1", " {{ inputs.service }}", "{{ inputs.service }}\n", "{{ inputs.service | upper }}",
])  # fmt: skip
def test_a_template_renders_as_jinja_renders_it(template: str) -> None:
    assert render(template, CONTEXT) == _compiled(template).render(**CONTEXT)
    assert render_text(template, CONTEXT) == _compiled_text(template).render(**CONTEXT)


def test_text_people_read_shows_values_as_the_pages_do_and_a_program_gets_them_as_python() -> None:
    template = "Flag: {{ inputs.flag }}, nothing: {{ inputs.nothing }}, list: {{ inputs.list }}"
    assert render_text(template, CONTEXT) == "Flag: yes, nothing: —, list: 1, 2"  # a notify step's message
    assert render(template, CONTEXT) == "Flag: True, nothing: None, list: [1, 2]"  # a command's argument, a header
    assert render_text("{{ inputs.flag }}", CONTEXT) == "yes"  # the short path too


def test_a_lone_path_renders_plain_values_as_text() -> None:
    assert render("{{ trigger.labels.service }}", CONTEXT) == "payments"
    assert render("{{ inputs.count }}", CONTEXT) == "3"
    assert render("{{ inputs.ratio }}", CONTEXT) == "1.5"


@pytest.mark.parametrize("template", ["{{ inputs.missing }}", "{{ nowhere.service }}", "{{ inputs.service.x }}"])
def test_a_missing_variable_fails_as_in_jinja(template: str) -> None:
    with pytest.raises(UndefinedError):
        render(template, CONTEXT)


@pytest.mark.parametrize("template, expected", [
    ("Topic: {{ inputs.nothing | default('not known yet') }}", "Topic: not known yet"),  # an input left out: None
    ("{{ inputs.nothing | d('-') }}", "-"),
    ("{{ inputs.service | default('x') }}", "checkout"),
    ("{{ inputs.count | default('x') }}", "3"),
    ("{{ inputs.flag | default('x') }}", "True"),
    ("{{ '' | default('empty', true) }}", "empty"),
    ("{{ '' | default('empty') }}", ""),
])  # fmt: skip
def test_default_stands_in_for_a_value_left_out(template: str, expected: str) -> None:
    assert render(template, CONTEXT) == expected


def test_a_message_template_default_stands_in_for_none_too() -> None:
    from notifications.templating import environment

    assert environment(None).from_string("{{ x | default('none given') }}").render(x=None) == "none given"


@pytest.mark.parametrize("url", [
    "{{ inputs.url }}/x",
    "{{ config.gw ~ '/' ~ inputs.s }}/x",
    "{{ config.gw }}/v1/{{ inputs.s }}",
    "https://{{ config.host }}/{{ inputs.s }}",
    "https://{{ config.host }}?q={{ inputs.s }}",
    "{{ config.gw }}{{ inputs.s }}",
    "https://api.example/{{ inputs.s }}#{{ config.gw }}",
])
def test_what_sop_validate_takes_for_a_urls_base_is_what_goes_in_unencoded(url: str) -> None:
    # each variable holds `a/b`: in the base it goes in as it is, after the base as a%2Fb
    from flows.language.expressions import render_url, url_base_references

    rendered = render_url(url, {"inputs": {"url": "a/b", "s": "a/b"}, "config": {"gw": "a/b", "host": "a/b"}})
    in_base = {".".join(ref) for ref in url_base_references(url)}
    unencoded = rendered.count("a/b")
    assert unencoded == len(in_base), (rendered, in_base)


def test_a_values_mention_in_text_people_read_pings_nobody_and_the_texts_own_does() -> None:
    values = {"inputs": {"topic": "@everyone look <!channel>, mail li.wei@example.com"}}
    said = "@\u200beveryone look <!\u200bchannel>, mail li.wei@example.com"  # a zero-width space after @ and <!
    assert render_text("@here {{ inputs.topic }}", values) == f"@here {said}"  # the SOP's own @here pings
    assert render_text("{{ inputs.topic }}", values) == said  # the short path too
    assert render("{{ inputs.topic }}", values) == values["inputs"]["topic"]  # a program reads it as it is
