"""Backlog maths: per-class counts of one scan, and drain rate / time to clear (pure).

Every configured class appears for every source, with zeros when empty, so that a dashboard
or the CLI says "0 stuck recalls" rather than nothing at all.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from mailwatch.core.classify import MessageClass
from mailwatch.core.model import Priority, Verdict


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


@dataclass(frozen=True, slots=True)
class DrainEstimate:
    """How fast a backlog is clearing, and when it will be empty at that pace.

    ``rate`` is in messages per second, positive while the backlog shrinks and negative while it
    grows. ``eta_seconds`` is 0 for an empty backlog, ``inf`` when it is not shrinking, and
    ``backlog / rate`` otherwise.
    """

    rate: float
    eta_seconds: float


def drain_estimate(
    history: Sequence[tuple[datetime, int]], halflife_seconds: float = 600.0
) -> DrainEstimate:
    """EWMA of the net change per second over a backlog's history (oldest first).

    Each step between consecutive scans contributes its slope ``-(n1 - n0) / dt`` with a
    weight that halves every ``halflife_seconds`` of scan time (a bias-corrected EWMA: the
    weighted mean of the slopes), so the estimate follows a change of pace within minutes while
    a queue that flaps up and down every scan averages out near zero. Steps with ``dt <= 0``
    (a clock jump backwards, two scans at the same instant) are ignored. With fewer than two
    points the rate is 0.
    """
    weighted = weights = 0.0
    for (t0, n0), (t1, n1) in itertools.pairwise(history):
        dt = (t1 - t0).total_seconds()
        if dt <= 0:
            continue
        alpha = 1.0 - math.exp(-dt * math.log(2) / halflife_seconds)
        weighted = (1 - alpha) * weighted + alpha * (-(n1 - n0) / dt)
        weights = (1 - alpha) * weights + alpha
    rate = weighted / weights if weights else 0.0
    backlog = history[-1][1] if history else 0
    if backlog == 0:
        return DrainEstimate(rate=rate, eta_seconds=0.0)
    if rate <= 0:
        return DrainEstimate(rate=rate, eta_seconds=math.inf)
    return DrainEstimate(rate=rate, eta_seconds=backlog / rate)
