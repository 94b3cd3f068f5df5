"""Postfix change detection by the queue directories: a rescan costs what changed.

:class:`QueueDirWatcher` keeps, per queue id, where its file was (queue, path), its
``lstat`` fingerprint (inode, mtime, ctime, size, mode) and the :class:`Message` built from
it, and per scan:

1. ``stat`` s every queue directory and its hash subdirectories (any depth: the walk follows
   the subdirectories it finds, so ``hash_queue_depth``/``hash_queue_names`` need not be
   asked). A directory whose mtime and inode are those of its last listing, and whose mtime
   was more than :data:`GRANULARITY_NS` older than that listing, has the same entries
   (creating, removing or renaming an entry updates the directory's mtime); any other is
   listed again (``os.scandir``).
2. ``lstat`` s the files of the directories it listed, and every file of the in-flight queues
   (``active``, ``incoming``, ``maildrop``: small by design, and where Postfix rewrites files
   in place: recipients marked done, ``fchmod`` when a file is complete), and any file not
   yet complete (mode not ``0700``: showq does not list it).
3. Reads (envelope and header block, :mod:`mailwatch.parsing.envelope`, usually one
   ``read``) only the files whose fingerprint changed, and the defer log
   (:mod:`mailwatch.parsing.deferlog`) only of messages whose ``defer/`` directory was
   listed, whose queue file changed, or that are in the active queue (the only time Postfix
   appends to a defer log; the queue manager deletes it when it activates a message and the
   message leaves ``active`` by a rename, so a later append is always seen).
4. Reuses the :class:`Message` object of every unchanged message, so the scanner's and the
   store's identity checks are two dictionary look-ups.

Known blind spot (closed by the periodic ``postqueue -j`` reconciliation): a ``chmod`` of a
file in ``deferred`` or ``hold`` with nothing else changing in its directory (``postsuper
-e``, forced expiry) changes only the file's ctime, which is not stat-ed there.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mailwatch.core.headers import (
    TRACE_HEADERS,
    NormalisedSubject,
    normalise_subject,
    parse_header_block,
)
from mailwatch.core.model import Message, Recipient
from mailwatch.errors import QueueFileError, SourceTimeout
from mailwatch.errors import QueueFileGap as Gap
from mailwatch.parsing.deferlog import parse_defer_log
from mailwatch.parsing.envelope import STAT_EXPIRE, STAT_READY, Envelope, parse_queue_file
from mailwatch.parsing.queueid import is_queue_id
from mailwatch.sources.postfix_listing import NO_HEADERS, CachedHeaders, message_key

LISTED_QUEUES = ("maildrop", "active", "incoming", "deferred", "hold")
"""What showq lists, in its order (``corrupt`` is not listed)."""
IN_FLIGHT = frozenset({"maildrop", "active", "incoming"})
GRANULARITY_NS = 2_000_000_000
"""A directory modified within this long before its listing is listed again next scan."""
HEAD = 8 * 1024  # one read holds almost every envelope and header block
DUP_FILTER_LIMIT = 1000  # showq's duplicate_filter_limit default


@dataclass(frozen=True, slots=True)
class _Dir:
    ino: int
    mtime_ns: int
    listed_ns: int
    files: tuple[str, ...]
    subdirs: tuple[str, ...]


Stamp = tuple[int, int, int, int, int]
"""A file's inode, mtime_ns, ctime_ns, size, mode."""


@dataclass(slots=True)
class _File:
    queue: str
    path: str
    stamp: Stamp
    envelope: Envelope | None
    defer: tuple[Stamp | None, tuple[tuple[str, str], ...]] | None = None
    """The defer log's stamp (``None``: seeded from a listing, not stamped) and entries."""
    message: Message | None = None
    changed: bool = False
    """Created by this scan (new, moved or modified): its defer log is checked too."""


def _ready(mode: int) -> bool:
    """Whether showq lists a file of this mode: regular, owner bits all set."""
    return (mode & STAT_READY) == STAT_READY and (mode & 0o170000) == 0o100000


@dataclass
class QueueDirWatcher:
    """One Postfix instance's queue directories, scanned incrementally (module docstring)."""

    source: str
    queue_dir: str
    header_cache: MutableMapping[str, CachedHeaders]
    keep: frozenset[str] | None = None
    deadline: float = 0.0
    """``time.monotonic()`` after which a scan stops with :class:`SourceTimeout` (0: none)."""
    files: dict[str, _File] = field(default_factory=dict)
    dirs: dict[str, _Dir] = field(default_factory=dict)
    root_ino: int | None = None
    files_read: int = 0
    headers_read: int = 0
    dirs_listed: int = 0
    changes: int = 0
    """Messages new, changed or gone at the last scan."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _running: threading.Lock = field(default_factory=threading.Lock)
    _reading: bool = True

    def stop(self) -> None:
        """Ask a running scan to stop soon (its result is then discarded)."""
        self._stop.set()

    def forget(self, queue_id: str) -> None:
        """Drop what is known of ``queue_id`` (re-read at the next scan)."""
        self.files.pop(queue_id, None)
        self.dirs.clear()

    def scan(self, *, read: bool = True) -> list[Message]:
        """The messages queued now, in showq's order; raises ``OSError`` on a directory error.

        With ``read=False`` every queue file and defer log is only stamped (``stat``), none
        read, and nothing returned: :meth:`seed` then takes what a listing says of them.
        Raises :class:`SourceTimeout` past ``deadline``, when stopped, or while the scan of an
        earlier, timed-out probe still runs (one scan at a time).
        """
        if not self._running.acquire(blocking=False):
            raise SourceTimeout(self.source, "the previous queue directory scan still runs")
        self._reading = read
        try:
            return self._scan()
        finally:
            self._running.release()

    def seed(self, listing: Iterable[Message], started_ns: int) -> None:
        """Take a listing started at ``started_ns`` as the content of the stamped files.

        The stamps (``scan(read=False)``) may be taken while the listing runs: a queue file
        whose ctime is not older than the listing's start (by more than the granularity) may
        have changed while it ran, and is left for the next scan to read;
        so is a file listed in another queue than it was stamped in, or not stamped. A file
        that changes after its stamp has a new one, and is read again too.
        """
        recent = started_ns - GRANULARITY_NS
        for message in listing:
            entry = self.files.get(message.queue_id)
            if (
                entry is None
                or entry.queue != message.queue
                or entry.envelope is not None
                or entry.stamp[2] >= recent
            ):
                continue
            entry.envelope = Envelope(
                int(message.arrival.timestamp()),
                message.size,
                message.sender,
                tuple(recipient.address for recipient in message.recipients),
                b"",
            )
            delayed = tuple(
                (r.address, r.delay_reason) for r in message.recipients if r.delay_reason
            )
            # Not stamped: a defer log changes only while its message is active (re-checked
            # at every scan) and is re-read once its message or its directory changes.
            entry.defer = (None, delayed) if delayed else None
            entry.message, entry.changed = message, False

    def _scan(self) -> list[Message]:
        self._stop.clear()
        self.files_read = self.headers_read = self.dirs_listed = self.changes = 0
        root_ino = os.stat(self.queue_dir).st_ino
        if root_ino != self.root_ino:  # a new queue directory: nothing known holds
            self.files.clear()
            self.dirs.clear()
            self.root_ino = root_ino
        defers: dict[str, tuple[str, bool]] = {}
        self._walk(f"{self.queue_dir}/defer", defers)
        current: dict[str, _File] = {}
        messages: list[Message] = []
        for queue in LISTED_QUEUES:
            found: dict[str, tuple[str, bool]] = {}
            self._walk(f"{self.queue_dir}/{queue}", found)
            for queue_id, (directory, fresh) in found.items():
                if queue_id in current or not is_queue_id(queue_id):
                    continue
                entry = self._file(queue, queue_id, directory, fresh or queue in IN_FLIGHT)
                if entry is None:
                    continue
                current[queue_id] = entry
                if entry.changed:
                    self.changes += 1
                if not self._reading:
                    continue
                message = self._message(queue_id, entry, defers.get(queue_id))
                if message is not None:
                    messages.append(message)
        self.changes += sum(1 for queue_id in self.files if queue_id not in current)
        self.files = current
        return messages

    def _check(self) -> None:
        if self._stop.is_set() or (self.deadline and time.monotonic() > self.deadline):
            raise SourceTimeout(self.source, "reading the queue directories took too long")

    def _walk(self, path: str, found: dict[str, tuple[str, bool]]) -> None:
        self._check()
        started = time.time_ns()
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return
        known = self.dirs.get(path)
        fresh = (
            known is None
            or known.ino != st.st_ino
            or known.mtime_ns != st.st_mtime_ns
            or known.listed_ns - st.st_mtime_ns < GRANULARITY_NS
        )
        if known is None or fresh:
            known = self._list(path, st, started)
        for sub in known.subdirs:
            self._walk(f"{path}/{sub}", found)
        for name in known.files:
            found.setdefault(name, (path, fresh))

    def _list(self, path: str, st: os.stat_result, started: int) -> _Dir:
        files: list[str] = []
        subdirs: list[str] = []
        with os.scandir(path) as entries:
            for item in entries:
                (subdirs if item.is_dir(follow_symlinks=False) else files).append(item.name)
        listed = _Dir(st.st_ino, st.st_mtime_ns, started, tuple(files), tuple(sorted(subdirs)))
        self.dirs[path] = listed
        self.dirs_listed += 1
        return listed

    def _file(self, queue: str, queue_id: str, directory: str, restat: bool) -> _File | None:
        """The file's state: the known one if it did not change, else re-read."""
        path = f"{directory}/{queue_id}"
        old = self.files.get(queue_id)
        if old is not None and old.path == path and not restat and old.envelope is not None:
            return old
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_mode)
        unread = old is not None and old.envelope is None and _ready(st.st_mode) and self._reading
        if old is not None and old.path == path and old.stamp == stamp and not unread:
            return old  # (a ready file that was stamped, never read, is read now)
        envelope = None
        if not self._reading:
            pass  # stamped only (see scan)
        elif _ready(st.st_mode):
            envelope = self._read(path, st.st_size, st.st_mtime_ns // 1_000_000_000)
        return _File(queue, path, stamp, envelope, changed=True)

    def _read(self, path: str, size: int, mtime: int) -> Envelope | None:
        self._check()
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        self.files_read += 1
        try:
            head = os.pread(fd, max(HEAD, size) if size <= 4 * HEAD else HEAD, 0)
            size = max(size, len(head))
            tail, tail_at = b"", -1
            for _ in range(4):
                try:
                    return parse_queue_file(
                        head, file_size=size, mtime=mtime, tail=tail, tail_at=tail_at
                    )
                except Gap as gap:
                    if gap.in_content or gap.offset < len(head):
                        head = os.pread(fd, size, 0)  # a long header block: the whole file
                    else:
                        tail, tail_at = os.pread(fd, size - gap.offset, gap.offset), gap.offset
                except QueueFileError:
                    return None
            return None
        finally:
            os.close(fd)

    def _defer(self, queue_id: str, entry: _File, where: tuple[str, bool] | None) -> None:
        """Bring ``entry.defer`` up to date with the defer log (see the module docstring)."""
        if where is None:
            entry.defer = None
            return
        directory, fresh = where
        if not (fresh or entry.changed or entry.queue == "active" or entry.message is None):
            return
        path = f"{directory}/{queue_id}"
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_mode)
            if entry.defer is not None and entry.defer[0] == stamp:
                return
            fd = os.open(path, os.O_RDONLY)
            try:
                data = os.read(fd, max(st.st_size, 4096) + 1)
                while chunk := os.read(fd, 1 << 16):
                    data += chunk
            finally:
                os.close(fd)
            entry.defer = (stamp, parse_defer_log(data))
        except FileNotFoundError:
            entry.defer = None

    def _message(
        self, queue_id: str, entry: _File, where: tuple[str, bool] | None
    ) -> Message | None:
        envelope = entry.envelope
        if envelope is None:
            return None
        before = entry.defer
        self._defer(queue_id, entry, where)
        message = entry.message
        expire = bool(entry.stamp[4] & STAT_EXPIRE)
        if (
            message is not None
            and entry.defer is before
            and message.queue == entry.queue
            and message.forced_expire == expire
        ):
            entry.changed = False
            return message
        arrival = datetime.fromtimestamp(envelope.arrival, UTC)
        key = message_key(self.source, queue_id, arrival)
        cached = self.header_cache.get(key)
        if cached is None and message is not None and message.key == key:  # seeded
            cached = CachedHeaders(
                message.headers, NormalisedSubject(message.subject, message.marking)
            )
        if cached is None:
            headers = parse_header_block(envelope.headers, skip=TRACE_HEADERS, keep=self.keep)
            subject = normalise_subject(headers.get("Subject") or "", decoded=True)
            cached = CachedHeaders(headers, subject) if envelope.headers else NO_HEADERS
            self.header_cache[key] = cached
            self.headers_read += 1
        message = Message(
            key=key,
            source=self.source,
            queue_id=queue_id,
            queue=entry.queue,
            arrival=arrival,
            size=envelope.size,
            sender=envelope.sender,
            recipients=recipients(envelope, entry.defer[1] if entry.defer else ()),
            headers=cached.headers,
            subject=cached.subject.text,
            marking=cached.subject.marking,
            forced_expire=expire,
        )
        entry.message, entry.changed = message, False
        return message


def recipients(envelope: Envelope, deferred: tuple[tuple[str, str], ...]) -> tuple[Recipient, ...]:
    """In showq's order: the defer log's recipients with reasons, then the others pending."""
    seen: set[str] = set()
    listed = []
    for address, reason in deferred:
        if len(seen) < DUP_FILTER_LIMIT:
            seen.add(address)
        listed.append(Recipient(address, reason))
    listed.extend(Recipient(a) for a in envelope.recipients if a not in seen)
    return tuple(listed)
