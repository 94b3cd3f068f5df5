"""Postfix source helpers: what a reconciliation compares, whether the master runs.

And the queue-directory watcher's (:mod:`mailwatch.sources.postfix_qdir`) small parts: the
packed file stamps it keeps per queued message, and a message's recipients in showq's order.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from sys import intern

from mailwatch.core.model import Message, Recipient
from mailwatch.errors import QueueFileError
from mailwatch.errors import QueueFileGap as Gap
from mailwatch.parsing.envelope import STAT_READY, Envelope, parse_queue_file

HEAD = 8 * 1024  # one read holds almost every envelope and header block
DUP_FILTER_LIMIT = 1000  # showq's duplicate_filter_limit default
Deferred = tuple[tuple[str, str], ...]
"""A defer log's entries: (recipient, reason)."""


_STAMP = struct.Struct("<QqqqI")
Stamp = bytes
"""A file's ``lstat`` fingerprint, packed: inode, mtime_ns, ctime_ns, size, mode (36 bytes).

One ``bytes`` object (72 bytes held) where a tuple of five ints held ~250: at 100,000 queued
messages the watcher keeps one per queue file and one per defer log."""


def pack_stamp(ino: int, mtime_ns: int, ctime_ns: int, size: int, mode: int) -> Stamp:
    """The packed stamp of these values (``struct.error`` outside 64-bit ranges)."""
    return _STAMP.pack(ino, mtime_ns, ctime_ns, size, mode)


def stamp_of(st: os.stat_result) -> Stamp:
    """The packed stamp of a ``stat`` result."""
    return _STAMP.pack(st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_mode)


def unpack_stamp(stamp: Stamp) -> tuple[int, int, int, int, int]:
    """``(ino, mtime_ns, ctime_ns, size, mode)`` of a packed stamp."""
    ino, mtime_ns, ctime_ns, size, mode = _STAMP.unpack(stamp)
    return ino, mtime_ns, ctime_ns, size, mode


def _listed(message: Message) -> tuple[object, ...]:
    """What ``postqueue -j`` says of a message (what a reconciliation compares)."""
    return (
        message.queue,
        message.arrival,
        message.size,
        message.sender,
        message.recipients,
        message.forced_expire,
    )


def differences(listing: Iterable[Message], seen: Iterable[Message]) -> set[str]:
    """Queue ids listed by one and not the other, or listed differently."""
    by_id = {message.queue_id: _listed(message) for message in listing}
    other = {message.queue_id: _listed(message) for message in seen}
    return {
        queue_id
        for queue_id in by_id.keys() | other.keys()
        if by_id.get(queue_id) != other.get(queue_id)
    }


def unchanged_objects(
    listing: Iterable[Message], seen: Iterable[Message], differing: set[str]
) -> tuple[Message, ...]:
    """The listing, with the incremental view's own object for every message not differing.

    The scanner recognises an unchanged message by identity: a reconciliation that agrees
    must cost it nothing.
    """
    kept = {message.queue_id: message for message in seen}
    return tuple(m if m.queue_id in differing else kept[m.queue_id] for m in listing)


MAIL_SYSTEM_DOWN = "Mail system is down -- accessing queue directly (master is not running)"


def mail_system_down(queue_dir: str) -> str | None:
    """The warning postqueue gives when the instance's master process is not running, else ``None``.

    The master writes its pid to ``pid/master.pid`` under the queue directory; a pid file
    that is missing, unreadable as a number, or names no process means it is down.
    """
    try:
        with open(f"{queue_dir}/pid/master.pid", "rb") as pid_file:
            pid = int(pid_file.read().strip() or b"0")
    except (OSError, ValueError):
        return MAIL_SYSTEM_DOWN
    if pid <= 0:
        return MAIL_SYSTEM_DOWN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return MAIL_SYSTEM_DOWN
    except PermissionError:
        return None  # alive, owned by someone else
    return None


def mtime_ns(path: os.PathLike[str] | str) -> int | None:
    """A file's modification time in nanoseconds, ``None`` if it cannot be stat-ed."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def ready(mode: int) -> bool:
    """Whether showq lists a file of this mode: regular, owner bits all set."""
    return (mode & STAT_READY) == STAT_READY and (mode & 0o170000) == 0o100000


def read_envelope(fd: int, size: int, mtime: int) -> Envelope | None:
    """The envelope of the open queue file ``fd`` (usually one read; ``None``: not listed)."""
    head = os.pread(fd, max(HEAD, size) if size <= 4 * HEAD else HEAD, 0)
    size = max(size, len(head))
    tail, tail_at = b"", -1
    for _ in range(4):
        try:
            return parse_queue_file(head, file_size=size, mtime=mtime, tail=tail, tail_at=tail_at)
        except Gap as gap:
            if gap.in_content or gap.offset < len(head):
                head = os.pread(fd, size, 0)  # a long header block: the whole file
            else:
                tail, tail_at = os.pread(fd, size - gap.offset, gap.offset), gap.offset
        except QueueFileError:
            return None
    return None


def read_whole(path: str, size: int) -> bytes:
    """A file's bytes (``size``: its size when stat-ed; it may have grown since)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, max(size, 4096) + 1)
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    finally:
        os.close(fd)
    return data


def recipients(envelope: Envelope, deferred: Deferred) -> tuple[Recipient, ...]:
    """In showq's order: the defer log's recipients with reasons, then the others pending.

    Reasons are interned: a backlog repeats a few across its messages (kept while queued).
    """
    seen: set[str] = set()
    listed = []
    for address, reason in deferred:
        if len(seen) < DUP_FILTER_LIMIT:
            seen.add(address)
        listed.append(Recipient(address, intern(reason)))
    listed.extend(Recipient(a) for a in envelope.recipients if a not in seen)
    return tuple(listed)
