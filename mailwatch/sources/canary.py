r"""The canary source: mail sent through a path must arrive in a mailbox, and in time.

Each probe of a canary path does three things:

1. **Looks for arrived canaries** in the destination folder over IMAP, through the project's
   defensive :class:`~mailwatch.sources.imap_client.ImapClient`: ``UID SEARCH HEADER
   X-Mailwatch-Canary "PATH."``, then a header-only FETCH of the matches (batched) for their
   tokens and INTERNALDATE. Only messages whose header is exactly one of this path's tokens
   are ours; unless ``keep``, they are deleted (SELECT, ``UID STORE +FLAGS.SILENT
   (\Deleted)``, ``UID EXPUNGE`` of exactly those UIDs) and nothing else is ever touched. With
   ``keep`` the folder is only EXAMINEd (read-only). Tokens of this path that it no longer
   tracks (sent just before a crash, or found already) are deleted too, without counting.
2. **Sends one canary** through the submission server with aiosmtplib: a new connection per
   send, TLS flags always explicit (``start_tls=True`` or ``use_tls=True``; ``none`` only to a
   loopback server, so a server that stops offering STARTTLS fails the send instead of
   getting credentials in clear), AUTH only when a user name is configured. The canary
   carries a fresh token (:mod:`mailwatch.parsing.canary`) in an ``X-Mailwatch-Canary``
   header and in its subject; the queue id in the server's reply to DATA is kept so the
   canary can be followed through the MTA's queue and log. A canary the server would not
   take is lost at once (the path is broken at its first hop) and the probe says why in its
   warnings. A canary is sent even when the mailbox cannot be read (the probe then fails).
3. **Declares lost** every canary the look did not find although it began ``timeout`` or
   more after the canary was sent.

The look comes first, so a probe never looks for the canary it has just sent: whether a fast
path's canary is found by the same probe or the next would otherwise be a race between
delivery and the IMAP login. Nothing is lost by waiting, since the arrival time comes from
the mailbox, not from when mailwatch looked.

The round trip is arrival minus ``sent_at`` (taken just before the send starts, so the
submission is part of the trip). INTERNALDATE, set by the mailbox server on delivery, says
*when* the canary arrived whatever the probe interval, but only to the second and by the
server's clock; the probe time bounds the arrival from above by our own clock. The arrival is
taken as the middle of what both allow (:func:`estimate_arrival`): within half a second on a
healthy path, where a plain INTERNALDATE could even put the arrival before the send. Canaries
arriving after their timeout are lost; their late round trip is still recorded.

Events (canary sent, round trip, loss) leave in the next returned observation's
``canaries``, and are handed out again until the scanner reports them stored
(:meth:`CanarySource.committed`): a probe that fails, or a store write that fails (disk full),
keeps them for the next observation, so none is dropped. The scanner writes them to the
store, and a new source resumes from the store's canaries in flight: a canary sent before a
restart and found after it is a round trip, not a loss. Canaries still
travelling are the observation's messages (queue ``canary:PATH``), classified by the shipped
``canary`` class like any other backlog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
import structlog

from mailwatch.core.headers import parse_header_block
from mailwatch.core.model import (
    LOST_QUEUE,
    REMEMBER_LOST,
    CanaryObservation,
    CanaryResult,
    Headers,
    Message,
    Observation,
    Recipient,
)
from mailwatch.errors import SourceError, SourceTimeout
from mailwatch.parsing.canary import (
    CANARY_HEADER,
    canary_subject,
    new_token,
    parse_queue_id,
    token_of,
    valid_path,
)
from mailwatch.parsing.imap import FetchRecord, MailboxState
from mailwatch.sources.canary_submit import Submission, canary_message, describe_failure
from mailwatch.sources.imap_client import ImapClient, Security, make_ssl_context

__all__ = ["CanarySource", "Destination", "Submission", "estimate_arrival"]

log = structlog.get_logger(__name__)

LOOPBACK = ("localhost", "127.0.0.1", "::1")
WAIT_REASON = "canary not delivered"
_FETCH_ITEMS = f"(UID INTERNALDATE BODY.PEEK[HEADER.FIELDS ({CANARY_HEADER.upper()})])"


@dataclass(frozen=True, slots=True)
class Destination:
    """The mailbox canaries must reach (the last hop), read over IMAP."""

    host: str
    user: str
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    """An XOAUTH2 bearer token instead of a password."""
    port: int | None = None
    security: Security = "starttls"
    folder: str = "INBOX"
    ca_file: Path | None = None
    verify: bool = True


@dataclass(slots=True)
class _Canary:
    """A canary sent and not found yet (lost ones are remembered for a late arrival)."""

    token: str
    sent_at: datetime
    queue_id: str | None
    lost: bool = False


def estimate_arrival(
    internaldate: datetime | None, sent_at: datetime, found_at: datetime
) -> datetime:
    """When a canary arrived: the middle of what INTERNALDATE and our own clock allow.

    INTERNALDATE ``d`` (whole seconds) puts the arrival in ``[d, d + 1s)``; our clock puts it
    after ``sent_at`` and before ``found_at``. Clocks that disagree by more than that leave
    nothing in common: the arrival is then clamped into ``[sent_at, found_at]``.
    """
    if internaldate is None:
        return found_at
    lower = max(internaldate, sent_at)
    upper = min(internaldate + timedelta(seconds=1), found_at)
    if lower <= upper:
        return lower + (upper - lower) / 2
    return min(max(internaldate, sent_at), found_at)


class CanarySource:
    """One canary path: submission server → … → destination mailbox, probed end to end."""

    def __init__(
        self,
        name: str,
        *,
        submission: Submission,
        destination: Destination,
        sender: str,
        recipient: str,
        timeout: float = 600.0,
        io_timeout: float = 30.0,
        keep: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        in_flight: Iterable[CanaryResult] = (),
        healthy_since: datetime | None = None,
    ) -> None:
        if not valid_path(name):
            raise ValueError(f"{name!r} cannot name a canary path (letters, digits, _ and -)")
        if submission.security not in ("starttls", "tls", "none"):
            raise ValueError(f"submission security must be starttls, tls or none, not "
                             f"{submission.security!r}")  # fmt: skip
        if submission.security == "none" and submission.host not in LOOPBACK:
            raise ValueError(f"submission security none is only allowed on loopback, not "
                             f"{submission.host!r}")  # fmt: skip
        if destination.security not in ("starttls", "tls", "plain"):
            raise ValueError(f"IMAP security must be starttls, tls or plain, not "
                             f"{destination.security!r}")  # fmt: skip
        if destination.security == "plain" and destination.host not in LOOPBACK:
            raise ValueError(f"IMAP security plain is only allowed on loopback, not "
                             f"{destination.host!r}")  # fmt: skip
        if (destination.password is None) == (destination.token is None):
            raise ValueError("give exactly one of the destination's password or token")
        if (submission.username is None) != (submission.password is None):
            raise ValueError("the submission username and password go together")
        if any(c in sender + recipient for c in "\r\n") or "@" not in recipient:
            raise ValueError("sender and recipient must be plain addresses")
        if timeout <= 0 or io_timeout <= 0:
            raise ValueError("timeout and io_timeout must be positive")
        self._name = name
        self.submission = submission
        self.destination = destination
        self.sender, self.recipient = sender, recipient
        self.timeout, self.io_timeout, self.keep = timeout, io_timeout, keep
        self._clock = clock
        self._smtp_tls = None if submission.security == "none" else make_ssl_context(
            submission.ca_file, verify=submission.verify
        )  # fmt: skip
        self._imap_tls = None if destination.security == "plain" else make_ssl_context(
            destination.ca_file, verify=destination.verify
        )  # fmt: skip
        self._in_flight = {c.token: _Canary(c.token, c.sent_at, c.queue_id, c.lost)
                           for c in in_flight if c.found_at is None}  # fmt: skip
        self._healthy_since = healthy_since
        """When the newest canary that made its round trip in time was sent (``None``: none
        yet). Canaries lost before it no longer say the path is broken."""
        self._pending: dict[str, CanaryResult] = {}
        """Events not yet handed out in an observation (kept when a probe fails)."""
        self._mailbox: MailboxState | None = None
        """The folder as last opened (``keep`` searches only UIDs that arrived since)."""

    @property
    def name(self) -> str:
        """The canary path's name."""
        return self._name

    @property
    def queue(self) -> str:
        """The queue name of this path's canaries in observations and metrics."""
        return f"canary:{self._name}"

    @property
    def _lost_reason(self) -> str:
        dest = self.destination
        return f"canary lost: not in {dest.folder} {self.timeout:g}s after it was sent"

    def __repr__(self) -> str:  # never shows a password or token
        dest = self.destination
        return (f"CanarySource({self._name!r}, {self.submission.host} -> "
                f"{dest.user}@{dest.host}/{dest.folder})")  # fmt: skip

    async def probe(self) -> CanaryObservation:
        """Collect arrived canaries, send the next one, declare missing ones lost."""
        observed_at = self._clock()
        try:
            looked_at, malformed = await self._collect()
        except SourceError:
            await self._send()  # the path is still measured while the mailbox is unreadable
            raise
        warning = await self._send()
        for canary in self._in_flight.values():
            if not canary.lost and (looked_at - canary.sent_at).total_seconds() >= self.timeout:
                canary.lost = True
                self._pending[canary.token] = self._result(canary, lost=True)
                log.warning("canary_lost", source=self.name, queue_id=canary.queue_id)
        horizon = looked_at - REMEMBER_LOST
        self._in_flight = {t: c for t, c in self._in_flight.items()
                           if not c.lost or c.sent_at >= horizon}  # fmt: skip
        events = tuple(self._pending.values())  # cleared once stored: see committed()
        healthy = self._healthy_since
        reported = [  # travelling, or lost since the path last worked
            c
            for c in self._in_flight.values()
            if not c.lost or healthy is None or c.sent_at > healthy
        ]
        return CanaryObservation(
            source=self.name,
            observed_at=observed_at,
            messages=tuple(self._message(c) for c in reported),
            malformed=malformed,
            headers_read=0,
            warnings=() if warning is None else (warning,),
            canaries=events,
        )

    def committed(self, observation: Observation) -> None:
        """The store holds ``observation``'s canary events: stop handing them out.

        Until then they stay pending, so a failed store write (disk full) loses none: the
        next observation carries them again (with any newer event for the same canary
        replacing its older one) and the store applies each transition once.
        """
        if not isinstance(observation, CanaryObservation):
            return
        for event in observation.canaries:
            if self._pending.get(event.token) is event:
                del self._pending[event.token]

    def _result(self, canary: _Canary, **found: Any) -> CanaryResult:
        return CanaryResult(self.name, canary.token, canary.sent_at, canary.queue_id, **found)

    def _message(self, canary: _Canary) -> Message:
        """A canary travelling (queue ``canary:PATH``) or lost on a broken path (``lost``)."""
        return Message(
            key=f"{self.name}/{canary.token}",
            source=self.name,
            queue_id=canary.queue_id or canary.token,
            queue=LOST_QUEUE if canary.lost else self.queue,
            arrival=canary.sent_at,
            size=0,
            sender=self.sender,
            recipients=(Recipient(self.recipient),),
            headers=Headers(((CANARY_HEADER, canary.token),)),
            subject=canary_subject(canary.token),
            wait_reason=self._lost_reason if canary.lost else WAIT_REASON,
        )

    async def _send(self) -> str | None:
        """Submit one canary (a new connection); return a warning if the server refused it."""
        token = new_token(self.name)
        sent_at = self._clock()
        message = canary_message(self.sender, self.recipient, token, sent_at)
        where = f"{self.submission.host}:{self.submission.effective_port}"
        try:
            async with asyncio.timeout(self.io_timeout):
                _refused, reply = await aiosmtplib.send(
                    message, sender=self.sender, recipients=[self.recipient],
                    hostname=self.submission.host, port=self.submission.effective_port,
                    username=self.submission.username, password=self.submission.password,
                    timeout=self.io_timeout, **self.submission.tls_flags(self._smtp_tls),
                )  # fmt: skip
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            canary = _Canary(token, sent_at, None, lost=True)
            self._pending[token] = self._result(canary, lost=True)
            log.warning("canary_not_submitted", source=self.name, server=where,
                        error=describe_failure(exc))  # fmt: skip
            return f"canary not submitted to {where}: {describe_failure(exc)}"
        canary = _Canary(token, sent_at, parse_queue_id(reply))
        self._in_flight[token] = canary
        self._pending[token] = self._result(canary)
        log.debug("canary_sent", source=self.name, queue_id=canary.queue_id)
        return None

    async def _collect(self) -> tuple[datetime, int]:
        """Find arrived canaries, settle them, delete them unless ``keep``.

        Returns when the search began (a canary it missed had not arrived by then) and how
        many FETCH responses were malformed.
        """
        dest = self.destination
        port = dest.port or (993 if dest.security == "tls" else 143)
        client = ImapClient(self.name, dest.host, port, security=dest.security,
                            ssl_context=self._imap_tls, timeout=self.io_timeout)  # fmt: skip
        try:
            async with asyncio.timeout(self.io_timeout), client:
                await client.connect()
                if dest.token is not None:
                    await client.xoauth2(dest.user, dest.token)
                else:
                    await client.login(dest.user, dest.password or "")
                if self.keep:
                    mailbox = await client.examine(dest.folder, condstore=False)
                else:
                    mailbox = await client.select(dest.folder)
                looked_at = self._clock()
                uids = await client.uid_search(self._criteria(client, mailbox))
                records, malformed = await client.fetch(uids, _FETCH_ITEMS) if uids else ([], 0)
                ours = self._settle(records, self._clock())
                if ours and not self.keep:
                    await client.delete(ours)
                self._mailbox = mailbox
        except SourceError:
            raise  # already typed (SourceTimeout is a TimeoutError too: keep its detail)
        except TimeoutError as exc:
            raise SourceTimeout(
                self.name, f"mailbox check took longer than {self.io_timeout:g}s"
            ) from exc
        return looked_at, malformed

    def _criteria(self, client: ImapClient, mailbox: MailboxState) -> str:
        criteria = f'HEADER {CANARY_HEADER} "{self.name}."'
        if self.keep:  # nothing is deleted: look only at what arrived since the last look
            last = self._mailbox
            if last is not None and last.uidvalidity == mailbox.uidvalidity and last.uidnext:
                criteria += f" UID {last.uidnext}:*"
        elif "UIDPLUS" not in client.capabilities:
            criteria += " UNDELETED"  # ours found before are flagged, not expunged
        return criteria

    def _settle(self, records: Iterable[FetchRecord], found_at: datetime) -> list[int]:
        """Settle fetched canaries as round trips (or late arrivals); return the UIDs of ours."""
        ours: list[int] = []
        for record in records:
            headers = parse_header_block(record.header or b"")
            token = token_of(headers.get(CANARY_HEADER), self.name)
            if token is None or record.uid is None:
                continue  # another path's canary, or not a canary at all: never touched
            ours.append(record.uid)
            canary = self._in_flight.pop(token, None)
            if canary is None:
                log.info("canary_stray", source=self.name, uid=record.uid)
                continue
            arrival = estimate_arrival(record.internaldate, canary.sent_at, found_at)
            roundtrip = max((arrival - canary.sent_at).total_seconds(), 0.0)
            late = canary.lost or roundtrip > self.timeout
            if not late and (self._healthy_since is None or canary.sent_at > self._healthy_since):
                self._healthy_since = canary.sent_at  # the path works: older losses are over
            self._pending[token] = self._result(
                canary, found_at=found_at, roundtrip_seconds=roundtrip, lost=late
            )
            log.info("canary_found", source=self.name, queue_id=canary.queue_id,
                     roundtrip=round(roundtrip, 3), late=late)  # fmt: skip
        return ours
