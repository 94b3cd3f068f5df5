"""``GET /api/v1/shape``: the qshape matrix (recipient domain by age) of the queued mail."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime

from aiohttp import web

from mailwatch.app import queries
from mailwatch.config.settings import Settings
from mailwatch.core.model import Priority
from mailwatch.store.shape import ShapeFilter
from mailwatch.web.keys import READER_KEY, SERVICE_KEY, SETTINGS_KEY


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def shape_filter(query: Mapping[str, str], settings: Settings) -> ShapeFilter:
    """``queue`` (comma-separated), ``class``, ``priority``, ``source``, ``count``."""
    class_name = query.get("class") or None
    if class_name is not None and class_name not in settings.all_classes():
        raise _bad(f"class: unknown class {class_name!r}")
    try:
        priority = Priority.parse(query["priority"]) if query.get("priority") else None
    except ValueError as exc:
        raise _bad(f"priority: {exc}") from None
    count = query.get("count", "recipients")
    if count not in ("recipients", "messages"):
        raise _bad("count: use recipients or messages")
    queues = tuple(q for q in query.get("queue", "").split(",") if q)
    return ShapeFilter(queues, class_name, priority, query.get("source") or None,
                       messages=count == "messages")  # fmt: skip


async def get_shape(request: web.Request) -> web.Response:
    """``GET /api/v1/shape``: the qshape matrix (domain by age), P1 rows first.

    Aggregated in SQL on a read-only connection in a worker thread, like the message listing.
    """
    wanted = shape_filter(request.query, request.app[SETTINGS_KEY])
    now, reader = datetime.now(UTC), request.app[READER_KEY]
    if reader is None:  # an in-memory store: no file to open again, aggregate on the loop
        matrix = queries.shape(request.app[SERVICE_KEY].store, now, wanted)
    else:
        matrix = await asyncio.to_thread(queries.shape, reader, now, wanted)
    return web.json_response(matrix.as_json())
