"""The Exim queue source: the spool read directly, ``exim -bpru`` to check (and as fallback).

By default a probe reads the spool (:mod:`.exim_spool`): only changed directories listed,
only new or rewritten ``-H`` files and appended message logs read, so a rescan costs what
changed. Every ``full_listing_every`` a reconciliation compares that view with
``exim [-C CONFIG] -bpru`` (differences counted, re-read at once). The spool directory is
``spool_dir`` or what ``exim -bP spool_directory`` says; reading it needs root or the Exim
user's group. When it cannot be read, the probe says why (a warning and the health) and
lists instead, trying the spool again every ``full_listing_every``; ``0`` lists always.

The listing (:meth:`EximSource.probe_listing`) runs ``exim -bpru`` (unsorted, undelivered
recipients only), then, only for ids it has not seen, ``exim -Mvh ID`` (the ``-H`` file:
exact arrival and headers) and ``exim -Mvl ID`` (the message log: the last defer reason per
recipient), at most ``concurrency`` at a time; a message gone before ``-Mvh`` is skipped. Up
to ``log_refresh`` messages without a reason yet (oldest first) have their log re-read on
each later probe. Frozen messages are reported in queue ``"frozen"`` (stuck at once, see
:data:`mailwatch.core.sla.STUCK_AT_ONCE`), all others in queue ``"queue"``. Keys are
``source/queue_id`` (:func:`.exim_cache.message_key`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable, Coroutine, Iterable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from mailwatch.core.headers import TRACE_HEADERS, keep_set, normalise_subject, parse_header_block
from mailwatch.core.model import Message, QueueObservation
from mailwatch.errors import SourceCommandFailed, SourceError, SourceTimeout, SourceUnavailable
from mailwatch.parsing.exim import (
    EximEntry,
    Malformed,
    MessageLog,
    SpoolHeader,
    arrival_from_id,
    parse_message_log,
    parse_queue,
    parse_spool_header,
)
from mailwatch.sources import process
from mailwatch.sources.exim_cache import (
    CachedSpool,
    build_message,
    cached_from_message,
    listing_differences,
    message_key,
)
from mailwatch.sources.exim_spool import SpoolWatcher
from mailwatch.sources.threadscan import scan_in_thread

__all__ = ["CachedSpool", "EximSource", "cached_from_message", "message_key"]

log = structlog.get_logger(__name__)

STDERR_LIMIT = 4096  # bounds memory if a broken command floods stderr


@dataclass(frozen=True, slots=True)
class _Result:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return f"{self.stdout.decode('utf-8', 'replace')}\n{self.stderr}".strip()

    @property
    def denied(self) -> bool:
        """Exim's refusal to a non-admin caller (not e.g. "Cannot open main log…: Permission…")."""
        return any(
            line.strip().lower() in {"exim: permission denied", "permission denied"}
            for line in self.text.splitlines()
        )


class EximSource:
    """Probes one Exim instance (``exim -C CONFIG -bpru``; ``config=None`` means its default)."""

    def __init__(
        self,
        name: str,
        *,
        exim: str = "exim",
        config: Path | None = None,
        timeout: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        header_cache: MutableMapping[str, CachedSpool] | None = None,
        concurrency: int = 4,
        read_logs: bool = True,
        log_refresh: int = 8,
        spool_dir: Path | None = None,
        full_listing_every: float = 600.0,
        keep_headers: Iterable[str] | None = None,
    ) -> None:
        self._name = name
        self.exim = exim
        self.config = config
        self.timeout = timeout
        self._clock = clock
        self.header_cache: MutableMapping[str, CachedSpool] = (
            header_cache if header_cache is not None else {}
        )
        self.concurrency = max(1, concurrency)
        self.read_logs = read_logs
        self.log_refresh = max(0, log_refresh)
        self.spool_dir = spool_dir
        self.full_listing_every = full_listing_every
        self._watcher: SpoolWatcher | None = None
        self._listed_at = 0.0  # monotonic time of the last listing (or of the first spool scan)
        self._spool_problem: str | None = None  # why the spool is not read, if it is not
        self._spool_retry_at = 0.0
        self.keep = None if keep_headers is None else keep_set(keep_headers)
        self.reconcile_differences = 0  # messages reconciliations found different (in total)

    @property
    def name(self) -> str:
        """The configured source name."""
        return self._name

    def _argv(self, *args: str) -> list[str]:
        config = ["-C", str(self.config)] if self.config else []
        return [self.exim, *config, *args]

    async def _run(self, argv: list[str]) -> _Result:
        """Run ``argv`` under the timeout (its process group killed on timeout or cancel)."""
        try:
            returncode, stdout, stderr = await process.run(
                argv, self.timeout, stderr_limit=STDERR_LIMIT
            )
        except TimeoutError as exc:
            option = next(a for a in reversed(argv) if a.startswith("-"))
            detail = f"{argv[0]} {option} took longer than {self.timeout:g}s"
            raise SourceTimeout(self.name, detail) from exc
        except OSError as exc:
            raise SourceUnavailable(self.name, f"cannot run {argv[0]}: {exc.strerror}") from exc
        return _Result(returncode, stdout, stderr.decode("utf-8", "replace"))

    def _failed(self, what: str, result: _Result) -> SourceError:
        """The typed error for a command that exited non-zero (``what``: command and option)."""
        if result.denied:
            return SourceUnavailable(
                self.name, f"{what}: permission denied; run mailwatch as root or an Exim admin"
            )
        detail = f"{what} exited {result.returncode}: {result.text}"
        return SourceCommandFailed(self.name, detail, result.returncode, result.text)

    async def list_queue(self) -> tuple[list[EximEntry], int, tuple[str, ...]]:
        """Run ``exim -bpru``: entries, the count of malformed blocks, and stderr warnings."""
        result = await self._run(self._argv("-bpru"))
        if result.returncode != 0:
            raise self._failed(f"{self.exim} -bpru", result)
        entries: list[EximEntry] = []
        problems: list[Malformed] = []
        for item in parse_queue(result.stdout):
            if isinstance(item, EximEntry):
                entries.append(item)
            else:
                problems.append(item)
        for problem in problems[:10]:
            log.warning(
                "exim_listing_malformed",
                source=self.name,
                line=problem.line_number,
                reason=problem.reason,
            )
        warnings = tuple(dict.fromkeys(s.strip() for s in result.stderr.splitlines() if s.strip()))
        return entries, len(problems), warnings[:5]

    async def _read_log(self, queue_id: str) -> MessageLog:
        result = await self._run(self._argv("-Mvl", queue_id))
        if result.returncode == 0:
            return parse_message_log(result.stdout)
        if "message_logs option is false" in result.text:
            self.read_logs = False  # nothing to read for any message: stop asking
        elif result.denied:
            raise self._failed(f"{self.exim} -Mvl", result)
        return MessageLog()  # gone since the listing, or no log yet

    async def _read_spool(self, entry: EximEntry, observed_at: datetime) -> CachedSpool | None:
        """Headers, arrival and reasons of one message; ``None`` if it left the queue."""
        result = await self._run(self._argv("-Mvh", entry.queue_id))
        if result.returncode != 0:
            if "No such file or directory" in result.text:
                return None
            raise self._failed(f"{self.exim} -Mvh", result)
        spool = parse_spool_header(result.stdout, entry.queue_id)
        if isinstance(spool, Malformed):
            log.warning(
                "exim_spool_header_malformed",
                source=self.name,
                queue_id=entry.queue_id,
                reason=spool.reason,
            )
            arrival = arrival_from_id(entry.queue_id) or observed_at - timedelta(
                seconds=entry.age_seconds
            )
            spool = SpoolHeader(entry.queue_id, entry.sender, arrival, entry.frozen, (), b"")
        elif not spool.complete:
            log.warning("exim_spool_headers_truncated", source=self.name, queue_id=entry.queue_id)
        headers = parse_header_block(spool.header_block, skip=TRACE_HEADERS, keep=self.keep)
        message_log = await self._read_log(entry.queue_id) if self.read_logs else MessageLog()
        return CachedSpool(
            headers=headers,
            subject=normalise_subject(headers.get("Subject") or "", decoded=True),
            arrival=spool.arrival,
            reasons=tuple(message_log.reasons.items()),
            last_error=message_log.last_error,
        )

    async def _read_new(
        self, new: list[tuple[str, EximEntry]], observed_at: datetime
    ) -> tuple[int, set[str]]:
        """Read spool files of ``new`` messages into the cache: (headers read, keys gone)."""
        semaphore = asyncio.Semaphore(self.concurrency)
        gone: set[str] = set()

        async def one(key: str, entry: EximEntry) -> None:
            async with semaphore:
                cached = await self._read_spool(entry, observed_at)
            if cached is None:
                gone.add(key)
            else:
                self.header_cache[key] = cached

        await self._gather([one(key, entry) for key, entry in new])
        return len(new) - len(gone), gone

    async def _refresh_reasons(self, keyed: list[tuple[str, EximEntry]]) -> None:
        """Re-read the message log of up to ``log_refresh`` reason-less messages, oldest first."""
        if not self.read_logs or not self.log_refresh:
            return
        waiting = [
            (self.header_cache[key].arrival, key, entry.queue_id)
            for key, entry in keyed
            if key in self.header_cache and not self.header_cache[key].has_reason
        ]
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(key: str, queue_id: str) -> None:
            async with semaphore:
                message_log = await self._read_log(queue_id)
            if message_log.reasons or message_log.last_error:
                self.header_cache[key] = dataclasses.replace(
                    self.header_cache[key],
                    reasons=tuple(message_log.reasons.items()),
                    last_error=message_log.last_error,
                )

        await self._gather([one(key, qid) for _, key, qid in sorted(waiting)[: self.log_refresh]])

    @staticmethod
    async def _gather(jobs: list[Coroutine[object, object, None]]) -> None:
        """Run ``jobs`` together; on the first failure cancel the rest and raise that error."""
        try:
            async with asyncio.TaskGroup() as group:
                for job in jobs:
                    group.create_task(job)
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None

    async def probe(self) -> QueueObservation:
        """The queue now: from the spool (:mod:`.exim_spool`), or by the listing (module doc)."""
        if self.full_listing_every <= 0:
            return await self.probe_listing()
        watcher = await self._spool_watcher()
        if watcher is None:
            return await self._fallback()
        try:
            if time.monotonic() - self._listed_at >= self.full_listing_every:
                return await self._reconcile(watcher)
            return self._observed(watcher, await self._scan_spool(watcher))
        except SourceError:
            raise
        except OSError as exc:  # the spool turned unreadable: the listing, and why
            self._unusable(f"cannot read the spool {watcher.spool_dir} ({exc.strerror or exc})")
            return await self._fallback()

    async def _spool_watcher(self) -> SpoolWatcher | None:
        """The spool watcher; ``None`` while the spool cannot be read (tried again later)."""
        if self._watcher is not None:
            return self._watcher
        if self._spool_problem is not None and time.monotonic() < self._spool_retry_at:
            return None
        spool = self.spool_dir or await self._ask_spool_dir()
        if spool is None:
            return None
        try:
            os.listdir(spool / "input")
        except OSError as exc:
            self._unusable(f"cannot read the spool {spool} ({exc.strerror or exc})")
            return None
        self._watcher = SpoolWatcher(self.name, os.fspath(spool), self.header_cache, keep=self.keep)
        self._listed_at, self._spool_problem = time.monotonic(), None
        return self._watcher

    async def _ask_spool_dir(self) -> Path | None:
        """``exim -bP spool_directory``, asked once; ``None`` (and why) if Exim does not say."""
        result = await self._run(self._argv("-bP", "spool_directory"))
        name, equals, value = result.stdout.decode("utf-8", "replace").partition("=")
        if result.returncode != 0 or not equals or name.strip() != "spool_directory":
            self._unusable(f"exim -bP spool_directory exited {result.returncode}")
            return None
        self.spool_dir = Path(value.strip())
        return self.spool_dir

    def _unusable(self, why: str) -> None:
        self._watcher = None
        self._spool_retry_at = time.monotonic() + self.full_listing_every
        self._spool_problem = f"{why}: listing with exim -bpru instead"
        log.warning("exim_spool_unreadable", source=self.name, reason=self._spool_problem)

    async def _fallback(self) -> QueueObservation:
        observation = await self.probe_listing()
        problem = (self._spool_problem,) if self._spool_problem else ()
        return dataclasses.replace(observation, warnings=(*observation.warnings, *problem))

    async def _scan_spool(self, watcher: SpoolWatcher, *, all_logs: bool = False) -> list[Message]:
        watcher.read_logs = self.read_logs
        return await scan_in_thread(self.name, watcher, self.timeout, "reading the spool",
                                    lambda: watcher.scan(all_logs=all_logs))  # fmt: skip

    def _observed(self, watcher: SpoolWatcher, messages: list[Message]) -> QueueObservation:
        if watcher.changes:
            present = {message.key for message in messages}
            for stale in [k for k in self.header_cache if k not in present]:
                del self.header_cache[stale]
        return QueueObservation(
            source=self.name,
            observed_at=self._clock(),
            messages=tuple(messages),
            malformed=watcher.malformed,
            headers_read=watcher.headers_read,
        )

    async def _reconcile(self, watcher: SpoolWatcher) -> QueueObservation:
        """The spool (every message log checked) compared with ``exim -bpru``.

        Messages that differ are forgotten and read again at once; their count is the
        observation's ``reconciled`` (``mailwatch_source_reconcile_differences_total``). A
        message that arrives or leaves while the listing runs may count as one.
        """
        seen = await self._scan_spool(watcher, all_logs=True)
        headers_read = watcher.headers_read
        entries, _malformed, warnings = await self.list_queue()
        self._listed_at = time.monotonic()
        differing = listing_differences(entries, seen)
        for queue_id in differing:
            watcher.forget(queue_id)
        if differing:
            seen = await self._scan_spool(watcher)
        self.reconcile_differences += len(differing)
        log.info("exim_reconciled", source=self.name, differences=len(differing))
        observation = self._observed(watcher, seen)
        return dataclasses.replace(
            observation,
            headers_read=headers_read + observation.headers_read,
            warnings=warnings,
            reconciled=len(differing),
        )

    async def probe_listing(self) -> QueueObservation:
        """List the queue, read spool files of new messages only, and return what was seen."""
        entries, malformed, warnings = await self.list_queue()
        observed_at = self._clock()
        keyed = [(message_key(self.name, e.queue_id), e) for e in entries]
        new = [(key, e) for key, e in keyed if key not in self.header_cache]
        headers_read, gone = await self._read_new(new, observed_at) if new else (0, set())
        new_keys = {key for key, _ in new}
        await self._refresh_reasons([(k, e) for k, e in keyed if k not in new_keys])
        present = {key for key, _ in keyed} - gone
        for stale in [k for k in self.header_cache if k not in present]:
            del self.header_cache[stale]
        messages = tuple(
            build_message(self.name, key, entry, self.header_cache[key])
            for key, entry in keyed
            if key in self.header_cache
        )
        return QueueObservation(
            source=self.name,
            observed_at=observed_at,
            messages=messages,
            malformed=malformed,
            headers_read=headers_read,
            warnings=warnings,
        )
