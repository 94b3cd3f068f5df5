"""The C reader of common-shape FETCH responses (``mailwatch/parsing/_fetch_scan.c``).

It may leave a response to the Python path (which then reads it, remembering its flags and
minute), never read one differently: ``test_imap_parsing.py`` feeds generated wires in any
chunking through the wire with and without it. Here: it takes what ``fast_record`` takes once
the caches hold its flags and minute, with the same record; it stops at each other shape.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.parsing import imap_scan
from mailwatch.parsing.imap import FAST_FETCH_ITEMS, FetchRecord, fast_record
from mailwatch.parsing.imap_scan import C_SCAN, scan_fast_records
from mailwatch.parsing.imap_values import forget_minutes

pytestmark = pytest.mark.skipif(
    not C_SCAN, reason="not built (test_the_c_reader_is_built fails for this)"
)

_WIRE = re.compile(rb"\* " + FAST_FETCH_ITEMS + rb"\r\n")


def test_the_c_reader_is_built() -> None:
    """The test environment has the C reader (scripts/bootstrap installs a compiler)."""
    assert imap_scan._c_scan is not None, "mailwatch.parsing._fetch_scan is not built"


def response(
    uid: int = 7,
    flags: str = "\\Seen \\Recent",
    date: str = "07-Dec-2026 06:32:30 +0000",
    header: bytes = b"Subject: x\r\n\r\n",
    sequence: int = 3,
    size: int = 1234,
) -> bytes:
    """One response of the common shape."""
    return (
        (
            f'* {sequence} FETCH (UID {uid} FLAGS ({flags}) INTERNALDATE "{date}" '
            f"RFC822.SIZE {size} BODY[HEADER.FIELDS (SUBJECT FROM)] {{{len(header)}}}\r\n"
        ).encode("latin-1")
        + header
        + b")\r\n"
    )


def python_record(raw: bytes) -> FetchRecord | None:
    """What the Python fast path makes of one whole response (remembering as it goes)."""
    found = _WIRE.match(raw)
    assert found is not None
    literal = found.end()
    return fast_record(found, raw[literal : literal + int(found.group(6))])


def scan(buffer: bytes, position: int = 0) -> tuple[int, list[FetchRecord]]:
    """Where the C reader stops in ``buffer`` and the records it read."""
    records: list[FetchRecord] = []
    return scan_fast_records(buffer, position, records), records


def test_remembered_responses_are_read_as_fast_record_reads_them() -> None:
    """Flags and minute remembered: every response taken, each record the Python one."""
    forget_minutes()
    raws = [
        response(uid=1, flags=""),
        response(uid=2, date="07-Dec-2026 06:32:59 +0000", size=0),
        response(uid=3, flags="\\Seen \\Recent", header=b""),
        response(uid=99999999999999999999, sequence=12345678901234567890, size=10**19),
        response(uid=4, date="07-Dec-2026 06:32:00 +0000", header=b"\xff)\r\n{3}\r\n* 1 FETCH"),
    ]
    expected = [python_record(raw) for raw in raws]  # (remembers the flags and the minute)
    assert None not in expected
    buffer = b"".join(raws) + b"MW1 OK done\r\n"
    end, records = scan(buffer)
    assert records == expected
    assert end == len(buffer) - len(b"MW1 OK done\r\n")
    assert [type(r) for r in records] == [FetchRecord] * len(raws)
    assert records[1].internaldate == datetime(2026, 12, 7, 6, 32, 59, tzinfo=UTC)
    assert scan(buffer, 1)[0] == 1  # (not at a response's start: nothing taken)
    assert scan(bytearray(buffer))[0] == 0  # type: ignore[arg-type]  # not bytes: not here


@pytest.mark.parametrize(
    "raw",
    [
        response(flags="\\Seen $NeverSeenBefore"),  # flags not remembered
        response(date="07-Dec-2026 23:59:30 +0000"),  # a minute not remembered
        response(date=" 7-Dec-2026 06:32:30 +0000"),  # another date shape
        response(date="07-Dec-2026 06:32:60 +0000"),  # no such second
        response(flags="NIL"),
        response()[:-3],  # incomplete: no ")" CRLF yet
        response()[:40],
        response().replace(b") INTERNALDATE", b" ) INTERNALDATE"),
        response().replace(b"(\\Seen \\Recent)", b"(\\Seen  \\Recent)"),
        response().replace(b"UID 7", b"UID 7 MODSEQ (5)"),  # another item, order or case
        response().replace(b"UID 7", b"uid 7"),
        response().replace(b"RFC822.SIZE 1234", b"RFC822.SIZE 1234 X-Y NIL"),
        response().replace(b"UID 7", b"UID 123456789012345678901"),  # 21 digits
        response().replace(b"Subject: x\r\n\r\n)", b"Subject: x\r\n\r\n UID 7)"),
        response().replace(b"{14}", b"{15}"),  # the literal's length is not the text's
        b"* 3 EXISTS\r\n",
        b"MW1 OK done\r\n",
        b"",
    ],
)
def test_other_responses_are_left_to_python(raw: bytes) -> None:
    """Each other shape stops the reader at its start, nothing read."""
    forget_minutes()
    python_record(response())  # the usual flags and minute are remembered
    first = response(uid=1)
    end, records = scan(first + raw)
    assert end == len(first)
    assert [r.uid for r in records] == [1]


def test_wrong_arguments_are_errors() -> None:
    """Not the types it reads, or a position outside the buffer: an error, no crash."""
    scanner = imap_scan._c_scan
    assert scanner is not None
    with pytest.raises(ValueError, match="outside"):
        scan(b"abc", 4)
    with pytest.raises(ValueError, match="outside"):
        scan(b"abc", -1)
    with pytest.raises(TypeError):
        scanner(bytearray(b"x"), 0, [], FetchRecord, {}, {}, (None,) * 60)
    with pytest.raises(TypeError):
        scanner(b"x", 0, [], dict, {}, {}, (None,) * 60)
    with pytest.raises(TypeError):
        scanner(b"x", 0, [], FetchRecord, {}, {}, ())


FLAGS = st.lists(st.sampled_from(["\\Seen", "\\Recent", "$L", "a\\b", "\xe9"]), max_size=3)
SECONDS = st.integers(0, 59).map(lambda s: f"07-Dec-2026 06:{s % 3:02d}:{s:02d} +0000")


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 10**20 - 1), FLAGS, SECONDS, st.binary(max_size=40)),
        min_size=1,
        max_size=6,
    )
)
def test_generated_responses_read_alike(
    items: list[tuple[int, list[str], str, bytes]],
) -> None:
    """Generated responses, remembered by the Python path first: the same records."""
    forget_minutes()
    raws = [
        response(uid=uid, flags=" ".join(flags), date=date, header=header)
        for uid, flags, date, header in items
    ]
    expected = [python_record(raw) for raw in raws]
    taken = [raw for raw, record in zip(raws, expected, strict=True) if record is not None]
    end, records = scan(b"".join(taken))
    assert end == sum(map(len, taken))
    assert records == [r for r in expected if r is not None]
