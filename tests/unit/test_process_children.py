"""Child processes of sources are always reaped, whenever a cancellation or failure lands.

The cancellation tests inject the fault a real server cannot produce on demand: the event loop's
``connect_read_pipe`` is replaced by a fake that raises at the moment the child has been started
but its pipes are not yet connected (the window a cancelled probe's ``postconf`` fell into: the
unreaped child's transport was then garbage-collected during some later, unrelated test).
"""

from __future__ import annotations

import asyncio
import gc
import os
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from mailwatch.sources import process
from mailwatch.sources.process import Child


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


class _Recorder:
    """Wraps ``asyncio.create_subprocess_exec`` to keep the processes it starts."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self._real = asyncio.create_subprocess_exec

    async def __call__(self, *args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        proc = await self._real(*args, **kwargs)
        self.procs.append(proc)
        return proc


def _fake_connect_failing_at(
    loop: asyncio.AbstractEventLoop, call: int, error: Callable[[], BaseException]
) -> Any:
    """A fake ``connect_read_pipe`` whose ``call``-th call (1-based) raises ``error()``."""
    real = loop.connect_read_pipe
    calls = 0

    async def fake(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == call:
            raise error()
        return await real(*args, **kwargs)

    return fake


@pytest.mark.parametrize("call", [1, 2])
@pytest.mark.parametrize("error", [asyncio.CancelledError, lambda: OSError(24, "Too many")])
async def test_child_is_reaped_when_start_fails_after_spawn(
    monkeypatch: pytest.MonkeyPatch, call: int, error: Callable[[], BaseException]
) -> None:
    """A failure between spawning and connecting the pipes kills and reaps the child."""
    loop = asyncio.get_running_loop()
    recorder = _Recorder()
    monkeypatch.setattr(asyncio, "create_subprocess_exec", recorder)
    monkeypatch.setattr(loop, "connect_read_pipe", _fake_connect_failing_at(loop, call, error))
    before = _open_fds()
    with pytest.raises((asyncio.CancelledError, OSError)):
        await Child.start(["sleep", "30"])
    [proc] = recorder.procs
    assert proc.returncode is not None, "the started child was left running"
    assert not _alive(proc.pid)
    assert _open_fds() <= before, "pipe descriptors leaked"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gc.collect()  # an unreaped transport would warn here (ResourceWarning)


async def test_cancelled_run_kills_and_reaps_its_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelling a running command kills it and waits for it."""
    recorder = _Recorder()
    monkeypatch.setattr(asyncio, "create_subprocess_exec", recorder)
    task = asyncio.create_task(process.run(["sleep", "30"], 60))
    for _ in range(500):
        if recorder.procs:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [proc] = recorder.procs
    assert proc.returncode is not None
    assert not _alive(proc.pid)


async def test_run_returns_output_and_status() -> None:
    """stdout, stderr and the exit status come back separately."""
    returncode, out, err = await process.run(["sh", "-c", "echo out; echo err >&2; exit 3"], 10)
    assert (returncode, out, err) == (3, b"out\n", b"err\n")


async def test_run_timeout_kills_the_whole_group(tmp_path: Any) -> None:
    """A timed-out command's grandchildren are killed with it (they hold its stdout open)."""
    pid_file = tmp_path / "grandchild.pid"
    script = f"sleep 30 & echo $! > {pid_file}; wait"
    with pytest.raises(TimeoutError):
        await process.run(["sh", "-c", script], 0.5)
    grandchild = int(pid_file.read_text())
    for _ in range(100):  # killed at once; reaped by init shortly after
        if not _alive(grandchild):
            break
        await asyncio.sleep(0.02)
    assert not _alive(grandchild)


async def test_abandon_cancelled_while_waiting_still_reaps() -> None:
    """A cancellation during abandon's wait (its caller giving up too) still reaps the child.

    The race seen in the suite: a ``postconf`` run timed out and was being abandoned when the
    probe that started it was cancelled; the killed child was never waited for.
    """
    child = await Child.start(["sleep", "30"])
    abandoning = asyncio.create_task(child.abandon())
    await asyncio.sleep(0)  # abandon has sent SIGKILL and is waiting for the exit
    abandoning.cancel()
    with pytest.raises(asyncio.CancelledError):
        await abandoning
    assert child.proc.returncode is not None, "the killed child was not waited for"
    assert not _alive(child.pid)
