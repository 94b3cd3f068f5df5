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
trying every rule in order (``classify(message, prefilter=False)``).

Operator patterns run on RE2 (:func:`compile_pattern`), a linear-time engine: no pattern, however
written, can backtrack catastrophically on a hostile subject. RE2 has no lookarounds or back
references, so a configuration using them is refused by ``config check``. As a last guard the
classifier looks at most at the first :data:`MAX_CLASSIFIED_CHARS` characters of the subject
and of each header value: with every regex linear, that bounds the CPU time one message costs.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import re2

from mailwatch.core.durations import Duration
from mailwatch.core.model import Classification, Message, Priority
from mailwatch.core.prefilter import fold, required_keywords

MAX_CLASSIFIED_CHARS = 4096
"""The classifier reads at most this many characters of a subject or header value."""


class TextPattern(Protocol):
    """A compiled pattern as the classifier uses it: RE2's (:func:`compile_pattern`) or re's."""

    @property
    def pattern(self) -> str:
        """The source (the keyword prefilter reads it)."""

    @property
    def flags(self) -> int:
        """``re`` flags the source is read with."""

    def search(self, string: str, /) -> Any:
        """A match (``group(0)`` is the matched text) or ``None``."""


# Python's str patterns give \s, \d and \w their Unicode meaning; RE2's are ASCII. Rewritten
# so that, e.g., a no-break space from an encoded word still counts as a space (\b stays ASCII).
_UNICODE_CLASSES = {
    "s": r"\t-\r\x{1c}-\x{1f}\x{85}\p{Z}",  # what str.isspace() accepts
    "d": r"\p{Nd}",
    "w": r"\p{L}\p{N}_",
}


def _unicode_classes(source: str) -> str:
    r"""``source`` with \s, \d, \w (and \S, \D, \W outside classes) in Unicode terms."""
    out: list[str] = []
    in_class = False
    index = 0
    while index < len(source):
        char = source[index]
        if char == "\\" and index + 1 < len(source):
            escaped = source[index + 1]
            lower = escaped.lower()
            if lower in _UNICODE_CLASSES and (escaped == lower or not in_class):
                members = _UNICODE_CLASSES[lower]
                if in_class:
                    out.append(members)
                elif lower == "d":
                    out.append(r"\p{Nd}" if escaped == "d" else r"\P{Nd}")
                else:
                    out.append(f"[{members}]" if escaped == lower else f"[^{members}]")
            else:
                out.append(source[index : index + 2])
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            index += 1
            for prefix in ("^]", "]"):  # a leading ] is a literal ]
                if source.startswith(prefix, index):
                    out.append(prefix)
                    index += len(prefix)
                    break
            continue
        if char == "]" and in_class:
            in_class = False
        out.append(char)
        index += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class SafePattern:
    """An operator's pattern compiled by RE2: matched in time linear in the text.

    Case-insensitive, like the patterns have always been (``(?-i:…)`` turns that off).
    """

    pattern: str
    flags: int = re.IGNORECASE  # what the keyword prefilter reads the source with
    _compiled: Any = field(default=None, repr=False, compare=False)

    def search(self, string: str, /) -> Any:
        """The first match in ``string`` (``group(0)`` is the matched text), or ``None``."""
        try:
            return self._compiled.search(string)
        except UnicodeEncodeError:  # RE2 reads UTF-8: a lone surrogate (a raw-unicode-escape
            # encoded word can make one) is matched as the "?" it is encoded as
            return self._compiled.search(string.encode("utf-8", "replace").decode("utf-8"))


def compile_pattern(source: str) -> SafePattern:
    """Compile an operator's pattern with RE2; ``ValueError`` says why RE2 cannot take it."""
    options = re2.Options()
    options.log_errors = False  # the error is raised (and reported by config check), not logged
    try:
        compiled = re2.compile(f"(?i){_unicode_classes(source)}", options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "not supported"
        detail = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise ValueError(
            f"{source!r} cannot be used: {detail} (patterns run on RE2, a linear-time engine:"
            " no lookarounds (?=…) (?<!…), back references \\1, possessive or atomic groups)"
        ) from None
    return SafePattern(source, re.IGNORECASE, compiled)


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

    def match(self, message: Message, subject: str | None = None) -> str | None:
        """Describe what matched (e.g. ``subject 'emergency recall'``), or ``None``.

        ``subject``: the subject to test, if not the message's own (the classifier passes
        the first :data:`MAX_CLASSIFIED_CHARS` characters).
        """
        if not self._envelope_matches(message):
            return None
        if subject is None:
            subject = message.subject[:MAX_CLASSIFIED_CHARS]
        if self.subject_not is not None and self.subject_not.search(subject):
            return None
        evidence: list[str] = []
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
        subject = message.subject[:MAX_CLASSIFIED_CHARS]  # the CPU budget of one message
        folded = fold(subject) if prefilter else ""
        for name, rule, label, priority, keywords in self._plan:
            if prefilter and keywords is not None:
                for keyword in keywords:
                    if keyword in folded:
                        break
                else:
                    continue  # the subject has none of the words the pattern requires
            evidence = rule.match(message, subject)
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


def _keywords(pattern: TextPattern | None) -> tuple[str, ...] | None:
    keywords = None if pattern is None else required_keywords(pattern)
    return None if keywords is None else tuple(sorted(keywords, key=lambda k: (-len(k), k)))
