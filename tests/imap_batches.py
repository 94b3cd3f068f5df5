"""Test helper: FETCH batches of header blocks, decoded with or without the decoding process.

Shared by the unit tests of the decoding process and of its spare.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from mailwatch.core.headers import keep_set
from mailwatch.core.model import Message
from mailwatch.parsing.imap import FetchRecord
from mailwatch.sources.imap import DEFAULT_HEADER_FIELDS
from mailwatch.sources.imap_addresses import clear_caches
from mailwatch.sources.imap_decoder import BatchDecoder
from mailwatch.sources.imap_decoder_process import DecoderProcess

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
KEEP = keep_set([*DEFAULT_HEADER_FIELDS, "X-Case"])  # as the source keeps them


def blocks(count: int, seed: int = 13) -> list[bytes]:
    """``count`` header blocks of the shapes a first sync meets (and a few it rarely does)."""
    rng = random.Random(seed)
    subjects = ["Recall request", "RE: [OFFICIAL-SENSITIVE] Licence breach", "FW: Court result",
                "=?utf-8?q?Caf=C3=A9_visit?=", "=?UTF-8?B?Wm/DqyBPJ0JyaWVu?= risk", ""]  # fmt: skip
    blocks = []
    for number in range(count):
        lines = [f"Subject: {rng.choice(subjects)} {number}",
                 f"From: Offender Manager <om{rng.randint(1, 40)}@probation.example>",
                 f"To: duty{rng.randint(1, 9)}@court.example, spo@probation.example",
                 f"Date: Mon, 7 Dec 2026 11:{number % 60:02d}:00 +0000"]  # fmt: skip
        if rng.random() < 0.3:
            lines.append(f"Cc: Senior <spo{rng.randint(1, 5)}@probation.example>")
        if rng.random() < 0.2:
            lines.append("Importance: High")
        if number % 97 == 5:  # a folded line, a tab, 8-bit bytes: the general parser's shapes
            lines.append("X-Priority: 1\r\n\t(Highest)")
        block = ("\r\n".join(lines) + "\r\n\r\n").encode()
        blocks.append(block.replace(b"Caf", b"Caf\xc3\xa9 ") if number % 89 == 7 else block)
    return blocks


def records(blocks: list[bytes], first_uid: int = 1) -> list[FetchRecord]:
    """One FETCH record per block, UIDs from ``first_uid``, unflagged."""
    return [
        FetchRecord(n, uid, frozenset(), NOW - timedelta(minutes=uid), 1000 + uid, raw)
        for n, (uid, raw) in enumerate(enumerate(blocks, first_uid), 1)
    ]


async def ready(child: DecoderProcess) -> None:
    """Wait (up to 10 s, not asserted) until the child said it is ready, or has failed."""
    for _ in range(2000):
        if child.ready or child.failed:
            return
        await asyncio.sleep(0.005)


async def decode(
    batches: list[list[FetchRecord]], child: DecoderProcess | None
) -> dict[int, Message]:
    """The Messages of ``batches`` decoded by a ``BatchDecoder`` (with ``child``, if any)."""
    clear_caches()
    into: dict[int, Message] = {}
    answered: set[int] = set()
    decoder = BatchDecoder(
        "imap", "INBOX", 7, "unread in", KEEP, {"\\Seen"}, into, answered, NOW, child
    )
    for batch in batches:
        decoder(batch)
        await asyncio.sleep(0)  # the loop runs between FETCH answers
    await decoder.finish()
    assert answered == {r.uid for batch in batches for r in batch}
    return into
