"""The store's row shapes and their conversion to and from SQLite values."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from mailwatch.core.model import (
    DeliveryStatus,
    Headers,
    Priority,
    Recipient,
    Status,
    StoredMessage,
    Verdict,
)

INSERT_COLUMNS = (
    "key, source, queue_id, queue, arrival, size, sender, recipients, headers, subject, marking, "
    "class, priority, rule, deadline, delay_reason, status, first_seen, left_at"
)
MESSAGE_COLUMNS = INSERT_COLUMNS + ", outcome, outcome_at, outcome_text, dsn, delivery_delay"

# What, if it changes between scans, needs a row update.
State = tuple[str, str, int, str, float, tuple[Recipient, ...]]
Written = State | Verdict
"""What the index keeps per queued message: the verdict it was last written from (or, read
back from the store at start, its state)."""


def state_of(verdict: Verdict) -> State:
    """The state of the row a verdict was written as."""
    m, c = verdict.message, verdict.classification
    return (m.queue, c.name, int(c.priority), c.rule, verdict.deadline.timestamp(), m.recipients)


def ts(moment: datetime) -> float:
    """A datetime as stored: Unix seconds."""
    return moment.timestamp()


def at(value: float) -> datetime:
    """A stored time as an aware UTC datetime."""
    return datetime.fromtimestamp(value, UTC)


def dt(value: float | None) -> datetime | None:
    """A nullable stored time as a datetime or ``None``."""
    return None if value is None else at(value)


# The two JSON columns written per message are built from json's own string encoder (what
# json.dumps uses): the same text, byte for byte, without dumps' per-call overhead.


def recipients_json(recipients: Sequence[Recipient]) -> str:
    """Recipients as stored: a JSON list of ``[address, delay_reason]`` (``json.dumps``)."""
    return "[" + ", ".join([
        f"[{_quote(r.address)}, {'null' if r.delay_reason is None else _quote(r.delay_reason)}]"
        for r in recipients
    ]) + "]"  # fmt: skip


def headers_json(headers: Headers) -> str:
    """Headers as stored: a JSON list of ``[name, value]`` (``json.dumps(headers.items)``)."""
    parts = headers.parts  # quoted and paired at C speed: no tuple per header
    if not parts:
        return "[]"
    quoted = iter(map(_quote, parts))
    return "[[" + "], [".join(map(", ".join, zip(quoted, quoted, strict=False))) + "]]"


def recipients_of(text: str) -> tuple[Recipient, ...]:
    """Recipients from their stored JSON."""
    return tuple(Recipient(address, reason) for address, reason in json.loads(text))


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """One probe of one source as recorded."""

    source: str
    started_at: datetime
    finished_at: datetime
    ok: bool
    error: str | None
    messages: int
    malformed: int
    headers_read: int
    warnings: tuple[str, ...] = ()
    relayhost: str | None = None


def decode_message(
    row: Sequence[Any], last_good: dict[str, float], relayhosts: Mapping[str, str] | None = None
) -> StoredMessage:
    """A :class:`StoredMessage` from a ``SELECT MESSAGE_COLUMNS`` row.

    ``last_good`` and ``relayhosts`` are per source: when its latest good scan finished, and
    the relayhost that scan saw (:func:`mailwatch.store.listing.relayhosts`).
    """
    (key, source, queue_id, queue, arrival, size, sender, rcpts, headers, subject, marking,
     cls, prio, rule, deadline, delay_reason, status, first_seen, left_at,
     outcome, outcome_at, outcome_text, dsn, delivery_delay) = row  # fmt: skip
    state = Status(status)
    last = left_at if state is Status.LEFT else last_good.get(source)
    return StoredMessage(
        key=key, source=source, queue_id=queue_id, queue=queue, arrival=at(arrival),
        size=size, sender=sender, recipients=recipients_of(rcpts),
        headers=Headers(tuple((n, v) for n, v in json.loads(headers))),
        subject=subject, marking=marking, class_name=cls, priority=Priority(prio), rule=rule,
        deadline=at(deadline), delay_reason=delay_reason, status=state,
        first_seen=at(first_seen), left_at=dt(left_at), last_seen=dt(last),
        outcome=None if outcome is None else DeliveryStatus(outcome),
        outcome_at=dt(outcome_at), outcome_text=outcome_text, dsn=dsn,
        delivery_delay=delivery_delay,
        relayhost=relayhosts.get(source) if relayhosts else None,
    )  # fmt: skip
