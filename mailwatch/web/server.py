"""The HTTP server (aiohttp): ``/metrics``, health; :mod:`mailwatch.web.api` adds the rest.

Loopback by default. Optional TLS (``[http] tls_cert_file``/``tls_key_file``) and client
certificate authentication (``client_ca_file``). ``/metrics`` negotiates OpenMetrics with the
scraper's ``Accept`` header, as Prometheus does.

Security headers go on every response as it is prepared (errors included): ``nosniff`` and
``no-referrer`` everywhere; on HTML, a Content-Security-Policy (``default-src 'none'``, the
page's own style by hash, ``frame-ancestors 'none'``) and ``X-Frame-Options: DENY``; on HTML
and on ``/api/`` responses (personal data), ``Cache-Control: no-store``.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from mailwatch.core.snapshot import MetricsSnapshot, Readiness
from mailwatch.web.metrics import MailwatchCollector

REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""The Content-Security-Policy of an HTML page that needs nothing at all."""
READY_KEY: web.AppKey[Callable[[], Readiness]] = web.AppKey("ready")


async def metrics(request: web.Request) -> web.Response:
    """Render every metric, in the format the scraper asked for."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(request.app[REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": content_type})


async def healthz(_request: web.Request) -> web.Response:
    """Alive: the event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready (200) once every source was probed and the store is writable; else 503 and why.

    The reasons name sources not yet probed and the store failure's kind (no personal data).
    """
    readiness = request.app[READY_KEY]()
    return web.json_response(readiness.as_json(), status=200 if readiness.ready else 503)


def build_app(
    snapshot: Callable[[], MetricsSnapshot | None],
    ready: Callable[[], Readiness],
    *,
    extend: Callable[[web.Application], None] | None = None,
    middlewares: Sequence[Middleware] = (),
    content_security_policy: str = DEFAULT_CSP,
) -> web.Application:
    """The application with its own registry (no global state shared with other code).

    ``extend`` adds further routes (the API and status page); ``middlewares`` wrap them all;
    ``content_security_policy`` goes on every HTML response.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MailwatchCollector(snapshot))
    app = web.Application(middlewares=list(middlewares))
    app[REGISTRY_KEY] = registry
    app[READY_KEY] = ready
    app.on_response_prepare.append(security_headers(content_security_policy))
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if extend is not None:
        extend(app)
    return app


def security_headers(
    content_security_policy: str,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` hook adding the security headers (see the module doc)."""

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        html = response.content_type == "text/html"
        if html:
            headers["Content-Security-Policy"] = content_security_policy
            headers["X-Frame-Options"] = "DENY"
        if html or request.path.startswith("/api/"):
            headers["Cache-Control"] = "no-store"

    return add


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Server certificate and key, and optionally the CA that client certificates must chain to."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


def server_ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2+), requiring client certificates when a CA is given."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file:
        context.load_verify_locations(tls.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def start(
    app: web.Application, host: str, port: int, tls: TlsFiles | None = None
) -> web.AppRunner:
    """Start serving ``app``; returns the runner (``await runner.cleanup()`` to stop)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=server_ssl_context(tls) if tls else None)
    await site.start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port the first site listens on (useful when started on port 0)."""
    for address in runner.addresses:
        return int(address[1])
    raise RuntimeError("the server is not listening")
