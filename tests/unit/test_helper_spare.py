"""The spare decoding process: a new interpreter started ahead of need, used once like a fork.

A first sync of many messages takes the spare (no fork of mailwatch's own process, so no
copy-on-write); a spare that died meanwhile is not handed over; there is at most one; it
reads nothing but its pipe, runs in a session of its own and exits when its input ends (so
never outlives mailwatch).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from imap_batches import KEEP, blocks, decode, ready, records
from reaping import pid_gone

from mailwatch.config import settings as config
from mailwatch.sources import helper_spare
from mailwatch.sources.factory import build_sources
from mailwatch.sources.frames import FrameBuffer, pack, read_frame, write_all
from mailwatch.sources.imap_decoder_child import READY, decode_batch
from mailwatch.sources.imap_decoder_process import DecoderProcess, prestart
from mailwatch.store import Store


@pytest.fixture(autouse=True)
def no_spare() -> Iterator[None]:
    """Each test starts and ends without a spare (another test's is discarded)."""
    helper_spare.discard()
    yield
    helper_spare.discard()


def _started_spare() -> int:
    prestart()
    pid = helper_spare.pid()
    assert pid is not None
    assert helper_spare.wait_ready(10.0)
    return pid


def _until_zombie(pid: int) -> None:
    """Wait (up to 10 s) until the killed ``pid`` has exited and waits to be reaped."""
    for _ in range(1000):
        if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return
        time.sleep(0.01)


def test_there_is_one_spare_in_a_session_of_its_own_reading_only_its_pipe() -> None:
    """``prestart`` twice starts one; its stdio is /dev/null; it holds two pipes besides."""
    pid = _started_spare()
    prestart()
    assert helper_spare.pid() == pid
    assert os.getsid(pid) == pid  # the terminal's Ctrl-C is not sent to it
    held = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert [held[fd] for fd in (0, 1, 2)] == [os.devnull] * 3
    others = [target for fd, target in held.items() if fd > 2]
    assert len(others) == 2
    assert all(target.startswith("pipe:") for target in others)


def test_a_spare_answers_as_the_decoders_do_and_exits_at_the_end_of_its_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started from elsewhere (another working directory), it finds this mailwatch."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    pid, write_fd, read_fd = helper_spare.spawn(helper_spare.MODULE, 1 << 16)
    buffer, pending = FrameBuffer(), cast(list[object], [])
    try:
        assert read_frame(read_fd, buffer, pending) == READY
        raws = blocks(50)
        write_all(write_fd, pack((tuple(sorted(KEEP)), raws)))
        assert read_frame(read_fd, buffer, pending) == decode_batch(KEEP, raws)
    finally:
        os.close(write_fd)  # as when mailwatch exits
    _, status = os.waitpid(pid, 0)
    os.close(read_fd)
    assert os.waitstatus_to_exitcode(status) == 0


async def test_a_large_sync_takes_the_spare_and_gives_the_same_messages() -> None:
    """The decoding process is the spare (no fork); the Messages are the in-process ones."""
    raws = blocks(2400)
    batches = [records(raws[i : i + 200], i + 1) for i in range(0, len(raws), 200)]
    expected = await decode(batches, None)
    pid = _started_spare()
    child = DecoderProcess("imap", KEEP)
    child.start()
    await ready(child)
    try:
        assert child.pid == pid
        assert helper_spare.pid() is None  # handed over: the next sync needs another
        got = await decode(batches, child)
        assert child.sent > 0
        assert not child.failed
    finally:
        await child.close()
    assert got == expected
    assert pid_gone(pid)


async def test_without_a_spare_the_decoding_process_is_forked() -> None:
    """No spare (none started, or none could be): the sync forks its helper as before."""
    child = DecoderProcess("imap", KEEP)
    child.start()
    await ready(child)
    try:
        assert child.ready
        assert child.pid is not None
        assert os.getsid(child.pid) == os.getsid(0)  # a fork: this process's session
    finally:
        await child.close()


def test_a_spare_that_died_is_not_handed_over() -> None:
    """Killed while it waited (out of memory, an operator): reaped, and none is handed over."""
    pid = _started_spare()
    os.kill(pid, signal.SIGKILL)
    _until_zombie(pid)
    assert helper_spare.take() is None
    assert pid_gone(pid)
    assert helper_spare.pid() is None


def test_discard_stops_and_reaps_the_spare() -> None:
    """At shutdown (and between tests) the spare is stopped and collected: no zombie."""
    pid = _started_spare()
    helper_spare.discard()
    assert pid_gone(pid)
    assert helper_spare.pid() is None


def test_building_an_imap_source_starts_the_spare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mailwatch run`` builds its sources at start-up: the IMAP one starts the spare then."""
    monkeypatch.setenv("MW_TEST_IMAP_PASSWORD", "secret")
    path = tmp_path / "mailwatch.toml"
    path.write_text(
        '[store]\npath = "mw.db"\n[sources.inbox]\ntype = "imap"\nhost = "127.0.0.1"\n'
        'security = "plain"\nuser = "u"\npassword = { env = "MW_TEST_IMAP_PASSWORD" }\n',
        encoding="utf-8",
    )
    settings = config.load(path)
    assert helper_spare.pid() is None
    with Store(tmp_path / "mw.db") as store:
        assert [s.name for s in build_sources(settings, store)] == ["inbox"]
    assert helper_spare.pid() is not None
    assert helper_spare.wait_ready(10.0)


def test_a_spare_that_died_is_reaped_and_replaced_by_the_next_prestart() -> None:
    """The IMAP source calls ``prestart`` after every probe: a dead spare is not left a zombie."""
    pid = _started_spare()
    os.kill(pid, signal.SIGKILL)
    _until_zombie(pid)
    prestart()
    assert pid_gone(pid)
    replacement = helper_spare.pid()
    assert replacement is not None
    assert replacement != pid
    assert helper_spare.wait_ready(10.0)


def test_a_spare_imports_nothing_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``mailwatch`` package planted where mailwatch was started is not the one it runs."""
    planted = tmp_path / "mailwatch"
    planted.mkdir()
    (planted / "__init__.py").write_text("raise SystemExit('planted package imported')\n")
    monkeypatch.chdir(tmp_path)
    _started_spare()
    spare = helper_spare.take()
    assert spare is not None
    pid, write_fd, read_fd = spare
    try:  # it says it is ready: the real decoders were imported
        assert read_frame(read_fd, FrameBuffer(), cast(list[object], [])) == READY
    finally:
        os.close(write_fd)
        os.close(read_fd)
        os.waitpid(pid, 0)
