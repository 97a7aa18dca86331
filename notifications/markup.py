"""What a channel is handed: a message's markdown made so that no value in it can disguise a link.

A value typed on a form or taken from an alert's label lands in a message's markdown. Written as
``[your run](https://evil/login)`` it would read "your run" and open another site; written as ``<a …>`` or
``![x](https://tracker/p.png)`` it would be a link or a tracking pixel. Every channel gets the message so that
a link shows its address after its text (``your run (https://evil/login)``), and nothing a value holds becomes
an image or HTML:

- a channel Apprise formats (HTML: e-mail, Telegram; markdown: Slack, Rocket.Chat, Google Chat) gets
  :func:`html`, and Apprise turns that HTML into the channel's own markup, escaping the text as that markup
  needs (Slack's ``<url|text>``, Telegram's entities). Handed markdown, Apprise would take it as the channel's
  native markup: Slack's ``<https://evil|your run>`` and ``<!channel>`` from a value passed as they are, and
  Telegram's HTML got ``<a href>`` for every link;
- a channel Apprise sends as text (ntfy, Pushover, JSON; also Discord and Mattermost, whose apps show markdown
  anyway) gets the markdown as written, but with every link and image (and Slack's ``<url|text>``, which
  Mattermost takes as a link) as its text and address (:func:`plain_markdown`), so whoever reads it as text or
  as markdown sees the address.

:func:`for_channel` picks one per Apprise plugin, and the body for its reader: a page with the reader's own link has
a shorter one for a phone's channel (:func:`at_a_desk`).
"""

from __future__ import annotations

import functools
import html as html_lib
import re
from typing import Any, NamedTuple

import apprise
from apprise.plugins.custom_form import NotifyForm
from apprise.plugins.custom_json import NotifyJSON
from apprise.plugins.custom_xml import NotifyXML
from apprise.plugins.email import NotifyEmail
from apprise.plugins.telegram import NotifyTelegram
from markdown_it import MarkdownIt, rules_inline
from markdown_it.rules_core import StateCore
from markdown_it.rules_inline.state_inline import StateInline
from markdown_it.token import Token

#: how many times :func:`plain_markdown` rewrites the links its last rewrite made (``[[a](x)](y)`` needs two)
_MAX_PASSES = 8
_BRACKETS = re.compile(r"([\[\]])")
#: Slack's link, ``<https://evil/login|your run>``: Mattermost's webhooks turn it into a markdown link (Slack-compatible)
_SLACK_LINK = re.compile(r"<((?:https?://|mailto:)[^\s|<>]+)\|([^<>\n]*)>")
#: what every link or image that :func:`_rewritten` rewrites holds (CommonMark): an inline one's ``](`` (its text
#: closed, its destination opened at once), or a reference definition's ``]:`` (a reference link such as ``[x][r]``
#: or ``[r]`` is a link only where ``[r]: …`` defines it). Text without either has none: nothing to parse
_MAY_LINK = re.compile(r"\]\(|\]:")


class ChannelMessage(NamedTuple):
    """A message as one Apprise plugin is handed it."""

    title: str
    body: str
    body_format: apprise.NotifyFormat


def _rows_as_items(state: StateCore) -> None:
    """Each table as a list, a body row an item: its first cell, then each other cell after its column's heading
    (``Assess scope (assess) — state: done, by: wang-fang, on time: yes``)."""
    tokens, out, i = state.tokens, [], 0
    while i < len(tokens):
        if tokens[i].type != "table_open":
            out.append(tokens[i])
            i += 1
            continue
        end = next(j for j in range(i, len(tokens)) if tokens[j].type == "table_close")
        rows: list[list[Token]] = []
        for token in tokens[i:end]:
            if token.type == "tr_open":
                rows.append([])
            elif token.type == "inline":
                rows[-1].append(token)
        heads = ["".join(child.content for child in cell.children or []) for cell in rows[0]] if rows else []
        out.append(Token("bullet_list_open", "ul", 1))
        for row in rows[1:]:
            children = list(row[0].children or []) if row else []
            for n, cell in enumerate(row[1:], 1):
                said = f"{heads[n]}: " if n < len(heads) and heads[n] else ""
                children += [Token("text", "", 0, content=(" — " if n == 1 else ", ") + said), *(cell.children or [])]
            out += [Token("list_item_open", "li", 1), Token("paragraph_open", "p", 1, hidden=True),
                    Token("inline", "", 0, children=children), Token("paragraph_close", "p", -1, hidden=True),
                    Token("list_item_close", "li", -1)]
        out.append(Token("bullet_list_close", "ul", -1))
        i = end + 1
    state.tokens = out


@functools.cache
def _html_markdown(tables: bool = True) -> MarkdownIt:
    """Markdown for HTML: raw HTML off (a value's ``<img …>`` or ``<a …>`` is shown as the text it is), no images
    (a value's ``![x](https://tracker/p.png)`` would be a tracking pixel), and a link shown with its address after
    its text and no anchor (``[your run](https://evil/login)`` reads ``your run (https://evil/login)``: nothing
    disguised; mail programs and chat apps make the bare address a link). ``tables`` False: a table is a list of
    its rows (:func:`_rows_as_items`)."""
    md = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table").disable("image")  # breaks: as nl2br
    if not tables:
        md.core.ruler.push("rows_as_items", _rows_as_items)

    def link_open(_renderer: Any, tokens: Any, idx: int, _options: Any, _env: Any) -> str:
        return ""

    def link_close(_renderer: Any, tokens: Any, idx: int, _options: Any, _env: Any) -> str:
        start = next(i for i in range(idx - 1, -1, -1) if tokens[i].type == "link_open")
        href = str(tokens[start].attrGet("href") or "")
        text = "".join(t.content for t in tokens[start + 1 : idx])
        return "" if text == href else f" ({md.utils.escapeHtml(href)})"  # type: ignore[attr-defined]

    md.add_render_rule("link_open", link_open)
    md.add_render_rule("link_close", link_close)
    return md


def html(markdown_text: str, tables: bool = True) -> str:
    """A message's markdown as HTML in which no value is markup (:func:`_html_markdown`); ``tables`` False: for a
    channel whose HTML has none, each table a list of its rows."""
    return str(_html_markdown(tables).render(markdown_text))


def _has_tables(plugin: Any) -> bool:
    """Whether a channel's HTML shows a table. Telegram's HTML parse mode takes b, i, u, s, a, code, pre, blockquote
    and little more, and refuses a whole message with a ``<table>`` in it ("can't parse entities: Unsupported start
    tag"): a run's summary never arrived there."""
    return not isinstance(plugin, NotifyTelegram)


class _Span(NamedTuple):
    """A link or an image in an inline run's source: where it is, and what it reads as text."""

    start: int
    end: int
    text: str


@functools.cache
def _span_markdown() -> MarkdownIt:
    """A CommonMark parser that notes, for each inline run, where its links and images are (``env["spans"]``)."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")

    def noting(name: str, rule: Any) -> Any:
        def noted(state: StateInline, silent: bool) -> bool:
            start, first = state.pos, len(state.tokens)
            if not rule(state, silent):
                return False
            if not silent:
                at = next(i for i in range(first, len(state.tokens)) if state.tokens[i].type in ("link_open", "image"))
                opened = state.tokens[at]  # after the text before it, which the rule pushed first
                href = str(opened.attrGet("href") or opened.attrGet("src") or "")
                if name == "image":
                    text = opened.content
                else:
                    text = "".join(" " if t.type == "softbreak" else t.content for t in state.tokens[at + 1 : -1])
                shown = f"{_escaped(text)} ({href})" if text and text != href else href
                state.env.setdefault("spans", {}).setdefault(state.src, set()).add(_Span(start, state.pos, shown))
            return True

        return noted

    md.inline.ruler.at("link", noting("link", rules_inline.link))
    md.inline.ruler.at("image", noting("image", rules_inline.image))
    return md


def _escaped(text: str) -> str:
    """Text in which no bracket opens a link (``\\[``)."""
    return _BRACKETS.sub(r"\\\1", text)


def _rewritten(source: str) -> str | None:
    """``source`` with each link and image written as its text and address; None when it has none.

    Markdown-it says where a link is only within its inline run; the run is found again in the source lines it
    came from (a paragraph's continuation lines carry their list indent or quote ``>`` there). The same link
    written twice in one run, or in a code span beside it, is rewritten everywhere in those lines.
    """
    if not _MAY_LINK.search(source):  # most messages: parsing them would find none (docs/benchmarks.md, pager)
        return None
    env: dict[str, Any] = {}
    tokens = _span_markdown().parse(source, env)
    found: dict[str, set[_Span]] = env.get("spans", {})
    if not found:
        return None
    lines = source.split("\n")
    for token in reversed([t for t in tokens if t.type == "inline" and t.content in found and t.map]):
        spans = found[token.content]
        outer = [s for s in spans if not any(o != s and o.start <= s.start and s.end <= o.end for o in spans)]
        first, last = token.map  # type: ignore[misc]
        region = "\n".join(lines[first:last])
        for span in sorted(outer, reverse=True):
            written = token.content[span.start : span.end]
            pattern = r"(?<!\\)" + r"\n[ \t>]*".join(re.escape(part.lstrip()) for part in written.split("\n"))
            region = re.sub(pattern, lambda _, text=span.text: text, region)
        lines[first:last] = region.split("\n")
    return "\n".join(lines)


def _without_slack_links(text: str) -> str:
    """Each of Slack's ``<https://evil/login|your run>`` as ``your run (https://evil/login)``, until none is left
    (``<https://a|<https://b|x>>`` holds two; each rewrite takes a ``<`` away, so it ends)."""
    while (rewritten := _SLACK_LINK.sub(lambda m: f"{m[2].strip()} ({m[1]})" if m[2].strip() else m[1], text)) != text:
        text = rewritten
    return text


def plain_markdown(markdown_text: str) -> str:
    """The markdown as written, but every link and image as its text and address (``your run
    (https://evil/login)``, ``x (https://tracker/p.png)``): read as text or shown as markdown, nothing is
    disguised. Code, emphasis, lists and tables stay as they are. Slack's ``<https://evil/login|your run>``, which
    Mattermost's webhooks take as a link, reads ``your run (https://evil/login)`` too, code or not."""
    text = markdown_text
    for _ in range(_MAX_PASSES):
        text = _without_slack_links(text)
        rewritten = _rewritten(text)
        if rewritten is None:
            return text
        text = rewritten  # ``[[a](x)](y)`` reads ``[a (x)](y)`` after one pass: a link again
    return _without_slack_links(_escaped(text))  # still a link after so many rewrites: no bracket may open one


#: the channels read at a desk: e-mail, and webhooks whose program passes the message on. Every other channel (push:
#: ntfy, Pushover; chat: Telegram, Slack, Discord…; SMS; the local inbox, which stands in for a phone) is read on a
#: phone, where a page's personal link is the way and the terminal's and the API's ways are noise
DESK_CHANNELS: tuple[type, ...] = (NotifyEmail, NotifyJSON, NotifyXML, NotifyForm)


def at_a_desk(plugin: Any) -> bool:
    """Whether ``plugin``'s channel is read at a desk (:data:`DESK_CHANNELS`), not on a phone."""
    return isinstance(plugin, DESK_CHANNELS)


def for_channel(plugin: Any, title: str, body: str, phone_body: str | None = None) -> ChannelMessage:
    """What ``plugin`` is handed for a message (see the module docstring); a channel read on a phone gets
    ``phone_body`` when the message has one (:func:`at_a_desk`). The title never carries a link either; a channel
    that writes the title into its body as markup (Telegram, Rocket.Chat) gets it escaped as HTML."""
    if phone_body is not None and not at_a_desk(plugin):
        body = phone_body
    title = plain_markdown(title)
    if plugin.notify_format in (apprise.NotifyFormat.HTML, apprise.NotifyFormat.MARKDOWN):
        if plugin.title_maxlen <= 0:  # Apprise converts such a title as it converts the body
            title = html_lib.escape(title, quote=False)
        return ChannelMessage(title, html(body, tables=_has_tables(plugin)), apprise.NotifyFormat.HTML)
    return ChannelMessage(title, plain_markdown(body), apprise.NotifyFormat.MARKDOWN)
