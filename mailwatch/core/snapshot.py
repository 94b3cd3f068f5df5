"""The immutable picture the metrics are rendered from (pure: values in, values out).

After each scan the service builds a new :class:`MetricsSnapshot` from the latest verdicts of
every backlog source, the outcome totals and backlog history kept in the store, and the probe
health it tracked, then swaps it in with one assignment. A scrape only reads it; it never
queries the store or a source.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mailwatch.core.backlog import DrainEstimate, drain_estimates
from mailwatch.core.breakdown import Breakdown, breakdown
from mailwatch.core.classify import MessageClass
from mailwatch.core.destinations import DestinationWatch
from mailwatch.core.judgement import Judgement
from mailwatch.core.model import Priority, Verdict
from mailwatch.core.tracked import Backlog

AGE_BUCKETS: tuple[float, ...] = (
    60,
    300,
    600,
    1800,
    3600,
    7200,
    14400,
    28800,
    86400,
    172800,
    604800,
)
"""Upper bounds (seconds) for message-age histograms: 1m … 7d, around the SLAs in use."""
DELAY_BUCKETS: tuple[float, ...] = (1, 5, 15, 60, 300, 900, 1800, 3600, 14400, 86400)
"""Upper bounds (seconds) for delivery-delay histograms."""
CANARY_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
"""Upper bounds (seconds) for canary round-trip histograms: seconds on a healthy path, up to
the usual 10-minute loss timeout (a canary later than its timeout is counted as lost)."""
POSTFIX_QUEUES = ("incoming", "active", "deferred", "hold")
UNCLASSIFIED = "unclassified"
UNKNOWN_PRIORITY = "unknown"
"""Priority label of outcomes whose message's priority is not known: mail mailwatch never saw
queued, and totals counted before the store kept priorities (schema migration 8)."""
WARNING_KINDS: dict[str, str] = {"mail_system_down": "mail system is down"}
"""Warnings a source can give while it still answers, by kind, and the text that marks each
(lower case). ``postqueue`` says "Mail system is down" when Postfix is stopped: the queue is
still visible, but nothing in it moves."""
"""Class label of outcomes for mail mailwatch never saw queued (delivered at once)."""


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative bucket counts (one per bound, then +Inf), the sum and the count."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        """Number of observations."""
        return self.cumulative[-1] if self.cumulative else 0

    @classmethod
    def of(cls, values: Iterable[float], bounds: tuple[float, ...]) -> Histogram:
        """Build from raw observations."""
        counts = [0] * (len(bounds) + 1)
        total = 0.0
        for value in values:
            counts[bisect.bisect_left(bounds, value)] += 1
            total += value
        running, cumulative = 0, []
        for c in counts:
            running += c
            cumulative.append(running)
        return cls(bounds, tuple(cumulative), total)


def priority_label(priority: int | None) -> str:
    """The ``priority`` label of a stored priority: ``P1``…``P4``, else ``unknown``."""
    try:
        return str(Priority(priority)) if priority else UNKNOWN_PRIORITY
    except ValueError:
        return UNKNOWN_PRIORITY


def histograms(
    bucket_rows: Iterable[tuple[str, int, int]],
    bounds: tuple[float, ...],
    sums: Mapping[str, float],
) -> dict[str, Histogram]:
    """Histograms per key from stored ``(key, bucket index, count)`` rows and per-key sums.

    Keys that have a sum but no bucket row get an empty histogram.
    """
    counts: dict[str, list[int]] = {key: [0] * (len(bounds) + 1) for key in sums}
    for key, bucket, count in bucket_rows:
        counts.setdefault(key, [0] * (len(bounds) + 1))[bucket] = count
    return {
        key: Histogram(bounds, tuple(itertools.accumulate(c)), sums.get(key, 0.0))
        for key, c in counts.items()
    }


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """How a source's probes have gone since the service started."""

    up: bool
    last_duration_seconds: float
    last_success: datetime | None
    errors: Mapping[str, int] = field(default_factory=dict)
    """Failed probes by error kind (``timeout``, ``unavailable``, ``command_failed``…)."""
    first_failure: datetime | None = None
    """Start of the current run of failures (``None`` while up): how long it has been blind."""
    warnings: frozenset[str] = frozenset()
    """Kinds of warning (:data:`WARNING_KINDS`) the last successful probe carried."""
    reconciled: int = 0
    """Messages full listings found different from the incremental view, since start."""


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """The store's health as last seen (kept by :mod:`mailwatch.store.connection`)."""

    up: bool = True
    """False while the latest write failed (until one succeeds)."""
    errors: Mapping[str, int] = field(default_factory=dict)
    """Failures by kind (``StoreError.kind``) since the process started."""
    failing_since: datetime | None = None
    last_error: str | None = None
    kind: str | None = None
    """The kind of the latest failure while down (``full``, ``read_only``…), else ``None``."""


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether the service is ready (``/readyz``) and, if not, why; never personal data.

    Ready once every source was probed at least once and the store's writes work. The reasons
    name configured sources and the store failure's kind only, never an error's text.
    """

    not_probed: tuple[str, ...] = ()
    """Configured sources not probed yet."""
    store: StoreHealth = field(default_factory=StoreHealth)

    @property
    def ready(self) -> bool:
        """Every source probed once, and the store writable."""
        return not self.not_probed and self.store.up

    def reasons(self) -> list[str]:
        """Why not ready, one line each (empty when ready)."""
        reasons = []
        if self.not_probed:
            reasons.append(f"sources not yet probed: {', '.join(self.not_probed)}")
        if not self.store.up:
            since = self.store.failing_since
            reasons.append(f"store failing ({self.store.kind or 'error'})"
                           + (f" since {since.isoformat()}" if since else ""))  # fmt: skip
        return reasons

    def as_json(self) -> dict[str, object]:
        """The ``/readyz`` body: ``{"ready": true}``, or why not (reasons and details)."""
        if self.ready:
            return {"ready": True}
        since = self.store.failing_since
        return {
            "ready": False,
            "reasons": self.reasons(),
            "not_probed": list(self.not_probed),
            "store": {
                "up": self.store.up,
                "kind": None if self.store.up else self.store.kind or "error",
                "failing_since": since.isoformat() if since and not self.store.up else None,
            },
        }


@dataclass(frozen=True, slots=True)
class OutcomeTotals:
    """Final outcomes counted from the store (monotonic: they survive restarts)."""

    delivered: Mapping[str, int] = field(default_factory=dict)
    bounced: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    """By (class, the message's priority label, DSN class: ``4`` or ``5``)."""
    expired: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """By (class, the message's priority label)."""
    delivery_delay: Mapping[str, Histogram] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CanaryTotals:
    """Canary round trips and losses per path (monotonic: they survive restarts)."""

    roundtrip: Mapping[str, Histogram] = field(default_factory=dict)
    """Round trips completed within the path's timeout."""
    lost: Mapping[str, int] = field(default_factory=dict)
    """Canaries not delivered within the timeout (late arrivals included)."""


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Everything ``/metrics`` shows, computed once per scan."""

    built_at: datetime
    classes: tuple[tuple[str, Priority], ...]
    messages: Mapping[tuple[str, str, str, Priority], int]
    stuck: Mapping[tuple[str, str, Priority], int]
    """Queued messages stuck (held, frozen, past the SLA) by (source, class, message priority)."""
    oldest_age: Mapping[tuple[str, str, Priority], float]
    """Age of the oldest waiting message by (source, class, message priority)."""
    age: Mapping[str, Histogram]
    drain: Mapping[tuple[str, str], DrainEstimate]
    outcomes: OutcomeTotals
    health: Mapping[str, SourceHealth]
    alerts_firing: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """Open (firing or acknowledged) mailwatch alerts by (class, severity)."""
    canaries: CanaryTotals = field(default_factory=CanaryTotals)
    """Canary round trips and losses, with every configured canary path present."""
    undeliverable: Mapping[tuple[str, str, Priority], int] = field(default_factory=dict)
    """Messages that bounced or expired within the report window (stuck: not sent), by
    (source, class, message priority)."""
    store: StoreHealth | None = None
    """Whether the store's writes work, and its failures by kind (``None``: not known)."""
    breakdown: Breakdown = field(default_factory=Breakdown)
    """Stuck queued messages by reason category and by destination (bounded labels)."""
    destinations: tuple[DestinationWatch, ...] = ()
    """The deferral watch of the followed destinations (:mod:`mailwatch.core.destinations`)."""
    source_drain: Mapping[str, DrainEstimate] = field(default_factory=dict)
    """Each backlog source's whole backlog (every class): the headline clear ETA."""
    class_drain: Mapping[str, DrainEstimate] = field(default_factory=dict)
    """Each class across the sources (:func:`mailwatch.core.backlog.pooled_estimate`)."""


def class_priorities(message_class: MessageClass) -> tuple[Priority, ...]:
    """The priorities a class's messages can have: its own, and any its rules raise them to.

    Metric series are pre-initialised to zero for these (at most 4 per class), so a MAPPA
    level-3 series (P1 in a P2 class) exists, at 0, before the first such message arrives.
    """
    raised = {rule.priority for rule in message_class.rules if rule.priority is not None}
    return tuple(sorted({message_class.priority, *raised}))


def build_snapshot(
    now: datetime,
    classes: Sequence[MessageClass],
    verdicts: Mapping[str, Sequence[Verdict]],
    queues: Mapping[str, Sequence[str]],
    outcomes: OutcomeTotals,
    histories: Mapping[tuple[str, str], Sequence[tuple[datetime, int]]],
    health: Mapping[str, SourceHealth],
    alerts_firing: Mapping[tuple[str, str], int] | None = None,
    canaries: CanaryTotals | None = None,
    canary_paths: Iterable[str] = (),
    undeliverable: Iterable[Judgement] = (),
    store: StoreHealth | None = None,
    relayhosts: Mapping[str, str | None] | None = None,
    partners: Sequence[str] = (),
    destinations: tuple[DestinationWatch, ...] = (),
    backlogs: Mapping[str, Backlog] | None = None,
    drain_halflife: float = 600.0,
) -> MetricsSnapshot:
    """Aggregate the latest verdicts of each backlog source (zeros for every class and source).

    ``verdicts`` maps each backlog source to its latest verdicts (an empty list before its
    first good probe); ``queues`` names the queues to pre-initialise per source. Every path
    in ``canary_paths`` gets a zero loss count and an empty round-trip histogram.
    ``undeliverable`` are the judgements of the messages that bounced or expired within the
    report window (:func:`mailwatch.core.judgement.judge`). Every count carries the *message's*
    priority (a rule may raise it above its class's). ``relayhosts`` (each source's smarthost)
    and ``partners`` (the partner domains) feed the breakdown (:mod:`mailwatch.core.breakdown`).
    A source in ``backlogs`` (the scanner's kept backlog of the same verdicts) is counted from
    its kept counts, not by walking its verdicts: the cost does not grow with the backlog.
    """
    undeliverable = tuple(undeliverable)  # read twice
    messages: dict[tuple[str, str, str, Priority], int] = {}
    stuck: dict[tuple[str, str, Priority], int] = {}
    oldest: dict[tuple[str, str, Priority], float] = {}
    gone: dict[tuple[str, str, Priority], int] = {}
    ages: dict[str, list[float]] = {c.name: [] for c in classes}
    kept: dict[str, tuple[list[int], float]] = {}
    for source, source_verdicts in verdicts.items():
        for c in classes:
            for prio in class_priorities(c):
                for queue in queues.get(source, ()):
                    messages[(source, queue, c.name, prio)] = 0
                stuck[(source, c.name, prio)] = oldest[(source, c.name, prio)] = 0
                gone[(source, c.name, prio)] = 0
        backlog = (backlogs or {}).get(source)
        if backlog is not None:
            _count_kept(source, backlog, messages, stuck, oldest, kept)
            continue
        for v in source_verdicts:
            name, prio = v.classification.name, v.classification.priority
            key = (source, v.message.queue, name, prio)
            messages[key] = messages.get(key, 0) + 1
            stuck[(source, name, prio)] = stuck.get((source, name, prio), 0) + v.stuck
            oldest[(source, name, prio)] = max(oldest.get((source, name, prio), 0.0),
                                               v.age_seconds)  # fmt: skip
            ages.setdefault(name, []).append(v.age_seconds)
    for j in undeliverable:
        if j.undeliverable is not None:
            m = j.message
            gone[(m.source, m.class_name, m.priority)] = (
                gone.get((m.source, m.class_name, m.priority), 0) + 1
            )
    drain, source_drain, class_drain = drain_estimates(
        histories, list(verdicts), [c.name for c in classes], drain_halflife
    )
    return MetricsSnapshot(
        built_at=now,
        classes=tuple((c.name, c.priority) for c in classes),
        messages=messages,
        stuck=stuck,
        oldest_age={key: float(age) for key, age in oldest.items()},
        age=_age_histograms(ages, kept),
        drain=drain,
        outcomes=outcomes,
        health=dict(health),
        alerts_firing=dict(alerts_firing or {}),
        canaries=_canaries_with_zeros(canaries or CanaryTotals(), canary_paths),
        undeliverable=gone,
        store=store,
        breakdown=breakdown(
            verdicts,
            {p for c in classes for p in class_priorities(c)},
            relayhosts or {},
            partners,
            undeliverable,
        ),
        destinations=destinations,
        source_drain=source_drain,
        class_drain=class_drain,
    )


def _count_kept(
    source: str,
    backlog: Backlog,
    messages: dict[tuple[str, str, str, Priority], int],
    stuck: dict[tuple[str, str, Priority], int],
    oldest: dict[tuple[str, str, Priority], float],
    ages: dict[str, tuple[list[int], float]],
) -> None:
    """Add a kept backlog's counts (what walking its verdicts would count)."""
    for (name, prio, queue), n in backlog.queued().items():
        messages[(source, queue, name, prio)] = messages.get((source, queue, name, prio), 0) + n
        oldest[(source, name, prio)] = max(oldest.get((source, name, prio), 0.0),
                                           backlog.oldest_age((name, prio)))  # fmt: skip
        stuck.setdefault((source, name, prio), 0)
    for (name, prio), n in backlog.stuck().items():
        stuck[(source, name, prio)] = stuck.get((source, name, prio), 0) + n
    for name in {name for name, _, _ in backlog.queued()}:
        cumulative, total = backlog.age_counts(name, AGE_BUCKETS)
        before, before_total = ages.get(name, ([0] * len(cumulative), 0.0))
        ages[name] = ([a + b for a, b in zip(before, cumulative, strict=True)],
                      before_total + total)  # fmt: skip


def _age_histograms(
    ages: Mapping[str, list[float]], kept: Mapping[str, tuple[list[int], float]]
) -> dict[str, Histogram]:
    """Age histograms per class: observed ages, plus the kept backlogs' cumulative counts."""
    out = {name: Histogram.of(values, AGE_BUCKETS) for name, values in ages.items()}
    for name, (cumulative, total) in kept.items():
        walked = out.get(name, Histogram.of((), AGE_BUCKETS))
        summed = tuple(a + b for a, b in zip(walked.cumulative, cumulative, strict=True))
        out[name] = Histogram(AGE_BUCKETS, summed, walked.total + total)
    return out


def _canaries_with_zeros(totals: CanaryTotals, paths: Iterable[str]) -> CanaryTotals:
    empty = Histogram(CANARY_BUCKETS, (0,) * (len(CANARY_BUCKETS) + 1), 0.0)
    roundtrip, lost = dict(totals.roundtrip), dict(totals.lost)
    for path in paths:
        roundtrip.setdefault(path, empty)
        lost.setdefault(path, 0)
    return CanaryTotals(roundtrip=roundtrip, lost=lost)


def warning_kinds(warnings: Iterable[str]) -> frozenset[str]:
    """The :data:`WARNING_KINDS` found in a probe's warnings (their text is never exported)."""
    lowered = [w.lower() for w in warnings]
    return frozenset(k for k, marker in WARNING_KINDS.items() if any(marker in w for w in lowered))
