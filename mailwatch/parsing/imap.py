"""Pure parsers of IMAP response lines (RFC 3501, 7162, 4731): bytes in, values out, no I/O.

The lines are what :class:`~mailwatch.sources.imap_wire.ImapWire` frames: untagged responses
as raw wire lines (``"* STATUS ..."``), each literal a separate ``bytearray`` element right
after the line announcing it (``... {171}``), and the tagged status text last. The shape
aioimaplib used to hand back (``"* "`` and, for STATUS and SEARCH, the response name
stripped) is accepted as well.

FETCH responses are parsed with a small tokenizer that treats a literal as one opaque value
and never counts parentheses inside quoted strings or literals (the framing defect of
aioimaplib, upstream #51, cannot happen here). A FETCH response that cannot be parsed is
counted as malformed and skipped; it never makes the rest of the batch unreadable.

The values (numbers, sequence sets, dates, mailbox names) are in
:mod:`mailwatch.parsing.imap_values`; their names are re-exported here.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from mailwatch.errors import ImapParseError
from mailwatch.parsing.imap_values import (
    MAX_NUMBER_DIGITS,
    MAX_SEQUENCE_NUMBERS,
    MAX_UIDS_PER_FETCH,
    batches,
    encode_mailbox,
    format_sequence_set,
    parse_internaldate,
    parse_internaldate_general,
    parse_sequence_set,
)
from mailwatch.parsing.imap_values import number as _digits

__all__ = [  # with the values of imap_values, re-exported
    "FAST_FETCH_ITEMS",
    "MAX_NUMBER_DIGITS",
    "MAX_SEQUENCE_NUMBERS",
    "MAX_UIDS_PER_FETCH",
    "FetchRecord",
    "Line",
    "MailboxState",
    "Value",
    "batches",
    "encode_mailbox",
    "fast_record",
    "format_sequence_set",
    "parse_capabilities",
    "parse_examine",
    "parse_fetch",
    "parse_internaldate",
    "parse_internaldate_general",
    "parse_search",
    "parse_sequence_set",
    "parse_status",
]

Line = bytes | bytearray

_FETCH_START = re.compile(rb"^(?:\* )?(\d{1,20}) FETCH \(", re.IGNORECASE)
_TOKEN = re.compile(
    rb"\s*(?:"
    rb"(?P<open>\()|(?P<close>\))"
    rb'|"(?P<quoted>(?:[^"\\]|\\.)*)"'
    rb"|\{(?P<literal>\d{1,20})\+?\}$"
    rb"|(?P<atom>[^\s()\"\[\]{}]+(?:\[[^\]]*\](?:<\d+(?:\.\d+)?>)?)?)"
    rb")"
)
_CODE = re.compile(rb"\[([A-Z0-9-]+)(?: ([^\]]*))?\]", re.IGNORECASE)
_SEARCH_MODSEQ = re.compile(rb"\s*\(MODSEQ \d{1,20}\)\s*$", re.IGNORECASE)
_EXISTS = re.compile(rb"^(?:\* )?(\d+) EXISTS", re.IGNORECASE)
Value = str | bytes | None | list["Value"]
"""A parsed IMAP value: an atom (str), a string or literal (bytes), NIL, or a list."""


class FetchRecord(NamedTuple):
    """One ``* n FETCH (...)`` response: the items mailwatch asks for, ``None`` when absent.

    A named tuple rather than a frozen dataclass: one is built per message fetched, and a
    tuple is built in a third of the time.
    """

    sequence: int
    uid: int | None = None
    flags: frozenset[str] | None = None
    internaldate: datetime | None = None
    size: int | None = None
    header: bytes | None = None
    """The literal of the first ``BODY[HEADER...]`` item (a header block, blank line ended)."""
    modseq: int | None = None


@dataclass(frozen=True, slots=True)
class MailboxState:
    """What STATUS or EXAMINE said about a mailbox (``None``: the server did not say)."""

    uidvalidity: int | None = None
    uidnext: int | None = None
    messages: int | None = None
    highestmodseq: int | None = None


def _as_bytes(line: Line) -> bytes:
    return bytes(line)


def _strip_untagged(line: bytes) -> bytes:
    return line[2:] if line.startswith(b"* ") else line


class _Reader:
    """Tokens of one FETCH response spread over text lines and the literals between them."""

    def __init__(self, parts: Sequence[Line], index: int, pos: int) -> None:
        self.parts, self.index = parts, index
        self.text, self.pos = _as_bytes(parts[index]), pos
        self.end = len(self.text.rstrip())  # once per line, not once per token

    def _next_line(self, why: str) -> None:
        self.index += 1
        if self.index >= len(self.parts) or isinstance(self.parts[self.index], bytearray):
            raise ImapParseError(f"FETCH response ends {why}")
        self.text, self.pos = _as_bytes(self.parts[self.index]), 0
        self.end = len(self.text.rstrip())

    def _literal(self, size: int) -> bytes:
        self.index += 1
        part = self.parts[self.index] if self.index < len(self.parts) else None
        if not isinstance(part, bytearray) or len(part) != size:
            raise ImapParseError("literal announced but not received whole")
        self._next_line("after a literal")  # the response goes on in the next text line
        return bytes(part)

    def token(self) -> tuple[str, Value]:
        """The next token: ``("(", None)``, ``(")", None)`` or ``("value", value)``."""
        while self.pos >= self.end:
            self._next_line("before its closing parenthesis")
        found = _TOKEN.match(self.text, self.pos)
        if found is None or found.end() == self.pos:
            raise ImapParseError(f"unexpected data at {self.text[self.pos : self.pos + 20]!r}")
        self.pos = found.end()
        if found["open"] or found["close"]:
            return (found["open"] or found["close"]).decode(), None
        if found["quoted"] is not None:
            return "value", re.sub(rb"\\(.)", rb"\1", found["quoted"])
        if found["literal"] is not None:
            return "value", self._literal(int(found["literal"]))
        atom = found["atom"].decode("ascii", "replace")
        return "value", None if atom.upper() == "NIL" else atom


def _parse_items(parts: Sequence[Line], start: int) -> tuple[list[Value], int]:
    """Parse the parenthesised list that opens in ``parts[start]`` (after ``n FETCH``).

    Returns the list and the index of the first part after it. Iterative: nesting depth
    costs no recursion.
    """
    first = _FETCH_START.match(_as_bytes(parts[start]))
    if first is None:
        raise ImapParseError("not a FETCH response")
    reader = _Reader(parts, start, first.end())
    stack: list[list[Value]] = [[]]
    while True:
        kind, value = reader.token()
        if kind == "(":
            stack.append([])
        elif kind == ")":
            done = stack.pop()
            if not stack:
                return done, reader.index + 1
            stack[-1].append(done)
        else:
            stack[-1].append(value)


def _number(value: Value) -> int:
    number = _digits(value) if isinstance(value, str) else None
    if number is None:
        raise ImapParseError(f"expected a number, got {value!r:.40}")
    return number


def _record(sequence: int, items: list[Value]) -> FetchRecord:
    if len(items) % 2:
        raise ImapParseError("FETCH items are not name/value pairs")
    uid = size = modseq = None
    flags: frozenset[str] | None = None
    internaldate: datetime | None = None
    header: bytes | None = None
    for name, value in zip(items[::2], items[1::2], strict=True):
        if not isinstance(name, str):
            raise ImapParseError(f"FETCH item name {name!r} is not an atom")
        key = name.upper()
        if key == "UID":
            uid = _number(value)
        elif key == "FLAGS":
            if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
                raise ImapParseError("FLAGS is not a list of atoms")
            flags = frozenset(str(f) for f in value)
        elif key == "INTERNALDATE":
            if not isinstance(value, bytes):
                raise ImapParseError("INTERNALDATE is not a string")
            internaldate = parse_internaldate(value.decode("ascii", "replace"))
        elif key == "RFC822.SIZE":
            size = _number(value)
        elif key == "MODSEQ":
            if not isinstance(value, list) or len(value) != 1:
                raise ImapParseError("MODSEQ is not a one-number list")
            modseq = _number(value[0])
        elif key.startswith("BODY[HEADER") and header is None:
            header = value if isinstance(value, bytes) else b""  # NIL: no header block
    return FetchRecord(sequence, uid, flags, internaldate, size, header, modseq)


# The common shape of a header FETCH response (Dovecot's order of the items mailwatch asks
# for): ``n FETCH (UID u FLAGS (...) INTERNALDATE "..." RFC822.SIZE s BODY[HEADER...] {len}``,
# the literal, then ``)``. Only atoms that the tokenizer reads as atoms (no NIL) may be flags,
# and the date is a quoted string without escapes, so :func:`fast_record` gives exactly what
# the general parser gives; anything else (other items, order, spacing, case) takes that one.
FAST_FETCH_ITEMS = (
    rb'(\d{1,20}) FETCH \(UID (\d{1,20}) FLAGS \(([^\s()"\[\]{}]+(?: [^\s()"\[\]{}]+)*)?\) '
    rb'INTERNALDATE "([^"\\\r\n]*)" RFC822\.SIZE (\d{1,20}) BODY\[HEADER[^\]\r\n]*\] \{(\d{1,20})\}'
)
_FAST_LINE = re.compile(rb"(?:\* )?" + FAST_FETCH_ITEMS)
_FLAG_SETS: dict[bytes | None, frozenset[str]] = {None: frozenset()}
REMEMBERED_FLAGS = _FLAG_SETS
"""The flag sets :func:`fast_record` remembers, by their bytes (for ``parsing/imap_scan``)."""
_new_record = tuple.__new__
_FLAG_SETS_CACHED = 256


def fast_record(found: re.Match[bytes], header: bytes) -> FetchRecord | None:
    """The record of a response whose text matched :data:`FAST_FETCH_ITEMS`, literal apart.

    ``None`` when the general parser must decide (a NIL flag, an impossible date).
    """
    sequence, uid, flags, date, size = found.group(1, 2, 3, 4, 5)
    flag_set = _FLAG_SETS.get(flags)
    if flag_set is None:
        if b"NIL" in flags.upper():
            return None
        flag_set = frozenset(flags.decode("ascii", "replace").split(" "))
        if len(_FLAG_SETS) < _FLAG_SETS_CACHED:  # a mailbox uses a handful of combinations
            _FLAG_SETS[flags] = flag_set
    try:
        internaldate = parse_internaldate(date)
    except ImapParseError:
        return None
    # tuple.__new__: FetchRecord's own __new__ is a Python function; every field given
    return _new_record(FetchRecord, (int(sequence), int(uid), flag_set, internaldate, int(size),
                                     header, None))  # fmt: skip


def parse_fetch(lines: Sequence[Line], *, fast: bool = True) -> tuple[list[FetchRecord], int]:
    """Every FETCH response in ``lines`` and how many could not be parsed (skipped).

    Lines that are not part of a FETCH response (the tagged status text, unsolicited
    EXISTS…) are ignored. Responses of the common shape take :func:`fast_record` unless
    ``fast`` is false (the tests compare both).
    """
    records: list[FetchRecord] = []
    malformed = 0
    index = 0
    count = len(lines)
    while index < count:
        line = lines[index]
        if fast and index + 2 < count and lines[index + 2] == b")":
            common = _FAST_LINE.fullmatch(line) if isinstance(line, bytes) else None
            literal = lines[index + 1] if common else None
            if (
                common is not None
                and isinstance(literal, bytearray)
                and len(literal) == int(common.group(6))
                and isinstance(lines[index + 2], bytes)
            ):
                record = fast_record(common, bytes(literal))
                if record is not None:
                    records.append(record)
                    index += 3
                    continue
        start = None if isinstance(line, bytearray) else _FETCH_START.match(line)
        if start is None:
            index += 1
            continue
        try:
            items, after = _parse_items(lines, index)
            record = _record(int(start.group(1)), items)  # at most 20 digits: no ValueError
        except ImapParseError:
            malformed += 1
            index += 1  # resync: look for the next response from the line after this one
            continue
        records.append(record)
        index = after
    return records, malformed


def _state_items(pairs: Iterable[tuple[bytes, bytes]]) -> MailboxState:
    values: dict[str, int] = {}
    for name, number in pairs:
        key = name.decode("ascii", "replace").lower()
        value = _digits(number)
        if key in ("uidvalidity", "uidnext", "messages", "highestmodseq") and value is not None:
            values[key] = value
    return MailboxState(**values)


def parse_status(lines: Sequence[Line]) -> MailboxState:
    """The counters of a STATUS response (``[STATUS] mailbox (MESSAGES 3 UIDNEXT 4 ...)``)."""
    for line in lines:
        text = _strip_untagged(_as_bytes(line))
        if text.upper().startswith(b"STATUS "):
            text = text[7:]
        opened, closed = text.rfind(b"("), text.rfind(b")")
        if 0 <= opened < closed == len(text.rstrip()) - 1:
            words = text[opened + 1 : closed].split()
            return _state_items(zip(words[::2], words[1::2], strict=False))
    raise ImapParseError("no STATUS response")


def parse_examine(lines: Sequence[Line]) -> MailboxState:
    """What EXAMINE/SELECT reported: EXISTS and the UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ codes."""
    pairs: list[tuple[bytes, bytes]] = []
    for line in lines:
        text = _strip_untagged(_as_bytes(line))
        exists = _EXISTS.match(text)
        if exists:
            pairs.append((b"MESSAGES", exists.group(1)))
            continue
        code = _CODE.search(text)
        if code and code.group(2) is not None and text.upper().startswith(b"OK"):
            pairs.append((code.group(1), code.group(2).strip()))
    state = _state_items(pairs)
    if state.uidvalidity is None:
        raise ImapParseError("EXAMINE response carries no UIDVALIDITY")
    return state


def parse_search(lines: Sequence[Line]) -> list[int]:
    """The UIDs of a SEARCH (``1 2 3``) or ESEARCH (``(TAG "x") UID ALL 1:3,5``) response.

    A search with a ``MODSEQ`` criterion ends its SEARCH response with ``(MODSEQ n)`` and
    its ESEARCH response with ``MODSEQ n`` (RFC 7162 §3.1.5): both are ignored.
    """
    uids: list[int] = []
    for line in lines[:-1]:  # the last line is the tagged status text
        text = _strip_untagged(_as_bytes(line)).strip()
        upper = text.upper()
        if upper.startswith((b"SEARCH", b"ESEARCH")):
            text = text.split(b" ", 1)[1] if b" " in text else b""
            upper = text.upper()
        if text.startswith(b"(") or upper.startswith(b"UID"):
            words = text.split()
            for keyword, value in itertools.pairwise(words):
                if keyword.upper() == b"ALL":
                    uids.extend(parse_sequence_set(value.decode("ascii", "replace")))
        elif text:
            text = _SEARCH_MODSEQ.sub(b"", text)  # a MODSEQ search ends "(MODSEQ n)" (RFC 7162)
            numbers = [_digits(word) for word in text.split()]
            if None in numbers:
                raise ImapParseError(f"unexpected SEARCH response {text[:40]!r}")
            uids.extend(n for n in numbers if n is not None)
    return sorted(set(uids))


def parse_capabilities(lines: Sequence[Line]) -> frozenset[str]:
    """Capabilities from a CAPABILITY response or a ``[CAPABILITY ...]`` response code."""
    found: set[str] = set()
    for line in lines:
        text = _strip_untagged(_as_bytes(line))
        code = _CODE.search(text)
        if code and code.group(1).upper() == b"CAPABILITY" and code.group(2):
            found.update(code.group(2).decode("ascii", "replace").upper().split())
        elif text.upper().startswith(b"CAPABILITY "):
            found.update(text[11:].decode("ascii", "replace").upper().split())
    return frozenset(found)
