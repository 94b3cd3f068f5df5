"""The canary source over a real path: aiosmtplib → Postfix → LMTP → Dovecot → IMAP.

A private Postfix (for this module) delivers ``canary.example`` to the session Dovecot's LMTP
port and ``gated.example`` to a :class:`Gate`: a loopback port where nothing listens until a
test opens it, then a TCP relay to the same LMTP port. A closed gate is a broken hop: Postfix
defers the canary and the canary source must call it lost; opening the gate and flushing the
queue heals the path. Every test gets a fresh Dovecot user and store, and the real clock
(INTERNALDATE is Dovecot's own).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from integration.conftest import Mailbox
from mailwatch.app.scanner import Scanner, judge
from mailwatch.config.settings import load
from mailwatch.core.model import (
    REMEMBER_LOST,
    CanaryObservation,
    CanaryResult,
    Observation,
    Priority,
    Verdict,
)
from mailwatch.errors import SourceError, StoreReadOnly
from mailwatch.parsing.canary import CANARY_HEADER
from mailwatch.sandbox.dovecot import PrivateDovecot
from mailwatch.sandbox.postfix import PrivatePostfix, free_port
from mailwatch.sources.canary import CanarySource, Destination, Submission
from mailwatch.store import Store

pytestmark = [pytest.mark.postfix, pytest.mark.imap]

PATH = "duty_path"


class Gate:
    """A TCP relay from a fixed loopback port to Dovecot's LMTP port, closed until opened."""

    def __init__(self, port: int, upstream: int) -> None:
        self.port, self.upstream = port, upstream
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Future[Any]] = set()

    async def open(self) -> None:
        """Start relaying on the fixed port."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)  # before any await: close() must see every connection
        relay = asyncio.current_task()
        if relay is not None:
            self._relays.add(relay)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()  # EOF one way ends the other: each side sees the close

    async def close(self) -> None:
        """Stop listening and cut every connection, including ones accepted just now."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            await asyncio.sleep(0.05)  # a connection accepted just before: let its relay start
        for writer in self._writers:
            writer.transport.abort()
        if self._relays:
            await asyncio.wait(self._relays, timeout=5)
        await asyncio.sleep(0)  # the aborted transports' connection_lost


@dataclass
class CanaryPostfix:
    """The module's Postfix and the gate port its ``gated.example`` transport points at."""

    postfix: PrivatePostfix
    gate_port: int


@pytest.fixture(name="canary_postfix", scope="module")
def fixture_canary_postfix(
    tmp_path_factory: pytest.TempPathFactory, dovecot_instance: PrivateDovecot
) -> Iterator[CanaryPostfix]:
    """A Postfix delivering canary.example to Dovecot over LMTP, gated.example to the gate."""
    gate_port = free_port()
    lmtp = f"lmtp:inet:127.0.0.1:{dovecot_instance.lmtp_port}"
    instance = PrivatePostfix.create(
        tmp_path_factory.mktemp("canary-postfix"),
        transports={"canary.example": lmtp, "gated.example": f"lmtp:inet:127.0.0.1:{gate_port}"},
    )
    instance.start()
    try:
        yield CanaryPostfix(instance, gate_port)
    finally:
        instance.stop()


@dataclass
class Lab:
    """One test's canary path: the Postfix, a fresh mailbox, a store and a scanner."""

    postfix: PrivatePostfix
    mailbox: Mailbox
    store: Store
    scanner: Scanner
    gate: Gate

    def source(self, domain: str = "canary.example", **overrides: Any) -> CanarySource:
        """A canary source on this path (resumed from the store, like the factory does)."""
        dovecot = self.mailbox.dovecot
        settings: dict[str, Any] = {
            "submission": Submission("127.0.0.1", self.postfix.smtp_port, security="none"),
            "destination": Destination(
                "127.0.0.1", self.mailbox.user, password=self.mailbox.password,
                port=dovecot.imap_port, security="starttls", ca_file=dovecot.ca_file,
            ),
            "sender": "mailwatch@probation.example",
            "recipient": f"{self.mailbox.user}@{domain}",
            "timeout": 2.0,
            "io_timeout": 5.0,
            "in_flight": self.store.canaries_in_flight(
                PATH, lost_since=datetime.now(UTC) - REMEMBER_LOST
            ),
            "healthy_since": self.store.canary_healthy_since(PATH),
        }  # fmt: skip
        settings.update(overrides)
        return CanarySource(PATH, **settings)

    def judge(self, observation: Observation) -> list[Verdict]:
        """The scanner's verdicts on ``observation``'s messages now (class and SLA).

        A scanned message's headers left memory once stored: they are read from the store.
        """
        messages = tuple(
            m._replace(headers=self.store.get(m.key).headers) if m.headers.released else m
            for m in observation.messages
        )
        scanned = replace(observation, messages=messages)
        return judge(scanned, load(None).classifier(), {}, datetime.now(UTC))

    async def scan(self, source: CanarySource) -> CanaryObservation:
        """Probe through the scanner (which records the canaries); return the observation."""
        outcome = await self.scanner.scan(source)
        assert isinstance(outcome.observation, CanaryObservation), outcome.error
        return outcome.observation

    async def wait_for_mail(self, count: int) -> dict[int, frozenset[str]]:
        """Wait (up to 10 s) until the mailbox holds ``count`` messages; return their flags."""
        deadline = time.monotonic() + 10.0
        while True:
            flags = await asyncio.to_thread(self.mailbox.flags)
            if len(flags) >= count or time.monotonic() > deadline:
                assert len(flags) == count, self.postfix.log_tail()
                return flags
            await asyncio.sleep(0.05)


@pytest.fixture(name="lab")
async def fixture_lab(
    canary_postfix: CanaryPostfix, mailbox: Mailbox, tmp_store_path: Any
) -> AsyncIterator[Lab]:
    """A fresh mailbox and store on the module's Postfix (queue emptied, gate closed)."""
    postfix = canary_postfix.postfix
    postfix.start()
    postfix.delete_all()
    gate = Gate(canary_postfix.gate_port, mailbox.dovecot.lmtp_port)
    store = Store(tmp_store_path)
    try:
        yield Lab(postfix, mailbox, store, Scanner(load(None).classifier(), store), gate)
    finally:
        postfix.delete_all()  # nothing more for the gate to relay
        await gate.close()
        store.close()


def _one(observation: Observation | None, **wanted: Any) -> CanaryResult:
    """The single canary event of ``observation`` whose fields equal ``wanted``."""
    assert isinstance(observation, CanaryObservation)
    found = [c for c in observation.canaries if all(getattr(c, k) == v for k, v in wanted.items())]
    assert len(found) == 1, observation.canaries
    return found[0]


class TestRoundTrip:
    """A healthy path: round trips measured, canaries deleted, other mail left alone."""

    async def test_round_trip_is_measured_and_only_the_canary_deleted(self, lab: Lab) -> None:
        """The canary's round trip is > 0; it is expunged; other mail and its flags are not."""
        mailbox = lab.mailbox
        mailbox.deliver("Case note")
        mailbox.deliver("Read case note")
        mailbox.deliver("Marked for deletion by a person")
        mailbox.deliver("Another path's canary", extra={CANARY_HEADER: "other.0123456789abcdef"})
        mailbox.deliver("Looks like ours but is not", extra={CANARY_HEADER: f"{PATH}.typed"})
        mailbox.store("2", "+FLAGS", "\\Seen")
        mailbox.store("3", "+FLAGS", "\\Deleted \\Flagged")
        before = mailbox.flags()
        source = lab.source()
        assert len(before) == 5

        first = await lab.scan(source)
        sent = _one(first, found_at=None)
        assert sent.queue_id is not None
        assert not sent.lost
        await lab.wait_for_mail(6)
        second = await lab.scan(source)

        done = _one(second, token=sent.token)
        assert done.found_at is not None
        assert not done.lost
        assert done.roundtrip_seconds is not None
        assert 0 < done.roundtrip_seconds < 2.0
        after = mailbox.flags()  # the next canary (UID 7) may have arrived meanwhile
        assert {uid: f for uid, f in after.items() if uid < 7} == before  # UID 6 expunged
        stored = lab.store.canary(PATH, sent.token)
        assert stored is not None
        assert stored.roundtrip_seconds == done.roundtrip_seconds
        totals = lab.store.canary_totals()
        assert (totals.roundtrip[PATH].count, totals.lost[PATH]) == (1, 0)
        assert lab.store.canaries_lost(datetime.now(UTC)) == {PATH: ()}
        log = lab.postfix.log_path.read_text()
        assert f"{sent.queue_id}: to=<{mailbox.user}@canary.example>" in log  # followable

    async def test_travelling_canary_is_a_p1_canary_message(self, lab: Lab) -> None:
        """The canary in flight is a message in queue canary:PATH, classified canary (P1)."""
        outcome = await lab.scanner.scan(lab.source())

        (verdict,) = outcome.verdicts
        sent = _one(outcome.observation)
        assert verdict.message.queue == f"canary:{PATH}"
        assert verdict.message.queue_id == sent.queue_id
        assert verdict.message.delay_reason == "canary not delivered"
        assert verdict.message.subject == f"mailwatch canary {sent.token}"
        assert (verdict.classification.name, str(verdict.classification.priority)) == (
            "canary",
            "P1",
        )
        assert not verdict.stuck

    async def test_keep_leaves_canaries_and_flags_alone(self, lab: Lab) -> None:
        """With keep, found canaries stay (EXAMINE only): no flag changes at all."""
        source = lab.source(keep=True)
        sent = _one(await lab.scan(source))
        await lab.wait_for_mail(1)
        before = lab.mailbox.flags()

        found = _one(await lab.scan(source), token=sent.token)

        assert found.found_at is not None
        assert not found.lost
        after = lab.mailbox.flags()
        assert {uid: after[uid] for uid in before} == before
        third = await lab.scan(source)  # the kept canary is not found (or counted) twice
        assert found.token not in {c.token for c in third.canaries}
        assert lab.store.canary_totals().roundtrip[PATH].count == 1 + sum(
            c.found_at is not None for c in third.canaries
        )


class TestLoss:
    """A broken hop: the canary is lost after its timeout; a later success clears the path."""

    async def test_broken_path_loses_canaries_until_a_success(self, lab: Lab) -> None:
        """Gate closed: lost after 2 s and listed; healed: a new round trip clears the path."""
        source = lab.source("gated.example")
        first = _one(await lab.scan(source))
        lab.postfix.wait_for_queue(1)  # deferred: the LMTP hop refuses connections
        await asyncio.sleep(2.1)

        second = await lab.scan(source)

        assert _one(second, token=first.token).lost
        lost = lab.store.canaries_lost(datetime.now(UTC))[PATH]
        assert [item.id for item in lost] == [first.queue_id]
        assert lab.store.canary_totals().lost[PATH] == 1
        by_queue = {m.queue: m for m in second.messages}  # lost, and the one just sent
        assert set(by_queue) == {"lost", f"canary:{PATH}"}
        assert by_queue["lost"].queue_id == first.queue_id
        assert by_queue[f"canary:{PATH}"].queue_id == _one(second, lost=False).queue_id
        verdicts = {v.message.queue: v for v in lab.judge(second)}
        assert (verdicts["lost"].stuck, verdicts["lost"].reason) == (True, "canary lost")
        assert (verdicts["lost"].classification.name, verdicts["lost"].classification.priority) == (
            "canary",
            Priority.P1,
        )
        assert by_queue["lost"].wait_reason == "canary lost: not in INBOX 2s after it was sent"
        assert not verdicts[f"canary:{PATH}"].stuck  # travelling, within its class's SLA
        await asyncio.sleep(3.1)  # the second's time runs out too (INTERNALDATE: whole seconds)

        await lab.gate.open()
        lab.postfix.flush()
        await lab.wait_for_mail(2)
        third = await lab.scan(source)  # both arrive late: lost, not round trips
        latest = _one(third, found_at=None, lost=False)
        assert all(c.lost for c in third.canaries if c.found_at is not None)
        assert len(lab.store.canaries_lost(datetime.now(UTC))[PATH]) == 2
        await lab.wait_for_mail(1)  # the two late ones deleted, the third canary arrived
        fourth = await lab.scan(source)

        assert not _one(fourth, token=latest.token).lost
        assert lab.store.canaries_lost(datetime.now(UTC)) == {PATH: ()}
        assert {m.queue for m in fourth.messages} == {f"canary:{PATH}"}  # healed: none lost
        assert lab.store.canary_healthy_since(PATH) == latest.sent_at
        totals = lab.store.canary_totals()
        assert (totals.roundtrip[PATH].count, totals.lost[PATH]) == (1, 2)
        late = lab.store.canary(PATH, first.token)
        assert late is not None
        assert late.lost
        assert (late.roundtrip_seconds or 0) > 2.0


class TestRestart:
    """Canaries in flight survive a restart of the source (through the store)."""

    async def test_canary_sent_before_a_restart_is_a_round_trip_after_it(self, lab: Lab) -> None:
        """Sent by one instance, found by a new one resumed from the same store: a round trip."""
        sent = _one(await lab.scan(lab.source()))
        await lab.wait_for_mail(1)

        restarted = lab.source()  # a new process: only the store remembers the canary
        found = _one(await lab.scan(restarted), token=sent.token)

        assert found.found_at is not None
        assert not found.lost
        assert found.roundtrip_seconds is not None
        assert found.roundtrip_seconds > 0
        assert lab.store.canary_totals().roundtrip[PATH].count == 1
        assert lab.store.canary_totals().lost[PATH] == 0


class TestMailboxFailure:
    """An unreadable mailbox fails the probe, but the path is still measured."""

    async def test_canary_still_sent_and_reported_by_the_next_probe(self, lab: Lab) -> None:
        """Login refused: SourceError, yet a canary goes out; the next good probe finds it."""
        source = lab.source()
        good = source.destination
        source.destination = replace(good, password="wrong")

        with pytest.raises(SourceError, match="login"):
            await source.probe()
        await lab.wait_for_mail(1)
        source.destination = good
        observation = await lab.scan(source)

        (found,) = [c for c in observation.canaries if c.found_at is not None]
        assert not found.lost
        assert lab.store.canary_totals().roundtrip[PATH].count == 1


class TestStoreFailure:
    """Canary events a failed store write could not keep are handed out again, and kept once."""

    async def test_round_trip_found_while_the_store_fails_is_kept(self, lab: Lab) -> None:
        """Read-only store as the canary is found (and deleted): its round trip still counts.

        The read-only store is a fault-injection fake (``PRAGMA query_only``); Postfix,
        Dovecot and the mailbox are real. Before, the found event was dropped with the failed
        write while the canary was already deleted from the mailbox: never a round trip.
        """
        source = lab.source()
        sent = _one(await lab.scan(source))
        await lab.wait_for_mail(1)
        lab.store._db.execute("PRAGMA query_only=ON")  # the fake: a read-only store

        with pytest.raises(StoreReadOnly, match="cannot record canaries"):
            await lab.scanner.scan(source)  # found and deleted; the write fails

        lab.store._db.execute("PRAGMA query_only=OFF")
        again = await lab.scan(source)
        found = _one(again, token=sent.token)
        assert found.found_at is not None
        assert not found.lost
        stored = lab.store.canary(PATH, sent.token)
        assert stored is not None
        assert stored.roundtrip_seconds == found.roundtrip_seconds
        assert lab.store.canary_totals().roundtrip[PATH].count == sum(
            c.found_at is not None for c in again.canaries
        )
        later = await lab.scan(source)
        assert sent.token not in {c.token for c in later.canaries}  # handed out once stored


class TestSubmissionSecurity:
    """TLS is explicit at submission: never an upgrade "if offered", never plaintext off-host."""

    async def test_plaintext_submission_on_loopback_is_accepted(self, lab: Lab) -> None:
        """Plaintext (security none) to the loopback Postfix submits and records the queue id."""
        sent = _one(await lab.scan(lab.source()))
        await lab.wait_for_mail(1)

        assert sent.queue_id is not None
        assert f"{sent.queue_id}: removed" in lab.postfix.log_path.read_text()

    def test_plaintext_submission_to_another_host_is_refused(self, lab: Lab) -> None:
        """Plaintext (security none) to a non-loopback host is refused before any send."""
        with pytest.raises(ValueError, match="only allowed on loopback"):
            lab.source(submission=Submission("mail.probation.example", 25, security="none"))

    async def test_starttls_not_offered_fails_closed(self, lab: Lab) -> None:
        """STARTTLS required but not offered: nothing sent in clear, the canary lost at once."""
        source = lab.source(submission=Submission("127.0.0.1", lab.postfix.smtp_port))

        observation = await lab.scan(source)

        assert _one(observation).lost
        assert "STARTTLS" in observation.warnings[0]
        assert not observation.messages
        assert lab.postfix.queue() == []
        assert lab.store.canary_totals().lost[PATH] == 1

    async def test_submission_down_loses_the_canary_at_once(self, lab: Lab) -> None:
        """Nothing listening at submission: lost at once with a warning; the mailbox still read."""
        dead = Submission("127.0.0.1", free_port(), security="none")
        observation = await lab.scan(lab.source(submission=dead))

        assert _one(observation).lost
        assert "canary not submitted" in observation.warnings[0]
        assert len(lab.store.canaries_lost(datetime.now(UTC) + timedelta(seconds=1))[PATH]) == 1
