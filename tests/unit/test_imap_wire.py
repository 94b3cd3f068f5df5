"""The IMAP wire (mailwatch's own connection layer), on a fake transport.

A fake transport stands in for the socket so that bytes can be delivered at exact points
(the greeting, a continuation, data received in clear right before a TLS upgrade); the real
exchanges run against Dovecot in tests/integration/test_imap_*.py.
"""

from __future__ import annotations

import asyncio

from mailwatch.sources.imap_wire import ImapWire


class _Transport:
    """A fake transport: what the wire wrote."""

    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False


def _wire() -> tuple[ImapWire, _Transport]:
    wire, transport = ImapWire(), _Transport()
    wire.connection_made(transport)  # type: ignore[arg-type]
    return wire, transport


async def test_greeting_is_the_first_line_whatever_it_says() -> None:
    """An SMTP banner is handed over as the greeting (the client refuses it), not dropped."""
    wire, _ = _wire()
    wire.data_received(b"220 mail.example ESMTP\r\n")
    assert wire.greeting.result() == b"220 mail.example ESMTP"


async def test_untagged_responses_are_kept_until_taken_and_commands_tagged() -> None:
    """``take`` gives the untagged lines (literals included); the tag resolves the command."""
    wire, transport = _wire()
    wire.data_received(b"* OK ready\r\n")
    done = wire.send("STATUS INBOX (MESSAGES)")
    assert transport.written == b"MW1 STATUS INBOX (MESSAGES)\r\n"
    wire.data_received(b"* STATUS INBOX (MESSAGES 3)\r\n* 4 EXISTS\r\nMW1 ok Done\r\n")
    assert done.result() == ("OK", "Done")
    assert wire.take() == [b"* STATUS INBOX (MESSAGES 3)", b"* 4 EXISTS"]
    assert wire.take() == []


async def test_continuation_is_handed_to_its_handler() -> None:
    """A SASL error continuation reaches ``on_continuation`` (the client answers it)."""
    wire, _ = _wire()
    wire.data_received(b"* OK ready\r\n")
    seen: list[bytes] = []
    wire.on_continuation = seen.append
    done = wire.send("AUTHENTICATE XOAUTH2 abc")
    wire.data_received(b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n")
    assert seen == [b"+ eyJzdGF0dXMiOiI0MDEifQ=="]
    wire.data_received(b"MW1 NO [AUTHENTICATIONFAILED] failed\r\n")
    assert done.result() == ("NO", "[AUTHENTICATIONFAILED] failed")


async def test_nothing_received_in_clear_survives_a_tls_upgrade() -> None:
    """Bytes sent after the STARTTLS OK, before the handshake, are never taken as TLS data."""
    wire, _ = _wire()
    wire.data_received(b"* OK ready\r\n")
    done = wire.send("STARTTLS")
    wire.data_received(b"MW1 OK Begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN")  # injected
    assert done.result()[0] == "OK"
    wire.upgraded(_Transport())  # type: ignore[arg-type]
    wire.data_received(b" STARTTLS\r\n* 1 EXISTS\r\n")
    assert wire.take() == [b"* 1 EXISTS"]  # no "* CAPABILITY IMAP4rev1 AUTH=PLAIN STARTTLS"


async def test_connection_lost_resolves_lost_and_abandons_commands() -> None:
    """A cut ends every outstanding command at once (cancelled), and ``lost`` resolves."""
    wire, _ = _wire()
    wire.data_received(b"* OK ready\r\n")
    done = wire.send("UID FETCH 1:9 (UID)")
    wire.connection_lost(ConnectionResetError())
    assert wire.lost.done()
    assert done.cancelled()
    assert not wire.busy
    await asyncio.sleep(0)
