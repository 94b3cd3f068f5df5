"""What one scan changed, as the fleet store receives it (pure).

After every scan the scanner hands a :class:`ChangeSet` to a :class:`ChangeSink` (the fleet
pusher): messages that appeared or changed (:class:`Upsert`), messages that left
(:class:`Removal`), final outcomes from a mail log (:class:`Outcome`) and the source's
:class:`Heartbeat`. Only what changed since the previous scan of the source is carried
(:func:`diff`); the first scan of a source after a start is *full*: the fleet then marks as
left every message of that source it still holds queued and that is not in the set.

Personal data: an :class:`Upsert` carries recipient *domains*, never addresses or the sender;
its delay reason has addresses masked; its subject only when the operator enabled it.
Times are Unix seconds, as both stores keep them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mailwatch.core.judgement import reason_category
from mailwatch.core.model import Delivery, LogEvent, StoredMessage, Verdict
from mailwatch.core.redaction import mask_addresses


@dataclass(frozen=True, slots=True)
class Upsert:
    """A queued message as the fleet stores it, keyed by (source, queue id, arrival)."""

    source: str
    queue_id: str
    arrival: float
    key: str
    queue: str
    size: int
    marking: str | None
    class_name: str
    priority: int
    rule: str
    deadline: float
    delay_reason: str | None
    reason_category: str | None
    recipient_domains: tuple[str, ...]
    subject: str | None
    seen_at: float = field(compare=False, default=0.0)
    """When it was first pushed (not part of the comparison: a rescan is not a change)."""


@dataclass(frozen=True, slots=True)
class Removal:
    """A message that left its queue at ``at``."""

    source: str
    queue_id: str
    arrival: float
    at: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """A final delivery outcome (sent, bounced, expired) of the newest message with a queue id."""

    source: str
    queue_id: str
    status: str
    severity: int
    at: float
    dsn: str | None
    text: str | None
    delay: float | None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The last scan of a source: when, whether it worked, why not, how many messages."""

    source: str
    at: float
    ok: bool
    error: str | None = None
    error_kind: str | None = None
    messages: int = 0
    relayhost: str | None = None
    """The source's smarthost at this scan: the fleet judges relay_down as the agent does."""


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """What one scan of ``source`` changed."""

    source: str
    heartbeat: Heartbeat
    upserts: tuple[Upsert, ...] = ()
    removals: tuple[Removal, ...] = ()
    outcomes: tuple[Outcome, ...] = ()
    full: bool = False
    """The upserts are every queued message of the source (others still queued have left)."""

    @property
    def size(self) -> int:
        """Rows it carries (the local queue's bound counts these)."""
        return 1 + len(self.upserts) + len(self.removals) + len(self.outcomes)


class ChangeSink(Protocol):
    """Receives each scan's changes (must return at once and never raise)."""

    include_subjects: bool

    def changed(self, changes: ChangeSet) -> None:
        """Take ``changes`` (queue them for the fleet)."""


def upsert_of(verdict: Verdict, seen_at: datetime, *, include_subjects: bool) -> Upsert:
    """The fleet row of a judged message."""
    m, c = verdict.message, verdict.classification
    reason = m.delay_reason
    return Upsert(
        source=m.source, queue_id=m.queue_id, arrival=m.arrival.timestamp(), key=m.key,
        queue=m.queue, size=m.size, marking=m.marking, class_name=c.name,
        priority=int(c.priority), rule=c.rule, deadline=verdict.deadline.timestamp(),
        delay_reason=None if reason is None else mask_addresses(reason),
        reason_category=_category(reason), recipient_domains=m.recipient_domains,
        subject=m.subject if include_subjects else None, seen_at=seen_at.timestamp(),
    )  # fmt: skip


def upsert_of_stored(message: StoredMessage, *, include_subjects: bool) -> Upsert:
    """The fleet row of a message read back from the local store (a full resync)."""
    m, reason = message, message.delay_reason
    return Upsert(
        source=m.source, queue_id=m.queue_id, arrival=m.arrival.timestamp(), key=m.key,
        queue=m.queue, size=m.size, marking=m.marking, class_name=m.class_name,
        priority=int(m.priority), rule=m.rule, deadline=m.deadline.timestamp(),
        delay_reason=None if reason is None else mask_addresses(reason),
        reason_category=_category(reason), recipient_domains=m.recipient_domains,
        subject=m.subject if include_subjects else None, seen_at=m.first_seen.timestamp(),
    )  # fmt: skip


def _category(reason: str | None) -> str | None:
    category = reason_category(reason)
    return None if category is None else category.value


def diff(
    previous: Mapping[str, Upsert], current: Iterable[Upsert], at: datetime
) -> tuple[list[Upsert], list[Removal], dict[str, Upsert]]:
    """Upserts (new or changed), removals (gone) and the new state, keyed by message key."""
    state = {u.key: u for u in current}
    upserts = [u for key, u in state.items() if previous.get(key) != u]
    left = at.timestamp()
    removals = [
        Removal(u.source, u.queue_id, u.arrival, left)
        for key, u in previous.items()
        if key not in state
    ]
    return upserts, removals, state


def outcomes_of(source: str, events: Sequence[LogEvent]) -> list[Outcome]:
    """The final deliveries among mail-log ``events``, as outcomes of ``source``'s messages."""
    return [
        Outcome(source, e.queue_id, e.status.value, e.status.severity, e.at.timestamp(),
                e.dsn, e.text, e.delay_seconds)
        for e in events
        if isinstance(e, Delivery) and e.status.final
    ]  # fmt: skip


def encode(changes: ChangeSet) -> str:
    """``changes`` as JSON (the local queue's payload)."""
    return json.dumps(asdict(changes), separators=(",", ":"))


def decode(text: str) -> ChangeSet:
    """A :class:`ChangeSet` from :func:`encode`'s JSON."""
    data: dict[str, Any] = json.loads(text)
    return ChangeSet(
        source=data["source"],
        heartbeat=Heartbeat(**data["heartbeat"]),
        upserts=tuple(
            Upsert(**(u | {"recipient_domains": tuple(u["recipient_domains"])}))
            for u in data["upserts"]
        ),
        removals=tuple(Removal(**r) for r in data["removals"]),
        outcomes=tuple(Outcome(**o) for o in data["outcomes"]),
        full=data["full"],
    )
