"""An email alert travels through a real relay (a second Postfix) into a real Dovecot mailbox.

The alert relay is deliberately not the watched MTA: a private Postfix delivers the
``alerts.example`` domain to Dovecot over LMTP, and the duty manager's mailbox is read with
stdlib ``imaplib`` afterwards.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from integration.conftest import Mailbox
from mailwatch.alerting.lifecycle import (
    AlertKey,
    AlertState,
    AlertStatus,
    Details,
    Intent,
    NotificationKind,
    Timing,
)
from mailwatch.alerting.payload import build
from mailwatch.alerting.rules import AlertRule, Condition
from mailwatch.config.alerts import EmailReceiverConfig
from mailwatch.core.model import Priority
from mailwatch.notify.email import EmailReceiver
from mailwatch.sandbox.postfix import PrivatePostfix

pytestmark = [pytest.mark.postfix, pytest.mark.imap]

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture(name="alert_relay")
def fixture_alert_relay(tmp_path: Path, mailbox: Mailbox) -> Iterator[PrivatePostfix]:
    """A second Postfix that delivers alerts.example to the Dovecot over LMTP."""
    relay = PrivatePostfix.create(
        tmp_path / "relay",
        transports={"alerts.example": f"lmtp:inet:127.0.0.1:{mailbox.dovecot.lmtp_port}"},
    )
    relay.start()
    yield relay
    relay.stop()


def _fetch_messages(mailbox: Mailbox, within: float = 20) -> list[email.message.EmailMessage]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with imaplib.IMAP4("127.0.0.1", mailbox.dovecot.imap_port) as imap:
            imap.login(mailbox.user, mailbox.password)
            imap.select("INBOX", readonly=True)
            _, data = imap.search(None, "ALL")
            ids = data[0].split()
            if ids:
                found = []
                for num in ids:
                    _, parts = imap.fetch(num, "(RFC822)")
                    raw = parts[0][1] if isinstance(parts[0], tuple) else b""
                    message = email.message_from_bytes(raw, policy=email.policy.default)
                    found.append(message)
                return found
        time.sleep(0.2)
    raise AssertionError("no alert email arrived in the mailbox")


class TestEmailIntoMailbox:
    """The duty manager's mailbox receives the alert; no personal data unless cleared."""

    async def test_alert_lands_in_dovecot(
        self, alert_relay: PrivatePostfix, mailbox: Mailbox
    ) -> None:
        """A firing P1 alert arrives as one email with a summary subject and no subjects."""
        config = EmailReceiverConfig(
            type="email", host="127.0.0.1", port=alert_relay.smtp_port, security="none",
            sender="mailwatch@monitor.example", to=[f"{mailbox.user}@alerts.example"],
        )  # fmt: skip
        rule = AlertRule("p1_stuck", Condition.STUCK, "page", Timing(receivers=("duty",)))
        state = AlertState(
            AlertKey("p1_stuck", "recall_emergency", "mta1"), status=AlertStatus.FIRING,
            since=NOW, fired_at=NOW, notified=True,
            details=Details(count=2, oldest_age_seconds=900, ids=("A1B2C3",),
                            recipient_domains=("justice.example",),
                            reasons=("host said: 550 <j.smith@justice.example>",),
                            subjects=("Emergency recall - J Smith CRN X123456",)),
        )  # fmt: skip
        payload = build(Intent(NotificationKind.FIRING, ("duty",), state), rule, Priority.P1,
                        include_subjects=False, now=NOW)  # fmt: skip
        await EmailReceiver("duty", config).send(payload)
        (message,) = _fetch_messages(mailbox)
        subject = str(message["Subject"])
        assert "recall_emergency" in subject
        assert "2" in subject
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        for secret in ("J Smith", "X123456", "j.smith@"):
            assert secret not in subject
            assert secret not in text
        assert "A1B2C3" in text  # the queue id to act on
