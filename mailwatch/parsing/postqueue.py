"""Parse ``postqueue -j`` output: one JSON object per line, one line per queued message.

Documented members (postqueue(1)): ``queue_name``, ``queue_id``, ``arrival_time``,
``message_size``, ``forced_expire``, ``sender``, ``recipients`` (``address``, optional
``delay_reason``). The man page warns the set grows, so unknown members are ignored. A line
that is not a JSON object with the required members is reported as a :class:`Malformed`
value, never raised: one bad line must not hide the rest of the queue.

Example line::

    {"queue_name": "deferred", "queue_id": "E305A20C967", "arrival_time": 1795953996,
     "message_size": 504, "forced_expire": false, "sender": "om@probation.example",
     "recipients": [{"address": "ppcs@justice.example",
                     "delay_reason": "connect to 127.0.0.1[127.0.0.1]:25: Connection refused"}]}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from sys import intern
from typing import NamedTuple, cast

from mailwatch.core.model import Recipient


class QueueEntry(NamedTuple):
    """One message as ``postqueue -j`` lists it (no headers yet).

    A named tuple: one is built per listed message (a third of a frozen dataclass's cost).
    """

    queue_name: str
    queue_id: str
    arrival: datetime
    size: int
    sender: str
    recipients: tuple[Recipient, ...]
    forced_expire: bool = False


@dataclass(frozen=True, slots=True)
class Malformed:
    """A line that could not be parsed, and why (the line is not kept: it holds addresses)."""

    line_number: int
    reason: str


def _recipient(item: object) -> Recipient:
    if not isinstance(item, dict) or not isinstance(item.get("address"), str):
        raise ValueError("recipient without an address")
    reason = item.get("delay_reason")
    # Interned: a backlog repeats a few addresses and delay reasons across thousands of
    # messages, and each parsed copy would otherwise be kept for as long as the message queues.
    return Recipient(intern(item["address"]), intern(reason) if isinstance(reason, str) else None)


_DECODER = json.JSONDecoder()
# The decoder's scanner (set in its __init__; typeshed does not declare it).
_SCAN: Callable[[str, int], tuple[object, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
_NUMBER = (int, float)


def _loads(line: str | bytes) -> object:
    """``json.loads(line)``, minus its overhead for the usual line (``{``, then not NUL)."""
    if isinstance(line, bytes) and line[:1] == b"{" and line[1:2] != b"\x00":
        # json.loads would detect UTF-8 here, decode like this and use this decoder, whose
        # scanner is called directly for a line that is one object and nothing after it
        text = line.decode("utf-8", "surrogatepass")
        try:
            obj, end = _SCAN(text, 0)
        except StopIteration:
            obj, end = None, -1
        if end == len(text):
            return obj
        return _DECODER.decode(text)  # trailing blanks, or the error json.loads raises
    return json.loads(line)


def parse_line(line: str | bytes, line_number: int = 0) -> QueueEntry | Malformed | None:
    """Parse one line; ``None`` for a blank line, :class:`Malformed` for anything unusable."""
    if not line.strip():
        return None
    try:
        obj = _loads(line)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return Malformed(line_number, f"not JSON ({exc.__class__.__name__})")
    except RecursionError:  # nested arrays or objects deeper than the interpreter's limit
        return Malformed(line_number, "not JSON (nested too deep)")
    return _entry(obj, line_number)


def parse_lines(
    lines: Sequence[bytes], first_number: int = 1
) -> list[QueueEntry | Malformed] | None:
    """``[parse_line(line, first_number + i) …]`` when every line starts with ``{``, else ``None``.

    The lines are decoded as one JSON array (one call, ~1 µs a line less) when they are one
    object each; any that is not (a JSON error, or two objects on a line) sends them all to
    :func:`parse_line`, line by line: the same answers either way. ``None`` (a line that
    cannot be an object: blank, or anything else first) leaves them to the caller.
    """
    if not all(line[:1] == b"{" for line in lines):
        return None
    try:
        objs = json.loads(b"[" + b",".join(lines) + b"]")
    except (ValueError, RecursionError):
        objs = None
    if not isinstance(objs, list) or len(objs) != len(lines):
        return [cast(QueueEntry | Malformed, parse_line(line, first_number + i))
                for i, line in enumerate(lines)]  # fmt: skip
    return [_entry(obj, first_number + i) for i, obj in enumerate(objs)]


def _entry(obj: object, line_number: int) -> QueueEntry | Malformed:
    """The entry a line's decoded JSON describes, or why it cannot be one."""
    if not isinstance(obj, dict):
        return Malformed(line_number, "not a JSON object")
    try:
        queue_name, queue_id = obj["queue_name"], obj["queue_id"]
        arrival, size = obj["arrival_time"], obj.get("message_size", 0)
        if not isinstance(queue_name, str) or not isinstance(queue_id, str) or not queue_id:
            raise ValueError("queue_name/queue_id must be non-empty strings")
        if isinstance(arrival, bool) or not isinstance(arrival, _NUMBER):
            raise ValueError("arrival_time must be a number")
        sender = obj.get("sender", "")
        recipients = tuple([_recipient(r) for r in obj.get("recipients") or ()])
        return QueueEntry(
            intern(queue_name),
            intern(queue_id),  # as the queue-directory watcher's name for its files: one object
            datetime.fromtimestamp(arrival, UTC),
            int(size) if isinstance(size, _NUMBER) and not isinstance(size, bool) else 0,
            intern(sender) if isinstance(sender, str) else "",
            recipients,
            obj.get("forced_expire") is True,
        )
    except KeyError as exc:
        return Malformed(line_number, f"missing member {exc.args[0]!r}")
    except (ValueError, TypeError, OverflowError, OSError) as exc:
        return Malformed(line_number, str(exc) or exc.__class__.__name__)


def listing_warnings(stderr: str) -> tuple[str, ...]:
    """The distinct ``warning:`` texts postqueue printed on stderr."""
    return tuple(
        dict.fromkeys(
            line.split("warning:", 1)[1].strip()
            for line in stderr.splitlines()
            if "warning:" in line
        )
    )
