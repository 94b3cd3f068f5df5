"""Why a message waits, as one of a small fixed set of categories (pure, table-driven).

An MTA's delay reason ("connect to mx.example[192.0.2.1]:25: Connection refused"), a DSN
("4.7.500") or a whole mail-log ``status=deferred (...)`` text becomes one
:class:`ReasonCategory`. The categories are fixed so that they can be metric labels and so
that every interface shows the same word.

How a reason is read, in order (the first answer wins):

1. the queue: Postfix ``hold`` is ``held``, Exim ``frozen`` is ``frozen``;
2. a mailbox source's wait reason ("unread in INBOX", "unanswered in …") is ``unread``;
3. :data:`PHRASES`: case-insensitive substrings, most specific first ("greylist" before
   "try again later", "authentication failed" before the 5.7.x code it carries);
4. the first RFC 3463 enhanced status code in the text (:data:`ENHANCED_CODES`);
5. a bare SMTP reply code (421/452 mean the remote is busy);
6. otherwise ``unknown``.

A rate or volume text with a permanent (5xx) code is ``policy``: the remote blocked the mail
for good, it is not slowing it down. Exim's "retry time not reached for any host" names no
cause (the cause is an earlier line of the message log) and stays ``unknown``.

Then, when the configured ``relayhost`` is given, a ``connect`` or ``dns`` failure that names
it is ``relay_down``: the smarthost itself is unreachable, not the destination.

Matching is linear in the length of the text: substring searches and one RE2 pattern (RE2
never backtracks); the text is cut to :data:`MAX_REASON_CHARS` first.
"""

from __future__ import annotations

import enum
import functools
from typing import Any

MAX_REASON_CHARS = 2048
"""Only this many characters of a reason are read (real reasons are a few hundred)."""


class ReasonCategory(enum.StrEnum):
    """Why a message waits (or was not sent), in one word."""

    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    AUTH = "auth"
    GREYLISTED = "greylisted"
    THROTTLED = "throttled"
    MAILBOX = "mailbox"
    POLICY = "policy"
    RELAY_DOWN = "relay_down"
    HELD = "held"
    FROZEN = "frozen"
    UNREAD = "unread"
    UNKNOWN = "unknown"


C = ReasonCategory

QUEUE_CATEGORY = {"hold": C.HELD, "frozen": C.FROZEN}
"""Queues that say why by themselves."""

MAILBOX_WAIT_PREFIXES = ("unread in ", "unanswered in ", "unflagged in ", "still in ")
"""The wait reasons the IMAP source gives (:mod:`mailwatch.sources.imap`)."""

PHRASES: tuple[tuple[str, ReasonCategory], ...] = (
    # greylisting first: it often says "try again later" and carries 4.7.1 / 4.2.0
    ("greylist", C.GREYLISTED), ("graylist", C.GREYLISTED), ("grey-list", C.GREYLISTED),
    ("not yet authorized to deliver mail from", C.GREYLISTED),
    # authentication (a 535 5.7.8 inside must not read as policy)
    ("sasl authentication failed", C.AUTH), ("authentication failed", C.AUTH),
    ("authentication required", C.AUTH), ("cannot authenticate", C.AUTH),
    ("authentication credentials invalid", C.AUTH), ("authentication unsuccessful", C.AUTH),
    # TLS
    ("tls is required", C.TLS), ("cannot start tls", C.TLS), ("starttls", C.TLS),
    ("tls handshake", C.TLS), ("ssl handshake", C.TLS), ("handshake failure", C.TLS),
    ("certificate not verified", C.TLS), ("certificate verification failed", C.TLS),
    ("certificate has expired", C.TLS), ("untrusted issuer", C.TLS),
    ("tls library problem", C.TLS), ("tls policy", C.TLS), ("must issue a starttls", C.TLS),
    ("encryption required", C.TLS), ("encryption needed", C.TLS),
    # remote busy / rate limits
    ("server busy", C.THROTTLED), ("too many connections", C.THROTTLED),
    ("too many concurrent", C.THROTTLED), ("too many messages", C.THROTTLED),
    ("rate limit", C.THROTTLED), ("rate-limit", C.THROTTLED), ("ratelimit", C.THROTTLED),
    ("unusual rate", C.THROTTLED), ("unexpected volume", C.THROTTLED),
    ("throttl", C.THROTTLED), ("receiving mail at a rate", C.THROTTLED),
    ("too many recipients", C.THROTTLED), ("insufficient system resources", C.THROTTLED),
    # DNS
    ("host or domain name not found", C.DNS), ("name service error", C.DNS),
    ("host not found", C.DNS), ("nxdomain", C.DNS), ("servfail", C.DNS),
    ("no mx", C.DNS), ("mx lookup", C.DNS), ("all relevant mx records point to", C.DNS),
    ("unrouteable", C.DNS), ("unroutable", C.DNS), ("dns lookup", C.DNS),
    ("malformed or unexpected name server reply", C.DNS),
    # connect
    ("connection refused", C.CONNECT), ("connection timed out", C.CONNECT),
    ("no route to host", C.CONNECT), ("network is unreachable", C.CONNECT),
    ("host is unreachable", C.CONNECT), ("connection reset", C.CONNECT),
    ("lost connection with", C.CONNECT), ("timed out while", C.CONNECT),
    ("connect to ", C.CONNECT), ("have been failing for a long time", C.CONNECT),
    ("all hosts for", C.CONNECT), ("remote host closed connection", C.CONNECT),
    ("broken pipe", C.CONNECT),
    # mailbox
    ("over quota", C.MAILBOX), ("quota exceeded", C.MAILBOX), ("mailbox full", C.MAILBOX),
    ("mailbox is full", C.MAILBOX), ("mailbox disabled", C.MAILBOX),
    ("mailbox unavailable", C.MAILBOX), ("account disabled", C.MAILBOX),
    ("account has been disabled", C.MAILBOX), ("user unknown", C.MAILBOX),
    ("no such user", C.MAILBOX), ("unknown user", C.MAILBOX), ("does not exist", C.MAILBOX),
    ("inactive user", C.MAILBOX),
    # policy
    ("spf", C.POLICY), ("dmarc", C.POLICY), ("dkim", C.POLICY),
    ("blocklist", C.POLICY), ("blacklist", C.POLICY), ("blocked using", C.POLICY),
    ("listed at", C.POLICY), ("spamhaus", C.POLICY), ("spamcop", C.POLICY),
    ("policy", C.POLICY), ("access denied", C.POLICY), ("relay access denied", C.POLICY),
    ("spam", C.POLICY), ("unsolicited", C.POLICY), ("reputation", C.POLICY),
    ("blocked", C.POLICY),
    # generic "come back later" last: a policy or greylisting text often says it too
    ("try again later", C.THROTTLED), ("temporarily deferred", C.THROTTLED),
    ("please try later", C.THROTTLED),
)  # fmt: skip
"""Case-insensitive substrings and their category, most specific first."""

ENHANCED_CODES: tuple[tuple[str, ReasonCategory], ...] = (
    # RFC 3463 subjects and details; first prefix that matches wins ("x." = 4 or 5)
    ("x.1.2", C.DNS), ("x.4.3", C.DNS), ("x.4.4", C.DNS),
    ("x.1.", C.MAILBOX), ("x.2.", C.MAILBOX),
    ("x.4.1", C.CONNECT), ("x.4.2", C.CONNECT),
    ("x.4.5", C.THROTTLED), ("x.3.1", C.THROTTLED), ("x.3.2", C.THROTTLED),
    ("x.7.5", C.TLS), ("x.7.10", C.TLS), ("x.7.11", C.TLS),
    ("x.7.8", C.AUTH), ("x.7.9", C.AUTH), ("x.7.12", C.AUTH), ("x.7.13", C.MAILBOX),
    ("4.7.1", C.POLICY), ("4.7.", C.THROTTLED), ("5.7.", C.POLICY),
)  # fmt: skip
"""Enhanced status code prefixes (``x.7.10`` is matched whole, not as ``x.7.1``…)."""

BASIC_CODES = {"421": C.THROTTLED, "452": C.THROTTLED}
"""Bare SMTP reply codes that say something on their own."""


@functools.cache
def _patterns() -> tuple[Any, Any]:
    """The enhanced and basic status-code patterns, compiled on first use.

    ``mailwatch stuck`` imports this module, and most of its pages never need RE2.
    """
    import re2

    return (
        re2.compile(r"(?:^|[^0-9.])([245]\.[0-9]{1,3}\.[0-9]{1,3})(?:[^0-9.]|\.?$|\.[^0-9])"),
        re2.compile(r"(?:^|[^0-9.\-])([245][0-9][0-9])(?:[ \-]|$)"),
    )


def enhanced_code(text: str) -> str | None:
    """The first RFC 3463 enhanced status code in ``text`` (``"4.7.500"``), or ``None``."""
    found = _patterns()[0].search(text[:MAX_REASON_CHARS])
    return found.group(1) if found else None


def _by_code(code: str) -> ReasonCategory | None:
    general = "x" + code[1:]
    for prefix, category in ENHANCED_CODES:
        key = general if prefix.startswith("x") else code
        if key == prefix or (prefix.endswith(".") and key.startswith(prefix)):
            return category
    return None


def _relay_host(relayhost: str) -> str:
    """``[relay.example]:587`` → ``relay.example``; ``relay.example:25`` → ``relay.example``."""
    host = relayhost.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def mentions_host(text: str, host: str) -> bool:
    """Whether ``text`` (lower-cased) names ``host`` as a host, e.g. ``relay.example[``."""
    if not host:
        return False
    return any(f"{host}{end}" in text for end in ("[", "]", ":", " ", ",", ")")) or (
        text.endswith(host)
    )


def categorize(
    reason: str | None, *, queue: str | None = None, relayhost: str | None = None
) -> ReasonCategory:
    """The category of a delay reason / DSN / mail-log text, optionally knowing its queue.

    ``relayhost`` (Postfix ``relayhost``, e.g. ``[smarthost.example]:587``) turns a
    ``connect`` or ``dns`` failure that names it into ``relay_down``. Never raises.
    """
    if queue in QUEUE_CATEGORY:
        return QUEUE_CATEGORY[queue]
    if not reason:
        return C.UNKNOWN
    text = reason[:MAX_REASON_CHARS].lower()
    if text.startswith(MAILBOX_WAIT_PREFIXES):
        return C.UNREAD
    category = _by_phrase(text) or _by_codes(text) or C.UNKNOWN
    if category is C.THROTTLED and _permanent(text):
        category = C.POLICY  # "blocked" for good (5.7.1 "unusual rate"): not a slow-down
    if relayhost and category in (C.CONNECT, C.DNS):
        host = _relay_host(relayhost)
        if mentions_host(text, host):
            return C.RELAY_DOWN
    return category


def _permanent(text: str) -> bool:
    code = enhanced_code(text)
    if code is not None:
        return code.startswith("5")
    basic = _patterns()[1].search(text)
    return basic is not None and basic.group(1).startswith("5")


def _by_phrase(text: str) -> ReasonCategory | None:
    for phrase, category in PHRASES:
        if phrase in text:
            return category
    return None


def _by_codes(text: str) -> ReasonCategory | None:
    code = enhanced_code(text)
    if code is not None:
        found = _by_code(code)
        if found is not None:
            return found
    basic = _patterns()[1].search(text)
    return BASIC_CODES.get(basic.group(1)) if basic else None
