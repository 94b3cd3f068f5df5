"""IMAP values, pure: numbers, sequence sets, INTERNALDATE, mailbox names; no I/O.

Sequence sets (RFC 3501 §9 ``sequence-set``) both ways and in UID batches, INTERNALDATE
(§2.3.3) to an aware datetime, and mailbox names in modified UTF-7 (§5.1.3), quoted.
Re-exported by :mod:`mailwatch.parsing.imap`.
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta, timezone

from mailwatch.errors import ImapParseError

MAX_UIDS_PER_FETCH = 200
"""UIDs per FETCH (or STORE/EXPUNGE) command: keeps each command line short (RFC 7162 §4
asks for at most 8,192 octets) and each answer small enough to meet the call's timeout."""

MAX_NUMBER_DIGITS = 20
"""Longer digit strings are no IMAP number (UIDs are 32-bit, mod-sequences 63-bit)."""
MAX_SEQUENCE_NUMBERS = 1_000_000
"""A sequence set listing more numbers than this is refused (``1:4294967295`` would not fit)."""


_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_INTERNALDATE = re.compile(
    r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$"
)
# The shape servers send (two-digit day, ASCII digits): rewritten as ISO 8601 for
# datetime.fromisoformat, which does in C what parse_internaldate's general path does.
_COMMON_DATE = re.compile(rb"(\d\d)-([A-Za-z]{3})-(\d{4}) (\d\d:\d\d:\d\d) ([+-]\d\d)(\d\d)")
_ISO_MONTHS = {
    bytes(spelling): b"%02d" % number
    for name, number in _MONTHS.items()
    for spelling in itertools.product(*((ord(c), ord(c.upper())) for c in name))
}  # every spelling of each month (nov, Nov, NOV, nOv…): IMAP month names are case-blind


def number(text: bytes | str) -> int | None:
    """``int(text)`` for a short run of ASCII digits, else ``None`` (no ValueError)."""
    if len(text) > MAX_NUMBER_DIGITS or not text.isascii() or not text.isdigit():
        return None
    return int(text)


# The minutes of the INTERNALDATEs parsed lately, by their text without the seconds: a
# mailbox's dates share their minute with many others (10k messages of a day: ~400 minutes),
# and a minute plus its seconds is 0.3 µs where the parse is 1 to 2 µs. Only the strict shape of
# _COMMON_DATE, 26 bytes long, is remembered, so the seconds are always bytes 18 and 19; a zone
# offset is whole minutes, so the seconds carry over to UTC unchanged.
_MINUTES: dict[bytes, datetime] = {}
_MINUTES_CACHED = 4096  # cleared when full: a sync's dates come in arrival order
_SECONDS = {b"%02d" % second: timedelta(seconds=second) for second in range(60)}
REMEMBERED_DATES = (_MINUTES, tuple(_SECONDS[b"%02d" % second] for second in range(60)))
"""What :func:`parse_internaldate` remembers, for the C reader of FETCH responses
(``_fetch_scan.c``): the minutes (the dict itself, emptied but never replaced) and the 60
seconds' timedeltas in order."""


def parse_internaldate(text: str | bytes) -> datetime:
    """``"02-Nov-2026 09:30:00 +0100"`` (quotes optional) as an aware datetime in UTC."""
    if isinstance(text, bytes) and len(text) == 26:  # "07-Dec-2026 01:57:47 +0000" unquoted
        second = _SECONDS.get(text[18:20])
        if second is not None:
            minute = _MINUTES.get(text[:18] + text[20:])
            if minute is not None:
                return minute + second
            moment = _parse_internaldate(text)
            if len(_MINUTES) >= _MINUTES_CACHED:
                _MINUTES.clear()
            if _COMMON_DATE.fullmatch(text):  # (the general path also takes " 7-Dec-…")
                _MINUTES[text[:18] + text[20:]] = moment - second
            return moment
    return _parse_internaldate(text)


def forget_minutes() -> None:
    """Forget the remembered minutes of :func:`parse_internaldate` (for benchmarks: cold)."""
    _MINUTES.clear()


def _parse_internaldate(text: str | bytes) -> datetime:
    """:func:`parse_internaldate` without the memory of minutes."""
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    common = _COMMON_DATE.fullmatch(raw)
    if common is not None:
        day, month, year, clock, zone_hours, zone_minutes = common.groups()
        iso_month = _ISO_MONTHS.get(month)
        if iso_month is not None:
            iso = b"".join((year, b"-", iso_month, b"-", day, b"T", clock, zone_hours, b":",
                            zone_minutes))  # fmt: skip
            try:
                moment = datetime.fromisoformat(iso.decode("ascii"))
            except ValueError:  # out of range: the general path says why
                pass
            else:
                if moment.tzinfo is UTC:
                    return moment
                try:
                    return moment.astimezone(UTC)
                except OverflowError:  # 31-Dec-9999 23:00:00 -0100 is past datetime.max
                    pass
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    return parse_internaldate_general(text)


def parse_internaldate_general(text: str) -> datetime:
    """:func:`parse_internaldate` for any shape RFC 3501 allows (the tests compare the two)."""
    found = _INTERNALDATE.match(text.strip('"'))
    if found is None or found.group(2).lower() not in _MONTHS:
        raise ImapParseError(f"{text!r:.60} is not an IMAP date-time")
    day, month, year, hour, minute, second, sign, off_h, off_m = found.groups()
    utc = off_h == off_m == "00"  # +0000 and -0000: already UTC, nothing to convert
    offset = timedelta(hours=int(off_h), minutes=int(off_m)) * (-1 if sign == "-" else 1)
    try:
        moment = datetime(
            int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute), int(second),
            tzinfo=UTC if utc else timezone(offset),
        )  # fmt: skip
        return moment if utc else moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ImapParseError(f"{text!r:.60} is not a valid date-time: {exc}") from None


def parse_sequence_set(text: str) -> list[int]:
    """``"1:3,7,9:8"`` as sorted distinct numbers (``*`` is refused: meaningless here)."""
    ranges: list[tuple[int, int]] = []
    total = 0
    for part in text.split(","):
        low, _, high = part.partition(":")
        a, b = number(low), number(high or low)
        if a is None or b is None:
            raise ImapParseError(f"{text[:40]!r} is not a sequence set of numbers")
        a, b = min(a, b), max(a, b)
        total += b - a + 1  # counted before anything is built: no MemoryError
        if total > MAX_SEQUENCE_NUMBERS:
            raise ImapParseError(f"sequence set lists over {MAX_SEQUENCE_NUMBERS} numbers")
        ranges.append((a, b))
    numbers: set[int] = set()
    for a, b in ranges:
        numbers.update(range(a, b + 1))
    return sorted(numbers)


def format_sequence_set(uids: Iterable[int]) -> str:
    """Compact sequence set for ``uids``: ``[1, 2, 3, 7]`` → ``"1:3,7"``."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("an empty sequence set cannot be sent")
    runs: list[str] = []
    first = last = ordered[0]
    for uid in ordered[1:]:
        if uid != last + 1:
            runs.append(f"{first}:{last}" if last != first else str(first))
            first = uid
        last = uid
    runs.append(f"{first}:{last}" if last != first else str(first))
    return ",".join(runs)


def batches(uids: Iterable[int], size: int = MAX_UIDS_PER_FETCH) -> Iterator[list[int]]:
    """``uids`` sorted and cut into lists of at most ``size`` (≤ :data:`MAX_UIDS_PER_FETCH`)."""
    if not 0 < size <= MAX_UIDS_PER_FETCH:
        raise ValueError(f"batch size must be 1..{MAX_UIDS_PER_FETCH}, not {size}")
    ordered = sorted(set(uids))
    for offset in range(0, len(ordered), size):
        yield ordered[offset : offset + size]


def _utf7_chunk(chunk: str) -> str:
    encoded = base64.b64encode(chunk.encode("utf-16-be")).rstrip(b"=").decode("ascii")
    return "&" + encoded.replace("/", ",") + "-"


def encode_mailbox(name: str) -> str:
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 §5.1.3), quoted for a command line."""
    out: list[str] = []
    pending: list[str] = []
    for char in name:
        if "\x20" <= char <= "\x7e":
            if pending:
                out.append(_utf7_chunk("".join(pending)))
                pending = []
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    if pending:
        out.append(_utf7_chunk("".join(pending)))
    text = "".join(out)  # control characters were base64-encoded above: no CR/LF/NUL left
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
