"""``[fleet]``: the optional central PostgreSQL store every agent pushes into.

The URL names the server, user and database, never the password (given as a secret reference,
like every other secret, and never logged). TLS: ``sslmode`` defaults to ``verify-full`` (the
server's certificate is checked against ``sslrootcert`` or the system's CAs, and its name
against the host) unless the server is on loopback, where it defaults to ``prefer``.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mailwatch.config.fields import DurationField, SecretRef
from mailwatch.core.durations import Duration

LOOPBACK = ("localhost", "127.0.0.1", "::1")
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


def _hostname() -> str:
    return socket.gethostname().split(".")[0] or "agent"


class FleetConfig(BaseModel):
    """Where and how this agent pushes what it sees, and how the fleet is read."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    url: str
    """``postgresql://user@host:port/database`` (no password: see ``password``)."""
    password: SecretRef | None = None
    sslmode: SslMode | None = None
    """``None``: ``verify-full``, or ``prefer`` for a server on loopback."""
    sslrootcert: Path | None = None
    agent: str = Field(default_factory=_hostname, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    """This agent's name in the fleet (default: the short host name)."""
    stale_after: DurationField = Duration(seconds=300)
    """A source whose last heartbeat is older than this is shown as unknown."""
    queue_limit: int = Field(default=100_000, ge=100, le=10_000_000)
    """Change rows kept locally while the database is unreachable; past it, a full resync."""
    batch_size: int = Field(default=2_000, ge=1, le=100_000)
    timeout: DurationField = Duration(seconds=10)
    """Connecting and each push transaction give up after this long (and retry later)."""
    include_subjects: bool = False
    """Store subjects centrally too (personal data: off unless the operator enables it)."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("url must start with postgresql://")
        if parts.password is not None:
            raise ValueError("no password in url: give password = { env = ... } or { file = ... }")
        if not parts.hostname:
            raise ValueError("url must name the server's host")
        return value

    @property
    def host(self) -> str:
        """The server's host name."""
        return urlsplit(self.url).hostname or ""

    def effective_sslmode(self) -> str:
        """``sslmode``, or its default for this host (see the module)."""
        if self.sslmode is not None:
            return self.sslmode
        return "prefer" if self.host in LOOPBACK else "verify-full"

    def connect_kwargs(self) -> dict[str, str]:
        """Libpq parameters besides the URL: TLS, the password (read now), the timeout."""
        kwargs = {
            "sslmode": self.effective_sslmode(),
            "connect_timeout": str(max(1, int(self.timeout.seconds))),
            "application_name": f"mailwatch:{self.agent}",
        }
        if self.sslrootcert is not None:
            kwargs["sslrootcert"] = str(self.sslrootcert)
        if self.password is not None:
            kwargs["password"] = self.password.read()
        return kwargs
