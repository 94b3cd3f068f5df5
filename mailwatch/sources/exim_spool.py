"""Exim change detection by the spool directory: a rescan costs what changed.

:class:`SpoolWatcher` reads the spool the way ``exim -bp`` does (every ``input/ID-H`` file,
Exim's "Format of spool files"), but keeps what it read, and per scan:

1. ``stat`` s ``input/`` and ``msglog/`` and their one-character subdirectories
   (``split_spool_directory``; found by listing, not asked). A directory whose inode and mtime
   are those of its last listing, and whose mtime was more than :data:`GRANULARITY_NS` older
   than that listing, has the same entries; any other is listed again (``os.scandir``, which
   also gives each entry's inode without a ``stat``).
2. Reads (and parses, :func:`mailwatch.parsing.exim.parse_spool_header`) only the ``-H``
   files that are new or have a new inode. Exim never edits a ``-H`` file in place: every
   change (first delivery attempt, a recipient delivered, ``-Mf`` freeze, ``-Mt`` thaw,
   ``-Mar``...) writes a temporary file and renames it over the old one, so the file gets a
   new inode and its directory a new mtime. Headers are decoded once per message (kept in the
   header cache): a re-read ``-H`` only refreshes the envelope (frozen, recipients delivered).
3. Reads the message log (``msglog/ID``: the last defer reason per address) of every new or
   changed message, and, when a delivery attempt may have happened since the last scan (the
   retry hints database ``db/retry`` changed: every deferral writes it, the first creates
   it), ``stat`` s every message log and reads again those that grew. Exim appends to
   message logs in place, so this is the only per-message cost of a rescan, and only while
   Exim delivers. A scan in which no directory was listed and the retry database did not
   change returns the last scan's messages as they were.
4. Reuses the :class:`Message` object of every unchanged message, so the scanner's and the
   store's identity checks are two dictionary look-ups.

Known blind spots (closed by the periodic ``exim -bpru`` reconciliation): a ``-H`` file
rewritten twice between two scans whose final inode happens to be the one it had (an inode
freed by the first rename and re-used by the second), or edited in place by something that
is not Exim; a message log that grew while the retry database did not change (the
reconciliation ``stat`` s every message log).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from sys import intern

from mailwatch.core.headers import TRACE_HEADERS, normalise_subject, parse_header_block
from mailwatch.core.model import Message
from mailwatch.errors import SourceTimeout
from mailwatch.parsing.exim import (
    EximEntry,
    Malformed,
    SpoolHeader,
    is_exim_id,
    parse_message_log,
    parse_spool_header,
)
from mailwatch.sources.exim_cache import CachedSpool, build_message, message_key

GRANULARITY_NS = 2_000_000_000
"""A directory modified within this long before its listing is listed again next scan."""
READ_SIZE = 16 * 1024  # one read holds almost every -H file
Stamp = tuple[int, int, int]
"""A message log's inode, size and mtime_ns."""


@dataclass(frozen=True, slots=True)
class _Dir:
    ino: int
    mtime_ns: int
    listed_ns: int
    files: dict[str, int]
    """Message id → inode of its entry (``ID-H`` in ``input/``, ``ID`` in ``msglog/``)."""
    subdirs: tuple[str, ...]


@dataclass(slots=True)
class _Log:
    stamp: Stamp
    reasons: tuple[tuple[str, str], ...]
    """(address, last defer reason) pairs, as the header cache keeps them."""
    last_error: str | None


@dataclass(slots=True)
class _Entry:
    directory: str
    """The ``-H`` file's directory (one string shared by its files: the path is derived)."""
    ino: int
    entry: EximEntry
    """The envelope as ``exim -bpru`` would list it."""
    log: _Log | None = None
    message: Message | None = None


@dataclass
class SpoolWatcher:
    """One Exim spool, scanned incrementally (module docstring); one scan at a time."""

    source: str
    spool_dir: str
    header_cache: MutableMapping[str, CachedSpool]
    read_logs: bool = True
    keep: frozenset[str] | None = None
    """Headers to keep and decode (:func:`mailwatch.core.headers.keep_set`); ``None``: all."""
    deadline: float = 0.0
    """``time.monotonic()`` after which a scan stops with :class:`SourceTimeout` (0: none)."""
    files: dict[str, _Entry] = field(default_factory=dict)
    dirs: dict[str, _Dir] = field(default_factory=dict)
    retry_stamp: tuple[int, int, int] | None = None
    _last: tuple[list[Message], int] | None = None
    """The last full pass's messages and malformed count (returned while nothing changed)."""
    spool_files_read: int = 0
    headers_read: int = 0
    logs_read: int = 0
    changes: int = 0
    """Messages new, changed or gone at the last scan."""
    malformed: int = 0
    """``-H`` files that could not be parsed at the last scan (left out, like ``-bp`` does)."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _running: threading.Lock = field(default_factory=threading.Lock)

    def stop(self) -> None:
        """Ask a running scan to stop soon (its result is then discarded)."""
        self._stop.set()

    def forget(self, queue_id: str) -> None:
        """Drop what is known of ``queue_id`` (its files are read again at the next scan)."""
        self.files.pop(queue_id, None)
        self.dirs.clear()
        self._last = None

    def scan(self, *, all_logs: bool = False) -> list[Message]:
        """The messages queued now; raises ``OSError`` when the spool cannot be read.

        ``all_logs``: ``stat`` every message log whatever the directories say (a reconciliation).
        Raises :class:`SourceTimeout` past ``deadline``, when stopped, or while the scan of an
        earlier, timed-out probe still runs.
        """
        if not self._running.acquire(blocking=False):
            raise SourceTimeout(self.source, "the previous spool scan still runs")
        try:
            self._stop.clear()
            return self._scan(all_logs)
        finally:
            self._running.release()

    def _scan(self, all_logs: bool) -> list[Message]:
        self.spool_files_read = self.headers_read = self.logs_read = 0
        self.changes = self.malformed = 0
        found: dict[str, tuple[str, int]] = {}
        listed = self._walk(f"{self.spool_dir}/input", found, "-H")
        logs: dict[str, tuple[str, int]] = {}
        logs_listed = self._walk(f"{self.spool_dir}/msglog", logs, "")
        retry = _stamp(f"{self.spool_dir}/db/retry")
        # Every deferral writes the retry database (the first one creates it): unchanged, no
        # message log can have a new reason (the reconciliation checks them all anyway). A
        # log that appears (msglog/ listed) belongs to a new message, read as new anyway.
        attempted = all_logs or retry != self.retry_stamp
        self.retry_stamp = retry
        if not (listed or logs_listed or attempted) and self._last is not None:
            self.malformed = self._last[1]
            return list(self._last[0])  # nothing can have changed: the same objects
        current: dict[str, _Entry] = {}
        messages: list[Message] = []
        for queue_id, (directory, ino) in found.items():
            path = f"{directory}/{queue_id}-H"
            old = self.files.get(queue_id)
            same = old is not None and old.ino == ino and old.directory == directory
            entry = old if same else self._read(queue_id, directory, path, ino)
            if entry is None:
                continue
            current[queue_id] = entry
            log_at = logs.get(queue_id)
            log_path = f"{log_at[0]}/{queue_id}" if log_at else None
            messages.append(self._current(queue_id, entry, entry is not old, attempted, log_path))
        self.changes += sum(1 for queue_id in self.files if queue_id not in current)
        self.files = current
        self._last = (messages, self.malformed)
        return list(messages)

    def _current(
        self, queue_id: str, entry: _Entry, changed: bool, attempted: bool, log: str | None
    ) -> Message:
        """The message of ``entry``, its reasons brought up to date if they may have changed."""
        before = entry.log
        if self.read_logs and (changed or attempted):
            self._log(entry, log)
        self.changes += changed
        return self._message(queue_id, entry, changed or entry.log is not before)

    def _check(self) -> None:
        if self._stop.is_set() or (self.deadline and time.monotonic() > self.deadline):
            raise SourceTimeout(self.source, "reading the spool took too long")

    def _walk(
        self, path: str, found: dict[str, tuple[str, int]], suffix: str, *, split: bool = True
    ) -> bool:
        """Ids of the entries named ``ID{suffix}`` into ``found`` (id → directory, inode).

        Also those of ``path``'s one-character subdirectories if ``split``. Returns whether
        any directory was listed (not known unchanged).
        """
        self._check()
        started = time.time_ns()
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return self.dirs.pop(path, None) is not None  # gone since the last scan: a change
        known = self.dirs.get(path)
        listed = (
            known is None
            or known.ino != st.st_ino
            or known.mtime_ns != st.st_mtime_ns
            or known.listed_ns - st.st_mtime_ns < GRANULARITY_NS
        )
        if known is None or listed:
            known = self._list(path, st, started, suffix)
        for sub in known.subdirs if split else ():
            listed = self._walk(f"{path}/{sub}", found, suffix, split=False) or listed
        for name, ino in known.files.items():
            found.setdefault(name, (path, ino))
        return listed

    def _list(self, path: str, st: os.stat_result, started: int, suffix: str) -> _Dir:
        files: dict[str, int] = {}
        subdirs: list[str] = []
        cut = len(suffix)
        with os.scandir(path) as entries:
            for item in entries:
                name = item.name
                if len(name) == 1 and item.is_dir(follow_symlinks=False):
                    subdirs.append(name)  # split_spool_directory
                elif name.endswith(suffix) and is_exim_id(queue_id := name[: len(name) - cut]):
                    files[queue_id] = item.inode()
        listed = _Dir(st.st_ino, st.st_mtime_ns, started, files, tuple(sorted(subdirs)))
        self.dirs[path] = listed
        return listed

    def _read(self, queue_id: str, directory: str, path: str, ino: int) -> _Entry | None:
        """The envelope of one ``-H`` file, ``None`` if it is gone or cannot be parsed."""
        self._check()
        data = _read_file(path)
        if data is None:
            return None
        self.spool_files_read += 1
        spool = parse_spool_header(data, queue_id)
        if isinstance(spool, Malformed):
            self.malformed += 1
            return None
        key = message_key(self.source, queue_id)
        if key not in self.header_cache:
            self.header_cache[key] = _cached(spool, self.keep)
            self.headers_read += 1
        data_size = _size(f"{path[:-2]}-D")
        # As ``exim -bp`` shows it: headers, then the data file after its "ID-D\n" line.
        size = spool.header_size + data_size - len(queue_id) - 3 + 1 if data_size >= 0 else 0
        entry = EximEntry(
            queue_id=queue_id,
            age_seconds=0,
            size=size,
            sender=intern(spool.sender),  # one string per distinct address, not per message
            recipients=tuple(intern(r) for r in spool.undelivered),
            frozen=spool.frozen,
        )
        return _Entry(directory, ino, entry)

    def _log(self, entry: _Entry, path: str | None) -> None:
        """Bring ``entry.log`` up to date with the message log at ``path`` (read if changed).

        Read whole: a defer line takes its text from the ``H=host ...`` line before it, so a
        log cannot be parsed from where the last read stopped. A line still being written is
        left out (the file grows again when it is finished, and is read again then).
        """
        stamp = _stamp(path) if path else None
        if path is None or stamp is None:
            entry.log = None
            return
        if entry.log is not None and entry.log.stamp == stamp:
            return
        data = _read_file(path)
        if data is None:
            entry.log = None
            return
        self.logs_read += 1
        parsed = parse_message_log(data[: data.rfind(b"\n") + 1])
        reasons = tuple((intern(a), intern(r)) for a, r in parsed.reasons.items())
        entry.log = _Log(stamp, reasons, parsed.last_error)

    def _message(self, queue_id: str, entry: _Entry, changed: bool) -> Message:
        if entry.message is not None and not changed:
            return entry.message
        key = message_key(self.source, queue_id)
        cached = self.header_cache[key]
        log = entry.log
        if log is not None and (log.reasons or log.last_error):
            reasons = log.reasons
            if (reasons, log.last_error) != (cached.reasons, cached.last_error):
                cached = CachedSpool(
                    cached.headers, cached.subject, cached.arrival, reasons, log.last_error
                )
                self.header_cache[key] = cached
        entry.message = build_message(self.source, key, entry.entry, cached)
        return entry.message


def _cached(spool: SpoolHeader, keep: frozenset[str] | None) -> CachedSpool:
    headers = parse_header_block(spool.header_block, skip=TRACE_HEADERS, keep=keep)
    subject = normalise_subject(headers.get("Subject") or "", decoded=True)
    return CachedSpool(headers=headers, subject=subject, arrival=spool.arrival)


def _stamp(path: str) -> Stamp | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1


def _read_file(path: str) -> bytes | None:
    """The whole file, ``None`` if it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        data = bytearray()
        while chunk := os.pread(fd, READ_SIZE, len(data)):
            data += chunk
            if len(chunk) < READ_SIZE:
                break
        return bytes(data)
    finally:
        os.close(fd)
