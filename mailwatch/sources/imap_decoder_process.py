"""The parent side of the IMAP decoding process: batches out, plain values back, never blocking.

A first sync of a large mailbox spends most of its CPU decoding header blocks, on the one
core the event loop runs on. :class:`DecoderProcess` hands whole FETCH batches to a child
(:func:`mailwatch.sources.imap_decoder_child.serve`) through two pipes the event loop reads
and writes (``connect_read_pipe``/``connect_write_pipe``, frames of
:mod:`mailwatch.sources.frames`): the loop never waits on the child. At most :data:`WINDOW`
batches are outstanding; a batch that finds the window full, or the child not ready yet, is
decoded in the parent (:class:`~mailwatch.sources.imap_decoder.BatchDecoder`), so the two
share the work and the first FETCH is never delayed. When the last batch has arrived, the
parent takes back the newest half of those the child still holds (:meth:`DecoderProcess.reclaim`)
and decodes them while the child finishes the older ones, so that neither waits for the
other's window of work at the end of a sync.

The child is the process's spare (:mod:`mailwatch.sources.helper_spare`: a new interpreter
started ahead of need, so the parent pays no copy-on-write), else forked at once
(:func:`~mailwatch.sources.forking.fork_helper`, where the reasons and the rules it keeps
are): it runs only the decoders (``str`` and ``re`` work). :func:`prestart` starts the spare.

A child that ends, writes a frame that cannot be read or an answer of the wrong shape, does
not answer within :data:`ANSWER_TIMEOUT`, or cannot be started fails once (logged at
warning): every batch it still held, and every later one, is decoded in the parent. Nothing
is lost. :meth:`DecoderProcess.close` ends it (end of input, then SIGKILL after
:data:`CLOSE_GRACE`; at once if it still holds batches taken back) and collects its exit
status as soon as it exits (a pidfd wakes the loop): no zombie.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any

import structlog

from mailwatch.errors import FrameError
from mailwatch.sources import helper_spare
from mailwatch.sources import imap_decoder_child as child
from mailwatch.sources.forking import Serve, fork_helper
from mailwatch.sources.frames import FrameBuffer, pack
from mailwatch.sources.imap_decoder_child import READY, Decoded

log = structlog.get_logger(__name__)

WINDOW = 8
"""Batches handed to the child and not answered yet, at most."""
ANSWER_TIMEOUT = 10.0
"""Seconds the parent waits for the child's outstanding answers once nothing else is left."""
CLOSE_GRACE = 2.0
"""Seconds a closed child gets to exit at the end of its input before it is killed."""
PIPE_SIZE = 1 << 20
"""Bytes each pipe holds (Linux's default largest): the window's batches (~60 KiB each) and
their answers (~70 KiB) fit, so the child never waits for a busy parent to read."""

Answer = Callable[[list[Decoded] | None], None]
"""Called with the child's answer to one batch, or ``None``: decode that batch here."""


def prestart() -> None:
    """Have a spare decoding process ready for the next large sync (see the module)."""
    helper_spare.prestart(PIPE_SIZE)


class _Reader(asyncio.Protocol):
    """The child's answers, framed; the end of its output."""

    def __init__(self, owner: DecoderProcess) -> None:
        self.owner = owner
        self.frames = FrameBuffer()
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self.owner.failed:
            return
        try:
            values = self.frames.feed(data)
        except FrameError as exc:
            self.owner.fail(f"unreadable answer: {exc}")
            return
        for value in values:
            self.owner.answered(value)

    def eof_received(self) -> bool:
        self.owner.fail("its output ended")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.fail("its output ended")
        if not self.ended.done():
            self.ended.set_result(None)


class DecoderProcess:
    """One decoding child for one probe of one IMAP source (see the module docstring)."""

    def __init__(self, source: str, keep: frozenset[str], serve: Serve = child.serve) -> None:
        self.source = source
        self.names = tuple(sorted(keep))
        self.serve = serve
        self.ready = False
        self.failed = False
        self.sent = 0
        """Batches handed to the child (for benchmarks and tests)."""
        self.reclaimed = 0
        """Batches handed to the child and then taken back by :meth:`reclaim` (likewise)."""
        self.pid: int | None = None
        self._closing = False
        self._waiting: collections.deque[Answer | None] = collections.deque()
        """Who takes each answer still to come, oldest first (``None``: reclaimed, dropped)."""
        self._stdin: asyncio.WriteTransport | None = None
        self._reader: _Reader | None = None
        self._starting: asyncio.Task[None] | None = None
        self._drained: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Start the child in the background (batches are decoded here until it is ready)."""
        if self._starting is None and not self.failed:
            self._starting = asyncio.get_running_loop().create_task(self._spawn())

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            spare = helper_spare.take() if self.serve is child.serve else None
            self.pid, write_fd, read_fd = spare or fork_helper(self.serve, PIPE_SIZE)
        except OSError as exc:
            self.fail(f"cannot start it: {exc}")
            return
        writer = os.fdopen(write_fd, "wb", buffering=0)
        reader = os.fdopen(read_fd, "rb", buffering=0)
        try:
            self._stdin, _ = await loop.connect_write_pipe(asyncio.Protocol, writer)
            _, self._reader = await loop.connect_read_pipe(lambda: _Reader(self), reader)
        except OSError as exc:
            self.fail(f"cannot reach it: {exc}")
        finally:  # (also when cancelled by close meanwhile)
            if self._stdin is None:
                writer.close()
            if self._reader is None:
                reader.close()
        if self.failed and self._stdin is not None:  # closed (or failed) while it started
            self._stdin.close()

    def submit(self, raws: list[bytes], answer: Answer) -> bool:
        """Hand one batch to the child; ``False`` if it cannot take it now (decode it here)."""
        stdin = self._stdin
        if not self.ready or self.failed or len(self._waiting) >= WINDOW:
            return False
        if stdin is None or stdin.is_closing():  # (a broken pipe closes it: the child is gone)
            return False
        try:
            frame = pack((self.names, raws))
        except FrameError:  # a batch too large for one frame: decode it here
            return False
        stdin.write(frame)
        self._waiting.append(answer)
        self.sent += 1
        return True

    def reclaim(self) -> int:
        """Take back the newest half of the batches the child holds: decode them here, now.

        For the end of a sync, when nothing is left to hand over: the child works through
        its batches in order while this process, idle otherwise, decodes the newest ones, so
        the two finish together instead of the parent waiting for the child's whole window.
        The child's answers to those batches are dropped when they come. Returns how many
        batches were taken back.
        """
        owed = self._owed()
        if self.failed or owed < 2:
            return 0
        taken: list[Answer] = []
        waiting = self._waiting
        for index in range(len(waiting) - 1, -1, -1):
            answer = waiting[index]
            if answer is None:
                continue
            if len(taken) >= owed // 2:
                break
            taken.append(answer)
            waiting[index] = None
        self.reclaimed += len(taken)
        for answer in reversed(taken):  # in the order they were handed over
            answer(None)
        return len(taken)

    def answered(self, value: Any) -> None:
        """One frame from the child: the ready word, or the answer to the oldest batch."""
        if not self.ready:
            if value == READY:
                self.ready = True
            else:
                self.fail("it did not say it was ready")
        elif self._waiting and (value is None or isinstance(value, list)):
            answer = self._waiting.popleft()
            if answer is not None:  # (None: taken back by reclaim, decoded here already)
                answer(value)
                self._wake()
        else:
            self.fail("an answer of the wrong shape")

    def fail(self, why: str) -> None:
        """Stop using the child: every batch it held is decoded here, now and from now on."""
        if self.failed:
            return
        self.failed = True
        if not self._closing:
            log.warning("imap_decoder_failed", source=self.source, reason=why)
            if self.pid is not None:
                _kill(self.pid)  # whatever state it is in (reaped by close)
        waiting, self._waiting = self._waiting, collections.deque()
        for answer in waiting:
            if answer is not None:
                answer(None)
        self._wake()

    def _wake(self) -> None:
        if not self._owed() and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def drain(self) -> None:
        """Wait until every batch handed over is answered (or decoded here: failed, reclaimed)."""
        if not self._owed():
            return
        self._drained = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                await asyncio.shield(self._drained)
        except TimeoutError:
            self.fail(f"no answer within {ANSWER_TIMEOUT:g}s")

    def _owed(self) -> int:
        """Answers still to come that someone takes (at most :data:`WINDOW` to count)."""
        return sum(answer is not None for answer in self._waiting)

    def end(self) -> None:
        """Nothing more is handed over: end the child's input now (:meth:`close` reaps it).

        It then exits while the caller goes on (a LOGOUT) instead of afterwards. A child
        still decoding batches nobody waits for (taken back by :meth:`reclaim`) is killed
        rather than left to finish them. What is outstanding is decoded here.
        """
        self._closing = True
        busy = bool(self._waiting)
        self.fail("closed")
        if busy and self.pid is not None:
            _kill(self.pid)
        if self._stdin is not None:
            self._stdin.close()

    async def close(self) -> None:
        """End the child's input, wait (briefly) for its exit, kill it after that; reap it."""
        self.end()
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done():
            starting.cancel()
            await asyncio.wait({starting})
        if self._stdin is not None:
            self._stdin.close()
        pid, self.pid = self.pid, None
        if pid is None:
            return
        if self._reader is None:
            _kill(pid)  # its input may still be open: do not wait for it to end
        try:
            if self._reader is not None:  # its output ends when it exits
                async with asyncio.timeout(CLOSE_GRACE):
                    await asyncio.shield(self._reader.ended)
        except TimeoutError:
            _kill(pid)
        finally:
            await _reap(pid)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reaped(pid: int, *, block: bool = False) -> bool:
    """Whether the child's exit status is collected (now, or once it ends if ``block``)."""
    try:
        done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return True  # reaped already
    return done != 0


async def _reap(pid: int) -> None:
    """Collect the child's exit status (no zombie): it has exited, or it is killed.

    Its exit is awaited on a pidfd (Linux 5.3 and later): the loop is woken the moment it
    ends, where polling woke it up to 5 ms late; elsewhere, polled every millisecond.
    """
    if _reaped(pid):
        return
    try:
        exited = await _exit_of(pid)
    except OSError:  # no pidfd here
        exited = False
        for _ in range(int(CLOSE_GRACE / 0.001)):
            if _reaped(pid):
                return
            await asyncio.sleep(0.001)
    if not exited:
        _kill(pid)
    _reaped(pid, block=True)  # it has exited, or is killed: at once


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


async def _exit_of(pid: int) -> bool:
    """Wait (up to :data:`CLOSE_GRACE`) for the child to exit; whether it did.

    Raises ``OSError`` where pidfds are not available.
    """
    pidfd_open = getattr(os, "pidfd_open", None)  # Linux only
    if pidfd_open is None:
        raise OSError("no pidfd_open on this system")
    fd = pidfd_open(pid)  # (ours and not reaped: this pid is the child's)
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, _resolve, ended)
    try:
        async with asyncio.timeout(CLOSE_GRACE):
            await ended
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return True
