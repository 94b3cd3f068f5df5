"""Reading the fleet: stuck messages of every agent, and every source's heartbeat.

The selection uses the judgement's own SQL form (:data:`~mailwatch.core.judgement.STUCK_SQL`
and friends, with PostgreSQL placeholders); the page read is decoded into
:class:`~mailwatch.core.model.StoredMessage` values and judged by the same pure function as
the local store's (``mailwatch.app.queries.judged``). A message's source is shown as
``agent/source``. A source whose heartbeat is older than ``stale_after`` is *unknown*: the fleet
cannot say what is stuck there, and says so instead of counting it as zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from mailwatch.core.judgement import LISTED_SQL, STUCK_SQL, MessageFilter
from mailwatch.core.model import (
    DeliveryStatus,
    Headers,
    Priority,
    Recipient,
    Status,
    StoredMessage,
)
from mailwatch.fleet.connect import q, translated

COLUMNS = (
    "agent, source, queue_id, arrival, key, queue, size, marking, class, priority, rule,"
    " deadline, delay_reason, recipient_domains, subject, status, first_seen, left_at, outcome,"
    " outcome_at, outcome_text, dsn, delivery_delay"
)


def pg(sql: str) -> str:
    """The judgement's SQL (``:now`` placeholders) with psycopg's (``%(now)s``)."""
    return re.sub(r"(?<![:\w]):([a-z_]+)", r"%(\1)s", sql)


STUCK = pg(STUCK_SQL)
LISTED = pg(LISTED_SQL)
ORDER = f"ORDER BY coalesce({STUCK}, false) DESC, priority, arrival, key"


@dataclass(frozen=True, slots=True)
class SourceBeat:
    """One source of one agent, as its last heartbeat says."""

    agent: str
    source: str
    last_scan: datetime
    ok: bool
    error: str | None
    error_kind: str | None
    messages: int
    stuck: int

    def age(self, now: datetime) -> float:
        """Seconds since its last scan."""
        return max((now - self.last_scan).total_seconds(), 0.0)

    def state(self, now: datetime, stale_after: float) -> str:
        """``unknown`` (no heartbeat for ``stale_after``), ``failing`` or ``ok``."""
        if self.age(now) > stale_after:
            return "unknown"
        return "ok" if self.ok else "failing"


def _where(now: datetime, since: datetime, wanted: MessageFilter) -> tuple[str, dict[str, Any]]:
    clauses = [STUCK if wanted.stuck_only else LISTED]
    args: dict[str, Any] = {"now": now.timestamp(), "since": since.timestamp()}
    if wanted.class_name is not None:
        clauses.append("class = %(class)s")
        args["class"] = wanted.class_name
    if wanted.priority is not None:
        clauses.append("priority = %(priority)s")
        args["priority"] = int(wanted.priority)
    if wanted.source is not None:
        clauses.append("(source = %(src)s OR agent = %(src)s OR agent || '/' || source = %(src)s)")
        args["src"] = wanted.source
    if wanted.older_than is not None:
        clauses.append("arrival < %(born_before)s")
        args["born_before"] = now.timestamp() - wanted.older_than
    return " AND ".join(clauses), args


class FleetReader:
    """Reads on one synchronous connection (the CLI; the API runs it in a worker thread)."""

    def __init__(self, db: psycopg.Connection) -> None:
        self.db = db

    def list_messages(
        self, now: datetime, since: datetime, wanted: MessageFilter
    ) -> tuple[list[StoredMessage], int]:
        """The page of matching messages of every agent, most urgent first, and the total.

        ``wanted.source`` may be ``agent/source``, a source name, or an agent name.
        """
        where, args = _where(now, since, wanted)
        sql = f"SELECT {COLUMNS} FROM fleet_messages WHERE {where} {ORDER}"
        if wanted.limit is not None or wanted.offset:
            sql += " LIMIT %(limit)s OFFSET %(offset)s"
            args |= {"limit": wanted.limit, "offset": wanted.offset}
        with translated("cannot list the fleet's messages"):
            total_row = self.db.execute(
                q(f"SELECT count(*) FROM fleet_messages WHERE {where}"), args
            ).fetchone()
            rows = self.db.execute(q(sql), args).fetchall()
            seen = self._last_scans()
        return [decode(row, seen) for row in rows], int(total_row[0]) if total_row else 0

    def _last_scans(self) -> dict[tuple[str, str], tuple[float, str | None]]:
        rows = self.db.execute(
            b"SELECT agent, source, last_scan, relayhost FROM fleet_heartbeats WHERE ok"
        )
        return {(a, s): (t, relay) for a, s, t, relay in rows}

    def sources(self, now: datetime, since: datetime) -> list[SourceBeat]:
        """Every agent's every source: its last heartbeat and how many messages are stuck."""
        sql = (
            "SELECT h.agent, h.source, h.last_scan, h.ok, h.error, h.error_kind, h.messages,"
            f" (SELECT count(*) FROM fleet_messages m WHERE m.agent = h.agent"
            f"  AND m.source = h.source AND {STUCK})"
            " FROM fleet_heartbeats h ORDER BY h.agent, h.source"
        )
        with translated("cannot read the fleet's heartbeats"):
            rows = self.db.execute(q(sql), {"now": now.timestamp(), "since": since.timestamp()})
            return [
                SourceBeat(a, s, datetime.fromtimestamp(t, UTC), ok, err, kind, n, int(stuck))
                for a, s, t, ok, err, kind, n, stuck in rows
            ]


def _at(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def decode(row: Any, last_scans: dict[tuple[str, str], tuple[float, str | None]]) -> StoredMessage:
    """A :class:`StoredMessage` from a ``SELECT COLUMNS`` row (source shown as agent/source).

    The fleet keeps recipient domains only: each is a recipient ``@domain``.
    """
    (agent, source, queue_id, arrival, key, queue, size, marking, cls, prio, rule, deadline,
     delay_reason, domains, subject, status, first_seen, left_at, outcome, outcome_at,
     outcome_text, dsn, delivery_delay) = row  # fmt: skip
    state = Status(status)
    scan, relayhost = last_scans.get((agent, source), (None, None))
    last = left_at if state is Status.LEFT else scan
    return StoredMessage(
        key=key, source=f"{agent}/{source}", queue_id=queue_id, queue=queue,
        arrival=datetime.fromtimestamp(arrival, UTC), size=size, sender="",
        recipients=tuple(Recipient(f"@{d}") for d in domains), headers=Headers(),
        subject=subject or "", marking=marking, class_name=cls, priority=Priority(prio),
        rule=rule, deadline=datetime.fromtimestamp(deadline, UTC), delay_reason=delay_reason,
        status=state, first_seen=datetime.fromtimestamp(first_seen, UTC), left_at=_at(left_at),
        last_seen=_at(last), outcome=None if outcome is None else DeliveryStatus(outcome),
        outcome_at=_at(outcome_at), outcome_text=outcome_text, dsn=dsn,
        delivery_delay=delivery_delay, relayhost=relayhost,
    )  # fmt: skip
