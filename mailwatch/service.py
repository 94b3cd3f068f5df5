"""The long-running service: one worker per source, metrics rebuilt after every scan.

Each source is probed at its own interval (with ±10 % jitter so sources configured alike do
not probe in lockstep); a failing source backs off exponentially (up to 5 minutes) and is
marked down, and never stops the others. After each scan the service rebuilds the metrics
snapshot and swaps it in with one assignment: scrapes read it without locks or I/O.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from mailwatch.config import EximSourceConfig, PostfixSourceConfig, Settings
from mailwatch.errors import StoreError
from mailwatch.model import Verdict
from mailwatch.scanner import Scanner, ScanOutcome
from mailwatch.snapshot import POSTFIX_QUEUES, MetricsSnapshot, SourceHealth, build_snapshot
from mailwatch.sources import Source
from mailwatch.store import Store

log = structlog.get_logger(__name__)

MAX_BACKOFF_SECONDS = 300.0
HISTORY_WINDOW = timedelta(hours=1)
BACKLOG_QUEUES: dict[type, tuple[str, ...]] = {
    PostfixSourceConfig: POSTFIX_QUEUES,
    EximSourceConfig: ("queue", "frozen"),
}
"""Sources that hold a backlog, and the queues pre-initialised to zero in their metrics."""
ERROR_KIND = {
    "SourceTimeout": "timeout",
    "SourceUnavailable": "unavailable",
    "SourceCommandFailed": "command_failed",
}


def error_kind(outcome: ScanOutcome) -> str:
    """The ``kind`` label of a failed probe."""
    return ERROR_KIND.get(outcome.error_kind or "", "error")


def next_delay(interval: float, failures: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before the next probe: jittered interval, doubled per failure."""
    base = min(interval * (2**failures), MAX_BACKOFF_SECONDS) if failures else interval
    return base * (0.9 + 0.2 * rng())


@dataclass
class _SourceState:
    interval: float
    queues: tuple[str, ...]
    backlog: bool
    verdicts: Sequence[Verdict] = ()
    health: SourceHealth = field(
        default_factory=lambda: SourceHealth(up=False, last_duration_seconds=0.0, last_success=None)
    )
    failures: int = 0
    probed: bool = False


class Service:
    """Runs every configured source and keeps the metrics snapshot current."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        sources: Sequence[Source],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.sources = list(sources)
        self.clock = clock
        self.scanner = Scanner(settings.classifier(), store, clock=clock)
        self.snapshot: MetricsSnapshot | None = None
        self._state: dict[str, _SourceState] = {}
        for source in self.sources:
            config = settings.sources[source.name]
            self._state[source.name] = _SourceState(
                interval=config.interval.seconds,
                queues=BACKLOG_QUEUES.get(type(config), ()),
                backlog=type(config) in BACKLOG_QUEUES,
            )
        self.rebuild_snapshot()

    def probed_all(self) -> bool:
        """Whether every source has been probed at least once (readiness)."""
        return all(state.probed for state in self._state.values())

    def health(self) -> Mapping[str, SourceHealth]:
        """Each source's probe health."""
        return {name: state.health for name, state in self._state.items()}

    def rebuild_snapshot(self) -> None:
        """Recompute the metrics snapshot and swap it in."""
        now = self.clock()
        self.snapshot = build_snapshot(
            now=now,
            classes=self.scanner.classifier.all_classes,
            verdicts={n: s.verdicts for n, s in self._state.items() if s.backlog},
            queues={n: s.queues for n, s in self._state.items()},
            outcomes=self.store.outcome_totals(),
            histories=self.store.class_history(now - HISTORY_WINDOW),
            health=self.health(),
        )

    def _record(self, source: Source, outcome: ScanOutcome) -> None:
        state = self._state[source.name]
        state.probed = True
        old = state.health
        if outcome.ok:
            state.failures = 0
            state.verdicts = outcome.verdicts
            state.health = SourceHealth(
                up=True,
                last_duration_seconds=outcome.duration_seconds,
                last_success=outcome.finished_at,
                errors=old.errors,
            )
        else:
            state.failures += 1
            kind = error_kind(outcome)
            state.health = SourceHealth(
                up=False,
                last_duration_seconds=outcome.duration_seconds,
                last_success=old.last_success,
                errors={**old.errors, kind: old.errors.get(kind, 0) + 1},
                first_failure=old.first_failure or outcome.started_at,
            )

    async def probe_once(self, source: Source) -> ScanOutcome | None:
        """Scan ``source`` once; update its health and the snapshot (``None``: store failed)."""
        try:
            outcome = await self.scanner.scan(source)
        except StoreError as exc:
            log.exception("store_write_failed", source=source.name, error=str(exc))
            return None
        self._record(source, outcome)
        t0 = time.perf_counter()
        self.rebuild_snapshot()
        log.debug("snapshot_rebuilt", seconds=round(time.perf_counter() - t0, 4))
        return outcome

    async def _worker(self, source: Source, stop: asyncio.Event) -> None:
        state = self._state[source.name]
        while not stop.is_set():
            await self.probe_once(source)
            delay = next_delay(state.interval, state.failures)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                continue

    async def run(self, stop: asyncio.Event) -> None:
        """Probe every source until ``stop`` is set, then return once in-flight probes end."""
        async with asyncio.TaskGroup() as group:
            for source in self.sources:
                group.create_task(self._worker(source, stop), name=f"source:{source.name}")
