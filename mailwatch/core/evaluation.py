"""Measure a classifier on labelled messages: precision, recall, confusion, P1 figures (pure).

A labelled message carries the class and priority an expert gives it. :func:`evaluate` runs
the classifier on each and counts: per class, precision (of the messages put in the class,
how many belong there) and recall (of the messages that belong there, how many were put
there); the confusion matrix (expected by got); P1 recall (of the messages that are P1, how
many were classified P1: a miss here is a stuck emergency nobody is told about) and the
false-P1 rate (of the messages that are not P1, how many were raised to P1: each pages a duty
manager for nothing); and every miss with the rule that fired, or ``default`` when none did.

:func:`parse_labels` reads the ``labels.tsv`` that sits beside the ``.eml`` files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mailwatch.core.model import Classification, Message, Priority


@dataclass(frozen=True, slots=True)
class Label:
    """One line of ``labels.tsv``: a file, its expected class and (optionally) priority."""

    file: str
    expected: str
    priority: Priority | None = None


def parse_labels(text: str) -> list[Label]:
    """Labels from TSV text: ``file<TAB>class[<TAB>priority]``; ``#`` lines are comments.

    ``ValueError`` names the line number of a line that cannot be read.
    """
    labels: list[Label] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in line.split("\t")]
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise ValueError(f"labels line {number}: expected file<TAB>class[<TAB>priority]")
        priority = None
        if len(cells) > 2 and cells[2]:
            try:
                priority = Priority.parse(cells[2])
            except ValueError:
                raise ValueError(f"labels line {number}: {cells[2]!r} is not P1-P4") from None
        labels.append(Label(cells[0], cells[1], priority))
    return labels


@dataclass(frozen=True, slots=True)
class Judged:
    """A labelled message and what the classifier made of it."""

    name: str
    message: Message
    expected: str
    expected_priority: Priority
    got: Classification

    @property
    def right(self) -> bool:
        """Messages given the expected class and priority."""
        """The class and the priority are the expected ones."""
        return self.got.name == self.expected and self.got.priority == self.expected_priority


@dataclass(frozen=True, slots=True)
class ClassFigures:
    """Precision and recall of one class (``None``: nothing to divide by)."""

    name: str
    support: int
    predicted: int
    correct: int

    @property
    def precision(self) -> float | None:
        """Of the messages put in the class, the share that belong there."""
        return self.correct / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        """Of the messages that belong in the class, the share put there."""
        return self.correct / self.support if self.support else None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Every figure :func:`evaluate` measures."""

    judged: tuple[Judged, ...]
    classes: tuple[ClassFigures, ...]
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Messages judged."""
        return len(self.judged)

    @property
    def right(self) -> int:
        """Messages given the expected class and priority."""
        return sum(1 for j in self.judged if j.right)

    @property
    def accuracy(self) -> float:
        """The share of messages right."""
        return self.right / self.total if self.total else 1.0

    @property
    def p1_total(self) -> int:
        """Messages that are P1."""
        return sum(1 for j in self.judged if j.expected_priority is Priority.P1)

    @property
    def p1_caught(self) -> int:
        """P1 messages classified P1."""
        p1 = Priority.P1
        return sum(1 for j in self.judged if j.expected_priority is p1 and j.got.priority is p1)

    @property
    def p1_recall(self) -> float:
        """The share of P1 messages classified P1."""
        return self.p1_caught / self.p1_total if self.p1_total else 1.0

    @property
    def not_p1_total(self) -> int:
        """Messages that are not P1."""
        return self.total - self.p1_total

    @property
    def false_p1(self) -> int:
        """Messages that are not P1 but were classified P1."""
        p1 = Priority.P1
        return sum(1 for j in self.judged if j.expected_priority is not p1 and j.got.priority is p1)

    @property
    def false_p1_rate(self) -> float:
        """The share of messages that are not P1 classified P1."""
        return self.false_p1 / self.not_p1_total if self.not_p1_total else 0.0

    @property
    def misses(self) -> tuple[Judged, ...]:
        """The messages not right."""
        return tuple(j for j in self.judged if not j.right)


def evaluate(judged: Iterable[Judged], class_order: Sequence[str] = ()) -> Evaluation:
    """The figures for messages already classified (``class_order``: how to list classes)."""
    items = tuple(judged)
    confusion = Counter((j.expected, j.got.name) for j in items)
    names = list(class_order)
    names += sorted({n for pair in confusion for n in pair} - set(names))
    figures = tuple(
        ClassFigures(
            name,
            support=sum(1 for j in items if j.expected == name),
            predicted=sum(1 for j in items if j.got.name == name),
            correct=sum(1 for j in items if j.expected == name and j.got.name == name),
        )
        for name in names
        if any(name in pair for pair in confusion)
    )
    return Evaluation(items, figures, dict(confusion))
