"""The deferral watch: per destination, how much of its mail defers and why (pure).

After every scan the service takes a :class:`DestinationSample` per recipient domain from the
latest verdicts of every queue source: how many queued messages go there, how many of them
carry a delay reason for a recipient there (*deferred*: an attempt failed), the categories of
those reasons, and the deferred messages' priorities, classes and queue ids. Samples older
than the window are dropped (:func:`trim`), and :func:`watch` turns what is left into one
:class:`DestinationWatch` per followed destination: the configured partner domains and the
``top`` most deferred others right now.

* ``deferral_ratio``: deferred / queued, over every sample in the window (a remote that
  defers everything is 1.0; one that has just started to defer climbs towards it);
* ``shares``: of the deferrals in the window, the share of each reason category (the watch
  exports ``throttled``, ``connect`` and ``tls``: :data:`WATCHED_SHARES`);
* ``deferred`` (by priority), ``classes``, ``categories``, ``ids``: the latest sample.

Held and frozen messages are not deferrals (an operator holds them, the remote did not
refuse); neither are messages with no delay reason (not tried yet). No address or subject
is kept; a domain is a metric label only when it is a configured partner (the top-N others
are followed by the ``destination_deferring`` alert, which names its destination).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailwatch.core.judgement import reason_category
from mailwatch.core.model import Priority, Verdict
from mailwatch.core.reasons import ReasonCategory

NOT_DEFERRALS = frozenset({"hold", "frozen"})
"""Queues whose messages wait for an operator, not for a remote."""
WATCHED_SHARES = (ReasonCategory.THROTTLED, ReasonCategory.CONNECT, ReasonCategory.TLS)
"""The reason categories whose share per destination is exported."""
MAX_IDS = 50


@dataclass(frozen=True, slots=True)
class DestinationSample:
    """One destination at one scan."""

    queued: int = 0
    deferred: Mapping[Priority, int] = field(default_factory=dict)
    categories: Mapping[ReasonCategory, int] = field(default_factory=dict)
    classes: frozenset[str] = frozenset()
    """Classes of the deferred messages."""
    ids: tuple[str, ...] = ()
    """Queue ids of deferred messages, most urgent priority first (at most :data:`MAX_IDS`)."""
    oldest_deferred_seconds: float = 0.0

    @property
    def deferred_total(self) -> int:
        """Deferred messages, every priority."""
        return sum(self.deferred.values())


@dataclass
class _Tally:
    queued: int = 0
    deferred: dict[Priority, int] = field(default_factory=dict)
    categories: dict[ReasonCategory, int] = field(default_factory=dict)
    classes: set[str] = field(default_factory=set)
    ids: list[tuple[int, str]] = field(default_factory=list)
    oldest: float = 0.0


def _reasons_by_domain(verdict: Verdict) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for recipient in verdict.message.recipients:
        domain = recipient.domain
        if domain and not found.get(domain):
            found[domain] = recipient.delay_reason
    return found


def sample(
    verdicts: Mapping[str, Sequence[Verdict]], relayhosts: Mapping[str, str | None]
) -> dict[str, DestinationSample]:
    """One sample per recipient domain from the latest verdicts of every queue source."""
    tallies: dict[str, _Tally] = {}
    for source, source_verdicts in verdicts.items():
        relayhost = relayhosts.get(source)
        for v in source_verdicts:
            message = v.message
            held = message.queue in NOT_DEFERRALS
            for domain, reason in _reasons_by_domain(v).items():
                tally = tallies.setdefault(domain, _Tally())
                tally.queued += 1
                if held or not reason:
                    continue
                prio = v.classification.priority
                category = reason_category(reason, relayhost) or ReasonCategory.UNKNOWN
                tally.deferred[prio] = tally.deferred.get(prio, 0) + 1
                tally.categories[category] = tally.categories.get(category, 0) + 1
                tally.classes.add(v.classification.name)
                tally.ids.append((int(prio), message.queue_id))
                tally.oldest = max(tally.oldest, v.age_seconds)
    return {domain: _sample_of(t) for domain, t in tallies.items()}


def _sample_of(t: _Tally) -> DestinationSample:
    ids = tuple(i for _, i in sorted(t.ids)[:MAX_IDS])
    return DestinationSample(
        t.queued, t.deferred, t.categories, frozenset(t.classes), ids, t.oldest
    )


History = tuple[tuple[datetime, Mapping[str, DestinationSample]], ...]
"""Samples over time, oldest first."""


def trim(history: History, now: datetime, window: timedelta) -> History:
    """The samples taken within ``window`` before ``now`` (the latest is always kept)."""
    kept = tuple((at, s) for at, s in history if now - at <= window)
    return kept or history[-1:]


@dataclass(frozen=True, slots=True)
class DestinationWatch:
    """One followed destination over the window (see the module docstring)."""

    destination: str
    deferral_ratio: float
    shares: Mapping[ReasonCategory, float]
    latest: DestinationSample
    partner: bool = False
    """A configured partner domain: only those are metric labels (a top-N destination is an
    unconfigured domain: the alert names it, ``/metrics`` does not)."""

    @property
    def categories(self) -> tuple[str, ...]:
        """The categories of its deferrals now, sorted."""
        return tuple(sorted(c.value for c in self.latest.categories))


def followed(
    latest: Mapping[str, DestinationSample],
    partners: Iterable[str],
    top: int,
    keep: Iterable[str] = (),
) -> list[str]:
    """The partner domains, the ``top`` most deferred other destinations now, and ``keep``.

    ``keep``: destinations with an open alert, followed until it resolves even once they
    are no longer among the most deferred.
    """
    partner_list = list(dict.fromkeys(partners))
    others = sorted(
        (d for d, s in latest.items() if d not in partner_list and s.deferred_total),
        key=lambda d: (-latest[d].deferred_total, d),
    )
    chosen = partner_list + others[:top]
    return chosen + sorted(set(keep) - set(chosen))


def watch(
    history: History, partners: Iterable[str], top: int, keep: Iterable[str] = ()
) -> tuple[DestinationWatch, ...]:
    """The watch of every followed destination over ``history`` (already trimmed)."""
    latest = history[-1][1] if history else {}
    partners = list(partners)
    watches = []
    for destination in followed(latest, partners, top, keep):
        queued = deferred = 0
        categories: dict[ReasonCategory, int] = {}
        for _, samples in history:
            s = samples.get(destination)
            if s is None:
                continue
            queued += s.queued
            deferred += s.deferred_total
            for category, n in s.categories.items():
                categories[category] = categories.get(category, 0) + n
        shares = {c: (n / deferred if deferred else 0.0) for c, n in categories.items()}
        watches.append(DestinationWatch(
            destination, deferred / queued if queued else 0.0, shares,
            latest.get(destination, DestinationSample()), destination in partners,
        ))  # fmt: skip
    return tuple(watches)
