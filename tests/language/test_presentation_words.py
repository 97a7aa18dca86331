"""Words a page shows for what the records keep as ids and kinds: an audit's text in names and titles, a page's kind, a
channel's kind (flows.language.presentation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.language.library import load_library
from flows.language.presentation import channel_kind, names_in, page_kind

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site() -> object:
    return load_library(ROOT).site


def test_an_audit_text_names_people_and_roles_and_leaves_every_other_word(site: object) -> None:
    assert names_in(site, "manual by li-wei") == "manual by Li Wei 李伟"
    assert names_in(site, "li-wei for wang-fang (api)") == "Li Wei 李伟 for Wang Fang 王芳 (api)"
    said = names_in(site, "`li-wei` is not a member of `sre-oncall` (zhao-lei, kenji-sato): add them in config/ first")
    assert said == "Li Wei 李伟 is not a member of SRE on-call (Zhao Lei 赵磊, Kenji Sato): add them in config/ first"
    # an id inside a longer word, an unknown id in backticks, a machine: as written
    assert names_in(site, "li-wei-2 `nobody` alertmanager (cli, os user root)") == \
        "li-wei-2 `nobody` alertmanager (cli, os user root)"
    assert names_in(site, None) == ""


def test_a_page_and_its_channel_read_in_words() -> None:
    assert [page_kind(k) for k in ("run_started", "status_update", "automation_failed")] == [
        "Run started", "Status update", "Automated step failed"]
    assert channel_kind("inbox://tom-becker") == "inbox"
    assert channel_kind("mailtos://s***@example.com") == "e-mail"
    assert channel_kind("ntfys://ntfy.sh/****") == "ntfy"
    assert channel_kind("digest") == "digest" and channel_kind("—") == "—"
    assert channel_kind("matrix://…") == "matrix"  # a scheme without a name of ours reads as itself
