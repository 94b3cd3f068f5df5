"""One judgement: is a message stuck at ``now``, why, and what state to show (pure).

Every interface asks this module: the CLI (``stuck``, ``show``, ``check``), the HTTP API, the
status page, the metrics and mailwatch's own alerts. They may format the answer differently;
they never judge differently.

A message is *stuck* when either holds:

* it is **waiting** (still queued) and sits in a queue that is stuck at once (Postfix
  ``hold``, Exim ``frozen``, a lost canary) or is past its deadline (its class's SLA from
  arrival), the reason being the MTA's delay reason where there is one;
* it is **undeliverable**: it bounced or expired (for at least one recipient) within the
  report window (``undeliverable_for``), whatever its priority: "not sent" is never silent.

The state shown for a message that left the queue is its outcome (``sent``, ``bounced``,
``expired``, or ``left`` while the mail log has not said), never the queue it last sat in.

The same predicate in SQL (:data:`WAITING_SQL`, :data:`UNDELIVERABLE_SQL`) lets the store
select stuck candidates and page them without judging every row in Python; a property test
checks that both forms agree on every message.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from mailwatch.core.model import DeliveryStatus, Priority, Status, StoredMessage
from mailwatch.core.reasons import ReasonCategory, categorize

STUCK_AT_ONCE = {"hold": "held", "frozen": "frozen", "lost": "canary lost"}
"""Queues whose messages are stuck whatever their age, and why."""
AT_ONCE_CATEGORY = {
    "held": ReasonCategory.HELD, "frozen": ReasonCategory.FROZEN,
    "canary lost": ReasonCategory.UNKNOWN,
}  # fmt: skip
"""The category of each :data:`STUCK_AT_ONCE` reason (the queue says why, not the text)."""
UNDELIVERABLE = (DeliveryStatus.BOUNCED, DeliveryStatus.EXPIRED)
"""Final outcomes that mean "not sent"."""

_AT_ONCE_SQL = ", ".join(f"'{queue}'" for queue in STUCK_AT_ONCE)
_UNDELIVERABLE_SQL = ", ".join(f"'{o.value}'" for o in UNDELIVERABLE)
WAITING_SQL = (
    f"(status = '{Status.QUEUED.value}' AND (queue IN ({_AT_ONCE_SQL}) OR deadline < :now))"
)
"""SQL form of :func:`waiting_reason` ``is not None`` (``:now`` in Unix seconds)."""
UNDELIVERABLE_SQL = f"(outcome IN ({_UNDELIVERABLE_SQL}) AND outcome_at >= :since)"
"""SQL form of :func:`undeliverable_reason` ``is not None`` (``:since`` in Unix seconds)."""
STUCK_SQL = f"({WAITING_SQL} OR {UNDELIVERABLE_SQL})"
"""SQL form of :attr:`Judgement.stuck`."""
LISTED_SQL = f"(status = '{Status.QUEUED.value}' OR {UNDELIVERABLE_SQL})"
"""The messages ``stuck --all`` lists: every queued one, and every undeliverable one."""


def waiting_reason(
    queue: str, deadline: datetime, delay_reason: str | None, now: datetime
) -> str | None:
    """Why a queued message in ``queue`` with this ``deadline`` is stuck at ``now``, or ``None``."""
    if queue in STUCK_AT_ONCE:
        return STUCK_AT_ONCE[queue]
    if now > deadline:
        return delay_reason or f"over SLA in {queue} queue"
    return None


def undeliverable_reason(message: StoredMessage, since: datetime) -> str | None:
    """``"bounced: <why>"`` when the message bounced or expired at or after ``since``."""
    outcome, at = message.outcome, message.outcome_at
    if outcome is None or outcome not in UNDELIVERABLE or at is None or at < since:
        return None
    return f"{outcome.value}: {message.outcome_text or message.dsn or 'no reason given'}"


def reason_category(reason: str | None, relayhost: str | None = None) -> ReasonCategory | None:
    """The category of a judged reason (:attr:`Judgement.reason`, :attr:`Verdict.reason`).

    The one place every interface (``stuck``, ``show``, the API, the status page, metrics and
    alerts) gets a category from: ``None`` when there is no reason (not stuck). ``relayhost``
    is the source's smarthost (:attr:`StoredMessage.relayhost`): a connect or DNS failure
    naming it is ``relay_down``.
    """
    if reason is None:
        return None
    if reason in AT_ONCE_CATEGORY:
        return AT_ONCE_CATEGORY[reason]
    return _categorize(reason, relayhost)


@functools.lru_cache(maxsize=4096)
def _categorize(reason: str, relayhost: str | None) -> ReasonCategory:
    """:func:`categorize`, remembered: a backlog repeats a few reasons thousands of times."""
    return categorize(reason, relayhost=relayhost)


def shown_state(message: StoredMessage) -> str:
    """Where the message is, as shown in the QUEUE column: its queue, else its outcome."""
    if message.status is Status.QUEUED:
        return message.queue
    return message.outcome.value if message.outcome is not None else "left"


@dataclass(frozen=True, slots=True)
class Judgement:
    """The answer about one message at one instant."""

    message: StoredMessage
    age_seconds: float
    waiting: str | None
    """Why it is stuck waiting in its queue (held, over SLA…); ``None`` if not, or if it left."""
    undeliverable: str | None
    """Why it was not sent (bounced or expired within the window); ``None`` otherwise."""
    state: str
    """Its queue while queued, else its outcome (``sent``, ``bounced``, ``expired``, ``left``)."""

    @property
    def stuck(self) -> bool:
        """Whether it is stuck (waiting too long, or not sent)."""
        return self.waiting is not None or self.undeliverable is not None

    @property
    def reason(self) -> str | None:
        """Why it is stuck (not sent first: that is final), else ``None``."""
        return self.undeliverable or self.waiting

    @property
    def category(self) -> ReasonCategory | None:
        """Why it is stuck, in one word (:func:`reason_category`); ``None`` if not stuck."""
        return reason_category(self.reason, self.message.relayhost)

    @property
    def priority(self) -> Priority:
        """The message's own priority (its rule may raise it above its class's)."""
        return self.message.priority


def judge(message: StoredMessage, now: datetime, since: datetime) -> Judgement:
    """Judge one stored message at ``now``; ``since`` = ``now`` minus the undeliverable window."""
    waiting = (
        waiting_reason(message.queue, message.deadline, message.delay_reason, now)
        if message.status is Status.QUEUED
        else None
    )
    return Judgement(
        message=message,
        age_seconds=max((now - message.arrival).total_seconds(), 0.0),
        waiting=waiting,
        undeliverable=undeliverable_reason(message, since),
        state=shown_state(message),
    )


def urgency(judgement: Judgement) -> tuple[bool, int, datetime, str]:
    """Sort key, most urgent first: stuck, then priority, then oldest (then key, for ties).

    The SQL listing orders by the same key (see :mod:`mailwatch.store.listing`).
    """
    m = judgement.message
    return (not judgement.stuck, int(m.priority), m.arrival, m.key)


def judge_all(messages: Iterable[StoredMessage], now: datetime, since: datetime) -> list[Judgement]:
    """Judge every message, most urgent first."""
    return sorted((judge(m, now, since) for m in messages), key=urgency)


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """What ``stuck``, ``stuck --fleet`` and ``GET /api/v1/messages`` select.

    The store and the fleet turn it into SQL built from the forms above.
    """

    stuck_only: bool = True
    class_name: str | None = None
    priority: Priority | None = None
    older_than: float | None = None
    source: str | None = None
    limit: int | None = None
    offset: int = 0
