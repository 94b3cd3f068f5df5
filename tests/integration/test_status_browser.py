"""The duty manager's page in a real headless Chromium, on a real stack (issue 16).

``mailwatch run`` (a real process) watches a real Postfix holding emergency recalls and sends
its alerts to a real Alertmanager. Debian's Chromium is driven over the DevTools protocol
(a websocket, with aiohttp; no browser download): the page loads and shows the right counts,
reasons and alert state; a write token signs in through the form, acknowledges the alert
through the form, and the acknowledgement shows on the page, in ``mailwatch audit`` (the
store) and in Alertmanager (the re-sent alert's ``acknowledged_by`` annotation).
Screenshots at 1280x800 and 390x844 are written to ``test-artifacts/screenshots`` (copied to
docs/screenshots for the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailwatch.sandbox.alertmanager import PrivateAlertmanager
from mailwatch.sandbox.chromium import DevTools, chromium
from mailwatch.sandbox.postfix import PrivatePostfix, free_port, make_message

pytestmark = [pytest.mark.postfix, pytest.mark.alertmanager]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
WRITE = "browser-test-write-token"
SIZES = {"desktop": (1280, 800, False), "phone": (390, 844, True)}


@pytest.fixture(name="alertmanager", scope="module")
def fixture_alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateAlertmanager]:
    """A real Alertmanager on loopback for this module."""
    instance = PrivateAlertmanager.create(tmp_path_factory.mktemp("alertmanager"))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def _config(tmp_path: Path, postfix: PrivatePostfix, am: PrivateAlertmanager, port: int) -> Path:
    config = tmp_path / "mailwatch.toml"
    config.write_text(f"""
[store]
path = "{tmp_path / "mw.db"}"
[http]
listen = "127.0.0.1:{port}"
open_paths = ["/healthz", "/readyz"]
[[http.tokens]]
name = "duty"
scope = "write"
secret = {{ env = "MW_BROWSER_WRITE" }}
[sources.mta1]
type = "postfix"
config_dir = "{postfix.config_dir}"
interval = "1s"
[classes.recall_emergency]
priority = "P1"
stuck_after = "1h"
description = "Emergency recall: licence to be revoked within 2 hours of PPCS receiving the papers"
[[classes.recall_emergency.match]]
subject = 'emergency\\s+recall'
[receivers.duty_am]
type = "alertmanager"
urls = ["{am.url}"]
resend_every = 1.0
[[alerts]]
name = "p1_stuck"
condition = "stuck"
priorities = ["P1"]
receivers = ["duty_am"]
""")
    return config


async def eventually(check: Callable[[], Any], within: float, what: str) -> Any:
    """Poll ``check`` (in a thread) until it returns something truthy."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if result := await asyncio.to_thread(check):
                return result
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what}: not within {within}s")


def _tile(html: str, name: str) -> str:
    start = html.index(f'data-class="{name}"')
    return html[start : html.index("</section>", start)]


@pytest.fixture(name="served")
def fixture_served(
    tmp_path: Path, postfix: PrivatePostfix, alertmanager: PrivateAlertmanager
) -> Iterator[tuple[str, Path]]:
    """``mailwatch run`` watching Postfix holding three emergency recalls: (base URL, config)."""
    port = free_port()
    config = _config(tmp_path, postfix, alertmanager, port)
    postfix.inject([make_message(f"Emergency recall - case {n}") for n in range(3)])
    postfix.wait_for_queue(3)
    postfix.postsuper("-h", "ALL")  # held: stuck at once
    env = {**os.environ, "MW_BROWSER_WRITE": WRITE}
    with (tmp_path / "run.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mailwatch", "-c", str(config), "run"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            yield f"http://127.0.0.1:{port}", config
        finally:
            proc.terminate()
            proc.wait(timeout=15)


async def _sign_in_and_read(page: DevTools, base: str) -> None:
    """/ sends an anonymous reader to /login; the write token signs in; the tile is right."""
    html = await page.go(f"{base}/")
    assert "/login" in await page.evaluate("location.href")  # / is closed to anonymous
    assert 'type="password"' in html
    html = await page.submit("form[action='/login']", {"token": WRITE}, base)
    assert "signed in as" in html
    assert WRITE not in await page.evaluate("location.href + document.cookie")
    tile = _tile(html, "recall_emergency")
    assert 'data-stuck="3"' in tile
    assert "stuck of 3 waiting" in tile
    assert "held 100% (3)" in tile
    assert "justice.example (3)" in tile
    assert "p1_stuck</strong> on mta1: firing since" in tile
    assert "Emergency recall - case" not in html  # no subjects on the overview
    for name, size in SIZES.items():
        await page.screenshot(SHOTS / f"status-{name}.png", size)


async def _acknowledge(page: DevTools, base: str) -> None:
    """The tile's form acknowledges with a note; the page says by whom; the class page lists."""
    await page.send("Emulation.setDeviceMetricsOverride", width=1280, height=800,
                    deviceScaleFactor=1, mobile=False)  # fmt: skip
    form = "section[data-class='recall_emergency'] form[action='/actions/ack']"
    html = await page.submit(form, {"note": "phoning PPCS now"}, "done=ack")
    tile = _tile(html, "recall_emergency")
    assert "Alert acknowledged." in html
    assert "acknowledged by duty at" in tile
    assert "phoning PPCS now" in tile
    await page.screenshot(SHOTS / "status-acknowledged-desktop.png", SIZES["desktop"])
    html = await page.go(f"{base}/class/recall_emergency")
    assert html.count("<tr data-queue-id=") == 3
    await page.screenshot(SHOTS / "class-page-phone.png", SIZES["phone"])


async def test_duty_manager_acknowledges_from_the_page(
    tmp_path: Path, served: tuple[str, Path], alertmanager: PrivateAlertmanager
) -> None:
    """Sign in, read the tile, acknowledge through the form: page, audit and Alertmanager agree."""
    base, config = served
    matcher = 'class="recall_emergency"'
    SHOTS.mkdir(parents=True, exist_ok=True)
    await eventually(lambda: alertmanager.alerts(matcher), 30, "the P1 alert in Alertmanager")
    async with chromium(tmp_path / "chromium") as page:
        await _sign_in_and_read(page, base)
        await _acknowledge(page, base)
    audit = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mailwatch", "-c", str(config), "audit", "--json"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    (ack,) = [r for r in json.loads(audit.stdout) if r["action"] == "ack"]
    assert ack["actor"] == "duty"
    assert ack["target"] == "alert p1_stuck/recall_emergency/mta1"

    def acknowledged_in_am() -> bool:
        (alert,) = alertmanager.alerts(matcher)
        return bool(alert["annotations"].get("acknowledged_by") == "duty")

    await eventually(acknowledged_in_am, 15, "acknowledged_by in Alertmanager")
    for name in ("status-desktop", "status-phone", "status-acknowledged-desktop"):
        assert (SHOTS / f"{name}.png").stat().st_size > 5000
