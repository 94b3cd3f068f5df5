"""``scan_in_thread``: a directory scan in a thread, bounded even when it ignores its deadline."""

from __future__ import annotations

import threading

import pytest

from mailwatch.errors import SourceTimeout
from mailwatch.sources.threadscan import scan_in_thread


class FakeStuckWatcher:
    """Fault injection: a scan that never checks its deadline, only ``stop``."""

    def __init__(self) -> None:
        self.deadline = 0.0
        self.stopped = threading.Event()

    def stop(self) -> None:
        """Ask the scan to stop."""
        self.stopped.set()

    def scan(self) -> list[str]:
        """Block until stopped (up to 10 s)."""
        self.stopped.wait(10)
        return []


async def test_a_scan_past_its_deadline_is_stopped_and_a_timeout() -> None:
    """The thread is asked to stop and the source reports what took too long."""
    watcher = FakeStuckWatcher()
    with pytest.raises(SourceTimeout, match=r"reading the spool took longer than 0\.05s"):
        await scan_in_thread("mx1", watcher, 0.05, "reading the spool", watcher.scan)
    assert watcher.stopped.is_set()
    assert watcher.deadline > 0


async def test_a_scan_in_time_gives_its_result() -> None:
    """A scan that finishes returns what it found, its deadline set from now."""
    watcher = FakeStuckWatcher()
    watcher.stopped.set()
    assert await scan_in_thread("mx1", watcher, 5, "reading the spool", lambda: ["a"]) == ["a"]
