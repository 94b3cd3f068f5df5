"""Property tests for every parser: whatever the input, a value or the parser's typed error.

Each target below feeds one parser inputs built from the pieces real input is made of (so
that the parser gets past its first check) mixed with arbitrary bytes and characters. The
property: the parser returns (a bounded result) or raises a :class:`mailwatch.errors.
ParseError`; never anything else (ValueError, UnicodeDecodeError, OverflowError,
RecursionError, MemoryError…), which would take a source or the service down.

The default suite runs :data:`DEFAULT_EXAMPLES` examples per target. The long run
(``pytest -m fuzz``, or ``bench/fuzz.py``) runs ``MAILWATCH_FUZZ_EXAMPLES`` (default
100,000) per target; every input it ever finds becomes a case in test_parser_regressions.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwatch.config import settings as config
from mailwatch.core.classify import MAX_CLASSIFIED_CHARS, Classifier, compile_pattern
from mailwatch.core.headers import (
    decode_header_value,
    keep_set,
    normalise_subject,
    parse_header_block,
    parse_header_blocks,
    unfold,
)
from mailwatch.core.model import Headers, Message, Recipient
from mailwatch.core.prefilter import fold, required_keywords
from mailwatch.errors import ImapParseError, ParseError, QueueFileError
from mailwatch.parsing import canary, exim, imap, maillog, postqueue, queuefile
from mailwatch.sources.imap import addresses, describe

DEFAULT_EXAMPLES = 200
REFERENCE = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _pieces(fragments: list[bytes], size: int = 24) -> st.SearchStrategy[bytes]:
    """Bytes made of realistic fragments and arbitrary bytes, in any order."""
    piece = st.one_of(st.sampled_from(fragments), st.binary(max_size=6))
    return st.lists(piece, max_size=size).map(b"".join)


def _text(fragments: list[str], size: int = 24) -> st.SearchStrategy[str]:
    """Text made of realistic fragments and arbitrary characters, in any order."""
    piece = st.one_of(st.sampled_from(fragments), st.text(max_size=6))
    return st.lists(piece, max_size=size).map("".join)


DIGITS = ["0", "1", "9", "42", "1795954618", "9" * 25, "²", "٣", "-1", "9999"]
IMAP_BYTES = [
    b"* ", b"1 ", b"FETCH (", b"UID ", b"FLAGS (", b"\\Seen", b") ", b")", b"(", b"NIL",
    b'INTERNALDATE "02-Nov-2026 09:30:00 +0100" ', b'"31-Dec-9999 23:59:59 -0100"',
    b"RFC822.SIZE ", b"BODY[HEADER.FIELDS (SUBJECT)] ", b"{2}", b"{5}", b"MODSEQ (", b"12",
    b"STATUS ", b'"INBOX" ', b"MESSAGES ", b"UIDNEXT ", b"UIDVALIDITY ", b"HIGHESTMODSEQ ",
    b"OK ", b"[UIDVALIDITY 7]", b"[", b"]", b" EXISTS", b"SEARCH ", b"ESEARCH ",
    b'(TAG "A1") ', b"UID ", b"ALL ", b"1:3", b",", b":", b"*", b"4294967295", b"9" * 30,
    b"CAPABILITY ", b"IMAP4rev1", b"\xff", b"\xe9", b'"', b"\\", b" ", b"\r\n",
]  # fmt: skip
IMAP_LINE = _pieces(IMAP_BYTES, 16)
IMAP_LINES = st.lists(
    st.one_of(IMAP_LINE, IMAP_LINE.map(bytearray), st.sampled_from([b")", bytearray(b"ab")])),
    max_size=8,
)
HEADER_TEXT = [
    "Subject: ", "From: ", "To: ", "Cc: ", "X-Case: ", "\n", "\r\n", "\n ", "\t", " ", ":",
    "=?utf-8?b?", "=?iso-8859-1?q?", "=?\x00?b?", "?=", "=?", "?", "QnJlYWNo", "=C3=A9", "_",
    "OFFICIAL-SENSITIVE", "[OFFICIAL]", "RE: ", "FW: ", "[CJSM] ", "official sensitive",
    "not protectively marked", "Breach", "emergency recall", " " * 40, "\u00a0", "\u2013",
    "om@probation.example", "<a@b.example>", '"Name, A" <a@b>', "(comment)", ",", ";",
    "\xff", "\ud800",
]  # fmt: skip
HEADER_LINES = _text(HEADER_TEXT, 30)
EXIM_TEXT = [
    "25m", " 4d", " 5h", "  ", " ", "413 ", "2.4K ", "1.2M ", "1xXdpy-0004Zg-1X",
    "1xXdpy-0004at-2F-H", "1tAbCd-00000000000-0000", " <om@probation.example>", " <>",
    " (login)", " *** frozen ***", "\n", "          ", "D ", "+D ", "ppcs@justice.example",
    "*** spool format error: size=40 ***", "root 0 0", "1795954618 0", "-frozen 1795954618",
    "XX", "YN ", "NY ", "027F From: a@b\n", "029* Bcc: x\n", "2026-11-29 12:16:58 ",
    " R=dead T=smtp defer (111): Connection refused", "H=host [1.2.3.4] Connection refused",
    "*** Frozen", "== ", "** ", *DIGITS,
]  # fmt: skip
MAILLOG_TEXT = [
    "Nov 29 12:15:15 ", "Feb 30 ", "2026-11-29T12:15:15.123456+00:00 ", "2026-13-99T99:99:99 ",
    "host ", "postfix/smtp[14231]: ", "postfix/qmgr: ", "7C2BA2101ED: ", "to=<a@x.example>, ",
    "to=<", "relay=127.0.0.1[127.0.0.1]:25, ", "delay=2.1, ", "delays=2.1/0/0/0, ",
    "delays=a/b, ", "dsn=2.0.0, ", "status=sent ", "status=deferred ", "status=expired",
    "status=force-expired", "(250 ok)", "removed", "(", ")", *DIGITS,
]  # fmt: skip


def _json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children)
        ),
        max_leaves=12,
    )


POSTQUEUE_KEYS = ["queue_name", "queue_id", "arrival_time", "message_size", "sender",
                  "recipients", "forced_expire", "address", "delay_reason"]  # fmt: skip
POSTQUEUE_OBJECTS = st.dictionaries(st.sampled_from(POSTQUEUE_KEYS), _json_values(), max_size=8)
POSTQUEUE_LINES = st.one_of(
    POSTQUEUE_OBJECTS.map(lambda o: __import__("json").dumps(o)),
    POSTQUEUE_OBJECTS.map(lambda o: __import__("json").dumps(o).encode()),
    _text(['{"', '": ', '"', "[", "]", "{", "}", ",", "1e999", "NaN", "\x00", "\\u0000"], 40),
    st.binary(max_size=40),
    st.integers(0, 3000).map(lambda n: "[" * n + "]" * n),
)


def _queue_file() -> st.SearchStrategy[bytes]:
    record = st.tuples(st.sampled_from(b"CMNLXEA"), st.binary(max_size=12)).map(
        lambda tr: bytes([tr[0]]) + bytes([len(tr[1])]) + tr[1]
    )
    return st.one_of(
        st.lists(record, max_size=12).map(b"".join),
        _pieces([b"C", b"M\x00", b"N\x05hello", b"N\x00", b"L\x02ab", b"X\x00", b"\x80",
                 b"\xff\xff\xff\xff\xff\xff", b"         123         1 ", b"9" * 25], 16),
    )  # fmt: skip


def _message(subject: str, header_value: str) -> Message:
    return Message(
        key="pf1/ABC/1", source="pf1", queue_id="ABC", queue="deferred",
        arrival=REFERENCE, size=1, sender="a@b.example",
        recipients=(Recipient("c@d.example"),),
        headers=Headers((("Subject", subject), ("X-Case", header_value))),
        subject=normalise_subject(subject).text,
    )  # fmt: skip


_SHIPPED: list[Classifier] = []


def _shipped() -> Classifier:
    if not _SHIPPED:
        _SHIPPED.append(config.load(None).classifier())
    return _SHIPPED[0]


# --- the checks: each calls one parser and states what it may return -------------------------


def _check_postqueue(line: str | bytes) -> None:
    result = postqueue.parse_line(line, 3)
    assert result is None or isinstance(result, postqueue.QueueEntry | postqueue.Malformed)


def _check_exim_queue(text: str) -> None:
    for entry in exim.parse_queue(text):
        assert isinstance(entry, exim.EximEntry | exim.Malformed)
    for entry in exim.parse_queue(text.encode("utf-8", "surrogateescape")):
        assert isinstance(entry, exim.EximEntry | exim.Malformed)


def _check_exim_spool(text: str) -> None:
    raw = text.encode("utf-8", "surrogateescape")
    result = exim.parse_spool_header(raw, None)
    assert isinstance(result, exim.SpoolHeader | exim.Malformed)
    if isinstance(result, exim.SpoolHeader):
        assert len(result.header_block) <= len(raw)


def _check_exim_log(text: str) -> None:
    assert isinstance(exim.parse_message_log(text), exim.MessageLog)
    exim.arrival_from_id(text[:23])


def _check_imap_fetch(lines: list[bytes | bytearray]) -> None:
    for fast in (True, False):
        records, malformed = imap.parse_fetch(lines, fast=fast)
        assert len(records) + malformed <= len(lines)


def _check_imap_responses(lines: list[bytes | bytearray]) -> None:
    parsers: list[Callable[[Any], object]] = [
        imap.parse_status, imap.parse_examine, imap.parse_search, imap.parse_capabilities,
    ]  # fmt: skip
    for parser in parsers:
        with contextlib.suppress(ImapParseError):
            parser(lines)


def _check_imap_values(data: bytes) -> None:
    text = data.decode("latin-1")
    for call in (
        lambda: imap.parse_internaldate(data),
        lambda: imap.parse_internaldate(text),
        lambda: imap.parse_internaldate_general(text),
        lambda: imap.parse_sequence_set(text),
    ):
        try:
            result = call()
        except ImapParseError:
            continue
        if isinstance(result, list):
            assert len(result) <= imap.MAX_SEQUENCE_NUMBERS
    assert imap.encode_mailbox(text).startswith('"')


def _check_maillog(text: str) -> None:
    maillog.parse_line(text, REFERENCE)
    maillog.parse_stamp(text, REFERENCE)


def _check_queuefile(data: bytes) -> None:
    try:
        block = queuefile.header_block(data)
    except QueueFileError:
        return
    assert len(block) <= len(data)


def _check_canary(text: str) -> None:
    canary.valid_path(text)
    canary.token_of(text, "path")
    canary.parse_queue_id(text)


def _check_headers(text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    decoded = decode_header_value(text)
    assert isinstance(decoded, str)
    unfold(text)
    block = parse_header_block(raw)
    parse_header_block(raw, keep=keep_set(["X-Case"]))
    parse_header_blocks([raw + b"\r\n\r\n", raw], keep=keep_set())
    subject = normalise_subject(text)
    assert len(subject.text) <= len(unfold(decoded))
    normalise_subject(text, decoded=True)
    describe(block)


def _check_addresses(text: str) -> None:
    for _name, address in addresses([text, text[: len(text) // 2]]):
        assert isinstance(address, str)


def _check_prefilter(source: str) -> None:
    fold(source)
    for flags in (re.IGNORECASE, 0):
        try:
            with warnings.catch_warnings():  # "possible set union" and such: not our concern
                warnings.simplefilter("ignore")
                pattern = re.compile(source, flags)
        except (re.error, RecursionError, OverflowError):
            continue
        keywords = required_keywords(pattern)
        assert keywords is None or all(keywords)


def _check_classify(text: str) -> None:
    try:
        pattern = compile_pattern(text)
    except ValueError:
        pass
    else:
        pattern.search(text)
    message = _message(text * (1 + MAX_CLASSIFIED_CHARS // 2 // max(1, len(text))), text)
    result = _shipped().classify(message)
    assert result == _shipped().classify(message, prefilter=False)


REGEX_TEXT = ["(", ")", "(?:", "(?<!", "(?=", "\\", "\\b", "\\s", "\\w", "\\d", "\\1", "[", "]",
              "[^", "*", "+", "?", "{2,}", "|", "^", "$", ".", "a", "breach", "(?i)", "(?-i:",
              "\u212a", "\u0130", "(?P<n>", "(?P=n)", "(?>", "*+", "\\p{L}"]  # fmt: skip
TARGETS: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], None]]] = {
    "postqueue": (POSTQUEUE_LINES, _check_postqueue),
    "exim_queue": (_text(EXIM_TEXT, 30), _check_exim_queue),
    "exim_spool": (_text(EXIM_TEXT, 30), _check_exim_spool),
    "exim_log": (_text(EXIM_TEXT, 30), _check_exim_log),
    "imap_fetch": (IMAP_LINES, _check_imap_fetch),
    "imap_responses": (IMAP_LINES, _check_imap_responses),
    "imap_values": (_pieces(IMAP_BYTES, 10), _check_imap_values),
    "maillog": (_text(MAILLOG_TEXT, 24), _check_maillog),
    "queuefile": (_queue_file(), _check_queuefile),
    "canary": (
        _text(
            ["path.", "0123456789abcdef", "queued as ", "id=", "1tAbCd-000Abc-12", "-", " ", "\n"],
            12,
        ),
        _check_canary,
    ),
    "headers": (HEADER_LINES, _check_headers),
    "addresses": (HEADER_LINES, _check_addresses),
    "prefilter": (_text(REGEX_TEXT, 16), _check_prefilter),
    "classify": (_text([*HEADER_TEXT, *REGEX_TEXT], 16), _check_classify),
}


def run_target(name: str, examples: int) -> None:
    """Check target ``name`` on ``examples`` generated inputs (raises on the first failure)."""
    strategy, check = TARGETS[name]
    runner = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )(given(strategy)(check))
    runner()


@pytest.mark.parametrize("name", TARGETS)
def test_parser_returns_a_value_or_its_typed_error(name: str) -> None:
    """A few hundred inputs per parser in the default suite."""
    run_target(name, DEFAULT_EXAMPLES)


@pytest.mark.fuzz
@pytest.mark.parametrize("name", TARGETS)
def test_long_fuzz_run(name: str) -> None:
    """The long run: ``MAILWATCH_FUZZ_EXAMPLES`` inputs per parser (default 100,000)."""
    run_target(name, int(os.environ.get("MAILWATCH_FUZZ_EXAMPLES", "100000")))


def test_typed_error_base() -> None:
    """What the checks allow is exactly the typed tree."""
    assert issubclass(ImapParseError, ParseError)
    assert issubclass(QueueFileError, ParseError)
