"""Alert state to and from JSON (how the store keeps it across restarts)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from mailwatch.alerting.lifecycle import AlertKey, AlertState, AlertStatus, Details
from mailwatch.core.model import Priority


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def dump_state(state: AlertState) -> str:
    """The state as a JSON object (its key is stored alongside, in columns)."""
    d = state.details
    return json.dumps({
        "status": state.status.value,
        "since": _time(state.since), "fired_at": _time(state.fired_at),
        "last_active_at": _time(state.last_active_at),
        "last_notified_at": _time(state.last_notified_at),
        "notified": state.notified, "escalated": state.escalated,
        "acked_by": state.acked_by, "acked_at": _time(state.acked_at), "ack_note": state.ack_note,
        "resolved_at": _time(state.resolved_at),
        "details": {"count": d.count, "oldest_age_seconds": d.oldest_age_seconds,
                    "ids": list(d.ids), "recipient_domains": list(d.recipient_domains),
                    "reasons": list(d.reasons),
                    "priority": str(d.priority) if d.priority else None,
                    "categories": list(d.categories), "classes": list(d.classes)},
    })  # fmt: skip


def load_state(key: AlertKey, text: str) -> AlertState:
    """The state stored as ``text`` (subjects are never stored with alert state)."""
    raw = json.loads(text)
    details = raw.get("details") or {}
    return AlertState(
        key=key,
        status=AlertStatus(raw["status"]),
        since=_parse(raw.get("since")),
        fired_at=_parse(raw.get("fired_at")),
        last_active_at=_parse(raw.get("last_active_at")),
        last_notified_at=_parse(raw.get("last_notified_at")),
        notified=bool(raw.get("notified")),
        escalated=bool(raw.get("escalated")),
        acked_by=raw.get("acked_by"),
        acked_at=_parse(raw.get("acked_at")),
        ack_note=raw.get("ack_note"),
        resolved_at=_parse(raw.get("resolved_at")),
        details=Details(
            count=int(details.get("count", 0)),
            oldest_age_seconds=float(details.get("oldest_age_seconds", 0.0)),
            ids=tuple(details.get("ids", ())),
            recipient_domains=tuple(details.get("recipient_domains", ())),
            reasons=tuple(details.get("reasons", ())),
            priority=Priority.parse(details["priority"]) if details.get("priority") else None,
            categories=tuple(details.get("categories", ())),
            classes=tuple(details.get("classes", ())),
        ),
    )
