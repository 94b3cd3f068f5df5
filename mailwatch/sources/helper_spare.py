"""A decoding helper started ahead of need, as a new interpreter: no fork of a large process.

An IMAP first sync of many messages hands header blocks to a second process
(:class:`~mailwatch.sources.imap_decoder_process.DecoderProcess`). Forked at that moment
from mailwatch's own process, the helper costs the parent a copy of every page it writes
while the helper lives: at 10,000 messages ~7,000 page faults (15-30 ms of system time,
a tenth of the sync's CPU), at 100,000 ~60,000 (0.1-0.2 s), and the larger the process
(the busier the incident), the more. A *spare* avoids that: a fresh interpreter that runs
:mod:`mailwatch.sources.imap_decoder_child`, started while nothing is urgent (when the IMAP
source is built, and after any probe that left none: one used, or one that died), and handed
to the next large sync, which uses it once, exactly like a forked child (cold caches, ended
with the sync).

There is at most one spare per process (:func:`prestart` is idempotent). It imports only
the decoders (~60 ms of CPU, in the background); until it says it is ready, the sync decodes
in its own process, so nothing waits for it. It runs in a session of its own (the
terminal's Ctrl-C is the parent's to handle), reads nothing but its pipe (stdin, stdout and
stderr are ``/dev/null``: a helper never writes message data anywhere else), and exits at
the end of its input, so it never outlives mailwatch: when the parent exits its pipe ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
from pathlib import Path

from mailwatch.sources.forking import helper_pipes

MODULE = "mailwatch.sources.imap_decoder_child"
"""What a spare runs: this module's ``main([program, READ_FD, WRITE_FD])``."""
_BOOT = (
    "import os, sys\n"
    "low, high = sorted(map(int, sys.argv[1:3]))\n"
    "os.closerange(3, low)\n"
    "os.closerange(low + 1, high)\n"
    "os.closerange(high + 1, os.sysconf('SC_OPEN_MAX'))\n"
    "from {module} import main\n"
    "main(sys.argv)\n"
)
"""The new interpreter's first lines: every descriptor it inherited but its two pipes is
closed (anything of this process's left inheritable) before anything is imported."""

Pipes = tuple[int, int, int]
"""A helper's pid, the descriptor this side writes to it on and the one it reads it on."""

_held: list[Pipes] = []
"""The spare, if any (at most one)."""


def prestart(pipe_size: int) -> None:
    """Have a spare: start one in the background unless one is alive (or none can start).

    A spare that has exited meanwhile (killed, out of memory) is reaped first, so it is
    never left a zombie for longer than one call (the IMAP source calls this after every
    probe). A failure to start is not an error: the next large sync forks its helper.
    """
    if _alive() is not None or not sys.executable:
        return
    with contextlib.suppress(OSError):
        _held.append(spawn(MODULE, pipe_size))


def take() -> Pipes | None:
    """The spare, handed over (it is no longer this module's), or ``None``.

    A spare that has exited meanwhile is reaped and not handed over.
    """
    spare = _alive()
    if spare is not None:
        _held.clear()
    return spare


def _alive() -> Pipes | None:
    """The spare if it still runs; one that has exited is reaped and forgotten."""
    if not _held:
        return None
    spare = _held[0]
    pid, write_fd, read_fd = spare
    try:
        exited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        exited = pid
    if exited == 0:
        return spare
    _held.clear()
    for fd in (write_fd, read_fd):
        os.close(fd)
    return None


def pid() -> int | None:
    """The spare's pid, if there is one (for benchmarks: its own CPU before it is used)."""
    return _held[0][0] if _held else None


def wait_ready(timeout: float) -> bool:
    """Whether the spare has said it is ready within ``timeout`` seconds (nothing is read)."""
    if not _held:
        return False
    readable, _, _ = select.select([_held[0][2]], [], [], timeout)
    return bool(readable)


def discard() -> None:
    """Stop and reap the spare, if there is one (for tests).

    An exiting mailwatch needs nothing of the kind: the spare's input ends with it.
    """
    if not _held:
        return
    pid, write_fd, read_fd = _held.pop()
    for fd in (write_fd, read_fd):
        os.close(fd)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def spawn(module: str, pipe_size: int) -> Pipes:
    """Start a new interpreter running ``module.main`` with two pipes; this side's ends.

    The new interpreter finds the same ``mailwatch`` this one runs (its directory leads
    ``PYTHONPATH``). Raises ``OSError`` when the pipes or the process cannot be made
    (nothing is left open then).
    """
    to_child, to_parent = helper_pipes(pipe_size)
    ours, theirs = (to_child[1], to_parent[0]), (to_child[0], to_parent[1])
    try:
        # The child's two descriptors land on numbers neither of them holds now (so the
        # first dup2 cannot overwrite the second before it is copied); dup2 clears
        # close-on-exec on the copies; whatever else is inheritable, _BOOT closes.
        read_at, write_at = _free(theirs)
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
        pid = os.posix_spawn(
            sys.executable,
            # -P: the working directory is not put first on its path (nothing is imported
            # from wherever mailwatch was started)
            [sys.executable, "-P", "-c", _BOOT.format(module=module), str(read_at), str(write_at)],
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, theirs[0], read_at),
                (os.POSIX_SPAWN_DUP2, theirs[1], write_at),
            ],
            setsid=True,
        )
    except OSError:
        for fd in (*ours, *theirs):
            os.close(fd)
        raise
    for fd in theirs:
        os.close(fd)
    return pid, ours[0], ours[1]


def _free(taken: tuple[int, int]) -> tuple[int, int]:
    """Two descriptor numbers above stderr that are not in ``taken``."""
    free = [fd for fd in range(3, 7) if fd not in taken]
    return free[0], free[1]
