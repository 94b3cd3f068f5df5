"""Selecting and paging messages by the one judgement, in SQL.

``mailwatch stuck``, ``check`` and ``GET /api/v1/messages`` must not load and judge every
message in Python: with 100,000 queued, that is seconds of CPU per request. The predicate of
:mod:`mailwatch.core.judgement` has an SQL form; the store selects, counts, orders and pages with
it (indexes ``messages_by_status_deadline`` and ``messages_by_outcome``), and only the page is
decoded and judged in Python, by the pure function, which has the last word.

:class:`MessageReader` runs these queries on read-only connections of its own, one per thread,
so the API can run them in worker threads while the service writes scans on its connection.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from mailwatch.core.judgement import LISTED_SQL, STUCK_SQL, UNDELIVERABLE_SQL, MessageFilter
from mailwatch.core.model import Priority, StoredMessage
from mailwatch.errors import StoreError
from mailwatch.store.rows import MESSAGE_COLUMNS, ScanRecord, at, decode_message, ts
from mailwatch.store.schema import MIGRATIONS
from mailwatch.store.shape import ShapeFilter, shape_cells

ORDER_SQL = f"ORDER BY ifnull({STUCK_SQL}, 0) DESC, priority, arrival, key"
"""The order of :func:`mailwatch.core.judgement.urgency`, in SQL (a NULL outcome makes the
predicate NULL, not 0: ``ifnull`` keeps those rows with the other non-stuck ones).
:func:`select_page` sorts by the same key written as a rank (0 stuck, 1 not), and by
``priority, arrival, key`` alone when only stuck ones are selected."""


def retag(exc: StoreError, context: str) -> StoreError:
    """:func:`mailwatch.store.connection.retag`, imported when needed (it imports structlog)."""
    from mailwatch.store.connection import retag as store_retag

    return store_retag(exc, context)


def _where(now: datetime, since: datetime, wanted: MessageFilter) -> tuple[str, dict[str, Any]]:
    clauses = [STUCK_SQL if wanted.stuck_only else LISTED_SQL]
    args: dict[str, Any] = {"now": ts(now), "since": ts(since)}
    if wanted.class_name is not None:
        clauses.append("class = :class")
        args["class"] = wanted.class_name
    if wanted.priority is not None:
        clauses.append("priority = :priority")
        args["priority"] = int(wanted.priority)
    if wanted.source is not None:
        clauses.append("source = :source")
        args["source"] = wanted.source
    if wanted.older_than is not None:
        clauses.append("arrival < :born_before")
        args["born_before"] = ts(now) - wanted.older_than
    return " AND ".join(clauses), args


def last_good(db: sqlite3.Connection) -> dict[str, float]:
    """When each source last scanned successfully (Unix seconds)."""
    return dict(db.execute("SELECT source, max(finished_at) FROM scans WHERE ok GROUP BY source"))


RELAYHOSTS_SQL = (
    "SELECT source, relayhost FROM scans WHERE relayhost IS NOT NULL AND id IN"
    " (SELECT max(id) FROM scans WHERE ok GROUP BY source)"
)
"""Each source's relayhost as its latest good scan saw it."""


def relayhosts(db: sqlite3.Connection) -> dict[str, str]:
    """Each source's relayhost at its latest good scan (sources without one are absent)."""
    return dict(db.execute(RELAYHOSTS_SQL))


Cursor = tuple[int, int, float, str]
"""Where a page ended, in the listing's order: (0 if stuck else 1, priority, arrival, key)."""


class Page(NamedTuple):
    """A page of messages, how many matched in all, and where the next page starts."""

    messages: list[StoredMessage]
    total: int
    after: Cursor | None
    """The last row's place when more rows follow (pass it back as ``after``), else ``None``."""


def select_messages(
    db: sqlite3.Connection, now: datetime, since: datetime, wanted: MessageFilter
) -> tuple[list[StoredMessage], int]:
    """The page of matching messages, most urgent first, and how many matched in all."""
    page = select_page(db, now, since, wanted)
    return page.messages, page.total


def select_page(
    db: sqlite3.Connection,
    now: datetime,
    since: datetime,
    wanted: MessageFilter,
    after: Cursor | None = None,
) -> Page:
    """The page of matching messages after ``after`` (keyset paging), or at ``wanted.offset``.

    Only the sort key and row id of each matching row are sorted (whole rows, headers
    included, made the sort of 100,000 rows ~2.5 times slower); the page's rows are then read
    by id and decoded, and nothing else is. A cursor page costs what the first page costs, and
    a scan between two pages neither repeats nor skips a message whose place did not change.
    """
    where, args = _where(now, since, wanted)
    total = int(db.execute(f"SELECT count(*) FROM messages WHERE {where}", args).fetchone()[0])
    rank = "0" if wanted.stuck_only else f"(1 - ifnull({STUCK_SQL}, 0))"
    if after is not None:
        where += f" AND ({rank}, priority, arrival, key) > (:a_rank, :a_prio, :a_arrival, :a_key)"
        args |= dict(zip(("a_rank", "a_prio", "a_arrival", "a_key"), after, strict=True))
    sql = f"SELECT rowid, {rank}, priority, arrival, key FROM messages WHERE {where}"
    sql += " ORDER BY " + ("" if wanted.stuck_only else f"{rank}, ") + "priority, arrival, key"
    if wanted.limit is not None or wanted.offset:
        sql += " LIMIT :limit OFFSET :offset"
        more = -1 if wanted.limit is None else wanted.limit + 1  # one more: is there a next?
        args |= {"limit": more, "offset": 0 if after is not None else wanted.offset}
    keys = db.execute(sql, args).fetchall()
    full = wanted.limit is not None and len(keys) > wanted.limit
    keys = keys[: wanted.limit] if full else keys
    last = keys[-1] if full and keys else None
    following = None if last is None else (int(last[1]), int(last[2]), float(last[3]), last[4])
    good, relays = last_good(db), relayhosts(db)
    rows = _rows_by_id(db, [k[0] for k in keys])
    return Page([decode_message(r, good, relays) for r in rows], total, following)


_CHUNK = 500
"""Row ids per ``IN (...)`` (below SQLite's default limit of bound parameters)."""


def _rows_by_id(db: sqlite3.Connection, ids: list[int]) -> list[Any]:
    """The rows of ``ids`` (one column list: ``MESSAGE_COLUMNS``), in the order of ``ids``."""
    found: dict[int, Any] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT rowid, {MESSAGE_COLUMNS} FROM messages WHERE rowid IN ({marks})"
        found.update((row[0], row[1:]) for row in db.execute(sql, chunk))
    return [found[i] for i in ids if i in found]


def count_stuck(
    db: sqlite3.Connection, now: datetime, since: datetime
) -> dict[tuple[str, Priority], int]:
    """How many messages are stuck, per (class, message priority): counted in SQL."""
    rows = db.execute(
        f"SELECT class, priority, count(*) FROM messages WHERE {STUCK_SQL}"
        " GROUP BY class, priority",
        {"now": ts(now), "since": ts(since)},
    )
    return {(cls, Priority(prio)): int(n) for cls, prio, n in rows}


def select_undeliverable(db: sqlite3.Connection, since: datetime) -> list[StoredMessage]:
    """Every message that bounced or expired at or after ``since`` (any priority, any status)."""
    rows = db.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {UNDELIVERABLE_SQL}", {"since": ts(since)}
    )
    good, relays = last_good(db), relayhosts(db)
    return [decode_message(row, good, relays) for row in rows]


def select_recent_of_class(
    db: sqlite3.Connection, class_name: str, since: datetime, limit: int
) -> list[StoredMessage]:
    """Messages of ``class_name`` first seen at or after ``since``, newest first (near misses)."""
    rows = db.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE class = :class AND first_seen >= :since"
        " ORDER BY first_seen DESC LIMIT :limit",
        {"class": class_name, "since": ts(since), "limit": limit},
    )
    good = last_good(db)
    return [decode_message(row, good) for row in rows]


class ListingMixin:
    """Listing methods of :class:`~mailwatch.store.Store` (which provides the connection)."""

    _db: sqlite3.Connection

    def list_messages(
        self, now: datetime, since: datetime, wanted: MessageFilter
    ) -> tuple[list[StoredMessage], int]:
        """See :func:`select_messages`."""
        try:
            return select_messages(self._db, now, since, wanted)
        except StoreError as exc:
            raise retag(exc, "cannot list messages") from exc

    def list_page(
        self, now: datetime, since: datetime, wanted: MessageFilter, after: Cursor | None
    ) -> Page:
        """See :func:`select_page`."""
        try:
            return select_page(self._db, now, since, wanted, after)
        except StoreError as exc:
            raise retag(exc, "cannot list messages") from exc

    def count_stuck(self, now: datetime, since: datetime) -> dict[tuple[str, Priority], int]:
        """See :func:`count_stuck`."""
        try:
            return count_stuck(self._db, now, since)
        except StoreError as exc:
            raise retag(exc, "cannot count stuck messages") from exc

    def shape_cells(self, now: datetime, wanted: ShapeFilter) -> list[tuple[str, int, int, int]]:
        """See :func:`mailwatch.store.shape.shape_cells`."""
        try:
            return shape_cells(self._db, now, wanted)
        except StoreError as exc:
            raise retag(exc, "cannot aggregate the queue shape") from exc

    def recent_of_class(self, class_name: str, since: datetime, limit: int) -> list[StoredMessage]:
        """See :func:`select_recent_of_class`."""
        try:
            return select_recent_of_class(self._db, class_name, since, limit)
        except StoreError as exc:
            raise retag(exc, "cannot list recent messages") from exc

    def undeliverable_since(self, since: datetime) -> list[StoredMessage]:
        """See :func:`select_undeliverable`."""
        try:
            return select_undeliverable(self._db, since)
        except StoreError as exc:
            raise retag(exc, "cannot list undeliverable messages") from exc


class MessageReader:
    """Read-only listing on connections of its own: one per thread, for worker threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            uri = f"{Path(self.path).resolve().as_uri()}?mode=ro"
            try:
                db = sqlite3.connect(uri, uri=True, check_same_thread=False)
                db.execute("PRAGMA busy_timeout=5000")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open store {self.path} read-only: {exc}") from exc
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def recent_of_class(self, class_name: str, since: datetime, limit: int) -> list[StoredMessage]:
        """See :func:`select_recent_of_class`."""
        try:
            return select_recent_of_class(self._db(), class_name, since, limit)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot list recent messages: {exc}") from exc

    def list_messages(
        self, now: datetime, since: datetime, wanted: MessageFilter
    ) -> tuple[list[StoredMessage], int]:
        """See :func:`select_messages`."""
        try:
            return select_messages(self._db(), now, since, wanted)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot list messages: {exc}") from exc

    def list_page(
        self, now: datetime, since: datetime, wanted: MessageFilter, after: Cursor | None
    ) -> Page:
        """See :func:`select_page`."""
        try:
            return select_page(self._db(), now, since, wanted, after)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot list messages: {exc}") from exc

    def shape_cells(self, now: datetime, wanted: ShapeFilter) -> list[tuple[str, int, int, int]]:
        """See :func:`mailwatch.store.shape.shape_cells`."""
        try:
            return shape_cells(self._db(), now, wanted)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot aggregate the queue shape: {exc}") from exc

    def close(self) -> None:
        """Close every connection opened (call once no thread uses them any more)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()


LAST_SCANS_SQL = (
    "SELECT source, started_at, finished_at, ok, error, messages, malformed, headers_read,"
    " warnings FROM scans WHERE id IN (SELECT max(id) FROM scans GROUP BY source)"
    " ORDER BY source"
)


def last_scans(db: sqlite3.Connection) -> dict[str, ScanRecord]:
    """The latest scan of each source, good or failed (as ``Store.last_scans``)."""
    return {
        r[0]: ScanRecord(r[0], at(r[1]), at(r[2]), bool(r[3]), r[4], r[5], r[6], r[7],
                         tuple(r[8].split("\n")) if r[8] else ())
        for r in db.execute(LAST_SCANS_SQL)
    }  # fmt: skip


class StoreView:
    """A read-only view of the store for the on-call read commands (``stuck``, ``check``).

    What :class:`~mailwatch.store.Store` does when opened ``readonly`` (never creates, migrates
    or writes the file; refuses a missing file or another schema version), on a plain
    connection: it imports neither the store's writer nor structlog, so a command that only
    reads starts in a fraction of the time. Every ``sqlite3.Error`` is a :class:`StoreError`.
    """

    def __init__(self, path: Path | str) -> None:
        """Open ``path`` read-only; a missing file or another schema version is an error."""
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"no store at {path} (check store.path; `mailwatch scan` or"
                             " `mailwatch run` creates it)")  # fmt: skip
        try:
            self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        try:
            self._db.execute("PRAGMA busy_timeout=5000")
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        if version != len(MIGRATIONS):
            self._db.close()
            raise StoreError(
                f"cannot open store {path}: store {path} has schema version {version}, this"
                f" mailwatch reads {len(MIGRATIONS)} (`mailwatch scan` or `mailwatch run`"
                " migrates it)"
            )

    def __enter__(self) -> StoreView:
        return self

    def __exit__(self, *_: object) -> None:
        self._db.close()

    def last_scans(self) -> dict[str, ScanRecord]:
        """See :func:`last_scans`."""
        try:
            return last_scans(self._db)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read scans: {exc}") from exc

    def list_messages(
        self, now: datetime, since: datetime, wanted: MessageFilter
    ) -> tuple[list[StoredMessage], int]:
        """See :func:`select_messages`."""
        try:
            return select_messages(self._db, now, since, wanted)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot list messages: {exc}") from exc

    def count_stuck(self, now: datetime, since: datetime) -> dict[tuple[str, Priority], int]:
        """See :func:`count_stuck`."""
        try:
            return count_stuck(self._db, now, since)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot count stuck messages: {exc}") from exc
