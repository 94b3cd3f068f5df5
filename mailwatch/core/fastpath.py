"""The classifier's fast path: a subject read once, a dictionary lookup per token (pure).

:meth:`Classifier.classify <mailwatch.core.classify.Classifier.classify>` asks three things of
a subject: which words of its vocabulary each token stands for, which words of its negatives
(``unless``) it holds, and which rules could match at all (a rule needs, from each of its
groups of terms, a key word present). A :class:`TokenIndex` answers all three for a token at
once and keeps the answer, so reading a subject costs one fold, one tokenising regex and one
dictionary lookup per token:

* which words a token stands for, as :meth:`Vocabulary.lookup` answers (typos and prefixes
  included), in the classifier's vocabulary and in its negatives';
* the *groups* it opens, as bits: one bit per group of terms a rule needs, set when the token
  stands for one of that group's key words;
* the *steps* it opens, as bits: one bit per rule (in classification order) whose first needed
  group it opens.

A subject's :class:`Reading` ORs these together: the rules worth trying are the bits of
``steps`` plus the rules that need no word, in order, and a rule whose needed groups are not
all in ``groups`` cannot match. Most mail holds no key word and is done there. For a rule worth
trying, :func:`run` builds the :class:`Resolved` subject once per message, exactly as the plain
path builds it, and searches it with :meth:`TermSet.first` (the answer of
:meth:`TermSet.find`, found faster). So the fast path finds the same terms, evidence and
``unless`` notes as the plain one (``Classifier.explain(message, reference=True)``);
``tests/unit/test_classify_fastpath.py`` checks that under hypothesis.

A token that is not all letters stands only for itself (typos and prefixes are for words), so
one in neither vocabulary (a case reference, a date) is answered without being kept: the
answers kept are for words, and the store of them is emptied when it reaches
:data:`CACHE_SIZE` entries (an answer is a pure function of the token: emptying costs time
only). The classifications made are kept the same way, per rule and evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import NamedTuple

from mailwatch.core.model import Classification, Message, Priority
from mailwatch.core.prefilter import fold
from mailwatch.core.terms import Resolved, TermSet, Tokens, Vocabulary, describe, fold_text
from mailwatch.core.terms import words_of as _words_of

CACHE_SIZE = 1 << 16
"""Answers (and classifications) kept per classifier before the store of them is emptied."""

_NOTHING: frozenset[str] = frozenset()


class _Answer(NamedTuple):
    """What one token means to the classifier."""

    meaning: frozenset[str]
    negative: frozenset[str]
    groups: int
    steps: int


_NONE = _Answer(_NOTHING, _NOTHING, 0, 0)
_MEANING, _NEGATIVE = itemgetter(0), itemgetter(1)


class FastStep(NamedTuple):
    """One rule in classification order, as :func:`run` tries it."""

    name: str
    label: str
    priority: Priority
    keywords: tuple[str, ...] | None
    """Keywords one of which the folded subject must hold (the regex prefilter), if any."""
    terms: Callable[[Resolved], str | None] | None
    """For a rule of terms only: its evidence from the resolved subject."""
    match: Callable[[Message, str, Resolved | None], str | None]
    """Any other rule: its own match (given the resolved subject if it has terms)."""
    has_terms: bool
    unless: TermSet


class TokenIndex:
    """Per-token answers for one classifier (see the module docstring)."""

    __slots__ = ("_answers", "_exact", "_group_bits", "_negatives", "_step_bits", "_vocabulary",
                 "always", "required")  # fmt: skip

    def __init__(
        self,
        vocabulary: Vocabulary,
        negatives: Vocabulary,
        needs: Sequence[tuple[frozenset[str], ...]],
    ) -> None:
        """Index for rules in classification order; ``needs[i]``: rule ``i``'s word groups."""
        self._vocabulary = vocabulary
        self._negatives = negatives
        self._exact = vocabulary.words | negatives.words
        group_bits: dict[str, int] = {}
        step_bits: dict[str, int] = {}
        required: list[int] = []
        always = 0
        bit = 0
        for step, groups in enumerate(needs):
            bits = 0
            for group in groups:
                for word in group:
                    group_bits[word] = group_bits.get(word, 0) | 1 << bit
                bits |= 1 << bit
                bit += 1
            required.append(bits)
            if groups:
                for word in groups[0]:
                    step_bits[word] = step_bits.get(word, 0) | 1 << step
            else:
                always |= 1 << step
        self._group_bits = group_bits
        self._step_bits = step_bits
        self.required = tuple(required)
        """Per rule, the bits of the groups it needs."""
        self.always = always
        """The bits of the rules that need no word (tried for every subject)."""
        self._answers: dict[str, _Answer] = {}

    def _answer(self, token: str) -> _Answer:
        if not token.isalpha() and token not in self._exact:
            return _NONE  # a number or mixed token in no vocabulary: nothing, and not kept
        meaning = self._vocabulary.lookup(token)
        negative = self._negatives.lookup(token)
        groups = steps = 0
        for word in meaning:
            groups |= self._group_bits.get(word, 0)
            steps |= self._step_bits.get(word, 0)
        answer = _Answer(meaning, negative, groups, steps) if meaning or negative else _NONE
        answers = self._answers
        if len(answers) >= CACHE_SIZE:
            answers.clear()
        answers[token] = answer
        return answer

    def read(self, subject: str) -> Reading:
        """Read ``subject`` (already cut to the classifier's length limit)."""
        folded = fold_text(subject)
        words = _words_of(folded)
        get = self._answers.get
        answers = [get(word) or self._answer(word) for word in words]
        groups = steps = negative = 0
        for answer in answers:
            if answer is not _NONE:
                groups |= answer.groups
                steps |= answer.steps
                negative |= bool(answer.negative)
        return Reading(subject, folded, words, answers, groups, steps | self.always, negative)


class Reading:
    """One subject as the index read it; the :class:`Resolved` forms are built when asked."""

    __slots__ = ("_answers", "_negative", "_negatives", "_resolved", "folded", "groups", "steps",
                 "text", "words")  # fmt: skip

    def __init__(
        self,
        text: str,
        folded: str,
        words: list[str],
        answers: list[_Answer],
        groups: int,
        steps: int,
        negative: int,
    ) -> None:
        """What :meth:`TokenIndex.read` found (see there)."""
        self.text = text
        self.folded = folded
        self.words = words
        self._answers = answers
        self.groups = groups
        """Bits of the word groups that some token opens."""
        self.steps = steps
        """Bits of the rules worth trying."""
        self._negative = negative
        self._resolved: Resolved | None = None
        self._negatives: Resolved | None = None

    @property
    def resolved(self) -> Resolved:
        """The subject's tokens and their meanings in the vocabulary."""
        if self._resolved is None:
            tokens = Tokens(tuple(self.words), self.folded, self.text)
            meanings = tuple(map(_MEANING, self._answers))
            self._resolved = Resolved(tokens, meanings, _NOTHING.union(*meanings))
        return self._resolved

    @property
    def negatives(self) -> Resolved:
        """The subject's tokens and their meanings in the negatives' vocabulary."""
        if self._negatives is None:
            tokens = self.resolved.tokens
            if self._negative:
                meanings = tuple(map(_NEGATIVE, self._answers))
                self._negatives = Resolved(tokens, meanings, _NOTHING.union(*meanings))
            else:  # no negative word here: what the union would give, without it
                self._negatives = Resolved(tokens, (_NOTHING,) * len(self.words), _NOTHING)
        return self._negatives


def run(
    plan: Sequence[FastStep],
    index: TokenIndex,
    message: Message,
    subject: str,
    notes: list[str] | None,
    made: dict[tuple[int, str], Classification],
) -> Classification | None:
    """The classification of ``message`` (``subject``: its subject cut to length), or ``None``.

    The plain path's loop (``Classifier._run``) over the rules worth trying only; ``made``
    keeps the classifications returned, by rule and evidence (equal values, built once).
    """
    reading = index.read(subject)
    required, groups = index.required, reading.groups
    refused: str | None = None
    folded: str | None = None
    steps = reading.steps
    while steps:
        low = steps & -steps
        steps ^= low
        number = low.bit_length() - 1
        step = plan[number]
        need = required[number]
        if step.name == refused or need & groups != need:
            continue  # a class set aside, or a group of terms none of whose words is here
        if step.keywords is not None:
            folded = fold(subject) if folded is None else folded
            if not any(keyword in folded for keyword in step.keywords):
                continue
        if step.terms is not None:
            evidence = step.terms(reading.resolved)
        else:
            evidence = step.match(message, subject, reading.resolved if step.has_terms else None)
        if evidence is None:
            continue
        veto = step.unless.first(reading.negatives) if step.unless else None
        if veto is not None:
            refused = step.name  # the rest of this class's rules too
            if notes is not None:
                notes.append(f"not {step.name}: {describe(*veto)} (unless)")
            continue
        return _made(made, number, step, evidence)
    return None


def _made(
    made: dict[tuple[int, str], Classification], number: int, step: FastStep, evidence: str
) -> Classification:
    found = made.get((number, evidence))
    if found is None:
        if len(made) >= CACHE_SIZE:
            made.clear()
        found = made[number, evidence] = Classification(
            step.name, step.priority, step.label, evidence
        )
    return found
