"""A small, defensive IMAP client of mailwatch's own: connect, authenticate, read, close.

mailwatch speaks IMAP itself (:mod:`mailwatch.sources.imap_wire` frames the bytes) instead
of through aioimaplib: that library opens its own connection and cannot upgrade it
(no STARTTLS), leaves EXAMINE in a state that refuses UID commands, parses FETCH
quadratically by counting parentheses, loses a refused greeting and never answers a SASL
error continuation. Each defence below has a test (``docs/architecture.md``, "IMAP"):

* **Framing by literal length**, never by parentheses; FETCH responses decoded as they
  arrive, batches of at most :data:`~mailwatch.parsing.imap.MAX_UIDS_PER_FETCH` UIDs with a
  few in flight. Only ``BODY.PEEK[HEADER.FIELDS (...)]``, FLAGS, INTERNALDATE, RFC822.SIZE
  and UID are fetched, never ENVELOPE; responses are parsed by :mod:`mailwatch.parsing.imap`.
* **Every call** runs under ``asyncio.timeout`` and races the connection's end, so a cut
  connection fails the call at once instead of at the timeout.
* **A greeting that is not IMAP** (an SMTP port by mistake) fails at once, naming the line.
* **STARTTLS** (RFC 3501 §6.2.1): ``loop.start_tls`` upgrades the transport in place, nothing
  received in clear survives it, and capabilities are asked again. A server not offering
  STARTTLS is an error, never a silent fallback to plaintext.
* **Read-only**: the mailbox source only EXAMINEs; bodies are only PEEKed. Only the canary
  source SELECTs, to delete its own canaries by UID (:meth:`ImapClient.delete`).
* **Secrets**: nothing here logs; LOGIN arguments are quoted (and refused with a line
  break); a failed XOAUTH2 exchange, where the server sends a continuation with its error,
  is answered so it ends instead of hanging.

Every OS and TLS exception is translated into :mod:`mailwatch.errors` here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from mailwatch.errors import ImapParseError, SourceError, SourceTimeout, SourceUnavailable
from mailwatch.parsing.imap import (
    MAX_UIDS_PER_FETCH,
    FetchRecord,
    Line,
    MailboxState,
    batches,
    encode_mailbox,
    format_sequence_set,
    parse_capabilities,
    parse_examine,
    parse_search,
    parse_status,
)
from mailwatch.sources.imap_wire import ImapWire, Status, fetch_batches

Security = Literal["starttls", "tls", "plain"]
T = TypeVar("T")
CLOSE_GRACE = 2.0
"""Seconds given to LOGOUT and to the transport's closing before it is aborted."""
_UNSAFE = ("\r", "\n", "\0")


def make_ssl_context(ca_file: Path | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """Client TLS context: system trust store, or only ``ca_file`` when given; TLS ≥ 1.2."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def quoted(text: str) -> str:
    """``text`` as an IMAP quoted string (RFC 3501 §9); it must hold no CR, LF or NUL."""
    if any(c in text for c in _UNSAFE):
        raise ValueError("a quoted string cannot hold CR, LF or NUL")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _untagged_named(lines: Sequence[Line], names: tuple[bytes, ...]) -> list[Line]:
    """The untagged responses ``* NAME ...`` among ``lines`` (literals dropped)."""
    kept: list[Line] = []
    for line in lines:
        if isinstance(line, bytearray):
            continue
        word = line[2:].split(b" ", 1)[0].upper() if line.startswith(b"* ") else b""
        if word in names:
            kept.append(line)
    return kept


class ImapClient:
    """One IMAP connection for one probe: connect, authenticate, read, close.

    ``source`` names the mailwatch source in every error. Use as an async context manager
    after :meth:`connect`, or call :meth:`close` yourself.
    """

    def __init__(
        self,
        source: str,
        host: str,
        port: int,
        *,
        security: Security = "starttls",
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        fetch_batch: int = 200,
    ) -> None:
        if security not in ("starttls", "tls", "plain"):
            raise ValueError(f"security must be starttls, tls or plain, not {security!r}")
        if not 0 < fetch_batch <= MAX_UIDS_PER_FETCH:
            raise ValueError(f"fetch_batch must be 1..{MAX_UIDS_PER_FETCH}")
        self.source = source
        self.host = host
        self.port = port
        self.security = security
        self.ssl_context = ssl_context or (make_ssl_context() if security != "plain" else None)
        self.timeout = timeout
        self.fetch_batch = fetch_batch
        self.capabilities: frozenset[str] = frozenset()
        self._wire: ImapWire | None = None
        self._broken = False  # a call was abandoned: the session's state is unknown

    @property
    def where(self) -> str:
        """``host:port`` for messages."""
        return f"{self.host}:{self.port}"

    async def __aenter__(self) -> ImapClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def wire(self) -> ImapWire:
        """The connection (after :meth:`connect`)."""
        if self._wire is None:
            raise SourceUnavailable(self.source, f"not connected to {self.where}")
        return self._wire

    async def _call(self, what: str, awaitable: Awaitable[T]) -> T:
        """Await under the timeout, failing at once if the connection drops."""
        task = asyncio.ensure_future(awaitable)
        lost = self._wire.lost if self._wire is not None else None
        try:
            async with asyncio.timeout(self.timeout):
                waiting: set[asyncio.Future[Any]] = {task} if lost is None else {task, lost}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            raise SourceTimeout(
                self.source, f"{what}: no answer from {self.where} within {self.timeout:g}s"
            ) from None
        finally:  # timed out, cancelled from outside, or the connection dropped
            if not task.done():
                self._broken = True
                await _cancel(task)
        if task.cancelled():
            raise SourceUnavailable(self.source, f"{what}: connection to {self.where} was lost")
        try:
            return task.result()
        except ssl.SSLCertVerificationError as exc:
            raise SourceError(
                self.source,
                f"TLS certificate of {self.where} failed verification ({exc.verify_message}); "
                "set ca_file to the CA that signed it",
            ) from exc
        except ssl.SSLError as exc:
            raise SourceUnavailable(
                self.source, f"{what}: TLS error with {self.where}: {exc}"
            ) from exc
        except TimeoutError as exc:  # before OSError: a subclass
            raise SourceTimeout(self.source, f"{what}: {self.where} timed out") from exc
        except OSError as exc:
            raise SourceUnavailable(
                self.source, f"{what}: cannot reach {self.where}: {exc.strerror or exc}"
            ) from exc
        except ImapParseError as exc:  # a tagged line of no command sent
            self._broken = True
            detail = f"{what}: unexpected answer from {self.where}: {exc}"
            raise SourceError(self.source, detail) from exc

    def _parse(self, what: str, parser: Callable[[Sequence[Line]], T], lines: Sequence[Line]) -> T:
        """Run a response parser; an answer of the wrong shape is a SourceError."""
        try:
            return parser(lines)
        except ImapParseError as exc:
            detail = f"{what}: unexpected answer from {self.where}: {exc}"
            raise SourceError(self.source, detail) from exc

    async def _send(self, what: str, command: str) -> tuple[Status, list[Line]]:
        """Send one command; its tagged status and the untagged responses (text last)."""
        wire = self.wire
        wire.take()
        try:
            done = wire.send(command)
        except ConnectionResetError:
            lost = f"{what}: connection to {self.where} was lost"
            raise SourceUnavailable(self.source, lost) from None
        status = await self._call(what, done)
        wire.take_records()  # FETCH responses of a STORE, unsolicited ones: nobody's
        return status, [*wire.take(), status[1].encode()]

    async def _command(self, what: str, command: str, *names: bytes) -> list[Line]:
        """Send one command; its untagged ``names`` responses (all if none) and text last.

        A NO or BAD is a SourceError naming ``what`` and the server's text.
        """
        (status, text), lines = await self._send(what, command)
        if status != "OK":
            raise SourceError(self.source, f"{what} refused by {self.where}: {text}")
        return [*_untagged_named(lines[:-1], names), lines[-1]] if names else lines

    async def connect(self) -> None:
        """Open the connection, upgrade it to TLS as configured, and read capabilities."""
        loop = asyncio.get_running_loop()
        implicit = self.ssl_context if self.security == "tls" else None
        _, wire = await self._call("connect", loop.create_connection(
            ImapWire, self.host, self.port, ssl=implicit,
            server_hostname=self.host if implicit else None,
            ssl_handshake_timeout=self.timeout if implicit else None,
        ))  # fmt: skip
        self._wire = wire
        greeting = await self._call("connect", wire.greeting)
        status = greeting[2:].split(b" ", 1)[0].upper() if greeting.startswith(b"* ") else b""
        if status not in (b"OK", b"PREAUTH"):
            text = greeting.decode("utf-8", "replace")[:200]
            raise SourceError(
                self.source, f"connect: {self.where} is not a usable IMAP server: {text}"
            )
        self.capabilities = parse_capabilities([greeting]) or await self._capability()
        if self.security == "starttls":
            await self._starttls()

    async def _capability(self) -> frozenset[str]:
        lines = await self._command("CAPABILITY", "CAPABILITY", b"CAPABILITY")
        return self._parse("CAPABILITY", parse_capabilities, lines)

    async def _starttls(self) -> None:
        if "STARTTLS" not in self.capabilities:
            raise SourceError(self.source, f"{self.where} does not offer STARTTLS")
        await self._command("STARTTLS", "STARTTLS")
        if self.ssl_context is None:  # pragma: no cover - set in __init__ for starttls
            raise SourceError(self.source, "no TLS context")
        wire, loop = self.wire, asyncio.get_running_loop()
        if wire.transport is None:  # pragma: no cover - set by connection_made
            raise SourceUnavailable(self.source, f"STARTTLS: no connection to {self.where}")
        transport = await self._call(
            "STARTTLS handshake",
            loop.start_tls(
                wire.transport, wire, self.ssl_context,
                server_hostname=self.host, ssl_handshake_timeout=self.timeout,
            ),
        )  # fmt: skip
        if transport is None:  # pragma: no cover - only for a transport closed meanwhile
            raise SourceUnavailable(self.source, f"STARTTLS: connection to {self.where} was lost")
        wire.upgraded(transport)
        self.capabilities = await self._capability()

    async def login(self, user: str, password: str) -> None:
        """LOGIN with a password (both quoted)."""
        if "LOGINDISABLED" in self.capabilities:
            raise SourceError(self.source, f"{self.where} refuses LOGIN on this connection")
        try:
            command = f"LOGIN {quoted(user)} {quoted(password)}"
        except ValueError:
            raise SourceError(self.source, "user or password contains a line break") from None
        await self._authenticated(await self._send("LOGIN", command), f"login as {user!r}")

    async def xoauth2(self, user: str, token: str) -> None:
        """AUTHENTICATE XOAUTH2 with a bearer token (sent as SASL initial response).

        On a refused token, XOAUTH2 servers send a continuation carrying the error details
        and wait for an empty line (RFC 7628) before their tagged NO: it is answered here.
        """
        wire = self.wire
        sasl = base64.b64encode(f"user={user}\1auth=Bearer {token}\1\1".encode()).decode()
        wire.on_continuation = lambda _line: wire.write_line(b"")
        try:
            answer = await self._send("AUTHENTICATE", f"AUTHENTICATE XOAUTH2 {sasl}")
        finally:
            wire.on_continuation = None
        await self._authenticated(answer, f"XOAUTH2 as {user!r}")

    async def _authenticated(self, answer: tuple[Status, list[Line]], what: str) -> None:
        (status, text), lines = answer
        if status != "OK":
            raise SourceError(self.source, f"{what} failed at {self.where}: {text}")
        # servers add CONDSTORE, ESEARCH… after login; Dovecot says so in the response
        self.capabilities = parse_capabilities(lines) or await self._capability()

    async def status(self, mailbox: str, *, modseq: bool) -> MailboxState:
        """STATUS counters of ``mailbox`` (HIGHESTMODSEQ only if ``modseq``)."""
        items = "MESSAGES UIDNEXT UIDVALIDITY" + (" HIGHESTMODSEQ" if modseq else "")
        lines = await self._command(
            "STATUS", f"STATUS {encode_mailbox(mailbox)} ({items})", b"STATUS"
        )
        return self._parse("STATUS", parse_status, lines)

    async def examine(self, mailbox: str, *, condstore: bool) -> MailboxState:
        """EXAMINE (read-only select) ``mailbox``, with CONDSTORE enabled if asked."""
        suffix = " (CONDSTORE)" if condstore else ""
        lines = await self._command("EXAMINE", f"EXAMINE {encode_mailbox(mailbox)}{suffix}")
        return self._parse("EXAMINE", parse_examine, lines)

    async def select(self, mailbox: str) -> MailboxState:
        """SELECT ``mailbox`` read-write (only to delete canaries: see :meth:`delete`)."""
        lines = await self._command("SELECT", f"SELECT {encode_mailbox(mailbox)}")
        return self._parse("SELECT", parse_examine, lines)

    async def delete(self, uids: Iterable[int]) -> None:
        r"""Flag ``uids`` \Deleted and expunge exactly those (``UID EXPUNGE``, RFC 4315).

        Without UIDPLUS they are only flagged: a plain EXPUNGE would also remove whatever
        else someone flagged \Deleted, and only the given UIDs may ever be touched.
        """
        for batch in batches(uids, self.fetch_batch):
            uid_set = format_sequence_set(batch)
            await self._command("UID STORE", f"UID STORE {uid_set} +FLAGS.SILENT (\\Deleted)")
            if "UIDPLUS" in self.capabilities:
                await self._command("UID EXPUNGE", f"UID EXPUNGE {uid_set}")

    async def uid_search(self, criteria: str) -> list[int]:
        """UIDs matching ``criteria`` in the examined mailbox (ESEARCH form when offered)."""
        if "ESEARCH" in self.capabilities:
            command = f"UID SEARCH RETURN (ALL) {criteria}"
        else:
            command = f"UID SEARCH {criteria}"
        lines = await self._command("UID SEARCH", command, b"SEARCH", b"ESEARCH")
        return self._parse("UID SEARCH", parse_search, lines)

    async def fetch(
        self,
        uids: Iterable[int],
        items: str,
        each: Callable[[list[FetchRecord]], None] | None = None,
    ) -> tuple[list[FetchRecord], int]:
        """``UID FETCH`` of ``items`` for ``uids``, batched; returns records and malformed count.

        ``each`` is handed the records as each batch completes, while later batches are
        still in flight (see :func:`~mailwatch.sources.imap_wire.fetch_batches`); they are
        then not kept, and the list returned is empty.
        """
        wire = self.wire
        try:
            records, malformed, refused = await fetch_batches(
                wire, batches(uids, self.fetch_batch), items, self._fetch_wait, each
            )
        except ConnectionResetError:
            lost = f"UID FETCH: connection to {self.where} was lost"
            raise SourceUnavailable(self.source, lost) from None
        if refused is not None:
            raise SourceError(self.source, f"UID FETCH refused by {self.where}: {refused}")
        return records, malformed

    async def _fetch_wait(self, done: asyncio.Future[Status]) -> Status:
        """One FETCH's tagged line, under the timeout and the connection watch."""
        return await self._call("UID FETCH", done)

    async def close(self) -> None:
        """LOGOUT (briefly) and close the transport; never raises, never leaks the socket."""
        wire, self._wire = self._wire, None
        if wire is None or wire.transport is None:
            return
        transport, lost = wire.transport, wire.lost
        if lost.done() or transport.is_closing() or self._broken or wire.busy:
            grace = 0.1  # closed (a failed TLS upgrade does so silently) or not worth a LOGOUT
        else:
            grace = CLOSE_GRACE
            logout: asyncio.Future[Any] = wire.send("LOGOUT")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_GRACE):
                    await asyncio.wait({logout, lost}, return_when=asyncio.FIRST_COMPLETED)
        wire.abandon()
        transport.close()
        try:
            async with asyncio.timeout(grace):
                await asyncio.shield(lost)
        except TimeoutError:
            transport.abort()
            await asyncio.sleep(0)  # let the loop run the transport's connection_lost


async def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait for it to end, consuming its outcome.

    ``asyncio.wait`` raises only if *this* task is cancelled meanwhile, so an outer deadline
    is never swallowed (``await task`` could not tell the two apart).
    """
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at exit
