"""Header decoding and subject normalisation: text in, values out, never an exception.

* :func:`parse_header_block` turns a raw header block (bytes, as stored in a queue file or
  fetched over IMAP) into :class:`~mailwatch.core.model.Headers`: lines unfolded, raw 8-bit bytes
  decoded as UTF-8 with replacement characters, RFC 2047 encoded words decoded in any charset.
* :func:`normalise_subject` strips reply/forward chains, list tags and a leading protective
  marking, which it returns separately.

Malformed input degrades to replacement characters or the raw text, never a traceback: the
classifier must see *something* for every message, however broken its headers.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re
from collections.abc import Iterable, Sequence
from itertools import chain
from sys import intern
from typing import NamedTuple

from mailwatch.core.model import Headers

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"\?=[ \t\r\n]+(?==\?)")  # replaced by "?=": no lookbehind
# Every pattern here is linear by construction: each quantifier over whitespace is
# possessive (``\s*+``), so no run of spaces can be split two ways between neighbouring
# quantifiers (a marking followed by 64K spaces once took a minute to reject). The patterns
# accept exactly what they accepted with backtracking quantifiers: a possessive ``\s*+`` is only
# ever followed by something that cannot start with whitespace, or by the end of the match.
_REPLY_PREFIX = re.compile(
    r"^(?:re|fw|fwd|aw|wg|sv|vs|tr|antw)\s*+(?:\[\d++\]|\(\d++\))?\s*+:\s*+", re.I
)
_LIST_TAG = re.compile(r"^\[[^\]\[]{1,40}\]\s*+")
_MARKING_CORE = (
    r"not\s++protectively\s++marked"
    r"|official(?:\s*+[-_]?\s*+sensitive)?(?:\s*+[-:]?\s*+(?:personal|commercial|locsen))?"
    r"|restricted|protect"
)
_MARKING_CORE_CAPS = (
    r"NOT\s++PROTECTIVELY\s++MARKED"
    r"|OFFICIAL(?:\s*+[-_]?\s*+SENSITIVE)?(?:\s*+[-:]?\s*+(?:PERSONAL|COMMERCIAL|LOCSEN))?"
    r"|RESTRICTED|PROTECT"
)
# A bare (unbracketed) marking counts when it is written in capitals, as markings are by
# convention; in any case when a separator or the end of the subject follows it; and in any
# case when it cannot be ordinary words (official sensitive, not protectively marked). So
# "Official visit", "Restricted access" and "Protect yourself" stay subjects, not markings.
_MARKING = re.compile(
    rf"^(?:\[\s*+(?P<b>{_MARKING_CORE})\s*+\]|\(\s*+(?P<p>{_MARKING_CORE})\s*+\)"
    rf"|(?P<upper>(?-i:{_MARKING_CORE_CAPS}))(?=$|[\s:\-\u2013\u2014\]|/,.;])"
    rf"|(?P<sep>{_MARKING_CORE})(?=\s*+(?:$|[:|/,.;])|\s++[-\u2013\u2014])"
    r"|(?P<bare>official\s*+[-_]?\s*+sensitive|not\s++protectively\s++marked)(?=\s))"
    r"\s*+[:\-\u2013\u2014|/,.;]*+\s*+",  # \u2013 \u2014: dashes as Outlook autocorrects them
    re.I,
)


@functools.lru_cache(maxsize=128)
def _lookup_codec(charset: str) -> str:
    name = charset.split("*", 1)[0].strip().lower()  # RFC 2231 language suffix: utf-8*en
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        return "utf-8"


def _decode_word(match: re.Match[str]) -> str:
    charset, encoding, payload = match.groups()
    try:
        if encoding in "bB":  # what base64.b64decode(validate=False) runs
            padded = payload + "=" * (-len(payload) % 4)
            raw = binascii.a2b_base64(padded.encode("ascii", "replace"))
        elif payload.isascii():  # what quopri.decodestring(header=True) runs ("_" is a space)
            raw = binascii.a2b_qp(payload, header=True)
        else:
            raw = binascii.a2b_qp(payload.encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    try:
        return raw.decode(_lookup_codec(charset), errors="replace")
    except (LookupError, UnicodeError):  # a non-text codec (base64, rot13…) or a strict one (idna)
        return raw.decode("utf-8", errors="replace")


def decode_header_value(value: str) -> str:
    """Decode RFC 2047 encoded words; whitespace between adjacent encoded words is dropped."""
    if "=?" not in value:
        return value
    return _ENCODED_WORD.sub(_decode_word, _BETWEEN_WORDS.sub("?=", value))


def unfold(value: str) -> str:
    """Join a folded header value onto one line (RFC 5322 §2.2.3) and trim it.

    Carriage returns are dropped; every other run of whitespace (``str.isspace``, the same set
    a ``str`` regex's whitespace class matches) becomes one space. (The only character that is
    both whitespace and printable is the space itself, so a printable value without double
    spaces unfolds to itself, trimmed: :func:`parse_header_block` relies on that.)
    """
    return " ".join(value.replace("\r", "").split())


TRACE_HEADERS = frozenset(
    {"received", "dkim-signature", "arc-seal", "arc-message-signature",
     "arc-authentication-results", "authentication-results", "x-google-dkim-signature"}
)  # fmt: skip
"""Bulky transport headers no classification rule needs: not kept by default."""

ESSENTIAL_HEADERS = frozenset(
    {"subject", "from", "to", "cc", "date", "message-id", "importance", "x-priority",
     "priority", "x-msmail-priority"}
)  # fmt: skip
"""What mailwatch itself reads or shows of a message (lower-cased names)."""


def keep_set(extra: Iterable[str] = ()) -> frozenset[str]:
    """Lower-cased names to keep: :data:`ESSENTIAL_HEADERS` and ``extra`` (e.g. rule headers)."""
    return ESSENTIAL_HEADERS | {name.lower() for name in extra}


# A block is "plain" when every line is a header start (a printable-ASCII name without spaces,
# optional blanks, a colon) or a continuation (starts with a space or tab). For a plain block
# one regex finds each header with its continuation lines, with the same result as the line by
# line parse below; anything else (stray lines, odd whitespace, 8-bit names) takes that parse.
_NAME = r"[!-9;-~]+"
_PLAIN_BODY = rf"{_NAME}[ \t]*:.*(?:\n(?:{_NAME}[ \t]*:|[ \t]).*)*"
_PLAIN = re.compile(rf"{_PLAIN_BODY}\n?")
_HEADER_START = re.compile(rf"{_NAME}[ \t]*:")
# In a joined batch ("\n", then each block followed by its blank line): a "\n" that starts
# neither a header, a continuation, nor a blank line before a header or the end. None: the
# batch is plain blocks (searched, not matched: the literal "\n" is found at C speed).
_NOT_PLAIN_JOINED = re.compile(rf"\n(?!{_NAME}[ \t]*:|[ \t]|\n(?:{_NAME}[ \t]*:|\Z)|\Z)")
_ANY_HEADER = re.compile(rf"^({_NAME})[ \t]*:(.*(?:\n[ \t].*)*)", re.M)


@functools.lru_cache(maxsize=64)
def _kept_headers(keep: frozenset[str], skip: frozenset[str]) -> re.Pattern[str]:
    """A regex finding (in a plain block) the headers named in ``keep``, not ``skip``."""
    # In sorted order the regex parser shares common prefixes (x-…), which matches faster.
    alternatives = "|".join(re.escape(n) for n in sorted(keep - skip))
    return re.compile(rf"^({alternatives or '(?!)'})[ \t]*:(.*(?:\n[ \t].*)*)", re.I | re.A | re.M)


@functools.lru_cache(maxsize=64)
def _joined_kept_headers(keep: frozenset[str], skip: frozenset[str]) -> re.Pattern[str]:
    """In a joined batch, each header :func:`_kept_headers` finds and each block's end.

    A block's end (the first newline of its blank line) is found as ``("", "")``.
    """
    kept = _kept_headers(keep, skip).pattern.removeprefix("^")
    return re.compile(rf"\n(?:{kept}|(?=\n))", re.I | re.A)


def parse_header_block(
    raw: bytes | str, skip: frozenset[str] = frozenset(), keep: frozenset[str] | None = None
) -> Headers:
    """Parse a header block (up to the first empty line) into decoded, unfolded headers.

    Lines without a colon that are not continuations are skipped (they cannot be headers);
    headers whose lower-cased name is in ``skip`` are dropped, and so, when ``keep`` is given
    (lower-cased names, see :func:`keep_set`), are all headers not named in it: those are
    neither unfolded nor decoded.
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:  # a lone CR: unfold() drops it (the plain path below would not)
            return _parse_lines(text, skip, keep)
    end = text.find("\n\n")
    block = text if end < 0 else text[:end]
    if not _PLAIN.fullmatch(block):
        return _parse_lines(text, skip, keep)
    if keep is not None:
        found = _kept_headers(keep, skip).findall(block)
    else:
        found = [(n, v) for n, v in _ANY_HEADER.findall(block) if n.lower() not in skip]
    return Headers(tuple(_decoded_items(found)))


def _decoded_items(found: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(name, raw value)`` pairs of a plain block, unfolded and decoded."""
    items = []
    for name, raw_value in found:  # unfold() and decode_header_value() inlined: hot
        if raw_value.isprintable() and "  " not in raw_value:
            value = raw_value.strip()  # no whitespace but single spaces: what unfold() gives
        else:
            value = " ".join(raw_value.split())
        # The name interned: every message repeats the same few (kept while it is queued).
        items.append((intern(name), decode_header_value(value) if "=?" in value else value))
    return items


def parse_header_blocks(
    raws: Sequence[bytes], skip: frozenset[str] = frozenset(), keep: frozenset[str] | None = None
) -> list[Headers]:
    """``[parse_header_block(raw, skip, keep) for raw in raws]``, in one pass when it can.

    When every block is plain, ends with its blank line (CRLF, as IMAP servers send header
    fields) and has nothing after it, the blocks are decoded, checked and searched together:
    one call each for the whole batch instead of one per block, the same answer. Anything
    else (or no ``keep``) takes :func:`parse_header_block` block by block.
    """
    if keep is not None and raws and all(raw.endswith(b"\r\n\r\n") for raw in raws):
        text = (b"\n" + b"".join(raws)).decode("utf-8", "replace").replace("\r\n", "\n")
        parsed = _parse_joined(text, len(raws), skip, keep)
        if parsed is not None:
            return parsed
    return [parse_header_block(raw, skip, keep) for raw in raws]


def parse_queue_header_blocks(
    raws: Sequence[bytes], skip: frozenset[str] = frozenset(), keep: frozenset[str] | None = None
) -> list[Headers]:
    """:func:`parse_header_blocks` of header blocks as a Postfix queue file holds them.

    That is lines joined by newlines, without the blank line that ends them (see
    :func:`mailwatch.parsing.queuefile.header_block`). The same answer as
    ``[parse_header_block(raw, skip, keep) for raw in raws]``.
    """
    if keep is not None and raws and all(raws):
        text = (b"\n" + b"\n\n".join(raws) + b"\n\n").decode("utf-8", "replace")
        parsed = _parse_joined(text, len(raws), skip, keep)
        if parsed is not None:
            return parsed
    return [parse_header_block(raw, skip, keep) for raw in raws]


def _parse_joined(
    text: str, count: int, skip: frozenset[str], keep: frozenset[str]
) -> list[Headers] | None:
    """The ``count`` blocks of a joined batch, searched together.

    A joined batch is a newline, then each block followed by its blank line. ``None``
    unless every block is plain (the caller then parses them one by one).
    """
    if (
        "\r" in text
        or text.count("\n\n") != count
        or not _HEADER_START.match(text, 1)
        or _NOT_PLAIN_JOINED.search(text)
    ):
        return None
    # Every (name, raw value) of the batch, and ("", "") for the blank line after each block.
    flat = list(chain.from_iterable(_joined_kept_headers(keep, skip).findall(text)))
    names = flat[0::2]
    if names.count("") != count:
        return None  # an empty kept name
    return _packed_blocks(flat, names, "=?" in text)


def _packed_blocks(flat: list[str], names: list[str], encoded: bool) -> list[Headers]:
    """The ``Headers`` of each block of ``flat`` (name, raw value, …; a blank line ``"", ""``).

    What :func:`_decoded_items` does per header, done per batch at C speed: every value
    unfolded (``" ".join(value.split())``, what :func:`unfold` gives without CR), encoded
    words decoded where there are any, names interned; then each block's part of the list
    joined into the packed form :class:`Headers` keeps.
    """
    values = list(map(" ".join, map(str.split, flat[1::2])))
    if encoded:
        _decode_all(values)
    flat[0::2] = map(intern, names)  # the names as sent, interned (the same few repeat)
    flat[1::2] = values
    parsed: list[Headers] = []
    end_of, start = names.index, 0
    while start < len(names):
        end = end_of("", start)
        parsed.append(Headers.from_packed_parts(flat[2 * start : 2 * end]))
        start = end + 1
    return parsed


def _decode_all(values: list[str]) -> None:
    """``values[i] = decode_header_value(values[i])`` for each value with an encoded word.

    The values are unfolded (no whitespace but single spaces), so they are decoded joined by
    a vertical tab, one substitution for them all: an encoded word cannot span it (its parts
    hold no whitespace) and it is not the blank between two words (spaces, tabs, CR, LF). If
    a decoded word holds a vertical tab itself, the values are decoded one by one.
    """
    where = [i for i, value in enumerate(values) if "=?" in value]
    if not where:
        return
    decoded = decode_header_value("\v".join([values[i] for i in where])).split("\v")
    if len(decoded) != len(where):
        decoded = [decode_header_value(values[i]) for i in where]
    for i, value in zip(where, decoded, strict=True):
        values[i] = value


def _parse_lines(text: str, skip: frozenset[str], keep: frozenset[str] | None) -> Headers:
    """:func:`parse_header_block` line by line: any block, however irregular."""
    items: list[tuple[str, str]] = []
    name: str | None = None
    parts: list[str] = []

    def flush() -> None:
        if name is None:
            return
        lower = name.lower()
        if lower not in skip and (keep is None or lower in keep):
            items.append((name, decode_header_value(unfold(" ".join(parts)))))

    for line in text.split("\n"):
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


class NormalisedSubject(NamedTuple):
    """A subject reduced to what it is about, and the protective marking it carried.

    A named tuple (one is built per message read: a third of a frozen dataclass's cost).
    """

    text: str
    marking: str | None


@functools.lru_cache(maxsize=256)
def _canonical_marking(found: str) -> str:
    words = re.sub(r"[\s_:\-]+", " ", found.strip().upper()).split()
    if words[:2] == ["OFFICIAL", "SENSITIVE"]:
        return " ".join(["OFFICIAL-SENSITIVE", *words[2:]])
    return " ".join(words)


# One match per step instead of up to three, in the same order of preference: a marking,
# else a reply prefix, else a list tag (the regex engine tries alternatives left to right).
_STRIPPED = re.compile(
    rf"{_MARKING.pattern.removeprefix('^')}"
    rf"|(?P<reply>{_REPLY_PREFIX.pattern.removeprefix('^')})"
    rf"|(?P<tag>{_LIST_TAG.pattern.removeprefix('^')})",
    re.I,
)
_NOT_MARKINGS = frozenset({"reply", "tag", None})
# What every alternative of _STRIPPED starts with, matched the same way (re.I: U+017F is "s"):
# a subject that does not start so has nothing to strip (most do not: one cheap match).
_MAY_STRIP = re.compile(r"[\[(norpfawsvt]", re.I)


def normalise_subject(subject: str, *, decoded: bool = False) -> NormalisedSubject:
    """Decode, unfold and strip ``RE:``/``FW:`` chains, list tags and a protective marking.

    Markings are recognised at the start of the subject, or after reply prefixes and list
    tags, with or without brackets, in any case; the first one found is kept. With
    ``decoded``, ``subject`` is already decoded and unfolded (a value of
    :func:`parse_header_block`) and is not decoded again.
    """
    text = subject if decoded else unfold(decode_header_value(subject))
    if not _MAY_STRIP.match(text):
        return NormalisedSubject(text.strip(), None)
    marking: str | None = None
    pos = 0  # matched from a position, not re-sliced: linear in a long RE: RE: RE: chain
    while True:
        found = _STRIPPED.match(text, pos)  # each alternative never matches empty
        if found is None or found.end() == pos:
            break
        kind = found.lastgroup  # reply, tag, or the marking group that matched
        if marking is None and kind not in _NOT_MARKINGS:
            marking = _canonical_marking(found[kind or ""])
        pos = found.end()
    return NormalisedSubject((text[pos:] if pos else text).strip(), marking)
