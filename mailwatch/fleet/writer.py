"""Applying change sets to the fleet database, idempotently, one transaction per change set.

Every write is an upsert or a conditional update keyed by (agent, source, queue id, arrival),
so applying the same change set twice, or two agents' pushes of the same rows racing, leaves
the same rows (rows are written in key order, so racing transactions do not deadlock). Upserts
go in batches of ``batch_size`` rows, each one ``INSERT … SELECT FROM unnest(arrays) ON
CONFLICT DO UPDATE`` statement. A heartbeat never moves back in time (an older change set
replayed late does not hide a newer scan).
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg_pool import AsyncConnectionPool

from mailwatch.config.fleet import FleetConfig
from mailwatch.core.changes import ChangeSet, Heartbeat, Outcome, Removal, Upsert
from mailwatch.errors import FleetUnavailable
from mailwatch.fleet.connect import conninfo, translated

_UPSERT = b"""
INSERT INTO fleet_messages (agent, source, queue_id, arrival, key, queue, size, marking, class,
    priority, rule, deadline, delay_reason, reason_category, recipient_domains, subject, status,
    first_seen)
SELECT %(agent)s, %(source)s, u.queue_id, u.arrival, u.key, u.queue, u.size, u.marking, u.class,
    u.priority, u.rule, u.deadline, u.delay_reason, u.reason_category,
    string_to_array(u.domains, ' '), u.subject, 'queued', u.first_seen
FROM unnest(%(queue_id)s::text[], %(arrival)s::float8[], %(key)s::text[], %(queue)s::text[],
    %(size)s::int8[], %(marking)s::text[], %(class)s::text[], %(priority)s::int2[],
    %(rule)s::text[], %(deadline)s::float8[], %(delay_reason)s::text[],
    %(reason_category)s::text[], %(domains)s::text[], %(subject)s::text[],
    %(first_seen)s::float8[])
    AS u(queue_id, arrival, key, queue, size, marking, class, priority, rule, deadline,
         delay_reason, reason_category, domains, subject, first_seen)
ON CONFLICT (agent, source, queue_id, arrival) DO UPDATE SET
    key = excluded.key, queue = excluded.queue, size = excluded.size,
    marking = excluded.marking, class = excluded.class, priority = excluded.priority,
    rule = excluded.rule, deadline = excluded.deadline, delay_reason = excluded.delay_reason,
    reason_category = excluded.reason_category, recipient_domains = excluded.recipient_domains,
    subject = excluded.subject, status = 'queued', left_at = NULL
"""
_LEFT_UNLESS = b"""
UPDATE fleet_messages SET status = 'left', left_at = %(at)s
WHERE agent = %(agent)s AND source = %(source)s AND status = 'queued'
  AND NOT (key = ANY(%(keys)s::text[]))
"""
_REMOVE = b"""
UPDATE fleet_messages SET status = 'left', left_at = r.at
FROM unnest(%(queue_id)s::text[], %(arrival)s::float8[], %(at)s::float8[])
    AS r(queue_id, arrival, at)
WHERE agent = %(agent)s AND source = %(source)s AND fleet_messages.queue_id = r.queue_id
  AND fleet_messages.arrival = r.arrival AND status = 'queued'
"""
_OUTCOME = b"""
UPDATE fleet_messages m SET
    outcome = CASE WHEN m.outcome IS NULL OR %(severity)s > (CASE m.outcome WHEN 'bounced' THEN 3
        WHEN 'expired' THEN 2 WHEN 'sent' THEN 1 ELSE 0 END) THEN %(status)s ELSE m.outcome END,
    outcome_text = CASE WHEN %(status)s = 'sent' THEN m.outcome_text ELSE %(text)s END,
    dsn = CASE WHEN %(status)s = 'sent' AND m.dsn IS NOT NULL THEN m.dsn ELSE %(dsn)s END,
    outcome_at = %(at)s,
    delivery_delay = greatest(coalesce(m.delivery_delay, 0), coalesce(%(delay)s, 0))
WHERE (m.agent, m.source, m.queue_id, m.arrival) = (
    SELECT agent, source, queue_id, arrival FROM fleet_messages
    WHERE agent = %(agent)s AND source = %(source)s AND queue_id = %(queue_id)s
    ORDER BY arrival DESC LIMIT 1)
"""
_HEARTBEAT = b"""
INSERT INTO fleet_heartbeats (agent, source, last_scan, ok, error, error_kind, messages,
    relayhost)
VALUES (%(agent)s, %(source)s, %(at)s, %(ok)s, %(error)s, %(error_kind)s, %(messages)s,
    %(relayhost)s)
ON CONFLICT (agent, source) DO UPDATE SET last_scan = excluded.last_scan, ok = excluded.ok,
    error = excluded.error, error_kind = excluded.error_kind, messages = excluded.messages,
    relayhost = CASE WHEN excluded.ok THEN excluded.relayhost
                ELSE fleet_heartbeats.relayhost END,
    received_at = now()
WHERE fleet_heartbeats.last_scan <= excluded.last_scan
"""


def open_pool(config: FleetConfig) -> AsyncConnectionPool[psycopg.AsyncConnection]:
    """A one-connection pool (the pusher is one loop); not opened yet (``await pool.open()``)."""
    return AsyncConnectionPool(
        conninfo(config),
        kwargs={"autocommit": True},
        min_size=0,  # connect on demand: while the database is down, each push fails fast
        max_size=1,
        open=False,
        timeout=config.timeout.seconds,
        check=AsyncConnectionPool.check_connection,
        name="mailwatch-fleet",
    )


async def apply(
    db: psycopg.AsyncConnection, agent: str, changes: ChangeSet, batch_size: int = 2_000
) -> None:
    """Write ``changes`` in one transaction (idempotent)."""
    source = changes.source
    with translated(f"cannot push {source} to the fleet"):
        async with db.transaction(), db.cursor() as cur:
            upserts = sorted(changes.upserts, key=lambda u: (u.queue_id, u.arrival))
            for start in range(0, len(upserts), batch_size):
                await cur.execute(
                    _UPSERT, _upsert_args(agent, source, upserts[start : start + batch_size])
                )
            if changes.full:
                await cur.execute(_LEFT_UNLESS, {
                    "agent": agent, "source": source, "at": changes.heartbeat.at,
                    "keys": [u.key for u in upserts],
                })  # fmt: skip
            if changes.removals:
                await cur.execute(_REMOVE, _removal_args(agent, source, changes.removals))
            for outcome in sorted(changes.outcomes, key=lambda o: (o.queue_id, o.at)):
                await cur.execute(_OUTCOME, _outcome_args(agent, outcome))
            await cur.execute(_HEARTBEAT, _heartbeat_args(agent, changes.heartbeat))


async def push(
    pool: AsyncConnectionPool[psycopg.AsyncConnection],
    agent: str,
    changes: Sequence[ChangeSet],
    batch_size: int = 2_000,
) -> None:
    """Apply each change set in order, on one pooled connection."""
    try:
        async with pool.connection() as db:
            for change in changes:
                await apply(db, agent, change, batch_size)
    except psycopg.OperationalError as exc:  # raised by the pool itself (PoolTimeout)
        raise FleetUnavailable(f"the fleet database is unreachable: {exc}") from exc


def _upsert_args(agent: str, source: str, rows: Sequence[Upsert]) -> dict[str, object]:
    return {
        "agent": agent, "source": source,
        "queue_id": [u.queue_id for u in rows], "arrival": [u.arrival for u in rows],
        "key": [u.key for u in rows], "queue": [u.queue for u in rows],
        "size": [u.size for u in rows], "marking": [u.marking for u in rows],
        "class": [u.class_name for u in rows], "priority": [u.priority for u in rows],
        "rule": [u.rule for u in rows], "deadline": [u.deadline for u in rows],
        "delay_reason": [u.delay_reason for u in rows],
        "reason_category": [u.reason_category for u in rows],
        "domains": [" ".join(u.recipient_domains) for u in rows],
        "subject": [u.subject for u in rows], "first_seen": [u.seen_at for u in rows],
    }  # fmt: skip


def _removal_args(agent: str, source: str, rows: Sequence[Removal]) -> dict[str, object]:
    return {
        "agent": agent, "source": source, "queue_id": [r.queue_id for r in rows],
        "arrival": [r.arrival for r in rows], "at": [r.at for r in rows],
    }  # fmt: skip


def _outcome_args(agent: str, o: Outcome) -> dict[str, object]:
    return {
        "agent": agent, "source": o.source, "queue_id": o.queue_id, "status": o.status,
        "severity": o.severity, "at": o.at, "dsn": o.dsn, "text": o.text, "delay": o.delay,
    }  # fmt: skip


def _heartbeat_args(agent: str, h: Heartbeat) -> dict[str, object]:
    return {
        "agent": agent, "source": h.source, "at": h.at, "ok": h.ok, "error": h.error,
        "error_kind": h.error_kind, "messages": h.messages, "relayhost": h.relayhost,
    }  # fmt: skip
