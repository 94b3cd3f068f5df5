"""Postfix source helpers: what a reconciliation compares, and whether the master runs."""

from __future__ import annotations

import os
from collections.abc import Iterable

from mailwatch.core.model import Message


def _listed(message: Message) -> tuple[object, ...]:
    """What ``postqueue -j`` says of a message (what a reconciliation compares)."""
    return (
        message.queue,
        message.arrival,
        message.size,
        message.sender,
        message.recipients,
        message.forced_expire,
    )


def differences(listing: Iterable[Message], seen: Iterable[Message]) -> set[str]:
    """Queue ids listed by one and not the other, or listed differently."""
    by_id = {message.queue_id: _listed(message) for message in listing}
    other = {message.queue_id: _listed(message) for message in seen}
    return {
        queue_id
        for queue_id in by_id.keys() | other.keys()
        if by_id.get(queue_id) != other.get(queue_id)
    }


def unchanged_objects(
    listing: Iterable[Message], seen: Iterable[Message], differing: set[str]
) -> tuple[Message, ...]:
    """The listing, with the incremental view's own object for every message not differing.

    The scanner recognises an unchanged message by identity: a reconciliation that agrees
    must cost it nothing.
    """
    kept = {message.queue_id: message for message in seen}
    return tuple(m if m.queue_id in differing else kept[m.queue_id] for m in listing)


MAIL_SYSTEM_DOWN = "Mail system is down -- accessing queue directly (master is not running)"


def mail_system_down(queue_dir: str) -> str | None:
    """The warning postqueue gives when the instance's master process is not running, else ``None``.

    The master writes its pid to ``pid/master.pid`` under the queue directory; a pid file
    that is missing, unreadable as a number, or names no process means it is down.
    """
    try:
        with open(f"{queue_dir}/pid/master.pid", "rb") as pid_file:
            pid = int(pid_file.read().strip() or b"0")
    except (OSError, ValueError):
        return MAIL_SYSTEM_DOWN
    if pid <= 0:
        return MAIL_SYSTEM_DOWN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return MAIL_SYSTEM_DOWN
    except PermissionError:
        return None  # alive, owned by someone else
    return None


def mtime_ns(path: os.PathLike[str] | str) -> int | None:
    """A file's modification time in nanoseconds, ``None`` if it cannot be stat-ed."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None
