"""What a delivered page leaves in the ledger: its ``notification`` record, a ``deliveries`` row per destination
tried, and the items it kept for digests (``flows.engine.digest``), written in one transaction."""

from __future__ import annotations

from typing import Any

from flows.ledger import Tx, dumps
from flows.ledger.schema import deliveries, digest_items

_DELIVERIES_INSERT = deliveries.insert()  # built once (see flows.engine.store)
_KEPT_INSERT = digest_items.insert()


def prepare_page(run_id: str, step_id: str | None, kind: str, results: list[Any], *,
                 kept: list[dict[str, Any]] | None = None, extra: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """A page's ``notification`` record data (as JSON) and its ``deliveries`` rows, each with its
    lane in the page, and the items it ``kept`` for digests (the record says for whom); ``extra``: more
    facts for the record (a digest's). Made before the transaction; the page (the record's seq) is filled
    in by :func:`write_pages`."""
    from notifications import lane_key, lane_outcomes

    data = {"notification": kind, "results": [r.to_dict() for r in results], **(extra or {})}
    if kept:
        data["kept"] = [item["person"] for item in kept]
    text = dumps(data)
    lanes = {key: number for number, key in enumerate(lane_outcomes(results))}
    rows = [{"run_id": run_id, "step_id": step_id, "at": r.at, "kind": kind, "recipient": r.recipient,
             "destination": r.destination, "ok": r.ok, "error": r.error, "attempts": r.attempts,
             "latency_ms": int(r.latency * 1000), "page": None, "lane": lanes[lane_key(r)]}
            for r in results]
    return run_id, step_id, text, rows, kept or []


def write_pages(tx: Tx, prepared: list[tuple[Any, ...]]) -> None:
    """Append each prepared page's ``notification`` record on ``tx`` and insert its ``deliveries`` rows and
    the items it kept for digests (each naming the record), with the transaction's end where they can be
    (``Tx.defer``: its callers read none of them afterwards)."""
    rows: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    with tx.held():
        for run_id, step_id, text, page_rows, kept in prepared:
            seq = tx.append_text("notification", run_id, step_id, None, tx.clock.now(), text)
            for row in page_rows:
                row["page"] = seq
            rows.extend(page_rows)
            items.extend({**item, "record": seq} for item in kept)
    tx.defer(_DELIVERIES_INSERT, rows)
    tx.defer(_KEPT_INSERT, items)
