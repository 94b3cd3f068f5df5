"""The Exim queue source: ``exim -bpru`` for the listing, ``exim -Mvh``/``-Mvl`` per new message.

One probe runs ``exim [-C CONFIG] -bpru`` (unsorted, undelivered recipients only)::

    25m   413 1xXdsY-00068k-1a <om@probation.example>
              ppcs@justice.example

     0m   365 1xXdsY-000695-1i <om@probation.example> *** frozen ***
              host@loop.invalid

then, only for ids it has not seen before, ``exim -Mvh ID`` (the ``-H`` spool file: exact
arrival and headers) and ``exim -Mvl ID`` (the message log: the last defer reason per
recipient), at most ``concurrency`` at a time. A message that left the queue between the
listing and ``-Mvh`` is skipped. Frozen messages are reported in queue ``"frozen"`` (stuck at
once, see :data:`mailwatch.core.sla.STUCK_AT_ONCE`), all others in queue ``"queue"``.

Keys are ``source/queue_id``: an Exim id encodes its arrival second, the receiving pid and
the sub-second, so one host never issues the same id twice (unlike Postfix's short ids); the
arrival in the key would add nothing. The header cache uses the same key.

A message first seen before any delivery attempt has no reason yet; up to ``log_refresh``
such messages (oldest first) have their message log re-read on each later probe.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import structlog

from mailwatch.core.headers import (
    TRACE_HEADERS,
    NormalisedSubject,
    normalise_subject,
    parse_header_block,
)
from mailwatch.core.model import Headers, Message, QueueObservation, Recipient
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

log = structlog.get_logger(__name__)

STDERR_LIMIT = 4096  # bounds memory if a broken command floods stderr
FROZEN_QUEUE = "frozen"
ACTIVE_QUEUE = "queue"


@dataclass(frozen=True, slots=True)
class CachedSpool:
    """What a message's spool files yield once read: kept so rescans need no reads."""

    headers: Headers
    subject: NormalisedSubject
    arrival: datetime
    reasons: tuple[tuple[str, str], ...] = ()
    """(address, last defer reason) from the message log."""
    last_error: str | None = None

    @property
    def has_reason(self) -> bool:
        """Whether the message log gave any delivery problem yet."""
        return bool(self.reasons) or self.last_error is not None


def message_key(source: str, queue_id: str) -> str:
    """Stable, unique key: ``source/queue_id`` (Exim ids encode their arrival time)."""
    return f"{source}/{queue_id}"


class RememberedMessage(Protocol):
    """What priming needs of a message the store remembers (``StoredMessage``, ``Message``)."""

    @property
    def headers(self) -> Headers:
        """Decoded headers."""
        ...

    @property
    def subject(self) -> str:
        """Normalised subject."""
        ...

    @property
    def marking(self) -> str | None:
        """Protective marking, if any."""
        ...

    @property
    def arrival(self) -> datetime:
        """Exact arrival."""
        ...

    @property
    def recipients(self) -> tuple[Recipient, ...]:
        """Undelivered recipients with their delay reasons."""
        ...

    @property
    def delay_reason(self) -> str | None:
        """First recipient reason, else the wait reason."""
        ...


def cached_from_message(message: RememberedMessage) -> CachedSpool:
    """A cache entry rebuilt from a stored message, so a restart re-reads no spool files."""
    return CachedSpool(
        headers=message.headers,
        subject=NormalisedSubject(message.subject, message.marking),
        arrival=message.arrival,
        reasons=tuple((r.address, r.delay_reason) for r in message.recipients if r.delay_reason),
        last_error=_unfrozen(message.delay_reason),
    )


def _unfrozen(reason: str | None) -> str | None:
    """The delivery error inside a stored wait reason (``"frozen: …"`` → ``"…"``)."""
    if reason is None or reason == "frozen":
        return None
    return reason.removeprefix("frozen: ")


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
        headers = parse_header_block(spool.header_block, skip=TRACE_HEADERS)
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

    def _message(self, key: str, entry: EximEntry, cached: CachedSpool) -> Message:
        reasons = dict(cached.reasons)
        wait_reason: str | None
        if entry.frozen:
            wait_reason = f"frozen: {cached.last_error}" if cached.last_error else "frozen"
        else:
            wait_reason = cached.last_error
        return Message(
            key=key,
            source=self.name,
            queue_id=entry.queue_id,
            queue=FROZEN_QUEUE if entry.frozen else ACTIVE_QUEUE,
            arrival=cached.arrival,
            size=entry.size,
            sender=entry.sender,
            recipients=tuple(Recipient(a, reasons.get(a)) for a in entry.recipients),
            headers=cached.headers,
            subject=cached.subject.text,
            marking=cached.subject.marking,
            wait_reason=wait_reason,
        )

    async def probe(self) -> QueueObservation:
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
            self._message(key, entry, self.header_cache[key])
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
