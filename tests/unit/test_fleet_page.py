"""The overview's Fleet section, pure part: per-class counts and per-source states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mailwatch.core.judgement import judge
from mailwatch.core.model import Headers, Priority, Recipient, Status, StoredMessage
from mailwatch.web import statuspage
from mailwatch.web.fleetmodel import fleet_view, unreachable
from mailwatch.web.pagemodel import ClassInfo

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=1)


def _message(key: str, cls: str, prio: Priority, age_min: int, sla_min: int) -> StoredMessage:
    arrival = NOW - timedelta(minutes=age_min)
    return StoredMessage(
        key=key, source="edge1/mta1", queue_id=key, queue="deferred", arrival=arrival, size=1,
        sender="", recipients=(Recipient("@example.org"),), headers=Headers(),
        subject="Emergency recall - A Person", marking=None, class_name=cls, priority=prio,
        rule="r", deadline=arrival + timedelta(minutes=sla_min), delay_reason=None,
        status=Status.QUEUED, first_seen=arrival, left_at=None, last_seen=NOW, outcome=None,
        outcome_at=None, outcome_text=None, dsn=None, delivery_delay=None, relayhost=None,
    )  # fmt: skip


def _status(agent: str, state: str, stuck: int | None, age: float) -> dict[str, Any]:
    return {"agent": agent, "source": "mta1", "state": state, "heartbeat_age_seconds": age,
            "stuck": stuck, "messages": 3, "error": None}  # fmt: skip


def _view() -> Any:
    messages = [
        _message("a", "general", Priority.P3, 600, 60),
        _message("b", "recall", Priority.P1, 90, 30),  # stuck (over SLA)
        _message("c", "recall", Priority.P1, 20, 30),  # waiting, not stuck
        _message("d", "recall", Priority.P1, 45, 30),  # stuck
    ]
    judged = [judge(m, NOW, SINCE) for m in messages]
    items = [_status("edge1", "ok", 3, 12), _status("edge2", "unknown", None, 3600)]
    infos = {"recall": ClassInfo("Emergency recall", "Emergency recall: P1")}
    return fleet_view(judged, 4, items, infos, LONDON, NOW)


def test_classes_count_stuck_of_waiting_p1_first_with_the_oldest_in_local_time() -> None:
    """Per class over every agent: stuck of waiting and the oldest since, P1 first."""
    view = _view()
    rows = [(c.name, c.priority, c.stuck, c.waiting) for c in view.classes]
    assert rows == [("recall", "P1", 2, 3), ("general", "P3", 1, 1)]
    assert view.classes[0].title == "Emergency recall"
    assert view.classes[0].oldest == "12:30 GMT (1h30m ago)"
    assert view.partial is None
    assert view.down is None


def test_a_stale_source_is_unknown_never_zero() -> None:
    """An unknown source's stuck is "not known" and the section counts it as unknown."""
    view = _view()
    by_agent = {s.agent: s for s in view.sources}
    assert (by_agent["edge2"].word, by_agent["edge2"].stuck) == ("UNKNOWN", "not known")
    assert (by_agent["edge1"].word, by_agent["edge1"].stuck) == ("ok", "3")
    assert by_agent["edge2"].heartbeat == "1h ago"
    assert view.unknown == 1


def test_a_partial_read_says_so() -> None:
    """More matched than were read: the section says it counted the most urgent part."""
    view = fleet_view([], 5, [], {}, LONDON, NOW)
    assert view.partial is not None
    assert "0 most urgent of 5" in view.partial


def test_unreachable_says_since_when_and_renders_without_counts() -> None:
    """The database down: the section says since when; the local page still renders."""
    view = unreachable(NOW - timedelta(minutes=5), "connection refused", LONDON, NOW)
    assert view.down == "fleet database unreachable since 13:55 GMT (5m ago): connection refused"
    summary = {"generated_at": NOW.isoformat(), "classes": [], "sources": [], "blind": [],
               "alerts_open": 0}  # fmt: skip
    html = statuspage.overview([], summary, updated="now", fleet=view)
    assert "fleet database unreachable since 13:55 GMT" in html
    assert "fleet-classes" not in html
    html = statuspage.overview([], summary, updated="now", fleet=_view())
    assert 'data-source="edge2/mta1" data-state="unknown"' in html
    assert "2 of 3" in html
    assert "Emergency recall - A Person" not in html  # never subjects
    assert 'id="fleet"' not in statuspage.overview([], summary, updated="now")
