"""Final outcomes in the store: joining mail-log events to messages, and their totals."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime

from mailwatch.core.model import (
    Delivery,
    DeliveryStatus,
    LogCursor,
    LogEvent,
    Priority,
    Status,
    StoredMessage,
)
from mailwatch.core.snapshot import (
    DELAY_BUCKETS,
    UNCLASSIFIED,
    OutcomeTotals,
    histograms,
    priority_label,
)
from mailwatch.errors import StoreError
from mailwatch.store.connection import StoreConnection, retag
from mailwatch.store.rows import MESSAGE_COLUMNS, Written, decode_message, ts


class OutcomesMixin:
    """Outcome methods of :class:`~mailwatch.store.Store` (which provides the connection)."""

    _db: StoreConnection
    _index: dict[str, dict[str, Written]]
    _stale: dict[str, set[str]]

    def _last_good(self) -> dict[str, float]:
        raise NotImplementedError

    def _relayhosts(self) -> dict[str, str]:
        raise NotImplementedError

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
    ) -> tuple[str, ...]:
        """Join final outcomes to tracked messages and save the log cursor, in one transaction.

        Final deliveries of messages mailwatch never saw queued (delivered at once) are kept
        unjoined, without a class. Returns the keys of the queued messages that the log says
        left the queue for good (``removed``): the scanner stops counting them as queued
        then, not only once a later scan of their queue no longer lists them.
        """
        left: list[str] = []
        try:
            self._db.execute("BEGIN")
            for event in events:
                target = self._message_for(event.queue_id, outcomes_for)
                if isinstance(event, Delivery):
                    if event.status.final:
                        self._record_delivery(log_source, event, target)
                elif target is not None:  # removed: it left the queue for good
                    changed = self._db.execute(
                        "UPDATE messages SET status = ?, left_at = ? WHERE key = ? AND status = ?",
                        (Status.LEFT.value, ts(event.at), target[0], Status.QUEUED.value),
                    ).rowcount
                    if changed:
                        left.append(target[0])
                    if outcomes_for in self._index:  # written again if a scan still sees it
                        self._index[outcomes_for].pop(target[0], None)
                        self._stale.setdefault(outcomes_for, set()).add(target[0])
            if cursor is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO log_cursors VALUES (?, ?, ?, ?)",
                    (log_source, cursor.inode, cursor.offset, cursor.head),
                )
            self._db.execute("COMMIT")
        except StoreError as exc:  # already rolled back (see mailwatch.store.connection)
            self._index.pop(outcomes_for or "", None)  # it may have dropped rows kept after all
            raise retag(exc, f"cannot record outcomes from {log_source}") from exc
        except BaseException:
            self._db.rollback_quietly()
            self._index.pop(outcomes_for or "", None)
            raise
        return tuple(left)

    def _record_delivery(
        self, log_source: str, event: Delivery, target: tuple[str, str, int] | None
    ) -> None:
        key, cls, prio = target if target is not None else (None, None, None)
        self._db.execute(
            "INSERT INTO deliveries (log_source, queue_id, message_key, class, priority,"
            " recipient, status, dsn, relay, delay, text, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (log_source, event.queue_id, key, cls, prio, event.recipient, event.status.value,
             event.dsn, event.relay, event.delay_seconds, event.text, ts(event.at)),
        )  # fmt: skip
        cls_label = cls or UNCLASSIFIED
        delay = event.delay_seconds or 0.0
        dsn_class = (event.dsn or "")[:1] if event.status is DeliveryStatus.BOUNCED else ""
        self._db.execute(
            "INSERT INTO outcome_totals (class, priority, status, dsn_class, count, delay_sum)"
            " VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (class, priority, status, dsn_class)"
            " DO UPDATE SET count = count + 1, delay_sum = delay_sum + excluded.delay_sum",
            (cls_label, prio or 0, event.status.value, dsn_class, delay),
        )
        if event.status is DeliveryStatus.SENT:
            self._db.execute(
                "INSERT INTO delay_buckets VALUES (?, ?, 1) ON CONFLICT (class, bucket)"
                " DO UPDATE SET count = count + 1",
                (cls_label, bisect.bisect_left(DELAY_BUCKETS, delay)),
            )
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
             event.status.value, event.dsn, ts(event.at), event.delay_seconds, key),
        )  # fmt: skip

    def undeliverable(
        self, since: datetime, worst_priority: Priority = Priority.P2
    ) -> list[StoredMessage]:
        """Messages of ``worst_priority`` or more urgent that bounced or expired since ``since``."""
        last_good, relays = self._last_good(), self._relayhosts()
        rows = self._db.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE outcome IN ('bounced', 'expired')"
            " AND outcome_at >= ? AND priority <= ?",
            (ts(since), int(worst_priority)),
        )
        return [decode_message(r, last_good, relays) for r in rows]

    def outcome_totals(self) -> OutcomeTotals:
        """Final outcomes counted so far (running aggregates: cheap whatever the history)."""
        delivered: dict[str, int] = {}
        expired: dict[tuple[str, str], int] = {}
        bounced: dict[tuple[str, str, str], int] = {}
        sums: dict[str, float] = {}
        for cls, prio, status, dsn_class, count, delay_sum in self._db.execute(
            "SELECT class, priority, status, dsn_class, count, delay_sum FROM outcome_totals"
        ):
            label = priority_label(prio)
            if status == DeliveryStatus.SENT.value:
                delivered[cls] = delivered.get(cls, 0) + count
                sums[cls] = sums.get(cls, 0.0) + delay_sum
            elif status == DeliveryStatus.EXPIRED.value:
                expired[(cls, label)] = expired.get((cls, label), 0) + count
            elif status == DeliveryStatus.BOUNCED.value:
                key = (cls, label, dsn_class or "5")
                bounced[key] = bounced.get(key, 0) + count
        delay = histograms(
            self._db.execute("SELECT class, bucket, count FROM delay_buckets"), DELAY_BUCKETS, sums
        )
        return OutcomeTotals(delivered=delivered, bounced=bounced, expired=expired,
                             delivery_delay=delay)  # fmt: skip
