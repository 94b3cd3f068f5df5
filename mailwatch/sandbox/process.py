"""Process helpers shared by the sandboxes: start, wait until ready, stop, read the log.

The private Prometheus and Alertmanager log to a file (never to a pipe the caller might wait
on) and are ready when ``GET /-/ready`` returns 200; every sandbox reports its log's tail when
something fails.
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


def stop(process: subprocess.Popen[bytes] | None, grace: float = 10) -> None:
    """Terminate ``process`` and wait for it; kill it if it has not gone after ``grace``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file (``"(no log yet)"`` if there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log yet)"
