"""The replay report's maths, pure: P1 alert latency, misses, false alerts, ETA error.

Everything here takes values recorded during the run (Alertmanager samples, Prometheus
answers, the replay's own log of what it sent and when) and returns numbers; ``render``
turns the summary into Markdown. No I/O, no clock.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mailwatch.core.backlog import DrainEstimate, pooled_estimate

P1_ALERTS = frozenset({"p1_stuck", "MailwatchP1Stuck"})
"""Alerts that cover a stuck P1 message of their class and source."""
STUCK_ALERTS = P1_ALERTS | {"p2_stuck", "MailwatchOldestOverSLA"}
"""Alerts that say a class has stuck mail (a false one names a class that never had any)."""
FRACTIONS = (0.25, 0.5, 0.75)
ETA_TOLERANCE = 0.2
SLACK = 2.0
"""The P1 target is one probe interval plus this many seconds."""

AlertKey = tuple[str, str, str]
"""(alertname, class, source) of an alert seen in Alertmanager."""


@dataclass(frozen=True, slots=True)
class Sent:
    """One P1 message the replay sent: where mailwatch sees it, and when it stopped waiting."""

    ident: str
    class_name: str
    source: str
    arrival: float
    sla: float
    left: float | None
    """When it stopped waiting (relay back, or read in its mailbox); ``None``: still waiting."""

    @property
    def due(self) -> float:
        """When its SLA passed."""
        return self.arrival + self.sla


@dataclass(frozen=True, slots=True)
class P1Result:
    """One P1 message that should have been alerted: latency (``None``: never alerted)."""

    ident: str
    class_name: str
    source: str
    latency: float | None


def timeline(samples: Iterable[tuple[float, Iterable[AlertKey]]]) -> dict[AlertKey, list[float]]:
    """Per alert, the sorted times it was seen in Alertmanager (from periodic samples)."""
    seen: dict[AlertKey, list[float]] = {}
    for at, keys in samples:
        for key in set(keys):
            seen.setdefault(key, []).append(at)
    return {key: sorted(times) for key, times in seen.items()}


def first_seen(times: Sequence[float], start: float, end: float) -> float | None:
    """The first time in sorted ``times`` within ``[start, end]``, if any."""
    index = bisect.bisect_left(times, start)
    if index < len(times) and times[index] <= end:
        return times[index]
    return None


def p1_results(
    sent: Iterable[Sent], seen: Mapping[AlertKey, Sequence[float]], interval: float, end: float
) -> tuple[list[P1Result], int]:
    """Latency from SLA passing to a covering alert being in Alertmanager, per P1 message.

    A message counts when it waited at least ``interval + SLACK`` past its SLA (one that left
    sooner may rightly never be alerted; those are counted and returned second). Covering: an
    alert in ``P1_ALERTS`` of the message's class and source, seen between its SLA passing and
    its leaving (or ``end``).
    """
    results, excused = [], 0
    for message in sent:
        until = message.left if message.left is not None else end
        if until < message.due + interval + SLACK:
            excused += 1
            continue
        firsts = [
            t
            for name in P1_ALERTS
            if (t := first_seen(seen.get((name, message.class_name, message.source), ()),
                                message.due, until)) is not None
        ]  # fmt: skip
        latency = min(firsts) - message.due if firsts else None
        results.append(P1Result(message.ident, message.class_name, message.source, latency))
    return results, excused


def false_alerts(seen: Mapping[AlertKey, Sequence[float]], stuck_classes: set[str]) -> list[str]:
    """Stuck-type alerts for a class none of whose messages was ever stuck."""
    return sorted(
        f"{name} class={cls} source={source}"
        for name, cls, source in seen
        if name in STUCK_ALERTS and cls not in stuck_classes
    )


def eta_error(at: float, predicted_remaining: float, start: float, clear: float) -> dict[str, Any]:
    """One ETA reading against the measured clear time.

    ``remaining_error``: (predicted - actual remaining) / actual remaining (the target's
    measure); ``duration_error``: the predicted clear time against the measured one, relative
    to the whole recovery (from ``start``).
    """
    actual = clear - at
    predicted_clear = at + predicted_remaining
    finite = math.isfinite(predicted_remaining)
    return {
        "at": at,
        "fraction": (at - start) / (clear - start) if clear > start else None,
        "predicted_remaining": predicted_remaining if finite else None,
        "actual_remaining": actual,
        "remaining_error": (predicted_remaining - actual) / actual if finite and actual else None,
        "duration_error": (predicted_clear - clear) / (clear - start)
        if finite and clear > start
        else None,
    }


def eta_verdict(readings: Sequence[Mapping[str, Any]]) -> bool:
    """The target: from halfway on, every reading within ``ETA_TOLERANCE`` of the actual."""
    late = [r for r in readings if (r["fraction"] or 0) >= 0.5 - 1e-9]
    return bool(late) and all(
        r["remaining_error"] is not None and abs(r["remaining_error"]) <= ETA_TOLERANCE
        for r in late
    )


def stuck_classes(sent_all: Iterable[Sent]) -> set[str]:
    """Classes that had a message still waiting when its SLA passed (any priority)."""
    return {m.class_name for m in sent_all if m.left is None or m.left > m.due}


def summarise(latencies: Sequence[float]) -> dict[str, float | None]:
    """max, median, p95 of a list of seconds (``None`` when empty)."""
    if not latencies:
        return {"count": 0, "max": None, "median": None, "p95": None}
    ordered = sorted(latencies)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    return {"count": len(ordered), "max": ordered[-1], "median": pick(0.5), "p95": pick(0.95)}


def predicted_remaining(
    etas: Mapping[tuple[str, str], float], counts: Mapping[tuple[str, str], float],
    share: float = 0.05,
) -> float | None:  # fmt: skip
    """The backlog's clear ETA from per-(source, class) ETAs (``None``: nothing waiting).

    The slowest of the series that hold at least ``share`` of the messages: tiny classes drain
    in jumps, so their ETA is noise.
    """
    total = sum(counts.values())
    if total <= 0:
        return None
    big = [etas.get(key, math.inf) for key, n in counts.items() if n >= share * total]
    return max(big) if big else None


def canary_detection(
    outage: float, seen: Mapping[AlertKey, Sequence[float]], limit: float
) -> dict[str, Any]:
    """Seconds from the outage to a canary-loss alert in Alertmanager, against ``limit``."""
    times = [
        t for (name, _, _), ts in seen.items()
        if name in {"canary_lost", "MailwatchCanaryLost"}
        for t in ts if t >= outage
    ]  # fmt: skip
    after = min(times) - outage if times else None
    return {"seconds": after, "limit": limit, "met": after is not None and after <= limit}


def pooled_etas(
    counts: Mapping[str, float], rates: Mapping[str, float]
) -> dict[str, float]:  # fmt: skip
    """Per class, across the MTAs: messages waiting / summed drain rate (``inf``: not draining).

    Mail moving from the hub to the relay leaves one queue and joins the other: per source it
    looks like the relay's backlog growing; pooled, it is neither drained nor added.
    """
    return {
        name: 0.0 if n <= 0 else (n / rates[name] if rates.get(name, 0.0) > 0 else math.inf)
        for name, n in counts.items()
    }


def source_line(
    at: float, backlog: float, rate: float, eta: float, clear_time: float
) -> DrainEstimate:
    """One source's exported whole-backlog figures as an estimate, for pooling.

    The ``mailwatch_source_backlog_*`` gauges of one scan: its time is the clear time less
    the ETA (when draining; else the reading's time ``at``, which only projects a flat line).
    """
    finite = math.isfinite(clear_time) and math.isfinite(eta)
    scanned = clear_time - eta if finite else at
    return DrainEstimate(rate, eta, round(backlog), datetime.fromtimestamp(scanned, UTC))


def headline_remaining(
    at: float, sources: Mapping[str, tuple[float, float, float, float]]
) -> float:
    """Seconds from ``at`` until the MTAs' queues are all empty: the headline clear ETA.

    ``sources``: per MTA, (messages waiting, drain rate, ETA s, clear time) from its
    ``mailwatch_source_backlog_*`` gauges, pooled by the service's own
    :func:`mailwatch.core.backlog.pooled_estimate` (mail moving from the hub to the relay is
    neither drained nor added). Counted to the predicted clear *time*, so a reading taken a
    probe and a scrape after the scan is not late by that much. ``inf``: not draining.
    """
    pooled = pooled_estimate(source_line(at, *figures) for figures in sources.values())
    if pooled.backlog == 0:
        return 0.0
    if pooled.clear_at is None:
        return math.inf
    return pooled.clear_at.timestamp() - at
