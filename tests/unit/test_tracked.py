"""The kept backlog (core/tracked.py) equals a judgement from scratch; it costs what changed.

After any sequence of scans, the kept verdicts and counts are those of judging the last scan
anew (issue 13).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.alerting.situation import class_views
from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.core.backlog import count_by_class
from mailwatch.core.model import (
    Classification,
    Message,
    QueueObservation,
    Recipient,
    Verdict,
)
from mailwatch.core.sla import verdict_at
from mailwatch.core.snapshot import AGE_BUCKETS, Histogram, OutcomeTotals, build_snapshot
from mailwatch.core.tracked import Backlog
from mailwatch.store import Store

T0 = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
CLASSES = load(None).classifier().all_classes
QUEUES = ("deferred", "active", "hold", "incoming")
REASONS = (None, "connect to relay: Connection refused", "host relay said: 451 try later")


def _first(message: Message) -> tuple[Classification, datetime]:
    """A class and deadline that depend on the key only (as classification does)."""
    c = CLASSES[sum(map(ord, message.key)) % len(CLASSES)]
    priority = c.priority if message.size % 3 else min(c.priority, type(c.priority).P1)
    return Classification(c.name, priority, "r"), message.arrival + timedelta(minutes=message.size)


def _message(i: int, queue: str, reason: str | None) -> Message:
    arrival = T0 - timedelta(minutes=7 * i, microseconds=i)  # not whole seconds
    return Message(f"mx/Q{i}/{i}", "mx", f"Q{i}", queue, arrival, 5 + i % 90, "s@x",
                   (Recipient("a@b.example", reason),))  # fmt: skip


def _scratch(messages: list[Message], now: datetime) -> dict[str, Verdict]:
    return {m.key: verdict_at(m, *_first(m), now) for m in messages}


def _assert_same(backlog: Backlog, messages: list[Message], now: datetime) -> None:
    expected = _scratch(messages, now)
    got = backlog.verdicts
    assert got.keys() == expected.keys()
    for key, v in expected.items():
        assert got[key] == v, key  # class, deadline, stuck, reason and age
    verdicts = list(expected.values())
    assert sorted(backlog.counts(), key=lambda c: c.name) == sorted(
        count_by_class("mx", CLASSES, verdicts), key=lambda c: c.name
    )
    queued = Counter((v.classification.name, v.classification.priority, v.message.queue)
                     for v in verdicts)  # fmt: skip
    assert backlog.queued() == dict(queued)
    stuck = Counter((v.classification.name, v.classification.priority) for v in verdicts
                    if v.stuck)  # fmt: skip
    assert backlog.stuck() == dict(stuck)
    for c in CLASSES:
        ages = [v.age_seconds for v in verdicts if v.classification.name == c.name]
        want = Histogram.of(ages, AGE_BUCKETS)
        cumulative, total = backlog.age_counts(c.name, AGE_BUCKETS)
        assert tuple(cumulative) == want.cumulative
        assert total == pytest.approx(want.total, abs=1e-3)
        for p in {v.classification.priority for v in verdicts}:
            mine = [v.age_seconds for v in verdicts if v.classification.name == c.name
                    and v.classification.priority == p]  # fmt: skip
            assert backlog.oldest_age((c.name, p)) == max(mine, default=0.0)


# One scan: which of 12 messages are queued, each one's queue and reason, and how far the
# clock moved (sometimes backwards, as a clock step can).
SCAN = st.tuples(
    st.dictionaries(st.integers(0, 11), st.tuples(st.sampled_from(QUEUES),
                                                  st.sampled_from(REASONS))),
    st.integers(-30, 600),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(SCAN, min_size=1, max_size=8))
def test_kept_backlog_equals_a_judgement_from_scratch(scans: list) -> None:  # type: ignore[type-arg]
    """Whatever the sequence, the kept verdicts and counts are the last scan's judged anew.

    New, moved, a new reason, left, came back, time passing or stepping back.
    """
    backlog = Backlog("mx", CLASSES)
    objects: dict[int, Message] = {}
    now = T0
    for present, minutes in scans:
        now += timedelta(minutes=minutes, microseconds=minutes)
        messages = []
        for i, (queue, reason) in sorted(present.items()):
            old = objects.get(i)
            if old is None or (old.queue, old.delay_reason) != (queue, reason):
                objects[i] = _message(i, queue, reason)  # a new object only when it changed
            messages.append(objects[i])
        backlog.update(messages, _first, now)
        _assert_same(backlog, messages, now)


def test_an_unchanged_rescan_builds_no_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    """Judging an unchanged queue again reuses every verdict; only flips are rebuilt.

    (Before: a ``Verdict`` per message per scan.)
    """
    built = [0]
    real = Verdict.__init__

    def counting(self: Verdict, *args: object, **kwargs: object) -> None:
        built[0] += 1
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    scanner = Scanner(load(None).classifier(), Store(":memory:"), clock=lambda: T0)
    messages = tuple(_message(i, "deferred", REASONS[1]) for i in range(50))
    observe = [T0, T0 + timedelta(seconds=1)]

    @dataclass
    class Source:
        name: str = "mx"
        at: list[datetime] = field(default_factory=lambda: observe)

        async def probe(self) -> QueueObservation:
            return QueueObservation("mx", self.at.pop(0), messages)

    source = Source()
    asyncio.run(scanner.scan(source))
    monkeypatch.setattr(Verdict, "__init__", counting)
    outcome = asyncio.run(scanner.scan(source))
    assert len(outcome.verdicts) == 50
    assert built[0] == 0


def test_a_deadline_passing_flips_only_that_message() -> None:
    """Between scans one deadline passes: one verdict is rebuilt, stuck, and counted."""
    backlog = Backlog("mx", CLASSES)
    messages = [_message(i, "deferred", None) for i in range(1, 4)]
    backlog.update(messages, _first, T0 - timedelta(hours=2))
    first = dict(backlog.verdicts)
    # _message(i).arrival + size minutes: pick the instant just after the earliest deadline
    deadlines = sorted((v.deadline, k) for k, v in first.items())
    delta = backlog.update(messages, _first, deadlines[0][0] + timedelta(microseconds=1))
    assert [v.message.key for v in delta.flipped] == [deadlines[0][1]]
    assert (delta.added, delta.changed, delta.removed) == ((), (), ())
    assert all(backlog.verdicts[k] is first[k] for _, k in deadlines[1:])


def test_the_store_diffs_only_what_changed(tmp_path: Path) -> None:
    """Given the scanner's delta, the store neither walks the verdicts nor misses a write."""
    store = Store(tmp_path / "mw.db")
    backlog = Backlog("mx", CLASSES)
    messages = [_message(i, "deferred", REASONS[1]) for i in range(10)]
    delta = backlog.update(messages, _first, T0)
    store.record_scan("mx", T0, T0, tuple(backlog.verdicts.values()), [], changes=delta,
                      current=backlog.verdicts)  # fmt: skip
    messages[3] = _message(3, "hold", REASONS[1])
    del messages[5]
    messages.append(_message(11, "deferred", None))
    delta = backlog.update(messages, _first, T0 + timedelta(minutes=1))

    class NotWalked(tuple):  # type: ignore[type-arg]
        def __iter__(self):  # type: ignore[no-untyped-def]
            raise AssertionError("the store walked every verdict")

    writes = store.record_scan("mx", T0, T0, NotWalked(backlog.verdicts.values()), [],
                               changes=delta, current=backlog.verdicts)  # fmt: skip
    assert writes == 3
    queued = {m.key: m.queue for m in store.queued("mx")}
    assert queued == {m.key: m.queue for m in messages}


@settings(max_examples=40, deadline=None)
@given(st.lists(SCAN, min_size=1, max_size=5))
def test_snapshot_and_alert_views_from_kept_counts(scans: list) -> None:  # type: ignore[type-arg]
    """The snapshot and alert views read from a kept backlog equal those that walk verdicts."""
    backlog = Backlog("mx", CLASSES)
    now = T0
    for present, minutes in scans:
        now += timedelta(minutes=minutes)
        messages = [_message(i, q, r) for i, (q, r) in sorted(present.items())]
        backlog.update(messages, _first, now)
    verdicts = {"mx": tuple(backlog.verdicts.values())}
    walked = build_snapshot(now, CLASSES, verdicts, {"mx": QUEUES}, OutcomeTotals(), {}, {})
    kept = build_snapshot(now, CLASSES, verdicts, {"mx": QUEUES}, OutcomeTotals(), {}, {},
                          backlogs={"mx": backlog})  # fmt: skip
    assert kept.messages == walked.messages
    assert kept.stuck == walked.stuck
    assert kept.oldest_age == walked.oldest_age
    assert kept.age.keys() == walked.age.keys()
    for name, histogram in walked.age.items():
        assert kept.age[name].cumulative == histogram.cumulative
        assert kept.age[name].total == pytest.approx(histogram.total, abs=1e-3)
    views = class_views(CLASSES, verdicts, ())
    kept_views = class_views(CLASSES, verdicts, (), None, {"mx": backlog})
    assert len(kept_views) == len(views)
    for view, kept_view in zip(views, kept_views, strict=True):
        assert kept_view.oldest_age_seconds == view.oldest_age_seconds
        assert sorted(kept_view.stuck, key=repr) == sorted(view.stuck, key=repr)
        assert (kept_view.source, kept_view.class_name, kept_view.priority) == (
            view.source, view.class_name, view.priority)  # fmt: skip


def test_a_flip_writes_nothing_and_keeps_one_verdict(tmp_path: Path) -> None:
    """A deadline passing changes no row, and the store's index lets go of the old verdict."""
    store = Store(tmp_path / "mw.db")
    backlog = Backlog("mx", CLASSES)
    messages = [_message(i, "deferred", None) for i in range(1, 4)]
    delta = backlog.update(messages, _first, T0 - timedelta(hours=2))
    store.record_scan("mx", T0, T0, tuple(backlog.verdicts.values()), [], changes=delta,
                      current=backlog.verdicts)  # fmt: skip
    delta = backlog.update(messages, _first, T0 + timedelta(hours=2))
    assert len(delta.flipped) == 3
    writes = store.record_scan("mx", T0, T0, tuple(backlog.verdicts.values()), [],
                               changes=delta, current=backlog.verdicts)  # fmt: skip
    assert writes == 0
    assert all(store._index["mx"][k] is v for k, v in backlog.verdicts.items())
