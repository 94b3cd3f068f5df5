"""The C header-block scanner (``mailwatch/parsing/_plain_headers.c``) on its own.

It may refuse a batch the ``str`` path takes (the caller then takes that path), never answer
differently: ``test_imap_headers.py`` compares both paths with the general parser on generated
batches; here each rule of the scanner is pinned (what it refuses, what it writes), and bytes of
any kind neither crash it nor make it disagree.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.parsing import imap_headers
from mailwatch.parsing.imap_headers import packed_blocks

pytestmark = pytest.mark.skipif(
    imap_headers.c_scanner is None,
    reason="not built (test_imap_headers.py::test_the_c_scanner_is_built fails for this)",
)

KEEP = frozenset({"subject", "from", "to", "cc", "x-priority"})
NAMES = tuple(sorted(name.encode() for name in KEEP))


def scan(*raws: bytes) -> tuple[list[str], list[int]] | None:
    """The scanner's own answer for ``raws``."""
    scanner = imap_headers.c_scanner
    assert scanner is not None
    return scanner(list(raws), NAMES)


@pytest.mark.parametrize(
    ("raw", "packed"),
    [
        (b"Subject: a b\r\n\r\n", "Subject\0a b"),
        (b"SUBJECT:a\r\nfrom: x@y\r\n\r\n", "SUBJECT\0a\0from\0x@y"),  # names as sent
        (b"To: a,\r\n b\r\n\r\n", "To\0a, b"),  # a fold: one blank
        (b"To: a,\r\n\tb\r\n\r\n", "To\0a, b"),  # a tab folding a line is a blank
        (b"Subject:\r\n a\r\n\r\n", "Subject\0a"),  # a fold right after the colon
        (b"Cc:\r\nCc: \r\nCc:\r\n \r\n\r\n", "Cc\0\0Cc\0\0Cc\0"),  # empty values
        (b"X-Priority: 1 (Highest)\r\n\r\n", "X-Priority\x001 (Highest)"),
        (b"Subject: a=b ?c ~\r\n\r\n", "Subject\0a=b ?c ~"),  # "=" then "?" apart: no word
    ],
)
def test_plain_blocks_are_packed(raw: bytes, packed: str) -> None:
    """Unfolded, the one blank after each colon dropped, names and line ends made NULs."""
    assert scan(raw) == ([packed], [])
    assert packed_blocks([raw], KEEP, native=False) == [packed]  # what the str path says


def test_blocks_with_encoded_words_are_left_marked() -> None:
    r"""A block holding "=?" is answered in marked form (``\v``, ``\n``), its index named."""
    raws = (b"To: a\r\n\r\n", b"Subject: =?utf-8?q?x?=\r\nTo: b=?\r\n\r\n")
    assert scan(*raws) == (["To\0a", "Subject\v=?utf-8?q?x?=\nTo\vb=?"], [1])
    assert packed_blocks(list(raws), KEEP) == ["To\0a", "Subject\0x\0To\0b=?"]


@pytest.mark.parametrize(
    "raws",
    [
        [b"Subject: a\rb\r\n\r\n"],  # a CR alone
        [b"Subject: a\nb\r\n\r\n"],  # a LF alone
        [b"Subject: a\tb\r\n\r\n"],  # a tab not folding a line
        [b"Subject: a\x00b\r\n\r\n"],  # NUL
        [b"Subject: a\x7fb\r\n\r\n"],  # DEL
        [b"Subject: caf\xc3\xa9\r\n\r\n"],  # 8-bit text: the str path reads it
        [b"Subject: a  b\r\n\r\n"],  # two blanks
        [b"Subject:  a\r\n\r\n"],  # the blank after the colon counts
        [b"Subject: \r\n a\r\n\r\n"],  # ... also when a fold makes the second
        [b"Subject: a \r\n\r\n"],  # a blank at a value's end
        [b"Subject: a\r\n \r\n\r\n"],  # ... made by a fold
        [b"Subject: a\r\n  b\r\n\r\n"],  # a fold with two blanks
        [b"Subject : a\r\n\r\n"],  # a blank before the colon
        [b"Date: a\r\n\r\n"],  # a field not asked for
        [b"Subjects: a\r\n\r\n"],  # names that are not the name
        [b"Subjec: a\r\n\r\n"],
        [b"X_Priority: 1\r\n\r\n"],
        [b"Subject a\r\n\r\n"],  # no colon
        [b": a\r\n\r\n"],  # no name
        [b" Subject: a\r\n\r\n"],  # a block that starts with a fold
        [b"Subject: a\r\n\r\n", b"\tTo: b\r\n\r\n"],
        [b"\r\n\r\n"],  # no field at all
        [b"\r\n"],
        [b"Subject: a\r\n\r\nTo: b\r\n\r\n"],  # an empty line inside the block
        [b"Subject: a\r\n\r\n\r\n"],
        [b"Subject: a\r\n"],  # no empty line at the end
        [b"Subject: a"],
        [b""],
    ],
)
def test_not_plain_is_refused(raws: list[bytes]) -> None:
    """Each shape outside the plain one is refused; a refused batch is refused whole."""
    assert scan(*raws) is None
    assert scan(b"To: fine\r\n\r\n", *raws) is None


def test_long_blocks_and_many() -> None:
    """Blocks far longer than the previous one (the scanner's buffer grows), many of them."""
    raws = [b"To: a\r\n\r\n", b"Subject: " + b"x" * 100_000 + b"\r\n\r\n"] * 300
    answer = scan(*raws)
    assert answer is not None
    assert answer[0] == ["To\0a", "Subject\0" + "x" * 100_000] * 300


def test_wrong_types_are_type_errors() -> None:
    """Not bytes, or names not a tuple of bytes: TypeError, nothing crashes."""
    scanner = imap_headers.c_scanner
    assert scanner is not None
    with pytest.raises(TypeError):
        scanner(["Subject: a\r\n\r\n"], NAMES)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        scanner([b"Subject: a\r\n\r\n"], ["subject"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        scanner([b"Subject: a\r\n\r\n"], (b"subject", "to"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        scanner(5, NAMES)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        scanner([b"Subject: a\r\n\r\n"])  # type: ignore[call-arg]


BYTES = st.lists(
    st.sampled_from([b"Subject", b"To", b"cc", b"Date", b":", b": ", b" ", b"\t", b"\r\n",
                     b"\r", b"\n", b"=?", b"?=", b"=?utf-8?q?a=0Ab?=", b"a", b"\xc3\xa9",
                     b"\x00", b"\x0b"]),
    max_size=12,
).map(b"".join)  # fmt: skip


@settings(max_examples=1500, deadline=None, database=None)
@given(st.lists(st.one_of(BYTES, BYTES.map(lambda b: b + b"\r\n\r\n"), st.binary()), max_size=4))
def test_any_bytes_no_crash_no_disagreement(raws: list[bytes]) -> None:
    """Whatever the bytes: an answer the str path agrees with, or a refusal."""
    assert packed_blocks(raws, KEEP, native=True) == packed_blocks(raws, KEEP, native=False)
