"""A Postfix defer log (``defer/X/ID``): why delivery to each recipient was delayed (pure).

The ``defer`` service appends one entry per deferred recipient while the message is in the
active queue; the queue manager removes the file when it next activates the message. An
entry is a group of lines ended by a blank line: ``name=value`` attributes (``recipient``,
``reason``…) and, for compatibility, an old-style ``<address>: reason`` line first. This is
``bounce_log_read`` (Postfix ``src/global/bounce_log.c``) as showq uses it: within an entry a
later line overrides an earlier one; a missing address is ``(recipient address
unavailable)``, a missing reason ``(description unavailable)``; lines are made printable.

Real content (Postfix 3.7)::

    <spo27@hmcts.cjsm.net>: delivery temporarily suspended: connect to ...: Connection refused
    recipient=spo27@hmcts.cjsm.net
    offset=661
    dsn_orig_rcpt=rfc822;spo27@hmcts.cjsm.net
    status=4.4.1
    action=delayed
    reason=delivery temporarily suspended: connect to ...: Connection refused
"""

from __future__ import annotations

from sys import intern

from mailwatch.parsing.envelope import printable

NO_ADDRESS = "(recipient address unavailable)"
NO_REASON = "(description unavailable)"
EMPTY_RECIPIENT = "(MAILER-DAEMON)"
_PLAIN = bytes(range(32, 127)) + b"\n"


def _entry(lines: list[str]) -> tuple[str, str]:
    address = reason = ""
    for line in lines:
        if line.startswith("recipient="):  # as Postfix writes them: no blanks around "="
            address = line[10:].strip() or EMPTY_RECIPIENT
        elif line.startswith("reason="):
            reason = line[7:].strip()
        elif line[:1].isascii() and line[:1].isalnum():
            name, sep, value = line.partition("=")
            if not sep or not name.strip():
                continue  # split_nameval: malformed, skipped
            name, value = name.strip(), value.strip()
            if name == "recipient":
                address = value or EMPTY_RECIPIENT
            elif name == "reason":
                reason = value
        elif line.startswith("<") and ">: " in line:
            recipient, _, text = line[1:].partition(">: ")
            address = recipient or EMPTY_RECIPIENT
            reason = text.lstrip()
    return intern(address or NO_ADDRESS), intern(reason or NO_REASON)


def parse_defer_log(data: bytes) -> tuple[tuple[str, str], ...]:
    """``(recipient, reason)`` per entry, in file order (a recipient may repeat)."""
    entries: list[tuple[str, str]] = []
    lines: list[str] = []
    if not data.translate(None, _PLAIN):  # printable ASCII only (the usual case): one decode
        raw_lines = data.decode("ascii").split("\n")
    else:
        raw_lines = [printable(line) for line in data.split(b"\n")]
    if not raw_lines[-1]:
        raw_lines.pop()  # what follows the last newline: nothing, not a blank line
    for raw in raw_lines:
        if not raw:
            if lines:
                entries.append(_entry(lines))
                lines = []
            continue
        lines.append(raw)
    # An entry not yet ended by its blank line (being written) is not read, as in showq.
    return tuple(entries)
