"""``GET /api/v1/fleet/messages`` and ``/api/v1/fleet/status``: the fleet database's answers.

The same filters, JSON items and judgement as ``/api/v1/messages`` (no subjects), read from the
central PostgreSQL on a connection of its own in a worker thread. Without ``[fleet]``: 404; the
database unreachable: 503 (the agent's own ``/api/v1/messages`` still answers for itself).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from mailwatch.app import fleet_queries, queries
from mailwatch.config.fleet import FleetConfig
from mailwatch.config.settings import Settings
from mailwatch.errors import FleetError, FleetUnavailable
from mailwatch.fleet import schema
from mailwatch.fleet.connect import connect
from mailwatch.fleet.reader import FleetReader
from mailwatch.web.keys import SETTINGS_KEY


def _error(status: int, message: str) -> web.HTTPException:
    kind = {404: web.HTTPNotFound, 503: web.HTTPServiceUnavailable}.get(status, web.HTTPBadGateway)
    return kind(text=json.dumps({"error": message}), content_type="application/json")


def _config(settings: Settings) -> FleetConfig:
    if settings.fleet is None:
        raise _error(404, "no [fleet] is configured on this agent")
    return settings.fleet


def _read(config: FleetConfig, settings: Settings, wanted: queries.MessageFilter | None) -> Any:
    """In a worker thread: the page of messages (``wanted``) or the status list."""
    now, window = datetime.now(UTC), settings.undeliverable_for.seconds
    with connect(config) as db:
        schema.require_current(db)
        reader = FleetReader(db)
        if wanted is None:
            return fleet_queries.status(
                reader, now, stale_after=config.stale_after.seconds, undeliverable_for=window
            )
        return fleet_queries.messages(reader, now, wanted, undeliverable_for=window)


async def _answer(request: web.Request, wanted: queries.MessageFilter | None) -> Any:
    settings = request.app[SETTINGS_KEY]
    config = _config(settings)
    try:
        return await asyncio.to_thread(_read, config, settings, wanted)
    except FleetUnavailable as exc:
        raise _error(503, str(exc)) from None
    except FleetError as exc:
        raise _error(502, str(exc)) from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FilterParser = Callable[[web.Request, Settings], queries.MessageFilter]


def routes(message_filter: FilterParser) -> list[tuple[str, str, Handler]]:
    """The fleet routes; ``message_filter`` parses the ``/api/v1/messages`` query parameters."""

    async def fleet_messages(request: web.Request) -> web.Response:
        """``GET /api/v1/fleet/messages``: every agent's stuck (or queued) messages, paged."""
        wanted = message_filter(request, request.app[SETTINGS_KEY])
        items, total = await _answer(request, wanted)
        return web.json_response(
            {"items": items, "total": total, "limit": wanted.limit, "offset": wanted.offset}
        )

    return [
        ("GET", "/api/v1/fleet/messages", fleet_messages),
        ("GET", "/api/v1/fleet/status", fleet_status),
    ]


async def fleet_status(request: web.Request) -> web.Response:
    """``GET /api/v1/fleet/status``: every agent's sources (``unknown`` when stale)."""
    return web.json_response({"sources": await _answer(request, None)})
