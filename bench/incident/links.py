"""The network the outage cuts: the hub's link to the relay, and the relay's onward gateway.

``Link`` is a TCP proxy on loopback (the WAN link from the national hub to the regional relay):
up, it forwards to the relay's SMTP port, with the hub-to-relay bytes limited to a rate when
one is set (the link after the migration: the queues drain at a bounded rate); down, nothing
listens, so the hub's SMTP client is refused (mailwatch: ``relay_down``). ``Gateway`` is the
relay's ``relayhost`` (the case system and partners beyond it): an SMTP sink that accepts
everything while up. Both run on one asyncio loop in a thread of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiosmtpd.controller import Controller

T = TypeVar("T")


class LoopThread:
    """An asyncio loop running in a daemon thread; ``call`` runs a coroutine on it and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coro`` on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Link:
    """The hub-to-relay link: a loopback TCP proxy that can be cut and rate-limited."""

    def __init__(self, port: int, upstream: int) -> None:
        self.port, self.upstream = port, upstream
        self.rate: float | None = None
        """Bytes per second from hub to relay (``None``: unlimited)."""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._next_free = 0.0

    async def up(self) -> None:
        """Listen (the relay is reachable again)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def down(self) -> None:
        """Stop listening and cut every open connection (the relay goes away)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _budget(self, size: int) -> None:
        if not self.rate:
            return
        now = asyncio.get_running_loop().time()
        start = max(self._next_free, now - 0.5)  # at most half a second of burst
        self._next_free = start + size / self.rate
        if start > now:
            await asyncio.sleep(start - now)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, limited: bool
    ) -> None:
        while data := await source.read(16384):
            if limited:
                await self._budget(len(data))
            sink.write(data)
            await sink.drain()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer, limited=True)),
            asyncio.ensure_future(self._pump(up_reader, writer, limited=False)),
        ]
        with contextlib.suppress(OSError):
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        for each in (writer, up_writer):
            each.close()
            self._writers.discard(each)


class _Accept:
    """aiosmtpd handler: accept every message, count it."""

    def __init__(self) -> None:
        self.accepted = 0

    async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:
        """Accept the data."""
        self.accepted += 1
        return "250 2.0.0 Ok: accepted"


class Gateway:
    """The relay's onward gateway: an SMTP sink on a fixed loopback port, up or down."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.handler = _Accept()
        self._controller: Controller | None = None

    def up(self) -> None:
        """Accept mail."""
        if self._controller is None:
            self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
            self._controller.start()

    def down(self) -> None:
        """Refuse connections."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
