"""Integration fixtures for IMAP: a private Dovecot, fresh mailboxes, and a fault-injecting proxy.

* ``dovecot_instance`` (session): one real Dovecot on loopback for the whole run (~0.4 s).
* ``mailbox``: a *new user* per test, so every test starts with an empty INBOX and no state
  left by another (spare users are written before Dovecot starts: see ``fresh_user``).
* ``proxy``: :class:`CuttingProxy`, a TCP proxy in front of Dovecot's IMAP port that records
  what the client sends (to count commands on the real wire) and can cut a connection, or
  stall it, after N bytes of server data once the client has sent a trigger (``b"UID FETCH"``).
* ``postgres_instance`` (session): a private PostgreSQL cluster on loopback
  (:class:`~mailwatch.sandbox.postgres.PrivatePostgres`, ~1 s); ``fleet_url``: a *new database*
  in it per test, so every fleet test starts with an empty central store.
* ``scripted_server``: starts :class:`ScriptedServer` peers for faults no real server produces
  on demand: one that never greets, one whose STARTTLS was stripped, one answering nonsense.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import re
import shutil
import smtplib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mailwatch.parsing.imap import parse_sequence_set
from mailwatch.sandbox.dovecot import PrivateDovecot
from mailwatch.sandbox.exim import PrivateExim, default_prefix, unavailable_reason
from mailwatch.sandbox.postfix import make_message
from mailwatch.sandbox.postgres import PrivatePostgres, bin_dir
from mailwatch.sources.imap import ImapSource

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
"""A Monday morning: arrival time of delivered test mail unless a test says otherwise."""


@dataclass
class FixedClock:
    """A clock that says what the test tells it to."""

    now: datetime = T0

    def __call__(self) -> datetime:
        """The time the test set."""
        return self.now


@dataclass
class Mailbox:
    """One fresh Dovecot user: deliver mail, act on it as a person would, build sources."""

    dovecot: PrivateDovecot
    user: str
    password: str
    clock: FixedClock = field(default_factory=FixedClock)

    def deliver(
        self, subject: str, *, received: datetime = T0, folder: str = "INBOX", **kw: Any
    ) -> None:
        """Deliver one synthetic message whose INTERNALDATE is ``received``."""
        raw = make_message(subject, **kw).as_bytes()
        self.dovecot.deliver(self.user, raw, folder, received=received)

    def deliver_by_lmtp(self, subject: str) -> None:
        """Deliver one message over LMTP, as Postfix will (Dovecot sets its INTERNALDATE)."""
        message = make_message(subject, to=f"{self.user}@probation.example")
        with smtplib.LMTP("127.0.0.1", self.dovecot.lmtp_port) as lmtp:
            lmtp.send_message(message)

    def deliver_many(self, count: int, *, received: datetime = T0, folder: str = "INBOX") -> None:
        """Deliver ``count`` numbered messages."""
        for number in range(count):
            self.deliver(f"Case note {number}", received=received, folder=folder)

    @contextlib.contextmanager
    def person(self, folder: str = "INBOX") -> Iterator[imaplib.IMAP4]:
        """A second client (stdlib imaplib), logged in with ``folder`` selected read-write."""
        client = imaplib.IMAP4("127.0.0.1", self.dovecot.imap_port, timeout=10)
        try:
            client.login(self.user, self.password)
            client.select(folder)
            yield client
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()

    def store(self, uids: str, change: str, flags: str, folder: str = "INBOX") -> None:
        """``UID STORE uids change (flags)`` as a person would, e.g. mark read."""
        with self.person(folder) as client:
            client.uid("STORE", uids, change, f"({flags})")

    def uidvalidity(self, folder: str = "INBOX") -> int:
        """The folder's UIDVALIDITY, as Dovecot reports it."""
        out = self.dovecot.doveadm("mailbox", "status", "-u", self.user, "uidvalidity", folder)
        return int(out.split("uidvalidity=")[1].split()[0])

    def flags(self, folder: str = "INBOX") -> dict[int, frozenset[str]]:
        """Every message's flags by UID, read through doveadm (not IMAP: nothing changes)."""
        out = self.dovecot.doveadm("fetch", "-u", self.user, "uid flags", "mailbox", folder, "all")
        found = re.findall(r"uid: (\d+)\nflags: ?([^\n]*)", out)
        return {int(uid): frozenset(flags.split()) for uid, flags in found}

    def source(self, **overrides: Any) -> ImapSource:
        """An ImapSource on this mailbox: STARTTLS, the sandbox CA, the test's clock."""
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.dovecot.imap_port,
            "security": "starttls",
            "user": self.user,
            "password": self.password,
            "ca_file": self.dovecot.ca_file,
            "timeout": 5.0,
            "clock": self.clock,
        }
        settings.update(overrides)
        return ImapSource("duty", **settings)


class RejectingSink:
    """A relay that accepts every recipient except those at ``reject.example`` (550)."""

    async def handle_RCPT(
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        """Reject one domain permanently."""
        if address.endswith("@reject.example"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:
        """Accept the data."""
        return "250 2.0.0 Ok: queued"


@pytest.fixture(name="exim")
def fixture_exim(tmp_path: Path) -> Iterator[PrivateExim]:
    """A fresh private Exim (empty queue); skips only when the unpacked Exim is not there."""
    prefix = default_prefix()
    if not (prefix / "usr/sbin/exim4").is_file():
        pytest.skip(f"no unpacked Exim at {prefix} (see tests/data/exim/README.md)")
    reason = unavailable_reason(prefix)
    if reason is not None:
        pytest.fail(f"the unpacked Exim at {prefix} cannot run: {reason}")
    instance = PrivateExim.create(tmp_path / "exim")
    yield instance
    instance.delete_all()


@pytest.fixture(name="dovecot_instance", scope="session")
def fixture_dovecot_instance() -> Iterator[PrivateDovecot]:
    """A real Dovecot on loopback (IMAP, IMAPS, LMTP) for the whole session.

    Its directory is *not* under pytest's temp root: every pytest session that starts resets
    ``pytest-of-USER`` to mode 0700, which would lock Dovecot's unprivileged processes out of
    their own files (seen as "Temporary authentication failure") when two sessions overlap.
    """
    if shutil.which("dovecot") is None:
        pytest.fail("Dovecot is not installed: run scripts/bootstrap (the suite needs a real one)")
    root = Path(tempfile.mkdtemp(prefix="mailwatch-dovecot-"))
    instance = PrivateDovecot.create(root, users={"duty": "secret"}, spare_users=64)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(name="mailbox")
def fixture_mailbox(dovecot_instance: PrivateDovecot) -> Mailbox:
    """A brand-new user with an empty INBOX, on the session's Dovecot."""
    dovecot_instance.start()
    user, password = dovecot_instance.fresh_user()
    return Mailbox(dovecot_instance, user, password)


@dataclass
class _Link:
    """One proxied connection's state."""

    client_sent: bytearray = field(default_factory=bytearray)
    budget: int | None = None
    """Server bytes still to forward before the cut (``None``: not triggered)."""
    cut: bool = False
    stall: bool = False
    """Instead of cutting, swallow server data and keep the connection open (a hung server)."""


class CuttingProxy:
    """TCP proxy to ``127.0.0.1:upstream`` that records client bytes and cuts on request."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self.sent = bytearray()
        """Everything any client sent, in order (plaintext sessions only are readable)."""
        self.received = bytearray()
        """Everything the server sent to any client, as forwarded (after rewrites)."""
        self.connections = 0
        self._trigger: bytes | None = None
        self._budget = 0
        self._stall = False
        self.rewrites: dict[bytes, bytes] = {}
        """Server bytes to replace on the way to the client (corrupt a response on purpose)."""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on a free loopback port (``self.port``)."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def cut_after(self, trigger: bytes, server_bytes: int) -> None:
        """Once a client sends ``trigger``, forward ``server_bytes`` more bytes, then cut."""
        self._trigger, self._budget, self._stall = trigger, server_bytes, False

    def stall_after(self, trigger: bytes, server_bytes: int) -> None:
        """Like :meth:`cut_after`, but then go silent with the connection left open."""
        self._trigger, self._budget, self._stall = trigger, server_bytes, True

    def heal(self) -> None:
        """Stop cutting, stalling and rewriting."""
        self._trigger = None
        self.rewrites.clear()

    def commands(self, since: int = 0) -> list[str]:
        """Command lines sent since offset ``since`` of :attr:`sent`, tags removed."""
        lines = bytes(self.sent[since:]).decode("ascii", "replace").split("\r\n")
        return [line.split(" ", 1)[1] for line in lines if " " in line]

    def fetched_uid_sets(self, since: int = 0) -> list[list[int]]:
        """The UID sets of every ``UID FETCH`` sent since ``since``."""
        return [
            parse_sequence_set(command.split()[2])
            for command in self.commands(since)
            if command.upper().startswith("UID FETCH")
        ]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        self._writers.update((writer, up_writer))
        link = _Link()

        async def upstream() -> None:
            while data := await reader.read(65536):
                self.sent += data
                link.client_sent += data
                trigger = self._trigger
                if trigger is not None and link.budget is None and trigger in link.client_sent:
                    link.budget, link.stall = self._budget, self._stall
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                for old, new in self.rewrites.items():
                    data = data.replace(old, new)
                self.received += data
                if link.budget is not None:
                    if len(data) >= link.budget:
                        writer.write(data[: link.budget])
                        link.budget = 0
                        if not link.stall:
                            link.cut = True
                            return
                        continue  # stalled: what the server says from now on is swallowed
                    link.budget -= len(data)
                writer.write(data)
                await writer.drain()

        pumps = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        with contextlib.suppress(OSError):
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        for each in (writer, up_writer):
            if link.cut:
                each.transport.abort()  # reset, as a dying link or a middlebox would
            else:
                each.close()  # a normal end: what was written still reaches its reader
            self._writers.discard(each)
        if task is not None:
            self._handlers.discard(task)

    async def close(self) -> None:
        """Stop listening and abort every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)
        await asyncio.sleep(0)


@pytest.fixture(name="proxy")
async def fixture_proxy(mailbox: Mailbox) -> AsyncIterator[CuttingProxy]:
    """A CuttingProxy in front of the session Dovecot's IMAP port (not cutting until told)."""
    proxy = CuttingProxy(mailbox.dovecot.imap_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest.fixture(name="proxied_source")
def fixture_proxied_source(mailbox: Mailbox, proxy: CuttingProxy) -> Callable[..., ImapSource]:
    """Build plaintext sources that connect through the proxy (so the wire can be read)."""

    def build(**overrides: Any) -> ImapSource:
        return mailbox.source(port=proxy.port, security="plain", **overrides)

    return build


class ScriptedServer:
    """A loopback stand-in for an IMAP server: a fixed greeting and canned replies per verb.

    ``greeting=None`` makes it silent. Every command gets its verb's canned untagged lines
    (``replies``, by upper-case verb) then a tagged OK; LOGOUT gets BYE and ends the session.
    """

    def __init__(self, greeting: bytes | None, replies: dict[str, bytes]) -> None:
        self.greeting = greeting
        self.replies = replies
        self.port = 0
        self.received: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on a free loopback port (``self.port``)."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._writers.add(writer)
        if self.greeting is not None:
            writer.write(self.greeting + b"\r\n")
        while line := await reader.readline():
            self.received.append(line)
            if self.greeting is None:
                continue
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            verb = rest.split(b" ", 1)[0].decode("ascii", "replace").upper()
            if verb == "LOGOUT":
                writer.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
                break
            writer.write(self.replies.get(verb, b"") + tag + b" OK done\r\n")
        writer.close()
        self._writers.discard(writer)
        if task is not None:
            self._handlers.discard(task)

    async def close(self) -> None:
        """Stop listening, close every connection and wait for the handlers to end."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)


ScriptedServerFactory = Callable[..., Awaitable[ScriptedServer]]


@pytest.fixture(name="scripted_server")
async def fixture_scripted_server() -> AsyncIterator[ScriptedServerFactory]:
    """Start :class:`ScriptedServer` instances (``greeting``, ``replies``); all closed after."""
    servers: list[ScriptedServer] = []

    async def start(greeting: bytes | None = None, **replies: bytes) -> ScriptedServer:
        server = ScriptedServer(greeting, {k.upper(): v for k, v in replies.items()})
        await server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            await server.close()


@pytest.fixture(name="postgres_instance", scope="session")
def fixture_postgres_instance(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrivatePostgres]:
    """A real PostgreSQL on loopback for the whole session (trust auth, fsync off)."""
    if bin_dir() is None:
        pytest.fail("PostgreSQL is not installed: run scripts/bootstrap (the fleet tests need it)")
    instance = PrivatePostgres(tmp_path_factory.mktemp("postgres")).create()
    try:
        yield instance
    finally:
        instance.destroy()


_databases = iter(range(1, 1_000_000))


@pytest.fixture(name="fleet_url")
def fixture_fleet_url(postgres_instance: PrivatePostgres) -> str:
    """A URL to a new, empty database in the session's cluster (started if a test stopped it)."""
    if not postgres_instance.is_running():
        postgres_instance.start()
    name = f"fleet_{next(_databases)}"
    with psycopg.connect(postgres_instance.url, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return postgres_instance.url.rsplit("/", 1)[0] + "/" + name
