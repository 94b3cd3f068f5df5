"""The classifier's fast path: the same answers as its plain path, mostly without the work (pure).

:meth:`Classifier.classify <mailwatch.core.classify.Classifier.classify>` reads the subject
once with a :class:`~mailwatch.core.tokenindex.TokenIndex` (a dictionary lookup per token), and
tries only the rules the words present allow, in classification order, as the plain path does
(``Classifier._run``; ``Classifier.explain(message, reference=True)``). Term sets are searched
with :meth:`TermSet.first` (what :meth:`TermSet.find` answers, found faster).

Rules of terms only depend on nothing but the subject's *shape* (its meaningful tokens in
order, the rest as gaps, and which ``^Prefix:`` terms it starts with; see
:mod:`mailwatch.core.tokenindex`). So a :class:`FastPath` keeps, per shape, the *outcome* of
those rules: the rules worth trying in order, and for each rule of terms only the
classification it gives or the ``unless`` note that sets its class aside. Subjects that differ
only in names, case references and dates ("Part A recall request - J Bloggs - X123456") share
one shape, so the second costs the read and a dictionary lookup. Every other rule (headers,
senders, regexes) is still tried on each message, at its place in the order. A configuration
with a term that must be followed by a colon (not a ``^Prefix:``) depends on more than the
shape, and is never kept per shape. ``tests/unit/test_classify_fastpath.py`` checks under
hypothesis that both paths give the same classification and notes.

Outcomes are kept for at most :data:`SHAPES` shapes; the store is emptied when full (the
outcome is a pure function of the shape: emptying costs time only). Classifications are made
once per rule and evidence, and shared (they are immutable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from mailwatch.core.model import Classification, Message, Priority
from mailwatch.core.prefilter import fold
from mailwatch.core.terms import Resolved, Term, TermSet, Vocabulary, describe
from mailwatch.core.tokenindex import Reading, Shape, TokenIndex

SHAPES = 1 << 14
"""Outcomes kept per classifier before the store of them is emptied."""


class FastStep(NamedTuple):
    """One rule in classification order, as the fast path tries it."""

    name: str
    label: str
    priority: Priority
    keywords: tuple[str, ...] | None
    """Keywords one of which the folded subject must hold (the regex prefilter), if any."""
    terms: tuple[TermSet, ...] | None
    """For a rule of terms only: its groups of terms (``MatchRule.term_groups``)."""
    match: Callable[[Message, str, Resolved | None], str | None]
    """Any other rule: its own match (given the resolved subject if it has terms)."""
    has_terms: bool
    unless: TermSet
    headers: tuple[str, ...] = ()
    """Headers the rule needs present (a message without one of them is not tried)."""


_Event = tuple[FastStep, bool, Classification | None, str]
"""One rule worth trying for a shape: the rule; whether it is tried on each message (not of
terms only); else the classification it gives, or ``None`` and the note (``not
recall_standard: 'training' (unless)``) if its class's ``unless`` sets it aside."""


class FastPath:
    """A classifier's rules, index and outcomes per shape (see the module docstring)."""

    __slots__ = ("_classifications", "_index", "_keep", "_outcomes", "_plan")

    def __init__(
        self,
        plan: Sequence[FastStep],
        needs: Sequence[tuple[frozenset[str], ...]],
        vocabulary: Vocabulary,
        negatives: Vocabulary,
        terms: Sequence[Term],
    ) -> None:
        """``plan`` and ``needs`` in classification order; ``terms``: all, negatives too."""
        prefixes = sorted({t.prefix for t in terms if t.prefix is not None})
        self._plan = tuple(plan)
        self._index = TokenIndex(vocabulary, negatives, needs, prefixes)
        self._keep = not any(t.colon and t.prefix is None for t in terms)
        self._outcomes: dict[Shape, tuple[_Event, ...]] = {}
        self._classifications: dict[tuple[int, str], Classification] = {}

    def classify(
        self, message: Message, subject: str, notes: list[str] | None
    ) -> Classification | None:
        """The class of ``message`` (``subject``: its subject cut to length), or ``None``."""
        reading = self._index.read(subject)
        outcomes = self._outcomes
        events = outcomes.get(reading.shape) if self._keep else None
        if events is None:
            events = self._events(reading)
            if self._keep:
                if len(outcomes) >= SHAPES:
                    outcomes.clear()
                outcomes[reading.shape] = events
        refused: str | None = None
        for step, live, kept, kept_note in events:
            if step.name == refused:
                continue
            result, note = self._try(step, message, subject, reading) if live else (kept, kept_note)
            if result is not None:
                return result
            if note:
                refused = step.name  # the rest of this class's rules too
                if notes is not None:
                    notes.append(note)
        return None

    def _events(self, reading: Reading) -> tuple[_Event, ...]:
        """The outcome of the rules worth trying on this reading's shape."""
        required = self._index.required
        groups, steps = reading.groups, reading.steps
        events: list[_Event] = []
        while steps:
            low = steps & -steps
            steps ^= low
            number = low.bit_length() - 1
            if required[number] & groups != required[number]:
                continue  # a group of terms none of whose words is here
            step = self._plan[number]
            if step.terms is None:
                events.append((step, True, None, ""))
                continue
            evidence = _terms_match(step.terms, reading.resolved)
            if evidence is None:
                continue
            note = _veto(step, reading)
            result = None if note else self._made(number, step, evidence)
            events.append((step, False, result, note))
            if result is not None:
                break  # nothing after it is ever reached
        return tuple(events)

    def _made(self, number: int, step: FastStep, evidence: str) -> Classification:
        """Rule ``number``'s classification with this evidence (equal values made once)."""
        made = self._classifications
        found = made.get((number, evidence))
        if found is None:
            if len(made) >= SHAPES:
                made.clear()
            found = made[number, evidence] = Classification(
                step.name, step.priority, step.label, evidence
            )
        return found

    @staticmethod
    def _try(
        step: FastStep, message: Message, subject: str, reading: Reading
    ) -> tuple[Classification | None, str]:
        """A rule that is not of terms only, tried on the message: its result or veto note."""
        for name in step.headers:
            if message.headers.get(name) is None:
                return None, ""
        if step.keywords is not None:
            folded = fold(subject)
            if not any(keyword in folded for keyword in step.keywords):
                return None, ""
        evidence = step.match(message, subject, reading.resolved if step.has_terms else None)
        if evidence is None:
            return None, ""
        note = _veto(step, reading)
        if note:
            return None, note
        return Classification(step.name, step.priority, step.label, evidence), ""


def _terms_match(groups: tuple[TermSet, ...], resolved: Resolved) -> str | None:
    """``MatchRule.terms_match``, looking with :meth:`TermSet.first`."""
    if len(groups) == 1:
        hit = groups[0].first(resolved)
        return None if hit is None else "term " + describe(*hit)
    evidence: list[str] = []
    for group in groups:
        hit = group.first(resolved)
        if hit is None:
            return None
        evidence.append(describe(*hit))
    return "term " + " + ".join(evidence)


def _veto(step: FastStep, reading: Reading) -> str:
    """The note if the step's class's ``unless`` occurs in the subject, else ``""``."""
    if not step.unless or not (reading.shape[0] or reading.has_negative):
        return ""  # no negative word in the subject, and it starts with no ^Prefix: at all
    veto = step.unless.first(reading.negatives)
    return "" if veto is None else f"not {step.name}: {describe(*veto)} (unless)"
