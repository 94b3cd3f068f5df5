"""Postfix queue ids, short and long, and the hashed queue directory each one lives in (pure).

Postfix has two queue id forms (``mail_queue.h``, ``enable_long_queue_ids``):

* **short** (the default): the arrival microseconds as 5 upper-case hex digits, then the
  queue file's inode number in hex, e.g. ``7C2BA2101ED``;
* **long** (``enable_long_queue_ids = yes``): the arrival seconds (6 base-52 digits), the
  microseconds (4 base-52 digits), a ``z``, then the inode number in base 51, e.g.
  ``4jjVfD1QdfzJ9Mq`` (real output of Postfix 3.7, ``postqueue -j`` and the log agree); the
  digits are 0-9 and the consonants.

A hashed queue (``deferred``, ``defer``: ``hash_queue_names``) keeps a file in one
subdirectory per ``hash_queue_depth`` level, named by the microseconds as 5 hex digits: for a
short id that is simply its first characters, for a long id the base-52 microseconds must be
converted first. ``4jjVfD1QdfzJ9Mq`` (microseconds ``1Qdf`` = 201846 = ``0x31476``) lives in
``deferred/3/``, not ``deferred/4/`` (as seen on a real Postfix 3.7).
"""

from __future__ import annotations

import re

_BASE52 = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"
"""Postfix's "safe" digits (``safe_ultostr``): 0-9 and the consonants, upper then lower case
(no vowels, so an id never spells a word). Base 51 drops the last, ``z``: the separator."""
LONG_SEC_PAD, LONG_USEC_PAD, SHORT_USEC_PAD = 6, 4, 5
"""``MQID_LG_SEC_PAD``, ``MQID_LG_USEC_PAD``, ``MQID_SH_USEC_PAD``."""

SHORT_ID = r"[0-9A-F]{6,}"
LONG_ID = r"[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]{1,20}"
QUEUE_ID = rf"(?:{LONG_ID}|{SHORT_ID})"
"""Either form (the long one first: it never matches a short id, which has no ``z``)."""
_LONG = re.compile(rf"^{LONG_ID}$")
_ANY = re.compile(rf"^{QUEUE_ID}$")


def is_long(queue_id: str) -> bool:
    """Whether ``queue_id`` has the long form (``enable_long_queue_ids = yes``)."""
    return _LONG.match(queue_id) is not None


def is_queue_id(queue_id: str) -> bool:
    """Whether ``queue_id`` is a Postfix queue id, short or long."""
    return _ANY.match(queue_id) is not None


def hash_dirs(queue_id: str, depth: int = 1) -> str:
    """The hashed subdirectories of ``queue_id``'s file, e.g. ``"3"`` (depth 2: ``"3/3"``).

    Postfix names them by the arrival microseconds as 5 hex digits (``mail_queue_dir``).
    """
    if is_long(queue_id):
        usec = 0
        for char in queue_id[LONG_SEC_PAD : LONG_SEC_PAD + LONG_USEC_PAD]:
            usec = usec * 52 + _BASE52.index(char)
        hashed = f"{usec:0{SHORT_USEC_PAD}X}"
    else:
        hashed = queue_id
    return "/".join(hashed[:depth])
