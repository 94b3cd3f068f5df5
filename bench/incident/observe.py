"""What the replay watches while it plays: Alertmanager, the queues, Prometheus, the page.

``Sampler`` polls in a thread of its own: Alertmanager's ``/api/v2/alerts`` (every alert it
holds, with its state) and the queue files of both MTAs, twice a second. Prometheus is asked
afterwards (its HTTP API, ``query`` at a past instant). Screenshots come from a headless
Chromium driven over the DevTools protocol.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from incident.servers import Stack
from mailwatch.sandbox.postfix import free_port
from mailwatch.sandbox.prometheus import PrivatePrometheus, PrometheusError

Key = tuple[str, str, str]


class Sampler:
    """Samples Alertmanager and the queues every ``period`` seconds until stopped."""

    def __init__(self, stack: Stack, period: float = 0.5) -> None:
        self.stack, self.period = stack, period
        self.alerts: list[tuple[float, list[Key]]] = []
        self.states: dict[Key, set[str]] = {}
        self.backlog: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        assert self.stack.alertmanager is not None
        while not self._stop.is_set():
            at = time.time()
            with contextlib.suppress(Exception):
                keys = []
                for alert in self.stack.alertmanager.alerts():
                    labels = alert["labels"]
                    key = (labels.get("alertname", ""), labels.get("class", ""),
                           labels.get("source", ""))  # fmt: skip
                    keys.append(key)
                    self.states.setdefault(key, set()).add(alert["status"]["state"])
                self.alerts.append((at, keys))
            with contextlib.suppress(Exception):
                self.backlog.append((time.time(), self.stack.backlog()))
            self._stop.wait(max(0.0, self.period - (time.time() - at)))

    def total(self) -> int:
        """The latest queued total across the MTAs (0 before any sample)."""
        return sum(self.backlog[-1][1].values()) if self.backlog else 0


def vector_at(prometheus: PrivatePrometheus, expr: str, at: float) -> list[dict[str, Any]]:
    """An instant query at a past time (``[]`` on an error)."""
    try:
        data = prometheus.api("query", query=expr, time=f"{at:.3f}")
    except PrometheusError:
        return []
    return list(data.get("result", []))


def value(sample: dict[str, Any]) -> float:
    """The float of one vector sample (``+Inf`` included)."""
    return float(sample["value"][1])


async def _capture(port: int, url: str, size: tuple[int, int]) -> bytes:
    """Open ``url`` in the Chromium whose DevTools listen on ``port``; a PNG of the page."""
    async with aiohttp.ClientSession() as http:
        pages: list[dict[str, Any]] = []
        for _ in range(150):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/json/list") as reply:
                    pages = [p for p in await reply.json() if p["type"] == "page"]
            if pages:
                break
            await asyncio.sleep(0.1)
        if not pages:
            raise RuntimeError("Chromium's DevTools never answered")
        async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = iter(range(1, 10_000))

            async def send(method: str, **params: Any) -> dict[str, Any]:
                ident = next(ids)
                await ws.send_json({"id": ident, "method": method, "params": params})
                while True:
                    message = await asyncio.wait_for(ws.receive_json(), 60)
                    if message.get("id") == ident:
                        return dict(message.get("result", {}))

            width, height = size
            await send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                       deviceScaleFactor=1, mobile=False)  # fmt: skip
            await send("Page.navigate", url=url)
            for _ in range(200):
                state = await send("Runtime.evaluate", expression="document.readyState",
                                   returnByValue=True)  # fmt: skip
                if state.get("result", {}).get("value") == "complete":
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            shot = await send("Page.captureScreenshot", format="png")
            return base64.b64decode(shot["data"])


def screenshot(url: str, path: Path, work: Path, size: tuple[int, int] = (1100, 900)) -> None:
    """A PNG of ``url`` as headless Chromium renders it at ``size`` (a real browser)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise RuntimeError("chromium is not installed (scripts/bootstrap installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={work}", f"--remote-debugging-port={port}",
         "--remote-allow-origins=*", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        png = asyncio.run(_capture(port, url, size))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
