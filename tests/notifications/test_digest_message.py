"""A digest as its reader gets it: one message listing every kept page, most urgent class first, each run once with
its link, each page with its time in the reader's zone; in every channel the project formats (HTML e-mail,
Telegram's HTML, a markdown chat, plain text) with nothing disguised and no table."""

from __future__ import annotations

from datetime import UTC, datetime

import apprise
import pytest

from notifications import Recipient
from notifications.digest import DigestItem, digest_message
from notifications.markup import for_channel

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai
LI_WEI = Recipient(id="li-wei", name="Li Wei", kind="person", urls=("inbox://li-wei",), timezone="Asia/Shanghai")
OUTAGE_URL = "http://127.0.0.1:8000/runs/r-outage"
CRISIS_URL = "http://127.0.0.1:8000/runs/r-zz-crisis"
ITEMS = [
    DigestItem("step_done", 2, "[P2] Done: Scale out (Traffic surge · checkout) by tom-becker", "Traffic surge · checkout",
               OUTAGE_URL, T0),
    DigestItem("run_finished", 2, "[P2] Finished: Traffic surge · checkout, run r-outage", "Traffic surge · checkout",
               OUTAGE_URL, T0.replace(minute=7)),
    DigestItem("step_held", 1, "[P1] Paused: Publish (Crisis PR · [lumi](https://evil.example/x)), on hold for legal",
               "Crisis PR · [lumi](https://evil.example/x)", CRISIS_URL, T0.replace(minute=3)),
]


def test_the_digest_lists_every_item_most_urgent_class_first_in_the_readers_zone() -> None:
    message = digest_message(ITEMS, LI_WEI)
    assert message.title == "[P1] Digest: 3 updates in 2 run(s), nothing asked of you"
    assert (message.priority, message.notify_type, message.kind) == (1, "info", "digest")
    body = message.body
    assert body.index(CRISIS_URL) < body.index(OUTAGE_URL)  # the complaint's run before the outage's
    assert "- 14:03 Paused: Publish, on hold for legal" in body  # its run said once, on its run's line
    assert body.index("- 14:00 Done: Scale out by tom-becker") < body.index("- 14:07 Finished:")
    assert body.count(OUTAGE_URL) == 1 and "(complaint)" in body and "(outage)" in body
    assert "since 14:00 (Asia/Shanghai)" in body


@pytest.mark.parametrize("url", [
    "mailto://user:pass@example.com",  # HTML e-mail
    "tgram://123456789:ABCdefGhIJKlmnoPQRsTUVwxyZ/12345",  # Telegram: HTML without tables
    "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops",  # a markdown chat (handed HTML, as Apprise wants)
    "json://127.0.0.1:9/hook",  # plain text
])
def test_every_channel_gets_each_item_and_its_run_link_with_nothing_disguised(url: str) -> None:
    plugin = apprise.Apprise.instantiate(url)
    message = digest_message(ITEMS, LI_WEI)
    handed = for_channel(plugin, message.title, message.body)
    text = handed.body
    for expected in (OUTAGE_URL, CRISIS_URL, "Done: Scale out by tom-becker", "Finished:", "on hold for legal"):
        assert expected in text, (url, text)
    assert "<table" not in text and "<a " not in text, text
    assert "lumi (https://evil.example/x)" in text  # a link typed into a subject shows its address


def test_a_digest_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        digest_message([], LI_WEI)


DRILL_URL = "http://127.0.0.1:8000/runs/r-drill"
DRILL_ITEMS = [
    DigestItem("step_done", 1, "[DRILL] [P1] Done: Assess scope (Crisis PR · lumi) by Chen Jie", "Crisis PR · lumi",
               DRILL_URL, T0),
    DigestItem("status_update", 1, "[DRILL] [P1] Status update: Crisis PR · lumi, run r-drill", "Crisis PR · lumi",
               DRILL_URL, T0.replace(minute=5)),
]


def test_a_digest_of_a_drill_says_drill_where_a_real_p1_would_be_read() -> None:
    """Li Wei's digest of a game day arrives its window after the drill, when it is over: a `[P1] Digest` with the
    crisis' run line read as a real P1 crisis, and its items as `[DRILL] [P1] Done…` (the `[P1]` left in)."""
    message = digest_message(DRILL_ITEMS, LI_WEI)
    assert message.title == "[DRILL] [P1] Digest: 2 updates in 1 run(s), nothing asked of you"
    assert f"**[DRILL] [P1] Crisis PR · lumi** (complaint, a drill): {DRILL_URL}" in message.body
    assert "- 14:00 Done: Assess scope by Chen Jie" in message.body
    assert "- 14:05 Status update: Crisis PR · lumi, run r-drill" in message.body


def test_a_digest_with_a_drill_and_real_runs_is_as_urgent_as_its_real_runs() -> None:
    message = digest_message(DRILL_ITEMS + ITEMS[:2], LI_WEI)  # the drill's P1, a real P2 outage
    assert message.title == "[P2] Digest: 4 updates in 2 run(s) (1 of them a drill), nothing asked of you"
    assert message.priority == 2
    assert "**[P2] Traffic surge · checkout** (outage): " in message.body
    assert "**[DRILL] [P1] Crisis PR · lumi** (complaint, a drill): " in message.body
