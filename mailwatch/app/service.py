"""The long-running service: one worker per source, metrics rebuilt after every scan.

Each source is probed at its own interval (with ±10 % jitter so sources configured alike do
not probe in lockstep); a failing source backs off exponentially (up to 5 minutes) and is
marked down, and never stops the others. After each scan the service rebuilds the metrics
snapshot and swaps it in with one assignment: scrapes read it without locks or I/O.

Each worker is supervised (:mod:`mailwatch.app.supervisor`): an unexpected exception from a
probe, or from storing and judging its result, is logged with its traceback and makes that
source down (error kind ``internal``); a probe still running at its deadline
(:func:`probe_deadline`, a last guard above the source's own timeout) is cancelled and counts
as a ``timeout``. Store failures (disk full, read-only, corrupt) never stop the service: they
show in the store's health (``/metrics``, ``/readyz``, the log) and writes resume when the
cause goes. Every :data:`EVALUATE_EVERY` seconds the alert rules are evaluated and the snapshot
rebuilt even when no scan finished, so a source whose probes hang is still seen going blind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from mailwatch.alerting.rules import Situation
from mailwatch.alerting.situation import class_views
from mailwatch.app import supervisor as sup
from mailwatch.app.alert_engine import AlertEngine
from mailwatch.app.deferrals import DeferralWatch, alerted_destinations
from mailwatch.app.delivery import DeliveryLoop
from mailwatch.app.fleet_push import FleetPusher
from mailwatch.app.scanner import Scanner, ScanOutcome
from mailwatch.app.supervisor import next_delay, probe_deadline, run_worker
from mailwatch.config.settings import Settings
from mailwatch.core.destinations import DestinationWatch
from mailwatch.core.judgement import Judgement, judge
from mailwatch.core.model import LogObservation, Observation, Verdict, reconciled_of, relayhost_of
from mailwatch.core.snapshot import (
    MetricsSnapshot,
    Readiness,
    SourceHealth,
    build_snapshot,
    warning_kinds,
)
from mailwatch.errors import StoreError
from mailwatch.notify.alertmanager import AlertmanagerResender
from mailwatch.notify.factory import build_receivers
from mailwatch.sources import Source
from mailwatch.sources.registry import kind_of
from mailwatch.store import Store

log = structlog.get_logger(__name__)

HISTORY_WINDOW = timedelta(hours=1)
PRUNE_EVERY = timedelta(hours=1)
"""How often the service deletes history past the store's retention (and once at start)."""
EVALUATE_EVERY = 15.0
"""Seconds between alert evaluations and snapshot rebuilds that no scan triggered."""


@dataclass
class _SourceState:
    interval: float
    queues: tuple[str, ...]
    backlog: bool
    timeout: float = 60.0
    """The source's own probe timeout (seconds)."""
    verdicts: Sequence[Verdict] = ()
    health: SourceHealth = field(
        default_factory=lambda: SourceHealth(up=False, last_duration_seconds=0.0, last_success=None)
    )
    failures: int = 0
    probed: bool = False
    relayhost: str | None = None
    """The smarthost the source's last good probe saw (:attr:`Observation.relayhost`)."""


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
        self.fleet: FleetPusher | None = None
        if settings.fleet is not None:  # every scan's changes are queued, pushed off the scan path
            self.fleet = FleetPusher(settings.fleet, store, self.scanner.resync, clock)
            self.scanner.sink = self.fleet
        self.snapshot: MetricsSnapshot | None = None
        classes = self.scanner.classifier.all_classes
        rules = [rule.to_rule() for rule in settings.alert_rules()]
        priorities = {c.name: c.priority for c in classes}
        self.alerts = AlertEngine(
            rules,
            {name: r.include_subjects for name, r in settings.receivers.items()},
            priorities,
            store,
        )
        receivers = build_receivers(settings.receivers, clock)
        self.delivery = DeliveryLoop(store, receivers, clock)
        self.resender = AlertmanagerResender(
            store, receivers, rules, priorities, clock, ready=self.probed_all
        )
        self._state: dict[str, _SourceState] = {}
        for source in self.sources:
            config = settings.sources[source.name]
            labels = (*kind_of(config).error_labels(), *sup.SUPERVISOR_ERROR_KINDS)
            self._state[source.name] = _SourceState(
                interval=config.interval.seconds, queues=config.queues(source.name),
                backlog=config.holds_backlog, timeout=config.probe_timeout(),
                health=SourceHealth(up=False, last_duration_seconds=0.0, last_success=None,
                                    errors=dict.fromkeys(sorted(labels), 0)),
            )  # fmt: skip
        self.deferrals = DeferralWatch(settings.metrics)
        self._pruned_at: datetime | None = None
        self.started_at = clock()
        self.rebuild_snapshot()

    def probed_all(self) -> bool:
        """Whether every source has been probed at least once."""
        return all(state.probed for state in self._state.values())

    def ready(self) -> bool:
        """Readiness (``/readyz``): every source probed once, and the store's writes work."""
        return self.readiness().ready

    def readiness(self) -> Readiness:
        """Readiness and, when not ready, why (sources not yet probed, the store failing)."""
        not_probed = tuple(name for name, state in self._state.items() if not state.probed)
        return Readiness(not_probed=not_probed, store=self.store.health())

    def health(self) -> Mapping[str, SourceHealth]:
        """Each source's probe health."""
        return {name: state.health for name, state in self._state.items()}

    def rebuild_snapshot(self) -> None:
        """Recompute the metrics snapshot and swap it in.

        When the store cannot be read, the previous snapshot is kept with the health figures
        (probes and store) brought up to date.
        """
        try:
            self._build_snapshot()
        except StoreError as exc:
            log.error("snapshot_store_read_failed", error=str(exc))
            if self.snapshot is not None:
                self.snapshot = dataclasses.replace(
                    self.snapshot, built_at=self.clock(), health=dict(self.health()),
                    store=self.store.health(),
                )  # fmt: skip

    def _build_snapshot(self) -> None:
        now = self.clock()
        self.snapshot = build_snapshot(
            now=now,
            classes=self.scanner.classifier.all_classes,
            verdicts={n: s.verdicts for n, s in self._state.items() if s.backlog},
            queues={n: s.queues for n, s in self._state.items()},
            outcomes=self.store.outcome_totals(),
            histories=self.store.class_history(now - HISTORY_WINDOW),
            health=self.health(),
            alerts_firing=self._alerts_firing(),
            canaries=self.store.canary_totals(),
            canary_paths=[n for n, c in self.settings.sources.items() if c.reports_canaries],
            undeliverable=self.undeliverable(now),
            store=self.store.health(),
            relayhosts=self.relayhosts(),
            partners=self.settings.metrics.partner_domains,
            destinations=self._destinations(),
            backlogs=self.scanner.kept(self._backlog()),  # counted without walking verdicts
            drain_halflife=self.settings.metrics.drain_halflife.seconds,
        )

    def _backlog(self) -> dict[str, Sequence[Verdict]]:
        return {name: state.verdicts for name, state in self._state.items() if state.backlog}

    def _destinations(self) -> tuple[DestinationWatch, ...]:
        """The deferral watch, destinations with an alert under way kept in it."""
        keep = alerted_destinations(self.alerts.states.values(), self.alerts.rules)
        return self.deferrals.current(keep)

    def relayhosts(self) -> dict[str, str | None]:
        """Each source's smarthost as its last good probe saw it."""
        return {name: state.relayhost for name, state in self._state.items()}

    def _alerts_firing(self) -> dict[tuple[str, str], int]:
        severities = {rule.name: rule.severity for rule in self.alerts.rules.values()}
        counts = {(c.name, s): 0 for c in self.scanner.classifier.all_classes
                  for s in sorted(set(severities.values()))}  # fmt: skip
        for state in self.alerts.states.values():
            if state.open and state.key.rule in severities:
                key = (state.key.class_name, severities[state.key.rule])
                counts[key] = counts.get(key, 0) + 1
        return counts

    def _record(self, source: Source, outcome: ScanOutcome) -> None:
        state = self._state[source.name]
        state.probed = True
        old = state.health
        if outcome.ok:
            state.failures = 0
            state.verdicts = outcome.verdicts
            self._settled(outcome.observation)
            state.relayhost = relayhost_of(outcome.observation)
            if state.backlog:
                self.deferrals.record(outcome.finished_at, self._backlog(), self.relayhosts())
            state.health = SourceHealth(
                up=True,
                last_duration_seconds=outcome.duration_seconds,
                last_success=outcome.finished_at,
                errors=old.errors,
                warnings=warning_kinds(outcome.observation.warnings if outcome.observation else ()),
                reconciled=old.reconciled + reconciled_of(outcome.observation),
            )
        else:
            state.failures += 1
            kind = sup.error_kind(outcome, self.settings)
            state.health = dataclasses.replace(  # last success, warnings, reconciled: as before
                old, up=False, last_duration_seconds=outcome.duration_seconds,
                errors={**old.errors, kind: old.errors.get(kind, 0) + 1},
                first_failure=old.first_failure or outcome.started_at,
            )  # fmt: skip

    async def probe_once(self, source: Source) -> ScanOutcome:
        """Scan ``source`` once; update its health, the alerts and the snapshot.

        A store failure while recording what the probe saw makes the source down (kind
        ``store``); other exceptions propagate to the supervisor (:meth:`supervised_probe`).
        """
        started_at, t0 = self.clock(), time.perf_counter()
        try:
            outcome = await self.scanner.scan(source)
        except StoreError as exc:
            log.error("store_write_failed", source=source.name, kind=exc.kind, error=str(exc))
            outcome = self._failed(source, started_at, t0, "store", f"store: {exc.kind}")
        self._record(source, outcome)
        self.prune_if_due()
        self.evaluate()
        return outcome

    def evaluate(self) -> None:
        """Evaluate the alert rules now and rebuild the snapshot."""
        t0 = time.perf_counter()
        try:
            if self.alerts.evaluate(self.situation()):
                self.delivery.wake()
        except StoreError as exc:
            log.error("alert_state_write_failed", kind=exc.kind, error=str(exc))
        self.rebuild_snapshot()
        log.debug("evaluated", seconds=round(time.perf_counter() - t0, 4))

    def _failed(
        self, source: Source, started_at: datetime, t0: float, kind: str, detail: str
    ) -> ScanOutcome:
        finished_at = self.clock()
        try:
            self.store.record_failure(source.name, started_at, finished_at, detail)
        except StoreError as exc:
            log.error("store_write_failed", source=source.name, kind=exc.kind, error=str(exc))
        return ScanOutcome(
            source=source.name, started_at=started_at, finished_at=finished_at,
            duration_seconds=time.perf_counter() - t0, error=detail, error_kind=kind,
        )  # fmt: skip

    async def supervised_probe(self, source: Source) -> ScanOutcome:
        """:meth:`probe_once` under a deadline; any exception makes the source down."""
        state = self._state[source.name]
        deadline = probe_deadline(state.timeout)
        started_at, t0 = self.clock(), time.perf_counter()
        try:
            async with asyncio.timeout(deadline) as limit:
                return await self.probe_once(source)
        except TimeoutError as exc:
            if not limit.expired():
                return self._crashed(source, started_at, t0, exc)
            log.error("probe_deadline_exceeded", source=source.name, deadline_seconds=deadline)
            outcome = self._failed(source, started_at, t0, "timeout",
                                   f"probe still running after {deadline:g}s")  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - the supervisor: one source's bug stays there
            return self._crashed(source, started_at, t0, exc)
        self._record(source, outcome)
        self._evaluate_quietly()
        return outcome

    def _crashed(
        self, source: Source, started_at: datetime, t0: float, exc: BaseException
    ) -> ScanOutcome:
        log.error("probe_crashed", source=source.name, error_type=type(exc).__name__,
                  exc_info=exc)  # fmt: skip
        outcome = self._failed(source, started_at, t0, "internal",
                               f"internal error ({type(exc).__name__})")  # fmt: skip
        self._record(source, outcome)
        self._evaluate_quietly()
        return outcome

    def _evaluate_quietly(self) -> None:
        try:
            self.evaluate()
        except Exception:  # logged; the next evaluation tries again
            log.exception("evaluation_failed")

    def prune_if_due(self) -> None:
        """Delete history past the store's retention, at most every :data:`PRUNE_EVERY`."""
        now = self.clock()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        config = self.settings.store
        try:
            counts = self.store.prune(
                now,
                timedelta(seconds=config.retention.seconds),
                timedelta(seconds=config.audit_retention.seconds),
            )
        except StoreError as exc:
            log.exception("store_prune_failed", error=str(exc))
            return
        if counts.total:
            log.info("store_pruned", **asdict(counts))

    def _settled(self, observation: Observation | None) -> None:
        """After a mail log's removals: its queue source's verdicts as the scanner holds them."""
        name = observation.outcomes_for if isinstance(observation, LogObservation) else None
        if name in self._state and (latest := self.scanner.latest(name)) is not None:
            self._state[name].verdicts = latest

    def undeliverable(self, now: datetime) -> list[Judgement]:
        """Messages that bounced or expired within ``undeliverable_for``, judged at ``now``."""
        since = now - timedelta(seconds=self.settings.undeliverable_for.seconds)
        return [judge(m, now, since) for m in self.store.undeliverable_since(since)]

    def situation(self) -> Situation:
        """What the alert rules look at now: stuck and undeliverable mail, blind sources."""
        now = self.clock()
        views = class_views(
            self.scanner.classifier.all_classes,
            {name: state.verdicts for name, state in self._state.items() if state.backlog},
            self.undeliverable(now),
            self.relayhosts(),
            self.scanner.kept(self._backlog()),
        )
        return Situation(
            now=now,
            classes=views,
            failing_since={n: s.health.first_failure for n, s in self._state.items() if s.probed},
            canaries_lost=self.store.canaries_lost(now),
            overdue_since={n: self._due(s) for n, s in self._state.items()},
            destinations=self._destinations(),
        )

    def _due(self, state: _SourceState) -> datetime:
        """When the source's next success was due (see :class:`Situation`).

        Its last success (or the start), plus its interval with jitter, plus its probe
        timeout: a scan may take that long.
        """
        since = state.health.last_success or self.started_at
        return since + timedelta(seconds=state.interval * 1.1 + state.timeout)

    async def _worker(self, source: Source, stop: asyncio.Event) -> None:
        state = self._state[source.name]
        await run_worker(
            lambda: self.supervised_probe(source),
            lambda: next_delay(state.interval, state.failures),
            stop,
            name=source.name,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Probe every source until ``stop`` is set, then return once in-flight probes end.

        Alongside the sources: the outbox delivery loop (a final flush attempt on stop) and
        the Alertmanager re-send loop.
        """
        async with asyncio.TaskGroup() as group:
            for source in self.sources:
                group.create_task(self._worker(source, stop), name=f"source:{source.name}")
            group.create_task(self.delivery.run(stop), name="notify:outbox")
            group.create_task(self.resender.run(stop), name="notify:alertmanager-resend")
            if self.fleet is not None:
                group.create_task(self.fleet.run(stop), name="fleet:push")
            group.create_task(
                sup.every(EVALUATE_EVERY, self._evaluate_quietly, stop), name="alerts:evaluate"
            )
