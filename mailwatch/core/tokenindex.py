"""A subject read once for the classifier's fast path: a dictionary lookup per token (pure).

The classifier asks three things of a subject: which words of its vocabulary each token stands
for, which words of its negatives (``unless``) it holds, and which rules could match at all (a
rule needs, from each of its groups of terms, a key word present). A :class:`TokenIndex`
answers all three for a token at once and keeps the answer, so reading a subject costs one
fold, one tokenising regex and one dictionary lookup per token:

* which words a token stands for, as :meth:`Vocabulary.lookup` answers (typos and prefixes
  included), in the classifier's vocabulary and in its negatives';
* the *groups* it opens, as bits: one bit per group of terms a rule needs, set when the token
  stands for one of that group's key words;
* the *steps* it opens, as bits: one bit per rule (in classification order) whose first needed
  group it opens.

A subject's :class:`Reading` ORs these together: the rules worth trying are the bits of
``steps`` plus the rules that need no word, and a rule whose needed groups are not all in
``groups`` cannot match. It also holds the subject's *shape*: its tokens that mean something to
the classifier, in order, with each run of the others as one ``None``, and which ``^Prefix:``
terms the subject starts with. Term matching sees nothing else of a subject (a case reference
or a name in between only separates), so subjects of one shape classify alike by their terms
(:mod:`mailwatch.core.fastpath` keeps the work done per shape).

A token that is not all letters stands only for itself (typos and prefixes are for words), so
one in neither vocabulary (a case reference, a date) is answered without being kept: the
answers kept are for words, and the store of them is emptied when it reaches
:data:`CACHE_SIZE` entries (an answer is a pure function of the token: emptying costs time
only).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import NamedTuple

from mailwatch.core.terms import Resolved, Tokens, Vocabulary, fold_text, words_of

CACHE_SIZE = 1 << 16
"""Token answers kept per classifier before the store of them is emptied."""

_NOTHING: frozenset[str] = frozenset()

Shape = tuple[int, tuple[str | None, ...]]
"""Which ``^Prefix:`` terms a subject starts with (bits), and its meaningful tokens in order."""


class _Answer(NamedTuple):
    """What one token means to the classifier."""

    meaning: frozenset[str]
    negative: frozenset[str]
    groups: int
    steps: int


_NONE = _Answer(_NOTHING, _NOTHING, 0, 0)
_MEANING, _NEGATIVE = itemgetter(0), itemgetter(1)


class TokenIndex:
    """Per-token answers for one classifier (see the module docstring)."""

    __slots__ = ("_answers", "_exact", "_group_bits", "_negatives", "_prefixes", "_step_bits",
                 "_vocabulary", "always", "required")  # fmt: skip

    def __init__(
        self,
        vocabulary: Vocabulary,
        negatives: Vocabulary,
        needs: Sequence[tuple[frozenset[str], ...]],
        prefixes: Sequence[str] = (),
    ) -> None:
        """Index for rules in classification order.

        ``needs[i]``: rule ``i``'s word groups; ``prefixes``: the ``^Prefix:`` texts of every
        term and negative (a subject's shape says which of them it starts with).
        """
        self._vocabulary = vocabulary
        self._negatives = negatives
        self._exact = vocabulary.words | negatives.words
        self._prefixes = tuple(prefixes)
        group_bits: dict[str, int] = {}
        step_bits: dict[str, int] = {}
        required: list[int] = []
        always = bit = 0
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
        words = words_of(folded)
        get, answer_of = self._answers.get, self._answer
        answers: list[_Answer] = []
        shape: list[str | None] = []
        found: list[int] = []  # the tokens that mean something
        groups = steps = 0
        gap = negative = False
        for word in words:
            answer = get(word) or answer_of(word)
            if answer is not _NONE:
                found.append(len(answers))
                shape.append(word)
                groups |= answer.groups
                steps |= answer.steps
                negative = negative or bool(answer.negative)
                gap = False
            elif not gap:
                shape.append(None)
                gap = True
            answers.append(answer)
        starts = 0
        for bit, prefix in enumerate(self._prefixes):
            if subject.startswith(prefix):
                starts |= 1 << bit
        reading = Reading(subject, folded, words, answers, (starts, tuple(shape)))
        reading.found, reading.groups, reading.steps = found, groups, steps | self.always
        reading.has_negative = negative
        return reading


class Reading:
    """One subject as the index read it; the :class:`Resolved` forms are built when asked."""

    __slots__ = ("_answers", "_negatives", "_resolved", "folded", "found", "groups",
                 "has_negative", "shape", "steps", "text", "words")  # fmt: skip

    def __init__(
        self, text: str, folded: str, words: list[str], answers: list[_Answer], shape: Shape
    ) -> None:
        """What :meth:`TokenIndex.read` found (see there)."""
        self.text = text
        self.folded = folded
        self.words = words
        self._answers = answers
        self.shape = shape
        self.found: list[int] = []
        """The indexes of the tokens that mean something to the classifier."""
        self.groups = 0
        """Bits of the word groups the tokens open."""
        self.steps = 0
        """Bits of the rules worth trying."""
        self.has_negative = False
        """Some token is a word of the negatives."""
        self._resolved: Resolved | None = None
        self._negatives: Resolved | None = None

    @property
    def resolved(self) -> Resolved:
        """The subject's tokens and their meanings in the vocabulary."""
        if self._resolved is None:
            answers = self._answers
            tokens = Tokens(tuple(self.words), self.folded, self.text)
            meanings = tuple(map(_MEANING, answers))
            starts = tuple([i for i in self.found if answers[i].meaning])
            self._resolved = Resolved(tokens, meanings, _NOTHING.union(*meanings), starts)
        return self._resolved

    @property
    def negatives(self) -> Resolved:
        """The subject's tokens and their meanings in the negatives' vocabulary."""
        if self._negatives is None:
            answers = self._answers
            meanings = tuple(map(_NEGATIVE, answers))
            starts = tuple([i for i in self.found if answers[i].negative])
            present = _NOTHING.union(*meanings) if starts else _NOTHING
            self._negatives = Resolved(self.resolved.tokens, meanings, present, starts)
        return self._negatives
