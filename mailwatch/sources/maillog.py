"""The mail-log source: tails the Postfix log for final outcomes (sent, bounced, expired).

Reading resumes from a persisted :class:`~mailwatch.core.model.LogCursor` (inode, offset, and a
fingerprint of the bytes before the offset), stored in the same transaction as the outcomes
it produced, so a restart neither counts a line twice nor misses one. Rotation is handled:

* **rename + new file** (logrotate's default, ``postfix logrotate``): the inode at the path
  changed; the rest of the old file is read from its rotated name (a sibling whose name starts
  with the log's name and has the remembered inode, or, once compressed as ``postfix
  logrotate`` does, a ``.gz`` sibling whose first bytes match the remembered fingerprint), then
  the new file from its start;
* **copy-truncate**: same inode but the file is shorter than the offset, or the bytes before the
  offset changed; the file is read from its start. (Lines written between the copy and the
  truncation are lost by copy-truncate itself; prefer rename rotation.)

Only complete lines are consumed: a half-written last line is left for the next probe. The
in-memory cursor moves only once the store has committed the outcomes with the new cursor
(:meth:`MailLogSource.committed`, called by the scanner): when the write fails (disk full,
read-only store), the next probe reads the same lines again, so no outcome is lost.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BufferedReader
from pathlib import Path
from typing import Protocol

import structlog

from mailwatch.core.model import LogCursor, LogEvent, LogObservation, Observation
from mailwatch.errors import SourceError, SourceUnavailable
from mailwatch.parsing.maillog import parse_line

log = structlog.get_logger(__name__)

HEAD_BYTES = 4096  # fingerprint length: enough to tell files apart, cheap to re-read
MAX_READ_BYTES = 32 * 1024 * 1024  # per probe: bounds memory after a long outage; rest next time


class _Seekable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...
    def seek(self, offset: int, whence: int = ..., /) -> int: ...


def _fingerprint(handle: _Seekable, offset: int) -> str:
    handle.seek(0)
    return hashlib.sha256(handle.read(min(offset, HEAD_BYTES))).hexdigest()


@dataclass(frozen=True, slots=True)
class Chunk:
    """Complete lines read from one file, and the cursor after them."""

    lines: list[str]
    cursor: LogCursor
    size: int
    """Size of the (uncompressed) file when read."""


def _open(path: Path) -> gzip.GzipFile | BufferedReader:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _size(handle: _Seekable) -> int:
    end = handle.seek(0, os.SEEK_END)
    handle.seek(0)
    return end


def read_from(
    path: Path, cursor: LogCursor | None, limit: int = MAX_READ_BYTES, *, inode: int | None = None
) -> Chunk:
    """Read complete lines of ``path`` after ``cursor`` (from the start if it does not apply).

    ``inode`` overrides the file's own (a compressed rotation of the file the cursor was in).
    """
    with _open(path) as handle:
        inode = path.stat().st_ino if inode is None else inode
        size = _size(handle)
        start = 0
        if (
            cursor is not None
            and cursor.inode == inode
            and cursor.offset <= size
            and _fingerprint(handle, cursor.offset) == cursor.head
        ):
            start = cursor.offset
        handle.seek(start)
        data = handle.read(limit)
        end = data.rfind(b"\n") + 1
        complete = data[:end]
        offset = start + end
        head = _fingerprint(handle, offset)
    lines = complete.decode("utf-8", errors="replace").splitlines()
    return Chunk(lines, LogCursor(inode=inode, offset=offset, head=head), size)


def _continues(path: Path, cursor: LogCursor, *, check_inode: bool = True) -> bool:
    """Whether ``path`` is the file ``cursor`` was reading (same bytes up to its offset).

    The inode alone cannot tell: a deleted log's inode is often reused by its successor.
    """
    with _open(path) as handle:
        if check_inode and path.suffix != ".gz" and path.stat().st_ino != cursor.inode:
            return False
        return cursor.offset <= _size(handle) and _fingerprint(handle, cursor.offset) == cursor.head


def _rotated_sibling(path: Path, cursor: LogCursor) -> Path | None:
    for candidate in sorted(path.parent.glob(path.name + "?*"), reverse=True):
        try:
            if _continues(candidate, cursor, check_inode=False):
                return candidate
        except (OSError, EOFError, gzip.BadGzipFile):
            continue  # e.g. a .gz still being written: looked at again next probe
    return None


def read_new_lines(path: Path, cursor: LogCursor | None) -> tuple[list[str], LogCursor]:
    """Every complete line written since ``cursor``, across a rotation; and the new cursor.

    Raises :class:`FileNotFoundError` when there is neither a log nor a rotated one to finish.
    """
    exists = path.exists()
    if cursor is None or (exists and _continues(path, cursor)):
        if not exists:
            raise FileNotFoundError(path)
        chunk = read_from(path, cursor)
        return chunk.lines, chunk.cursor
    lines: list[str] = []
    rotated = _rotated_sibling(path, cursor)
    if rotated is not None:
        old = read_from(rotated, cursor, inode=cursor.inode)
        lines = old.lines
        if not exists or old.cursor.offset < old.size:
            return lines, old.cursor  # finish the old file first (or wait for the new one)
    elif not exists:
        raise FileNotFoundError(path)
    chunk = read_from(path, None)
    return lines + chunk.lines, chunk.cursor


class MailLogSource:
    """Reads final outcomes of messages of the queue source ``outcomes_for`` from ``path``."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        outcomes_for: str | None,
        cursor: LogCursor | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._name = name
        self.path = path
        self.outcomes_for = outcomes_for
        self.cursor = cursor
        self._clock = clock
        self.unparsed_lines = 0
        """Lines read that were not delivery events (counted, then ignored)."""

    @property
    def name(self) -> str:
        """The configured source name."""
        return self._name

    async def probe(self) -> LogObservation:
        """Read and parse what was written since the last probe."""
        try:
            lines, cursor = await asyncio.to_thread(read_new_lines, self.path, self.cursor)
        except FileNotFoundError as exc:
            raise SourceUnavailable(self.name, f"log file {self.path} does not exist") from exc
        except PermissionError as exc:
            raise SourceUnavailable(
                self.name, f"cannot read {self.path}: permission denied"
            ) from exc
        except OSError as exc:
            raise SourceError(self.name, f"reading {self.path}: {exc.strerror or exc}") from exc
        now = self._clock()
        events: list[LogEvent] = []
        for line in lines:
            event = parse_line(line, now)
            if event is None:
                self.unparsed_lines += 1
            else:
                events.append(event)
        return LogObservation(
            source=self.name,
            observed_at=now,
            messages=(),
            malformed=len(lines) - len(events),
            outcomes=tuple(events),
            outcomes_for=self.outcomes_for,
            cursor=cursor,
        )

    def committed(self, observation: Observation) -> None:
        """The store holds ``observation``'s outcomes and cursor: read on from that cursor.

        Until then :attr:`cursor` stays where the store's cursor is, so lines whose outcomes
        a failed write lost are read (and stored, once) again by the next probe.
        """
        if isinstance(observation, LogObservation):
            self.cursor = observation.cursor
