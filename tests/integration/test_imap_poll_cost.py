"""What a poll of a real Dovecot reads after something changed: what changed, not the folder.

A poll after K new messages must fetch those K and have the server list only changed UIDs
in its SEARCH answers (never the whole unread set again); read, unread-again and deleted
messages cost the same; an expunge (which leaves no mod-sequence) falls back to one search
of the whole set and loses nothing. The costs are read on the wire, through
:class:`~integration.conftest.CuttingProxy`, as UIDs the server listed and UIDs fetched:
counts, never times. A seeded random walk of deliveries, reads, unreads, deletions and
expunges checks after every step that the incremental source reports exactly what a brand
new source (a full sync) reports.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import timedelta

import pytest

from integration.conftest import T0, CuttingProxy, Mailbox
from mailwatch.core.model import Message
from mailwatch.errors import SourceUnavailable
from mailwatch.parsing.imap import format_sequence_set, parse_search
from mailwatch.sources.imap import ImapSource

pytestmark = pytest.mark.imap


def searched_uids(proxy: CuttingProxy, since: int) -> int:
    """How many UIDs the server listed in SEARCH/ESEARCH answers after offset ``since``."""
    lines = bytes(proxy.received[since:]).split(b"\r\n")
    answers = [line for line in lines if line.upper().startswith((b"* SEARCH", b"* ESEARCH"))]
    return sum(len(parse_search([answer, b"OK"])) for answer in answers)


def verbs(proxy: CuttingProxy, since: int) -> list[str]:
    """The commands sent after offset ``since``, as verbs (``UID SEARCH``: both words)."""
    words = [command.split() for command in proxy.commands(since)]
    return [" ".join(w[:2]) if w[0].upper() == "UID" else w[0] for w in words]


def unread_uids(messages: Sequence[Message]) -> list[int]:
    """The UIDs of reported messages, in the order reported."""
    return [int(m.queue_id) for m in messages]


class TestPollCost:
    """Counts on the wire after K new messages and after flag changes, at a fragmented set."""

    async def _synced(
        self, mailbox: Mailbox, proxied_source: Callable[..., ImapSource], count: int
    ) -> ImapSource:
        """``count`` messages, every third read: an unread set of many runs, synced once."""
        mailbox.deliver_many(count)
        mailbox.store(format_sequence_set(range(3, count + 1, 3)), "+FLAGS", "\\Seen")
        source = proxied_source()
        first = await source.probe()
        assert first.headers_read == count - count // 3
        return source

    async def test_poll_after_new_mail_lists_and_fetches_only_the_new(
        self, mailbox: Mailbox, proxy: CuttingProxy, proxied_source: Callable[..., ImapSource]
    ) -> None:
        """After K=25 new in a folder of 300 (200 unread), the server lists 25 UIDs, not 225."""
        source = await self._synced(mailbox, proxied_source, 300)
        sent, received = len(proxy.sent), len(proxy.received)
        mailbox.deliver_many(25, received=T0 + timedelta(hours=1))

        observation = await source.probe()

        new = list(range(301, 326))
        assert [uid for batch in proxy.fetched_uid_sets(sent) for uid in batch] == new
        assert searched_uids(proxy, received) == 2 * 25  # changed, then unread among them
        assert verbs(proxy, sent) == [
            "LOGIN", "STATUS", "EXAMINE", "UID SEARCH", "UID SEARCH", "UID FETCH", "LOGOUT",
        ]  # fmt: skip
        assert all("MODSEQ" in c for c in proxy.commands(sent) if c.startswith("UID SEARCH"))
        assert observation.headers_read == 25
        assert unread_uids(observation.messages) == [
            *(uid for uid in range(1, 301) if uid % 3),
            *new,
        ]

    async def test_flag_changes_list_only_the_changed(
        self, mailbox: Mailbox, proxy: CuttingProxy, proxied_source: Callable[..., ImapSource]
    ) -> None:
        """Read 4, unread 2 and delete 1: the server lists those 7, and 2 headers are fetched."""
        source = await self._synced(mailbox, proxied_source, 300)
        sent, received = len(proxy.sent), len(proxy.received)
        mailbox.store("1,2,4,5", "+FLAGS", "\\Seen")
        mailbox.store("3,6", "-FLAGS", "\\Seen")
        mailbox.store("7", "+FLAGS", "\\Deleted")  # dealt with, awaiting expunge

        observation = await source.probe()

        assert proxy.fetched_uid_sets(sent) == [[3, 6]]
        assert searched_uids(proxy, received) == 7 + 2  # changed, then the 2 unread again
        expected = [3, 6, *(uid for uid in range(8, 301) if uid % 3)]
        assert unread_uids(observation.messages) == expected  # in UID order, 3 and 6 too
        assert observation.headers_read == 2

    async def test_expunge_searches_the_whole_set_and_loses_nothing(
        self, mailbox: Mailbox, proxy: CuttingProxy, proxied_source: Callable[..., ImapSource]
    ) -> None:
        """An expunge and a new message in one interval: the counts see it; nothing is lost."""
        source = await self._synced(mailbox, proxied_source, 30)
        sent = len(proxy.sent)
        with mailbox.person() as person:
            person.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
            person.expunge()
        mailbox.deliver("Emergency recall", received=T0 + timedelta(hours=1))

        observation = await source.probe()

        searches = [c for c in proxy.commands(sent) if c.upper().startswith("UID SEARCH")]
        assert searches[-1].endswith("UNSEEN UNDELETED")
        assert "MODSEQ" not in searches[-1]
        assert proxy.fetched_uid_sets(sent) == [[31]]
        assert unread_uids(observation.messages) == [
            *(uid for uid in range(1, 31) if uid % 3 and uid != 2),
            31,
        ]


class TestCutMidSync:
    """A poll by mod-sequence that is cut midway loses nothing: the next one searches all."""

    async def test_cut_during_the_fetch_of_new_mail(
        self, mailbox: Mailbox, proxy: CuttingProxy, proxied_source: Callable[..., ImapSource]
    ) -> None:
        """Two read and 250 new, cut mid-FETCH: the next poll reports the folder exactly."""
        mailbox.deliver_many(30)
        source = proxied_source()
        await source.probe()
        mailbox.store("1,2", "+FLAGS", "\\Seen")
        mailbox.deliver_many(250, received=T0 + timedelta(hours=1))
        proxy.cut_after(b"UID FETCH", 3000)
        with pytest.raises(SourceUnavailable):
            await source.probe()
        proxy.heal()
        sent = len(proxy.sent)

        healed = await source.probe()

        searches = [c for c in proxy.commands(sent) if c.upper().startswith("UID SEARCH")]
        assert len(searches) == 1
        assert "MODSEQ" not in searches[0]  # the whole unread set, searched again
        assert unread_uids(healed.messages) == list(range(3, 281))
        assert healed.messages == (await proxied_source().probe()).messages


class TestIncrementalEqualsFull:
    """After any mix of changes, the incremental source reports what a full sync reports."""

    async def test_random_walk(
        self, mailbox: Mailbox, proxy: CuttingProxy, proxied_source: Callable[..., ImapSource]
    ) -> None:
        """Twelve seeded rounds of deliveries, reads, unreads, deletions and expunges."""
        rng = random.Random(13)
        mailbox.deliver_many(60)
        source = proxied_source()
        await source.probe()
        delivered = 60
        for round_ in range(12):
            uids = sorted(mailbox.flags())
            for _ in range(rng.randint(1, 4)):
                action = rng.choice(("deliver", "read", "unread", "delete", "expunge"))
                chosen = format_sequence_set(rng.sample(uids, min(len(uids), rng.randint(1, 5))))
                if action == "deliver":
                    count = rng.randint(1, 6)
                    mailbox.deliver_many(count, received=T0 + timedelta(minutes=round_))
                    delivered += count
                elif action in ("read", "unread"):
                    sign = "+" if action == "read" else "-"
                    mailbox.store(chosen, f"{sign}FLAGS", "\\Seen")
                elif action == "delete":
                    mailbox.store(chosen, "+FLAGS", "\\Deleted")
                else:
                    with mailbox.person() as person:
                        person.uid("STORE", chosen, "+FLAGS", "(\\Deleted)")
                        person.expunge()

            incremental = await source.probe()
            full = await proxied_source().probe()

            assert incremental.messages == full.messages, f"round {round_}"
            flags = mailbox.flags()
            unread = [u for u, f in flags.items() if not {"\\Seen", "\\Deleted"} & f]
            assert unread_uids(incremental.messages) == sorted(unread)
        assert delivered > 60
