"""Keyword prefilter for subject patterns: skip a regex that cannot match (pure, exact).

For a subject pattern, :func:`required_keywords` derives a set of lower-case ASCII strings of
which *every* match contains at least one, read off the parsed pattern: a run of literal
characters, a mandatory group or repeat, or each branch of an alternation (the union of what
the branches require). Anything it does not understand (classes, optional parts, lookarounds,
back references, non-ASCII literals) simply contributes nothing, so the set only ever errs
towards "may match"; a pattern with no usable keyword gets ``None`` (always run it).

A subject is then tested with :func:`fold`, which lower-cases ASCII letters and maps the only
non-ASCII characters that an ASCII letter matches under ``re.IGNORECASE`` (dotted and dotless
I, long S, Kelvin sign) to that letter, one character for one. So if the pattern finds a match,
the folded subject contains one of its keywords: a subject containing none of them cannot
match, and the regex need not run. The classifier still runs the real regex whenever the
keyword test passes, so results are exactly those of running every regex.

The parse uses the standard library's own regex parser (``re._parser``, Python 3.11+); if it
is missing or fails on a pattern, that pattern is simply never prefiltered.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

try:
    _parser: Any = importlib.import_module("re._parser")
    _constants: Any = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover - a Python without the 3.11 layout: no prefilter
    _parser = _constants = None

# The characters an ASCII letter matches under re.IGNORECASE, besides its own two cases
# (checked against the running Python by tests/unit/test_prefilter.py).
_FOLD = {c: chr(c + 32) for c in range(ord("A"), ord("Z") + 1)} | {
    0x130: "i",  # LATIN CAPITAL LETTER I WITH DOT ABOVE
    0x131: "i",  # LATIN SMALL LETTER DOTLESS I
    0x17F: "s",  # LATIN SMALL LETTER LONG S
    0x212A: "k",  # KELVIN SIGN
}

Keywords = frozenset[str]


def fold(text: str) -> str:
    """``text`` with ASCII letters lower-cased and I/S/K lookalikes mapped to them (1:1)."""
    return text.lower() if text.isascii() else text.translate(_FOLD)


def _better(a: Keywords | None, b: Keywords | None) -> Keywords | None:
    """The more selective of two keyword sets: longest shortest keyword, then fewest."""
    if a is None or b is None:
        return a if b is None else b
    rank_a, rank_b = (min(map(len, a)), -len(a)), (min(map(len, b)), -len(b))
    return a if rank_a >= rank_b else b


def _required(items: Any) -> Keywords | None:
    """Keywords one of which every match of the parsed sequence ``items`` contains."""
    c = _constants
    best: Keywords | None = None
    run: list[str] = []
    for op, av in [*items, (None, None)]:  # the sentinel closes the last literal run
        if op is c.LITERAL and av < 128:
            run.append(chr(av).lower())
            continue
        if run:
            best = _better(best, frozenset({"".join(run)}))
            run = []
        if op is c.SUBPATTERN:
            best = _better(best, _required(av[3]))
        elif op is c.ATOMIC_GROUP:
            best = _better(best, _required(av))
        elif op is c.BRANCH:
            branches = [_required(branch) for branch in av[1]]
            if branches and all(b is not None for b in branches):
                best = _better(best, frozenset().union(*(b for b in branches if b)))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT) and av[0] >= 1:
            best = _better(best, _required(av[2]))
    return best


def _minimal(keywords: Keywords) -> Keywords:
    """Drop keywords that contain another keyword (finding the shorter one is enough)."""
    return frozenset(k for k in keywords if not any(o != k and o in k for o in keywords))


class _Source(Protocol):
    """A compiled pattern's source and flags (``re.Pattern`` or classify's RE2 pattern)."""

    @property
    def pattern(self) -> str | bytes: ...

    @property
    def flags(self) -> int: ...


def required_keywords(pattern: _Source) -> Keywords | None:
    """Keywords one of which the :func:`fold` of any string ``pattern`` finds a match in holds.

    ``None`` when no such set can be derived (the pattern must then always be run).
    """
    if _parser is None or not isinstance(pattern.pattern, str):
        return None
    try:
        keywords = _required(_parser.parse(pattern.pattern, pattern.flags))
    except Exception:  # noqa: BLE001 - a private parser: any surprise means "no prefilter"
        return None
    return _minimal(keywords) if keywords else None
