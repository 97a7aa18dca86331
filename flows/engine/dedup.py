"""Dedup keys: when two starts of an SOP are one run.

An SOP's ``dedup`` template (``"{{ inputs.brand }}"``) renders a key from a start's inputs or its signal. While a run
holding that key is open, a start with the same key attaches to it (a repeat) instead of opening a second run; the
database decides (``runs.open_key`` is unique, :mod:`flows.ledger.schema`), so two processes racing open one run.

Keys are the same when people would read them as the same: letter case, Unicode compatibility forms (NFKC: a
full-width ``ＬＵＭＩ``) and whitespace around or between words do not count, so a director's "Lumi" typed by hand
meets the alert's ``lumi``. Only the key a run holds while open (``runs.open_key``) is compared, in its
:func:`comparable` form; the run keeps its key as its first start wrote it (``runs.dedup_key``), which is what the
board, the run page and ``sop status`` show as its subject. A key too long for its column is shortened alike in both
(:func:`fitting`). Every door (the CLI, the API, the board's form, alerts, events, metric rules, follow-ups) comes
through :meth:`Engine.start <flows.engine.transitions.Engine.start>` or ``open_run_in``, and so through here.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

from flows.language.expressions import render
from flows.ledger.vocabulary import is_drill

#: the longest dedup key a run keeps (``runs.dedup_key``); a longer one is shortened, keeping it unique
DEDUP_KEY_CHARS = 300
#: the trigger kinds of signals from monitoring (alerts, events, metric rules): they repeat, and always dedup
MONITORING_KINDS = frozenset({"alert", "event", "metric"})
#: what begins the open key of a drill (:func:`open_key`)
DRILL_KEYS = "drill|"


def rendered_key(template: str | None, inputs: dict[str, Any], trigger: dict[str, Any] | None,
                 config: dict[str, Any]) -> str | None:
    """The dedup key a start renders from its SOP's ``dedup`` template, as written (only trimmed), or None when the
    start is a run of its own: the SOP has no ``dedup``, or the key is empty and no signal from monitoring asked.

    A signal from monitoring whose key renders empty (a label the alert lacks) still dedups: its repeats attach to
    one open run instead of each starting a run and paging its people; any other start (a person's, a follow-up's,
    a drill's) with an empty key has no signal to repeat."""
    if not template:
        return None
    key = render(template, {"inputs": inputs, "trigger": trigger or {}, "config": config}).strip()
    if not key and (trigger or {}).get("kind") not in MONITORING_KINDS:
        return None
    return key


def comparable(key: str) -> str:
    """The form in which two keys are compared: Unicode compatibility forms folded (NFKC), letter case folded
    (``casefold``: ``Straße`` meets ``STRASSE``) and whitespace trimmed and collapsed to one space, so
    ``" LUMI "``, ``"Lumi"`` and ``"lumi"`` are one key. Folding a folded key changes nothing."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", key).casefold())
    return " ".join(folded.split())


def fitting(key: str) -> str:
    """A dedup key that fits its column: a longer key (a label of 400 characters) keeps its start and a hash
    of the whole, so equal keys still meet and different ones still differ (PostgreSQL refuses to cut it)."""
    if len(key) <= DEDUP_KEY_CHARS:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{key[:DEDUP_KEY_CHARS - 18]}…#{digest}"


def open_key(sop_id: str, key: str, trigger: dict[str, Any] | None) -> str:
    """The key a run holds while open (``runs.open_key``): a start with the same one attaches to it. It is the
    :func:`comparable` form of the rendered ``key``, fitted after folding (so two long keys that differ only in case
    meet). Drills and real runs never share one: a drill of crisis-pr must not finish the real P1 run of the same
    brand with its simulated responders, nor a real alert attach to a drill and be lost with it. A drill's begins
    with ``drill|``, which no real one can (an SOP id has no ``|``)."""
    compared = f"{sop_id}:{fitting(comparable(key))}"
    return f"{DRILL_KEYS}{compared}" if is_drill(trigger) else compared


__all__ = ["DEDUP_KEY_CHARS", "DRILL_KEYS", "MONITORING_KINDS", "comparable", "fitting", "open_key", "rendered_key"]
