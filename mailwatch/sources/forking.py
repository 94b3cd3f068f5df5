"""A short-lived helper process forked from mailwatch's own, to share pure work on a second core.

Two places fork one: an IMAP first sync that finds no spare ready
(:mod:`mailwatch.sources.imap_decoder_process`, :mod:`mailwatch.sources.helper_spare`: header
blocks decoded) and the judgement of a large batch of new messages
(:mod:`mailwatch.app.classify_split`: half of them classified). Forked, not started as a new
interpreter: the child is ready in milliseconds and already holds the parent's data and code
(a new interpreter took 0.1-0.2 s to import mailwatch, most of a 10,000-message first scan).

:func:`fork_helper` gives the child two pipes and nothing else of the parent: it closes every
descriptor it inherited but those, restores the default signal dispositions (the event loop's
wake-up descriptor is the parent's), runs without garbage collection (it lives for one batch
of work, and strings, tuples and dicts of strings make no cycles; 2-3% of its time),
and leaves by ``os._exit``, so nothing of the parent (atexit handlers, buffers, the event
loop) runs in it. It must run only pure Python work (``str``, ``re`` and ``dict`` work on
values already imported), never a lock another thread of the parent could hold (the
interpreter resets its own, the import lock among them, in a forked child), never SQLite or
logging. That is why the warning Python 3.12 gives for a fork in a process with threads is
silenced here. The price of a fork is copy-on-write: each page the parent writes while the
child lives is copied once (~7,000 pages, ~20 ms of system time, in a 10,000-message IMAP
first sync).
"""

from __future__ import annotations

import gc
import os
import signal
import warnings
from collections.abc import Callable

from mailwatch.sources.process import grow_pipe

Serve = Callable[[int, int], None]
"""What the child runs: read requests from the first descriptor, answer on the second."""


def helper_pipes(pipe_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two pipes, to a helper and back (each ``(read, write)``), enlarged to ``pipe_size``.

    Raises ``OSError`` when they cannot be made (nothing is left open then).
    """
    to_child = os.pipe()
    try:
        to_parent = os.pipe()
    except OSError:
        for fd in to_child:
            os.close(fd)
        raise
    for _, write_end in (to_child, to_parent):
        grow_pipe(write_end, pipe_size)  # a larger pipe only saves waits
    return to_child, to_parent


def fork_helper(serve: Serve, pipe_size: int) -> tuple[int, int, int]:
    """Fork a child running ``serve(read_fd, write_fd)``: its pid, and this side's two fds.

    This side writes to the child on the first descriptor returned and reads its answers on
    the second; both pipes are enlarged to ``pipe_size`` where the system allows. The child
    exits with status 0 when ``serve`` returns, 1 when it raises. Raises ``OSError`` when the
    pipes or the fork cannot be made (nothing is left open then).
    """
    to_child, to_parent = helper_pipes(pipe_size)
    try:
        with warnings.catch_warnings():  # Python >= 3.12 warns of threads: see the docstring
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:
        for fd in (*to_child, *to_parent):
            os.close(fd)
        raise
    if pid == 0:  # pragma: no cover - the child (coverage does not follow it)
        code = 1
        try:
            gc.freeze()
            gc.disable()  # short-lived, and its values hold no cycles: nothing to collect
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            low, high = sorted((to_child[0], to_parent[1]))
            os.closerange(3, low)
            os.closerange(low + 1, high)
            os.closerange(high + 1, os.sysconf("SC_OPEN_MAX"))
            serve(to_child[0], to_parent[1])
            code = 0
        finally:
            os._exit(code)
    os.close(to_child[0])
    os.close(to_parent[1])
    return pid, to_child[1], to_parent[0]
