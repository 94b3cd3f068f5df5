"""The batch decoding of queue-file header blocks gives exactly what one by one gives.

``parse_queue_header_blocks`` takes header blocks as :func:`queuefile.header_block` returns
them (lines joined with LF, no blank line after) and decodes a batch as one text. These tests
generate such blocks (encoded words, NULs, 8-bit bytes, folding, stray CR and LF inside a
record) and compare with ``parse_header_block`` of each block, values and packed form alike.
"""

from __future__ import annotations

from unittest.mock import patch

from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_headers_batch import KEEPS, LINES, SKIPS

from mailwatch.core import headers as headers_module
from mailwatch.core.headers import ESSENTIAL_HEADERS, TRACE_HEADERS, parse_header_block
from mailwatch.core.model import Headers
from mailwatch.parsing import queue_headers
from mailwatch.parsing.queue_headers import parse_queue_header_blocks

ODD_BLOCKS = [b"", b"Subject: caf\xc3", b"To: a\r\nCc: b", b"To: a\n", b"\nTo: a",
              b"To: a\n\nCc: b", b"Subject: x\rCc: y", b"To: \xff\xfe"]  # fmt: skip
QUEUE_BLOCK = LINES.map(lambda lines: "\n".join(lines).encode("utf-8"))
RAW_QUEUE_BLOCK = st.one_of(
    QUEUE_BLOCK, QUEUE_BLOCK, st.sampled_from(ODD_BLOCKS), st.binary(max_size=40)
)


def _same(got: list[Headers], expected: list[Headers]) -> None:
    assert got == expected
    for headers in got:  # and packed as Headers(items) packs them
        assert headers._packed == Headers(headers.items)._packed


@settings(max_examples=500, deadline=None, database=None)
@given(raws=st.lists(RAW_QUEUE_BLOCK, max_size=6), keep=KEEPS | st.none(), skip=SKIPS)
@example([b"Subject: a", b"To: a\n"], ESSENTIAL_HEADERS, TRACE_HEADERS)
@example([b"Subject: a", b"To: a\n\nCc: b"], ESSENTIAL_HEADERS, TRACE_HEADERS)
@example([b"Subject: a", b"To: a\r\nCc: b"], ESSENTIAL_HEADERS, TRACE_HEADERS)
def test_batches_same_as_each_block(
    raws: list[bytes], keep: frozenset[str] | None, skip: frozenset[str]
) -> None:
    """Generated batches of queue-file blocks (and garbage) parse as one by one, never raise."""
    expected = [parse_header_block(raw, skip=skip, keep=keep) for raw in raws]
    _same(parse_queue_header_blocks(raws, skip=skip, keep=keep), expected)


def test_a_regular_batch_is_decoded_as_one_text() -> None:
    """Blocks of the usual shape take the batch path: one search for them all."""
    raws = [b"Received: from x\n\tby y\nSubject: Case %d\nTo: a@b.example" % i for i in range(5)]
    with (
        patch.object(headers_module, "parse_header_block", wraps=parse_header_block) as inner,
        patch.object(queue_headers, "parse_header_block", wraps=parse_header_block) as outer,
    ):
        got = parse_queue_header_blocks(raws, TRACE_HEADERS, ESSENTIAL_HEADERS)
    assert inner.call_count == outer.call_count == 0
    assert [h.get("Subject") for h in got] == [f"Case {i}" for i in range(5)]
    assert got[0].items == (("Subject", "Case 0"), ("To", "a@b.example"))
