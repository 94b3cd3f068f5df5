r"""Term matching: key words and phrases found in a subject however it is written (pure).

A subject is first reduced to *tokens* (:func:`tokenise`): invisible characters (zero-width
spaces, joiners, soft hyphens, bidi marks) and accents removed, case folded, and every run of
letters or of digits one token; everything else (spaces, hyphens, underscores, dashes,
punctuation) only separates. So ``Emergency_Recall``, ``EMERGENCY-RECALL``,
``emergency\u200brecall`` and ``Émergency recall`` are all the tokens ``emergency recall``, and
``L3`` is ``l 3``.

A :class:`Term` is a phrase of words written as in the taxonomy (``"emergency recall"``):

* it matches consecutive tokens, or the phrase run together as one token (``emergencyrecall``,
  ``PartA``);
* a word of 6 or more letters (and no digits) also matches a token one edit away (a letter
  missing, added, changed, or two neighbours swapped: ``emergncy``, ``safegaurding``), unless
  the token is a common word of its own (``beach`` is not a typo of ``breach``); shorter words
  match exactly;
* a word ending in ``*`` matches any token it begins (``escalat*``: escalated, escalating);
* ``^`` at the start anchors the term to the start of the subject; a term written
  ``^Prefix:`` matches a subject that starts with exactly that text, case included: a
  machine-made prefix (``"^Recall:"``: Outlook's recall request; ``RECALL: Part A`` is a
  person shouting, not Outlook).

Negative terms (a class's ``unless``) are looked up exactly (``Vocabulary(fuzzy=False)``): a
typo tolerance there would set real mail aside for a near word ("police" is one edit from
"policy"), and a missed P1 costs more than a false one.

Each token is looked up once in a :class:`Vocabulary` (every word of every term), through an
index of one-letter deletions (no regex per variant, no scan of the vocabulary), and the
answer is cached: classifying costs a dictionary lookup per token once the cache is warm.
Tokenising uses linear regexes only, on at most as many characters as the caller passes.
"""

from __future__ import annotations

import enum
import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

MIN_FUZZY = 6
"""Words of at least this many letters tolerate one edit; shorter words match exactly."""

NOT_TYPOS = frozenset(
    {"beach", "bleach", "breath", "broach", "preach", "recoil", "reveal", "relapse", "escalator",
     "leases", "release", "released", "releases", "protect", "protects", "detection", "projection",
     "referrer", "referred", "refusal", "deferral", "standards", "standing", "seriously",
     "emerging", "emergent", "revolution", "resolution", "revocable", "mashed", "victims"}
)  # fmt: skip
"""Real words one edit from a key word: never read as its typo."""

_TOKEN = re.compile(r"[^\W\d_]+|\d+")
_ASCII_TOKEN = re.compile(r"[a-z]+|[0-9]+")
"""The same tokens in lower-case ASCII text (where the two classes mean the same), faster."""


def words_of(folded: str) -> list[str]:
    """The tokens of text already folded (:func:`fold_text`)."""
    return (_ASCII_TOKEN if folded.isascii() else _TOKEN).findall(folded)


class Tokens(NamedTuple):
    """A subject's tokens, and the text they were read from."""

    words: tuple[str, ...]
    folded: str = ""
    """The folded text (:func:`fold_text`): where colons are looked for."""
    text: str = ""
    """The text as given (``^Prefix:`` terms compare its start exactly)."""

    def colon_after(self, index: int) -> bool:
        """A colon follows token ``index`` directly."""
        for number, found in enumerate(_TOKEN.finditer(self.folded)):
            if number == index:
                end = found.end()
                return self.folded[end : end + 1] == ":"
        return False


@functools.lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    """One non-ASCII character folded: no accents, no invisible marks, lower case."""
    if char in "\u200b\u2060\ufeff\u180e\u3000":
        return " "
    category = unicodedata.category(char)
    if category in ("Cf", "Mn", "Me", "Cc", "Co", "Cs"):
        return ""  # soft hyphen, joiners, bidi marks, combining accents: not there
    decomposed = unicodedata.normalize("NFKD", char)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


class _FoldTable(dict[int, str]):
    """``str.translate`` table folding each character as :func:`_fold_char` does, filled as met."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        folded = char if char.isascii() else _fold_char(char)
        if len(self) < 1 << 16:  # every code point is at most 1.1 million small entries
            self[code] = folded
        return folded


_FOLD_TABLE = _FoldTable()


def fold_text(text: str) -> str:
    """``text`` in the form tokens are read from (ASCII subjects: just lower-cased)."""
    if text.isascii():
        return text.lower()
    return text.translate(_FOLD_TABLE).lower()


def tokenise(text: str) -> Tokens:
    """The tokens of ``text`` (see the module docstring)."""
    folded = fold_text(text)
    return Tokens(tuple(words_of(folded)), folded, text)


def one_edit(a: str, b: str) -> bool:
    """``a`` and ``b`` differ by at most one insertion, deletion, substitution or swap."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if la == lb:
        i = next(i for i in range(la) if a[i] != b[i])
        if a[i + 1 :] == b[i + 1 :]:
            return True
        return i + 1 < la and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]
    if abs(la - lb) != 1:
        return False
    if la > lb:
        a, b = b, a
    i = next((i for i in range(len(a)) if a[i] != b[i]), len(a))
    return a[i:] == b[i + 1 :]


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))} | {word}


@dataclass(frozen=True, slots=True)
class Term:
    """A phrase to look for (parsed from the text written in the taxonomy)."""

    text: str
    words: tuple[str, ...]
    """Folded words; one ending in ``*`` is a prefix."""
    anchored: bool = False
    colon: bool = False
    joined: str | None = field(init=False, compare=False, repr=False)
    """The phrase run together (``emergencyrecall``), if it has several plain words."""
    prefix: str | None = field(init=False, compare=False, repr=False)
    """For ``^Prefix:`` terms, the text the subject must start with, case included."""

    def __post_init__(self) -> None:
        plain = len(self.words) > 1 and not any(w.endswith("*") for w in self.words)
        object.__setattr__(self, "joined", "".join(self.words) if plain else None)
        prefix = self.text[1:] if self.anchored and self.colon else None
        object.__setattr__(self, "prefix", prefix)


def parse_term(text: str) -> Term:
    """A :class:`Term` from its written form; ``ValueError`` if it has no word."""
    body = text.strip()
    anchored = body.startswith("^")
    colon = body.endswith(":")
    body = body.removeprefix("^").removesuffix(":")
    words: list[str] = []
    for raw in body.split():
        prefix = raw.endswith("*")
        tokens = tokenise(raw.removesuffix("*")).words
        if prefix and tokens:
            tokens = (*tokens[:-1], tokens[-1] + "*")
        words.extend(tokens)
    if not words:
        raise ValueError(f"{text!r} is not a term: it has no letters or digits")
    return Term(text.strip(), tuple(words), anchored, colon)


class Vocabulary:
    """Every word of every term, with the index that answers "which words is this token?"."""

    def __bool__(self) -> bool:
        return bool(self._exact or self._prefixes)

    def __init__(self, terms: Iterable[Term], *, fuzzy: bool = True) -> None:
        exact: set[str] = set()
        prefixes: set[str] = set()
        for term in terms:
            for word in (*term.words, *([term.joined] if term.joined else [])):
                (prefixes.add(word[:-1]) if word.endswith("*") else exact.add(word))
        self._exact = frozenset(exact)
        self._prefixes = tuple(sorted(prefixes))
        index: dict[str, set[str]] = {}
        for word in exact:
            if fuzzy and len(word) >= MIN_FUZZY and word.isalpha():  # not "level3" for "level"
                for variant in _deletions(word):
                    index.setdefault(variant, set()).add(word)
        self._index = {k: frozenset(v) for k, v in index.items()}
        self.resolve = functools.lru_cache(maxsize=1 << 16)(self.lookup)

    @property
    def words(self) -> frozenset[str]:
        """The words matched exactly (every word, without the prefixes)."""
        return self._exact

    def lookup(self, token: str) -> frozenset[str]:
        """The vocabulary words (prefixes with their ``*``) that ``token`` stands for."""
        exact = token in self._exact
        if not token.isalpha():  # digits: exact only
            return frozenset((token,)) if exact else _NOTHING
        found = {token} if exact else set()
        found.update(p + "*" for p in self._prefixes if token.startswith(p))
        if len(token) >= MIN_FUZZY - 1 and token not in NOT_TYPOS and self._index:
            index = self._index
            for variant in _deletions(token):
                for word in index.get(variant, ()):
                    if word not in found and one_edit(token, word):
                        found.add(word)
        return frozenset(found) if found else _NOTHING


_NOTHING: frozenset[str] = frozenset()


class Resolved(NamedTuple):
    """A subject's tokens, what each stands for, and all the words present."""

    tokens: Tokens
    meanings: tuple[frozenset[str], ...]
    present: frozenset[str]
    starts: tuple[int, ...] | None = None
    """The indexes of the meanings that are not empty, if known (:meth:`TermSet.first`)."""


def resolve(vocabulary: Vocabulary, tokens: Tokens) -> Resolved:
    """Look every token up once."""
    meanings = tuple(map(vocabulary.resolve, tokens.words))
    return Resolved(tokens, meanings, _NOTHING.union(*meanings))


def _last(term: Term, joined: bool, start: int, subject: Resolved) -> int | None:
    """The index of the last token of ``term`` found at ``start``, or ``None``."""
    if term.anchored and start:
        return None
    if joined:
        last = start
    else:
        words, meanings = term.words, subject.meanings
        last = start + len(words) - 1
        if last >= len(meanings) or any(
            words[k] not in meanings[start + k] for k in range(1, len(words))
        ):
            return None
    if term.colon and not subject.tokens.colon_after(last):
        return None
    return last


class TermSet:
    """Terms compiled for lookup: each indexed by its first word and its run-together form."""

    __slots__ = ("_by_key", "_first", "_prefixes", "keys", "terms")

    def __init__(self, terms: Iterable[Term]) -> None:
        self.terms = tuple(terms)
        self._prefixes = tuple(t for t in self.terms if t.prefix is not None)
        by_key: dict[str, list[tuple[int, Term, bool]]] = {}
        for index, term in enumerate(self.terms):
            if term.prefix is None:
                by_key.setdefault(term.words[0], []).append((index, term, False))
                if term.joined is not None:
                    by_key.setdefault(term.joined, []).append((index, term, True))
        self._by_key = {key: tuple(entries) for key, entries in by_key.items()}
        self._first = {
            key: tuple((i, term, joined, *_shape(term, joined)) for i, term, joined in entries)
            for key, entries in self._by_key.items()
        }
        self.keys = frozenset(by_key)
        """Words one of which a subject must hold for any term here to occur in it."""

    def __bool__(self) -> bool:
        return bool(self.terms)

    @property
    def has_prefix(self) -> bool:
        """Some term is a ``^Prefix:`` (found without any of :attr:`keys`)."""
        return bool(self._prefixes)

    def find(self, subject: Resolved) -> tuple[Term, str] | None:
        """The term found earliest in the subject (first listed on a tie), and where."""
        for term in self._prefixes:  # machine-made prefixes, exactly as written
            if term.prefix is not None and subject.tokens.text.startswith(term.prefix):
                return term, term.prefix
        if self.keys.isdisjoint(subject.present):
            return None
        by_key, words = self._by_key, subject.tokens.words
        for start, meaning in enumerate(subject.meanings):
            best: tuple[int, Term, int] | None = None
            for key in meaning:
                for index, term, joined in by_key.get(key, ()):
                    if best is not None and best[0] <= index:
                        continue
                    last = _last(term, joined, start, subject)
                    if last is not None:
                        best = (index, term, last)
            if best is not None:
                return best[1], " ".join(words[start : best[2] + 1])
        return None

    def _prefix_at(self, text: str) -> tuple[Term, str] | None:
        """The first ``^Prefix:`` term ``text`` starts with, and the prefix."""
        for term in self._prefixes:
            if term.prefix is not None and text.startswith(term.prefix):
                return term, term.prefix
        return None

    def first(self, subject: Resolved) -> tuple[Term, str] | None:
        """What :meth:`find` answers, found faster.

        A key's terms are listed in order, so the first found is its best; a term of one token
        (or run together) without ``^`` or ``:`` is found at once.
        """
        if self._prefixes and (hit := self._prefix_at(subject.tokens.text)) is not None:
            return hit
        if self.keys.isdisjoint(subject.present):
            return None
        table, limit, meanings = self._first, len(self.terms), subject.meanings
        end = len(meanings) - 1
        for start in range(len(meanings)) if subject.starts is None else subject.starts:
            meaning = meanings[start]
            if not meaning:
                continue
            best_index, best_term, best_last = limit, None, start
            after = meanings[start + 1] if start < end else _NOTHING
            for key in meaning:
                for index, term, joined, shape, second in table.get(key, ()):
                    if index >= best_index:
                        break
                    if shape is _Shape.AT_ONCE:
                        last: int | None = start
                    elif shape is _Shape.PAIR:
                        last = start + 1 if second in after else None
                    else:
                        last = _last(term, joined, start, subject)
                    if last is not None:
                        best_index, best_term, best_last = index, term, last
                        break
            if best_term is not None:
                return best_term, " ".join(subject.tokens.words[start : best_last + 1])
        return None


class _Shape(enum.Enum):
    """How :meth:`TermSet.first` decides a term found at a token of its key."""

    AT_ONCE = "one token (or run together): found"
    PAIR = "two words: found if the next token is the second"
    OTHER = "anything else: as _last decides"


def _shape(term: Term, joined: bool) -> tuple[_Shape, str]:
    """``term``'s shape when looked up by this key, and its second word (or ``""``)."""
    if term.anchored or term.colon:
        return _Shape.OTHER, ""
    if joined or len(term.words) == 1:
        return _Shape.AT_ONCE, ""
    if len(term.words) == 2:
        return _Shape.PAIR, term.words[1]
    return _Shape.OTHER, ""


def describe(term: Term, found: str) -> str:
    """``'emergency recall'``, or ``'emergency recall' as 'emergncy recall'`` if written so."""
    return f"{term.text!r}" if found == " ".join(term.words) else f"{term.text!r} as {found!r}"
