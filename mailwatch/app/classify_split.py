"""A large batch of new messages classified on two cores: a forked helper takes half.

The first scan of a large queue classifies every message (the classifier's fast path reads
each subject: ~7 µs a message) on this process's one busy core while the other is idle: the
Postfix listing that fed the scan has ended. From :data:`SPLIT_FROM` new messages on,
:func:`classify_many` forks a helper (:func:`mailwatch.sources.forking.fork_helper`: pure work only,
the same classifier, already in its memory) that classifies the second half while this
process classifies the first. The helper answers with plain values (class name, priority,
rule, what it matched on, or ``None`` for a message it could not classify), made back into
:class:`~mailwatch.core.model.Classification` values here (equal ones shared). 10,000 new
messages: ~30 ms less of a ~0.55 s first scan.

A helper that cannot start, exits, answers something of the wrong shape, or has not answered
once this process has waited :data:`ANSWER_FACTOR` times as long as its own half took (at
least :data:`ANSWER_GRACE`: the event loop waits meanwhile, so the bound follows the work) is
killed and reaped, and its half is classified here (logged at warning): nothing is lost, and
the answer is always the same as classifying here.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable, Sequence
from typing import cast

import structlog

from mailwatch.core.model import Classification, Message, Priority
from mailwatch.errors import FrameError, HeadersReleased
from mailwatch.sources.forking import fork_helper
from mailwatch.sources.frames import FrameBuffer, pack, write_all

log = structlog.get_logger(__name__)

SPLIT_FROM = 4_000
"""New messages from which half are classified by a helper process (fewer: not worth a fork)."""
ANSWER_GRACE = 1.0
"""Seconds the helper has at least, after this process classified its own half, to answer."""
ANSWER_FACTOR = 4
"""The helper has this many times as long as this process took for its own half, at least."""
PIPE_SIZE = 1 << 20

Classify = Callable[[Message], Classification]
Answer = tuple[str, int, str, str | None] | None
"""One message as the helper answers: name, priority, rule, matched on (``None``: not done)."""


def classify_many(classify: Classify, messages: Sequence[Message]) -> dict[str, Classification]:
    """The classification of each message, by key (see the module docstring).

    Messages ``classify`` raised :class:`~mailwatch.errors.HeadersReleased` for are left
    out: the caller classifies them its own way.
    """
    if len(messages) < SPLIT_FROM:
        return _here(classify, messages)
    half = len(messages) // 2
    theirs = messages[half:]
    try:
        pid, to_helper, from_helper = fork_helper(lambda _r, w: _serve(classify, theirs, w),
                                                  PIPE_SIZE)  # fmt: skip
    except OSError as exc:
        log.warning("classify_helper_failed", reason=f"cannot start it: {exc}")
        return _here(classify, messages)
    os.close(to_helper)  # it is given nothing but its half, already in its memory
    started = time.monotonic()
    found = _here(classify, messages[:half])
    wait = max(ANSWER_GRACE, ANSWER_FACTOR * (time.monotonic() - started))
    answers = _collect(pid, from_helper, len(theirs), wait)
    if answers is None:
        found.update(_here(classify, theirs))
        return found
    made: dict[tuple[str, int, str, str | None], Classification] = {}
    for message, answer in zip(theirs, answers, strict=True):
        if answer is None:
            continue
        got = made.get(answer)
        if got is None:
            name, priority, rule, matched_on = answer
            got = made[answer] = Classification(name, Priority(priority), rule, matched_on)
        found[message.key] = got
    return found


def _here(classify: Classify, messages: Sequence[Message]) -> dict[str, Classification]:
    found: dict[str, Classification] = {}
    for message in messages:
        with contextlib.suppress(HeadersReleased):
            found[message.key] = classify(message)
    return found


def _serve(classify: Classify, messages: Sequence[Message], write_fd: int) -> None:
    """The helper: classify ``messages``, answer in one frame (see :data:`Answer`)."""
    answers: list[Answer] = []
    for message in messages:
        try:
            found = classify(message)
        except HeadersReleased:
            answers.append(None)
        else:
            answers.append((found.name, int(found.priority), found.rule, found.matched_on))
    write_all(write_fd, pack(answers))


def _collect(pid: int, read_fd: int, count: int, wait: float) -> list[Answer] | None:
    """The helper's answers within ``wait`` seconds (``None``: it failed); always reaped."""
    buffer, values = FrameBuffer(), []
    reason = ""
    deadline = time.monotonic() + wait
    poller = select.poll()
    poller.register(read_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(max(1, int(left * 1000))):
                reason = f"no answer within {wait:.1f}s"
                break
            data = os.read(read_fd, 1 << 20)
            if not data:
                break
            values.extend(buffer.feed(data))
    except (OSError, FrameError) as exc:
        reason = f"unreadable answer: {exc}"
    finally:
        os.close(read_fd)
    status = _reap(pid, kill=bool(reason))
    if not reason:
        if status != 0:
            reason = f"it exited with status {status}"
        elif len(values) != 1 or not _answers(values[0], count):
            reason = "an answer of the wrong shape"
    if reason:
        log.warning("classify_helper_failed", reason=reason)
        return None
    return cast(list[Answer], values[0])  # checked by _answers


def _answers(value: object, count: int) -> bool:
    """Whether ``value`` is ``count`` answers (each ``None`` or a valid plain classification)."""
    if not isinstance(value, list) or len(value) != count:
        return False
    priorities = {int(p) for p in Priority}
    return all(
        item is None
        or (
            isinstance(item, tuple)
            and len(item) == 4
            and isinstance(item[0], str)
            and item[1] in priorities
            and isinstance(item[2], str)
            and (item[3] is None or isinstance(item[3], str))
        )
        for item in value
    )


def _reap(pid: int, *, kill: bool) -> int:
    """Wait for the helper (killed first if ``kill``); its exit status (-1: killed)."""
    if kill:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # reaped by someone else (a child watcher): nothing to wait for
        return -1
    return os.waitstatus_to_exitcode(status) if not kill else -1
