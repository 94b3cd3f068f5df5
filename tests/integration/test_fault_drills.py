"""Fault drills on real servers: a hung ``postqueue``, a full disk, a source that crashes.

* (a) ``fake_postqueue_hangs_with_child``: a wrapper that forks a child holding its stdout and
  stderr open, then sleeps. The probe must time out within its timeout (the whole process
  group killed), the source must show down and blind, the real Postfix source must keep
  scanning, and SIGTERM must stop a real ``mailwatch run`` promptly (exit 0).
* (b) a tiny tmpfs holding the store fills up: the service stays up, ``/metrics`` and
  ``/readyz`` report the store failure, and once space is freed writes resume.
* (c) ``ExplodingFakeSource`` (a fault-injection fake: no real server raises a ``KeyError``
  from inside a probe) does not stop a real Postfix source; it counts as ``kind="internal"``.

Timing bounds here are generous deadlines for *waiting*, never assertions about speed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

from mailwatch.app.actions import Action, perform
from mailwatch.app.scanner import Scanner
from mailwatch.app.service import Service
from mailwatch.config.settings import load
from mailwatch.core.model import Observation
from mailwatch.errors import ActionFailed, SourceTimeout
from mailwatch.sandbox.postfix import PrivatePostfix, free_port, make_message
from mailwatch.sources.exim import EximSource
from mailwatch.sources.postfix import PostfixSource
from mailwatch.store import Store
from mailwatch.web.metrics import MailwatchCollector

pytestmark = pytest.mark.postfix

HUNG_CHILD_SLEEP = 600  # s: far longer than any wait below; the drill must not depend on it


def _wrapper(directory: Path) -> tuple[str, Path]:
    """fake_postqueue_hangs_with_child: forks a child that keeps stdout open; both sleep."""
    pids = directory / "hung.pids"
    script = directory / "fake_postqueue_hangs_with_child"
    script.write_text(
        "#!/bin/sh\n"
        f"sleep {HUNG_CHILD_SLEEP} &\n"  # inherits stdout and stderr
        f'echo "$$ $!" >> {pids}\n'
        f"sleep {HUNG_CHILD_SLEEP}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = (
        Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() else "X"
    )
    return status != "Z"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_for(check: object, what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()  # type: ignore[operator]
            if last:
                return
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"never: {what} (last: {last!r})")


async def _until(check: Callable[[], object], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        await asyncio.sleep(0.2)


def _metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def _run(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "mailwatch", "-c", str(config), "run"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


@pytest.fixture(name="stop_process")
def fixture_stop_process() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test started, killed at teardown if the test did not end them."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class TestHungProbe:
    """(a) A postqueue that hangs with its stdout inherited by a child."""

    async def test_probe_times_out_and_kills_the_group(self, tmp_path: Path) -> None:
        """The probe ends at its timeout; wrapper and child are both gone afterwards."""
        wrapper, pids = _wrapper(tmp_path)
        source = PostfixSource("stalled", postqueue=wrapper, timeout=1.0, full_listing_every=0)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(source.probe(), 30)  # the test's own guard, generous
        assert time.monotonic() - started < 25  # bounded by the source, not by the guard
        for pid in map(int, pids.read_text().split()):
            _wait_for(lambda pid=pid: not _alive(pid), f"process {pid} killed", within=10)

    async def test_exim_and_postconf_commands_are_bounded_too(self, tmp_path: Path) -> None:
        """The same wrapper as ``exim -bpru`` and as ``postconf``: timeouts, groups killed."""
        wrapper, pids = _wrapper(tmp_path)
        exim = EximSource("mx1", exim=wrapper, timeout=1.0)
        with pytest.raises(SourceTimeout):
            await asyncio.wait_for(exim.probe(), 30)
        postfix = PostfixSource("mta1", postconf=wrapper, timeout=1.0)
        with pytest.raises(SourceTimeout):
            await asyncio.wait_for(postfix.queue_dir(), 30)
        for pid in map(int, pids.read_text().split()):
            _wait_for(lambda pid=pid: not _alive(pid), f"process {pid} killed", within=10)

    def test_service_marks_it_down_keeps_scanning_and_stops_on_sigterm(
        self, postfix: PrivatePostfix, tmp_path: Path, stop_process: list[subprocess.Popen[bytes]]
    ) -> None:
        """Down and blind, the real source scans on, SIGTERM exits 0 with the probe hung."""
        wrapper, pids = _wrapper(tmp_path)
        port = free_port()
        config = tmp_path / "mailwatch.toml"
        config.write_text(
            f'[store]\npath = "mw.db"\n[http]\nlisten = "127.0.0.1:{port}"\n'
            f'[sources.mta1]\ntype = "postfix"\nconfig_dir = "{postfix.config_dir}"\n'
            'interval = "1s"\n'
            f'[sources.stalled]\ntype = "postfix"\nconfig_dir = "{postfix.config_dir}"\n'
            f'postqueue = "{wrapper}"\ninterval = "1s"\ntimeout = "1s"\n'
            'full_listing_every = "0s"\n'
            '[[alerts]]\nname = "source_blind"\ncondition = "source_blind"\n'
            'blind_after = "2s"\n'
        )
        postfix.inject([make_message("Court results")])
        postfix.wait_for_queue(1)
        proc = _run(config, tmp_path / "run.log")
        stop_process.append(proc)
        metrics = f"http://127.0.0.1:{port}/metrics"

        def stalled_down_and_blind() -> bool:
            text = _get(metrics)[1]
            return (
                _metric(text, "mailwatch_probe_up", source="stalled") == 0
                and (_metric(text, "mailwatch_probe_errors_total", source="stalled",
                             kind="timeout") or 0) >= 2
                and _metric(text, "mailwatch_alerts_firing", severity="page") == 1
            )  # fmt: skip

        _wait_for(stalled_down_and_blind, "stalled source down, timed out twice, blind")
        first = _metric(_get(metrics)[1], "mailwatch_probe_last_success_timestamp_seconds",
                        source="mta1")  # fmt: skip
        assert first
        _wait_for(
            lambda: (_metric(_get(metrics)[1], "mailwatch_probe_last_success_timestamp_seconds",
                             source="mta1") or 0) > first,
            "mta1 scanned again",
        )  # fmt: skip
        assert _metric(_get(metrics)[1], "mailwatch_probe_up", source="mta1") == 1
        # SIGTERM while a stalled probe is (very likely) in flight: exits 0, long before the
        # hung processes' own end.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        log = (tmp_path / "run.log").read_text()
        assert "service_stopped" in log
        for pid in map(int, pids.read_text().split()):
            _wait_for(lambda pid=pid: not _alive(pid), f"hung process {pid} killed", within=10)


class TestHungAction:
    """(a) The same wrapper as ``postqueue -f`` and ``postsuper -h`` behind the actions."""

    async def test_flush_and_hold_time_out_kill_the_group_and_are_audited(
        self, postfix: PrivatePostfix, tmp_path: Path
    ) -> None:
        """Each action fails at its timeout; wrapper and child are gone; the audit says so.

        Before, ``kill()`` reached the wrapper only and ``wait()`` then waited for EOF on a
        pipe the child still held: the action hung for as long as the child lived.
        """
        wrapper, pids = _wrapper(tmp_path)
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for name in ("postqueue", "postsuper"):  # postsuper is found next to postqueue
            (bin_dir / name).symlink_to(wrapper)
        postfix.inject([make_message("Emergency recall X9")])
        postfix.wait_for_queue(1)
        config = tmp_path / "mailwatch.toml"
        real = f'[store]\npath = "mw.db"\n[sources.mta1]\ntype = "postfix"\n' \
               f'config_dir = "{postfix.config_dir}"\n'  # fmt: skip
        config.write_text(real)
        with Store(load(config).store.path) as store:
            scanner = Scanner(load(config).classifier(), store)
            assert (await scanner.scan(PostfixSource("mta1", config_dir=postfix.config_dir))).ok
            (message,) = store.queued("mta1")
            config.write_text(real + f'postqueue = "{bin_dir / "postqueue"}"\n')
            settings = load(config)
            for action, ident in ((Action.FLUSH, None), (Action.HOLD, message.queue_id)):
                with pytest.raises(ActionFailed, match="took longer than 1s"):
                    await asyncio.wait_for(  # the test's own guard, generous
                        perform(settings, store, action, ident=ident, source=None,
                                actor="drill", now=datetime.now(UTC), command_timeout=1.0),
                        30,
                    )  # fmt: skip
            trail = [(a.action, a.detail or "") for a in store.audit_trail()]
        assert [action for action, _ in trail] == ["hold", "flush"]
        assert all(detail.startswith("FAILED: ") for _, detail in trail)
        assert all("took longer than 1s" in detail for _, detail in trail)
        assert len(pids.read_text().split()) == 4  # two wrappers, two children
        for pid in map(int, pids.read_text().split()):
            _wait_for(lambda pid=pid: not _alive(pid), f"process {pid} killed", within=10)


@pytest.fixture(name="tiny_disk")
def fixture_tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (a real file system that fills); needs root, as the suite runs."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk drill: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


class TestFullDisk:
    """(b) The store's file system fills up, then space comes back."""

    def test_service_survives_reports_and_recovers(
        self, postfix: PrivatePostfix, tmp_path: Path, tiny_disk: Path,
        stop_process: list[subprocess.Popen[bytes]],
    ) -> None:  # fmt: skip
        """Up throughout; store_up 0 and /readyz 503 while full; scans stored again after."""
        port = free_port()
        store_path = tiny_disk / "mw.db"
        config = tmp_path / "mailwatch.toml"
        config.write_text(
            f'[store]\npath = "{store_path}"\n[http]\nlisten = "127.0.0.1:{port}"\n'
            f'[sources.mta1]\ntype = "postfix"\nconfig_dir = "{postfix.config_dir}"\n'
            'interval = "1s"\n'
        )
        postfix.inject([make_message("Court results")])
        postfix.wait_for_queue(1)
        proc = _run(config, tmp_path / "run.log")
        stop_process.append(proc)
        base = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _get(f"{base}/readyz")[0] == 200, "ready")
        filler = _fill(tiny_disk)
        postfix.inject([make_message(f"Breach referral {i}") for i in range(30)])

        def store_down() -> bool:
            text = _get(f"{base}/metrics")[1]
            return (
                _metric(text, "mailwatch_store_up") == 0
                and (_metric(text, "mailwatch_store_errors_total", kind="full") or 0) >= 1
            )

        _wait_for(store_down, "store reported down (full)")
        assert _get(f"{base}/readyz")[0] == 503
        assert _get(f"{base}/healthz")[0] == 200
        assert proc.poll() is None
        # Still watching the queue meanwhile: the new messages count in the metrics.
        _wait_for(
            lambda: sum(
                float(line.rsplit(" ", 1)[1])
                for line in _get(f"{base}/metrics")[1].splitlines()
                if line.startswith("mailwatch_messages{") and 'source="mta1"' in line
            ) >= 31,
            "the backlog seen while the store is full",
        )  # fmt: skip
        filler.unlink()
        _wait_for(lambda: _metric(_get(f"{base}/metrics")[1], "mailwatch_store_up") == 1,
                  "store up again")  # fmt: skip
        _wait_for(lambda: _get(f"{base}/readyz")[0] == 200, "ready again")

        def stored() -> bool:
            with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True) as db:
                return int(db.execute("SELECT count(*) FROM messages").fetchone()[0]) >= 31

        _wait_for(stored, "the backlog stored after recovery")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        log = (tmp_path / "run.log").read_text()
        assert "store_failed" in log
        assert "store_recovered" in log


class ExplodingFakeSource:
    """Fault-injection fake: its probe raises an exception no source should ever raise."""

    name = "exploding"

    def __init__(self) -> None:
        self.probes = 0

    async def probe(self) -> Observation:
        """Always a bug (KeyError), never a SourceError."""
        self.probes += 1
        raise KeyError("fault injected by ExplodingFakeSource")


class TestCrashingSource:
    """(c) One source's bug stays in that source."""

    async def test_internal_error_is_one_source_down(
        self, postfix: PrivatePostfix, tmp_path: Path
    ) -> None:
        """The real Postfix source keeps scanning; the fake counts as kind="internal"."""
        config = tmp_path / "mailwatch.toml"
        config.write_text(
            '[store]\npath = "mw.db"\n'
            f'[sources.mta1]\ntype = "postfix"\nconfig_dir = "{postfix.config_dir}"\n'
            'interval = "1s"\n'
            f'[sources.exploding]\ntype = "postfix"\nconfig_dir = "{postfix.config_dir}"\n'
            'interval = "1s"\n'
        )
        postfix.inject([make_message("Court results")])
        postfix.wait_for_queue(1)
        settings = load(config)
        fake = ExplodingFakeSource()
        with Store(settings.store.path) as store, capture_logs() as logs:
            real = PostfixSource("mta1", config_dir=postfix.config_dir)
            service = Service(settings, store, [real, fake])
            stop = asyncio.Event()
            running = asyncio.create_task(service.run(stop))
            await _until(lambda: fake.probes >= 2 and service.health()["mta1"].last_success)
            first_success = service.health()["mta1"].last_success
            assert first_success is not None
            await _until(lambda: service.health()["mta1"].last_success != first_success)
            stop.set()
            await asyncio.wait_for(running, 60)  # returns normally: nothing escaped
        assert fake.probes >= 2
        assert service.health()["mta1"].up
        assert service.health()["mta1"].last_success != first_success  # scanned on
        assert not service.health()["exploding"].up
        assert service.health()["exploding"].errors.get("internal", 0) >= 2
        registry = CollectorRegistry(auto_describe=False)
        registry.register(MailwatchCollector(lambda: service.snapshot))
        text = generate_latest(registry).decode()
        assert (
            _metric(text, "mailwatch_probe_errors_total", source="exploding", kind="internal") or 0
        ) >= 2
        assert _metric(text, "mailwatch_probe_up", source="mta1") == 1
        crashed = [e for e in logs if e["event"] == "probe_crashed"]
        assert crashed
        assert crashed[0]["log_level"] == "error"
        assert crashed[0]["source"] == "exploding"
        assert isinstance(crashed[0]["exc_info"], KeyError)  # rendered as a traceback


class TestMailSystemDown:
    """Item 8: postqueue's "Mail system is down" reaches /metrics, not just the CLI."""

    async def test_stopped_postfix_is_a_metric(
        self, postfix: PrivatePostfix, tmp_path: Path
    ) -> None:
        """Stopped: mailwatch_source_warning{kind="mail_system_down"} 1; started again: 0."""
        config = tmp_path / "mailwatch.toml"
        config.write_text(
            '[store]\npath = "mw.db"\n'
            f'[sources.mta1]\ntype = "postfix"\nconfig_dir = "{postfix.config_dir}"\n'
        )
        settings = load(config)
        postfix.inject([make_message("Court results")])
        postfix.wait_for_queue(1)
        with Store(settings.store.path) as store:
            service = Service(
                settings, store, [PostfixSource("mta1", config_dir=postfix.config_dir)]
            )
            registry = CollectorRegistry(auto_describe=False)
            registry.register(MailwatchCollector(lambda: service.snapshot))
            labels = {"source": "mta1", "kind": "mail_system_down"}
            await service.probe_once(service.sources[0])
            assert (
                _metric(generate_latest(registry).decode(), "mailwatch_source_warning", **labels)
                == 0
            )
            postfix.stop()
            try:
                assert (await service.probe_once(service.sources[0])).ok
                text = generate_latest(registry).decode()
            finally:
                postfix.start()
            assert _metric(text, "mailwatch_source_warning", **labels) == 1
            assert _metric(text, "mailwatch_probe_up", source="mta1") == 1  # the queue is seen
            await service.probe_once(service.sources[0])
            assert (
                _metric(generate_latest(registry).decode(), "mailwatch_source_warning", **labels)
                == 0
            )
