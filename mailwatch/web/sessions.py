"""Status page sessions and CSRF tokens (signed cookies; a random key per server).

* Signing in with a token (the form at ``/login``) sets a cookie holding the token's *name*,
  an expiry and a random nonce, signed with HMAC-SHA256 under a key drawn when the server
  starts (a restart or a SIGHUP reload signs everyone out). The token itself is never stored
  in the cookie or put in a URL. Each request looks the name up in the current token table,
  so a token removed from the configuration stops working at the next reload.
* The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Path=/`` and ``Secure`` when the page is
  served over TLS; it expires after :data:`SESSION_SECONDS`.
* Every form carries a synchronizer token: HMAC of the session's nonce under the same key.
  A POST must carry it, and come from this server's page (:func:`same_origin`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

COOKIE = "mailwatch_session"
SESSION_SECONDS = 8 * 3600
"""A session lasts one duty shift at most; then the token must be given again."""


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: the token's name, when it expires, and its CSRF nonce."""

    name: str
    expires: int
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issues and checks session cookies and CSRF tokens under one secret key."""

    def __init__(self, key: bytes | None = None, lifetime: int = SESSION_SECONDS) -> None:
        self._key = key or secrets.token_bytes(32)
        self.lifetime = lifetime

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())

    def issue(self, name: str, now: float) -> str:
        """A cookie value for the token named ``name``, valid from ``now`` (Unix seconds)."""
        body = f"{_b64(name.encode())}.{int(now) + self.lifetime}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._sign(body)}"

    def read(self, value: str | None, now: float) -> Session | None:
        """The session a cookie value proves at ``now``; ``None`` if forged, bad or expired."""
        if not value or value.count(".") != 3:
            return None
        body, _, signature = value.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        name, expires, nonce = body.split(".")
        try:
            session = Session(_unb64(name).decode(), int(expires), nonce)
        except (ValueError, UnicodeDecodeError):
            return None
        return session if now < session.expires else None

    def csrf(self, session: Session) -> str:
        """The form token of ``session`` (tied to its nonce: another session's does not fit)."""
        return self._sign(f"csrf:{session.nonce}")

    def csrf_ok(self, session: Session, offered: str | None) -> bool:
        """Whether ``offered`` is ``session``'s form token (constant-time)."""
        return bool(offered) and hmac.compare_digest(str(offered), self.csrf(session))


def same_origin(origin: str | None, host: str | None, fetch_site: str | None = None) -> bool:
    """Whether a form post came from this server's own page.

    ``Sec-Fetch-Site`` (set by the browser, never by a page's script) must say
    ``same-origin`` when present; otherwise ``Origin`` must name the server it was sent to
    (its ``Host``). Under ``Referrer-Policy: no-referrer`` Chromium sends ``Origin: null``
    with a form post, so ``Sec-Fetch-Site`` is what modern browsers are judged by; a request
    with neither (not a browser's) is refused.
    """
    if fetch_site is not None:
        return fetch_site == "same-origin"
    if not origin or not host or origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()
