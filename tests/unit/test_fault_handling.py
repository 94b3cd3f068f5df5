"""Blind by age, typed store failures with safe rollbacks, and the health metrics (issue 11).

The full-disk cases here use a *fake*: ``PRAGMA max_page_count`` makes SQLite answer
``SQLITE_FULL`` exactly as a full disk does (``fake_full_disk``). The real thing, a tmpfs that
fills under a running service, is drill (b) in tests/integration/test_fault_drills.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mailwatch.alerting.lifecycle import Timing
from mailwatch.alerting.rules import AlertRule, Condition, Situation, evaluate
from mailwatch.core.backlog import ClassCount
from mailwatch.core.model import Priority
from mailwatch.core.snapshot import (
    OutcomeTotals,
    SourceHealth,
    StoreHealth,
    build_snapshot,
    warning_kinds,
)
from mailwatch.errors import (
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreIOError,
    StoreReadOnly,
)
from mailwatch.store import Store
from mailwatch.store.connection import translate
from mailwatch.web.metrics import MailwatchCollector

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
BLIND = AlertRule("source_blind", Condition.SOURCE_BLIND, "page", Timing(()),
                  blind_after=timedelta(minutes=5))  # fmt: skip


class TestBlindByAge:
    """``source_blind`` fires on failures *and* on a success that is overdue."""

    def test_hung_probe_without_failures_is_blind(self) -> None:
        """No failure recorded (the probe never ended), but no success for too long: blind."""
        situation = Situation(
            now=NOW,
            failing_since={"mta1": None},
            overdue_since={"mta1": NOW - timedelta(minutes=6)},
        )
        (finding,) = evaluate(BLIND, situation)
        assert finding.active
        assert finding.details.oldest_age_seconds == 360

    def test_never_probed_source_is_blind_once_overdue(self) -> None:
        """A source whose first probe never returned is in no failing_since map at all."""
        situation = Situation(now=NOW, overdue_since={"mta1": NOW - timedelta(minutes=5)})
        assert [f.active for f in evaluate(BLIND, situation)] == [True]

    def test_recent_success_is_not_blind(self) -> None:
        """Overdue for less than blind_after, not failing: fine."""
        situation = Situation(
            now=NOW,
            failing_since={"mta1": None},
            overdue_since={"mta1": NOW - timedelta(minutes=1)},
        )
        assert [f.active for f in evaluate(BLIND, situation)] == [False]

    def test_failing_long_enough_is_still_blind(self) -> None:
        """The old condition holds as before."""
        situation = Situation(
            now=NOW,
            failing_since={"mta1": NOW - timedelta(minutes=5)},
            overdue_since={"mta1": NOW + timedelta(minutes=1)},
        )
        assert [f.active for f in evaluate(BLIND, situation)] == [True]


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store on disk."""
    with Store(tmp_path / "mw.db") as store:
        yield store


def fake_full_disk(store: Store, pages: int = 1) -> None:
    """Fault-injection fake: the database may grow ``pages`` more pages, then SQLITE_FULL."""
    db = store._db
    count = int(db.execute("PRAGMA page_count").fetchone()[0])
    db.execute(f"PRAGMA max_page_count={count + pages}")


def _fill(store: Store) -> StoreError:
    for _ in range(10_000):
        try:
            store.record_failure("mta1", NOW, NOW, "x" * 4000)
        except StoreError as exc:
            return exc
    raise AssertionError("the fake full disk never filled")


class TestStoreFailures:
    """sqlite3 errors become typed StoreErrors; rollbacks never raise; health follows."""

    def test_full_disk_in_a_scan_transaction_is_store_full(self, store: Store) -> None:
        """COMMIT/INSERT failing with SQLITE_FULL: StoreFull, transaction gone, store usable.

        Before, the handler's own ROLLBACK raised "cannot rollback - no transaction is active"
        (an sqlite3.OperationalError, not a StoreError) and escaped the service.
        """
        fake_full_disk(store)
        error = _fill(store)
        assert isinstance(error, StoreFull)
        assert isinstance(error, OSError)
        assert not store._db.in_transaction
        assert not store.health().up
        assert store.health().errors == {"full": 1}

    def test_full_disk_mid_scan_is_store_full_not_a_rollback_error(self, store: Store) -> None:
        """record_scan's transaction hits SQLITE_FULL: StoreFull, never an sqlite3 error."""
        counts = [ClassCount("mta1", f"class{i}", Priority.P2, i, 0, 0.0) for i in range(300)]
        fake_full_disk(store)

        def scan_until_full() -> None:
            for _ in range(1000):
                store.record_scan("mta1", NOW, NOW, [], counts)

        with pytest.raises(StoreFull):  # before: sqlite3 "cannot rollback - no transaction"
            scan_until_full()
        assert not store._db.in_transaction
        fake_full_disk(store, pages=1_000_000)  # space freed
        store.record_scan("mta1", NOW, NOW, [], counts)
        assert store.health().up

    def test_rollback_without_a_transaction_is_harmless(self, store: Store) -> None:
        """A ROLLBACK after SQLite already rolled back does nothing and raises nothing."""
        store._db.execute("ROLLBACK")

    def test_recovers_when_space_comes_back(self, store: Store) -> None:
        """The next write that works clears the failure; the counts stay."""
        fake_full_disk(store)
        assert isinstance(_fill(store), StoreFull)
        store._db.execute("PRAGMA max_page_count=1073741823")
        store.record_failure("mta1", NOW, NOW, "fine")
        assert store.health().up
        assert store.health().errors == {"full": 1}

    def test_stale_transaction_is_rolled_back_on_begin(self, store: Store) -> None:
        """A transaction a non-SQL exception left open does not block the next one."""
        store._db.execute("BEGIN")
        store.record_failure("mta1", NOW, NOW, "after")
        assert store.last_scans()["mta1"].error == "after"

    @pytest.mark.parametrize(
        ("code", "expected"),
        [
            ("SQLITE_FULL", StoreFull),
            ("SQLITE_READONLY_DBMOVED", StoreReadOnly),
            ("SQLITE_CORRUPT", StoreCorrupt),
            ("SQLITE_NOTADB", StoreCorrupt),
            ("SQLITE_IOERR_WRITE", StoreIOError),
            ("SQLITE_BUSY", StoreBusy),
            ("SQLITE_MISUSE", StoreError),
        ],
    )
    def test_translation_by_result_code(self, code: str, expected: type[StoreError]) -> None:
        """Extended result codes map to their primary code's class."""
        exc = sqlite3.OperationalError("boom")
        exc.sqlite_errorname = code
        error = translate(exc, "writing")
        assert type(error) is expected
        assert str(error) == "writing: boom"

    def test_corrupt_file_is_store_corrupt(self, tmp_path: Path) -> None:
        """A file that is not a database cannot be opened: StoreCorrupt, not sqlite3."""
        path = tmp_path / "garbage.db"
        path.write_bytes(b"not a database at all" * 500)
        with pytest.raises(StoreCorrupt, match="cannot open store"):
            Store(path)


def _metrics(**health: object) -> str:
    snapshot = build_snapshot(
        now=NOW, classes=(), verdicts={}, queues={}, outcomes=OutcomeTotals(), histories={},
        health={"mta1": SourceHealth(up=False, last_duration_seconds=1.0, last_success=None,
                                     errors={"internal": 2},
                                     warnings=frozenset({"mail_system_down"}),
                                     reconciled=3)},
        store=StoreHealth(**health),  # type: ignore[arg-type]
    )  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MailwatchCollector(lambda: snapshot))
    return generate_latest(registry).decode()


class TestHealthMetrics:
    """Store health, internal probe errors and the mail-system-down warning in /metrics."""

    def test_store_up_and_errors_by_kind(self) -> None:
        """Down with one full-disk error; every kind present from the start."""
        text = _metrics(up=False, errors={"full": 1})
        assert "mailwatch_store_up 0.0" in text
        assert 'mailwatch_store_errors_total{kind="full"} 1.0' in text
        assert 'mailwatch_store_errors_total{kind="corrupt"} 0.0' in text

    def test_internal_probe_errors_are_counted(self) -> None:
        """kind="internal" is a probe error kind like the others."""
        text = _metrics()
        assert 'mailwatch_probe_errors_total{kind="internal",source="mta1"} 2.0' in text

    def test_mail_system_down_warning(self) -> None:
        """The postqueue warning as a bounded label, never its text."""
        text = _metrics()
        assert 'mailwatch_source_warning{kind="mail_system_down",source="mta1"} 1.0' in text

    def test_reconcile_differences_are_a_counter_per_source(self) -> None:
        """What full listings found that the incremental view had missed, since start."""
        text = _metrics()
        assert 'mailwatch_source_reconcile_differences_total{source="mta1"} 3.0' in text

    def test_warning_kinds_from_postqueue_text(self) -> None:
        """Only known kinds; case does not matter; other warnings give nothing."""
        said = ("Mail system is down -- accessing queue directly", "something else")
        assert warning_kinds(said) == {"mail_system_down"}
        assert warning_kinds(["queue file size limit exceeded"]) == frozenset()
