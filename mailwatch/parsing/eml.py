"""Turn a raw RFC 5322 message (an ``.eml`` file) into a model value, for ``classify``."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import getaddresses

from mailwatch.core.headers import TRACE_HEADERS, normalise_subject, parse_header_block
from mailwatch.core.model import Message, Recipient


def message_from_bytes(raw: bytes, *, source: str = "cli", queue: str = "deferred") -> Message:
    """Build a :class:`Message` from the header block of ``raw``; broken input never raises."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    headers = parse_header_block(head, skip=TRACE_HEADERS)
    subject = normalise_subject(headers.get("Subject") or "", decoded=True)
    addresses = [
        a for _, a in getaddresses([v for k, v in headers.items if k.lower() in ("to", "cc")])
    ]
    senders = [a for _, a in getaddresses([headers.get("From") or ""])]
    return Message(
        key=f"{source}/eml/0",
        source=source,
        queue_id="eml",
        queue=queue,
        arrival=datetime.fromtimestamp(0, UTC),
        size=len(raw),
        sender=senders[0] if senders else "",
        recipients=tuple(Recipient(a) for a in addresses if a),
        headers=headers,
        subject=subject.text,
        marking=subject.marking,
    )
