"""SLA evaluation: is a message stuck at ``now``, and why (pure function of its inputs).

A queued message is stuck when it sits in the hold queue (reason ``"held"``) or is frozen
(Exim), or when its age exceeds its class's ``stuck_after``; the reason is then the MTA's delay
reason (or the source's wait reason, e.g. "unread in INBOX") where there is one. The rule
itself is :func:`mailwatch.core.judgement.waiting_reason`, shared with every interface.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from mailwatch.core.classify import MessageClass
from mailwatch.core.judgement import STUCK_AT_ONCE, waiting_reason
from mailwatch.core.model import Classification, JudgedAt, Message, Verdict

__all__ = [
    "STUCK_AT_ONCE", "evaluate", "evaluate_all", "stuck_reason", "urgency_key", "verdict_at",
]  # fmt: skip

stuck_reason = waiting_reason
"""Why a queued message is stuck: the one rule, from :mod:`mailwatch.core.judgement`."""


def evaluate(
    message: Message, classification: Classification, message_class: MessageClass, now: datetime
) -> Verdict:
    """Judge one message against its class's SLA at ``now``."""
    deadline = message_class.stuck_after.deadline_after(message.arrival)
    return verdict_at(message, classification, deadline, now)


def verdict_at(
    message: Message,
    classification: Classification,
    deadline: datetime,
    now: datetime,
    judged: JudgedAt | None = None,
) -> Verdict:
    """Judge one message whose ``deadline`` is known (computed once, when first seen).

    A deadline depends only on the message's arrival and class, so a rescan need not count
    business days again: it compares ``now`` with the deadline kept from the first scan.
    With ``judged`` (whose instant is ``now``: a kept backlog's), the verdict's age follows
    that instant (see :class:`~mailwatch.core.model.Verdict`).
    """
    reason = stuck_reason(message.queue, deadline, message.delay_reason, now)
    if judged is not None:
        return Verdict(message, classification, 0.0, deadline, reason is not None, reason,
                       judged=judged)  # fmt: skip
    age = (now - message.arrival).total_seconds()
    return Verdict(message, classification, max(age, 0.0), deadline, reason is not None, reason)


def evaluate_all(
    classified: Iterable[tuple[Message, Classification]],
    classes: Mapping[str, MessageClass],
    now: datetime,
) -> list[Verdict]:
    """Judge every (message, classification) pair; classes are looked up by name."""
    return [evaluate(m, c, classes[c.name], now) for m, c in classified]


def urgency_key(verdict: Verdict) -> tuple[bool, int, float]:
    """Sort key, most urgent first: stuck before not, then priority, then oldest."""
    return (not verdict.stuck, int(verdict.classification.priority), -verdict.age_seconds)
