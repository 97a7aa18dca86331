"""PostgreSQL: ``sop_attach``, an alert's repeat in one statement that is its own transaction.

An alert whose dedup key has an open run counts a repeat on that run and appends its ``trigger_repeated``
record. Alone (not in a batch of the API's intake) that took three round trips: ``BEGIN`` with the writers'
locks, the attach (``pgdriver.first_held_appending``), ``COMMIT``. This function takes the locks and then
attaches, each statement with a snapshot of its own (PL/pgSQL, READ COMMITTED: the lane's head is read after
its lock is held), so a connection in autocommit mode does it all in one round trip, one implicit transaction.

The record is the one ``Tx.hold_and_append`` writes, byte for byte: Python cuts the text that
``record_hash`` hashes where the server's values go (``tx.record_pieces``: seq, run, count, lane, place);
here they are put in and hashed. Locks and lanes are ``Ledger._begin``'s: the writers' advisory lock,
shared; then the preferred lane, or the next free one, or (all busy) a wait for the preferred one.
SQLite has nothing to do: there the ledger has one writer at a time.

Revision ID: 0015_attach_alone
Revises: 0014_wide_ids
Create Date: 2026-12-06
"""

from alembic import op

revision = "0015_attach_alone"
down_revision = "0014_wide_ids"
branch_labels = None
depends_on = None

ATTACH = """
CREATE OR REPLACE FUNCTION sop_attach(
    p_key text, p_copies integer, p_now timestamptz,
    p_lock bigint, p_lane_space integer, p_lane integer, p_lanes integer, p_genesis text,
    p_kind text, p_actor text, p_prefix text, p_suffix text,
    p_at_text text, p_kind_to_count text, p_count_to_lane text)
RETURNS TABLE (run text, n bigint, lane integer, pos bigint, hash text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_lane integer := p_lane;
    v_step integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(p_lock);
    WHILE NOT pg_try_advisory_xact_lock(p_lane_space, v_lane) LOOP
        v_step := v_step + 1;
        IF v_step >= p_lanes THEN  -- every lane busy: wait for the preferred one
            v_lane := p_lane;
            PERFORM pg_advisory_xact_lock(p_lane_space, v_lane);
            EXIT;
        END IF;
        v_lane := (p_lane + v_step - 1) % p_lanes + 1;
    END LOOP;
    -- a new snapshot, taken with the lane held: its head is the last record appended to it
    RETURN QUERY
    WITH held AS (
        UPDATE runs SET repeats = runs.repeats + p_copies, last_seen_at = p_now
        WHERE runs.open_key = p_key RETURNING runs.id AS run_id, runs.repeats AS counted),
    r AS (  -- the seq is taken once the run is held: a run's records are in seq order
        SELECT held.run_id, held.counted, nextval('records_seq_seq'::regclass) AS seq,
               COALESCE(h.pos, 0) + 1 AS place, COALESCE(h.hash, p_genesis) AS prev
        FROM held LEFT JOIN LATERAL (SELECT records.pos, records.hash FROM records WHERE records.chain = v_lane
                                     ORDER BY records.pos DESC LIMIT 1) AS h ON true),
    d AS (
        SELECT r.*, encode(sha256(convert_to(r.prev || '|[' || r.seq || p_at_text || to_json(r.run_id)::text
               || p_kind_to_count || r.counted::bigint || p_count_to_lane || v_lane || ',' || r.place || ']',
               'UTF8')), 'hex') AS digest
        FROM r),
    ins AS (
        INSERT INTO records (seq, at, run_id, step_id, kind, actor, data, prev_hash, hash, chain, pos)
        SELECT d.seq, p_now, d.run_id, NULL, p_kind, p_actor, p_prefix || d.counted::bigint || p_suffix,
               d.prev, d.digest, v_lane, d.place FROM d)
    SELECT d.run_id::text, d.counted::bigint, v_lane, d.place::bigint, d.digest FROM d;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(ATTACH)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS sop_attach(text, integer, timestamptz, bigint, integer, integer, integer, "
                   "text, text, text, text, text, text, text, text)")
