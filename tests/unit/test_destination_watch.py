"""The deferral watch per destination and the ``destination_deferring`` alert (issue 15, item 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
from mailwatch.app.deferrals import alerted_destinations
from mailwatch.core.classify import MessageClass
from mailwatch.core.destinations import sample, trim, watch
from mailwatch.core.durations import Duration
from mailwatch.core.model import Classification, Message, Priority, Recipient, Verdict
from mailwatch.core.reasons import ReasonCategory
from mailwatch.core.sla import evaluate as judge_sla
from mailwatch.core.snapshot import OutcomeTotals, build_snapshot
from mailwatch.notify.alertmanager import to_alert
from mailwatch.web.metrics import MailwatchCollector

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RECALL = MessageClass("recall", Priority.P1, Duration(seconds=600))
COURT = MessageClass("court", Priority.P2, Duration(seconds=3600))
BUSY = "host mx.justice.example[192.0.2.30] said: 451 4.7.500 Server busy. (in reply to RCPT TO)"
REFUSED = "connect to mx.police.example[192.0.2.40]:25: Connection refused"
RULE = AlertRule("destination_deferring", Condition.DESTINATION_DEFERRING, "page", Timing(()),
                 priorities=(Priority.P1,))  # fmt: skip


def _v(qid: str, to: str, reason: str | None, cls: MessageClass = RECALL,
       queue: str = "deferred") -> Verdict:  # fmt: skip
    message = Message(
        key=f"mta1/{qid}", source="mta1", queue_id=qid, queue=queue,
        arrival=NOW - timedelta(minutes=5), size=1, sender="om@probation.example",
        recipients=(Recipient(to, reason),), subject="Recall of J. Bloggs",
    )  # fmt: skip
    return judge_sla(message, Classification(cls.name, cls.priority, "default"), cls, NOW)


BACKLOG = [
    _v("J1", "ppcs@justice.example", BUSY),
    _v("J2", "clerk@justice.example", BUSY, COURT),
    _v("J3", "x@justice.example", None),  # not tried yet
    _v("J4", "y@justice.example", BUSY, queue="hold"),  # held by an operator: not a deferral
    _v("P1", "ops@police.example", REFUSED),
]


def test_sample_counts_deferrals_by_destination() -> None:
    """Queued vs deferred per domain; held and untried mail are not deferrals."""
    samples = sample({"mta1": BACKLOG}, {})
    justice = samples["justice.example"]
    assert justice.queued == 4
    assert justice.deferred == {Priority.P1: 1, Priority.P2: 1}
    assert justice.categories == {ReasonCategory.THROTTLED: 2}
    assert justice.classes == {"recall", "court"}
    assert justice.ids == ("J1", "J2")  # P1 first
    assert samples["police.example"].categories == {ReasonCategory.CONNECT: 1}


def test_window_ratio_shares_top_and_partners() -> None:
    """Ratio and shares over the window; partners always followed; top-N of the rest."""
    earlier = sample({"mta1": [_v("J0", "a@justice.example", None)]}, {})
    history = trim(((NOW - timedelta(hours=1), {}), (NOW - timedelta(minutes=5), earlier),
                    (NOW, sample({"mta1": BACKLOG}, {}))), NOW, timedelta(minutes=15))  # fmt: skip
    assert len(history) == 2
    watches = {w.destination: w for w in watch(history, ["courts.example"], top=1)}
    assert list(watches) == ["courts.example", "justice.example"]  # police: not in the top 1
    justice = watches["justice.example"]
    assert justice.deferral_ratio == 2 / 5  # 2 deferred of 1 + 4 queued over two scans
    assert justice.shares == {ReasonCategory.THROTTLED: 1.0}
    assert watches["courts.example"].latest.queued == 0
    kept = watch(history, [], top=0, keep=["police.example"])
    assert [w.destination for w in kept] == ["police.example"]


def _finding(backlog: list[Verdict], relayhosts: dict[str, str | None] | None = None):  # type: ignore[no-untyped-def]
    watches = watch(((NOW, sample({"mta1": backlog}, relayhosts or {})),), [], top=5)
    return {f.key.source: f for f in evaluate(RULE, Situation(NOW, destinations=watches))}


def test_alert_fires_for_p1_deferring_and_resolves_when_drained() -> None:
    """Active with P1 mail deferred there; inactive once it drained; no address or subject."""
    findings = _finding(BACKLOG)
    justice = findings["justice.example"]
    assert justice.active  # 1 P1 deferred, 2 of 4 queued (0.5) deferred
    assert justice.details.categories == ("throttled",)
    assert justice.details.classes == ("court", "recall")
    assert justice.details.reasons == ()
    assert justice.details.subjects == ()
    assert justice.details.priority is Priority.P1
    drained = _finding([_v("J2", "clerk@justice.example", BUSY, COURT)])
    assert not drained["justice.example"].active  # only P2 left: not this rule's concern


def test_payload_and_alertmanager_say_where_why_and_which_classes() -> None:
    """Summary: destination, count, categories, classes; labels: the destination as source."""
    finding = _finding(BACKLOG)["justice.example"]
    state = AlertState(key=finding.key, status=AlertStatus.FIRING, since=NOW, fired_at=NOW,
                       details=finding.details)  # fmt: skip
    body = payloads.build(Intent(NotificationKind.FIRING, (), state), RULE, None,
                          include_subjects=False, now=NOW)  # fmt: skip
    alert = body["alert"]
    assert alert["summary"] == ("justice.example is deferring 1 P1 message(s) (throttled);"
                                " classes: court, recall")  # fmt: skip
    assert alert["reason_categories"] == ["throttled"]
    assert alert["classes"] == ["court", "recall"]
    pushed = to_alert(body, NOW, 60)
    assert pushed["labels"]["source"] == "justice.example"
    assert pushed["labels"]["priority"] == "P1"
    text = str(body) + str(pushed)
    assert "ppcs@" not in text
    assert "Bloggs" not in text


def test_alerted_destinations_stay_followed() -> None:
    """A destination with a firing alert is kept in the watch until the alert resolves."""
    firing = AlertState(AlertKey(RULE.name, "", "police.example"), AlertStatus.FIRING)
    resolved = AlertState(AlertKey(RULE.name, "", "gone.example"), AlertStatus.RESOLVED)
    assert alerted_destinations([firing, resolved], {RULE.name: RULE}) == {"police.example"}


def test_metrics_of_the_watch() -> None:
    """Partners only: deferred by priority, the ratio and the three watched shares.

    police.example is followed (the most deferred) but not configured: the alert may name it,
    /metrics does not (a recipient domain is a label only when configured).
    """
    history = ((NOW, sample({"mta1": BACKLOG}, {})),)
    snap = build_snapshot(
        now=NOW, classes=[RECALL, COURT], verdicts={"mta1": BACKLOG}, queues={},
        outcomes=OutcomeTotals(), histories={}, health={},
        destinations=watch(history, ["justice.example", "courts.example"], top=5),
    )  # fmt: skip
    assert "police.example" in {w.destination for w in snap.destinations}
    registry = CollectorRegistry()
    registry.register(MailwatchCollector(lambda: snap))
    text = generate_latest(registry).decode()
    deferred = 'mailwatch_destination_deferred_messages{destination="%s",priority="%s"}'
    assert f"{deferred % ('justice.example', 'P1')} 1.0" in text
    assert f"{deferred % ('courts.example', 'P1')} 0.0" in text  # a partner: always there
    assert 'mailwatch_destination_deferral_ratio{destination="justice.example"} 0.5' in text
    share = 'mailwatch_destination_reason_share{destination="justice.example",reason="%s"}'
    assert f"{share % 'throttled'} 1.0" in text
    assert f"{share % 'connect'} 0.0" in text
    assert "police.example" not in text
