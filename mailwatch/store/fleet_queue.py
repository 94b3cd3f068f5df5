"""The fleet push queue in the local store: change sets waiting for the central database.

Every scan's change set is queued here first (one row, its JSON and its size in rows), then
the pusher replays the queue oldest first and deletes what the database acknowledged. While
the database is unreachable the queue grows, up to a bound: past it, the queue is collapsed to
*resync markers* (one per source it held) instead of dropping anything, and the pusher then
sends each marked source's whole current state from the local store.
"""

from __future__ import annotations

from datetime import datetime

from mailwatch.errors import StoreError
from mailwatch.store.connection import StoreConnection, retag
from mailwatch.store.rows import ts


class FleetQueueMixin:
    """Fleet queue methods of :class:`~mailwatch.store.Store` (which provides the connection)."""

    _db: StoreConnection

    def fleet_enqueue(
        self, source: str, payload: str, size: int, now: datetime, limit: int
    ) -> bool:
        """Queue one change set; returns ``False`` if the bound collapsed the queue instead."""
        try:
            self._db.execute("BEGIN")
            queued = int(self._db.execute(
                "SELECT coalesce(sum(size), 0) FROM fleet_outbox"
            ).fetchone()[0])  # fmt: skip
            collapsed = queued + size > limit
            if collapsed:
                self._db.execute(
                    "INSERT OR IGNORE INTO fleet_resync (source, since)"
                    " SELECT DISTINCT source, ? FROM fleet_outbox",
                    (ts(now),),
                )
                self._db.execute(
                    "INSERT OR IGNORE INTO fleet_resync VALUES (?, ?)", (source, ts(now))
                )
                self._db.execute("DELETE FROM fleet_outbox")
            else:
                self._db.execute(
                    "INSERT INTO fleet_outbox (source, payload, size, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (source, payload, size, ts(now)),
                )
            self._db.execute("COMMIT")
        except StoreError as exc:
            raise retag(exc, "cannot queue a fleet push") from exc
        return not collapsed

    def fleet_pending(self, limit: int) -> list[tuple[int, str]]:
        """The oldest queued change sets (id, JSON), at most ``limit``."""
        rows = self._db.execute(
            "SELECT id, payload FROM fleet_outbox ORDER BY id LIMIT ?", (limit,)
        )
        return [(int(i), str(p)) for i, p in rows]

    def fleet_done(self, last_id: int) -> None:
        """Delete the queued change sets up to ``last_id`` (the database has them)."""
        self._db.execute("DELETE FROM fleet_outbox WHERE id <= ?", (last_id,))

    def fleet_backlog(self) -> tuple[int, int]:
        """How many change sets and rows are queued."""
        row = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM fleet_outbox")
        count, size = row.fetchone()
        return int(count), int(size)

    def fleet_resyncs(self) -> list[str]:
        """Sources to resync in full."""
        return [r[0] for r in self._db.execute("SELECT source FROM fleet_resync ORDER BY source")]

    def fleet_resynced(self, source: str) -> None:
        """Forget ``source``'s resync marker (its full state was pushed)."""
        self._db.execute("DELETE FROM fleet_resync WHERE source = ?", (source,))

    def fleet_last_id(self) -> int:
        """The newest queued change set's id (0 when none)."""
        return int(self._db.execute("SELECT coalesce(max(id), 0) FROM fleet_outbox").fetchone()[0])
