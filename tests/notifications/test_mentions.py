"""A value that would ping a whole chat: a topic typed as ``@everyone look``, an alert's label ``<!channel>``. Each
chat channel is posted the message as its real Apprise plugin sends it, to the session's HTTP receiver on 127.0.0.1
(Discord's, Slack's and Telegram's servers cannot be reached from here: their plugins are pointed at it), and the
posted text is read as that chat reads mentions: the values ping nobody, the SOP author's own ``@here`` still does.
Telegram (HTML parse mode) is posted only the tags it takes: a run's summary table is a list of its rows there."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from flows.language.expressions import render_text
from notifications import Message
from notifications.attempt import prepare, send
from notifications.samples import sample
from notifications.templating import render_message
from tests.notifications.conftest import HttpReceiver

#: a topic typed on a form, or an alert's label: every mention a chat app pings on
TOPIC = "@everyone look <@123456789012345678> <@!42> <@&77> @channel <!channel> @all @here @wang_fang"
#: a notify step's message: its author pings the room on purpose, the topic is a value
NOTIFY = "@here the crisis room is open. Topic: {{ inputs.topic }}\nRun: {{ run.url }}"


def notify_step_message() -> Message:
    """A notify step's message as the engine renders it (``render_text``) and the pager sends it."""
    values = {"inputs": {"topic": TOPIC}, "run": {"url": "http://127.0.0.1:8000/runs/r1"}}
    return Message(title="[P1] " + render_text("Crisis PR: {{ inputs.topic }}", values),
                   body=render_text(NOTIFY, values))


def status_update_page() -> Message:
    """A page of the packaged templates: a status update someone posted, about a run whose subject is a value."""
    ctx = sample("status_update")
    ctx = replace(ctx, level=replace(ctx.level, text=TOPIC), run=replace(ctx.run, subject="@here"))  # type: ignore[arg-type]
    return render_message("status_update", ctx)


@dataclass(frozen=True)
class Chat:
    """A chat channel: its Apprise URL (``{port}`` the receiver's), where its plugin posts, how its server's address
    is pointed at the receiver, the text it is posted, and the mentions that text pings as the chat reads them."""

    url: str
    path: str
    posted: Callable[[Any], str]
    pings: re.Pattern[str]
    server: tuple[str, str] | None = None  # the plugin's attribute naming its (off-machine) server, and its stand-in


def _strings(value: Any) -> str:
    """Every text of a JSON payload, one per line (Slack's blocks and attachments)."""
    if isinstance(value, dict):
        return "\n".join(_strings(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(_strings(v) for v in value)
    return value if isinstance(value, str) else ""


CHATS = {
    "discord": Chat("discord://1234/abcd", "/discord/1234/abcd", lambda p: p["content"],
                    re.compile(r"@(?:everyone|here)|<@[!&]?\d+>"), ("notify_url", "/discord")),
    "slack": Chat("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#pr", "/says/ok/T1JJ3T3L2", _strings,
                  re.compile(r"<[!@][^>]*>"), ("webhook_url", "/says/ok")),
    "mattermost": Chat("mmost://127.0.0.1:{port}/mm-token", "/hooks/mm-token", lambda p: p["text"],
                       re.compile(r"(?<![\w@])@[a-z0-9._-]+|<!(?:channel|here|all|everyone)>", re.I)),
    "rocket.chat": Chat("rocket://abcdef/ghijkl@127.0.0.1:{port}/#pr", "/hooks/abcdef/ghijkl", lambda p: p["text"],
                        re.compile(r"(?<![\w@])@[a-z0-9._-]+", re.I)),
    "telegram": Chat("tgram://123456789:abcdefg_hijklmnop/-1001234/", "/tg/bot123456789", lambda p: p["text"],
                     re.compile(r"(?<![\w@])@[a-z0-9_]{5,32}", re.I), ("notify_url", "/tg/bot")),
}
#: what the author's ``@here`` is to each chat: Slack pings only ``<!here>`` (and takes no markup from a message
#: it is handed as HTML), a Telegram username has five characters or more
AUTHORS_PING = {"discord": ["@here"], "slack": [], "mattermost": ["@here"], "rocket.chat": ["@here"], "telegram": []}
#: the tags Telegram's HTML parse mode takes (https://core.telegram.org/bots/api#html-style)
TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "tg-emoji",
                 "code", "pre", "blockquote"}


def post(http: HttpReceiver, name: str, message: Message) -> str:
    """``message`` sent to the chat ``name`` by its plugin, as its server receives it: the posted text."""
    chat = CHATS[name]
    url = chat.url.format(port=http.port)
    plugin, problem = prepare(url, timeout=5)
    assert plugin is not None, problem
    if chat.server is not None:
        attribute, path = chat.server
        setattr(plugin, attribute, f"http://127.0.0.1:{http.port}{path}")
    outcome = send(plugin, url, message)
    assert outcome.ok, outcome.error
    [request] = http.to(chat.path)
    return chat.posted(request.json)


@pytest.mark.parametrize("name", CHATS)
def test_a_values_mentions_ping_nobody_but_the_sop_authors_own_mention_does(http: HttpReceiver, name: str) -> None:
    text = post(http, name, notify_step_message())
    assert CHATS[name].pings.findall(text) == AUTHORS_PING[name], text
    assert "everyone look" in text.replace("\u200b", "")  # the value reads as it was typed
    read = html.unescape(text).replace("\\", "")  # as the chat shows it: its escapes (Slack's &lt;, ``\<``) undone
    assert "Topic: @\u200beveryone look <@\u200b123456789012345678>" in read


@pytest.mark.parametrize("name", CHATS)
def test_a_page_of_the_templates_pings_nobody_with_a_value(http: HttpReceiver, name: str) -> None:
    text = post(http, name, status_update_page())
    assert CHATS[name].pings.findall(text) == [], text
    assert "@\u200beveryone look" in text and "Crisis PR response · @\u200bhere" in text


def test_telegram_is_posted_a_runs_summary_as_lines_it_takes(http: HttpReceiver) -> None:
    text = post(http, "telegram", render_message("run_finished", sample("run_finished")))
    assert set(re.findall(r"</?([a-zA-Z][\w-]*)", text)) <= TELEGRAM_TAGS, text  # no <table>: it refused the page
    assert "Publish a holding statement (<code>holding-statement</code>) — state: done, by: chen-jie, on time: no" \
           in text
    assert json.dumps(text).count("Rate-limit the gateway (<code>rate-limit</code>)") == 1  # its row, once
