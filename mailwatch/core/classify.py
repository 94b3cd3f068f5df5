"""Business classification of messages from configured rules (pure: no I/O, no clock).

A :class:`MessageClass` has a name, a priority, a "stuck after" SLA and match rules. A rule
matches when *all* of the conditions it sets hold; a class matches when *any* of its rules
does. Classes are tried in priority order (P1 first, then configuration order), and the first
match wins; a message nothing matches falls into the default class (``general``). A rule may
raise the priority of the messages it matches (e.g. MAPPA level 3 → P1).

Classification runs once per new message, so a large queue means many regex searches. A rule
whose subject pattern requires keywords (:mod:`mailwatch.core.prefilter`) is skipped outright when
the subject contains none of them: it could not have matched. Every other rule is tried as
written, so the result (class, priority, rule and ``matched_on``) is exactly the result of
trying every rule in order (``classify(message, prefilter=False)``). Terms are matched on the
fast path (:mod:`mailwatch.core.fastpath`: the subject read once, outcomes kept per subject
shape), which gives what this module's plain loop gives (``explain(message, reference=True)``).

Operator patterns run on RE2 (:func:`compile_pattern`), a linear-time engine: no pattern, however
written, can backtrack catastrophically on a hostile subject. RE2 has no lookarounds or back
references, so a configuration using them is refused by ``config check``. As a last guard the
classifier looks at most at the first :data:`MAX_CLASSIFIED_CHARS` characters of the subject
and of each header value: with every regex linear, that bounds the CPU time one message costs.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from mailwatch.core import fastpath
from mailwatch.core.durations import Duration
from mailwatch.core.model import Classification, Message, Priority
from mailwatch.core.patterns import SafePattern, TextPattern, compile_pattern
from mailwatch.core.prefilter import fold, required_keywords
from mailwatch.core.terms import (
    Resolved,
    Term,
    TermSet,
    Vocabulary,
    describe,
    resolve,
    tokenise,
)

__all__ = [
    "MAX_CLASSIFIED_CHARS",
    "Classifier",
    "HeaderCondition",
    "MatchRule",
    "MessageClass",
    "SafePattern",
    "TextPattern",
    "address_matches",
    "compile_pattern",
]

MAX_CLASSIFIED_CHARS = 4096
"""The classifier reads at most this many characters of a subject or header value."""


@dataclass(frozen=True, slots=True)
class HeaderCondition:
    """A condition on one header: equal to a value (case-insensitive) or matching a regex."""

    name: str
    equals: str | None = None
    pattern: TextPattern | None = None

    def match(self, message: Message) -> str | None:
        """The header text that satisfied the condition, or ``None``."""
        value = message.headers.get(self.name)
        if value is None:
            return None
        value = value[:MAX_CLASSIFIED_CHARS]
        if self.equals is not None and value.strip().casefold() != self.equals.casefold():
            return None
        if self.pattern is not None and not self.pattern.search(value):
            return None
        return value


def address_matches(glob: str, address: str) -> bool:
    """Match an address against ``user@host`` globs, or a bare domain glob (``*.cjsm.net``)."""
    address = address.lower()
    glob = glob.lower()
    if "@" in glob:
        return fnmatch.fnmatchcase(address, glob)
    _, _, domain = address.rpartition("@")
    return fnmatch.fnmatchcase(domain, glob)


@dataclass(frozen=True, slots=True)
class MatchRule:
    """Conditions that must all hold; unset conditions are ignored."""

    subject: TextPattern | None = None
    subject_not: TextPattern | None = None
    """If it matches the subject, the rule does not (e.g. Outlook's ``Recall: `` notices)."""
    headers: tuple[HeaderCondition, ...] = ()
    senders: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    priority: Priority | None = None
    """If set, messages this rule matches get this priority instead of the class's."""
    terms: tuple[Term, ...] = ()
    """One of these phrases must occur in the subject (:mod:`mailwatch.core.terms`)."""
    all_of: tuple[tuple[Term, ...], ...] = ()
    """From each group, one phrase must occur in the subject, anywhere, in any order."""

    _groups: tuple[TermSet, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups = ((self.terms,) if self.terms else ()) + self.all_of
        object.__setattr__(self, "_groups", tuple(TermSet(group) for group in groups))

    @property
    def terms_only(self) -> bool:
        """The rule has terms and no other condition: they alone decide its match."""
        return (
            bool(self._groups) and self.subject is None and self.subject_not is None
            and not (self.headers or self.senders or self.recipients or self.sources or self.queues)
        )  # fmt: skip

    @property
    def needs(self) -> tuple[frozenset[str], ...]:
        """Word sets the subject must meet, one per group (a quick test before matching)."""
        return tuple(group.keys for group in self._groups if not group.has_prefix)

    @property
    def term_groups(self) -> tuple[TermSet, ...]:
        """The groups of terms: ``terms`` (if any) first, then each of ``all_of``."""
        return self._groups

    def _terms_match(self, resolved: Resolved) -> str | None:
        evidence: list[str] = []
        for group in self._groups:
            hit = group.find(resolved)
            if hit is None:
                return None
            evidence.append(describe(*hit))
        return "term " + " + ".join(evidence)

    def _envelope_matches(self, message: Message) -> bool:
        return (
            (not self.sources or message.source in self.sources)
            and (not self.queues or message.queue in self.queues)
            and (not self.senders or any(address_matches(g, message.sender) for g in self.senders))
            and (
                not self.recipients
                or any(
                    address_matches(g, r.address)
                    for g in self.recipients
                    for r in message.recipients
                )
            )
        )

    def match(
        self, message: Message, subject: str | None = None, resolved: Resolved | None = None
    ) -> str | None:
        """Describe what matched (e.g. ``subject 'emergency recall'``), or ``None``.

        ``subject``: the subject to test, if not the message's own (the classifier passes
        the first :data:`MAX_CLASSIFIED_CHARS` characters); ``resolved``: its tokens looked
        up in the classifier's vocabulary (built here from this rule's terms if not given).
        """
        if not self._envelope_matches(message):
            return None
        if subject is None:
            subject = message.subject[:MAX_CLASSIFIED_CHARS]
        if self.subject_not is not None and self.subject_not.search(subject):
            return None
        evidence: list[str] = []
        if self.terms or self.all_of:
            if resolved is None:
                vocabulary = Vocabulary([*self.terms, *(t for g in self.all_of for t in g)])
                resolved = resolve(vocabulary, tokenise(subject))
            found_terms = self._terms_match(resolved)
            if found_terms is None:
                return None
            evidence.append(found_terms)
        if self.subject is not None:
            found = self.subject.search(subject)
            if not found:
                return None
            evidence.append(f"subject {found.group(0)!r}")
        for condition in self.headers:
            value = condition.match(message)
            if value is None:
                return None
            evidence.append(f"header {condition.name} {value!r}")
        evidence += [label for label, given in (
            ("sender", self.senders), ("recipient", self.recipients),
            (f"source {message.source}", self.sources), (f"queue {message.queue}", self.queues),
        ) if given]  # fmt: skip
        return ", ".join(evidence) or "always"


@dataclass(frozen=True, slots=True)
class MessageClass:
    """A business type of mail with its priority and SLA."""

    name: str
    priority: Priority
    stuck_after: Duration
    rules: tuple[MatchRule, ...] = ()
    description: str = ""
    unless: tuple[Term, ...] = ()
    """If one of these occurs in the subject, the message is not of this class."""
    negatives: TermSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "negatives", TermSet(self.unless))


@dataclass(frozen=True, slots=True)
class Classifier:
    """Classifies messages against classes tried in priority order."""

    classes: tuple[MessageClass, ...]
    default: MessageClass
    _ordered: tuple[MessageClass, ...] = field(init=False, repr=False)
    _plan: tuple[_Step, ...] = field(init=False, repr=False)
    _unmatched: Classification = field(init=False, repr=False)
    _vocabulary: Vocabulary = field(init=False, repr=False)
    _negatives: Vocabulary = field(init=False, repr=False)
    _always: frozenset[int] = field(init=False, repr=False)
    _by_word: dict[str, frozenset[int]] = field(init=False, repr=False)
    _fast: fastpath.FastPath = field(init=False, repr=False)

    def __post_init__(self) -> None:
        order = sorted(enumerate(self.classes), key=lambda pair: (pair[1].priority, pair[0]))
        ordered = tuple(c for _, c in order)
        object.__setattr__(self, "_ordered", ordered)
        plan = tuple(
            _Step(c.name, rule, f"{c.name} rule {index}", rule.priority or c.priority,
                  _keywords(rule.subject), rule.needs, c.negatives)
            for c in ordered
            for index, rule in enumerate(c.rules, start=1)
        )  # fmt: skip
        object.__setattr__(self, "_plan", plan)
        unmatched = Classification(self.default.name, self.default.priority, rule="default")
        object.__setattr__(self, "_unmatched", unmatched)
        terms = [t for c in ordered for r in c.rules for g in (r.terms, *r.all_of) for t in g]
        object.__setattr__(self, "_vocabulary", Vocabulary(terms))
        negatives = Vocabulary([t for c in ordered for t in c.unless], fuzzy=False)
        object.__setattr__(self, "_negatives", negatives)
        by_word: dict[str, set[int]] = {}
        for index, step in enumerate(plan):
            for word in step.needs[0] if step.needs else ():
                by_word.setdefault(word, set()).add(index)
        always = frozenset(i for i, step in enumerate(plan) if not step.needs)
        object.__setattr__(self, "_always", always)
        object.__setattr__(self, "_by_word", {w: frozenset(i) for w, i in by_word.items()})
        fast = fastpath.FastPath(
            [_fast_step(s) for s in plan], [s.needs for s in plan], self._vocabulary, negatives,
            [*terms, *(t for c in ordered for t in c.unless)],
        )  # fmt: skip
        object.__setattr__(self, "_fast", fast)

    def _steps(self, resolved: Resolved | None) -> Sequence[_Step]:
        """The steps that may match: rules whose first group of terms has a word present."""
        if resolved is None:
            return self._plan
        chosen = set(self._always)
        by_word = self._by_word
        for word in resolved.present:
            found = by_word.get(word)
            if found is not None:
                chosen |= found
        plan = self._plan
        return [plan[i] for i in sorted(chosen)]

    @classmethod
    def from_classes(
        cls, classes: Sequence[MessageClass], default_name: str = "general"
    ) -> Classifier:
        """Build from a list that contains the default class under ``default_name``."""
        default = next((c for c in classes if c.name == default_name), None)
        if default is None:
            raise ValueError(f"no default class named {default_name!r}")
        return cls(tuple(c for c in classes if c.name != default_name), default)

    @property
    def all_classes(self) -> tuple[MessageClass, ...]:
        """Every class, the default included, most urgent first."""
        return (*self._ordered, self.default)

    def get(self, name: str) -> MessageClass | None:
        """The class called ``name``, if configured."""
        return next((c for c in self.all_classes if c.name == name), None)

    def resolve(self, subject: str) -> Resolved:
        """The subject's tokens looked up in this classifier's vocabulary."""
        return resolve(self._vocabulary, tokenise(subject[:MAX_CLASSIFIED_CHARS]))

    def classify(self, message: Message, *, prefilter: bool = True) -> Classification:
        """The first matching class in priority order, or the default class.

        ``prefilter=False`` tries every rule's regexes on the plain path (same result,
        slower: for tests).
        """
        if prefilter and self._vocabulary:
            found = self._fast.classify(message, message.subject[:MAX_CLASSIFIED_CHARS], None)
            return self._unmatched if found is None else found
        return self._run(message, prefilter, None)

    def explain(
        self, message: Message, *, reference: bool = False
    ) -> tuple[Classification, tuple[str, ...]]:
        """The classification, and why classes that matched were set aside (``unless``).

        ``reference=True`` takes the plain path (same result, slower: for tests).
        """
        notes: list[str] = []
        if reference or not self._vocabulary:
            return self._run(message, True, notes), tuple(notes)
        found = self._fast.classify(message, message.subject[:MAX_CLASSIFIED_CHARS], notes)
        return (self._unmatched if found is None else found), tuple(notes)

    def _run(self, message: Message, prefilter: bool, notes: list[str] | None) -> Classification:
        subject = message.subject[:MAX_CLASSIFIED_CHARS]  # the CPU budget of one message
        folded = fold(subject) if prefilter else ""
        resolved = resolve(self._vocabulary, tokenise(subject)) if self._vocabulary else None
        refused: str | None = None
        steps = self._steps(resolved) if prefilter else self._plan
        for name, rule, label, priority, keywords, needs, unless in steps:
            if name == refused:
                continue
            if prefilter and keywords is not None:
                for keyword in keywords:
                    if keyword in folded:
                        break
                else:
                    continue  # the subject has none of the words the pattern requires
            if needs and resolved and not _meets(needs, resolved.present):
                continue  # a group of terms none of whose words the subject has
            evidence = rule.match(message, subject, resolved)
            if evidence is None:
                continue
            veto = None
            if unless and resolved:
                veto = unless.find(resolve(self._negatives, resolved.tokens))
            if veto is not None:
                refused = name  # the rest of this class's rules too
                if notes is not None:
                    notes.append(f"not {name}: {describe(*veto)} (unless)")
                continue
            return Classification(name, priority, label, evidence)
        return self._unmatched


class _Step(NamedTuple):
    """One rule in classification order, with what classify needs precomputed."""

    name: str
    rule: MatchRule
    label: str
    priority: Priority
    keywords: tuple[str, ...] | None
    needs: tuple[frozenset[str], ...]
    unless: TermSet


def _fast_step(step: _Step) -> fastpath.FastStep:
    rule = step.rule
    has_terms = bool(rule.terms or rule.all_of)
    terms = rule.term_groups if rule.terms_only else None
    headers = tuple(condition.name for condition in rule.headers)
    return fastpath.FastStep(step.name, step.label, step.priority, step.keywords, terms,
                             rule.match, has_terms, step.unless, headers)  # fmt: skip


def _meets(needs: tuple[frozenset[str], ...], present: frozenset[str]) -> bool:
    """Every group of ``needs`` has a word in ``present`` (a loop: cheaper than all())."""
    for need in needs:  # noqa: SIM110
        if need.isdisjoint(present):
            return False
    return True


def _keywords(pattern: TextPattern | None) -> tuple[str, ...] | None:
    keywords = None if pattern is None else required_keywords(pattern)
    return None if keywords is None else tuple(sorted(keywords, key=lambda k: (-len(k), k)))
