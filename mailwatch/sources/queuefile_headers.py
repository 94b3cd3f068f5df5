"""A queued Postfix message's header block: found, read and decoded (no asyncio, no threads).

Used in the listing worker's thread (:mod:`.postfix_listing`), the queue-directory watcher
(:mod:`.postfix_qdir`) and the header reader process (:mod:`.header_reader_child`), which
must all read and decode a queue file the same way.

Queue files are read with ``os.open``/``os.read`` (cheaper than file objects) and only up to
the end of the header block (see :mod:`mailwatch.parsing.queuefile`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailwatch.core.headers import (
    TRACE_HEADERS,
    NormalisedSubject,
    normalise_subject,
    parse_header_block,
    parse_queue_header_blocks,
)
from mailwatch.core.model import Headers
from mailwatch.errors import QueueFileError
from mailwatch.parsing.queuefile import header_block
from mailwatch.parsing.queueid import hash_dirs

HEADER_READ_STEPS = (8 * 1024, 64 * 1024)
"""Prefix sizes tried in turn before the whole file. 8 KiB holds almost every envelope and
header block, 64 KiB nearly all the rest; a large body (attachment) is never read."""
QUEUE_NAMES = ("incoming", "active", "deferred", "hold", "maildrop", "corrupt")
READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class CachedHeaders:
    """What a message's headers yield once decoded: kept so rescans need no reads."""

    headers: Headers
    subject: NormalisedSubject


NO_HEADERS = CachedHeaders(Headers(), NormalisedSubject("", None))


def decode(raw: bytes, keep: frozenset[str] | None) -> CachedHeaders:
    """A header block read from a queue file, decoded (only ``keep``'s names, if given)."""
    return _cached(parse_header_block(raw, skip=TRACE_HEADERS, keep=keep))


def decode_all(raws: Sequence[bytes], keep: frozenset[str] | None) -> list[CachedHeaders]:
    """``[decode(raw, keep) for raw in raws]``, the blocks parsed together when they can be.

    See :func:`~mailwatch.core.headers.parse_queue_header_blocks`.
    """
    return list(map(_cached, parse_queue_header_blocks(raws, skip=TRACE_HEADERS, keep=keep)))


def _cached(headers: Headers) -> CachedHeaders:
    return CachedHeaders(headers, normalise_subject(headers.get("Subject") or "", decoded=True))


def _queue_file_candidates(root: str, queue_name: str, queue_id: str) -> Iterator[str]:
    # Plain strings: building Path objects cost more than opening the file does.
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


def headers_of(fd: int) -> bytes:
    """The header block of the open queue file ``fd`` (``b""``: not a readable queue file)."""
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


def read_queue_headers(queue_dir: Path | str, queue_name: str, queue_id: str) -> bytes | None:
    """The header block of a queued message, or ``None`` if it is no longer in any queue.

    An unreadable queue file gives ``b""`` (classify on the envelope alone). Raises
    :class:`PermissionError` when the queue cannot be read (mailwatch not root/postfix).
    """
    for path in _queue_file_candidates(os.fspath(queue_dir), queue_name, queue_id):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            return headers_of(fd)
        finally:
            os.close(fd)
    return None


def read_listed(root: str, queue_name: str, queue_id: str) -> bytes | None:
    """:func:`read_queue_headers`, trying first where a listed message almost always is.

    ``root`` is the queue directory as a string. Raises :class:`OSError` (other than "not
    found") as :func:`read_queue_headers` does.
    """
    try:
        fd = os.open(f"{root}/{queue_name}/{hash_dirs(queue_id)}/{queue_id}", os.O_RDONLY)
    except FileNotFoundError:
        return read_queue_headers(root, queue_name, queue_id)
    try:
        return headers_of(fd)
    finally:
        os.close(fd)
