"""Exim change detection on a real, private Exim 4.96: a rescan reads what changed, misses nothing.

Each test changes the queue the way Exim or an operator does (new mail, a delivery attempt, a
recipient delivered, ``-Mf``/``-Mt``, ``-Mrm``, a reason that changed), probes, and checks the
source's view against ``exim -bpru`` (ids, frozen, undelivered recipients) and against the
message logs (``exim -Mvl``: the last reason per recipient). The relay that changes its answer
is a real SMTP server (aiosmtpd) on the port Exim delivers to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mailwatch.core.model import QueueObservation
from mailwatch.parsing.exim import EximEntry, parse_message_log, parse_queue
from mailwatch.sandbox.exim import PrivateExim
from mailwatch.sandbox.postfix import make_message
from mailwatch.sources.exim import EximSource
from mailwatch.sources.exim_spool import GRANULARITY_NS, SpoolWatcher

pytestmark = pytest.mark.exim

REFUSED = "H=127.0.0.1 [127.0.0.1] Connection refused"
View = dict[str, tuple[bool, tuple[str, ...]]]


def listed(exim: PrivateExim) -> View:
    """``exim -bpru``: id → (frozen, undelivered recipients)."""
    entries = [e for e in parse_queue(exim.listing()) if isinstance(e, EximEntry)]
    return {e.queue_id: (e.frozen, e.recipients) for e in entries}


def seen(observation: QueueObservation) -> View:
    """The probe's view in the same shape."""
    return {
        m.queue_id: (m.queue == "frozen", tuple(r.address for r in m.recipients))
        for m in observation.messages
    }


async def agree(source: EximSource, exim: PrivateExim) -> QueueObservation:
    """Probe; the view must be the listing's, and every reason the message log's."""
    observation = await source.probe()
    assert seen(observation) == listed(exim)
    for message in observation.messages:
        reasons = parse_message_log(exim.exim("-Mvl", message.queue_id)).reasons
        assert {r.address: r.delay_reason for r in message.recipients} == {
            r.address: reasons.get(r.address) for r in message.recipients
        }
    return observation


def watcher(source: EximSource) -> SpoolWatcher:
    """The source's spool watcher (it reads the spool)."""
    assert source._watcher is not None
    return source._watcher


async def settle() -> None:
    """Let directory mtimes age past the granularity (a stable directory is not re-listed)."""
    await asyncio.sleep(GRANULARITY_NS / 1e9 + 0.1)


@pytest.fixture(name="source")
def fixture_source(exim: PrivateExim) -> EximSource:
    """A source reading the private Exim's spool; no listing due for an hour."""
    return EximSource(
        "mx1", exim=str(exim.command), config=exim.config_path, full_listing_every=3600
    )


class _Sink:
    """A relay answering 451 with ``text`` to every recipient (until told otherwise)."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def handle_RCPT(
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        """Defer with this sink's text."""
        return f"451 4.7.1 {self.text}"


@pytest.fixture(name="relay")
def fixture_relay(exim: PrivateExim) -> Iterator[_Sink]:
    """The port Exim delivers remote mail to, answered by :class:`_Sink`."""
    sink = _Sink("Greylisted, try again later")
    controller = Controller(sink, hostname="127.0.0.1", port=exim.dead_port)
    controller.start()
    yield sink
    controller.stop()


async def test_first_scan_reads_the_spool_not_exim(exim: PrivateExim, tmp_path: Path) -> None:
    """Deferred, partly delivered and frozen mail, with reasons, and no Exim run per message."""
    exim.queue_message(make_message("Emergency recall X1"))
    exim.queue_message(make_message("Court results", to="duty@local.invalid, c@justice.example"))
    frozen = exim.queue_message(make_message("MAPPA level 3 minutes"))
    exim.run_queue()
    exim.freeze(frozen)
    calls = tmp_path / "calls"
    recording = tmp_path / "exim_recording"  # the real exim, each call's options noted
    recording.write_text(f'#!/bin/sh\necho "$3" >> {calls}\nexec {exim.command} "$@"\n')
    recording.chmod(0o755)
    source = EximSource("mx1", exim=str(recording), config=exim.config_path)
    observation = await agree(source, exim)
    assert observation.headers_read == 3
    assert calls.read_text().split() == ["-bP"]  # the spool directory, asked once
    by_id = {m.queue_id: m for m in observation.messages}
    assert (by_id[frozen].queue, by_id[frozen].wait_reason) == ("frozen", f"frozen: {REFUSED}")
    assert {m.size for m in observation.messages} == {
        int(line.split()[1]) for line in exim.listing().splitlines() if line[:3].strip()
    }


async def test_unchanged_rescan_reads_nothing(exim: PrivateExim, source: EximSource) -> None:
    """A rescan of a still queue reads no file and hands back the same objects."""
    exim.queue_message(make_message("Recall A1"))
    exim.queue_message(make_message("Recall A2"))
    exim.run_queue()
    first = await agree(source, exim)
    await settle()
    await source.probe()  # the directories were modified recently: listed once more
    again = await agree(source, exim)
    spool = watcher(source)
    assert (spool.spool_files_read, spool.logs_read, again.headers_read) == (0, 0, 0)
    assert sorted(id(m) for m in again.messages) == sorted(id(m) for m in first.messages)


async def test_new_delivered_and_removed(exim: PrivateExim, source: EximSource) -> None:
    """New mail is read once; a delivered and a removed (``-Mrm``) message leave the view."""
    stays = exim.queue_message(make_message("Recall B1"))
    await agree(source, exim)
    local = exim.queue_message(make_message("Local note", to="duty@local.invalid"))
    removed = exim.queue_message(make_message("Recall B2"))
    observation = await agree(source, exim)
    assert observation.headers_read == 2
    exim.run_queue()  # delivers ``local``; ``stays`` and ``removed`` defer
    exim.remove(removed)
    observation = await agree(source, exim)
    assert set(seen(observation)) == {stays}
    assert observation.headers_read == 0
    assert f"mx1/{local}" not in source.header_cache
    assert f"mx1/{removed}" not in source.header_cache


async def test_one_recipient_delivered_out_of_several(
    exim: PrivateExim, source: EximSource
) -> None:
    """The first attempt rewrites the -H file (a delivered tree): the recipient leaves the view."""
    queue_id = exim.queue_message(
        make_message("Court results", to="duty@local.invalid, courts@justice.example")
    )
    before = await agree(source, exim)
    assert len(before.messages[0].recipients) == 2
    exim.run_queue()
    after = await agree(source, exim)
    assert seen(after) == {queue_id: (False, ("courts@justice.example",))}
    assert after.messages[0].delay_reason == REFUSED
    assert after.headers_read == 0  # the envelope re-read; the headers kept


async def test_frozen_then_thawed(exim: PrivateExim, source: EximSource) -> None:
    """``-Mf`` and ``-Mt`` rewrite the -H file: each is seen at the next probe."""
    queue_id = exim.queue_message(make_message("Weekly digest"))
    await agree(source, exim)
    await settle()
    await agree(source, exim)
    exim.freeze(queue_id)
    assert seen(await agree(source, exim))[queue_id][0] is True
    exim.thaw(queue_id)
    assert seen(await agree(source, exim))[queue_id][0] is False


async def test_delay_reason_changes(exim: PrivateExim, source: EximSource, relay: _Sink) -> None:
    """A later attempt appends to the message log in place: the new reason is seen."""
    queue_id = exim.queue_message(make_message("Breach referral"))
    exim.run_queue()
    first = await agree(source, exim)
    assert "Greylisted" in str(first.messages[0].delay_reason)
    await settle()
    await agree(source, exim)  # the spool's directories now stable
    header = exim.spool_dir / "input" / f"{queue_id}-H"
    inode = header.stat().st_ino
    relay.text = "Mailbox busy, try later"
    exim.run_queue()
    assert header.stat().st_ino == inode  # the -H file was not rewritten: only the log grew
    changed = await agree(source, exim)
    assert changed.messages[0].queue_id == queue_id
    assert "Mailbox busy" in str(changed.messages[0].delay_reason)
    assert watcher(source).logs_read == 1
    assert changed.headers_read == 0


async def test_split_spool_directory(tmp_path: Path) -> None:
    """With ``split_spool_directory`` the -H files and logs sit in subdirectories: all found."""
    exim = PrivateExim.create(tmp_path / "exim")
    exim.config_path.write_text("split_spool_directory = true\n" + exim.config_path.read_text())
    source = EximSource("mx1", exim=str(exim.command), config=exim.config_path)
    first = exim.queue_message(make_message("Recall S1"))
    second = exim.queue_message(make_message("Recall S2"))
    exim.run_queue()
    assert not (exim.spool_dir / "input" / f"{first}-H").exists()
    assert set(seen(await agree(source, exim))) == {first, second}
    exim.remove(first)
    exim.freeze(second)
    assert seen(await agree(source, exim)) == {second: (True, ("ppcs@justice.example",))}


async def test_a_reconciliation_that_agrees(exim: PrivateExim, source: EximSource) -> None:
    """A due ``exim -bpru`` that finds nothing different counts nothing, keeps the objects."""
    exim.queue_message(make_message("Recall D1"))
    exim.run_queue()
    before = await agree(source, exim)
    source.full_listing_every = 0.001  # a listing is due now
    await asyncio.sleep(0.01)
    listing = await agree(source, exim)
    assert (listing.reconciled, source.reconcile_differences) == (0, 0)
    assert [id(m) for m in listing.messages] == [id(m) for m in before.messages]


async def test_reconciliation_counts_what_the_spool_missed(
    exim: PrivateExim, source: EximSource
) -> None:
    """A -H file edited in place (not Exim's way: the documented blind spot) is found by -bpru.

    Between listings the spool view does not show it; the next reconciliation counts it,
    re-reads the message, and reports it frozen.
    """
    queue_id = exim.queue_message(make_message("Recall G1"))
    await agree(source, exim)
    await settle()
    await agree(source, exim)
    header = exim.spool_dir / "input" / f"{queue_id}-H"
    lines = header.read_bytes().split(b"\n")
    lines.insert(4, b"-frozen 1796634765")
    with header.open("r+b") as edited:  # same inode, same directory: nothing the spool shows
        edited.write(b"\n".join(lines))
    assert seen(await source.probe())[queue_id][0] is False  # blind, as documented
    assert listed(exim)[queue_id][0] is True
    source.full_listing_every = 0.001
    await asyncio.sleep(0.01)
    reconciled = await source.probe()
    assert seen(reconciled)[queue_id][0] is True
    assert (reconciled.reconciled, source.reconcile_differences) == (1, 1)


async def test_unreadable_spool_falls_back_to_the_listing(
    exim: PrivateExim, tmp_path: Path
) -> None:
    """A spool that cannot be read (here: not there) is said, and ``exim -bpru`` lists instead."""
    queue_id = exim.queue_message(make_message("Recall F1"))
    exim.run_queue()
    missing = tmp_path / "no-spool"
    source = EximSource(
        "mx1",
        exim=str(exim.command),
        config=exim.config_path,
        spool_dir=missing,
        full_listing_every=0.001,  # the spool is tried again once that long has passed
    )
    observation = await source.probe()
    assert seen(observation) == listed(exim)
    assert observation.messages[0].delay_reason == REFUSED  # from -Mvl
    assert len(observation.warnings) == 1
    assert f"cannot read the spool {missing}" in observation.warnings[0]
    assert "listing with exim -bpru instead" in observation.warnings[0]
    source.spool_dir, source.full_listing_every = exim.spool_dir, 3600
    await asyncio.sleep(0.01)
    again = await source.probe()
    assert (again.warnings, seen(again)) == ((), {queue_id: (False, ("ppcs@justice.example",))})
    assert source._watcher is not None
