"""Change detection by the queue directories misses nothing a real Postfix does to its queue.

Each test acts on the session's real Postfix (``PrivatePostfix``: everything defers at a
closed relay port, or at a sink the test opens there), probes a :class:`PostfixSource` (the
first probe lists the queue; after it the source's ``postqueue`` is made a path that does not
exist, so every later probe can only have read the queue directories), and compares what it
saw with a ``postqueue -j`` listing taken right after: the same queue ids, queues, arrival
times, sizes, senders, recipients and delay reasons.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mailwatch.core.model import QueueObservation
from mailwatch.parsing.queueid import hash_dirs
from mailwatch.sandbox.postfix import PrivatePostfix, make_message
from mailwatch.sources.postfix import PostfixSource
from mailwatch.sources.postfix_qdir import GRANULARITY_NS

pytestmark = pytest.mark.postfix

Recipients = tuple[tuple[str, str | None], ...]
Listed = dict[str, tuple[object, ...]]


def _recipients(listed: Listed) -> Recipients:
    """The recipients (address, delay reason) of the only message listed."""
    ((*_, recipients),) = listed.values()
    return recipients  # type: ignore[return-value]


def _listed(postfix: PrivatePostfix) -> Listed:
    return {
        str(e["queue_id"]): (
            e["queue_name"],
            e["arrival_time"],
            e["message_size"],
            e["forced_expire"],
            e["sender"],
            tuple((r["address"], r.get("delay_reason")) for r in e["recipients"]),  # type: ignore[attr-defined]
        )
        for e in postfix.queue()
    }


def _seen(observation: QueueObservation) -> Listed:
    return {
        m.queue_id: (
            m.queue,
            int(m.arrival.timestamp()),
            m.size,
            m.forced_expire,
            m.sender,
            tuple((r.address, r.delay_reason) for r in m.recipients),
        )
        for m in observation.messages
    }


NO_POSTQUEUE = "/nonexistent/postqueue"


async def _agree(source: PostfixSource, postfix: PrivatePostfix) -> Listed:
    """Probe (by the directories after the first); assert it equals the listing right after."""
    seen = _seen(await source.probe())
    source.postqueue = NO_POSTQUEUE  # from now on only the directories can answer
    assert seen == _listed(postfix)
    return seen


@pytest.fixture(name="source")
def fixture_source(postfix: PrivatePostfix) -> PostfixSource:
    """A source listing the queue only once an hour (and at its first probe)."""
    return PostfixSource("mta1", config_dir=postfix.config_dir, full_listing_every=3600)


def _queue_file(postfix: PrivatePostfix, queue: str, queue_id: str) -> Path:
    hashed = postfix.queue_dir / queue / hash_dirs(queue_id) / queue_id
    return hashed if hashed.exists() else postfix.queue_dir / queue / queue_id


def _wait_retried(postfix: PrivatePostfix, count: int, since: float) -> None:
    """Wait until ``count`` messages are deferred again after a retry started at ``since``.

    The queue manager sets a deferred file's mtime to its next retry time (minutes ahead).
    """
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        entries = postfix.wait_for_queue(count)
        if all(
            e["queue_name"] == "hold"
            or _queue_file(postfix, "deferred", str(e["queue_id"])).stat().st_mtime > since + 60
            for e in entries
        ):
            return
        time.sleep(0.1)
    raise AssertionError("the messages were never retried")


class _Sink:
    """A relay answering 451 to recipients at later.example, accepting the others."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def handle_RCPT(
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        """Defer one domain with this sink's text."""
        if address.endswith("@later.example"):
            return f"451 4.7.1 {self.text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:
        """Accept the data."""
        return "250 2.0.0 Ok: queued"


@pytest.fixture(name="relay")
def fixture_relay(postfix: PrivatePostfix) -> Iterator[_Sink]:
    """The relay port answered by :class:`_Sink` (until the test ends)."""
    sink = _Sink("Greylisted, try again later")
    controller = Controller(sink, hostname="127.0.0.1", port=postfix.relay_port)
    controller.start()
    yield sink
    controller.stop()


async def test_new_messages_are_seen(postfix: PrivatePostfix, source: PostfixSource) -> None:
    """New mail (and then more new mail) is seen, its headers read once."""
    postfix.inject([make_message("Court results 1"), make_message("Court results 2")])
    postfix.wait_for_queue(2)
    assert len(await _agree(source, postfix)) == 2
    postfix.inject([make_message("Court results 3")])
    postfix.wait_for_queue(3)
    assert len(await _agree(source, postfix)) == 3
    again = await source.probe()
    assert again.headers_read == 0


async def test_unchanged_messages_are_the_same_objects(
    postfix: PrivatePostfix, source: PostfixSource
) -> None:
    """A rescan of an unchanged queue reuses every Message object (identity)."""
    postfix.inject([make_message("Recall A1"), make_message("Recall A2")])
    postfix.wait_for_queue(2)
    await source.probe()  # a listing; files younger than the granularity are read again next
    second = await source.probe()
    third = await source.probe()
    assert [id(m) for m in second.messages] == [id(m) for m in third.messages]
    assert third.headers_read == 0


async def test_the_second_probe_takes_the_first_listing_as_read(
    postfix: PrivatePostfix, source: PostfixSource
) -> None:
    """The first probe lists without stamping; the second stamps and keeps what it listed.

    A file older than the listing is not read again (the same object); one held between
    the two probes (its file moved) is read again and seen in ``hold``, its headers from the
    cache (no header block decoded twice).
    """
    postfix.inject([make_message("Recall S1"), make_message("Recall S2")])
    postfix.wait_for_queue(2)
    await asyncio.sleep(GRANULARITY_NS / 1e9 + 0.1)  # the files are now older than a listing
    first = await source.probe()
    assert first.headers_read == 2
    one, two = sorted(m.queue_id for m in first.messages)
    postfix.postsuper("-h", one)
    source.postqueue = NO_POSTQUEUE  # the second probe can only read the directories
    second = await source.probe()
    assert _seen(second) == _listed(postfix)
    assert second.headers_read == 0
    kept = {m.queue_id: m for m in first.messages}
    assert next(m for m in second.messages if m.queue_id == two) is kept[two]
    assert next(m for m in second.messages if m.queue_id == one).queue == "hold"


async def test_a_reconciliation_that_agrees_keeps_the_objects(
    postfix: PrivatePostfix, source: PostfixSource
) -> None:
    """A full listing that finds nothing different hands the scanner the same objects.

    The scanner skips a message it already holds by identity, so a reconciliation of an
    unchanged queue must cost it nothing, even though the listing itself is parsed afresh.
    """
    postfix.inject([make_message("Recall R1"), make_message("Recall R2")])
    postfix.wait_for_queue(2)
    await source.probe()
    await asyncio.sleep(GRANULARITY_NS / 1e9 + 0.1)
    before = await source.probe()  # by the directories
    source.full_listing_every = 0.001  # a listing is due now
    await asyncio.sleep(0.01)
    listing = await source.probe()
    assert listing.reconciled == 0
    assert sorted(id(m) for m in listing.messages) == sorted(id(m) for m in before.messages)


async def test_deferred_active_deferred(postfix: PrivatePostfix, source: PostfixSource) -> None:
    """A flush moves deferred mail through active and back: seen with its new retry."""
    postfix.inject([make_message("Recall B1"), make_message("Recall B2")])
    postfix.wait_for_queue(2)
    await _agree(source, postfix)
    since = time.time()
    postfix.flush()
    _wait_retried(postfix, 2, since)
    await _agree(source, postfix)


async def test_held_released_deleted(postfix: PrivatePostfix, source: PostfixSource) -> None:
    """Holding (postsuper -h), releasing (-H) and deleting (-d) are each seen at the next probe."""
    postfix.inject([make_message("Recall C1"), make_message("Recall C2")])
    postfix.wait_for_queue(2)
    first = await _agree(source, postfix)
    one, two = sorted(first)
    postfix.postsuper("-h", one)
    assert (await _agree(source, postfix))[one][0] == "hold"
    postfix.postsuper("-H", one)
    assert (await _agree(source, postfix))[one][0] == "deferred"
    postfix.postsuper("-d", two)
    assert set(await _agree(source, postfix)) == {one}


async def test_requeued_messages(postfix: PrivatePostfix, source: PostfixSource) -> None:
    """A requeue (postsuper -r: maildrop, pickup, cleanup, a new id) is seen at each step."""
    postfix.inject([make_message("Recall D1")])
    postfix.wait_for_queue(1)
    await _agree(source, postfix)
    since = time.time()
    postfix.postsuper("-r", "ALL")  # into maildrop: seen there (showq lists maildrop too)
    assert [entry[0] for entry in (await _agree(source, postfix)).values()] == ["maildrop"]
    kick = ["postkick", "-c", str(postfix.config_dir), "public", "pickup", "W"]
    await asyncio.to_thread(subprocess.run, kick, check=True)  # pickup now, not within 60 s
    _wait_retried(postfix, 1, since)
    await _agree(source, postfix)


async def test_delay_reason_changes(
    postfix: PrivatePostfix, source: PostfixSource, relay: _Sink
) -> None:
    """The relay answering 451, then 451 with another text: each reason is seen."""
    postfix.inject([make_message("Recall E1", to="spo@later.example")])
    postfix.wait_for_queue(1)
    first = await _agree(source, postfix)
    ((_, reason),) = _recipients(first)
    assert "Greylisted" in str(reason)
    relay.text = "Mailbox busy, come back soon"
    since = time.time()
    postfix.flush()
    _wait_retried(postfix, 1, since)
    second = await _agree(source, postfix)
    ((_, reason),) = _recipients(second)
    assert "Mailbox busy" in str(reason)


async def test_one_recipient_delivered_out_of_several(
    postfix: PrivatePostfix, source: PostfixSource
) -> None:
    """Two recipients deferred; one is then delivered: only the other stays listed."""
    postfix.inject([make_message("Recall F1", to="a@ok.example, b@later.example")])
    postfix.wait_for_queue(1)
    before = await _agree(source, postfix)
    assert len(_recipients(before)) == 2
    controller = Controller(_Sink("Greylisted"), hostname="127.0.0.1", port=postfix.relay_port)
    controller.start()
    try:
        since = time.time()
        postfix.flush()
        _wait_retried(postfix, 1, since)
    finally:
        controller.stop()
    after = await _agree(source, postfix)
    ((address, reason),) = _recipients(after)
    assert address == "b@later.example"
    assert "Greylisted" in str(reason)


async def test_reconciliation_counts_what_the_directories_missed(
    postfix: PrivatePostfix,
) -> None:
    """A forced expiry (postsuper -e: a chmod, no directory change) is found by the listing.

    Between listings the directories do not show it (the documented blind spot); the next
    reconciliation does, counts it, and its listing is the probe's result.
    """
    source = PostfixSource("mta1", config_dir=postfix.config_dir, full_listing_every=3600)
    postfix.inject([make_message("Recall G1")])
    postfix.wait_for_queue(1)
    await _agree(source, postfix)
    (queue_id,) = _listed(postfix)
    await asyncio.sleep(GRANULARITY_NS / 1e9 + 0.1)
    await _agree(source, postfix)  # the deferred directories are now stable, not re-listed
    postfix.postsuper("-e", queue_id)
    assert [m.forced_expire for m in (await source.probe()).messages] == [False]  # blind
    source.postqueue, source.full_listing_every = "postqueue", 0.001  # a listing is due now
    await asyncio.sleep(0.01)
    listing = await source.probe()
    assert [m.forced_expire for m in listing.messages] == [True]
    assert source.reconcile_differences == 1
    assert listing.reconciled == 1  # what the scanner and the metric are told
    source.full_listing_every = 3600
    assert (await _agree(source, postfix))[queue_id][3] is True  # re-read since: expired
