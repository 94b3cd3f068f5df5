"""The alert engine: findings → lifecycle steps → stored states and queued notifications.

After each scan the service hands the engine a :class:`~mailwatch.alerting.rules.Situation`.
The engine evaluates every rule, steps each alert's state (pure), and stores the new states
with one outbox row per (notification, receiver) in a single transaction. Receivers that are
not configured are skipped (the alert is still visible in ``mailwatch alerts``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import structlog

from mailwatch.alerting import payload
from mailwatch.alerting.lifecycle import AlertKey, AlertState, acknowledge, step
from mailwatch.alerting.rules import AlertRule, Situation, evaluate
from mailwatch.core.model import Priority
from mailwatch.errors import UnknownAlert
from mailwatch.store import Store
from mailwatch.store.alerts import acting

log = structlog.get_logger(__name__)


def parse_alert_id(text: str) -> AlertKey:
    """``rule/class/source`` (``-`` for an empty part) back into a key."""
    parts = text.split("/")
    if len(parts) != 3 or not parts[0]:
        raise UnknownAlert(f"{text!r} is not an alert id (rule/class/source)")
    rule, cls, source = (p if p != "-" else "" for p in parts)
    return AlertKey(rule, cls, source)


class AlertEngine:
    """Evaluates rules and keeps alert state; ``include_subjects`` maps receiver → cleared."""

    def __init__(
        self,
        rules: Sequence[AlertRule],
        include_subjects: Mapping[str, bool],
        priorities: Mapping[str, Priority],
        store: Store,
    ) -> None:
        self.rules = {rule.name: rule for rule in rules}
        self.include_subjects = dict(include_subjects)
        self.priorities = dict(priorities)
        self.store = store
        self.states: dict[AlertKey, AlertState] = store.alert_states()

    def evaluate(self, situation: Situation) -> int:
        """Step every alert at ``situation.now``; returns how many notifications were queued."""
        now = situation.now
        # Reload: an ack or silence may have been written by another process (the CLI).
        self.states = self.store.alert_states()
        silences = self.store.silences(now)
        changed: list[AlertState] = []
        queued: list[tuple[AlertKey, str, str, dict[str, object]]] = []
        for rule in self.rules.values():
            for finding in evaluate(rule, situation):
                old = self.states.get(finding.key, AlertState(finding.key))
                silenced = any(s.matches(finding.key, now) for s in silences)
                new, intents = step(old, finding, rule.timing, now, silenced=silenced)
                if new != old:
                    self.states[new.key] = new
                    changed.append(new)
                for intent in intents:
                    for receiver in intent.receivers:
                        if receiver not in self.include_subjects:
                            continue  # not configured: visible in `mailwatch alerts` only
                        body = payload.build(
                            intent, rule, self.priorities.get(new.key.class_name),
                            include_subjects=self.include_subjects[receiver], now=now,
                        )  # fmt: skip
                        queued.append((new.key, receiver, intent.kind.value, body))
        if changed or queued:
            self.store.save_alerts(changed, queued, now)
        for key, receiver, kind, _ in queued:
            log.info("alert_notification_queued", alert=str(key), receiver=receiver, kind=kind)
        return len(queued)

    def acknowledge(
        self, alert_id: str, by: str, note: str | None, now: datetime, *,
        on_behalf_of: str | None = None,
    ) -> AlertState:  # fmt: skip
        """Acknowledge a firing alert, store it and audit who did it and why.

        ``by`` is who proved who they are (token or login name); ``on_behalf_of`` a name they
        gave. Both go to the audit trail, separately; the alert shows ``alice (via on-call)``.
        """
        key = parse_alert_id(alert_id)
        self.states = self.store.alert_states()
        state = self.states.get(key)
        if state is None:
            raise UnknownAlert(f"no alert {alert_id!r}")
        acked = acknowledge(state, acting(by, on_behalf_of), note, now)
        self.states[key] = acked
        self.store.save_alerts([acked], [], now)
        self.store.audit(now, by, "ack", f"alert {alert_id}", note, on_behalf_of=on_behalf_of)
        return acked
