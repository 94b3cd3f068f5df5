"""A blocking directory scan (Postfix queue, Exim spool) run in a thread, bounded in time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from mailwatch.errors import SourceTimeout

T = TypeVar("T")


class Stoppable(Protocol):
    """A watcher whose scan stops itself past ``deadline`` or when asked to."""

    deadline: float

    def stop(self) -> None:
        """Ask a running scan to stop soon."""


async def scan_in_thread(
    source: str, watcher: Stoppable, seconds: float, what: str, scan: Callable[[], T]
) -> T:
    """``scan()`` in a thread, with ``watcher`` stopping itself after ``seconds``.

    The thread ends at its own deadline; the extra second here only catches one that does
    not, and a :class:`SourceTimeout` says ``what`` took too long.
    """
    watcher.deadline = time.monotonic() + seconds
    try:
        async with asyncio.timeout(seconds + 1):
            return await asyncio.to_thread(scan)
    except TimeoutError as exc:  # the thread stops at its own deadline
        watcher.stop()
        raise SourceTimeout(source, f"{what} took longer than {seconds:g}s") from exc
