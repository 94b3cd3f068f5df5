"""``mailwatch run``: wire the store, sources, service and HTTP server; signals.

* SIGTERM / SIGINT set the stop event: a probe in flight gets a few seconds (``STOP_GRACE``)
  to finish, then is cancelled and its commands' process groups killed (a hung probe cannot
  delay the exit); the HTTP server closes, the store is closed (WAL checkpointed), and the
  process exits 0.
* SIGHUP reloads the configuration file: the new file is validated first; if it is bad, the
  problems are logged and the running configuration carries on untouched; if it is good, the
  service stops its workers, and starts again on the new configuration (same store, so alert
  state, the outbox and header caches carry over).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import structlog

from mailwatch.app.service import Service
from mailwatch.config.settings import Settings, load
from mailwatch.errors import ConfigError
from mailwatch.sources.factory import build_sources
from mailwatch.store import Store
from mailwatch.web import api
from mailwatch.web import server as http

log = structlog.get_logger(__name__)


def _tls(settings: Settings) -> http.TlsFiles | None:
    if not (settings.http.tls_cert_file and settings.http.tls_key_file):
        return None
    return http.TlsFiles(
        str(settings.http.tls_cert_file),
        str(settings.http.tls_key_file),
        str(settings.http.client_ca_file) if settings.http.client_ca_file else None,
    )


async def _run_once(settings: Settings, stop: asyncio.Event, echo: Callable[[str], None]) -> None:
    """Run one configuration until ``stop`` is set."""
    with Store(settings.store.path) as store:
        service = Service(settings, store, build_sources(settings, store))
        tls = _tls(settings)
        runner = await http.start(api.build(service, settings), settings.http.host,
                                  settings.http.port, tls)  # fmt: skip
        scheme = "https" if tls else "http"
        echo(f"mailwatch: serving {scheme}://{settings.http.listen}/;"
             f" watching {', '.join(s.name for s in service.sources)}")  # fmt: skip
        log.info("service_started", listen=settings.http.listen, sources=len(service.sources))
        try:
            await service.run(stop)
        finally:
            await runner.cleanup()
            log.info("service_stopped")


async def run_service(
    settings: Settings,
    *,
    echo: Callable[[str], None],
    stop: asyncio.Event | None = None,
    config_path: Path | None = None,
    reload: asyncio.Event | None = None,
    adjust: Callable[[Settings], Settings] = lambda settings: settings,
) -> None:
    """Run until ``stop`` is set (default: SIGTERM or SIGINT); reload on ``reload`` (SIGHUP).

    ``adjust`` is applied to every configuration loaded on reload (``mailwatch run`` uses it to
    add the demo's private Postfix when the file configures no source).
    """
    stop = stop or asyncio.Event()
    reload = reload or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    try:
        while True:
            generation = asyncio.Event()
            watcher = asyncio.create_task(_watch(stop, reload, generation, config_path))
            try:
                await _run_once(settings, generation, echo)
            finally:
                if not watcher.done():
                    watcher.cancel()
            new = None if watcher.cancelled() else watcher.result()
            if stop.is_set() or new is None:
                break
            log.info("config_reloaded", path=str(config_path))
            settings = adjust(new)
            reload.clear()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


async def _watch(
    stop: asyncio.Event, reload: asyncio.Event, generation: asyncio.Event, path: Path | None
) -> Settings | None:
    """End this generation on stop (``None``) or on a reload with a valid new configuration.

    A reload whose file is invalid is logged with every problem and otherwise ignored.
    """
    while True:
        waits = {asyncio.create_task(stop.wait()), asyncio.create_task(reload.wait())}
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if stop.is_set():
            generation.set()
            return None
        reload.clear()
        try:
            new = load(path)
        except ConfigError as exc:
            log.error("config_reload_rejected", path=str(path), problems=exc.problems)
            continue
        generation.set()
        return new
