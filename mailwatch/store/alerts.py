"""Alert state, the notification outbox, silences and the audit trail, in the store.

A notification leaves the outbox only when its receiver accepted it (:meth:`outbox_done`);
a failure reschedules it with backoff (:meth:`outbox_retry`). Alert states and the
notifications a step produced are written in one transaction, so a crash can neither lose a
notification nor send one twice for the same step.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailwatch.alerting.codec import dump_state, load_state
from mailwatch.alerting.lifecycle import AlertKey, AlertState, Silence
from mailwatch.errors import StoreError
from mailwatch.store.connection import retag
from mailwatch.store.rows import at, ts


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A notification waiting for its receiver."""

    id: int
    alert: str
    receiver: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """Who did what, when, to what, and why.

    ``actor`` is who proved who they are (an API token's name, or the login name on the host);
    ``on_behalf_of`` is a name they gave (``by``), recorded as given and never verified.
    """

    at: datetime
    actor: str
    action: str
    target: str
    detail: str | None
    on_behalf_of: str | None = None


def acting(actor: str, on_behalf_of: str | None) -> str:
    """How an actor is shown where one name fits: ``alice (via on-call)`` or ``on-call``."""
    return f"{on_behalf_of} (via {actor})" if on_behalf_of and on_behalf_of != actor else actor


class AlertsMixin:
    """Alerting methods of :class:`~mailwatch.store.Store` (which provides the connection)."""

    _db: sqlite3.Connection

    def alert_states(self) -> dict[AlertKey, AlertState]:
        """Every alert ever evaluated, by key."""
        rows = self._db.execute("SELECT rule, class, source, state FROM alerts")
        return {
            (key := AlertKey(rule, cls, source)): load_state(key, state)
            for rule, cls, source, state in rows
        }

    def save_alerts(
        self,
        states: Sequence[AlertState],
        notifications: Sequence[tuple[AlertKey, str, str, dict[str, Any]]],
        now: datetime,
    ) -> None:
        """Store changed states and queue ``(key, receiver, kind, payload)`` in one transaction."""
        try:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?, ?)",
                [(s.key.rule, s.key.class_name, s.key.source, s.status.value, dump_state(s),
                  ts(now)) for s in states],
            )  # fmt: skip
            self._db.executemany(
                "INSERT INTO outbox (alert, receiver, kind, payload, created_at, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(str(key), receiver, kind, json.dumps(payload), ts(now), ts(now))
                 for key, receiver, kind, payload in notifications],
            )  # fmt: skip
            self._db.execute("COMMIT")
        except StoreError as exc:  # already rolled back (see mailwatch.store.connection)
            raise retag(exc, "cannot save alert state") from exc

    def outbox_due(self, now: datetime, limit: int = 100) -> list[OutboxItem]:
        """Notifications whose next attempt is due, oldest first."""
        rows = self._db.execute(
            "SELECT id, alert, receiver, kind, payload, created_at, attempts, last_error"
            " FROM outbox WHERE next_attempt_at <= ? ORDER BY id LIMIT ?",
            (ts(now), limit),
        )
        return [
            OutboxItem(i, a, r, k, json.loads(p), at(c), n, e) for i, a, r, k, p, c, n, e in rows
        ]

    def outbox_due_in_order(self, now: datetime, limit: int = 100) -> list[OutboxItem]:
        """Due rows, in order, except those held up by an older, not yet due row.

        Held up: an older row of the same alert and receiver is waiting for its retry. Per
        alert and receiver, notifications go out in the order they were queued.
        """
        rows = self._db.execute(
            "SELECT id, alert, receiver, kind, payload, created_at, attempts, last_error"
            " FROM outbox AS o WHERE next_attempt_at <= ? AND NOT EXISTS ("
            "  SELECT 1 FROM outbox AS p WHERE p.alert = o.alert AND p.receiver = o.receiver"
            "  AND p.id < o.id AND p.next_attempt_at > ?)"
            " ORDER BY id LIMIT ?",
            (ts(now), ts(now), limit),
        )
        return [
            OutboxItem(i, a, r, k, json.loads(p), at(c), n, e) for i, a, r, k, p, c, n, e in rows
        ]

    def outbox_pending(self) -> int:
        """How many notifications are waiting."""
        return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def outbox_done(self, item_id: int) -> None:
        """The receiver accepted it: remove it."""
        self._db.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    def outbox_retry(self, item_id: int, error: str, next_attempt: datetime) -> None:
        """The receiver failed: count the attempt and try again at ``next_attempt``."""
        self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
            " WHERE id = ?",
            (error[:500], ts(next_attempt), item_id),
        )

    def add_silence(
        self, silence: Silence, *, actor: str | None = None, on_behalf_of: str | None = None
    ) -> int:
        """Store a silence (its ``id`` is assigned here) and audit it.

        The audit's actor is ``actor`` (default: the silence's ``by``).
        """
        cursor = self._db.execute(
            "INSERT INTO silences (class, source, starts, ends, reason, created_by)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (silence.class_name, silence.source, ts(silence.starts), ts(silence.ends),
             silence.reason, silence.by),
        )  # fmt: skip
        silence_id = int(cursor.lastrowid or 0)
        self.audit(silence.starts, actor or silence.by, "silence", f"silence {silence_id}",
                   f"class={silence.class_name or '*'} source={silence.source or '*'} "
                   f"until={silence.ends.isoformat()} reason={silence.reason}",
                   on_behalf_of=on_behalf_of)  # fmt: skip
        return silence_id

    def remove_silence(
        self, silence_id: int, by: str, now: datetime, *, on_behalf_of: str | None = None
    ) -> bool:
        """End a silence early; ``False`` if there is no such active silence."""
        cursor = self._db.execute(
            "UPDATE silences SET removed_at = ? WHERE id = ? AND removed_at IS NULL AND ends > ?",
            (ts(now), silence_id, ts(now)),
        )
        if cursor.rowcount:
            self.audit(now, by, "unsilence", f"silence {silence_id}", None,
                       on_behalf_of=on_behalf_of)  # fmt: skip
        return bool(cursor.rowcount)

    def silences(self, now: datetime) -> list[Silence]:
        """Silences not yet over at ``now`` (including ones that start later)."""
        rows = self._db.execute(
            "SELECT id, class, source, starts, ends, reason, created_by FROM silences"
            " WHERE removed_at IS NULL AND ends > ? ORDER BY id",
            (ts(now),),
        )
        return [Silence(i, c, s, at(a), at(b), r, by) for i, c, s, a, b, r, by in rows]

    def audit(
        self,
        when: datetime,
        actor: str,
        action: str,
        target: str,
        detail: str | None,
        *,
        on_behalf_of: str | None = None,
    ) -> None:
        """Append to the audit trail (acks, silences, personal-data views, actions).

        ``on_behalf_of`` equal to ``actor`` says nothing more and is not stored.
        """
        self._db.execute(
            "INSERT INTO audit (at, actor, action, target, detail, on_behalf_of)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (ts(when), actor, action, target, detail,
             on_behalf_of if on_behalf_of and on_behalf_of != actor else None),
        )  # fmt: skip

    def audit_trail(self, limit: int = 100) -> list[AuditRecord]:
        """The latest audit records, newest first."""
        rows = self._db.execute(
            "SELECT at, actor, action, target, detail, on_behalf_of FROM audit"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [AuditRecord(at(w), a, act, t, d, o) for w, a, act, t, d, o in rows]
