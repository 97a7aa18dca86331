"""Keeping secrets out of logs, results and error messages: ``mask_url`` and ``redact``.

An Apprise URL carries its credentials in many shapes: ``mailto://user:pass@host``,
``slack://TokenA/TokenB/TokenC``, ``pover://userkey@apptoken``, ``json://host/path?token=x``,
``tgram://bot:token/chat``. The rules, applied the same way to every schema:

- the user and the password are masked;
- a host is kept when it is a host name (has a dot, or is ``localhost``) or an IP address;
  any other host or path segment is masked when it looks like a token: 16 characters or
  more, 8 or more with a digit, or 6 or more mixing letters and digits (``ntfy://ops-alerts``
  stays readable, ``slack://T1JJ3T3L2/...`` does not), unless it is a path segment of an
  ``http``/``https`` address made of lower-case words joined by ``-`` or ``_``
  (``/v1/circuit-breakers``: an audit keeps where a failed call went); in any other scheme
  (``ntfys://ntfy.sh/<topic>``: the topic is the secret) such a segment is masked as before. An
  e-mail address is kept;
- every query value is masked except those of harmless options (``to``, ``priority``,
  ``format``, ``cto``…, see ``SAFE_OPTIONS``).

``mask_url`` errs on the side of masking: an operator can still tell destinations apart
by schema, host and recipient, and nobody learns a token from a log line. The notifications
mask every destination and delivery error with it; an ``http`` step masks its failure text
(the URL it called holds ``config.*`` values, credentials included).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "****"
#: query options whose values are never secret (compared lower-case)
SAFE_OPTIONS = frozenset(
    {
        "to",
        "cc",
        "bcc",
        "from",
        "name",
        "reply",
        "subject",
        "format",
        "priority",
        "mode",
        "method",
        "overflow",
        "cto",
        "rto",
        "retry",
        "wait",
        "optional",
        "image",
        "avatar",
        "footer",
        "tags",
        "tz",
        "lang",
        "smtp",
        "port",
        "verify",
        "batch",
        "sound",
        "emojis",
        "dir",
        "click",
        "delay",
        "expire",
        "retry_interval",
        "ttl",
        "level",
        "thread",
        "channel",
        "channels",
        "topic_prefix",
        "user_agent",
        "timestamp",
        "blocks",
        "detect",
        "silent",
        "preview",
        "content",
        "mdv",
        "interval",
    }
)
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<rest>.*)$", re.S)
_HOSTNAME = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+(?:[A-Za-z]{2,63}|\d{1,3})\.?$")
_EMAIL = re.compile(r"^[^@\s/]+@[^@\s/]+\.[^@\s/]+$")
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>()]+")
_ONLY_PLACEHOLDERS = re.compile(r"^(\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\})+$")

#: two or more lower-case words joined by ``-`` or ``_``, none longer than 15 letters: a path's name (``circuit-breakers``),
#: kept readable however long; a token has digits, capitals or one long run of letters
_WORDS = re.compile(r"^[a-z]{1,15}(?:[-_][a-z]{1,15})+$")

Piece = tuple[str, bool]  # (text, is it secret)


def mask_url(url: str) -> str:
    """The URL with its credentials and tokens replaced by ``****`` (see the module docstring)."""
    return "".join(MASK if secret and text else text for text, secret in _pieces(url))


def secrets_of(url: str) -> list[str]:
    """The secret parts of a URL, as written and URL-decoded, longest first."""
    found: set[str] = set()
    for text, secret in _pieces(url):
        if secret and text:
            found.update({text, unquote(text)})
            found.update(part for part in unquote(text).split(":") if len(part) >= 6)  # bot:token
    return sorted(found, key=len, reverse=True)


def mask_template(template: str) -> str:
    """A contact as written in config/, masked: ``${LI_WEI_URL}`` is shown as is (it names a
    variable, not its value); anything with a ``://`` goes through :func:`mask_url`."""
    if _ONLY_PLACEHOLDERS.match(template.strip()):
        return template.strip()
    return mask_url(template)


def redact(text: str, *urls: str) -> str:
    """``text`` with each secret part of ``urls`` replaced by ``****`` and every URL in it masked.

    Used on every error text that comes back from Apprise: its messages may quote a URL
    (in Apprise's own half-masked form, ``s...d``), a path with a token, or a user name.
    """
    out = text
    for url in sorted((u for u in urls if u), key=len, reverse=True):
        out = out.replace(url, mask_url(url))
    for url in urls:
        for secret in secrets_of(url) if url else ():
            if len(secret) >= 3:
                out = out.replace(secret, MASK)
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), out)


def _pieces(url: str) -> list[Piece]:
    match = _SCHEME.match(url.strip())
    if not match:
        return [(url, bool(url))]
    rest = match.group("rest")
    pieces: list[Piece] = [(match.group("scheme") + "://", False)]
    before_query, question, query = rest.partition("?")
    # a plain web address's path of words is a place (/v1/circuit-breakers); in an Apprise URL a path of words may
    # be the secret itself (ntfys://ntfy.sh/<topic>: whoever knows the topic reads it)
    web = match.group("scheme").lower() in ("http", "https")
    authority, slash, path = before_query.partition("/")
    pieces += _authority(authority)
    if slash:
        for segment in path.split("/"):
            pieces += [("/", False), (segment, _looks_secret(segment, path=web))]
    if question:
        pieces.append(("?", False))
        for i, pair in enumerate(query.split("&")):
            if i:
                pieces.append(("&", False))
            key, equals, value = pair.partition("=")
            pieces.append((key + equals, False))
            pieces.append((value, bool(value) and unquote(key).lower() not in SAFE_OPTIONS))
    return pieces


def _authority(authority: str) -> list[Piece]:
    pieces: list[Piece] = []
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        pieces.append((user, True))
        if colon:
            pieces += [(":", False), (password, True)]
        pieces.append(("@", False))
    if hostport.startswith("["):  # IPv6 literal
        return [*pieces, (hostport, False)]
    host, colon, port = hostport.rpartition(":")
    if colon and port.isdigit():
        return [*pieces, (host, _looks_secret(host)), (":" + port, False)]
    if colon:  # "bot:token" style (tgram): the whole thing is a credential
        return [*pieces, (hostport, True)]
    return [*pieces, (hostport, _looks_secret(hostport))]


def _looks_secret(segment: str, path: bool = False) -> bool:
    text = unquote(segment).lstrip("#")
    if not text or text.lower() == "localhost":
        return False
    if _EMAIL.match(text) or _HOSTNAME.match(text):
        return False
    if path and _WORDS.match(text):  # /circuit-breakers: words, not a token (a host such as an ntfy topic may be one)
        return False
    digits = any(c.isdigit() for c in text)
    letters = any(c.isalpha() for c in text)
    return len(text) >= 16 or (len(text) >= 8 and digits) or (len(text) >= 6 and digits and letters)
