"""The IMAP source when things go wrong: every failure a typed SourceError, fast, then healed.

Faults a real Dovecot will not produce on demand are injected: :class:`CuttingProxy` cuts,
stalls or corrupts a live connection at a chosen point (e.g. mid-FETCH), and scripted peers
play a server that never greets, one whose STARTTLS was stripped, one answering nonsense, and
an SMTP port configured by mistake. The second class shows each defence of mailwatch's own
IMAP client holding against the failure it exists for.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable

import pytest

from integration.conftest import CuttingProxy, Mailbox, ScriptedServerFactory
from mailwatch.errors import SourceError, SourceTimeout, SourceUnavailable
from mailwatch.sandbox.postfix import free_port
from mailwatch.sources.imap import ImapSource

pytestmark = pytest.mark.imap


class TestFailures:
    """Every failure is a typed SourceError, quickly, and the next probe recovers."""

    async def test_wrong_password_is_a_clear_error(self, mailbox: Mailbox) -> None:
        """A refused LOGIN is a SourceError naming the user and the server's reason."""
        source = mailbox.source(password="not-the-password")
        with pytest.raises(SourceError, match="Authentication failed") as raised:
            await source.probe()
        assert type(raised.value) is SourceError
        assert mailbox.user in str(raised.value)
        assert "not-the-password" not in str(raised.value)

    async def test_xoauth2_token_is_accepted_or_refused_promptly(
        self, mailbox: Mailbox, proxy: CuttingProxy
    ) -> None:
        """XOAUTH2 logs in with a good token; a bad one fails fast instead of hanging."""
        mailbox.deliver_many(1)
        good = mailbox.source(password=None, token=mailbox.password)
        assert len((await good.probe()).messages) == 1

        bad = mailbox.source(port=proxy.port, security="plain", password=None, token="bad")
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"XOAUTH2.*failed"):
            await bad.probe()
        assert time.monotonic() - started < 2

    async def test_nothing_listening_is_unavailable(self, mailbox: Mailbox) -> None:
        """A refused connection is SourceUnavailable."""
        with pytest.raises(SourceUnavailable, match="cannot reach"):
            await mailbox.source(port=free_port()).probe()

    async def test_silent_server_times_out(
        self, mailbox: Mailbox, scripted_server: ScriptedServerFactory
    ) -> None:
        """A server that accepts but never greets fails with SourceTimeout at the timeout."""
        silent = await scripted_server(greeting=None)
        started = time.monotonic()
        with pytest.raises(SourceTimeout):
            await mailbox.source(port=silent.port, timeout=0.5).probe()
        assert time.monotonic() - started < 1.5

    async def test_nonsense_answer_is_a_source_error(
        self, mailbox: Mailbox, scripted_server: ScriptedServerFactory
    ) -> None:
        """An EXAMINE answer without UIDVALIDITY is a SourceError, not a stray ValueError."""
        server = await scripted_server(
            b"* OK IMAP4rev1 odd",
            capability=b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n",
            examine=b"* 3 EXISTS\r\n",
        )
        with pytest.raises(SourceError, match=r"EXAMINE: unexpected answer.*UIDVALIDITY"):
            await mailbox.source(port=server.port, security="plain").probe()

    async def test_non_imap_peer_fails_at_once(
        self, mailbox: Mailbox, scripted_server: ScriptedServerFactory
    ) -> None:
        """Pointed at an SMTP port by mistake: a clear error at once, not at the timeout."""
        smtp = await scripted_server(b"220 mail.example ESMTP Postfix")
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"not a usable IMAP server: 220 mail\.example"):
            await mailbox.source(port=smtp.port, security="plain").probe()
        assert time.monotonic() - started < 1.5

    async def test_connection_cut_mid_fetch_fails_fast_and_recovers(
        self, mailbox: Mailbox, proxy: CuttingProxy, proxied_source: Callable[..., ImapSource]
    ) -> None:
        """A connection cut mid-FETCH fails at once, not at the timeout; the next probe heals."""
        mailbox.deliver_many(60)
        source = proxied_source(timeout=10.0)
        proxy.cut_after(b"UID FETCH", 3000)

        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match=r"connection .* was lost"):
            await source.probe()
        assert time.monotonic() - started < 2
        assert source.state == {}  # nothing half-synced was kept

        proxy.heal()
        observation = await source.probe()
        assert len(observation.messages) == observation.headers_read == 60

    async def test_missing_folder_is_a_source_error(self, mailbox: Mailbox) -> None:
        """A configured folder that does not exist fails the probe, naming the folder."""
        with pytest.raises(SourceError, match=r"EXAMINE.*Nope"):
            await mailbox.source(folders=("INBOX", "Nope")).probe()

    @pytest.mark.parametrize(
        ("overrides", "problem"),
        [
            ({"fetch_batch": 201}, "fetch_batch"),  # more UIDs per FETCH than the client sends
            ({"extra_headers": ["X-Case (id)"]}, "not header field names"),
            ({"token": "t"}, "exactly one of password or token"),
            ({"actioned": "read"}, "actioned must be one of"),
            ({"folders": ()}, "at least one folder"),
        ],
    )
    def test_bad_settings_are_refused_at_construction(
        self, mailbox: Mailbox, overrides: dict[str, object], problem: str
    ) -> None:
        """Settings that cannot work fail when the source is built, not at its first probe."""
        with pytest.raises(ValueError, match=problem):
            mailbox.source(**overrides)


class TestClientDefences:
    """The IMAP client's defences, each shown against a real failure."""

    async def test_server_hanging_mid_fetch_times_out_and_recovers(
        self, mailbox: Mailbox, proxy: CuttingProxy, proxied_source: Callable[..., ImapSource]
    ) -> None:
        """A server gone silent mid-FETCH ends in SourceTimeout at the timeout, not later."""
        mailbox.deliver_many(60)
        source = proxied_source(timeout=0.5)
        proxy.stall_after(b"UID FETCH", 3000)

        started = time.monotonic()
        with pytest.raises(SourceTimeout):
            await source.probe()
        assert time.monotonic() - started < 1.5

        proxy.heal()
        assert len((await source.probe()).messages) == 60

    async def test_starttls_not_offered_is_refused_before_login(
        self, mailbox: Mailbox, scripted_server: ScriptedServerFactory
    ) -> None:
        """A server (or middlebox) hiding STARTTLS gets no credentials: no plaintext fallback."""
        stripped = await scripted_server(
            b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] stripped",
            capability=b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n",
        )
        with pytest.raises(SourceError, match="does not offer STARTTLS"):
            await mailbox.source(port=stripped.port).probe()
        assert stripped.received  # the client did talk to it…
        assert not any(b"LOGIN" in line.upper() for line in stripped.received)

    async def test_secrets_and_headers_never_reach_the_log(
        self, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Even with logging reset to DEBUG, no password, SASL string or header is logged."""
        caplog.set_level(logging.DEBUG)
        mailbox.deliver("Emergency recall Zebra-42")
        await mailbox.source(password=None, token=mailbox.password).probe()
        await mailbox.source(security="plain").probe()

        sasl = base64.b64encode(
            f"user={mailbox.user}\1auth=Bearer {mailbox.password}\1\1".encode()
        ).decode()
        for secret in (mailbox.password, sasl, "Zebra-42"):
            assert secret not in caplog.text
