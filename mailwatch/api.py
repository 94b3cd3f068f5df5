"""The JSON API (``/api/v1``), documented in ``docs/openapi.yaml`` (a test keeps them in step).

Bearer tokens with ``read`` or ``write`` scope (``[[http.tokens]]``), compared in constant time.
Reading a message's detail (subject, addresses) is consultation of personal data: it writes an
audit record with the token's name. Actions (ack, silence, hold/release/retry/flush) need a
write token and are audited like their CLI equivalents. Bad query parameters get a 400 with a
message naming the parameter.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from mailwatch import queries, statuspage
from mailwatch.actions import Action, ActionFailed, perform
from mailwatch.alerting.lifecycle import NotAcknowledgeable, Silence
from mailwatch.config import Settings
from mailwatch.durations import parse_duration
from mailwatch.errors import UnknownMessage
from mailwatch.model import Priority
from mailwatch.service import Service

SERVICE_KEY: web.AppKey[Service] = web.AppKey("service")
SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("settings")
MAX_LIMIT = 1000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a token's name and scope."""

    name: str
    scope: str


CALLER_KEY: web.RequestKey[Caller] = web.RequestKey("caller", Caller)


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    502: web.HTTPBadGateway,
}


def _error(status: int, message: str) -> web.HTTPException:
    return _ERRORS[status](text=json.dumps({"error": message}), content_type="application/json")


def authenticate(settings: Settings, header: str | None) -> Caller | None:
    """The caller a ``Bearer`` header proves, comparing against every token in constant time."""
    if not header or not header.startswith("Bearer "):
        return None
    offered = header.removeprefix("Bearer ").strip().encode()
    found: Caller | None = None
    for token in settings.http.tokens:
        try:
            secret = token.secret.read().encode()
        except LookupError:
            continue
        if hmac.compare_digest(offered, secret) and found is None:
            found = Caller(token.name, token.scope)
    return found


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Open paths pass; everything else needs a token, and writes need a write token."""
    settings = request.app[SETTINGS_KEY]
    if request.path in settings.http.open_paths:
        return await handler(request)
    caller = authenticate(settings, request.headers.get("Authorization"))
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
    """``GET /api/v1/messages``: stuck (or all queued) messages, most urgent first, paged."""
    settings, service = request.app[SETTINGS_KEY], request.app[SERVICE_KEY]
    wanted = _filter(request, settings)
    items, total = queries.messages(
        service.store, _now(), wanted, undeliverable_for=settings.undeliverable_for.seconds
    )
    return web.json_response(
        {"items": items, "total": total, "limit": wanted.limit, "offset": wanted.offset}
    )


async def get_message(request: web.Request) -> web.Response:
    """``GET /api/v1/messages/{id}``: every field (audited: personal data)."""
    service, caller = request.app[SERVICE_KEY], request[CALLER_KEY]
    ident = request.match_info["id"]
    now = _now()
    try:
        fields = queries.message(service.store, ident, now)
    except UnknownMessage as exc:
        raise _error(404, str(exc)) from None
    service.store.audit(now, caller.name, "view", f"message {fields[0][1]}", "api")
    return web.json_response({"fields": fields})


async def summary(request: web.Request) -> web.Response:
    """``GET /api/v1/summary``: per-class counts, sources and the alert count."""
    service = request.app[SERVICE_KEY]
    now = _now()
    return web.json_response(status_summary(service, now))


def status_summary(service: Service, now: datetime) -> dict[str, Any]:
    """What the status page and ``/api/v1/summary`` show (no personal data)."""
    snap = service.snapshot
    classes = []
    if snap is not None:
        for name, priority in snap.classes:
            stuck = sum(v for (_, c, _), v in snap.stuck.items() if c == name)
            total = sum(v for (_, _, c, _), v in snap.messages.items() if c == name)
            oldest = max((v for (_, c), v in snap.oldest_age.items() if c == name), default=0.0)
            etas = [e.eta_seconds for (_, c), e in snap.drain.items() if c == name]
            sla = service.scanner.classifier.get(name)
            classes.append(
                {
                    "class": name,
                    "priority": str(priority),
                    "total": total,
                    "stuck": stuck,
                    "oldest_age_seconds": oldest,
                    "sla_seconds": sla.stuck_after.seconds
                    or sla.stuck_after.business_days * 86400.0
                    if sla
                    else None,
                    "eta_seconds": None
                    if math.isinf(max(etas, default=0.0))
                    else max(etas, default=0.0),
                }
            )
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
    by = str(body.get("by") or caller.name)
    try:
        state = service.alerts.acknowledge(request.match_info["id"], by, body.get("note"), _now())
    except NotAcknowledgeable as exc:
        raise _error(409, str(exc)) from None
    except LookupError as exc:
        raise _error(404, str(exc)) from None
    return web.json_response({"id": str(state.key), "status": state.status.value, "acked_by": by})


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
    try:
        seconds = parse_duration(str(body.get("for", ""))).seconds
    except ValueError as exc:
        raise _error(400, f"for: {exc}") from None
    now = _now()
    silence_id = service.store.add_silence(
        Silence(
            0,
            class_name,
            source,
            now,
            now + timedelta(seconds=seconds),
            str(body["reason"]),
            str(body.get("by") or caller.name),
        )
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
    try:
        result = await perform(
            settings,
            service.store,
            action,
            ident=request.match_info.get("id"),
            source=request.query.get("source"),
            actor=caller.name,
            now=_now(),
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
    ("POST", "/api/v1/messages/{id}/{action}", act),
    ("POST", "/api/v1/flush", act),
    ("GET", "/api/v1/alerts", list_alerts),
    ("POST", "/api/v1/alerts/{id}/ack", ack_alert),
    ("POST", "/api/v1/silences", add_silence),
    ("DELETE", "/api/v1/silences/{id}", remove_silence),
]
"""Every API route (the OpenAPI file must document exactly these)."""


async def status_page(request: web.Request) -> web.Response:
    """``GET /``: the duty managers' status page."""
    html = statuspage.render(status_summary(request.app[SERVICE_KEY], _now()))
    return web.Response(text=html, content_type="text/html", charset="utf-8")


def build(service: Service, settings: Settings) -> web.Application:
    """The whole HTTP application: metrics, health, API and status page, behind auth."""
    from mailwatch import http

    return http.build_app(
        lambda: service.snapshot,
        service.ready,  # every source probed once and the store writable
        extend=lambda app: register(app, service, settings),
        middlewares=[auth_middleware],
    )


def register(app: web.Application, service: Service, settings: Settings) -> None:
    """Add the API routes, the status page and their dependencies to ``app``."""
    app[SERVICE_KEY] = service
    app[SETTINGS_KEY] = settings
    app.router.add_get("/", status_page)
    for method, path, handler in ROUTES:
        app.router.add_route(
            method,
            path.replace("{id}", "{id:.+?}")
            if "{action}" in path
            else path.replace("{id}", "{id:.+}"),
            handler,
        )
