"""The JSON API (``/api/v1``), documented in ``docs/openapi.yaml`` (a test keeps them in step).

Bearer tokens with ``read`` or ``write`` scope (``[[http.tokens]]``), read once into a token
table when the server starts and compared exactly, in constant time (:mod:`mailwatch.web.auth`).
Reading a message's detail (subject, addresses) or near-miss subjects is consultation of
personal data: it writes an audit record with the token's name. Actions (ack, silence,
hold/release/retry/flush) need a write token and are audited like their CLI equivalents. Bad
query parameters get a 400 with a message naming the parameter.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from mailwatch.alerting.lifecycle import SILENCE_MAX_SECONDS, Silence
from mailwatch.app import queries
from mailwatch.app.actions import Action, perform
from mailwatch.app.service import Service
from mailwatch.config.settings import Settings
from mailwatch.core.durations import format_seconds, parse_duration
from mailwatch.core.model import Priority
from mailwatch.core.snapshot import MetricsSnapshot
from mailwatch.errors import ActionFailed, NotAcknowledgeable, UnknownMessage
from mailwatch.store.alerts import acting
from mailwatch.store.listing import MessageReader
from mailwatch.web import classification, fleet_api, pages, statuspage
from mailwatch.web.auth import build_table
from mailwatch.web.keys import CALLER_KEY, READER_KEY, SERVICE_KEY, SETTINGS_KEY, TOKENS_KEY
from mailwatch.web.shape_api import get_shape

MAX_LIMIT = 1000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
    404: web.HTTPNotFound, 409: web.HTTPConflict, 502: web.HTTPBadGateway,
}  # fmt: skip


def _error(status: int, message: str) -> web.HTTPException:
    return _ERRORS[status](text=json.dumps({"error": message}), content_type="application/json")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Open paths pass; everything else needs a token, and writes need a write token."""
    settings = request.app[SETTINGS_KEY]
    if request.path in settings.http.open_paths or pages.is_page(request.path):
        return await handler(request)  # the status page checks its own sessions
    caller = request.app[TOKENS_KEY].authenticate(request.headers.get("Authorization"))
    if caller is None:
        raise _error(401, "a valid bearer token is required")
    if request.method not in ("GET", "HEAD") and caller.scope != "write":
        raise _error(403, f"token {caller.name!r} is read-only")
    request[CALLER_KEY] = caller
    return await handler(request)


def _now() -> datetime:
    return datetime.now(UTC)


def _filter(request: web.Request, settings: Settings) -> queries.MessageFilter:
    q = request.query
    try:
        stuck = {"true": True, "false": False}[q.get("stuck", "true").lower()]
    except KeyError:
        raise _error(400, "stuck: use true or false") from None
    class_name = q.get("class") or None
    if class_name is not None and class_name not in settings.all_classes():
        raise _error(400, f"class: unknown class {class_name!r}")
    try:
        priority = Priority.parse(q["priority"]) if q.get("priority") else None
    except ValueError as exc:
        raise _error(400, f"priority: {exc}") from None
    try:
        older = parse_duration(q["older_than"]).seconds if q.get("older_than") else None
    except ValueError as exc:
        raise _error(400, f"older_than: {exc}") from None
    try:
        limit = int(q.get("limit", "100"))
        offset = int(q.get("offset", "0"))
    except ValueError:
        raise _error(400, "limit and offset must be integers") from None
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise _error(400, f"limit must be 1..{MAX_LIMIT} and offset >= 0")
    return queries.MessageFilter(
        stuck, class_name, priority, older, q.get("source") or None, limit, offset
    )


async def list_messages(request: web.Request) -> web.Response:
    """``GET /api/v1/messages``: stuck (or all queued) messages, most urgent first, paged.

    Selected and paged in SQL by the judgement's SQL form, on a read-only connection in a
    worker thread: a request never judges every row, nor blocks the event loop (the scans).
    Pages by ``offset``, or by ``cursor`` (each response's ``next_cursor``: keyset paging).
    """
    settings, service = request.app[SETTINGS_KEY], request.app[SERVICE_KEY]
    wanted, reader = _filter(request, settings), request.app[READER_KEY]
    try:
        after = queries.decode_cursor(request.query.get("cursor"))
    except ValueError as exc:
        raise _error(400, f"cursor: {exc}") from None
    args = (_now(), wanted, after)
    window = settings.undeliverable_for.seconds
    if reader is None:  # an in-memory store has no file to open again: judge on the loop
        items, total, following = queries.messages_page(
            service.store, *args, undeliverable_for=window
        )
    else:
        items, total, following = await asyncio.to_thread(
            queries.messages_page, reader, *args, undeliverable_for=window
        )
    return web.json_response({"items": items, "total": total, "limit": wanted.limit,
                              "offset": wanted.offset, "next_cursor": following})  # fmt: skip


async def get_message(request: web.Request) -> web.Response:
    """``GET /api/v1/messages/{id}``: every field (audited: personal data)."""
    service, caller = request.app[SERVICE_KEY], request[CALLER_KEY]
    ident = request.match_info["id"]
    now = _now()
    window = request.app[SETTINGS_KEY].undeliverable_for.seconds
    try:
        fields = queries.message(service.store, ident, now, undeliverable_for=window)
    except UnknownMessage as exc:
        raise _error(404, str(exc)) from None
    service.store.audit(now, caller.name, "view", f"message {fields[0][1]}", "api")
    return web.json_response({"fields": fields})


async def summary(request: web.Request) -> web.Response:
    """``GET /api/v1/summary``: per-class counts, sources and the alert count."""
    service = request.app[SERVICE_KEY]
    now = _now()
    return web.json_response(status_summary(service, now))


def _class_figures(snap: MetricsSnapshot, name: str, priority: Priority) -> dict[str, Any]:
    """One class's figures for the messages of one priority (theirs, not the class's).

    ``stuck`` is what ``mailwatch stuck`` lists: waiting too long, or not sent (bounced or
    expired within the window), judged by :mod:`mailwatch.core.judgement`.
    """
    waiting = sum(v for (_, c, p), v in snap.stuck.items() if (c, p) == (name, priority))
    why = {
        r.value: v for (c, p, r), v in snap.breakdown.by_class.items() if (c, p) == (name, priority)
    }
    gone = sum(v for (_, c, p), v in snap.undeliverable.items() if (c, p) == (name, priority))
    return {
        "total": sum(v for (_, _, c, p), v in snap.messages.items() if (c, p) == (name, priority)),
        "stuck": waiting + gone,
        "undeliverable": gone,
        "oldest_age_seconds": max(
            (v for (_, c, p), v in snap.oldest_age.items() if (c, p) == (name, priority)),
            default=0.0,
        ),
        "reason_categories": dict(sorted(why.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def status_summary(service: Service, now: datetime) -> dict[str, Any]:
    """What the status page and ``/api/v1/summary`` show (no personal data)."""
    snap = service.snapshot
    classes = []
    if snap is not None:
        for name, class_priority in snap.classes:
            sla = service.scanner.classifier.get(name)
            in_use = {p for (_, c, p) in [*snap.stuck, *snap.undeliverable] if c == name}
            for priority in sorted({class_priority, *in_use}):
                mine = _class_figures(snap, name, priority)
                if priority != class_priority and not any(mine.values()):
                    continue  # a raised priority (MAPPA level 3) gets a tile only when in use
                pooled = snap.class_drain.get(name)  # the status page's ETA too
                eta = pooled.eta_seconds if pooled is not None else 0.0
                classes.append({
                    "class": name, "priority": str(priority), **mine,
                    "sla_seconds": sla.stuck_after.seconds
                    or sla.stuck_after.business_days * 86400.0 if sla else None,
                    "eta_seconds": None if math.isinf(eta) else eta,
                })  # fmt: skip
    sources = [
        {
            "source": name,
            "up": h.up,
            "last_success": h.last_success.isoformat() if h.last_success else None,
            "failing_since": h.first_failure.isoformat() if h.first_failure else None,
        }
        for name, h in sorted(service.health().items())
    ]
    open_alerts = sum(1 for s in service.alerts.states.values() if s.open)
    return {
        "generated_at": now.isoformat(),
        "classes": classes,
        "sources": sources,
        "blind": [s["source"] for s in sources if not s["up"]],
        "alerts_open": open_alerts,
        "scans": queries.scans(service.store, now),
    }


async def list_alerts(request: web.Request) -> web.Response:
    """``GET /api/v1/alerts``."""
    service = request.app[SERVICE_KEY]
    show_all = request.query.get("all", "false").lower() == "true"
    return web.json_response(queries.alerts(service.store, _now(), show_all=show_all))


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _error(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _error(400, "the body must be a JSON object")
    return body


async def ack_alert(request: web.Request) -> web.Response:
    """``POST /api/v1/alerts/{id}/ack`` ``{"note": ...}``: acknowledged by the token's name."""
    service, caller = request.app[SERVICE_KEY], request[CALLER_KEY]
    body = await _body(request)
    on_behalf_of = _on_behalf_of(body)
    try:
        state = service.alerts.acknowledge(
            request.match_info["id"], caller.name, body.get("note"), _now(),
            on_behalf_of=on_behalf_of,
        )  # fmt: skip
    except NotAcknowledgeable as exc:
        raise _error(409, str(exc)) from None
    except LookupError as exc:
        raise _error(404, str(exc)) from None
    return web.json_response(
        {"id": str(state.key), "status": state.status.value, "acked_by": state.acked_by,
         "actor": caller.name, "on_behalf_of": on_behalf_of}
    )  # fmt: skip


def _on_behalf_of(body: dict[str, Any]) -> str | None:
    """The body's ``by``: a name the caller acts for, audited apart from the token's name."""
    by = body.get("by")
    return str(by) if by else None


def _silence_seconds(value: object) -> float:
    """The ``for`` of a silence in seconds, or a 400 saying what is wrong with it."""
    if not isinstance(value, str):
        raise _error(400, 'for: give a duration as a string, e.g. "2h"')
    try:
        duration = parse_duration(value)
    except ValueError as exc:
        raise _error(400, f"for: {exc}") from None
    if duration.business_days:
        raise _error(400, "for: give clock time (e.g. 2h), not business days")
    if not 0 < duration.seconds <= SILENCE_MAX_SECONDS:
        most = format_seconds(SILENCE_MAX_SECONDS)
        raise _error(400, f"for: {value!r} is out of range (more than 0s, at most {most})")
    return duration.seconds


async def add_silence(request: web.Request) -> web.Response:
    """``POST /api/v1/silences`` ``{"class", "source", "for", "reason"}``."""
    service, settings, caller = (
        request.app[SERVICE_KEY],
        request.app[SETTINGS_KEY],
        request[CALLER_KEY],
    )
    body = await _body(request)
    class_name, source = body.get("class"), body.get("source")
    if not class_name and not source:
        raise _error(400, "give class or source (silencing everything is not allowed)")
    if class_name and class_name not in settings.all_classes():
        raise _error(400, f"class: unknown class {class_name!r}")
    if not body.get("reason"):
        raise _error(400, "reason: required")
    seconds = _silence_seconds(body.get("for"))
    now = _now()
    silence_id = service.store.add_silence(
        Silence(
            0,
            class_name,
            source,
            now,
            now + timedelta(seconds=seconds),
            str(body["reason"]),
            acting(caller.name, _on_behalf_of(body)),
        ),
        actor=caller.name,
        on_behalf_of=_on_behalf_of(body),
    )
    return web.json_response({"id": silence_id}, status=201)


async def remove_silence(request: web.Request) -> web.Response:
    """``DELETE /api/v1/silences/{id}``."""
    service, caller = request.app[SERVICE_KEY], request[CALLER_KEY]
    try:
        silence_id = int(request.match_info["id"])
    except ValueError:
        raise _error(400, "id must be an integer") from None
    if not service.store.remove_silence(silence_id, caller.name, _now()):
        raise _error(404, f"no active silence {silence_id}")
    return web.json_response({"id": silence_id, "removed": True})


async def act(request: web.Request) -> web.Response:
    """``POST /api/v1/messages/{id}/{hold|release|retry}`` and ``POST /api/v1/flush``."""
    service, settings, caller = (
        request.app[SERVICE_KEY],
        request.app[SETTINGS_KEY],
        request[CALLER_KEY],
    )
    name = request.match_info.get("action", "flush")
    try:
        action = Action(name)
    except ValueError:
        raise _error(404, f"no action {name!r}") from None
    body = await _body(request) if request.body_exists else {}
    try:
        result = await perform(
            settings,
            service.store,
            action,
            ident=request.match_info.get("id"),
            source=request.query.get("source"),
            actor=caller.name,
            now=_now(),
            on_behalf_of=_on_behalf_of(body),
        )
    except UnknownMessage as exc:
        raise _error(404, str(exc)) from None
    except ActionFailed as exc:
        raise _error(502, str(exc)) from None
    return web.json_response(
        {"action": result.action.value, "target": result.target, "output": result.output}
    )


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/api/v1/summary", summary),
    ("GET", "/api/v1/messages", list_messages),
    ("GET", "/api/v1/messages/{id}", get_message),
    ("GET", "/api/v1/shape", get_shape),
    ("POST", "/api/v1/messages/{id}/{action}", act),
    ("POST", "/api/v1/flush", act),
    ("GET", "/api/v1/alerts", list_alerts),
    ("GET", "/api/v1/classification/near-misses", classification.near_misses),
    *fleet_api.routes(_filter),  # the same query parameters as /api/v1/messages
    ("POST", "/api/v1/alerts/{id}/ack", ack_alert),
    ("POST", "/api/v1/silences", add_silence),
    ("DELETE", "/api/v1/silences/{id}", remove_silence),
]
"""Every API route (the OpenAPI file must document exactly these)."""


def build(service: Service, settings: Settings) -> web.Application:
    """The whole HTTP application: metrics, health, API and status page, behind auth."""
    from mailwatch.web import server as http

    return http.build_app(
        lambda: service.snapshot,
        service.readiness,  # every source probed once and the store writable; else why
        extend=lambda app: register(app, service, settings),
        middlewares=[auth_middleware],
        content_security_policy=statuspage.CONTENT_SECURITY_POLICY,
    )


def register(app: web.Application, service: Service, settings: Settings) -> None:
    """Add the API routes, the status page and their dependencies to ``app``."""
    app[SERVICE_KEY] = service
    app[SETTINGS_KEY] = settings
    app[TOKENS_KEY] = build_table(settings.http.tokens)
    path = str(service.store.path)
    reader = None if path == ":memory:" or path.startswith("file:") else MessageReader(path)
    app[READER_KEY] = reader

    async def close_reader(_app: web.Application) -> None:
        if reader is not None:
            reader.close()

    app.on_cleanup.append(close_reader)
    pages.register(app, status_summary)
    for method, path, handler in ROUTES:
        app.router.add_route(
            method,
            path.replace("{id}", "{id:.+?}")
            if "{action}" in path
            else path.replace("{id}", "{id:.+}"),
            handler,
        )
