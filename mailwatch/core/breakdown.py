"""Stuck mail by reason category and by destination, with bounded labels (pure).

The metrics ``mailwatch_stuck_messages_by_reason``, ``mailwatch_stuck_messages_by_destination``
and ``mailwatch_oldest_stuck_age_seconds_by_*`` are built here from the latest verdicts of
every backlog source. Labels come from fixed or configured sets only, so the series count is
known in advance:

* ``reason``: one of :class:`~mailwatch.core.reasons.ReasonCategory` (13 values), every one
  present (0 when none) for every source and every priority its classes can give;
* ``destination``: one of the configured partner domains, or ``other``; every one present.

A message to several domains counts once under each of its partner domains, and once under
``other`` if it has any other domain (or none at all).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mailwatch.core.judgement import Judgement, reason_category
from mailwatch.core.model import Priority, Verdict
from mailwatch.core.reasons import ReasonCategory

OTHER = "other"
"""The destination label of every domain not configured as a partner."""

ClassReasonKey = tuple[str, Priority, ReasonCategory]
"""(class, message priority, reason category)."""
ReasonKey = tuple[str, Priority, ReasonCategory]
"""(source, message priority, reason category)."""
DestinationKey = tuple[str, str, Priority]
"""(source, destination label, message priority)."""


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Stuck queued messages (and the oldest one's age) by reason and by destination."""

    by_reason: Mapping[ReasonKey, int] = field(default_factory=dict)
    oldest_by_reason: Mapping[ReasonKey, float] = field(default_factory=dict)
    by_destination: Mapping[DestinationKey, int] = field(default_factory=dict)
    oldest_by_destination: Mapping[DestinationKey, float] = field(default_factory=dict)
    by_class: Mapping[ClassReasonKey, int] = field(default_factory=dict)
    """Stuck messages (waiting too long, or not sent) by class, priority and reason: for the
    status page's shares (not a metric: only categories in use are present)."""


def destination_labels(domains: Iterable[str], partners: frozenset[str]) -> tuple[str, ...]:
    """The destination labels of a message with these recipient ``domains``."""
    domains = tuple(domains)
    mine = sorted({d for d in domains if d in partners})
    if not domains or any(d not in partners for d in domains):
        mine.append(OTHER)
    return tuple(mine)


def verdict_category(verdict: Verdict, relayhost: str | None) -> ReasonCategory:
    """The category of a stuck verdict's reason (the judgement's rule, for the scan path)."""
    return reason_category(verdict.reason, relayhost) or ReasonCategory.UNKNOWN


def breakdown(
    verdicts: Mapping[str, Sequence[Verdict]],
    priorities: Iterable[Priority],
    relayhosts: Mapping[str, str | None],
    partners: Sequence[str],
    undeliverable: Iterable[Judgement] = (),
) -> Breakdown:
    """Count the stuck verdicts of every source by reason and by destination, zeros included.

    ``priorities`` are pre-initialised (the ones the classes can give); ``relayhosts`` is
    each source's smarthost (a connect failure naming it is ``relay_down``). The per-class
    counts also take the ``undeliverable`` judgements (bounced or expired: not sent).
    """
    wanted, partner_set = sorted(set(priorities)), frozenset(partners)
    labels = [*sorted(partner_set), OTHER]
    by_reason: dict[ReasonKey, int] = {}
    oldest_reason: dict[ReasonKey, float] = {}
    by_dest: dict[DestinationKey, int] = {}
    oldest_dest: dict[DestinationKey, float] = {}
    by_class: dict[ClassReasonKey, int] = {}
    for source, source_verdicts in verdicts.items():
        for prio in wanted:
            for category in ReasonCategory:
                by_reason[(source, prio, category)] = 0
                oldest_reason[(source, prio, category)] = 0.0
            for label in labels:
                by_dest[(source, label, prio)] = 0
                oldest_dest[(source, label, prio)] = 0.0
        relayhost = relayhosts.get(source)
        for v in source_verdicts:
            if not v.stuck:
                continue
            prio, age = v.classification.priority, v.age_seconds
            category = verdict_category(v, relayhost)
            key = (source, prio, category)
            by_reason[key] = by_reason.get(key, 0) + 1
            mine = (v.classification.name, prio, category)
            by_class[mine] = by_class.get(mine, 0) + 1
            oldest_reason[key] = max(oldest_reason.get(key, 0.0), age)
            for label in destination_labels(v.message.recipient_domains, partner_set):
                where = (source, label, prio)
                by_dest[where] = by_dest.get(where, 0) + 1
                oldest_dest[where] = max(oldest_dest.get(where, 0.0), age)
    for j in undeliverable:
        if j.undeliverable is not None:
            mine = (j.message.class_name, j.message.priority, j.category or ReasonCategory.UNKNOWN)
            by_class[mine] = by_class.get(mine, 0) + 1
    return Breakdown(by_reason, oldest_reason, by_dest, oldest_dest, by_class)
