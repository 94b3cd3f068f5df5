"""`mailwatch run` as a process and in-process: signals, reload, outages, the status page.

The status page is checked in a real headless Chromium (Debian's ``chromium``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mailwatch.config.settings import Settings, load
from mailwatch.sandbox.postfix import PrivatePostfix, free_port, make_message
from mailwatch.web.runner import run_service
from mailwatch.web.statuspage import tile_state

pytestmark = pytest.mark.postfix
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _config(path: Path, postfix_dir: Path, port: int, extra: str = "") -> Path:
    path.write_text(
        f'[store]\npath = "mw.db"\n[http]\nlisten = "127.0.0.1:{port}"\n'
        f'[sources.mta1]\ntype = "postfix"\nconfig_dir = "{postfix_dir}"\ninterval = "1s"\n'
        '[classes.recall_emergency]\npriority = "P1"\nstuck_after = "0s"\n'
        "[[classes.recall_emergency.match]]\nsubject = 'emergency recall'\n" + extra
    )
    return path


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        return str(response.read().decode())


def _wait_for(url: str, pattern: str, within: float = 20) -> str:
    deadline = time.monotonic() + within
    text = ""
    while time.monotonic() < deadline:
        try:
            text = _get(url)
            if re.search(pattern, text):
                return text
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} never appeared at {url}; last: {text[-500:]}")


class TestProcess:
    """The real command: SIGHUP reloads (and rejects bad files), SIGTERM exits 0."""

    def test_reload_and_terminate(self, postfix: PrivatePostfix, tmp_path: Path) -> None:
        """A good reload takes effect, a bad one is rejected and logged, SIGTERM exits 0."""
        port = free_port()
        config = _config(tmp_path / "mailwatch.toml", postfix.config_dir, port)
        postfix.inject([make_message("Emergency recall Z1"), make_message("Pay day")])
        postfix.wait_for_queue(2)
        log = (tmp_path / "run.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailwatch", "-c", str(config), "run"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            metrics = f"http://127.0.0.1:{port}/metrics"
            _wait_for(metrics, r'mailwatch_stuck_messages\{class="recall_emergency".*\} 1\.0')
            good = config.read_text() + (
                '[classes.payroll]\npriority = "P3"\nstuck_after = "1h"\n'
                "[[classes.payroll.match]]\nsubject = 'pay day'\n"
            )
            config.write_text(good)
            proc.send_signal(signal.SIGHUP)
            _wait_for(metrics, r'mailwatch_messages\{class="payroll".*source="mta1"\} 1\.0')
            config.write_text(good.replace('stuck_after = "1h"', 'stuck_after = "1 hour-ish"'))
            proc.send_signal(signal.SIGHUP)
            time.sleep(1.5)
            assert proc.poll() is None  # still running on the old configuration
            _wait_for(metrics, r'mailwatch_messages\{class="payroll"')
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            assert time.monotonic() - started < 10
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        output = (tmp_path / "run.log").read_text()
        assert "config_reload_rejected" in output
        assert "1 hour-ish" in output  # the problem is named
        assert "service_stopped" in output


TOKEN = "status-page-test-token"


@pytest.fixture(name="settings")
def fixture_settings(
    tmp_path: Path, postfix: PrivatePostfix, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Settings for an in-process service, with a read token for the API."""
    monkeypatch.setenv("MW_STATUS_TOKEN", TOKEN)
    token = '[[http.tokens]]\nname = "page-test"\nsecret = { env = "MW_STATUS_TOKEN" }\n'
    path = _config(tmp_path / "mailwatch.toml", postfix.config_dir, free_port())
    text = path.read_text().replace("[sources.mta1]", token + "[sources.mta1]")
    path.write_text(text)
    return load(path)


@pytest.fixture(name="base")
async def fixture_base(settings: Settings) -> AsyncIterator[str]:
    """A running in-process service; its base URL."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(settings, echo=lambda _: None, stop=stop))
    yield f"http://{settings.http.listen}"
    stop.set()
    await asyncio.wait_for(task, timeout=15)


class TestSourceOutage:
    """A source that goes away is marked down and blind; it recovers when it comes back."""

    async def test_source_goes_and_comes_back(
        self, postfix: PrivatePostfix, base: str, tmp_path: Path
    ) -> None:
        """probe_up drops to 0 and the page shows the blind banner; then back to 1."""
        metrics = f"{base}/metrics"
        await asyncio.to_thread(_wait_for, metrics, r'mailwatch_probe_up\{source="mta1"\} 1\.0')
        hidden = tmp_path / "etc-away"
        shutil.move(postfix.config_dir, hidden)
        try:
            await asyncio.to_thread(_wait_for, metrics, r'mailwatch_probe_up\{source="mta1"\} 0\.0')
            page = await asyncio.to_thread(_get, f"{base}/")
            assert "mailwatch is blind: cannot probe mta1" in page
            errors = await asyncio.to_thread(_get, metrics)
            assert re.search(
                r'mailwatch_probe_errors_total\{kind="command_failed",source="mta1"\} [1-9]', errors
            )
        finally:
            shutil.move(hidden, postfix.config_dir)
        await asyncio.to_thread(_wait_for, metrics, r'mailwatch_probe_up\{source="mta1"\} 1\.0', 30)


class TestStatusPage:
    """The page in a real headless Chromium: tiles match the API's summary."""

    async def test_page_in_chromium(
        self, postfix: PrivatePostfix, base: str, tmp_path: Path
    ) -> None:
        """Tiles carry the summary's counts and states; a phone-sized screenshot is saved."""
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        assert chromium, "chromium is not installed (scripts/bootstrap installs it)"
        postfix.inject([make_message("Emergency recall Q1"), make_message("Emergency recall Q2")])
        postfix.wait_for_queue(2)
        stuck_two = r'mailwatch_stuck_messages\{class="recall_emergency".*\} 2\.0'
        await asyncio.to_thread(_wait_for, f"{base}/metrics", stuck_two)
        request = urllib.request.Request(f"{base}/api/v1/summary",  # noqa: S310
                                         headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        summary: dict[str, Any] = json.loads(
            await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=5).read())  # noqa: S310
        )
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=412,915"]  # fmt: skip
        dom = await asyncio.to_thread(
            subprocess.run, [chromium, *flags, "--dump-dom", f"{base}/"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        tile = r'data-class="([a-z_]+)" data-stuck="(\d+)" data-state="(\w+)"'
        tiles = {m[1]: (int(m[2]), m[3]) for m in re.finditer(tile, dom.stdout)}
        assert tiles["recall_emergency"] == (2, "red")
        assert tiles["safeguarding"] == (0, "green")
        expected = {c["class"]: (c["stuck"], tile_state(c)) for c in summary["classes"]}
        assert tiles == expected
        priorities = {c["class"]: c["priority"] for c in summary["classes"]}
        order = [priorities[name] for name in tiles]
        assert order == sorted(order, key=lambda p: p != "P1")  # every P1 tile comes first
        assert "Emergency recall Q" not in dom.stdout  # no subjects (the class is named, though)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        await asyncio.to_thread(
            subprocess.run, [chromium, *flags, f"--screenshot={shot}", f"{base}/"],
            capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        assert shot.stat().st_size > 5000


class TestExampleConfig:
    """`mailwatch run --demo` with the example file (no sources) watches the demo Postfix."""

    def test_run_with_example_config(self, tmp_path: Path) -> None:
        """It starts the private Postfix, becomes ready and serves the page; SIGTERM exits 0."""
        repo = Path(__file__).resolve().parents[2]
        port = free_port()
        env = {**os.environ, "MAILWATCH_HTTP__LISTEN": f"127.0.0.1:{port}",
               "MAILWATCH_STORE__PATH": str(tmp_path / "mw.db")}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailwatch", "-c", str(repo / "mailwatch.example.toml"), "run",
             "--demo", "--demo-dir", str(tmp_path / "demo")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_for(f"http://127.0.0.1:{port}/readyz", r'"ready": true', within=40)
            page = _get(f"http://127.0.0.1:{port}/")
            assert 'data-class="recall_emergency"' in page
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            PrivatePostfix(tmp_path / "demo" / "postfix", 0, 0).stop()
        assert proc.stdout is not None
        with proc.stdout:
            assert "Started a private Postfix" in proc.stdout.read().decode()
