"""A Postfix queue file's envelope, read as ``showq`` reads it for ``postqueue -j`` (pure).

``showq`` (Postfix 3.7, ``src/showq/showq.c``: ``showq_report``) walks a queue file's records
with ``rec_get`` (pointer records followed, padding skipped, the walk ends at ``E``) and
reports, per file:

* the arrival time: the first ``T`` record's seconds (the file's mtime when there is none);
* the size: the first field of the first ``C`` record when that record holds only digits and
  spaces (else the file's size); after the ``M`` record it seeks that many bytes, skipping
  the content to the ``X`` record, so recipients in the extracted section are seen too;
* the sender (``S``; empty is ``MAILER-DAEMON``) and every pending recipient (``R``; ``D``
  is done, ``/`` canceled): addresses with their local part quoted as RFC 822 wants
  (``quote_822_local``) and unprintable characters replaced by ``?``;
* forced expiry: the queue file's group-execute bit (``MAIL_QUEUE_STAT_EXPIRE``), from stat.

A file without a sender is not listed at all (``None``). A second ``S`` or a recipient before
the sender ends the walk, as in showq. The same walk returns the header block (the first
lines of the content, :func:`mailwatch.parsing.queuefile.header_block_at`), so one read of a
new queue file gives everything a message needs.

The caller usually holds only the start of the file:
:class:`~mailwatch.errors.QueueFileGap` says at which offset more bytes are needed; the caller
reads from there and calls again with ``tail`` (see :func:`parse_queue_file`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from sys import intern

from mailwatch.errors import QueueFileError
from mailwatch.errors import QueueFileGap as Gap
from mailwatch.parsing.queuefile import header_block_at, record_at

EMPTY_ADDRESS = "MAILER-DAEMON"
"""``empty_address_recipient``'s default: what showq prints for the null sender."""
STAT_EXPIRE = 0o010
"""``MAIL_QUEUE_STAT_EXPIRE`` (S_IXGRP): ``postsuper -e`` asked for the message to expire."""
STAT_READY = 0o700
"""``MAIL_QUEUE_STAT_READY``: a queue file whose owner bits are not all set is not listed."""
REVERSE_JUMP_LIMIT = 10_000
"""``rec_goto``'s guard against pointer loops."""
_SIZE_CHARS = b"0123456789 "
_HANDLED = frozenset(b"TCSORMEp")
"""The record types the walk acts on; every other one (A, N, X…) is stepped over."""
_SPECIALS = frozenset(b'()<>@,;:\\"[]')


@dataclass(frozen=True, slots=True)
class Envelope:
    """What showq reports for one queue file, and its header block (bytes, undecoded)."""

    arrival: int
    size: int
    sender: str
    recipients: tuple[str, ...]
    headers: bytes


def _atol(payload: bytes) -> int:
    """C ``atol``: leading blanks, a sign, digits; 0 when there are none."""
    text = payload.lstrip(b" \t\n\r\f\v")
    sign = -1 if text[:1] == b"-" else 1
    if text[:1] in (b"-", b"+"):
        text = text[1:]
    end = 0
    while end < len(text) and 48 <= text[end] <= 57:
        end += 1
    return sign * int(text[:end]) if end else 0


def _is_dot_string(local: bytes) -> bool:
    """``is_822_dot_string`` with 8-bit data left alone (``QUOTE_FLAG_8BITCLEAN``)."""
    if not local or local[0] == 46 or local[-1] == 46 or b".." in local:
        return False
    return not any(ch <= 32 or ch == 127 or ch in _SPECIALS for ch in local)


def quote_local(address: bytes) -> bytes:
    """``quote_822_local``: the local part as a quoted string unless it is a dot-string."""
    address = address.split(b"\0", 1)[0]  # a C string ends at the first NUL
    route = b""
    if address[:1] == b"@" and b":" in address:
        colon = address.index(b":") + 1
        route, address = address[:colon], address[colon:]
    at = address.rfind(b"@")
    local, domain = (address, b"") if at < 0 else (address[:at], address[at:])
    if _is_dot_string(local):
        return route + local + domain
    quoted = bytearray(b'"')
    for ch in local:
        if ch in (34, 92, 13):  # '"', '\\', '\r'
            quoted.append(92)
        quoted.append(ch)
    return route + bytes(quoted) + b'"' + domain


def printable(data: bytes) -> str:
    """Postfix's ``printable(text, '?')``: valid UTF-8 kept, control characters as ``?``."""
    text = data.decode("utf-8", "replace")
    if text.isprintable() and "\ufffd" not in text:
        return text
    return "".join("?" if ch == "\ufffd" or ord(ch) < 32 or ord(ch) == 127 else ch for ch in text)


@lru_cache(maxsize=1 << 14)
def address(payload: bytes) -> str:
    """An envelope address as showq prints it (empty: ``MAILER-DAEMON``).

    Cached: a backlog repeats a few thousand addresses across its messages.
    """
    if not payload.split(b"\0", 1)[0]:
        return EMPTY_ADDRESS
    return intern(printable(quote_local(payload)))


@dataclass(slots=True)
class _Walk:
    head: bytes
    tail: bytes
    tail_at: int
    file_size: int
    size: int = -1

    def record(self, pos: int) -> tuple[int, bytes, int] | None:
        """(type, payload, next position) at ``pos``; ``None`` at the end of the file."""
        if pos >= self.file_size:
            return None
        if pos < len(self.head):
            data, base = self.head, 0
        elif self.tail_at >= 0 and self.tail_at <= pos < self.tail_at + len(self.tail):
            data, base = self.tail, self.tail_at
        else:
            raise Gap(pos, in_content=False)
        found = record_at(data, pos - base)
        if found is None:
            raise Gap(pos, in_content=False)
        rec_type, start, end = found
        return rec_type, data[start:end], end + base


@dataclass(slots=True)
class _Found:
    """What the walk has seen so far (showq_report's local variables)."""

    arrival: int = 0
    size: int = 0
    size_ok: bool = False
    sender: str | None = None
    recipients: list[str] = field(default_factory=list)
    headers: bytes = b""

    def take(self, walk: _Walk, rec_type: int, payload: bytes, end: int) -> int | None:
        """Handle one record; the position of the next one (``None``: the walk ends)."""
        if rec_type == 84:  # 'T'
            if self.arrival == 0:
                self.arrival = _atol(payload)
        elif rec_type == 67:  # 'C'
            if not self.size_ok:
                self.size_ok = not payload.translate(None, _SIZE_CHARS) and _atol(payload) >= 0
                self.size = _atol(payload) if self.size_ok else walk.file_size
        elif rec_type == 83:  # 'S'
            if self.sender is not None:
                return None  # a duplicate sender: showq skips the rest of the file
            self.sender = address(payload)
        elif rec_type in (79, 82):  # 'O', 'R'
            if self.sender is None:
                return None  # a recipient before the sender: likewise
            if rec_type == 82:
                self.recipients.append(address(payload))
        elif rec_type == 77:  # 'M'
            self.headers = _headers(walk, end)
            if self.size_ok:
                return end + self.size  # the content skipped: on to the X record
        elif rec_type == 69:  # 'E'
            return None
        return end


def parse_queue_file(
    head: bytes,
    *,
    file_size: int,
    mtime: int,
    tail: bytes = b"",
    tail_at: int = -1,
) -> Envelope | None:
    """The envelope of a queue file of ``file_size`` bytes; ``None`` when showq lists nothing.

    ``head`` is the start of the file, ``tail`` (if any) the bytes from ``tail_at`` on.
    Raises :class:`~mailwatch.errors.QueueFileGap` when bytes in neither are needed; a file
    that ends before its header block does gives empty headers.
    """
    walk = _Walk(head, tail, tail_at, file_size)
    found = _Found()
    pos: int | None = 0
    reverse = 0
    inline = min(len(head), file_size)  # records here are read inline (the usual case)
    handled = _HANDLED
    while pos is not None:
        if pos + 1 < inline and head[pos + 1] < 0x80 and pos + 2 + head[pos + 1] <= inline:
            rec_type, end = head[pos], pos + 2 + head[pos + 1]
            if rec_type not in handled:
                pos = end
                continue
            payload = head[pos + 2 : end]
        elif (record := walk.record(pos)) is not None:
            rec_type, payload, end = record
        else:
            break
        if rec_type != 112:  # not a 'p' (pointer) record
            pos = found.take(walk, rec_type, payload, end)
            continue
        target = _atol(payload)
        pos = end
        if target > 0:  # rec_goto: 0 means "no pointer yet"
            reverse += target < end
            if reverse > REVERSE_JUMP_LIMIT or target >= file_size:
                break
            pos = target
    if found.sender is None:
        return None
    return Envelope(
        found.arrival or mtime,
        found.size if found.size_ok else file_size,
        found.sender,
        tuple(found.recipients),
        found.headers,
    )


def _headers(walk: _Walk, start: int) -> bytes:
    data, base = walk.head, 0
    if walk.tail_at >= 0 and walk.tail_at <= start < walk.tail_at + len(walk.tail):
        data, base = walk.tail, walk.tail_at
    try:
        return header_block_at(data, start - base)
    except QueueFileError:
        if base + len(data) >= walk.file_size:
            return b""  # the whole file is here: a content without a header end
        raise Gap(base + len(data), True) from None
