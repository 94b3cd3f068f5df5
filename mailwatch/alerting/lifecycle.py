"""The alert lifecycle: a pure state machine driven by findings and an explicit ``now``.

::

    inactive ──active──▶ pending ──held for `for`──▶ firing ──ack──▶ acknowledged
        ▲                   │                          │  ▲              │
        └─────inactive──────┘                          │  └──(new episode after resolve)
                                                       ▼                 ▼
                                                   resolved ◀──inactive (after keep_firing_for)

Silences are an overlay: a silenced alert moves through the same states but produces no
notifications; when the silence ends while it still fires, the firing notification goes out
then. Each :func:`step` returns the new state and the notification *intents* it implies:
``firing`` (once per episode), ``repeat`` (every ``repeat_every`` while firing and not
acknowledged), ``escalation`` (once, ``escalate_after`` into an unacknowledged episode) and
``resolved`` (only for an episode whose firing notification was sent). A clock that jumps
backwards never causes a burst: elapsed times are measured from the later of the stored
instant and ``now``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from mailwatch.core.model import Priority
from mailwatch.errors import NotAcknowledgeable


class AlertStatus(enum.StrEnum):
    """Where an alert is in its lifecycle."""

    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class NotificationKind(enum.StrEnum):
    """Why a notification is sent."""

    FIRING = "firing"
    REPEAT = "repeat"
    ESCALATION = "escalation"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertKey:
    """An alert's identity: one rule, for one class (may be empty) in one source (may be empty)."""

    rule: str
    class_name: str
    source: str

    def __str__(self) -> str:
        return "/".join((self.rule, self.class_name or "-", self.source or "-"))


@dataclass(frozen=True, slots=True)
class Details:
    """What an alert is about at its latest evaluation (no subjects: see ``subjects``)."""

    count: int = 0
    oldest_age_seconds: float = 0.0
    ids: tuple[str, ...] = ()
    """Queue ids / mailbox UIDs concerned (at most a few dozen)."""
    recipient_domains: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    """Only ever sent to receivers cleared for them (``include_subjects = true``)."""
    priority: Priority | None = None
    """The most urgent *message* priority concerned (a rule may raise a message above its
    class's priority: a MAPPA level-3 message is P1 in a P2 class); ``None``: not per class."""
    categories: tuple[str, ...] = ()
    """Reason categories concerned (:mod:`mailwatch.core.reasons`, sorted; a fixed set)."""
    classes: tuple[str, ...] = ()
    """Classes concerned, for alerts that are not per class (``destination_deferring``)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One evaluation of one rule for one key: is its condition met, and on what."""

    key: AlertKey
    active: bool
    details: Details = field(default_factory=Details)


@dataclass(frozen=True, slots=True)
class Timing:
    """A rule's timing and routing, as the lifecycle needs it."""

    receivers: tuple[str, ...]
    pending_for: timedelta = timedelta(0)
    keep_firing_for: timedelta = timedelta(0)
    repeat_every: timedelta | None = None
    escalate_after: timedelta | None = None
    escalate_to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertState:
    """Everything remembered about one alert between evaluations (persisted in the store)."""

    key: AlertKey
    status: AlertStatus = AlertStatus.INACTIVE
    since: datetime | None = None
    """When the current pending/firing episode began to be active."""
    fired_at: datetime | None = None
    last_active_at: datetime | None = None
    last_notified_at: datetime | None = None
    notified: bool = False
    """Whether this episode's firing notification was sent (so a resolve is owed)."""
    escalated: bool = False
    acked_by: str | None = None
    acked_at: datetime | None = None
    ack_note: str | None = None
    resolved_at: datetime | None = None
    details: Details = field(default_factory=Details)

    @property
    def open(self) -> bool:
        """Firing or acknowledged: an episode in progress."""
        return self.status in (AlertStatus.FIRING, AlertStatus.ACKNOWLEDGED)


@dataclass(frozen=True, slots=True)
class Intent:
    """A notification to send: what kind, to which receivers, about which state."""

    kind: NotificationKind
    receivers: tuple[str, ...]
    state: AlertState


def _elapsed(since: datetime | None, now: datetime) -> timedelta:
    """Time since ``since``; never negative (a clock jump backwards counts as no time)."""
    if since is None:
        return timedelta(0)
    return max(now - since, timedelta(0))


def _recipients(state: AlertState, timing: Timing) -> tuple[str, ...]:
    extra = timing.escalate_to if state.escalated else ()
    return tuple(dict.fromkeys((*timing.receivers, *extra)))


def step(
    state: AlertState, finding: Finding, timing: Timing, now: datetime, *, silenced: bool = False
) -> tuple[AlertState, list[Intent]]:
    """Advance ``state`` by one evaluation at ``now``; return it and the notifications owed."""
    if finding.active:
        return _active(replace(state, details=finding.details, last_active_at=now), timing, now,
                       silenced)  # fmt: skip
    return _inactive(state, timing, now)


def _active(
    state: AlertState, timing: Timing, now: datetime, silenced: bool
) -> tuple[AlertState, list[Intent]]:
    if state.status in (AlertStatus.INACTIVE, AlertStatus.RESOLVED):
        state = replace(
            state, status=AlertStatus.PENDING, since=now, fired_at=None, notified=False,
            escalated=False, acked_by=None, acked_at=None, ack_note=None, resolved_at=None,
            last_notified_at=None,
        )  # fmt: skip
    if state.status is AlertStatus.PENDING:
        if _elapsed(state.since, now) < timing.pending_for:
            return state, []
        state = replace(state, status=AlertStatus.FIRING, fired_at=now)
    if silenced:
        return state, []
    if not state.notified:
        state = replace(state, notified=True, last_notified_at=now)
        return state, [Intent(NotificationKind.FIRING, _recipients(state, timing), state)]
    if state.status is AlertStatus.ACKNOWLEDGED:
        return state, []
    intents: list[Intent] = []
    if state.last_notified_at is not None and now < state.last_notified_at:
        state = replace(state, last_notified_at=now)  # the clock went back: restart the wait
    if (
        timing.escalate_after is not None
        and timing.escalate_to
        and not state.escalated
        and _elapsed(state.fired_at, now) >= timing.escalate_after
    ):
        state = replace(state, escalated=True, last_notified_at=now)
        intents.append(Intent(NotificationKind.ESCALATION, timing.escalate_to, state))
    elif (
        timing.repeat_every is not None
        and _elapsed(state.last_notified_at, now) >= timing.repeat_every
    ):
        state = replace(state, last_notified_at=now)
        intents.append(Intent(NotificationKind.REPEAT, _recipients(state, timing), state))
    return state, intents


def _inactive(state: AlertState, timing: Timing, now: datetime) -> tuple[AlertState, list[Intent]]:
    if state.status is AlertStatus.PENDING:
        return replace(state, status=AlertStatus.INACTIVE, since=None), []
    if not state.open:
        return state, []
    if _elapsed(state.last_active_at, now) < timing.keep_firing_for:
        return state, []
    resolved = replace(state, status=AlertStatus.RESOLVED, resolved_at=now)
    if not state.notified:
        return resolved, []
    return resolved, [Intent(NotificationKind.RESOLVED, _recipients(state, timing), resolved)]


def acknowledge(state: AlertState, by: str, note: str | None, now: datetime) -> AlertState:
    """Acknowledge a firing alert: no more repeats or escalation this episode."""
    if state.status is not AlertStatus.FIRING:
        raise NotAcknowledgeable(f"alert {state.key} is {state.status.value}, not firing")
    return replace(state, status=AlertStatus.ACKNOWLEDGED, acked_by=by, acked_at=now,
                   ack_note=note)  # fmt: skip


SILENCE_MAX_SECONDS = 90 * 86400.0
"""The longest silence (CLI and API): a longer one is more likely a mistake than a plan."""


@dataclass(frozen=True, slots=True)
class Silence:
    """Suppress notifications for a class (and optionally one source) until ``ends``."""

    id: int
    class_name: str | None
    source: str | None
    starts: datetime
    ends: datetime
    reason: str
    by: str

    def matches(self, key: AlertKey, now: datetime) -> bool:
        """Whether this silence covers ``key`` at ``now``."""
        return (
            self.starts <= now < self.ends
            and (self.class_name is None or self.class_name == key.class_name)
            and (self.source is None or self.source == key.source)
        )
