"""The notification payload: one documented JSON shape every receiver renders from (pure).

Version 1::

    {"version": 1, "kind": "firing|repeat|escalation|resolved", "sent_at": ISO-8601,
     "alert": {"id": "p1_stuck/recall_emergency/mta1", "rule": ..., "class": ..., "source": ...,
               "priority": "P1", "severity": "page", "status": "firing",
               "summary": "2 recall_emergency (P1) messages stuck in mta1",
               "description": "...", "runbook_url": "...",
               "started_at": ..., "fired_at": ..., "resolved_at": null,
               "acked_by": null, "count": 2, "oldest_age_seconds": 900.0,
               "ids": ["A1B2C3D4E5"], "recipient_domains": ["justice.example"],
               "reasons": ["connect to ...: Connection refused"],
               "reason_categories": ["connect"],   # mailwatch.core.reasons, sorted
               "subjects": [...]   # only for receivers with include_subjects = true
    }}

No subject, name or address appears anywhere else: summaries name the class, source and counts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mailwatch.alerting.lifecycle import AlertStatus, Intent
from mailwatch.alerting.rules import AlertRule, Condition
from mailwatch.core.durations import format_seconds
from mailwatch.core.judgement import reason_category
from mailwatch.core.model import Priority
from mailwatch.core.redaction import mask_addresses


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def summary(rule: AlertRule, intent: Intent, priority: Priority | None) -> str:
    """One line for group channels: class, priority, source and counts only."""
    key, details = intent.state.key, intent.state.details
    label = f"{key.class_name} ({priority})" if priority else key.class_name
    resolved = " (resolved)" if intent.state.status is AlertStatus.RESOLVED else ""
    if rule.condition is Condition.SOURCE_BLIND:
        blind_for = format_seconds(details.oldest_age_seconds)
        return f"mailwatch is blind: source {key.source} failing for {blind_for}{resolved}"
    if rule.condition is Condition.DESTINATION_DEFERRING:
        why = ", ".join(details.categories) or "no reason given"
        return (
            f"{key.source} is deferring {details.count} {priority or ''} message(s) ({why});"
            f" classes: {', '.join(details.classes) or '-'}{resolved}"
        ).replace("  ", " ")
    if rule.condition is Condition.CANARY_LOST:
        return f"canary lost on path {key.source}: {details.count} not delivered{resolved}"
    if rule.condition is Condition.UNDELIVERABLE:
        return f"{details.count} {label} message(s) bounced or expired from {key.source}{resolved}"
    oldest = format_seconds(details.oldest_age_seconds)
    return f"{details.count} {label} message(s) stuck in {key.source}, oldest {oldest}{resolved}"


def categories(reasons: tuple[str, ...], known: tuple[str, ...] = ()) -> list[str]:
    """The distinct categories of an alert (sorted; never an address or subject).

    ``known`` are the ones the judgement gave (it knows the source's relayhost); otherwise
    they are read from the ``reasons``.
    """
    if known:
        return sorted(set(known))
    return sorted({c.value for c in map(reason_category, reasons) if c is not None})


def build(
    intent: Intent,
    rule: AlertRule,
    priority: Priority | None,
    *,
    include_subjects: bool,
    now: datetime,
) -> dict[str, Any]:
    """The payload of ``intent`` for one receiver.

    ``priority`` is the class's; the alert's own (its most urgent message's) wins when known.
    """
    state, details = intent.state, intent.state.details
    priority = details.priority or priority
    reasons = (
        list(details.reasons) if include_subjects else [mask_addresses(r) for r in details.reasons]
    )
    alert: dict[str, Any] = {
        "id": str(state.key),
        "rule": state.key.rule,
        "class": state.key.class_name,
        "source": state.key.source,
        "priority": str(priority) if priority else "",
        "severity": rule.severity,
        "status": state.status.value,
        "summary": summary(rule, intent, priority),
        "description": f"{rule.condition.value} condition of rule {rule.name}; "
        f"queue ids / UIDs: {', '.join(details.ids[:10]) or 'none'}",
        "runbook_url": rule.runbook_url,
        "started_at": _iso(state.since),
        "fired_at": _iso(state.fired_at),
        "resolved_at": _iso(state.resolved_at),
        "acked_by": state.acked_by,
        "count": details.count,
        "oldest_age_seconds": details.oldest_age_seconds,
        "ids": list(details.ids),
        "recipient_domains": list(details.recipient_domains),
        "reasons": reasons,
        "reason_categories": categories(details.reasons, details.categories),
    }
    if details.classes:
        alert["classes"] = list(details.classes)
    if include_subjects:
        alert["subjects"] = list(details.subjects)
    return {"version": 1, "kind": intent.kind.value, "sent_at": now.isoformat(), "alert": alert}
