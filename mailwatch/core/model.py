"""The values mailwatch reasons about: messages, where they sit, and what a probe saw.

Everything here is a frozen dataclass or an enum: pure data with no I/O and no clock. Times
are timezone-aware UTC datetimes; a message's *key* is stable across scans and unique across
sources (``source/queue_id/arrival``: Postfix reuses queue ids over time).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from mailwatch.core.headerset import Headers as Headers  # noqa: PLC0414 (re-exported)


class Priority(enum.IntEnum):
    """Business priority of a class of mail; P1 is the most urgent."""

    P1 = 1
    P2 = 2
    P3 = 3
    P4 = 4

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, text: str) -> Priority:
        """Parse ``"P1"``…``"P4"`` (any case); raise ``ValueError`` otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"{text!r} is not a priority (P1, P2, P3 or P4)") from None


class Status(enum.StrEnum):
    """Where a tracked message is in its life as far as mailwatch knows."""

    QUEUED = "queued"
    """Seen in the source at its latest scan."""
    LEFT = "left"
    """No longer in the source; its final outcome (sent, bounced…) comes from the mail log."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """One envelope recipient and, if the MTA gave one, why delivery to it is delayed."""

    address: str
    delay_reason: str | None = None

    @property
    def domain(self) -> str:
        """The recipient's domain, lower-cased (empty for a bare local part)."""
        _, _, domain = self.address.rpartition("@")
        return domain.lower() if "@" in self.address else ""


def domains_of(recipients: Iterable[Recipient]) -> tuple[str, ...]:
    """Sorted distinct domains of ``recipients`` (what may be shown instead of addresses)."""
    return tuple(sorted({r.domain for r in recipients if r.domain}))


class Message(NamedTuple):
    """A message as one source sees it at one scan (headers already decoded).

    An immutable named tuple rather than a frozen dataclass: sources build one per message
    they read (tens of thousands in a first scan), and a tuple is built in a quarter of the
    time. Compare messages with each other only, never with plain tuples.
    """

    key: str
    source: str
    queue_id: str
    queue: str
    arrival: datetime
    size: int
    sender: str
    recipients: tuple[Recipient, ...]
    headers: Headers = Headers()  # immutable: one shared empty value is safe
    subject: str = ""
    """Subject after normalisation (decoded, prefixes and marking stripped)."""
    marking: str | None = None
    """Protective marking taken from the start of the subject (``OFFICIAL-SENSITIVE``…)."""
    forced_expire: bool = False
    wait_reason: str | None = None
    """Why the source says the message waits, when it is not a per-recipient delay reason
    (e.g. ``"unread in INBOX"`` for a mailbox, ``"frozen"`` for Exim)."""

    @property
    def recipient_domains(self) -> tuple[str, ...]:
        """Sorted distinct recipient domains (safe to show: no local parts)."""
        return domains_of(self.recipients)

    @property
    def delay_reason(self) -> str | None:
        """The first delay reason any recipient carries, else the source's wait reason."""
        for recipient in self.recipients:
            if recipient.delay_reason:
                return recipient.delay_reason
        return self.wait_reason


class DeliveryStatus(enum.StrEnum):
    """Outcome of one delivery attempt (or of the whole message, for expiry)."""

    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        """Whether the message (for this recipient) will not be tried again."""
        return self is not DeliveryStatus.DEFERRED

    @property
    def severity(self) -> int:
        """How bad a final outcome is, for a message with several: bounced > expired > sent."""
        return {"deferred": 0, "sent": 1, "expired": 2, "bounced": 3}[self.value]


@dataclass(frozen=True, slots=True)
class Delivery:
    """A mail-log ``status=`` line: one recipient's attempt, or (``recipient=None``) expiry."""

    at: datetime
    queue_id: str
    status: DeliveryStatus
    recipient: str | None
    relay: str | None = None
    delay_seconds: float | None = None
    delays: tuple[float, float, float, float] | None = None
    dsn: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Removed:
    """A mail-log ``removed`` line: the message left the queue for good."""

    at: datetime
    queue_id: str


LogEvent = Delivery | Removed


LOST_QUEUE = "lost"
"""The queue of a lost canary: stuck at once (see :data:`mailwatch.core.sla.STUCK_AT_ONCE`) until
a canary sent after it makes its round trip in time, which shows the path works again."""
REMEMBER_LOST = timedelta(days=7)
"""How long a lost canary is still recognised if it arrives late (Postfix keeps mail 5 days),
and so kept in the store."""


@dataclass(frozen=True, slots=True)
class CanaryResult:
    """What became of one canary on one path, as of one probe.

    Sent and still travelling: ``found_at is None and not lost``. Round trip completed within
    the timeout: ``found_at`` and ``roundtrip_seconds`` set, ``lost`` false. Lost: ``lost``
    true (a late arrival also carries ``found_at`` and ``roundtrip_seconds``).
    """

    path: str
    token: str
    sent_at: datetime
    queue_id: str | None
    """The submission server's queue id ("queued as X"), if its reply to DATA gave one."""
    found_at: datetime | None = None
    """When a probe found the canary in the destination mailbox."""
    roundtrip_seconds: float | None = None
    """From submission to arrival in the mailbox (see :mod:`mailwatch.sources.canary`)."""
    lost: bool = False


@dataclass(frozen=True, slots=True)
class LogCursor:
    """Where a log reader stopped.

    The file's inode, the byte offset of the next unread line, and a fingerprint of the bytes
    before it (to tell a copy-truncated, regrown file from one that only grew).
    """

    inode: int
    offset: int
    head: str


@dataclass(frozen=True, slots=True)
class _Seen:
    """What every observation has: what one probe of one source saw at ``observed_at``."""

    source: str
    observed_at: datetime
    messages: Sequence[Message]
    """Everything waiting, in the source's order: a tuple, or a
    :class:`~mailwatch.core.chunked.Chunked` sharing most items with the previous probe's."""
    malformed: int = 0
    """Input records the parser could not understand and skipped (counted, not fatal)."""
    headers_read: int = 0
    """How many messages' headers this probe had to read (0 on a rescan of an unchanged queue)."""
    warnings: tuple[str, ...] = ()
    """What the source said was wrong while it still answered (e.g. "Mail system is down")."""


@dataclass(frozen=True, slots=True)
class QueueObservation(_Seen):
    """A queue or mailbox: the messages waiting in it (its backlog)."""

    _: KW_ONLY
    relayhost: str | None = None
    """The MTA's configured smarthost (Postfix ``relayhost``) at this probe, if it has one:
    a connect or DNS failure naming it is ``relay_down`` (:mod:`mailwatch.core.reasons`)."""
    reconciled: int = 0
    """Messages a full listing at this probe found different from the source's incremental
    view (Postfix change detection, ``full_listing_every``): 0 when it missed nothing."""


@dataclass(frozen=True, slots=True)
class LogObservation(_Seen):
    """A mail log: final outcomes read since the last cursor; no backlog of its own."""

    _: KW_ONLY
    outcomes: tuple[LogEvent, ...] = ()
    outcomes_for: str | None = None
    """The queue source whose queue ids ``outcomes`` refer to."""
    cursor: LogCursor
    """Where the log was read up to; stored with the outcomes in one transaction."""


@dataclass(frozen=True, slots=True)
class CanaryObservation(_Seen):
    """A canary path: the canaries travelling (as messages) and the events since last time."""

    _: KW_ONLY
    canaries: tuple[CanaryResult, ...] = ()
    """Canary events since the source's last observation: canaries sent, round trips
    completed, canaries newly lost."""


Observation = QueueObservation | LogObservation | CanaryObservation
"""What one probe of one source saw: one variant per kind of thing a source watches."""


def relayhost_of(observation: Observation | None) -> str | None:
    """The smarthost a queue observation saw (``None`` for other kinds, or none known)."""
    return observation.relayhost if isinstance(observation, QueueObservation) else None


def reconciled_of(observation: Observation | None) -> int:
    """Differences a full listing found at this probe (0 for other kinds of observation)."""
    return observation.reconciled if isinstance(observation, QueueObservation) else 0


@dataclass(frozen=True, slots=True)
class Classification:
    """Which class a message belongs to, and why."""

    name: str
    priority: Priority
    rule: str
    """Human description of the rule that matched (``"default"`` when nothing did)."""
    matched_on: str | None = None
    """The text the rule matched, e.g. ``subject: 'emergency recall'``."""


class JudgedAt:
    """The instant a kept backlog (:class:`mailwatch.core.tracked.Backlog`) last judged at.

    Moved forward at each scan: a reused :class:`Verdict`'s age follows it.
    """

    __slots__ = ("at",)

    def __init__(self, at: datetime) -> None:
        self.at = at


_VERDICT_FIELDS = ("message", "classification", "age_seconds", "deadline", "stuck", "reason")


class Verdict:
    """A message with its class and its SLA evaluation at one instant (immutable).

    ``age_seconds`` is given, or derived from the arrival and ``judged`` (a kept backlog's
    verdicts: reused while their judgement is unchanged, their ages follow its latest scan).
    """

    __slots__ = ("_age", "_judged", "classification", "deadline", "message", "reason", "stuck")
    message: Message
    classification: Classification
    deadline: datetime
    stuck: bool
    reason: str | None
    """Why it is stuck: ``"held"``, the MTA's delay reason, or ``"over SLA"``."""
    _age: float
    _judged: JudgedAt | None

    def __init__(
        self,
        message: Message,
        classification: Classification,
        age_seconds: float,
        deadline: datetime,
        stuck: bool,
        reason: str | None,
        *,
        judged: JudgedAt | None = None,
    ) -> None:
        put = object.__setattr__
        put(self, "message", message), put(self, "classification", classification)
        put(self, "_age", float(age_seconds)), put(self, "deadline", deadline)
        put(self, "stuck", stuck), put(self, "reason", reason), put(self, "_judged", judged)

    @property
    def age_seconds(self) -> float:
        """Its age at the instant it was (last) judged at, never negative."""
        if self._judged is None:
            return self._age
        return max((self._judged.at - self.message.arrival).total_seconds(), 0.0)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Verdict is immutable (cannot set {name})")

    def values(self) -> tuple[object, ...]:
        """Its fields, in order (what equality and hashing compare)."""
        return tuple(getattr(self, name) for name in _VERDICT_FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verdict):
            return NotImplemented
        return self.values() == other.values()

    def __hash__(self) -> int:
        return hash(self.values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _VERDICT_FIELDS)
        return f"Verdict({shown})"


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A tracked message as the store knows it."""

    key: str
    source: str
    queue_id: str
    queue: str
    arrival: datetime
    size: int
    sender: str
    recipients: tuple[Recipient, ...]
    headers: Headers
    subject: str
    marking: str | None
    class_name: str
    priority: Priority
    rule: str
    deadline: datetime
    delay_reason: str | None
    status: Status
    first_seen: datetime
    left_at: datetime | None
    last_seen: datetime | None
    """When its source last saw it: the latest good scan while queued, else ``left_at``."""
    outcome: DeliveryStatus | None = None
    """Final outcome from the mail log (the worst over its recipients), if known."""
    outcome_at: datetime | None = None
    outcome_text: str | None = None
    dsn: str | None = None
    delivery_delay: float | None = None
    relayhost: str | None = None
    """Its source's ``relayhost`` at the source's latest good scan (see :class:`Observation`)."""

    @property
    def recipient_domains(self) -> tuple[str, ...]:
        """Sorted distinct recipient domains."""
        return domains_of(self.recipients)

    def as_message(self) -> Message:
        """The message as its source reported it (its delay reason as the wait reason)."""
        return Message(
            self.key, self.source, self.queue_id, self.queue, self.arrival, self.size,
            self.sender, self.recipients, self.headers, self.subject, self.marking,
            wait_reason=self.delay_reason,
        )  # fmt: skip
