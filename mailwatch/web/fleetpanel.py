"""Reading the fleet for the overview's "Fleet" section (``GET /`` with ``[fleet]``).

A section of ``/`` rather than a page of its own: the duty manager's one question ("is P1 mail
stuck anywhere?") gets one answer on the page they already keep open, and the section can
never cost the local view: the read runs in a worker thread bounded by :data:`WAIT_SECONDS`
(at most one read in flight; a slow one is awaited by the next refresh, not repeated), and any
failure becomes "fleet database unreachable since …" while the local tiles render as before.

The messages are judged by the core judgement (:func:`mailwatch.app.queries.judged`, exactly as
``stuck --fleet``); the sources come from :func:`mailwatch.app.fleet_queries.status` (stale:
unknown). The view is :mod:`mailwatch.web.fleetmodel`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from mailwatch.app import fleet_queries, queries
from mailwatch.config.fleet import FleetConfig
from mailwatch.config.settings import Settings
from mailwatch.errors import FleetError, FleetSchemaError
from mailwatch.fleet import schema
from mailwatch.fleet.connect import connect
from mailwatch.fleet.reader import FleetReader
from mailwatch.web import fleetmodel
from mailwatch.web.keys import SETTINGS_KEY
from mailwatch.web.pagemodel import class_info

WAIT_SECONDS = 5.0
"""The page waits at most this long (or ``[fleet] timeout`` if shorter) for the fleet."""
FLEET_READ = 20_000
"""At most this many fleet messages are judged per view (stuck ones come first)."""


@dataclass
class PanelState:
    """Per application: the read in flight, and since when the database has been failing."""

    pending: asyncio.Task[Any] | None = None
    down_since: datetime | None = None


PANEL_KEY: web.AppKey[PanelState] = web.AppKey("fleet_panel", PanelState)


def read(config: FleetConfig, settings: Settings, now: datetime) -> Any:
    """In a worker thread: (judged messages, total, status items) from the fleet database."""
    window = settings.undeliverable_for.seconds
    with connect(config) as db:
        schema.require_current(db)
        reader = FleetReader(db)
        wanted = queries.MessageFilter(stuck_only=False, limit=FLEET_READ)
        judged, total = queries.judged(reader, now, wanted, undeliverable_for=window)
        items = fleet_queries.status(
            reader, now, stale_after=config.stale_after.seconds, undeliverable_for=window
        )
    return judged, total, items


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _retrieved(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def fleet_section(
    app: web.Application, now: datetime, zone: Any
) -> fleetmodel.FleetView | None:
    """The section's view, or ``None`` without ``[fleet]``. Never raises for the fleet's sake."""
    settings: Settings = app[SETTINGS_KEY]
    config = settings.fleet
    if config is None:
        return None
    state = app[PANEL_KEY]
    if state.pending is None or state.pending.done():
        state.pending = asyncio.ensure_future(asyncio.to_thread(read, config, settings, now))
        state.pending.add_done_callback(_retrieved)  # a late failure is not logged as lost
    wait = min(WAIT_SECONDS, config.timeout.seconds)
    try:
        judged, total, items = await asyncio.wait_for(asyncio.shield(state.pending), wait)
    except (FleetError, OSError, TimeoutError) as exc:
        state.down_since = state.down_since or datetime.now(UTC)
        word = (
            "unreadable" if type(exc) is FleetError or isinstance(exc, FleetSchemaError) else None
        )
        return fleetmodel.unreachable(state.down_since, _reason(exc), zone, now, word=word)
    state.down_since = None
    infos = {n: class_info(n, c.description) for n, c in settings.all_classes().items()}
    return fleetmodel.fleet_view(judged, total, items, infos, zone, now)
