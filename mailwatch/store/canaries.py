"""Canary round trips in the store: one row per canary, and running totals per path.

A canary is a row of ``canaries`` from the probe that sent it (state ``outstanding``) until a
probe finds it in the mailbox in time (``found``: a completed round trip) or gives up on it
(``lost``; a late arrival keeps that state and gains ``found_at`` and ``roundtrip``). The
outstanding rows are what a restarted canary source resumes from, so a canary sent before a
restart and found after it is a round trip, not a loss.

Per path, ``canary_totals`` and ``canary_buckets`` hold running aggregates updated in the
same transaction as the rows: the round-trip count, sum and histogram buckets
(:data:`~mailwatch.core.snapshot.CANARY_BUCKETS`), the loss count, and the send time of the latest
canary that made its round trip. A scrape or an alert evaluation therefore costs what is
currently wrong, never a scan of history.

Transitions only go forward (outstanding → found | lost, lost → arrived late) and each is
applied once: an event reported twice (a probe's events are handed on again after a failed
write) counts once. Round trips + losses therefore equal the canaries sent, once settled.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from mailwatch.alerting.rules import Item
from mailwatch.core.model import CanaryResult
from mailwatch.core.snapshot import CANARY_BUCKETS, CanaryTotals, histograms
from mailwatch.errors import StoreError
from mailwatch.store.connection import retag
from mailwatch.store.rows import at, dt, ts

OUTSTANDING, FOUND, LOST = "outstanding", "found", "lost"
LOST_REASON = "canary not delivered within its timeout"


class CanariesMixin:
    """Canary methods of :class:`~mailwatch.store.Store` (which provides the connection)."""

    _db: sqlite3.Connection

    def record_canaries(
        self, path: str, results: Sequence[CanaryResult], observed_at: datetime
    ) -> None:
        """Apply one probe's canary events (sent, found, lost) in one transaction."""
        try:
            self._db.execute("BEGIN")
            for result in results:
                self._record_canary(path, result, observed_at)
            self._db.execute("COMMIT")
        except StoreError as exc:  # already rolled back (see mailwatch.store.connection)
            raise retag(exc, f"cannot record canaries of {path}") from exc

    def _record_canary(self, path: str, result: CanaryResult, when: datetime) -> None:
        row = self._db.execute(
            "SELECT state FROM canaries WHERE path = ? AND token = ?", (path, result.token)
        ).fetchone()
        state = None if row is None else str(row[0])
        if state is None:
            self._db.execute(
                "INSERT INTO canaries (path, token, sent_at, queue_id, state)"
                " VALUES (?, ?, ?, ?, ?)",
                (path, result.token, ts(result.sent_at), result.queue_id, OUTSTANDING),
            )
            self._db.execute("INSERT OR IGNORE INTO canary_totals (path) VALUES (?)", (path,))
            state = OUTSTANDING
        found_at = None if result.found_at is None else ts(result.found_at)
        key = (path, result.token)
        if state == OUTSTANDING and result.lost:
            self._db.execute(
                "UPDATE canaries SET state = ?, lost_at = ?, found_at = ?, roundtrip = ?"
                " WHERE path = ? AND token = ?",
                (LOST, ts(when), found_at, result.roundtrip_seconds, *key),
            )
            self._db.execute("UPDATE canary_totals SET lost = lost + 1 WHERE path = ?", (path,))
        elif state == OUTSTANDING and found_at is not None:
            roundtrip = result.roundtrip_seconds or 0.0
            self._db.execute(
                "UPDATE canaries SET state = ?, found_at = ?, roundtrip = ?"
                " WHERE path = ? AND token = ?",
                (FOUND, found_at, roundtrip, *key),
            )
            self._db.execute(
                "UPDATE canary_totals SET roundtrips = roundtrips + 1,"
                " roundtrip_sum = roundtrip_sum + ?,"
                " last_success_sent_at = max(coalesce(last_success_sent_at, ?), ?) WHERE path = ?",
                (roundtrip, ts(result.sent_at), ts(result.sent_at), path),
            )
            self._db.execute(
                "INSERT INTO canary_buckets VALUES (?, ?, 1)"
                " ON CONFLICT (path, bucket) DO UPDATE SET count = count + 1",
                (path, bisect.bisect_left(CANARY_BUCKETS, roundtrip)),
            )
        elif state == LOST and found_at is not None:  # it arrived after all: keep how late
            self._db.execute(
                "UPDATE canaries SET found_at = ?, roundtrip = ?"
                " WHERE path = ? AND token = ? AND found_at IS NULL",
                (found_at, result.roundtrip_seconds, *key),
            )

    def canaries_in_flight(self, path: str, lost_since: datetime) -> list[CanaryResult]:
        """Canaries of ``path`` not found yet: outstanding, and lost since ``lost_since``.

        A restarted canary source resumes from these: it finds outstanding ones as round trips
        and recognises lost ones arriving late (rather than as strangers).
        """
        rows = self._db.execute(
            "SELECT token, sent_at, queue_id, state FROM canaries WHERE path = ? AND"
            " (state = ? OR (state = ? AND found_at IS NULL AND sent_at >= ?)) ORDER BY sent_at",
            (path, OUTSTANDING, LOST, ts(lost_since)),
        )
        return [
            CanaryResult(path, token, at(sent), queue_id, lost=state == LOST)
            for token, sent, queue_id, state in rows
        ]

    def canary_healthy_since(self, path: str) -> datetime | None:
        """When the newest canary of ``path`` that made its round trip in time was sent."""
        row = self._db.execute(
            "SELECT last_success_sent_at FROM canary_totals WHERE path = ?", (path,)
        ).fetchone()
        return None if row is None or row[0] is None else at(row[0])

    def canary(self, path: str, token: str) -> CanaryResult | None:
        """One canary as the store knows it."""
        row = self._db.execute(
            "SELECT sent_at, queue_id, state, found_at, roundtrip FROM canaries"
            " WHERE path = ? AND token = ?",
            (path, token),
        ).fetchone()
        if row is None:
            return None
        sent, queue_id, state, found, roundtrip = row
        return CanaryResult(path, token, at(sent), queue_id, dt(found), roundtrip, state == LOST)

    def canaries_lost(self, now: datetime) -> dict[str, tuple[Item, ...]]:
        """Per canary path, its canaries lost since its latest successful round trip.

        Every path that ever sent a canary is present; an empty tuple means the path is fine
        (a canary sent after the losses made its round trip), which resolves the alert.
        """
        lost: dict[str, list[Item]] = {}
        for path, token, queue_id, sent_at in self._db.execute(
            "SELECT t.path, c.token, c.queue_id, c.sent_at FROM canary_totals t"
            " LEFT JOIN canaries c ON c.path = t.path AND c.state = ?"
            " AND c.sent_at > coalesce(t.last_success_sent_at, -1)"
            " ORDER BY t.path, c.sent_at",
            (LOST,),
        ):
            items = lost.setdefault(path, [])
            if token is not None:
                age = max(ts(now) - sent_at, 0.0)
                items.append(Item(queue_id or token, age, reason=LOST_REASON))
        return {path: tuple(items) for path, items in lost.items()}

    def canary_totals(self) -> CanaryTotals:
        """Round-trip histograms and loss counts per path (running aggregates)."""
        sums: dict[str, float] = {}
        lost: dict[str, int] = {}
        for path, roundtrip_sum, lost_count in self._db.execute(
            "SELECT path, roundtrip_sum, lost FROM canary_totals"
        ):
            sums[path], lost[path] = roundtrip_sum, lost_count
        roundtrip = histograms(
            self._db.execute("SELECT path, bucket, count FROM canary_buckets"), CANARY_BUCKETS, sums
        )
        return CanaryTotals(roundtrip=roundtrip, lost=lost)
