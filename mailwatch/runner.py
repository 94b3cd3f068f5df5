"""``mailwatch run``: wire the store, sources, service and HTTP server; stop cleanly on signals.

SIGTERM or SIGINT sets the stop event: workers finish the probe in flight, the HTTP server
closes, the store is closed (WAL checkpointed), and the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import structlog

from mailwatch import api, http
from mailwatch.config import Settings
from mailwatch.service import Service
from mailwatch.sources.factory import build_sources
from mailwatch.store import Store

log = structlog.get_logger(__name__)


async def run_service(
    settings: Settings, *, echo: Callable[[str], None], stop: asyncio.Event | None = None
) -> None:
    """Run until ``stop`` is set (by default: until SIGTERM or SIGINT)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    with Store(settings.store.path) as store:
        service = Service(settings, store, build_sources(settings, store))
        tls = None
        if settings.http.tls_cert_file and settings.http.tls_key_file:
            tls = http.TlsFiles(
                str(settings.http.tls_cert_file),
                str(settings.http.tls_key_file),
                str(settings.http.client_ca_file) if settings.http.client_ca_file else None,
            )
        app = api.build(service, settings)
        runner = await http.start(app, settings.http.host, settings.http.port, tls)
        scheme = "https" if tls else "http"
        echo(f"mailwatch: serving {scheme}://{settings.http.listen}/metrics;"
             f" watching {', '.join(s.name for s in service.sources)}")  # fmt: skip
        log.info("service_started", listen=settings.http.listen, sources=len(service.sources))
        try:
            await service.run(stop)
        finally:
            await runner.cleanup()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            log.info("service_stopped")
