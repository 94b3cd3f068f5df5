"""The IMAP batch header path (``parsing/imap_headers.packed_blocks``) equals the general parser.

``packed_blocks`` turns a whole FETCH batch of header blocks into each block's packed
``Headers`` text with a few whole-text operations, or answers ``None`` (not the plain common
shape). Whenever it answers, its answer must be exactly what
``core.headers.parse_header_blocks`` gives (values and packed form), and what the source
describes from it (sender, recipients, subject) must be what ``describe`` gives.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailwatch.core.headers import ESSENTIAL_HEADERS, TRACE_HEADERS, keep_set, parse_header_blocks
from mailwatch.core.model import Headers
from mailwatch.parsing.imap_headers import NATIVE, packed_blocks
from mailwatch.sources.imap import DEFAULT_HEADER_FIELDS
from mailwatch.sources.imap_addresses import clear_caches, describe, describe_packed, describe_parts

NAMES = ["Subject", "SUBJECT", "subject", "From", "To", "Cc", "Date", "Message-ID", "Received",
         "X-Case", "Importance", "X-Priority", "X-Mailwatch-Canary", "Fromage",
         "X-Priorit"]  # fmt: skip
WORDS = [
    "=?utf-8?q?caf=C3=A9?=", "=?UTF-8?B?Wm/DqyBPJ0JyaWVu?=", "=?iso-8859-1?q?r=E9sum=E9?=",
    "=?x-unknown?q?a_b?=", "=?utf-8?b?!!!?=", "=?utf-8?q?=0B?=", "=?utf-8?q?=00?=",
    "=?utf-8?q?a=0Ab?=", "=?utf-8?q?=0A=0A?=", "=?utf-8?q?=01?=", "=?utf-8?q?a=0Bb?=",
    "=?base64?q?x?=", "=?utf-8*en?q?x?=", "=?utf-8?q?", "?=", "=?", "=?utf-8?q?=E2=80?=",
    "=?shift_jis?b?gqA=?=", "=?utf-8?q?_To:_x?=",
]  # fmt: skip
PLAIN = [*"aZ09:;-_<>@,.", "Re:", "\u00e9", "\ufffd", "[x]", "To:", "From:", "a@b.example"]
ODD = ["  ", "\t", "\x00", "\x0b", "\x01", "\r", "\x85", "\u2028", "\u00a0"]
VALUE = st.lists(  # words of single-spaced text, encoded words among them
    st.lists(st.sampled_from([*PLAIN, *WORDS]), min_size=1, max_size=3).map("".join), max_size=5
).map(" ".join)
ODD_VALUE = st.lists(st.sampled_from([*PLAIN, *WORDS, *ODD, " "]), max_size=8).map("".join)
KEPT_NAMES = ["Subject", "SUBJECT", "subject", "From", "To", "Cc", "Date", "X-Priority", "X-Case"]
HEADER = st.builds(lambda n, sep, v: f"{n}{sep}{v}",
                   st.one_of(*[st.sampled_from(KEPT_NAMES)] * 12, st.sampled_from(NAMES)),
                   st.one_of(*[st.sampled_from([": ", ":"])] * 12,
                             st.sampled_from([" :", " : ", ":\t", ":  "])),
                   st.one_of(*[VALUE] * 12, ODD_VALUE))  # fmt: skip
FOLDED = st.builds(lambda lead, v: lead + v,
                   st.one_of(*[st.sampled_from([" ", "\t"])] * 12, st.sampled_from(["  ", " \t"])),
                   VALUE)  # fmt: skip
LINES = st.builds(lambda first, rest: [first, *rest], HEADER,
                  st.lists(st.one_of(HEADER, HEADER, FOLDED), max_size=6))  # fmt: skip
BLOCK = LINES.map(lambda lines: ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
RAW_BLOCK = st.one_of(
    *[BLOCK] * 12,
    st.sampled_from([b"Subject: caf\xc3\r\n\r\n", b"To: \xff\xfe\r\n\r\n", b"\r\n",
                     b"Subject: a\nb\r\n\r\n", b"Subject: a\r\n\r\nTo: b\r\n\r\n",
                     b" Subject: a\r\n\r\n", b"Subject: a\r\n \r\n\r\n"]),
)  # fmt: skip
SOURCE_KEEP = keep_set([*DEFAULT_HEADER_FIELDS, "X-Case", "X-Mailwatch-Canary"])  # + rule headers
KEEPS = st.sampled_from([SOURCE_KEEP, SOURCE_KEEP, SOURCE_KEEP, ESSENTIAL_HEADERS,
                         keep_set(["X-Case"]), frozenset({"received", "subject"}),
                         frozenset()])  # fmt: skip


def _expected(raws: list[bytes], keep: frozenset[str]) -> list[Headers]:
    return parse_header_blocks(raws, TRACE_HEADERS, keep)


PATHS = pytest.mark.parametrize("native", [True, False], ids=["c-scanner", "str-operations"])
"""Each test runs on both paths: the C scanner first (then the ``str`` operations if it refuses
the batch), and the ``str`` operations alone."""


def test_the_c_scanner_is_built() -> None:
    """The test environment has the C scanner (scripts/bootstrap installs a compiler)."""
    assert NATIVE, "mailwatch.parsing._plain_headers is not built: pip install -e . with gcc"


def _check(raws: list[bytes], keep: frozenset[str], native: bool) -> list[str] | None:
    packed = packed_blocks(raws, keep - TRACE_HEADERS, native=native)  # as the source calls it
    if packed is not None:
        expected = _expected(raws, keep)
        got = [Headers.from_packed(text) for text in packed]
        assert got == expected
        assert [h._packed for h in got] == [Headers(h.items)._packed for h in expected]
        for text, headers in zip(packed, expected, strict=True):
            assert describe_parts(text.split("\0")) == describe(headers)
        described = [describe(headers) for headers in expected]
        assert describe_packed(packed) == described  # names not yet learnt, then learnt
        assert describe_packed(packed) == described
    return packed


@settings(max_examples=600, deadline=None, database=None)
@given(raws=st.lists(RAW_BLOCK, min_size=1, max_size=3), keep=KEEPS)
@example(raws=[b"Subject: =?utf-8?q?a=0Ab?=\r\n\r\n"], keep=SOURCE_KEEP)
@example(raws=[b"Subject: =?utf-8?q?=0A=0A?=\r\nTo: x\r\n\r\n"], keep=SOURCE_KEEP)
@example(raws=[b"Subject: =?utf-8?q?=00?=\r\n\r\n"], keep=SOURCE_KEEP)
@example(raws=[b"Subject: =?utf-8?q?=01?=\r\n\r\n", b"To: x\r\n\r\n"], keep=SOURCE_KEEP)
@example(raws=[b"Subject: =?utf-8?q?=0B?=\r\n\r\n"], keep=SOURCE_KEEP)
@example(
    raws=[b"Subject: =?utf-8?q?a?=\r\n =?utf-8?q?b?=\r\nTo: =?utf-8?q?c?=\r\n\r\n"],
    keep=SOURCE_KEEP,
)
@example(raws=[b"Subject: x =?utf-8?q?a?=\r\nTo: =?utf-8?q?c?= y\r\n\r\n"], keep=SOURCE_KEEP)
@example(raws=[b"Received: x\r\nSubject: y\r\n\r\n"], keep=keep_set(["Received"]))
@example(raws=[b"Subject: a\r\n\tb\r\n\r\n"], keep=SOURCE_KEEP)
@PATHS
def test_packed_batches_are_what_the_general_parser_gives(
    raws: list[bytes], keep: frozenset[str], native: bool
) -> None:
    """Generated batches (encoded words, folds, odd blanks, controls): equal, or not taken."""
    _check(raws, keep, native)


SAFE_WORDS = [w for w in WORDS if not any(c in w for c in ("=0A", "=00", "=01", "=0B"))]
SAFE_VALUE = st.lists(
    st.lists(st.sampled_from([*PLAIN, *SAFE_WORDS]), min_size=1, max_size=3).map("".join),
    max_size=5,
).map(" ".join)
FOLD = st.sampled_from([" ", " ", "\r\n ", "\r\n\t"])  # a line folded where a space was
SAFE_LINE = st.builds(
    lambda name, sep, value, folds: f"{name}{sep}" + "".join(
        f"{fold}{word}" if i else word for i, (word, fold) in
        enumerate(zip(value.split(" "), [" ", *folds], strict=False))
    ),
    st.sampled_from(KEPT_NAMES), st.sampled_from([": ", ":", ":\r\n "]), SAFE_VALUE,
    st.lists(FOLD, min_size=5, max_size=5),
)  # fmt: skip


@PATHS
@settings(max_examples=300, deadline=None, database=None)
@given(blocks=st.lists(st.lists(SAFE_LINE, min_size=1, max_size=6), min_size=1, max_size=4))
def test_plain_batches_take_the_batch_path(blocks: list[list[str]], native: bool) -> None:
    """The common shape (encoded words, folds, 8-bit text, empty values) takes the batch path."""
    raws = [("\r\n".join(lines) + "\r\n\r\n").encode() for lines in blocks]
    assert _check(raws, SOURCE_KEEP, native) is not None


@PATHS
def test_a_server_batch_of_the_common_shape(native: bool) -> None:
    """What Dovecot sends (folded recipients, encoded words) is packed, the names as sent."""
    raws = [
        b"From: Offender Manager <om295@nps.example>\r\nTo: a@x.example,\r\n b@x.example\r\n"
        b"Subject: =?utf-8?q?Caf=C3=A9?= =?utf-8?q?_list?=\r\nDate: Mon, 07 Dec 2026 01:53:57"
        b" +0000\r\n\r\n",
        b"FROM: b@y.example\r\nSubject: [CJSM] Re: x\r\n\r\n",
    ]
    assert _check(raws, SOURCE_KEEP, native) == [
        "From\0Offender Manager <om295@nps.example>\0To\0a@x.example, b@x.example\0"
        "Subject\0Caf\u00e9 list\0Date\0Mon, 07 Dec 2026 01:53:57 +0000",
        "FROM\0b@y.example\0Subject\0[CJSM] Re: x",
    ]


@PATHS
def test_not_the_common_shape_is_left_to_the_general_parser(native: bool) -> None:
    """Fields not asked for, empty blocks, bare CR or LF, odd blanks: ``None``."""
    keep = SOURCE_KEEP
    for raws in (
        [b"X-Other: a\r\n\r\n"],  # a field not asked for
        [b"\r\n"],  # no field at all
        [b"Subject: a\rb\r\n\r\n"],
        [b"Subject: a\nb\r\n\r\n"],
        [b"Subject: a  b\r\n\r\n"],
        [b"Subject: a \r\n\r\n"],
        [b"Subject: a\x00b\r\n\r\n"],
        [b"Subject: =?utf-8?q?a=0Ab?=\r\n\r\n"],  # a word decoding to a line break
        [b"Subject: a\r\n\r\nTo: b\r\n\r\n"],  # two blocks in one literal
        [b"Subject: a\r\n\r\n", b" To: b\r\n\r\n"],  # a block starting with a fold
        [b" Subject: a\r\n\r\n"],
        [b"Subject: a\r\n\r\n", b"\r\n\r\n"],
        [b"Subject: a\r\n\r\n\r\n"],
        [],
    ):
        assert packed_blocks(raws, keep, native=native) is None, raws
    assert packed_blocks([b"Subject: a\r\n\r\n"], frozenset({"bad name"}), native=native) is None


ADDRESS_VALUES = ["a@b.example", "A <a@b.example>", "a@b.example, c@d.example", "", "x",
                  '"Q, R" <q@r.example>', "<c@d.example>", "Group: a@b.example;"]  # fmt: skip
PACKED_FIELD = st.tuples(
    st.sampled_from(["From", "FROM", "from", "To", "TO", "Cc", "CC", "cc", "Subject",
                     "subject", "Date", "Message-ID", "X-Case", "Fromage"]),
    st.one_of(st.sampled_from(ADDRESS_VALUES), VALUE.filter(lambda v: "\0" not in v)),
)  # fmt: skip


@settings(max_examples=400, deadline=None, database=None)
@given(blocks=st.lists(st.lists(PACKED_FIELD, max_size=7), max_size=6), cold=st.booleans())
def test_describe_packed_is_describe_of_each_block(
    blocks: list[list[tuple[str, str]]], cold: bool
) -> None:
    """Any names (repeated, in any case, of no role) and values: what ``describe`` gives.

    Twice over, so a block is read once before and once after its names were learnt.
    """
    if cold:
        clear_caches()
    packed = ["\0".join(part for field in fields for part in field) for fields in blocks]
    expected = [describe(Headers.from_packed(text)) for text in packed]
    assert describe_packed(packed) == expected
    assert describe_packed(packed) == expected
