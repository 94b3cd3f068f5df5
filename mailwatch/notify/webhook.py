"""The webhook receiver: POST the payload JSON, optionally signed with HMAC-SHA256.

A request carries::

    Content-Type: application/json
    X-Mailwatch-Timestamp: 1796547600          (Unix seconds when this attempt was sent)
    X-Mailwatch-Delivery: 3f9a…                (sha256 of the body, 32 hex: equal on retries)
    X-Mailwatch-Signature: sha256=<hex>        (only with ``hmac_secret``)

The signature is HMAC-SHA256 with the secret over the *exact body bytes* (verify before
parsing). The body's ``sent_at`` is inside the signed bytes; the timestamp header is not
(it changes per attempt while the body does not), so receivers that reject replays key on
``(alert.id, kind, sent_at)`` or on the delivery id. Delivery is at least once.

The secret is read (``SecretRef.read()``) at every send, so a rotated file takes effect
without a restart, and is never logged. TLS certificates are verified (system store, or
``ca_file``). A 2xx answer is success; redirects are not followed (a moved webhook is a
configuration error); other answers become :class:`~mailwatch.errors.ReceiverRejected`.

:func:`post_json` and :func:`ssl_context` are shared with the Alertmanager receiver.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from mailwatch.config.alerts import WebhookReceiverConfig
from mailwatch.errors import (
    NotifyError,
    ReceiverMisconfigured,
    ReceiverRejected,
    ReceiverTimeout,
    ReceiverUnavailable,
)
from mailwatch.notify import Payload, http_rejection

USER_AGENT = "mailwatch/0.1"
SIGNATURE_HEADER = "X-Mailwatch-Signature"
TIMESTAMP_HEADER = "X-Mailwatch-Timestamp"
DELIVERY_HEADER = "X-Mailwatch-Delivery"


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: safe to log (paths and queries may hold tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, or only ``ca_file`` when given."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def encode(payload: Payload) -> bytes:
    """The body bytes sent (and signed): compact UTF-8 JSON, keys in payload order."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(body: bytes, secret: str) -> str:
    """The ``X-Mailwatch-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def headers(body: bytes, secret: str | None, now: datetime) -> dict[str, str]:
    """Every header of one attempt (the signature only when there is a secret)."""
    result = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: str(int(now.timestamp())),
        DELIVERY_HEADER: hashlib.sha256(body).hexdigest()[:32],
    }
    if secret is not None:
        result[SIGNATURE_HEADER] = sign(body, secret)
    return result


async def post_json(
    receiver: str,
    urls: list[str],
    body: bytes,
    request_headers: Mapping[str, str],
    *,
    within: float,
    tls: ssl.SSLContext,
) -> None:
    """POST ``body`` to every one of ``urls`` at once (one session, closed after).

    Succeeds only when every URL answered 2xx. Otherwise raises one
    :class:`~mailwatch.errors.NotifyError`: a retryable failure if there is one (so a
    partial failure is retried), else the permanent rejection; with several URLs its detail
    says how many failed.
    """
    connector = aiohttp.TCPConnector(ssl=tls, force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=within)
    ) as session:
        results = await asyncio.gather(
            *(_post_one(session, receiver, url, body, request_headers, within) for url in urls),
            return_exceptions=True,
        )
    failures: list[NotifyError] = []
    for result in results:
        if isinstance(result, NotifyError):
            failures.append(result)
        elif isinstance(result, BaseException):
            raise result
    if not failures:
        return
    retryable = [f for f in failures if not (isinstance(f, ReceiverRejected) and f.permanent)]
    chosen = (retryable or failures)[0]
    if len(urls) == 1:
        raise chosen
    detail = f"{len(failures)} of {len(urls)} failed, e.g. {chosen.detail}"
    if isinstance(chosen, ReceiverRejected):
        raise ReceiverRejected(receiver, detail, chosen.status, permanent=chosen.permanent)
    raise type(chosen)(receiver, detail)


async def _post_one(
    session: aiohttp.ClientSession,
    receiver: str,
    url: str,
    body: bytes,
    request_headers: Mapping[str, str],
    within: float,
) -> None:
    where = origin(url)
    try:
        async with session.post(
            url, data=body, headers=dict(request_headers), allow_redirects=False
        ) as response:
            status = response.status
            await response.read()
    except TimeoutError as exc:  # aiohttp's timeouts are TimeoutError subclasses
        raise ReceiverTimeout(receiver, f"{where} did not answer within {within:g}s") from exc
    except aiohttp.ClientSSLError as exc:
        raise ReceiverUnavailable(receiver, f"{where}: TLS failed: {_reason(exc)}") from exc
    except aiohttp.InvalidURL as exc:
        raise ReceiverMisconfigured(receiver, f"invalid URL for {where}") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise ReceiverUnavailable(receiver, f"{where}: {_reason(exc)}") from exc
    if not 200 <= status < 300:
        raise http_rejection(receiver, where, status)


def _reason(exc: BaseException) -> str:
    """A short reason without the URL (aiohttp puts the full URL in some messages)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return str(exc.certificate_error)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.strerror or type(exc.os_error).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


class WebhookReceiver:
    """POSTs the payload to ``config.url`` (see the module docstring for the wire format)."""

    def __init__(
        self,
        name: str,
        config: WebhookReceiverConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self._tls = ssl_context(config.ca_file)

    def _secret(self) -> str | None:
        if self.config.hmac_secret is None:
            return None
        try:
            return self.config.hmac_secret.read()
        except LookupError as exc:
            raise ReceiverMisconfigured(self.name, f"HMAC secret unavailable: {exc}") from None

    async def send(self, payload: Payload) -> None:
        """POST ``payload``; return once the webhook answered 2xx."""
        body = encode(payload)
        request_headers = headers(body, self._secret(), self.clock())
        await post_json(self.name, [self.config.url], body, request_headers,
                        within=self.config.timeout, tls=self._tls)  # fmt: skip
