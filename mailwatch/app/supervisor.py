"""Supervision of the service's workers: probe schedules, deadlines, stopping (no state of its own).

A worker probes one source, waits its jittered interval (doubled per consecutive failure, up
to :data:`MAX_BACKOFF_SECONDS`) and probes again until ``stop`` is set. A probe in flight when
``stop`` comes gets :data:`STOP_GRACE` seconds to finish, then is cancelled (which kills its
commands' process groups). :func:`probe_deadline` is the last guard above a source's own
timeout. The service (:mod:`mailwatch.app.service`) decides what a probe and its outcome are.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import structlog

from mailwatch.config.settings import Settings
from mailwatch.sources.registry import kind_of

if TYPE_CHECKING:
    from mailwatch.app.scanner import ScanOutcome

log = structlog.get_logger(__name__)

SUPERVISOR_ERROR_KINDS = frozenset({"timeout", "store", "internal"})
"""Failures the service itself records (probe deadline, store write, a crash); a source's own
errors are labelled by its kind (:meth:`mailwatch.sources.registry.SourceKind.error_kind`)."""


def error_kind(outcome: ScanOutcome, settings: Settings) -> str:
    """The ``kind`` label of a failed probe."""
    if outcome.error_kind in SUPERVISOR_ERROR_KINDS:
        return outcome.error_kind
    return kind_of(settings.sources[outcome.source]).error_kind(outcome.error_kind)


MAX_BACKOFF_SECONDS = 300.0
STOP_GRACE = 3.0
"""Seconds a probe in flight may take to finish once the service is asked to stop."""
DEADLINE_FACTOR, DEADLINE_SLACK = 4, 60.0


def probe_deadline(timeout_seconds: float) -> float:
    """Seconds after which the supervisor cancels a probe whose own timeouts did not end it."""
    return DEADLINE_FACTOR * timeout_seconds + DEADLINE_SLACK


def next_delay(interval: float, failures: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before the next probe: jittered interval, doubled per failure."""
    base = min(interval * (2**failures), MAX_BACKOFF_SECONDS) if failures else interval
    return base * (0.9 + 0.2 * rng())


async def run_worker(
    probe: Callable[[], Coroutine[Any, Any, object]],
    delay: Callable[[], float],
    stop: asyncio.Event,
    *,
    name: str,
) -> None:
    """Call ``probe``, wait ``delay()`` seconds, and again, until ``stop`` is set."""
    while not stop.is_set():
        if not await probe_unless_stopped(probe, stop, name=name):
            return
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay())
        except TimeoutError:
            continue


async def probe_unless_stopped(
    probe: Callable[[], Coroutine[Any, Any, object]], stop: asyncio.Event, *, name: str
) -> bool:
    """One probe; on ``stop`` it gets :data:`STOP_GRACE` s, then is cancelled.

    Returns whether the probe ended by itself (``False``: stopped). Cancelling kills the
    probe's commands (their process groups), so a hung probe cannot delay a shutdown.
    """
    task = asyncio.create_task(probe(), name=f"probe:{name}")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return True
        if not (await asyncio.wait({task}, timeout=STOP_GRACE))[0]:
            log.warning("probe_cancelled_on_stop", source=name)
        return False
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_GRACE)


async def every(seconds: float, action: Callable[[], None], stop: asyncio.Event) -> None:
    """Call ``action`` every ``seconds`` until ``stop`` is set."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            action()
