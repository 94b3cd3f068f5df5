"""The fast paths of mailwatch.core.headers give what the original line-by-line code gave.

``parse_header_block`` takes a regex fast path for "plain" blocks and can keep only named
headers; ``unfold`` and ``normalise_subject`` were rewritten for speed. Each is checked here
against a copy of the implementation it replaced (``_reference_*``), on the unit corpus and on
generated input built to hit the corner cases (odd whitespace, stray lines, CR, 8-bit bytes).
"""

from __future__ import annotations

import binascii
import codecs
import re
import sys
from unittest.mock import patch

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailwatch.core import headers as headers_module
from mailwatch.core.headers import (
    _BETWEEN_WORDS,
    _MARKING,
    _REPLY_PREFIX,
    ESSENTIAL_HEADERS,
    TRACE_HEADERS,
    NormalisedSubject,
    _canonical_marking,
    decode_header_value,
    keep_set,
    normalise_subject,
    parse_header_block,
    parse_header_blocks,
    parse_queue_header_blocks,
    unfold,
)
from mailwatch.core.model import Headers

_SPACES = re.compile(r"\s+")
_LIST_TAG = re.compile(r"^\[[^\]\[]{1,40}\]\s*")


def _reference_unfold(value: str) -> str:
    return _SPACES.sub(" ", value.replace("\r", "").replace("\n", " ")).strip()


def _reference_parse(raw: bytes | str, skip: frozenset[str] = frozenset()) -> Headers:
    """parse_header_block as it was: line by line, every header decoded."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    items: list[tuple[str, str]] = []
    name: str | None = None
    parts: list[str] = []

    def flush() -> None:
        if name is not None and name.lower() not in skip:
            items.append((name, decode_header_value(_reference_unfold(" ".join(parts)))))

    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if line == "" or name is None:
                break
            continue
        if line[0] in " \t":
            if name is not None:
                parts.append(line.strip())
            continue
        head, colon, rest = line.partition(":")
        if not colon or not head.strip() or " " in head.strip():
            continue
        flush()
        name, parts = head.strip(), [rest.strip()]
    flush()
    return Headers(tuple(items))


def _reference_normalise(subject: str) -> NormalisedSubject:
    """normalise_subject as it was (substitutions, compared until nothing changes)."""
    text = _reference_unfold(decode_header_value(subject))
    marking: str | None = None
    while True:
        before = text
        found = _MARKING.match(text)
        if found:
            if marking is None:
                marking = _canonical_marking(
                    found.group("b")
                    or found.group("p")
                    or found.group("upper")
                    or found.group("sep")
                    or found.group("bare")
                )
            text = text[found.end() :]
        else:
            text = _REPLY_PREFIX.sub("", text, count=1)
            if text == before:
                text = _LIST_TAG.sub("", text, count=1)
        if text == before:
            break
    return NormalisedSubject(text=text.strip(), marking=marking)


WHITESPACE = " \t\r\n\x0b\x0c\x1c\x1f\x85\xa0\u2003\u2028\u3000"
NAMES = ["Subject", "SUBJECT", "subject", "From", "To", "Cc", "Date", "Message-ID", "Received",
         "X-Case", "X-Mailwatch-Canary", "Importance", "X-Priority", "K\u212aey", "S\u00fcbject",
         "Bad Name", "To-Do", "X\tTab", ""]  # fmt: skip
VALUE_PIECES = [*"aZ09:;-=?_ ", *WHITESPACE, "=?utf-8?q?caf=C3=A9?=", "\u00e9", "\ufffd", "[x]"]
VALUE = st.lists(st.sampled_from(VALUE_PIECES), max_size=12).map("".join)
HEADER_LINE = st.builds(lambda n, sep, v: f"{n}{sep}{v}", st.sampled_from(NAMES),
                        st.sampled_from([":", " :", "\t:", ": ", ""]), VALUE)  # fmt: skip
CONTINUATION = st.builds(lambda lead, v: lead + v, st.sampled_from([" ", "\t", "  "]), VALUE)
ODD_LINE = st.sampled_from(["", " ", "\t", "\x0b", "\x0bSubject: v", "no colon", "\r", ":x"])
LINES = st.lists(st.one_of(HEADER_LINE, HEADER_LINE, CONTINUATION, ODD_LINE), max_size=12)
PLAIN_HEADER = st.builds(lambda n, sep, v: f"{n}{sep}{v}", st.sampled_from(NAMES[:14]),
                         st.sampled_from([":", " :", ": "]), VALUE)  # fmt: skip
PLAIN_LINES = st.builds(lambda first, rest: [first, *rest], PLAIN_HEADER,
                        st.lists(st.one_of(PLAIN_HEADER, CONTINUATION), max_size=10))  # fmt: skip
KEEPS = st.sampled_from([None, frozenset(), ESSENTIAL_HEADERS, keep_set(["X-Case", "kkey"]),
                         frozenset({"received", "x-mailwatch-canary"})])  # fmt: skip
SKIPS = st.sampled_from([frozenset(), TRACE_HEADERS, frozenset({"subject"})])


def _kept(headers: Headers, keep: frozenset[str] | None) -> Headers:
    if keep is None:
        return headers
    return Headers(tuple((n, v) for n, v in headers.items if n.lower() in keep))


class TestUnfoldIsUnchanged:
    """``unfold`` (split/join) equals the regex it replaced."""

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.text(alphabet=st.sampled_from([*"ab", *WHITESPACE]), max_size=40))
    def test_same_as_regex(self, value: str) -> None:
        """Every whitespace character a regex matches collapses the same way; CR is dropped."""
        assert unfold(value) == _reference_unfold(value)


class TestParseHeaderBlockIsUnchanged:
    """Fast path or not, with ``keep`` or not: what the line-by-line parse gave."""

    @settings(max_examples=600, deadline=None, database=None)
    @given(
        lines=LINES,
        newline=st.sampled_from(["\n", "\r\n"]),
        tail=st.sampled_from(["", "\n", "\n\nBody: x"]),
        keep=KEEPS,
        skip=SKIPS,
        as_bytes=st.booleans(),
    )
    @example(["Subject: a", "stray", " b"], "\n", "", None, frozenset(), True)
    @example(["Subject: a", " \t", "To: b"], "\r\n", "\n", ESSENTIAL_HEADERS, frozenset(), False)
    @example([" x", "Subject: a"], "\n", "", None, frozenset(), False)
    def test_same_as_reference(
        self,
        lines: list[str],
        newline: str,
        tail: str,
        keep: frozenset[str] | None,
        skip: frozenset[str],
        as_bytes: bool,
    ) -> None:
        """Generated blocks (stray lines, odd whitespace, CR) parse as before."""
        text = newline.join(lines) + tail
        raw: bytes | str = text.encode("utf-8", "surrogatepass") if as_bytes else text
        expected = _kept(_reference_parse(raw, skip), keep)
        assert parse_header_block(raw, skip=skip, keep=keep) == expected

    @settings(max_examples=400, deadline=None, database=None)
    @given(lines=PLAIN_LINES, keep=KEEPS, skip=SKIPS)
    def test_plain_blocks_same_as_reference(
        self, lines: list[str], keep: frozenset[str] | None, skip: frozenset[str]
    ) -> None:
        """Blocks of header and continuation lines only (the fast path) parse as before."""
        raw = "\n".join(lines).encode()
        assert parse_header_block(raw, skip=skip, keep=keep) == _kept(
            _reference_parse(raw, skip), keep
        )

    def test_8bit_and_invalid_bytes(self) -> None:
        """Raw UTF-8 and invalid bytes decode as before, in the fast path and out of it."""
        for raw in (b"Subject: caf\xc3\xa9\nTo: \xff\n", b"S\xc3\xbcbject: x\nTo: y"):
            assert parse_header_block(raw) == _reference_parse(raw)
            assert parse_header_block(raw, keep=ESSENTIAL_HEADERS) == _kept(
                _reference_parse(raw), ESSENTIAL_HEADERS
            )


# Batches of fetched header blocks: mostly what IMAP servers send (plain, CRLF, blank-line
# ended), sometimes not (LF only, no blank line, text after it, stray lines, lone CR).
FETCHED_BLOCK = st.one_of(
    PLAIN_LINES.map(lambda lines: ("\r\n".join(lines) + "\r\n\r\n").encode()),
    PLAIN_LINES.map(lambda lines: ("\r\n".join(lines) + "\r\n\r\n").encode()),
    PLAIN_LINES.map(lambda lines: ("\n".join(lines) + "\n\n").encode()),
    PLAIN_LINES.map(lambda lines: "\r\n".join(lines).encode()),
    st.builds(lambda a, b: ("\r\n".join(a) + "\r\n\r\n" + "\r\n".join(b)).encode()
              + b"\r\n\r\n", PLAIN_LINES, PLAIN_LINES),
    LINES.map(lambda lines: ("\r\n".join(lines) + "\r\n\r\n").encode()),
    st.sampled_from([b"\r\n", b"\r\n\r\n", b"", b"Subject: caf\xc3\r\n\r\n", b"To: \xff\r\n\r\n",
                     b"Subject: a\rb\r\n\r\n", b"Subject: x\r\n\r\n\r\n"]),
)  # fmt: skip


class TestBatchesParseLikeBlocks:
    """``parse_header_blocks`` gives exactly ``parse_header_block`` of each block."""

    @settings(max_examples=400, deadline=None, database=None)
    @given(raws=st.lists(FETCHED_BLOCK, max_size=6), keep=KEEPS, skip=SKIPS)
    def test_same_as_one_by_one(
        self, raws: list[bytes], keep: frozenset[str] | None, skip: frozenset[str]
    ) -> None:
        """Any batch, whether it takes the joined path or the one-by-one path."""
        expected = [parse_header_block(raw, skip=skip, keep=keep) for raw in raws]
        assert parse_header_blocks(raws, skip=skip, keep=keep) == expected

    @settings(max_examples=300, deadline=None, database=None)
    @given(
        raws=st.lists(
            PLAIN_LINES.map(lambda lines: ("\r\n".join(lines) + "\r\n\r\n").encode()),
            min_size=1, max_size=8,
        ),
        keep=KEEPS, skip=SKIPS,
    )  # fmt: skip
    def test_fetched_batches_same_as_one_by_one(
        self, raws: list[bytes], keep: frozenset[str] | None, skip: frozenset[str]
    ) -> None:
        """Batches of server-shaped blocks only (the joined path, when ``keep`` is given)."""
        expected = [parse_header_block(raw, skip=skip, keep=keep) for raw in raws]
        assert parse_header_blocks(raws, skip=skip, keep=keep) == expected

    def test_fetched_blocks_take_the_joined_path(self) -> None:
        """Blocks as IMAP servers send them are parsed together (one search for the batch)."""
        raws = [
            b"From: a@b.example\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n folded\r\n\r\n",
            b"To: c@d.example\r\nX-Other: x\r\n\r\n",
        ]
        keep = keep_set()
        with patch.object(headers_module, "parse_header_block", side_effect=AssertionError):
            parsed = parse_header_blocks(raws, skip=TRACE_HEADERS, keep=keep)
        assert [h.items for h in parsed] == [
            (("From", "a@b.example"), ("Subject", "caf\u00e9 folded")),
            (("To", "c@d.example"),),
        ]


# Header blocks as Postfix queue files hold them (lines joined by LF, no blank line after),
# sometimes not plain (stray lines, a leading or trailing newline, an empty line, CR, 8-bit).
QUEUED_BLOCK = st.one_of(
    PLAIN_LINES.map(lambda lines: "\n".join(lines).encode()),
    PLAIN_LINES.map(lambda lines: "\n".join(lines).encode()),
    LINES.map(lambda lines: "\n".join(lines).encode()),
    PLAIN_LINES.map(lambda lines: ("\n" + "\n".join(lines)).encode()),
    PLAIN_LINES.map(lambda lines: ("\n".join(lines) + "\n").encode()),
    st.builds(lambda a, b: ("\n".join(a) + "\n\n" + "\n".join(b)).encode(),
              PLAIN_LINES, PLAIN_LINES),
    st.sampled_from([b"", b"\n", b"Subject: caf\xc3", b"To: \xff", b"Subject: a\rb",
                     b"Subject: =?utf-8?q?=00?=", b"Subject: x\x00y", b" Subject: x",
                     b"Subject: x\n\tfolded", b"From: a\nSubject:"]),
)  # fmt: skip


class TestQueuedBatchesParseLikeBlocks:
    """``parse_queue_header_blocks`` gives exactly ``parse_header_block`` of each block."""

    @settings(max_examples=500, deadline=None, database=None)
    @given(raws=st.lists(QUEUED_BLOCK, max_size=6), keep=KEEPS, skip=SKIPS)
    def test_same_as_one_by_one(
        self, raws: list[bytes], keep: frozenset[str] | None, skip: frozenset[str]
    ) -> None:
        """Any batch, whether it takes the joined path or the one-by-one path."""
        expected = [parse_header_block(raw, skip=skip, keep=keep) for raw in raws]
        assert parse_queue_header_blocks(raws, skip=skip, keep=keep) == expected

    @settings(max_examples=300, deadline=None, database=None)
    @given(
        raws=st.lists(PLAIN_LINES.map(lambda lines: "\n".join(lines).encode()),
                      min_size=1, max_size=8),
        keep=KEEPS, skip=SKIPS,
    )  # fmt: skip
    def test_plain_batches_same_as_one_by_one(
        self, raws: list[bytes], keep: frozenset[str] | None, skip: frozenset[str]
    ) -> None:
        """Batches of plain blocks only (the joined path, when ``keep`` is given)."""
        expected = [parse_header_block(raw, skip=skip, keep=keep) for raw in raws]
        assert parse_queue_header_blocks(raws, skip=skip, keep=keep) == expected

    def test_queued_blocks_take_the_joined_path(self) -> None:
        """Plain blocks are parsed together (one search for the batch), the same answer."""
        raws = [
            b"Received: from x\n\tby y\nFrom: a@b.example\nSubject: =?utf-8?q?caf=C3=A9?=\n folded",
            b"to: c@d.example\nX-Other: x\nSubject:",
        ]
        with patch.object(headers_module, "parse_header_block", side_effect=AssertionError):
            parsed = parse_queue_header_blocks(raws, skip=TRACE_HEADERS, keep=keep_set())
        assert [h.items for h in parsed] == [
            (("From", "a@b.example"), ("Subject", "caf\u00e9 folded")),
            (("to", "c@d.example"), ("Subject", "")),
        ]

    @pytest.mark.parametrize(
        "odd",
        [b"", b"\n", b"Subject: a\rb", b" Subject: x", b"stray line\nSubject: x",
         b"Subject: x\n\nTo: y", b"Subject: x\n"],
    )  # fmt: skip
    def test_one_odd_block_does_not_change_the_others(self, odd: bytes) -> None:
        """A block the joined path cannot take sends the batch one by one: same answers."""
        raws = [b"Subject: one\nTo: a@b.example", odd, b"Subject: three"]
        keep = keep_set()
        expected = [parse_header_block(raw, skip=TRACE_HEADERS, keep=keep) for raw in raws]
        assert parse_queue_header_blocks(raws, skip=TRACE_HEADERS, keep=keep) == expected


class TestKeep:
    """``keep`` names the headers to keep (lower case); the rest are not decoded at all."""

    BLOCK = (
        b"Received: from x\n\tby y\nFrom: om@probation.example\nSUBJECT: =?utf-8?q?caf=C3=A9?=\n"
        b"X-Case-Reference: 123\nMIME-Version: 1.0\nx-mailwatch-canary: abc\n"
    )

    def test_only_kept_headers_in_order(self) -> None:
        """Kept names match in any case; order and names as sent are preserved."""
        headers = parse_header_block(self.BLOCK, keep=keep_set(["X-Mailwatch-Canary"]))
        assert headers.items == (
            ("From", "om@probation.example"),
            ("SUBJECT", "caf\u00e9"),
            ("x-mailwatch-canary", "abc"),
        )

    def test_skip_wins_over_keep(self) -> None:
        """A header named in both ``skip`` and ``keep`` is dropped."""
        headers = parse_header_block(self.BLOCK, skip=TRACE_HEADERS, keep=frozenset({"received"}))
        assert headers == Headers()

    def test_empty_keep_keeps_nothing(self) -> None:
        """``keep=frozenset()`` keeps no header (``None`` keeps them all)."""
        assert parse_header_block(self.BLOCK, keep=frozenset()) == Headers()
        assert len(parse_header_block(self.BLOCK).items) == 6

    def test_keep_set(self) -> None:
        """The essential headers plus the extra names, lower-cased."""
        assert keep_set(["X-Case", "Importance"]) == ESSENTIAL_HEADERS | {"x-case"}
        assert {"subject", "from", "to", "cc", "date", "message-id"} <= keep_set()


class TestWhitespaceBetweenEncodedWords:
    """Whitespace between encoded words is dropped as the lookbehind pattern dropped it."""

    @settings(max_examples=500, deadline=None, database=None)
    @given(st.lists(st.sampled_from(["?=", "=?", " ", "\t", "\r\n ", "x", "?", "="])).map("".join))
    def test_same_as_the_lookbehind_pattern(self, value: str) -> None:
        """``?=`` + blanks + lookahead ``=?``, replaced by ``?=``, equals the old pattern."""
        reference = re.sub(r"(?<=\?=)[ \t\r\n]+(?==\?)", "", value)
        assert _BETWEEN_WORDS.sub("?=", value) == reference


def _reference_decode_word(charset: str, encoding: str, payload: str) -> str | None:
    """One encoded word decoded as the code before the fast paths did (``None``: left as is)."""
    try:
        if encoding.lower() == "b":
            padded = payload + "=" * (-len(payload) % 4)
            raw = binascii.a2b_base64(padded.encode("ascii", "replace"))
        else:
            raw = binascii.a2b_qp(payload.replace("_", " ").encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        return None
    try:
        return raw.decode(codecs.lookup(charset).name, errors="replace")
    except (LookupError, UnicodeError):
        return raw.decode("utf-8", errors="replace")


class TestEncodedWordsAreUnchanged:
    """Each encoded word decodes as before (``_`` and ``=5F``, soft breaks, 8-bit payloads)."""

    @settings(max_examples=500, deadline=None, database=None)
    @given(
        st.sampled_from(["utf-8", "iso-8859-1", "windows-1252"]),
        st.sampled_from("qQbB"),
        st.lists(st.sampled_from(["a", "_", "=5F", "=C3=A9", "=", "=G1", "==", "\u00e9", "x=",
                                  "QUJD", "w6k", "+/", "=3D", "_="])).map("".join),
    )  # fmt: skip
    def test_same_as_reference(self, charset: str, encoding: str, payload: str) -> None:
        """A lone encoded word gives the old decoding, or stays as it was if that failed."""
        word = f"=?{charset}?{encoding}?{payload}?="
        expected = _reference_decode_word(charset, encoding, payload)
        assert decode_header_value(word) == (word if expected is None else expected)


class TestPrintableValuesNeedNoUnfolding:
    """The shortcut for printable values rests on a property of Python's Unicode tables."""

    def test_space_is_the_only_printable_whitespace(self) -> None:
        """No code point but U+0020 is both ``isspace()`` and ``isprintable()``."""
        both = [c for c in range(sys.maxunicode + 1) if chr(c).isspace() and chr(c).isprintable()]
        assert both == [0x20]

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.text(alphabet=st.sampled_from(["a", " ", "\t", "\xa0", "\u2003", "\x1c", "="])))
    def test_printable_without_double_spaces_unfolds_to_its_strip(self, value: str) -> None:
        """Where the shortcut applies, it gives what unfold gives."""
        if value.isprintable() and "  " not in value:
            assert value.strip() == unfold(value)


class TestNormaliseSubjectIsUnchanged:
    """``normalise_subject`` (anchored matches, no re-comparison) equals the loop it replaced."""

    @pytest.mark.parametrize(
        "subject",
        ["RE: FW: [CJSM] OFFICIAL-SENSITIVE: RE: Part A", "[a][b][c] x", "RE:RE:RE:", "[]", ""],
    )
    def test_examples(self, subject: str) -> None:
        """Chains of prefixes, tags and markings."""
        assert normalise_subject(subject) == _reference_normalise(subject)

    @settings(max_examples=500, deadline=None, database=None)
    @given(
        st.lists(
            st.sampled_from(["RE:", "Fwd: ", "AW:", "[CJSM] ", "[", "]", "OFFICIAL", "-SENSITIVE",
                             ": ", " ", "(RESTRICTED) ", "Protect", " | ", "Part A", "x", "\u2013",
                             "=?utf-8?q?RE:_?=", "\t", "not protectively marked", "Re[2]: ",
                             "\u017fv: ", "sV: ", "Tr: ", "\u212a", "Nothing ", "official "]),
            max_size=10,
        ).map("".join)
    )  # fmt: skip
    def test_generated(self, subject: str) -> None:
        """Generated subjects made of prefixes, tags, markings and text."""
        assert normalise_subject(subject) == _reference_normalise(subject)
        decoded = unfold(decode_header_value(subject))
        assert normalise_subject(decoded, decoded=True) == _reference_normalise(subject)
