"""Parse Postfix log lines into delivery events (text in, values out; no clock).

Lines look like (``maillog_file`` or syslog; the year is not in the line, so the caller
passes a reference time and the parser picks the year that puts the stamp closest before it)::

    Nov 29 12:15:15 host postfix/smtp[14231]: 7C2BA2101ED: to=<a@x.example>,
        relay=127.0.0.1[127.0.0.1]:34655, delay=2.1, delays=2.1/0/0/0, dsn=2.0.0,
        status=sent (250 2.0.0 Ok: queued as SINKID)
    Nov 29 12:15:13 host postfix/qmgr[14220]: 7D3212101EF: from=<om@probation.example>,
        status=force-expired, returned to sender
    Nov 29 12:15:15 host postfix/qmgr[14220]: 7C2BA2101ED: removed

RFC 3339 stamps (``2026-11-29T12:15:15.123456+00:00``, syslog-ng/rsyslog high precision) are
understood too. The program may be a multi-instance one (``postfix-out/smtp``, its
``syslog_name``) or a service with its own name (``postfix/submission/smtpd``); the queue id
short (``7C2BA2101ED``) or long (``4jjVfD1QdfzJ9Mq``, ``enable_long_queue_ids = yes``; see
:mod:`mailwatch.parsing.queueid`). Lines that are not delivery events (``NOQUEUE``,
``warning:``, ``connect from``…) return ``None`` (the caller counts them).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from mailwatch.core.model import Delivery, DeliveryStatus, LogEvent, Removed

_BSD_STAMP = re.compile(r"^(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d) ")
_ISO_STAMP = re.compile(r"^(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) ")
_BODY = re.compile(
    r"^\S+ (?P<service>postfix(?:-[^\s/\[:]+)?(?:/[^\s/\[:]+)*/[\w-]+)(?:\[\d+\])?: "
    r"(?P<qid>[0-9A-Za-z]{6,}): (?P<rest>.*)$"
)
# service: postfix/smtp, postfix-NAME/smtp (multi-instance), postfix/submission/smtpd (a
# master.cf service with its own syslog_name); each segment stops at "/", so it is linear.
# qid: any run of letters and digits, so both id forms (mailwatch.parsing.queueid) pass; a
# "NOQUEUE: reject" or "warning:" line has no status= and is not an event anyway.
_STATUS = re.compile(r"\bstatus=(?P<status>[a-z-]+)(?: \((?P<text>.*)\))?")
_FIELD = re.compile(r"\b(?P<key>to|orig_to|relay|delay|delays|dsn)=(?P<value><[^<>]*>|[^,\s]+)")
# ``<[^<>]*>``, not ``<[^>]*>``: a value never scans past the next ``<`` (linear in the line)
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
)}  # fmt: skip


def parse_stamp(line: str, reference: datetime) -> tuple[datetime, str] | None:
    """The time at the start of ``line`` and the rest of it; ``None`` if there is no stamp.

    BSD stamps have no year or zone: they are read as UTC in the year that puts them at most
    a day after ``reference`` (so a December line read in January lands in the old year).
    """
    iso = _ISO_STAMP.match(line)
    if iso:
        try:
            stamp = datetime.fromisoformat(iso.group("iso").replace("Z", "+00:00"))
        except ValueError:
            return None
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)), line[iso.end() :]
    bsd = _BSD_STAMP.match(line)
    if not bsd or bsd.group("mon") not in _MONTHS:
        return None
    hour, minute, second = (int(x) for x in bsd.group("time").split(":"))
    for year in (reference.year, reference.year - 1):
        try:
            stamp = datetime(year, _MONTHS[bsd.group("mon")], int(bsd.group("day")),
                             hour, minute, second, tzinfo=UTC)  # fmt: skip
        except ValueError:
            continue
        if stamp <= reference + timedelta(days=1):
            return stamp, line[bsd.end() :]
    return None


def _float(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _delays(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    parts = [_float(p) for p in text.split("/")]
    if len(parts) != 4 or any(p is None for p in parts):
        return None
    a, b, c, d = (p or 0.0 for p in parts)
    return (a, b, c, d)


def program_and_queue_id(line: str, reference: datetime) -> tuple[str, str] | None:
    """The Postfix program (``postfix-out/smtp``) and queue id a line is about, if any."""
    stamped = parse_stamp(line.rstrip("\r\n"), reference)
    body = _BODY.match(stamped[1]) if stamped else None
    return (body.group("service"), body.group("qid")) if body else None


def parse_line(line: str, reference: datetime) -> LogEvent | None:
    """A delivery event from one log line, or ``None`` for any other line."""
    stamped = parse_stamp(line.rstrip("\r\n"), reference)
    if stamped is None:
        return None
    at, rest = stamped
    body = _BODY.match(rest)
    if not body:
        return None
    queue_id, tail = body.group("qid"), body.group("rest")
    if tail == "removed":
        return Removed(at=at, queue_id=queue_id)
    status = _STATUS.search(tail)
    if not status:
        return None
    word = status.group("status")
    if word in ("expired", "force-expired"):
        return Delivery(at=at, queue_id=queue_id, status=DeliveryStatus.EXPIRED, recipient=None,
                        text="expired, returned to sender")  # fmt: skip
    try:
        kind = DeliveryStatus(word)
    except ValueError:
        return None
    fields = {m.group("key"): m.group("value") for m in _FIELD.finditer(tail[: status.start()])}
    recipient = fields.get("to")
    return Delivery(
        at=at,
        queue_id=queue_id,
        status=kind,
        recipient=recipient.strip("<>") if recipient else None,
        relay=fields.get("relay"),
        delay_seconds=_float(fields.get("delay")),
        delays=_delays(fields.get("delays")),
        dsn=fields.get("dsn"),
        text=status.group("text"),
    )
