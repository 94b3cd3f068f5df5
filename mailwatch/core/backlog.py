"""Backlog maths: per-class counts of one scan, and drain rate / time to clear (pure).

Every configured class appears for every source, with zeros when empty, so that a dashboard
or the CLI says "0 stuck recalls" rather than nothing at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

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
    ``backlog / rate`` otherwise, counted from ``at``. ``clear_at`` is the predicted clear
    *time* (``at + eta_seconds``; ``None`` when not shrinking, or with no history): unlike the
    seconds, it does not age while it waits to be read.
    """

    rate: float
    eta_seconds: float
    backlog: int = 0
    """Messages waiting at the latest scan."""
    at: datetime | None = None
    """When the latest scan was taken (``None``: no history)."""
    clear_at: datetime | None = None
    settled: bool = False
    """The rate was fitted over at least three scans spanning a half-life (else "not enough
    data yet" on the status page)."""


WINDOW_HALFLIVES = 3.0
"""The drain rate is fitted over the last ``WINDOW_HALFLIVES * drain_halflife`` seconds."""
NEVER_SECONDS = 366 * 86400.0
"""A backlog that would take longer than a year to clear is not clearing (ETA +Inf)."""


def drain_estimate(
    history: Sequence[tuple[datetime, int]], halflife_seconds: float = 600.0
) -> DrainEstimate:
    """Least-squares drain rate over the recent window of a backlog's history (oldest first).

    The rate is minus the slope of the straight line best fitting the scans of the last
    ``WINDOW_HALFLIVES * halflife_seconds`` seconds (chosen by ``bench/incident/eta_lab.py``
    over the replay's recorded recoveries: unlike an EWMA of per-scan slopes it does not lag a
    steady drain, and a queue flapping up and down fits a flat line). A scan not later than the
    one before it (a clock jump backwards, two scans at the same instant) is ignored. With fewer
    than two scans in the window the rate is 0.
    """
    points = _monotonic(history)
    if not points:
        return DrainEstimate(rate=0.0, eta_seconds=0.0)
    at, backlog = points[-1]
    since = at.timestamp() - WINDOW_HALFLIVES * halflife_seconds
    recent = [(t.timestamp(), float(n)) for t, n in points if t.timestamp() >= since]
    rate = -_slope(recent)
    settled = len(recent) >= 3 and recent[-1][0] - recent[0][0] >= halflife_seconds
    return _estimate(rate, float(backlog), backlog, at, settled)


def _estimate(rate: float, left: float, backlog: int, at: datetime, settled: bool) -> DrainEstimate:
    """The estimate of a backlog of ``backlog`` at ``at``, ``left`` of it still to drain."""
    if backlog == 0:
        return DrainEstimate(rate, 0.0, 0, at, at, settled)
    eta = max(0.0, left / rate) if rate > 0 else math.inf
    if eta > NEVER_SECONDS:
        return DrainEstimate(rate, math.inf, backlog, at, None, settled)
    return DrainEstimate(rate, eta, backlog, at, at + timedelta(seconds=eta), settled)


def _monotonic(history: Iterable[tuple[datetime, int]]) -> list[tuple[datetime, int]]:
    """The scans each later than the last one kept (a clock jump backwards is dropped)."""
    kept: list[tuple[datetime, int]] = []
    for t, n in history:
        if not kept or t > kept[-1][0]:
            kept.append((t, n))
    return kept


def _slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` points (0 with fewer than two distinct ``x``)."""
    if len(points) < 2:
        return 0.0
    x0 = points[0][0]  # centre for precision: unix seconds squared lose digits
    xs = [x - x0 for x, _ in points]
    mean_x = sum(xs) / len(xs)
    mean_y = sum(y for _, y in points) / len(points)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx <= 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, (_, y) in zip(xs, points, strict=True)) / sxx


def whole_backlog(
    histories: Mapping[tuple[str, str], Sequence[tuple[datetime, int]]],
) -> dict[str, list[tuple[datetime, int]]]:
    """Each source's whole backlog per scan: its classes' counts summed at each scan time."""
    totals: dict[str, dict[datetime, int]] = {}
    for (source, _), history in histories.items():
        per_scan = totals.setdefault(source, {})
        for t, n in history:
            per_scan[t] = per_scan.get(t, 0) + n
    return {source: sorted(scans.items()) for source, scans in totals.items()}


def pooled_estimate(estimates: Iterable[DrainEstimate]) -> DrainEstimate:
    """The backlogs of several sources as one: when they will all be empty together.

    Mail moving from one watched queue to another (hub to relay) leaves one and joins the
    other, so the per-source ETAs disagree (the relay's looks flat or growing) while the sum
    drains. Each source's backlog follows its own line ``n - rate * (t - at)``; the pooled
    clear time is where the sum of the lines reaches zero, whatever the sources' scan times.
    ``at`` is the latest scan; ``eta_seconds`` is counted from it. An empty source adds nothing
    (its rate was its past drain).
    """
    seen = [(e, e.at) for e in estimates if e.at is not None]
    if not seen:
        return DrainEstimate(rate=0.0, eta_seconds=0.0)
    at = max(t for _, t in seen)
    busy = [(e, t) for e, t in seen if e.backlog > 0]  # an empty queue drains no further
    rate = sum(e.rate for e, _ in busy)
    # each line projected to ``at``: what would be waiting now at its pace
    left = sum(e.backlog - e.rate * (at - t).total_seconds() for e, t in busy)
    backlog = sum(e.backlog for e, _ in busy)
    return _estimate(rate, left, backlog, at, all(e.settled for e, _ in busy))


def drain_estimates(
    histories: Mapping[tuple[str, str], Sequence[tuple[datetime, int]]],
    sources: Sequence[str],
    class_names: Sequence[str],
    halflife_seconds: float,
) -> tuple[
    dict[tuple[str, str], DrainEstimate], dict[str, DrainEstimate], dict[str, DrainEstimate]
]:
    """Per (source, class), per source (its whole backlog) and per class (across the sources).

    The per-source one is the headline: a whole queue drains evenly where its small classes
    drain in jumps (one message of a rare class leaving is a step, not a pace).
    """
    drain = {
        (source, name): drain_estimate(histories.get((source, name), ()), halflife_seconds)
        for source in sources
        for name in class_names
    }
    totals = whole_backlog({k: v for k, v in histories.items() if k[0] in sources})
    by_source = {s: drain_estimate(totals.get(s, ()), halflife_seconds) for s in sources}
    by_class = {
        name: pooled_estimate(e for (_, c), e in drain.items() if c == name) for name in class_names
    }
    return drain, by_source, by_class
