"""The IMAP source against a real, private Dovecot: what is unactioned, and what a poll costs.

Every test gets a brand-new user (an empty INBOX). Mail is delivered straight into Maildir
with a fixed INTERNALDATE (or over LMTP, as Postfix will), a "person" (stdlib imaplib) reads,
flags, moves and expunges it, and the source's clock is fixed, so stuck/not-stuck is asserted
at exact instants. Costs are asserted on the wire: the source connects through
:class:`~integration.conftest.CuttingProxy`, which records every command it sends. Failures
and the IMAP client's defences are in ``test_imap_failures.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from integration.conftest import T0, CuttingProxy, Mailbox
from mailwatch.app.scanner import Scanner, judge
from mailwatch.config.settings import load
from mailwatch.errors import SourceError
from mailwatch.sources.factory import build_sources
from mailwatch.sources.imap import ImapSource
from mailwatch.store import Store

pytestmark = pytest.mark.imap


class TestUnactioned:
    """Which messages a probe reports, and how it describes them."""

    async def test_unread_messages_are_observed_with_their_headers(self, mailbox: Mailbox) -> None:
        """Unread mail is reported with key, folder, UID, INTERNALDATE, addresses and subject."""
        mailbox.deliver(
            "OFFICIAL-SENSITIVE: Emergency recall (J Smith",
            received=T0,
            extra={"Cc": '"Doe, J" <j.doe@ppcs.example>', "Importance": "high"},
        )
        mailbox.deliver("Case note", received=T0 + timedelta(minutes=1))
        mailbox.deliver("Another case note", received=T0 + timedelta(minutes=2))
        mailbox.store("2", "+FLAGS", "\\Seen")

        observation = await mailbox.source().probe()

        assert [m.queue_id for m in observation.messages] == ["1", "3"]
        first = observation.messages[0]
        assert first.key == f"duty/INBOX/{mailbox.uidvalidity()}/1"
        assert (first.source, first.queue, first.arrival) == ("duty", "INBOX", T0)
        assert first.sender == "om@probation.example"
        recipients = [r.address for r in first.recipients]
        assert recipients == ["ppcs@justice.example", "j.doe@ppcs.example"]
        assert (first.subject, first.marking) == ("Emergency recall (J Smith", "OFFICIAL-SENSITIVE")
        assert first.headers.get("Importance") == "high"
        assert first.size > 0
        assert first.wait_reason == first.delay_reason == "unread in INBOX"
        assert observation.headers_read == 2
        assert observation.observed_at == T0

    async def test_unread_recall_is_stuck_once_past_its_sla(self, mailbox: Mailbox) -> None:
        """An unread emergency recall is stuck, "unread in INBOX", 10 minutes after arrival."""
        mailbox.deliver("Emergency recall: J Smith", received=T0)
        mailbox.deliver("Case note", received=T0)
        source = mailbox.source()
        classifier = load(None).classifier()

        stuck: dict[int, dict[str, str | None]] = {}
        for minutes in (5, 11):
            mailbox.clock.now = T0 + timedelta(minutes=minutes)
            observation = await source.probe()
            verdicts = judge(observation, classifier, {}, observation.observed_at)
            stuck[minutes] = {v.message.queue_id: v.reason for v in verdicts if v.stuck}
            classes = {v.message.queue_id: v.classification.name for v in verdicts}
            assert classes == {"1": "recall_emergency", "2": "general"}
        assert stuck == {5: {}, 11: {"1": "unread in INBOX"}}

        mailbox.store("1", "+FLAGS", "\\Seen")
        mailbox.clock.now = T0 + timedelta(minutes=20)
        observation = await source.probe()
        assert [m.queue_id for m in observation.messages] == ["2"]

    @pytest.mark.parametrize(
        ("actioned", "flag", "reason"),
        [
            ("answered", "\\Answered", "unanswered in INBOX"),
            ("flagged", "\\Flagged", "unflagged in INBOX"),
        ],
    )
    async def test_actioned_flag_is_configurable(
        self, mailbox: Mailbox, actioned: str, flag: str, reason: str
    ) -> None:
        """With actioned=answered/flagged, read mail still waits until that flag is set."""
        mailbox.deliver_many(3)
        mailbox.store("1", "+FLAGS", "\\Seen")
        mailbox.store("2", "+FLAGS", flag)

        observation = await mailbox.source(actioned=actioned).probe()

        assert [m.queue_id for m in observation.messages] == ["1", "3"]
        assert {m.wait_reason for m in observation.messages} == {reason}

    async def test_moved_means_everything_still_in_the_folder(self, mailbox: Mailbox) -> None:
        """With actioned=moved, read mail waits until it leaves the folder (or is deleted)."""
        mailbox.deliver_many(3)
        source = mailbox.source(actioned="moved")
        mailbox.store("1", "+FLAGS", "\\Seen")
        assert [m.queue_id for m in (await source.probe()).messages] == ["1", "2", "3"]

        mailbox.dovecot.doveadm("mailbox", "create", "-u", mailbox.user, "Done")
        with mailbox.person() as person:
            person.uid("MOVE", "2", "Done")
        observation = await source.probe()
        assert [m.queue_id for m in observation.messages] == ["1", "3"]
        assert observation.messages[0].wait_reason == "still in INBOX"

    async def test_several_folders_are_watched(self, mailbox: Mailbox) -> None:
        """Each folder is its own queue, keys and wait reason; any name (spaces, non-ASCII)."""
        folder = "Recalls & Präsidium"  # sent as "Recalls &- Pr&AOQ-sidium" (modified UTF-7)
        mailbox.deliver("Case note", received=T0)
        mailbox.deliver("Standard recall request", folder=folder, received=T0)
        source = mailbox.source(folders=("INBOX", folder))

        observation = await source.probe()

        assert [(m.queue, m.wait_reason) for m in observation.messages] == [
            ("INBOX", "unread in INBOX"),
            (folder, f"unread in {folder}"),
        ]
        assert observation.messages[1].key.startswith(f"duty/{folder}/")
        assert (await source.probe()).headers_read == 0  # STATUS of both: unchanged

    async def test_mail_delivered_by_lmtp_is_observed(self, mailbox: Mailbox) -> None:
        """Mail that came in over LMTP (the Postfix path) is seen, arrival by Dovecot's clock."""
        mailbox.deliver_by_lmtp("Breach referral")
        mailbox.clock.now = datetime.now(UTC)
        (message,) = (await mailbox.source().probe()).messages
        assert message.subject == "Breach referral"
        assert abs((mailbox.clock.now - message.arrival).total_seconds()) < 60

    async def test_probes_never_change_a_flag(
        self, mailbox: Mailbox, proxy: CuttingProxy, proxied_source: Callable[..., ImapSource]
    ) -> None:
        """Probing is read-only: EXAMINE and BODY.PEEK only, and no message is marked read."""
        mailbox.deliver_many(5)
        mailbox.store("5", "+FLAGS", "\\Flagged")
        before = mailbox.flags()
        source = proxied_source()
        await source.probe()
        mailbox.deliver_many(2)
        await source.probe()

        commands = [command.upper() for command in proxy.commands()]
        verbs = {command.split()[0] for command in commands}
        assert "EXAMINE" in verbs
        assert not verbs & {"SELECT", "STORE", "APPEND", "EXPUNGE", "COPY", "MOVE"}
        fetches = [command for command in commands if command.startswith("UID FETCH")]
        assert fetches
        assert all("BODY.PEEK[HEADER.FIELDS (" in command for command in fetches)
        assert not any("ENVELOPE" in command or "BODY[" in command for command in fetches)
        after = mailbox.flags()
        assert all("\\Seen" not in flags for flags in after.values())
        assert {uid: after[uid] - {"\\Recent"} for uid in before} == {
            uid: flags - {"\\Recent"} for uid, flags in before.items()
        }


class TestIncremental:
    """A poll costs what changed, never the mailbox's size; state survives across probes."""

    async def test_unchanged_poll_sends_status_only(
        self, mailbox: Mailbox, proxy: CuttingProxy, proxied_source: Callable[..., ImapSource]
    ) -> None:
        """With nothing changed, a poll is LOGIN + STATUS + LOGOUT: no EXAMINE, SEARCH, FETCH."""
        mailbox.deliver_many(30)
        source = proxied_source()
        first = await source.probe()
        mark = len(proxy.sent)

        second = await source.probe()

        verbs = [command.split()[0].upper() for command in proxy.commands(mark)]
        assert verbs == ["LOGIN", "STATUS", "LOGOUT"]  # capabilities came with the greeting
        assert second.messages == first.messages
        assert second.headers_read == 0

    async def test_only_new_messages_are_fetched(
        self, mailbox: Mailbox, proxy: CuttingProxy, proxied_source: Callable[..., ImapSource]
    ) -> None:
        """After 100 new messages arrive in a mailbox of 150, exactly those 100 are fetched."""
        mailbox.deliver_many(150)
        source = proxied_source()
        await source.probe()
        mark = len(proxy.sent)
        mailbox.deliver_many(100, received=T0 + timedelta(hours=1))

        observation = await source.probe()

        fetched = [uid for uid_set in proxy.fetched_uid_sets(mark) for uid in uid_set]
        assert fetched == list(range(151, 251))
        assert observation.headers_read == 100
        assert len(observation.messages) == 250

    async def test_read_and_expunged_messages_drop_out_without_fetching(
        self, mailbox: Mailbox, proxy: CuttingProxy, proxied_source: Callable[..., ImapSource]
    ) -> None:
        """Read, deleted and expunged mail leaves the set; mail marked unread again returns."""
        mailbox.deliver_many(6)
        source = proxied_source()
        await source.probe()
        mailbox.store("2", "+FLAGS", "\\Seen")
        mailbox.store("4", "+FLAGS", "\\Deleted")  # deleted, not yet expunged: dealt with
        with mailbox.person() as person:
            person.uid("STORE", "3", "+FLAGS", "(\\Deleted)")
            person.expunge()
        mark = len(proxy.sent)

        observation = await source.probe()

        assert [m.queue_id for m in observation.messages] == ["1", "5", "6"]
        assert proxy.fetched_uid_sets(mark) == []

        mailbox.store("2", "-FLAGS", "\\Seen")
        mark = len(proxy.sent)
        observation = await source.probe()
        assert [m.queue_id for m in observation.messages] == ["1", "2", "5", "6"]
        assert proxy.fetched_uid_sets(mark) == [[2]]

    async def test_malformed_fetch_response_is_retried_next_poll(
        self, mailbox: Mailbox, proxy: CuttingProxy, proxied_source: Callable[..., ImapSource]
    ) -> None:
        """A record the parser rejects is counted, and fetched again on the next poll."""
        mailbox.deliver_many(5)
        source = proxied_source()
        proxy.rewrites[b"(UID 3 FLAGS"] = b"(UID x FLAGS"
        first = await source.probe()
        assert (len(first.messages), first.malformed) == (4, 1)

        proxy.heal()
        mark = len(proxy.sent)
        second = await source.probe()
        assert [m.queue_id for m in second.messages] == ["1", "2", "3", "4", "5"]
        assert proxy.fetched_uid_sets(mark) == [[3]]

    async def test_uidvalidity_change_resyncs_without_duplicates(self, mailbox: Mailbox) -> None:
        """A new UIDVALIDITY voids every cached UID: same messages, new keys, none twice."""
        mailbox.deliver_many(5)
        source = mailbox.source()
        before = await source.probe()
        old = mailbox.uidvalidity()
        mailbox.dovecot.doveadm(
            "mailbox", "update", "-u", mailbox.user, "--uid-validity", str(old + 1000), "INBOX"
        )

        after = await source.probe()

        keys = [m.key for m in after.messages]
        assert len(keys) == len(set(keys)) == 5
        assert all(key.startswith(f"duty/INBOX/{old + 1000}/") for key in keys)
        assert not {m.key for m in before.messages} & set(keys)
        assert after.headers_read == 5

    async def test_large_mailbox_is_fetched_in_small_batches(
        self, mailbox: Mailbox, proxy: CuttingProxy, proxied_source: Callable[..., ImapSource]
    ) -> None:
        """1,000 unread messages sync completely, in UID FETCHes of at most 200 UIDs each."""
        mailbox.deliver_many(1000)
        source = proxied_source(fetch_batch=200)

        observation = await source.probe()  # its speed is measured in bench/imap_sync.py

        batches = proxy.fetched_uid_sets()
        assert max(len(batch) for batch in batches) <= 200
        assert sorted(uid for batch in batches for uid in batch) == list(range(1, 1001))
        assert len(observation.messages) == observation.headers_read == 1000
        assert observation.malformed == 0


class TestRestart:
    """A source built from the store (as build_sources does) fetches only what is new."""

    async def test_restarted_source_reads_only_new_mail(
        self, mailbox: Mailbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Resumed from the store: no header read twice, the same messages, new mail read."""
        mailbox.deliver_many(5)
        config = tmp_path / "mailwatch.toml"
        config.write_text(
            f'[store]\npath = "{tmp_path / "db.sqlite"}"\n'
            f'[sources.duty]\ntype = "imap"\nhost = "127.0.0.1"\n'
            f"port = {mailbox.dovecot.imap_port}\n"
            f'ca_file = "{mailbox.dovecot.ca_file}"\nuser = "{mailbox.user}"\n'
            'password = { env = "RESTART_TEST_PASSWORD" }\n'
        )
        monkeypatch.setenv("RESTART_TEST_PASSWORD", mailbox.password)
        settings = load(config)
        with Store(settings.store.path) as store:
            scanner = Scanner(settings.classifier(), store)
            (first_source,) = build_sources(settings, store)
            first = await scanner.scan(first_source)
            mailbox.deliver("Emergency recall after the restart")
            (restarted,) = build_sources(settings, store)  # a new process would do this
            second = await scanner.scan(restarted)

        assert first.observation is not None, first.error
        assert second.observation is not None, second.error
        assert (first.observation.headers_read, second.observation.headers_read) == (5, 1)
        before = {m.key: m for m in first.observation.messages}
        after = {m.key: m for m in second.observation.messages}
        assert len(after) == 6
        assert {k: after[k] for k in before} == before  # the stored values, as fetched


class TestTransportSecurity:
    """TLS is verified by default; STARTTLS happens before any credential is sent."""

    async def test_starttls_protects_the_login(self, mailbox: Mailbox, proxy: CuttingProxy) -> None:
        """With STARTTLS the password never crosses the wire in clear, and the CA verifies."""
        mailbox.deliver_many(2)

        observation = await mailbox.source(port=proxy.port).probe()

        assert len(observation.messages) == 2
        assert b"STARTTLS" in proxy.sent
        assert b"LOGIN" not in proxy.sent
        assert mailbox.password.encode() not in proxy.sent

    async def test_implicit_tls_is_verified_against_the_ca(self, mailbox: Mailbox) -> None:
        """Implicit TLS (IMAPS) with the sandbox CA works."""
        mailbox.deliver_many(2)
        source = mailbox.source(port=mailbox.dovecot.imaps_port, security="tls")
        assert len((await source.probe()).messages) == 2

    @pytest.mark.parametrize("security", ["starttls", "tls"])
    async def test_unverifiable_certificate_is_a_clear_error(
        self, mailbox: Mailbox, security: str
    ) -> None:
        """Without the CA, verification fails with an error that says what to configure."""
        port = mailbox.dovecot.imaps_port if security == "tls" else mailbox.dovecot.imap_port
        source = mailbox.source(port=port, security=security, ca_file=None)
        with pytest.raises(SourceError, match=r"failed verification.*ca_file") as raised:
            await source.probe()
        assert type(raised.value) is SourceError

    async def test_verification_can_be_switched_off(self, mailbox: Mailbox) -> None:
        """verify=False accepts the unknown certificate (an explicit, visible choice)."""
        mailbox.deliver_many(1)
        source = mailbox.source(ca_file=None, verify=False)
        assert len((await source.probe()).messages) == 1
