"""Canary tokens and submission replies: pure functions, text in, values out.

A canary carries one token, ``PATH.HEX`` (the canary path's name, a dot, 16 random hex
digits), in its ``X-Mailwatch-Canary`` header and in its subject. The path prefix lets a
canary source recognise its own canaries in a mailbox that other paths (or other mail) share:
it only ever touches messages whose header is exactly one of its tokens.

The queue id comes from the submission server's reply to DATA: Postfix says ``250 2.0.0 Ok:
queued as 4XyZ12AB`` (short or long queue ids), Exim ``250 OK id=1tAbCd-000Abc-12``. With it
a canary can be followed through the MTA's queue and log; servers that say neither give none.
"""

from __future__ import annotations

import re
import secrets

CANARY_HEADER = "X-Mailwatch-Canary"
SUBJECT_PREFIX = "mailwatch canary"
_PATH = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = re.compile(r"(?P<path>[A-Za-z0-9_-]{1,64})\.(?P<random>[0-9a-f]{16})")
_QUEUE_ID = re.compile(
    r"\bqueued\s+as\s+(?P<postfix>[0-9A-Za-z]+)\b"  # Postfix, short and long queue ids
    r"|\bid=(?P<exim>[0-9A-Za-z]+(?:-[0-9A-Za-z]+)+)\b",  # Exim 4 (old and new id formats)
    re.IGNORECASE,
)


def valid_path(path: str) -> bool:
    """Whether ``path`` can name a canary path (it goes into tokens and IMAP searches)."""
    return _PATH.fullmatch(path) is not None


def new_token(path: str) -> str:
    """A fresh, unguessable token for a canary of ``path``."""
    if not valid_path(path):
        raise ValueError(f"{path!r} cannot name a canary path (letters, digits, _ and -)")
    return f"{path}.{secrets.token_hex(8)}"


def token_of(value: str | None, path: str) -> str | None:
    """The token in header value ``value`` if it is one of ``path``'s, else ``None``.

    Surrounding whitespace is ignored (a folded header); anything else must match exactly:
    another path's canary or a header someone typed is never taken for ours.
    """
    if value is None:
        return None
    found = _TOKEN.fullmatch(value.strip())
    return found.group(0) if found is not None and found["path"] == path else None


def canary_subject(token: str) -> str:
    """The subject a canary carries: ``mailwatch canary TOKEN``."""
    return f"{SUBJECT_PREFIX} {token}"


def parse_queue_id(reply: str) -> str | None:
    """The queue id in a submission server's reply to DATA, or ``None`` if it gives none."""
    found = _QUEUE_ID.search(reply)
    if found is None:
        return None
    return found["postfix"] or found["exim"]
