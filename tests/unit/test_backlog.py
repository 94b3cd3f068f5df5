"""Unit tests for mailwatch.core.backlog: per-class counts with zero rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailwatch.core.backlog import ClassCount, count_by_class
from mailwatch.core.classify import MessageClass
from mailwatch.core.durations import Duration
from mailwatch.core.model import Classification, Message, Priority, Verdict
from mailwatch.core.sla import evaluate

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

CLASSES = [
    MessageClass("recall_emergency", Priority.P1, Duration(seconds=600)),
    MessageClass("mappa", Priority.P2, Duration(seconds=7200)),
    MessageClass("court_report", Priority.P3, Duration(seconds=14400)),
    MessageClass("general", Priority.P4, Duration(seconds=14400)),
]
BY_NAME = {c.name: c for c in CLASSES}


def _verdict(name: str, minutes_old: float, queue: str = "deferred", n: int = 0) -> Verdict:
    """A verdict at ``NOW`` for a message of class ``name`` that arrived ``minutes_old`` ago."""
    arrival = NOW - timedelta(minutes=minutes_old)
    message = Message(
        key=f"pf1/Q{name}{n}/{int(arrival.timestamp())}",
        source="pf1",
        queue_id=f"Q{name}{n}",
        queue=queue,
        arrival=arrival,
        size=100,
        sender="om@probation.example",
        recipients=(),
    )
    message_class = BY_NAME.get(name, MessageClass(name, Priority.P1, Duration(seconds=60)))
    classification = Classification(name, message_class.priority, f"{name} rule 1")
    return evaluate(message, classification, message_class, NOW)


def _zero(name: str, priority: Priority) -> ClassCount:
    """An empty class's row."""
    return ClassCount("pf1", name, priority, total=0, stuck=0, oldest_age_seconds=0.0)


class TestCountByClass:
    """Counts per class, in class order, with zero rows for empty classes."""

    def test_empty_scan_gives_a_zero_row_per_class(self) -> None:
        """No messages: one zero row for every class, in the order given."""
        assert count_by_class("pf1", CLASSES, []) == [_zero(c.name, c.priority) for c in CLASSES]

    def test_totals_stuck_and_oldest(self) -> None:
        """Totals, stuck counts and the oldest age are per class."""
        verdicts = [
            _verdict("recall_emergency", 5, n=1),  # within 10m
            _verdict("recall_emergency", 45, n=2),  # stuck
            _verdict("recall_emergency", 2, queue="hold", n=3),  # held: stuck
            _verdict("court_report", 30, n=1),
        ]
        assert count_by_class("pf1", CLASSES, verdicts) == [
            ClassCount("pf1", "recall_emergency", Priority.P1, 3, 2, 45 * 60.0),
            _zero("mappa", Priority.P2),
            ClassCount("pf1", "court_report", Priority.P3, 1, 0, 30 * 60.0),
            _zero("general", Priority.P4),
        ]

    @pytest.mark.parametrize(
        ("ages", "oldest"),
        [([1.0], 60.0), ([3.0, 90.0, 12.5], 5400.0), ([0.0, 0.0], 0.0)],
    )
    def test_oldest_is_the_maximum_age(self, ages: list[float], oldest: float) -> None:
        """The oldest age is the largest age among the class's messages."""
        verdicts = [_verdict("mappa", a, n=i) for i, a in enumerate(ages)]
        row = next(r for r in count_by_class("pf1", CLASSES, verdicts) if r.name == "mappa")
        assert (row.total, row.oldest_age_seconds) == (len(ages), oldest)

    def test_source_is_stamped_on_every_row(self) -> None:
        """Every row carries the source it counts."""
        rows = count_by_class("mx2", CLASSES, [_verdict("general", 1)])
        assert {r.source for r in rows} == {"mx2"}

    def test_unknown_class_is_counted_not_dropped(self) -> None:
        """A verdict for a class not listed still counts, in a row after the listed ones."""
        rows = count_by_class("pf1", CLASSES, [_verdict("retired_class", 5)])
        assert [r.name for r in rows] == [*(c.name for c in CLASSES), "retired_class"]
        assert (rows[-1].total, rows[-1].stuck) == (1, 1)

    def test_sum_of_totals_is_number_of_verdicts(self) -> None:
        """Every verdict is counted exactly once."""
        verdicts = [_verdict(c.name, i * 7, n=i) for i, c in enumerate(CLASSES * 3)]
        rows = count_by_class("pf1", CLASSES, verdicts)
        assert sum(r.total for r in rows) == len(verdicts) == 12
        assert sum(r.stuck for r in rows) == sum(v.stuck for v in verdicts) == 2
