"""The Postfix queue source: the queue directories read incrementally, ``postqueue -j`` to check.

Between full listings a probe reads the queue directories (:mod:`.postfix_qdir`): only changed
directories listed, only new or changed queue files and defer logs read, so a rescan costs
what changed. A full listing (``postqueue -j`` consumed as it streams by a thread that reads new
messages' headers, :mod:`.postfix_listing`) is taken **at the first scan** (and after an error
reading the directories) and seeds the incremental view, once the next probe has stamped every
queue file (reading every file directly instead cost this process about twice the CPU on a
2-core machine: the envelope walk in Python, against showq's C working in parallel); **every**
``full_listing_every``, as a reconciliation (differences with the incremental view logged as
a count, those messages re-read at the next scan, the listing being the result but with the
incremental view's objects where nothing differs); and at every scan when that is zero.

A changed (or vanished) ``main.cf`` also brings a listing; ``postconf -xh relayhost`` is asked
only then. "Mail system is down": postqueue's warning, or between listings ``master.pid``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import structlog

from mailwatch.core.headers import keep_set
from mailwatch.core.model import Message, QueueObservation
from mailwatch.errors import SourceCommandFailed, SourceError, SourceTimeout, SourceUnavailable
from mailwatch.parsing.postqueue import listing_warnings
from mailwatch.sources import postfix_state as state
from mailwatch.sources import process
from mailwatch.sources.postfix_listing import Listed, ListingWorker, message_key
from mailwatch.sources.postfix_qdir import QueueDirWatcher
from mailwatch.sources.process import Child, call_soon, grow_pipe, settle
from mailwatch.sources.queuefile_headers import (
    HEADER_READ_STEPS,
    QUEUE_NAMES,
    CachedHeaders,
    read_queue_headers,
)
from mailwatch.sources.threadscan import scan_in_thread

__all__ = ["HEADER_READ_STEPS", "QUEUE_NAMES", "CachedHeaders", "PostfixSource", "message_key",
           "read_queue_headers"]  # fmt: skip

log = structlog.get_logger(__name__)

STDERR_LIMIT = 4096  # bounds memory if a broken command floods stderr
WORKER_GRACE = 5.0  # s: a stopped listing worker returns within POLL_MS unless a read hangs


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
        full_listing_every: float = 600.0,
    ) -> None:
        """A source named ``name``; see the class docstring for the commands it runs.

        ``keep_headers`` names the headers class rules use: with it, only those and the
        essential ones (:data:`mailwatch.core.headers.ESSENTIAL_HEADERS`) are kept and decoded;
        without it, every header but the trace headers. ``full_listing_every`` (seconds): how
        often ``postqueue -j`` checks the incremental view (0: every scan, no directories read).
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
        # The last listing's lines and what they gave (an unchanged line is not parsed again).
        self._lines: dict[bytes, Listed] = {}
        self._relayhost: str | None = None
        self._main_cf_mtime: int | None = None
        self.full_listing_every = full_listing_every
        self._watcher: QueueDirWatcher | None = None
        self._listed_at: float | None = None  # monotonic time of the last full view
        self._listed_cf: int | None = None  # main.cf's mtime then (changed: list again)
        # The first listing's messages and start (ns), until the next probe seeds the watcher.
        self._unseeded: tuple[Sequence[Message], int] | None = None
        self.reconcile_differences = 0  # messages reconciliations found different (in total)

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

        Asked when ``main.cf`` changed (``postfix reload`` may follow), alongside the probe.
        """
        out = await self._run([self.postconf, *self._config_args(), "-xh", "relayhost"])
        return out.decode("utf-8", "replace").strip() or None

    def _main_cf(self) -> int | None:
        return state.mtime_ns((self.config_dir or Path("/etc/postfix")) / "main.cf")

    async def _relayhost_or_last(self) -> str | None:
        """:meth:`relayhost` when main.cf changed; else (or when postconf fails) the last."""
        mtime = self._main_cf()
        if mtime is not None and mtime == self._main_cf_mtime:
            return self._relayhost
        try:
            self._relayhost = await self.relayhost()
            self._main_cf_mtime = mtime
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
            grow_pipe(read_fd)
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
                loop.call_soon_threadsafe(settle, done, failure)

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
        """The queue now: by its directories, or by ``postqueue -j`` when that is due."""
        if self.full_listing_every <= 0:
            return await self._probe_listing()
        if self._watcher is None or self._listed_at is None:
            return await self._first_listing()
        due = time.monotonic() - self._listed_at >= self.full_listing_every
        if due or self._main_cf() != self._listed_cf:  # a config change (or gone): a listing
            return await self._reconcile(self._watcher)
        try:
            return await self._probe_directories(self._watcher)
        except SourceTimeout:
            raise
        except (SourceError, OSError) as exc:  # a directory error: the listing instead
            log.warning("queue_directories_unreadable", source=self.name, error=str(exc))
            self._watcher = None
            return await self._first_listing()

    async def _first_listing(self) -> QueueObservation:
        """List the queue; the next probe stamps every queue file and seeds the watcher.

        Not stamped during the listing: the ``lstat`` of every file competed with it for this
        process's CPU (an eighth of a first scan); the next probe lists the directories anyway.
        """
        started, main_cf = time.time_ns(), self._main_cf()
        observation = await self._probe_listing(keep_lines=False)
        watcher = QueueDirWatcher(  # (the listing asked postconf meanwhile, if it read a file)
            self.name, os.fspath(await self.queue_dir()), self.header_cache, self.keep
        )
        self._unseeded = (observation.messages, started)
        self._watcher, self._listed_at, self._listed_cf = watcher, time.monotonic(), main_cf
        self._lines = {}  # lines map to messages for listing every scan; the watcher has them
        return observation

    async def _seed(self, watcher: QueueDirWatcher) -> None:
        """After a first listing: stamp every queue file, then take the listing as their content.

        A file whose stamp is not older than the listing's start (it may have changed since),
        or that is in another queue now, is read by the scan that follows
        (:meth:`QueueDirWatcher.seed`). Raises as :meth:`_scan_directories` does.
        """
        if self._unseeded is None:
            return
        listing, started = self._unseeded
        await self._scan_directories(watcher, read=False)
        watcher.seed(listing, started)
        self._unseeded = None

    async def _reconcile(self, watcher: QueueDirWatcher) -> QueueObservation:
        """A full listing, compared with the incremental view (differences counted)."""
        try:
            await self._seed(watcher)
            seen = await self._scan_directories(watcher)
        except (SourceError, OSError) as exc:
            log.warning("queue_directories_unreadable", source=self.name, error=str(exc))
            self._watcher = None
            return await self._first_listing()
        main_cf = self._main_cf()
        observation = await self._probe_listing(keep_lines=False)
        self._listed_at, self._listed_cf = time.monotonic(), main_cf
        differing = state.differences(observation.messages, seen)
        for queue_id in differing:
            watcher.forget(queue_id)
        self.reconcile_differences += len(differing)
        log.info("postfix_reconciled", source=self.name, differences=len(differing))
        self._lines = {}  # the watcher keeps the messages: see _first_listing
        messages = state.unchanged_objects(observation.messages, seen, differing)
        return dataclasses.replace(observation, messages=messages, reconciled=len(differing))

    async def _scan_directories(
        self, watcher: QueueDirWatcher, *, read: bool = True
    ) -> list[Message]:
        try:
            return await scan_in_thread(self.name, watcher, self.timeout,
                                        "reading the queue directories",
                                        lambda: watcher.scan(read=read))  # fmt: skip
        except PermissionError as exc:
            raise SourceUnavailable(
                self.name,
                f"cannot read the queue under {self._queue_dir} ({exc.strerror}); "
                "run mailwatch as root or give it read access to the queue",
            ) from exc

    async def _probe_directories(self, watcher: QueueDirWatcher) -> QueueObservation:
        """The queue by its directories (:class:`QueueDirWatcher`): what changed is read."""
        relay = asyncio.get_running_loop().create_task(self._relayhost_or_last())
        try:
            await self._seed(watcher)
            messages = await self._scan_directories(watcher)
            relayhost = await relay
        finally:
            relay.cancel()
            await asyncio.wait([relay], timeout=process.KILL_GRACE + 1)
        if watcher.changes:
            present = {message.key for message in messages}
            for stale in [k for k in self.header_cache if k not in present]:
                del self.header_cache[stale]
        down = state.mail_system_down(watcher.queue_dir)
        return QueueObservation(
            source=self.name,
            observed_at=self._clock(),
            messages=tuple(messages),
            headers_read=watcher.headers_read,
            warnings=(down,) if down else (),
            relayhost=relayhost,
        )

    async def _probe_listing(self, *, keep_lines: bool = True) -> QueueObservation:
        """List the queue, read headers of new messages only, and return what was seen.

        As root, postqueue reads the queue directly when the mail system is down and says so
        on stderr; that warning is kept: the queue is visible but nothing is moving. Without
        ``keep_lines`` (the watcher keeps the messages) the lines are not kept for the next.
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
                    lambda: call_soon(loop, find_queue_dir), self.keep, keep_lines=keep_lines,
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
        messages: list[Message] = [m for m in worker.messages if m is not None]
        present = {message.key for message in messages}
        for stale in [k for k in self.header_cache if k not in present]:
            del self.header_cache[stale]
        return QueueObservation(
            source=self.name,
            observed_at=observed_at,
            messages=tuple(messages),
            malformed=len(worker.problems),
            headers_read=worker.headers_read,
            warnings=listing_warnings(stderr),
            relayhost=relayhost,
        )
