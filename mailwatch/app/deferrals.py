"""The deferral watch kept by the service: samples per destination over the window.

The service records a sample (:func:`mailwatch.core.destinations.sample`) from the latest
verdicts of every queue source after each good scan; the metrics snapshot and the alert
situation read the watch of the followed destinations from it
(:func:`mailwatch.core.destinations.watch`). Memory is bounded: one small mapping per scan
within ``[metrics] deferral_window``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from mailwatch.alerting.lifecycle import AlertState, AlertStatus
from mailwatch.alerting.rules import AlertRule, Condition
from mailwatch.config.metrics import MetricsConfig
from mailwatch.core.destinations import DestinationWatch, History, sample, trim, watch
from mailwatch.core.model import Verdict

PENDING_OR_OPEN = (AlertStatus.PENDING, AlertStatus.FIRING, AlertStatus.ACKNOWLEDGED)


class DeferralWatch:
    """Samples per destination over ``deferral_window``; the watch of the followed ones."""

    def __init__(self, config: MetricsConfig) -> None:
        self.window = timedelta(seconds=config.deferral_window.seconds)
        self.partners = tuple(config.partner_domains)
        self.top = config.top_destinations
        self.history: History = ()

    def record(
        self,
        now: datetime,
        verdicts: Mapping[str, Sequence[Verdict]],
        relayhosts: Mapping[str, str | None],
    ) -> None:
        """Add a sample taken at ``now`` and forget the ones older than the window."""
        self.history = trim((*self.history, (now, sample(verdicts, relayhosts))), now, self.window)

    def current(self, keep: Iterable[str] = ()) -> tuple[DestinationWatch, ...]:
        """The watch of the partner domains, the most deferred others, and ``keep``."""
        return watch(self.history, self.partners, self.top, keep)


def alerted_destinations(states: Iterable[AlertState], rules: Mapping[str, AlertRule]) -> set[str]:
    """Destinations with a pending or open ``destination_deferring`` alert.

    They stay followed until it resolves, even once no longer among the most deferred.
    """
    return {
        s.key.source
        for s in states
        if s.status in PENDING_OR_OPEN
        and (rule := rules.get(s.key.rule)) is not None
        and rule.condition is Condition.DESTINATION_DEFERRING
    }
