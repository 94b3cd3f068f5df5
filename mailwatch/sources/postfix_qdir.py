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

It keeps per queued message (issue 13, memory at 100,000) the packed stamps of its file and
defer log (:func:`~mailwatch.sources.postfix_state.stamp_of`) and the :class:`Message`, not
the envelope nor the defer log's entries: a message rebuilt for a new defer log while its
queue file did not change reads the file again (a cost that grows with change).

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
from sys import intern

from mailwatch.core.headers import NormalisedSubject
from mailwatch.core.model import Message
from mailwatch.errors import SourceTimeout
from mailwatch.parsing.deferlog import parse_defer_log
from mailwatch.parsing.envelope import STAT_EXPIRE, Envelope
from mailwatch.parsing.queueid import is_queue_id
from mailwatch.sources.postfix_listing import message_key
from mailwatch.sources.postfix_state import (
    Deferred,
    Stamp,
    read_envelope,
    read_whole,
    ready,
    recipients,
    stamp_of,
    unpack_stamp,
)
from mailwatch.sources.queuefile_headers import NO_HEADERS, CachedHeaders, decode

LISTED_QUEUES = ("maildrop", "active", "incoming", "deferred", "hold")
"""What showq lists, in its order (``corrupt`` is not listed)."""
IN_FLIGHT = frozenset({"maildrop", "active", "incoming"})
GRANULARITY_NS = 2_000_000_000
"""A directory modified within this long before its listing is listed again next scan."""


@dataclass(frozen=True, slots=True)
class _Dir:
    path: str  # one string, shared by the entries of its files
    ino: int
    mtime_ns: int
    listed_ns: int
    files: tuple[str, ...]
    subdirs: tuple[str, ...]


SEEDED = b"S"
"""A seeded defer stamp starts so: ``SEEDED`` + the listing's start (8 bytes, ns); a message
seeded from a listing with delay reasons (its defer log not stamped; one marker per listing)."""


def _seeded_before(defer: Stamp | None, st: os.stat_result) -> bool:
    """The defer log ``st`` is older than the listing that seeded ``defer``: stamp, not read."""
    if defer is None or len(defer) != 9 or defer[:1] != SEEDED:
        return False
    listed_ns = int.from_bytes(defer[1:], "big")
    return max(st.st_mtime_ns, st.st_ctime_ns) < listed_ns - GRANULARITY_NS


@dataclass(slots=True)
class _File:
    queue: str
    directory: str
    stamp: Stamp
    expire: bool
    """Forced expiry (the mode's group-execute bit, from ``stamp``)."""
    defer: Stamp | None = None
    """The defer log's stamp (starting with :data:`SEEDED`: from a listing, not stamped;
    ``None``: none)."""
    message: Message | None = None
    """What the file says (``None``: stamped only, or not listed by showq)."""
    changed: bool = False
    """Created by this scan (new, moved or modified): its defer log is checked too."""


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

        The stamps (``scan(read=False)``) may be taken while the listing runs or after it: a
        queue file whose ctime is not older than the listing's start (by more than the
        granularity) may have changed since it began, and is left for the next scan to read;
        so is a file listed in another queue than it was stamped in, or not stamped. A file
        that changes after its stamp has a new one, and is read again too.
        """
        recent = started_ns - GRANULARITY_NS
        seeded = SEEDED + started_ns.to_bytes(8, "big")
        for message in listing:
            entry = self.files.get(message.queue_id)
            if (
                entry is None
                or entry.queue != message.queue
                or entry.message is not None
                or unpack_stamp(entry.stamp)[2] >= recent
            ):
                continue
            delayed = any(r.delay_reason for r in message.recipients)
            # Not stamped: a defer log changes only while its message is active (re-checked
            # at every scan); once its directory changes it is stamped, and read only if it
            # was written after the listing began (else the listing already read it).
            entry.defer = seeded if delayed else None
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
                got = self._file(queue, queue_id, directory, fresh or queue in IN_FLIGHT)
                if got is None:
                    continue
                entry, envelope = got
                current[queue_id] = entry
                if entry.changed:
                    self.changes += 1
                if not self._reading:
                    continue
                message = self._message(queue_id, entry, envelope, defers.get(queue_id))
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
        where = (known.path, fresh)
        for name in known.files:
            found.setdefault(name, where)

    def _list(self, path: str, st: os.stat_result, started: int) -> _Dir:
        files: list[str] = []
        subdirs: list[str] = []
        with os.scandir(path) as entries:
            for item in entries:
                if item.is_dir(follow_symlinks=False):
                    subdirs.append(item.name)
                else:  # interned, as postqueue -j's queue ids: one string per queued message
                    files.append(intern(item.name))
        listed = _Dir(
            path, st.st_ino, st.st_mtime_ns, started, tuple(files), tuple(sorted(subdirs))
        )
        self.dirs[path] = listed
        self.dirs_listed += 1
        return listed

    def _file(
        self, queue: str, queue_id: str, directory: str, restat: bool
    ) -> tuple[_File, Envelope | None] | None:
        """The file's state (the known one if it did not change), and its envelope if read."""
        old = self.files.get(queue_id)
        same_place = old is not None and old.directory == directory
        if old is not None and same_place and not restat and old.message is not None:
            return old, None
        path = f"{directory}/{queue_id}"
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        stamp = stamp_of(st)
        unread = old is not None and old.message is None and ready(st.st_mode) and self._reading
        if old is not None and same_place and old.stamp == stamp and not unread:
            return old, None  # (a ready file that was stamped, never read, is read now)
        envelope = None
        if not self._reading:
            pass  # stamped only (see scan)
        elif ready(st.st_mode):
            envelope = self._read(path, st.st_size, st.st_mtime_ns // 1_000_000_000)
        expire = bool(st.st_mode & STAT_EXPIRE)
        return _File(queue, directory, stamp, expire, changed=True), envelope

    def _read(self, path: str, size: int, mtime: int) -> Envelope | None:
        self._check()
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        self.files_read += 1
        try:
            return read_envelope(fd, size, mtime)
        finally:
            os.close(fd)

    def _defer(
        self, queue_id: str, entry: _File, where: tuple[str, bool] | None, force: bool = False
    ) -> Deferred | None:
        """Bring ``entry.defer`` up to date with the defer log (see the module docstring).

        Its entries if it changed (or ``force``: whatever it is), else ``None``.
        """
        if where is None:
            if entry.defer is None and not force:
                return None
            entry.defer = None
            return ()
        directory, fresh = where
        checked = fresh or entry.changed or entry.queue == "active" or entry.message is None
        if not (checked or force):
            return None
        path = f"{directory}/{queue_id}"
        try:
            st = os.stat(path)
            stamp = stamp_of(st)
            if not force and (entry.defer == stamp or _seeded_before(entry.defer, st)):
                entry.defer = stamp
                return None
            data = read_whole(path, st.st_size)
        except FileNotFoundError:
            if entry.defer is None and not force:
                return None
            entry.defer = None
            return ()
        entry.defer = stamp
        return parse_defer_log(data)

    def _message(
        self,
        queue_id: str,
        entry: _File,
        envelope: Envelope | None,
        where: tuple[str, bool] | None,
    ) -> Message | None:
        message = entry.message
        if envelope is None and message is None:
            return None
        before = entry.defer
        deferred = self._defer(queue_id, entry, where)
        if (
            message is not None
            and deferred is None
            and message.queue == entry.queue
            and message.forced_expire == entry.expire
        ):
            entry.changed = False
            return message
        if envelope is None:  # a known file, unchanged, its message rebuilt: read it again
            envelope = self._reread(queue_id, entry)
            if envelope is None:  # gone meanwhile: as it was (the next scan sees what is)
                entry.defer = before
                return message
        if deferred is None:
            deferred = self._defer(queue_id, entry, where, force=True) or ()
        return self._build(queue_id, entry, envelope, deferred)

    def _reread(self, queue_id: str, entry: _File) -> Envelope | None:
        _, mtime_ns, _, size, _ = unpack_stamp(entry.stamp)
        return self._read(f"{entry.directory}/{queue_id}", size, mtime_ns // 1_000_000_000)

    def _build(
        self, queue_id: str, entry: _File, envelope: Envelope, deferred: Deferred
    ) -> Message:
        message = entry.message
        arrival = datetime.fromtimestamp(envelope.arrival, UTC)
        key = message_key(self.source, queue_id, arrival)
        cached = self.header_cache.get(key)
        if cached is None and message is not None and message.key == key:  # seeded
            cached = CachedHeaders(
                message.headers, NormalisedSubject(message.subject, message.marking)
            )
        if cached is None:
            cached = decode(envelope.headers, self.keep) if envelope.headers else NO_HEADERS
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
            recipients=recipients(envelope, deferred),
            headers=cached.headers,
            subject=cached.subject.text,
            marking=cached.subject.marking,
            forced_expire=entry.expire,
        )
        entry.message, entry.changed = message, False
        return message
