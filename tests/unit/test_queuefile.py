"""Unit tests for mailwatch.parsing.queuefile: header blocks out of Postfix queue files."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.core.headers import parse_header_block
from mailwatch.errors import QueueFileError
from mailwatch.parsing.queuefile import header_block

HEADERS = [
    b"Received: by mx.probation.example (Postfix, from userid 0)",
    b"\tid E305A20C967; Sun, 29 Nov 2026 12:06:36 +0000 (UTC)",
    b"From: om@probation.example",
    b"To: ppcs@justice.example",
    b"Subject: =?utf-8?q?OFFICIAL-SENSITIVE:_Emergency_recall?=",
    b"Importance: high",
]
BODY = [b"Please find the Part A attached.", b"", b"Regards,", b"OM"]


def _varint(n: int) -> bytes:
    """``n`` in little-endian base 128, high bit set on every byte but the last."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _record(rec_type: str, payload: bytes = b"") -> bytes:
    """One queue-file record: type byte, length, payload."""
    return rec_type.encode("ascii") + _varint(len(payload)) + payload


def _content_line(line: bytes, chunk: int) -> bytes:
    """A content line as records: ``L`` pieces of ``chunk`` bytes, then a final ``N``."""
    pieces = [line[i : i + chunk] for i in range(0, len(line), chunk)] or [b""]
    return b"".join(_record("L", p) for p in pieces[:-1]) + _record("N", pieces[-1])


def _queue_file(
    headers: list[bytes],
    body: list[bytes] | None = BODY,
    *,
    chunk: int = 2048,
    end: str = "X",
) -> bytes:
    """A queue file: envelope records, ``M``, content (``body=None``: headers only), end."""
    envelope = (
        _record("C", b"             504              290                1                0")
        + _record("T", b"1795953996 0")
        + _record("F", b"")
        + _record("A", b"rewrite_context=local")
        + _record("S", b"om@probation.example")
        + _record("N", b"Subject: an envelope N record is not content")
        + _record("M")
    )
    content = b"".join(_content_line(line, chunk) for line in headers)
    if body is not None:
        content += _record("N", b"") + b"".join(_content_line(line, chunk) for line in body)
    trailer = _record(end) if end == "E" else _record(end) + _record("R", b"ppcs@justice.example")
    return envelope + content + trailer + (b"" if end == "E" else _record("E"))


class TestVarint:
    """The helper encodes lengths the way Postfix does (checked on known values)."""

    @pytest.mark.parametrize(
        ("n", "encoded"),
        [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02")],
    )
    def test_varint(self, n: int, encoded: bytes) -> None:
        """Known lengths encode to known bytes."""
        assert _varint(n) == encoded


class TestHeaderBlock:
    """The header block comes back CRLF-free, lines joined with LF."""

    def test_normal_message(self) -> None:
        """Headers up to the empty line are returned; the body is not."""
        assert header_block(_queue_file(HEADERS)) == b"\n".join(HEADERS)

    @pytest.mark.parametrize("chunk", [1, 7, 64, 127, 128])
    def test_continuation_records_are_joined(self, chunk: int) -> None:
        """Lines split over ``L`` records come back whole."""
        assert header_block(_queue_file(HEADERS, chunk=chunk)) == b"\n".join(HEADERS)

    def test_long_line_with_multibyte_length(self) -> None:
        """A single record longer than 127 bytes (two-byte length) is read whole."""
        long_line = b"X-Long: " + b"a" * 20000
        assert header_block(_queue_file([long_line, b"To: x@y"])) == long_line + b"\nTo: x@y"

    @pytest.mark.parametrize("end", ["X", "E"])
    def test_headers_only_message(self, end: str) -> None:
        """No empty line and no body: the headers end at the end-of-content record."""
        assert header_block(_queue_file(HEADERS, body=None, end=end)) == b"\n".join(HEADERS)

    def test_empty_header_block(self) -> None:
        """Content that starts with the empty line has an empty header block."""
        assert header_block(_queue_file([])) == b""

    def test_body_lines_are_never_headers(self) -> None:
        """A body line that looks like a header is not part of the block."""
        data = _queue_file([b"Subject: real"], body=[b"Subject: fake", b"From: fake"])
        assert header_block(data) == b"Subject: real"

    def test_feeds_parse_header_block(self) -> None:
        """The block parses into decoded, unfolded headers."""
        headers = parse_header_block(header_block(_queue_file(HEADERS, chunk=9)))
        assert headers.get("Subject") == "OFFICIAL-SENSITIVE: Emergency recall"
        assert headers.get("Received") == (
            "by mx.probation.example (Postfix, from userid 0) "
            "id E305A20C967; Sun, 29 Nov 2026 12:06:36 +0000 (UTC)"
        )

    def test_envelope_records_before_m_are_ignored(self) -> None:
        """Records before ``M`` (even ``N``) are envelope, not content."""
        assert b"envelope" not in header_block(_queue_file(HEADERS))


class TestBrokenFiles:
    """Bytes that are not (enough of) a queue file raise QueueFileError."""

    def test_no_message_record(self) -> None:
        """Without an ``M`` record there is no content to read."""
        data = _record("T", b"1795953996 0") + _record("N", b"Subject: x") + _record("N")
        with pytest.raises(QueueFileError, match="no message content record"):
            header_block(data)

    @pytest.mark.parametrize("data", [b"", b"M", b"\x00\x00\x00\x00"])
    def test_empty_or_garbage(self, data: bytes) -> None:
        """Nothing, a bare type byte, or zero-length junk records are not a queue file."""
        with pytest.raises(QueueFileError, match="no message content record"):
            header_block(data)

    def test_length_overflow(self) -> None:
        """A length longer than 5 base-128 bytes is rejected, not read as a huge number."""
        data = _record("M") + b"N" + b"\xff" * 6 + b"\x01" + b"payload"
        with pytest.raises(QueueFileError, match="record length overflows"):
            header_block(data)

    def test_length_past_end_is_cut_off(self) -> None:
        """A record claiming more bytes than remain means the headers are cut off."""
        data = _record("M") + b"N" + _varint(1000) + b"Subject: short"
        with pytest.raises(QueueFileError, match="header block is cut off"):
            header_block(data)

    def test_every_prefix_raises_or_gives_the_whole_block(self) -> None:
        """A prefix short of the header end raises; a longer one gives the whole block."""
        data = _queue_file(HEADERS, chunk=16)
        block = b"\n".join(HEADERS)
        header_end = data.index(_record("N", b"")) + 2  # the empty N line, type and length
        for size in range(len(data) + 1):
            prefix = data[:size]
            if size < header_end:
                with pytest.raises(QueueFileError):
                    header_block(prefix)
            else:
                assert header_block(prefix) == block

    @pytest.mark.parametrize("cut", [1, 50, 200])
    def test_truncated_inside_headers_says_cut_off(self, cut: int) -> None:
        """Cut inside the content: the error says so (the caller then reads more)."""
        data = _queue_file(HEADERS)
        start = data.index(_record("M")) + 2
        with pytest.raises(QueueFileError, match="header block is cut off"):
            header_block(data[: start + cut])


_LINE = st.binary(min_size=1, max_size=300)


class TestRoundTrip:
    """Arbitrary header lines survive encode → header_block."""

    @settings(max_examples=200, deadline=None, database=None)
    @given(
        lines=st.lists(_LINE, max_size=20),
        chunk=st.integers(min_value=1, max_value=300),
        with_body=st.booleans(),
        end=st.sampled_from(["X", "E"]),
    )
    def test_round_trip(self, lines: list[bytes], chunk: int, with_body: bool, end: str) -> None:
        """Whatever the bytes and record split, the lines come back joined with LF."""
        data = _queue_file(lines, body=BODY if with_body else None, chunk=chunk, end=end)
        assert header_block(data) == b"\n".join(lines)


def _postfix_file(
    headers: list[bytes], body: list[bytes] | None = BODY, *, chunk: int = 2048, end: str = "X"
) -> bytes:
    """Like :func:`_queue_file`, but with a ``C`` record that gives the true content offset."""
    rest = _queue_file(headers, body, chunk=chunk, end=end)
    rest = rest[rest.index(_record("T", b"1795953996 0")) :]  # drop the helper's size record
    size_length = 2 + 6 * 15 + 5  # type, length, six fixed-width fields and their spaces
    offset = size_length + rest.index(_record("M")) + 2
    fields = (len(rest) - offset, offset, 1, 0, len(rest) - offset, 0)
    data = _record("C", b" ".join(b"%15d" % f for f in fields)) + rest
    assert data[offset - 2 : offset] == b"M\x00"
    return data


def _reference_records(data: bytes) -> list[tuple[int, bytes]]:
    """The original record walk: every record of ``data``, up to the first cut-off one."""
    records: list[tuple[int, bytes]] = []
    pos, size = 0, len(data)
    while pos < size:
        rec_type = data[pos]
        pos += 1
        length = shift = 0
        while True:
            if pos >= size:
                return records
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 35:
                raise QueueFileError("record length overflows")
        if pos + length > size:
            return records
        records.append((rec_type, data[pos : pos + length]))
        pos += length
    return records


def _reference_header_block(data: bytes) -> bytes:
    """The original implementation: parse every record of ``data``, then read the content."""
    lines: list[bytes] = []
    current: list[bytes] = []
    in_content = False
    for rec_type, payload in _reference_records(data):
        if not in_content:
            in_content = rec_type == ord("M")
            continue
        if rec_type == ord("L"):
            current.append(payload)
            continue
        if rec_type == ord("N"):
            current.append(payload)
            line = b"".join(current)
            current = []
            if not line:
                return b"\n".join(lines)
            lines.append(line)
            continue
        if rec_type in (ord("X"), ord("E")):
            return b"\n".join(lines)
    if not in_content:
        raise QueueFileError("no message content record")
    raise QueueFileError("header block is cut off")


def _outcome(data: bytes, parse: Callable[[bytes], bytes]) -> bytes | str:
    try:
        return parse(data)
    except QueueFileError as exc:
        return str(exc)


class TestEarlyStop:
    """Only the records up to the end of the headers are read; the envelope can be skipped."""

    def test_postfix_file_helper_gives_the_true_offset(self) -> None:
        """The helper's ``C`` record points just after the ``M`` record, as Postfix's does."""
        data = _postfix_file(HEADERS)
        offset = int(data[2 : 2 + data[1]].split()[1])
        assert data[offset - 2 : offset] == b"M\x00"
        assert header_block(data) == b"\n".join(HEADERS)

    def test_body_is_never_walked(self) -> None:
        """Records after the empty line are not parsed: a broken body cannot spoil the headers."""
        data = _queue_file(HEADERS, body=[]) + b"N" + b"\xff" * 8
        assert header_block(data) == b"\n".join(HEADERS)
        with pytest.raises(QueueFileError, match="overflows"):
            _reference_header_block(data)  # the old walk parsed every record first

    def test_envelope_is_skipped_by_the_size_record(self) -> None:
        """With a true content offset, even an unparseable envelope record is jumped over."""
        data = _postfix_file(HEADERS)
        broken = data.replace(
            _record("T", b"1795953996 0"), b"T" + b"\xff" * 6 + b"\x01" + b"r" * 6
        )
        assert len(broken) == len(data)
        assert header_block(broken) == b"\n".join(HEADERS)
        with pytest.raises(QueueFileError, match="overflows"):
            _reference_header_block(broken)

    @pytest.mark.parametrize("offset", [0, 1, 10, 10**9])
    def test_untrustworthy_offset_falls_back_to_the_walk(self, offset: int) -> None:
        """A size record whose offset is not just after an empty ``M`` is ignored."""
        data = _postfix_file(HEADERS)
        fields = data[2 : 2 + data[1]].split()
        fields[1] = b"%15d" % offset
        forged = _record("C", b" ".join(fields)) + data[2 + data[1] :]
        assert header_block(forged) == b"\n".join(HEADERS)

    @settings(max_examples=300, deadline=None, database=None)
    @given(
        lines=st.lists(_LINE, max_size=12),
        chunk=st.integers(min_value=1, max_value=200),
        body=st.sampled_from([None, BODY, [b"N\xff"]]),
        end=st.sampled_from(["X", "E"]),
        true_offset=st.booleans(),
        cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=6),
    )
    def test_same_as_the_full_walk(
        self,
        lines: list[bytes],
        chunk: int,
        body: list[bytes] | None,
        end: str,
        true_offset: bool,
        cuts: list[int],
    ) -> None:
        """Whole files and prefixes give what walking every record gave (block or error)."""
        build = _postfix_file if true_offset else _queue_file
        data = build(lines, body, chunk=chunk, end=end)
        for size in [len(data), *cuts]:
            prefix = data[:size]
            assert _outcome(prefix, header_block) == _outcome(prefix, _reference_header_block)
