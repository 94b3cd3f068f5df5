"""What the alert rules look at, built from the one judgement (pure).

One :class:`~mailwatch.alerting.rules.ClassView` per (source, class, *message* priority): a
MAPPA level-3 message (P1 in the P2 class ``mappa``) is in the ``mappa`` P1 view, so rules
that select P1 (``p1_stuck``: page) see it, and rules that select P2 (``p2_stuck``: ticket)
do not. Stuck items are the verdicts the scan judged stuck (:func:`mailwatch.core.judgement.
waiting_reason`); undeliverable items are the messages :func:`mailwatch.core.judgement.judge` calls
undeliverable (bounced or expired within the window), whatever their status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from mailwatch.alerting.rules import ClassView, Item
from mailwatch.core.breakdown import verdict_category
from mailwatch.core.classify import MessageClass
from mailwatch.core.judgement import Judgement
from mailwatch.core.model import Priority, Verdict
from mailwatch.core.snapshot import class_priorities
from mailwatch.core.tracked import Backlog

ViewKey = tuple[str, str, Priority]


def _undeliverable_items(judgements: Iterable[Judgement]) -> dict[ViewKey, list[Item]]:
    items: dict[ViewKey, list[Item]] = {}
    for j in judgements:
        if j.undeliverable is None:
            continue
        m = j.message
        category = j.category.value if j.category else None
        items.setdefault((m.source, m.class_name, m.priority), []).append(
            Item(m.queue_id, j.age_seconds, m.recipient_domains, j.undeliverable, m.subject,
                 category)
        )  # fmt: skip
    return items


def _stuck_item(verdict: Verdict, relayhost: str | None) -> Item:
    m = verdict.message
    category = verdict_category(verdict, relayhost).value
    return Item(m.queue_id, verdict.age_seconds, m.recipient_domains, verdict.reason, m.subject,
                category)  # fmt: skip


def class_views(
    classes: Sequence[MessageClass],
    verdicts: Mapping[str, Sequence[Verdict]],
    undeliverable: Iterable[Judgement],
    relayhosts: Mapping[str, str | None] | None = None,
    backlogs: Mapping[str, Backlog] | None = None,
) -> tuple[ClassView, ...]:
    """Views of every backlog source in ``verdicts``, per class and message priority.

    ``relayhosts`` (each source's smarthost) makes a connect failure naming it ``relay_down``.
    A source in ``backlogs`` (the scanner's kept backlog of the same verdicts) is read from
    it: its stuck verdicts and kept oldest ages, not a walk over every verdict.
    """
    gone = _undeliverable_items(undeliverable)
    views = []
    for source, source_verdicts in verdicts.items():
        relayhost = (relayhosts or {}).get(source)
        backlog = (backlogs or {}).get(source)
        by_key: dict[tuple[str, Priority], list[Verdict]] = {}
        oldest: dict[tuple[str, Priority], float] = {}
        if backlog is not None:
            oldest = {(n, p): backlog.oldest_age((n, p)) for n, p, _ in backlog.queued()}
            by_key = {key: [] for key in oldest}
        for v in source_verdicts if backlog is None else backlog.stuck_verdicts():
            found = v.classification
            by_key.setdefault((found.name, found.priority), []).append(v)
        for c in classes:
            sla = c.stuck_after.seconds or c.stuck_after.business_days * 86400.0
            seen = {p for name, p in by_key if name == c.name}
            seen |= {p for s, name, p in gone if s == source and name == c.name}
            for priority in sorted({*class_priorities(c), *seen}):
                mine = by_key.get((c.name, priority), [])
                age = (oldest.get((c.name, priority), 0.0) if backlog is not None
                       else max((v.age_seconds for v in mine), default=0.0))  # fmt: skip
                views.append(ClassView(
                    source=source, class_name=c.name, priority=priority, sla_seconds=sla,
                    oldest_age_seconds=age,
                    stuck=tuple(_stuck_item(v, relayhost) for v in mine if v.stuck),
                    undeliverable=tuple(gone.get((source, c.name, priority), ())),
                ))  # fmt: skip
    return tuple(views)
