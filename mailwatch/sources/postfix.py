"""The Postfix queue source: ``postqueue -j`` for the listing, queue files for headers.

Cost grows with what changed, not with the backlog: headers are read only for messages this
source has not seen before (cache keyed by source + queue id + arrival time, because Postfix
reuses queue ids), and entries of messages that left the queue are dropped from the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from mailwatch.errors import SourceCommandFailed, SourceError, SourceTimeout, SourceUnavailable
from mailwatch.headers import (
    TRACE_HEADERS,
    NormalisedSubject,
    normalise_subject,
    parse_header_block,
)
from mailwatch.model import Headers, Message, Observation
from mailwatch.parsing.postqueue import Malformed, QueueEntry, parse_line
from mailwatch.parsing.queuefile import QueueFileError, header_block

log = structlog.get_logger(__name__)

HEADER_READ_STEPS = (8 * 1024, 64 * 1024)
"""Prefix sizes tried in turn before the whole file. ``header_block`` walks every record it is
given, so a small first read keeps messages with large bodies (attachments) as cheap as small
ones; 8 KiB holds almost every header block, 64 KiB nearly all the rest."""
QUEUE_NAMES = ("incoming", "active", "deferred", "hold", "maildrop", "corrupt")
STDERR_LIMIT = 4096  # bounds memory if a broken command floods stderr


@dataclass(frozen=True, slots=True)
class CachedHeaders:
    """What a message's headers yield once decoded: kept so rescans need no reads."""

    headers: Headers
    subject: NormalisedSubject


def message_key(source: str, queue_id: str, arrival: datetime) -> str:
    """Stable, unique key: ``source/queue_id/arrival-epoch`` (Postfix reuses queue ids)."""
    return f"{source}/{queue_id}/{int(arrival.timestamp())}"


def _queue_file_candidates(queue_dir: Path, queue_name: str, queue_id: str) -> Iterator[str]:
    # Plain strings: building Path objects cost more than opening the file does.
    root = os.fspath(queue_dir)
    # The listed queue first, then the others (moved between listing and reading: deferred →
    # active…); hashed queues (deferred, defer) have depth 1.
    for name in (queue_name, *(q for q in QUEUE_NAMES if q != queue_name)):
        yield f"{root}/{name}/{queue_id[:1]}/{queue_id}"
        yield f"{root}/{name}/{queue_id}"


def read_queue_headers(queue_dir: Path, queue_name: str, queue_id: str) -> bytes | None:
    """The header block of a queued message, or ``None`` if it is no longer in any queue.

    Raises :class:`PermissionError` when the queue cannot be read (mailwatch not root/postfix).
    """
    for path in _queue_file_candidates(queue_dir, queue_name, queue_id):
        try:
            with open(path, "rb") as handle:
                data = b""
                for size in HEADER_READ_STEPS:
                    data += handle.read(size - len(data))
                    try:
                        return header_block(data)
                    except QueueFileError:
                        if len(data) < size:  # the whole file is read: more cannot help
                            raise
                return header_block(data + handle.read())
        except FileNotFoundError:
            continue
        except QueueFileError:
            return b""  # unreadable queue file: classify on the envelope alone
    return None


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
    ) -> None:
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
        # The last listing's lines and what they parsed to: a message that did not change
        # prints the same line again, and a dict lookup costs far less than parsing JSON.
        self._parsed_lines: dict[bytes, QueueEntry] = {}

    @property
    def name(self) -> str:
        """The configured source name."""
        return self._name

    def _config_args(self) -> list[str]:
        return ["-c", str(self.config_dir)] if self.config_dir else []

    async def _run(
        self, argv: list[str], on_line: Callable[[bytes], None] | None = None
    ) -> tuple[bytes, str]:
        """Run ``argv`` under the timeout; stream stdout lines to ``on_line`` or return them.

        Returns the collected stdout (empty when streamed) and stderr text.
        """
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise SourceUnavailable(self.name, f"cannot run {argv[0]}: {exc.strerror}") from exc
        if proc.stdout is None or proc.stderr is None:  # pragma: no cover - PIPE was asked for
            raise SourceUnavailable(self.name, f"{argv[0]}: no output pipes")
        collected = bytearray()
        try:
            async with asyncio.timeout(self.timeout):
                stderr_task = asyncio.ensure_future(proc.stderr.read())
                pending = b""
                while chunk := await proc.stdout.read(1 << 16):
                    if on_line is None:
                        collected += chunk
                        continue
                    lines = (pending + chunk).split(b"\n")
                    pending = lines.pop()
                    for line in lines:
                        on_line(line)
                if pending and on_line is not None:
                    on_line(pending)
                stderr = (await stderr_task)[:STDERR_LIMIT]
                returncode = await proc.wait()
        except TimeoutError as exc:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise SourceTimeout(self.name, f"{argv[0]} took longer than {self.timeout:g}s") from exc
        if returncode != 0:
            text = stderr.decode("utf-8", "replace").strip()
            raise SourceCommandFailed(
                self.name, f"{argv[0]} exited {returncode}: {text}", returncode, text
            )
        return bytes(collected), stderr.decode("utf-8", "replace")

    async def queue_dir(self) -> Path:
        """The instance's ``queue_directory`` (asked of ``postconf`` once, then remembered)."""
        if self._queue_dir is None:
            out, _ = await self._run([self.postconf, *self._config_args(), "-h", "queue_directory"])
            self._queue_dir = Path(out.decode().strip())
        return self._queue_dir

    async def list_queue(self) -> tuple[list[QueueEntry], int, tuple[str, ...]]:
        """Run ``postqueue -j``, parsing as it streams: entries, malformed count, warnings.

        As root, postqueue reads the queue directly when the mail system is down and says so
        on stderr; that warning is kept: the queue is visible but nothing is moving.
        """
        entries: list[QueueEntry] = []
        problems: list[Malformed] = []
        previous, parsed_lines = self._parsed_lines, {}

        def on_line(line: bytes) -> None:
            parsed = previous.get(line) or parse_line(line, len(entries) + len(problems) + 1)
            if isinstance(parsed, QueueEntry):
                parsed_lines[line] = parsed
                entries.append(parsed)
            elif isinstance(parsed, Malformed):
                problems.append(parsed)

        _, stderr = await self._run([self.postqueue, *self._config_args(), "-j"], on_line)
        self._parsed_lines = parsed_lines
        for problem in problems[:10]:
            log.warning(
                "postqueue_line_malformed",
                source=self.name,
                line=problem.line_number,
                reason=problem.reason,
            )
        warnings = tuple(
            dict.fromkeys(
                line.split("warning:", 1)[1].strip()
                for line in stderr.splitlines()
                if "warning:" in line
            )
        )
        return entries, len(problems), warnings

    def _read_new_headers(self, queue_dir: Path, wanted: list[tuple[str, QueueEntry]]) -> int:
        read = 0
        for key, entry in wanted:
            try:
                raw = read_queue_headers(queue_dir, entry.queue_name, entry.queue_id)
            except PermissionError as exc:
                raise SourceUnavailable(
                    self.name,
                    f"cannot read queue files under {queue_dir} ({exc.strerror}); "
                    "run mailwatch as root or give it read access to the queue",
                ) from exc
            if raw is None:
                continue  # left the queue since the listing: nothing to cache
            headers = parse_header_block(raw, skip=TRACE_HEADERS)
            subject = normalise_subject(headers.get("Subject") or "")
            self.header_cache[key] = CachedHeaders(headers, subject)
            read += 1
        return read

    async def probe(self) -> Observation:
        """List the queue, read headers of new messages only, and return what was seen."""
        entries, malformed, warnings = await self.list_queue()
        observed_at = self._clock()
        keyed = [(message_key(self.name, e.queue_id, e.arrival), e) for e in entries]
        new = [(key, e) for key, e in keyed if key not in self.header_cache]
        headers_read = 0
        if new:
            queue_dir = await self.queue_dir()
            try:
                headers_read = await asyncio.to_thread(self._read_new_headers, queue_dir, new)
            except OSError as exc:
                raise SourceError(self.name, f"reading queue files: {exc}") from exc
        present = {key for key, _ in keyed}
        for stale in [k for k in self.header_cache if k not in present]:
            del self.header_cache[stale]
        empty = CachedHeaders(Headers(), NormalisedSubject("", None))
        messages = []
        for key, entry in keyed:
            cached = self.header_cache.get(key, empty)
            messages.append(
                Message(
                    key=key,
                    source=self.name,
                    queue_id=entry.queue_id,
                    queue=entry.queue_name,
                    arrival=entry.arrival,
                    size=entry.size,
                    sender=entry.sender,
                    recipients=entry.recipients,
                    headers=cached.headers,
                    subject=cached.subject.text,
                    marking=cached.subject.marking,
                    forced_expire=entry.forced_expire,
                )
            )
        return Observation(
            source=self.name,
            observed_at=observed_at,
            messages=tuple(messages),
            malformed=malformed,
            headers_read=headers_read,
            warnings=warnings,
        )
