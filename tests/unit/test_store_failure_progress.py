"""A failed store write loses nothing, and store errors still say what was being done.

Issue 11, "bad input / failures lose nothing": the mail-log source read a log and moved its
in-memory cursor on before the store had the outcomes; when that write failed (full disk,
read-only store), the next probe read on from the new cursor and the outcomes were gone.

The full disk is the fault-injection fake of test_fault_handling (``PRAGMA max_page_count``,
which makes SQLite answer ``SQLITE_FULL`` as a full disk does); the log is a real file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_fault_handling import fake_full_disk

from mailwatch.alerting.lifecycle import AlertKey, AlertState
from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.core.backlog import count_by_class
from mailwatch.core.classify import MessageClass
from mailwatch.core.durations import Duration
from mailwatch.core.model import (
    CanaryObservation,
    CanaryResult,
    Classification,
    Delivery,
    DeliveryStatus,
    LogEvent,
    Message,
    Priority,
    Removed,
    Verdict,
)
from mailwatch.core.sla import evaluate
from mailwatch.errors import StoreFull, StoreReadOnly
from mailwatch.sources.canary import CanarySource, Destination, Submission
from mailwatch.sources.maillog import MailLogSource
from mailwatch.store import Store

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
RECALL = MessageClass("recall_emergency", Priority.P1, Duration(seconds=600))
UNLIMITED = 1_073_741_823  # SQLite's default max_page_count: the disk has space again


def _sent(n: int) -> str:
    """One real-looking Postfix delivery line for queue id ``Q{n}``."""
    return (
        f"Nov 29 11:{n // 60 % 60:02d}:{n % 60:02d} mx1 postfix/smtp[4242]: Q{n:08X}A:"
        f" to=<clerk{n}@ok.example>, relay=127.0.0.1[127.0.0.1]:2525, delay=1.5,"
        f" delays=0.1/0/0.4/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as S{n})\n"
    )


def _bounced(n: int) -> str:
    return (
        f"Nov 29 11:{n // 60 % 60:02d}:{n % 60:02d} mx1 postfix/smtp[4242]: Q{n:08X}A:"
        f" to=<ppcs{n}@reject.example>, relay=127.0.0.1[127.0.0.1]:2525, delay=2,"
        f" delays=0.1/0/0.4/1.5, dsn=5.1.1, status=bounced (550 5.1.1 User unknown)\n"
    )


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store on disk."""
    with Store(tmp_path / "mw.db") as store:
        yield store


def _deliveries(store: Store) -> list[tuple[str, str]]:
    rows = store._db.execute("SELECT queue_id, status FROM deliveries ORDER BY id")  # test reads
    return [(str(q), str(s)) for q, s in rows]


class TestMailLogOutcomesSurviveAFailedWrite:
    """The log cursor moves on only once the store has the outcomes read with it."""

    async def test_outcomes_read_again_after_a_full_disk_and_stored_once(
        self, store: Store, tmp_path: Path
    ) -> None:
        """Full disk while recording: StoreFull; space back: every outcome stored, once."""
        log = tmp_path / "maillog"
        log.write_text("".join(_sent(n) for n in range(3)))
        source = MailLogSource("mx1_log", log, outcomes_for="mx1", clock=lambda: NOW)
        scanner = Scanner(load(None).classifier(), store, clock=lambda: NOW)
        assert (await scanner.scan(source)).ok
        with log.open("a") as out:  # enough rows to need new pages: the write cannot fit
            out.write("".join(_sent(n) if n % 3 else _bounced(n) for n in range(3, 400)))
        fake_full_disk(store, pages=0)

        with pytest.raises(StoreFull, match="cannot record outcomes from mx1_log"):
            await scanner.scan(source)
        assert len(_deliveries(store)) == 3  # nothing of the failed transaction stayed

        store._db.execute(f"PRAGMA max_page_count={UNLIMITED}")  # the disk has space again
        assert (await scanner.scan(source)).ok
        assert (await scanner.scan(source)).ok  # and nothing more to read

        stored = _deliveries(store)
        assert [q for q, _ in stored] == [f"Q{n:08X}A" for n in range(400)]  # each once
        totals = store.outcome_totals()
        assert sum(totals.delivered.values()) == 400 - len(range(3, 400, 3))
        assert sum(totals.bounced.values()) == len(range(3, 400, 3))
        assert store.log_cursor("mx1_log") == source.cursor
        assert source.cursor is not None
        assert source.cursor.offset == log.stat().st_size

    async def test_a_new_source_resumes_from_the_stored_cursor(
        self, store: Store, tmp_path: Path
    ) -> None:
        """The source's cursor is always the store's: a restart after the failure agrees."""
        log = tmp_path / "maillog"
        log.write_text("".join(_sent(n) for n in range(2)))
        source = MailLogSource("mx1_log", log, outcomes_for="mx1", clock=lambda: NOW)
        scanner = Scanner(load(None).classifier(), store, clock=lambda: NOW)
        assert (await scanner.scan(source)).ok
        with log.open("a") as out:
            out.write("".join(_sent(n) for n in range(2, 300)))
        fake_full_disk(store, pages=0)
        with pytest.raises(StoreFull):
            await scanner.scan(source)
        assert source.cursor == store.log_cursor("mx1_log")


class TestCanaryEventsKeptUntilStored:
    """Canary events stay pending until the scanner reports them stored."""

    def test_committed_drops_only_the_events_handed_out(self) -> None:
        """A newer event for the same canary (found after sent) is kept for the next one."""
        source = CanarySource(
            "path1",
            submission=Submission("127.0.0.1", 2525, security="none"),
            destination=Destination("127.0.0.1", "canary", password="pw", security="plain"),
            sender="mailwatch@probation.example",
            recipient="canary@probation.example",
        )
        sent = CanaryResult("path1", "path1.0123456789abcdef", NOW, "Q1")
        other = CanaryResult("path1", "path1.fedcba9876543210", NOW, "Q2")
        source._pending = {sent.token: sent, other.token: other}  # as two probes left them
        found = CanaryResult("path1", sent.token, NOW, "Q1", found_at=NOW + timedelta(seconds=3))
        observation = CanaryObservation("path1", NOW, (), canaries=(sent, other))
        source._pending[sent.token] = found  # the next probe found it meanwhile

        source.committed(observation)

        assert source._pending == {sent.token: found}


def _delivery(n: int) -> Delivery:
    return Delivery(at=NOW, queue_id=f"S{n}", status=DeliveryStatus.SENT,
                    recipient=f"clerk{n}@ok.example", text="250 2.0.0 Ok")  # fmt: skip


def _verdict(queue_id: str) -> Verdict:
    message = Message(
        key=f"mx1/{queue_id}", source="mx1", queue_id=queue_id, queue="deferred",
        arrival=NOW - timedelta(hours=1), size=100, sender="om@probation.example",
        recipients=(),
    )  # fmt: skip
    classification = Classification(RECALL.name, RECALL.priority, "recall_emergency rule 1")
    return evaluate(message, classification, RECALL, NOW)


class TestStoreErrorsSayWhatWasBeingDone:
    """Store mixins' failures are the typed error, retagged with what was being done."""

    def test_alert_state(self, store: Store) -> None:
        """save_alerts on a full disk: StoreFull "cannot save alert state: ..."."""
        fake_full_disk(store, pages=0)
        states = [AlertState(AlertKey("rule", f"class{i}", "mx1")) for i in range(300)]
        with pytest.raises(StoreFull, match=r"^cannot save alert state: "):
            store.save_alerts(states, [], NOW)
        assert not store._db.in_transaction

    def test_canaries(self, store: Store) -> None:
        """record_canaries on a full disk: StoreFull "cannot record canaries of path1: ..."."""
        fake_full_disk(store, pages=0)
        results = [CanaryResult("path1", f"path1.{n:016x}", NOW, f"Q{n}") for n in range(300)]
        with pytest.raises(StoreFull, match=r"^cannot record canaries of path1: "):
            store.record_canaries("path1", results, NOW)

    def test_prune(self, store: Store) -> None:
        """Pruning a read-only store: StoreReadOnly "cannot prune the store: ..."."""
        store.record_failure("mx1", NOW - timedelta(days=90), NOW - timedelta(days=90), "old")
        store.record_failure("mx1", NOW, NOW, "new")
        store._db.execute("PRAGMA query_only=ON")  # fault-injection fake: a read-only store
        with pytest.raises(StoreReadOnly, match=r"^cannot prune the store: "):
            store.prune(NOW, timedelta(days=30), timedelta(days=365))

    def test_outcomes(self, store: Store) -> None:
        """record_outcomes read-only: StoreReadOnly "cannot record outcomes from mx1_log: ..."."""
        store._db.execute("PRAGMA query_only=ON")  # fault-injection fake: a read-only store
        with pytest.raises(StoreReadOnly, match=r"^cannot record outcomes from mx1_log: "):
            store.record_outcomes("mx1_log", "mx1", [_delivery(1)], None)

    def test_outcomes_keep_the_message_index_right(self, store: Store) -> None:
        """A failed outcomes write that had dropped a message from the index forgets the index.

        Before, the dead ``except sqlite3.Error`` left the index without the message although
        the rollback kept it queued: the next unchanged scan rewrote its row as new.
        """
        verdicts = [_verdict(f"Q{n}") for n in range(3)]
        counts = count_by_class("mx1", [RECALL], verdicts)
        store.record_scan("mx1", NOW, NOW, verdicts, counts)
        store.record_scan("mx1", NOW, NOW, verdicts, counts)  # index loaded and current
        fake_full_disk(store, pages=0)  # Q0's row is updated in place, then the disk fills
        events: list[LogEvent] = [Removed(at=NOW, queue_id="Q0")]
        events += [_delivery(n) for n in range(300)]
        with pytest.raises(StoreFull):
            store.record_outcomes("mx1_log", "mx1", events, None)
        store._db.execute(f"PRAGMA max_page_count={UNLIMITED}")

        assert store.record_scan("mx1", NOW, NOW, verdicts, counts) == 0  # nothing changed
