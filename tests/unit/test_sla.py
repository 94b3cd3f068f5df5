"""Unit tests for mailwatch.core.sla: stuck decisions, reasons and urgency ordering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailwatch.core.classify import MessageClass
from mailwatch.core.durations import Duration
from mailwatch.core.model import Classification, Message, Priority, Recipient, Verdict
from mailwatch.core.sla import evaluate, evaluate_all, stuck_reason, urgency_key

ARRIVAL = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday
DEADLINE = ARRIVAL + timedelta(minutes=10)
SECOND = timedelta(seconds=1)
HOLD_QUEUE = "hold"
REFUSED = "connect to 127.0.0.1[127.0.0.1]:25: Connection refused"

RECALL = MessageClass("recall_emergency", Priority.P1, Duration(seconds=600))
VICTIM = MessageClass("victim_liaison", Priority.P3, Duration(business_days=1))


def _message(
    queue: str = "deferred",
    *,
    arrival: datetime = ARRIVAL,
    reasons: tuple[str | None, ...] = (None,),
    queue_id: str = "E305A20C967",
    wait_reason: str | None = None,
) -> Message:
    """A message in ``queue`` with one recipient per entry of ``reasons``."""
    return Message(
        key=f"pf1/{queue_id}/{int(arrival.timestamp())}",
        source="pf1",
        queue_id=queue_id,
        queue=queue,
        arrival=arrival,
        size=504,
        sender="om@probation.example",
        recipients=tuple(
            Recipient(f"r{i}@justice.example", reason) for i, reason in enumerate(reasons)
        ),
        wait_reason=wait_reason,
    )


def _classification(
    message_class: MessageClass, priority: Priority | None = None
) -> Classification:
    """A classification into ``message_class`` (optionally with a rule's own priority)."""
    return Classification(
        name=message_class.name,
        priority=priority or message_class.priority,
        rule=f"{message_class.name} rule 1",
    )


class TestStuckReason:
    """The stuck decision at a fixed instant, and the reason given."""

    @pytest.mark.parametrize(
        ("queue", "now", "delay_reason", "expected"),
        [
            ("deferred", DEADLINE - SECOND, REFUSED, None),
            ("deferred", DEADLINE, REFUSED, None),  # at the deadline: not yet over it
            ("deferred", DEADLINE + SECOND, REFUSED, REFUSED),
            ("deferred", DEADLINE + SECOND, None, "over SLA in deferred queue"),
            ("deferred", DEADLINE + SECOND, "", "over SLA in deferred queue"),
            ("active", DEADLINE + timedelta(hours=5), None, "over SLA in active queue"),
            ("incoming", DEADLINE + SECOND, None, "over SLA in incoming queue"),
            (HOLD_QUEUE, ARRIVAL, None, "held"),
            (HOLD_QUEUE, DEADLINE - SECOND, REFUSED, "held"),
            (HOLD_QUEUE, DEADLINE + SECOND, REFUSED, "held"),
            ("frozen", ARRIVAL, None, "frozen"),
            ("frozen", DEADLINE + SECOND, REFUSED, "frozen"),
            ("lost", ARRIVAL, "canary lost: not in INBOX 2s after it was sent", "canary lost"),
        ],
    )
    def test_stuck_reason(
        self, queue: str, now: datetime, delay_reason: str | None, expected: str | None
    ) -> None:
        """Held is always stuck; otherwise stuck only past the deadline, with the MTA's reason."""
        assert stuck_reason(queue, DEADLINE, delay_reason, now) == expected


class TestEvaluate:
    """One message judged against its class's SLA."""

    def test_just_before_deadline(self) -> None:
        """One second before the deadline: not stuck, no reason, age counted."""
        message = _message(reasons=(REFUSED,))
        verdict = evaluate(message, _classification(RECALL), RECALL, DEADLINE - SECOND)
        assert verdict == Verdict(
            message=message,
            classification=_classification(RECALL),
            age_seconds=599.0,
            deadline=DEADLINE,
            stuck=False,
            reason=None,
        )

    def test_just_after_deadline_uses_delay_reason(self) -> None:
        """One second after: stuck, reason from the first recipient that has one."""
        message = _message(reasons=(None, REFUSED, "mailbox full"))
        verdict = evaluate(message, _classification(RECALL), RECALL, DEADLINE + SECOND)
        assert (verdict.stuck, verdict.reason, verdict.age_seconds) == (True, REFUSED, 601.0)

    def test_after_deadline_without_reason(self) -> None:
        """No delay reason at all: the queue is named instead."""
        verdict = evaluate(_message("active"), _classification(RECALL), RECALL, DEADLINE + SECOND)
        assert (verdict.stuck, verdict.reason) == (True, "over SLA in active queue")

    @pytest.mark.parametrize(
        ("reasons", "wait_reason", "expected"),
        [
            ((None,), "unread in INBOX", "unread in INBOX"),
            ((REFUSED,), "unread in INBOX", REFUSED),
            ((None, None), None, "over SLA in deferred queue"),
        ],
    )
    def test_wait_reason_when_no_recipient_reason(
        self, reasons: tuple[str | None, ...], wait_reason: str | None, expected: str
    ) -> None:
        """A source's wait reason is used when no recipient carries a delay reason."""
        message = _message(reasons=reasons, wait_reason=wait_reason)
        verdict = evaluate(message, _classification(RECALL), RECALL, DEADLINE + SECOND)
        assert verdict.reason == expected

    def test_held_is_stuck_immediately(self) -> None:
        """A held message is stuck at its arrival, reason ``held``, whatever the MTA said."""
        message = _message(HOLD_QUEUE, reasons=(REFUSED,))
        verdict = evaluate(message, _classification(RECALL), RECALL, ARRIVAL)
        assert (verdict.stuck, verdict.reason, verdict.age_seconds) == (True, "held", 0.0)

    def test_future_arrival_has_zero_age(self) -> None:
        """A clock skewed arrival in the future gives age 0, not a negative age."""
        verdict = evaluate(
            _message(), _classification(RECALL), RECALL, ARRIVAL - timedelta(hours=1)
        )
        assert (verdict.age_seconds, verdict.stuck) == (0.0, False)

    @pytest.mark.parametrize(
        ("now", "stuck"),
        [
            (datetime(2026, 1, 6, 9, 0, tzinfo=UTC), False),  # Tuesday 09:00 exactly
            (datetime(2026, 1, 6, 9, 0, 1, tzinfo=UTC), True),
        ],
    )
    def test_business_day_deadline(self, now: datetime, stuck: bool) -> None:
        """A one-business-day class arriving Monday 09:00 is due Tuesday 09:00."""
        verdict = evaluate(_message(), _classification(VICTIM), VICTIM, now)
        assert verdict.deadline == datetime(2026, 1, 6, 9, 0, tzinfo=UTC)
        assert verdict.stuck is stuck

    def test_friday_arrival_business_day_deadline_is_monday(self) -> None:
        """Friday's one-business-day message is not stuck over the weekend."""
        friday = datetime(2026, 1, 2, 16, 0, tzinfo=UTC)
        message = _message(arrival=friday)
        sunday = datetime(2026, 1, 4, 23, 0, tzinfo=UTC)
        verdict = evaluate(message, _classification(VICTIM), VICTIM, sunday)
        assert verdict.deadline == datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
        assert verdict.stuck is False

    def test_evaluate_all_looks_classes_up_by_name(self) -> None:
        """Each pair is judged against the class its classification names."""
        now = ARRIVAL + timedelta(hours=2)
        pairs = [
            (_message(queue_id="A1"), _classification(RECALL)),
            (_message(queue_id="B2"), _classification(VICTIM)),
        ]
        verdicts = evaluate_all(pairs, {c.name: c for c in (RECALL, VICTIM)}, now)
        assert [(v.message.queue_id, v.stuck) for v in verdicts] == [("A1", True), ("B2", False)]


class TestUrgencyKey:
    """Sorting by ``urgency_key`` puts the most urgent first."""

    def test_order(self) -> None:
        """Stuck before not stuck, then by priority (P1 first), then oldest first."""
        now = ARRIVAL + timedelta(hours=3)

        def verdict(queue_id: str, minutes_old: int, cls: MessageClass, queue: str) -> Verdict:
            message = _message(
                queue, arrival=now - timedelta(minutes=minutes_old), queue_id=queue_id
            )
            return evaluate(message, _classification(cls), cls, now)

        expected = [
            verdict("stuck-p1-old", 120, RECALL, "deferred"),
            verdict("stuck-p1-held-young", 1, RECALL, HOLD_QUEUE),
            verdict("stuck-p3-held-ancient", 600, VICTIM, HOLD_QUEUE),
            verdict("ok-p1", 5, RECALL, "deferred"),
            verdict("ok-p3-old", 170, VICTIM, "deferred"),
            verdict("ok-p3-young", 2, VICTIM, "deferred"),
        ]
        assert [v.stuck for v in expected] == [True, True, True, False, False, False]
        shuffled = [expected[i] for i in (4, 2, 5, 0, 3, 1)]
        assert [v.message.queue_id for v in sorted(shuffled, key=urgency_key)] == [
            v.message.queue_id for v in expected
        ]

    def test_rule_priority_counts_not_class_priority(self) -> None:
        """A MAPPA level 3 message (class P2, rule P1) sorts with P1 mail."""
        mappa = MessageClass("mappa", Priority.P2, Duration(seconds=7200))
        court = MessageClass("court_result", Priority.P2, Duration(seconds=7200))
        now = ARRIVAL + timedelta(minutes=30)
        level3 = evaluate(_message(queue_id="L3"), _classification(mappa, Priority.P1), mappa, now)
        older = evaluate(
            _message(arrival=ARRIVAL - timedelta(minutes=20), queue_id="CR"),
            _classification(court),
            court,
            now,
        )
        assert [v.message.queue_id for v in sorted([older, level3], key=urgency_key)] == [
            "L3",
            "CR",
        ]
