"""A value's markup on chat channels: what Rocket.Chat, a Telegram-like HTML channel, Slack and plain-text channels
are handed when a form's input or an alert's label in a message is written as a link, an image or HTML.

Rocket.Chat (a markdown channel that takes its own host) and JSON webhooks are real Apprise plugins posting to the
session's HTTP receiver on 127.0.0.1; Slack's servers cannot be reached from here, so its test follows Apprise's
own path to the text Slack is posted (see the test).
"""

from __future__ import annotations

import apprise
from apprise.conversion import convert_between
from apprise.plugins.slack import NotifySlack
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from notifications import Message, Recipient, deliver
from notifications.markup import _MAY_LINK, _span_markdown, for_channel, plain_markdown
from tests.notifications.conftest import HttpReceiver

#: a topic typed on a form (or an alert's label) that tries every way to hide where a link goes
TOPIC = ('[your run](https://evil.example/login) ![x](https://tracker.example/p.png) '
         '<a href="https://evil.example/a">Re-authenticate</a> <https://evil.example/s|your run> <!channel>')
BODY = (f"- `topic`: {TOPIC}\n- **Run:** [r1](http://127.0.0.1:8000/runs/r1)\n\n"
        "```sh\nsop done r1 assess -f severity=<low|high>\n```")
MESSAGE = Message(title="[P1] Crisis PR: [your run](https://evil.example/t) <b>now</b>", body=BODY, kind="assigned")


def channel(*urls: str) -> Recipient:
    return Recipient(id="pr-room", name="PR room", kind="channel", urls=urls, fallback=False)


def as_a_markdown_app_shows_it(markdown: str) -> str:
    """The HTML a markdown client (Rocket.Chat, Discord, Mattermost) makes of what it was posted."""
    return MarkdownIt("commonmark", {"html": True}).render(markdown)


def test_a_markdown_channel_shows_every_link_with_its_address(http: HttpReceiver) -> None:
    [result] = deliver(MESSAGE, [channel(http.url("/#pr", schema="rocket", userinfo="abcdef/ghijkl@"))],
                       timeout=2, retries=0)
    assert result.ok, result.error
    [request] = http.to("/hooks/abcdef/ghijkl")
    shown = as_a_markdown_app_shows_it(request.json["text"])
    assert "<a " not in shown and "<img" not in shown and "<b>" not in shown, shown  # nothing disguised, no pixel
    assert "your run (https://evil.example/login)" in shown  # the address after the text
    assert "!x (https://tracker.example/p.png)" in shown
    assert "&lt;a href=&quot;https://evil.example/a&quot;&gt;Re-authenticate&lt;/a&gt;" in shown  # the text given
    assert "r1 (http://127.0.0.1:8000/runs/r1)" in shown  # the run's own link too
    assert "<strong>Run:</strong>" in shown  # markdown is still markdown
    assert "sop done r1 assess -f severity=&lt;low|high&gt;" in shown  # the command as it is typed
    assert "[P1] Crisis PR: your run (https://evil.example/t) &lt;b&gt;now&lt;/b&gt;" in shown  # the title too


def test_an_html_channel_with_the_title_in_its_body_gets_no_link_either(http: HttpReceiver) -> None:
    # Telegram's way (Apprise sends it HTML, the title written into the body); python-markdown made the topic
    # an <a href> and passed <a …> through
    url = http.url("/#pr?format=html", schema="rocket", userinfo="abcdef/ghijkl@")
    [result] = deliver(MESSAGE, [channel(url)], timeout=2, retries=0)
    assert result.ok, result.error
    [request] = http.to("/hooks/abcdef/ghijkl")
    text = request.json["text"]
    assert "<a " not in text and "<img" not in text and "<b>now" not in text, text
    assert "your run (https://evil.example/login)" in text and "Crisis PR: your run (https://evil.example/t)" in text
    assert "&lt;a href=" in text and "&lt;b&gt;now&lt;/b&gt;" in text  # shown as the text that was given


def test_a_text_channel_gets_the_markdown_as_written_but_links_with_their_addresses(http: HttpReceiver) -> None:
    # ntfy, Pushover, webhooks; and Discord and Mattermost, which Apprise sends as text and whose apps show markdown
    # (Mattermost's webhooks also take Slack's <url|text> as a link)
    [result] = deliver(MESSAGE, [channel(http.url("/ok/room"))], timeout=2, retries=0)
    assert result.ok, result.error
    [request] = http.to("/ok/room")
    assert request.json["title"] == "[P1] Crisis PR: your run (https://evil.example/t) <b>now</b>"
    assert request.json["message"] == (
        "- `topic`: your run (https://evil.example/login) x (https://tracker.example/p.png) "
        '<a href="https://evil.example/a">Re-authenticate</a> your run (https://evil.example/s) <!channel>\n'
        "- **Run:** r1 (http://127.0.0.1:8000/runs/r1)\n\n"
        "```sh\nsop done r1 assess -f severity=<low|high>\n```")
    shown = as_a_markdown_app_shows_it(request.json["message"])
    assert '<a href="https://evil.example/a">' in shown  # raw HTML: Discord and Mattermost show it as text
    assert shown.count("<a ") == 1 and "<img" not in shown


def test_slack_is_posted_no_disguised_link_and_no_channel_ping() -> None:
    """Handed markdown, Apprise takes it as Slack's own mrkdwn: a value's ``<https://evil|your run>`` was a link
    reading "your run", and ``<!channel>`` paged the whole channel. Handed HTML, Apprise converts it to CommonMark
    (apprise.py, notify) and Slack's plugin to mrkdwn with ``<`` escaped (slack.py, send): these two steps."""
    plugin = apprise.Apprise.instantiate("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#pr")
    handed = for_channel(plugin, MESSAGE.title, MESSAGE.body)
    assert handed.body_format == apprise.NotifyFormat.HTML
    posted = NotifySlack._commonmark_to_slack(convert_between(handed.body_format, plugin.notify_format, handed.body))
    assert "<https://evil.example/s|your run>" not in posted and "<!channel>" not in posted
    assert "&lt;https://evil.example/s|your run&gt; &lt;!channel&gt;" in posted  # Slack shows the text
    assert "your run (https://evil.example/login)" in posted and "r1 (http://127.0.0.1:8000/runs/r1)" in posted
    assert "*Run:*" in posted  # Slack's bold


def test_a_link_hidden_inside_a_link_is_rewritten_until_none_is_left() -> None:
    assert plain_markdown("[[your run](https://ok.example)](https://evil.example)") == (
        "your run (https://ok.example) (https://evil.example)")
    assert plain_markdown("a [multi\n  line](https://x.example) link\n\n| [c](https://c.example) | d |\n|---|---|") == (
        "a multi line (https://x.example) link\n\n| c (https://c.example) | d |\n|---|---|")
    assert plain_markdown("`[code](https://x.example)` \\[not a link\\](x)") == "`[code](https://x.example)` \\[not a link\\](x)"
    assert plain_markdown("[ref][r]\n\n[r]: https://evil.example") == "ref (https://evil.example)\n\n[r]: https://evil.example"
    assert plain_markdown("<https://a.example|<https://b.example|x>>") == "x (https://b.example) (https://a.example)"
    assert plain_markdown("<https://a.example|[x](<https://b.example>)>") == "x (https://b.example) (https://a.example)"


#: what links, images, reference definitions, code and containers are written with: the pieces the texts below mix
_PIECES = ["[", "]", "(", ")", "!", ":", "<", ">", "|", "`", "\\", " ", "\n", "> ", "- ", "  ", "x", "r",
           "https://e.example", "&#93;", "[r]: https://e.example\n", "| a | b |\n|---|---|\n"]


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join))
def test_a_text_the_quick_look_passes_over_holds_no_link_the_parser_would_find(text: str) -> None:
    """A pager spent a third of its CPU parsing messages that hold no link; it now parses only a text that may
    (:data:`_MAY_LINK`). Whatever it passes over, CommonMark finds no link or image in either."""
    env: dict = {}
    _span_markdown().parse(text, env)
    if not _MAY_LINK.search(text):
        assert not env.get("spans"), f"{text!r} holds a link the quick look missed"


def test_a_message_without_a_link_is_handed_on_as_written_and_one_with_a_link_is_rewritten() -> None:
    title = "[P2] Assigned to you: Take command (Traffic surge · svc-1), 10m left"
    assert plain_markdown(title) == title
    assert plain_markdown("**Open your step:** http://127.0.0.1:8000/s/abc\n\n- **Run:** r1") == (
        "**Open your step:** http://127.0.0.1:8000/s/abc\n\n- **Run:** r1")
    assert plain_markdown("see [r]\n\n> [r]: https://evil.example") == (
        "see r (https://evil.example)\n\n> [r]: https://evil.example")
