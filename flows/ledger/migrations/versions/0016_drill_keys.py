"""Drills hold open keys of their own (``drill|<sop>:<key>``): a drill open when this release arrives gets one.

Since 2026-12-06 a drill and a real run of the same SOP and dedup key never attach to each other
(``flows.engine.transitions.open_key``): a drill of crisis-pr no longer finishes the real P1 run with its
simulated responders, and a real alert during a drill starts a real run. A drill opened before kept
``<sop>:<key>``, the key a real alert now looks up: without this, a real alert would still attach to it and be
lost with it. Runs still open whose trigger says ``kind: drill`` get the prefix; nothing else changes.

Revision ID: 0016_drill_keys
Revises: 0015_attach_alone
Create Date: 2026-12-06
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0016_drill_keys"
down_revision = "0015_attach_alone"
branch_labels = None
depends_on = None

PREFIX = "drill|"  # flows.engine.transitions.DRILL_KEYS, as it was when this was written


def _open_drills(bind: sa.engine.Connection) -> list[tuple[str, str]]:
    rows = bind.execute(sa.text("SELECT id, open_key, trigger FROM runs WHERE open_key IS NOT NULL"))
    found = []
    for run_id, key, trigger in rows:
        try:
            said = json.loads(trigger) if trigger else None
        except ValueError:
            continue
        if isinstance(said, dict) and said.get("kind") == "drill":
            found.append((run_id, key))
    return found


def upgrade() -> None:
    bind = op.get_bind()
    for run_id, key in _open_drills(bind):
        if not key.startswith(PREFIX):
            bind.execute(sa.text("UPDATE runs SET open_key = :key WHERE id = :id"), {"key": PREFIX + key, "id": run_id})


def downgrade() -> None:
    bind = op.get_bind()
    for run_id, key in _open_drills(bind):
        if key.startswith(PREFIX):
            bind.execute(sa.text("UPDATE runs SET open_key = :key WHERE id = :id"), {"key": key[len(PREFIX):], "id": run_id})
