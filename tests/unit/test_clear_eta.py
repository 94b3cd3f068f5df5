"""The clear ETA (issue 18): least-squares drain rate, whole backlogs, pooled sources.

Properties of :func:`mailwatch.core.backlog.drain_estimate` (a constant drain is read within a
few %, a flapping queue never gets a short ETA, clock jumps are ignored, empty is 0), the
pooled and whole-backlog estimates, and one truth: the status page's ETA is the metric's.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from mailwatch.config.settings import load
from mailwatch.core.backlog import (
    DrainEstimate,
    drain_estimate,
    drain_estimates,
    pooled_estimate,
    whole_backlog,
)
from mailwatch.core.snapshot import OutcomeTotals, build_snapshot
from mailwatch.web.metrics import MailwatchCollector
from mailwatch.web.pagemodel import drain_text

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
CLASSES = load(None).classifier().all_classes


def _series(counts: list[int], step: float, start: datetime = NOW) -> list[tuple[datetime, int]]:
    return [(start + timedelta(seconds=i * step), n) for i, n in enumerate(counts)]


class TestProperties:
    """Hypothesis properties of the estimator."""

    @given(
        rate=st.floats(0.5, 200.0),
        step=st.floats(1.0, 120.0),
        scans=st.integers(4, 60),
        halflives=st.floats(1.0, 20.0),
        left=st.integers(50, 100_000),
    )
    def test_constant_drain_is_read_within_a_few_percent(
        self, rate: float, step: float, scans: int, halflives: float, left: int
    ) -> None:
        """A queue draining ``rate`` a second, scanned every ``step``: ETA within 3%."""
        if rate * step < 5:  # under 5 messages a scan, whole messages are the noise
            rate = 5 / step
        counts = [round(left + rate * step * (scans - 1 - i)) for i in range(scans)]
        estimate = drain_estimate(_series(counts, step), halflife_seconds=halflives * step)
        assert estimate.rate == pytest.approx(rate, rel=0.03)
        assert estimate.eta_seconds == pytest.approx(counts[-1] / rate, rel=0.03)
        assert estimate.at is not None
        assert estimate.clear_at is not None
        assert estimate.clear_at == estimate.at + timedelta(seconds=estimate.eta_seconds)

    @given(
        base=st.integers(10, 10_000),
        swing=st.integers(1, 1000),
        step=st.floats(1.0, 120.0),
        scans=st.integers(2, 60),
        first_up=st.booleans(),
    )
    def test_flapping_queue_gets_no_short_eta(
        self, base: int, swing: int, step: float, scans: int, first_up: bool
    ) -> None:
        """Up and down every scan around a level of 10 swings or more: no short ETA.

        Infinite, or longer than the history it was fitted over: it is no drain.
        """
        base = max(base, 10 * swing)
        sign = 1 if first_up else -1
        counts = [base + sign * swing * (-1) ** i for i in range(scans)]
        estimate = drain_estimate(_series(counts, step), halflife_seconds=1e9)
        assert math.isinf(estimate.eta_seconds) or estimate.eta_seconds >= (scans - 1) * step

    @given(
        counts=st.lists(st.integers(0, 5000), min_size=2, max_size=40),
        where=st.integers(0, 38),
        back=st.floats(0.0, 1e6),
        n=st.integers(0, 5000),
        halflife=st.floats(5.0, 3600.0),
    )
    def test_clock_jumps_backwards_are_ignored(
        self, counts: list[int], where: int, back: float, n: int, halflife: float
    ) -> None:
        """A scan stamped at or before the one it follows changes nothing."""
        history = _series(counts, 30.0)
        index = min(where, len(history) - 2)  # never the last scan: that one is the backlog
        jumped = (history[index][0] - timedelta(seconds=back), n)
        with_jump = [*history[: index + 1], jumped, *history[index + 1 :]]
        assert drain_estimate(with_jump, halflife) == drain_estimate(history, halflife)

    @given(counts=st.lists(st.integers(0, 5000), max_size=40), halflife=st.floats(5.0, 3600.0))
    def test_empty_backlog_is_clear_now(self, counts: list[int], halflife: float) -> None:
        """Nothing waiting at the latest scan: ETA 0 and the clear time is that scan."""
        history = _series([*counts, 0], 30.0)
        estimate = drain_estimate(history, halflife)
        assert estimate.eta_seconds == 0.0
        assert estimate.clear_at == history[-1][0]
        assert drain_estimate([], halflife).eta_seconds == 0.0


class TestExamples:
    """What the estimator changes on the replay's scale (5 s scans, 10 s half-life)."""

    def test_flapping_with_a_short_halflife_is_not_a_drain(self) -> None:
        """50/55 every 5 s scan, ending on a fall: not a drain.

        The EWMA of per-scan slopes (shipped before) read a drain clearing in about two
        minutes; a line over 30 s is flat.
        """
        history = _series([50, 55] * 6 + [50], 5.0)
        estimate = drain_estimate(history, halflife_seconds=10.0)
        assert math.isinf(estimate.eta_seconds) or estimate.eta_seconds > 600

    def test_settled_after_three_scans_over_a_halflife(self) -> None:
        """The status page shows the ETA once three scans span a half-life."""
        assert not drain_estimate(_series([30, 25], 5.0), 10.0).settled
        assert not drain_estimate(_series([30, 25, 20], 4.0), 10.0).settled
        assert drain_estimate(_series([30, 25, 20], 5.0), 10.0).settled


class TestWholeAndPooled:
    """The headline: a source's whole backlog, and sources pooled."""

    def test_whole_backlog_sums_the_classes_per_scan(self) -> None:
        """Two classes at the same scans add up; the source's ETA is the whole queue's."""
        general = _series([1000 - 100 * i for i in range(7)], 5.0)  # 20 a second
        rare = _series([3, 3, 3, 3, 3, 3, 3], 5.0)  # one class stuck in place
        totals = whole_backlog({("hub", "general"): general, ("hub", "mappa"): rare})
        assert [n for _, n in totals["hub"]] == [1003 - 100 * i for i in range(7)]
        per_pair, per_source, _ = drain_estimates(
            {("hub", "general"): general, ("hub", "mappa"): rare}, ["hub"],
            ["general", "mappa"], 10.0,
        )  # fmt: skip
        assert math.isinf(per_pair[("hub", "mappa")].eta_seconds)  # the old "slowest class"
        assert per_source["hub"].eta_seconds == pytest.approx(403 / 20)

    def test_mail_moving_from_hub_to_relay_is_neither_drained_nor_added(self) -> None:
        """Hub to relay: the relay alone never clears, the two pooled clear with the hub.

        The hub drains 10 a second into the relay, which passes it on at once.
        """
        hub = drain_estimate(_series([600 - 50 * i for i in range(7)], 5.0), 10.0)
        relay = drain_estimate(_series([20, 30, 20, 30, 20, 30, 20], 5.0), 10.0)
        pooled = pooled_estimate([hub, relay])
        assert hub.at is not None
        assert pooled.backlog == 320
        assert pooled.eta_seconds == pytest.approx(320 / 10, rel=0.05)

    def test_pooled_clear_time_does_not_depend_on_when_each_was_scanned(self) -> None:
        """Two queues scanned 3 s apart: pooled, they clear where their sum reaches zero.

        Each drains on a line; the pooled clear time is not counted from the older scan.
        """
        a = drain_estimate(_series([500 - 25 * i for i in range(7)], 5.0), 10.0)  # 5/s
        later = NOW + timedelta(seconds=3)
        b = drain_estimate(_series([400 - 25 * i for i in range(7)], 5.0, later), 10.0)
        pooled = pooled_estimate([a, b])
        # a(t) = 350 - 5 (t - 30), b(t) = 250 - 5 (t - 33): their sum 915 - 10 t is 0 at 91.5
        assert pooled.clear_at is not None
        assert (pooled.clear_at - NOW).total_seconds() == pytest.approx(91.5)
        assert pooled_estimate([]).eta_seconds == 0.0
        assert pooled_estimate([DrainEstimate(0.0, 0.0)]).eta_seconds == 0.0


def test_one_truth_page_summary_and_metrics() -> None:
    """The status page's ETA, the summary's and the metrics come from one estimate."""
    general = _series([1000 - 100 * i for i in range(7)], 5.0)
    relay = _series([10, 12, 10, 12, 10, 12, 10], 5.0, NOW + timedelta(seconds=2))
    snap = build_snapshot(
        NOW + timedelta(seconds=32), CLASSES, {"hub": [], "relay": []}, {}, OutcomeTotals(),
        {("hub", "general"): general, ("relay", "general"): relay}, {}, drain_halflife=10.0,
    )  # fmt: skip
    registry = CollectorRegistry()
    registry.register(MailwatchCollector(lambda: snap))
    labels = {"source": "hub"}
    clear = registry.get_sample_value("mailwatch_source_backlog_clear_time_seconds", labels)
    assert snap.source_drain["hub"].clear_at is not None
    assert clear == snap.source_drain["hub"].clear_at.timestamp()
    exported = []
    for source in ("hub", "relay"):
        rate = registry.get_sample_value(
            "mailwatch_backlog_drain_rate", {"source": source, "class": "general"}
        )
        mine = snap.drain[(source, "general")]
        exported.append(DrainEstimate(rate or 0.0, 0.0, mine.backlog, mine.at))
    pooled = pooled_estimate(exported)
    page_now = NOW + timedelta(seconds=40)
    _, _, seconds = drain_text(snap.class_drain["general"], page_now, UTC)
    assert pooled.clear_at is not None
    assert seconds is not None
    assert seconds == pytest.approx((pooled.clear_at - page_now).total_seconds())
    assert snap.class_drain["general"].eta_seconds == pytest.approx(pooled.eta_seconds)
