"""Read models shared by the CLI and the HTTP API, so both show the same thing.

Each function reads the store, judges at an explicit ``now`` and returns JSON-ready values.
The CLI prints them locally; the API serves them; ``--server`` CLI calls fetch them over HTTP
and print them with the same renderer. Subjects are included only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mailwatch.alerting.lifecycle import AlertStatus
from mailwatch.model import Priority
from mailwatch.render import judge_stored, message_detail, stuck_json
from mailwatch.store import Store

ALERT_ORDER = {AlertStatus.FIRING: 0, AlertStatus.ACKNOWLEDGED: 1, AlertStatus.PENDING: 2,
               AlertStatus.RESOLVED: 3, AlertStatus.INACTIVE: 4}  # fmt: skip


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """What ``stuck`` / ``GET /api/v1/messages`` select."""

    stuck_only: bool = True
    class_name: str | None = None
    priority: Priority | None = None
    older_than: float | None = None
    source: str | None = None
    limit: int | None = None
    offset: int = 0


def messages(
    store: Store,
    now: datetime,
    wanted: MessageFilter,
    *,
    undeliverable_for: float,
    show_subject: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """Matching messages, most urgent first, and how many matched before paging."""
    since = now - timedelta(seconds=undeliverable_for)
    gone = [m for m in store.undeliverable(since) if wanted.source in (None, m.source)]
    rows = [
        r for r in judge_stored([*store.queued(wanted.source), *gone], now)
        if (r.stuck or not wanted.stuck_only)
        and (wanted.class_name is None or r.message.class_name == wanted.class_name)
        and (wanted.priority is None or r.message.priority == wanted.priority)
        and (wanted.older_than is None or r.age_seconds > wanted.older_than)
    ]  # fmt: skip
    end = None if wanted.limit is None else wanted.offset + wanted.limit
    page = rows[wanted.offset : end]
    return [stuck_json(r, show_subject=show_subject) for r in page], len(rows)


def scans(store: Store, now: datetime) -> list[dict[str, Any]]:
    """The latest scan of each source."""
    return [
        {"source": name, "finished_at": s.finished_at.isoformat(), "ok": s.ok, "error": s.error,
         "age_seconds": round((now - s.finished_at).total_seconds(), 3),
         "warnings": list(s.warnings), "messages": s.messages}
        for name, s in sorted(store.last_scans().items())
    ]  # fmt: skip


def message(store: Store, ident: str, now: datetime) -> list[tuple[str, str]]:
    """Every field of one message (personal data: callers audit the consultation)."""
    return message_detail(store.get(ident), now)


def alerts(store: Store, now: datetime, *, show_all: bool = False) -> dict[str, Any]:
    """Alerts (most urgent first), active silences and the outbox backlog."""
    silences = store.silences(now)
    states = [s for s in store.alert_states().values()
              if show_all or s.status in (AlertStatus.FIRING, AlertStatus.ACKNOWLEDGED,
                                          AlertStatus.PENDING)]  # fmt: skip
    states.sort(key=lambda s: (ALERT_ORDER[s.status], -s.details.oldest_age_seconds))
    return {
        "alerts": [{
            "id": str(s.key), "rule": s.key.rule, "class": s.key.class_name,
            "source": s.key.source, "status": s.status.value,
            "since": s.since.isoformat() if s.since else None,
            "fired_at": s.fired_at.isoformat() if s.fired_at else None,
            "acked_by": s.acked_by, "count": s.details.count,
            "oldest_age_seconds": s.details.oldest_age_seconds, "ids": list(s.details.ids),
            "silenced": any(x.matches(s.key, now) for x in silences),
        } for s in states],
        "silences": [{"id": x.id, "class": x.class_name, "source": x.source,
                      "ends": x.ends.isoformat(), "reason": x.reason, "by": x.by}
                     for x in silences],
        "outbox_pending": store.outbox_pending(),
    }  # fmt: skip
