"""Business classification of messages from configured rules (pure: no I/O, no clock).

A :class:`MessageClass` has a name, a priority, a "stuck after" SLA and match rules. A rule
matches when *all* of the conditions it sets hold; a class matches when *any* of its rules
does. Classes are tried in priority order (P1 first, then configuration order), and the first
match wins; a message nothing matches falls into the default class (``general``). A rule may
raise the priority of the messages it matches (e.g. MAPPA level 3 → P1).

Classification runs once per new message, so a large queue means many regex searches. A rule
whose subject pattern requires keywords (:mod:`mailwatch.prefilter`) is skipped outright when
the subject contains none of them: it could not have matched. Every other rule is tried as
written, so the result (class, priority, rule and ``matched_on``) is exactly the result of
trying every rule in order (``classify(message, prefilter=False)``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from mailwatch.durations import Duration
from mailwatch.model import Classification, Message, Priority
from mailwatch.prefilter import fold, required_keywords


@dataclass(frozen=True, slots=True)
class HeaderCondition:
    """A condition on one header: equal to a value (case-insensitive) or matching a regex."""

    name: str
    equals: str | None = None
    pattern: re.Pattern[str] | None = None

    def match(self, message: Message) -> str | None:
        """The header text that satisfied the condition, or ``None``."""
        value = message.headers.get(self.name)
        if value is None:
            return None
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

    subject: re.Pattern[str] | None = None
    subject_not: re.Pattern[str] | None = None
    """If it matches the subject, the rule does not (e.g. Outlook's ``Recall: `` notices)."""
    headers: tuple[HeaderCondition, ...] = ()
    senders: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    priority: Priority | None = None
    """If set, messages this rule matches get this priority instead of the class's."""

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

    def match(self, message: Message) -> str | None:
        """Describe what matched (e.g. ``subject 'emergency recall'``), or ``None``."""
        if not self._envelope_matches(message):
            return None
        if self.subject_not is not None and self.subject_not.search(message.subject):
            return None
        evidence: list[str] = []
        if self.subject is not None:
            found = self.subject.search(message.subject)
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


@dataclass(frozen=True, slots=True)
class Classifier:
    """Classifies messages against classes tried in priority order."""

    classes: tuple[MessageClass, ...]
    default: MessageClass
    _ordered: tuple[MessageClass, ...] = field(init=False, repr=False)
    _plan: tuple[_Step, ...] = field(init=False, repr=False)
    _unmatched: Classification = field(init=False, repr=False)

    def __post_init__(self) -> None:
        order = sorted(enumerate(self.classes), key=lambda pair: (pair[1].priority, pair[0]))
        ordered = tuple(c for _, c in order)
        object.__setattr__(self, "_ordered", ordered)
        plan = tuple(
            _Step(c.name, rule, f"{c.name} rule {index}", rule.priority or c.priority,
                  _keywords(rule.subject))
            for c in ordered
            for index, rule in enumerate(c.rules, start=1)
        )  # fmt: skip
        object.__setattr__(self, "_plan", plan)
        unmatched = Classification(self.default.name, self.default.priority, rule="default")
        object.__setattr__(self, "_unmatched", unmatched)

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

    def classify(self, message: Message, *, prefilter: bool = True) -> Classification:
        """The first matching class in priority order, or the default class.

        ``prefilter=False`` tries every rule's regexes (same result, slower: for tests).
        """
        folded = fold(message.subject) if prefilter else ""
        for name, rule, label, priority, keywords in self._plan:
            if prefilter and keywords is not None:
                for keyword in keywords:
                    if keyword in folded:
                        break
                else:
                    continue  # the subject has none of the words the pattern requires
            evidence = rule.match(message)
            if evidence is not None:
                return Classification(name, priority, label, evidence)
        return self._unmatched


class _Step(NamedTuple):
    """One rule in classification order, with what classify needs precomputed."""

    name: str
    rule: MatchRule
    label: str
    priority: Priority
    keywords: tuple[str, ...] | None


def _keywords(pattern: re.Pattern[str] | None) -> tuple[str, ...] | None:
    keywords = None if pattern is None else required_keywords(pattern)
    return None if keywords is None else tuple(sorted(keywords, key=lambda k: (-len(k), k)))
