"""The built-in source kinds' configuration: one table per watched queue, mailbox or log.

Each model is the configuration half of its kind (:mod:`mailwatch.config.kinds`); they are
registered at the end of this module, and their adapters in :mod:`mailwatch.sources.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from mailwatch.config.fields import DurationField, IntervalField, SecretRef, TimeoutField
from mailwatch.config.kinds import SourceConfigBase, register_config
from mailwatch.core.durations import Duration
from mailwatch.core.model import LOST_QUEUE
from mailwatch.core.snapshot import POSTFIX_QUEUES

EXIM_QUEUES = ("queue", "frozen")


class PostfixSourceConfig(SourceConfigBase):
    """A Postfix instance watched with ``postqueue -j``."""

    local_mta: ClassVar[bool] = True

    type: Literal["postfix"]
    config_dir: Path | None = None
    """The instance's ``-c`` directory; default: the system's (``/etc/postfix``)."""
    postqueue: str = "postqueue"
    postconf: str = "postconf"
    interval: IntervalField = Duration(seconds=30)
    timeout: TimeoutField = Duration(seconds=60)
    full_listing_every: DurationField = Duration(seconds=600)
    """How often a full ``postqueue -j`` listing checks (and replaces) what the queue
    directories showed; between them a scan reads only what changed. ``"0s"``: every scan."""

    def queues(self, name: str) -> tuple[str, ...]:
        """The queues ``postqueue -j`` reports."""
        return POSTFIX_QUEUES


class MailLogSourceConfig(SourceConfigBase):
    """A Postfix log file read for final outcomes (sent, bounced, expired)."""

    holds_backlog: ClassVar[bool] = False

    type: Literal["maillog"]
    path: Path
    """The log Postfix writes (``maillog_file``), or syslog's mail log."""
    outcomes_for: str | None = None
    """The Postfix source whose queue ids this log's lines refer to."""
    interval: IntervalField = Duration(seconds=15)
    timeout: TimeoutField = Duration(seconds=60)

    def check(self, name: str, sources: Mapping[str, SourceConfigBase]) -> list[str]:
        """``outcomes_for`` names a Postfix source."""
        if self.outcomes_for is None:
            return []
        if isinstance(sources.get(self.outcomes_for), PostfixSourceConfig):
            return []
        return [f"sources.{name}.outcomes_for: {self.outcomes_for!r} is not a postfix source"]


class EximSourceConfig(SourceConfigBase):
    """An Exim queue: its spool read directly, checked by ``exim -bpru`` (or listed only)."""

    local_mta: ClassVar[bool] = True

    type: Literal["exim"]
    exim: str = "exim"
    config: Path | None = None
    """An alternate Exim configuration (``-C``); Exim honours it only for root or trusted lists."""
    interval: IntervalField = Duration(seconds=30)
    timeout: TimeoutField = Duration(seconds=60)
    concurrency: int = Field(default=4, ge=1, le=32)
    """How many ``exim -Mvh``/``-Mvl`` commands may run at once for new messages."""
    read_logs: bool = True
    """Read each new message's log (``-Mvl``) for its last delivery error."""
    log_refresh: int = Field(default=8, ge=0)
    """Messages without a delay reason yet whose logs are re-read per probe, oldest first."""
    spool_directory: Path | None = None
    """Exim's ``spool_directory``; default: what ``exim -bP spool_directory`` says."""
    full_listing_every: DurationField = Duration(seconds=600)
    """How often a full ``exim -bpru`` checks what the spool showed; between them a scan reads
    only what changed in the spool. ``"0s"``: the listing at every scan, the spool not read."""

    def queues(self, name: str) -> tuple[str, ...]:
        """The Exim queue and its frozen messages."""
        return EXIM_QUEUES


_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class ImapSourceConfig(SourceConfigBase):
    """Functional mailboxes watched over IMAP for mail nobody has actioned (read-only)."""

    type: Literal["imap"]
    host: str
    port: int | None = None
    """Default: 993 for ``tls``, 143 otherwise."""
    security: Literal["starttls", "tls", "plain"] = "starttls"
    """``plain`` is refused except on loopback; certificates are verified unless told not to."""
    user: str
    password: SecretRef | None = None
    token: SecretRef | None = None
    """An XOAUTH2 bearer token instead of a password."""
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    actioned: Literal["seen", "answered", "flagged", "moved"] = "seen"
    """What counts as dealt with: the \\Seen, \\Answered or \\Flagged flag, or moved out."""
    ca_file: Path | None = None
    verify: bool = True
    interval: IntervalField = Duration(seconds=60)
    timeout: TimeoutField = Duration(seconds=30)
    fetch_batch: int = Field(default=200, ge=1, le=200)

    def queues(self, name: str) -> tuple[str, ...]:
        """The watched folders."""
        return tuple(self.folders)

    def remote_hosts(self) -> tuple[str, ...]:
        """The IMAP server."""
        return (self.host,)

    @model_validator(mode="after")
    def _checks(self) -> ImapSourceConfig:
        if (self.password is None) == (self.token is None):
            raise ValueError("give exactly one of password or token")
        if self.security == "plain" and self.host not in _LOOPBACK:
            raise ValueError(f"security = plain is only allowed on loopback, not {self.host!r}")
        reserved = {"hold", "frozen"} & {f.lower() for f in self.folders}
        if reserved:
            raise ValueError(f"folder name {sorted(reserved)[0]!r} is reserved (MTA queue)")
        return self


class CanarySourceConfig(SourceConfigBase):
    """A canary path: mail submitted here must arrive in that mailbox within ``timeout``.

    Each probe sends one canary through the submission server and looks for the canaries sent
    before in the mailbox (deleting them unless ``keep``); one not there ``timeout`` after it
    was sent is lost.
    """

    reports_canaries: ClassVar[bool] = True

    type: Literal["canary"]
    submission_host: str
    submission_port: int | None = None
    """Default: 465 for ``tls``, 587 for ``starttls``, 25 for ``none``."""
    submission_security: Literal["starttls", "tls", "none"] = "starttls"
    """``none`` is refused except on loopback; certificates are verified unless told not to."""
    submission_username: str | None = None
    submission_password: SecretRef | None = None
    sender: str
    recipient: str
    imap_host: str
    imap_port: int | None = None
    """Default: 993 for ``tls``, 143 otherwise."""
    imap_security: Literal["starttls", "tls", "plain"] = "starttls"
    imap_user: str
    imap_password: SecretRef | None = None
    imap_token: SecretRef | None = None
    """An XOAUTH2 bearer token instead of a password."""
    folder: str = "INBOX"
    ca_file: Path | None = None
    """CA certificates for both servers (default: the system's)."""
    verify: bool = True
    interval: IntervalField = Duration(seconds=300)
    timeout: TimeoutField = Duration(seconds=600)
    """A canary not in the mailbox this long after it was sent is lost."""
    io_timeout: TimeoutField = Duration(seconds=30)
    """Deadline of each server conversation (the submission, the mailbox)."""
    keep: bool = False
    """Leave found canaries in the mailbox (read-only access) instead of deleting them."""

    def queues(self, name: str) -> tuple[str, ...]:
        """Canaries travelling, and canaries lost."""
        return (f"canary:{name}", LOST_QUEUE)

    def probe_timeout(self) -> float:
        """Each server conversation's deadline (``timeout`` is when a canary is lost)."""
        return self.io_timeout.seconds

    def remote_hosts(self) -> tuple[str, ...]:
        """The submission server."""
        return (self.submission_host,)

    @model_validator(mode="after")
    def _checks(self) -> CanarySourceConfig:
        if (self.submission_username is None) != (self.submission_password is None):
            raise ValueError("submission_username and submission_password go together")
        if (self.imap_password is None) == (self.imap_token is None):
            raise ValueError("give exactly one of imap_password or imap_token")
        if self.submission_security == "none" and self.submission_host not in _LOOPBACK:
            host = self.submission_host
            raise ValueError(
                f"submission_security = none is only allowed on loopback, not {host!r}"
            )
        if self.imap_security == "plain" and self.imap_host not in _LOOPBACK:
            raise ValueError(
                f"imap_security = plain is only allowed on loopback, not {self.imap_host!r}"
            )
        for key in ("sender", "recipient"):
            address = getattr(self, key)
            if "@" not in address or any(c.isspace() or c in "<>," for c in address):
                raise ValueError(f"{key}: {address!r} is not a plain address (user@domain)")
        if self.timeout.business_days or self.timeout.seconds <= 0:
            raise ValueError("timeout must be a positive clock time (e.g. 10m)")
        return self


for _model in (
    PostfixSourceConfig,
    MailLogSourceConfig,
    EximSourceConfig,
    ImapSourceConfig,
    CanarySourceConfig,
):
    register_config(_model)
