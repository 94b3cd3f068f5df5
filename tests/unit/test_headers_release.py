"""Memory at scale (issue 13): a stored message's headers are dropped from memory.

The scanner releases the headers of new messages once the store holds them
(``Headers.release``); ``mailwatch show`` and the API read them from the store. The source is a
fake (an in-memory listing, as in ``test_scale_rescan.py``); the store is real SQLite.
"""

from __future__ import annotations

import asyncio
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from listing import FakeQueueSource

from mailwatch.app import queries
from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.core.model import Headers, Message, Recipient, Removed, Status
from mailwatch.errors import HeadersReleased, StoreError
from mailwatch.store import Store

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
PAIRS = st.lists(st.tuples(st.text(min_size=1, max_size=12), st.text(max_size=40)), max_size=8)


@given(PAIRS)
def test_released_headers_compare_and_hash_as_before(pairs: list[tuple[str, str]]) -> None:
    """Released: equal to (and hashed as) the same items; unreadable; empty stays readable."""
    headers, same = Headers(tuple(pairs)), Headers(tuple(pairs))
    before = hash(headers)
    headers.release()
    assert hash(headers) == before == hash(same)
    assert headers == same
    assert same == headers
    if not pairs:
        assert not headers.released
        assert headers.items == ()
        return
    assert headers.released
    assert headers != Headers((*pairs, ("X-Other", "1")))
    with pytest.raises(HeadersReleased):
        _ = headers.items
    with pytest.raises(HeadersReleased):
        headers.get(pairs[0][0])
    with pytest.raises(LookupError):  # a builtin to catch too
        pickle.dumps(headers)
    headers.release()  # twice: nothing more to drop
    assert hash(headers) == before
    assert repr(headers) == "Headers(<released>)"


def _headers(i: int) -> Headers:
    return Headers(
        (("From", f"Officer {i} <om{i}@probation.example>"), ("To", "duty@ppcs.example"),
         ("Subject", "Emergency recall - A Person" if i % 2 else "Lunch"),
         ("X-Case-Reference", f"X{i:06d}"))
    )  # fmt: skip


def _message(i: int) -> Message:
    headers = _headers(i)
    return Message(
        f"mta1/Q{i:06X}/1", "mta1", f"Q{i:06X}", "deferred", NOW - timedelta(minutes=i), 1000,
        "om@probation.example", (Recipient("duty@ppcs.example", "connect: refused"),),
        headers, headers.get("Subject") or "",
    )  # fmt: skip


def _scan(scanner: Scanner, source: FakeQueueSource) -> None:
    async def scan() -> None:
        await scanner.scan(source)  # a fake source (structurally a Source)

    asyncio.run(scan())


@pytest.fixture(name="scanner")
def fixture_scanner(tmp_path: Path) -> Scanner:
    """A scanner with the shipped taxonomy and a new store."""
    return Scanner(load(None).classifier(), Store(tmp_path / "mw.db"), clock=lambda: NOW)


def _shown_headers(scanner: Scanner, key: str) -> list[tuple[str, str]]:
    """The header lines of ``mailwatch show`` (and of the API's message detail)."""
    fields = queries.message(scanner.store, key, NOW, undeliverable_for=86400.0)
    return [(label.removeprefix("header "), value) for label, value in fields
            if label.startswith("header ")]  # fmt: skip


def test_stored_headers_leave_memory_and_show_still_gives_them(scanner: Scanner) -> None:
    """After a scan the kept messages hold no headers; show and the API read the store's."""
    source = FakeQueueSource([_message(i) for i in range(6)])
    _scan(scanner, source)
    kept = scanner.backlog("mta1").verdicts
    assert len(kept) == 6
    assert all(v.message.headers.released for v in kept.values())
    for i in range(6):
        key = f"mta1/Q{i:06X}/1"
        assert list(scanner.store.get(key).headers.items) == list(_headers(i).items)
        assert _shown_headers(scanner, key) == list(_headers(i).items)
    emergency = kept["mta1/Q000001/1"].classification
    assert emergency.name != "default"  # classified on its headers before they were dropped


def test_headers_stay_until_a_write_succeeds(
    scanner: Scanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed store write keeps the headers (the next write needs them), then releases them."""
    source = FakeQueueSource([_message(i) for i in range(3)])
    real = Store.record_scan

    def failing(*args: object, **kwargs: object) -> int:  # a fake fault: the disk is full
        raise StoreError("database or disk is full")

    monkeypatch.setattr(Store, "record_scan", failing)
    _scan(scanner, source)
    assert not any(m.headers.released for m in source.messages)
    monkeypatch.setattr(Store, "record_scan", real)
    _scan(scanner, source)
    assert all(m.headers.released for m in source.messages)
    assert _shown_headers(scanner, "mta1/Q000002/1") == list(_headers(2).items)


def test_a_row_written_again_keeps_its_stored_headers(scanner: Scanner) -> None:
    """Marked left by a log line while still queued: written again with the stored headers."""
    source = FakeQueueSource([_message(i) for i in range(4)])
    _scan(scanner, source)
    scanner.store.record_outcomes("log", "mta1", [Removed(NOW, "Q000003")], None)
    assert scanner.store.get("mta1/Q000003/1").status is Status.LEFT
    _scan(scanner, source)
    assert scanner.store.get("mta1/Q000003/1").status is Status.QUEUED
    assert _shown_headers(scanner, "mta1/Q000003/1") == list(_headers(3).items)


def test_a_released_message_seen_new_again_is_classified_on_stored_headers(
    scanner: Scanner,
) -> None:
    """Gone for a scan, then listed again by the same object: classified from the store."""
    source = FakeQueueSource([_message(i) for i in range(3)])
    _scan(scanner, source)
    first = scanner.backlog("mta1").verdicts["mta1/Q000001/1"].classification
    gone = source.messages.pop(1)
    _scan(scanner, source)
    source.messages.append(gone)
    _scan(scanner, source)
    again = scanner.backlog("mta1").verdicts["mta1/Q000001/1"]
    assert again.classification == first
    assert again.message.headers.released
