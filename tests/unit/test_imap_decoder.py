"""The IMAP decoding process: the same Messages as decoding in-process, and nothing lost.

``BatchDecoder`` with a ``DecoderProcess`` hands FETCH batches to a forked child and builds
the Messages from its answers; without one it decodes them itself. Both must give exactly the
same Messages. A child that dies, garbles its output or stops answering makes every batch it
held, and every later one, decode in the parent (one warning), and a closed child is reaped.
The fakes below are named as such: they stand for a broken child, which a real one cannot be
made to be on demand.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from typing import cast

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from imap_batches import KEEP
from imap_batches import blocks as _blocks
from imap_batches import decode as _decode
from imap_batches import ready as _ready
from imap_batches import records as _records
from reaping import pid_gone

from mailwatch.core.model import Message
from mailwatch.parsing.imap import FetchRecord
from mailwatch.sources import imap_decoder_process
from mailwatch.sources.forking import Serve, fork_helper
from mailwatch.sources.frames import FrameBuffer, pack, read_frame, write_all
from mailwatch.sources.imap_addresses import clear_caches
from mailwatch.sources.imap_decoder import CHUNK, _in_process
from mailwatch.sources.imap_decoder_child import READY, decode_batch, serve
from mailwatch.sources.imap_decoder_process import DecoderProcess

NAMES = ["Subject", "SUBJECT", "From", "To", "Cc", "cc", "Date", "X-Case", "Importance", "Received"]
VALUES = [
    "Recall", "RE: [OFFICIAL] x", "=?utf-8?q?caf=C3=A9?=", "=?UTF-8?B?Wm/DqyBPJ0JyaWVu?=",
    "=?x-unknown?q?a_b?=", "=?utf-8?q?=0A?=", "a@b.example", "J <j@b.example>, k@c.example",
    '"Doe, J" <j@b.example>', "(x) <y@z>", "", "\u00e9", "a\r\n b", "a\r\n\tb", "a  b", "\x01",
]  # fmt: skip
LINE = st.builds("{}: {}".format, st.sampled_from(NAMES), st.sampled_from(VALUES))
RAW_BLOCK = st.one_of(
    st.lists(LINE, min_size=1, max_size=6).map(lambda ls: ("\r\n".join(ls) + "\r\n\r\n").encode()),
    st.sampled_from([b"Subject: caf\xc3\r\n\r\n", b"To: \xff\r\n\r\n", b"\r\n"]),
)


async def _started(
    count: int, serve: Serve
) -> tuple[list[list[FetchRecord]], dict[int, Message], DecoderProcess, int]:
    """``count`` full batches, their Messages decoded in-process, and a ready ``serve`` child."""
    blocks = _blocks(CHUNK * count)
    batches = [_records(blocks[i : i + CHUNK], i + 1) for i in range(0, len(blocks), CHUNK)]
    expected = await _decode(batches, None)
    child = DecoderProcess("imap", KEEP, serve=serve)
    child.start()
    await _ready(child)
    assert child.ready
    assert child.pid is not None
    return batches, expected, child, child.pid


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(RAW_BLOCK, min_size=1, max_size=8))
def test_the_child_answers_what_the_parent_decodes(raws: list[bytes]) -> None:
    """The child's plain values are those of the in-process parts (headers, sender…)."""
    clear_caches()
    expected = [
        (h._packed, sender, tuple(r.address for r in recipients), subject.text, subject.marking)
        for h, (sender, recipients, subject) in _in_process(raws, KEEP)
    ]
    clear_caches()
    answer = decode_batch(KEEP, raws)
    if answer is not None:  # None: not plain, the parent decodes it as above
        assert answer == expected


async def test_the_same_messages_with_and_without_the_child() -> None:
    """A first sync's batches give the same Messages through the child as in-process."""
    blocks = _blocks(3000)
    batches = [_records(blocks[i : i + 250], i + 1) for i in range(0, len(blocks), 250)]
    expected = await _decode(batches, None)

    child = DecoderProcess("imap", KEEP)
    child.start()
    await _ready(child)
    try:
        got = await _decode(batches, child)
        assert child.sent > 0  # the child did decode batches
        assert not child.failed
    finally:
        await child.close()
    # The order they were built in is not the UIDs' (the parent decodes a batch while the child
    # still holds earlier ones): the folder state sorts what it fetched (imap._merged).
    assert sorted(got.items()) == sorted(expected.items())
    assert got == expected
    assert all(m.headers._packed == expected[uid].headers._packed for uid, m in got.items())


async def test_batches_arriving_before_the_child_is_ready_are_decoded_here() -> None:
    """The child's start never delays decoding: until it is ready, the parent decodes."""
    batches = [_records(_blocks(400))]
    expected = await _decode(batches, None)
    child = DecoderProcess("imap", KEEP, serve=_fake_child_slow_to_start)
    child.start()
    try:
        assert await _decode(batches, child) == expected
        assert child.sent == 0
    finally:
        await child.close()


def _fake_child_slow_to_start(read_fd: int, write_fd: int) -> None:
    """FAKE child: says it is ready only after a while, then serves as the real one."""
    time.sleep(0.5)
    serve(read_fd, write_fd)


def _fake_child_dies_mid_batch(read_fd: int, write_fd: int) -> None:
    """FAKE child: ready, answers one batch, then dies halfway through writing the next."""
    write_all(write_fd, pack(READY))
    buffer, pending = FrameBuffer(), cast(list[object], [])
    names, raws = cast(tuple[list[str], list[bytes]], read_frame(read_fd, buffer, pending))
    write_all(write_fd, pack(decode_batch(frozenset(names), raws)))
    read_frame(read_fd, buffer, pending)
    write_all(write_fd, pack(decode_batch(frozenset(names), raws))[:100])
    os._exit(3)


def _fake_child_garbles(read_fd: int, write_fd: int) -> None:
    """FAKE child: ready, then answers a batch with bytes that are no frame."""
    write_all(write_fd, pack(READY))
    os.read(read_fd, 1 << 16)
    write_all(write_fd, b"\xff\xff\xff\xff garbage")
    time.sleep(30)  # killed by the parent


def _fake_child_answers_nonsense(read_fd: int, write_fd: int) -> None:
    """FAKE child: ready, then answers with readable frames of the wrong shape."""
    write_all(write_fd, pack(READY))
    buffer, pending = FrameBuffer(), cast(list[object], [])
    answers: list[object] = [[("only", "one")], [1, 2, 3], ["x"] * CHUNK]
    while read_frame(read_fd, buffer, pending) is not None:
        write_all(write_fd, pack(answers.pop() if answers else []))


def _fake_child_never_answers(read_fd: int, write_fd: int) -> None:
    """FAKE child: ready, then reads and never answers (a hung child)."""
    write_all(write_fd, pack(READY))
    while os.read(read_fd, 1 << 16):
        pass
    time.sleep(30)  # killed by the parent


@pytest.mark.parametrize(
    "fake",
    [
        _fake_child_dies_mid_batch,
        _fake_child_garbles,
        _fake_child_answers_nonsense,
        _fake_child_never_answers,
    ],
)
async def test_a_broken_child_loses_nothing(fake: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch the broken child held, and every later one, is decoded in the parent."""
    monkeypatch.setattr(imap_decoder_process, "ANSWER_TIMEOUT", 0.5)
    batches, expected, child, pid = await _started(12, fake)
    with structlog.testing.capture_logs() as logs:
        try:
            got = await _decode(batches, child)
        finally:
            await child.close()
    assert got == expected
    assert child.failed
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["imap_decoder_failed"]
    assert pid_gone(pid)


async def test_a_closed_child_is_reaped() -> None:
    """Closing ends the child at the end of its input and collects its exit status."""
    child = DecoderProcess("imap", KEEP)
    child.start()
    await _ready(child)
    pid = child.pid
    assert child.ready
    assert pid is not None
    await child.close()
    assert pid_gone(pid)


async def test_a_child_closed_while_it_starts_is_reaped() -> None:
    """Closed at once (a probe cancelled just after the SEARCH): no child is left behind."""
    child = DecoderProcess("imap", KEEP)
    child.start()
    await asyncio.sleep(0)
    pid = child.pid
    await child.close()
    assert pid is None or pid_gone(pid)
    assert child.pid is None


def _fake_child_slow(read_fd: int, write_fd: int) -> None:
    """FAKE child: the real one, a hundred times slower (a busy second core)."""
    write_all(write_fd, pack(READY))
    buffer, pending = FrameBuffer(), cast(list[object], [])
    while (request := read_frame(read_fd, buffer, pending)) is not None:
        names, raws = cast(tuple[list[str], list[bytes]], request)
        time.sleep(0.2)
        write_all(write_fd, pack(decode_batch(frozenset(names), raws)))


async def test_the_last_batches_the_child_holds_are_shared_with_the_parent() -> None:
    """At the end of a sync the parent takes back the newest half of what the child holds.

    It decodes those itself while the child works through the older ones; the child's late
    answers to the batches taken back are dropped, and the Messages are the same. The child,
    still busy with batches nobody needs, is killed when closed, without a warning.
    """
    batches, expected, child, pid = await _started(10, _fake_child_slow)
    with structlog.testing.capture_logs() as logs:
        try:
            got = await _decode(batches, child)
            assert not child.failed
        finally:
            started = time.monotonic()
            await child.close()
    assert got == expected
    # 8 batches were handed over at once (the window), 4 of them taken back at the end
    assert (child.sent, child.reclaimed) == (imap_decoder_process.WINDOW, 4)
    assert time.monotonic() - started < 0.5  # killed: not left to decode the 4 dropped
    assert pid_gone(pid)
    assert [e for e in logs if e["log_level"] == "warning"] == []


async def test_reclaim_takes_nothing_from_a_child_that_holds_one_batch() -> None:
    """Nothing to share when the child holds fewer than two batches."""
    child = DecoderProcess("imap", KEEP)
    child.start()
    await _ready(child)
    answers: list[object] = []
    try:
        assert child.submit(_blocks(3), answers.append)
        assert child.reclaim() == 0
        await child.drain()
        assert len(answers) == 1
        assert isinstance(answers[0], list)
    finally:
        await child.close()


def _fake_child_exits_soon(read_fd: int, write_fd: int) -> None:
    """FAKE child: lives a moment, then exits (whatever its input)."""
    time.sleep(0.2)


@pytest.mark.parametrize("pidfds", [True, False, None])
async def test_an_exiting_child_is_reaped_as_it_exits(
    pidfds: bool | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exit is awaited on a pidfd, or polled for: ``pidfd_open`` refused, or missing."""
    if pidfds is None:
        monkeypatch.delattr(os, "pidfd_open")
    if pidfds is False:  # refused by the kernel

        def refused(pid: int, flags: int = 0) -> int:
            raise OSError(38, "Function not implemented")

        monkeypatch.setattr(os, "pidfd_open", refused)
    pid, write_fd, read_fd = fork_helper(_fake_child_exits_soon, 1 << 16)
    os.close(write_fd)
    os.close(read_fd)
    started = time.monotonic()
    await imap_decoder_process._reap(pid)
    waited = time.monotonic() - started
    assert pid_gone(pid)
    assert 0.1 < waited < imap_decoder_process.CLOSE_GRACE  # waited for its exit, not killed


def _reports_its_state(read_fd: int, write_fd: int) -> None:
    """A helper that says whether its collector runs and which descriptors it holds."""
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    write_all(write_fd, pack((gc.isenabled(), fds)))


def test_a_helper_runs_without_garbage_collection_and_with_two_pipes() -> None:
    """The forked helper does not collect (short-lived, no cycles) and holds only its pipes."""
    pid, write_fd, read_fd = fork_helper(_reports_its_state, 1 << 16)
    try:
        state = read_frame(read_fd, FrameBuffer(), [])
    finally:
        os.close(write_fd)
        os.close(read_fd)
        os.waitpid(pid, 0)
    assert gc.isenabled()  # (the parent's is untouched)
    enabled, fds = cast(tuple[bool, list[int]], state)
    assert enabled is False
    assert len([fd for fd in fds if fd > 2]) <= 3  # its two pipes (and listdir's own)
