"""Near misses: ``general`` messages that contain P1 vocabulary, grouped by term (pure).

An operator cannot read everyone's mail to find what the rules miss. This counts, among
messages that fell into the default class, those whose subject holds a key word of a P1 rule
(the words a P1 rule's quick test looks for: ``recall``, ``rosh``, ``safeguarding``, ``mash``…,
typos included), grouped by that word, and how many of them a class's ``unless`` set aside.
Counts only, unless the caller asks for subjects (then at most ``max_subjects`` per term).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mailwatch.core.classify import Classifier
from mailwatch.core.model import Message, Priority

_FILLER = frozenset({"the", "for", "and", "of", "to", "at", "in", "on", "a", "an", "re", "from"})


@dataclass(slots=True)
class NearMiss:
    """One P1 word found in default-class mail."""

    term: str
    classes: tuple[str, ...]
    """The P1 classes whose rules use the word."""
    count: int = 0
    set_aside: int = 0
    """Of those, how many a P1 class matched but an ``unless`` term set aside."""
    subjects: list[str] = field(default_factory=list)


def p1_vocabulary(classifier: Classifier) -> dict[str, tuple[str, ...]]:
    """Each key word of a P1 rule, with the classes that use it."""
    found: dict[str, list[str]] = {}
    for message_class in classifier.all_classes:
        for rule in message_class.rules:
            if (rule.priority or message_class.priority) is not Priority.P1:
                continue
            for need in rule.needs:
                for word in need:
                    if len(word) > 1 and word not in _FILLER:
                        names = found.setdefault(word, [])
                        if message_class.name not in names:
                            names.append(message_class.name)
    return {word: tuple(names) for word, names in sorted(found.items())}


def near_misses(
    classifier: Classifier,
    messages: Iterable[Message],
    *,
    show_subjects: bool = False,
    max_subjects: int = 20,
) -> list[NearMiss]:
    """Near misses among ``messages`` (already in the default class), most frequent first."""
    vocabulary = p1_vocabulary(classifier)
    found: dict[str, NearMiss] = {}
    for message in messages:
        words = classifier.resolve(message.subject).present.intersection(vocabulary)
        if not words:
            continue
        result, notes = classifier.explain(message)
        if result.name != classifier.default.name:
            continue  # the rules (as configured now) classify it
        set_aside = any(note.split(":", 1)[0].removeprefix("not ") in
                        {c for w in words for c in vocabulary[w]} for note in notes)  # fmt: skip
        for word in sorted(words):
            miss = found.setdefault(word, NearMiss(word, vocabulary[word]))
            miss.count += 1
            miss.set_aside += set_aside
            if show_subjects and len(miss.subjects) < max_subjects:
                miss.subjects.append(message.subject)
    return sorted(found.values(), key=lambda m: (-m.count, m.term))
