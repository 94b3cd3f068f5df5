"""Backlog maths: per-class counts of one scan (pure).

Every configured class appears for every source, with zeros when empty, so that a dashboard
or the CLI says "0 stuck recalls" rather than nothing at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailwatch.classify import MessageClass
from mailwatch.model import Priority, Verdict


@dataclass(frozen=True, slots=True)
class ClassCount:
    """One class's backlog in one source at one scan."""

    source: str
    name: str
    priority: Priority
    total: int
    stuck: int
    oldest_age_seconds: float
    """Age of the oldest message of the class (0 when there is none)."""


def count_by_class(
    source: str, classes: Sequence[MessageClass], verdicts: Iterable[Verdict]
) -> list[ClassCount]:
    """Totals, stuck counts and oldest ages per class, in ``classes`` order, zeros included."""
    totals = {c.name: [0, 0, 0.0] for c in classes}
    for verdict in verdicts:
        row = totals.setdefault(verdict.classification.name, [0, 0, 0.0])
        row[0] += 1
        row[1] += verdict.stuck
        row[2] = max(row[2], verdict.age_seconds)
    priorities = {c.name: c.priority for c in classes}
    return [
        ClassCount(
            source=source,
            name=name,
            priority=priorities.get(name, Priority.P4),
            total=int(row[0]),
            stuck=int(row[1]),
            oldest_age_seconds=float(row[2]),
        )
        for name, row in totals.items()
    ]
