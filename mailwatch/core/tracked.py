"""One source's backlog, judged and kept between scans, at a cost that grows with change (pure).

A rescan of an unchanged queue used to judge every message again (a :class:`Verdict` each, the
SLA compared, classes recounted). A :class:`Backlog` keeps, per queued message, its latest
verdict, and per (class, priority) its counts, so a scan costs what changed:

* a message whose :class:`Message` is the very object of the previous scan (sources reuse
  it while nothing about it changed) keeps its verdict: one dictionary look-up;
* a new message is classified and its deadline set once (``first``); a changed one (moved,
  new delay reason) keeps its class and deadline and is judged again;
* "stuck" flips with time only when ``now`` passes a deadline: the deadlines of the
  waiting messages not yet stuck sit in a heap, so the flips of a scan cost
  O(flipped * log n);
* counts per (class, priority, queue), stuck counts per (class, priority) and the sorted
  arrivals per (class, priority) (oldest age, age histogram) are updated by the same delta.

Ages are not stored: a reused verdict derives its age from its arrival and the backlog's
:class:`~mailwatch.core.model.JudgedAt`, moved to ``now`` at each scan. The judgement itself
stays :func:`mailwatch.core.sla.verdict_at` (i.e. :mod:`mailwatch.core.judgement`): a kept
backlog after any sequence of scans equals a from-scratch judgement of the last one (tested).
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mailwatch.core.backlog import ClassCount
from mailwatch.core.classify import MessageClass
from mailwatch.core.model import Classification, JudgedAt, Message, Priority, Verdict
from mailwatch.core.sla import verdict_at

FirstSeen = Callable[[Message], tuple[Classification, datetime]]
"""The class and deadline of a message seen for the first time (classified once)."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
ClassKey = tuple[str, Priority]


def micros(moment: datetime) -> int:
    """``moment`` in whole microseconds since the epoch (exact, unlike a float timestamp)."""
    return (moment - EPOCH) // MICROSECOND


@dataclass(frozen=True, slots=True)
class ScanDelta:
    """What one scan changed in a kept backlog."""

    added: tuple[Verdict, ...] = ()
    changed: tuple[Verdict, ...] = ()
    """New verdicts of messages whose :class:`Message` changed (moved, new delay reason)."""
    flipped: tuple[Verdict, ...] = ()
    """New verdicts of unchanged messages that became stuck: ``now`` passed their deadline."""
    removed: tuple[Verdict, ...] = ()
    """The last verdicts of messages no longer in the source."""
    full: bool = False
    """Judged from scratch (the first scan, or the clock went backwards)."""

    @property
    def size(self) -> int:
        """Messages that changed."""
        return len(self.added) + len(self.changed) + len(self.flipped) + len(self.removed)


class Backlog:
    """The kept judgement of one source's queued messages (see the module docstring)."""

    def __init__(self, source: str, classes: Sequence[MessageClass]) -> None:
        self.source = source
        self.classes = tuple(classes)
        self.verdicts: dict[str, Verdict] = {}
        """The latest verdict of every queued message, by key."""
        self.judged: JudgedAt | None = None
        self._due: list[tuple[datetime, str]] = []
        self._queued: dict[tuple[str, Priority, str], int] = {}
        self._stuck: dict[ClassKey, int] = {}
        self._arrivals: dict[ClassKey, array[int]] = {}
        self._sums: dict[ClassKey, int] = {}
        self._stuck_keys: set[str] = set()
        self._discarded: list[Verdict] = []

    @property
    def now(self) -> datetime | None:
        """The instant of the latest scan (``None`` before the first)."""
        return None if self.judged is None else self.judged.at

    def update(self, messages: Sequence[Message], first: FirstSeen, now: datetime) -> ScanDelta:
        """Judge a scan's ``messages`` at ``now``, reusing what did not change.

        Keys are unique within one scan's messages (a source's key is unique by design).
        """
        if self.judged is None or now < self.judged.at:
            return self._rebuild(messages, first, now)
        self.judged.at = now
        old, judged = self.verdicts, self.judged
        added: list[Verdict] = []
        changed: list[Verdict] = []
        matched = 0
        fresh: dict[str, Verdict] = {}
        for message in messages:
            kept = old.get(message.key)
            if kept is not None:
                matched += 1
                if kept.message is message:
                    continue
                verdict = verdict_at(message, kept.classification, kept.deadline, now, judged)
                self._forget(kept)
                changed.append(verdict)
            else:
                found, deadline = first(message)
                verdict = verdict_at(message, found, deadline, now, judged)
                added.append(verdict)
            fresh[message.key] = verdict
        removed = self._removed(messages) if matched < len(old) else []
        for verdict in removed:
            self._forget(verdict)
            del old[verdict.message.key]
        removed += self._settled(fresh)
        for verdict in fresh.values():
            self._count(verdict)
        old.update(fresh)
        flipped = self._flip(now)
        self._compact()
        return ScanDelta(tuple(added), tuple(changed), tuple(flipped), tuple(removed))

    def _removed(self, messages: Sequence[Message]) -> list[Verdict]:
        present = {m.key for m in messages}
        return [v for key, v in self.verdicts.items() if key not in present]

    def _rebuild(self, messages: Sequence[Message], first: FirstSeen, now: datetime) -> ScanDelta:
        """Judge from scratch (first scan; a clock that went back may un-stick messages)."""
        old = self.verdicts
        self.judged = judged = JudgedAt(now)
        self.verdicts, self._queued, self._stuck, self._sums = {}, {}, {}, {}
        self._stuck_keys = stuck_keys = set()
        arrivals: dict[ClassKey, list[int]] = {}
        due: list[tuple[datetime, str]] = []
        queued, stuck, sums = self._queued, self._stuck, self._sums
        for message in messages:
            kept = old.get(message.key)
            found, deadline = (
                (kept.classification, kept.deadline) if kept is not None else first(message)
            )
            verdict = verdict_at(message, found, deadline, now, judged)
            self.verdicts[message.key] = verdict
            where, arrival = (found.name, found.priority), micros(message.arrival)
            place = (found.name, found.priority, message.queue)
            queued[place] = queued.get(place, 0) + 1
            stuck[where] = stuck.get(where, 0) + verdict.stuck
            sums[where] = sums.get(where, 0) + arrival
            arrivals.setdefault(where, []).append(arrival)
            if verdict.stuck:
                stuck_keys.add(message.key)
            else:
                due.append((deadline, message.key))
        self._arrivals = {where: array("q", sorted(a)) for where, a in arrivals.items()}
        heapq.heapify(due)
        self._due = due
        removed = (*(v for key, v in old.items() if key not in self.verdicts),
                   *self._settled(self.verdicts))  # fmt: skip
        return ScanDelta(tuple(self.verdicts.values()), removed=removed, full=True)

    def discard(self, keys: Iterable[str]) -> tuple[Verdict, ...]:
        """Stop counting ``keys`` as queued: they left the queue for good (the mail log said).

        Between scans, so every count agrees with the store at once. The next :meth:`update`
        reports them as removed, unless its messages list them again (the log ran ahead of a
        listing taken before they left): they are new again then.
        """
        gone = []
        for key in keys:
            verdict = self.verdicts.pop(key, None)
            if verdict is not None:
                self._forget(verdict)
                gone.append(verdict)
        self._discarded.extend(gone)
        return tuple(gone)

    def _settled(self, listed: Mapping[str, Verdict]) -> list[Verdict]:
        """The verdicts discarded since the last scan that it did not list again."""
        discarded, self._discarded = self._discarded, []
        return [v for v in discarded if v.message.key not in listed]

    def _count(self, verdict: Verdict) -> None:
        c = verdict.classification
        where = (c.name, c.priority)
        queued = (c.name, c.priority, verdict.message.queue)
        self._queued[queued] = self._queued.get(queued, 0) + 1
        self._stuck[where] = self._stuck.get(where, 0) + verdict.stuck
        arrival = micros(verdict.message.arrival)
        insort(self._arrivals.setdefault(where, array("q")), arrival)
        self._sums[where] = self._sums.get(where, 0) + arrival
        if verdict.stuck:
            self._stuck_keys.add(verdict.message.key)
        else:
            heapq.heappush(self._due, (verdict.deadline, verdict.message.key))

    def _forget(self, verdict: Verdict) -> None:
        c = verdict.classification
        where = (c.name, c.priority)
        self._queued[(c.name, c.priority, verdict.message.queue)] -= 1
        self._stuck[where] -= verdict.stuck
        arrivals, arrival = self._arrivals[where], micros(verdict.message.arrival)
        del arrivals[bisect_left(arrivals, arrival)]
        self._sums[where] -= arrival
        self._stuck_keys.discard(verdict.message.key)

    def _flip(self, now: datetime) -> list[Verdict]:
        """Messages that became stuck since the last scan because ``now`` passed a deadline."""
        flipped = []
        due, verdicts, judged = self._due, self.verdicts, self.judged
        while due and due[0][0] < now:
            deadline, key = heapq.heappop(due)
            kept = verdicts.get(key)
            if kept is None or kept.stuck or kept.deadline != deadline:
                continue  # left, or judged again since: a stale entry
            verdict = verdict_at(kept.message, kept.classification, deadline, now, judged)
            if verdict.stuck:
                c = verdict.classification
                self._stuck[(c.name, c.priority)] += 1
                self._stuck_keys.add(key)
                verdicts[key] = verdict
                flipped.append(verdict)
        return flipped

    def _compact(self) -> None:
        """Drop stale heap entries once they outnumber the live ones."""
        if len(self._due) > 2 * len(self.verdicts) + 64:
            self._due = [(v.deadline, k) for k, v in self.verdicts.items() if not v.stuck]
            heapq.heapify(self._due)

    # ---- what the counts, the metrics and the alerts read ------------------------------

    def queued(self) -> dict[tuple[str, Priority, str], int]:
        """Queued messages by (class, message priority, queue), zeros dropped."""
        return {key: n for key, n in self._queued.items() if n}

    def stuck(self) -> dict[ClassKey, int]:
        """Stuck messages by (class, message priority), zeros dropped."""
        return {key: n for key, n in self._stuck.items() if n}

    def stuck_verdicts(self) -> list[Verdict]:
        """The verdicts of the stuck messages (what the alert rules list), in a stable order.

        In the order they were first seen when most are stuck (one pass, no sort: an
        incident), else by key (a sort of the few).
        """
        verdicts = self.verdicts
        if 4 * len(self._stuck_keys) > len(verdicts):
            return [v for v in verdicts.values() if v.stuck]
        return [verdicts[key] for key in sorted(self._stuck_keys)]

    def oldest_age(self, where: ClassKey) -> float:
        """Age of the oldest message of (class, priority) at the latest scan (0 if none)."""
        arrivals = self._arrivals.get(where)
        if not arrivals or self.judged is None:
            return 0.0
        return max((micros(self.judged.at) - arrivals[0]) / 1_000_000, 0.0)

    def age_counts(self, name: str, bounds: Sequence[float]) -> tuple[list[int], float]:
        """The age histogram of class ``name`` at the latest scan: cumulative counts, sum.

        Counts of ages up to each bound, then of all (see :mod:`mailwatch.core.snapshot`).
        """
        cumulative = [0] * (len(bounds) + 1)
        total = 0
        now = micros(self.judged.at) if self.judged is not None else 0
        for (cls, _), arrivals in self._arrivals.items():
            if cls != name or not arrivals:
                continue
            for i, bound in enumerate(bounds):  # age <= bound  <=>  arrival >= now - bound
                cumulative[i] += len(arrivals) - bisect_left(arrivals, now - round(bound * 1e6))
            cumulative[-1] += len(arrivals)
            total += len(arrivals) * now - self._sums[(cls, _)]
            later = bisect_left(arrivals, now)  # an arrival after now is age 0, not negative
            total += sum(a - now for a in arrivals[later:])
        return cumulative, total / 1_000_000

    def counts(self) -> list[ClassCount]:
        """Per-class totals, stuck counts and oldest ages.

        As :func:`mailwatch.core.backlog.count_by_class` gives them for the same verdicts.
        """
        rows: dict[str, list[float]] = {c.name: [0, 0, 0.0] for c in self.classes}
        for (name, _, _), n in self._queued.items():
            if n:
                rows.setdefault(name, [0, 0, 0.0])[0] += n
        for (name, priority), n in self._stuck.items():
            if name in rows:
                row = rows[name]
                row[1] += n
                row[2] = max(row[2], self.oldest_age((name, priority)))
        priorities = {c.name: c.priority for c in self.classes}
        return [
            ClassCount(self.source, name, priorities.get(name, Priority.P4), int(row[0]),
                       int(row[1]), float(row[2]))
            for name, row in rows.items()
        ]  # fmt: skip
