"""Debian's headless Chromium driven over the DevTools protocol, for tests and demos.

A websocket with aiohttp, no browser download: :func:`chromium` starts the browser on a
loopback DevTools port and yields a :class:`DevTools` client of its first page; the browser
test signs in, acknowledges and screenshots through it, and the replay takes its screenshots
of the duty manager's page with :func:`screenshot`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from mailwatch.sandbox.postfix import free_port

REPLY_TIMEOUT = 60.0
"""Seconds to wait for the answer to one DevTools command."""


class ChromiumError(RuntimeError):
    """Chromium is missing, its DevTools never answered, or a command failed."""


class DevTools:
    """A minimal DevTools protocol client for one page (commands; events are ignored)."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its result (:class:`ChromiumError` if it failed)."""
        ident = next(self.ids)
        await self.socket.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.socket.receive_json(), REPLY_TIMEOUT)
            if message.get("id") == ident:
                if "error" in message:
                    raise ChromiumError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (DevTools, not the page's own)."""
        reply = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return reply["result"].get("value")

    async def settle(self, url_part: str = "") -> str:
        """Wait until the page has loaded (at a URL containing ``url_part``); its HTML."""
        for _ in range(150):
            state = await self.evaluate("document.readyState + ' ' + location.href")
            if state and state.startswith("complete") and url_part in state:
                return str(await self.evaluate("document.documentElement.outerHTML"))
            await asyncio.sleep(0.1)
        raise ChromiumError(f"the page never loaded {url_part!r}")

    async def go(self, url: str) -> str:
        """Open ``url``; its HTML once loaded."""
        await self.send("Page.navigate", url=url)
        return await self.settle(url.split("?", maxsplit=1)[0])

    async def submit(self, form: str, fields: dict[str, str], url_part: str) -> str:
        """Fill a form's fields, press its button (a real click), and wait for the result."""
        for name, value in fields.items():
            await self.evaluate(
                f"document.querySelector({json.dumps(form)}).elements[{json.dumps(name)}]"
                f".value = {json.dumps(value)}"
            )
        marker = await self.evaluate("window.__before = Math.random()")
        await self.evaluate(f"document.querySelector({json.dumps(form + ' button')}).click()")
        for _ in range(150):
            await asyncio.sleep(0.1)
            if await self.evaluate("window.__before") != marker:  # a new document
                return await self.settle(url_part)
        raise ChromiumError(f"submitting {form} never loaded a page")

    async def resize(self, width: int, height: int, mobile: bool = False) -> None:
        """Render the page at ``width`` x ``height`` CSS pixels (a phone when ``mobile``)."""
        await self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=1, mobile=mobile)  # fmt: skip

    async def png(self) -> bytes:
        """A PNG of the page as it is rendered now."""
        shot = await self.send("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])

    async def screenshot(self, path: Path, size: tuple[int, int, bool]) -> None:
        """A PNG of the page at ``size`` (width, height, mobile) written to ``path``."""
        await self.resize(*size)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(path.write_bytes, await self.png())


async def _first_page(http: aiohttp.ClientSession, port: int) -> dict[str, Any]:
    for _ in range(150):
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{port}/json/list") as reply:
                pages = [p for p in await reply.json() if p["type"] == "page"]
            if pages:
                return dict(pages[0])
        await asyncio.sleep(0.1)
    raise ChromiumError("Chromium's DevTools never answered")


@contextlib.asynccontextmanager
async def chromium(work: Path) -> AsyncIterator[DevTools]:
    """Headless Chromium (profile in ``work``) with DevTools on a loopback port; its first page."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise ChromiumError("chromium is not installed (scripts/bootstrap installs it)")
    port = free_port()
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={work}", f"--remote-debugging-port={port}",
         "--remote-allow-origins=*", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            page = await _first_page(http, port)
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield DevTools(ws)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)


async def _capture(url: str, work: Path, size: tuple[int, int]) -> bytes:
    async with chromium(work) as page:
        await page.resize(*size)
        await page.send("Page.navigate", url=url)
        await page.settle()
        await asyncio.sleep(0.5)
        return await page.png()


def screenshot(url: str, path: Path, work: Path, size: tuple[int, int] = (1100, 900)) -> None:
    """A PNG of ``url`` as headless Chromium renders it at ``size``; ``work`` is removed after."""
    try:
        png = asyncio.run(_capture(url, work, size))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
