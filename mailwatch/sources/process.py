"""Child processes that cannot hang a probe: own process group, killed as a group, bounded waits.

A source command (``postqueue``, ``postconf``, ``exim``) runs in a new session, so it and
everything it forks share one process group. Its output pipes are created here and read through
transports this module owns, never through asyncio's subprocess pipes: on Python 3.11,
``Process.wait()`` returns only once every pipe asyncio manages has reached EOF, so a grandchild
that inherited stdout or stderr (a wrapper script's ``sleep &``) made ``wait()`` after ``kill()``
hang for as long as that grandchild lived. Here:

* :meth:`Child.finish` waits for the exit and for EOF on the pipes (callers bound it with their
  timeout);
* :meth:`Child.abandon` (on timeout or cancellation) sends SIGKILL to the whole group, waits at
  most :data:`KILL_GRACE` seconds for the exit, and closes the pipes without waiting for EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)

KILL_GRACE = 2.0
"""Seconds to wait for a killed process group's leader to be reaped before giving up on it."""

_REAPING: set[asyncio.Future[None]] = set()  # strong references: running reaps are not lost


class _Collector(asyncio.Protocol):
    """Collects a pipe's bytes (the first ``limit`` of them) until EOF."""

    def __init__(self, limit: int | None, eof: asyncio.Future[None]) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.eof = eof

    def data_received(self, data: bytes) -> None:
        if self.limit is not None:
            data = data[: max(0, self.limit - self.size)]
        if data:
            self.parts.append(data)
            self.size += len(data)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.eof.done():
            self.eof.set_result(None)

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)


@dataclass
class Child:
    """One running command; see the module docstring."""

    proc: asyncio.subprocess.Process
    collectors: dict[str, _Collector]
    transports: list[asyncio.ReadTransport] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        argv: list[str],
        *,
        stdout_fd: int | None = None,
        stderr_limit: int | None = 4096,
        stdout_limit: int | None = None,
    ) -> Child:
        """Start ``argv`` in its own session; ``stdout_fd``: give it this descriptor as stdout.

        Without ``stdout_fd`` its stdout is collected (``stdout_limit`` bytes at most). Its
        stderr is always collected, up to ``stderr_limit`` bytes (the rest is read and
        dropped). Raises :class:`OSError` when it cannot be started.
        """
        loop = asyncio.get_running_loop()
        pipes: dict[str, tuple[int, int, int | None]] = {}  # name → (read, write, limit)
        try:
            if stdout_fd is None:
                read, write = os.pipe()
                pipes["stdout"] = (read, write, stdout_limit)
            read, write = os.pipe()
            pipes["stderr"] = (read, write, stderr_limit)
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout_fd if stdout_fd is not None else pipes["stdout"][1],
                stderr=pipes["stderr"][1],
                start_new_session=True,
            )
        except BaseException:
            for read, write, _ in pipes.values():
                os.close(read)
                os.close(write)
            raise
        child = cls(proc, {})
        for _, write, _ in pipes.values():
            os.close(write)  # the child has its copy: EOF comes when every holder has exited
        unwrapped = [read for read, _, _ in pipes.values()]
        try:
            for name, (read, _, limit) in pipes.items():
                collector = _Collector(limit, loop.create_future())
                pipe = os.fdopen(read, "rb", buffering=0)
                unwrapped.remove(read)
                try:
                    transport, _ = await loop.connect_read_pipe(
                        lambda c=collector: c,  # type: ignore[misc]
                        pipe,
                    )
                except BaseException:
                    pipe.close()
                    raise
                child.collectors[name] = collector
                child.transports.append(transport)
        except BaseException:
            # Cancelled (or out of resources) after the child started: it must not outlive
            # us unreaped (its transport would be garbage-collected later, anywhere).
            for read in unwrapped:
                os.close(read)
            await child.abandon()
            raise
        return child

    @property
    def pid(self) -> int:
        """The process id (and process group id)."""
        return self.proc.pid

    @property
    def stdout(self) -> bytes:
        """Collected stdout (empty when it went to a descriptor given to :meth:`start`)."""
        collector = self.collectors.get("stdout")
        return collector.data if collector else b""

    @property
    def stderr(self) -> bytes:
        """Collected stderr (at most the limit given to :meth:`start`)."""
        return self.collectors["stderr"].data

    async def finish(self) -> int:
        """Wait for EOF on the collected pipes and for the exit; the return code (unbounded)."""
        for collector in self.collectors.values():
            await asyncio.shield(collector.eof)
        returncode = await self.proc.wait()
        await asyncio.sleep(0)  # let asyncio close its process transport (scheduled at exit)
        return returncode

    def kill_group(self) -> None:
        """SIGKILL to the whole process group (whatever is left of it)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    async def abandon(self) -> None:
        """Kill the group, wait at most :data:`KILL_GRACE` s for the exit, close the pipes.

        The wait runs as a task of its own, so a cancellation that arrives meanwhile (the
        caller's caller giving up too) does not leave the child unreaped: it is still waited
        for, within the same bound, before the cancellation is passed on.
        """
        self.kill_group()
        reaping = asyncio.ensure_future(self._reap())
        _REAPING.add(reaping)
        reaping.add_done_callback(_REAPING.discard)
        try:
            await asyncio.shield(reaping)
        except asyncio.CancelledError:
            await asyncio.wait([reaping])  # bounded: _reap gives up after KILL_GRACE
            raise

    async def _reap(self) -> None:
        try:
            async with asyncio.timeout(KILL_GRACE):
                await self.proc.wait()
            await asyncio.sleep(0)  # as in finish()
        except TimeoutError:
            log.error("child_not_reaped", pid=self.proc.pid, grace_seconds=KILL_GRACE)
        finally:
            self.close()

    def close(self) -> None:
        """Close the pipes (no waiting for EOF)."""
        for transport in self.transports:
            transport.close()


async def run(
    argv: list[str], within: float, *, stderr_limit: int | None = 4096
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` to its end within ``within`` seconds: (return code, stdout, stderr).

    Raises :class:`TimeoutError` (after killing its process group) or :class:`OSError`. On
    cancellation the group is killed too.
    """
    child = await Child.start(argv, stderr_limit=stderr_limit)
    try:
        async with asyncio.timeout(within):
            returncode = await child.finish()
    except BaseException:
        await child.abandon()
        raise
    child.close()
    return returncode, child.stdout, child.stderr


PIPE_SIZE = 1 << 20
"""What :func:`grow_pipe` asks for: lets a command's output run ahead of its reader."""


def grow_pipe(fd: int, size: int = PIPE_SIZE) -> None:
    """Enlarge a pipe's buffer to ``size`` bytes (best effort, Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)


def call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """``loop.call_soon_threadsafe(callback)`` from a thread, unless the loop has closed."""
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(callback)


def settle(done: asyncio.Future[None], failure: BaseException | None) -> None:
    """Finish ``done`` with ``failure`` (or success), unless it is already finished."""
    if done.done():
        return
    if failure is None:
        done.set_result(None)
    else:
        done.set_exception(failure)
