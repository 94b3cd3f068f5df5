"""The incident replay's report maths and mail plan (bench/incident/, issue 18), pure.

The replay itself runs on real servers (``pytest -m replay``); what it measures is computed
by these functions, tested here on hand-made timelines.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from incident import eta_lab, maillogs, report
from incident.scenario import (
    HUB,
    RELAY,
    build_message,
    plan_messages,
    scaled_taxonomy,
    span_seconds,
)

from mailwatch.config.settings import load
from mailwatch.core.classify import Classifier
from mailwatch.parsing.eml import message_from_bytes

TAXONOMY = Path(__file__).resolve().parents[2] / "mailwatch/core/taxonomy.toml"


def _sent(due_in: float = 60, left: float | None = 1000, source: str = "hub") -> report.Sent:
    return report.Sent("hub#1", "recall_emergency", source, 100.0, due_in, left)


class TestP1Latency:
    """Seconds from a P1 message's SLA passing to a covering alert in Alertmanager."""

    def test_latency_is_first_sample_at_or_after_the_due_time(self) -> None:
        """Due at 160; the alert is first seen at 163.5: 3.5 s."""
        seen = {("p1_stuck", "recall_emergency", "hub"): [150.0, 163.5, 164.0]}
        (result,), excused = report.p1_results([_sent()], seen, interval=5, end=2000)
        assert result.latency == pytest.approx(3.5)
        assert excused == 0

    def test_an_alert_already_active_covers_at_once(self) -> None:
        """Seen continuously through the due time: the first sample after it counts."""
        seen = {("MailwatchP1Stuck", "recall_emergency", "hub"): [159.0, 159.5, 160.0, 160.5]}
        (result,), _ = report.p1_results([_sent()], seen, interval=5, end=2000)
        assert result.latency == 0.0

    def test_another_class_or_source_does_not_cover(self) -> None:
        """An alert for risk_escalation, or for the relay, leaves the recall unalerted."""
        seen = {
            ("p1_stuck", "risk_escalation", "hub"): [170.0],
            ("p1_stuck", "recall_emergency", "relay"): [170.0],
            ("p2_stuck", "recall_emergency", "hub"): [170.0],
        }
        (result,), _ = report.p1_results([_sent()], seen, interval=5, end=2000)
        assert result.latency is None

    def test_an_alert_after_the_message_left_does_not_count(self) -> None:
        """Left at 200 (relay back): an alert first seen at 250 is not its alert."""
        seen = {("p1_stuck", "recall_emergency", "hub"): [250.0]}
        (result,), _ = report.p1_results([_sent(left=200)], seen, interval=5, end=2000)
        assert result.latency is None

    def test_a_message_that_left_before_the_target_is_excused(self) -> None:
        """Due at 160, left at 165 (< 160 + 5 + 2): not expected to be alerted."""
        results, excused = report.p1_results([_sent(left=165)], {}, interval=5, end=2000)
        assert (results, excused) == ([], 1)


def test_false_alerts_name_only_stuck_type_alerts_of_unstuck_classes() -> None:
    """p2_stuck for a class that was never stuck is false; a canary or growth alert is not."""
    seen: dict[report.AlertKey, list[float]] = {
        ("p2_stuck", "breach", "hub"): [1.0],
        ("p2_stuck", "release", "hub"): [1.0],
        ("MailwatchBacklogGrowing", "general", "hub"): [1.0],
        ("canary_lost", "", "canary"): [1.0],
    }
    assert report.false_alerts(seen, {"breach"}) == ["p2_stuck class=release source=hub"]


def test_stuck_classes_are_those_still_waiting_past_their_sla() -> None:
    """A message read before its SLA passed does not make its class stuck."""
    sent = [
        report.Sent("a", "court_result", "courts", 0.0, 240.0, 100.0),
        report.Sent("b", "breach", "hub", 0.0, 120.0, 300.0),
        report.Sent("c", "general", "hub", 0.0, 240.0, None),
    ]
    assert report.stuck_classes(sent) == {"breach", "general"}


class TestEta:
    """The clear ETA read during the recovery against the measured clear time."""

    def test_errors_relative_to_remaining_and_to_the_whole_recovery(self) -> None:
        """Recovery 100 -> 300; at 200 the ETA says 120 s, 100 s remained: +20%, +10%."""
        reading = report.eta_error(200.0, 120.0, start=100.0, clear=300.0)
        assert reading["fraction"] == 0.5
        assert reading["remaining_error"] == pytest.approx(0.2)
        assert reading["duration_error"] == pytest.approx(0.1)

    def test_an_infinite_eta_has_no_error_and_misses(self) -> None:
        """+Inf (not draining yet) is no prediction: the target is missed."""
        reading = report.eta_error(200.0, math.inf, start=100.0, clear=300.0)
        assert reading["remaining_error"] is None
        assert not report.eta_verdict([reading])

    def test_the_target_looks_from_halfway_on(self) -> None:
        """25% far off, 50% and 75% within 20%: met; 75% at +25%: missed."""
        early = report.eta_error(150.0, 500.0, 100.0, 300.0)
        half = report.eta_error(200.0, 110.0, 100.0, 300.0)
        late = report.eta_error(250.0, 45.0, 100.0, 300.0)
        assert report.eta_verdict([early, half, late])
        assert not report.eta_verdict([early, half, report.eta_error(250.0, 62.5, 100.0, 300.0)])

    def test_predicted_remaining_ignores_tiny_series(self) -> None:
        """The slowest series with >= 5% of the backlog; a 1-message class's +Inf is noise."""
        counts = {("hub", "general"): 900.0, ("hub", "breach"): 90.0, ("hub", "recall"): 1.0}
        etas = {("hub", "general"): 100.0, ("hub", "breach"): 130.0, ("hub", "recall"): math.inf}
        assert report.predicted_remaining(etas, counts) == 130.0
        assert report.predicted_remaining({}, {}) is None


class TestHeadlineEta:
    """The headline: the MTAs' whole backlogs pooled, counted to their clear time."""

    def test_read_late_it_is_not_late(self) -> None:
        """Scanned at 100 (hub 500 draining 10/s: clear at 150), read at 108: 42 s remain.

        The seconds gauge read then still says 50 (+19% of the 42 s left): the old reading.
        """
        figures = {HUB: (500.0, 10.0, 50.0, 150.0)}
        assert report.headline_remaining(108.0, figures) == pytest.approx(42.0)

    def test_the_relay_in_transit_is_pooled_with_the_hub(self) -> None:
        """Relay mail in transit (not draining, +Inf) is pooled with the hub's: clear at 152.

        Hub 500 at 10/s (clear at 150, scanned at 100); relay 20 scanned at 103: together
        520 at 10/s from the hub's scan.
        """
        figures = {HUB: (500.0, 10.0, 50.0, 150.0), RELAY: (20.0, 0.0, math.inf, math.inf)}
        assert report.headline_remaining(103.0, figures) == pytest.approx(49.0)

    def test_empty_and_not_draining(self) -> None:
        """Nothing waiting: 0; growing everywhere: +Inf (no prediction, the target missed)."""
        assert report.headline_remaining(100.0, {HUB: (0.0, 3.0, 0.0, 90.0)}) == 0.0
        assert report.headline_remaining(100.0, {}) == 0.0
        growing = {HUB: (500.0, -2.0, math.inf, math.inf)}
        assert math.isinf(report.headline_remaining(100.0, growing))


def test_eta_lab_reads_a_steady_recovery_within_the_target(tmp_path: Path) -> None:
    """The offline evaluator on a made-up record: hub 2,000 draining 20/s, relay 10 in transit.

    The shipped estimator (whole backlogs pooled, to the clear time) is within a few % from
    halfway at every probe phase.
    """
    backlog = [[t / 2, {"hub": 2000, "relay": 10}] for t in range(0, 200)]  # 100 s flat
    backlog += [[100 + t / 2, {"hub": max(0, 2000 - 10 * t), "relay": 10 if t < 200 else 0}]
                for t in range(1, 260)]  # fmt: skip
    raw = {"marks": {"recovery": 100.0, "clear": 200.0}, "backlog": backlog, "sent": []}
    path = tmp_path / "made-up.raw.json"
    path.write_text(json.dumps(raw))
    errors = eta_lab.evaluate(eta_lab.Run(path), probe=5.0, halflife=10.0, phases=5)
    assert all(abs(e) <= 0.05 for e in errors["lsq3-whole/t"][1:])


def test_canary_detection_counts_from_the_outage() -> None:
    """First canary-loss alert 12 s after the outage, limit 22 s: met."""
    seen: dict[report.AlertKey, list[float]] = {
        ("canary_lost", "", "canary"): [5.0, 112.0],
        ("MailwatchCanaryLost", "", "canary"): [118.0],
    }
    assert report.canary_detection(100.0, seen, 22.0) == {"seconds": 12.0, "limit": 22.0,
                                                           "met": True}  # fmt: skip


def test_summary_of_latencies() -> None:
    """max, median and p95 (nearest rank)."""
    summary = report.summarise([float(n) for n in range(1, 21)])
    assert (summary["max"], summary["median"], summary["p95"]) == (20.0, 10.0, 19.0)
    assert report.summarise([])["max"] is None


class TestPlan:
    """The replay's mail: mix, compression, and classification as intended."""

    def test_spans_and_compression(self) -> None:
        """Taxonomy spans in seconds; every stuck_after divided by the scale."""
        assert span_seconds("2h10m") == 7800
        assert span_seconds("1 business day") == 86400
        with pytest.raises(ValueError, match="not a span"):
            span_seconds("soon")
        text, slas = scaled_taxonomy(TAXONOMY.read_text(), 60)
        assert slas["recall_emergency"] == 10
        assert slas["general"] == 240
        assert 'stuck_after = "10s"' in text
        assert "business day" not in text.split("stuck_after")[-1].splitlines()[0]

    def test_mix_is_mostly_ordinary_mail_with_a_few_dozen_p1(self) -> None:
        """30,000 queued: general dominates, a few dozen emergency recalls and escalations."""
        planned = plan_messages(30_000)
        queued = [p for p in planned if p.entry in (HUB, RELAY)]
        assert abs(len(queued) - 30_000) < 50
        general = sum(p.class_name == "general" for p in queued)
        assert general > len(queued) / 2
        urgent = sum(p.class_name in ("recall_emergency", "risk_escalation") for p in queued)
        assert 24 <= urgent <= 100
        assert len({p.subject for p in planned}) == len(planned)  # read back by subject

    def test_every_planned_subject_is_classified_as_intended(self) -> None:
        """The shipped classifier puts each template's mail in its intended class."""
        classifier: Classifier = load(None).classifier()
        for item in {p.class_name: p for p in plan_messages(200)}.values():
            message = message_from_bytes(build_message(item).as_bytes())
            assert classifier.classify(message).name == item.class_name, item.subject


def test_pooled_eta_counts_mail_moving_between_mtas_once() -> None:
    """Hub draining 10/s into a relay passing 10/s on: pooled, 100 waiting clear in 10 s."""
    assert report.pooled_etas({"general": 100.0}, {"general": 10.0}) == {"general": 10.0}
    assert report.pooled_etas({"breach": 5.0, "mappa": 0.0}, {"breach": -1.0}) == {
        "breach": math.inf, "mappa": 0.0,
    }  # fmt: skip


def test_departures_read_from_the_postfix_log() -> None:
    """Queue id from the cleanup line, sent time from the first status=sent; others ignored."""
    log = [
        "Dec  7 07:05:01 hub.replay.invalid postfix/cleanup[11]: 4AB12C: "
        "message-id=<replay-17@replay.invalid>",
        "Dec  7 07:05:01 hub.replay.invalid postfix/cleanup[11]: 5CD34E: message-id=<x@y>",
        "Dec  7 07:06:40 hub.replay.invalid postfix/smtp[12]: 4AB12C: to=<a@justice.example>, "
        "relay=127.0.0.1[127.0.0.1]:1234, delay=99, status=deferred (connect refused)",
        "Dec  7 07:09:02 hub.replay.invalid postfix/smtp[12]: 4AB12C: to=<a@justice.example>, "
        "relay=127.0.0.1[127.0.0.1]:1234, delay=241, status=sent (250 2.0.0 Ok)",
        "2026-12-07T07:09:03.5+00:00 hub.replay.invalid postfix/smtp[12]: 5CD34E: to=<b@c>, "
        "status=sent (250 ok)",
        "garbage",
    ]
    left = maillogs.departures(log, 2026)
    assert left == {17: datetime(2026, 12, 7, 7, 9, 2, tzinfo=UTC).timestamp()}
