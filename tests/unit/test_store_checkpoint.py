"""A large scan's WAL checkpoint runs on the store's checkpoint thread, on a real SQLite file.

The commit of a scan that wrote many rows no longer copies the log into the database file
itself (that was up to a second of a 100,000-message first scan); the thread does, on its own
connection. What is stored is the same as when the commit checkpoints, a failing checkpoint is
a typed :class:`StoreError` that loses nothing, and closing the store waits for the thread.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailwatch.core.backlog import count_by_class
from mailwatch.core.classify import MessageClass
from mailwatch.core.durations import Duration
from mailwatch.core.model import Classification, Headers, Message, Priority, Recipient, Verdict
from mailwatch.core.sla import evaluate
from mailwatch.errors import StoreError, StoreIOError
from mailwatch.store import Store
from mailwatch.store.checkpoint import BACKGROUND_ROWS, Checkpointer

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
RECALL = MessageClass("recall_emergency", Priority.P1, Duration(seconds=600))
MESSAGES = BACKGROUND_ROWS + 500  # with ~3 KiB of headers each: well over 1,000 WAL pages


def _verdicts(count: int = MESSAGES) -> list[Verdict]:
    classification = Classification(RECALL.name, RECALL.priority, "recall_emergency rule 1")
    verdicts = []
    for n in range(count):
        message = Message(
            key=f"pf1/Q{n:08X}/1765097000", source="pf1", queue_id=f"Q{n:08X}",
            queue="deferred", arrival=NOW - timedelta(minutes=n % 90), size=3000,
            sender="om@probation.example",
            recipients=(Recipient("ppcs@justice.example", "connection refused"),),
            headers=Headers([("Subject", f"Recall request {n}"), ("X-Pad", "x" * 3000)]),
            subject=f"Recall request {n}",
        )  # fmt: skip
        verdicts.append(evaluate(message, classification, RECALL, NOW))
    return verdicts


def _scan(store: Store, verdicts: list[Verdict]) -> int:
    return store.record_scan("pf1", NOW, NOW, verdicts, count_by_class("pf1", [RECALL], verdicts))


def _ask(asked: list[Checkpointer], checkpointer: Checkpointer) -> None:
    asked.append(checkpointer)  # instead of starting the thread


def _messages(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return list(db.execute("SELECT * FROM messages ORDER BY key"))
    finally:
        db.close()


def test_a_large_scans_commit_leaves_the_checkpoint_to_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the COMMIT itself copied every page into the database file (it grew at once)."""
    asked: list[Checkpointer] = []
    request = Checkpointer.request
    monkeypatch.setattr(Checkpointer, "request", lambda self: _ask(asked, self))
    path = tmp_path / "store.sqlite"
    store = Store(path)
    before = path.stat().st_size
    assert _scan(store, _verdicts()) == MESSAGES
    assert path.stat().st_size == before  # every new page is still in the log only
    assert len(asked) == 1
    assert len(_messages(path)) == MESSAGES  # and readable from there by another connection
    request(asked[0])
    assert asked[0].wait(30)
    assert asked[0].checkpoints == 1
    assert asked[0].error is None
    assert path.stat().st_size > before + MESSAGES * 3000  # the thread copied them
    store.close()


def test_rows_are_those_of_the_synchronous_checkpoint(tmp_path: Path) -> None:
    """The same rows, in the same order, as a store whose commit checkpoints (as before)."""
    verdicts = _verdicts()
    threaded, inline = Store(tmp_path / "threaded.sqlite"), Store(tmp_path / "inline.sqlite")
    inline._checkpointer = None  # the commit checkpoints, as before
    assert _scan(threaded, verdicts) == _scan(inline, verdicts) == MESSAGES
    checkpointer = threaded.checkpointer
    assert checkpointer is not None
    assert checkpointer.wait(30)
    assert checkpointer.checkpoints == 1
    assert checkpointer.error is None
    assert [m.key for m in threaded.queued("pf1")] == [m.key for m in inline.queued("pf1")]
    threaded.close()
    inline.close()
    rows = _messages(tmp_path / "threaded.sqlite")
    assert len(rows) == MESSAGES
    assert rows == _messages(tmp_path / "inline.sqlite")


def test_a_small_scan_commits_and_checkpoints_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below BACKGROUND_ROWS the commit checkpoints as SQLite decides; no thread is asked."""
    asked: list[Checkpointer] = []
    monkeypatch.setattr(Checkpointer, "request", lambda self: _ask(asked, self))
    store = Store(tmp_path / "store.sqlite")
    assert _scan(store, _verdicts(BACKGROUND_ROWS - 1)) == BACKGROUND_ROWS - 1
    assert asked == []
    store.close()


def test_a_failed_checkpoint_is_a_typed_error_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake connection failing as a disk would (SQLITE_IOERR): a real disk cannot be made to."""

    def failing(self: Checkpointer) -> sqlite3.Connection:
        exc = sqlite3.OperationalError("disk I/O error")
        exc.sqlite_errorname = "SQLITE_IOERR_WRITE"  # as sqlite3 sets it
        raise exc

    monkeypatch.setattr(Checkpointer, "_connect", failing)
    path = tmp_path / "store.sqlite"
    store = Store(path)
    _scan(store, _verdicts())
    checkpointer = store.checkpointer
    assert checkpointer is not None
    assert checkpointer.wait(30)
    error: StoreError | None = checkpointer.error
    assert isinstance(error, StoreIOError)  # a StoreError and an OSError
    assert checkpointer.checkpoints == 0
    assert store.health().up  # writes still work...
    assert store.health().errors.get("io") == 1  # ...but the failure is counted (metrics)
    assert len(store.queued("pf1")) == MESSAGES  # the log still holds every row
    monkeypatch.undo()
    checkpointer.request()  # the next checkpoint copies them, and clears the error
    assert checkpointer.wait(30)
    assert checkpointer.error is None
    assert checkpointer.checkpoints == 1
    assert store.health().errors.get("io") == 1  # a count since the store was opened
    store.close()
    assert len(_messages(path)) == MESSAGES


def test_close_waits_for_a_requested_checkpoint(tmp_path: Path) -> None:
    """Closing the store waits for the thread; a closed checkpointer starts nothing."""
    path = tmp_path / "store.sqlite"
    store = Store(path)
    _scan(store, _verdicts())
    checkpointer = store.checkpointer
    assert checkpointer is not None
    store.close()  # no wait(): close itself waits for the thread
    assert checkpointer.checkpoints == 1
    checkpointer.request()  # closed: ignored, no thread started again
    assert checkpointer.wait(0)
    assert len(_messages(path)) == MESSAGES
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
