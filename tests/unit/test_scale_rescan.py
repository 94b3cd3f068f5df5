"""Scale: a rescan does per message only what changed (issue 13, "Python that grows with change").

The source here is a fake (:class:`FakeQueueSource`: an in-memory listing) because these tests
count what the scanner and the store do per message; the Postfix side is covered against a
real Postfix in ``tests/integration``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from listing import FakeQueueSource

from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.core.durations import Duration
from mailwatch.core.model import Message, Recipient, Removed, Status
from mailwatch.store import Store

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def _message(i: int, reason: str = "connect to relay: Connection refused") -> Message:
    return Message(
        f"mta1/Q{i:06X}/1", "mta1", f"Q{i:06X}", "deferred", NOW - timedelta(minutes=i), 1000,
        "om@probation.example", (Recipient("duty@ppcs.example", reason),),
        subject="Emergency recall - A Person" if i % 2 else "Lunch",
    )  # fmt: skip


def _scan(scanner: Scanner, source: FakeQueueSource) -> None:
    async def scan() -> None:
        outcome = await scanner.scan(source)  # a fake source (structurally a Source)
        assert outcome.ok

    asyncio.run(scan())


@pytest.fixture(name="scanner")
def fixture_scanner(tmp_path: Path) -> Scanner:
    """A scanner with the shipped taxonomy and a new store."""
    return Scanner(load(None).classifier(), Store(tmp_path / "mw.db"), clock=lambda: NOW)


def test_deadlines_are_computed_once_per_message(
    scanner: Scanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rescan counts no business days for messages it already knows; a new one, once."""
    calls = [0]
    real = Duration.deadline_after

    def counting(self: Duration, start: datetime) -> datetime:
        calls[0] += 1
        return real(self, start)

    monkeypatch.setattr(Duration, "deadline_after", counting)
    source = FakeQueueSource([_message(i) for i in range(20)])
    _scan(scanner, source)
    assert calls[0] == 20
    _scan(scanner, source)
    assert calls[0] == 20
    source.messages.append(_message(99))
    _scan(scanner, source)
    assert calls[0] == 21


def test_a_changed_delay_reason_is_still_written(scanner: Scanner) -> None:
    """A new object for a known key (the listing line changed) is compared and written."""
    source = FakeQueueSource([_message(i) for i in range(5)])
    _scan(scanner, source)
    source.messages[2] = _message(2, "host relay said: 451 4.3.0 try later")
    _scan(scanner, source)
    stored = {m.key: m for m in scanner.store.queued("mta1")}
    assert stored["mta1/Q000002/1"].delay_reason == "host relay said: 451 4.3.0 try later"
    assert stored["mta1/Q000001/1"].delay_reason == "connect to relay: Connection refused"


def test_unchanged_objects_still_leave_and_come_back(scanner: Scanner) -> None:
    """Removed messages leave; one marked left elsewhere but listed again is queued again."""
    source = FakeQueueSource([_message(i) for i in range(5)])
    _scan(scanner, source)
    del source.messages[0]
    # A mail-log "removed" line for a message the queue still lists: marked left.
    scanner.store.record_outcomes("log", "mta1", [Removed(NOW, "Q000003")], None)
    assert scanner.store.get("mta1/Q000003/1").status is Status.LEFT
    _scan(scanner, source)
    queued = {m.key for m in scanner.store.queued("mta1")}
    assert queued == {f"mta1/Q{i:06X}/1" for i in range(1, 5)}
    assert scanner.store.get("mta1/Q000000/1").status is Status.LEFT


def test_a_moved_message_is_written(scanner: Scanner) -> None:
    """Deferred → active is a new object with a new queue: written."""
    source = FakeQueueSource([_message(i) for i in range(3)])
    _scan(scanner, source)
    source.messages[1] = source.messages[1]._replace(queue="active")
    _scan(scanner, source)
    assert scanner.store.get("mta1/Q000001/1").queue == "active"


def test_new_rows_are_built_as_sqlite_takes_them(
    scanner: Scanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first scan hands SQLite an iterator of rows, not a list of every row at once."""
    from mailwatch.store.connection import StoreConnection

    handed: list[str] = []
    real = StoreConnection.executemany

    def recording(self: StoreConnection, sql: str, parameters: Any, /) -> Any:
        if sql.startswith("INSERT OR REPLACE INTO messages"):
            handed.append(type(parameters).__name__)
        return real(self, sql, parameters)

    monkeypatch.setattr(StoreConnection, "executemany", recording)
    _scan(scanner, FakeQueueSource([_message(i) for i in range(10)]))
    assert handed == ["generator"]
    assert len(scanner.store.queued("mta1")) == 10


def test_repeated_listing_and_header_strings_are_shared() -> None:
    """Repeated delay reasons, senders, queue names and header names are one object each.

    Not one copy per queued message: they are kept for as long as the message queues.
    """
    from mailwatch.core.headers import parse_header_block
    from mailwatch.parsing.postqueue import QueueEntry, parse_line

    def line(queue_id: str) -> bytes:
        return (
            b'{"queue_name": "deferred", "queue_id": "' + queue_id.encode() + b'",'
            b' "arrival_time": 1700000000, "message_size": 10, "sender": "om@probation.example",'
            b' "recipients": [{"address": "duty@ppcs.example",'
            b' "delay_reason": "connect to relay: Connection refused"}]}'
        )

    first, second = parse_line(line("A1")), parse_line(line("B2"))
    assert isinstance(first, QueueEntry)
    assert isinstance(second, QueueEntry)
    assert first.queue_name is second.queue_name
    assert first.sender is second.sender
    assert first.recipients[0].delay_reason is second.recipients[0].delay_reason
    assert first.recipients[0].address is second.recipients[0].address
    one = parse_header_block("Subject: a\nX-Case-Reference: 1\n\n")
    two = parse_header_block("Subject: b\nX-Case-Reference: 2\n\n")
    assert [n for n, _ in one.items] == ["Subject", "X-Case-Reference"]
    # Kept headers hold no per-header objects at all (core/headerset.py: one packed string).
    assert [n for n, _ in two.items] == ["Subject", "X-Case-Reference"]
    assert isinstance(one._packed, str)
