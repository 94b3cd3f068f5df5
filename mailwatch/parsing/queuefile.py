"""Read the header block out of a Postfix queue file (the record format postcat(1) reads).

A queue file is a sequence of records: one type byte, a length in little-endian base-128
(high bit = more bytes follow), then the payload. The message content starts after the ``M``
record; its lines are ``N`` records (``L`` records continue an over-long line); the headers end
at the first empty ``N`` line. Reading the file ourselves costs one ``open`` per *new* message
instead of one ``postcat`` process, and a file that vanished (the message left the queue
between listing and reading) is simply absent rather than fatal for a whole batch.

Only the records up to the end of the header block are parsed: the body (often a large
attachment) is never walked. The envelope is skipped in one step when the ``C`` (size) record
that every Postfix queue file starts with gives the content offset (``data_offset``, the field
the queue manager itself seeks to), and the record before that offset is an empty ``M``; any
other file is walked record by record from the start.
"""

from __future__ import annotations

from mailwatch.errors import QueueFileError

REC_SIZE = ord("C")
REC_MESSAGE = ord("M")
REC_NORMAL = ord("N")
REC_CONTINUED = ord("L")
REC_END_OF_CONTENT = ord("X")
REC_END = ord("E")


def record_at(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """The record at ``pos``: (type, payload start, payload end); ``None`` if it is cut off."""
    size = len(data)
    if pos + 1 >= size:
        return None
    rec_type, byte = data[pos], data[pos + 1]
    pos += 2
    length, shift = byte & 0x7F, 7
    while byte & 0x80:
        if pos >= size:
            return None
        byte = data[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if shift > 35 and byte & 0x80:
            raise QueueFileError("record length overflows")
    if pos + length > size:
        return None
    return rec_type, pos, pos + length


def _offset_from_size_record(data: bytes) -> int | None:
    """Where the content starts according to the leading ``C`` record, if it can be trusted."""
    size = len(data)
    if size < 2 or data[0] != REC_SIZE or data[1] & 0x80 or size < 2 + data[1]:
        return None  # not a size record with a one-byte length (Postfix's is ~100 bytes)
    fields = data[2 : 2 + data[1]].split(None, 2)
    if len(fields) < 2 or not fields[1].isdigit() or len(fields[1]) > 18:
        return None
    offset = int(fields[1])
    if offset < 2 or offset > size or data[offset - 2] != REC_MESSAGE or data[offset - 1]:
        return None
    return offset


def _content_start(data: bytes) -> int | None:
    """Offset of the first record after ``M``; ``None`` if there is no ``M`` in ``data``."""
    offset = _offset_from_size_record(data)
    if offset is not None:
        return offset
    pos = 0
    while (record := record_at(data, pos)) is not None:
        pos = record[2]
        if record[0] == REC_MESSAGE:
            return pos
    return None


def header_block(data: bytes) -> bytes:
    r"""The raw header block of a queue file, CRLF-free, lines joined with ``\\n``.

    ``data`` may be a prefix of the file: if the headers end inside it, that is enough.
    Raises :class:`QueueFileError` if there is no content section or it is cut off before the
    end of the headers (the caller then reads more of the file).
    """
    pos = _content_start(data)
    if pos is None:
        raise QueueFileError("no message content record")
    return header_block_at(data, pos)


def header_block_at(data: bytes, pos: int) -> bytes:
    """The header block of the content whose first record is at ``pos`` (see :func:`header_block`).

    Raises :class:`QueueFileError` when ``data`` ends before the header block does.
    """
    lines: list[bytes] = []
    current: list[bytes] = []
    size = len(data)
    while pos + 1 < size:
        rec_type, length = data[pos], data[pos + 1]
        if length & 0x80:  # a length of more than one byte: rare (lines over 127 bytes)
            record = record_at(data, pos)
            if record is None:
                break
            _, start, pos = record
        else:
            start, pos = pos + 2, pos + 2 + length
            if pos > size:
                break
        if rec_type == REC_NORMAL:
            if current:
                current.append(data[start:pos])
                line = b"".join(current)
                current = []
            else:
                line = data[start:pos]
            if not line:
                return b"\n".join(lines)
            lines.append(line)
        elif rec_type == REC_CONTINUED:
            current.append(data[start:pos])
        elif rec_type in (REC_END_OF_CONTENT, REC_END):
            return b"\n".join(lines)  # a message with headers and no body
    raise QueueFileError("header block is cut off")
