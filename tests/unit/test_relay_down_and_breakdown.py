"""relay_down end to end, and stuck mail by reason category and destination (issue 15).

The relayhost a scan saw reaches the judgement through the store (every interface); stuck
mail is broken down by reason and by destination with bounded labels (item 3).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from mailwatch.alerting import payload as payloads
from mailwatch.alerting.lifecycle import (
    AlertKey,
    AlertState,
    AlertStatus,
    Intent,
    NotificationKind,
    Timing,
)
from mailwatch.alerting.rules import AlertRule, Condition, Situation, evaluate
from mailwatch.alerting.situation import class_views
from mailwatch.app.queries import message_detail, stuck_json
from mailwatch.core.backlog import count_by_class
from mailwatch.core.breakdown import OTHER, destination_labels
from mailwatch.core.classify import MessageClass
from mailwatch.core.durations import Duration
from mailwatch.core.judgement import MessageFilter, judge
from mailwatch.core.model import Classification, Message, Priority, Recipient, Verdict
from mailwatch.core.reasons import ReasonCategory
from mailwatch.core.sla import evaluate as evaluate_sla
from mailwatch.core.snapshot import OutcomeTotals, build_snapshot
from mailwatch.store import Store
from mailwatch.web import pagemodel
from mailwatch.web.metrics import MailwatchCollector

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RECALL = MessageClass("recall", Priority.P1, Duration(seconds=600))
RELAYHOST = "[smarthost.probation.example]:587"
RELAY_REFUSED = "connect to smarthost.probation.example[192.0.2.25]:587: Connection refused"
BUSY = "host mx.justice.example[192.0.2.30] said: 451 4.7.500 Server busy. (in reply to RCPT TO)"


def _verdict(queue_id: str, reason: str, to: str = "ppcs@justice.example") -> Verdict:
    message = Message(
        key=f"mta1/{queue_id}", source="mta1", queue_id=queue_id, queue="deferred",
        arrival=NOW - timedelta(hours=1), size=100, sender="om@probation.example",
        recipients=(Recipient(to, reason),), subject="Recall of J. Bloggs",
    )  # fmt: skip
    return evaluate_sla(message, Classification("recall", Priority.P1, "default"), RECALL, NOW)


VERDICTS = [
    _verdict("R1", RELAY_REFUSED),
    _verdict("B1", BUSY),
    _verdict("B2", BUSY, to="ops@police.example"),
]


def _store(tmp_path: Path, relayhost: str | None) -> Store:
    store = Store(tmp_path / "mw.db")
    counts = count_by_class("mta1", [RECALL], VERDICTS)
    store.record_scan("mta1", NOW, NOW, VERDICTS, counts, relayhost=relayhost)
    return store


class TestRelayDownFromTheStore:
    """The relayhost a scan saw is stored with it and reaches the judgement."""

    def test_show_and_stuck_say_relay_down(self, tmp_path: Path) -> None:
        """``show`` and ``stuck --json`` (and the API, which uses the same shapes)."""
        with _store(tmp_path, RELAYHOST) as store:
            stored = store.get("R1")
            assert stored.relayhost == RELAYHOST
            judged = judge(stored, NOW, NOW - timedelta(days=1))
            assert judged.category is ReasonCategory.RELAY_DOWN
            assert stuck_json(judged)["reason_category"] == "relay_down"
            assert ("reason category", "relay_down") in message_detail(judged, NOW)
            page, _ = store.list_messages(NOW, NOW - timedelta(days=1), MessageFilter())
            categories = {m.queue_id: judge(m, NOW, NOW).category for m in page}
            assert categories == {"R1": ReasonCategory.RELAY_DOWN,
                                  "B1": ReasonCategory.THROTTLED,
                                  "B2": ReasonCategory.THROTTLED}  # fmt: skip

    def test_without_a_relayhost_it_is_a_connect_failure(self, tmp_path: Path) -> None:
        """A source without a relayhost (or an old store): the destination refused, connect."""
        with _store(tmp_path, None) as store:
            stored = store.get("R1")
            assert stored.relayhost is None
            assert judge(stored, NOW, NOW).category is ReasonCategory.CONNECT

    def test_the_latest_good_scan_decides(self, tmp_path: Path) -> None:
        """A relayhost removed by a reload: the next good scan says so; failed scans don't."""
        with _store(tmp_path, RELAYHOST) as store:
            store.record_failure("mta1", NOW, NOW, "postqueue timed out")
            assert store.get("R1").relayhost == RELAYHOST
            counts = count_by_class("mta1", [RECALL], VERDICTS)
            store.record_scan("mta1", NOW, NOW, VERDICTS, counts, relayhost=None)
            assert store.get("R1").relayhost is None


def _snapshot(relayhosts: dict[str, str | None], partners: list[str]) -> str:
    snap = build_snapshot(
        now=NOW, classes=[RECALL], verdicts={"mta1": VERDICTS},
        queues={"mta1": ("deferred",)}, outcomes=OutcomeTotals(), histories={}, health={},
        relayhosts=relayhosts, partners=partners,
    )  # fmt: skip
    registry = CollectorRegistry()
    registry.register(MailwatchCollector(lambda: snap))
    return generate_latest(registry).decode()


class TestMetricsByReasonAndDestination:
    """mailwatch_stuck_messages_by_reason / _by_destination: bounded, pre-initialised."""

    def test_relay_down_and_throttled_counted_by_reason(self) -> None:
        """The relayhost turns the refused relay into relay_down in /metrics."""
        text = _snapshot({"mta1": RELAYHOST}, [])
        line = 'mailwatch_stuck_messages_by_reason{priority="P1",reason="%s",source="mta1"}'
        assert f"{line % 'relay_down'} 1.0" in text
        assert f"{line % 'throttled'} 2.0" in text
        assert f"{line % 'connect'} 0.0" in text
        age = 'mailwatch_oldest_stuck_age_seconds_by_reason{priority="P1",reason="throttled",'
        assert f'{age}source="mta1"}} 3600.0' in text

    def test_every_category_is_present_and_nothing_else(self) -> None:
        """13 series per (source, priority), at 0 when unused: the count is known in advance."""
        text = _snapshot({}, [])
        lines = [line for line in text.splitlines()
                 if line.startswith("mailwatch_stuck_messages_by_reason{")]  # fmt: skip
        assert len(lines) == len(ReasonCategory)
        assert 'reason="connect",source="mta1"} 1.0' in "".join(lines)  # no relayhost: connect

    def test_destinations_are_partners_or_other(self) -> None:
        """Only configured partner domains get a label; police.example is ``other``."""
        text = _snapshot({}, ["justice.example", "courts.example"])
        line = (
            'mailwatch_stuck_messages_by_destination{destination="%s",priority="P1",source="mta1"}'
        )
        assert f"{line % 'justice.example'} 2.0" in text
        assert f"{line % 'courts.example'} 0.0" in text  # pre-initialised
        assert f"{line % 'other'} 1.0" in text
        assert "police.example" not in text
        assert "ppcs@" not in text
        assert "Bloggs" not in text

    def test_destination_labels(self) -> None:
        """Several domains: each partner once, and ``other`` once for the rest (or none)."""
        partners = frozenset({"justice.example"})
        assert destination_labels(("justice.example", "x.example"), partners) == (
            "justice.example", OTHER)  # fmt: skip
        assert destination_labels(("justice.example",), partners) == ("justice.example",)
        assert destination_labels((), partners) == (OTHER,)


def test_status_page_shows_the_share_of_each_category(tmp_path: Path) -> None:
    """Per class, the share of each category of its stuck mail, relay_down included."""
    with _store(tmp_path, RELAYHOST) as store:
        page, _ = store.list_messages(NOW, NOW - timedelta(days=1), MessageFilter())
        judged = [judge(m, NOW, NOW - timedelta(days=1)) for m in page]
    shares = pagemodel._reasons(judged)
    assert [(s.category, s.count, s.percent) for s in shares] == [
        ("throttled", 2, 67), ("relay_down", 1, 33)]  # fmt: skip
    assert pagemodel._reasons([]) == []


def test_alert_carries_relay_down() -> None:
    """The alert path gets the judgement's category (relayhost known), not a re-reading."""
    views = class_views([RECALL], {"mta1": VERDICTS}, (), {"mta1": RELAYHOST})
    rule = AlertRule("p1_stuck", Condition.STUCK, "page", Timing(()))
    (finding,) = evaluate(rule, Situation(now=NOW, classes=views))
    assert finding.details.categories == ("relay_down", "throttled")
    state = AlertState(key=AlertKey("p1_stuck", "recall", "mta1"), status=AlertStatus.FIRING,
                       since=NOW, details=finding.details)  # fmt: skip
    body = payloads.build(Intent(NotificationKind.FIRING, (), state), rule, Priority.P1,
                          include_subjects=False, now=NOW)  # fmt: skip
    assert body["alert"]["reason_categories"] == ["relay_down", "throttled"]
