"""Receivers' pure parts: payload → Alertmanager alert, webhook signing, email rendering.

Payloads are built with the real :func:`mailwatch.alerting.payload.build` from lifecycle
states, so these tests pin the mapping of the documented shape, not of a hand-written copy.
The personal data planted in every alert (a subject naming a person and a case reference, an
address in a delay reason) must reach only receivers cleared with ``include_subjects``, and
never Alertmanager.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
from mailwatch.app.delivery import backoff
from mailwatch.config.alerts import (
    AlertmanagerReceiverConfig,
    EmailReceiverConfig,
    WebhookReceiverConfig,
)
from mailwatch.config.fields import SecretRef
from mailwatch.core.model import Priority
from mailwatch.errors import ConfigError, ReceiverMisconfigured
from mailwatch.notify import http_rejection
from mailwatch.notify.alertmanager import AlertmanagerReceiver, alerts_url, to_alert
from mailwatch.notify.email import EmailReceiver, is_loopback, render, render_body, subject_line
from mailwatch.notify.factory import build_receivers
from mailwatch.notify.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookReceiver,
    encode,
    headers,
    origin,
    sign,
)

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
KEY = AlertKey("p1_stuck", "recall_emergency", "mta1")
SUBJECT = "Emergency recall - J Bloggs CRN X765432"
PERSONAL = ["J Bloggs", "X765432", "Emergency recall", "ppcs@"]
RULE = AlertRule(
    name="p1_stuck",
    condition=Condition.STUCK,
    severity="page",
    timing=Timing(receivers=("duty",)),
    runbook_url="https://runbooks.example/mailwatch#p1",
)
DETAILS = Details(
    count=2,
    oldest_age_seconds=900.0,
    ids=("A1B2C3D4E5", "F6A7B8C9D0"),
    recipient_domains=("justice.example",),
    reasons=("host 10.0.0.1 said: 550 5.1.1 <ppcs@justice.example>: unknown user",),
    subjects=(SUBJECT, "Emergency recall - A Nother"),
)
FIRING = AlertState(KEY, AlertStatus.FIRING, since=T0, fired_at=T0, last_active_at=T0,
                    notified=True, details=DETAILS)  # fmt: skip


def make_payload(
    state: AlertState = FIRING,
    kind: NotificationKind = NotificationKind.FIRING,
    *,
    include_subjects: bool = True,
    rule: AlertRule = RULE,
    priority: Priority | None = Priority.P1,
) -> dict[str, Any]:
    """The documented payload of ``state``, as the engine queues it."""
    intent = Intent(kind, ("duty",), state)
    return payloads.build(intent, rule, priority, include_subjects=include_subjects, now=T0)


def _email_config(**overrides: Any) -> EmailReceiverConfig:
    base: dict[str, Any] = {"type": "email", "host": "relay.probation.example",
                            "sender": "mailwatch@probation.example",
                            "to": ["duty-managers@probation.example"]}  # fmt: skip
    return EmailReceiverConfig(**(base | overrides))


class TestAlertmanagerMapping:
    """A payload becomes one Alertmanager v2 alert: fixed labels, no personal data."""

    def test_labels_and_annotations(self) -> None:
        """alertname/class/priority/source/severity labels; summary, description, runbook."""
        alert = to_alert(make_payload(), T0, resend_every=60)
        assert alert["labels"] == {
            "alertname": "p1_stuck", "class": "recall_emergency", "priority": "P1",
            "source": "mta1", "severity": "page",
        }  # fmt: skip
        assert alert["annotations"]["summary"] == (
            "2 recall_emergency (P1) message(s) stuck in mta1, oldest 15m"
        )
        assert "A1B2C3D4E5" in alert["annotations"]["description"]
        assert alert["annotations"]["runbook_url"] == RULE.runbook_url
        assert "acknowledged_by" not in alert["annotations"]

    def test_no_subject_even_for_a_cleared_receiver(self) -> None:
        """A payload built with subjects still sends none of them (group channels)."""
        payload = make_payload(include_subjects=True)
        assert payload["alert"]["subjects"]
        text = json.dumps(to_alert(payload, T0, resend_every=60))
        for secret in PERSONAL:
            assert secret not in text

    def test_firing_ends_four_resends_ahead(self) -> None:
        """The alert starts at fired_at and ends 4 x resend_every from now while firing."""
        now = T0 + timedelta(minutes=7)
        alert = to_alert(make_payload(kind=NotificationKind.REPEAT), now, resend_every=30)
        assert alert["startsAt"] == "2026-11-30T09:00:00.000000Z"
        assert alert["endsAt"] == "2026-11-30T09:09:00.000000Z"

    def test_resolved_ends_at_resolve_time(self) -> None:
        """A resolved alert's endsAt is when it resolved, so Alertmanager resolves it."""
        resolved_at = T0 + timedelta(minutes=20)
        state = replace(FIRING, status=AlertStatus.RESOLVED, resolved_at=resolved_at)
        alert = to_alert(make_payload(state, NotificationKind.RESOLVED), T0 + timedelta(hours=1),
                         resend_every=60)  # fmt: skip
        assert alert["endsAt"] == "2026-11-30T09:20:00.000000Z"
        assert alert["labels"]["alertname"] == "p1_stuck"

    def test_acknowledged_stays_active_with_annotation(self) -> None:
        """An acked alert keeps a future endsAt and gains acknowledged_by; labels unchanged."""
        state = replace(FIRING, status=AlertStatus.ACKNOWLEDGED, acked_by="duty.manager.smith",
                        acked_at=T0 + timedelta(minutes=3),
                        ack_note="calling the MTA team")  # fmt: skip
        alert = to_alert(make_payload(state, NotificationKind.REPEAT), T0, resend_every=60)
        assert alert["annotations"]["acknowledged_by"] == "duty.manager.smith"
        assert alert["endsAt"] == "2026-11-30T09:04:00.000000Z"
        assert alert["labels"] == to_alert(make_payload(), T0, 60)["labels"]
        assert "calling" not in json.dumps(alert)

    def test_empty_labels_are_left_out(self) -> None:
        """A source_blind alert has no class or priority: those labels are omitted."""
        rule = replace(RULE, name="source_blind", condition=Condition.SOURCE_BLIND)
        state = replace(FIRING, key=AlertKey("source_blind", "", "mta1"))
        alert = to_alert(make_payload(state, rule=rule, priority=None), T0, resend_every=60)
        assert alert["labels"] == {"alertname": "source_blind", "source": "mta1",
                                   "severity": "page"}  # fmt: skip

    @pytest.mark.parametrize(
        ("base", "url"),
        [("http://am:9093", "http://am:9093/api/v2/alerts"),
         ("http://am:9093/", "http://am:9093/api/v2/alerts"),
         ("https://gw.example/alertmanager/", "https://gw.example/alertmanager/api/v2/alerts")],
    )  # fmt: skip
    def test_alerts_url(self, base: str, url: str) -> None:
        """The v2 endpoint is appended to the base URL, keeping a route prefix."""
        assert alerts_url(base) == url


class TestWebhookSigning:
    """The signature is HMAC-SHA256 over the exact body bytes; headers identify the attempt."""

    def test_signature_over_exact_body(self) -> None:
        """A receiver recomputing HMAC over the raw body gets the header's value."""
        body = encode(make_payload(include_subjects=False))
        expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert sign(body, "s3cret") == f"sha256={expected}"
        sent = headers(body, "s3cret", T0)
        assert sent[SIGNATURE_HEADER] == f"sha256={expected}"
        assert sent["Content-Type"] == "application/json"
        assert sent[TIMESTAMP_HEADER] == str(int(T0.timestamp()))

    def test_body_is_the_payload_and_stable(self) -> None:
        """The body parses back to the payload; retries send the same bytes and delivery id."""
        payload = make_payload(include_subjects=False)
        body = encode(payload)
        assert json.loads(body) == payload
        assert encode(json.loads(body)) == body
        first = headers(body, None, T0)
        later = headers(body, None, T0 + timedelta(minutes=5))
        assert first[DELIVERY_HEADER] == later[DELIVERY_HEADER]
        assert first[TIMESTAMP_HEADER] != later[TIMESTAMP_HEADER]

    def test_no_secret_no_signature(self) -> None:
        """Without a configured secret no signature header is sent."""
        assert SIGNATURE_HEADER not in headers(b"{}", None, T0)

    def test_uncleared_payload_has_no_personal_data(self) -> None:
        """Built without include_subjects, the body names no subject and masks addresses."""
        text = encode(make_payload(include_subjects=False)).decode()
        for secret in PERSONAL:
            assert secret not in text
        assert "***@justice.example" in text

    @pytest.mark.parametrize(
        ("url", "safe"),
        [("https://hooks.slack.example/services/T0/B0/XXXX?token=abc", "https://hooks.slack.example"),
         ("http://user:pw@127.0.0.1:8080/hook", "http://127.0.0.1:8080"),
         ("https://[::1]:9443/x", "https://[::1]:9443")],
    )  # fmt: skip
    def test_origin_hides_paths_and_credentials(self, url: str, safe: str) -> None:
        """Only scheme, host and port of a URL ever appear in errors and logs."""
        assert origin(url) == safe

    @pytest.mark.parametrize(
        ("status", "permanent"),
        [(400, True), (401, True), (404, True), (302, True), (408, False), (429, False),
         (500, False), (503, False)],
    )  # fmt: skip
    def test_rejections_permanent_or_not(self, status: int, permanent: bool) -> None:
        """4xx (but 408/429) and 3xx are permanent; 5xx, 408 and 429 are retried."""
        error = http_rejection("hook", "http://x", status)
        assert (error.status, error.permanent) == (status, permanent)

    async def test_missing_secret_is_misconfiguration(self, tmp_path: Path) -> None:
        """An unreadable secret fails the send (retried later) without touching the network."""
        config = WebhookReceiverConfig(type="webhook", url="http://127.0.0.1:9/hook",
                                       hmac_secret=SecretRef(file=tmp_path / "absent"))  # fmt: skip
        with pytest.raises(ReceiverMisconfigured, match="HMAC secret unavailable"):
            await WebhookReceiver("hook", config).send(make_payload())


class TestEmailRendering:
    """Subject: kind and summary only. Body: the payload; subjects only when cleared."""

    def test_subject_has_no_personal_data(self) -> None:
        """The subject line is the summary with the kind, nothing from the messages."""
        subject = subject_line(make_payload(include_subjects=True))
        assert subject == (
            "[mailwatch FIRING] 2 recall_emergency (P1) message(s) stuck in mta1, oldest 15m"
        )
        for secret in PERSONAL:
            assert secret not in subject

    def test_body_without_subjects(self) -> None:
        """Not cleared: ids, domains and masked reasons, but no subject or local part."""
        body = render_body(make_payload(include_subjects=True), include_subjects=False)
        assert "A1B2C3D4E5" in body
        assert "justice.example" in body
        assert "***@justice.example" in body
        for secret in PERSONAL:
            assert secret not in body
        assert "mailwatch ack p1_stuck/recall_emergency/mta1" in body

    def test_body_with_subjects_when_cleared(self) -> None:
        """Cleared (include_subjects): the subjects are listed, with a warning."""
        body = render_body(make_payload(include_subjects=True), include_subjects=True)
        assert SUBJECT in body
        assert "personal data" in body

    def test_message_headers(self) -> None:
        """From/To from the config, auto-generated, the alert id; no personal data at all."""
        message = render(make_payload(include_subjects=False), _email_config(), T0)
        assert message["From"] == "mailwatch@probation.example"
        assert message["To"] == "duty-managers@probation.example"
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["X-Mailwatch-Alert"] == "p1_stuck/recall_emergency/mta1"
        for secret in PERSONAL:
            assert secret not in message.as_string()

    @pytest.mark.parametrize(
        ("host", "loopback"),
        [("localhost", True), ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True),
         ("[::1]", True), ("relay.example", False), ("10.0.0.25", False)],
    )  # fmt: skip
    def test_loopback_hosts(self, host: str, loopback: bool) -> None:
        """Only loopback names and addresses count as loopback."""
        assert is_loopback(host) is loopback

    async def test_plain_smtp_off_loopback_is_refused(self) -> None:
        """Plain SMTP (security = "none") to a remote relay fails at send time, unconnected."""
        receiver = EmailReceiver("mail", _email_config(security="none", port=25))
        with pytest.raises(ReceiverMisconfigured, match="only allowed for a relay on loopback"):
            await receiver.send(make_payload())

    async def test_username_without_password_is_misconfiguration(self) -> None:
        """AUTH needs a password reference; the send fails before connecting."""
        receiver = EmailReceiver("mail", _email_config(username="mailwatch"))
        with pytest.raises(ReceiverMisconfigured, match="password"):
            await receiver.send(make_payload())


class TestBackoffAndFactory:
    """Retry spacing, and building receivers from configuration."""

    def test_backoff_doubles_to_five_minutes_with_jitter(self) -> None:
        """5 s, 10 s, 20 s … capped at 300 s, each within ±20 %."""
        assert [backoff(n, lambda: 0.5) for n in (1, 2, 3, 7, 20)] == [5, 10, 20, 300, 300]
        assert backoff(1, lambda: 0.0) == 4.0
        assert backoff(1, lambda: 1.0) == pytest.approx(6.0)

    def test_builds_each_type(self) -> None:
        """Each receiver table becomes its receiver, by name."""
        built = build_receivers({
            "am": AlertmanagerReceiverConfig(type="alertmanager", urls=["http://127.0.0.1:9093"]),
            "hook": WebhookReceiverConfig(type="webhook", url="https://hooks.example/x"),
            "mail": _email_config(),
        })  # fmt: skip
        assert isinstance(built["am"], AlertmanagerReceiver)
        assert isinstance(built["hook"], WebhookReceiver)
        assert isinstance(built["mail"], EmailReceiver)

    def test_unreadable_ca_file_is_a_config_error(self, tmp_path: Path) -> None:
        """A missing CA file is reported at start, naming the key."""
        config = WebhookReceiverConfig(type="webhook", url="https://hooks.example/x",
                                       ca_file=tmp_path / "missing.pem")  # fmt: skip
        with pytest.raises(ConfigError, match=r"receivers\.hook\.ca_file"):
            build_receivers({"hook": config})
