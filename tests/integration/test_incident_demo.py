"""``scripts/demo --incident`` (``bench/replay.py --demo``): it plays, and Ctrl-C cleans up.

A tiny demo is started as a user would (a subprocess); once it prints the status page URL the
page answers; SIGINT then stops every daemon it started (both Postfix masters, Dovecot,
Prometheus, Alertmanager, mailwatch) and removes its working directory.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.postfix, pytest.mark.imap, pytest.mark.prometheus,
              pytest.mark.alertmanager]  # fmt: skip
REPO = Path(__file__).resolve().parents[2]


def _pids_of(root: Path) -> set[int]:
    """Processes started for the demo: by their command line, and the daemons' pid files."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(root).encode() in (entry / "cmdline").read_bytes():
                    pids.add(int(entry.name))
            except OSError:
                continue
    for pid_file in [*root.glob("*/spool/pid/master.pid"), root / "dovecot/run/master.pid"]:
        try:
            pids.add(int(pid_file.read_text().strip()))
        except (OSError, ValueError):
            continue
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status").read_text()
    return "State:\tZ" not in status


def test_ctrl_c_stops_every_daemon_and_removes_the_directory() -> None:
    """URL printed, page served; after SIGINT no demo process remains and the dir is gone."""
    demo = subprocess.Popen(
        [sys.executable, str(REPO / "bench/replay.py"), "--demo", "--messages", "40",
         "--outage", "60", "--probe", "2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("Ctrl-C stops" in x for x in lines):
            line = demo.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        text = "".join(lines)
        url = re.search(r"status page: (\S+)", text)
        root = re.search(r"working directory \(removed on exit\): (\S+)", text)
        assert url, text
        assert root, text
        assert "export MAILWATCH_CONFIG=" in text
        for command in ("stuck", "shape", "alerts", "ack"):
            assert f"mailwatch {command} " in text
        with urllib.request.urlopen(url.group(1), timeout=10) as page:  # noqa: S310
            assert page.status == 200
        workdir = Path(root.group(1))
        started = _pids_of(workdir)
        assert len(started) >= 5, started  # 2 Postfix, Dovecot, Prometheus, Alertmanager, mailwatch
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=90)
    finally:
        if demo.poll() is None:  # a failed assertion: still clean up as the demo would
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(90)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
    assert demo.returncode == 130, rest
    assert "stopping" in rest
    assert not workdir.exists()
    assert not [pid for pid in started if _alive(pid)]
