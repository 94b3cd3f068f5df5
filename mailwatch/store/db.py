"""The SQLite store (WAL): tracked messages, scans, and per-class counts per scan.

One long-lived connection; each scan is written in one transaction, and only what changed is
written: the store keeps, per source, the last written state of every queued message, so a
rescan of an unchanged 30,000-message queue writes one scan row and its class counts, nothing
per message. A message missing from a scan is marked ``left`` (its final outcome comes later
from the mail log). Schema changes are numbered migrations tracked in ``PRAGMA user_version``.

A new store is created with 8 KiB pages (SQLite's default is 4 KiB): the first scan of a large
queue writes one row per message, and with bigger pages that insert and its commit cost about
30% less (10,000 rows: 84 → 60 ms). An existing store keeps the page size it was created with.
Durability is unchanged: WAL, ``synchronous=NORMAL``, default checkpoints, except after a
scan that wrote many rows: its checkpoint runs on a thread (:mod:`mailwatch.store.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

import structlog

from mailwatch.core.backlog import ClassCount
from mailwatch.core.model import (
    Status,
    StoredMessage,
    Verdict,
)
from mailwatch.core.snapshot import StoreHealth
from mailwatch.core.tracked import ScanDelta
from mailwatch.errors import StoreError, UnknownMessage
from mailwatch.store.alerts import AlertsMixin
from mailwatch.store.canaries import CanariesMixin
from mailwatch.store.checkpoint import AUTOCHECKPOINT, BACKGROUND_ROWS, Checkpointer
from mailwatch.store.connection import StoreConnection, retag
from mailwatch.store.fleet_queue import FleetQueueMixin
from mailwatch.store.history import HistoryMixin
from mailwatch.store.listing import RELAYHOSTS_SQL, ListingMixin
from mailwatch.store.outcomes import OutcomesMixin
from mailwatch.store.retention import RetentionMixin
from mailwatch.store.rows import (
    MESSAGE_COLUMNS,
    ScanRecord,
    Written,
    at,
    decode_message,
    ts,
)
from mailwatch.store.scandiff import ScanDiffMixin
from mailwatch.store.schema import MIGRATIONS

PAGE_SIZE = 8192


log = structlog.get_logger(__name__)


def _open_readonly(path: Path) -> StoreConnection:
    """A read-only connection (``mode=ro``: never creates, migrates or writes the file)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    db = sqlite3.connect(uri, uri=True, isolation_level=None, factory=StoreConnection)
    db.reports = False
    try:
        db.execute("PRAGMA busy_timeout=5000")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
    except StoreError:  # the connection's errors are StoreErrors already
        db.close()
        raise
    if version != len(MIGRATIONS):
        db.close()
        raise StoreError(
            f"store {path} has schema version {version}, this mailwatch reads"
            f" {len(MIGRATIONS)} (`mailwatch scan` or `mailwatch run` migrates it)"
        )
    return db


class Store(
    ScanDiffMixin,
    OutcomesMixin,
    AlertsMixin,
    CanariesMixin,
    RetentionMixin,
    ListingMixin,
    HistoryMixin,
    FleetQueueMixin,
):
    """mailwatch's SQLite store. Not thread-safe: one owner, one connection.

    Every failure is a :class:`~mailwatch.errors.StoreError` subclass (see
    :mod:`mailwatch.store.connection`); :meth:`health` says whether writes currently work.
    """

    _db: StoreConnection

    def __init__(self, path: Path | str, *, create: bool = True, readonly: bool = False) -> None:
        """Open (``create``: or create) the store; ``readonly`` opens an existing one to read.

        Without ``create`` a missing file is a :class:`StoreError` (a mistyped path must not
        silently become an empty store that says "nothing stuck").
        """
        self.path = path
        self._checkpointer: Checkpointer | None = None
        if (readonly or not create) and not Path(path).is_file():
            raise StoreError(f"no store at {path} (check store.path; `mailwatch scan` or"
                             " `mailwatch run` creates it)")  # fmt: skip
        try:
            if readonly:
                self._db = _open_readonly(Path(path))
                self._index: dict[str, dict[str, Written]] = {}
                self._stale: dict[str, set[str]] = {}
                return
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(  # (bulkinsert's helper thread uses it, one at a time)
                str(path), isolation_level=None, factory=StoreConnection, check_same_thread=False
            )
            self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only a new, empty file: see above
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            if str(path) not in ("", ":memory:"):
                self._checkpointer = Checkpointer(path)
        except StoreError as exc:
            raise retag(exc, f"cannot open store {path}") from exc
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        self._index = {}
        self._stale = {}

    def health(self) -> StoreHealth:
        """Whether writes work now, and failures by kind since the store was opened.

        The failures include the background checkpoints' (:mod:`mailwatch.store.checkpoint`),
        which leave writes working (``up``) but the log growing until one succeeds.
        """
        health = self._db.health
        failed = self._checkpointer.failures() if self._checkpointer is not None else {}
        if not failed:
            return health
        errors = dict(health.errors)
        for kind, count in failed.items():
            errors[kind] = errors.get(kind, 0) + count
        return dataclasses.replace(health, errors=errors)

    @property
    def checkpointer(self) -> Checkpointer | None:
        """The thread that checkpoints after large writes (its ``error``: the last failure)."""
        return self._checkpointer

    def close(self) -> None:
        """Close the connection (a failure, e.g. a checkpoint on a full disk, is logged).

        A checkpoint running on its thread is waited for first.
        """
        if self._checkpointer is not None:
            self._checkpointer.close()
        try:
            self._db.close()
        except sqlite3.Error as exc:
            log.error("store_close_failed", error=str(exc))

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The applied migration count."""
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        if version > len(MIGRATIONS):
            raise StoreError(
                f"store schema version {version} is newer than this mailwatch ({len(MIGRATIONS)})"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    def record_scan(
        self,
        source: str,
        started_at: datetime,
        finished_at: datetime,
        verdicts: Sequence[Verdict],
        counts: Iterable[ClassCount],
        *,
        malformed: int = 0,
        headers_read: int = 0,
        warnings: Sequence[str] = (),
        relayhost: str | None = None,
        changes: ScanDelta | None = None,
        current: Mapping[str, Verdict] | None = None,
    ) -> int:
        """Write one successful scan in one transaction; returns the number of message writes.

        ``relayhost`` is the source's smarthost at this scan (:attr:`Observation.relayhost`).
        ``changes`` (what the scanner's kept backlog says changed since its previous scan)
        with ``current`` (its verdicts by key) make the diff cost what changed; without them,
        or when the store's index of the source is cold, every verdict is compared.
        """
        now = ts(finished_at)
        warm = source in self._index and changes is not None and not changes.full
        diff = (
            self._delta(source, changes, current or {}, now)
            if warm and changes is not None
            else self._diff(source, verdicts, now)
        )
        scan = ScanRecord(
            source, started_at, finished_at, ok=True, error=None, messages=len(verdicts),
            malformed=malformed, headers_read=headers_read, warnings=tuple(warnings),
            relayhost=relayhost,
        )  # fmt: skip
        try:
            self._db.execute("BEGIN")
            self._write_diff(diff)
            self._insert_counts(self._insert_scan(scan), source, counts)
            self._commit(diff.writes)
        except StoreError as exc:  # already rolled back (see mailwatch.store.connection)
            self._forget(source)
            raise retag(exc, f"cannot record scan of {source}") from exc
        except BaseException:
            self._db.rollback_quietly()
            self._forget(source)
            raise
        if warm:
            index = self._index[source]
            index.update(diff.seen)
            for key in diff.left:
                index.pop(key, None)
        else:
            self._index[source] = diff.seen
        return diff.writes

    def _commit(self, rows: int) -> None:
        """``COMMIT``; after ``rows`` >= BACKGROUND_ROWS the checkpoint runs on its thread."""
        checkpointer = self._checkpointer
        if checkpointer is None or rows < BACKGROUND_ROWS:
            self._db.execute("COMMIT")
            return
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        try:
            self._db.execute("COMMIT")
        finally:
            self._db.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT}")
        checkpointer.request()

    def _forget(self, source: str) -> None:
        """After a failed write: what the store holds is re-read from it next time."""
        self._index.pop(source, None)
        self._stale.pop(source, None)

    def _insert_counts(self, scan_id: int, source: str, counts: Iterable[ClassCount]) -> None:
        self._db.executemany(
            "INSERT INTO class_counts VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(scan_id, source, c.name, int(c.priority), c.total, c.stuck, c.oldest_age_seconds)
             for c in counts],
        )  # fmt: skip

    def record_failure(
        self, source: str, started_at: datetime, finished_at: datetime, error: str
    ) -> None:
        """Record a failed probe; the source's messages are left as they were."""
        try:
            self._insert_scan(
                ScanRecord(source, started_at, finished_at, ok=False, error=error, messages=0,
                           malformed=0, headers_read=0)
            )  # fmt: skip
        except StoreError as exc:
            raise retag(exc, f"cannot record failed scan of {source}") from exc

    def _insert_scan(self, scan: ScanRecord) -> int:
        cursor = self._db.execute(
            "INSERT INTO scans (source, started_at, finished_at, ok, error, messages, malformed,"
            " headers_read, warnings, relayhost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                scan.source,
                ts(scan.started_at),
                ts(scan.finished_at),
                scan.ok,
                scan.error,
                scan.messages,
                scan.malformed,
                scan.headers_read,
                "\n".join(scan.warnings) or None,
                scan.relayhost,
            ),
        )
        return int(cursor.lastrowid or 0)

    def last_scans(self) -> dict[str, ScanRecord]:
        """The latest scan of each source, good or failed."""
        rows = self._db.execute(
            "SELECT source, started_at, finished_at, ok, error, messages, malformed, headers_read,"
            " warnings FROM scans WHERE id IN (SELECT max(id) FROM scans GROUP BY source)"
            " ORDER BY source"
        )
        return {
            r[0]: ScanRecord(r[0], at(r[1]), at(r[2]), bool(r[3]), r[4], r[5], r[6], r[7],
                             tuple(r[8].split("\n")) if r[8] else ())
            for r in rows
        }  # fmt: skip

    def _last_good(self) -> dict[str, float]:
        rows = self._db.execute(
            "SELECT source, max(finished_at) FROM scans WHERE ok GROUP BY source"
        )
        return dict(rows)

    def _relayhosts(self) -> dict[str, str]:
        return dict(self._db.execute(RELAYHOSTS_SQL))

    def queued(self, source: str | None = None) -> list[StoredMessage]:
        """Every message currently queued (optionally in one source)."""
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE status = ?"
        args: list[object] = [Status.QUEUED.value]
        if source is not None:
            sql += " AND source = ?"
            args.append(source)
        last_good, relays = self._last_good(), self._relayhosts()
        return [decode_message(r, last_good, relays) for r in self._db.execute(sql, args)]

    def get(self, ident: str) -> StoredMessage:
        """A message by key, or by queue id (the newest one wins when a queue id was reused)."""
        last_good, relays = self._last_good(), self._relayhosts()
        row = self._db.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE key = ?", (ident,)
        ).fetchone()
        if row is None:
            row = self._db.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE queue_id = ?"
                " ORDER BY arrival DESC LIMIT 1",
                (ident,),
            ).fetchone()
        if row is None:
            raise UnknownMessage(f"no tracked message has id {ident!r}")
        return decode_message(row, last_good, relays)
