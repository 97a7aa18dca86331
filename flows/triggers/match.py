"""Label matchers: ``{alertname: HighErrorRate, severity: "~critical|page"}``.

A plain value must equal the label; a value starting with ``~`` is a regular expression
that must match the whole label (anchored, as Alertmanager's ``=~``). A label that is
absent reads as the empty string, again as in Alertmanager: ``{team: ""}`` matches alerts
without a team, ``~.+`` requires one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(f"(?:{pattern})\\Z", re.S)


def value_text(value: Any) -> str:
    """How a non-string value (an event's number or flag) is compared: JSON-like text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def matches_one(matcher: str, value: Any) -> bool:
    """Whether one label value satisfies one matcher."""
    text = value_text(value)
    if isinstance(matcher, str) and matcher.startswith("~"):
        return _regex(matcher[1:]).match(text) is not None
    return text == value_text(matcher)


def matches(matchers: Mapping[str, str], labels: Mapping[str, Any]) -> bool:
    """True when every matcher holds for ``labels`` (no matchers: everything matches)."""
    return all(matches_one(matcher, labels.get(name)) for name, matcher in matchers.items())
