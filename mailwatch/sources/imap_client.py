"""A small, defensive IMAP client: aioimaplib 2.0.3 behind an adapter that owns its failures.

aioimaplib is used only for its connection and response framing; everything it gets wrong
(see the project's library notes) is handled here, and each defence has a test:

* **Large FETCH** recurses once per response line and parses quadratically: header
  fetches go out in batches of at most :data:`~mailwatch.parsing.imap.MAX_UIDS_PER_FETCH`
  UIDs and are read off the wire by a literal-aware reader of the adapter's own
  (:mod:`mailwatch.sources.imap_fetch`), never by the library.
* **Framing by parenthesis counting** breaks on a "(" in a quoted string: only
  ``BODY.PEEK[HEADER.FIELDS (...)]`` (a literal), FLAGS, INTERNALDATE, RFC822.SIZE and UID are
  fetched, never ENVELOPE; responses are parsed by :mod:`mailwatch.parsing.imap`.
* **A dropped connection is not propagated** to pending commands: ``conn_lost_cb`` resolves a
  future that every command races against, so a cut connection fails the call at once instead
  of after the timeout. Every call also runs under ``asyncio.timeout``.
* **A refused greeting is lost**: the library handles the greeting in a task nobody awaits,
  so a non-IMAP peer (an SMTP port by mistake) or a server failing its CAPABILITY only made
  the caller wait for the timeout. The greeting handler is wrapped so it fails at once.
* **No STARTTLS**: the command is sent, then ``loop.start_tls`` upgrades the transport in place
  and capabilities are asked again (RFC 3501 §6.2.1). A server not offering STARTTLS is an
  error, never a silent fallback to plaintext.
* **EXAMINE leaves the library's state at AUTH**, so it would refuse UID commands: the state is
  set to SELECTED here after a successful EXAMINE (or SELECT). Bodies are only PEEKed. The
  mailbox source only EXAMINEs (read-only): nothing it sends can change a flag. Only the canary
  source SELECTs, to delete its own canaries by UID (:meth:`ImapClient.delete`).
* **Secrets at DEBUG**: the ``aioimaplib`` logger is pinned at WARNING. LOGIN arguments are
  quoted here (the library sends the user name raw); a failed XOAUTH2 exchange, where the
  server sends a continuation with its error, is answered so it ends instead of hanging.

Every aioimaplib, OS and TLS exception is translated into :mod:`mailwatch.errors` here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import aioimaplib  # type: ignore[import-untyped]

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
from mailwatch.sources.imap_fetch import FetchReader, SaslCommand, fetch_batches


def quiet_library_logger() -> None:
    """Keep the ``aioimaplib`` logger at WARNING or above (re-applied on each connection).

    At DEBUG it logs SASL strings and every header received; logging may be reconfigured
    after import (``dictConfig``), so the level is checked again whenever a connection opens.
    """
    library = logging.getLogger("aioimaplib")
    if library.level < logging.WARNING:  # NOTSET (0) would inherit the root's DEBUG
        library.setLevel(logging.WARNING)


quiet_library_logger()

Security = Literal["starttls", "tls", "plain"]
T = TypeVar("T")
CLOSE_GRACE = 2.0
"""Seconds given to LOGOUT and to the transport's closing before it is aborted."""


def make_ssl_context(ca_file: Path | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """Client TLS context: system trust store, or only ``ca_file`` when given; TLS ≥ 1.2."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


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
        self._imap: Any = None
        self._lost: asyncio.Future[None] | None = None
        self._broken = False  # a call was abandoned: the session's state is unknown

    @property
    def where(self) -> str:
        """``host:port`` for messages."""
        return f"{self.host}:{self.port}"

    async def __aenter__(self) -> ImapClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _on_connection_lost(self, _exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    async def _call(self, what: str, coro: Awaitable[T]) -> T:
        """Await ``coro`` under the timeout, failing at once if the connection drops."""
        task = asyncio.ensure_future(coro)
        lost = self._lost
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
                await self._cancel(task)
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
        except (TimeoutError, aioimaplib.CommandTimeout) as exc:  # before OSError: a subclass
            raise SourceTimeout(self.source, f"{what}: {self.where} timed out") from exc
        except OSError as exc:
            raise SourceUnavailable(
                self.source, f"{what}: cannot reach {self.where}: {exc.strerror or exc}"
            ) from exc
        except aioimaplib.AioImapException as exc:
            raise SourceError(self.source, f"{what}: {type(exc).__name__}: {exc}") from exc

    def _parse(self, what: str, parser: Callable[[Sequence[Line]], T], lines: Sequence[Line]) -> T:
        """Run a response parser; an answer of the wrong shape is a SourceError."""
        try:
            return parser(lines)
        except ImapParseError as exc:
            detail = f"{what}: unexpected answer from {self.where}: {exc}"
            raise SourceError(self.source, detail) from exc

    @staticmethod
    async def _cancel(task: asyncio.Future[Any]) -> None:
        """Cancel ``task`` and wait for it to end, consuming its outcome.

        ``asyncio.wait`` raises only if *this* task is cancelled meanwhile, so an outer
        deadline is never swallowed (``await task`` could not tell the two apart).
        """
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit

    async def _command(self, name: str, *args: str, what: str | None = None, **kw: Any) -> Any:
        """Send one command; return its response, or raise SourceError on NO/BAD."""
        protocol = self._imap.protocol
        command = aioimaplib.Command(name, protocol.new_tag(), *args, **kw)
        label = what or f"{kw.get('prefix', '') or ''} {name}".strip()
        response = await self._call(label, protocol.execute(command))
        if response.result != "OK":
            text = bytes(response.lines[-1]).decode("utf-8", "replace") if response.lines else ""
            raise SourceError(self.source, f"{label} refused by {self.where}: {text}")
        return response

    async def connect(self) -> None:
        """Open the connection, upgrade it to TLS as configured, and read capabilities."""
        quiet_library_logger()
        self._lost = asyncio.get_running_loop().create_future()
        implicit = self.ssl_context if self.security == "tls" else None
        self._imap = aioimaplib.IMAP4(
            self.host, self.port, timeout=self.timeout,
            conn_lost_cb=self._on_connection_lost, ssl_context=implicit,
        )  # fmt: skip
        await self._call("connect", self._hello())
        if self.security == "starttls":
            await self._starttls()
        else:  # the library asked CAPABILITY after the greeting
            self.capabilities = frozenset(c.upper() for c in self._imap.protocol.capabilities)

    async def _hello(self) -> None:
        """Wait for the greeting (and the CAPABILITY the library sends after it)."""
        protocol = self._imap.protocol
        refused: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        welcome = protocol.welcome

        async def guarded_welcome(line: bytes) -> None:
            try:
                await welcome(line)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting caller below
                if not refused.done():
                    refused.set_result(exc)

        protocol.welcome = guarded_welcome  # called per instance from data_received
        hello = asyncio.ensure_future(self._imap.wait_hello_from_server())
        try:
            await asyncio.wait({hello, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self._cancel(hello)
        if refused.done():
            raise SourceError(
                self.source,
                f"connect: {self.where} is not a usable IMAP server: {refused.result()}",
            )
        hello.result()

    async def _capability(self) -> frozenset[str]:
        response = await self._command("CAPABILITY")
        # the library strips "* CAPABILITY" from the untagged line it hands back
        lines = [b"CAPABILITY " + bytes(line) for line in response.lines[:-1]]
        return self._parse("CAPABILITY", parse_capabilities, lines)

    async def _starttls(self) -> None:
        protocol = self._imap.protocol
        if "STARTTLS" not in {c.upper() for c in protocol.capabilities}:
            raise SourceError(self.source, f"{self.where} does not offer STARTTLS")
        await self._command("STARTTLS")
        if self.ssl_context is None:  # pragma: no cover - set in __init__ for starttls
            raise SourceError(self.source, "no TLS context")
        loop = asyncio.get_running_loop()
        transport = await self._call(
            "STARTTLS handshake",
            loop.start_tls(
                protocol.transport, protocol, self.ssl_context,
                server_hostname=self.host, ssl_handshake_timeout=self.timeout,
            ),
        )  # fmt: skip
        protocol.transport = transport
        protocol.incomplete_line = b""  # nothing received in clear may survive the upgrade
        self.capabilities = await self._capability()

    async def login(self, user: str, password: str) -> None:
        """LOGIN with a password (quoted; the library would send the user name raw)."""
        if "LOGINDISABLED" in self.capabilities:
            raise SourceError(self.source, f"{self.where} refuses LOGIN on this connection")
        protocol = self._imap.protocol
        quote = aioimaplib.quoted
        try:
            command = aioimaplib.Command("LOGIN", protocol.new_tag(), quote(user), quote(password))
        except ValueError:
            raise SourceError(self.source, "user or password contains a line break") from None
        response = await self._call("LOGIN", protocol.execute(command, scrub=password))
        await self._authenticated(response, f"login as {user!r}")

    async def xoauth2(self, user: str, token: str) -> None:
        """AUTHENTICATE XOAUTH2 with a bearer token (sent as SASL initial response)."""
        protocol = self._imap.protocol
        sasl = base64.b64encode(f"user={user}\1auth=Bearer {token}\1\1".encode()).decode()

        def answer() -> None:
            protocol.transport.write(b"\r\n")

        command = SaslCommand(protocol.new_tag(), "XOAUTH2", sasl, answer=answer)
        response = await self._call("AUTHENTICATE", protocol.execute(command, scrub=sasl))
        await self._authenticated(response, f"XOAUTH2 as {user!r}")

    async def _authenticated(self, response: Any, what: str) -> None:
        if response.result != "OK":
            text = bytes(response.lines[-1]).decode("utf-8", "replace") if response.lines else ""
            raise SourceError(self.source, f"{what} failed at {self.where}: {text}")
        self._imap.protocol.state = aioimaplib.AUTH
        # servers add CONDSTORE, ESEARCH… after login; Dovecot says so in the response
        self.capabilities = parse_capabilities(response.lines) or await self._capability()

    async def status(self, mailbox: str, *, modseq: bool) -> MailboxState:
        """STATUS counters of ``mailbox`` (HIGHESTMODSEQ only if ``modseq``)."""
        items = "MESSAGES UIDNEXT UIDVALIDITY" + (" HIGHESTMODSEQ" if modseq else "")
        response = await self._command("STATUS", encode_mailbox(mailbox), f"({items})")
        return self._parse("STATUS", parse_status, response.lines)

    async def examine(self, mailbox: str, *, condstore: bool) -> MailboxState:
        """EXAMINE (read-only select) ``mailbox``, with CONDSTORE enabled if asked."""
        args = (encode_mailbox(mailbox), "(CONDSTORE)") if condstore else (encode_mailbox(mailbox),)
        response = await self._command("EXAMINE", *args)
        self._imap.protocol.state = aioimaplib.SELECTED  # the library leaves it at AUTH
        return self._parse("EXAMINE", parse_examine, response.lines)

    async def select(self, mailbox: str) -> MailboxState:
        """SELECT ``mailbox`` read-write (only to delete canaries: see :meth:`delete`)."""
        response = await self._command("SELECT", encode_mailbox(mailbox))
        self._imap.protocol.state = aioimaplib.SELECTED
        return self._parse("SELECT", parse_examine, response.lines)

    async def delete(self, uids: Iterable[int]) -> None:
        r"""Flag ``uids`` \Deleted and expunge exactly those (``UID EXPUNGE``, RFC 4315).

        Without UIDPLUS they are only flagged: a plain EXPUNGE would also remove whatever
        else someone flagged \Deleted, and only the given UIDs may ever be touched.
        """
        for batch in batches(uids, self.fetch_batch):
            uid_set = format_sequence_set(batch)
            await self._command("STORE", uid_set, "+FLAGS.SILENT", "(\\Deleted)", prefix="UID",
                                untagged_resp_name="FETCH")  # fmt: skip
            if "UIDPLUS" in self.capabilities:
                await self._command("EXPUNGE", uid_set, prefix="UID")

    async def uid_search(self, criteria: str) -> list[int]:
        """UIDs matching ``criteria`` in the examined mailbox (ESEARCH form when offered)."""
        if "ESEARCH" in self.capabilities:
            response = await self._command(
                "SEARCH", "RETURN", "(ALL)", criteria, prefix="UID", untagged_resp_name="ESEARCH"
            )
        else:
            response = await self._command("SEARCH", criteria, prefix="UID")
        return self._parse("UID SEARCH", parse_search, response.lines)

    async def fetch(
        self,
        uids: Iterable[int],
        items: str,
        each: Callable[[list[FetchRecord]], None] | None = None,
    ) -> tuple[list[FetchRecord], int]:
        """``UID FETCH`` of ``items`` for ``uids``, batched; returns records and malformed count.

        Read by a :class:`~mailwatch.sources.imap_fetch.FetchReader`, never by the library
        (see :func:`~mailwatch.sources.imap_fetch.fetch_batches`). ``each`` is handed the
        records as each batch completes, while later batches are still in flight.
        """
        protocol = self._imap.protocol
        if not FetchReader.usable(protocol):  # as the library refuses it, with its reason
            raise SourceError(
                self.source, f"UID FETCH: command FETCH illegal in state {protocol.state}"
            )
        records, malformed, refused = await fetch_batches(
            protocol, batches(uids, self.fetch_batch), items, self._fetch_wait, each
        )
        if refused is not None:
            raise SourceError(self.source, f"UID FETCH refused by {self.where}: {refused}")
        return records, malformed

    async def _fetch_wait(self, done: asyncio.Future[tuple[str, str]]) -> tuple[str, str]:
        """One FETCH's tagged line, under the timeout and the connection watch."""
        try:
            return await self._call("UID FETCH", done)
        except ImapParseError as exc:
            self._broken = True
            detail = f"UID FETCH: unexpected answer from {self.where}: {exc}"
            raise SourceError(self.source, detail) from exc

    async def close(self) -> None:
        """LOGOUT (briefly) and close the transport; never raises, never leaks the socket."""
        imap, self._imap = self._imap, None
        if imap is None:
            return
        protocol, lost = imap.protocol, self._lost
        transport = protocol.transport
        if transport is not None and lost is not None:
            if lost.done() or transport.is_closing() or self._broken:
                grace = 0.1  # closed (a failed TLS upgrade does so silently) or not worth a LOGOUT
            else:
                grace = CLOSE_GRACE
                logout = asyncio.ensure_future(
                    protocol.execute(aioimaplib.Command("LOGOUT", protocol.new_tag()))
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_GRACE):
                        await asyncio.wait({logout, lost}, return_when=asyncio.FIRST_COMPLETED)
                await self._cancel(logout)
            transport.close()
            try:
                async with asyncio.timeout(grace):
                    await asyncio.shield(lost)
            except TimeoutError:
                transport.abort()
                await asyncio.sleep(0)  # let the loop run the transport's connection_lost
        await self._cancel(imap._client_task)
        for task in (*protocol.tasks, *imap.tasks):
            await self._cancel(task)
