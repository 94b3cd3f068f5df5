"""Read the header block out of a Postfix queue file (the record format postcat(1) reads).

A queue file is a sequence of records: one type byte, a length in little-endian base-128
(high bit = more bytes follow), then the payload. The message content starts after the ``M``
record; its lines are ``N`` records (``L`` records continue an over-long line); the headers end
at the first empty ``N`` line. Reading the file ourselves costs one ``open`` per *new* message
instead of one ``postcat`` process, and a file that vanished (the message left the queue
between listing and reading) is simply absent rather than fatal for a whole batch.
"""

from __future__ import annotations

REC_MESSAGE = ord("M")
REC_NORMAL = ord("N")
REC_CONTINUED = ord("L")
REC_END_OF_CONTENT = ord("X")
REC_END = ord("E")


class QueueFileError(ValueError):
    """The bytes are not a Postfix queue file (or are cut off before the headers end)."""


def _records(data: bytes) -> tuple[list[tuple[int, bytes]], bool]:
    records: list[tuple[int, bytes]] = []
    pos, size = 0, len(data)
    while pos < size:
        rec_type = data[pos]
        pos += 1
        length = shift = 0
        while True:
            if pos >= size:
                return records, False
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 35:
                raise QueueFileError("record length overflows")
        if pos + length > size:
            return records, False
        records.append((rec_type, data[pos : pos + length]))
        pos += length
    return records, True


def header_block(data: bytes) -> bytes:
    r"""The raw header block of a queue file, CRLF-free, lines joined with ``\\n``.

    ``data`` may be a prefix of the file: if the headers end inside it, that is enough.
    Raises :class:`QueueFileError` if there is no content section or it is cut off before the
    end of the headers (the caller then reads more of the file).
    """
    records, _complete = _records(data)
    lines: list[bytes] = []
    current: list[bytes] = []
    in_content = False
    for rec_type, payload in records:
        if not in_content:
            in_content = rec_type == REC_MESSAGE
            continue
        if rec_type == REC_CONTINUED:
            current.append(payload)
            continue
        if rec_type == REC_NORMAL:
            current.append(payload)
            line = b"".join(current)
            current = []
            if not line:
                return b"\n".join(lines)
            lines.append(line)
            continue
        if rec_type in (REC_END_OF_CONTENT, REC_END):
            return b"\n".join(lines)  # a message with headers and no body
    if not in_content:
        raise QueueFileError("no message content record")
    raise QueueFileError("header block is cut off")
