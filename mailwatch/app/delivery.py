"""The delivery loop: moves notifications from the stored outbox to their receivers.

The alert engine writes one outbox row per (notification, receiver) in the same transaction
as the alert state, so a notification exists durably before anything is sent. This loop:

* takes the due rows, **in order per (alert, receiver)**: a row waits while an older row for
  the same alert and receiver is still pending, so a "resolved" never overtakes its
  "firing" (a row is due once its ``next_attempt_at`` has passed);
* sends each through its receiver, one task per receiver (a slow receiver delays only its
  own rows) and removes the row only once the receiver accepted it (at least once);
* on a retryable failure (unreachable, timeout, 5xx/408/429, SMTP 4xx, misconfigured) backs
  the *receiver* off: that row is rescheduled with :func:`backoff` (5 s doubling to 5 min,
  ±20 % jitter) and the receiver's other rows wait with it, rather than each timing out;
* on a permanent rejection (HTTP 4xx other than 408/429 and 3xx, SMTP 5xx) backs off that
  *row* only, and after :data:`DEAD_LETTER_AFTER` attempts dead-letters it: removed from the
  outbox, written to the audit trail (``dead_letter``) and logged at error. Retrying a few
  times covers a receiver being redeployed or a token being rotated; retrying forever would
  block the alert's later notifications behind a request that will never succeed;
* drops rows for a receiver that is no longer configured (logged at error, audited).

Nothing is lost while a receiver is down: its rows stay in the store, and after a restart
the loop resumes from them. Logs carry alert ids (``rule/class/source``), receiver names,
kinds and error details that name no subject, address or URL path.

When ``stop`` is set the loop makes a final flush attempt (bounded by
:data:`FINAL_FLUSH_SECONDS`) for rows already due; anything left goes at the next start.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from mailwatch.errors import NotifyError, ReceiverMisconfigured, ReceiverRejected, StoreError
from mailwatch.notify import Receiver
from mailwatch.store import Store
from mailwatch.store.alerts import OutboxItem

log = structlog.get_logger(__name__)

BASE_BACKOFF_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 300.0
DEAD_LETTER_AFTER = 6
"""Attempts after which a permanently rejected notification is dead-lettered (~2.5 min)."""
POLL_SECONDS = 1.0
FINAL_FLUSH_SECONDS = 10.0
BATCH = 500


def backoff(
    failures: int,
    rng: Callable[[], float] = random.random,
    *,
    base: float = BASE_BACKOFF_SECONDS,
    cap: float = MAX_BACKOFF_SECONDS,
) -> float:
    """Seconds before the next attempt after ``failures`` consecutive failures (±20 % jitter)."""
    return min(base * 2.0 ** max(failures - 1, 0), cap) * (0.8 + 0.4 * rng())


@dataclass
class PassReport:
    """What one pass over the due outbox rows did."""

    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    dead_lettered: int = 0


class DeliveryLoop:
    """Delivers due outbox rows to ``receivers`` (by receiver name) until stopped."""

    def __init__(
        self,
        store: Store,
        receivers: Mapping[str, Receiver],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: Callable[[], float] = random.random,
        *,
        poll_seconds: float = POLL_SECONDS,
        base_backoff: float = BASE_BACKOFF_SECONDS,
        max_backoff: float = MAX_BACKOFF_SECONDS,
        dead_letter_after: int = DEAD_LETTER_AFTER,
    ) -> None:
        self.store = store
        self.receivers = dict(receivers)
        self.clock = clock
        self.rng = rng
        self.poll_seconds = poll_seconds
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.dead_letter_after = dead_letter_after
        self._wake = asyncio.Event()
        self._blocked_until: dict[str, datetime] = {}
        self._failures: dict[str, int] = {}

    def wake(self) -> None:
        """New rows were queued: deliver now rather than at the next poll."""
        self._wake.set()

    def blocked_until(self, receiver: str) -> datetime | None:
        """When a backed-off receiver is tried again (``None``: it is not backed off)."""
        return self._blocked_until.get(receiver)

    def _delay(self, failures: int) -> timedelta:
        seconds = backoff(failures, self.rng, base=self.base_backoff, cap=self.max_backoff)
        return timedelta(seconds=seconds)

    async def deliver_due(self) -> PassReport:
        """One pass: send every due row whose receiver is not backed off."""
        now = self.clock()
        report = PassReport()
        by_receiver: dict[str, list[OutboxItem]] = {}
        for item in self.store.outbox_due_in_order(now, BATCH):
            if item.receiver in self.receivers:
                by_receiver.setdefault(item.receiver, []).append(item)
                continue
            log.error("notification_dropped", reason="receiver not configured",
                      receiver=item.receiver, alert=item.alert, kind=item.kind)  # fmt: skip
            self.store.audit(now, "mailwatch", "drop_notification", f"notification {item.id}",
                             f"alert={item.alert} receiver={item.receiver} kind={item.kind}: "
                             "receiver not configured")  # fmt: skip
            self.store.outbox_done(item.id)
            report.dropped += 1
        if by_receiver:
            async with asyncio.TaskGroup() as group:
                for name, items in by_receiver.items():
                    group.create_task(self._drain(name, items, now, report))
        return report

    async def _drain(
        self, name: str, items: list[OutboxItem], now: datetime, report: PassReport
    ) -> None:
        blocked = self._blocked_until.get(name)
        if blocked is not None and now < blocked:
            return
        receiver = self.receivers[name]
        held: set[str] = set()  # alerts with a row that failed this pass: keep their order
        for item in items:
            if item.alert in held:
                continue
            try:
                await receiver.send(item.payload)
            except ReceiverRejected as exc:
                held.add(item.alert)
                if exc.permanent:
                    self._reject(item, exc, now, report)
                    continue
                self._back_off(name, item, exc.detail, now, report)
                return
            except NotifyError as exc:
                self._back_off(name, item, exc.detail, now, report,
                               error=isinstance(exc, ReceiverMisconfigured))  # fmt: skip
                return
            except Exception as exc:  # a receiver bug must not stop delivery
                log.exception("notification_failed_unexpectedly", receiver=name,
                              alert=item.alert, kind=item.kind)  # fmt: skip
                self._back_off(name, item, type(exc).__name__, now, report, error=True)
                return
            self.store.outbox_done(item.id)
            self._failures.pop(name, None)
            self._blocked_until.pop(name, None)
            report.delivered += 1
            log.info("notification_delivered", receiver=name, alert=item.alert, kind=item.kind,
                     attempts=item.attempts + 1)  # fmt: skip

    def _back_off(
        self,
        name: str,
        item: OutboxItem,
        detail: str,
        now: datetime,
        report: PassReport,
        *,
        error: bool = False,
    ) -> None:
        failures = self._failures.get(name, 0) + 1
        self._failures[name] = failures
        retry_at = now + self._delay(failures)
        self._blocked_until[name] = retry_at
        self.store.outbox_retry(item.id, detail, retry_at)
        report.failed += 1
        emit = log.error if error else log.warning
        emit("notification_failed", receiver=name, alert=item.alert, kind=item.kind,
             attempts=item.attempts + 1, error=detail,
             retry_in=round((retry_at - now).total_seconds(), 1))  # fmt: skip

    def _reject(
        self, item: OutboxItem, exc: ReceiverRejected, now: datetime, report: PassReport
    ) -> None:
        attempts = item.attempts + 1
        if attempts >= self.dead_letter_after:
            self.store.audit(now, "mailwatch", "dead_letter", f"notification {item.id}",
                             f"alert={item.alert} receiver={item.receiver} kind={item.kind} "
                             f"attempts={attempts}: {exc.detail}")  # fmt: skip
            self.store.outbox_done(item.id)
            report.dead_lettered += 1
            log.error("notification_dead_lettered", receiver=item.receiver, alert=item.alert,
                      kind=item.kind, attempts=attempts, status=exc.status,
                      error=exc.detail)  # fmt: skip
            return
        retry_at = now + self._delay(attempts)
        self.store.outbox_retry(item.id, exc.detail, retry_at)
        report.failed += 1
        log.error("notification_rejected", receiver=item.receiver, alert=item.alert,
                  kind=item.kind, attempts=attempts, status=exc.status, error=exc.detail,
                  retry_in=round((retry_at - now).total_seconds(), 1))  # fmt: skip

    async def _pass(self) -> None:
        try:
            await self.deliver_due()
        except StoreError as exc:
            log.exception("outbox_read_failed", error=str(exc))
        except Exception:  # the loop must outlive any one bad pass
            log.exception("delivery_pass_failed")

    async def _wait(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.poll_seconds,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        self._wake.clear()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, then make one final, bounded flush attempt."""
        while not stop.is_set():
            await self._pass()
            await self._wait(stop)
        try:
            async with asyncio.timeout(FINAL_FLUSH_SECONDS):
                await self._pass()
        except TimeoutError:
            log.warning("outbox_final_flush_timed_out")
        try:
            pending = self.store.outbox_pending()
        except StoreError:
            return
        if pending:
            log.info("outbox_left_for_next_start", pending=pending)
