"""Bounced and expired totals carry the message's priority (schema migration 8).

A MAPPA level-3 message is P1 in the P2 ``mappa`` class: its bounce must count as P1, not as
the class's P2. Totals counted before the store kept priorities keep their counts, labelled
``unknown``.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from mailwatch.config.settings import load
from mailwatch.core.backlog import count_by_class
from mailwatch.core.classify import MessageClass
from mailwatch.core.durations import Duration
from mailwatch.core.model import (
    Classification,
    Delivery,
    DeliveryStatus,
    Message,
    Priority,
    Verdict,
)
from mailwatch.core.sla import evaluate
from mailwatch.core.snapshot import UNCLASSIFIED, build_snapshot
from mailwatch.store import Store
from mailwatch.store.schema import MIGRATIONS
from mailwatch.web.metrics import MailwatchCollector

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
MAPPA = MessageClass("mappa", Priority.P2, Duration(seconds=7200))


def _verdict(queue_id: str, priority: Priority) -> Verdict:
    message = Message(
        key=f"mx1/{queue_id}", source="mx1", queue_id=queue_id, queue="deferred",
        arrival=NOW - timedelta(hours=1), size=100, sender="om@probation.example",
        recipients=(),
    )  # fmt: skip
    return evaluate(message, Classification(MAPPA.name, priority, "mappa rule"), MAPPA, NOW)


def _outcome(queue_id: str, status: DeliveryStatus, dsn: str | None = None) -> Delivery:
    return Delivery(at=NOW, queue_id=queue_id, status=status, recipient="x@reject.example",
                    dsn=dsn, text="550 5.1.1 User unknown")  # fmt: skip


def test_bounce_and_expiry_count_at_the_message_priority(tmp_path: Path) -> None:
    """Level-3 (P1) and ordinary (P2) MAPPA mail: separate series; unjoined mail: unknown."""
    with Store(tmp_path / "mw.db") as store:
        verdicts = [_verdict("L3", Priority.P1), _verdict("ORD", Priority.P2),
                    _verdict("L3X", Priority.P1)]  # fmt: skip
        store.record_scan("mx1", NOW, NOW, verdicts, count_by_class("mx1", [MAPPA], verdicts))
        store.record_outcomes("mx1_log", "mx1", [
            _outcome("L3", DeliveryStatus.BOUNCED, "5.1.1"),
            _outcome("ORD", DeliveryStatus.BOUNCED, "5.1.1"),
            _outcome("L3X", DeliveryStatus.EXPIRED),
            _outcome("NEVERSEEN", DeliveryStatus.BOUNCED, "4.4.1"),
        ], None)  # fmt: skip
        totals = store.outcome_totals()
    assert totals.bounced == {
        ("mappa", "P1", "5"): 1,
        ("mappa", "P2", "5"): 1,
        (UNCLASSIFIED, "unknown", "4"): 1,
    }
    assert totals.expired == {("mappa", "P1"): 1}
    classes = load(None).classifier().all_classes
    snapshot = build_snapshot(NOW, classes, {}, {}, totals, {}, {})
    registry = CollectorRegistry()
    registry.register(MailwatchCollector(lambda: snapshot))
    value = registry.get_sample_value
    bounced = "mailwatch_bounced_total"
    assert value(bounced, {"class": "mappa", "priority": "P1", "dsn_class": "5"}) == 1
    assert value(bounced, {"class": "mappa", "priority": "P2", "dsn_class": "5"}) == 1
    assert value("mailwatch_expired_total", {"class": "mappa", "priority": "P1"}) == 1
    assert value("mailwatch_expired_total", {"class": "mappa", "priority": "P2"}) == 0


def test_totals_from_before_migration_8_are_kept_as_unknown(tmp_path: Path) -> None:
    """A schema-7 store's running totals survive the migration, priority unknown."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:7], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    db.executemany(
        "INSERT INTO outcome_totals VALUES (?, ?, ?, ?, ?)",
        [("mappa", "bounced", "5", 3, 0.0), ("mappa", "expired", "", 2, 0.0),
         ("court_result", "sent", "", 7, 35.0)],
    )  # fmt: skip
    db.close()
    with Store(path) as store:
        assert store.schema_version == len(MIGRATIONS) >= 8
        store.record_outcomes("mx1_log", "mx1", [
            _outcome("NEW", DeliveryStatus.SENT), _outcome("NEW2", DeliveryStatus.BOUNCED, "5.0.0"),
        ], None)  # fmt: skip
        totals = store.outcome_totals()
    assert totals.bounced == {("mappa", "unknown", "5"): 3, (UNCLASSIFIED, "unknown", "5"): 1}
    assert totals.expired == {("mappa", "unknown"): 2}
    assert totals.delivered == {"court_result": 7, UNCLASSIFIED: 1}
