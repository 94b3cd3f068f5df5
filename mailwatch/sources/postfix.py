"""The Postfix queue source: ``postqueue -j`` for the listing, queue files for headers.

Cost grows with what changed, not with the backlog: headers are read only for messages this
source has not seen before (cache keyed by source + queue id + arrival time, because Postfix
reuses queue ids), and entries of messages that left the queue are dropped from the cache.
The listing is consumed as it streams by a worker thread that also reads and decodes new
messages' headers (:mod:`mailwatch.sources.postfix_listing`), overlapping postqueue's work.
Only the headers mailwatch uses are kept when ``keep_headers`` is given (see
:func:`mailwatch.core.headers.keep_set`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path

import structlog

from mailwatch.core.headers import keep_set
from mailwatch.core.model import Message, QueueObservation
from mailwatch.errors import SourceCommandFailed, SourceError, SourceTimeout, SourceUnavailable
from mailwatch.sources import process
from mailwatch.sources.postfix_listing import (
    HEADER_READ_STEPS,
    QUEUE_NAMES,
    CachedHeaders,
    Listed,
    ListingWorker,
    message_key,
    read_queue_headers,
)
from mailwatch.sources.process import Child

__all__ = [
    "HEADER_READ_STEPS",
    "QUEUE_NAMES",
    "CachedHeaders",
    "PostfixSource",
    "message_key",
    "read_queue_headers",
]

log = structlog.get_logger(__name__)

STDERR_LIMIT = 4096  # bounds memory if a broken command floods stderr
PIPE_SIZE = 1 << 20  # lets postqueue run ahead of the worker (best effort, Linux)
WORKER_GRACE = 5.0  # s: a stopped listing worker returns within POLL_MS unless a read hangs


def _grow_pipe(fd: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


class PostfixSource:
    """Probes one Postfix instance (``postqueue -c CONFIG_DIR -j``)."""

    def __init__(
        self,
        name: str,
        *,
        config_dir: Path | None = None,
        queue_dir: Path | None = None,
        postqueue: str = "postqueue",
        postconf: str = "postconf",
        timeout: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        header_cache: MutableMapping[str, CachedHeaders] | None = None,
        keep_headers: Iterable[str] | None = None,
    ) -> None:
        """A source named ``name``; see the class docstring for the commands it runs.

        ``keep_headers`` names the headers class rules use: with it, only those and the
        essential ones (:data:`mailwatch.core.headers.ESSENTIAL_HEADERS`) are kept and decoded;
        without it, every header but the trace headers.
        """
        self._name = name
        self.config_dir = config_dir
        self._queue_dir = queue_dir
        self.postqueue = postqueue
        self.postconf = postconf
        self.timeout = timeout
        self._clock = clock
        self.header_cache: MutableMapping[str, CachedHeaders] = (
            header_cache if header_cache is not None else {}
        )
        self.keep = None if keep_headers is None else keep_set(keep_headers)
        # The last listing's lines and what they gave: a message that did not change prints
        # the same line again, and a dict lookup costs far less than parsing JSON.
        self._lines: dict[bytes, Listed] = {}
        self._relayhost: str | None = None

    @property
    def name(self) -> str:
        """The configured source name."""
        return self._name

    def _config_args(self) -> list[str]:
        return ["-c", str(self.config_dir)] if self.config_dir else []

    def _failed(self, argv: list[str], returncode: int, stderr: bytes) -> SourceCommandFailed:
        text = stderr.decode("utf-8", "replace").strip()
        return SourceCommandFailed(
            self.name, f"{argv[0]} exited {returncode}: {text}", returncode, text
        )

    async def _start(self, argv: list[str], stdout_fd: int | None = None) -> Child:
        try:
            return await Child.start(argv, stdout_fd=stdout_fd, stderr_limit=STDERR_LIMIT)
        except OSError as exc:
            raise SourceUnavailable(self.name, f"cannot run {argv[0]}: {exc.strerror}") from exc

    def _timed_out(self, argv: list[str]) -> SourceTimeout:
        return SourceTimeout(self.name, f"{argv[0]} took longer than {self.timeout:g}s")

    async def _run(self, argv: list[str]) -> bytes:
        """Run ``argv`` under the timeout (its process group killed on timeout); its stdout."""
        try:
            returncode, out, stderr = await process.run(
                argv, self.timeout, stderr_limit=STDERR_LIMIT
            )
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            raise self._timed_out(argv) from exc
        except OSError as exc:
            raise SourceUnavailable(self.name, f"cannot run {argv[0]}: {exc.strerror}") from exc
        if returncode != 0:
            raise self._failed(argv, returncode, stderr)
        return out

    async def queue_dir(self) -> Path:
        """The instance's ``queue_directory`` (asked of ``postconf`` once, then remembered)."""
        if self._queue_dir is None:
            out = await self._run([self.postconf, *self._config_args(), "-h", "queue_directory"])
            self._queue_dir = Path(out.decode().strip())
        return self._queue_dir

    async def relayhost(self) -> str | None:
        """The instance's ``relayhost`` (``postconf -xh relayhost``), ``None`` when empty.

        Asked at every probe (a ``postfix reload`` may change it), alongside the listing.
        """
        out = await self._run([self.postconf, *self._config_args(), "-xh", "relayhost"])
        return out.decode("utf-8", "replace").strip() or None

    async def _relayhost_or_last(self) -> str | None:
        """:meth:`relayhost`, or the last one known when postconf fails (the probe goes on)."""
        try:
            self._relayhost = await self.relayhost()
        except SourceError as exc:
            log.warning("relayhost_unknown", source=self.name, error=exc.detail)
        return self._relayhost

    async def _listing(
        self, worker_of: Callable[[int], ListingWorker]
    ) -> tuple[ListingWorker, str]:
        """Run ``postqueue -j`` into a pipe that a :class:`ListingWorker` thread consumes.

        Returns the finished worker and postqueue's stderr text.
        """
        argv = [self.postqueue, *self._config_args(), "-j"]
        try:
            read_fd, write_fd = os.pipe()
        except OSError as exc:  # out of descriptors: as if the command could not be started
            raise SourceUnavailable(self.name, f"cannot run {argv[0]}: {exc.strerror}") from exc
        try:
            _grow_pipe(read_fd)
            child = await self._start(argv, write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child has its copy: EOF comes when it exits
        worker = worker_of(read_fd)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def work() -> None:
            failure: BaseException | None = None
            try:
                worker.run()
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                failure = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_settle, done, failure)

        threading.Thread(target=work, name=f"postqueue-{self.name}", daemon=True).start()
        try:
            async with asyncio.timeout(self.timeout):
                returncode = await child.finish()
                await asyncio.shield(done)
        except BaseException as exc:
            worker.stop()  # stops reading within POLL_MS, even if a grandchild holds the pipe
            await child.abandon()  # the whole group killed; bounded waits only
            with contextlib.suppress(Exception):
                async with asyncio.timeout(WORKER_GRACE):
                    await asyncio.shield(done)
            if isinstance(exc, TimeoutError):
                raise self._timed_out(argv) from exc
            raise
        child.close()
        stderr = child.stderr
        if returncode != 0:
            raise self._failed(argv, returncode, stderr)
        return worker, stderr.decode("utf-8", "replace")

    async def probe(self) -> QueueObservation:
        """List the queue, read headers of new messages only, and return what was seen.

        As root, postqueue reads the queue directly when the mail system is down and says so
        on stderr; that warning is kept: the queue is visible but nothing is moving.
        """
        loop = asyncio.get_running_loop()
        finding: list[asyncio.Task[Path]] = []  # postconf, run once a new message needs it
        probing = True
        relay = loop.create_task(self._relayhost_or_last())

        def find_queue_dir() -> None:
            if probing and not finding:
                finding.append(loop.create_task(self.queue_dir()))

        try:
            worker, stderr = await self._listing(
                lambda fd: ListingWorker(
                    self.name, fd, self._lines, self.header_cache, lambda: self._queue_dir,
                    lambda: _call_soon(loop, find_queue_dir), self.keep,
                )
            )  # fmt: skip
            observed_at = self._clock()
            if worker.deferred:  # listed before postconf answered: read them now
                find_queue_dir()
                await finding[0]
                try:
                    async with asyncio.timeout(self.timeout):  # a hung file system
                        await asyncio.to_thread(worker.read_deferred)
                except TimeoutError as exc:
                    raise SourceTimeout(
                        self.name, f"reading queue files took longer than {self.timeout:g}s"
                    ) from exc
            relayhost = await relay
        finally:
            probing = False
            for task in [*finding, relay]:  # never left running; errors matter only if awaited
                task.cancel()
            await asyncio.wait([*finding, relay], timeout=process.KILL_GRACE + 1)
        if isinstance(worker.error, PermissionError):
            raise SourceUnavailable(
                self.name,
                f"cannot read queue files under {self._queue_dir} ({worker.error.strerror}); "
                "run mailwatch as root or give it read access to the queue",
            ) from worker.error
        if worker.error is not None:
            raise SourceError(self.name, f"reading queue files: {worker.error}") from worker.error
        for problem in worker.problems[:10]:
            log.warning(
                "postqueue_line_malformed",
                source=self.name,
                line=problem.line_number,
                reason=problem.reason,
            )
        self._lines = worker.lines
        present = {listed.key for listed in worker.lines.values()}
        for stale in [k for k in self.header_cache if k not in present]:
            del self.header_cache[stale]
        messages: list[Message] = [m for m in worker.messages if m is not None]
        return QueueObservation(
            source=self.name,
            observed_at=observed_at,
            messages=tuple(messages),
            malformed=len(worker.problems),
            headers_read=worker.headers_read,
            warnings=_warnings(stderr),
            relayhost=relayhost,
        )


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(callback)


def _settle(done: asyncio.Future[None], failure: BaseException | None) -> None:
    if done.done():
        return
    if failure is None:
        done.set_result(None)
    else:
        done.set_exception(failure)


def _warnings(stderr: str) -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(
            line.split("warning:", 1)[1].strip()
            for line in stderr.splitlines()
            if "warning:" in line
        )
    )
