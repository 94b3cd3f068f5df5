"""Canary results in the store (transitions, totals, the lost list) and in the metrics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mailwatch.core.model import CanaryResult
from mailwatch.core.snapshot import CANARY_BUCKETS, OutcomeTotals, build_snapshot
from mailwatch.store import Store
from mailwatch.store.canaries import LOST_REASON
from mailwatch.web.metrics import MailwatchCollector

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PATH = "mta1_to_duty"


def _sent(n: int, *, path: str = PATH, queue_id: str | None = None) -> CanaryResult:
    """Canary ``n`` of ``path``, sent at T0 + n minutes."""
    return CanaryResult(path, f"{path}.{n:016x}", T0 + timedelta(minutes=n), queue_id)


def _found(sent: CanaryResult, seconds: float, *, lost: bool = False) -> CanaryResult:
    """``sent`` found after a round trip of ``seconds``."""
    found_at = sent.sent_at + timedelta(seconds=seconds + 1)
    return CanaryResult(sent.path, sent.token, sent.sent_at, sent.queue_id, found_at, seconds,
                        lost)  # fmt: skip


def _lost(sent: CanaryResult) -> CanaryResult:
    return CanaryResult(sent.path, sent.token, sent.sent_at, sent.queue_id, lost=True)


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store on disk."""
    with Store(tmp_path / "mailwatch.db") as store:
        yield store


class TestTransitions:
    """Sent → found or lost, lost → arrived late; each event counts once."""

    def test_sent_then_found_is_one_round_trip(self, store: Store) -> None:
        """A round trip lands in its histogram bucket, with its sum; nothing lost."""
        sent = _sent(0, queue_id="ABC123")
        store.record_canaries(PATH, [sent], T0)
        assert store.canaries_in_flight(PATH, T0) == [sent]
        store.record_canaries(PATH, [_found(sent, 3.5)], T0 + timedelta(minutes=5))

        totals = store.canary_totals()
        hist = totals.roundtrip[PATH]
        assert (hist.count, hist.total, totals.lost[PATH]) == (1, 3.5, 0)
        assert hist.cumulative[CANARY_BUCKETS.index(5)] == 1
        assert hist.cumulative[CANARY_BUCKETS.index(2)] == 0
        assert store.canaries_in_flight(PATH, T0) == []
        assert store.canaries_lost(T0) == {PATH: ()}

    def test_events_counted_once(self, store: Store) -> None:
        """An event reported twice (re-sent after a failed write) changes nothing the 2nd time."""
        sent = _sent(0)
        for _ in range(2):
            store.record_canaries(PATH, [sent, _found(sent, 2.0)], T0)
        other = _sent(1)
        for _ in range(2):
            store.record_canaries(PATH, [_lost(other)], T0)
        totals = store.canary_totals()
        assert (totals.roundtrip[PATH].count, totals.lost[PATH]) == (1, 1)

    def test_found_without_a_sent_event_still_counts(self, store: Store) -> None:
        """A found event for a canary the store never saw sent is inserted and counted."""
        store.record_canaries(PATH, [_found(_sent(0), 1.0)], T0)
        assert store.canary_totals().roundtrip[PATH].count == 1

    def test_late_arrival_keeps_the_loss_and_records_the_trip(self, store: Store) -> None:
        """Found after being lost: still one loss, no round trip, its lateness kept."""
        sent = _sent(0)
        store.record_canaries(PATH, [sent], T0)
        store.record_canaries(PATH, [_lost(sent)], T0 + timedelta(minutes=10))
        assert store.canaries_in_flight(PATH, T0 - timedelta(days=1)) == [_lost(sent)]
        store.record_canaries(PATH, [_found(sent, 1800.0, lost=True)], T0 + timedelta(hours=1))

        totals = store.canary_totals()
        assert (totals.roundtrip[PATH].count, totals.lost[PATH]) == (0, 1)
        stored = store.canary(PATH, sent.token)
        assert stored is not None
        assert stored.lost
        assert stored.roundtrip_seconds == 1800.0
        assert store.canaries_in_flight(PATH, T0 - timedelta(days=1)) == []

    def test_old_losses_are_not_resumed(self, store: Store) -> None:
        """Lost canaries older than ``lost_since`` are no longer handed to a new source."""
        store.record_canaries(PATH, [_lost(_sent(0))], T0)
        assert store.canaries_in_flight(PATH, lost_since=T0 + timedelta(minutes=1)) == []

    def test_state_survives_reopening(self, tmp_path: Path) -> None:
        """Canaries in flight and totals are still there after a restart."""
        sent = _sent(0, queue_id="Q1")
        with Store(tmp_path / "db") as store:
            store.record_canaries(PATH, [sent, _found(_sent(1), 4.0)], T0)
        with Store(tmp_path / "db") as store:
            assert store.canaries_in_flight(PATH, T0) == [sent]
            assert store.canary_totals().roundtrip[PATH].count == 1


class TestLostList:
    """``canaries_lost``: what the canary_lost alert sees per path."""

    def test_losses_listed_until_a_later_success(self, store: Store) -> None:
        """Lost canaries stay listed until one sent after them makes its round trip."""
        first, second, third = _sent(0, queue_id="Q0"), _sent(5), _sent(10)
        store.record_canaries(PATH, [first, second, third], T0)
        store.record_canaries(PATH, [_lost(first), _lost(second)], T0 + timedelta(minutes=11))

        now = T0 + timedelta(minutes=20)
        lost = store.canaries_lost(now)[PATH]
        assert [(i.id, i.age_seconds, i.reason) for i in lost] == [
            ("Q0", 1200.0, LOST_REASON),
            (second.token, 900.0, LOST_REASON),  # no queue id: the token identifies it
        ]
        store.record_canaries(PATH, [_found(third, 2.0)], now)
        assert store.canaries_lost(now) == {PATH: ()}

    def test_an_older_success_does_not_clear_a_newer_loss(self, store: Store) -> None:
        """A canary sent before the loss coming back in time clears nothing."""
        early, late = _sent(0), _sent(5)
        store.record_canaries(PATH, [early, late, _lost(late)], T0 + timedelta(minutes=16))
        store.record_canaries(PATH, [_found(early, 3.0)], T0 + timedelta(minutes=17))
        assert [i.id for i in store.canaries_lost(T0 + timedelta(minutes=20))[PATH]] == [late.token]

    def test_paths_are_independent(self, store: Store) -> None:
        """A loss on one path does not show on another; every known path is listed."""
        store.record_canaries(PATH, [_lost(_sent(0))], T0)
        other = _sent(0, path="mta2_to_duty")
        store.record_canaries("mta2_to_duty", [other, _found(other, 1.0)], T0)
        lost = store.canaries_lost(T0)
        assert (len(lost[PATH]), lost["mta2_to_duty"]) == (1, ())


class TestMetrics:
    """The canary families: zeros for every configured path, then the stored totals."""

    def _exposition(self, store: Store, paths: list[str]) -> tuple[CollectorRegistry, str]:
        snapshot = build_snapshot(T0, (), {}, {}, OutcomeTotals(), {}, {},
                                  canaries=store.canary_totals(), canary_paths=paths)  # fmt: skip
        registry = CollectorRegistry()
        registry.register(MailwatchCollector(lambda: snapshot))
        return registry, generate_latest(registry).decode()

    def test_configured_path_renders_zeros(self, store: Store) -> None:
        """A configured path with no canary yet: lost 0, an empty round-trip histogram."""
        registry, text = self._exposition(store, [PATH])
        value = registry.get_sample_value
        assert value("mailwatch_canary_lost_total", {"path": PATH}) == 0
        assert value("mailwatch_canary_roundtrip_seconds_count", {"path": PATH}) == 0
        assert value("mailwatch_canary_roundtrip_seconds_sum", {"path": PATH}) == 0
        for le in (*(repr(float(b)) for b in CANARY_BUCKETS), "+Inf"):
            assert value("mailwatch_canary_roundtrip_seconds_bucket", {"path": PATH, "le": le}) == 0
        assert "# TYPE mailwatch_canary_lost_total counter" in text
        assert "# TYPE mailwatch_canary_roundtrip_seconds histogram" in text

    def test_stored_totals_are_rendered(self, store: Store) -> None:
        """Round trips fill the cumulative buckets; losses the counter; tokens never appear."""
        first, second = _sent(0), _sent(1)
        store.record_canaries(PATH, [_found(first, 0.4), _found(second, 45.0), _lost(_sent(2))],
                              T0)  # fmt: skip
        registry, text = self._exposition(store, [PATH, "mta2_to_duty"])
        value = registry.get_sample_value
        assert value("mailwatch_canary_lost_total", {"path": PATH}) == 1
        assert value("mailwatch_canary_lost_total", {"path": "mta2_to_duty"}) == 0
        bucket = "mailwatch_canary_roundtrip_seconds_bucket"
        assert value(bucket, {"path": PATH, "le": "1.0"}) == 1
        assert value(bucket, {"path": PATH, "le": "60.0"}) == 2
        assert value("mailwatch_canary_roundtrip_seconds_sum", {"path": PATH}) == 45.4
        assert first.token not in text
