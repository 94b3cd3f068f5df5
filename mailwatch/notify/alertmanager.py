"""The Alertmanager receiver and its re-send loop (Alertmanager API v2, ``POST /api/v2/alerts``).

Mapping of a payload to one Alertmanager alert (:func:`to_alert`, pure)::

    labels       alertname = rule, class, priority, source, severity   (empty ones left out)
    annotations  summary, description, runbook_url (if set), acknowledged_by (if acked),
                 reason_categories (if any: "connect,throttled"; a fixed set, no personal data)
    startsAt     alert.fired_at
    endsAt       firing/acknowledged: now + 4 x resend_every   (Prometheus's practice)
                 resolved:            alert.resolved_at (or now)

Labels identify an alert in Alertmanager, annotations are last-write-wins, so sending the
same alert again (a retry, a re-send, a second mailwatch) is harmless. **No subject, name or
address ever goes to Alertmanager**, even for a receiver with ``include_subjects = true``:
its output goes to group channels. Only the summary (class, priority, source, counts), the
rule's description (queue ids) and the runbook link are sent; ``subjects`` and ``reasons``
(delay reasons can quote addresses) are never read here.

Every listed URL (an HA cluster) gets every alert; a send succeeds only when all of them
accepted it, so a partial failure is retried as a whole.

Re-send loop (:class:`AlertmanagerResender`): Alertmanager forgets an alert whose ``endsAt``
passed, so every ``resend_every`` seconds while mailwatch runs, every *open* alert (firing or
acknowledged) whose firing notification went out (``notified``: not one silenced from its
start) is posted again, to the Alertmanager receivers its rule routes to (plus
``escalate_to`` once escalated), with a fresh ``endsAt``. This is separate from the outbox,
which carries the firing/repeat/escalation/resolved notifications themselves. The first
re-send waits until every source was probed once after start, so a stale stored state is
not re-asserted. Re-sends and outbox sends to one receiver are serialised (one lock), and a
re-send reads the alert states only once it holds the lock: a resolve delivered from the
outbox can never be overtaken by an older "still firing".

An acknowledged alert stays active in Alertmanager (it is not over: mail is still stuck) and
gains an ``acknowledged_by`` annotation. Alertmanager's own ``repeat_interval`` still applies
to it; to stop Alertmanager re-notifying, silence it there too (``amtool silence add
alertname=… class=… source=…``). Labels never change on ack: that would make a new alert.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from mailwatch.alerting import payload as payloads
from mailwatch.alerting.lifecycle import AlertKey, AlertState, AlertStatus, Intent, NotificationKind
from mailwatch.alerting.rules import AlertRule
from mailwatch.config.alerts import AlertmanagerReceiverConfig
from mailwatch.core.model import Priority
from mailwatch.core.redaction import mask_addresses
from mailwatch.errors import NotifyError, StoreError
from mailwatch.notify import Payload, Receiver
from mailwatch.notify.webhook import USER_AGENT, post_json, ssl_context

log = structlog.get_logger(__name__)

LABELS = ("alertname", "class", "priority", "source", "severity")
ENDS_AFTER_RESENDS = 4
"""``endsAt`` = now + this many re-send intervals while firing (Prometheus uses 4)."""


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def to_alert(payload: Payload, now: datetime, resend_every: float) -> dict[str, Any]:
    """The Alertmanager v2 ``postableAlert`` for a version-1 payload (see the module docstring)."""
    alert = payload["alert"]
    labels = {
        "alertname": str(alert["rule"]),
        "class": str(alert.get("class") or ""),
        "priority": str(alert.get("priority") or ""),
        "source": str(alert.get("source") or ""),
        "severity": str(alert.get("severity") or ""),
    }
    annotations = {
        "summary": mask_addresses(str(alert.get("summary") or "")),
        "description": mask_addresses(str(alert.get("description") or "")),
    }
    if alert.get("runbook_url"):
        annotations["runbook_url"] = str(alert["runbook_url"])
    if alert.get("reason_categories"):
        annotations["reason_categories"] = ",".join(map(str, alert["reason_categories"]))
    if alert.get("acked_by"):
        annotations["acknowledged_by"] = mask_addresses(str(alert["acked_by"]))
    starts = _parse(alert.get("fired_at")) or _parse(alert.get("started_at")) or now
    if alert.get("status") == AlertStatus.RESOLVED.value or payload.get("kind") == "resolved":
        ends = _parse(alert.get("resolved_at")) or now
    else:
        ends = now + timedelta(seconds=ENDS_AFTER_RESENDS * resend_every)
    return {
        "labels": {k: v for k, v in labels.items() if v},
        "annotations": annotations,
        "startsAt": _rfc3339(starts),
        "endsAt": _rfc3339(max(ends, starts)),
    }


def alerts_url(base: str) -> str:
    """The v2 alerts endpoint under an Alertmanager base URL (a route prefix is kept)."""
    return base.rstrip("/") + "/api/v2/alerts"


class AlertmanagerReceiver:
    """Posts alerts to every Alertmanager in ``config.urls``."""

    def __init__(
        self,
        name: str,
        config: AlertmanagerReceiverConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self._tls = ssl_context(config.ca_file)
        self._lock = asyncio.Lock()

    @property
    def resend_every(self) -> float:
        """Seconds between re-sends of open alerts."""
        return self.config.resend_every

    async def _post(self, batch: Sequence[Payload]) -> None:
        now = self.clock()
        alerts = [to_alert(p, now, self.config.resend_every) for p in batch]
        body = payloads_json(alerts)
        await post_json(
            self.name, [alerts_url(u) for u in self.config.urls], body,
            {"Content-Type": "application/json", "User-Agent": USER_AGENT},
            within=self.config.timeout, tls=self._tls,
        )  # fmt: skip

    async def send(self, payload: Payload) -> None:
        """Post one notification's alert to every Alertmanager."""
        async with self._lock:
            await self._post([payload])

    async def resend(self, collect: Callable[[], list[Payload]]) -> int:
        """Post what ``collect()`` returns (called under the lock); how many alerts were sent."""
        async with self._lock:
            batch = collect()
            if batch:
                await self._post(batch)
            return len(batch)


def payloads_json(alerts: list[dict[str, Any]]) -> bytes:
    """The request body: a JSON list of postable alerts."""
    return json.dumps(alerts, separators=(",", ":")).encode("utf-8")


class AlertStates(Protocol):
    """Where the alerts' states are kept (the store): the re-send loop only reads them."""

    def alert_states(self) -> Mapping[AlertKey, AlertState]:
        """Every alert ever evaluated, by key (may raise :class:`StoreError`)."""


class AlertmanagerResender:
    """Re-posts every open alert to its Alertmanager receivers every ``resend_every`` seconds."""

    def __init__(
        self,
        store: AlertStates,
        receivers: Mapping[str, Receiver],
        rules: Sequence[AlertRule],
        priorities: Mapping[str, Priority],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.receivers = {
            name: r for name, r in receivers.items() if isinstance(r, AlertmanagerReceiver)
        }
        self.rules = {rule.name: rule for rule in rules}
        self.priorities = dict(priorities)
        self.clock = clock
        self.ready = ready

    def open_payloads(self, receiver: str) -> list[Payload]:
        """A payload per open, notified alert routed to ``receiver``, as of now."""
        now = self.clock()
        found = []
        for state in self.store.alert_states().values():
            rule = self.rules.get(state.key.rule)
            if rule is None or not state.open or not state.notified:
                continue
            routed = rule.timing.receivers + (rule.timing.escalate_to if state.escalated else ())
            if receiver not in routed:
                continue
            intent = Intent(NotificationKind.REPEAT, (receiver,), state)
            found.append(payloads.build(
                intent, rule, self.priorities.get(state.key.class_name),
                include_subjects=False, now=now,
            ))  # fmt: skip
        return found

    async def resend_once(self, name: str) -> int:
        """Re-send ``name``'s open alerts now; how many (0 on failure, which is logged)."""
        receiver = self.receivers[name]
        try:
            sent = await receiver.resend(lambda: self.open_payloads(name))
        except NotifyError as exc:
            log.warning("alertmanager_resend_failed", receiver=name, error=exc.detail)
            return 0
        except StoreError as exc:
            log.exception("alertmanager_resend_failed", receiver=name, error=str(exc))
            return 0
        if sent:
            log.debug("alertmanager_resent", receiver=name, alerts=sent)
        return sent

    async def _loop(self, name: str, stop: asyncio.Event) -> None:
        while not self.ready():
            if await _wait(stop, 0.5):
                return
        while not stop.is_set():
            await self.resend_once(name)
            if await _wait(stop, self.receivers[name].resend_every):
                return

    async def run(self, stop: asyncio.Event) -> None:
        """Re-send for every Alertmanager receiver until ``stop`` is set."""
        if not self.receivers:
            return
        async with asyncio.TaskGroup() as group:
            for name in self.receivers:
                group.create_task(self._loop(name, stop), name=f"alertmanager-resend:{name}")


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; ``True`` if ``stop`` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
