"""Senders, recipients and subjects of IMAP messages, from their fetched headers.

:func:`describe` is what :class:`~mailwatch.sources.imap.ImapSource` calls once per message
it fetches; :func:`addresses` is ``email.utils.getaddresses`` with a direct parse of the
ordinary lists (``addr``, ``<addr>``, ``Name <addr>``). Both are re-exported by
:mod:`mailwatch.sources.imap`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from email.utils import getaddresses

from mailwatch.core.headers import NormalisedSubject, normalise_subject
from mailwatch.core.model import Headers, Recipient
from mailwatch.parsing.imap_values import forget_minutes

# An ordinary address list: comma-separated ``local@domain``, ``<local@domain>`` or ``Name
# <local@domain>``, with ASCII atoms only in the address and no character in the name that
# getaddresses treats specially (quotes, parentheses, backslashes, brackets, @ , : ;).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR = rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_WORD = r'[^\s()<>@,:;"\[\]\\]+'  # a display-name atom getaddresses reads as one
_ORDINARY = re.compile(
    rf"[ \t]*(?:(?P<bare>{_ADDR})|(?P<name>{_WORD}(?:[ \t]+{_WORD})*)?[ \t]*<(?P<addr>{_ADDR})>)"
    r"[ \t]*"
)
_FALLBACK = re.compile(r'["()\\]|=\?')
_BARE_LIST = re.compile(rf"[ \t]*{_ADDR}[ \t]*(?:,[ \t]*{_ADDR}[ \t]*)*")
"""A list of bare addresses only (``a@b.example, c@d.example``): each entry, stripped of
blanks, is its address, as :func:`_ordinary` reads it. Linear: an address holds no comma."""


# A mailbox holds a few thousand senders but tens of thousands of recipient lists (one to
# three of many addresses): the caches hold that many. An entry costs ~100 bytes; its key and
# value are the header value and the recipients every message with that list shares anyway.
_VALUES_CACHED = 65536


@functools.lru_cache(maxsize=_VALUES_CACHED)
def _ordinary(value: str) -> tuple[tuple[str, str], ...] | None:
    """The pairs of one header value if every entry is ordinary, else ``None``."""
    if not value or _FALLBACK.search(value):
        return None
    pairs: list[tuple[str, str]] = []
    for entry in value.split(","):
        found = _ORDINARY.fullmatch(entry)
        if found is None:
            return None
        bare = found["bare"]
        if bare is not None:
            pairs.append(("", bare))
        else:
            name = found["name"]
            pairs.append((" ".join(name.split()) if name else "", found["addr"]))
    return tuple(pairs)


def addresses(values: Sequence[str]) -> list[tuple[str, str]]:
    """``email.utils.getaddresses(values)``, parsed directly when every entry is ordinary.

    Quotes, parentheses, backslashes or encoded words anywhere, or any entry that is not
    ``addr``, ``<addr>`` or ``Name <addr>`` (groups, bare words, empty entries or values,
    odd spacing or characters) take getaddresses itself; the direct parse gives the same
    pairs. getaddresses joins the values with ", ", so for ordinary values its answer is
    the values' answers in turn: each value's is cached (senders and lists repeat).
    """
    pairs: list[tuple[str, str]] = []
    for value in values:
        found = _ordinary(value)
        if found is None:
            return getaddresses(values)
        pairs.extend(found)
    return pairs


Described = tuple[str, tuple[Recipient, ...], NormalisedSubject]
"""What :func:`describe` tells of a message: sender, recipients, normalised subject."""

_ROLES = {"from": 0, "to": 1, "cc": 2, "subject": 3}
_ROLE_OF: dict[str, int] = {}
"""The role of each header name as spelled (``From``, ``FROM``…): -1 for the other names."""
_ROLE_SPELLINGS = 1024  # more distinct spellings than this are looked up, not remembered


def _role(key: str) -> int:
    role = _ROLES.get(key.lower(), -1)
    if len(_ROLE_OF) < _ROLE_SPELLINGS:
        _ROLE_OF[key] = role
    return role


def describe(headers: Headers) -> Described:
    """A message's sender, recipients and normalised subject, from its headers.

    The sender is the first address of ``From``; the recipients are the distinct addresses
    of every ``To``, then every ``Cc``, in order; the subject is the first ``Subject``.
    """
    found: list[list[str]] = [[], [], [], []]  # from, to, cc, subject: one pass over the items
    role_of = _ROLE_OF.get
    for key, value in headers.items:
        role = role_of(key)
        if role is None:
            role = _role(key)
        if role >= 0:
            found[role].append(value)
    return _described(found)


def describe_parts(parts: Sequence[str]) -> Described:
    """:func:`describe` of the headers whose flat list is ``parts`` (name, value, name, …)."""
    found: list[list[str]] = [[], [], [], []]
    role_of = _ROLE_OF.get
    values = iter(parts[1::2])
    for key in parts[0::2]:
        role = role_of(key)
        if role is None:
            role = _role(key)
        if role >= 0:
            found[role].append(next(values))
        else:
            next(values)
    return _described(found)


_AS_NAMED = frozenset({"From", "To", "Cc", "Subject"})  # the spellings describe_packed reads
_PLAIN_NAMES: set[str] = set()
"""Header names as spelled that need no role loop: ``From``, ``To``, ``Cc``, ``Subject`` as
written, and the names of no role (``Date``…); learnt from the blocks :func:`describe_packed`
meets (bounded like :data:`_ROLE_OF`)."""


def describe_packed(packed: Sequence[str]) -> list[Described]:
    """:func:`describe_parts` of each packed ``Headers`` text (``name NUL value NUL …``).

    A block whose names all occur once and are all plain (:data:`_PLAIN_NAMES`) is read
    through one dict of its fields instead of the loop over its names.
    """
    described: list[Described] = []
    append, plain = described.append, _PLAIN_NAMES
    sender_of, recipients_of, listed = _sender_of, _recipients_of, _listed
    for text in packed:
        parts = text.split("\0")
        pairs = iter(parts)
        fields = dict(zip(pairs, pairs, strict=False))
        if len(fields) * 2 != len(parts) or not fields.keys() <= plain:
            append(describe_parts(parts) if len(parts) % 2 == 0 else _described([[], [], [], []]))
            if len(plain) < _ROLE_SPELLINGS:
                plain.update(k for k in fields if k in _AS_NAMED or k.lower() not in _ROLES)
            continue
        sender, to, cc, subject = map(fields.get, ("From", "To", "Cc", "Subject"))
        if cc is None:
            recipients = () if to is None else recipients_of(to)
        else:
            recipients = listed((cc,) if to is None else (to, cc))
        append((
            "" if sender is None else sender_of(sender),
            recipients,
            normalise_subject(subject or "", decoded=True),
        ))  # fmt: skip
    return described


def _described(found: list[list[str]]) -> Described:
    """:func:`describe` of the values found per role (from, to, cc, subject)."""
    senders, to, cc, subjects = found
    if len(senders) == 1:
        sender = _sender_of(senders[0])
    else:
        sender = next((a for _, a in addresses(senders) if a), "") if senders else ""
    if not cc:
        recipients = _recipients_of(to[0]) if len(to) == 1 else _listed(tuple(to))
    else:
        recipients = _listed((*to, *cc))
    return sender, recipients, normalise_subject(subjects[0] if subjects else "", decoded=True)


@functools.lru_cache(maxsize=_VALUES_CACHED)
def _listed(values: tuple[str, ...]) -> tuple[Recipient, ...]:
    """The distinct recipients of several ``To`` and ``Cc`` values, in order (cached)."""
    if not values:
        return ()
    if all(_ordinary(value) is not None for value in values):
        # each ordinary value's addresses are its own (see addresses()): merge the cached
        # per-value recipients, first occurrences in order, as one parse of them all would
        merged: dict[str, Recipient] = {}
        for value in values:
            for recipient in _recipients_of(value):
                merged.setdefault(recipient.address, recipient)
        return tuple(merged.values())
    return _recipients(values)


def _recipients(values: Sequence[str]) -> tuple[Recipient, ...]:
    """The distinct addresses of ``values`` in order, as recipients without delay reasons."""
    return tuple(map(_recipient, dict.fromkeys(a for _, a in addresses(values) if a)))


# One Recipient per address (immutable, so shared): a frozen dataclass costs ~1 µs to build,
# and a mailbox's recipient lists (tens of thousands) name far fewer distinct addresses.
_recipient = functools.lru_cache(maxsize=_VALUES_CACHED)(Recipient)


@functools.lru_cache(maxsize=_VALUES_CACHED)
def recipients_named(named: tuple[str, ...]) -> tuple[Recipient, ...]:
    """The recipients of these addresses, in order (what the decoding process names)."""
    return tuple(map(_recipient, named))


# Senders and recipient lists repeat across a mailbox: each distinct value is parsed once.
@functools.lru_cache(maxsize=_VALUES_CACHED)
def _sender_of(value: str) -> str:
    """The first address of one ``From`` value (``""`` if it has none)."""
    if "," not in value and "=?" not in value:  # one ordinary entry: read it here
        found = _ORDINARY.fullmatch(value)
        if found is not None:
            return str(found["bare"] or found["addr"])
    return next((a for _, a in addresses((value,)) if a), "")


@functools.lru_cache(maxsize=_VALUES_CACHED)
def _recipients_of(value: str) -> tuple[Recipient, ...]:
    """:func:`_recipients` of one value (the usual single ``To``)."""
    if "=?" not in value and _BARE_LIST.fullmatch(value):  # bare addresses: split them here
        return tuple(map(_recipient, dict.fromkeys(a.strip(" \t") for a in value.split(","))))
    return _recipients((value,))


def clear_caches() -> None:
    """Forget every parsed sender, recipient list, header-name role and date minute (cold).

    For benchmarks: a first sync in a new process starts with these caches empty.
    """
    for cached in (_ordinary, _sender_of, _recipients_of, _listed, _recipient, recipients_named):
        cached.cache_clear()
    _ROLE_OF.clear()
    _PLAIN_NAMES.clear()
    forget_minutes()
