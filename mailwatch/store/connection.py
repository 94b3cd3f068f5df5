"""The store's SQLite connection: typed errors, safe rollbacks, and its own health.

:class:`StoreConnection` is the ``sqlite3.Connection`` the store opens (``factory=``). Every
``execute``/``executemany``/``executescript`` and every row fetched turns a ``sqlite3.Error``
into the matching :class:`~mailwatch.errors.StoreError` subclass (disk full, read-only,
corrupt, I/O, busy), so nothing from ``sqlite3`` escapes the store. When a statement fails
inside a transaction, the transaction is rolled back there and then: SQLite may already have
rolled it back itself (a full disk at ``COMMIT``), so a ``ROLLBACK`` is issued only while one is
active and its own failure is logged, never raised. A ``BEGIN`` while a transaction is still
open (a caller's non-SQL exception left it) rolls the stale one back first.

The connection also keeps the store's health: failures by kind, and whether the latest write
failed (cleared by the next write that succeeds), for ``/metrics``, ``/readyz`` and the logs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import structlog

from mailwatch.core.snapshot import StoreHealth
from mailwatch.errors import (
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreIOError,
    StoreReadOnly,
)

log = structlog.get_logger(__name__)

ERROR_KINDS = ("full", "read_only", "corrupt", "io", "busy", "error")
"""Every ``StoreError.kind``, pre-initialised to 0 in ``mailwatch_store_errors_total``."""
_BY_CODE: dict[str, type[StoreError]] = {
    "SQLITE_FULL": StoreFull,
    "SQLITE_READONLY": StoreReadOnly,
    "SQLITE_CORRUPT": StoreCorrupt,
    "SQLITE_NOTADB": StoreCorrupt,
    "SQLITE_IOERR": StoreIOError,
    "SQLITE_CANTOPEN": StoreIOError,
    "SQLITE_BUSY": StoreBusy,
    "SQLITE_LOCKED": StoreBusy,
}
_WRITES = ("COMMIT", "INSERT", "UPDATE", "DELETE", "REPLACE", "END")
_READS = ("SELECT", "PRAGMA", "WITH", "EXPLAIN")


def translate(exc: sqlite3.Error, context: str = "") -> StoreError:
    """The :class:`StoreError` subclass for ``exc`` (by its SQLite result code)."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    primary = "_".join(name.split("_")[:2])  # SQLITE_IOERR_WRITE → SQLITE_IOERR
    cls = _BY_CODE.get(primary, StoreError)
    return cls(f"{context}: {exc}" if context else str(exc))


def retag(exc: StoreError, context: str) -> StoreError:
    """The same kind of error, its message prefixed with what was being done."""
    return type(exc)(f"{context}: {exc}")


class _Cursor(sqlite3.Cursor):
    """A cursor whose fetches raise :class:`StoreError` (a corrupt page shows on a fetch)."""

    def _owner(self) -> StoreConnection:
        connection = self.connection
        assert isinstance(connection, StoreConnection)  # noqa: S101 - only it makes these
        return connection

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.Error as exc:
            raise self._owner().failed(exc, write=False) from exc

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.Error as exc:
            raise self._owner().failed(exc, write=False) from exc

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.Error as exc:
            raise self._owner().failed(exc, write=False) from exc

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        try:
            return super().fetchmany(size)
        except sqlite3.Error as exc:
            raise self._owner().failed(exc, write=False) from exc


class StoreConnection(sqlite3.Connection):
    """See the module docstring. Open with ``sqlite3.connect(path, factory=StoreConnection)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._health = StoreHealth()
        self.reports = True
        """Log failures (the service's store); a read-only open for a command leaves that to
        the command, which shows its one-line error."""

    @property
    def health(self) -> StoreHealth:
        """The store's health now."""
        return self._health

    def cursor(self, factory: Any = None) -> Any:
        """A cursor that translates fetch errors."""
        return super().cursor(factory or _Cursor)

    def _cursor(self) -> sqlite3.Cursor:
        return super().cursor(_Cursor)

    def rollback_quietly(self) -> None:
        """Roll back the open transaction, if any; a failure is logged, not raised."""
        if not self.in_transaction:
            return
        try:
            super().execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.error("store_rollback_failed", error=str(exc))

    def failed(self, exc: sqlite3.Error, *, write: bool = True) -> StoreError:
        """Record a failure (rolling back any open transaction); the error to raise."""
        self.rollback_quietly()
        error = translate(exc)
        old = self._health
        errors = {**old.errors, error.kind: old.errors.get(error.kind, 0) + 1}
        down = write or not old.up or error.kind in {"corrupt", "io"}
        self._health = StoreHealth(
            up=not down,
            errors=errors,
            failing_since=(old.failing_since or datetime.now(UTC)) if down else None,
            last_error=str(error),
            kind=error.kind if down else None,
        )
        if self.reports:
            log.error("store_failed", kind=error.kind, error=str(error))
        return error

    def _succeeded(self, sql: str) -> None:
        if self._health.up or self.in_transaction:
            return
        if sql.lstrip()[:7].upper().startswith(_WRITES):
            self._health = StoreHealth(up=True, errors=self._health.errors)
            log.warning("store_recovered")

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        """Run one statement; see the module docstring for ROLLBACK and BEGIN."""
        verb = sql.lstrip()[:8].upper()
        if verb.startswith("ROLLBACK"):
            self.rollback_quietly()
            return self._cursor()
        if verb.startswith("BEGIN") and self.in_transaction:
            log.warning("store_stale_transaction_rolled_back")
            self.rollback_quietly()
        try:
            cursor = self._cursor()
            cursor.execute(sql, parameters)
        except sqlite3.Error as exc:
            raise self.failed(exc, write=not verb.startswith(_READS)) from exc
        self._succeeded(sql)
        return cursor

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        """Run one statement per parameter set."""
        try:
            cursor = self._cursor()
            cursor.executemany(sql, parameters)
        except sqlite3.Error as exc:
            raise self.failed(exc) from exc
        self._succeeded(sql)
        return cursor

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        """Run a script (migrations)."""
        try:
            return super().executescript(sql_script)
        except sqlite3.Error as exc:
            raise self.failed(exc) from exc
