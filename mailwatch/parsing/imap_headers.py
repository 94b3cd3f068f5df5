r"""Header blocks of one IMAP FETCH batch, decoded together at C speed: text in, packed out.

An IMAP server answers ``BODY.PEEK[HEADER.FIELDS (...)]`` with only the fields asked for, one
per line, each block ended by an empty line. In the common case (lines folded with one space or
tab, no other tabs, no double or trailing spaces, no control characters) every line, unfolded,
is ``Name: value`` and the packed
form :class:`~mailwatch.core.model.Headers` keeps (``name NUL value NUL …``) is that text with
each ``": "`` after a name and each line end replaced by a NUL. :func:`packed_blocks` does that
for a whole batch in a handful of ``str`` and ``re`` calls (one substitution marks the names,
one decodes every RFC 2047 encoded word of the batch, a few counts check the result) instead of
a Python loop per header, and gives exactly what
:func:`mailwatch.core.headers.parse_header_blocks` gives (the tests compare the two on
generated batches). Anything else (a line folded with more blanks, a field not asked for, an
odd byte, a decoded word holding a line break or a NUL) returns ``None``: the caller then
takes that general parser.

When the package was built with a C compiler, a batch of ASCII blocks is first read by the C
scanner (``_plain_headers.c``: one pass per block instead of a dozen whole-batch passes, and
UTF-8 encoded words decoded in C by ``_encoded_words.c``: ~4.5 µs less per message); it
refuses whatever is not plainly that shape (then the ``str`` operations decide), and leaves
the words it does not decode exactly (other charsets, odd payloads) to Python, decoded here
as above.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

from mailwatch.core.headers import decode_header_value

Scanner = Callable[[Sequence[bytes], tuple[bytes, ...]], tuple[list[str], list[int]] | None]
"""``_plain_headers.plain_blocks(raws, names)``: see ``mailwatch/parsing/_plain_headers.c``."""
c_scanner: Scanner | None
try:  # the one-pass scanner in C (built with the package; a build without a compiler lacks it)
    from mailwatch.parsing._plain_headers import plain_blocks as c_scanner
except ImportError:  # pragma: no cover - tests/unit/test_imap_headers.py requires it
    c_scanner = None

NATIVE = c_scanner is not None
"""Whether :func:`packed_blocks` first tries the one-pass C scanner (``_plain_headers.c``)."""

_FIELD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # what may be asked for in HEADER.FIELDS
_NAME_MARK = "\v"  # between a name and its value while the batch is decoded: whitespace, so no
# encoded word can span it, and not the blank RFC 2047 drops between two words ([ \t\r\n])
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F)) + b"\r\n"


@functools.lru_cache(maxsize=16)
def _name_colon(keep: frozenset[str]) -> re.Pattern[str] | None:
    """The colon (and one space after it) that ends a name of ``keep`` at a line's start.

    Only the separator is matched (the name is looked behind, one fixed-width look-behind per
    name length), so a substitution by a plain string marks every name without copying a group.
    """
    if not keep or not all(_FIELD.fullmatch(name) for name in keep):
        return None
    by_length: dict[int, list[str]] = {}
    for name in sorted(keep):
        by_length.setdefault(len(name), []).append(re.escape(name))
    behind = "|".join(f"(?<=^(?:{'|'.join(names)}):)" for names in by_length.values())
    return re.compile(f":(?:{behind}) ?", re.I | re.A | re.M)


def _plain_text(raws: Sequence[bytes]) -> str | None:
    """The blocks as one text, LF line ends, folds unfolded; ``None`` unless plain (see above)."""
    raw = b"".join(raws)
    if b"\t" in raw:
        raw = raw.replace(b"\r\n\t", b"\r\n ")  # a line folded with a tab: unfolds the same
    if raw.isascii():
        if raw.translate(None, _PRINTABLE_ASCII):
            return None  # a control character or a tab not folding a line
        text = raw.decode("ascii").replace("\r\n", "\n")
        printable = "\r" not in text
    else:
        text = raw.decode("utf-8", "replace").replace("\r\n", "\n")
        printable = text.replace("\n", "").isprintable()  # no CR, tab, other whitespace
    if not printable:  # (a first line that is a fold is not a field: the count refuses it)
        return None
    text = text.replace("\n ", " ")  # folded lines unfolded: "a\n b" is "a b"
    # one blank line per block, none inside one (a block that started with a continuation
    # line lost its blank line just above); no spaces that unfolding would squeeze
    return None if text.count("\n\n") != len(raws) or "  " in text else text


def packed_blocks(
    raws: Sequence[bytes], keep: frozenset[str], *, native: bool = NATIVE
) -> list[str] | None:
    """The packed ``Headers`` text of each raw block, or ``None`` if the batch is not plain.

    ``raws`` are FETCH header literals (CRLF lines, each block ended by an empty line); only
    fields named in ``keep`` (lower-cased) may occur. The answer equals the packed form of
    ``parse_header_blocks(raws, skip, keep)`` for any ``skip`` disjoint from ``keep``.

    With ``native`` (the default when the C scanner is built) a batch of plain ASCII blocks is
    read in one pass per block; any other batch takes the ``str`` operations below.
    """
    names = _name_colon(keep)
    if names is None or not raws:
        return None
    if native and c_scanner is not None:
        scanned = c_scanner(raws, _lower_names(keep))
        if scanned is not None:
            return _words_decoded(*scanned)
    if not all(raw.endswith(b"\r\n\r\n") for raw in raws):
        return None
    text = _plain_text(raws)
    if text is None:
        return None
    lines = text.count("\n")
    marked, headers = names.subn(_NAME_MARK, text)
    if headers != lines - len(raws) or " \n" in marked:  # a field not asked for, or a value
        return None  # with trailing blanks (the one space after a colon is gone: "Cc: " is "")
    if "=?" in marked:
        marked = decode_header_value(marked)  # one pass: no word spans a line or a name mark
        if marked.count("\n") != lines or marked.count(_NAME_MARK) != headers or "\0" in marked:
            return None  # a decoded word holds a separator: the general parser decides
    elif "\0" in marked:  # pragma: no cover - a control character: refused above
        return None
    blocks = marked.split("\n\n")
    blocks.pop()  # after the last block's end
    return [block.replace("\n", "\0").replace(_NAME_MARK, "\0") for block in blocks]


@functools.lru_cache(maxsize=16)
def _lower_names(keep: frozenset[str]) -> tuple[bytes, ...]:
    """``keep`` as the C scanner takes it (checked by :func:`_name_colon` first: ASCII)."""
    return tuple(name.lower().encode("ascii") for name in keep)


def _words_decoded(blocks: list[str], encoded: list[int]) -> list[str] | None:
    r"""The C scanner's answer with the encoded words of the ``encoded`` blocks decoded.

    Those blocks (with words the scanner does not decode) are in marked form (``name \v value
    \n …``), as the batch text above is when its words are decoded: decoded together, and
    checked the same way.
    """
    if encoded:
        marked = "\n\n".join([blocks[i] for i in encoded])
        decoded = decode_header_value(marked)
        if (
            decoded.count("\n") != marked.count("\n")
            or decoded.count(_NAME_MARK) != marked.count(_NAME_MARK)
            or "\0" in decoded
        ):
            return None  # a decoded word holds a separator: the general parser decides
        for i, text in zip(encoded, decoded.split("\n\n"), strict=True):
            blocks[i] = text.replace("\n", "\0").replace(_NAME_MARK, "\0")
    return blocks
