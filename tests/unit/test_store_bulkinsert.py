"""Rows inserted by a helper thread while the caller builds them (mailwatch.store.bulkinsert)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailwatch.errors import StoreError
from mailwatch.store import bulkinsert
from mailwatch.store.bulkinsert import CHUNK_ROWS, THREAD_FROM, insert_rows
from mailwatch.store.connection import StoreConnection

PREFIX = "INSERT INTO t (k, v, w) VALUES"


@pytest.fixture(name="db")
def fixture_db(tmp_path: Path) -> Iterator[StoreConnection]:
    """A store-like connection (WAL, usable from another thread) with one table."""
    db = sqlite3.connect(
        str(tmp_path / "t.sqlite"), isolation_level=None, factory=StoreConnection,
        check_same_thread=False,
    )  # fmt: skip
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL, w REAL)")
    yield db
    db.close()


def _rows(count: int, *, bad_at: int | None = None) -> Iterator[tuple[object, ...]]:
    for i in range(count):
        yield (i, None if i == bad_at else f"value {i} \u00e9\"'", i / 7)


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


@pytest.mark.parametrize("count", [0, 1, THREAD_FROM - 1, THREAD_FROM, 2 * CHUNK_ROWS + 123])
def test_every_row_inserted_as_given(db: StoreConnection, count: int) -> None:
    """Below the threshold or above it, whole chunks and a partial one: the same rows."""
    db.execute("BEGIN")
    insert_rows(db, PREFIX, 3, _rows(count), count)
    db.execute("COMMIT")
    assert db.execute("SELECT k, v, w FROM t ORDER BY k").fetchall() == list(_rows(count))
    assert "store-insert" not in _threads()


def test_chunks_are_inserted_by_the_helper_thread(
    db: StoreConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the threshold each chunk is one multi-row statement, run by the helper thread."""
    seen: list[tuple[str, int]] = []
    real = StoreConnection.execute

    def execute(self: StoreConnection, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if sql.startswith(PREFIX):
            seen.append((threading.current_thread().name, sql.count("(?")))
        return real(self, sql, parameters)

    monkeypatch.setattr(StoreConnection, "execute", execute)
    count = 2 * CHUNK_ROWS + 7
    db.execute("BEGIN")
    insert_rows(db, PREFIX, 3, _rows(count), count)
    db.execute("COMMIT")
    assert seen == [("store-insert", CHUNK_ROWS), ("store-insert", CHUNK_ROWS),
                    ("store-insert", 7)]  # fmt: skip


def test_an_insert_that_fails_raises_in_the_caller_and_rolls_back(db: StoreConnection) -> None:
    """A row SQLite refuses (NOT NULL) in the second chunk: StoreError, nothing kept, no hang."""
    count = 4 * CHUNK_ROWS
    db.execute("BEGIN")
    with pytest.raises(StoreError, match="NOT NULL"):
        insert_rows(db, PREFIX, 3, _rows(count, bad_at=CHUNK_ROWS + 3), count)
    assert not db.in_transaction  # rolled back by the connection (its failure path)
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    assert "store-insert" not in _threads()


def test_a_row_that_cannot_be_built_raises_in_the_caller(db: StoreConnection) -> None:
    """The caller's own error (building row 1,200) stops the helper; the caller rolls back."""

    def broken() -> Iterator[tuple[object, ...]]:
        yield from _rows(1200)
        raise ValueError("cannot build row 1200")

    db.execute("BEGIN")
    with pytest.raises(ValueError, match="row 1200"):
        insert_rows(db, PREFIX, 3, broken(), 3000)
    assert "store-insert" not in _threads()
    db.execute("ROLLBACK")
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 0


def test_statements_are_built_once_per_size() -> None:
    """The statement text for a chunk size is made once (SQLite then reuses its plan)."""
    bulkinsert.statement.cache_clear()
    first = bulkinsert.statement(PREFIX, 3, CHUNK_ROWS)
    assert bulkinsert.statement(PREFIX, 3, CHUNK_ROWS) is first
    assert first.count("(?, ?, ?)") == CHUNK_ROWS
