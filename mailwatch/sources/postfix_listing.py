"""The Postfix listing worker: ``postqueue -j`` parsed as it streams, headers read at once.

:class:`~mailwatch.sources.postfix.PostfixSource` runs ``postqueue -j`` with its stdout on a
pipe that a :class:`ListingWorker` thread reads. Each chunk of output is handled as it
arrives: its lines parsed, then the queue files of the messages the source has not seen
before read one after the other, then their header blocks decoded (three tight loops: faster
than reading and decoding line by line), so on a multi-core machine that Python work
overlaps postqueue's (and showq's) instead of starting only after the whole listing. A line
printed by the last listing maps straight to its parsed entry and its built
:class:`~mailwatch.core.model.Message`, so a rescan of an unchanged queue parses no JSON and
builds no objects.

Queue files are read with ``os.open``/``os.read`` (cheaper than file objects) and only up to
the end of the header block (see :mod:`mailwatch.parsing.queuefile`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import threading
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mailwatch.core.headers import (
    TRACE_HEADERS,
    NormalisedSubject,
    normalise_subject,
    parse_header_block,
)
from mailwatch.core.model import Headers, Message
from mailwatch.errors import QueueFileError
from mailwatch.parsing.postqueue import Malformed, QueueEntry, parse_line
from mailwatch.parsing.queuefile import header_block
from mailwatch.parsing.queueid import hash_dirs

HEADER_READ_STEPS = (8 * 1024, 64 * 1024)
"""Prefix sizes tried in turn before the whole file. 8 KiB holds almost every envelope and
header block, 64 KiB nearly all the rest; a large body (attachment) is never read."""
QUEUE_NAMES = ("incoming", "active", "deferred", "hold", "maildrop", "corrupt")
READ_CHUNK = 1 << 20
POLL_MS = 100  # how often a worker waiting for output checks whether it was stopped
BATCH_PAUSE = 0.002  # s: after a small chunk, let output accumulate (fewer wake-ups)
SMALL_CHUNK = 1 << 16
PIPE_SIZE = 1 << 20  # lets postqueue run ahead of the worker (best effort, Linux)


@dataclass(frozen=True, slots=True)
class CachedHeaders:
    """What a message's headers yield once decoded: kept so rescans need no reads."""

    headers: Headers
    subject: NormalisedSubject


NO_HEADERS = CachedHeaders(Headers(), NormalisedSubject("", None))


def message_key(source: str, queue_id: str, arrival: datetime) -> str:
    """Stable, unique key: ``source/queue_id/arrival-epoch`` (Postfix reuses queue ids)."""
    return f"{source}/{queue_id}/{int(arrival.timestamp())}"


def _queue_file_candidates(queue_dir: Path, queue_name: str, queue_id: str) -> Iterator[str]:
    # Plain strings: building Path objects cost more than opening the file does.
    root = os.fspath(queue_dir)
    # The listed queue first, then the others (moved between listing and reading: deferred →
    # active…); hashed queues (deferred, defer) have depth 1, named by the id's microseconds
    # (for a long id, not its first character: mailwatch.parsing.queueid).
    hashed = hash_dirs(queue_id)
    for name in (queue_name, *(q for q in QUEUE_NAMES if q != queue_name)):
        yield f"{root}/{name}/{hashed}/{queue_id}"
        yield f"{root}/{name}/{queue_id}"


def _read(fd: int, size: int | None) -> bytes:
    """Up to ``size`` bytes (``None``: all the rest), fewer only at the end of the file."""
    parts: list[bytes] = []
    wanted = size
    while wanted is None or wanted > 0:
        chunk = os.read(fd, READ_CHUNK if wanted is None else wanted)
        if not chunk:
            break
        parts.append(chunk)
        if wanted is not None:
            wanted -= len(chunk)
    return b"".join(parts)


def _headers_of(fd: int) -> bytes:
    data = os.read(fd, HEADER_READ_STEPS[0])
    try:
        return header_block(data)  # almost always: the headers end in the first 8 KiB
    except QueueFileError:
        pass
    for size in HEADER_READ_STEPS:
        data += _read(fd, size - len(data))
        try:
            return header_block(data)
        except QueueFileError:
            if len(data) < size:  # the whole file is read: more cannot help
                return b""
    try:
        return header_block(data + _read(fd, None))
    except QueueFileError:
        return b""


def read_queue_headers(queue_dir: Path, queue_name: str, queue_id: str) -> bytes | None:
    """The header block of a queued message, or ``None`` if it is no longer in any queue.

    An unreadable queue file gives ``b""`` (classify on the envelope alone). Raises
    :class:`PermissionError` when the queue cannot be read (mailwatch not root/postfix).
    """
    for path in _queue_file_candidates(queue_dir, queue_name, queue_id):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            return _headers_of(fd)
        finally:
            os.close(fd)
    return None


@dataclass(slots=True)
class Listed:
    """One listing line: its entry and key, and the message last built from it."""

    entry: QueueEntry
    key: str
    cached: CachedHeaders | None = None
    message: Message | None = None


@dataclass
class ListingWorker:
    """Consumes one ``postqueue -j`` output pipe on a thread (see the module docstring).

    The asyncio side runs :meth:`run` on a thread and, once it has returned, reads the results:
    ``messages`` (in listing order; ``None`` where a header read waits for the queue
    directory, see ``deferred`` and :meth:`read_deferred`), ``problems``, ``lines`` (the next
    listing's ``previous``), ``headers_read`` and ``error`` (an ``OSError`` that stopped header
    reads). ``header_cache`` is updated in place.
    """

    source: str
    fd: int
    previous: dict[bytes, Listed]
    header_cache: MutableMapping[str, CachedHeaders]
    queue_dir: Callable[[], Path | None]
    """The queue directory if known yet (``None``: defer reads and call ``need_queue_dir``)."""
    need_queue_dir: Callable[[], None]
    keep: frozenset[str] | None = None
    keep_lines: bool = True
    """Map each line to its entry and message in ``lines`` (``False``: nobody reuses them)."""
    messages: list[Message | None] = field(default_factory=list)
    problems: list[Malformed] = field(default_factory=list)
    lines: dict[bytes, Listed] = field(default_factory=dict)
    deferred: list[tuple[int, Listed]] = field(default_factory=list)
    headers_read: int = 0
    error: OSError | None = None
    _attempted: set[str] = field(default_factory=set)
    _root: tuple[Path | None, str] = (None, "")  # the queue directory, and as a string
    _stop: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        """Ask the thread to return soon, whatever is left in the pipe (e.g. on timeout)."""
        self._stop.set()

    def run(self) -> None:
        """Read the pipe to its end (or until stopped), handling each line; closes ``fd``."""
        try:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN | select.POLLHUP | select.POLLERR)
            pending = b""
            while not self._stop.is_set():
                if not poller.poll(POLL_MS):
                    continue
                chunk = os.read(self.fd, READ_CHUNK)
                if not chunk:
                    if pending:
                        self.handle([pending])
                    break
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                self.handle(lines)
                if self.deferred and self.queue_dir() is not None:
                    self.read_deferred()
                if len(chunk) < SMALL_CHUNK:
                    self._stop.wait(BATCH_PAUSE)
        finally:
            os.close(self.fd)

    def handle(self, lines: list[bytes]) -> None:
        """Output lines: parse (or recall) each, read new headers, build the messages."""
        # One loop per chunk with everything it touches bound locally: it runs per message.
        previous, current, cache = self.previous, self.lines, self.header_cache
        messages, problems, source = self.messages, self.problems, self.source
        keep_lines, attempted = self.keep_lines, self._attempted
        # Messages whose headers are to be read: placeholders until the chunk's lines are
        # parsed, then their files are read one after the other, then decoded (each phase a
        # tight loop of its own: measured faster than reading and decoding line by line).
        wanted: list[tuple[int, Listed]] = []
        for line in lines:
            listed = previous.get(line)
            if listed is None:
                parsed = parse_line(line, len(messages) + len(problems) + 1)
                if parsed is None:
                    continue
                if isinstance(parsed, Malformed):
                    problems.append(parsed)
                    continue
                listed = Listed(parsed, message_key(source, parsed.queue_id, parsed.arrival))
            if keep_lines:
                current[line] = listed
            cached = cache.get(listed.key)
            if cached is None and listed.key not in attempted:
                wanted.append((len(messages), listed))
                messages.append(None)
                continue
            message = listed.message
            if message is None or listed.cached is not cached:
                message = self._message(listed, cached)
            messages.append(message)
        if not wanted:
            return
        queue_dir = self.queue_dir()
        if queue_dir is None:
            if not self.deferred:
                self.need_queue_dir()
            self.deferred.extend(wanted)
        else:
            self._read_all(queue_dir, wanted)

    def read_deferred(self) -> None:
        """Read the headers of the messages listed before the queue directory was known."""
        queue_dir = self.queue_dir()
        if queue_dir is None:
            return
        deferred, self.deferred = self.deferred, []
        wanted: list[tuple[int, Listed]] = []
        for index, listed in deferred:
            cached = self.header_cache.get(listed.key)
            if cached is None:
                wanted.append((index, listed))
            else:
                self.messages[index] = self._message(listed, cached)
        self._read_all(queue_dir, wanted)

    def _read_all(self, queue_dir: Path, wanted: list[tuple[int, Listed]]) -> None:
        """Read the header blocks of ``wanted`` (not tried before), decode them, fill in."""
        read: list[tuple[int, Listed, bytes]] = []
        repeats: list[tuple[int, Listed]] = []
        messages, attempted = self.messages, self._attempted
        for index, listed in wanted:
            if listed.key in attempted:  # tried before, or listed twice: its cache entry
                repeats.append((index, listed))
                continue
            raw = self._read_raw(queue_dir, listed)
            if raw is None:
                messages[index] = self._message(listed, None)
            else:
                read.append((index, listed, raw))
        self._decode(read)
        for index, listed in repeats:
            messages[index] = self._message(listed, self.header_cache.get(listed.key))

    def _read_raw(self, queue_dir: Path, listed: Listed) -> bytes | None:
        """The header block of ``listed``'s queue file (``None``: gone, or the queue unreadable)."""
        self._attempted.add(listed.key)
        if self.error is not None:
            return None  # the probe fails anyway: do not hammer an unreadable queue
        entry, queue_id = listed.entry, listed.entry.queue_id
        if self._root[0] is not queue_dir:
            self._root = (queue_dir, os.fspath(queue_dir))
        try:
            try:  # where it almost always is: the listed queue, hashed (read_queue_headers)
                fd = os.open(
                    f"{self._root[1]}/{entry.queue_name}/{hash_dirs(queue_id)}/{queue_id}",
                    os.O_RDONLY,
                )
            except FileNotFoundError:
                return read_queue_headers(queue_dir, entry.queue_name, queue_id)
            try:
                return _headers_of(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self.error = exc
            return None

    def _decode(self, read: list[tuple[int, Listed, bytes]]) -> None:
        """Decode the header blocks read, cache them, fill in their messages."""
        if not read:
            return
        cache, messages, keep = self.header_cache, self.messages, self.keep
        for index, listed, raw in read:
            headers = parse_header_block(raw, skip=TRACE_HEADERS, keep=keep)
            subject = normalise_subject(headers.get("Subject") or "", decoded=True)
            cached = CachedHeaders(headers, subject)
            cache[listed.key] = cached
            messages[index] = self._message(listed, cached)
        self.headers_read += len(read)

    def _message(self, listed: Listed, cached: CachedHeaders | None) -> Message:
        entry, found = listed.entry, cached or NO_HEADERS
        message = Message(
            key=listed.key,
            source=self.source,
            queue_id=entry.queue_id,
            queue=entry.queue_name,
            arrival=entry.arrival,
            size=entry.size,
            sender=entry.sender,
            recipients=entry.recipients,
            headers=found.headers,
            subject=found.subject.text,
            marking=found.subject.marking,
            forced_expire=entry.forced_expire,
        )
        listed.cached, listed.message = cached, message
        return message


def grow_pipe(fd: int) -> None:
    """Enlarge a pipe's buffer so postqueue runs ahead of the worker (best effort, Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


def call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """``loop.call_soon_threadsafe(callback)`` from a thread, unless the loop has closed."""
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(callback)


def settle(done: asyncio.Future[None], failure: BaseException | None) -> None:
    """Finish ``done`` with ``failure`` (or success), unless it is already finished."""
    if done.done():
        return
    if failure is None:
        done.set_result(None)
    else:
        done.set_exception(failure)


def listing_warnings(stderr: str) -> tuple[str, ...]:
    """The distinct ``warning:`` texts postqueue printed on stderr."""
    return tuple(
        dict.fromkeys(
            line.split("warning:", 1)[1].strip()
            for line in stderr.splitlines()
            if "warning:" in line
        )
    )
