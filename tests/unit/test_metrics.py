"""Backlog drain maths, the metrics snapshot and the Prometheus collector (no I/O)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mailwatch.config.settings import load
from mailwatch.core.backlog import drain_estimate
from mailwatch.core.model import Classification, Message, Priority, Recipient, Verdict
from mailwatch.core.snapshot import (
    AGE_BUCKETS,
    UNCLASSIFIED,
    Histogram,
    MetricsSnapshot,
    OutcomeTotals,
    SourceHealth,
    build_snapshot,
    histograms,
)
from mailwatch.web.metrics import MailwatchCollector

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
CLASSES = load(None).classifier().all_classes


def _history(counts: list[int], step: float = 30.0) -> list[tuple[datetime, int]]:
    return [(NOW + timedelta(seconds=i * step), n) for i, n in enumerate(counts)]


class TestDrainEstimate:
    """EWMA drain rate and time to clear on synthetic histories."""

    def test_empty_history(self) -> None:
        """No history: rate 0, nothing to clear."""
        estimate = drain_estimate([])
        assert (estimate.rate, estimate.eta_seconds) == (0.0, 0.0)

    def test_single_point_with_backlog_is_not_draining(self) -> None:
        """One scan cannot show a pace: ETA is infinite."""
        estimate = drain_estimate(_history([10]))
        assert estimate.rate == 0.0
        assert math.isinf(estimate.eta_seconds)

    def test_steady_drain(self) -> None:
        """One message per 30 s scan: 1/30 msg/s, ETA = backlog / rate."""
        estimate = drain_estimate(_history([100, 99, 98, 97, 96, 95]))
        assert estimate.rate == pytest.approx(1 / 30)
        assert estimate.eta_seconds == pytest.approx(95 * 30)

    def test_growth_is_negative_and_never_clears(self) -> None:
        """A growing backlog has a negative rate and an infinite ETA."""
        estimate = drain_estimate(_history([10, 12, 14, 16]))
        assert estimate.rate == pytest.approx(-2 / 30)
        assert math.isinf(estimate.eta_seconds)

    def test_flapping_averages_out(self) -> None:
        """+5/-5 every scan: the estimate stays near zero instead of swinging by 5/30."""
        estimate = drain_estimate(_history([50, 55, 50, 55, 50, 55, 50, 55, 50]))
        assert abs(estimate.rate) < 5 / 30 / 4

    def test_recent_change_of_pace_dominates(self) -> None:
        """After an hour of growth, 20 minutes of fast draining turn the rate positive."""
        growth = [100 + i for i in range(120)]
        drain = [growth[-1] - 10 * (i + 1) for i in range(40)]
        estimate = drain_estimate(_history(growth + drain))
        assert estimate.rate > 0.2

    def test_drained_to_zero(self) -> None:
        """An empty backlog has ETA 0 whatever the rate."""
        assert drain_estimate(_history([3, 2, 1, 0])).eta_seconds == 0.0

    def test_clock_jump_backwards_is_ignored(self) -> None:
        """A step with non-positive dt contributes nothing."""
        history = _history([10, 9])
        history.append((NOW - timedelta(hours=1), 50))
        history.append((NOW + timedelta(seconds=60), 8))
        estimate = drain_estimate(history)
        assert estimate.rate > 0


def _verdict(
    source: str, queue: str, name: str, prio: Priority, age: float, stuck: bool
) -> Verdict:
    message = Message(
        key=f"{source}/Q{age}", source=source, queue_id=f"Q{age}", queue=queue,
        arrival=NOW - timedelta(seconds=age), size=100, sender="om@probation.example",
        recipients=(Recipient("ppcs@justice.example"),), subject="Emergency recall J Smith",
    )  # fmt: skip
    return Verdict(
        message, Classification(name, prio, "r"), age, NOW, stuck, "x" if stuck else None
    )


class TestSnapshot:
    """Aggregation with every class and source present."""

    def test_zero_rows_for_every_class_and_source(self) -> None:
        """An empty source still has a zero for every class, queue and priority."""
        snap = build_snapshot(NOW, CLASSES, {"mta1": []}, {"mta1": ("deferred", "hold")},
                              OutcomeTotals(), {}, {})  # fmt: skip
        # mappa (P2) has a rule raising MAPPA level 3 to P1: one more series, the message's.
        assert len(snap.stuck) == len(CLASSES) + 1
        assert snap.stuck[("mta1", "mappa", Priority.P1)] == 0
        assert len(snap.messages) == 2 * (len(CLASSES) + 1)
        assert set(snap.stuck.values()) == {0}
        assert snap.oldest_age[("mta1", "recall_emergency", Priority.P1)] == 0.0

    def test_counts_stuck_and_oldest(self) -> None:
        """Messages are counted by queue and class; stuck and oldest follow the verdicts."""
        verdicts = [
            _verdict("mta1", "deferred", "recall_emergency", Priority.P1, 900, True),
            _verdict("mta1", "deferred", "recall_emergency", Priority.P1, 100, False),
            _verdict("mta1", "hold", "general", Priority.P4, 50, True),
        ]
        snap = build_snapshot(NOW, CLASSES, {"mta1": verdicts}, {"mta1": ("deferred", "hold")},
                              OutcomeTotals(), {}, {})  # fmt: skip
        assert snap.messages[("mta1", "deferred", "recall_emergency", Priority.P1)] == 2
        assert snap.stuck[("mta1", "recall_emergency", Priority.P1)] == 1
        assert snap.oldest_age[("mta1", "recall_emergency", Priority.P1)] == 900
        assert snap.age["recall_emergency"].count == 2
        assert snap.messages[("mta1", "hold", "general", Priority.P4)] == 1

    def test_histogram_buckets_are_cumulative(self) -> None:
        """Histogram.of gives cumulative counts with +Inf last, and the sum."""
        hist = Histogram.of([30, 70, 10**7], AGE_BUCKETS)
        assert hist.cumulative[0] == 1  # <= 60
        assert hist.cumulative[1] == 2  # <= 300
        assert hist.cumulative[-2] == 2  # <= 7 days
        assert hist.count == 3
        assert hist.total == 30 + 70 + 10**7


@pytest.fixture(name="snapshot")
def fixture_snapshot() -> MetricsSnapshot:
    """A snapshot with one stuck recall, outcomes and a failing source."""
    verdicts = [_verdict("mta1", "deferred", "recall_emergency", Priority.P1, 900, True)]
    outcomes = OutcomeTotals(
        delivered={"court_result": 4, UNCLASSIFIED: 9},
        bounced={("recall_emergency", "P1", "5"): 1, ("mappa", "P1", "5"): 1},
        expired={("risk_escalation", "P1"): 2},
        delivery_delay={"court_result": Histogram.of([0.5, 2.0, 30.0, 90.0], (1, 5, 60))},
    )
    health = {
        "mta1": SourceHealth(True, 0.25, NOW),
        "mta2": SourceHealth(False, 5.0, None, {"timeout": 3}, NOW - timedelta(minutes=5)),
    }
    return build_snapshot(NOW, CLASSES, {"mta1": verdicts, "mta2": []},
                          {"mta1": ("deferred",), "mta2": ("deferred",)}, outcomes,
                          {("mta1", "recall_emergency"): _history([3, 2, 1])}, health)  # fmt: skip


class TestCollector:
    """The exposition renders the snapshot, zeros included, and nothing personal."""

    def test_values(self, snapshot: MetricsSnapshot) -> None:
        """Key series carry the snapshot's values."""
        registry = CollectorRegistry()
        registry.register(MailwatchCollector(lambda: snapshot))
        value = registry.get_sample_value
        assert value("mailwatch_stuck_messages", {"source": "mta1", "class": "recall_emergency",
                                                  "priority": "P1"}) == 1  # fmt: skip
        assert value("mailwatch_stuck_messages", {"source": "mta2", "class": "recall_emergency",
                                                  "priority": "P1"}) == 0  # fmt: skip
        assert value("mailwatch_oldest_message_age_seconds",
                     {"source": "mta1", "class": "recall_emergency",
                      "priority": "P1"}) == 900  # fmt: skip
        assert value("mailwatch_delivered_total", {"class": "court_result"}) == 4
        assert value("mailwatch_delivered_total", {"class": "safeguarding"}) == 0
        assert value("mailwatch_delivered_total", {"class": UNCLASSIFIED}) == 9
        bounced = "mailwatch_bounced_total"
        assert (
            value(bounced, {"class": "recall_emergency", "priority": "P1", "dsn_class": "5"}) == 1
        )
        # a MAPPA level-3 message (P1 in the P2 class) bounced; the class's own P2 series is 0
        assert value(bounced, {"class": "mappa", "priority": "P1", "dsn_class": "5"}) == 1
        assert value(bounced, {"class": "mappa", "priority": "P2", "dsn_class": "5"}) == 0
        assert value(bounced, {"class": UNCLASSIFIED, "priority": "unknown", "dsn_class": "5"}) == 0
        assert value("mailwatch_expired_total", {"class": "risk_escalation", "priority": "P1"}) == 2
        assert value("mailwatch_expired_total", {"class": "mappa", "priority": "P2"}) == 0
        assert value("mailwatch_delivery_delay_seconds_bucket",
                     {"class": "court_result", "le": "5.0"}) == 2  # fmt: skip
        assert value("mailwatch_delivery_delay_seconds_count", {"class": "court_result"}) == 4
        assert value("mailwatch_probe_up", {"source": "mta2"}) == 0
        assert value("mailwatch_probe_up", {"source": "mta1"}) == 1
        assert value("mailwatch_probe_errors_total", {"source": "mta2", "kind": "timeout"}) == 3
        assert value("mailwatch_probe_errors_total", {"source": "mta1", "kind": "timeout"}) == 0
        assert value("mailwatch_probe_last_success_timestamp_seconds", {"source": "mta2"}) == 0
        drain = {"source": "mta1", "class": "recall_emergency"}
        assert value("mailwatch_backlog_drain_rate", drain) == pytest.approx(1 / 30)
        assert value("mailwatch_backlog_clear_eta_seconds", drain) == pytest.approx(30)
        empty = {"source": "mta2", "class": "general"}
        assert value("mailwatch_backlog_clear_eta_seconds", empty) == 0
        assert value("mailwatch_build_info", {"version": __import__("mailwatch").__version__}) == 1

    def test_no_personal_data_in_exposition(self, snapshot: MetricsSnapshot) -> None:
        """Neither the subject, the names nor the addresses of the messages appear."""
        registry = CollectorRegistry()
        registry.register(MailwatchCollector(lambda: snapshot))
        text = generate_latest(registry).decode()
        for secret in (
            "J Smith",
            "Emergency recall",
            "ppcs",
            "justice.example",
            "om@",
            "probation",
        ):
            assert secret not in text

    def test_before_first_snapshot_only_build_info(self) -> None:
        """With no snapshot yet, only build info is exposed (no half-empty families)."""
        registry = CollectorRegistry()
        registry.register(MailwatchCollector(lambda: None))
        text = generate_latest(registry).decode()
        assert "mailwatch_build_info" in text
        assert "mailwatch_stuck_messages" not in text


def test_histograms_from_stored_bucket_rows() -> None:
    """Stored (key, bucket, count) rows become cumulative histograms; a bare sum is empty."""
    rows = [("court_result", 0, 2), ("court_result", 2, 1), ("general", 3, 4)]
    found = histograms(rows, (1, 5, 15), {"court_result": 12.0, "breach": 0.0})
    assert found["court_result"].cumulative == (2, 2, 3, 3)
    assert found["court_result"].total == 12.0
    assert found["general"].cumulative == (0, 0, 0, 4)
    assert found["general"].total == 0.0
    assert found["breach"].count == 0
