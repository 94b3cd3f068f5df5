"""The WAL checkpoint after a large write, run on a thread (and connection) of its own.

SQLite checkpoints the write-ahead log (copies its pages into the database file, then syncs
it) inside the ``COMMIT`` that leaves the log over ``wal_autocheckpoint`` pages. After the first
scan of a large queue that is the whole new table: ~86 MiB at 100,000 messages, 0.4-0.9 s of
the scan on a 2-core machine, spent after every message was already written. A write of at
least :data:`BACKGROUND_ROWS` message rows instead commits with automatic checkpoints off and
asks a :class:`Checkpointer` for a ``PASSIVE`` checkpoint: its thread runs it on its own
connection, and SQLite releases the GIL for the whole of it, so it overlaps the scan's own
Python (metrics, alerts) instead of delaying it.

Nothing is lost either way: committed pages are in the log until a checkpoint copies them, and
readers see them there. A failed checkpoint is logged, kept (:attr:`Checkpointer.error`, a
:class:`~mailwatch.errors.StoreError`) and counted by kind (:meth:`Checkpointer.failures`,
added to the store's health: ``mailwatch_store_errors_total``); the log is copied by the next
checkpoint (SQLite's automatic one at a later commit, or the one at close).
:meth:`Checkpointer.close` waits for a running checkpoint, so
:meth:`Store.close <mailwatch.store.Store.close>` still ends with a complete database file.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import structlog

from mailwatch.errors import StoreError
from mailwatch.store.connection import translate

log = structlog.get_logger(__name__)

BACKGROUND_ROWS = 2_000
"""Message rows a scan writes from which its commit leaves the checkpoint to the thread (at
~1 KiB per row with its headers, about the 1,000 pages at which SQLite would checkpoint)."""
AUTOCHECKPOINT = 1000  # SQLite's default wal_autocheckpoint (pages), restored after the commit


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on a thread when asked (see the module docs)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.error: StoreError | None = None
        """The latest checkpoint's failure (``None`` once one succeeds)."""
        self.checkpoints = 0
        """Checkpoints completed."""
        self._failures: dict[str, int] = {}
        self._wanted = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._pending = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Checkpoint soon, on the thread (started on the first request)."""
        with self._lock:
            if self._closed:
                return
            self._pending = True
            self._idle.clear()
            self._wanted.set()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="store-checkpoint", daemon=True
                )
                self._thread.start()

    def failures(self) -> dict[str, int]:
        """Failed checkpoints by kind (``StoreError.kind``) since the store was opened."""
        with self._lock:
            return dict(self._failures)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no checkpoint is asked for or running; whether that happened in time."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        """Wait for a requested or running checkpoint, then stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._wanted.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while True:
                self._wanted.wait()
                with self._lock:
                    self._wanted.clear()
                    wanted, self._pending, closed = self._pending, False, self._closed
                if wanted:
                    db = self._checkpoint(db)
                with self._lock:
                    if not self._pending:
                        self._idle.set()
                if closed:
                    return
        finally:
            self._idle.set()
            if db is not None:
                db.close()

    def _checkpoint(self, db: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """One passive checkpoint; the connection to reuse (``None`` after a failure)."""
        try:
            if db is None:
                db = self._connect()
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            self.error = translate(exc, f"cannot checkpoint store {self.path}")
            with self._lock:
                self._failures[self.error.kind] = self._failures.get(self.error.kind, 0) + 1
            log.warning("store_checkpoint_failed", kind=self.error.kind, error=str(self.error))
            if db is not None:
                db.close()
            return None
        self.error = None
        self.checkpoints += 1
        return db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=5000")
        return db
