"""The SQLite store (WAL): tracked messages, scans, and per-class counts per scan.

One long-lived connection; each scan is written in one transaction, and only what changed is
written: the store keeps, per source, the last written state of every queued message, so a
rescan of an unchanged 30,000-message queue writes one scan row and its class counts, nothing
per message. A message missing from a scan is marked ``left`` (its final outcome comes later
from the mail log). Schema changes are numbered migrations tracked in ``PRAGMA user_version``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailwatch.backlog import ClassCount
from mailwatch.errors import StoreError, UnknownMessage
from mailwatch.model import (
    Delivery,
    DeliveryStatus,
    Headers,
    LogCursor,
    LogEvent,
    Priority,
    Recipient,
    Status,
    Verdict,
)
from mailwatch.schema import MIGRATIONS

_INSERT_COLUMNS = (
    "key, source, queue_id, queue, arrival, size, sender, recipients, headers, subject, marking, "
    "class, priority, rule, deadline, delay_reason, status, first_seen, left_at"
)
_MESSAGE_COLUMNS = _INSERT_COLUMNS + ", outcome, outcome_at, outcome_text, dsn, delivery_delay"

# What, if it changes between scans, needs a row update.
_State = tuple[str, str, int, str, float, tuple[Recipient, ...]]


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _at(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _dt(value: float | None) -> datetime | None:
    return None if value is None else _at(value)


def _recipients_json(recipients: Sequence[Recipient]) -> str:
    return json.dumps([[r.address, r.delay_reason] for r in recipients])


def _recipients(text: str) -> tuple[Recipient, ...]:
    return tuple(Recipient(address, reason) for address, reason in json.loads(text))


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A tracked message as the store knows it."""

    key: str
    source: str
    queue_id: str
    queue: str
    arrival: datetime
    size: int
    sender: str
    recipients: tuple[Recipient, ...]
    headers: Headers
    subject: str
    marking: str | None
    class_name: str
    priority: Priority
    rule: str
    deadline: datetime
    delay_reason: str | None
    status: Status
    first_seen: datetime
    left_at: datetime | None
    last_seen: datetime | None
    """When its source last saw it: the latest good scan while queued, else ``left_at``."""
    outcome: DeliveryStatus | None = None
    """Final outcome from the mail log (the worst over its recipients), if known."""
    outcome_at: datetime | None = None
    outcome_text: str | None = None
    dsn: str | None = None
    delivery_delay: float | None = None

    @property
    def recipient_domains(self) -> tuple[str, ...]:
        """Sorted distinct recipient domains."""
        return tuple(sorted({r.domain for r in self.recipients if r.domain}))


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """One probe of one source as recorded."""

    source: str
    started_at: datetime
    finished_at: datetime
    ok: bool
    error: str | None
    messages: int
    malformed: int
    headers_read: int
    warnings: tuple[str, ...] = ()


class Store:
    """mailwatch's SQLite store. Not thread-safe: one owner, one connection."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        self._index: dict[str, dict[str, _State]] = {}

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The applied migration count."""
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        if version > len(MIGRATIONS):
            raise StoreError(
                f"store schema version {version} is newer than this mailwatch ({len(MIGRATIONS)})"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    def _source_index(self, source: str) -> dict[str, _State]:
        index = self._index.get(source)
        if index is None:
            rows = self._db.execute(
                "SELECT key, queue, class, priority, rule, deadline, recipients FROM messages"
                " WHERE source = ? AND status = ?",
                (source, Status.QUEUED.value),
            )
            index = {
                key: (queue, cls, prio, rule, deadline, _recipients(rcpts))
                for key, queue, cls, prio, rule, deadline, rcpts in rows
            }
            self._index[source] = index
        return index

    def record_scan(
        self,
        source: str,
        started_at: datetime,
        finished_at: datetime,
        verdicts: Sequence[Verdict],
        counts: Iterable[ClassCount],
        *,
        malformed: int = 0,
        headers_read: int = 0,
        warnings: Sequence[str] = (),
    ) -> int:
        """Write one successful scan in one transaction; returns the number of message writes."""
        index = self._source_index(source)
        inserts: list[tuple[object, ...]] = []
        updates: list[tuple[object, ...]] = []
        seen: dict[str, _State] = {}
        for v in verdicts:
            m, c = v.message, v.classification
            state: _State = (
                m.queue,
                c.name,
                int(c.priority),
                c.rule,
                _ts(v.deadline),
                m.recipients,
            )
            seen[m.key] = state
            previous = index.get(m.key)
            if previous is None:
                inserts.append((
                    m.key, source, m.queue_id, m.queue, _ts(m.arrival), m.size, m.sender,
                    _recipients_json(m.recipients), json.dumps(m.headers.items), m.subject,
                    m.marking, c.name, int(c.priority), c.rule, _ts(v.deadline),
                    m.delay_reason, Status.QUEUED.value, _ts(finished_at), None,
                ))  # fmt: skip
            elif previous != state:
                updates.append((
                    m.queue, c.name, int(c.priority), c.rule, _ts(v.deadline),
                    _recipients_json(m.recipients), m.delay_reason, m.key,
                ))  # fmt: skip
        gone = [(Status.LEFT.value, _ts(finished_at), key) for key in index if key not in seen]
        try:
            self._db.execute("BEGIN")
            if inserts:
                self._db.executemany(
                    f"INSERT OR REPLACE INTO messages ({_INSERT_COLUMNS}) VALUES"
                    f" ({', '.join('?' * 19)})",
                    inserts,
                )
            if updates:
                self._db.executemany(
                    "UPDATE messages SET queue = ?, class = ?, priority = ?, rule = ?,"
                    " deadline = ?, recipients = ?, delay_reason = ? WHERE key = ?",
                    updates,
                )
            if gone:
                self._db.executemany(
                    "UPDATE messages SET status = ?, left_at = ? WHERE key = ? AND status = ?",
                    [(*g, Status.QUEUED.value) for g in gone],
                )
            scan_id = self._insert_scan(
                ScanRecord(
                    source, started_at, finished_at, ok=True, error=None,
                    messages=len(verdicts), malformed=malformed, headers_read=headers_read,
                    warnings=tuple(warnings),
                )
            )  # fmt: skip
            self._db.executemany(
                "INSERT INTO class_counts VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        scan_id,
                        source,
                        c.name,
                        int(c.priority),
                        c.total,
                        c.stuck,
                        c.oldest_age_seconds,
                    )
                    for c in counts
                ],
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            self._index.pop(source, None)
            raise StoreError(f"cannot record scan of {source}: {exc}") from exc
        self._index[source] = seen
        return len(inserts) + len(updates) + len(gone)

    def record_failure(
        self, source: str, started_at: datetime, finished_at: datetime, error: str
    ) -> None:
        """Record a failed probe; the source's messages are left as they were."""
        try:
            self._insert_scan(
                ScanRecord(source, started_at, finished_at, ok=False, error=error, messages=0,
                           malformed=0, headers_read=0)
            )  # fmt: skip
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record failed scan of {source}: {exc}") from exc

    def _insert_scan(self, scan: ScanRecord) -> int:
        cursor = self._db.execute(
            "INSERT INTO scans (source, started_at, finished_at, ok, error, messages, malformed,"
            " headers_read, warnings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                scan.source,
                _ts(scan.started_at),
                _ts(scan.finished_at),
                scan.ok,
                scan.error,
                scan.messages,
                scan.malformed,
                scan.headers_read,
                "\n".join(scan.warnings) or None,
            ),
        )
        return int(cursor.lastrowid or 0)

    def last_scans(self) -> dict[str, ScanRecord]:
        """The latest scan of each source, good or failed."""
        rows = self._db.execute(
            "SELECT source, started_at, finished_at, ok, error, messages, malformed, headers_read,"
            " warnings FROM scans WHERE id IN (SELECT max(id) FROM scans GROUP BY source)"
            " ORDER BY source"
        )
        return {
            r[0]: ScanRecord(r[0], _at(r[1]), _at(r[2]), bool(r[3]), r[4], r[5], r[6], r[7],
                             tuple(r[8].split("\n")) if r[8] else ())
            for r in rows
        }  # fmt: skip

    def _last_good(self) -> dict[str, float]:
        rows = self._db.execute(
            "SELECT source, max(finished_at) FROM scans WHERE ok GROUP BY source"
        )
        return dict(rows)

    def _row(self, row: Sequence[Any], last_good: dict[str, float]) -> StoredMessage:
        (key, source, queue_id, queue, arrival, size, sender, rcpts, headers, subject, marking,
         cls, prio, rule, deadline, delay_reason, status, first_seen, left_at,
         outcome, outcome_at, outcome_text, dsn, delivery_delay) = row  # fmt: skip
        state = Status(status)
        last = left_at if state is Status.LEFT else last_good.get(source)
        return StoredMessage(
            key=key, source=source, queue_id=queue_id, queue=queue, arrival=_at(arrival),
            size=size, sender=sender, recipients=_recipients(rcpts),
            headers=Headers(tuple((n, v) for n, v in json.loads(headers))),
            subject=subject, marking=marking, class_name=cls, priority=Priority(prio), rule=rule,
            deadline=_at(deadline), delay_reason=delay_reason, status=state,
            first_seen=_at(first_seen), left_at=_dt(left_at), last_seen=_dt(last),
            outcome=None if outcome is None else DeliveryStatus(outcome),
            outcome_at=_dt(outcome_at), outcome_text=outcome_text, dsn=dsn,
            delivery_delay=delivery_delay,
        )  # fmt: skip

    def queued(self, source: str | None = None) -> list[StoredMessage]:
        """Every message currently queued (optionally in one source)."""
        sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE status = ?"
        args: list[object] = [Status.QUEUED.value]
        if source is not None:
            sql += " AND source = ?"
            args.append(source)
        last_good = self._last_good()
        return [self._row(r, last_good) for r in self._db.execute(sql, args)]

    def get(self, ident: str) -> StoredMessage:
        """A message by key, or by queue id (the newest one wins when a queue id was reused)."""
        last_good = self._last_good()
        row = self._db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE key = ?", (ident,)
        ).fetchone()
        if row is None:
            row = self._db.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE queue_id = ?"
                " ORDER BY arrival DESC LIMIT 1",
                (ident,),
            ).fetchone()
        if row is None:
            raise UnknownMessage(f"no tracked message has id {ident!r}")
        return self._row(row, last_good)

    def latest_counts(self) -> list[ClassCount]:
        """Per-class counts of the latest good scan of every source."""
        rows = self._db.execute(
            "SELECT source, class, priority, total, stuck, oldest_age FROM class_counts"
            " WHERE scan_id IN (SELECT max(id) FROM scans WHERE ok GROUP BY source)"
            " ORDER BY source, priority, class"
        )
        return [ClassCount(s, c, Priority(p), t, st, a) for s, c, p, t, st, a in rows]

    def log_cursor(self, source: str) -> LogCursor | None:
        """Where the log source ``source`` stopped reading, if it ever read."""
        row = self._db.execute(
            "SELECT inode, offset, head FROM log_cursors WHERE source = ?", (source,)
        ).fetchone()
        return None if row is None else LogCursor(*row)

    def _message_for(self, queue_id: str, outcomes_for: str | None) -> tuple[str, str, int] | None:
        """The newest tracked message with ``queue_id`` in source ``outcomes_for``."""
        row = self._db.execute(
            "SELECT key, class, priority FROM messages WHERE queue_id = ? AND source = ?"
            " ORDER BY arrival DESC LIMIT 1",
            (queue_id, outcomes_for),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def record_outcomes(
        self,
        log_source: str,
        outcomes_for: str | None,
        events: Sequence[LogEvent],
        cursor: LogCursor | None,
    ) -> int:
        """Join final outcomes to tracked messages and save the log cursor, in one transaction.

        Returns how many events were joined to a tracked message. Final deliveries of messages
        mailwatch never saw queued (delivered at once) are kept unjoined, without a class.
        """
        joined = 0
        try:
            self._db.execute("BEGIN")
            for event in events:
                target = self._message_for(event.queue_id, outcomes_for)
                joined += target is not None
                if isinstance(event, Delivery):
                    if event.status.final:
                        self._record_delivery(log_source, event, target)
                elif target is not None:  # removed: it left the queue for good
                    self._db.execute(
                        "UPDATE messages SET status = ?, left_at = ? WHERE key = ? AND status = ?",
                        (Status.LEFT.value, _ts(event.at), target[0], Status.QUEUED.value),
                    )
                    if outcomes_for in self._index:
                        self._index[outcomes_for].pop(target[0], None)
            if cursor is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO log_cursors VALUES (?, ?, ?, ?)",
                    (log_source, cursor.inode, cursor.offset, cursor.head),
                )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            self._index.pop(outcomes_for or "", None)
            raise StoreError(f"cannot record outcomes from {log_source}: {exc}") from exc
        return joined

    def _record_delivery(
        self, log_source: str, event: Delivery, target: tuple[str, str, int] | None
    ) -> None:
        key, cls, prio = target if target is not None else (None, None, None)
        self._db.execute(
            "INSERT INTO deliveries (log_source, queue_id, message_key, class, priority,"
            " recipient, status, dsn, relay, delay, text, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (log_source, event.queue_id, key, cls, prio, event.recipient, event.status.value,
             event.dsn, event.relay, event.delay_seconds, event.text, _ts(event.at)),
        )  # fmt: skip
        if key is None:
            return
        self._db.execute(
            "UPDATE messages SET"
            " outcome = CASE WHEN outcome IS NULL OR ? > (CASE outcome WHEN 'bounced' THEN 3"
            "   WHEN 'expired' THEN 2 WHEN 'sent' THEN 1 ELSE 0 END) THEN ? ELSE outcome END,"
            " outcome_text = CASE WHEN ? = 'sent' THEN outcome_text ELSE ? END,"
            " dsn = CASE WHEN ? = 'sent' AND dsn IS NOT NULL THEN dsn ELSE ? END,"
            " outcome_at = ?, delivery_delay = max(coalesce(delivery_delay, 0), coalesce(?, 0))"
            " WHERE key = ?",
            (event.status.severity, event.status.value, event.status.value, event.text,
             event.status.value, event.dsn, _ts(event.at), event.delay_seconds, key),
        )  # fmt: skip

    def undeliverable(
        self, since: datetime, worst_priority: Priority = Priority.P2
    ) -> list[StoredMessage]:
        """Messages of ``worst_priority`` or more urgent that bounced or expired since ``since``."""
        last_good = self._last_good()
        rows = self._db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE outcome IN ('bounced', 'expired')"
            " AND outcome_at >= ? AND priority <= ?",
            (_ts(since), int(worst_priority)),
        )
        return [self._row(r, last_good) for r in rows]
