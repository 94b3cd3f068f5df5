"""Prometheus metrics: a custom ``Collector`` that renders the latest snapshot at scrape time.

No global gauges, no stale label sets: each scrape calls :meth:`MailwatchCollector.collect`,
which reads the one immutable :class:`~mailwatch.core.snapshot.MetricsSnapshot` the service swapped
in after its last scan and turns it into metric families. It never does I/O. Labels carry only
source, queue, class, priority, severity, DSN class, error kind, canary path, reason category
(a fixed set) and destination (a configured partner domain or ``other``): never a subject,
address, name or case reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from mailwatch import __version__
from mailwatch.core.backlog import DrainEstimate
from mailwatch.core.destinations import WATCHED_SHARES
from mailwatch.core.model import Priority
from mailwatch.core.snapshot import (
    UNCLASSIFIED,
    UNKNOWN_PRIORITY,
    WARNING_KINDS,
    Histogram,
    MetricsSnapshot,
)
from mailwatch.store.connection import ERROR_KINDS as STORE_ERROR_KINDS

ERROR_KINDS = ("timeout", "unavailable", "command_failed", "error", "store", "internal")
"""Probe error kinds, pre-initialised to 0 for every source."""


def _buckets(hist: Histogram) -> list[tuple[str, float]]:
    bounds = [*(repr(float(b)) for b in hist.bounds), "+Inf"]  # "5.0", as client_python writes
    return list(zip(bounds, (float(c) for c in hist.cumulative), strict=True))


class MailwatchCollector:
    """Renders a :class:`MetricsSnapshot`; ``snapshot`` returns the current one (or ``None``)."""

    def __init__(self, snapshot: Callable[[], MetricsSnapshot | None]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """Yield every mailwatch metric family from the current snapshot."""
        info = InfoMetricFamily("mailwatch_build", "mailwatch version.")
        info.add_metric([], {"version": __version__})
        yield info
        snap = self._snapshot()
        if snap is None:
            return
        yield from self._backlog(snap)
        yield from self._breakdown(snap)
        yield from self._destinations(snap)
        yield from self._outcomes(snap)
        yield from self._probes(snap)
        yield from self._canaries(snap)
        yield from self._warnings(snap)
        yield from self._store(snap)
        firing = GaugeMetricFamily(
            "mailwatch_alerts_firing", "mailwatch's own alerts firing or acknowledged.",
            labels=["class", "severity"],
        )  # fmt: skip
        for (name, severity), count in sorted(snap.alerts_firing.items()):
            firing.add_metric([name, severity], count)
        yield firing

    def _backlog(self, snap: MetricsSnapshot) -> Iterator[Metric]:
        messages = GaugeMetricFamily(
            "mailwatch_messages", "Messages waiting, by source, queue/folder, class and priority.",
            labels=["source", "queue", "class", "priority"],
        )  # fmt: skip
        for (source, queue, name, prio), count in sorted(snap.messages.items()):
            messages.add_metric([source, queue, name, str(prio)], count)
        yield messages
        stuck = GaugeMetricFamily(
            "mailwatch_stuck_messages",
            "Queued messages past their class's SLA, held or frozen, by message priority.",
            labels=["source", "class", "priority"],
        )
        for (source, name, prio), count in sorted(snap.stuck.items()):
            stuck.add_metric([source, name, str(prio)], count)
        yield stuck
        gone = GaugeMetricFamily(
            "mailwatch_undeliverable_messages",
            "Messages that bounced or expired within undeliverable_for (stuck: not sent),"
            " by message priority.",
            labels=["source", "class", "priority"],
        )
        for (source, name, prio), count in sorted(snap.undeliverable.items()):
            gone.add_metric([source, name, str(prio)], count)
        yield gone
        oldest = GaugeMetricFamily(
            "mailwatch_oldest_message_age_seconds",
            "Age of the oldest waiting message, by message priority (0: none).",
            labels=["source", "class", "priority"],
        )
        for (source, name, prio), age in sorted(snap.oldest_age.items()):
            oldest.add_metric([source, name, str(prio)], age)
        yield oldest
        ages = HistogramMetricFamily(
            "mailwatch_message_age_seconds", "Ages of waiting messages at the latest scans.",
            labels=["class"],
        )  # fmt: skip
        for name, hist in sorted(snap.age.items()):
            ages.add_metric([name], _buckets(hist), hist.total)
        yield ages
        yield from _drain(snap)

    def _breakdown(self, snap: MetricsSnapshot) -> Iterator[Metric]:
        parts = snap.breakdown
        for name, help_text, values in (
            ("mailwatch_stuck_messages_by_reason",
             "Stuck queued messages by reason category (mailwatch.core.reasons) and priority.",
             parts.by_reason),
            ("mailwatch_oldest_stuck_age_seconds_by_reason",
             "Age of the oldest stuck queued message by reason category (0: none).",
             parts.oldest_by_reason),
        ):  # fmt: skip
            family = GaugeMetricFamily(name, help_text, labels=["source", "priority", "reason"])
            for (source, prio, reason), value in sorted(values.items()):
                family.add_metric([source, str(prio), reason.value], value)
            yield family
        for name, help_text, by_dest in (
            ("mailwatch_stuck_messages_by_destination",
             "Stuck queued messages by destination: a configured partner domain, else other.",
             parts.by_destination),
            ("mailwatch_oldest_stuck_age_seconds_by_destination",
             "Age of the oldest stuck queued message by destination (0: none).",
             parts.oldest_by_destination),
        ):  # fmt: skip
            family = GaugeMetricFamily(
                name, help_text, labels=["source", "destination", "priority"]
            )
            for (source, destination, prio), value in sorted(by_dest.items()):
                family.add_metric([source, destination, str(prio)], value)
            yield family

    def _destinations(self, snap: MetricsSnapshot) -> Iterator[Metric]:
        prios = sorted({p for _, p in snap.classes}) or [Priority.P1]
        deferred = GaugeMetricFamily(
            "mailwatch_destination_deferred_messages",
            "Queued messages deferred (an attempt failed) to a partner destination"
            " ([metrics] partner_domains), by message priority.",
            labels=["destination", "priority"],
        )
        ratio = GaugeMetricFamily(
            "mailwatch_destination_deferral_ratio",
            "Share of a partner destination's queued mail that is deferred, over"
            " [metrics] deferral_window.",
            labels=["destination"],
        )
        share = GaugeMetricFamily(
            "mailwatch_destination_reason_share",
            "Of a partner destination's deferrals over the window, the share of one reason"
            " category (throttled, connect, tls).",
            labels=["destination", "reason"],
        )
        for watched in (w for w in snap.destinations if w.partner):  # configured domains only
            name = watched.destination
            for prio in sorted({*prios, *watched.latest.deferred}):
                deferred.add_metric([name, str(prio)], watched.latest.deferred.get(prio, 0))
            ratio.add_metric([name], watched.deferral_ratio)
            for reason in WATCHED_SHARES:
                share.add_metric([name, reason.value], watched.shares.get(reason, 0.0))
        yield deferred
        yield ratio
        yield share

    def _outcomes(self, snap: MetricsSnapshot) -> Iterator[Metric]:
        names = [*(name for name, _ in snap.classes), UNCLASSIFIED]
        # pre-initialised at each class's own priority (a message's may be higher)
        zeros = [*((name, str(prio)) for name, prio in snap.classes),
                 (UNCLASSIFIED, UNKNOWN_PRIORITY)]  # fmt: skip
        totals = snap.outcomes
        delivered = CounterMetricFamily(
            "mailwatch_delivered", "Messages delivered (mail log status=sent), by class.",
            labels=["class"],
        )  # fmt: skip
        for name in names:
            delivered.add_metric([name], totals.delivered.get(name, 0))
        yield delivered
        expired = CounterMetricFamily(
            "mailwatch_expired",
            "Messages expired in the queue and returned, by class and the message's priority.",
            labels=["class", "priority"],
        )
        for (name, prio), count in sorted((dict.fromkeys(zeros, 0) | dict(totals.expired)).items()):
            expired.add_metric([name, prio], count)
        yield expired
        bounced = CounterMetricFamily(
            "mailwatch_bounced",
            "Recipients bounced, by class, the message's priority and DSN class (RFC 3463 first"
            " digit: 4 or 5).",
            labels=["class", "priority", "dsn_class"],
        )
        seen = {(name, prio, "5"): 0 for name, prio in zeros} | dict(totals.bounced)
        for (name, prio, dsn_class), count in sorted(seen.items()):
            bounced.add_metric([name, prio, dsn_class], count)
        yield bounced
        delay = HistogramMetricFamily(
            "mailwatch_delivery_delay_seconds", "Time from arrival to delivery (mail log delay=).",
            labels=["class"],
        )  # fmt: skip
        for name, hist in sorted(totals.delivery_delay.items()):
            delay.add_metric([name], _buckets(hist), hist.total)
        yield delay

    def _canaries(self, snap: MetricsSnapshot) -> Iterator[Metric]:
        roundtrip = HistogramMetricFamily(
            "mailwatch_canary_roundtrip_seconds",
            "Time from a canary's submission to its arrival in the mailbox, per path.",
            labels=["path"],
        )
        for path, hist in sorted(snap.canaries.roundtrip.items()):
            roundtrip.add_metric([path], _buckets(hist), hist.total)
        yield roundtrip
        lost = CounterMetricFamily(
            "mailwatch_canary_lost", "Canaries not delivered within their timeout, per path.",
            labels=["path"],
        )  # fmt: skip
        for path, count in sorted(snap.canaries.lost.items()):
            lost.add_metric([path], count)
        yield lost

    def _probes(self, snap: MetricsSnapshot) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "mailwatch_probe_up", "1 if the last probe worked.", labels=["source"]
        )
        duration = GaugeMetricFamily(
            "mailwatch_probe_duration_seconds", "Duration of the last probe.", labels=["source"]
        )
        last = GaugeMetricFamily(
            "mailwatch_probe_last_success_timestamp_seconds",
            "Unix time of the last successful probe (0: never).",
            labels=["source"],
        )
        errors = CounterMetricFamily(
            "mailwatch_probe_errors", "Failed probes by kind.", labels=["source", "kind"]
        )
        for source, health in sorted(snap.health.items()):
            up.add_metric([source], 1.0 if health.up else 0.0)
            duration.add_metric([source], health.last_duration_seconds)
            last.add_metric([source], health.last_success.timestamp() if health.last_success else 0)
            for kind in sorted({*ERROR_KINDS, *health.errors}):
                errors.add_metric([source, kind], health.errors.get(kind, 0))
        yield up
        yield duration
        yield last
        yield errors
        built = GaugeMetricFamily(
            "mailwatch_snapshot_timestamp_seconds", "Unix time the metrics were last computed."
        )
        built.add_metric([], snap.built_at.timestamp())
        yield built

    def _warnings(self, snap: MetricsSnapshot) -> Iterator[Metric]:
        warning = GaugeMetricFamily(
            "mailwatch_source_warning",
            "1 if the last successful probe warned of this kind (mail_system_down: postqueue's"
            " 'Mail system is down', the MTA is stopped and nothing in its queue moves).",
            labels=["source", "kind"],
        )
        reconciled = CounterMetricFamily(
            "mailwatch_source_reconcile_differences",
            "Messages a periodic full listing found different from the incremental view of the"
            " queue (Postfix and Exim change detection): above 0, the incremental view missed"
            " something.",
            labels=["source"],
        )
        for source, health in sorted(snap.health.items()):
            for kind in WARNING_KINDS:
                warning.add_metric([source, kind], 1.0 if kind in health.warnings else 0.0)
            reconciled.add_metric([source], health.reconciled)
        yield warning
        yield reconciled

    def _store(self, snap: MetricsSnapshot) -> Iterator[Metric]:
        if snap.store is None:
            return
        up = GaugeMetricFamily(
            "mailwatch_store_up", "1 if the latest write to the store worked (0: disk full,"
            " read-only, corrupt, I/O error; see mailwatch_store_errors_total).",
        )  # fmt: skip
        up.add_metric([], 1.0 if snap.store.up else 0.0)
        yield up
        errors = CounterMetricFamily(
            "mailwatch_store_errors", "Failed store operations by kind.", labels=["kind"]
        )
        for kind in sorted({*STORE_ERROR_KINDS, *snap.store.errors}):
            errors.add_metric([kind], snap.store.errors.get(kind, 0))
        yield errors


def _clear_time(estimate: DrainEstimate, built_at: datetime) -> float:
    """Unix time the backlog is predicted empty (+Inf: not draining; no history: now)."""
    if estimate.clear_at is not None:
        return estimate.clear_at.timestamp()
    return math.inf if estimate.backlog else built_at.timestamp()


def _drain(snap: MetricsSnapshot) -> Iterator[Metric]:
    """Drain rate, clear ETA and clear time per (source, class) and per source (headline)."""
    per_class = [([source, name], e) for (source, name), e in sorted(snap.drain.items())]
    per_source = [([source], e) for source, e in sorted(snap.source_drain.items())]
    yield from _drain_families(
        "mailwatch_backlog", "the class's backlog", ["source", "class"], per_class, snap.built_at
    )
    yield from _drain_families(
        "mailwatch_source_backlog", "the source's whole backlog", ["source"], per_source,
        snap.built_at,
    )  # fmt: skip


def _drain_families(
    prefix: str, what: str, labels: list[str],
    rows: Iterable[tuple[list[str], DrainEstimate]], built_at: datetime,
) -> Iterator[Metric]:  # fmt: skip
    rate = GaugeMetricFamily(
        f"{prefix}_drain_rate",
        f"Messages per second leaving {what} (least squares over 3 drain half-lives);"
        " negative when growing.",
        labels=labels,
    )
    eta = GaugeMetricFamily(
        f"{prefix}_clear_eta_seconds",
        f"Seconds from the latest scan until {what} is empty at the current drain rate"
        " (+Inf: not draining).",
        labels=labels,
    )
    clear = GaugeMetricFamily(
        f"{prefix}_clear_time_seconds",
        f"Unix time {what} is predicted to be empty (+Inf: not draining); does not age.",
        labels=labels,
    )
    for values, estimate in rows:
        rate.add_metric(values, estimate.rate)
        eta.add_metric(values, estimate.eta_seconds)
        clear.add_metric(values, _clear_time(estimate, built_at))
    yield rate
    yield eta
    yield clear
