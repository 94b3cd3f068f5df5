"""Retention: history past its window is deleted from a real SQLite store; state never is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailwatch.alerting.lifecycle import Silence
from mailwatch.app.service import PRUNE_EVERY, Service
from mailwatch.cli import cli
from mailwatch.config.settings import load
from mailwatch.core.backlog import count_by_class
from mailwatch.core.classify import MessageClass
from mailwatch.core.durations import Duration
from mailwatch.core.model import (
    CanaryResult,
    Classification,
    Delivery,
    DeliveryStatus,
    Message,
    Priority,
    Status,
    Verdict,
)
from mailwatch.core.sla import evaluate
from mailwatch.store import Store
from mailwatch.store.retention import PruneCounts

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
RECALL = MessageClass("recall_emergency", Priority.P1, Duration(seconds=600))


def _verdict(queue_id: str, arrival: datetime, at: datetime) -> Verdict:
    message = Message(
        key=f"pf1/{queue_id}", source="pf1", queue_id=queue_id, queue="deferred",
        arrival=arrival, size=100, sender="om@probation.example", recipients=(),
    )  # fmt: skip
    classification = Classification(RECALL.name, RECALL.priority, "recall_emergency rule 1")
    return evaluate(message, classification, RECALL, at)


def _scan(store: Store, source: str, at: datetime, queue_ids: list[str]) -> None:
    verdicts = [_verdict(q, NOW - 60 * DAY, at) for q in queue_ids]
    store.record_scan(source, at, at, verdicts, count_by_class(source, [RECALL], verdicts))


def _rows(store: Store, sql: str) -> list[tuple[object, ...]]:
    return list(store._db.execute(sql))  # the test reads the tables


def _canary(n: int, sent: datetime) -> CanaryResult:
    return CanaryResult("path1", f"path1.{n:016x}", sent, f"Q{n}")


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store on disk."""
    with Store(tmp_path / "mailwatch.db") as store:
        yield store


class TestPrune:
    """What goes and what stays, table by table."""

    def test_history_goes_and_state_stays(self, store: Store) -> None:
        """Old scans, deliveries, departed messages, settled canaries, silences go."""
        _scan(store, "pf1", NOW - 40 * DAY, ["Q1", "Q2", "Q3"])
        _scan(store, "pf1", NOW - 35 * DAY, ["Q1"])  # Q2 and Q3 left 35 days ago
        _scan(store, "pf1", NOW - DAY, ["Q1"])  # Q1 is still queued: the backlog
        _scan(store, "pf2", NOW - 50 * DAY, [])  # pf2's only (latest) scan
        late_bounce = Delivery(NOW - 2 * DAY, "Q3", DeliveryStatus.BOUNCED, "x@reject.example")
        old_send = Delivery(NOW - 40 * DAY, "Q9", DeliveryStatus.SENT, "y@ok.example")
        store.record_outcomes("log1", "pf1", [late_bounce, old_send], None)
        old_found, outstanding, recent_lost = (
            _canary(1, NOW - 40 * DAY), _canary(2, NOW - 40 * DAY), _canary(3, NOW - 3 * DAY)
        )  # fmt: skip
        store.record_canaries("path1", [old_found, outstanding, recent_lost], NOW - 40 * DAY)
        store.record_canaries(
            "path1",
            [replace(old_found, found_at=NOW - 40 * DAY, roundtrip_seconds=2.0),
             replace(recent_lost, lost=True)],
            NOW - 2 * DAY,
        )  # fmt: skip
        ended = Silence(0, "recall_emergency", None, NOW - 41 * DAY, NOW - 40 * DAY, "x", "om")
        active = Silence(0, "recall_emergency", None, NOW - DAY, NOW + DAY, "y", "om")
        store.add_silence(ended)
        store.add_silence(active)
        store.audit(NOW - 500 * DAY, "om", "ack", "recall_emergency", None)
        store.audit(NOW - 40 * DAY, "om", "ack", "recall_emergency", None)

        counts = store.prune(NOW, 30 * DAY, 400 * DAY)

        assert counts == PruneCounts(
            scans=2, deliveries=1, messages=1, canaries=1, silences=1, audit=1
        )
        assert counts.total == 7
        assert _rows(store, "SELECT source, finished_at FROM scans ORDER BY source") == [
            ("pf1", (NOW - DAY).timestamp()), ("pf2", (NOW - 50 * DAY).timestamp())
        ]  # fmt: skip
        assert {r[0] for r in _rows(store, "SELECT scan_id FROM class_counts")} == {
            r[0] for r in _rows(store, "SELECT id FROM scans")
        }  # class counts went with their scans
        assert [(m.queue_id, m.status) for m in store.queued("pf1")] == [("Q1", Status.QUEUED)]
        assert store.get("pf1/Q3").outcome is DeliveryStatus.BOUNCED  # left long ago, bounced now
        assert _rows(store, "SELECT queue_id FROM messages ORDER BY queue_id") == [("Q1",), ("Q3",)]
        assert _rows(store, "SELECT queue_id FROM deliveries") == [("Q3",)]
        assert store.canaries_in_flight("path1", NOW - 60 * DAY) == [
            outstanding, replace(recent_lost, lost=True)
        ]  # fmt: skip
        assert [s.reason for s in store.silences(NOW)] == ["y"]
        trail = [(r.action, r.at) for r in store.audit_trail()]  # silences add their own
        assert ("ack", NOW - 40 * DAY) in trail
        assert all(when >= NOW - 400 * DAY for _, when in trail)
        assert store.canary_totals().roundtrip["path1"].count == 1  # aggregates are kept
        assert store.prune(NOW, 30 * DAY, 400 * DAY) == PruneCounts()  # nothing more to do

    def test_settled_canaries_are_kept_for_the_late_arrival_window(self, store: Store) -> None:
        """With a one-day retention, a canary lost 3 days ago is kept; 8 days ago, it goes."""
        recent, old = _canary(1, NOW - 3 * DAY), _canary(2, NOW - 8 * DAY)
        store.record_canaries("path1", [recent, old], NOW - 8 * DAY)
        store.record_canaries(
            "path1",
            [replace(recent, lost=True), replace(old, lost=True)],
            NOW - DAY,
        )

        assert store.prune(NOW, DAY, 400 * DAY).canaries == 1
        assert [c.token for c in store.canaries_in_flight("path1", NOW - 60 * DAY)] == [
            recent.token
        ]

    def test_windows_must_be_positive(self, store: Store) -> None:
        """A zero window would delete everything: refused."""
        with pytest.raises(ValueError, match="positive"):
            store.prune(NOW, timedelta(0), DAY)


class TestServicePrunes:
    """The service prunes at its first probe and then at most every PRUNE_EVERY."""

    def test_hourly(self, tmp_path: Path) -> None:
        """Old history goes at once, then only after an hour has passed."""
        config = tmp_path / "mailwatch.toml"
        config.write_text(f'[store]\npath = "{tmp_path / "db.sqlite"}"\nretention = "30d"\n')
        settings = load(config)
        clock = [NOW]
        with Store(settings.store.path) as store:
            service = Service(settings, store, [], clock=lambda: clock[0])
            store.audit(NOW - 500 * DAY, "om", "ack", "x", None)
            service.prune_if_due()
            assert store.audit_trail() == []
            store.audit(NOW - 500 * DAY, "om", "ack", "x", None)
            clock[0] = NOW + PRUNE_EVERY - timedelta(seconds=1)
            service.prune_if_due()
            assert len(store.audit_trail()) == 1  # not due yet
            clock[0] = NOW + PRUNE_EVERY
            service.prune_if_due()
            assert store.audit_trail() == []


class TestConfig:
    """Retention windows are validated with the key that is wrong."""

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ('[store]\nretention = "12h"\n', "retention: keep at least one day"),
            ('[store]\naudit_retention = "2 business days"\n', "audit_retention: keep at least"),
            ('undeliverable_for = "40d"\n[store]\nretention = "30d"\n',
             "store.retention: shorter than undeliverable_for"),
        ],
    )  # fmt: skip
    def test_bad_windows(self, tmp_path: Path, text: str, message: str) -> None:
        """Each mistake names its key."""
        path = tmp_path / "mailwatch.toml"
        path.write_text(text)
        with pytest.raises(Exception, match=message):
            load(path)

    def test_defaults(self) -> None:
        """30 days of history, 400 days of audit."""
        settings = load(None)
        assert (settings.store.retention.seconds, settings.store.audit_retention.seconds) == (
            30 * 86400, 400 * 86400
        )  # fmt: skip


class TestPruneCommand:
    """``mailwatch prune`` (for scans run from cron, without ``mailwatch run``)."""

    def test_prints_what_it_deleted(self, tmp_path: Path) -> None:
        """The configured window is applied to the configured store; counts are printed."""
        db = tmp_path / "db.sqlite"
        config = tmp_path / "mailwatch.toml"
        config.write_text(f'[store]\npath = "{db}"\nretention = "7d"\naudit_retention = "30d"\n')
        now = datetime.now(UTC)
        with Store(db) as store:
            _scan(store, "pf1", now - 10 * DAY, ["Q1"])
            _scan(store, "pf1", now - 9 * DAY, [])  # Q1 left nine days ago
            _scan(store, "pf1", now - DAY, [])
            store.audit(now - 31 * DAY, "om", "ack", "x", None)
            store.audit(now - 29 * DAY, "om", "ack", "x", None)

        result = CliRunner().invoke(cli, ["-c", str(config), "prune", "--json"])

        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {
            "scans": 2, "deliveries": 0, "messages": 1, "canaries": 0, "silences": 0, "audit": 1
        }  # fmt: skip
        table = CliRunner().invoke(cli, ["-c", str(config), "prune"])
        assert table.exit_code == 0
        assert "ROWS DELETED" in table.stdout
        assert "scans" in table.stdout
