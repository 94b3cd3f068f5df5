"""The status page's HTTP handlers: the overview, a class's page, signing in, acting.

* ``GET /``: the overview. Open to anonymous readers while ``/`` is in ``[http] open_paths``
  (it shows no personal data); otherwise sign in first.
* ``GET /class/NAME``: the class's stuck messages (queue id, source, age, reason, category,
  destination domain). Always needs a signed-in token; subjects only for a token with
  ``subjects = true`` (each such view is audited).
* ``GET/POST /login``, ``POST /logout``: a session cookie from a token (see
  :mod:`mailwatch.web.sessions`); a bearer ``Authorization`` header works too.
* ``POST /actions/ack`` (alert, note) and ``POST /actions/silence`` (class, for, reason): write
  tokens only, with the form's CSRF token and a same-origin ``Origin``. Audited with the
  token's name as the actor; nothing in the form can change who is recorded.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from aiohttp import web

from mailwatch.alerting.lifecycle import Silence
from mailwatch.app import queries
from mailwatch.app.service import Service
from mailwatch.core.durations import format_seconds, parse_duration
from mailwatch.errors import NotAcknowledgeable
from mailwatch.web import fleetpanel, pagemodel, statuspage
from mailwatch.web.auth import Caller
from mailwatch.web.keys import READER_KEY, SERVICE_KEY, SETTINGS_KEY, TOKENS_KEY
from mailwatch.web.sessions import COOKIE, Session, Sessions, same_origin

Summary = Callable[[Service, datetime], dict[str, Any]]
SESSIONS_KEY: web.AppKey[Sessions] = web.AppKey("sessions", Sessions)
SUMMARY_KEY: web.AppKey[Summary] = web.AppKey("summary")
PAGE_PATHS = ("/", "/login", "/logout")
PAGE_PREFIXES = ("/class/", "/actions/")
FLASH = {"ack": "Alert acknowledged.", "silence": "Class silenced.", "login": "Signed in."}
MESSAGES_SHOWN = 200
STUCK_READ = 5000
"""At most this many stuck messages are read to say why and where (counts come from metrics)."""
_NEXT = re.compile(r"^/(class/[a-z][a-z0-9_]{0,62})?$")


def is_page(path: str) -> bool:
    """Whether ``path`` is the page's (it authenticates by session itself)."""
    return path in PAGE_PATHS or path.startswith(PAGE_PREFIXES)


def _from_here(request: web.Request) -> bool:
    headers = request.headers
    return same_origin(headers.get("Origin"), request.host, headers.get("Sec-Fetch-Site"))


def _now() -> datetime:
    return datetime.now(UTC)


def _who(request: web.Request) -> tuple[Caller | None, Session | None]:
    """The signed-in caller and session, or a bearer token's caller (no session)."""
    tokens = request.app[TOKENS_KEY]
    session = request.app[SESSIONS_KEY].read(request.cookies.get(COOKIE), _now().timestamp())
    if session is not None:
        caller = tokens.by_name(session.name)
        if caller is not None:
            return caller, session
    return tokens.authenticate(request.headers.get("Authorization")), None


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _problem(status: int, title: str, message: str) -> web.Response:
    return _html(statuspage.page("message.html", title=title, message=message), status)


def _to_login(request: web.Request) -> NoReturn:
    target = request.path if _NEXT.match(request.path) else "/"
    raise web.HTTPSeeOther(f"/login?next={target}")


def _zone(request: web.Request) -> ZoneInfo:
    return ZoneInfo(request.app[SETTINGS_KEY].calendar.time_zone)


async def _stuck(request: web.Request, now: datetime, wanted: queries.MessageFilter) -> Any:
    service, reader = request.app[SERVICE_KEY], request.app[READER_KEY]
    window = request.app[SETTINGS_KEY].undeliverable_for.seconds
    if reader is None:
        return queries.judged(service.store, now, wanted, undeliverable_for=window)
    return await asyncio.to_thread(queries.judged, reader, now, wanted, undeliverable_for=window)


async def _inputs(request: web.Request, now: datetime, class_name: str | None) -> Any:
    service, settings = request.app[SERVICE_KEY], request.app[SETTINGS_KEY]
    summary = request.app[SUMMARY_KEY](service, now)
    if class_name is not None:
        summary["classes"] = [c for c in summary["classes"] if c["class"] == class_name]
    wanted = queries.MessageFilter(stuck_only=True, class_name=class_name, limit=STUCK_READ)
    judgements, total = await _stuck(request, now, wanted)
    infos = {n: pagemodel.class_info(n, c.description) for n, c in settings.all_classes().items()}
    inputs = pagemodel.Inputs(
        summary, now, _zone(request), settings.status.runbook_base_url, infos, judgements,
        list(service.store.alert_states().values()), service.store.silences(now),
        service.store.class_trends(now - timedelta(hours=pagemodel.TREND_HOURS)),
        drain=service.snapshot.class_drain if service.snapshot else {},
    )  # fmt: skip
    return inputs, summary, judgements, total


def _common(request: web.Request, caller: Caller | None, session: Session | None) -> Any:
    flash = FLASH.get(request.query.get("done", ""))
    csrf = request.app[SESSIONS_KEY].csrf(session) if session else None
    refresh = request.app[SETTINGS_KEY].status.refresh_seconds
    return {"who": caller, "csrf": csrf, "flash": flash, "refresh": refresh}


async def overview(request: web.Request) -> web.Response:
    """``GET /``: every class's tile, P1 first, then by urgency; the sources."""
    caller, session = _who(request)
    if caller is None and "/" not in request.app[SETTINGS_KEY].http.open_paths:
        _to_login(request)
    now, zone = _now(), _zone(request)
    inputs, summary, _, _ = await _inputs(request, now, None)
    fleet = await fleetpanel.fleet_section(request.app, now, zone)

    def shown(iso: str) -> str:
        return pagemodel.local(datetime.fromisoformat(iso), zone, now)

    html = statuspage.overview(
        pagemodel.tiles(inputs), summary, sources=statuspage.sources_view(summary, shown),
        updated=pagemodel.local(now, zone, now), fleet=fleet, **_common(request, caller, session),
    )  # fmt: skip
    return _html(html)


async def class_page(request: web.Request) -> web.Response:
    """``GET /class/NAME``: one class's tile and its stuck messages (signed in only)."""
    caller, session = _who(request)
    if caller is None:
        _to_login(request)
    name = request.match_info["name"]
    if name not in request.app[SETTINGS_KEY].all_classes():
        return _problem(404, "no such class", f"There is no class named {name!r}.")
    now, zone = _now(), _zone(request)
    inputs, _, judgements, total = await _inputs(request, now, name)
    built = pagemodel.tiles(inputs)  # a raised priority in use adds a tile: the first is shown
    tile = built[0] if built else None
    if tile is None:
        return _problem(404, "no data yet", "mailwatch has not scanned this class yet.")
    rows = []
    for judged in judgements[:MESSAGES_SHOWN]:
        item = queries.stuck_json(judged, show_subject=caller.subjects)
        item["since"] = pagemodel.local(judged.message.arrival, zone, now)
        item["domains"] = ", ".join(item["recipient_domains"]) or "-"
        item["category"] = item["reason_category"] or "-"
        rows.append(item)
    if caller.subjects and rows:
        request.app[SERVICE_KEY].store.audit(now, caller.name, "view", f"class {name} subjects",
                                             f"{len(rows)} message(s)", )  # fmt: skip
    html = statuspage.page(
        "class.html", tile=tile, messages=rows, total=total, more=total > len(rows),
        show_subjects=caller.subjects, **_common(request, caller, session),
    )  # fmt: skip
    return _html(html)


async def login_form(request: web.Request) -> web.Response:
    """``GET /login``: the sign-in form (a token, never in the URL)."""
    target = request.query.get("next", "/")
    lifetime = format_seconds(request.app[SESSIONS_KEY].lifetime)
    values = {"next": target if _NEXT.match(target) else "/", "lifetime": lifetime, "error": None}
    return _html(statuspage.page("login.html", **values))


async def login(request: web.Request) -> web.Response:
    """``POST /login``: a valid token sets the session cookie; anything else is refused."""
    if not _from_here(request):
        return _problem(403, "refused", "That form did not come from this page.")
    form = await request.post()
    caller = request.app[TOKENS_KEY].by_secret(str(form.get("token", "")))
    target = str(form.get("next", "/"))
    target = target if _NEXT.match(target) else "/"
    if caller is None:
        lifetime = format_seconds(request.app[SESSIONS_KEY].lifetime)
        html = statuspage.page("login.html", next=target, lifetime=lifetime,
                               error="That token is not valid.")  # fmt: skip
        return _html(html, 401)
    sessions = request.app[SESSIONS_KEY]
    response = web.HTTPSeeOther(f"{target}?done=login")
    response.set_cookie(
        COOKIE, sessions.issue(caller.name, _now().timestamp()), max_age=sessions.lifetime,
        path="/", httponly=True, samesite="Strict", secure=request.secure,
    )  # fmt: skip
    raise response


async def _acting(request: web.Request) -> tuple[Caller, Any, str]:
    """The write caller of a same-origin form post with a valid CSRF token, its form, next."""
    caller, session = _who(request)
    if not _from_here(request):
        raise web.HTTPForbidden(text="cross-origin form refused")
    form = await request.post()
    if caller is None or session is None:
        _to_login(request)
    if not request.app[SESSIONS_KEY].csrf_ok(session, str(form.get("csrf", ""))):
        raise web.HTTPForbidden(text="the form has expired: reload the page")
    target = str(form.get("next", "/"))
    return caller, form, target if _NEXT.match(target) else "/"


async def logout(request: web.Request) -> web.Response:
    """``POST /logout``: forget the session cookie."""
    await _acting(request)
    response = web.HTTPSeeOther("/")
    response.del_cookie(COOKIE, path="/")
    raise response


async def ack(request: web.Request) -> web.Response:
    """``POST /actions/ack``: acknowledge a firing alert as the signed-in token."""
    caller, form, target = await _acting(request)
    if not caller.can_write:
        return _problem(403, "read-only", f"Token {caller.name!r} may not acknowledge.")
    note = str(form.get("note", "")).strip()[:500] or None
    try:
        request.app[SERVICE_KEY].alerts.acknowledge(str(form.get("alert", "")), caller.name,
                                                    note, _now())  # fmt: skip
    except NotAcknowledgeable as exc:
        return _problem(409, "not acknowledged", str(exc))
    except LookupError as exc:
        return _problem(404, "not acknowledged", str(exc))
    raise web.HTTPSeeOther(f"{target}?done=ack")


async def silence(request: web.Request) -> web.Response:
    """``POST /actions/silence``: silence one class for one of the offered periods."""
    caller, form, target = await _acting(request)
    if not caller.can_write:
        return _problem(403, "read-only", f"Token {caller.name!r} may not silence.")
    class_name, period = str(form.get("class", "")), str(form.get("for", ""))
    reason = str(form.get("reason", "")).strip()[:200]
    if class_name not in request.app[SETTINGS_KEY].all_classes():
        return _problem(400, "not silenced", f"There is no class named {class_name!r}.")
    if period not in statuspage.SILENCE_CHOICES or not reason:
        return _problem(400, "not silenced", "Choose a period and give a reason.")
    now = _now()
    ends = now + timedelta(seconds=parse_duration(period).seconds)
    request.app[SERVICE_KEY].store.add_silence(
        Silence(0, class_name, None, now, ends, reason, caller.name), actor=caller.name
    )
    raise web.HTTPSeeOther(f"{target}?done=silence")


def register(app: web.Application, summary: Summary) -> None:
    """Add the page's routes; ``summary`` is :func:`mailwatch.web.api.status_summary`."""
    app[SESSIONS_KEY] = Sessions()
    app[SUMMARY_KEY] = summary
    app[fleetpanel.PANEL_KEY] = fleetpanel.PanelState()
    app.router.add_get("/", overview)
    app.router.add_get("/class/{name}", class_page)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_post("/actions/ack", ack)
    app.router.add_post("/actions/silence", silence)
