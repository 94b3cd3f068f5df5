"""The email receiver: one plain-text message per notification, through an SMTP relay.

* A new connection per send (aiosmtplib's maintainers' advice): nothing to keep alive or
  reconnect, and a relay restart between two alerts is invisible.
* TLS is explicit, never "if offered": ``security = "starttls"`` passes ``start_tls=True``
  (a relay that does not offer STARTTLS fails the send), ``"tls"`` passes ``use_tls=True``.
  Certificates are verified (system store, or ``ca_file``). ``"none"`` is refused at send
  time unless the relay is on loopback (``localhost``, ``127.0.0.0/8``, ``::1``).
* AUTH only when ``username`` is set (aiosmtplib attempts AUTH for any non-``None``
  username, even ``""``); the password is read from its ``SecretRef`` at send time.
* The subject is ``[mailwatch KIND] <summary>``: the summary names class, priority, source and
  counts, never a subject line, name or address. The body renders the payload; message
  subjects are listed only when this receiver has ``include_subjects = true``, and delay
  reasons have addresses masked otherwise.
* The relay should not be one of the watched mail systems: an alert about a stuck queue
  would wait in that queue (``mailwatch config check`` warns about a loopback relay).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import aiosmtplib
import structlog

from mailwatch.config.alerts import EmailReceiverConfig
from mailwatch.core.durations import format_seconds
from mailwatch.core.redaction import mask_addresses
from mailwatch.errors import (
    ReceiverMisconfigured,
    ReceiverRejected,
    ReceiverTimeout,
    ReceiverUnavailable,
)
from mailwatch.notify import Payload
from mailwatch.notify.webhook import ssl_context

log = structlog.get_logger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def subject_line(payload: Payload) -> str:
    """``[mailwatch FIRING] 2 recall_emergency (P1) message(s) stuck in mta1, oldest 15m``."""
    kind = str(payload.get("kind", "notification")).upper()
    summary = " ".join(str(payload["alert"].get("summary") or "").split())
    return mask_addresses(f"[mailwatch {kind}] {summary}")


def _line(label: str, value: Any) -> str:
    return f"{label + ':':<20}{value}"


def render_body(payload: Payload, *, include_subjects: bool) -> str:
    """A readable rendering of the payload (subjects only when ``include_subjects``)."""
    alert: dict[str, Any] = payload["alert"]
    lines = [str(alert.get("summary") or ""), ""]
    lines += [
        _line("Alert", alert.get("id")),
        _line("Notification", payload.get("kind")),
        _line("Status", alert.get("status")),
        _line("Priority", alert.get("priority") or "-"),
        _line("Severity", alert.get("severity")),
        _line("Class", alert.get("class") or "-"),
        _line("Source", alert.get("source") or "-"),
        _line("Fired at", alert.get("fired_at") or "-"),
    ]
    if alert.get("resolved_at"):
        lines.append(_line("Resolved at", alert["resolved_at"]))
    if alert.get("acked_by"):
        lines.append(_line("Acknowledged by", alert["acked_by"]))
    lines += [
        _line("Messages", alert.get("count", 0)),
        _line("Oldest waiting", format_seconds(float(alert.get("oldest_age_seconds") or 0))),
        _line("Queue ids / UIDs", ", ".join(alert.get("ids") or []) or "-"),
        _line("Recipient domains", ", ".join(alert.get("recipient_domains") or []) or "-"),
    ]
    reasons = [str(r) for r in alert.get("reasons") or []]
    if not include_subjects:
        reasons = [mask_addresses(r) for r in reasons]
    if alert.get("reason_categories"):
        lines.append(_line("Why", ", ".join(map(str, alert["reason_categories"]))))
    if reasons:
        lines += ["", "Delay reasons:", *(f"  - {r}" for r in reasons)]
    subjects = alert.get("subjects") or []
    if include_subjects and subjects:
        lines += ["", "Subjects (personal data: do not forward or paste into tickets):",
                  *(f"  - {s}" for s in subjects)]  # fmt: skip
    lines += ["", str(alert.get("description") or "")]
    if alert.get("runbook_url"):
        lines.append(_line("Runbook", alert["runbook_url"]))
    if alert.get("status") == "firing":
        lines += ["", f"Acknowledge: mailwatch ack {alert.get('id')} --by NAME --note TEXT"]
    lines += ["", f"Sent by mailwatch at {payload.get('sent_at')}."]
    return "\n".join(lines) + "\n"


def render(payload: Payload, config: EmailReceiverConfig, now: datetime) -> EmailMessage:
    """The alert email for ``payload``."""
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = ", ".join(config.to)
    message["Subject"] = subject_line(payload)
    message["Date"] = format_datetime(now)
    domain = config.sender.rpartition("@")[2] or None
    message["Message-ID"] = make_msgid("mailwatch", domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Mailwatch-Alert"] = str(payload["alert"].get("id"))
    message["X-Mailwatch-Kind"] = str(payload.get("kind"))
    message.set_content(render_body(payload, include_subjects=config.include_subjects))
    return message


class EmailReceiver:
    """Sends each notification as one email through ``config.host``."""

    def __init__(
        self,
        name: str,
        config: EmailReceiverConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self._tls: ssl.SSLContext = ssl_context(config.ca_file)

    def _credentials(self) -> tuple[str | None, str | None]:
        if not self.config.username:
            return None, None
        if self.config.password is None:
            raise ReceiverMisconfigured(self.name, "username is set but password is not")
        try:
            return self.config.username, self.config.password.read()
        except LookupError as exc:
            raise ReceiverMisconfigured(self.name, f"SMTP password unavailable: {exc}") from None

    def _security(self) -> dict[str, Any]:
        security = self.config.security
        if security == "tls":
            return {"use_tls": True, "start_tls": False, "tls_context": self._tls}
        if security == "starttls":
            return {"use_tls": False, "start_tls": True, "tls_context": self._tls}
        if not is_loopback(self.config.host):
            raise ReceiverMisconfigured(
                self.name,
                f'security = "none" is only allowed for a relay on loopback, not'
                f" {self.config.host!r}: use starttls or tls",
            )
        return {"use_tls": False, "start_tls": False}

    async def send(self, payload: Payload) -> None:
        """Send one email; return once the relay accepted it for at least one recipient."""
        security = self._security()
        username, password = self._credentials()
        message = render(payload, self.config, self.clock())
        where = f"{self.config.host}:{self.config.port}"
        timeout = self.config.timeout
        try:
            async with asyncio.timeout(timeout * 3):
                refused, reply = await aiosmtplib.send(
                    message, hostname=self.config.host, port=self.config.port,
                    username=username, password=password, timeout=timeout, **security,
                )  # fmt: skip
        except (aiosmtplib.SMTPTimeoutError, TimeoutError) as exc:
            raise ReceiverTimeout(self.name, f"{where} did not answer within {timeout:g}s") from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients] or [550]
            raise ReceiverRejected(
                self.name, f"{where} refused every recipient ({codes[0]})", codes[0],
                permanent=all(c >= 500 for c in codes),
            ) from exc  # fmt: skip
        except aiosmtplib.SMTPResponseException as exc:
            raise ReceiverRejected(
                self.name, f"{where} answered {exc.code} {mask_addresses(exc.message)}",
                exc.code, permanent=exc.code >= 500,
            ) from exc  # fmt: skip
        except ssl.SSLError as exc:
            raise ReceiverUnavailable(self.name, f"{where}: TLS failed: {exc.reason}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            if isinstance(exc, aiosmtplib.SMTPException) and "STARTTLS" in exc.message:
                raise ReceiverMisconfigured(
                    self.name, f"{where}: {exc.message} (refusing to send in clear)"
                ) from exc
            raise ReceiverUnavailable(self.name, f"{where}: {_reason(exc)}") from exc
        if refused:
            log.error("alert_email_partly_refused", receiver=self.name, refused=len(refused),
                      accepted=len(self.config.to) - len(refused))  # fmt: skip
        log.debug("alert_email_sent", receiver=self.name, reply=mask_addresses(reply))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPException):
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause.reason}"
        return mask_addresses(exc.message)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
