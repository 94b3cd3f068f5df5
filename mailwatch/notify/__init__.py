"""Notification receivers, and the Alertmanager re-send loop (the outbox loop: app.delivery).

Every receiver takes the documented payload (:mod:`mailwatch.alerting.payload`, version 1)
and does one thing with it::

    Receiver.send(payload)                      raises a NotifyError subclass on failure
    ├── AlertmanagerReceiver   POST /api/v2/alerts to every listed Alertmanager
    ├── WebhookReceiver        POST the payload JSON, optionally HMAC-SHA256-signed
    └── EmailReceiver          one message through an SMTP relay, a new connection per send

Third-party exceptions (aiohttp, aiosmtplib, ssl, OS) are translated into the errors below
(in :mod:`mailwatch.errors`) in the receiver that meets them, so the delivery loop decides
what to do from the type alone:

::

    NotifyError(MailwatchError)
    ├── ReceiverUnavailable(ConnectionError)   could not connect / TLS failed: retry
    ├── ReceiverTimeout(TimeoutError)          no answer in time: retry
    ├── ReceiverRejected                       answered "no"; ``status``; ``permanent`` or not
    └── ReceiverMisconfigured                  a secret is missing, plain SMTP to a remote host…

Error messages name the receiver and at most a URL's origin (``scheme://host:port``): webhook
paths often carry tokens (Slack, Teams) and must not reach logs.
"""

from __future__ import annotations

from typing import Any, Protocol

from mailwatch.errors import ReceiverRejected

Payload = dict[str, Any]
"""A version-1 notification payload (see :mod:`mailwatch.alerting.payload`)."""


class Receiver(Protocol):
    """Something that delivers a notification payload, or raises a :class:`NotifyError`."""

    async def send(self, payload: Payload) -> None:
        """Deliver ``payload``; return only once the receiver accepted it."""


def http_rejection(receiver: str, origin: str, status: int) -> ReceiverRejected:
    """The error for a non-2xx HTTP answer: 4xx other than 408/429 (and 3xx) are permanent."""
    permanent = status < 500 and status not in (408, 429)
    return ReceiverRejected(
        receiver, f"{origin} answered HTTP {status}", status, permanent=permanent
    )


__all__ = ["Payload", "Receiver", "http_rejection"]
