"""A first scan's rows on a real SQLite store: in key order, none compared with an empty index."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailwatch.core.backlog import count_by_class
from mailwatch.core.classify import MessageClass
from mailwatch.core.durations import Duration
from mailwatch.core.model import Classification, Message, Priority, Verdict
from mailwatch.core.sla import evaluate
from mailwatch.store import Store, bulkinsert
from mailwatch.store.scandiff import ScanDiffMixin

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
RECALL = MessageClass("recall_emergency", Priority.P1, Duration(seconds=600))


def _verdicts(count: int) -> list[Verdict]:
    """In arrival order; keys not in that order (as queue ids are not)."""
    classification = Classification(RECALL.name, RECALL.priority, "recall_emergency rule 1")
    return [
        evaluate(
            Message(
                key=f"pf1/Q{(n * 7919) % 100_003:08X}/1765097000",
                source="pf1",
                queue_id=f"Q{(n * 7919) % 100_003:08X}",
                queue="deferred",
                arrival=NOW - timedelta(minutes=count - n),
                size=100,
                sender="om@probation.example",
                recipients=(),
            ),
            classification,
            RECALL,
            NOW,
        )
        for n in range(count)
    ]


def _scan(store: Store, verdicts: list[Verdict]) -> int:
    return store.record_scan("pf1", NOW, NOW, verdicts, count_by_class("pf1", [RECALL], verdicts))


def _keys_by_rowid(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [key for (key,) in db.execute("SELECT key FROM messages ORDER BY rowid")]
    finally:
        db.close()


def test_new_rows_are_inserted_in_key_order(tmp_path: Path) -> None:
    """Before: in the scan's order (arrival), each index insert at a random page at scale."""
    verdicts = _verdicts(50)
    assert [v.message.key for v in verdicts] != sorted(v.message.key for v in verdicts)
    store = Store(tmp_path / "store.sqlite")
    assert _scan(store, verdicts) == 50
    store.close()
    keys = _keys_by_rowid(tmp_path / "store.sqlite")
    assert keys == sorted(v.message.key for v in verdicts)


def test_a_first_scan_compares_nothing_and_a_rescan_compares_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of the source is queued in the store: every verdict is new, none is compared."""
    compared: list[str] = []
    compare = ScanDiffMixin._compare

    def counting(diff: object, index: object, v: object) -> None:
        compared.append(v.message.key)  # type: ignore[attr-defined]
        compare(diff, index, v)  # type: ignore[arg-type]

    monkeypatch.setattr(ScanDiffMixin, "_compare", staticmethod(counting))
    verdicts = _verdicts(20)
    store = Store(tmp_path / "store.sqlite")
    assert _scan(store, verdicts) == 20
    assert compared == []
    assert [m.key for m in store.queued("pf1")] == sorted(v.message.key for v in verdicts)
    store._index.clear()  # cold again, as after a restart: read back, then compared
    assert store.record_scan("pf1", NOW, NOW, verdicts[:15], []) == 5  # 5 left the queue
    assert len(compared) == 15
    assert {m.key for m in store.queued("pf1")} == {v.message.key for v in verdicts[:15]}
    assert RECALL.name == store.queued("pf1")[0].class_name
    store.close()


def _rows(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT * FROM messages ORDER BY rowid").fetchall()
    finally:
        db.close()


def test_a_large_first_scan_writes_the_same_rows_by_the_helper_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of new rows, inserted by mailwatch.store.bulkinsert's thread: the same rows.

    The same as one ``executemany`` in the scan's thread writes, in the same (key) order.
    """
    verdicts = _verdicts(2 * bulkinsert.CHUNK_ROWS + 321)
    threaded = Store(tmp_path / "threaded.sqlite")
    assert _scan(threaded, verdicts) == len(verdicts)
    threaded.close()
    monkeypatch.setattr(bulkinsert, "THREAD_FROM", 10**9)
    plain = Store(tmp_path / "plain.sqlite")
    assert _scan(plain, verdicts) == len(verdicts)
    plain.close()
    rows = _rows(tmp_path / "threaded.sqlite")
    assert len(rows) == len(verdicts)
    assert rows == _rows(tmp_path / "plain.sqlite")
