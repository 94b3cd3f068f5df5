"""The fleet pusher: each scan's changes queued locally, then pushed off the scan path.

The scanner hands every change set to :meth:`FleetPusher.changed` (a :class:`ChangeSink`),
which only writes it to the local store's queue (:mod:`mailwatch.store.fleet_queue`) and wakes
the push loop: a scan never waits for PostgreSQL. The loop (:meth:`FleetPusher.run`, a task of
the service) replays the queue oldest first in batches, each push bounded by ``timeout``, and
deletes what the database acknowledged. When the database is unreachable the queue grows and
the loop retries with backoff (monitoring and alerting go on locally); when it returns, the
loop catches up. Past ``queue_limit`` rows the queue collapses to resync markers: the scanner
is told to make each marked source's next change set full, and the messages that bounced or
expired meanwhile are re-sent from the local store, so nothing is lost, only re-sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from mailwatch.config.fleet import FleetConfig
from mailwatch.core.changes import (
    ChangeSet,
    Heartbeat,
    Outcome,
    Removal,
    decode,
    encode,
    upsert_of_stored,
)
from mailwatch.core.model import Status
from mailwatch.errors import FleetError, FleetUnavailable, StoreError
from mailwatch.fleet.writer import open_pool, push
from mailwatch.store import Store

log = structlog.get_logger(__name__)

BACKOFF_MAX = 60.0
"""Seconds between attempts at most while the database is unreachable."""
RESYNC_WINDOW = timedelta(days=1)
"""Undeliverable messages re-sent on a resync: those of this long before the collapse."""


class FleetPusher:
    """Queues change sets in the local store and pushes them to the fleet database."""

    def __init__(
        self,
        config: FleetConfig,
        store: Store,
        resync: Callable[[str], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.store = store
        self.include_subjects = config.include_subjects
        self._resync = resync
        self._clock = clock
        self._wake = asyncio.Event()
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection] | None = None
        self.failures = 0
        self.pushed = 0
        """Change sets pushed since start."""

    def changed(self, changes: ChangeSet) -> None:
        """Queue ``changes`` (a :class:`~mailwatch.core.changes.ChangeSink`); never raises."""
        try:
            kept = self.store.fleet_enqueue(
                changes.source, encode(changes), changes.size, self._clock(),
                self.config.queue_limit,
            )  # fmt: skip
            if not kept:
                sources = self.store.fleet_resyncs()
                log.warning("fleet_queue_collapsed", limit=self.config.queue_limit,
                            sources=len(sources))  # fmt: skip
                for source in sources:
                    self._resync(source)  # its next scan pushes its whole queue
        except StoreError as exc:
            log.error("fleet_queue_failed", source=changes.source, error=str(exc))
        self._wake.set()

    async def drain(self) -> int:
        """Push everything queued (resyncs first); returns the change sets pushed.

        Raises :class:`~mailwatch.errors.FleetError` (``FleetUnavailable`` when unreachable):
        what was not acknowledged stays queued.
        """
        if self._pool is None:
            self._pool = open_pool(self.config)
            await self._pool.open(wait=False)
        pushed = 0
        for source in self.store.fleet_resyncs():
            await self._push([self._resync_outcomes(source)])
            self.store.fleet_resynced(source)
        while batch := self.store.fleet_pending(limit=50):
            await self._push([decode(payload) for _, payload in batch])
            self.store.fleet_done(batch[-1][0])
            pushed += len(batch)
        self.pushed += pushed
        return pushed

    async def _push(self, changes: list[ChangeSet]) -> None:
        assert self._pool is not None  # noqa: S101 - drain opened it
        try:
            async with asyncio.timeout(self.config.timeout.seconds * max(1, len(changes))):
                await push(self._pool, self.config.agent, changes, self.config.batch_size)
        except TimeoutError as exc:
            raise FleetUnavailable(f"push timed out after {self.config.timeout}") from exc

    def _resync_outcomes(self, source: str) -> ChangeSet:
        """The messages of ``source`` that bounced or expired lately (from the local store)."""
        now = self._clock()
        rows = [
            m for m in self.store.undeliverable_since(now - RESYNC_WINDOW) if m.source == source
        ]
        subjects = self.include_subjects
        return ChangeSet(
            source,
            Heartbeat(source, 0.0, ok=True),  # never newer than a real scan's
            upserts=tuple(upsert_of_stored(m, include_subjects=subjects) for m in rows),
            removals=tuple(
                Removal(source, m.queue_id, m.arrival.timestamp(), (m.left_at or now).timestamp())
                for m in rows if m.status is Status.LEFT
            ),
            outcomes=tuple(
                Outcome(source, m.queue_id, m.outcome.value, m.outcome.severity,
                        (m.outcome_at or now).timestamp(), m.dsn, m.outcome_text,
                        m.delivery_delay)
                for m in rows if m.outcome is not None
            ),
        )  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        """Push whenever woken (or every few seconds) until ``stop``; then one last attempt."""
        while not stop.is_set():
            self._wake.clear()
            delay = await self._attempt()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    waiter = asyncio.ensure_future(self._wake.wait())
                    stopper = asyncio.ensure_future(stop.wait())
                    try:
                        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                        stopper.cancel()
        await self._attempt()
        await self.close()

    async def _attempt(self) -> float:
        """One drain; the delay before the next attempt (backoff while failing)."""
        try:
            await self.drain()
        except (FleetError, StoreError) as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 20 == 0:
                count, rows = self.store.fleet_backlog()
                log.warning("fleet_push_failed", error=str(exc), queued=count, rows=rows,
                            failures=self.failures)  # fmt: skip
            return min(BACKOFF_MAX, 2.0 ** min(self.failures, 6))
        if self.failures:
            log.info("fleet_push_resumed", after_failures=self.failures)
        self.failures = 0
        return 5.0

    async def close(self) -> None:
        """Close the pool (queued change sets stay in the local store)."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
