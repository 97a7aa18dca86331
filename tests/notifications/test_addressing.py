"""Addressing: people, roles (primary, backup) and channels become recipients with URL templates."""

from __future__ import annotations

from typing import Any

import pytest

from flows.language.config import expand_env, missing_env
from notifications import UnknownTarget, recipients

ROLES = {
    "pr-oncall": {
        "members": ["wang-fang", "sara-lopez", "chen-jie"],
        "primary": "wang-fang",
        "backup": "sara-lopez",
        "lead": "pr-lead",
    },
    "pr-lead": {"members": ["chen-jie", "wang-fang"], "primary": "chen-jie", "backup": "wang-fang", "lead": "none"},
}


@pytest.fixture
def site(make_site: Any) -> Any:
    return make_site(
        {
            "wang-fang": ["${WANG_FANG_URL:-inbox://wang-fang}", "mailto://127.0.0.1?to=wang@example.com"],
            "sara-lopez": ["inbox://sara-lopez"],
            "chen-jie": ["inbox://chen-jie"],
        },
        roles=ROLES,
        channels={"ops-broadcast": ["inbox://ops-room", "json://127.0.0.1/ops"]},
        timezones={"wang-fang": "Asia/Shanghai", "sara-lopez": "Europe/Madrid"},
    )


def test_a_person_keeps_their_contacts_in_order_as_templates(site: Any) -> None:
    [person] = recipients(["wang-fang"], site)
    assert (person.id, person.name, person.kind, person.timezone) == (
        "wang-fang",
        "Wang Fang",
        "person",
        "Asia/Shanghai",
    )
    assert person.urls == ("${WANG_FANG_URL:-inbox://wang-fang}", "mailto://127.0.0.1?to=wang@example.com")
    assert person.fallback is True  # contacts are tried in order until one works


def test_a_role_is_its_primary_and_with_backup_also_its_backup(site: Any) -> None:
    assert [(r.id, r.via) for r in recipients(["pr-oncall"], site)] == [("wang-fang", "role pr-oncall (primary)")]
    both = recipients(["pr-oncall"], site, backup=True)
    assert [(r.id, r.via) for r in both] == [
        ("wang-fang", "role pr-oncall (primary)"),
        ("sara-lopez", "role pr-oncall (backup)"),
    ]


def test_a_channel_broadcasts_to_every_url(site: Any) -> None:
    [room] = recipients(["ops-broadcast"], site)
    assert (room.kind, room.urls, room.fallback) == ("channel", ("inbox://ops-room", "json://127.0.0.1/ops"), False)
    assert room.timezone == "Asia/Shanghai"  # a channel reads the site's time zone


def test_someone_reached_twice_is_told_once(site: Any) -> None:
    found = recipients(["pr-lead", "chen-jie", "role:pr-oncall", "person:wang-fang"], site)
    assert [r.id for r in found] == ["chen-jie", "wang-fang"]
    assert found[0].via == "role pr-lead (primary)"


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("nobody", "unknown notify target `nobody`"),
        ("assignee", "ladder words assignee, owner, lead and backup must be resolved"),
        ("role:wang-fang", "unknown role `wang-fang`"),
        ("team:pr", "unknown target kind `team`"),
    ],
)
def test_an_unknown_target_is_an_error_that_names_it(site: Any, target: str, says: str) -> None:
    with pytest.raises(UnknownTarget, match=says.replace("(", r"\(")):
        recipients([target], site)


def test_only_an_environment_value_is_url_quoted_never_a_default() -> None:
    template = "json://ops:${HOOK_PASSWORD:-pass/word@1}@127.0.0.1/hook"
    written = "json://ops:pass/word@1@127.0.0.1/hook"  # the default is URL text, taken as written
    assert expand_env(template, {}) == written
    assert expand_env(template, {"HOOK_PASSWORD": ""}) == written  # empty counts as unset: the default, as is
    assert expand_env(template, {"HOOK_PASSWORD": "s3cr/t@x"}) == "json://ops:s3cr%2Ft%40x@127.0.0.1/hook"


def test_an_empty_variable_without_default_is_missing_at_validation_and_at_send_time() -> None:
    assert missing_env("${HOOK_URL}", {"HOOK_URL": ""}) == ["HOOK_URL"]
    assert missing_env("${HOOK_URL:-inbox://ops}", {"HOOK_URL": ""}) == []
    with pytest.raises(KeyError):
        expand_env("${HOOK_URL}", {"HOOK_URL": ""})
