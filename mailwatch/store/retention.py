"""Retention: history older than the configured window is deleted, current state never is.

A service scanning every 30 s writes a scan row and a row per class per source each time
(tens of thousands of rows a day), a delivery row per log line, and a message row for every
message it ever saw. :meth:`RetentionMixin.prune` deletes, in one transaction:

* scans (and, by cascade, their class counts) that finished before the cutoff, except each
  source's latest scan, which says when it was last looked at;
* mail-log deliveries logged before the cutoff;
* messages that left their queue before the cutoff and whose outcome, if any, is older too
  (queued messages are never deleted, however old: they are the backlog);
* settled canaries (found or lost) sent before the cutoff or before the late-arrival window
  (:data:`~mailwatch.core.model.REMEMBER_LOST`), whichever is earlier; outstanding ones
  stay, since a restarted source resumes from them;
* silences that ended or were removed before the cutoff;
* audit records older than their own, longer window (who acked, silenced, looked at
  personal data or acted on a message is kept for the audit period, not the metrics one).

Running totals (outcomes, delay buckets, canary totals) are aggregates, not history, and are
never pruned. The store does not shrink on disk (no VACUUM): SQLite reuses the freed pages.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailwatch.core.model import REMEMBER_LOST, Status
from mailwatch.errors import StoreError
from mailwatch.store.canaries import OUTSTANDING
from mailwatch.store.connection import retag
from mailwatch.store.rows import ts


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """Rows deleted, per table (class counts go with their scans)."""

    scans: int = 0
    deliveries: int = 0
    messages: int = 0
    canaries: int = 0
    silences: int = 0
    audit: int = 0

    @property
    def total(self) -> int:
        """All rows deleted."""
        return (self.scans + self.deliveries + self.messages + self.canaries + self.silences
                + self.audit)  # fmt: skip


class RetentionMixin:
    """Retention methods of :class:`~mailwatch.store.Store` (which provides the connection)."""

    _db: sqlite3.Connection

    def prune(self, now: datetime, keep: timedelta, keep_audit: timedelta) -> PruneCounts:
        """Delete history older than ``now - keep`` (audit: ``now - keep_audit``)."""
        if keep <= timedelta(0) or keep_audit <= timedelta(0):
            raise ValueError("retention windows must be positive")
        cutoff = ts(now - keep)
        canary_cutoff = ts(now - max(keep, REMEMBER_LOST))
        try:
            self._db.execute("BEGIN")
            counts = PruneCounts(
                scans=self._delete(
                    "DELETE FROM scans WHERE finished_at < ?"
                    " AND id NOT IN (SELECT max(id) FROM scans GROUP BY source)",
                    cutoff,
                ),
                deliveries=self._delete("DELETE FROM deliveries WHERE at < ?", cutoff),
                messages=self._delete(
                    "DELETE FROM messages WHERE status = ? AND left_at < ?"
                    " AND coalesce(outcome_at, left_at) < ?",
                    Status.LEFT.value,
                    cutoff,
                    cutoff,
                ),
                canaries=self._delete(
                    "DELETE FROM canaries WHERE state != ? AND sent_at < ?",
                    OUTSTANDING,
                    canary_cutoff,
                ),
                silences=self._delete(
                    "DELETE FROM silences WHERE coalesce(removed_at, ends) < ?", cutoff
                ),
                audit=self._delete("DELETE FROM audit WHERE at < ?", ts(now - keep_audit)),
            )
            self._db.execute("COMMIT")
        except StoreError as exc:  # already rolled back (see mailwatch.store.connection)
            raise retag(exc, "cannot prune the store") from exc
        return counts

    def _delete(self, sql: str, *params: str | float) -> int:
        return self._db.execute(sql, params).rowcount
