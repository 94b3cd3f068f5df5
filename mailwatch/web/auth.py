"""API bearer tokens: the token table the server builds once, and exact, constant-time checks.

* The table is built when the server starts (and on every SIGHUP reload, which rebuilds the
  server): each ``[[http.tokens]]`` secret is read once. A token whose secret is empty (or only
  whitespace), or cannot be read, is refused: logged at error with its name and left out of the
  table, so it can never match.
* ``Authorization: Bearer <token>``: the scheme is case-insensitive (RFC 7235); only ASCII space
  and tab around the header value and between scheme and token are ignored (RFC 7230 OWS). The
  offered token is compared exactly, as bytes, with :func:`hmac.compare_digest` against every
  token in the table. Nothing else is stripped: ``Bearer <U+00A0>`` is not an empty token that
  a lenient ``str.strip()`` would make match a blank secret, it is a token that matches nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from mailwatch.config.settings import ApiToken

log = structlog.get_logger(__name__)

_OWS = " \t"
"""RFC 7230 optional whitespace: the only characters trimmed from a header value."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a token's name and scope (and whether it may see subjects on the page)."""

    name: str
    scope: str
    subjects: bool = False

    @property
    def can_write(self) -> bool:
        """Whether it may act (ack, silence, queue actions)."""
        return self.scope == "write"


@dataclass(frozen=True, slots=True)
class _Entry:
    caller: Caller
    secret: bytes


@dataclass(frozen=True, slots=True)
class TokenTable:
    """The usable tokens (non-empty secrets only)."""

    entries: tuple[_Entry, ...]

    @property
    def names(self) -> list[str]:
        """The names of the tokens that can authenticate."""
        return [e.caller.name for e in self.entries]

    def authenticate(self, header: str | None) -> Caller | None:
        """The caller an ``Authorization`` header value proves, or ``None``."""
        offered = bearer_token(header)
        if offered is None:
            return None
        offered_bytes = offered.encode("utf-8", "surrogateescape")
        found: Caller | None = None
        for entry in self.entries:  # every entry, so timing does not say which one matched
            if hmac.compare_digest(offered_bytes, entry.secret) and found is None:
                found = entry.caller
        return found

    def by_secret(self, offered: str) -> Caller | None:
        """The caller a bare token proves (the login form), compared like a bearer token."""
        return self.authenticate(f"Bearer {offered.strip(_OWS)}") if offered else None

    def by_name(self, name: str) -> Caller | None:
        """The caller of the token named ``name``, if it is still in the table (a session)."""
        return next((e.caller for e in self.entries if e.caller.name == name), None)


def bearer_token(header: str | None) -> str | None:
    """The token of a ``Bearer`` credential (scheme in any case), or ``None``.

    ``None`` for a missing header, another scheme, or an empty token. Only ASCII space and tab
    are trimmed; every other character, Unicode spaces included, is part of the token.
    """
    if header is None:
        return None
    value = header.strip(_OWS)
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "bearer":
        scheme, _, rest = value.partition("\t")
        if scheme.lower() != "bearer":
            return None
    token = rest.strip(_OWS)
    return token or None


def build_table(tokens: Iterable[ApiToken]) -> TokenTable:
    """Read every token's secret once; refuse (log, leave out) empty or unreadable ones."""
    entries = []
    for token in tokens:
        try:
            secret = token.secret.read()
        except LookupError as exc:
            log.error("api_token_refused", token=token.name, reason=str(exc))
            continue
        secret = secret.strip(_OWS + "\r\n")  # a header cannot carry these around a token
        if not secret.strip():  # any whitespace: a blank secret must never be usable
            log.error("api_token_refused", token=token.name, reason="its secret is empty")
            continue
        entries.append(
            _Entry(Caller(token.name, token.scope, token.subjects), secret.encode("utf-8"))
        )
    return TokenTable(tuple(entries))
