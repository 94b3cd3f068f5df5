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

Reading and decoding a queue file's header block: :mod:`.queuefile_headers`.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mailwatch.core.model import Message
from mailwatch.parsing.postqueue import Malformed, QueueEntry, parse_line, parse_lines
from mailwatch.sources.queuefile_headers import (
    NO_HEADERS,
    CachedHeaders,
    decode_all,
    read_listed,
)

READ_CHUNK = 1 << 20
POLL_MS = 100  # how often a worker waiting for output checks whether it was stopped
BATCH_PAUSE = 0.002  # s: after a small chunk, let output accumulate (fewer wake-ups)
SMALL_CHUNK = 1 << 16


def message_key(source: str, queue_id: str, arrival: datetime) -> str:
    """Stable, unique key: ``source/queue_id/arrival-epoch`` (Postfix reuses queue ids)."""
    return f"{source}/{queue_id}/{int(arrival.timestamp())}"


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
        # A first listing (nothing to recall): the chunk's JSON decoded in one call.
        parsed_all = None if previous else parse_lines(lines, len(messages) + len(problems) + 1)
        for i, line in enumerate(lines):
            listed = previous.get(line) if previous else None
            if listed is None:
                parsed = (
                    parse_line(line, len(messages) + len(problems) + 1)
                    if parsed_all is None
                    else parsed_all[i]
                )
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
        if self._root[0] is not queue_dir:
            self._root = (queue_dir, os.fspath(queue_dir))
        entry = listed.entry
        try:
            return read_listed(self._root[1], entry.queue_name, entry.queue_id)
        except OSError as exc:
            self.error = exc
            return None

    def _decode(self, read: list[tuple[int, Listed, bytes]]) -> None:
        """Decode the header blocks read (together: :func:`decode_all`), cache them, fill in."""
        if not read:
            return
        cache, messages = self.header_cache, self.messages
        decoded = decode_all([raw for _, _, raw in read], self.keep)
        for (index, listed, _), cached in zip(read, decoded, strict=True):
            cache[listed.key] = cached
            messages[index] = self._message(listed, cached)
        self.headers_read += len(read)

    def _message(self, listed: Listed, cached: CachedHeaders | None) -> Message:
        entry, found = listed.entry, cached or NO_HEADERS
        subject = found.subject
        message = Message(  # positional: one per listed message, cheaper than keywords
            listed.key, self.source, entry.queue_id, entry.queue_name, entry.arrival,
            entry.size, entry.sender, entry.recipients, found.headers, subject.text,
            subject.marking, entry.forced_expire,
        )  # fmt: skip
        listed.cached, listed.message = cached, message
        return message
