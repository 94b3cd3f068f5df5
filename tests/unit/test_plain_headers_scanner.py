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
    r"""A block with a word decoded only in Python is answered marked (``\v``, ``\n``), named."""
    raws = (b"To: a\r\n\r\n", b"Subject: =?iso-8859-1?q?x?=\r\nTo: b=?\r\n\r\n")
    assert scan(*raws) == (["To\0a", "Subject\v=?iso-8859-1?q?x?=\nTo\vb=?"], [1])
    assert packed_blocks(list(raws), KEEP) == ["To\0a", "Subject\0x\0To\0b=?"]


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        (b"=?utf-8?q?caf=C3=A9_au_lait?=", "caf\u00e9 au lait"),
        (b"=?UTF-8?Q?caf=c3=a9?=", "caf\u00e9"),  # any case, lower-case hex
        (b"=?utf8?b?Wm/DqyBPJ0JyaWVu?=", "Zo\u00eb O'Brien"),
        (b"=?utf-8*en?B?QQ?= =?utf-8?B?QUI=?=", "AAB"),  # padding made whole; blank dropped
        (b"=?utf-8?q?a?= b =?utf-8?q?c?=", "a b c"),  # not between two words: kept
        (b"=?utf-8?q?a?==?utf-8?q?b?=", "ab"),
        (b"=?utf-8?q??= =?utf-8?b??=", ""),  # empty payloads
        (b"x=?utf-8?q?a?=y =?? =?utf-8?x?a?= ?= =?=?utf-8?q?b?=", "xay =?? =?utf-8?x?a?= ?==?b"),
        (b"=?utf-8?q?=F0=9F=93=A7_=E2=80=94?=", "\U0001f4e7 \u2014"),
    ],
)
def test_utf8_words_are_decoded_here(value: bytes, decoded: str) -> None:
    """UTF-8 words (Q with whole escapes, B with whole padding) are decoded by the scanner."""
    raw = b"Subject: " + value + b"\r\n\r\n"
    assert scan(raw) == ([f"Subject\0{decoded}"], [])
    assert packed_blocks([raw], KEEP, native=False) == [f"Subject\0{decoded}"]


@pytest.mark.parametrize(
    "value",
    [
        b"=?iso-8859-1?q?r=E9sum=E9?=",  # another charset
        b"=?iso-8859-1?q?=C3=A9?=",  # ... even when its bytes would be UTF-8
        b"=?ascii?q?=C3=A9?=",  # (five letters, as "utf-8")
        b"=?utf-16?b?AGE=?=",
        b"=?utf-8?q?a=?=",  # "=" without two hex digits
        b"=?utf-8?q?a=4?=",
        b"=?utf-8?q?a=G1?=",
        b"=?utf-8?q?a==41?=",
        b"=?utf-8?q?=G0=9F=93=A7?=",  # (a2b_qp keeps "=G0": then not UTF-8)
        b"=?utf-8?b?Q?=",  # one character over a whole quantum
        b"=?utf-8?b?QQ===?=",  # padding past a whole quantum
        b"=?utf-8?b?QUJD=?=",
        b"=?utf-8?b?Q!Q=?=",  # a character a2b_base64 skips
        b"=?utf-8?q?=FF?=",  # not UTF-8
        b"=?utf-8?q?=C3?= =?utf-8?q?=A9?=",  # one character split over two words
        b"=?utf-8?q?=ED=A0=80?=",  # a surrogate
        b"=?utf-8?q?=C0=80?=",  # overlong forms
        b"=?utf-8?q?=E0=80=80?=",
        b"=?utf-8?q?=F0=80=80=80?=",
        b"=?utf-8?q?=F4=90=80=80?=",  # past U+10FFFF
        b"=?utf-8?q?=E2=82?=",  # cut short
        b"=?utf-8?q?a=0Ab?=",  # decodes to a line break, a vertical tab, a NUL
        b"=?utf-8?q?a=0Bb?=",
        b"=?utf-8?q?=00?=",
    ],
)
def test_other_words_are_left_to_python(value: bytes) -> None:
    """Anything else leaves the block marked for Python, whose answer is kept (or None)."""
    raw = b"Subject: " + value + b"\r\n\r\n"
    answer = scan(raw)
    assert answer is not None
    assert answer[1] == [0]
    assert answer[0][0].startswith("Subject\v")
    assert packed_blocks([raw], KEEP) == packed_blocks([raw], KEEP, native=False)


CHARSETS = st.sampled_from(["utf-8", "UTF-8", "utf8", "Utf8", "utf-8*en", "utf-88", "utf", "*",
                            "iso-8859-1", "utf-8?", "=?utf-8"])  # fmt: skip
PAYLOAD = st.lists(
    st.sampled_from(["=C3=A9", "=c3", "=A9", "=3D", "=5F", "_", "=", "==", "A", "QQ", "Zm9v",
                     "+/", "=0A", "=00", "=0B", "=F0=9F=93=A7", "=E2=80", "=ED=A0=80", "x", "?"]),
    max_size=5,
).map("".join)  # fmt: skip
WORD = st.builds(lambda c, e, p: f"=?{c}?{e}?{p}?=", CHARSETS, st.sampled_from("bBqQx"), PAYLOAD)
WORDS_VALUE = st.lists(st.one_of(WORD, st.sampled_from(["a", "b c", "=?", "?="])), max_size=5).map(
    lambda parts: " ".join(parts) if parts else "x"
)


@settings(max_examples=1500, deadline=None, database=None)
@given(st.lists(WORDS_VALUE, min_size=1, max_size=3))
def test_decoded_words_are_what_python_decodes(values: list[str]) -> None:
    """Generated words (charsets, escapes, padding, bytes not UTF-8): the same answer."""
    raws = [f"Subject: {value}\r\nTo: {value}\r\n\r\n".encode() for value in values]
    assert packed_blocks(raws, KEEP, native=True) == packed_blocks(raws, KEEP, native=False)


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


def test_bytearrays_are_left_to_python() -> None:
    """Bytes-like blocks that are not ``bytes`` are refused: the str path reads them."""
    raws = [b"To: a\r\n\r\n", bytearray(b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n")]
    assert scan(*raws) is None  # type: ignore[arg-type]
    assert packed_blocks(raws, KEEP) == ["To\0a", "Subject\0caf\u00e9"]  # type: ignore[arg-type]


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
