"""Pure IMAP response parsers, on responses captured from the project's private Dovecot 2.3.19.

Two shapes of the same responses are used: as aioimaplib 2.0.3 handed them back (``"* "`` and,
for STATUS/SEARCH, the response name stripped; each literal a separate ``bytearray``), and as
raw wire bytes, framed here by :func:`_frame` (the shape mailwatch's own client now gives).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from email.utils import getaddresses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwatch.core.headers import normalise_subject
from mailwatch.core.model import Headers, Recipient
from mailwatch.errors import ImapParseError
from mailwatch.parsing.imap import (
    FAST_FETCH_ITEMS,
    MAX_UIDS_PER_FETCH,
    FetchRecord,
    Line,
    MailboxState,
    batches,
    encode_mailbox,
    format_sequence_set,
    parse_capabilities,
    parse_examine,
    parse_fetch,
    parse_internaldate,
    parse_internaldate_general,
    parse_search,
    parse_sequence_set,
    parse_status,
)
from mailwatch.sources import imap_wire
from mailwatch.sources.imap import addresses, describe
from mailwatch.sources.imap_addresses import clear_caches
from mailwatch.sources.imap_wire import ImapWire, fetch_batches

FIELDS = b"BODY[HEADER.FIELDS (SUBJECT FROM TO CC DATE IMPORTANCE X-PRIORITY)]"
HEADER_1 = (
    b"From: om@probation.example\r\nTo: ppcs@justice.example\r\n"
    b"Subject: OFFICIAL-SENSITIVE: Emergency recall (draft\r\nImportance: high\r\n"
    b'Cc: a@b.example, "Smith, J" <j@c.example>\r\n\r\n'
)
HEADER_2 = (
    b"From: =?utf-8?q?Jos=C3=A9?= <jose@x.example>\r\nTo: duty@y.example\r\n"
    b"Subject: =?utf-8?b?UmlzayBlc2NhbGF0aW9uIOKAlCBSb1NI?=\r\n very high\r\n"
    b"X-Priority: 1\r\n\r\n"
)
HEADER_3 = b"From: a@b\r\nSubject: caf\xc3\xa9 8bit\r\n\r\n"

# UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (...)]), via aioimaplib
CAPTURED_FETCH: list[Line] = [
    b'1 FETCH (UID 1 FLAGS (\\Recent) INTERNALDATE "02-Nov-2026 09:30:00 +0000" RFC822.SIZE 291 '
    + FIELDS
    + b" {171}",
    bytearray(HEADER_1),
    b")",
    b'2 FETCH (UID 2 FLAGS (\\Recent) INTERNALDATE "02-Nov-2026 10:00:00 +0000" RFC822.SIZE 179 '
    + FIELDS
    + b" {150}",
    bytearray(HEADER_2),
    b")",
    b'3 FETCH (UID 3 FLAGS (\\Recent) INTERNALDATE "29-Nov-2026 12:17:36 +0000" RFC822.SIZE 40 '
    + FIELDS
    + b" {34}",
    bytearray(HEADER_3),
    b")",
    b"Fetch completed (0.001 + 0.000 secs).",
]

# The same kind of response as raw wire bytes: a message without any requested header, then
# a flag change by another session arriving unsolicited (no UID), then the tagged status.
RAW_FETCH = (
    b'* 1 FETCH (UID 1 FLAGS (\\Recent) INTERNALDATE "29-Nov-2026 12:24:03 +0000" '
    b"RFC822.SIZE 30 BODY[HEADER.FIELDS (SUBJECT FROM)] {2}\r\n\r\n)\r\n"
    b"* 1 FETCH (MODSEQ (3) FLAGS (\\Seen \\Recent))\r\n"
    b"4 OK Fetch completed (0.001 + 0.000 secs).\r\n"
)

CAPTURED_EXAMINE: list[Line] = [
    b"FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
    b"OK [PERMANENTFLAGS ()] Read-only mailbox.",
    b"3 EXISTS",
    b"3 RECENT",
    b"OK [UNSEEN 1] First unseen.",
    b"OK [UIDVALIDITY 1795954656] UIDs valid",
    b"OK [UIDNEXT 4] Predicted next UID",
    b"OK [HIGHESTMODSEQ 2] Highest",
    b"[READ-ONLY] Examine completed (0.001 + 0.000 secs).",
]
CAPTURED_STATUS: list[Line] = [
    b"INBOX (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 1795954656 HIGHESTMODSEQ 2)",
    b"Status completed (0.001 + 0.000 secs).",
]
LOGIN_CAPABILITIES = (
    b"CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY "
    b"THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE "
    b"UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH "
    b"ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY "
    b"PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY"
)


def _frame(wire: bytes) -> list[Line]:
    """Split raw wire bytes into lines, each announced literal as a separate bytearray."""
    parts: list[Line] = []
    while wire:
        line, _, wire = wire.partition(b"\r\n")
        parts.append(line)
        if line.endswith(b"}") and b"{" in line:
            size = int(line[line.rindex(b"{") + 1 : -1])
            parts.append(bytearray(wire[:size]))
            wire = wire[size:]
    return parts


class TestParseFetch:
    """FETCH responses: literals are opaque, framing never depends on their content."""

    def test_captured_dovecot_batch(self) -> None:
        """Every item of a captured three-message response is read, headers byte-exact."""
        records, malformed = parse_fetch(CAPTURED_FETCH)
        assert malformed == 0
        assert [r.uid for r in records] == [1, 2, 3]
        assert [r.header for r in records] == [HEADER_1, HEADER_2, HEADER_3]
        assert records[0] == FetchRecord(
            sequence=1,
            uid=1,
            flags=frozenset({"\\Recent"}),
            internaldate=datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
            size=291,
            header=HEADER_1,
        )

    def test_unbalanced_parenthesis_in_a_header_does_not_merge_responses(self) -> None:
        """'(draft' in a subject (aioimaplib #51 with ENVELOPE) leaves the next record intact."""
        records, _ = parse_fetch(CAPTURED_FETCH[:6])
        assert [r.uid for r in records] == [1, 2]
        assert b"recall (draft" in (records[0].header or b"")

    def test_raw_wire_with_empty_header_and_unsolicited_fetch(self) -> None:
        """Raw lines parse too; an unsolicited FETCH has no UID; an empty header is CRLF."""
        records, malformed = parse_fetch(_frame(RAW_FETCH))
        assert malformed == 0
        assert records[0].header == b"\r\n"
        assert records[1] == FetchRecord(
            sequence=1, flags=frozenset({"\\Seen", "\\Recent"}), modseq=3
        )

    def test_changedsince_response_carries_modseq(self) -> None:
        """A captured CHANGEDSINCE answer yields UID, FLAGS and MODSEQ."""
        lines: list[Line] = [
            b"1 FETCH (UID 1 FLAGS (\\Recent) MODSEQ (2))",
            b"2 FETCH (UID 2 FLAGS () MODSEQ (7))",
            b"Fetch completed (0.001 + 0.000 secs).",
        ]
        records, _ = parse_fetch(lines)
        assert [(r.uid, r.flags, r.modseq) for r in records] == [
            (1, frozenset({"\\Recent"}), 2),
            (2, frozenset(), 7),
        ]

    def test_quoted_strings_nil_and_unknown_items(self) -> None:
        """Parentheses and escapes inside quotes, NIL bodies and unknown items are handled."""
        lines: list[Line] = [
            b'7 FETCH (X-GM-LABELS ("a (b" "c \\" d") UID 9 BODY[HEADER] NIL FLAGS (\\Seen))'
        ]
        records, malformed = parse_fetch(lines)
        assert malformed == 0
        assert records == [FetchRecord(sequence=7, uid=9, flags=frozenset({"\\Seen"}), header=b"")]

    @pytest.mark.parametrize(
        "broken",
        [
            [b"2 FETCH (UID two FLAGS ())"],
            [b"2 FETCH (UID 2 BODY[HEADER] {50}", bytearray(b"short"), b")"],
            [b"2 FETCH (UID 2 FLAGS (\\Seen)"],
            [b'2 FETCH (UID 2 INTERNALDATE "31-Feb-2026 00:00:00 +0000")'],
            [b"2 FETCH (UID 2 FLAGS)"],
        ],
    )
    def test_malformed_record_is_counted_and_skipped(self, broken: list[Line]) -> None:
        """A broken record is counted; the records around it still parse."""
        lines = [*CAPTURED_FETCH[:3], *broken, *CAPTURED_FETCH[6:]]
        records, malformed = parse_fetch(lines)
        assert malformed == 1
        assert [r.uid for r in records] == [1, 3]


class TestParseInternaldate:
    """INTERNALDATE strings become aware UTC datetimes."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('"02-Nov-2026 09:30:00 +0000"', datetime(2026, 11, 2, 9, 30, tzinfo=UTC)),
            (" 2-Nov-2026 10:30:00 +0100", datetime(2026, 11, 2, 9, 30, tzinfo=UTC)),
            ("01-Jan-2027 19:00:00 -0500", datetime(2027, 1, 2, 0, 0, tzinfo=UTC)),
        ],
    )
    def test_valid_dates(self, text: str, expected: datetime) -> None:
        """Offsets are applied and the result is in UTC."""
        parsed = parse_internaldate(text)
        assert parsed == expected
        assert parsed.tzinfo is UTC

    @pytest.mark.parametrize(
        "text", ["02-Foo-2026 09:30:00 +0000", "30-Feb-2026 00:00:00 +0000", ""]
    )
    def test_invalid_dates_raise(self, text: str) -> None:
        """Unknown months, impossible days and empty text raise ImapParseError."""
        with pytest.raises(ImapParseError):
            parse_internaldate(text)

    @given(
        year=st.integers(1000, 9999),
        month=st.sampled_from(["Jan", "feb", "MAR", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
                               "Oct", "Nov", "Dec", "Foo"]),
        day=st.integers(0, 32),
        clock=st.tuples(st.integers(0, 25), st.integers(0, 61), st.integers(0, 61)),
        sign=st.sampled_from("+-"),
        zone=st.tuples(st.integers(0, 25), st.integers(0, 61)),
        width=st.sampled_from(["02d", "2d"]),
    )  # fmt: skip
    def test_fast_path_equals_the_general_parse(
        self,
        year: int,
        month: str,
        day: int,
        clock: tuple[int, int, int],
        sign: str,
        zone: tuple[int, int],
        width: str,
    ) -> None:
        """The ISO rewrite gives the general parser's answer, or its error, for any fields.

        Month names in any case, days without a leading zero, hours, minutes, seconds and
        zones out of range: each takes whichever path applies and gives the same answer.
        """
        hour, minute, second = clock
        text = (
            f"{day:{width}}-{month}-{year} {hour:02d}:{minute:02d}:{second:02d} "
            f"{sign}{zone[0]:02d}{zone[1]:02d}"
        )
        try:
            expected: datetime | str = parse_internaldate_general(text)
        except ImapParseError as exc:
            expected = str(exc)
        for given_as in (text, text.encode("ascii")):  # as parsed, and as read off the wire
            try:
                got: datetime | str = parse_internaldate(given_as)
            except ImapParseError as exc:
                got = str(exc)
            assert got == expected
            if isinstance(got, datetime):
                assert got.tzinfo is UTC

    @given(
        minute=st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)),
        seconds=st.lists(st.integers(0, 61), min_size=1, max_size=6),
        sign=st.sampled_from("+-"),
        zone=st.tuples(st.integers(0, 25), st.integers(0, 61)),
        day=st.sampled_from(["02d", "2d"]),
    )  # fmt: skip
    def test_dates_sharing_a_minute_parse_as_each_alone(
        self, minute: datetime, seconds: list[int], sign: str, zone: tuple[int, int], day: str
    ) -> None:
        """Dates read off the wire in the same minute (the remembered minutes) parse alone.

        Each is parsed twice in a row with the others between, after and before its minute
        was remembered: the answer, or the error, is the general parser's every time.
        """
        for second in [*seconds, *seconds]:
            text = (
                f"{minute.day:{day}}-{minute:%b}-{minute.year} {minute:%H:%M}:{second:02d} "
                f"{sign}{zone[0]:02d}{zone[1]:02d}"
            )
            try:
                expected: datetime | str = parse_internaldate_general(text)
            except ImapParseError as exc:
                expected = str(exc)
            try:
                got: datetime | str = parse_internaldate(text.encode("ascii"))
            except ImapParseError as exc:
                got = str(exc)
            assert got == expected
            if isinstance(got, datetime):
                assert got.tzinfo is UTC


class TestMailboxState:
    """STATUS and EXAMINE answers: what the cheap "nothing changed" test compares."""

    def test_status_and_examine_of_an_unchanged_mailbox_are_equal(self) -> None:
        """Captured STATUS and EXAMINE of the same mailbox give equal states."""
        expected = MailboxState(uidvalidity=1795954656, uidnext=4, messages=3, highestmodseq=2)
        assert parse_status(CAPTURED_STATUS) == expected
        assert parse_examine(CAPTURED_EXAMINE) == expected

    def test_raw_status_with_quoted_mailbox(self) -> None:
        """A raw STATUS line naming a quoted mailbox parses."""
        lines = _frame(
            b'* STATUS "Case Files" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 1795954658 '
            b"HIGHESTMODSEQ 2)\r\n1 OK Status completed (0.001 + 0.000 secs).\r\n"
        )
        assert parse_status(lines) == MailboxState(1795954658, 2, 1, 2)

    def test_examine_without_condstore_has_no_modseq(self) -> None:
        """Without CONDSTORE there is no HIGHESTMODSEQ: it stays None."""
        lines = [line for line in CAPTURED_EXAMINE if b"HIGHESTMODSEQ" not in line]
        assert parse_examine(lines).highestmodseq is None

    @pytest.mark.parametrize(
        ("parser", "lines"),
        [(parse_status, [b"Status completed."]), (parse_examine, [b"3 EXISTS", b"Done."])],
    )
    def test_missing_answers_raise(self, parser: object, lines: list[Line]) -> None:
        """No STATUS line, or an EXAMINE without UIDVALIDITY, is an error, not a guess."""
        assert callable(parser)
        with pytest.raises(ImapParseError):
            parser(lines)


class TestParseSearch:
    """SEARCH and ESEARCH answers give sorted, distinct UIDs."""

    @pytest.mark.parametrize(
        ("lines", "expected"),
        [
            ([b"1 2 3", b"Search completed (0.001 + 0.000 secs)."], [1, 2, 3]),
            ([b"", b"Search completed."], []),
            ([b'(TAG "BFPD4") UID ALL 1:3,7', b"Search completed."], [1, 2, 3, 7]),
            ([b'(TAG "3") UID', b"Search completed."], []),
            (_frame(b'* ESEARCH (TAG "e") UID ALL 5:6\r\ne OK Search completed.\r\n'), [5, 6]),
            (_frame(b"* SEARCH 9 4\r\ne2 OK Search completed.\r\n"), [4, 9]),
        ],
    )
    def test_search_forms(self, lines: list[Line], expected: list[int]) -> None:
        """Both forms, as aioimaplib gives them and raw, with and without results."""
        assert parse_search(lines) == expected

    def test_garbage_raises(self) -> None:
        """A SEARCH answer that is not numbers raises."""
        with pytest.raises(ImapParseError):
            parse_search([b"1 two 3", b"Search completed."])

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [  # RFC 7162 §3.1.5: a search by MODSEQ also returns the highest mod-sequence found
            (b"* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)\r\n",
             [2, 5, 6, 7, 11, 12, 18, 19, 20, 23]),
            (b'* ESEARCH (TAG "a") UID ALL 2,5:7 MODSEQ 917162500\r\n', [2, 5, 6, 7]),
            (b"* SEARCH\r\n", []),
            (b'* ESEARCH (TAG "b") UID\r\n', []),
        ],
    )  # fmt: skip
    def test_modseq_search(self, raw: bytes, expected: list[int]) -> None:
        """A search by MODSEQ (the poll of what changed) ends with the mod-sequence: ignored."""
        assert parse_search(_frame(raw + b"x OK Search completed.\r\n")) == expected

    @given(
        st.lists(st.integers(1, 2**32 - 1), max_size=40),
        st.integers(1, 2**63 - 1),
        st.booleans(),
    )
    def test_modseq_search_any_uids(self, uids: list[int], modseq: int, esearch: bool) -> None:
        """Any UIDs with any mod-sequence, in either form, give the sorted distinct UIDs."""
        if esearch:
            found = f" ALL {format_sequence_set(uids)}" if uids else ""
            line = f'* ESEARCH (TAG "t") UID{found} MODSEQ {modseq}' if uids else "* ESEARCH"
        else:
            line = f"* SEARCH {' '.join(map(str, uids))} (MODSEQ {modseq})" if uids else "* SEARCH"
        assert parse_search([line.encode(), b"OK"]) == sorted(set(uids))


class TestCapabilities:
    """Capabilities come from CAPABILITY lines or [CAPABILITY ...] response codes."""

    def test_login_response(self) -> None:
        """Dovecot's untagged CAPABILITY after LOGIN lists CONDSTORE and ESEARCH."""
        found = parse_capabilities([LOGIN_CAPABILITIES, b"Logged in"])
        assert {"CONDSTORE", "ESEARCH", "IMAP4REV1"} <= found

    def test_response_code_in_greeting(self) -> None:
        """The greeting's response code counts too (raw form)."""
        greeting = b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] Dovecot (Debian) ready."
        assert parse_capabilities([greeting]) == {"IMAP4REV1", "STARTTLS", "AUTH=PLAIN"}

    def test_none(self) -> None:
        """No capability data gives an empty set."""
        assert parse_capabilities([b"Logged in"]) == frozenset()


class TestSequenceSets:
    """UID sets are sent compact and in batches no larger than aioimaplib can take."""

    @pytest.mark.parametrize(
        ("uids", "text"),
        [([1], "1"), ([3, 1, 2], "1:3"), ([1, 2, 3, 7, 9, 10], "1:3,7,9:10"), ([5, 5], "5")],
    )
    def test_format(self, uids: list[int], text: str) -> None:
        """Runs become ranges; order and duplicates do not matter."""
        assert format_sequence_set(uids) == text

    def test_format_empty_refused(self) -> None:
        """An empty set cannot be sent."""
        with pytest.raises(ValueError, match="empty"):
            format_sequence_set([])

    @pytest.mark.parametrize("text", ["1:*", "a", "1,,2", ""])
    def test_parse_refuses_non_numbers(self, text: str) -> None:
        """``*`` and non-numbers are refused."""
        with pytest.raises(ImapParseError):
            parse_sequence_set(text)

    @given(st.sets(st.integers(min_value=1, max_value=5000), min_size=1, max_size=300))
    def test_round_trip(self, uids: set[int]) -> None:
        """Parsing a formatted set gives the sorted UIDs back."""
        assert parse_sequence_set(format_sequence_set(uids)) == sorted(uids)

    def test_batches_are_bounded_sorted_and_complete(self) -> None:
        """1,000 UIDs split into sorted batches of at most 200, losing none."""
        cut = list(batches(range(1000, 0, -1)))
        assert max(len(batch) for batch in cut) == MAX_UIDS_PER_FETCH == 200
        assert [uid for batch in cut for uid in batch] == list(range(1, 1001))

    @pytest.mark.parametrize("size", [0, 201])
    def test_batch_size_outside_the_safe_range_is_refused(self, size: int) -> None:
        """Batches larger than 200 (or empty) are refused."""
        with pytest.raises(ValueError, match="batch size"):
            list(batches([1, 2], size))


class TestEncodeMailbox:
    """Mailbox names are sent quoted, in modified UTF-7."""

    @pytest.mark.parametrize(
        ("name", "wire"),
        [
            ("INBOX", '"INBOX"'),
            ("Case Files", '"Case Files"'),
            ("Präsidium & Co", '"Pr&AOQ-sidium &- Co"'),
            ("~peter/mail/台北/日本語", '"~peter/mail/&U,BTFw-/&ZeVnLIqe-"'),  # RFC 3501 §5.1.3
            ('say "hi"\\', '"say \\"hi\\"\\\\"'),
        ],
    )
    def test_encoding(self, name: str, wire: str) -> None:
        """ASCII stays, '&' is escaped, other text is base64'd UTF-16, quotes are escaped."""
        assert encode_mailbox(name) == wire

    def test_line_breaks_cannot_reach_the_wire(self) -> None:
        """CR and LF in a name are encoded, never sent raw (no command injection)."""
        encoded = encode_mailbox("a\r\nb")
        assert "\r" not in encoded
        assert "\n" not in encoded


# --- the fast paths: same answers as the general parsers ----------------------------------

_FLAG = st.sampled_from(
    ["\\Seen", "\\Recent", "\\Flagged", "$Label1", "NIL", "nil", "a[b]", "\\*", "caf\u00e9"]
)
_DATE = st.sampled_from(
    [
        "02-Nov-2026 09:30:00 +0000",
        " 2-Nov-2026 09:30:00 -0130",
        "29-Feb-2026 12:00:00 +0000",  # not a leap year
        "02-Nov-2026 09:30:00 -0000",
        "02-Nov-2026 25:30:00 +0000",
        'x\\"y',
    ]
)
_HEADER = st.lists(
    st.sampled_from(
        [b"Subject: (draft", b"From: a@b", b")", b"{12}", b"\r\n", b"* 9 FETCH (UID 9)", b"\xff"]
    ),
    max_size=6,
).map(lambda parts: b"\r\n".join(parts) + b"\r\n\r\n")


@st.composite
def fetch_responses(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    """One FETCH response (text before the literal, literal, text after), mostly typical."""
    flags = " ".join(draw(st.lists(_FLAG, max_size=3)))
    items = [
        f"UID {draw(st.integers(1, 10**6))}",
        f"FLAGS ({flags})",
        f'INTERNALDATE "{draw(_DATE)}"',
        f"RFC822.SIZE {draw(st.integers(0, 10**6))}",
    ]
    if draw(st.booleans()):  # anything but Dovecot's order and spelling
        items = draw(st.permutations(items))
        items.insert(draw(st.integers(0, 4)), draw(st.sampled_from(["MODSEQ (5)", "X-Y NIL"])))
    sep = draw(st.sampled_from([" ", " ", "  "]))
    header = draw(_HEADER)
    name = draw(st.sampled_from(["BODY[HEADER.FIELDS (SUBJECT FROM)]", "body[header]"]))
    size = len(header) + draw(st.sampled_from([0, 0, 0, 1]))
    text = f"* {draw(st.integers(1, 10**6))} FETCH ({sep.join(items)} {name} {{{size}}}"
    after = draw(st.sampled_from([b")", b")", b" UID 7)", b""]))
    return text.encode(), header, after


def _wire(responses: list[tuple[bytes, bytes, bytes]], tag: bytes = b"T1") -> bytes:
    body = b"".join(t + b"\r\n" + h + a + b"\r\n" for t, h, a in responses)
    return body + tag + b" OK Fetch completed (0.001 + 0.000 secs).\r\n"


class TestFastFetch:
    """The common response shape is decoded directly, with the general parser's answer."""

    def test_captured_batch_takes_the_fast_path(self) -> None:
        """Dovecot's responses match the fast shape and give the same records either way."""
        fast = re.compile(rb"(?:\* )?" + FAST_FETCH_ITEMS)
        assert all(fast.fullmatch(bytes(CAPTURED_FETCH[i])) for i in (0, 3, 6))
        assert parse_fetch(CAPTURED_FETCH) == parse_fetch(CAPTURED_FETCH, fast=False)
        raw = _frame(RAW_FETCH)
        assert parse_fetch(raw) == parse_fetch(raw, fast=False)

    @given(st.lists(fetch_responses(), max_size=4))
    def test_fast_and_general_parse_agree(
        self, responses: list[tuple[bytes, bytes, bytes]]
    ) -> None:
        """Whatever the shape (or breakage), both paths give the same records and count."""
        lines = _frame(_wire(responses))
        assert parse_fetch(lines) == parse_fetch(lines, fast=False)


class _Transport:
    """A fake transport (the fault is a server we script byte by byte): what the wire wrote."""

    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False


def _connected() -> tuple[ImapWire, _Transport]:
    """A wire past its greeting, on a fake transport."""
    wire, transport = ImapWire(), _Transport()
    wire.connection_made(transport)  # type: ignore[arg-type]
    wire.data_received(b"* OK ready\r\n")
    return wire, transport


class TestWireFetch:
    """The wire frames by literal length, in any chunking, like parse_fetch."""

    @pytest.mark.parametrize("c_scan", [True, False], ids=["c-reader", "python"])
    @given(
        responses=st.lists(fetch_responses(), max_size=4),
        cuts=st.lists(st.integers(1, 400), max_size=8),
    )
    async def test_any_chunking_gives_the_parse_of_the_framed_wire(
        self, responses: list[tuple[bytes, bytes, bytes]], cuts: list[int], c_scan: bool
    ) -> None:
        """Records equal parse_fetch of the same bytes; untagged lines after the tag are kept.

        With the C reader (runs of common-shape responses) and without it.
        """
        wire_bytes = _wire(
            [r for r in responses if len(r[1]) == int(r[0].rsplit(b"{")[1][:-1])], tag=b"MW1"
        )
        wire, transport = _connected()
        wire.c_scan = c_scan
        done = wire.send("UID FETCH 1:5 (UID)")
        assert transport.written == b"MW1 UID FETCH 1:5 (UID)\r\n"
        position = 0
        for cut in [*cuts, len(wire_bytes) + 20]:
            chunk = wire_bytes[position : position + cut]
            wire.data_received(chunk + (b"* 3 EXISTS\r\n" if cut > 999 else b""))
            position += cut
        wire.data_received(b"* 9 EXISTS\r\n")
        assert done.result() == ("OK", "Fetch completed (0.001 + 0.000 secs).")
        untagged = wire.take()
        assert untagged[-1] == b"* 9 EXISTS"
        assert set(untagged) <= {b"* 3 EXISTS", b"* 9 EXISTS"}
        assert (wire.records, wire.malformed) == parse_fetch(_frame(wire_bytes), fast=False)

    async def test_pipelined_commands_complete_in_any_order(self) -> None:
        """Tags end their own command; a NO is reported; unknown tags fail every command."""
        wire, _ = _connected()
        first, second = wire.send("UID FETCH 1 (UID)"), wire.send("UID FETCH 2 (UID)")
        wire.data_received(
            b"* 1 FETCH (UID 1)\r\nMW2 NO [LIMIT] too many\r\n* 2 FETCH (UID 2)\r\nMW1 OK done\r\n"
        )
        assert second.result() == ("NO", "[LIMIT] too many")
        assert first.result() == ("OK", "done")
        assert [r.uid for r in wire.records] == [1, 2]

        other, _ = _connected()
        third = other.send("UID FETCH 3 (UID)")
        other.data_received(b"X9 OK what\r\n")
        with pytest.raises(ImapParseError, match="unexpected tagged"):
            third.result()
        other.data_received(b"* 1 FETCH (UID 1)\r\n")  # the session is over: dropped
        assert other.records == []

    async def test_each_batch_is_handed_on_once_as_soon_as_it_completes(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``each`` sees every asked-for record once, batch by batch, before the next waits."""
        monkeypatch.setattr(imap_wire, "FETCH_WINDOW", 2)  # 4 batches: some wait for a slot
        wire, transport = _connected()
        answered: set[str] = set()
        handed: list[list[int]] = []
        seen_at_wait: list[int] = []

        async def wait(done: asyncio.Future[tuple[str, str]]) -> tuple[str, str]:
            seen_at_wait.append(sum(map(len, handed)))
            for line in transport.written.decode().splitlines():  # answer what was sent
                tag, _, _, uid_set, _ = line.split(" ", 4)
                if tag not in answered:
                    answered.add(tag)
                    low, _, high = uid_set.partition(":")
                    uids = [*range(int(low), int(high or low) + 1), 99]  # 99: never asked for
                    data = b"".join(b"* %d FETCH (UID %d)\r\n" % (u, u) for u in uids)
                    wire.data_received(data + f"{tag} OK done\r\n".encode())
            return await done

        records, malformed, refused = await fetch_batches(
            wire, [[1, 2], [3, 4], [5, 6], [7]], "(UID)", wait,
            lambda batch: handed.append([r.uid or 0 for r in batch]),
        )  # fmt: skip

        assert (malformed, refused) == (0, None)
        assert records == []  # handed on, not kept: their header blocks can be freed
        assert [uid for batch in handed for uid in batch] == [1, 2, 3, 4, 5, 6, 7]
        assert len(handed) >= 2  # handed on while later batches were still outstanding
        assert seen_at_wait[-1] > 0  # the last wait came after earlier batches were handed on
        assert not wire.busy


_ADDRESS_VALUES = [
    "om1@probation.cjsm.net",
    "Offender Manager <om69@justice.gov.uk>",
    "recalls17@ppcs.cjsm.net, admin49@mappa.cjsm.net",
    "Senior Probation Officer <spo18@nps.cjsm.net>",
    "<a@b.example>",
    "Zoë Brontë <z@b.example>",
    "Ciarán O\u2019Brien<c@b.example>",
    "J. Smith <j.smith+case@x-y.example>",
    '"Smith, J" <j@c.example>',
    "a@b.example (Jo)",
    "undisclosed-recipients:;",
    "Smith, J <j@c.example>",
    "a@b,,c@d",
    "a@b, ",
    "",
    "=?utf-8?q?x?= <a@b>",
    "a @ b",
    "x\\y <a@b>",
    "Name\u00a0Two <a@b>",
    "a@b@c",
    "<a@b> trailing",
    "a@b.example,\tc@d.example",  # the bare-list path: blanks either side of each entry
    " a@b.example ,c@d.example\t",
    "a@b.example, a@b.example, c@d.example",  # twice: once as a recipient
    "=?x@b.example, c@d.example",  # an encoded-word opener inside an atom: getaddresses
    "a@b.example,",
    " J  Q\tPublic <jq@b.example> ",  # one named entry: the sender path
    "a@b.example <c@d.example>",
]


_ADDRESS_PIECES = (
    "a", "b.c", "X0", ".", "-", "'", "+", "=", "?", " ", "\t", ",", "<", ">", "@", '"', "(",
    ")", "\\", ":", ";", "[", "]", "é", "\u00a0", "\r\n", "x@y.z", "<a@b.c>",
    "Jo Ann <j@a.example>", ", ", "om1@nps.cjsm.net",
)  # fmt: skip


class TestAddresses:
    """Ordinary address lists are parsed directly, with getaddresses' answer."""

    @pytest.mark.parametrize("value", _ADDRESS_VALUES)
    def test_corpus(self, value: str) -> None:
        """Each value, and it next to an ordinary one, as getaddresses reads them."""
        assert addresses([value]) == getaddresses([value])
        assert addresses([value, "a@b.example"]) == getaddresses([value, "a@b.example"])

    @given(
        st.lists(
            st.lists(
                st.sampled_from(_ADDRESS_PIECES),
                max_size=10,
            ).map("".join),
            max_size=3,
        )
    )
    def test_same_as_getaddresses(self, values: list[str]) -> None:
        """Any mix of ordinary and odd pieces gives getaddresses' pairs."""
        assert addresses(values) == getaddresses(values)


@pytest.mark.parametrize("value", _ADDRESS_VALUES)
def test_one_value_read_cold_as_getaddresses_reads_it(value: str) -> None:
    """A value read cold (caches empty, its own paths) gives getaddresses' sender and list."""
    clear_caches()
    sender, recipients, _ = describe(Headers((("From", value), ("To", value))))
    found = [a for _, a in getaddresses([value]) if a]
    assert sender == (found[0] if found else "")
    assert recipients == tuple(Recipient(a) for a in dict.fromkeys(found))


_ADDRESS_VALUE = st.one_of(
    st.sampled_from(_ADDRESS_VALUES),
    st.lists(st.sampled_from(_ADDRESS_PIECES), max_size=10).map("".join),
)


class TestDescribe:
    """Sender, recipients and subject as getaddresses and normalise_subject give them."""

    @given(
        senders=st.lists(_ADDRESS_VALUE, max_size=2),
        to=st.lists(_ADDRESS_VALUE, max_size=3),
        cc=st.lists(_ADDRESS_VALUE, max_size=2),
        names=st.sampled_from([("From", "To", "Cc"), ("FROM", "to", "CC")]),
    )
    def test_same_as_getaddresses_of_all_values(
        self, senders: list[str], to: list[str], cc: list[str], names: tuple[str, str, str]
    ) -> None:
        """Cached, merged and direct paths alike: first sender; distinct To then Cc addresses."""
        items = [
            *((names[1], v) for v in to),
            ("Subject", "RE: [CJSM] OFFICIAL: Part A"),
            *((names[0], v) for v in senders),
            *((names[2], v) for v in cc),
        ]
        sender, recipients, subject = describe(Headers(tuple(items)))
        expected_sender = next((a for _, a in getaddresses(senders) if a), "")
        expected = dict.fromkeys(a for _, a in getaddresses([*to, *cc]) if a)
        assert sender == (expected_sender if senders else "")
        assert recipients == tuple(Recipient(a) for a in expected)
        assert subject == normalise_subject("RE: [CJSM] OFFICIAL: Part A")
