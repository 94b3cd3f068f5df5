"""``GET /api/v1/classification/near-misses``: what the rules may be missing (read scope).

Counts per term by default. ``show_subjects=true`` adds subjects (at most 20 per term): that is
consultation of personal data, written to the audit trail with the token's name.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from aiohttp import web

from mailwatch.app import queries
from mailwatch.app.service import Service
from mailwatch.core.durations import parse_duration
from mailwatch.store.listing import MessageReader
from mailwatch.web.auth import Caller
from mailwatch.web.keys import CALLER_KEY, READER_KEY, SERVICE_KEY

MAX_WINDOW = 366 * 86400.0


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def near_misses(request: web.Request) -> web.Response:
    """Recent ``general`` messages holding P1 vocabulary, grouped by term."""
    service: Service = request.app[SERVICE_KEY]
    reader: MessageReader | None = request.app[READER_KEY]
    caller: Caller = request[CALLER_KEY]
    q = request.query
    try:
        window = parse_duration(q.get("since", "7d")).seconds
    except ValueError as exc:
        raise _bad(f"since: {exc}") from None
    if not 0 < window <= MAX_WINDOW:
        raise _bad("since: between 1s and 366d")
    show = q.get("show_subjects", "false").lower()
    if show not in ("true", "false"):
        raise _bad("show_subjects: use true or false")
    now = datetime.now(UTC)
    classifier = service.scanner.classifier
    if reader is None:  # an in-memory store has no file to open again: on the loop
        report = queries.near_misses(service.store, classifier, now, window_seconds=window,
                                     show_subjects=show == "true")  # fmt: skip
    else:
        report = await asyncio.to_thread(
            queries.near_misses, reader, classifier, now,
            window_seconds=window, show_subjects=show == "true",
        )  # fmt: skip
    if show == "true":
        service.store.audit(now, caller.name, "view", "near-miss subjects", "api")
    return web.json_response(report)
