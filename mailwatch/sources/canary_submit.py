"""A canary's first hop: its message, and its submission with aiosmtplib (see :mod:`.canary`).

A new connection per canary, TLS flags always explicit (``start_tls=True`` or
``use_tls=True``; ``none`` only to a loopback server, which :class:`~.canary.CanarySource`
enforces), AUTH only when a user name is configured.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, Literal

import aiosmtplib

from mailwatch.parsing.canary import CANARY_HEADER, canary_subject

SubmissionSecurity = Literal["starttls", "tls", "none"]
_BODY = (
    "This message was sent by mailwatch to check that mail reaches this mailbox in time.\n"
    "It is deleted automatically: please leave it alone.\n"
)


@dataclass(frozen=True, slots=True)
class Submission:
    """Where canaries are submitted (the first hop of the path)."""

    host: str
    port: int | None = None
    """Default: 465 for ``tls``, 587 for ``starttls``, 25 for ``none``."""
    security: SubmissionSecurity = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    verify: bool = True

    @property
    def effective_port(self) -> int:
        """The port to submit to: :attr:`port`, or the security's default."""
        return self.port or {"tls": 465, "starttls": 587, "none": 25}[self.security]

    def tls_flags(self, context: ssl.SSLContext | None) -> dict[str, Any]:
        """Aiosmtplib's TLS arguments, always explicit (its default: only if offered)."""
        if self.security == "tls":
            return {"use_tls": True, "start_tls": False, "tls_context": context}
        if self.security == "starttls":
            return {"use_tls": False, "start_tls": True, "tls_context": context}
        return {"use_tls": False, "start_tls": False}


def canary_message(sender: str, recipient: str, token: str, now: datetime) -> EmailMessage:
    """The canary carrying ``token`` (header and subject), sent at ``now``."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = canary_subject(token)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid("mailwatch-canary", sender.rpartition("@")[2])
    message[CANARY_HEADER] = token
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message.set_content(_BODY)
    return message


def describe_failure(exc: BaseException) -> str:
    """What went wrong with a submission, in words (no secrets: the server's reply)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate failed verification ({exc.verify_message}); set ca_file"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return "; ".join(f"{r.code} {r.message}" for r in exc.recipients) or "recipient refused"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
