"""A large first sync decodes through the decoding process: same Messages, no child left behind.

Against the real Dovecot: a first sync of many unread messages with the decoding child gives
exactly the Messages an in-process sync gives; a small sync never forks; a probe cancelled
while its child runs leaves no process (nor zombie) behind.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import ClassVar

import pytest
from reaping import pid_gone

from integration.conftest import T0, Mailbox
from mailwatch.sources import helper_spare, imap
from mailwatch.sources.imap_decoder_process import DecoderProcess

pytestmark = pytest.mark.imap

SUBJECTS = [
    "Recall request", "OFFICIAL-SENSITIVE: Licence breach", "RE: [ext] Court result",
    "Café visit", "Zo\u00eb O'Brien \u2013 risk update", "Breach (urgent)", "",
]  # fmt: skip


class Recording(DecoderProcess):
    """The real decoding process, remembered with what it was handed (for the assertions)."""

    made: ClassVar[list[Recording]] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.pids: list[int] = []
        Recording.made.append(self)

    async def close(self) -> None:
        """Close it, remembering which process that was."""
        if self.pid is not None:
            self.pids.append(self.pid)
        await super().close()


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[Recording]:
    """The IMAP source's decoding processes, recorded."""
    Recording.made = []
    monkeypatch.setattr(imap, "DecoderProcess", Recording)
    return Recording


def _deliver_varied(mailbox: Mailbox, count: int) -> None:
    rng = random.Random(7)
    for number in range(count):
        extra = {}
        if rng.random() < 0.3:
            extra["Cc"] = rng.choice(['"Doe, J" <j.doe@ppcs.example>', "spo@probation.example"])
        if rng.random() < 0.2:
            extra["Importance"] = "high"
        mailbox.deliver(
            f"{rng.choice(SUBJECTS)} {number}",
            received=T0 + timedelta(seconds=number),
            to=rng.choice(["ppcs@justice.example", "Duty <duty@court.example>, a@b.example"]),
            extra=extra,
        )


async def test_a_large_first_sync_gives_the_same_messages_through_the_child(
    mailbox: Mailbox, recording: type[Recording]
) -> None:
    """Encoded subjects, quoted names, Cc: the child's Messages equal the in-process ones."""
    _deliver_varied(mailbox, 600)
    mailbox.store("1:50", "+FLAGS", "\\Seen")
    helper_spare.discard()  # (one another test left): this sync forks its decoding process

    alone = await mailbox.source(decode_process_from=None, fetch_batch=20).probe()
    assert recording.made == []
    assert helper_spare.pid() is None
    shared = await mailbox.source(decode_process_from=100, fetch_batch=20).probe()

    assert len(recording.made) == 1
    assert helper_spare.pid() is not None  # started for the next large sync
    helper_spare.discard()
    assert recording.made[0].sent > 0  # the child decoded batches (the rest were decoded here)
    assert len(shared.messages) == shared.headers_read == 550
    assert shared.messages == alone.messages
    assert [m.headers._packed for m in shared.messages] == [
        m.headers._packed for m in alone.messages
    ]


async def test_a_small_sync_never_forks(mailbox: Mailbox, recording: type[Recording]) -> None:
    """Fewer new messages than the threshold: decoded here, no child started."""
    mailbox.deliver_many(5)
    observation = await mailbox.source(decode_process_from=6).probe()
    assert len(observation.messages) == 5
    assert recording.made == []


async def test_a_cancelled_probe_leaves_no_child(
    mailbox: Mailbox, recording: type[Recording]
) -> None:
    """Cancelled while the child decodes: it is ended and reaped with the probe."""
    mailbox.deliver_many(1500)
    source = mailbox.source(decode_process_from=100, fetch_batch=10, timeout=60.0)
    probe = asyncio.ensure_future(source.probe())
    for _ in range(30_000):  # up to 30 s
        if (recording.made and recording.made[0].sent) or probe.done():
            break
        await asyncio.sleep(0.001)
    assert not probe.done(), "the probe finished before its child took a batch"
    pid = recording.made[0].pid
    assert pid is not None
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe

    assert recording.made[0].pids == [pid]
    assert pid_gone(pid)
