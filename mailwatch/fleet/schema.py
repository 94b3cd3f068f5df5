"""The fleet database's schema as numbered migrations, applied by ``mailwatch fleet migrate``.

Each migration runs in its own transaction and is recorded in ``fleet_schema`` (version,
applied at); running ``migrate`` again applies nothing. A session-level advisory lock keeps two
agents migrating at once from racing. Never edit a migration that has shipped: add one.

Times are Unix seconds (``double precision``), as in the local store, so the judgement's SQL
form (:mod:`mailwatch.core.judgement`) applies unchanged.
"""

from __future__ import annotations

import psycopg

from mailwatch.errors import FleetSchemaError
from mailwatch.fleet.connect import translated

LOCK_ID = 0x6D61696C  # "mail": pg_advisory_lock key of the migrations

MIGRATIONS: tuple[str, ...] = (
    # 1: messages of every agent, heartbeats per source, and the indexes the fleet reads use.
    """
    CREATE TABLE fleet_messages (
        agent text NOT NULL,
        source text NOT NULL,
        queue_id text NOT NULL,
        arrival double precision NOT NULL,
        key text NOT NULL,
        queue text NOT NULL,
        size bigint NOT NULL,
        marking text,
        class text NOT NULL,
        priority smallint NOT NULL,
        rule text NOT NULL,
        deadline double precision NOT NULL,
        delay_reason text,
        reason_category text,
        recipient_domains text[] NOT NULL,
        subject text,
        status text NOT NULL,
        first_seen double precision NOT NULL,
        left_at double precision,
        outcome text,
        outcome_at double precision,
        outcome_text text,
        dsn text,
        delivery_delay double precision,
        PRIMARY KEY (agent, source, queue_id, arrival)
    );
    CREATE INDEX fleet_waiting ON fleet_messages (priority, deadline) WHERE status = 'queued';
    CREATE INDEX fleet_waiting_any ON fleet_messages (deadline) WHERE status = 'queued';
    CREATE INDEX fleet_held ON fleet_messages (queue) WHERE status = 'queued';
    CREATE INDEX fleet_undeliverable ON fleet_messages (outcome_at)
        WHERE outcome IN ('bounced', 'expired');
    CREATE INDEX fleet_by_source_status ON fleet_messages (agent, source, status);
    CREATE TABLE fleet_heartbeats (
        agent text NOT NULL,
        source text NOT NULL,
        last_scan double precision NOT NULL,
        ok boolean NOT NULL,
        error text,
        error_kind text,
        messages integer NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (agent, source)
    );
    """,
    # 2: each source's relayhost at its last good scan, so the fleet's judgement says
    #    relay_down where the agent's does (mailwatch.core.reasons).
    """
    ALTER TABLE fleet_heartbeats ADD COLUMN relayhost text;
    """,
)


def version(db: psycopg.Connection) -> int:
    """The applied migration count (0 for an empty database)."""
    with translated("cannot read the fleet schema version"):
        exists = db.execute("SELECT to_regclass('fleet_schema') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return 0
        row = db.execute("SELECT coalesce(max(version), 0) FROM fleet_schema").fetchone()
    return int(row[0]) if row else 0


def migrate(db: psycopg.Connection) -> list[int]:
    """Apply the missing migrations in order; returns the versions applied (``[]``: none)."""
    applied: list[int] = []
    with translated("cannot migrate the fleet schema"):
        db.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        try:
            with db.transaction():
                db.execute(
                    "CREATE TABLE IF NOT EXISTS fleet_schema (version integer PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            current = version(db)
            if current > len(MIGRATIONS):
                raise FleetSchemaError(
                    f"fleet schema version {current} is newer than this mailwatch's"
                    f" ({len(MIGRATIONS)}): upgrade mailwatch"
                )
            for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                with db.transaction():
                    db.execute(script.encode())
                    db.execute("INSERT INTO fleet_schema (version) VALUES (%s)", (number,))
                applied.append(number)
        finally:
            db.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return applied


def require_current(db: psycopg.Connection) -> None:
    """Raise :class:`FleetSchemaError` unless the schema is exactly this mailwatch's."""
    current = version(db)
    if current != len(MIGRATIONS):
        raise FleetSchemaError(
            f"fleet schema version {current}, this mailwatch needs {len(MIGRATIONS)}"
            " (run `mailwatch fleet migrate`)"
        )
