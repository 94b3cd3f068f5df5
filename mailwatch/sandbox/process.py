"""Start a server process for a sandbox and wait until its ``/-/ready`` URL answers.

Shared by the private Prometheus and Alertmanager: both log to a file (never to a pipe the
caller might wait on) and are ready when ``GET /-/ready`` returns 200.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path


def launch(argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdin closed and stdout/stderr appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )


def wait_ready(
    process: subprocess.Popen[bytes],
    url: str,
    timeout: float,
    fail: Callable[[str], Exception],
) -> None:
    """Return once ``url`` answers 200; raise ``fail(reason)`` if the process dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise fail("exited")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise fail("never became ready")
