"""When each replay message left the MTA it entered, from that Postfix's own log (pure).

The replay gives every message a ``Message-ID`` of ``<replay-N@replay.invalid>``; Postfix logs
it at ``cleanup`` with the queue id, and ``status=sent`` against the queue id when it leaves.
This parser is the replay's own (not mailwatch's): it is the ground truth mailwatch is
measured against.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

MESSAGE_ID = "<replay-{index}@replay.invalid>"
_STAMP = re.compile(
    r"^(?:(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
    r"|(?P<bsd>[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?)) \S+ postfix\S*?/(?P<svc>[\w-]+)"
    r"\[\d+\]: (?P<qid>[0-9A-Za-z]+): (?P<rest>.*)$"
)
_ID = re.compile(r"^message-id=<replay-(\d+)@replay\.invalid>")


def _when(match: re.Match[str], year: int) -> float:
    if match.group("iso"):
        stamp = datetime.fromisoformat(match.group("iso").replace("Z", "+00:00"))
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    text = " ".join(match.group("bsd").split())
    fmt = "%Y %b %d %H:%M:%S.%f" if "." in text else "%Y %b %d %H:%M:%S"
    return datetime.strptime(f"{year} {text}", fmt).replace(tzinfo=UTC).timestamp()


def departures(lines: Iterable[str], year: int) -> dict[int, float]:
    """Replay message index -> when its first recipient was sent on (``status=sent``)."""
    queue_ids: dict[str, int] = {}
    left: dict[int, float] = {}
    for line in lines:
        match = _STAMP.match(line)
        if match is None:
            continue
        qid, rest = match.group("qid"), match.group("rest")
        if match.group("svc") == "cleanup":
            found = _ID.match(rest)
            if found:
                queue_ids[qid] = int(found.group(1))
        elif "status=sent" in rest and qid in queue_ids:
            left.setdefault(queue_ids[qid], _when(match, year))
    return left
