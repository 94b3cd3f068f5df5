"""One probe cycle: source → classify → evaluate SLA → store.

The scanner owns what must outlive a single scan: the store, and per source a cache of
classifications by message key (headers do not change while a message is queued, so neither
does its class). A failing probe is recorded as a failed scan and returned, never raised: one
broken source must not stop the others. A scan (or failed probe) the store cannot write is
logged and still returned, so metrics and alerts keep following the source while the store
is failing; outcomes and canaries that cannot be stored raise :class:`StoreError`, and the
source is told they were stored (:class:`~mailwatch.sources.KeepsProgress`) only after they
were, so the next scan carries them again instead of losing them.

Automatic garbage collection is paused while a scan runs: see :mod:`mailwatch.gcpause`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from mailwatch.app import classify_split
from mailwatch.core.backlog import ClassCount
from mailwatch.core.changes import (
    ChangeSet,
    ChangeSink,
    Heartbeat,
    Removal,
    Upsert,
    diff,
    outcomes_of,
    upsert_of,
)
from mailwatch.core.classify import Classifier, MessageClass
from mailwatch.core.model import (
    CanaryObservation,
    Classification,
    Headers,
    LogObservation,
    Message,
    Observation,
    Verdict,
    relayhost_of,
)
from mailwatch.core.sla import verdict_at
from mailwatch.core.tracked import Backlog, ScanDelta
from mailwatch.errors import HeadersReleased, SourceError, StoreError, UnknownMessage
from mailwatch.gcpause import collection_paused
from mailwatch.sources import KeepsProgress, Source
from mailwatch.store import Store

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    """What one scan of one source produced."""

    source: str
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    verdicts: tuple[Verdict, ...] = ()
    counts: tuple[ClassCount, ...] = ()
    error: str | None = None
    error_kind: str | None = None
    observation: Observation | None = None
    changes: ScanDelta | None = None
    """What this scan changed in the source's kept backlog (``None`` for a failed probe)."""

    @property
    def ok(self) -> bool:
        """Whether the probe succeeded."""
        return self.error is None


@contextlib.contextmanager
def _store_failure_logged(source: str) -> Iterator[None]:
    """Log a failed scan write and carry on: the store's health reports it (see Store)."""
    try:
        yield
    except StoreError as exc:
        log.error("store_write_failed", source=source, kind=exc.kind, error=str(exc))


def _malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim`` (glibc; ``None`` elsewhere)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _malloc_trim()


def _release_free_memory() -> None:
    """Hand the C heap's free pages back to the system after a scan (glibc only).

    A scan of a large queue allocates and frees hundreds of MiB of short-lived objects (the
    listing's lines and parsed records); glibc keeps the freed pages mapped, so the resident
    size of ``mailwatch run`` stayed near the scan's peak between scans. ``malloc_trim(0)``
    returns them (tens of ms at 100,000 messages, once per scan).
    """
    if _TRIM is not None:
        _TRIM(0)


Known = tuple[Classification, datetime]
"""What a scan keeps per queued message: its class and its deadline (both fixed while it is
queued: headers and arrival do not change), so a rescan neither classifies nor counts business
days again."""


def judge(
    observation: Observation,
    classifier: Classifier,
    cache: dict[str, Known],
    now: datetime,
) -> list[Verdict]:
    """Classify and set the deadline of new messages (reusing ``cache``); judge all at ``now``.

    ``cache`` is pruned to the observed keys, so it never outgrows the queue. This is the
    from-scratch judgement; the scanner keeps a :class:`~mailwatch.core.tracked.Backlog` per
    source instead, which gives the same verdicts at a cost that grows with change.
    """
    classes = {c.name: c for c in classifier.all_classes}
    verdicts: list[Verdict] = []
    present: dict[str, Known] = {}
    classify, cached, append = classifier.classify, cache.get, verdicts.append
    for message in observation.messages:
        known = cached(message.key)
        if known is None:
            found = classify(message)
            known = (found, classes[found.name].stuck_after.deadline_after(message.arrival))
        present[message.key] = known
        append(verdict_at(message, known[0], known[1], now))
    cache.clear()
    cache.update(present)
    return verdicts


def _many_new(
    classifier: Classifier, backlog: Backlog, messages: Sequence[Message]
) -> dict[str, Classification]:
    """The classes of the messages new to ``backlog``, when there are many (else nothing).

    Many: :data:`~mailwatch.app.classify_split.SPLIT_FROM` or more, classified on two cores
    (:mod:`mailwatch.app.classify_split`); the scanner's ``_first_seen`` then looks them up.
    """
    split_from = classify_split.SPLIT_FROM
    if len(messages) - len(backlog.verdicts) < split_from:
        return {}
    kept = backlog.verdicts
    fresh = [message for message in messages if message.key not in kept]
    if len(fresh) < split_from:
        return {}
    return classify_split.classify_many(classifier.classify, fresh)


@dataclass
class Scanner:
    """Runs scans of sources and records them in the store."""

    classifier: Classifier
    store: Store
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sink: ChangeSink | None = None
    """Told what each scan changed (the fleet pusher); ``None``: nobody is."""
    _backlogs: dict[str, Backlog] = field(default_factory=dict)
    _latest: dict[str, Sequence[Verdict]] = field(default_factory=dict)
    _scans: int = 0
    _pushed: dict[str, dict[str, Upsert]] = field(default_factory=dict)
    _unreleased: dict[str, list[Headers]] = field(default_factory=dict)
    """Headers of new messages whose store write failed: released after the next one."""
    _classified: dict[str, Classification] = field(default_factory=dict)
    """While a scan judges many new messages: their classes, found on two cores."""

    async def scan(self, source: Source) -> ScanOutcome:
        """Probe ``source`` once, judge what it saw and record it.

        Log lines emitted meanwhile carry ``source`` and a per-scan ``scan`` id (contextvars).
        """
        self._scans += 1
        with (
            structlog.contextvars.bound_contextvars(source=source.name, scan=self._scans),
            collection_paused(),
        ):
            outcome = await self._scan(source)
        _release_free_memory()
        return outcome

    async def _scan(self, source: Source) -> ScanOutcome:
        started_at, t0 = self.clock(), time.perf_counter()
        try:
            observation = await source.probe()
        except SourceError as exc:
            finished_at = self.clock()
            with _store_failure_logged(source.name):
                self.store.record_failure(source.name, started_at, finished_at, exc.detail)
            log.warning("probe_failed", source=source.name, error=exc.detail,
                        kind=type(exc).__name__)  # fmt: skip
            self._tell(ChangeSet(source.name, Heartbeat(
                source.name, finished_at.timestamp(), ok=False, error=exc.detail,
                error_kind=type(exc).__name__,
            )))  # fmt: skip
            return ScanOutcome(
                source=source.name,
                started_at=started_at,
                finished_at=finished_at,
                duration_seconds=time.perf_counter() - t0,
                error=exc.detail,
                error_kind=type(exc).__name__,
            )
        left: tuple[str, ...] = ()
        match observation:
            case LogObservation():
                left = self.store.record_outcomes(
                    source.name, observation.outcomes_for, observation.outcomes, observation.cursor
                )
            case CanaryObservation(canaries=canaries) if canaries:
                self.store.record_canaries(source.name, canaries, observation.observed_at)
        if isinstance(source, KeepsProgress):  # only now: a failed write above keeps it all
            source.committed(observation)
        if left and isinstance(observation, LogObservation) and observation.outcomes_for:
            self._settle(observation.outcomes_for, left)
        backlog = self.backlog(source.name)
        self._classified = _many_new(self.classifier, backlog, observation.messages)
        try:
            delta = backlog.update(observation.messages, self._first_seen, observation.observed_at)
        finally:
            self._classified = {}
        verdicts = self._latest[source.name] = tuple(backlog.verdicts.values())
        counts = (
            []  # a log holds no backlog of its own
            if isinstance(observation, LogObservation)
            else backlog.counts()
        )
        finished_at = self.clock()
        written = False
        with _store_failure_logged(source.name):  # what was seen still counts (metrics, alerts)
            self.store.record_scan(
                source.name,
                started_at,
                finished_at,
                verdicts,
                counts,
                malformed=observation.malformed,
                headers_read=observation.headers_read,
                warnings=observation.warnings,
                relayhost=relayhost_of(observation),
                changes=delta,
                current=backlog.verdicts,
            )
            written = True
        self._release_headers(source.name, delta, written)
        for warning in observation.warnings:
            log.warning("source_warning", source=source.name, warning=warning)
        if self.sink is not None:
            self._tell(self._changes(source.name, observation, verdicts, delta, finished_at))
        return ScanOutcome(
            source=source.name,
            started_at=started_at,
            finished_at=finished_at,
            duration_seconds=time.perf_counter() - t0,
            verdicts=verdicts,
            counts=tuple(counts),
            observation=observation,
            changes=delta,
        )

    def _settle(self, source: str, keys: Sequence[str]) -> None:
        """Messages of ``source`` left the queue for good (the mail log): stop counting them.

        The store marked them left; the kept backlog (what the metrics and the alerts count)
        now agrees at once instead of at the next scan of ``source`` (one truth).
        """
        kept = self._backlogs.get(source)
        if kept is not None and kept.discard(keys):
            self._latest[source] = tuple(kept.verdicts.values())

    def latest(self, source: str) -> Sequence[Verdict] | None:
        """``source``'s verdicts as the scanner holds them now (``None`` before its first scan)."""
        return self._latest.get(source)

    def backlog(self, source: str) -> Backlog:
        """The kept judgement of ``source``'s queued messages (empty before its first scan)."""
        kept = self._backlogs.get(source)
        if kept is None:
            kept = self._backlogs[source] = Backlog(source, self.classifier.all_classes)
        return kept

    def kept(self, verdicts: Mapping[str, Sequence[Verdict]]) -> dict[str, Backlog]:
        """The kept backlogs of the sources whose ``verdicts`` are their latest scan's."""
        return {name: self._backlogs[name] for name, latest in verdicts.items()
                if self._latest.get(name) is latest}  # fmt: skip

    def _release_headers(self, source: str, delta: ScanDelta, written: bool) -> None:
        """Drop from memory the headers of new messages once the store holds them.

        Nothing reads them from memory after their first classification and write (``show``
        and the API read the store): :meth:`mailwatch.core.headerset.Headers.release`.
        """
        pending = self._unreleased.setdefault(source, [])
        pending.extend(v.message.headers for v in delta.added)
        if written:
            for headers in pending:
                headers.release()
            pending.clear()

    def _first_seen(self, message: Message) -> tuple[Classification, datetime]:
        """A new message's class and deadline (both fixed while it is queued)."""
        found = self._classified.get(message.key)  # classified on two cores: _many_new
        if found is None:
            try:
                found = self.classifier.classify(message)
            except HeadersReleased:  # seen before, released, then new again (the store has them)
                found = self.classifier.classify(self._stored_headers(message))
        return found, self._classes[found.name].stuck_after.deadline_after(message.arrival)

    def _stored_headers(self, message: Message) -> Message:
        """``message`` with its headers read back from the store (none if it has not them)."""
        try:
            return message._replace(headers=self.store.get(message.key).headers)
        except (StoreError, UnknownMessage) as exc:
            log.warning("stored_headers_unreadable", source=message.source, error=str(exc))
            return message._replace(headers=Headers())

    @functools.cached_property
    def _classes(self) -> dict[str, MessageClass]:
        return {c.name: c for c in self.classifier.all_classes}

    def _changes(
        self,
        name: str,
        observation: Observation,
        verdicts: Sequence[Verdict],
        delta: ScanDelta,
        at: datetime,
    ) -> ChangeSet:
        """What this scan changed since the previous one (full on the first since start).

        After the first, only the messages the backlog says were added or changed are
        compared with what was pushed (a flip to stuck changes no fleet row).
        """
        heartbeat = Heartbeat(name, at.timestamp(), ok=True, messages=len(verdicts),
                              relayhost=relayhost_of(observation))  # fmt: skip
        if isinstance(observation, LogObservation):
            outcomes = outcomes_of(observation.outcomes_for or name, observation.outcomes)
            return ChangeSet(name, heartbeat, outcomes=tuple(outcomes))
        subjects = self.sink is not None and self.sink.include_subjects
        previous = self._pushed.get(name)
        if previous is None or delta.full:
            current = [upsert_of(v, at, include_subjects=subjects) for v in verdicts]
            upserts, removals, self._pushed[name] = diff(previous or {}, current, at)
            return ChangeSet(name, heartbeat, tuple(upserts), tuple(removals),
                             full=previous is None)  # fmt: skip
        touched = [upsert_of(v, at, include_subjects=subjects)
                   for v in (*delta.added, *delta.changed)]  # fmt: skip
        upserts = [u for u in touched if previous.get(u.key) != u]
        removals = [Removal(u.source, u.queue_id, u.arrival, at.timestamp())
                    for v in delta.removed if (u := previous.pop(v.message.key, None))]  # fmt: skip
        previous.update((u.key, u) for u in upserts)
        return ChangeSet(name, heartbeat, tuple(upserts), tuple(removals))

    def _tell(self, changes: ChangeSet) -> None:
        if self.sink is not None:
            self.sink.changed(changes)

    def resync(self, source: str) -> None:
        """Make the next change set of ``source`` full (the fleet lost track of it)."""
        self._pushed.pop(source, None)

    async def scan_all(self, sources: Sequence[Source]) -> list[ScanOutcome]:
        """Scan every source concurrently; failures are outcomes, not exceptions."""
        return list(await asyncio.gather(*(self.scan(s) for s in sources)))
