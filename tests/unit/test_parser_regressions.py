"""Inputs that once made a parser raise outside the typed error tree, or run for minutes.

Each case is an exact input found by fuzzing (issue 11, item 10, and the long run of
``bench/fuzz.py``/``pytest -m fuzz``). A parser must return a value or raise its typed error
(a :class:`mailwatch.errors.ParseError`); nothing else.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from mailwatch.core.headers import decode_header_value, normalise_subject, parse_header_block
from mailwatch.errors import ImapParseError, ParseError, QueueFileError
from mailwatch.parsing import exim, postqueue
from mailwatch.parsing.imap import (
    MAX_SEQUENCE_NUMBERS,
    parse_examine,
    parse_fetch,
    parse_internaldate,
    parse_internaldate_general,
    parse_search,
    parse_sequence_set,
    parse_status,
)
from mailwatch.parsing.queuefile import header_block

SPOOL = (
    b"1xXdpy-0004at-2F-H\nroot 0 0\n<om@probation.example>\n1795954618 0\nXX\n%s\n"
    b"ppcs@justice.example\n\n029  Subject: Breach notification\n"
)


def _within(seconds: float, code: str) -> None:
    """Run ``code`` in a fresh interpreter; fail if it has not finished in ``seconds``.

    A catastrophic regex holds the GIL, so no in-process timer could interrupt it. The limit
    is generous (the fixed code takes milliseconds; the old one took minutes).
    """
    try:
        subprocess.run([sys.executable, "-c", code], check=True, timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {seconds} s: {code[:80]}")


def test_typed_errors_are_value_errors() -> None:
    """The parsers' errors share one base, which is still a ValueError for old callers."""
    assert issubclass(ImapParseError, ParseError)
    assert issubclass(QueueFileError, ParseError)
    assert issubclass(ParseError, ValueError)


class TestHeaders:
    """Headers: inputs that once escaped the typed errors."""

    def test_nul_in_encoded_word_charset(self) -> None:
        """``codecs.lookup`` raises ValueError (not LookupError) for a NUL: UTF-8 then."""
        assert decode_header_value("=?utf\x00-8?q?caf=C3=A9?=") == "café"

    def test_nul_in_charset_through_a_header_block(self) -> None:
        """Nul in charset through a header block."""
        headers = parse_header_block(b"Subject: =?\x00?b?QnJlYWNo?=\n\n")
        assert headers.get("Subject") == "Breach"

    def test_long_reply_chain_is_linear(self) -> None:
        """100k ``RE: `` prefixes: each step once re-sliced the rest of the subject."""
        assert normalise_subject("RE: " * 100_000 + "Breach", decoded=True).text == "Breach"
        _within(
            30, "from mailwatch.core.headers import normalise_subject as n; n('RE: ' * 1000000)"
        )

    @pytest.mark.parametrize(
        "marking", ["OFFICIAL-SENSITIVE", "official sensitive", "[OFFICIAL", "official", "RE"]
    )
    def test_marking_then_64k_spaces(self, marking: str) -> None:
        """Issue 11 item 1: a marking and 64K spaces (after decoding) took ~1 minute."""
        code = (
            "import base64\n"
            "from mailwatch.core.headers import parse_header_block, normalise_subject\n"
            f"raw = base64.b64encode({marking!r}.encode() + b' ' * 65536 + b'x').decode()\n"
            "h = parse_header_block(('Subject: =?utf-8?b?' + raw + '?=\\n\\n').encode())\n"
            "s = normalise_subject(h.get('Subject'), decoded=True)\n"
            "assert s.text.endswith('x'), s\n"
        )
        _within(30, code)

    def test_marking_then_spaces_still_recognised(self) -> None:
        """Marking then spaces still recognised."""
        found = normalise_subject("OFFICIAL-SENSITIVE" + " " * 65536 + "Breach", decoded=True)
        assert found == ("Breach", "OFFICIAL-SENSITIVE")


class TestImap:
    """Imap: inputs that once escaped the typed errors."""

    @pytest.mark.parametrize(
        ("parser", "lines"),
        [
            (parse_status, [b'STATUS "INBOX" (\xff\xfe 3 UIDNEXT 4)', b"OK done"]),
            (parse_examine, [b"OK [\xe9 1] x", b"OK [UIDVALIDITY 7] ok", b"OK done"]),
            (parse_search, [b'ESEARCH (TAG "A1") UID ALL 1:3,\xe9', b"OK done"]),
        ],
    )
    def test_non_ascii_bytes(self, parser: object, lines: list[bytes]) -> None:
        """Non-ASCII bytes once raised UnicodeDecodeError."""
        with contextlib.suppress(ImapParseError):
            parser(lines)  # type: ignore[operator]

    def test_status_with_non_ascii_name_keeps_the_rest(self) -> None:
        """Status with non ascii name keeps the rest."""
        state = parse_status([b'STATUS "INBOX" (\xff\xfe 3 UIDNEXT 4)', b"OK done"])
        assert state.uidnext == 4

    def test_huge_sequence_set(self) -> None:
        """``1:4294967295`` once built a set of four billion numbers (MemoryError)."""
        with pytest.raises(ImapParseError, match="over"):
            parse_sequence_set("1:4294967295")
        with pytest.raises(ImapParseError):
            parse_search([b'ESEARCH (TAG "A1") UID ALL 1:4294967295', b"OK done"])
        assert len(parse_sequence_set(f"1:{MAX_SEQUENCE_NUMBERS}")) == MAX_SEQUENCE_NUMBERS

    @pytest.mark.parametrize("text", ["1:²", "²", "1,٣"])
    def test_non_ascii_digits_in_a_sequence_set(self, text: str) -> None:
        """Non ascii digits in a sequence set."""
        with pytest.raises(ImapParseError):
            parse_sequence_set(text)

    def test_numbers_over_int_digit_limit(self) -> None:
        """Python refuses int() of over 4300 digits with a ValueError."""
        with pytest.raises(ImapParseError):
            parse_search([b"SEARCH " + b"9" * 5000, b"OK done"])
        assert parse_status([b"STATUS INBOX (MESSAGES " + b"9" * 5000 + b")"]).messages is None
        lines = [b"* 1 FETCH (UID " + b"9" * 5000 + b")", b"A1 OK done"]
        assert parse_fetch(lines) == ([], 1)

    @pytest.mark.parametrize("text", ['"31-Dec-9999 23:59:59 -0100"', "31-Dec-9999 23:00:00 -2359"])
    def test_year_9999_with_negative_offset(self, text: str) -> None:
        """Converting to UTC passes datetime.max: OverflowError, once uncaught."""
        with pytest.raises(ImapParseError):
            parse_internaldate(text)
        with pytest.raises(ImapParseError):
            parse_internaldate_general(text)

    def test_year_9999_in_a_fetch_is_one_malformed_response(self) -> None:
        """Year 9999 in a fetch is one malformed response."""
        lines: list[bytes | bytearray] = [
            b'* 1 FETCH (UID 5 FLAGS () INTERNALDATE "31-Dec-9999 23:59:59 -0100" '
            b"RFC822.SIZE 10 BODY[HEADER.FIELDS (SUBJECT)] {2}",
            bytearray(b"\r\n"),
            b")",
            b"A1 OK done",
        ]
        assert parse_fetch(lines) == ([], 1)
        assert parse_fetch(lines, fast=False) == ([], 1)

    def test_year_1_with_positive_offset(self) -> None:
        """Year 1 with positive offset."""
        with pytest.raises(ImapParseError):
            parse_internaldate("01-Jan-0001 00:00:00 +0100")


class TestExim:
    """Exim: inputs that once escaped the typed errors."""

    def test_non_ascii_digit_recipient_count(self) -> None:
        """``"²".isdigit()`` holds but ``int("²")`` raises ValueError."""
        result = exim.parse_spool_header(SPOOL % "²".encode())
        assert isinstance(result, exim.Malformed)

    def test_non_ascii_digit_arrival(self) -> None:
        """Non ascii digit arrival."""
        data = SPOOL.replace(b"1795954618 0", "1795954618 ²".encode()) % b"1"
        assert isinstance(exim.parse_spool_header(data), exim.Malformed)

    def test_ascii_recipient_count_still_parses(self) -> None:
        """Ascii recipient count still parses."""
        result = exim.parse_spool_header(SPOOL % b"1")
        assert isinstance(result, exim.SpoolHeader)
        assert result.recipients == ("ppcs@justice.example",)
        assert result.arrival == datetime.fromtimestamp(1795954618, UTC)

    def test_huge_age_is_not_a_header_line(self) -> None:
        """Huge age is not a header line."""
        listing = "9" * 5000 + "m   413 1xXdpy-0004Zg-1X <om@probation.example>\n  a@b\n\n"
        assert all(isinstance(e, exim.Malformed) for e in exim.parse_queue(listing))

    def test_recipient_with_a_long_run_of_spaces(self) -> None:
        r"""``\\S.*?`` followed by `` *$`` was quadratic in a run of spaces inside the line."""
        listing = "25m   413 1xXdpy-0004Zg-1X <om@probation.example>\n   a" + " " * 50_000
        listing += "b  \n\n"
        (entry,) = exim.parse_queue(listing)
        assert isinstance(entry, exim.EximEntry)
        assert entry.recipients == ("a" + " " * 50_000 + "b",)


class TestPostqueue:
    """Postqueue: inputs that once escaped the typed errors."""

    def test_json_nested_1024_deep(self) -> None:
        """The JSON decoder recurses once per level: RecursionError, once uncaught."""
        line = "[" * 1024 + "]" * 1024
        result = postqueue.parse_line(line, 7)
        assert isinstance(result, postqueue.Malformed)
        assert result.line_number == 7

    def test_object_nested_deep_inside_a_member(self) -> None:
        """Object nested deep inside a member."""
        line = '{"queue_name": ' + '{"a":' * 100_000 + "1" + "}" * 100_000 + "}"
        assert isinstance(postqueue.parse_line(line.encode()), postqueue.Malformed)

    def test_ordinary_line_still_parses(self) -> None:
        """Ordinary line still parses."""
        line = json.dumps({"queue_name": "hold", "queue_id": "ABC", "arrival_time": 1})
        assert isinstance(postqueue.parse_line(line), postqueue.QueueEntry)


class TestQueueFile:
    """QueueFile: inputs that once escaped the typed errors."""

    def test_size_record_with_huge_offset(self) -> None:
        """Size record with huge offset."""
        data = b"C\x10" + b"1 " + b"9" * 14 + b"M\x00"
        with pytest.raises(QueueFileError):
            header_block(data)
