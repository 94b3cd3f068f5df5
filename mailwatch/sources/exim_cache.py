"""What the Exim source keeps per message, and how a message is built from it.

Shared by the listing (``exim -bpru`` with ``-Mvh``/``-Mvl``, :mod:`.exim`) and the spool
reader (:mod:`.exim_spool`), so both report a message the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mailwatch.core.headers import NormalisedSubject
from mailwatch.core.model import Headers, Message, Recipient
from mailwatch.parsing.exim import EximEntry

FROZEN_QUEUE = "frozen"
ACTIVE_QUEUE = "queue"


@dataclass(frozen=True, slots=True)
class CachedSpool:
    """What a message's spool files yield once read: kept so rescans need no reads."""

    headers: Headers
    subject: NormalisedSubject
    arrival: datetime
    reasons: tuple[tuple[str, str], ...] = ()
    """(address, last defer reason) from the message log."""
    last_error: str | None = None

    @property
    def has_reason(self) -> bool:
        """Whether the message log gave any delivery problem yet."""
        return bool(self.reasons) or self.last_error is not None


def message_key(source: str, queue_id: str) -> str:
    """Stable, unique key: ``source/queue_id`` (Exim ids encode their arrival time)."""
    return f"{source}/{queue_id}"


class RememberedMessage(Protocol):
    """What priming needs of a message the store remembers (``StoredMessage``, ``Message``)."""

    @property
    def headers(self) -> Headers:
        """Decoded headers."""
        ...

    @property
    def subject(self) -> str:
        """Normalised subject."""
        ...

    @property
    def marking(self) -> str | None:
        """Protective marking, if any."""
        ...

    @property
    def arrival(self) -> datetime:
        """Exact arrival."""
        ...

    @property
    def recipients(self) -> tuple[Recipient, ...]:
        """Undelivered recipients with their delay reasons."""
        ...

    @property
    def delay_reason(self) -> str | None:
        """First recipient reason, else the wait reason."""
        ...


def cached_from_message(message: RememberedMessage) -> CachedSpool:
    """A cache entry rebuilt from a stored message, so a restart re-reads no spool files."""
    return CachedSpool(
        headers=message.headers,
        subject=NormalisedSubject(message.subject, message.marking),
        arrival=message.arrival,
        reasons=tuple((r.address, r.delay_reason) for r in message.recipients if r.delay_reason),
        last_error=_unfrozen(message.delay_reason),
    )


def _unfrozen(reason: str | None) -> str | None:
    """The delivery error inside a stored wait reason (``"frozen: …"`` → ``"…"``)."""
    if reason is None or reason == "frozen":
        return None
    return reason.removeprefix("frozen: ")


def build_message(source: str, key: str, entry: EximEntry, cached: CachedSpool) -> Message:
    """The message as reported: queue ``frozen`` or ``queue``, reasons per recipient."""
    reasons = dict(cached.reasons)
    wait_reason: str | None
    if entry.frozen:
        wait_reason = f"frozen: {cached.last_error}" if cached.last_error else "frozen"
    else:
        wait_reason = cached.last_error
    return Message(
        key=key,
        source=source,
        queue_id=entry.queue_id,
        queue=FROZEN_QUEUE if entry.frozen else ACTIVE_QUEUE,
        arrival=cached.arrival,
        size=entry.size,
        sender=entry.sender,
        recipients=tuple(Recipient(a, reasons.get(a)) for a in entry.recipients),
        headers=cached.headers,
        subject=cached.subject.text,
        marking=cached.subject.marking,
        wait_reason=wait_reason,
    )


def listing_differences(listing: Iterable[EximEntry], seen: Iterable[Message]) -> set[str]:
    """Ids listed by ``exim -bpru`` or the spool view and not the other, or listed differently.

    Compared: frozen, sender and the undelivered recipients (what the listing says exactly).
    """
    listed = {e.queue_id: (e.frozen, e.sender, e.recipients) for e in listing}
    other = {
        m.queue_id: (m.queue == FROZEN_QUEUE, m.sender, tuple(r.address for r in m.recipients))
        for m in seen
    }
    return {i for i in listed.keys() | other.keys() if listed.get(i) != other.get(i)}
