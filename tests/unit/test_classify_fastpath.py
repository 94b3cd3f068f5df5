"""The classifier's fast path gives what the plain path gives (mailwatch.core.fastpath).

``Classifier.classify`` and ``explain`` take the fast path (the subject read once, outcomes
kept per subject shape); ``explain(message, reference=True)`` and ``classify(message,
prefilter=False)`` take the plain path, the code the fast path replaced. Subjects are built
from the taxonomy's own terms, typos of them, its negatives and noise; every subject is also
tried again with other noise in the same places, so that kept outcomes are reused.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.config import settings as config
from mailwatch.core.classify import Classifier, HeaderCondition, MatchRule, MessageClass
from mailwatch.core.durations import Duration
from mailwatch.core.headers import normalise_subject
from mailwatch.core.model import Headers, Message, Priority, Recipient
from mailwatch.core.terms import Term, TermSet, fold_text, parse_term, resolve, tokenise, words_of

HOUR = Duration(seconds=3600)


def _message(subject: str, headers: tuple[tuple[str, str], ...] = ()) -> Message:
    normalised = normalise_subject(subject)
    return Message(
        key="t/1/0", source="pf1", queue_id="1", queue="deferred",
        arrival=datetime(2026, 3, 2, 9, tzinfo=UTC), size=1, sender="om@probation.example",
        recipients=(Recipient("ppcs@justice.example"),),
        headers=Headers((("Subject", subject), *headers)),
        subject=normalised.text, marking=normalised.marking,
    )  # fmt: skip


@functools.cache
def _shipped() -> Classifier:
    """One shipped classifier for every example: its kept outcomes carry over between them."""
    return config.load(None).classifier()


def _written(classifier: Classifier) -> tuple[list[str], list[str]]:
    """The classifier's terms and negatives as written (``^``/``:`` kept only for prefixes)."""
    terms, negatives = [], []
    for cls in classifier.all_classes:
        for rule in cls.rules:
            terms += [t.text for group in (rule.terms, *rule.all_of) for t in group]
        negatives += [t.text for t in cls.unless]
    strip = lambda text: text if text.endswith(":") else text.lstrip("^").rstrip("*")  # noqa: E731
    return sorted(set(map(strip, terms))), sorted(set(map(strip, negatives)))


TERMS, NEGATIVES = _written(_shipped())
NOISE = ["Sample Person", "X123456", "CRN A1234BC", "12/03/2026", "re", "of", "the", "Z0000123",
         "Team", "PDU North", "-", "\u2013", ":", "(2)", "[CJSM]", "RE:", "FW:", "\u200b", "\u00e9",
         "L3", "level", "3", "week", "a", "s", "for"]  # fmt: skip
SEPARATORS = [" ", "  ", " - ", "_", "-", ": ", ", ", ""]


@st.composite
def _typo(draw: st.DrawFn, text: str) -> str:
    """``text`` with one letter deleted, added, changed or swapped with its neighbour."""
    if len(text) < 2:
        return text
    at = draw(st.integers(0, len(text) - 2))
    letter = draw(st.sampled_from("aeilnorst"))
    edit = draw(st.sampled_from(["delete", "add", "change", "swap"]))
    return {
        "delete": text[:at] + text[at + 1 :],
        "add": text[:at] + letter + text[at:],
        "change": text[:at] + letter + text[at + 1 :],
        "swap": text[:at] + text[at + 1] + text[at] + text[at + 2 :],
    }[edit]


def _part(pool: list[str]) -> st.SearchStrategy[str]:
    word = st.sampled_from(pool)
    return st.one_of(word, word.flatmap(_typo), word.map(str.upper), word.map(str.title))


PARTS = st.lists(
    st.one_of(_part(TERMS), _part(NEGATIVES), st.sampled_from(NOISE), st.just(None)),
    max_size=7,
)


def _subjects(parts: list[str | None], separator: str, noise: tuple[str, str]) -> list[str]:
    """The subject twice: each ``None`` part is filled with one noise, then the other."""
    return [separator.join(n if p is None else p for p in parts) for n in noise]


def _same(classifier: Classifier, subject: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
    message = _message(subject, headers)
    assert classifier.explain(message) == classifier.explain(message, reference=True), subject
    assert classifier.classify(message) == classifier.classify(message, prefilter=False), subject


@settings(max_examples=1500, deadline=None, database=None)
@given(
    parts=PARTS,
    separator=st.sampled_from(SEPARATORS),
    noise=st.tuples(st.sampled_from(NOISE), st.sampled_from(NOISE)),
    prefix=st.sampled_from(["", "Recall: ", "RECALL: ", "Message Recall Failure: ", "RE: "]),
)
def test_shipped_taxonomy_fast_path_is_the_plain_path(
    parts: list[str | None], separator: str, noise: tuple[str, str], prefix: str
) -> None:
    """Terms, typos, negatives, prefixes and noise: same class, rule, evidence and notes."""
    for subject in _subjects(parts, separator, noise):
        _same(_shipped(), prefix + subject)


def _class(
    name: str, priority: Priority, rules: tuple[MatchRule, ...], unless: str = ""
) -> MessageClass:
    negatives = tuple(parse_term(t) for t in unless.split(",") if t)
    return MessageClass(
        name=name, priority=priority, stuck_after=HOUR, rules=rules, unless=negatives
    )


def _terms(*texts: str) -> tuple[Term, ...]:
    return tuple(parse_term(t) for t in texts)


def _mixed(colon: bool) -> Classifier:
    """Rules of terms only between header, sender and regex rules, negatives on both kinds."""
    marker = HeaderCondition("X-Case", pattern=re.compile("."))
    extra = ("urgent:",) if colon else ("urgent",)
    return Classifier.from_classes([
        _class("flagged", Priority.P1, (MatchRule(headers=(marker,), terms=_terms("recall")),
                                        MatchRule(terms=_terms("emergency recall", *extra))),
               unless="training,^Recall:"),
        _class("prefixed", Priority.P1, (MatchRule(terms=_terms("^Recall:")),)),
        _class("sent", Priority.P2, (MatchRule(senders=("*.example",), all_of=(
            _terms("breach", "enforcement"), _terms("court*"))),
                                     MatchRule(all_of=(_terms("breach"), _terms("notice")))),
               unless="data"),
        _class("regex", Priority.P2, (MatchRule(subject=re.compile(r"part\s*a", re.I)),
                                      MatchRule(terms=_terms("part a", "^request"))),
               unless="course"),
        _class("general", Priority.P4, ()),
    ])  # fmt: skip


MIXED = {colon: _mixed(colon) for colon in (False, True)}
MIXED_WORDS = ["recall", "Recall:", "emergency", "emergncy", "urgent", "urgent:", "training",
               "breach", "breech", "enforcement", "notice", "court", "courts", "data", "part",
               "a", "parta", "request", "course", "Sample", "X1", None, None]  # fmt: skip


@settings(max_examples=800, deadline=None, database=None)
@given(
    parts=st.lists(st.sampled_from(MIXED_WORDS), max_size=6),
    separator=st.sampled_from(SEPARATORS),
    noise=st.tuples(st.sampled_from(NOISE), st.sampled_from(NOISE)),
    header=st.sampled_from([(), (("X-Case", "1"),)]),
    colon=st.booleans(),
)
def test_mixed_rules_fast_path_is_the_plain_path(
    parts: list[str | None],
    separator: str,
    noise: tuple[str, str],
    header: tuple[tuple[str, str], ...],
    colon: bool,
) -> None:
    """Rules that read the message are tried in their place; a colon term is never kept."""
    for subject in _subjects(parts, separator, noise):
        _same(MIXED[colon], subject, header)


def _fold_plain(text: str) -> str:
    """fold_text as it was written before the translate table (the reference)."""
    if text.isascii():
        return text.lower()
    out = []
    for c in text:
        if c.isascii():
            out.append(c)
        elif c in "\u200b\u2060\ufeff\u180e\u3000":
            out.append(" ")
        elif unicodedata.category(c) in ("Cf", "Mn", "Me", "Cc", "Co", "Cs"):
            continue
        else:
            decomposed = unicodedata.normalize("NFKD", c)
            out.append("".join(d for d in decomposed if not unicodedata.combining(d)).casefold())
    return "".join(out).lower()


@given(st.text(max_size=60))
def test_fold_and_words_are_the_plain_ones(text: str) -> None:
    """The translate-table fold and the ASCII tokeniser give what the plain code gives."""
    folded = fold_text(text)
    assert folded == _fold_plain(text)
    assert words_of(folded) == re.findall(r"[^\W\d_]+|\d+", folded)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Subject", "X-Case", "x-case", "\u0130-Case", "To", "X-CASE2"]),
            st.text(max_size=3),
        ),
        max_size=5,
    ),
    st.sampled_from(["X-Case", "x-CASE", "i\u0307-case", "subject", "Nope"]),
)
def test_headers_get_is_the_plain_lookup(items: list[tuple[str, str]], name: str) -> None:
    """Skipping ASCII names of another length finds the same first value."""
    plain = next((v for k, v in items if k.lower() == name.lower()), None)
    assert Headers(tuple(items)).get(name) == plain


@settings(max_examples=500, deadline=None, database=None)
@given(parts=PARTS, separator=st.sampled_from(SEPARATORS), noise=st.sampled_from(NOISE))
def test_first_is_find(parts: list[str | None], separator: str, noise: str) -> None:
    """TermSet.first answers what TermSet.find answers, for every group and negative set."""
    shipped = _shipped()
    subject = separator.join(noise if p is None else p for p in parts)
    resolved = shipped.resolve(subject)
    negatives = resolve(shipped._negatives, tokenise(subject))
    for cls in shipped.all_classes:
        assert cls.negatives.first(negatives) == cls.negatives.find(negatives)
        for rule in cls.rules:
            for group in (rule.terms, *rule.all_of):
                terms = TermSet(group)
                assert terms.first(resolved) == terms.find(resolved)
