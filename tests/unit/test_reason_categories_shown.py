"""The reason category is computed once (the judgement) and shown by every interface."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from mailwatch.alerting import payload as payloads
from mailwatch.alerting.lifecycle import (
    AlertKey,
    AlertState,
    AlertStatus,
    Details,
    Intent,
    NotificationKind,
    Timing,
)
from mailwatch.alerting.rules import AlertRule, Condition
from mailwatch.app.queries import message_detail, stuck_json
from mailwatch.cli.render import stuck_table
from mailwatch.core.judgement import judge, reason_category
from mailwatch.core.model import DeliveryStatus, Headers, Priority, Recipient, Status, StoredMessage
from mailwatch.core.reasons import ReasonCategory
from mailwatch.notify.alertmanager import to_alert
from mailwatch.notify.email import render_body

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=1)
BUSY = "host mx.justice.example[192.0.2.30] said: 451 4.7.500 Server busy. (S77714)"
MESSAGE = StoredMessage(
    key="mta1/Q1", source="mta1", queue_id="Q1", queue="deferred",
    arrival=NOW - timedelta(hours=2), size=1, sender="om@probation.example",
    recipients=(Recipient("ppcs@justice.example", BUSY),), headers=Headers(),
    subject="Recall", marking=None, class_name="recall", priority=Priority.P1,
    rule="default", deadline=NOW - timedelta(hours=1), delay_reason=BUSY,
    status=Status.QUEUED, first_seen=NOW - timedelta(hours=2), left_at=None, last_seen=NOW,
)  # fmt: skip


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (MESSAGE, ReasonCategory.THROTTLED),
        (replace(MESSAGE, queue="hold"), ReasonCategory.HELD),
        (replace(MESSAGE, queue="frozen", delay_reason=None), ReasonCategory.FROZEN),
        (replace(MESSAGE, deadline=NOW + timedelta(hours=1)), None),
        (replace(MESSAGE, status=Status.LEFT, outcome=DeliveryStatus.BOUNCED, outcome_at=NOW,
                 dsn="5.1.1", outcome_text="550 5.1.1 <x@justice.example>: unknown user"),
         ReasonCategory.MAILBOX),
    ],
)  # fmt: skip
def test_judgement_carries_the_category(
    message: StoredMessage, expected: ReasonCategory | None
) -> None:
    """The judgement's category is the one the alert path computes from its reason."""
    judged = judge(message, NOW, SINCE)
    assert judged.category == expected
    assert reason_category(judged.reason) == expected  # the alert path reads the same reason


def test_stuck_json_table_and_show_carry_it() -> None:
    """``stuck --json``, the ``stuck`` table and ``show`` carry the category."""
    judged = judge(MESSAGE, NOW, SINCE)
    item = stuck_json(judged)
    assert item["reason_category"] == "throttled"
    table = stuck_table([item])
    assert "WHY" in table.splitlines()[0]
    assert "throttled" in table.splitlines()[1]
    assert ("reason category", "throttled") in message_detail(judged, NOW)
    fresh = stuck_json(judge(replace(MESSAGE, deadline=NOW + timedelta(hours=1)), NOW, SINCE))
    assert fresh["reason_category"] is None


def test_alert_payload_and_receivers_carry_categories() -> None:
    """Payload, Alertmanager annotation and e-mail body carry the categories."""
    details = Details(count=2, oldest_age_seconds=900.0, ids=("Q1", "Q2"),
                      recipient_domains=("justice.example",),
                      reasons=(BUSY, "connect to mx.justice.example[192.0.2.10]:25: Connection "
                               "refused", "held"))  # fmt: skip
    state = AlertState(
        AlertKey("p1_stuck", "recall", "mta1"),
        AlertStatus.FIRING,
        since=NOW,
        fired_at=NOW,
        last_active_at=NOW,
        notified=True,
        details=details,
    )
    rule = AlertRule("p1_stuck", Condition.STUCK, "page", Timing(receivers=("duty",)))
    intent = Intent(NotificationKind.FIRING, ("duty",), state)
    payload = payloads.build(intent, rule, Priority.P1, include_subjects=False, now=NOW)
    assert payload["alert"]["reason_categories"] == ["connect", "held", "throttled"]
    annotations = to_alert(payload, NOW, 60.0)["annotations"]
    assert annotations["reason_categories"] == "connect,held,throttled"
    assert "Why: connect, held, throttled" in " ".join(
        render_body(payload, include_subjects=False).split()
    )
