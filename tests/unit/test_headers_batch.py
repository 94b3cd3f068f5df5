"""The batch path of ``parse_header_blocks`` gives exactly what the block-by-block path gives.

A batch of fetched header blocks (as IMAP servers send them) is unfolded, decoded and packed
per batch (``core/headers._packed_blocks``): every value split and joined at once, every
encoded word of the batch decoded in one substitution, each block's headers packed straight
from the flat list (``Headers.from_packed_parts``). These tests generate blocks with encoded
words (valid, broken charsets, bad base64, words decoding to NUL or a vertical tab), raw NULs,
8-bit bytes and folded lines, and compare with ``parse_header_block`` of each block, values
and packed representation alike.
"""

from __future__ import annotations

from unittest.mock import patch

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailwatch.core import headers as headers_module
from mailwatch.core.headers import (
    ESSENTIAL_HEADERS,
    TRACE_HEADERS,
    keep_set,
    parse_header_block,
    parse_header_blocks,
)
from mailwatch.core.model import Headers

NAMES = ["Subject", "SUBJECT", "From", "To", "Cc", "Date", "Message-ID", "Received",
         "X-Case", "Importance", "X-Priority", "X-Mailwatch-Canary"]  # fmt: skip
WORDS = [
    "=?utf-8?q?caf=C3=A9?=", "=?UTF-8?B?Wm/DqyBPJ0JyaWVu?=", "=?iso-8859-1?q?r=E9sum=E9?=",
    "=?x-unknown?q?a_b?=", "=?utf-8?b?!!!?=", "=?utf-8?q?=0B?=", "=?utf-8?q?=00?=",
    "=?utf-8?q?a=0Bb?=", "=?base64?q?x?=", "=?utf-8*en?q?x?=", "=?utf-8?q?", "?=", "=?",
    "=?utf-8?q?=E2=80?=", "=?shift_jis?b?gqA=?=",
]  # fmt: skip
PIECES = [*"aZ09:;-_ ", "  ", "\t", "\x00", "\x0b", "\u00e9", "\ufffd", "[x]", *WORDS]
VALUE = st.lists(st.sampled_from(PIECES), max_size=10).map("".join)
HEADER = st.builds(lambda n, sep, v: f"{n}{sep}{v}", st.sampled_from(NAMES),
                   st.sampled_from([":", " :", ": ", ":\t"]), VALUE)  # fmt: skip
FOLDED = st.builds(lambda lead, v: lead + v, st.sampled_from([" ", "\t", "  "]), VALUE)
LINES = st.builds(lambda first, rest: [first, *rest], HEADER,
                  st.lists(st.one_of(HEADER, FOLDED), max_size=8))  # fmt: skip
BLOCK = LINES.map(lambda lines: ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
RAW_BLOCK = st.one_of(
    BLOCK,
    BLOCK,
    st.sampled_from([b"Subject: caf\xc3\r\n\r\n", b"To: \xff\xfe\r\n\r\n", b"\r\n"]),
)
KEEPS = st.sampled_from([ESSENTIAL_HEADERS, keep_set(["X-Case", "X-Mailwatch-Canary"]),
                         frozenset(), frozenset({"received", "subject"})])  # fmt: skip
SKIPS = st.sampled_from([frozenset(), TRACE_HEADERS, frozenset({"subject"})])


def _same(got: list[Headers], expected: list[Headers]) -> None:
    assert got == expected
    for headers in got:  # and packed as Headers(items) packs them
        assert headers._packed == Headers(headers.items)._packed


@settings(max_examples=500, deadline=None, database=None)
@given(raws=st.lists(RAW_BLOCK, min_size=1, max_size=6), keep=KEEPS, skip=SKIPS)
@example([b"Subject: =?utf-8?q?a=0Bb?= =?utf-8?q?c?=\r\n\r\n", b"To: =?utf-8?q?x?=\r\n\r\n"],
         ESSENTIAL_HEADERS, frozenset())  # fmt: skip
@example([b"Subject: =?utf-8?q?=00?=\r\nTo: a\x00b\r\n\r\n"], ESSENTIAL_HEADERS, frozenset())
@example([b"Subject: =?utf-8?q?caf=C3=A9?=\r\n =?utf-8?q?_x?=\r\n\r\n"], ESSENTIAL_HEADERS,
         frozenset())  # fmt: skip
def test_batches_same_as_each_block(
    raws: list[bytes], keep: frozenset[str], skip: frozenset[str]
) -> None:
    """Generated batches (encoded words, broken charsets, NULs, folding) parse as one by one."""
    expected = [parse_header_block(raw, skip=skip, keep=keep) for raw in raws]
    _same(parse_header_blocks(raws, skip=skip, keep=keep), expected)


def test_a_batch_decodes_its_encoded_words_in_one_substitution() -> None:
    """Three blocks with encoded words: one call of the decoder for the batch, same values."""
    raws = [
        b"Subject: =?utf-8?q?caf=C3=A9?= one\r\nFrom: a@b.example\r\n\r\n",
        b"From: =?utf-8?b?Wm/Dqw==?= <z@b.example>\r\nSubject: plain\r\n\r\n",
        b"Subject: =?iso-8859-1?q?r=E9sum=E9?=\r\n =?utf-8?q?_two?=\r\n\r\n",
    ]
    decode = headers_module.decode_header_value
    with patch.object(headers_module, "decode_header_value", side_effect=decode) as spy:
        parsed = parse_header_blocks(raws, skip=TRACE_HEADERS, keep=ESSENTIAL_HEADERS)
    assert spy.call_count == 1
    assert [h.items for h in parsed] == [
        (("Subject", "caf\u00e9 one"), ("From", "a@b.example")),
        (("From", "Zo\u00eb <z@b.example>"), ("Subject", "plain")),
        (("Subject", "r\u00e9sum\u00e9 two"),),
    ]


def test_a_word_decoding_to_the_joiner_is_decoded_alone() -> None:
    """A decoded vertical tab (the batch's joiner) makes the values decode one by one."""
    raws = [b"Subject: =?utf-8?q?a=0Bb?=\r\n\r\n", b"Subject: =?utf-8?q?c?=\r\n\r\n"]
    parsed = parse_header_blocks(raws, keep=ESSENTIAL_HEADERS)
    assert [h.get("subject") for h in parsed] == ["a\x0bb", "c"]


PARTS = st.lists(st.text(alphabet=st.sampled_from([*"aK-\x00 ", "\u212a", "\u00df"]), max_size=5),
                 max_size=8).map(lambda p: p[: len(p) - len(p) % 2])  # fmt: skip


@given(PARTS)
def test_from_packed_parts_is_headers_of_the_pairs(parts: list[str]) -> None:
    """The flat list packs as the pairs do (NULs in a value: kept as pairs, as there)."""
    made = Headers.from_packed_parts(list(parts))
    pairs = Headers(tuple(zip(parts[0::2], parts[1::2], strict=True)))
    assert made == pairs
    assert made._packed == pairs._packed


NAME = st.text(alphabet=st.sampled_from([*"aAkKsS-", "\u212a", "\u017f", "\u00df", "\u03a3"]),
               min_size=1, max_size=4)  # fmt: skip


@given(st.lists(st.tuples(NAME, st.text(max_size=6)), max_size=6), NAME)
def test_get_absent_or_present_as_name_by_name(pairs: list[tuple[str, str]], wanted: str) -> None:
    """``get`` answers as comparing each name lower-cased (Kelvin sign, long s, sigma too)."""
    expected = next((v for n, v in pairs if n.lower() == wanted.lower()), None)
    assert Headers(tuple(pairs)).get(wanted) == expected
