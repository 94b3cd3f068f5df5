"""Unit tests for mailwatch.core.headers: RFC 2047 decoding, header blocks, subject normalising."""

from __future__ import annotations

import pytest

from mailwatch.core.headers import (
    TRACE_HEADERS,
    NormalisedSubject,
    decode_header_value,
    normalise_subject,
    parse_header_block,
    unfold,
)
from mailwatch.core.model import Headers

REPLACEMENT = "\ufffd"


class TestDecodeHeaderValue:
    """RFC 2047 encoded words in any charset decode to text, and never raise."""

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("=?utf-8?q?caf=C3=A9?=", "caf\u00e9"),
            ("=?UTF-8?Q?Emergency_recall_=E2=80=93_Part_A?=", "Emergency recall \u2013 Part A"),
            ("=?utf-8?b?w6k=?=", "\u00e9"),
            ("=?utf-8?b?w6k?=", "\u00e9"),  # missing padding is tolerated
            ("=?UTF-8?B?UGFydCBB?=", "Part A"),
            ("=?utf-8?b?8J+Ymg==?=", "\U0001f61a"),
            ("=?iso-8859-1?q?caf=E9?=", "caf\u00e9"),
            ("=?ISO-8859-1?B?Y2Fm6Q==?=", "caf\u00e9"),
            ("=?windows-1252?q?=93quoted=94_caf=E9?=", "\u201cquoted\u201d caf\u00e9"),
            ("=?windows-1252?Q?=80100_fine?=", "\u20ac100 fine"),
            ("=?utf-8*en?q?caf=C3=A9?=", "caf\u00e9"),  # RFC 2231 language suffix
            ("=?utf-8?q??=", ""),
        ],
    )
    def test_decodes_encoded_word(self, raw: str, expected: str) -> None:
        """Each charset and encoding decodes to the expected text."""
        assert decode_header_value(raw) == expected

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("=?utf-8?q?Part?= =?utf-8?q?_A?=", "Part A"),
            ("=?utf-8?q?a?=\r\n =?utf-8?q?b?=", "ab"),
            ("=?utf-8?q?a?=\t=?iso-8859-1?q?=E9?=", "a\u00e9"),
            ("=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=", "\u00e9\u00e9"),
        ],
    )
    def test_whitespace_between_adjacent_encoded_words_is_dropped(
        self, raw: str, expected: str
    ) -> None:
        """Adjacent encoded words join without the whitespace between them (RFC 2047 §6.2)."""
        assert decode_header_value(raw) == expected

    def test_whitespace_between_encoded_word_and_text_is_kept(self) -> None:
        """Whitespace between an encoded word and plain text is significant and survives."""
        assert decode_header_value("Re: =?utf-8?q?caf=C3=A9?= menu") == "Re: caf\u00e9 menu"

    def test_plain_text_is_returned_unchanged(self) -> None:
        """A value without encoded words is returned as is."""
        assert decode_header_value("Part A = recall?") == "Part A = recall?"

    def test_unknown_charset_decodes_as_utf8_with_replacement(self) -> None:
        """An unknown charset falls back to UTF-8, invalid bytes becoming U+FFFD."""
        assert decode_header_value("=?x-made-up?q?caf=C3=A9_=FF?=") == f"caf\u00e9 {REPLACEMENT}"

    @pytest.mark.parametrize(
        "charset",
        ["base64", "rot13", "hex", "zlib", "bz2", "uu", "quopri", "idna", "punycode", "undefined"],
    )
    def test_non_text_or_strict_codec_names_do_not_raise(self, charset: str) -> None:
        """Charset names Python maps to non-text or strict codecs degrade to UTF-8 text."""
        assert decode_header_value(f"=?{charset}?q?ab=FF?=") == f"ab{REPLACEMENT}"

    def test_invalid_utf8_in_encoded_word_becomes_replacement_character(self) -> None:
        """Bytes that are not valid in the declared charset become U+FFFD."""
        assert decode_header_value("=?utf-8?q?caf=C3?=") == f"caf{REPLACEMENT}"

    def test_broken_base64_padding_keeps_raw_word(self) -> None:
        """Base64 that cannot be decoded leaves the encoded word as it was."""
        raw = "=?utf-8?b?QUJDR?="
        assert decode_header_value(f"Part A {raw} x") == f"Part A {raw} x"

    def test_base64_with_foreign_characters_does_not_raise(self) -> None:
        """Non-alphabet characters in base64 are dropped; the surrounding text survives."""
        assert decode_header_value("Part A =?utf-8?b?!!!?= recall") == "Part A  recall"

    def test_unknown_encoding_letter_is_left_alone(self) -> None:
        """Only B and Q encodings are decoded; anything else stays as raw text."""
        assert decode_header_value("=?utf-8?x?abc?=") == "=?utf-8?x?abc?="


class TestUnfold:
    """Folded header values join onto one trimmed line."""

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("Part A\r\n recall", "Part A recall"),
            ("Part A\n\trecall", "Part A recall"),
            ("  Part   A  ", "Part A"),
            ("a\r\n\r\n b", "a b"),
            ("", ""),
        ],
    )
    def test_unfold(self, raw: str, expected: str) -> None:
        """CR, LF and runs of whitespace collapse to single spaces."""
        assert unfold(raw) == expected


class TestParseHeaderBlock:
    """Raw header blocks become decoded, unfolded, ordered headers."""

    def test_simple_block_keeps_order_and_names(self) -> None:
        """Headers come back in order with their names as sent."""
        headers = parse_header_block(b"From: om@probation.example\nSubject: Part A\nX-Case: 42\n")
        assert headers == Headers(
            (("From", "om@probation.example"), ("Subject", "Part A"), ("X-Case", "42"))
        )

    def test_folded_header_is_unfolded(self) -> None:
        """Continuation lines (leading space or tab) join the header before them."""
        raw = b"Subject: Emergency\r\n recall\r\n\t- Part A\r\nTo: ppcs@justice.example\r\n"
        headers = parse_header_block(raw)
        assert headers.get("subject") == "Emergency recall - Part A"
        assert headers.get("to") == "ppcs@justice.example"

    def test_folded_encoded_words_are_joined(self) -> None:
        """Encoded words folded across lines decode as one value with no gap."""
        raw = b"Subject: =?utf-8?q?Emergency_rec?=\r\n =?utf-8?q?all?=\r\n"
        assert parse_header_block(raw).get("Subject") == "Emergency recall"

    def test_crlf_line_endings(self) -> None:
        """CRLF line endings leave no stray carriage returns in names or values."""
        headers = parse_header_block(b"Subject: Part A\r\nImportance: high\r\n\r\nbody: no\r\n")
        assert headers.items == (("Subject", "Part A"), ("Importance", "high"))

    @pytest.mark.parametrize(
        "raw",
        [
            b"Subject: a\n\nX-Body: not a header\n",
            b"Subject: a\r\n\r\nX-Body: not a header\r\n",
        ],
    )
    def test_stops_at_first_empty_line(self, raw: bytes) -> None:
        """The body after the first empty line is never read as headers."""
        assert parse_header_block(raw).items == (("Subject", "a"),)

    def test_lines_without_colon_are_skipped(self) -> None:
        """A line that is neither a header nor a continuation is ignored."""
        raw = b"From om@probation.example Mon Jan  5 10:00:00 2026\nnot a header\nSubject: x\n"
        assert parse_header_block(raw).items == (("Subject", "x"),)

    @pytest.mark.parametrize("line", [b": no name", b"Bad Name: value", b"   : x"])
    def test_invalid_names_are_skipped(self, line: bytes) -> None:
        """Empty names and names containing spaces are not headers."""
        assert parse_header_block(line + b"\nSubject: x\n").items == (("Subject", "x"),)

    def test_continuation_before_any_header_is_ignored(self) -> None:
        """A leading continuation line has nothing to continue and is dropped."""
        assert parse_header_block(b" orphan\nSubject: x\n").items == (("Subject", "x"),)

    def test_skip_set_drops_headers_by_lower_case_name(self) -> None:
        """Headers whose lower-cased name is in ``skip`` are not kept, folded lines included."""
        raw = b"Received: from a\n by b\nDKIM-Signature: v=1;\n\tb=abc\nSubject: x\n"
        assert parse_header_block(raw, skip=TRACE_HEADERS).items == (("Subject", "x"),)

    def test_without_skip_trace_headers_are_kept(self) -> None:
        """By default nothing is dropped."""
        raw = b"Received: from a\n by b\nSubject: x\n"
        assert parse_header_block(raw).get("Received") == "from a by b"

    def test_raw_utf8_bytes_decode(self) -> None:
        """Raw 8-bit UTF-8 in a header decodes as UTF-8."""
        raw = "Subject: caf\u00e9 \u2013 Part A\n".encode()
        assert parse_header_block(raw).get("Subject") == "caf\u00e9 \u2013 Part A"

    def test_raw_non_utf8_bytes_become_replacement_characters(self) -> None:
        """Raw Latin-1 bytes are not valid UTF-8 and become U+FFFD, without raising."""
        raw = b"Subject: caf\xe9 \xff\xfe\nTo: x@y\n"
        headers = parse_header_block(raw)
        assert headers.get("Subject") == f"caf{REPLACEMENT} {REPLACEMENT}{REPLACEMENT}"
        assert headers.get("To") == "x@y"

    def test_accepts_str(self) -> None:
        """A str block parses exactly as its UTF-8 bytes do."""
        text = "Subject: caf\u00e9\nTo: x@y\n"
        assert parse_header_block(text) == parse_header_block(text.encode())

    def test_repeated_headers_are_all_kept_and_get_returns_first(self) -> None:
        """Repeated headers are all kept in order; ``get`` returns the first."""
        headers = parse_header_block(b"Received: one\nReceived: two\n")
        assert headers.items == (("Received", "one"), ("Received", "two"))
        assert headers.get("RECEIVED") == "one"

    def test_empty_value_is_kept(self) -> None:
        """A header with an empty value is a header, with value ''."""
        assert parse_header_block(b"Subject:\nTo: x\n").items == (("Subject", ""), ("To", "x"))

    @pytest.mark.parametrize("raw", [b"", b"\n", b"\r\n\r\n", b"   \nSubject: x\n"])
    def test_empty_or_blank_start_gives_no_headers(self, raw: bytes) -> None:
        """A block that starts empty or blank has no headers."""
        assert parse_header_block(raw) == Headers()

    def test_whitespace_only_line_inside_headers_does_not_end_them(self) -> None:
        """A whitespace-only line after a header is folding whitespace, not the end."""
        assert parse_header_block(b"Subject: a\n  \nTo: b\n").items == (
            ("Subject", "a"),
            ("To", "b"),
        )


# (raw subject, normalised text, marking)
CORPUS: list[tuple[str, str, str | None]] = [
    # plain subjects
    ("Part A recall - J Smith", "Part A recall - J Smith", None),
    ("  Part   A\r\n recall  ", "Part A recall", None),
    ("", "", None),
    ("   ", "", None),
    # encoded words
    ("=?utf-8?q?Emergency_recall?=", "Emergency recall", None),
    ("=?UTF-8?B?RW1lcmdlbmN5IHJlY2FsbA==?=", "Emergency recall", None),
    ("=?utf-8?q?OFFICIAL-SENSITIVE:_Part_A?=", "Part A", "OFFICIAL-SENSITIVE"),
    ("RE: =?iso-8859-1?q?R=E9sum=E9?= of case", "R\u00e9sum\u00e9 of case", None),
    ("=?utf-8?q?RE:_FW:?= =?utf-8?q?_MAPPA_level_3?=", "MAPPA level 3", None),
    ("=?windows-1252?q?OFFICIAL_=96_Breach?=", "Breach", "OFFICIAL"),
    # protective markings, upper case
    ("OFFICIAL: Part A recall", "Part A recall", "OFFICIAL"),
    ("OFFICIAL Part A recall", "Part A recall", "OFFICIAL"),
    ("OFFICIAL-SENSITIVE: Emergency recall", "Emergency recall", "OFFICIAL-SENSITIVE"),
    ("OFFICIAL-SENSITIVE Emergency recall", "Emergency recall", "OFFICIAL-SENSITIVE"),
    ("OFFICIAL SENSITIVE: Emergency recall", "Emergency recall", "OFFICIAL-SENSITIVE"),
    ("OFFICIAL SENSITIVE Emergency recall", "Emergency recall", "OFFICIAL-SENSITIVE"),
    ("OFFICIAL_SENSITIVE Emergency recall", "Emergency recall", "OFFICIAL-SENSITIVE"),
    ("OFFICIAL - SENSITIVE: Emergency recall", "Emergency recall", "OFFICIAL-SENSITIVE"),
    ("OFFICIAL-SENSITIVE PERSONAL: MAPPA", "MAPPA", "OFFICIAL-SENSITIVE PERSONAL"),
    ("OFFICIAL-SENSITIVE:PERSONAL MAPPA", "MAPPA", "OFFICIAL-SENSITIVE PERSONAL"),
    ("OFFICIAL SENSITIVE - COMMERCIAL: tender", "tender", "OFFICIAL-SENSITIVE COMMERCIAL"),
    ("OFFICIAL-SENSITIVE LOCSEN briefing", "briefing", "OFFICIAL-SENSITIVE LOCSEN"),
    ("OFFICIAL-SENSITIVE Personal data request", "Personal data request", "OFFICIAL-SENSITIVE"),
    ("OFFICIAL Personal reflections", "Personal reflections", "OFFICIAL"),
    ("RESTRICTED: Part A", "Part A", "RESTRICTED"),
    ("RESTRICTED Part A", "Part A", "RESTRICTED"),
    ("PROTECT - Breach report", "Breach report", "PROTECT"),
    ("PROTECT | Breach report", "Breach report", "PROTECT"),
    ("NOT PROTECTIVELY MARKED: Team meeting", "Team meeting", "NOT PROTECTIVELY MARKED"),
    ("NOT PROTECTIVELY MARKED Team meeting", "Team meeting", "NOT PROTECTIVELY MARKED"),
    ("OFFICIAL", "", "OFFICIAL"),
    # bracketed markings
    ("[OFFICIAL-SENSITIVE] Part A", "Part A", "OFFICIAL-SENSITIVE"),
    ("[ OFFICIAL ] Part A", "Part A", "OFFICIAL"),
    ("(RESTRICTED) Part A", "Part A", "RESTRICTED"),
    ("(Official-Sensitive) Part A", "Part A", "OFFICIAL-SENSITIVE"),
    ("[Protect] Part A", "Part A", "PROTECT"),
    # mixed and lower case markings
    ("official-sensitive: Part A", "Part A", "OFFICIAL-SENSITIVE"),
    ("Official-Sensitive Part A", "Part A", "OFFICIAL-SENSITIVE"),
    ("Official Sensitive case notes", "case notes", "OFFICIAL-SENSITIVE"),
    ("Official Sensitive - Commercial: tender", "tender", "OFFICIAL-SENSITIVE COMMERCIAL"),
    ("Official: Part A", "Part A", "OFFICIAL"),
    ("Official - Part A", "Part A", "OFFICIAL"),
    ("Restricted: Part A", "Part A", "RESTRICTED"),
    ("Protect / Part A", "Part A", "PROTECT"),
    ("Official \u2013 Part A", "Part A", "OFFICIAL"),
    ("OFFICIAL-SENSITIVE \u2014 Part A", "Part A", "OFFICIAL-SENSITIVE"),
    ("Not protectively marked: lunch", "lunch", "NOT PROTECTIVELY MARKED"),
    ("Official", "", "OFFICIAL"),
    # markings after reply chains and list tags; the first marking is kept
    ("RE: OFFICIAL: Part A", "Part A", "OFFICIAL"),
    ("RE: FW: OFFICIAL-SENSITIVE: Part A", "Part A", "OFFICIAL-SENSITIVE"),
    ("Fwd: [OFFICIAL-SENSITIVE] RE: Part A", "Part A", "OFFICIAL-SENSITIVE"),
    ("OFFICIAL: RE: Part A", "Part A", "OFFICIAL"),
    ("RE:[CJSM] OFFICIAL: Part A", "Part A", "OFFICIAL"),
    ("[CJSM] [OFFICIAL-SENSITIVE] RE: Part A", "Part A", "OFFICIAL-SENSITIVE"),
    ("OFFICIAL-SENSITIVE: RE: OFFICIAL: Part A", "Part A", "OFFICIAL-SENSITIVE"),
    ("re: official sensitive: Part A", "Part A", "OFFICIAL-SENSITIVE"),
    # reply and forward chains
    ("RE: Part A", "Part A", None),
    ("Re: Re: re: Part A", "Part A", None),
    ("FW: RE: Fwd: Part A", "Part A", None),
    ("Fwd:Part A", "Part A", None),
    ("AW: WG: Part A", "Part A", None),
    ("SV: VS: Part A", "Part A", None),
    ("Antw: TR: Part A", "Part A", None),
    ("Re[2]: Part A", "Part A", None),
    ("RE (3): Part A", "Part A", None),
    ("RE : Part A", "Part A", None),
    ("RE:", "", None),
    # list tags
    ("[CJSM] Part A", "Part A", None),
    ("[EXTERNAL] RE: [CJSM] Part A", "Part A", None),
    ("Part A [CJSM]", "Part A [CJSM]", None),
    # lookalikes: not markings, not reply prefixes
    ("Officially launched: new hub", "Officially launched: new hub", None),
    ("Official visit tomorrow", "Official visit tomorrow", None),
    ("RE: Official complaint", "Official complaint", None),
    ("[EXTERNAL] Official statistics", "Official statistics", None),
    ("Protection order - Smith", "Protection order - Smith", None),
    ("Protected characteristics", "Protected characteristics", None),
    ("Protect yourself from phishing", "Protect yourself from phishing", None),
    ("Restricted access to the building", "Restricted access to the building", None),
    ("Restricted licence conditions", "Restricted licence conditions", None),
    ("Restriction order", "Restriction order", None),
    ("OFFICIALLY: no", "OFFICIALLY: no", None),
    ("PROTECTED: no", "PROTECTED: no", None),
    ("Recall: Part A", "Recall: Part A", None),
    ("RE: Recall: Part A", "Recall: Part A", None),
    ("Reply needed: Part A", "Reply needed: Part A", None),
    ("Free: Part A", "Free: Part A", None),
    ("Fwding: Part A", "Fwding: Part A", None),
]


class TestNormaliseSubject:
    """Subjects lose reply chains, list tags and a leading protective marking."""

    def test_corpus_is_large_enough(self) -> None:
        """The corpus below keeps at least 60 distinct subjects."""
        assert len({raw for raw, _, _ in CORPUS}) == len(CORPUS) >= 60

    @pytest.mark.parametrize(("raw", "text", "marking"), CORPUS)
    def test_corpus(self, raw: str, text: str, marking: str | None) -> None:
        """Each subject normalises to the expected text and marking."""
        assert normalise_subject(raw) == NormalisedSubject(text=text, marking=marking)

    @pytest.mark.parametrize(("raw", "text", "_marking"), CORPUS)
    def test_idempotent(self, raw: str, text: str, _marking: str | None) -> None:
        """Normalising the normalised text changes nothing more (no marking left to find)."""
        again = normalise_subject(text)
        assert again.text == text
        assert again.marking is None
