"""Alert rules and their conditions, evaluated on a :class:`Situation` (pure).

A rule is evaluated for every (class, source) its filters select, producing an active or
inactive :class:`~mailwatch.alerting.lifecycle.Finding` for each, so alerts resolve when
their condition stops holding. Conditions:

``stuck``          at least ``min_count`` messages of the class are stuck;
``oldest_age``     the oldest waiting message is older than ``sla_fraction`` times the class SLA
                   (0.8 warns *before* the SLA runs out);
``undeliverable``  a message of the class bounced or expired (within the report window);
``canary_lost``    a canary on a path was not delivered within its timeout;
``destination_deferring``  a destination (a partner domain, or one of the most deferred)
                   holds at least ``min_count`` deferred messages of the rule's priorities,
                   and ``deferral_share`` or more of its queued mail deferred over the
                   deferral window; it resolves when they drain (keyed by destination, in
                   the ``source`` slot; classes and categories in the details, never
                   addresses or subjects: see :mod:`mailwatch.core.destinations`);
``source_blind``   a source's probes have failed for longer than ``blind_after``, or it has not
                   been scanned successfully for ``blind_after`` past when a scan was due (a
                   probe that hangs, or a worker that stopped, fails nothing: only the age of
                   the last success shows it).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from mailwatch.alerting.lifecycle import AlertKey, Details, Finding, Timing
from mailwatch.core.destinations import DestinationWatch
from mailwatch.core.model import Priority

MAX_IDS = 50  # bounds alert payloads: the first ids are enough to act on


class Condition(enum.StrEnum):
    """What an alert rule watches."""

    STUCK = "stuck"
    OLDEST_AGE = "oldest_age"
    UNDELIVERABLE = "undeliverable"
    CANARY_LOST = "canary_lost"
    SOURCE_BLIND = "source_blind"
    DESTINATION_DEFERRING = "destination_deferring"


@dataclass(frozen=True, slots=True)
class Item:
    """One message an alert is about (the subject only travels to cleared receivers)."""

    id: str
    age_seconds: float
    domains: tuple[str, ...] = ()
    reason: str | None = None
    subject: str = ""
    category: str | None = None
    """The reason's category (:mod:`mailwatch.core.reasons`), as the judgement gives it."""


@dataclass(frozen=True, slots=True)
class ClassView:
    """One class's messages of one priority (theirs, not the class's) in one source."""

    source: str
    class_name: str
    priority: Priority
    sla_seconds: float
    oldest_age_seconds: float = 0.0
    stuck: tuple[Item, ...] = ()
    undeliverable: tuple[Item, ...] = ()


@dataclass(frozen=True, slots=True)
class Situation:
    """Everything the alert rules look at, at one instant."""

    now: datetime
    classes: tuple[ClassView, ...] = ()
    failing_since: Mapping[str, datetime | None] = field(default_factory=dict)
    """Per source, when its current run of failed probes began (``None``: it is up)."""
    canaries_lost: Mapping[str, tuple[Item, ...]] = field(default_factory=dict)
    """Per canary path, the canaries currently lost (an empty tuple: the path is fine)."""
    overdue_since: Mapping[str, datetime] = field(default_factory=dict)
    """Per source, when its next successful scan was due: the last success (or, before any,
    the start of watching) plus its interval. Blind once ``blind_after`` past it."""
    destinations: tuple[DestinationWatch, ...] = ()
    """The deferral watch of every followed destination (:mod:`mailwatch.core.destinations`)."""


@dataclass(frozen=True, slots=True)
class AlertRule:
    """A condition over selected classes and sources, with severity, timing and routing."""

    name: str
    condition: Condition
    severity: str
    timing: Timing
    classes: tuple[str, ...] = ()
    priorities: tuple[Priority, ...] = ()
    sources: tuple[str, ...] = ()
    min_count: int = 1
    sla_fraction: float = 1.0
    blind_after: timedelta = timedelta(minutes=5)
    runbook_url: str = ""
    deferral_share: float = 0.5
    """``destination_deferring``: the share of a destination's mail deferred over the window."""

    def selects(self, view: ClassView) -> bool:
        """Whether this rule applies to ``view``'s class and source."""
        return (
            (not self.classes or view.class_name in self.classes)
            and (not self.priorities or view.priority in self.priorities)
            and (not self.sources or view.source in self.sources)
        )


def _details(items: Sequence[Item], oldest: float | None = None) -> Details:
    ordered = sorted(items, key=lambda i: -i.age_seconds)
    return Details(
        count=len(items),
        oldest_age_seconds=oldest
        if oldest is not None
        else (ordered[0].age_seconds if ordered else 0),
        ids=tuple(i.id for i in ordered[:MAX_IDS]),
        recipient_domains=tuple(sorted({d for i in items for d in i.domains})),
        reasons=tuple(dict.fromkeys(i.reason for i in ordered if i.reason))[:10],
        subjects=tuple(i.subject for i in ordered[:MAX_IDS] if i.subject),
        categories=tuple(sorted({i.category for i in items if i.category})),
    )


def evaluate(rule: AlertRule, situation: Situation) -> list[Finding]:
    """One finding per key the rule selects, active or not."""
    if rule.condition is Condition.SOURCE_BLIND:
        return _blind(rule, situation)
    if rule.condition is Condition.DESTINATION_DEFERRING:
        return [_deferring(rule, w) for w in situation.destinations
                if not rule.sources or w.destination in rule.sources]  # fmt: skip
    if rule.condition is Condition.CANARY_LOST:
        return [
            Finding(AlertKey(rule.name, "", path), bool(lost), _details(lost))
            for path, lost in sorted(situation.canaries_lost.items())
            if not rule.sources or path in rule.sources
        ]
    merged: dict[tuple[str, str], list[ClassView]] = {}
    for view in situation.classes:
        if rule.selects(view):
            merged.setdefault((view.class_name, view.source), []).append(view)
    return [_class_finding(rule, views) for views in merged.values()]


def _class_finding(rule: AlertRule, views: Sequence[ClassView]) -> Finding:
    """One finding for one (class, source) over the views of the message priorities selected.

    Alerts are keyed by (rule, class, source): a rule selecting several priorities (P1 and
    P2 mail of class ``mappa``) gets one alert, whose priority is that of its most urgent
    message concerned (``Details.priority``).
    """
    first = views[0]
    key = AlertKey(rule.name, first.class_name, first.source)
    oldest: float | None = max(v.oldest_age_seconds for v in views)
    if rule.condition is Condition.STUCK:
        concerned = [v for v in views if v.stuck]
        active = sum(len(v.stuck) for v in views) >= rule.min_count
        items = [i for v in views for i in v.stuck]
    elif rule.condition is Condition.OLDEST_AGE:
        concerned = [
            v for v in views if v.oldest_age_seconds >= rule.sla_fraction * v.sla_seconds > 0
        ]
        active = bool(concerned)
        items = [i for v in views for i in v.stuck]
    else:
        concerned = [v for v in views if v.undeliverable]
        active = bool(concerned)
        items = [i for v in views for i in v.undeliverable]
        oldest = None
    details = _details(items, oldest)
    priority = min((v.priority for v in concerned or views), default=None)
    return Finding(key, active, replace(details, priority=priority))


def _deferring(rule: AlertRule, watched: DestinationWatch) -> Finding:
    """``destination_deferring`` for one destination (``rule.sources``: destinations)."""
    latest, wanted = watched.latest, rule.priorities or tuple(Priority)
    count = sum(n for p, n in latest.deferred.items() if p in wanted)
    active = count >= rule.min_count and watched.deferral_ratio >= rule.deferral_share
    details = Details(
        count=count, oldest_age_seconds=latest.oldest_deferred_seconds, ids=latest.ids,
        recipient_domains=(watched.destination,), categories=watched.categories,
        classes=tuple(sorted(latest.classes)),
        priority=min((p for p in wanted if latest.deferred.get(p)), default=None),
    )  # fmt: skip
    return Finding(AlertKey(rule.name, "", watched.destination), active, details)


def _blind(rule: AlertRule, situation: Situation) -> list[Finding]:
    """``source_blind``: failing for ``blind_after``, or ``blind_after`` overdue a success."""
    findings = []
    now = situation.now
    for source in sorted({*situation.failing_since, *situation.overdue_since}):
        if rule.sources and source not in rule.sources:
            continue
        since = situation.failing_since.get(source)
        due = situation.overdue_since.get(source)
        failing = (now - since) if since is not None else timedelta(0)
        overdue = (now - due) if due is not None else timedelta(0)
        blind = (since is not None and failing >= rule.blind_after) or (
            due is not None and overdue >= rule.blind_after
        )
        findings.append(Finding(AlertKey(rule.name, "", source), blind,
                                Details(oldest_age_seconds=max(failing, overdue)
                                        .total_seconds())))  # fmt: skip
    return findings
