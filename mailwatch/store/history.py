"""History in the store: per-class counts of past scans, for backlog trends and charts."""

from __future__ import annotations

from datetime import datetime

from mailwatch.core.backlog import ClassCount
from mailwatch.core.model import Priority
from mailwatch.store.connection import StoreConnection
from mailwatch.store.rows import at, ts


class HistoryMixin:
    """History methods of :class:`~mailwatch.store.Store` (which provides the connection)."""

    _db: StoreConnection

    def latest_counts(self) -> list[ClassCount]:
        """Per-class counts of the latest good scan of every source."""
        rows = self._db.execute(
            "SELECT source, class, priority, total, stuck, oldest_age FROM class_counts"
            " WHERE scan_id IN (SELECT max(id) FROM scans WHERE ok GROUP BY source)"
            " ORDER BY source, priority, class"
        )
        return [ClassCount(s, c, Priority(p), t, st, a) for s, c, p, t, st, a in rows]

    def class_history(self, since: datetime) -> dict[tuple[str, str], list[tuple[datetime, int]]]:
        """Backlog totals per (source, class) at each good scan since ``since``, oldest first."""
        history: dict[tuple[str, str], list[tuple[datetime, int]]] = {}
        for source, cls, finished, total in self._db.execute(
            "SELECT s.source, c.class, s.finished_at, c.total FROM class_counts c"
            " JOIN scans s ON s.id = c.scan_id WHERE s.ok AND s.finished_at >= ?"
            " ORDER BY s.finished_at",
            (ts(since),),
        ):
            history.setdefault((source, cls), []).append((at(finished), total))
        return history

    def class_trends(
        self, since: datetime, step_seconds: float = 300.0
    ) -> dict[tuple[str, str], list[tuple[datetime, int, int]]]:
        """Waiting and stuck counts per (source, class) since ``since``, per ``step_seconds``.

        Each step's point is its latest good scan's time with the step's largest counts (a
        chart of the worst in each step; a day is 288 points per class at the default step).
        """
        trends: dict[tuple[str, str], list[tuple[datetime, int, int]]] = {}
        for source, cls, finished, total, stuck in self._db.execute(
            "SELECT s.source, c.class, max(s.finished_at), max(c.total), max(c.stuck)"
            " FROM class_counts c JOIN scans s ON s.id = c.scan_id"
            " WHERE s.ok AND s.finished_at >= ?"
            " GROUP BY s.source, c.class, CAST(s.finished_at / ? AS INTEGER)"
            " ORDER BY 3",
            (ts(since), step_seconds),
        ):
            trends.setdefault((source, cls), []).append((at(finished), total, stuck))
        return trends
