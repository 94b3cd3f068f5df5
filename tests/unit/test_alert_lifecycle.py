"""The alert lifecycle state machine: every transition, timing, clock jumps, flapping, restart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from mailwatch.alerting.codec import dump_state, load_state
from mailwatch.alerting.lifecycle import (
    AlertKey,
    AlertState,
    AlertStatus,
    Details,
    Finding,
    Intent,
    NotificationKind,
    Silence,
    Timing,
    acknowledge,
    step,
)
from mailwatch.errors import NotAcknowledgeable

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
KEY = AlertKey("p1_stuck", "recall_emergency", "mta1")
MIN = timedelta(minutes=1)
ACTIVE = Finding(KEY, True, Details(count=2, ids=("A1", "B2"), recipient_domains=("x.example",)))
QUIET = Finding(KEY, False)


def at(minutes: float) -> datetime:
    """T0 plus ``minutes``."""
    return T0 + minutes * MIN


def timing(**overrides: object) -> Timing:
    """Duty managers, no pending, repeat every 30m, escalate to ops after 60m."""
    base = Timing(receivers=("duty",), repeat_every=30 * MIN, escalate_after=60 * MIN,
                  escalate_to=("ops",))  # fmt: skip
    return replace(base, **overrides)  # type: ignore[arg-type]


def run(
    events: Sequence[tuple[float, bool]],
    rules: Timing | None = None,
    *,
    state: AlertState | None = None,
    restart: bool = False,
) -> tuple[AlertState, list[tuple[float, NotificationKind, tuple[str, ...]]]]:
    """Feed (minute, active) findings; return the final state and (minute, kind, receivers)."""
    current = state or AlertState(KEY)
    sent: list[tuple[float, NotificationKind, tuple[str, ...]]] = []
    for minute, active in events:
        if restart:
            current = load_state(KEY, dump_state(current))
        current, intents = step(current, ACTIVE if active else QUIET, rules or timing(), at(minute))
        sent += [(minute, i.kind, i.receivers) for i in intents]
    return current, sent


class TestTransitions:
    """inactive → pending → firing → acknowledged → resolved, one edge at a time."""

    def test_inactive_stays_inactive(self) -> None:
        """No condition, no state change, nothing sent."""
        state, sent = run([(0, False), (5, False)])
        assert state.status is AlertStatus.INACTIVE
        assert sent == []

    def test_fires_at_once_without_pending_for(self) -> None:
        """With `for` = 0 the first active finding fires and notifies the receivers once."""
        state, sent = run([(0, True), (1, True), (2, True)])
        assert state.status is AlertStatus.FIRING
        assert sent == [(0, NotificationKind.FIRING, ("duty",))]
        assert state.fired_at == at(0)

    def test_pending_until_for_has_passed(self) -> None:
        """With `for` = 5m: pending at 0 and 4, firing at 5."""
        rules = timing(pending_for=5 * MIN)
        state, sent = run([(0, True), (4, True)], rules)
        assert state.status is AlertStatus.PENDING
        assert sent == []
        state, sent = run([(5, True)], rules, state=state)
        assert state.status is AlertStatus.FIRING
        assert sent == [(5, NotificationKind.FIRING, ("duty",))]

    def test_pending_that_clears_goes_back_to_inactive_silently(self) -> None:
        """A condition that clears before `for` never notifies."""
        state, sent = run([(0, True), (2, False)], timing(pending_for=5 * MIN))
        assert state.status is AlertStatus.INACTIVE
        assert sent == []

    def test_resolves_with_notification(self) -> None:
        """A fired alert that clears sends `resolved` to the same receivers."""
        state, sent = run([(0, True), (3, False)])
        assert state.status is AlertStatus.RESOLVED
        assert sent[-1] == (3, NotificationKind.RESOLVED, ("duty",))
        assert state.resolved_at == at(3)

    def test_repeats_every_interval_until_acknowledged(self) -> None:
        """Reminders at 30 and 60 (escalation at 60 replaces the repeat), none after the ack."""
        state, sent = run([(m, True) for m in range(0, 50, 5)])
        assert [(m, k) for m, k, _ in sent] == [(0, NotificationKind.FIRING),
                                                (30, NotificationKind.REPEAT)]  # fmt: skip
        state = acknowledge(state, "duty manager", "calling PPCS", at(50))
        state, sent = run([(m, True) for m in range(55, 200, 5)], state=state)
        assert sent == []
        assert state.status is AlertStatus.ACKNOWLEDGED
        assert (state.acked_by, state.ack_note) == ("duty manager", "calling PPCS")

    def test_escalates_once_when_not_acknowledged(self) -> None:
        """After 60 unacknowledged minutes ops are told once; repeats then include them."""
        _, sent = run([(m, True) for m in range(0, 125, 5)])
        kinds = [(m, k, r) for m, k, r in sent]
        assert (60, NotificationKind.ESCALATION, ("ops",)) in kinds
        assert [k for _, k, _ in kinds].count(NotificationKind.ESCALATION) == 1
        assert (90, NotificationKind.REPEAT, ("duty", "ops")) in kinds
        assert (120, NotificationKind.REPEAT, ("duty", "ops")) in kinds

    def test_acknowledged_alert_resolves_with_notification(self) -> None:
        """An acknowledged alert still says `resolved` when the mail moves."""
        state, _ = run([(0, True)])
        state = acknowledge(state, "dm", None, at(1))
        state, sent = run([(2, False)], state=state)
        assert state.status is AlertStatus.RESOLVED
        assert sent == [(2, NotificationKind.RESOLVED, ("duty",))]

    def test_resolved_then_active_is_a_new_episode(self) -> None:
        """After a resolve, the next activation fires again, with the ack forgotten."""
        state, _ = run([(0, True)])
        state = acknowledge(state, "dm", None, at(1))
        state, sent = run([(2, False), (10, True)], state=state)
        assert state.status is AlertStatus.FIRING
        assert state.acked_by is None
        assert [k for _, k, _ in sent] == [NotificationKind.RESOLVED, NotificationKind.FIRING]

    @pytest.mark.parametrize("status", [s for s in AlertStatus if s is not AlertStatus.FIRING])
    def test_only_firing_can_be_acknowledged(self, status: AlertStatus) -> None:
        """Acknowledging anything but a firing alert is refused with a clear error."""
        with pytest.raises(NotAcknowledgeable, match=status.value):
            acknowledge(AlertState(KEY, status=status), "dm", None, T0)

    def test_details_follow_the_latest_finding(self) -> None:
        """The state carries the latest count, ids and domains (never subjects in storage)."""
        state, _ = run([(0, True)])
        assert state.details.ids == ("A1", "B2")
        stored = load_state(KEY, dump_state(replace(state, details=replace(
            state.details, subjects=("Emergency recall J Smith",)))))  # fmt: skip
        assert stored.details.subjects == ()
        assert "J Smith" not in dump_state(replace(state, details=replace(
            state.details, subjects=("Emergency recall J Smith",))))  # fmt: skip


class TestSilences:
    """A silenced alert moves through its states but sends nothing."""

    def test_silenced_alert_sends_nothing_then_fires_when_silence_ends(self) -> None:
        """No firing while silenced; when the silence ends and it still fires, it is sent."""
        state = AlertState(KEY)
        state, intents = step(state, ACTIVE, timing(), at(0), silenced=True)
        assert state.status is AlertStatus.FIRING
        assert intents == []
        state, intents = step(state, ACTIVE, timing(), at(40), silenced=True)
        assert intents == []
        state, intents = step(state, ACTIVE, timing(), at(45))
        assert [i.kind for i in intents] == [NotificationKind.FIRING]

    def test_silenced_episode_that_resolves_says_nothing(self) -> None:
        """No resolve is owed for an episode nobody was told about."""
        state, _ = step(AlertState(KEY), ACTIVE, timing(), at(0), silenced=True)
        state, intents = step(state, QUIET, timing(), at(5), silenced=True)
        assert state.status is AlertStatus.RESOLVED
        assert intents == []

    @pytest.mark.parametrize(
        ("class_name", "source", "minute", "expected"),
        [
            ("recall_emergency", None, 30, True),
            ("recall_emergency", "mta1", 30, True),
            ("recall_emergency", "mta2", 30, False),
            ("safeguarding", None, 30, False),
            (None, "mta1", 30, True),
            ("recall_emergency", None, 120, False),  # expired
            ("recall_emergency", None, -1, False),  # not started
        ],
    )
    def test_silence_matching(
        self, class_name: str | None, source: str | None, minute: float, expected: bool
    ) -> None:
        """A silence covers its class and source (either may be any) during its window only."""
        silence = Silence(1, class_name, source, at(0), at(120), "planned outage", "ops")
        assert silence.matches(KEY, at(minute)) is expected


class TestClockAndFlapping:
    """Clock jumps and a condition that flaps every scan do not spam."""

    def test_clock_jump_forward_sends_one_repeat(self) -> None:
        """A jump of a day sends one repeat (and the owed escalation), not forty-eight."""
        _, sent = run([(0, True), (60 * 24, True)], timing(escalate_after=None, escalate_to=()))
        assert [k for _, k, _ in sent] == [NotificationKind.FIRING, NotificationKind.REPEAT]

    def test_clock_jump_backwards_restarts_the_wait(self) -> None:
        """After the clock goes back an hour, the next repeat is a full interval later."""
        rules = timing(escalate_after=None, escalate_to=())
        _, sent = run([(0, True), (20, True), (-40, True), (-15, True), (-10, True)], rules)
        assert [(m, k) for m, k, _ in sent] == [(0, NotificationKind.FIRING),
                                                (-10, NotificationKind.REPEAT)]  # fmt: skip

    def test_pending_measured_safely_across_a_backwards_jump(self) -> None:
        """A pending alert whose clock went back keeps waiting rather than firing."""
        state, sent = run([(0, True), (-30, True)], timing(pending_for=5 * MIN))
        assert state.status is AlertStatus.PENDING
        assert sent == []

    def test_flapping_every_scan_with_for_never_notifies(self) -> None:
        """On/off every 30 s scan with `for` = 2m: nothing is ever sent."""
        events = [(i / 2, i % 2 == 0) for i in range(200)]
        state, sent = run(events, timing(pending_for=2 * MIN))
        assert sent == []
        assert state.status in (AlertStatus.INACTIVE, AlertStatus.PENDING)

    def test_flapping_every_scan_with_keep_firing_for_notifies_once(self) -> None:
        """On/off every scan with keep_firing_for = 5m: one firing, no resolve spam."""
        events = [(i / 2, i % 2 == 0) for i in range(100)]
        _, sent = run(events, timing(keep_firing_for=5 * MIN, repeat_every=None,
                                     escalate_after=None))  # fmt: skip
        assert [k for _, k, _ in sent] == [NotificationKind.FIRING]

    def test_flapping_without_damping_notifies_each_episode(self) -> None:
        """Without `for` or keep_firing_for every flap is an episode (the reason both exist)."""
        events = [(i, i % 2 == 0) for i in range(6)]
        _, sent = run(events, timing(repeat_every=None, escalate_after=None))
        assert [k for _, k, _ in sent] == [NotificationKind.FIRING, NotificationKind.RESOLVED] * 3


SCENARIO = [(0, True), (1, True), (2, True), (31, True), (61, True), (62, False), (70, True),
            (75, True), (76, False), (90, False)]  # fmt: skip


class TestRestart:
    """Restarting (state saved and reloaded) between any two evaluations changes nothing."""

    @pytest.mark.parametrize("pending_for", [0, 1])
    def test_restart_after_every_step_is_invisible(self, pending_for: int) -> None:
        """Same notifications at the same times with a reload before every step."""
        rules = timing(pending_for=pending_for * MIN)
        expected = run(SCENARIO, rules)
        assert run(SCENARIO, rules, restart=True) == expected

    @pytest.mark.parametrize("status", list(AlertStatus))
    def test_restart_in_each_state(self, status: AlertStatus) -> None:
        """Every status survives a reload with all its fields."""
        state = AlertState(
            KEY, status=status, since=at(1), fired_at=at(2), last_active_at=at(3),
            last_notified_at=at(4), notified=True, escalated=True, acked_by="dm", acked_at=at(5),
            ack_note="on it", resolved_at=at(6), details=Details(3, 99.0, ("a",), ("d",), ("r",)),
        )  # fmt: skip
        assert load_state(KEY, dump_state(state)) == state

    def test_no_duplicate_firing_after_restart(self) -> None:
        """A restart while firing sends nothing before `repeat_every` has passed."""
        state, sent = run([(0, True)])
        state = load_state(KEY, dump_state(state))
        state, sent = run([(m, True) for m in (1, 5, 29)], state=state)
        assert sent == []
        _, sent = run([(30, True)], state=state)
        assert [k for _, k, _ in sent] == [NotificationKind.REPEAT]


def test_intents_carry_the_state_they_describe() -> None:
    """Each intent has the alert state at the time (for payloads)."""
    _, intents = step(AlertState(KEY), ACTIVE, timing(), at(0))
    (intent,) = intents
    assert isinstance(intent, Intent)
    assert intent.state.details.count == 2
    assert intent.state.status is AlertStatus.FIRING
